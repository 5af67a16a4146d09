#!/bin/bash
# The command-line contract of every tool built in cmd/: --help on stdout with
# exit 0, --version, and a bad option as one line on stderr with exit 2.
# Then the vmdr front end's dispatch.
. "$(dirname "$0")/../harness/lib.sh"

CMD=$VMDR_BUILD_ROOT/cmd
tools=$(cd "$CMD" && ls vmdr vmdr-* 2>/dev/null | while read -r f; do [ -x "$f" ] && [ -f "$f" ] && echo "$f"; done)
[ -n "$tools" ] || tap_bail "no tools in $CMD"

version=$(sed -n "s/^ *version: '\(.*\)',/\1/p" "$VMDR_SOURCE_ROOT/meson.build" | head -1)
for t in $tools; do
  out=$("$CMD/$t" --help 2>"$T/err"); st=$?
  tap_is "$t --help exits 0" "$st" 0
  tap_is "$t --help prints usage on stdout, nothing on stderr" \
    "$(echo "$out" | grep -c "^Usage: $t ")$(wc -c < "$T/err")" "10"
  tap_is "$t --version" "$("$CMD/$t" --version)" "$t (vmdr) $version"
  "$CMD/$t" --no-such-option >"$T/out" 2>"$T/err"; st=$?
  tap_is "$t: bad option exits 2" "$st" 2
  tap_is "$t: bad option is one line on stderr, nothing on stdout" \
    "$(wc -l < "$T/err") $(wc -c < "$T/out")" "1 0"
  tap_ok "$t: the line names the program and the option" \
    grep -q "^$t: unknown option '--no-such-option'" "$T/err"
done

# --- vmdr front end: runs vmdr-COMMAND from its exec path.
mkdir -p "$T/exec"
cat > "$T/exec/vmdr-echo" <<'SCRIPT'
#!/bin/sh
[ "$1" = --help ] && { echo "Usage: vmdr-echo [ARGS]"; exit 0; }
echo "$0 $*"
SCRIPT
chmod +x "$T/exec/vmdr-echo"
cp "$CMD/vmdr" "$T/exec/vmdr"
printf '#!/bin/sh\nexit 0\n' > "$T/exec/vmdr-noexec"          # not executable: not a command

tap_is "vmdr --exec-path is its own directory" "$("$T/exec/vmdr" --exec-path)" "$T/exec"
tap_is "vmdr COMMAND runs vmdr-COMMAND with the arguments" \
  "$("$T/exec/vmdr" echo a 'b c')" "$T/exec/vmdr-echo a b c"
tap_is "VMDR_EXEC_PATH overrides" "$(VMDR_EXEC_PATH=$T/exec "$CMD/vmdr" --exec-path)" "$T/exec"
tap_is "vmdr help lists installed commands only" \
  "$("$T/exec/vmdr" help | tail -n +2 | tr -d ' ' | tr '\n' ' ')" "echo "
tap_is "vmdr help COMMAND shows its help" "$(MANPATH=/nonexistent "$T/exec/vmdr" help echo)" "Usage: vmdr-echo [ARGS]"
for bad in nosuch ../echo noexec -x ''; do
  "$T/exec/vmdr" "$bad" >"$T/out" 2>"$T/err"; st=$?
  [ "$bad" = -x ] && want_re="^vmdr: unknown option '-x'" || want_re="^vmdr: '.*' is not a vmdr command"
  tap_is "vmdr '$bad' exits 2 with one line" "$st $(wc -l < "$T/err") $(wc -c < "$T/out")" "2 1 0"
  tap_ok "vmdr '$bad': the message says why" grep -q "$want_re" "$T/err"
done
"$CMD/vmdr" >"$T/out" 2>"$T/err"; st=$?
tap_is "vmdr without a command: usage on stderr, exit 2" "$st $(wc -c < "$T/out")" "2 0"

tap_done
