#!/bin/bash
# The S3 repository backend against radosgw: every tool on s3://BUCKET/PREFIX
# (init, snapshots put through the library, ls, verify, restore, prune with
# GC), the backend's get at the edges, damage found, multipart uploads, stale
# uploads swept, profiles from the AWS files, virtual-host style, retries
# through a proxy that spoils connections or loses the answer to an exclusive
# put, and the failures a user meets (missing bucket, wrong secret,
# unreachable endpoint, no credentials) as one clear line and exit 1, the
# secret never in argv nor in any message.
#
# usage: test-s3-backend.sh PATH/TO/s3-smoke
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/ceph-lib.sh"

S3=${1:?usage: test-s3-backend.sh S3-SMOKE}
PROXY=$(dirname "$0")/fault-proxy.py
need_cmd repo-image vmdr-init vmdr-ls vmdr-verify vmdr-prune vmdr-restore qemu-img python3 ps
use_ceph

B=vmdr-backend-$$-$RANDOM
R=s3://$B/site-a/vmdr
O=$T/out
L=$T/logs           # every tool's output, searched for the secret at the end
mkdir -p "$O" "$L"
SECRET=$AWS_SECRET_ACCESS_KEY
RGW_PORT=${AWS_ENDPOINT_URL##*:}
s3() { timeout 120 "$S3" "$@"; }

# Best effort, for a run that stopped halfway on a shared cluster.
cleanup_bucket() {
  local line
  s3 sweep "s3://$B" 60 >/dev/null 2>&1
  s3 ls "$B" "" 1000 2>/dev/null | while IFS= read -r line; do
    case "$line" in pages=*) ;; *) s3 rm "$B" "${line% *}" >/dev/null 2>&1 ;; esac
  done
  s3 rb "$B" >/dev/null 2>&1
  return 0
}
at_exit cleanup_bucket

# fails NAME WANT CMD...: CMD exits 1 with exactly one line WANT on stderr
# (WANT a glob) and its output is kept for the secret check.
n_fail=0
fails() {
  local name=$1 want=$2 st err; shift 2
  n_fail=$((n_fail + 1))
  "$@" > "$L/fail$n_fail.out" 2> "$L/fail$n_fail.err"; st=$?
  err=$(cat "$L/fail$n_fail.err")
  # shellcheck disable=SC2053
  [ "$st" = 1 ] && [ "$(wc -l < "$L/fail$n_fail.err")" = 1 ] && [[ $err == $want ]]
  _tap_result $? "$name" "command: $*" "exit: $st (want 1)" "stderr: $err" "want:   $want"
}

keys() { s3 ls "$B" "$1" 0 | grep -v '^pages=' | cut -d' ' -f1; }

# --- images: vda1 with data at three places and holes, vda2 a changed copy,
# vdb random, vda3 unrelated to the others
python3 - "$T" <<'PY'
import random, sys
rnd = random.Random(21)
d = sys.argv[1]
with open(d + "/vda1", "wb") as f:
    f.truncate(48 << 20)
    for off, n in ((0, 2 << 20), (20 << 20, 3 << 20), ((48 << 20) - 65536, 65536)):
        f.seek(off); f.write(rnd.randbytes(n))
with open(d + "/vdb", "wb") as f:
    f.truncate(16 << 20); f.write(rnd.randbytes(6 << 20))
open(d + "/vda3", "wb").write(rnd.randbytes(6 << 20))
open(d + "/big", "wb").write(rnd.randbytes(24 << 20))
PY
cp --sparse=always "$T/vda1" "$T/vda2"
printf 'changed' | dd of="$T/vda2" bs=1 seek=$((21 << 20)) conv=notrunc status=none
printf 'more' | dd of="$T/vda2" bs=1 seek=$((30 << 20)) conv=notrunc status=none

# --- a repository under a prefix, two snapshots, every tool
tap_ok "create the bucket" s3 mb "$B"
tap_ok "vmdr-init -r s3://BUCKET/PREFIX" vmdr-init -q -r "$R"
tap_is "its config is the one object, under the prefix" "$(keys "")" "site-a/vmdr/config"
fails "a second vmdr-init: exit 1, one line" \
  "vmdr-init: '$R' is already a vmdr repository" vmdr-init -q -r "$R"
id1=$(repo-image put "$R" web vda="$T/vda1" 2>>"$L/put.err") || tap_bail "put 1"
sleep 0.01
id2=$(repo-image put "$R" web vda="$T/vda2" vdb="$T/vdb" -j 4 2>>"$L/put.err") || tap_bail "put 2"
vmdr-ls -r "$R" > "$L/ls.out" 2>&1
tap_is "vmdr-ls lists both snapshots" "$(tail -n +2 "$L/ls.out" | cut -d' ' -f1)" "$id1"$'\n'"$id2"
new2=$(vmdr-ls -r "$R" --json | python3 -c 'import json,sys; print([s for s in json.load(sys.stdin)["snapshots"] if s["id"] == sys.argv[1]][0]["disks"][0]["bytes_new"])' "$id2")
tap_ok "the changed image added only its changed chunks to vda ($new2 bytes)" test "$new2" -le $((4 * 65536 + 8192))
tap_ok "keys are stored under the prefix only" \
  sh -c "test -z \"\$('$S3' ls '$B' '' 0 | grep -v '^pages=' | grep -v '^site-a/vmdr/')\""
tap_ok "vmdr-verify: every chunk intact" vmdr-verify -q -r "$R"
vmdr-restore -q -r "$R" web@latest -o "$O" > "$L/restore.out" 2>&1
tap_is "vmdr-restore of the newest snapshot" "$?" 0
tap_ok "... vda equals the changed image" qemu-img compare -q -f raw -F raw "$T/vda2" "$O/web-vda.raw"
tap_ok "... vdb equals its source" qemu-img compare -q -f raw -F raw "$T/vdb" "$O/web-vdb.raw"
tap_ok "restore the first snapshot as qcow2 with 4 readers" \
  vmdr-restore -q -r "$R" "$id1" -o "$O" --format qcow2 -j 4 --name first
tap_ok "... it equals the first image" qemu-img compare -q -f raw -F qcow2 "$T/vda1" "$O/first-vda.qcow2"
rm -f "$O"/*

# --- damage: one byte of one pack changed in place, found by verify
pack=$(keys site-a/vmdr/data/ | head -n 1)
s3 --max $((256 << 20)) get "$B" "$pack" "$T/pack.good" || tap_bail "cannot read a pack"
python3 - "$T/pack.good" "$T/pack.bad" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0xff                  # one byte in the middle, flipped
open(sys.argv[2], "wb").write(b)
PY
s3 put "$B" "$pack" "$T/pack.bad" > /dev/null || tap_bail "cannot damage the pack"
vmdr-verify -r "$R" > "$L/verify-bad.out" 2> "$L/verify-bad.err"; st=$?
tap_is "verify finds the damaged pack: exit 1" "$st" 1
tap_ok "... and names a damaged snapshot" grep -q ': DAMAGED: ' "$L/verify-bad.out"
tap_ok "... the mark is visible to vmdr-ls" sh -c "vmdr-ls -r '$R' --json | grep -q '\"damaged\":true'"
s3 put "$B" "$pack" "$T/pack.good" > /dev/null || tap_bail "cannot repair the pack"
tap_ok "the pack put back: a full verify finds everything whole" vmdr-verify -q -r "$R"
tap_ok "... and clears the mark" sh -c "! vmdr-ls -r '$R' --json | grep -q '\"damaged\":true'"

# --- prune and GC: a third, unrelated snapshot; keep the last one
id3=$(repo-image put "$R" web vda="$T/vda3" 2>>"$L/put.err") || tap_bail "put 3"
n_packs=$(keys site-a/vmdr/data/ | wc -l)
vmdr-prune -r "$R" --keep-last 1 --grace 0 --json > "$L/prune.out" 2>&1
tap_is "vmdr-prune --keep-last 1 removes two snapshots and their packs" \
  "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["removed"]), d["gc"]["packs_deleted"] > 0, d["gc"]["bytes_deleted"] > 8000000)' "$L/prune.out")" \
  "2 True True"
tap_ok "fewer packs remain ($n_packs before, $(keys site-a/vmdr/data/ | wc -l) after)" \
  test "$(keys site-a/vmdr/data/ | wc -l)" -lt "$n_packs"
tap_is "vmdr-ls shows the one kept" "$(vmdr-ls -r "$R" | tail -n +2 | cut -d' ' -f1)" "$id3"
tap_ok "what remains verifies" vmdr-verify -q -r "$R"
tap_ok "... and restores" vmdr-restore -q -r "$R" web@latest -o "$O" --name kept
tap_ok "... equal to its image" cmp "$T/vda3" "$O/kept-vda.raw"
rm -f "$O"/*

# --- multipart: packs above a small threshold go up in 5 MiB parts
R2=s3://$B/mp
rgw_log=$CEPH_DIR/log/client.rgw.log
vmdr-init -q -r "$R2" || tap_bail "init $R2"
export VMDR_S3_MULTIPART_THRESHOLD=6M VMDR_S3_PART_SIZE=5M
idm=$(repo-image put "$R2" big vda="$T/big" -j 2 2>>"$L/put.err") || tap_bail "multipart put"
unset VMDR_S3_MULTIPART_THRESHOLD VMDR_S3_PART_SIZE
tap_ok "radosgw saw multipart uploads of the packs" \
  wait_until 5 grep -qE "\"POST /$B/mp/data/[0-9a-f]{2}/[0-9a-f]{64}\\?uploads= HTTP" "$rgw_log"
tap_ok "... in 5 MiB parts" \
  grep -qE "\"PUT /$B/mp/data/[0-9a-f]{2}/[0-9a-f]{64}\\?partNumber=3&uploadId=" "$rgw_log"
tap_is "... all completed: none left unfinished" "$(s3 mpu-ls "$B" mp/)" ""
tap_ok "a snapshot uploaded in parts verifies" vmdr-verify -q -r "$R2"
tap_ok "... and restores" vmdr-restore -q -r "$R2" "$idm" -o "$O"
tap_ok "... equal to its image" cmp "$T/big" "$O/big-vda.raw"
rm -f "$O"/*

# --- uploads left by a writer that died: invisible, aborted by the sweep
up=$(s3 mpu-init "$B" site-a/vmdr/data/00/left-by-a-dead-writer) || tap_bail "mpu-init"
s3 mpu-init "$B" elsewhere/not-ours > /dev/null || tap_bail "mpu-init"
tap_ok "an unfinished upload is not an object" sh -c "! '$S3' ls '$B' site-a/vmdr/data/00/ 0 | grep -q left-by"
vmdr-prune -q -r "$R" --keep-last 1 --grace 0 2>>"$L/prune.err"
tap_is "prune leaves a young upload alone (a writer may be at it)" \
  "$(s3 mpu-ls "$B" site-a/ | cut -d' ' -f2)" "$up"
tap_is "the sweep aborts the uploads under the prefix" "$(s3 sweep "$R" 5)" "removed=1"
tap_is "... and none elsewhere" "$(s3 mpu-ls "$B" "" | cut -d' ' -f1)" "elsewhere/not-ours"
s3 sweep "s3://$B/elsewhere" 5 > /dev/null

# --- the backend's get: ranges, the end of an object, caps
bget() {  # bget KEY OFFSET LEN MAX: "ok" and the bytes in $T/bget, or the errno
  local out; out=$(s3 bget "$R2" "$1" "$T/bget" "$2" "$3" "$4") && echo ok || echo "$out"
}
s3 put "$B" mp/blob "$T/vda3" > /dev/null || tap_bail "put blob"
sz=$(stat -c %s "$T/vda3")
tap_is "get: the whole object" "$(bget blob 0 0 $((8 << 20)))" ok
tap_ok "... its bytes" cmp "$T/vda3" "$T/bget"
tap_is "get: a range" "$(bget blob 1000 5000 5000)" ok
tap_ok "... its bytes" cmp <(tail -c +1001 "$T/vda3" | head -c 5000) "$T/bget"
tap_is "get: from an offset to the end" "$(bget blob $((sz - 10)) 0 100)" ok
tap_ok "... its bytes" cmp <(tail -c 10 "$T/vda3") "$T/bget"
tap_is "get: at the very end, nothing" "$(bget blob "$sz" 0 100) $(stat -c %s "$T/bget")" "ok 0"
tap_is "get: past the end" "$(bget blob $((sz + 1)) 0 100)" ERANGE
tap_is "get: a range that runs past the end" "$(bget blob $((sz - 10)) 20 100)" ERANGE
tap_is "get: more than the caller's cap" "$(bget blob 0 0 1000)" EFBIG
tap_is "get: a missing key" "$(bget no/such/key 0 0 1000)" ENOENT
tap_is "get: a bad key" "$(bget ../x 0 0 1000)" EINVAL
s3 rm "$B" mp/blob

# --- failures: one clear line, exit 1
fails "a missing bucket" \
  "vmdr-ls: cannot open repository 's3://no-$B': HTTP 404 NoSuchBucket*" vmdr-ls -r "s3://no-$B"
fails "vmdr-init in a missing bucket" \
  "vmdr-init: cannot create a repository in 's3://no-$B/p': HTTP 404 NoSuchBucket*" \
  vmdr-init -q -r "s3://no-$B/p"
fails "vmdr-restore from a missing bucket" \
  "vmdr-restore: cannot open repository 's3://no-$B': HTTP 404 NoSuchBucket*" \
  vmdr-restore -r "s3://no-$B" web@latest -o "$O"
fails "a prefix without a repository" \
  "vmdr-verify: 's3://$B/nothing' is not a vmdr repository (no config; create one with vmdr-init)" \
  vmdr-verify -r "s3://$B/nothing"
WRONG=wrong-${SECRET:6}x
fails "a wrong secret" \
  "vmdr-ls: cannot open repository '$R': HTTP 403 SignatureDoesNotMatch*" \
  env AWS_SECRET_ACCESS_KEY="$WRONG" vmdr-ls -r "$R"
fails "an unknown access key" \
  "vmdr-prune: cannot open repository '$R': HTTP 403 InvalidAccessKeyId*" \
  env AWS_ACCESS_KEY_ID=NOSUCHKEY0000000000 vmdr-prune -r "$R" --keep-last 1
t0=$SECONDS
fails "an unreachable endpoint, after bounded retries" \
  "vmdr-ls: cannot open repository '$R': Failed to connect to 127.0.0.1 port 1 * (gave up after * attempts in *)" \
  env AWS_ENDPOINT_URL=http://127.0.0.1:1 VMDR_S3_RETRY_SECONDS=1 vmdr-ls -r "$R"
tap_ok "... within the bound ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -le 5
fails "no credentials anywhere" \
  "vmdr-ls: cannot open repository '$R': no S3 credentials: *" \
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
    AWS_CONFIG_FILE=/nonexistent vmdr-ls -r "$R"
fails "a bad address" \
  "vmdr-ls: cannot open repository 's3://Bad_Bucket': not an S3 repository address*" \
  vmdr-ls -r "s3://Bad_Bucket"

# --- profiles from the AWS files; the environment wins over them
(
  umask 077
  printf '[default]\naws_access_key_id = NOSUCHKEY0000000000\naws_secret_access_key = %s\n' \
    "$WRONG" > "$T/credentials"
  printf '[vmdr-test]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$AWS_ACCESS_KEY_ID" "$SECRET" >> "$T/credentials"
  printf '[profile vmdr-test]\nregion = us-east-1\nendpoint_url = %s\n' \
    "$AWS_ENDPOINT_URL" > "$T/config"
)
noenv=(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_ENDPOINT_URL
       AWS_SHARED_CREDENTIALS_FILE="$T/credentials" AWS_CONFIG_FILE="$T/config")
tap_is "AWS_PROFILE: keys from the credentials file, endpoint from the config file" \
  "$("${noenv[@]}" AWS_PROFILE=vmdr-test vmdr-ls -r "$R" 2>&1 | tail -n +2 | cut -d' ' -f1)" "$id3"
tap_ok "a restore through the profile" \
  "${noenv[@]}" AWS_PROFILE=vmdr-test vmdr-restore -q -r "$R" web@latest -o "$O" --name prof
tap_ok "... equal to its image" cmp "$T/vda3" "$O/prof-vda.raw"
rm -f "$O"/*
fails "the default profile's wrong keys are refused" \
  "vmdr-ls: cannot open repository '$R': HTTP 403 InvalidAccessKeyId*" \
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_SHARED_CREDENTIALS_FILE="$T/credentials" \
    vmdr-ls -r "$R"
tap_ok "keys in the environment win over the profile's" \
  env AWS_SHARED_CREDENTIALS_FILE="$T/credentials" vmdr-ls -r "$R"
fails "a profile that does not exist" \
  "vmdr-ls: cannot open repository '$R': no profile 'nosuch' in the AWS credentials or config file" \
  "${noenv[@]}" AWS_PROFILE=nosuch vmdr-ls -r "$R"

# --- virtual-host style (radosgw runs with "rgw dns name = localhost")
vhost=(env AWS_ENDPOINT_URL="http://localhost:$RGW_PORT" VMDR_S3_ADDRESSING_STYLE=virtual)
tap_is "virtual-host style: vmdr-ls" \
  "$("${vhost[@]}" vmdr-ls -r "$R" 2>&1 | tail -n +2 | cut -d' ' -f1)" "$id3"
tap_ok "virtual-host style: verify" "${vhost[@]}" vmdr-verify -q -r "$R"
tap_ok "radosgw saw requests without the bucket in the path" \
  wait_until 5 grep -qE '"GET /site-a/vmdr/config HTTP' "$rgw_log"

# --- retries: tests/s3/fault-proxy.py spoils every second new connection
# (503 SlowDown, a dropped request, 500 InternalError, an answer cut after
# the server acted: an exclusive put then finds its own object)
start_proxy() {   # start_proxy MODE: sets PROXY_URL, PROXY_LOG, PROXY_PID
  rm -f "$T/proxy.port"
  PROXY_LOG=$T/proxy-${1%%:*}.log
  : > "$PROXY_LOG"
  python3 "$PROXY" "$RGW_PORT" "$T/proxy.port" "$PROXY_LOG" "$1" & PROXY_PID=$!
  at_exit "kill $PROXY_PID 2>/dev/null"
  wait_until 5 test -s "$T/proxy.port" || tap_bail "the fault proxy did not start"
  PROXY_URL=http://127.0.0.1:$(cat "$T/proxy.port")
}
start_proxy every:2
faulty=(env AWS_ENDPOINT_URL="$PROXY_URL")
idf=$("${faulty[@]}" repo-image put "$R" web vda="$T/vda2" -j 4 2>>"$L/put.err")
tap_is "a snapshot through faults" "$?" 0
tap_ok "verify through faults" "${faulty[@]}" vmdr-verify -q -j 4 -r "$R"
tap_ok "restore through faults" "${faulty[@]}" vmdr-restore -q -j 4 -r "$R" "$idf" -o "$O"
tap_ok "... equal to its image" qemu-img compare -q -f raw -F raw "$T/vda2" "$O/web-vda.raw"
rm -f "$O"/*
tap_ok "prune through faults" "${faulty[@]}" vmdr-prune -q -r "$R" --keep-last 1 --grace 0
tap_is "... keeps the newest snapshot" "$(vmdr-ls -r "$R" | tail -n +2 | cut -d' ' -f1)" "$idf"
tap_ok "the proxy did spoil connections ($(sort "$PROXY_LOG" | uniq -c | tr -s ' \n' ' '))" \
  test "$(sort -u "$PROXY_LOG" | wc -l)" -ge 3
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null

# the answer to an exclusive put lost after the server stored the object:
# the put is sent again, refused (412), and found to be ours
start_proxy cut-exclusive
tap_ok "vmdr-init whose answer was lost" \
  env AWS_ENDPOINT_URL="$PROXY_URL" vmdr-init -q -r "s3://$B/cut"
tap_is "... the proxy cut it" "$(cat "$PROXY_LOG")" cut-exclusive
tap_ok "... and it is a repository" vmdr-ls -r "s3://$B/cut"
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null
start_proxy cut-exclusive
idc=$(env AWS_ENDPOINT_URL="$PROXY_URL" repo-image put "s3://$B/cut" web vda="$T/vdb" 2>>"$L/put.err")
tap_is "a snapshot whose lock's answer was lost" "$?" 0
tap_is "... the proxy cut it" "$(cat "$PROXY_LOG")" cut-exclusive
tap_is "... and it is listed" "$(vmdr-ls -r "s3://$B/cut" | tail -n +2 | cut -d' ' -f1)" "$idc"
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null

start_proxy always
fails "a server that always says SlowDown: the S3 error, after VMDR_S3_RETRY_MAX tries" \
  "vmdr-ls: cannot open repository '$R': HTTP 503 SlowDown: Please reduce your request rate. (gave up after 3 attempts in *)" \
  env AWS_ENDPOINT_URL="$PROXY_URL" VMDR_S3_RETRY_MAX=3 vmdr-ls -r "$R"
tap_is "... exactly 3 requests were sent" "$(wc -l < "$PROXY_LOG")" 3
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null

# --- the secret: never in argv, never in a message
: > "$T/ps.log"
vmdr-restore -q -j 4 -r "$R" web@latest -o "$O" --name ps 2>>"$L/ps.err" & pid=$!
while kill -0 "$pid" 2>/dev/null; do ps -eo args >> "$T/ps.log"; sleep 0.02; done
wait "$pid"
tap_ok "ps saw the restore run" grep -q "vmdr-restore -q -j 4 -r $R" "$T/ps.log"
tap_is "the secret is in no command line" "$(grep -cF -e "$SECRET" -e "$WRONG" "$T/ps.log")" 0
tap_is "the secret is in no output or message" \
  "$(cat "$L"/* | grep -cF -e "$SECRET" -e "$WRONG")" 0

tap_done
