#!/bin/bash
# vmdr-replicate local -> local: every snapshot arrives whole and restores
# equal; a rerun sends nothing; an incremental sends about what changed;
# domain and --since filters; pruned at the source stays at the
# destination; a damaged source snapshot is skipped, named, never visible;
# a run killed half way, rerun, completes without sending it all again.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd repo-image vmdr-init vmdr-replicate vmdr-ls vmdr-verify vmdr-restore vmdr-prune python3
prom() { python3 "$HARNESS_DIR/promparse.py" "$@"; }

S=$T/src
vmdr-init -q -r "$S"
python3 - "$T" <<'PY'
import random, sys
rnd = random.Random(3)
d = sys.argv[1]
with open(d + "/a", "wb") as f:
    f.truncate(32 << 20); f.write(rnd.randbytes(6 << 20)); f.seek(20 << 20); f.write(rnd.randbytes(2 << 20))
open(d + "/mem", "wb").write(rnd.randbytes(3 << 20))
with open(d + "/b", "wb") as f:
    f.truncate(8 << 20); f.write(rnd.randbytes(1 << 20))
PY
js() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
ids() { vmdr-ls -r "$1" --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)["snapshots"]))'; }
w1=$(repo-image put "$S" web vda="$T/a" memory="$T/mem") || tap_bail put
cp --sparse=always "$T/a" "$T/a2"
dd if=/dev/urandom of="$T/a2" bs=64K count=4 seek=100 conv=notrunc status=none
w2=$(repo-image put "$S" web vda="$T/a2") || tap_bail put
d1=$(repo-image put "$S" db vda="$T/b") || tap_bail put

D=$T/dst
vmdr-replicate -q -r "$S" --to "$D" --json --metrics-file "$T/r.prom" > "$T/j"; st=$?
tap_is "replicate into a new repository" "$st $(js "$T/j" 'd["snapshots_copied"]')" "0 3"
tap_ok "--metrics-file: valid Prometheus text" prom "$T/r.prom"
tap_is "... last_result 0, 3 copied, none failed, the bytes sent of --json" \
  "$(prom "$T/r.prom" vmdr_replicate_last_result "repo=$S" "destination=$D") $(prom "$T/r.prom" vmdr_replicate_snapshots_copied) $(prom "$T/r.prom" vmdr_replicate_snapshots_failed) $(prom "$T/r.prom" vmdr_replicate_bytes_sent)" \
  "0 3 0 $(js "$T/j" 'd["bytes_sent"]')"
tap_is "the destination lists the same snapshots" "$(ids "$D")" "$(ids "$S")"
tap_ok "and verifies" vmdr-verify -q -r "$D"
mkdir -p "$T/o"
vmdr-restore -q -r "$D" "$w2" -o "$T/o" --with-memory 2>/dev/null ||
  vmdr-restore -q -r "$D" "$w2" -o "$T/o"
tap_ok "a snapshot restored from the destination equals its image" cmp "$T/a2" "$T/o/web-vda.raw"
rm -f "$T/o"/*
vmdr-restore -q -r "$D" "$w1" -o "$T/o" --with-memory
tap_ok "... and the memory image comes along" cmp "$T/mem" "$T/o/web.save"
rm -f "$T/o"/*
sent_full=$(js "$T/j" 'd["bytes_sent"]')

vmdr-replicate -q -r "$S" --to "$D" --json > "$T/j"
tap_is "a rerun copies and sends nothing" "$(js "$T/j" 'd["snapshots_copied"], d["snapshots_present"], d["bytes_sent"]')" "(0, 3, 0)"

# librados and librbd load at the first RBD connection, not at every start
LD_DEBUG=libs vmdr-replicate -q -r "$S" --to "$D" > /dev/null 2> "$T/ld"
tap_is "a local copy loads no Ceph library" "$(grep -c -E 'librados|librbd' "$T/ld")" 0
mkdir -p "$T/nolib"
: > "$T/nolib/librados.so.2"
: > "$T/ceph.conf"
LD_LIBRARY_PATH=$T/nolib vmdr-replicate -r "$S" --to "rbd://vmdr?conf=$T/ceph.conf" \
  > /dev/null 2> "$T/err"; st=$?
tap_is "Ceph libraries that cannot load: exit 1, one line that says so" \
  "$st $(wc -l < "$T/err") $(grep -c 'cannot load the Ceph libraries' "$T/err")" "1 1 1"
diag "$(cat "$T/err")"

dd if=/dev/urandom of="$T/a2" bs=64K count=3 seek=300 conv=notrunc status=none
w3=$(repo-image put "$S" web vda="$T/a2") || tap_bail put
vmdr-replicate -q -r "$S" --to "$D" --json > "$T/j"
sent=$(js "$T/j" 'd["bytes_sent"]')
diag "incremental of 192 KiB of new data: $sent bytes sent (the full copy sent $sent_full)"
tap_ok "an incremental sends about what changed ($sent bytes for 192 KiB)" \
  test "$sent" -gt $((192 << 10)) -a "$sent" -lt $((192 << 10 + 64 << 10))

vmdr-replicate -q -r "$S" --to "$T/dst-db" db
tap_is "a domain filter copies only that domain" "$(ids "$T/dst-db")" "$d1"
vmdr-replicate -q -r "$S" --to "$T/dst-since" --since "${w2#web/}" web
tap_is "--since copies the snapshots at or after it" "$(ids "$T/dst-since")" "$w2 $w3"

vmdr-prune -q -r "$S" --keep-last 1 --grace 0
vmdr-replicate -q -r "$S" --to "$D"
tap_is "snapshots pruned at the source stay at the destination" "$(ids "$D" | wc -w)" 4
tap_ok "... and still verify" vmdr-verify -q -r "$D"

# --prune-dst: the destination's own rules, applied after the copy
vmdr-replicate -q -r "$S" --to "$D" --prune-dst --keep-last 2 web --json > "$T/j"; st=$?
tap_is "--prune-dst --keep-last 2 web: the oldest web snapshot goes at DST, db stays" \
  "$st $(js "$T/j" 'd["pruned"]' | tr -d "[]',") $(ids "$D")" "0 $w1 $d1 $w2 $w3"
tap_ok "... and DST verifies" vmdr-verify -q -r "$D"
vmdr-replicate -r "$S" --to "$D" --keep-last 2 >/dev/null 2>&1; st=$?
tap_is "a --keep rule without --prune-dst: exit 2" "$st" 2
vmdr-replicate -r "$S" --to "$D" --prune-dst >/dev/null 2>&1; st=$?
tap_is "--prune-dst without a rule: exit 2" "$st" 2

errline() { "$@" 2>&1 >/dev/null | head -1; }
vmdr-init -q -r "$T/other" --chunk-size 128K
tap_is "a destination with other chunking is refused" \
  "$(errline vmdr-replicate -r "$S" --to "$T/other")" \
  "vmdr-replicate: '$T/other' has other chunking than '$S' (digest, chunk size or fanout): replicate into a new repository"
vmdr-replicate -r "$S" --to "$S" >/dev/null 2>&1; st=$?
tap_is "the same repository twice: exit 2" "$st" 2

# --bwlimit: a lower bound on time is what a limit guarantees
head -c $((2 << 20)) /dev/urandom > "$T/c"
repo-image put "$S" bw vda="$T/c" > /dev/null
start=$(date +%s.%N)
vmdr-replicate -q -r "$S" --to "$T/dst-bw" --bwlimit 1M bw
took=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$start" "$(date +%s.%N)")
tap_ok "--bwlimit 1M holds 2 MiB back for over 1.5 s (took $took s)" python3 -c "import sys; sys.exit(0 if $took > 1.5 else 1)"

# A damaged chunk at the source: that snapshot is skipped and named.
python3 - "$S" "$T/b" <<'PY' || tap_bail "cannot damage a chunk"
import glob, sys
want = open(sys.argv[2], "rb").read()[65536:131072]
for p in glob.glob(sys.argv[1] + "/data/*/*"):
    b = bytearray(open(p, "rb").read()); at = b.find(want)
    if at >= 0:
        b[at + 7] ^= 0xff; open(p, "wb").write(b); sys.exit(0)
sys.exit(1)
PY
# The previous metrics file says when the last success was: a failed run keeps it.
cat > "$T/bad.prom" <<PROM
# HELP vmdr_replicate_last_success_timestamp_seconds written by hand
# TYPE vmdr_replicate_last_success_timestamp_seconds gauge
vmdr_replicate_last_success_timestamp_seconds{repo="$S",destination="$T/dst-bad"} 1.7e+09
vmdr_replicate_last_success_timestamp_seconds{repo="$S",destination="elsewhere"} 1234
PROM
vmdr-replicate -q -r "$S" --to "$T/dst-bad" --metrics-file "$T/bad.prom" > /dev/null 2> "$T/err"; st=$?
tap_is "a damaged source snapshot: exit 1" "$st" 1
tap_ok "... the metrics of the failed run are written, valid" prom "$T/bad.prom"
tap_is "... last_result 1, one snapshot failed, the others copied" \
  "$(prom "$T/bad.prom" vmdr_replicate_last_result) $(prom "$T/bad.prom" vmdr_replicate_snapshots_failed) $(prom "$T/bad.prom" vmdr_replicate_snapshots_copied)" \
  "1 1 $(($(ids "$S" | wc -w) - 1))"
tap_is "... the last success carried over from the previous file, only for this run's labels" \
  "$(prom "$T/bad.prom" vmdr_replicate_last_success_timestamp_seconds "destination=$T/dst-bad") $(prom --count "$T/bad.prom" vmdr_replicate_last_success_timestamp_seconds)" \
  "1700000000 1"
tap_is "... named in one line" "$(cat "$T/err")" \
  "vmdr-replicate: $d1: not copied: damaged at the source (checksum mismatch or malformed); run vmdr-verify"
tap_ok "... never visible at the destination, the others are" \
  sh -c "vmdr-ls -r '$T/dst-bad' | grep -q '^web/' && ! vmdr-ls -r '$T/dst-bad' | grep -q '^db/'"
before=$(ids "$T/dst-bad")
vmdr-replicate -q -r "$S" --to "$T/dst-bad" --prune-dst --keep-last 1 > /dev/null 2>&1; st=$?
tap_is "... and with --prune-dst, a copy that failed prunes nothing" "$st $(ids "$T/dst-bad")" "1 $before"

# SIGKILL half way; the rerun completes and does not send it all again.
head -c $((96 << 20)) /dev/urandom > "$T/big"
repo-image put "$S" big vda="$T/big" > /dev/null
K=$T/dst-kill
vmdr-init -q -r "$K"
# --bwlimit keeps the run going for seconds: the kill lands half way.  A
# pack counts once its index is written (a pack file alone may still be
# being written, and a rerun sends it again): wait for three indexes.
vmdr-replicate -q -r "$S" --to "$K" big -j 1 --bwlimit 32M & pid=$!
wait_until 30 sh -c "[ \$(find '$K/index' -type f | wc -l) -ge 3 ]"
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
tap_is "killed half way: the snapshot is not visible" "$(ids "$K")" ""
vmdr-replicate -q -r "$S" --to "$K" big --json > "$T/j"; st=$?
resent=$(js "$T/j" 'd["bytes_sent"]')
diag "the rerun sent $resent bytes of about $((96 << 20))"
tap_is "the rerun completes" "$st $(ids "$K" | wc -w)" "0 1"
tap_ok "... sending at least 32 MiB less than all ($resent bytes)" test "$resent" -lt $((64 << 20))
vmdr-restore -q -r "$K" big@latest -o "$T/o"
tap_ok "... and the snapshot restores equal" cmp "$T/big" "$T/o/big-vda.raw"

# --- group blobs: copied whole into a version 2 repository, one chunk at a
# time into a version 1 one (which cannot hold them)
GS=$T/gsrc
vmdr-init -q -r "$GS"
cat /usr/bin/* 2>/dev/null | head -c $((12 << 20)) > "$T/g.raw"
gid=$(repo-image put "$GS" grp vda="$T/g.raw") || tap_bail "put compressible data"
vmdr-replicate -q -r "$GS" --to "$T/gdst"
tap_ok "groups replicate: the copy verifies" vmdr-verify -q -r "$T/gdst"
tap_ok "... restores equal" sh -c "repo-image get '$T/gdst' '$gid' vda '$T/g1.out' && cmp '$T/g.raw' '$T/g1.out'"
tap_is "... and takes no more room than the source's data" \
  "$(( $(du -sb "$T/gdst/data" | cut -f1) <= $(du -sb "$GS/data" | cut -f1) ))" 1
vmdr-init -q -r "$T/v1" --group-size 0
python3 - "$T/v1/config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["version"] = 1; del c["group_size"]
json.dump(c, open(sys.argv[1], "w"))
PY
vmdr-replicate -q -r "$GS" --to "$T/v1"; st=$?
tap_is "into a version 1 repository: done" "$st" 0
tap_is "... no group blob in it" \
  "$(python3 -c 'import glob,sys; print(max(open(p,"rb").read(6)[5] for p in glob.glob(sys.argv[1]+"/data/*/*")))' "$T/v1")" 1
tap_ok "... verifies and restores equal" sh -c "vmdr-verify -q -r '$T/v1' && repo-image get '$T/v1' '$gid' vda '$T/g2.out' && cmp '$T/g.raw' '$T/g2.out'"

tap_done
