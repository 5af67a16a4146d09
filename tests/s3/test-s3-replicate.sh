#!/bin/bash
# vmdr-replicate to and from S3 (radosgw): local -> S3 -> a second local
# repository, every snapshot equal; an incremental sends what changed; a run
# killed half way, rerun, completes and sends less; through a proxy that
# spoils every second connection it completes and verifies; against a
# server that never recovers it fails with one line, and a rerun later
# completes.
#
# usage: test-s3-replicate.sh PATH/TO/s3-smoke
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/ceph-lib.sh"

S3=${1:?usage: test-s3-replicate.sh S3-SMOKE}
PROXY=$(dirname "$0")/fault-proxy.py
need_cmd repo-image vmdr-init vmdr-ls vmdr-verify vmdr-restore vmdr-replicate python3
use_ceph

B=vmdr-repl-$$-$RANDOM
R=s3://$B/dr
RGW_PORT=${AWS_ENDPOINT_URL##*:}
s3() { timeout 120 "$S3" "$@"; }
cleanup_bucket() {
  local line
  s3 ls "$B" "" 1000 2>/dev/null | while IFS= read -r line; do
    case "$line" in pages=*) ;; *) s3 rm "$B" "${line% *}" >/dev/null 2>&1 ;; esac
  done
  s3 rb "$B" >/dev/null 2>&1
  return 0
}
at_exit cleanup_bucket
js() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
ids() { vmdr-ls -r "$1" --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)["snapshots"]))'; }

python3 - "$T" <<'PY'
import random, sys
rnd = random.Random(5)
d = sys.argv[1]
with open(d + "/a", "wb") as f:
    f.truncate(32 << 20); f.write(rnd.randbytes(4 << 20)); f.seek(16 << 20); f.write(rnd.randbytes(2 << 20))
open(d + "/mem", "wb").write(rnd.randbytes(2 << 20))
open(d + "/big", "wb").write(rnd.randbytes(48 << 20))
PY
L=$T/local
vmdr-init -q -r "$L"
w1=$(repo-image put "$L" web vda="$T/a" memory="$T/mem") || tap_bail put
cp --sparse=always "$T/a" "$T/a2"
dd if=/dev/urandom of="$T/a2" bs=64K count=2 seek=50 conv=notrunc status=none
w2=$(repo-image put "$L" web vda="$T/a2") || tap_bail put

tap_ok "create the bucket" s3 mb "$B"
vmdr-replicate -q -r "$L" --to "$R" -j 4 --json > "$T/j"; st=$?
tap_is "replicate local -> S3 (the repository is created)" "$st $(js "$T/j" 'd["snapshots_copied"]')" "0 2"
tap_is "S3 lists the same snapshots" "$(ids "$R")" "$(ids "$L")"
tap_ok "and verifies" vmdr-verify -q -j 4 -r "$R"
vmdr-replicate -q -r "$R" --to "$T/back" --json > "$T/j"; st=$?
tap_is "replicate S3 -> a second local repository" "$st $(js "$T/j" 'd["snapshots_copied"]')" "0 2"
mkdir -p "$T/o"
vmdr-restore -q -r "$T/back" "$w2" -o "$T/o"
tap_ok "a snapshot brought back equals its image" cmp "$T/a2" "$T/o/web-vda.raw"
rm -f "$T/o"/*
vmdr-restore -q -r "$T/back" "$w1" -o "$T/o" --with-memory
tap_ok "... and so does the memory image" cmp "$T/mem" "$T/o/web.save"
rm -f "$T/o"/*

dd if=/dev/urandom of="$T/a2" bs=64K count=3 seek=200 conv=notrunc status=none
repo-image put "$L" web vda="$T/a2" > /dev/null || tap_bail put
vmdr-replicate -q -r "$L" --to "$R" --json > "$T/j"
sent=$(js "$T/j" 'd["bytes_sent"]')
tap_ok "an incremental sends about the 192 KiB that changed ($sent bytes)" \
  test "$sent" -gt $((192 << 10)) -a "$sent" -lt $((192 << 10 + 64 << 10))

# --- killed half way (held back by --bwlimit so that the kill lands inside)
repo-image put "$L" big vda="$T/big" > /dev/null || tap_bail put
packs() { "$S3" ls "$B" dr/index/ 0 | grep -vc '^pages='; }
before=$(packs)
vmdr-replicate -q -r "$L" --to "$R" big -j 1 --bwlimit 16M & pid=$!
wait_until 30 sh -c "[ \$('$S3' ls '$B' dr/index/ 0 | grep -vc '^pages=') -ge $((before + 2)) ]"
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
tap_is "killed half way: nothing of it is listed" "$(ids "$R" | grep -c big/)" 0
vmdr-replicate -q -r "$L" --to "$R" big --json > "$T/j"; st=$?
resent=$(js "$T/j" 'd["bytes_sent"]')
tap_is "the rerun completes" "$st $(ids "$R" | grep -c big/)" "0 1"
tap_ok "... sending less than all of it again ($resent of about $((48 << 20)) bytes)" \
  test "$resent" -lt $((40 << 20))

# --- faults: every second new connection spoiled (SlowDown, dropped, 500, cut)
start_proxy() {   # MODE: sets PROXY_URL, PROXY_LOG, PROXY_PID
  rm -f "$T/proxy.port"
  PROXY_LOG=$T/proxy-${1%%:*}.log
  : > "$PROXY_LOG"
  python3 "$PROXY" "$RGW_PORT" "$T/proxy.port" "$PROXY_LOG" "$1" & PROXY_PID=$!
  at_exit "kill $PROXY_PID 2>/dev/null"
  wait_until 5 test -s "$T/proxy.port" || tap_bail "the fault proxy did not start"
  PROXY_URL=http://127.0.0.1:$(cat "$T/proxy.port")
}
dd if=/dev/urandom of="$T/a2" bs=64K count=40 seek=300 conv=notrunc status=none
w4=$(repo-image put "$L" web vda="$T/a2") || tap_bail put
start_proxy every:2
AWS_ENDPOINT_URL=$PROXY_URL vmdr-replicate -q -r "$L" --to "$R" -j 4 web > /dev/null 2> "$T/err"; st=$?
tap_is "replicate through a proxy spoiling every second connection" "$st" 0
tap_ok "... which did spoil some ($(sort "$PROXY_LOG" | uniq -c | tr -s ' \n' ' '))" test -s "$PROXY_LOG"
tap_ok "... and S3 verifies" vmdr-verify -q -j 4 -r "$R" "$w4"
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null

dd if=/dev/urandom of="$T/a2" bs=64K count=4 seek=400 conv=notrunc status=none
w5=$(repo-image put "$L" web vda="$T/a2") || tap_bail put
start_proxy always
VMDR_S3_RETRY_MAX=3 AWS_ENDPOINT_URL=$PROXY_URL vmdr-replicate -q -r "$L" --to "$R" web \
  > /dev/null 2> "$T/err"; st=$?
tap_is "a server that never recovers: exit 1, one line" "$st $(wc -l < "$T/err")" "1 1"
tap_ok "... naming the S3 error" grep -q "SlowDown" "$T/err"
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null
tap_is "... and the snapshot is not at S3" "$(ids "$R" | grep -c "$w5")" 0
tap_ok "a rerun later completes" vmdr-replicate -q -r "$L" --to "$R" web
tap_ok "... and verifies" vmdr-verify -q -r "$R" "$w5"
vmdr-restore -q -r "$R" "$w5" -o "$T/o"
tap_ok "... and restores equal" cmp "$T/a2" "$T/o/web-vda.raw"

tap_done
