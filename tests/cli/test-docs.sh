#!/bin/bash
# The operator's surface: a man page for every tool, held to the tool's
# --help (the same synopsis, every option and no other, the exit codes), the
# pages and the systemd units as 'meson install' puts them, the units as
# systemd-analyze sees them, and 'vmdr help TOOL' showing the page.
. "$(dirname "$0")/../harness/lib.sh"

CMD=$VMDR_BUILD_ROOT/cmd
SRC=$VMDR_SOURCE_ROOT/docs/man
BUILT=$VMDR_BUILD_ROOT/docs/man
[ "${VMDR_MAN_PAGES:-1}" = 1 ] || tap_skip_all "the man pages are not built (no scdoc, or -Dman=disabled)"
need_cmd meson man awk
export MANWIDTH=80 MANPAGER=cat PAGER=cat

tools=$(cd "$CMD" && ls vmdr vmdr-* 2>/dev/null | while read -r f; do [ -x "$f" ] && [ -f "$f" ] && echo "$f"; done)
[ -n "$tools" ] || tap_bail "no tools in $CMD"

# ---- extracting options ------------------------------------------------------
#
# Both sides become one token per long option, "-c,--connect=" style: the
# short option paired with it (if any), the name, and "=" when it takes an
# argument.  --help lists options on lines indented by spaces, "-c, --long=ARG"
# or "--long", the description after two spaces (or on the next line), and
# sometimes several on one line ("--keep-last=N, --keep-hourly=N,").  A page
# documents each in a definition list: a term line "*-c*, *--connect*=_URI_"
# followed by its tab-indented description.  Whatever is not understood
# comes out as "UNPARSED:...", which never matches: a check fails on it.

# Option specs, one per line (the text before the description) -> tokens.
spec_tokens() {
  awk '{
    spec = $0
    sub(/^ +/, "", spec); sub(/  .*/, "", spec); sub(/,$/, "", spec)
    n = split(spec, part, /, /)
    short = ""
    for (i = 1; i <= n; i++) {
      p = part[i]
      if (p ~ /^-[A-Za-z0-9]$/ && short == "") { short = p; continue }
      if (p ~ /^--[a-z0-9][a-z0-9-]*(=[^ ]+)?$/) {
        name = p; arg = ""
        if (name ~ /=/) { sub(/=.*/, "", name); arg = "=" }
        print (short != "" ? short "," : "") name arg
        short = ""
        continue
      }
      print "UNPARSED:" p
    }
    if (short != "") print "UNPARSED:" short " (a short option without a long one)"
  }'
}

help_options() {       # help_options TOOL
  "$CMD/$1" --help | grep -E '^ +-' | spec_tokens | sort -u
}

# PAGE.scd without its literal blocks (``` ... ```), whose lines may look
# like anything: "# a comment" is no heading there.
page_text() {          # page_text FILE
  awk '/^```/ { lit = !lit; next } !lit' "$1"
}

# The term lines of PAGE.scd's definition lists that name options, formatting
# removed: "*-c*, *--connect*=_URI_" -> "-c, --connect=URI".
page_option_terms() {  # page_option_terms FILE
  page_text "$1" | awk 'term != "" { if ($0 ~ /^\t/) print term; term = "" }
                        /^\*-/ { term = $0 }' | tr -d '*_\\'
}

page_options() {       # page_options FILE
  page_option_terms "$1" | spec_tokens | sort -u
}

# The synopsis lines, formatting removed ("\_" is a literal underscore).
page_synopsis() {      # page_synopsis FILE
  page_text "$1" | awk '/^# / { in_syn = ($0 == "# SYNOPSIS"); next } in_syn && NF' |
    sed -e 's/\\_/\x01/g' -e 's/[*_]//g' -e 's/\x01/_/g' -e 's/\\//g'
}

help_synopsis() {      # help_synopsis TOOL
  "$CMD/$1" --help | awk '/^Usage: / { on = 1; sub(/^Usage: /, "") } on && !NF { exit }
                          on { sub(/^ +/, ""); print }'
}

# Exit codes: the terms of the page's EXIT STATUS section, and the codes
# --help's "Exit status:" paragraph names ("0 done, 1 failed, ...").
page_exit_codes() {    # page_exit_codes FILE
  page_text "$1" | awk '/^# / { on = ($0 == "# EXIT STATUS"); next }
                        on && /^\*[0-9]+\*$/ { gsub(/\*/, ""); print }' | sort -u
}

help_exit_codes() {    # help_exit_codes TOOL
  "$CMD/$1" --help | awk '/^Exit status:/ { on = 1 } on && !NF { exit } on' | tr '\n' ' ' |
    grep -oE '(: |, |^)[0-9]+ ' | tr -dc '0-9\n ' | tr -s ' ' '\n' | grep . | sort -u
}

# same_options HELP_TOKENS PAGE_TOKENS: 0 when they list the same options
# and every line was understood; else the difference, both ways.
same_options() {
  local only_help only_page bad
  only_help=$(comm -23 "$1" "$2" | grep -v UNPARSED | tr '\n' ' ')
  only_page=$(comm -13 "$1" "$2" | grep -v UNPARSED | tr '\n' ' ')
  bad=$(grep -h UNPARSED "$1" "$2" | sed 's/^UNPARSED://' | tr '\n' ' ')
  [ -n "$only_help" ] && echo "in --help, not in the page: $only_help"
  [ -n "$only_page" ] && echo "in the page, not in --help: $only_page"
  [ -n "$bad" ] && echo "not understood: $bad"
  [ -z "$only_help$only_page$bad" ]
}

# ---- (b) every page against its tool's --help ---------------------------------

for t in $tools; do
  scd=$SRC/$t.1.scd
  tap_ok "$t: a page source, docs/man/$t.1.scd" test -f "$scd" || continue
  tap_ok "$t: the page is built" test -s "$BUILT/$t.1"
  help_options "$t" > "$T/help.opts"
  page_options "$scd" > "$T/page.opts"
  tap_ok "$t: --help lists options" test -s "$T/help.opts"
  tap_ok "$t: the page documents every option of --help, and no other" \
    same_options "$T/help.opts" "$T/page.opts"
  tap_is "$t: the page's synopsis is --help's usage" \
    "$(page_synopsis "$scd")" "$(help_synopsis "$t")"
  help_exit_codes "$t" > "$T/help.codes"
  page_exit_codes "$scd" > "$T/page.codes"
  tap_is "$t: the page documents the exit codes --help names" \
    "$(comm -23 "$T/help.codes" "$T/page.codes" | tr '\n' ' ')" ""
  sections=$(page_text "$scd" | grep -E '^# ' | sed 's/^# //' | tr '\n' ',')
  tap_ok "$t: NAME, SYNOPSIS, EXAMPLES near the top, then DESCRIPTION, OPTIONS, EXIT STATUS, SEE ALSO" \
    grep -qE '^NAME,SYNOPSIS,EXAMPLES,DESCRIPTION,(.*,)?OPTIONS,(.*,)?EXIT STATUS,(.*,)?SEE ALSO,' <<< "$sections"
done

# Pages for tools that do not exist would document nothing real.
for scd in "$SRC"/*.1.scd; do
  t=$(basename "$scd" .1.scd)
  tap_ok "docs/man/$t.1.scd: $t is a tool" test -x "$CMD/$t"
done

# vmdr(7): its exit codes are exactly those of common/cli.h.
sed -nE 's/^ *VMDR_EXIT_[A-Z_]+ *= *([0-9]+),.*/\1/p' "$VMDR_SOURCE_ROOT/common/cli.h" | sort -u > "$T/cli.codes"
page_exit_codes "$SRC/vmdr.7.scd" > "$T/page.codes"
tap_ok "common/cli.h has exit codes" test -s "$T/cli.codes"
tap_is "vmdr(7) documents the exit codes of common/cli.h, and no other" \
  "$(tr '\n' ' ' < "$T/page.codes")" "$(tr '\n' ' ' < "$T/cli.codes")"
# ... and every variable the libraries and tools read.
vars=$(grep -rhoE '"(AWS|VMDR|CEPH)_[A-Z0-9_]+"|getenv \("[A-Z0-9_]+"' \
         "$VMDR_SOURCE_ROOT"/{common,storage,replicate,snapshot,cmd} --include='*.[ch]' |
         sed -E 's/.*"(.*)"/\1/' | grep -vxE 'PATH|HOME' | sort -u)
missing=$(for v in $vars; do grep -q "\*$v\*" "$SRC/vmdr.7.scd" || echo "$v"; done | tr '\n' ' ')
tap_is "vmdr(7) documents every environment variable the code reads" "$missing" ""

# The comparison must fail when a page and --help disagree: a page without
# --full, and one with an option the tool does not have.
grep -vxF '*--full*' "$SRC/vmdr-snapshot.1.scd" > "$T/no-full.scd"
page_options "$T/no-full.scd" > "$T/page.opts"
help_options vmdr-snapshot > "$T/help.opts"
tap_fails "the check fails for a page that misses an option" \
  same_options "$T/help.opts" "$T/page.opts"
printf '*--no-such-option*\n\tNothing.\n' | cat "$SRC/vmdr-snapshot.1.scd" - > "$T/extra.scd"
page_options "$T/extra.scd" > "$T/page.opts"
tap_fails "the check fails for a page that documents an option --help does not have" \
  same_options "$T/help.opts" "$T/page.opts"
printf '*-x* *--two* *--options*\n\tTwo in one term.\n' | cat "$SRC/vmdr-snapshot.1.scd" - > "$T/odd.scd"
page_options "$T/odd.scd" > "$T/page.opts"
tap_fails "the check fails for a term it does not understand" \
  same_options "$T/help.opts" "$T/page.opts"

# ---- (a) meson install ---------------------------------------------------------

DEST=$T/dest
meson install -C "$VMDR_BUILD_ROOT" --no-rebuild --quiet --destdir "$DEST" > "$T/install.log" 2>&1
tap_ok "meson install --destdir" test $? = 0 || { sed 's/^/# /' "$T/install.log"; tap_done; }
installed() {          # installed PATTERN: the one file under DEST matching it
  find "$DEST" -path "$1" \( -type f -o -type l \) | head -2
}
for t in $tools; do
  f=$(installed "*/man/man1/$t.1")
  tap_ok "$t.1 installed into MANDIR/man1" test -n "$f" -a "$(echo "$f" | wc -l)" = 1
done
f=$(installed "*/man/man7/vmdr.7")
tap_ok "vmdr.7 installed into MANDIR/man7" test -n "$f"
MANDIR=$(dirname "$(dirname "$f")")
for f in $(find "$DEST" -path '*/man/man[17]/*' -type f); do
  out=$(man --warnings -l "$f" 2>&1 >/dev/null)
  tap_is "$(basename "$f") renders without a groff warning" "$out" ""
done
service=$(installed '*/systemd/system/vmdr-snapshot@.service')
timer=$(installed '*/systemd/system/vmdr-snapshot@.timer')
tap_ok "vmdr-snapshot@.service installed into the systemd unit directory" test -n "$service"
tap_ok "vmdr-snapshot@.timer installed beside it" test -n "$timer" -a "$(dirname "$timer")" = "$(dirname "$service")"
tap_ok "snapshot.env installed as an example under DATADIR/doc/vmdr/examples" \
  test -n "$(installed '*/share/doc/vmdr/examples/snapshot.env')"
tap_is "no placeholder left unsubstituted" \
  "$(grep -l '@[a-z_]*@' "$service" "$timer" $(installed '*/examples/snapshot.env') 2>/dev/null)" ""
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$service")
tap_ok "ExecStart runs the installed vmdr-snapshot ($exec_start)" test -x "$DEST$exec_start"
tap_ok "the service passes \$VMDR_SNAPSHOT_OPTS and the domain" \
  grep -qx 'ExecStart=[^ ]*/vmdr-snapshot \$VMDR_SNAPSHOT_OPTS %I' "$service"

# ---- (c) systemd-analyze verify ----------------------------------------------

# Against a root holding the installed tree and the system's own units (the
# targets ours are ordered against): there ExecStart's binary exists, and
# MANPATH lets Documentation= find the installed pages.  A warning fails
# the check as much as an error (systemd-analyze exits 0 on an unknown key).
analyze() {            # analyze UNIT_PATH...: its output, and its status
  MANPATH=$MANDIR systemd-analyze verify --root="$ROOT" "$@" 2>&1
}
if ! command -v systemd-analyze >/dev/null 2>&1; then
  tap_skip "systemd-analyze verify" "no systemd-analyze"
else
  ROOT=$T/root
  unitdir=${service#"$DEST"}; unitdir=${unitdir%/*}
  cp -a "$DEST" "$ROOT"
  for d in /lib/systemd/system /usr/lib/systemd/system; do
    [ -d "$d" ] && mkdir -p "$ROOT$d" && cp -an "$d/." "$ROOT$d/" 2>/dev/null
  done
  printf '[Service]\nType=oneshot\nExecStart=%s --version\n' "$exec_start" > "$ROOT$unitdir/vmdr-control.service"
  if ! out=$(analyze "$unitdir/vmdr-control.service") || [ -n "$out" ]; then
    tap_skip "systemd-analyze verify" "it fails here on a trivial unit: $(echo "$out" | head -1)"
  else
    out=$(analyze "$unitdir/vmdr-snapshot@vmdr-test.service" "$unitdir/vmdr-snapshot@vmdr-test.timer"); st=$?
    tap_is "systemd-analyze verify: the service and the timer, no error, no warning" "$st: $out" "0: "
    sed 's/^Nice=.*/&\nNoSuchKey=1/' "$ROOT$unitdir/vmdr-snapshot@.service" > "$ROOT$unitdir/vmdr-broken@.service"
    out=$(analyze "$unitdir/vmdr-broken@x.service")
    tap_ok "... which would see a mistake" grep -q NoSuchKey <<< "$out"
  fi
fi

# ---- (d) vmdr help TOOL -------------------------------------------------------

name_line=$(page_text "$SRC/vmdr-snapshot.1.scd" | awk '/^# NAME/ { on = 1; next } on && NF { print; exit }' | tr -d '*_')
out=$(MANPATH=/nonexistent "$CMD/vmdr" help snapshot 2>&1); st=$?
tap_is "vmdr help snapshot exits 0" "$st" 0
tap_ok "vmdr help snapshot, from the build tree, shows the built page" \
  grep -qF "$(echo "$name_line" | cut -c1-40)" <<< "$out"
tap_ok "... the whole page" grep -q '^EXIT STATUS' <<< "$out"
bindir=$(dirname "$exec_start")
out=$(MANPATH=$MANDIR "$DEST$bindir/vmdr" help restore 2>&1)
tap_ok "vmdr help restore, installed, shows the installed page" grep -q '^ *vmdr-restore - ' <<< "$out"
mkdir -p "$T/manpath"
printf '.TH VMDR-LS 1\n.SH NAME\nvmdr-ls \\- from VMDR_MAN_PATH\n' > "$T/manpath/vmdr-ls.1"
out=$(VMDR_MAN_PATH=$T/manpath "$CMD/vmdr" help ls 2>&1)
tap_ok "VMDR_MAN_PATH comes first" grep -q 'from VMDR_MAN_PATH' <<< "$out"
mkdir -p "$T/exec"; cp "$CMD/vmdr" "$CMD/vmdr-ls" "$T/exec/"
out=$(MANPATH=/nonexistent "$T/exec/vmdr" help ls 2>&1)
tap_ok "no page anywhere: the tool's --help" grep -q '^Usage: vmdr-ls ' <<< "$out"

tap_done
