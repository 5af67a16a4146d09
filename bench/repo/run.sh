#!/bin/bash
# shellcheck disable=SC2016  # SETUP code is single-quoted: timed evals it
# The repository benchmark: vmdr's write, incremental rewrite, restore and
# verify of a raw disk image against restic on the same image, and against
# the CPU limit (the repository's own digest + zstd over the same bytes, no
# I/O).
#
# Makes the test data as bench/chunk-size/run.sh does: an ext4 image filled
# from /usr (or as much of it as fits) with mkfs.ext4 -d, and a changed copy
# with 200 scattered 64 KiB writes of the image's own data (chunkbench
# mutate).  Then, in each of VMDR_BENCH_ROUNDS rounds (medians reported),
# each timed run after `sync; echo 3 > /proc/sys/vm/drop_caches` so that
# every run reads from the disk (in a VM, the host may still cache it):
#
#   1. vmdr write of the full image with -j 1 and -j 2, each into a fresh
#      repository (repo-image put: vmdr_snapshot_write_images);
#   2. a second write of the changed image into the -j 2 repository (no
#      dirty bitmap: every data region is reread, only new chunks stored);
#   3. restores of that latest snapshot with -j 1 and -j 2 (repo-image get:
#      vmdr_disk_restore), each compared with the changed image;
#   4. vmdr-verify of the repository;
#   5. restic: init, backup of the image, backup of the changed image under
#      the same path, restore of the latest snapshot;
#   6. the CPU limit (cpulimit.c in this directory) with the repository's
#      hash and zstd level.
# Diagnostics: the read floor (cat of the image, cold), the store floor
# (the full write's pack files written again one by one with an fsync
# each, as the local backend does), and (VMDR_BENCH_WARM=1, the default)
# the vmdr writes repeated with the image in the page cache, into a
# repository on disk and into one on tmpfs (no disk writes, fsync free), to
# separate disk reads, durable pack writes and CPU.
#
# As root (mkfs.ext4 -d keeps owners; dropping caches), on Debian 12 with
# libzstd-dev libb2-dev libxxhash-dev libssl-dev e2fsprogs gcc time restic,
# and vmdr built (ninja -C build).  Takes about 20 minutes on 2 cores (3
# rounds, more when other load makes it wait or redo runs); needs about
# 15 GB in $VMDR_BENCH_DIR.  Only the results file is left behind.
#
# Environment:
#   VMDR_BUILD          the vmdr build directory (../../build from here)
#   VMDR_BENCH_DIR      work directory (/var/tmp/vmdr-repobench)
#   VMDR_BENCH_SIZE     image size (3G)
#   VMDR_BENCH_SRC      directories to put into the image (default: /usr if
#                       it fits in 5/6 of the image, else a subset of it)
#   VMDR_BENCH_WRITES   64 KiB writes in the changed copy (200)
#   VMDR_BENCH_JOBS     thread counts for writes and restores ("1 2"); the
#                       last one also does the rewrite, verify, CPU limit
#   VMDR_BENCH_INIT     extra vmdr-init arguments (e.g. "--hash=blake2b-256")
#   VMDR_BENCH_RESTIC   0 to skip restic
#   VMDR_BENCH_ROUNDS   rounds of every measurement (3); medians reported
#   VMDR_BENCH_WARM     0 to skip the warm-cache writes (disk and tmpfs)
#   VMDR_BENCH_TMPFS    directory on tmpfs for those (/dev/shm/vmdr-repobench)
#   VMDR_BENCH_DROP     0 not to drop the page cache (then runs may read
#                       from memory; the results say so)
#   VMDR_BENCH_QUIET    seconds to wait, before each timed run, for other load
#                       on the machine to stop (300; 0: do not wait); the CPU
#                       others used during each run is reported ("other")
#   VMDR_BENCH_RETRIES  how often a run disturbed by other load is redone (3)
#   VMDR_BENCH_KEEP     1 to keep images and repositories
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
root=$(cd "$here/../.." && pwd)
build=${VMDR_BUILD:-$root/build}
work=${VMDR_BENCH_DIR:-/var/tmp/vmdr-repobench}
size=${VMDR_BENCH_SIZE:-3G}
nwrites=${VMDR_BENCH_WRITES:-200}
read -r -a jobs <<<"${VMDR_BENCH_JOBS:-1 2}"
jmax=${jobs[-1]}
read -r -a init_args <<<"${VMDR_BENCH_INIT:-}"
drop=${VMDR_BENCH_DROP:-1}
rounds=${VMDR_BENCH_ROUNDS:-3}
warm=${VMDR_BENCH_WARM:-1}
quiet=${VMDR_BENCH_QUIET:-300}
retries=${VMDR_BENCH_RETRIES:-3}
ncpu=$(nproc)
results=$work/results.txt
shm=${VMDR_BENCH_TMPFS:-/dev/shm/vmdr-repobench}

repo_image=$build/tests/harness/repo-image
vmdr_init=$build/cmd/vmdr-init
vmdr_ls=$build/cmd/vmdr-ls
vmdr_verify=$build/cmd/vmdr-verify
for t in "$repo_image" "$vmdr_init" "$vmdr_ls" "$vmdr_verify"; do
  [[ -x $t ]] || { echo "run.sh: $t missing: ninja -C $build" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "run.sh: /usr/bin/time missing: apt-get install time" >&2; exit 1; }

cleanup () {
  [[ ${VMDR_BENCH_KEEP:-0} == 1 ]] && return
  cd /
  rm -rf "$work/tree" "$work/img.raw" "$work/img-changed.raw" "$work/src" \
         "$work"/repo-* "$work"/out-*.raw "$work/restic-repo" \
         "$work/restic-cache" "$work/restic-restore" "$work/restic-base" "$work/repo-base" "$work/chunkbench" \
         "$work/cpulimit" "$work/cpulimit.lines" "$work/cmd.out" \
         "$work/cmd.err" "$work/time.out" "$work/floor" "$shm"
}
trap cleanup EXIT

log () { printf '%s\n' "$*" | tee -a "$results"; }
run () { log "\$ $*"; "$@" 2>&1 | tee -a "$results"; }
die () { log "run.sh: $*"; exit 1; }
calc () { awk "BEGIN { printf \"%s\", $* }"; }
mbs () { awk -v b="$1" -v w="$2" 'BEGIN { printf "%.1f", b / 1e6 / w }'; }   # BYTES WALL

drop_caches () {
  [[ $drop == 1 ]] || return 0
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

# Busy and idle jiffies of the whole machine.
cpu_jiffies () { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
hz=$(getconf CLK_TCK)

# Wait (at most $quiet seconds) until the machine is idle: less than 10 % of
# its CPUs busy over one second.  Other load skews every figure here.
wait_quiet () {
  local waited=0 b0 i0 b1 i1
  (( quiet > 0 )) || return 0
  while :; do
    read -r b0 i0 < <(cpu_jiffies)
    sleep 1
    read -r b1 i1 < <(cpu_jiffies)
    if awk -v b=$(( b1 - b0 )) -v i=$(( i1 - i0 )) 'BEGIN { exit !(b + i == 0 || b / (b + i) < 0.10) }'; then
      break
    fi
    waited=$(( waited + 1 ))
    if (( waited >= quiet )); then
      log "  (other load still running after ${waited} s: measuring anyway)"
      return 0
    fi
  done
  (( waited == 0 )) || log "  (waited ${waited} s for other load to stop)"
}

# timed LABEL CMD...: run SETUP (shell code, if set), wait for a quiet
# machine, drop the page cache, run CMD with its output in cmd.out/cmd.err,
# append wall, user, sys seconds, peak RSS (KiB) and the CPU seconds the rest
# of the machine used meanwhile ("other") to LABEL's lists; LAST is the wall
# time.  A run during which others used more than 0.5 s + 5 % of the
# machine is discarded and done again (SETUP first), at most $retries times.
# NODROP=1 keeps the page cache.
declare -A WALLS USRS SYSS RSSS OTHERS WALL WMIN WMAX USR SYS RSS OTHER
LAST=
discarded=0
timed () {
  local label=$1 w u s m b0 b1 other attempt=0
  shift
  while :; do
    if [[ -n ${SETUP:-} ]]; then eval "$SETUP"; fi
    wait_quiet
    [[ ${NODROP:-0} == 1 ]] || drop_caches
    read -r b0 _ < <(cpu_jiffies)
    if ! /usr/bin/time -o "$work/time.out" -f '%e %U %S %M' "$@" \
         >"$work/cmd.out" 2>"$work/cmd.err"; then
      cat "$work/cmd.out" "$work/cmd.err" >&2
      die "failed: $*"
    fi
    read -r b1 _ < <(cpu_jiffies)
    read -r w u s m < <(tail -1 "$work/time.out")
    other=$(awk -v b=$(( b1 - b0 )) -v hz="$hz" -v u="$u" -v s="$s" 'BEGIN {
      o = b / hz - u - s; printf "%.2f", o < 0 ? 0 : o }')
    if (( attempt < retries )) &&
       awk -v o="$other" -v w="$w" -v n="$ncpu" 'BEGIN { exit !(o > 0.5 + 0.05 * w * n) }'; then
      log "  ([$label] discarded: wall $w s, others used $other s of CPU meanwhile; again)"
      attempt=$(( attempt + 1 ))
      discarded=$(( discarded + 1 ))
      continue
    fi
    break
  done
  WALLS[$label]+=" $w" USRS[$label]+=" $u" SYSS[$label]+=" $s" RSSS[$label]+=" $m"
  OTHERS[$label]+=" $other"
  LAST=$w
  log "\$ $*"
  log "$(awk -v l="$label" -v w="$w" -v u="$u" -v s="$s" -v m="$m" -v o="$other" 'BEGIN {
    printf "  [%s] wall %.2f s, CPU %.2f s (user %.2f, sys %.2f), peak RSS %.0f MiB; other CPU meanwhile %.2f s",
           l, w, u + s, u, s, m / 1024, o }')"
}

# A fresh, empty vmdr repository at $1.
fresh_repo () {
  rm -rf "$1"
  "$vmdr_init" -q -r "$1" "${init_args[@]}"
}

median () {     # numbers on stdin, any spacing
  tr ' ' '\n' | grep . | sort -g |
    awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# Medians of every label into WALL, USR, SYS, RSS; the wall range in WMIN, WMAX.
summarise () {
  local l
  for l in "${!WALLS[@]}"; do
    WALL[$l]=$(median <<<"${WALLS[$l]}")
    USR[$l]=$(median <<<"${USRS[$l]}")
    SYS[$l]=$(median <<<"${SYSS[$l]}")
    RSS[$l]=$(median <<<"${RSSS[$l]}")
    OTHER[$l]=$(median <<<"${OTHERS[$l]}")
    WMIN[$l]=$(tr -s ' ' '\n' <<<"${WALLS[$l]}" | grep . | sort -g | head -1)
    WMAX[$l]=$(tr -s ' ' '\n' <<<"${WALLS[$l]}" | grep . | sort -g | tail -1)
  done
}

repo_bytes () { du -sb "$1" | cut -f1; }
repo_objects () {
  find "$1" -type f -not -path "$1/tmp/*" | wc -l
}
repo_describe () {       # REPO: size and objects by kind
  local r=$1
  printf 'size %s bytes, %s objects (data %s, index %s, snapshots %s)' \
    "$(repo_bytes "$r")" "$(repo_objects "$r")" \
    "$(find "$r/data" -type f 2>/dev/null | wc -l)" \
    "$(find "$r/index" -type f 2>/dev/null | wc -l)" \
    "$(find "$r/snapshots" -type f 2>/dev/null | wc -l)"
}

mkdir -p "$work"
: >"$results"
cd "$work"

log "# vmdr repository benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -sr)"
buildtype=$(python3 -c 'import json,sys; print(*[o["value"] for o in json.load(open(sys.argv[1])) if o["name"]=="buildtype"])' "$build/meson-info/intro-buildoptions.json" 2>/dev/null || echo '?')
dirty=
if [[ -n $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  dirty=' (with uncommitted changes)'
fi
log "vmdr: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty, build $build ($buildtype)"
lscpu | grep -E '^(Architecture|CPU\(s\)|Model name|Thread|Core|Socket|L[23])' | tee -a "$results"
log "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}'), nproc $(nproc), work dir on $(df --output=source "$work" | tail -1)"
log "restic: $(restic version 2>/dev/null || echo 'not installed')"
if [[ $drop == 1 ]]; then
  log "page cache: dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed run unless marked warm"
else
  log "page cache: NOT dropped (VMDR_BENCH_DROP=0): runs may read from memory"
fi

# ---- tools --------------------------------------------------------------
run cc -O2 -Wall -Wextra -o "$work/chunkbench" "$root/bench/chunk-size/chunkbench.c" \
    -lzstd -lb2 -lxxhash -lcrypto -lpthread
run cc -O2 -Wall -Wextra -o "$work/cpulimit" "$here/cpulimit.c" \
    -lzstd -lb2 -lxxhash -lcrypto -lpthread

# ---- the image (bench/lib.sh, shared with bench/chunk-size) --------------
bench_make_image "$size"
# Both images with the same allocation rule (blocks of zeros are holes), so
# that "allocated" means the same for both.
cp --sparse=always img.raw img.tmp
mv img.tmp img.raw
cp --sparse=always img.raw img-changed.raw
run ./chunkbench mutate -n "$nwrites" -b 64K -S 1 img.raw img-changed.raw
virt=$(stat -c %s img.raw)
used=$(du -B1 img.raw | cut -f1)
used_changed=$(du -B1 img-changed.raw | cut -f1)
log "image: virtual $virt bytes, allocated (du) $used bytes; changed copy allocated $used_changed bytes"
log "MB = 10^6 bytes.  \"MB/s used\" = allocated image bytes / wall; \"MB/s virt\" = virtual size / wall"
# 64 KiB chunks that differ between the two images (what a rewrite must store).
read -r ndiff diff_bytes < <(python3 - img.raw img-changed.raw <<'EOF'
import sys
n = b = 0
with open(sys.argv[1], 'rb') as f, open(sys.argv[2], 'rb') as g:
    while True:
        x = f.read(1 << 16); y = g.read(1 << 16)
        if not x:
            break
        if x != y:
            n += 1; b += len(y)
print(n, b)
EOF
)
log "changed copy: $ndiff chunks of 64 KiB differ ($(calc "$diff_bytes / 1e6") MB raw)"

# ---- the rounds -------------------------------------------------------------
# Every measurement is taken in each of $rounds rounds; the summary gives the
# median (and the range) of each.  Repository sizes are those of the last
# round (they differ between rounds only by the order of blobs in packs).
declare -A SIZE OBJS NEW
restic_on=0
if [[ ${VMDR_BENCH_RESTIC:-1} != 0 ]] && command -v restic >/dev/null; then
  restic_on=1
  export RESTIC_PASSWORD=x RESTIC_REPOSITORY=$work/restic-repo
  export RESTIC_CACHE_DIR=$work/restic-cache
fi

measure_round () {
  local j before objs_before after same rfile rinit

  log ""
  log "######## round $round of $rounds"
  # The read floor: the image read cold by cat (holes cost nothing).
  timed read-floor sh -c 'cat img.raw >/dev/null'
  log "  read floor: $(mbs "$used" "$LAST") MB/s of allocated data"

  log ""
  log "## vmdr: full write of img.raw, fresh repository per -j"
  for j in "${jobs[@]}"; do
    SETUP="fresh_repo repo-j$j" timed "write-j$j" "$repo_image" put "repo-j$j" bench disk=img.raw -j "$j"
    SIZE[write-j$j]=$(repo_bytes "repo-j$j")
    OBJS[write-j$j]=$(repo_objects "repo-j$j")
    log "  snapshot $(cat cmd.out); repository $(repo_describe "repo-j$j")"
    log "  $(mbs "$used" "$LAST") MB/s used, $(mbs "$virt" "$LAST") MB/s virt"
  done
  # The store floor: the pack files of that write, written again one by one
  # with an fsync each (what the local backend's put does, minus the rename
  # and the directory fsync).
  cat "repo-j$jmax"/data/*/* >/dev/null
  SETUP="rm -rf floor; mkdir floor" NODROP=1 timed store-floor sh -c "for f in repo-j$jmax/data/*/*; do dd if=\$f of=floor/\${f##*/} bs=16M conv=fsync status=none; done"
  packs_bytes=$(cat "repo-j$jmax"/data/*/* | wc -c)
  log "  store floor: $(mbs "$packs_bytes" "$LAST") MB/s of pack data ($packs_bytes bytes, $(find "repo-j$jmax/data" -type f | wc -l) packs, one fsync each)"
  rm -rf floor

  if [[ $warm == 1 ]]; then
    log ""
    log "## vmdr: full write with the image in the page cache (warm; not dropped)"
    for j in "${jobs[@]}"; do
      SETUP="fresh_repo repo-warm; cat img.raw >/dev/null" NODROP=1 timed "warm-j$j" "$repo_image" put repo-warm bench disk=img.raw -j "$j"
      log "  $(mbs "$used" "$LAST") MB/s used"
    done
    rm -rf repo-warm
    log ""
    log "## vmdr: full write, warm, into a repository on tmpfs ($shm: no disk writes, fsync free)"
    for j in "${jobs[@]}"; do
      SETUP='rm -rf "$shm"; mkdir -p "$shm"; fresh_repo "$shm/repo"; cat img.raw >/dev/null' \
        NODROP=1 timed "tmpfs-j$j" "$repo_image" put "$shm/repo" bench disk=img.raw -j "$j"
      log "  $(mbs "$used" "$LAST") MB/s used"
    done
    rm -rf "$shm"
  fi

  log ""
  log "## vmdr: write of img-changed.raw into repo-j$jmax (no dirty bitmap: all data reread)"
  before=$(repo_bytes "repo-j$jmax")
  objs_before=$(repo_objects "repo-j$jmax")
  # A copy of the repository, so that a discarded run can be redone.
  rm -rf repo-base
  cp -a "repo-j$jmax" repo-base
  SETUP='rm -rf "repo-j$jmax"; cp -a repo-base "repo-j$jmax"' \
    timed rewrite "$repo_image" put "repo-j$jmax" bench disk=img-changed.raw -j "$jmax"
  rm -rf repo-base
  snap2=$(cat cmd.out)
  after=$(repo_bytes "repo-j$jmax")
  SIZE[rewrite]=$after
  GROWTH=$(( after - before ))
  OBJS[rewrite]=$(( $(repo_objects "repo-j$jmax") - objs_before ))
  NEW[rewrite]=$("$vmdr_ls" -r "repo-j$jmax" --json |
    python3 -c 'import json,sys; s=json.load(sys.stdin)["snapshots"]; print(max(s, key=lambda x: x["created"])["bytes_new"])')
  log "  snapshot $snap2; repository grew $GROWTH bytes (${OBJS[rewrite]} new objects; manifest bytes_new ${NEW[rewrite]}); $ndiff chunks changed, $(calc "$diff_bytes / 1e6") MB raw"
  log "  $(mbs "$used_changed" "$LAST") MB/s used"
  "$vmdr_ls" -r "repo-j$jmax" | tee -a "$results"

  log ""
  log "## vmdr: restore of $snap2 (the changed image) from repo-j$jmax"
  for j in "${jobs[@]}"; do
    SETUP='rm -f "out-j$j.raw"' timed "restore-j$j" "$repo_image" get "repo-j$jmax" "$snap2" disk "out-j$j.raw" -j "$j"
    local w=$LAST
    if cmp -s img-changed.raw "out-j$j.raw"; then same=identical; else same=DIFFERENT; fi
    log "  output $same to img-changed.raw (cmp), allocated $(du -B1 "out-j$j.raw" | cut -f1) bytes"
    log "  $(mbs "$used_changed" "$w") MB/s used, $(mbs "$virt" "$w") MB/s virt"
    [[ $same == identical ]] || die "restore -j $j differs from the source"
    rm -f "out-j$j.raw"
  done

  log ""
  log "## vmdr-verify of repo-j$jmax (both snapshots)"
  timed verify "$vmdr_verify" -r "repo-j$jmax" -j "$jmax"
  tee -a "$results" <cmd.out
  checked=$("$vmdr_verify" -r "repo-j$jmax" -j "$jmax" --json -q 2>/dev/null |
    python3 -c 'import json,sys; print(sum(s["bytes_checked"] for s in json.load(sys.stdin)["snapshots"]))' || echo 0)
  log "  $(mbs "$checked" "${LAST}") MB/s of chunk data checked ($checked bytes over all snapshots)"

  (( restic_on )) || return 0
  log ""
  log "## restic (content-defined chunks, avg 1 MiB; compression auto; GOMAXPROCS = nproc)"
  rm -rf restic-restore src
  mkdir src
  ln img.raw src/disk.raw           # the same path for both backups
  SETUP='rm -rf restic-repo restic-cache; restic init --repository-version 2 -q >/dev/null; rinit=$(repo_bytes restic-repo)' \
    timed restic-backup restic backup -q src/disk.raw
  SIZE[restic-backup]=$(repo_bytes restic-repo)
  OBJS[restic-backup]=$(repo_objects restic-repo)
  log "  repository ${SIZE[restic-backup]} bytes (after init: $rinit), ${OBJS[restic-backup]} objects"
  log "  $(mbs "$used" "$LAST") MB/s used, $(mbs "$virt" "$LAST") MB/s virt"
  ln -f img-changed.raw src/disk.raw
  rm -rf restic-base
  mkdir restic-base
  cp -a restic-repo restic-cache restic-base/
  SETUP='rm -rf restic-repo restic-cache; cp -a restic-base/restic-repo restic-base/restic-cache .' \
    timed restic-rebackup restic backup -q src/disk.raw
  rm -rf restic-base
  SIZE[restic-rebackup]=$(repo_bytes restic-repo)
  RGROWTH=$(( SIZE[restic-rebackup] - SIZE[restic-backup] ))
  OBJS[restic-rebackup]=$(( $(repo_objects restic-repo) - OBJS[restic-backup] ))
  log "  repository grew $RGROWTH bytes (${OBJS[restic-rebackup]} new objects)"
  log "  $(mbs "$used_changed" "$LAST") MB/s used"
  SETUP='rm -rf restic-restore' timed restic-restore restic restore latest --target restic-restore
  local w=$LAST
  rfile=$(find restic-restore -type f -name disk.raw | head -1)
  if cmp -s img-changed.raw "$rfile"; then same=identical; else same=DIFFERENT; fi
  log "  output $rfile $same to img-changed.raw (cmp), allocated $(du -B1 "$rfile" | cut -f1) bytes"
  log "  $(mbs "$used_changed" "$w") MB/s used, $(mbs "$virt" "$w") MB/s virt"
  [[ $same == identical ]] || die "restic restore differs from the source"
  if (( round == rounds )); then
    restic stats --mode raw-data 2>&1 | tee -a "$results"
  fi
  rm -rf restic-restore
}

for (( round = 1; round <= rounds; round++ )); do
  measure_round
done
hash=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hash"])' "repo-j$jmax/config")
level=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["compression"]["level"])' "repo-j$jmax/config")
chunk=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunk_size"])' "repo-j$jmax/config")
group=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("group_size", 0))' "repo-j$jmax/config")
log ""
log "repository config: hash $hash, zstd level $level, chunk $chunk bytes"

# ---- the CPU limit ---------------------------------------------------------------
log ""
log "## CPU limit: $hash + zstd $level at $chunk-byte chunks in $group-byte groups, no I/O (cpulimit.c; image mapped and faulted in first), medians of $rounds rounds"
: >cpulimit.lines
cat img.raw >/dev/null
for (( round = 1; round <= rounds; round++ )); do
  NODROP=1 timed cpu-limit ./cpulimit -H "$hash" -l "$level" -s "$chunk" -g "$group" -j "$jmax" img.raw
  tee -a "$results" <cmd.out
  cat cmd.err >>cpulimit.lines
done
# CPULIMIT workload threads wall cpu region nonzero unique stored
lim () { awk -v w="$1" -v j="$2" '$2 == w && $3 == j {print $4}' cpulimit.lines | median; }
lim_plain=$(lim plain "$jmax")
lim_vmdr=$(lim vmdr "$jmax")
lim_vmdr1=$(lim vmdr 1)

# ---- summary ----------------------------------------------------------------------
summarise
row () {   # LABEL WHAT BYTES_FOR_MBS [novirt]
  local l=$1 what=$2 bytes=$3 nv=${4:-}
  awk -v l="$l" -v what="$what" -v w="${WALL[$l]}" -v lo="${WMIN[$l]}" \
      -v hi="${WMAX[$l]}" -v u="${USR[$l]}" -v s="${SYS[$l]}" -v m="${RSS[$l]}" \
      -v b="$bytes" -v v="$virt" -v nv="$nv" -v o="${OTHER[$l]}" 'BEGIN {
    printf "%-15s %-36s %6.2f %13s %6.2f %7.0f %7s %5.0f %6.2f\n", l, what, w,
           sprintf ("%.2f-%.2f", lo, hi), u + s, b / 1e6 / w,
           nv ? "-" : sprintf ("%.0f", v / 1e6 / w), m / 1024, o }' | tee -a "$results"
}
log ""
log "## Summary: medians of $rounds rounds (wall range min-max); wall and CPU (user+sys) in seconds;"
log "## MB/s used = allocated image bytes / median wall, MB/s virt = virtual size / median wall; peak RSS in MiB;"
log "## other = CPU seconds used by the rest of the machine during the run (median; 0 = the run had the machine)"
log "image: virtual $(calc "$virt / 1e6") MB, allocated $(calc "$used / 1e6") MB; $ndiff chunks changed ($(calc "$diff_bytes / 1e6") MB)"
log "$(printf '%-15s %-36s %6s %13s %6s %7s %7s %5s %6s' run what wall range cpu MB/s_us MB/s_vi RSS other)"
row read-floor "cat img.raw (cold read)" "$used"
for j in "${jobs[@]}"; do row "write-j$j" "vmdr full write -j $j" "$used"; done
if [[ $warm == 1 ]]; then
  for j in "${jobs[@]}"; do row "warm-j$j" "vmdr full write -j $j, warm cache" "$used"; done
  for j in "${jobs[@]}"; do row "tmpfs-j$j" "vmdr full write -j $j, warm, tmpfs" "$used"; done
fi
row store-floor "pack files + fsync each (MB/s: packs)" "$packs_bytes" novirt
row rewrite "vmdr write of changed, -j $jmax" "$used_changed"
for j in "${jobs[@]}"; do row "restore-j$j" "vmdr restore -j $j" "$used_changed"; done
row verify "vmdr-verify -j $jmax (MB/s: checked)" "$checked" novirt
if (( restic_on )); then
  row restic-backup "restic backup" "$used"
  row restic-rebackup "restic backup of changed" "$used_changed"
  row restic-restore "restic restore" "$used_changed"
fi
log "$(awk -v a="$lim_plain" -v b="$lim_vmdr" -v c="$lim_vmdr1" -v u="$used" -v j="$jmax" 'BEGIN {
  printf "%-15s %-36s %6.2f %13s %6s %7.0f\n%-15s %-36s %6.2f %13s %6s %7.0f\n%-15s %-36s %6.2f %13s %6s %7.0f",
    "cpu-limit", "digest+zstd all non-zero, " j " thr", a, "", "", u / 1e6 / a,
    "cpu-limit-vmdr", "vmdr work (dedup), " j " thr", b, "", "", u / 1e6 / b,
    "cpu-limit-vmdr1", "vmdr work (dedup), 1 thr", c, "", "", u / 1e6 / c }')"
log "(cpu-limit rows: medians over the rounds of cpulimit's own timers; other CPU during the cpulimit runs: ${OTHER[cpu-limit]} s)"

log "runs discarded for other load and redone: $discarded"
log ""
log "Stored:"
for j in "${jobs[@]}"; do
  log "  vmdr repo-j$j after the full write: ${SIZE[write-j$j]} bytes, ${OBJS[write-j$j]} objects"
done
log "  vmdr repo-j$jmax growth from the changed image: $GROWTH bytes, ${OBJS[rewrite]} objects (bytes_new ${NEW[rewrite]})"
if (( restic_on )); then
  log "  restic after the full backup: ${SIZE[restic-backup]} bytes, ${OBJS[restic-backup]} objects"
  log "  restic growth from the changed image: $RGROWTH bytes, ${OBJS[restic-rebackup]} objects"
fi

log ""
log "Ratios:"
pct () { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }
for j in "${jobs[@]}"; do
  log "  vmdr write -j $j: $(pct "$lim_vmdr" "${WALL[write-j$j]}") of the CPU limit (vmdr work, $jmax threads), $(pct "$lim_plain" "${WALL[write-j$j]}") of the plain digest+zstd limit"
done
if [[ $warm == 1 ]]; then
  for j in "${jobs[@]}"; do
    log "  vmdr write -j $j warm: $(pct "$lim_vmdr" "${WALL[warm-j$j]}") of the CPU limit (vmdr work, $jmax threads); warm into tmpfs: $(pct "$lim_vmdr" "${WALL[tmpfs-j$j]}")"
  done
fi
log "  vmdr -j $jmax / -j ${jobs[0]}: write speed-up $(bench_ratio "${WALL[write-j${jobs[0]}]}" "${WALL[write-j$jmax]}"), restore speed-up $(bench_ratio "${WALL[restore-j${jobs[0]}]}" "${WALL[restore-j$jmax]}")"
if [[ $warm == 1 ]]; then
  log "  vmdr -j $jmax / -j ${jobs[0]} warm: on disk $(bench_ratio "${WALL[warm-j${jobs[0]}]}" "${WALL[warm-j$jmax]}"), on tmpfs $(bench_ratio "${WALL[tmpfs-j${jobs[0]}]}" "${WALL[tmpfs-j$jmax]}")"
fi
if (( restic_on )); then
  log "  throughput vmdr / restic: full write -j $jmax $(bench_ratio "${WALL[restic-backup]}" "${WALL[write-j$jmax]}")x, rewrite $(bench_ratio "${WALL[restic-rebackup]}" "${WALL[rewrite]}")x, restore -j $jmax $(bench_ratio "${WALL[restic-restore]}" "${WALL[restore-j$jmax]}")x"
  log "  CPU vmdr / restic: full write -j $jmax $(bench_ratio "$(calc "${USR[write-j$jmax]} + ${SYS[write-j$jmax]}")" "$(calc "${USR[restic-backup]} + ${SYS[restic-backup]}")"), rewrite $(bench_ratio "$(calc "${USR[rewrite]} + ${SYS[rewrite]}")" "$(calc "${USR[restic-rebackup]} + ${SYS[restic-rebackup]}")"), restore $(bench_ratio "$(calc "${USR[restore-j$jmax]} + ${SYS[restore-j$jmax]}")" "$(calc "${USR[restic-restore]} + ${SYS[restic-restore]}")")"
  log "  size vmdr / restic: full $(bench_ratio "${SIZE[write-j$jmax]}" "${SIZE[restic-backup]}"), growth $(bench_ratio "$GROWTH" "$RGROWTH")"
fi

log ""
log "# done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
