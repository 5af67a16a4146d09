#!/bin/bash
# The replication benchmark: vmdr-replicate of the same snapshots to
# radosgw (S3) against `restic backup` of the same disk to the same
# radosgw, in one run.
#
# A disk image (bench/lib.sh: ext4 filled from /usr) and a second state of
# it after a round of guest writes (200 writes of 64 KiB of real file data
# onto distinct 64 KiB-aligned offsets, 12.5 MiB) are stored as two
# snapshots in a local vmdr repository (repo-image put, not timed).  Then,
# each run after `sync; echo 3 > /proc/sys/vm/drop_caches` and after
# waiting for other load:
#
#   vmdr full     vmdr-replicate of the first snapshot to an empty bucket
#   restic full   restic backup of the first image to an empty bucket
#                 (the two alternate, VMDR_BENCH_ROUNDS times, each into
#                 buckets of their own; medians reported)
#   vmdr incr     vmdr-replicate of the second (the first already there)
#   restic incr   restic backup of the second image, at the same path
#
# Before the first timed run the cluster is warmed up (the first snapshot
# replicated into a bucket of its own, untimed): on a fresh cluster the
# first writes cost radosgw and the OSD more, and whichever tool ran first
# paid for them.
# For each: wall time, CPU (user+sys of the tool; radosgw's CPU is counted
# apart, it is the same server for both), the requests radosgw served and
# the bytes it received, from its usage log (radosgw-admin usage show,
# per bucket), and the throughput as the disk's allocated bytes over the
# wall time (the same for both tools: what is protected per second).
# Targets (the issue): vmdr >= 4x restic's throughput on the full, and an
# incremental that sends <= 1.1x the compressed bytes that changed (the
# new chunks' stored size, from the local repository's own incremental
# store of the second snapshot: bytes_new).
#
# As root on Debian 12, with vmdr built (its tests too: repo-image,
# s3-smoke).  Starts a private single-node Ceph with radosgw
# (tests/harness/ceph.sh) under $VMDR_BENCH_DIR and stops it at the end.
# About 12 minutes on 2 cores; needs about 30 GB there.
#
# Environment:
#   VMDR_BUILD          the vmdr build directory (../../build from here)
#   VMDR_BENCH_DIR      work directory (/var/tmp/vmdr-replbench)
#   VMDR_BENCH_SIZE     disk size (3G)
#   VMDR_BENCH_SRC      directories to put into the image (see bench/lib.sh)
#   VMDR_BENCH_WRITES   64 KiB writes in the round (200)
#   VMDR_BENCH_JOBS     vmdr-replicate -j (4: requests in flight)
#   VMDR_BENCH_ROUNDS   full runs of each tool, alternating (3)
#   VMDR_BENCH_DROP     0 not to drop the page cache
#   VMDR_BENCH_QUIET    seconds to wait for other load before a run (120)
#   VMDR_BENCH_KEEP     1 to keep the image, the repository and the cluster's dir
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bench/lib.sh"
build=$(cd "${VMDR_BUILD:-$root/build}" && pwd)
work=${VMDR_BENCH_DIR:-/var/tmp/vmdr-replbench}
size=${VMDR_BENCH_SIZE:-3G}
nwrites=${VMDR_BENCH_WRITES:-200}
jobs=${VMDR_BENCH_JOBS:-4}
rounds=${VMDR_BENCH_ROUNDS:-3}
drop=${VMDR_BENCH_DROP:-1}
quiet=${VMDR_BENCH_QUIET:-120}
results=$work/results.txt
repo_image=$build/tests/harness/repo-image
s3=$build/tests/s3/s3-smoke
ceph_harness=$root/tests/harness/ceph.sh

log () { printf '%s\n' "$*" | tee -a "$results"; }
run () { log "\$ $*"; "$@" 2>&1 | tee -a "$results"; }
die () { log "replicate bench: $*"; exit 1; }
calc () { awk "BEGIN { printf \"%s\", $* }"; }

[[ $(id -u) == 0 ]] || { echo "replicate bench: needs root" >&2; exit 1; }
for p in "$build/cmd/vmdr-replicate" "$build/cmd/vmdr-init" "$repo_image" "$s3"; do
  [[ -x $p ]] || { echo "replicate bench: build vmdr first (ninja -C $build): no $p" >&2; exit 1; }
done
"$root/scripts/deps" >&2
command -v restic >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends restic >&2
export PATH=$build/cmd:$PATH

mkdir -p "$work"
cd "$work"
: > "$results"
C=$work/ceph
cleanup () {
  "$ceph_harness" stop "$C" >/dev/null 2>&1 || true
  [[ ${VMDR_BENCH_KEEP:-0} == 1 ]] && return
  cd /
  rm -rf "$work"/{img.raw,img-changed.raw,disk.raw,src,ceph,restic-cache,time.out,cmd.out,cmd.err}
}
trap cleanup EXIT

log "replicate bench, $(date -u +%FT%TZ), $(nproc) cores, $(restic version | cut -d' ' -f1-2)"
bench_make_image "$size"
bench_writes img.raw img-changed.raw "$nwrites" 7
data=$(( $(du -B1 img.raw | cut -f1) ))
log "image: $data bytes allocated"

# ---- the source repository: the first snapshot (the second comes later) -------
rm -rf src
run vmdr-init -q -r src
id1=$("$repo_image" put src bench vda=img.raw)
log "source: $id1, $(du -sb src | cut -f1) bytes"

# ---- Ceph and radosgw ----------------------------------------------------------
export VMDR_CEPH_RGW_USAGE=1
"$ceph_harness" stop "$C" >/dev/null 2>&1 || true
rm -rf "$C"
"$ceph_harness" start "$C" > "$work/ceph-start.log" 2>&1 || { cat "$work/ceph-start.log"; die "Ceph did not start"; }
. "$C/env.sh"
rgw_pid=$(cat "$C/run/client.rgw.pid")
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
restic_in () { R=(restic -q -r "s3:$AWS_ENDPOINT_URL/$1" -o s3.region="$AWS_REGION"); }   # R: restic on bucket $1
# buckets N: the round's two buckets, made (and restic's repository in its own)
buckets () {
  local b
  for b in "vmdr-bench-$1" "restic-bench-$1"; do
    "$s3" mb "$b" >/dev/null || die "cannot create bucket $b"
  done
  restic_in "restic-bench-$1"
  "${R[@]}" init >/dev/null || die "restic init"
}

# usage BUCKET: "requests bytes_received" radosgw logged for BUCKET so far
usage () {
  sleep 3   # the usage log is flushed every second
  timeout 60 radosgw-admin -c "$CEPH_CONF" usage show --uid=vmdr-test 2>/dev/null |
    python3 -c '
import json, sys
ops = rx = 0
for e in json.load(sys.stdin).get("entries", []):
    for b in e.get("buckets", []):
        if b.get("bucket") == sys.argv[1]:
            for c in b.get("categories", []):
                ops += c.get("ops", 0); rx += c.get("bytes_received", 0)
print(ops, rx)' "$1"
}
jiffies_of () { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
osd_pid=$(cat "$C/run/osd.0.pid")
hz=$(getconf CLK_TCK)

# timed LABEL BUCKET CMD...: wall, CPU, radosgw's and the OSD's CPU,
# requests and bytes, appended to LABEL's lists (medians: summarise)
declare -A WS CPUS RGWS OSDS W CPU RGW OSD REQ RX
timed () {
  local label=$1 bucket=$2 w u s m r0 r1 o0 o1 q0 b0 q1 b1
  shift 2
  read -r q0 b0 < <(usage "$bucket")
  bench_wait_quiet
  bench_drop_caches
  r0=$(jiffies_of "$rgw_pid") o0=$(jiffies_of "$osd_pid")
  /usr/bin/time -o "$work/time.out" -f '%e %U %S %M' "$@" >"$work/cmd.out" 2>"$work/cmd.err" || {
    cat "$work/cmd.out" "$work/cmd.err" >&2; die "failed: $*"; }
  r1=$(jiffies_of "$rgw_pid") o1=$(jiffies_of "$osd_pid")
  read -r w u s m < <(tail -1 "$work/time.out")
  read -r q1 b1 < <(usage "$bucket")
  WS[$label]+=" $w" CPUS[$label]+=" $(calc "$u + $s")"
  RGWS[$label]+=" $(calc "($r1 - $r0) / $hz")" OSDS[$label]+=" $(calc "($o1 - $o0) / $hz")"
  REQ[$label]=$(( q1 - q0 )) RX[$label]=$(( b1 - b0 ))
  log "\$ $*"
  log "  [$label] wall $w s, CPU $(calc "$u + $s") s, peak RSS $(( m / 1024 )) MiB; radosgw CPU $(calc "($r1 - $r0) / $hz") s, OSD CPU $(calc "($o1 - $o0) / $hz") s, ${REQ[$label]} requests, ${RX[$label]} bytes received"
}
summarise () {
  local l
  for l in "${!WS[@]}"; do
    W[$l]=$(bench_median <<<"${WS[$l]}") CPU[$l]=$(bench_median <<<"${CPUS[$l]}")
    RGW[$l]=$(bench_median <<<"${RGWS[$l]}") OSD[$l]=$(bench_median <<<"${OSDS[$l]}")
  done
}

# ---- the runs --------------------------------------------------------------------
"$s3" mb warm-up >/dev/null || die "cannot create bucket warm-up"
vmdr-replicate -q -r src --to s3://warm-up -j "$jobs" >/dev/null || die "warm-up failed"
cp --sparse=always img.raw disk.raw
for r in $(seq "$rounds"); do
  buckets "$r"
  DST=s3://vmdr-bench-$r
  timed "vmdr full" "vmdr-bench-$r" vmdr-replicate -q -r src --to "$DST" -j "$jobs" --json
  vfull_sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_sent"])' "$work/cmd.out")
  restic_in "restic-bench-$r"
  timed "restic full" "restic-bench-$r" "${R[@]}" backup --json disk.raw
done

# The second snapshot; what it adds to the source is the compressed
# change (new chunks and the index nodes over them).
before=$(du -sb src/data | cut -f1)
id2=$("$repo_image" put src bench vda=img-changed.raw)
changed=$(( $(du -sb src/data | cut -f1) - before ))
log "source: $id2 after $nwrites writes of 64 KiB ($(( nwrites * 64 )) KiB): $changed bytes stored"
timed "vmdr incr" "vmdr-bench-$rounds" vmdr-replicate -q -r src --to "$DST" -j "$jobs" --json
vincr_sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_sent"])' "$work/cmd.out")
cp --sparse=always img-changed.raw disk.raw
restic_in "restic-bench-$rounds"
timed "restic incr" "restic-bench-$rounds" "${R[@]}" backup --json disk.raw
rincr_added=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    try: d = json.loads(l)
    except ValueError: continue
    if d.get("message_type") == "summary": print(d.get("data_added", 0))' "$work/cmd.out")

# ---- the table ------------------------------------------------------------------
summarise
mbs () { calc "$data / ${W[$1]} / 1e6"; }
log ""
log "Full runs: medians of $rounds (walls:${WS[vmdr full]} and${WS[restic full]} s); requests and bytes: the last run"
log "| run | wall s | CPU s | radosgw CPU s | OSD CPU s | requests | MB received | MB/s of disk data |"
log "|---|---|---|---|---|---|---|---|"
for l in "vmdr full" "restic full" "vmdr incr" "restic incr"; do
  log "| $l | ${W[$l]} | ${CPU[$l]} | ${RGW[$l]} | ${OSD[$l]} | ${REQ[$l]} | $(calc "${RX[$l]} / 1e6") | $(printf %.0f "$(mbs "$l")") |"
done
ratio=$(calc "${W[restic full]} / ${W[vmdr full]}")
sent_ratio=$(calc "${RX[vmdr incr]} / $changed")
log ""
log "full: vmdr sent $vfull_sent bytes of chunks; throughput ${ratio}x restic's (target >= 4x: $(awk -v r="$ratio" 'BEGIN { print (r >= 4 ? "met" : "MISSED") }'))"
log "incremental: $changed bytes of compressed change; vmdr sent $vincr_sent bytes of chunks, radosgw received ${RX[vmdr incr]} in all = ${sent_ratio}x the change (target <= 1.1x: $(awk -v r="$sent_ratio" 'BEGIN { print (r <= 1.1 ? "met" : "MISSED") }')); restic added $rincr_added bytes, radosgw received ${RX[restic incr]}"
log "results: $results"
