#!/bin/bash
# The restore benchmark: vmdr-restore against virtnbdrestore on the same
# guest disk, beside the two limits of a restore measured in the same run on
# the same bytes, and the RTO of a vmdr-failover of that guest.
#
# The VM has no OS (the backup API only needs QEMU running); its disk is a
# 4 GiB qcow2 made from bench/lib.sh's image (ext4 filled from /usr).  Each
# tool backs up a fresh copy of it: a full, then a round of guest writes
# (200 writes of 64 KiB of real file data onto distinct 64 KiB-aligned
# offsets all over the disk, 12.5 MiB, through the QEMU monitor as in
# bench/snapshot/run.sh), an incremental, a second round, a second
# incremental.  The rounds are the same for every tool, so every chain ends
# at the same disk, the "source image" (the VM's qcow2 after round 2).
# Then, each timed run after `sync; echo 3 > /proc/sys/vm/drop_caches` (so
# the backups are read from the disk) and after waiting for other load:
#
#   limits   the write limit: `qemu-img convert -O raw` of the source image,
#            then `sync` of its output (qemu-img convert leaves its output
#            in the page cache, while a restore ends with an fsync: on this
#            VM flushing 3 GB costs 1.2-1.5 s, and without it the "limit"
#            was a copy into memory; convert alone is shown too)
#            (its output, ref.raw, is what every restore is compared with);
#            the same into qcow2 (`convert -O qcow2`, then `sync`): the write
#            limit of a qcow2 output, which qemu's qcow2 driver bounds;
#            the CPU limit: what a restore computes for each non-zero chunk of
#            those bytes (XXH3, zstd decompression, the digest and its
#            check), all cores, no I/O (cpulimit.c in this directory)
#   vmdr     vmdr-restore of the chain's last snapshot (full + 2
#            incrementals) to raw and to qcow2, each with
#            -j 1, 2, 3 and 4; vmdr-verify of it with the packs in the page cache
#            (the CPU work without the disk)
#   vnb      virtnbdrestore of the plain and of the --compress chain (qcow2)
#   RTO      vmdr-failover of the guest to a second private libvirtd (the DR
#            site), qcow2 (the default) and raw: restore, define, start
#
# Every output is compared with ref.raw (qemu-img compare).  Wall, CPU
# (user+sys, children included: qemu-nbd for qcow2) and peak RSS from
# /usr/bin/time (virtnbdrestore's own qemu-nbd added, as it is no child of
# it); "other" is the CPU the rest of the machine used meanwhile
# (a run disturbed by more than 0.5 s + 5 % of the machine is redone, at
# most $VMDR_BENCH_RETRIES times).  MB/s = the disk's data (allocated bytes
# of ref.raw) / wall.  The limits and each vmdr-restore run
# $VMDR_BENCH_REPEAT times and the run with the median wall counts; the
# rest run once.  The table goes to stdout and
# $VMDR_BENCH_DIR/results.txt.
#
# As root on Debian 12, with vmdr built; installs what is missing of its own
# dependencies (virtnbdbackup libnbd-bin qemu-utils e2fsprogs time gcc
# libzstd-dev libb2-dev libxxhash-dev libssl-dev, and the libvirt test
# harness's: libvirt-daemon-system qemu-system-x86 tini).  Starts two private
# libvirtd instances (tests/harness/libvirt.sh) under $VMDR_BENCH_DIR and
# stops them at the end.  Takes about 15 minutes on 2 cores; needs about
# 30 GB there.
#
# Environment:
#   VMDR_BUILD          the vmdr build directory (../../build from here)
#   VMDR_BENCH_DIR      work directory (/var/tmp/vmdr-restorebench)
#   VMDR_BENCH_SIZE     disk size (4G)
#   VMDR_BENCH_SRC      directories to put into the image (see bench/lib.sh)
#   VMDR_BENCH_WRITES   64 KiB writes per round (200)
#   VMDR_BENCH_JOBS     vmdr-restore -j values ("1 2 3 4")
#   VMDR_BENCH_DROP     0 not to drop the page cache
#   VMDR_BENCH_QUIET    seconds to wait for other load before a run (120)
#   VMDR_BENCH_RETRIES  how often a disturbed run is redone (3)
#   VMDR_BENCH_REPEAT   runs of each limit and vmdr restore; the median counts (3)
#   VMDR_BENCH_KEEP     1 to keep images, backups and the instances' dirs
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bench/lib.sh"
. "$root/bench/lib-vm.sh"
build=$(cd "${VMDR_BUILD:-$root/build}" && pwd)
work=${VMDR_BENCH_DIR:-/var/tmp/vmdr-restorebench}
size=${VMDR_BENCH_SIZE:-4G}
nwrites=${VMDR_BENCH_WRITES:-200}
read -r -a jobs <<<"${VMDR_BENCH_JOBS:-1 2 3 4}"
drop=${VMDR_BENCH_DROP:-1}
quiet=${VMDR_BENCH_QUIET:-120}
retries=${VMDR_BENCH_RETRIES:-3}
repeat=${VMDR_BENCH_REPEAT:-3}
ncpu=$(nproc)
results=$work/results.txt
harness=$root/tests/harness/libvirt.sh
snap=$build/cmd/vmdr-snapshot
vinit=$build/cmd/vmdr-init
vrestore=$build/cmd/vmdr-restore
vverify=$build/cmd/vmdr-verify
vfailover=$build/cmd/vmdr-failover
hz=$(getconf CLK_TCK)

log () { printf '%s\n' "$*" | tee -a "$results"; }
run () { log "\$ $*"; "$@" 2>&1 | tee -a "$results"; }
die () { log "restore bench: $*"; exit 1; }
calc () { awk "BEGIN { printf \"%s\", $* }"; }

# ---- dependencies -----------------------------------------------------------
deps () {
  local p missing=()
  for p in virtnbdbackup libnbd-bin qemu-utils e2fsprogs time gcc libzstd-dev \
           libb2-dev libxxhash-dev libssl-dev libvirt-daemon-system \
           qemu-system-x86 tini; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  (( ${#missing[@]} == 0 )) && return
  echo "restore bench: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}
[[ $(id -u) == 0 ]] || { echo "restore bench: needs root" >&2; exit 1; }
for t in "$snap" "$vinit" "$vrestore" "$vverify" "$vfailover"; do
  [[ -x $t ]] || { echo "restore bench: $t missing: build vmdr first (ninja -C $build)" >&2; exit 1; }
done
deps
# Something on this machine once replaced /dev/null with a file: qemu-nbd
# --fork (virtnbdrestore) then fails with "Failed to daemonize".
check_devnull () {
  [[ -c /dev/null ]] || die "/dev/null is no device (something replaced it): mknod -m 666 /dev/null c 1 3"
}
check_devnull

LV=$work/libvirt
DR=$work/libvirt-dr
cleanup () {
  "$harness" down "$LV" 2>/dev/null || true
  "$harness" down "$DR" 2>/dev/null || true
  [[ ${VMDR_BENCH_KEEP:-0} == 1 ]] && return
  cd /
  rm -rf "$work"/{img.raw,base.qcow2,vm-*.qcow2,src.qcow2,ref.raw,repo,vnb-*,out,dr-img,pieces,plans,scratch,wrap,cpulimit,cpulimit.lines,cmd.out,cmd.err,time.out,server.cpu,*.xml,*.virsh,*.log}
}
trap cleanup EXIT

# ---- timing -------------------------------------------------------------------
# CPU of the kernel's threads (children of kthreadd): the writeback of a
# tool's buffered writes runs there, not in the tool.
kthread_jiffies () {
  # A process that exits between the glob and cat's read makes cat fail:
  # under pipefail and set -e that ended the whole benchmark, silently.
  { cat /proc/[0-9]*/stat 2>/dev/null || :; } | sed 's/^.*) //' | awk '$2 == 2 { s += $12 + $13 } END { print s + 0 }'
}


# CPU seconds of the processes whose command line matches SERVER (the
# qemu-nbd that virtnbdrestore starts with --fork: no child of the tool, so
# /usr/bin/time does not count it), sampled every 0.1 s while the run lasts
# (the last 0.1 s of it can be missed).
server_watch () {
  local pat=$1 out=$2 p t
  declare -A last
  while :; do
    for p in $(pgrep -f -- "$pat" 2>/dev/null); do
      t=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null) && last[$p]=$t
    done
    t=0
    for p in "${!last[@]}"; do t=$(( t + last[$p] )); done
    # Renamed into place: a kill between the truncation and the write of a
    # plain redirect left the file empty, and the sum then broke awk.
    echo "$t" >"$out.tmp" && mv "$out.tmp" "$out"
    sleep 0.1
  done
}

# timed LABEL CMD...: run SETUP (shell code, if set), wait for a quiet
# machine, drop the page cache (not with NODROP=1), run CMD; its wall,
# user+sys (with SERVER's, see server_watch) and peak RSS (KiB) go to W, C,
# M [LABEL], the kernel threads' CPU meanwhile (writeback) to K[LABEL], the
# CPU the rest of the machine used to O[LABEL].  A run others disturbed
# (more than 0.5 s + 5 % of the machine) is redone, at most $retries times;
# how many were redone goes to R[LABEL].
declare -A W C M O R K
timed () {
  local label=$1 w u s m b0 b1 k0 k1 kern other attempt=0 watcher srv=0
  shift
  while :; do
    [[ -z ${SETUP:-} ]] || eval "$SETUP"
    bench_wait_quiet
    [[ ${NODROP:-0} == 1 ]] || bench_drop_caches
    if [[ -n ${SERVER:-} ]]; then
      echo 0 >"$work/server.cpu"
      server_watch "$SERVER" "$work/server.cpu" & watcher=$!
    fi
    k0=$(kthread_jiffies)
    read -r b0 _ < <(bench_cpu_jiffies)
    /usr/bin/time -o "$work/time.out" -f '%e %U %S %M' "$@" >"$work/cmd.out" 2>"$work/cmd.err" || {
      [[ -z ${SERVER:-} ]] || kill "$watcher"
      cat "$work/cmd.out" "$work/cmd.err" >&2; die "failed: $*"; }
    read -r b1 _ < <(bench_cpu_jiffies)
    k1=$(kthread_jiffies)
    kern=$(calc "($k1 - $k0) / $hz")
    if [[ -n ${SERVER:-} ]]; then
      kill "$watcher"; wait "$watcher" 2>/dev/null || true
      srv=$(calc "$(cat "$work/server.cpu") / $hz")
    fi
    read -r w u s m < <(tail -1 "$work/time.out")
    s=$(calc "$s + $srv")         # the server's CPU counts as the tool's (as sys)
    other=$(awk -v b=$(( b1 - b0 )) -v hz="$hz" -v u="$u" -v s="$s" -v k="$kern" 'BEGIN { o = b / hz - u - s - k; printf "%.2f", o < 0 ? 0 : o }')
    if (( attempt < retries )) &&
       awk -v o="$other" -v w="$w" -v n="$ncpu" 'BEGIN { exit !(o > 0.5 + 0.05 * w * n) }'; then
      log "  ([$label] discarded: wall $w s, others used $other s of CPU meanwhile; again)"
      attempt=$(( attempt + 1 ))
      continue
    fi
    break
  done
  W[$label]=$w C[$label]=$(calc "$u + $s") M[$label]=$m O[$label]=$other R[$label]=$attempt K[$label]=$kern
  log "\$ $*"
  log "  [$label] wall $w s, CPU ${C[$label]} s (user $u, sys $s$([[ -z ${SERVER:-} ]] || echo ", of which its qemu-nbd $srv")), peak RSS $(( m / 1024 )) MiB, kernel threads $kern s, other CPU $other s"
}

# median LABEL CMD...: timed, $repeat times (labels LABEL.1 ..), and the
# run with the median wall becomes LABEL: one run of these short
# commands varies by up to 30 % here (the disk's cache flushes).
median () {
  local label=$1 i l pick
  shift
  for (( i = 1; i <= repeat; i++ )); do timed "$label.$i" "$@"; done
  pick=$(for (( i = 1; i <= repeat; i++ )); do echo "${W[$label.$i]} $i"; done |
         sort -n | awk -v n="$repeat" 'NR == int ((n + 1) / 2) { print $2 }')
  l=$label.$pick
  W[$label]=${W[$l]} C[$label]=${C[$l]} M[$label]=${M[$l]} O[$label]=${O[$l]} K[$label]=${K[$l]}
  R[$label]=0
  for (( i = 1; i <= repeat; i++ )); do R[$label]=$(( R[$label] + R[$label.$i] )); done
  log "  [$label] median of $repeat: wall ${W[$label]} s (walls: $(for (( i = 1; i <= repeat; i++ )); do printf '%s ' "${W[$label.$i]}"; done | sed 's/ $//'))"
}

bytes () { du -sb "$1" | cut -f1; }

# Is image $1 (format $2) the source disk?  Dies if not.  (-U: the image
# of a guest that runs on it, after a failover, is compared too.)
same_as_ref () {
  qemu-img compare -U -q -f "$2" -F raw "$1" ref.raw ||
    die "$1 differs from the source image"
  log "  output identical to the source image (qemu-img compare)"
}

# ---- the backups (the VM: bench/lib-vm.sh) ------------------------------------

# chain TOOL: a fresh vm1, a full backup, round 1, an incremental, round 2,
# an incremental; then vm1 is gone and its disk kept as src-TOOL.qcow2.
chain () {
  local tool=$1 level args
  vm_fresh vm1
  for level in full 1 inc 2 inc; do
    case $level in
      1|2) vm_round vm1 "$level"; continue ;;
    esac
    args=()
    case $tool in
      vmdr) [[ $level == inc ]] || args=(--full)
            "$snap" -q -c "$URI" -r repo --scratch-dir "$work/scratch" "${args[@]}" vm1 ;;
      vnb-*) [[ $tool == vnb-plain ]] || args=(--compress)
             virtnbdbackup -U "$URI" -d vm1 -l "$level" -o "$tool" -S "$work/scratch" \
               -f "$work/scratch/vnb.sock" -n "${args[@]}" >"$work/vnb.log" 2>&1 ;;
    esac || { cat "$work/vnb.log" >&2 2>/dev/null; die "$tool: the $level backup failed"; }
  done
  vm_drop vm1
  mv "$work/vm-vm1.qcow2" "src-$tool.qcow2"
}

# ---- setup ----------------------------------------------------------------------
mkdir -p "$work"
: >"$results"
cd "$work"
rm -rf scratch pieces plans out repo vnb-* dr-img; mkdir -p scratch out dr-img
log "# vmdr restore benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -sr)"
dirty=
[[ -z $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]] || dirty=' (with uncommitted changes)'
log "vmdr: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty, build $build"
lscpu | grep -E '^(CPU\(s\)|Model name)' | tee -a "$results"
log "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}'), work dir on $(df --output=source "$work" | tail -1), virtnbdbackup $(virtnbdbackup -V 2>&1), $(qemu-img --version | head -1), libvirt $(virsh -v)"
log "page cache: $([[ $drop == 1 ]] && echo 'dropped before every timed run unless marked warm' || echo 'NOT dropped (VMDR_BENCH_DROP=0)')"

bench_make_image "$size"
run qemu-img convert -f raw -O qcow2 img.raw base.qcow2
make_plans 2
log "writes: 2 rounds of $nwrites x 64 KiB = $(calc "$nwrites * 65536 / 1048576") MiB each"

URI=$("$harness" up "$LV") || die "libvirtd did not start"
DRURI=$("$harness" up "$DR") || die "the DR libvirtd did not start"
vtype=qemu
if [[ -w /dev/kvm ]] && V domcapabilities --virttype kvm >/dev/null 2>&1; then vtype=kvm; fi
log "libvirt: private instances in $LV (source) and $DR (DR site), domain type $vtype"

# ---- the chains: full + 2 incrementals of the same disk, by each tool -------------
log ""
log "## backups (untimed): full, round 1, incremental, round 2, incremental"
"$vinit" -q -r repo
chain vmdr
chain vnb-plain
chain vnb-z
for t in vnb-plain vnb-z; do
  qemu-img compare -q src-vmdr.qcow2 "src-$t.qcow2" || die "the VMs' disks differ ($t)"
done
mv src-vmdr.qcow2 src.qcow2
rm -f src-vnb-*.qcow2
"$build/cmd/vmdr-ls" -r repo | tee -a "$results"
log "vmdr repository $(bytes repo) bytes; virtnbdbackup chains: plain $(bytes vnb-plain) bytes, --compress $(bytes vnb-z) bytes"
ls -l vnb-z | tee -a "$results"

# ---- the write limit -----------------------------------------------------------------
log ""
log "## write limit: qemu-img convert -O raw of the source image (src.qcow2, the disk after round 2)"
SETUP='rm -f ref.raw' median write-convert qemu-img convert -f qcow2 -O raw src.qcow2 ref.raw
SETUP='rm -f ref.raw' median write-limit sh -c 'qemu-img convert -f qcow2 -O raw src.qcow2 ref.raw && sync ref.raw'
# What writing a qcow2 costs qemu's own qcow2 driver (cluster allocation,
# L2 and refcount tables), beside which a qcow2 restore is measured too.
SETUP='rm -f ref.qcow2' median write-limit-qcow2 sh -c 'qemu-img convert -f qcow2 -O qcow2 src.qcow2 ref.qcow2 && sync ref.qcow2'
rm -f ref.qcow2
data=$(du -B1 ref.raw | cut -f1)
virt=$(stat -c %s ref.raw)
log "  the disk: virtual $virt bytes, data (allocated in ref.raw) $data bytes"

# ---- vmdr-restore ------------------------------------------------------------------------
for fmt in raw qcow2; do
  log ""
  log "## vmdr-restore --format $fmt of the chain's last snapshot"
  for j in "${jobs[@]}"; do
    SETUP='rm -rf out; mkdir out' median "vmdr-$fmt-j$j" "$vrestore" -q -r repo vm1@latest -o out \
      --format "$fmt" -j "$j"
    same_as_ref "out/vm1-vda.$fmt" "$fmt"
  done
done
rm -rf out; mkdir out

# ---- virtnbdrestore ----------------------------------------------------------------------
check_devnull
for v in plain z; do
  log ""
  log "## virtnbdrestore of the $([[ $v == z ]] && echo '--compress ')chain (full + 2 incrementals)"
  SETUP='rm -rf out; mkdir out' SERVER="qemu-nbd.*$work/scratch/vnbr.sock" \
    timed "vnb-$v" virtnbdrestore -U "$URI" -i "vnb-$v" -o out -n \
    -f "$work/scratch/vnbr.sock" -L "$work/vnbr.log"
  outs=(out/*.qcow2)
  same_as_ref "${outs[0]}" qcow2
done
rm -rf out; mkdir out

# ---- the CPU limit, and vmdr's CPU work without the disk --------------------------------
hash=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hash"])' repo/config)
level=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["compression"]["level"])' repo/config)
chunk=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunk_size"])' repo/config)
group=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("group_size", 0))' repo/config)
log ""
log "## CPU limit: decode + verify ($hash, zstd $level blobs, $chunk-byte chunks in $group-byte groups) of ref.raw's non-zero chunks, $ncpu threads, no I/O"
run cc -O2 -Wall -Wextra -o cpulimit "$here/cpulimit.c" -lzstd -lb2 -lxxhash -lcrypto -lpthread
NODROP=1 timed cpu-limit-run ./cpulimit -H "$hash" -l "$level" -s "$chunk" -g "$group" -j "$ncpu" ref.raw
tee -a "$results" <cmd.out
cp cmd.err cpulimit.lines
W[cpu-limit]=$(awk -v j="$ncpu" '$1 == "CPULIMIT" && $3 == j { print $4 }' cpulimit.lines)
C[cpu-limit]=$(awk -v j="$ncpu" '$1 == "CPULIMIT" && $3 == j { print $5 }' cpulimit.lines)
W[cpu-limit-1]=$(awk '$1 == "CPULIMIT" && $3 == 1 { print $4 }' cpulimit.lines)
C[cpu-limit-1]=$(awk '$1 == "CPULIMIT" && $3 == 1 { print $5 }' cpulimit.lines)
log "  (cpulimit's own timers of the decoding alone; the run's other CPU, encoding included: ${O[cpu-limit-run]} s)"
log ""
log "## vmdr-verify of the last snapshot, packs in the page cache (vmdr's decode + verify, no disk)"
SETUP='cat repo/data/*/* >/dev/null' NODROP=1 timed vmdr-verify-warm "$vverify" -q -r repo -j "$ncpu" vm1@latest

# ---- failover -------------------------------------------------------------------------------
V2 () { timeout 60 virsh -q -c "$DRURI" "$@" >/dev/null 2>&1 || true; }
for fmt in qcow2 raw; do
  log ""
  log "## vmdr-failover of vm1 to the DR instance ($fmt): restore, define, start"
  SETUP='V2 destroy vm1; V2 undefine vm1; rm -rf dr-img; mkdir dr-img' \
    timed "failover-$fmt" "$vfailover" -c "$DRURI" -r repo --storage "$work/dr-img" \
      --format "$fmt" --json vm1
  rto=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["rto_seconds"])' <cmd.out)
  W[rto-$fmt]=$rto
  log "  reported RTO $rto s; vm1 on the DR instance: $(timeout 60 virsh -q -c "$DRURI" domstate vm1)"
  same_as_ref "dr-img/vm1-vda.$fmt" "$fmt"
done
V2 destroy vm1; V2 undefine vm1

# ---- summary ----------------------------------------------------------------------------------
row () {   # LABEL WHAT
  local l=$1
  awk -v l="$l" -v what="$2" -v w="${W[$l]:-}" -v c="${C[$l]:-}" -v m="${M[$l]:-}" \
      -v o="${O[$l]:-}" -v k="${K[$l]:-}" -v d="$data" -v r="${R[$l]:-0}" 'BEGIN {
    printf "%-20s %-44s %6.2f %6s %5s %6s %6s %6s%s\n", l, what, w,
      c == "" ? "-" : sprintf ("%.2f", c), m == "" ? "-" : sprintf ("%.0f", m / 1024),
      sprintf ("%.0f", d / 1e6 / w), k == "" ? "-" : sprintf ("%.2f", k),
      o == "" ? "-" : sprintf ("%.2f", o), (r > 0 ? sprintf (" (%d redone)", r) : "") }' | tee -a "$results"
}
log ""
log "## Summary (the limits and vmdr-restore: the run with the median wall of $repeat; the rest one run; wall and CPU (user+sys, children and virtnbdrestore's qemu-nbd included) in seconds;"
log "## RSS MiB; MB/s = the disk's $(calc "$data / 1e6") MB of data / wall; kthr = CPU of kernel threads meanwhile"
log "## (writeback of buffered writes); other = CPU the rest of the machine used meanwhile)"
log "$(printf '%-20s %-44s %6s %6s %5s %6s %6s %6s' run what wall cpu RSS MB/s kthr other)"
row write-convert "qemu-img convert -O raw, no sync"
row write-limit "write limit: qemu-img convert -O raw; sync"
row write-limit-qcow2 "qcow2 write limit: convert -O qcow2; sync"
row cpu-limit "CPU limit: decode+verify, $ncpu threads, no I/O"
row cpu-limit-1 "CPU limit, 1 thread"
for fmt in raw qcow2; do
  for j in "${jobs[@]}"; do row "vmdr-$fmt-j$j" "vmdr-restore --format $fmt -j $j"; done
done
row vnb-plain "virtnbdrestore, plain chain"
row vnb-z "virtnbdrestore, --compress chain"
row vmdr-verify-warm "vmdr-verify -j $ncpu, packs in the page cache"
row failover-qcow2 "vmdr-failover (qcow2): restore+define+start"
row failover-raw "vmdr-failover --format raw"

# ---- the targets of issue 5 --------------------------------------------------------------------
lesser=$(awk -v a="${W[write-limit]}" -v b="${W[cpu-limit]}" 'BEGIN { print (a > b ? a : b) }')
lesser_qcow2=$(awk -v a="${W[write-limit-qcow2]}" -v b="${W[cpu-limit]}" 'BEGIN { print (a > b ? a : b) }')
log ""
log "## Targets (issue 5); the lesser limit is the slower one: $lesser s (writing qcow2: $lesser_qcow2 s)"
for fmt in raw qcow2; do
  for j in "${jobs[@]}"; do
    (( j == 1 )) && continue
    bench_check "restore $fmt -j $j: share of the lesser limit's speed" \
      "$(bench_ratio "$lesser" "${W[vmdr-$fmt-j$j]}")" ">=" 0.85
    [[ $fmt == qcow2 ]] && bench_check "restore qcow2 -j $j: share of the qcow2 lesser limit's speed (convert -O qcow2)" \
      "$(bench_ratio "$lesser_qcow2" "${W[vmdr-qcow2-j$j]}")" ">=" 0.85
    bench_check "restore $fmt -j $j: speed-up over virtnbdrestore of the --compress chain" \
      "$(bench_ratio "${W[vnb-z]}" "${W[vmdr-$fmt-j$j]}")" ">=" 2.5
  done
done
bench_check "failover RTO (qcow2), seconds, as vmdr-failover reports it" "$(calc "int (${W[rto-qcow2]} * 100 + 0.5) / 100")" "<=" 30
bench_check "failover RTO (raw), seconds" "$(calc "int (${W[rto-raw]} * 100 + 0.5) / 100")" "<=" 30
log "every vmdr restore verified every chunk it wrote (vmdr_blob_decode: XXH3, then the digest)"
log ""
log "# done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
