#!/bin/bash
# vmdr-export and vmdr-import: bundles of full and changed disks and a
# memory image arrive whole (listing, verify, restored bytes equal); an
# incremental bundle applies on top of its base and is refused, naming it,
# without; through a pipe with bounded memory; zstd; a hostile corpus
# (tests/cli/bundle-corpus.py) refused in one line each, the repository
# unchanged and nothing written elsewhere; killed half way, nothing
# visible, and a rerun completes.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd repo-image vmdr-init vmdr-export vmdr-import vmdr-ls vmdr-verify vmdr-restore python3 zstd tar

S=$T/src
vmdr-init -q -r "$S"
python3 - "$T" <<'PY'
import random, sys
rnd = random.Random(7)
d = sys.argv[1]
with open(d + "/a", "wb") as f:
    f.truncate(24 << 20); f.write(rnd.randbytes(3 << 20)); f.seek(16 << 20); f.write(rnd.randbytes(1 << 20))
open(d + "/mem", "wb").write(rnd.randbytes(1 << 20) + bytes(2 << 20) + rnd.randbytes(1 << 20))
PY
cp --sparse=always "$T/a" "$T/a2"
dd if=/dev/urandom of="$T/a2" bs=64K count=5 seek=40 conv=notrunc status=none
s1=$(repo-image put "$S" web vda="$T/a" memory="$T/mem") || tap_bail put
s2=$(repo-image put "$S" web vda="$T/a2") || tap_bail put

js() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
ids() { vmdr-ls -r "$1" --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)["snapshots"]))'; }
errline() { "$@" 2>&1 >/dev/null | head -1; }
# restored DEST SNAPSHOT IMAGE [MEMORY]: the snapshot restored from DEST equals IMAGE (and MEMORY)
restored() {
  rm -rf "$T/o"; mkdir "$T/o"
  if [ -n "${4:-}" ]; then
    vmdr-restore -q -r "$1" "$2" -o "$T/o" --with-memory && cmp "$3" "$T/o/web-vda.raw" && cmp "$4" "$T/o/web.save"
  else
    vmdr-restore -q -r "$1" "$2" -o "$T/o" && cmp "$3" "$T/o/web-vda.raw"
  fi
}

# --- a full bundle of two snapshots into an empty repository
vmdr-export -q -r "$S" "$s1" web@latest -o "$T/full.tar"; st=$?
tap_is "export two snapshots" "$st $(tar tf "$T/full.tar" | head -2 | tr '\n' ' ')" "0 vmdr-bundle.json config "
tap_ok "the bundle is a POSIX pax/ustar tar" python3 -c "
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    ms = t.getmembers()
    sys.exit(0 if ms and all(m.isreg() for m in ms) and open(sys.argv[1], 'rb').read(263)[257:263] == b'ustar\0' else 1)" "$T/full.tar"
D=$T/dst
vmdr-import -r "$D" "$T/full.tar" > "$T/out" 2> "$T/err"; st=$?
tap_is "import into a location that is no repository yet" \
  "$st $(sed 's/, [0-9.]* MiB stored$/, N MiB stored/' "$T/out")" "0 2 snapshots imported (0 already there), N MiB stored"
tap_is "... created with the chunking of the bundle, and said so" "$(cat "$T/err")" \
  "vmdr-import: warning: created the repository '$T/dst' with the chunking of the bundle"
tap_is "... lists what the source lists" "$(vmdr-ls -r "$D")" "$(vmdr-ls -r "$S")"
tap_ok "... verifies" vmdr-verify -q -r "$D"
tap_ok "... restores the changed disk equal" restored "$D" "$s2" "$T/a2"
tap_ok "... and the first with its memory image equal" restored "$D" "$s1" "$T/a" "$T/mem"
vmdr-import -r "$D" "$T/full.tar" > "$T/out"; st=$?
tap_is "importing it again stores nothing" "$st $(cat "$T/out")" "0 0 snapshots imported (2 already there), 0 B stored"

# --- an incremental bundle
cp --sparse=always "$T/a2" "$T/a3"
dd if=/dev/urandom of="$T/a3" bs=64K count=3 seek=300 conv=notrunc status=none
s3=$(repo-image put "$S" web vda="$T/a3") || tap_bail put
vmdr-export -q -r "$S" --since "$s2" web@latest -o "$T/inc.tar" --json > "$T/j"; st=$?
tap_is "export --since: one snapshot" "$st $(js "$T/j" 'd["snapshots"][0], d["base"]')" "0 ('$s3', '$s2')"
size=$(stat -c %s "$T/inc.tar")
tap_ok "... about what changed: $size bytes for 192 KiB" test "$size" -gt $((192 << 10)) -a "$size" -lt $((320 << 10))
vmdr-import -q -r "$D" "$T/inc.tar"; st=$?
tap_is "applies on top of the base" "$st $(ids "$D")" "0 $s1 $s2 $s3"
tap_ok "... verifies" vmdr-verify -q -r "$D"
tap_ok "... restores equal" restored "$D" "$s3" "$T/a3"
s4=$(repo-image put "$S" web vda="$T/a3") || tap_bail put
vmdr-export -q -r "$S" --since "$s3" "$s4" -o "$T/same.tar" --json > "$T/j"
vmdr-import -q -r "$D" "$T/same.tar"; st=$?
tap_is "an incremental of an unchanged disk holds no blob, and applies" \
  "$(js "$T/j" 'd["blobs"]') $st $(ids "$D" | wc -w)" "0 0 4"

E=$T/partial
vmdr-export -q -r "$S" "$s1" -o "$T/s1.tar" && vmdr-import -q -r "$E" "$T/s1.tar" || tap_bail "cannot import s1"
vmdr-import -r "$E" "$T/inc.tar" > "$T/out" 2> "$T/err"; st=$?
tap_is "without its base: refused, exit 1" "$st $(wc -c < "$T/out")" "1 0"
tap_is "... in one line that names the base" "$(cat "$T/err")" \
  "vmdr-import: cannot import '$T/inc.tar': the bundle applies on top of snapshot $s2, which the repository does not hold: import the bundle that has it first"
tap_is "... nothing changed" "$(ids "$E")" "$s1"
tap_is "into no repository at all: refused too, nothing created" \
  "$(errline vmdr-import -r "$T/none" "$T/inc.tar"; [ -e "$T/none" ] && echo created)" \
  "vmdr-import: the bundle applies on top of snapshot $s2, and '$T/none' is no repository yet: import the bundle that has it first"

# --- through a pipe, with memory bounded: a bundle of 48 MiB of new data
head -c $((48 << 20)) /dev/urandom > "$T/big"
sb=$(repo-image put "$S" big vda="$T/big") || tap_bail put
vmdr-init -q -r "$T/piped" --pack-size 1M
# RSS of a command; without meson's MALLOC_PERTURB_, which writes every byte
# malloc hands out and so counts what is reserved rather than used.
rss() { env -u MALLOC_PERTURB_ python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:]).returncode
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(r)' "$@"; }
rss "$T/rss.out" vmdr-export -r "$S" big@latest -o - | rss "$T/rss.in" vmdr-import -q -r "$T/piped" -
st="${PIPESTATUS[*]}"
tap_is "export -o - | import -: both exit 0" "$st" "0 0"
mkdir "$T/o2"
tap_ok "... the snapshot restores equal" sh -c "vmdr-restore -q -r '$T/piped' big@latest -o '$T/o2' && cmp '$T/big' '$T/o2/big-vda.raw'"
# Bounded: 44 MiB more data cost less than 16 MiB more memory, either end
# (the heap peaks at about 13 MiB; the rest is the allocator's arenas).
vmdr-init -q -r "$T/piped-small" --pack-size 1M
rss "$T/rss.out0" vmdr-export -r "$S" "$s1" -o - | rss "$T/rss.in0" vmdr-import -q -r "$T/piped-small" -
out0=$(cat "$T/rss.out0") in0=$(cat "$T/rss.in0") out1=$(cat "$T/rss.out") in1=$(cat "$T/rss.in")
diag "max RSS in KiB: export $out0 -> $out1, import $in0 -> $in1, from a 4 MiB bundle to a 48 MiB one"
# (grep reads it all: with pipefail, -q would kill ldd with SIGPIPE at random)
if ldd "$(command -v vmdr-import)" | grep libasan > /dev/null; then
  tap_skip "memory stays bounded" "sanitizer build: its allocator keeps what is freed"
else
  tap_ok "memory stays bounded: export +$(((out1 - out0) >> 10)) MiB, import +$(((in1 - in0) >> 10)) MiB for 12 times the data" \
    test $((out1 - out0)) -lt $((16 << 10)) -a $((in1 - in0)) -lt $((16 << 10))
fi

# --- zstd
vmdr-export -q -r "$S" --zstd "$s1" "$s2" -o "$T/z.tar.zst"
tap_is "--zstd writes a zstd stream" "$(head -c 4 "$T/z.tar.zst" | od -An -tx1 | tr -d ' ')" "28b52ffd"
tap_ok "... that zstd reads whole" zstd -q -t "$T/z.tar.zst"
vmdr-import -q -r "$T/z" "$T/z.tar.zst"; st=$?
tap_is "... and vmdr-import too" "$st $(ids "$T/z")" "0 $s1 $s2"
tap_ok "... restores equal" restored "$T/z" "$s2" "$T/a2"
# Blob encodings (byte 5 of a blob: 0 raw, 1 zstd): a plain bundle keeps
# the packs' compressed blobs, a zstd bundle carries the same blobs raw.
encodings () {   # TAR on stdin: "NAMES RAW ZSTD" of its blob entries
  python3 -c '
import sys, tarfile
n = raw = z = 0
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as t:
    for m in t:
        if m.name.startswith("blobs/"):
            b = t.extractfile(m).read(6); n += 1
            raw += b[5] == 0; z += b[5] == 1
print(n, raw, z)'
}
vmdr-export -q -r "$S" "$s1" "$s2" -o "$T/pz.tar"
read -r pn praw pz < <(encodings < "$T/pz.tar")
read -r zn zraw zz < <(zstd -q -dc "$T/z.tar.zst" | encodings)
tap_ok "a plain bundle's blobs are compressed ($pz of $pn), a zstd bundle's raw ($zraw of $zn)" \
  test "$pn" -gt 0 -a "$pz" -gt 0 -a "$zn" = "$pn" -a "$zraw" = "$zn" -a "$zz" = 0
vmdr-export -q -r "$S" "$s1" -o - | zstd -q -c | vmdr-import -q -r "$T/z2" -; st="${PIPESTATUS[*]}"
tap_is "a bundle compressed by zstd(1) on the way imports too" "$st $(ids "$T/z2")" "0 0 0 $s1"

# --- refusals that are not about hostile bytes
vmdr-init -q -r "$T/k128" --chunk-size 128K
tap_is "a repository with other chunking is refused" "$(errline vmdr-import -r "$T/k128" "$T/s1.tar")" \
  "vmdr-import: '$T/k128' has other chunking than the bundle (the bundle's chunk size is 65536, the repository's 131072): import into a new repository"
tap_is "no snapshot: usage, exit 2" "$(vmdr-export -r "$S" -o "$T/x.tar" 2>/dev/null; echo $?)" 2
tap_is "no output: usage, exit 2" "$(vmdr-export -r "$S" web@latest 2>/dev/null; echo $?)" 2
tap_is "an unknown snapshot: exit 1, no file left" \
  "$(errline vmdr-export -r "$S" nosuch@latest -o "$T/x.tar"; ls "$T" | grep -c '^x\.tar')" \
  "vmdr-export: no snapshot 'nosuch@latest' in the repository
0"
vmdr-export -r "$S" big@latest -o - > /dev/full 2> "$T/err"; st=$?
tap_is "an output that fails: exit 1 and one line" "$st $(cat "$T/err")" \
  "1 vmdr-export: cannot export: cannot write the bundle: No space left on device"
vmdr-export -r "$S" big@latest -o - 2> "$T/err" | head -c 1000 > /dev/null; st=${PIPESTATUS[0]}
tap_is "a reader gone: exit 1 and one line" "$st $(cat "$T/err")" \
  "1 vmdr-export: cannot export: cannot write the bundle: Broken pipe"
vmdr-export -r "$S" big@latest -o "$T/nodir/x.tar" 2> "$T/err"; st=$?
tap_is "an output that cannot be created: exit 1 and one line" "$st $(cat "$T/err")" \
  "1 vmdr-export: cannot create '$T/nodir/x.tar': No such file or directory"

# --- the hostile corpus: each refused in one line, nothing changed or written
H=$T/hostile
vmdr-init -q -r "$H"
head -c $((256 << 10)) /dev/urandom > "$T/small"
head -c $((200 << 10)) /dev/zero | tr '\0' 'v' >> "$T/small"
sh=$(repo-image put "$S" small vda="$T/small") || tap_bail put
vmdr-export -q -r "$S" "$sh" -o "$T/good.tar" || tap_bail "cannot export the corpus seed"
repo-image put "$H" keep vda="$T/small" > /dev/null || tap_bail put
mkdir "$T/corpus" "$T/cwd"
python3 "$VMDR_SOURCE_ROOT/tests/cli/bundle-corpus.py" "$T/good.tar" "$T/corpus" "$T/escaped" ||
  tap_bail "cannot build the corpus"
state() {  # what a reader of H sees: snapshots and every object but packs
  (cd "$H" && find . -path ./data -prune -o -path ./index -prune -o -path ./tmp -prune -o -type f -print | sort
   vmdr-ls -r "$H")
}
before=$(state)
matches() { python3 -c 'import re, sys; sys.exit(0 if re.fullmatch(re.escape(sys.argv[1]) + sys.argv[2], sys.argv[3]) else 1)' "$@"; }
while IFS=$'\t' read -r case why; do
  f=$T/corpus/$case.tar
  touch "$T/mark"
  (cd "$T/cwd" && exec vmdr-import -r "$H" "$f") > "$T/out" 2> "$T/err"; st=$?
  line=$(cat "$T/err")
  if [ "$st" = 1 ] && [ "$(wc -l < "$T/err")" = 1 ] && [ ! -s "$T/out" ] &&
     matches "vmdr-import: cannot import '$f': " "$why" "$line"; then
    _tap_result 0 "hostile '$case': exit 1, one line: ${line#*: cannot import * }"
  else
    _tap_result 1 "hostile '$case': exit 1, one line" "exit $st" "got:  $line" "want: $why"
  fi
  now=$(state)
  # written since the mark: files inside H, and out and err; nothing else
  written=$(find "$T" -path "$H" -prune -o -newer "$T/mark" -type f -print | grep -v "^$T/\(out\|err\)$")
  [ "$now" = "$before" ] && [ -z "$(ls -A "$T/cwd")" ] && [ -z "$written" ] &&
    [ ! -e "$T/escaped" ] && [ ! -e "$T/pwned" ] && [ ! -e "$(dirname "$T")/pwned" ]
  _tap_result $? "hostile '$case': nothing visible, nothing written outside the repository" \
    "$(diff <(echo "$before") <(echo "$now"))" "cwd: $(ls -A "$T/cwd")" "written: $written"
done < "$T/corpus/cases.tsv"
vmdr-import -r "$H" --json "$T/corpus/duplicate.tar" > "$T/j" 2>/dev/null; st=$?
tap_is "--json says a refusal too" "$st $(js "$T/j" 'd["ok"], d["error"].endswith("appears twice")')" "1 (False, True)"
zstd -q -c "$T/good.tar" | head -c 3000 > "$T/zcut.tar.zst"
tap_ok "a zstd stream cut short: refused" sh -c "! vmdr-import -r '$H' '$T/zcut.tar.zst' 2>&1 | grep -v '^vmdr-import: cannot import'"
tap_is "... nothing visible" "$(state)" "$before"
tap_ok "the repository still verifies after the whole corpus" vmdr-verify -q -r "$H"
vmdr-import -q -r "$H" "$T/good.tar"; st=$?
tap_is "and the good bundle imports after it" "$st $(ids "$H" | wc -w)" "0 2"

# --- killed half way: nothing visible; a rerun completes
vmdr-export -q -r "$S" big@latest -o "$T/big.tar" || tap_bail "cannot export"
K=$T/killed
vmdr-init -q -r "$K" --pack-size 1M
mkfifo "$T/fifo"
(head -c $((24 << 20)) "$T/big.tar"; exec sleep 60) > "$T/fifo" & feeder=$!
at_exit "kill $feeder 2>/dev/null"
vmdr-import -q -r "$K" - < "$T/fifo" & pid=$!
wait_until 30 sh -c "[ \$(find '$K/data' -type f | wc -l) -ge 8 ]"
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
kill "$feeder" 2>/dev/null; wait "$feeder" 2>/dev/null
tap_is "killed half way: $(find "$K/data" -type f | wc -l) packs stored, no snapshot visible" "$(ids "$K")" ""
vmdr-import -r "$K" "$T/big.tar" > "$T/out" 2>&1; st=$?
tap_is "the rerun completes" "$st $(ids "$K")" "0 $sb"
tap_ok "... the snapshot verifies" vmdr-verify -q -r "$K"
mkdir "$T/o3"
tap_ok "... and restores equal" sh -c "vmdr-restore -q -r '$K' big@latest -o '$T/o3' && cmp '$T/big' '$T/o3/big-vda.raw'"

tap_done
