#!/bin/bash
# The snapshot benchmark: vmdr-snapshot against virtnbdbackup on the same
# running VM, disk and guest writes, beside the two limits of a full backup
# measured in the same run on the same bytes.
#
# The VM has no OS (the backup API only needs QEMU running); its disk is a
# qcow2 made from bench/lib.sh's image (ext4 filled from /usr, 4 GiB).  Guest
# writes go through the QEMU monitor as in tests/harness/libvirt-lib.sh
# (vm_write): a round is 200 writes of 64 KiB of real file data (pieces of
# the image read from unaligned offsets, so no write equals a chunk already
# stored) onto distinct 64 KiB-aligned offsets all over the disk: 12.5 MiB.
# Every tool gets the same VM from the same image and the same rounds:
#
#   limits   the read limit: a pull-mode backup job's NBD export copied to
#            null: by nbdcopy; the CPU limit: the repository's own digest +
#            zstd over the image's data, no I/O, all cores (bench/repo/cpulimit.c)
#   vmdr     vmdr-snapshot -j 1: full into a fresh repository, round 1,
#            incremental; the same with -j 2, then rounds 2..N with an
#            incremental after each, then one with no writes (the fixed cost
#            of a run); a second VM cloned from the first one's image backed
#            up into that repository (dedup across VMs)
#   vnb      virtnbdbackup plain and --compress (lz4): the same; the clone's
#            first full with --compress
#   big      vmdr-snapshot -j 2 of a sparse 64 GiB disk with the same data:
#            full and incremental (peak RSS must not grow with the disk)
#
# Each timed run after `sync; echo 3 > /proc/sys/vm/drop_caches` (the VM's
# image is read from the disk, not from the page cache) and after waiting
# for other load to stop; wall, CPU (user+sys) and peak RSS from
# /usr/bin/time of the backup tool itself (QEMU's NBD server is the same for
# both tools and not counted).  A full run disturbed by other load is redone;
# an incremental cannot be (it moves its chain on): the "other" column says
# how much the rest of the machine used meanwhile.  One run: every figure is
# measured once (the incremental of the N-round chain is also given as a
# median).  The table goes to stdout and $VMDR_BENCH_DIR/results.txt.
#
# As root on Debian 12, with vmdr built; installs what is missing of its
# own dependencies (virtnbdbackup libnbd-bin qemu-utils e2fsprogs time gcc
# libzstd-dev libb2-dev libxxhash-dev libssl-dev, and the libvirt test
# harness's: libvirt-daemon-system qemu-system-x86 tini).  Starts a private
# libvirtd (tests/harness/libvirt.sh) under $VMDR_BENCH_DIR and stops it at
# the end.  Takes about 10 minutes on 2 cores; needs about 25 GB there.
#
# Environment:
#   VMDR_BUILD          the vmdr build directory (../../build from here)
#   VMDR_BENCH_DIR      work directory (/var/tmp/vmdr-snapbench)
#   VMDR_BENCH_SIZE     disk size (4G)
#   VMDR_BENCH_SRC      directories to put into the image (see bench/lib.sh)
#   VMDR_BENCH_WRITES   64 KiB writes per round (200)
#   VMDR_BENCH_CHAIN    incrementals in the long chains, each after its own
#                       round of writes (10)
#   VMDR_BENCH_BIG      the sparse disk's size (64G; 0 to skip)
#   VMDR_BENCH_DROP     0 not to drop the page cache
#   VMDR_BENCH_QUIET    seconds to wait for other load before a run (120)
#   VMDR_BENCH_RETRIES  how often a disturbed full is redone (3)
#   VMDR_BENCH_KEEP     1 to keep images, repositories and the instance's dir
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bench/lib.sh"
. "$root/bench/lib-vm.sh"
build=$(cd "${VMDR_BUILD:-$root/build}" && pwd)
work=${VMDR_BENCH_DIR:-/var/tmp/vmdr-snapbench}
size=${VMDR_BENCH_SIZE:-4G}
nwrites=${VMDR_BENCH_WRITES:-200}
nrounds=${VMDR_BENCH_CHAIN:-10}
big=${VMDR_BENCH_BIG:-64G}
drop=${VMDR_BENCH_DROP:-1}
quiet=${VMDR_BENCH_QUIET:-120}
retries=${VMDR_BENCH_RETRIES:-3}
ncpu=$(nproc)
results=$work/results.txt
harness=$root/tests/harness/libvirt.sh
snap=$build/cmd/vmdr-snapshot
vinit=$build/cmd/vmdr-init
hz=$(getconf CLK_TCK)

log () { printf '%s\n' "$*" | tee -a "$results"; }
run () { log "\$ $*"; "$@" 2>&1 | tee -a "$results"; }
die () { log "snapshot bench: $*"; exit 1; }
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
  echo "snapshot bench: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}
[[ $(id -u) == 0 ]] || { echo "snapshot bench: needs root" >&2; exit 1; }
[[ -x $snap && -x $vinit ]] || { echo "snapshot bench: build vmdr first (ninja -C $build)" >&2; exit 1; }
deps

LV=$work/libvirt
cleanup () {
  "$harness" down "$LV" 2>/dev/null || true
  [[ ${VMDR_BENCH_KEEP:-0} == 1 ]] && return
  cd /
  rm -rf "$work"/{img.raw,base.qcow2,vm-*.qcow2,repo-*,vnb-*,pieces,plans,scratch,cpulimit,cmd.out,cmd.err,time.out,*.xml,*.virsh}
}
trap cleanup EXIT

# ---- timing -----------------------------------------------------------------


# Machine-wide user and kernel jiffies (user+nice; system+irq+softirq).
split_jiffies () { awk '/^cpu / { print $2 + $3, $4 + $7 + $8 }' /proc/stat; }
# User and kernel jiffies of the VM's QEMU ($QPID, set by vm_fresh): it
# serves the NBD export to either tool, so its CPU is the run's.
qemu_jiffies () { awk '{ print $14, $15 }' "/proc/$QPID/stat" 2>/dev/null || echo 0 0; }

# timed LABEL CMD...: of CMD, wall, user+sys and peak RSS (KiB) into W, C,
# M[LABEL]; QEMU's CPU meanwhile into Q; the kernel CPU spent outside both
# (mostly writeback of what the tool wrote, in kernel threads) into K; the
# user CPU of everything else (other load) into O.  With SETUP (shell code
# run first), a run that other load disturbed (more than 0.5 s + 5 % of the
# machine) is redone, at most $retries times.
declare -A W C M O Q K
timed () {
  local label=$1 w u s m bu0 bk0 bu1 bk1 qu0 qk0 qu1 qk1 attempt=0
  shift
  while :; do
    [[ -z ${SETUP:-} ]] || eval "$SETUP"
    bench_wait_quiet
    bench_drop_caches
    read -r bu0 bk0 < <(split_jiffies)
    read -r qu0 qk0 < <(qemu_jiffies)
    /usr/bin/time -o "$work/time.out" -f '%e %U %S %M' "$@" >"$work/cmd.out" 2>"$work/cmd.err" || {
      cat "$work/cmd.out" "$work/cmd.err" >&2; die "failed: $*"; }
    read -r qu1 qk1 < <(qemu_jiffies)
    read -r bu1 bk1 < <(split_jiffies)
    read -r w u s m < <(tail -1 "$work/time.out")
    read -r "Q[$label]" "K[$label]" "O[$label]" < <(awk -v hz="$hz" -v u="$u" -v s="$s" \
      -v bu=$(( bu1 - bu0 )) -v bk=$(( bk1 - bk0 )) -v qu=$(( qu1 - qu0 )) -v qk=$(( qk1 - qk0 )) 'BEGIN {
      k = (bk - qk) / hz - s; o = (bu - qu) / hz - u
      printf "%.2f %.2f %.2f\n", (qu + qk) / hz, k < 0 ? 0 : k, o < 0 ? 0 : o }')
    if [[ -n ${SETUP:-} ]] && (( attempt < retries )) &&
       awk -v o="${O[$label]}" -v w="$w" -v n="$ncpu" 'BEGIN { exit !(o > 0.5 + 0.05 * w * n) }'; then
      log "  ([$label] discarded: wall $w s, other load used ${O[$label]} s of CPU meanwhile; again)"
      attempt=$(( attempt + 1 ))
      continue
    fi
    break
  done
  W[$label]=$w C[$label]=$(calc "$u + $s") M[$label]=$m
  log "\$ $*"
  log "  [$label] wall $w s, CPU ${C[$label]} s (user $u, sys $s), peak RSS $(( m / 1024 )) MiB; meanwhile QEMU ${Q[$label]} s, kernel ${K[$label]} s, other load ${O[$label]} s"
}

median () { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
bytes () { du -sb "$1" | cut -f1; }

# ---- the tools ------------------------------------------------------------
# vmdr_run LABEL REPO DOMAIN ARGS...: a timed vmdr-snapshot; its JSON in
# J_KIND, J_NEW (bytes new in the repository), J_READ.
vmdr_run () {
  local label=$1 repo=$2 dom=$3
  shift 3
  timed "$label" "$snap" -c "$URI" -r "$repo" --scratch-dir "$work/scratch" --json "$@" "$dom"
  read -r J_KIND J_NEW J_READ < <(python3 -c 'import json,sys; d=json.load(sys.stdin)["snapshots"][0]; print(d["kind"], d["bytes_new"], d["bytes_read"])' <"$work/cmd.out")
  log "  vmdr: $J_KIND, read $J_READ bytes, new in the repository $J_NEW bytes"
}

# vnb_run LABEL DIR DOMAIN LEVEL [--compress]
vnb_run () {
  local label=$1 dir=$2 dom=$3 level=$4
  shift 4
  timed "$label" virtnbdbackup -U "$URI" -d "$dom" -l "$level" -o "$dir" -S "$work/scratch" \
    -f "$work/scratch/vnb.sock" -n "$@"
}

# ---- setup ------------------------------------------------------------------
mkdir -p "$work"
: >"$results"
cd "$work"
rm -rf scratch pieces plans; mkdir -p scratch
log "# vmdr snapshot benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -sr)"
dirty=
[[ -z $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]] || dirty=' (with uncommitted changes)'
log "vmdr: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty, build $build"
lscpu | grep -E '^(CPU\(s\)|Model name)' | tee -a "$results"
log "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}'), virtnbdbackup $(virtnbdbackup -V 2>&1), $(qemu-system-x86_64 --version | head -1), libvirt $(virsh -v)"
log "page cache: $([[ $drop == 1 ]] && echo 'dropped before every timed run' || echo 'NOT dropped (VMDR_BENCH_DROP=0)')"

bench_make_image "$size"
run qemu-img convert -f raw -O qcow2 img.raw base.qcow2
data=$(du -B1 img.raw | cut -f1)
log "disk: base.qcow2 $(bytes base.qcow2) bytes, virtual $(stat -c %s img.raw); data (allocated in img.raw) $data bytes"
make_plans "$nrounds"
log "writes: $nrounds rounds of $nwrites x 64 KiB = $(calc "$nwrites * 65536 / 1048576") MiB each"

URI=$("$harness" up "$LV") || die "libvirtd did not start"
vtype=qemu
if [[ -w /dev/kvm ]] && V domcapabilities --virttype kvm >/dev/null 2>&1; then vtype=kvm; fi
log "libvirt: private instance in $LV, domain type $vtype"

# ---- the read limit: the pull-mode export copied to null: -----------------------
vm_fresh vm1
cat >"$work/pull.xml" <<XML
<domainbackup mode='pull'><server transport='unix' socket='$work/scratch/pull.sock'/>
<disks><disk name='vda' backup='yes' type='file'><scratch file='$work/scratch/pull-vda.qcow2'/></disk></disks></domainbackup>
XML
V backup-begin vm1 "$work/pull.xml" >/dev/null
log ""
log "## read limit: nbdcopy of the pull-mode export (full job) to null:"
timed read-limit nbdcopy "nbd+unix:///vda?socket=$work/scratch/pull.sock" null:
V domjobabort vm1 >/dev/null

# ---- vmdr -----------------------------------------------------------------------
declare -A STORED
for j in 1 2; do
  log ""
  log "## vmdr-snapshot -j $j: full, round 1, incremental"
  vm_fresh vm1
  SETUP="rm -rf repo-j$j; $vinit -q -r repo-j$j" vmdr_run "vmdr-full-j$j" "repo-j$j" vm1 -j "$j" --full
  STORED[vmdr-full-j$j]=$(bytes "repo-j$j")
  log "  repository $(bytes "repo-j$j") bytes"
  vm_round vm1 1
  before=$(bytes "repo-j$j")
  vmdr_run "vmdr-inc-j$j" "repo-j$j" vm1 -j "$j"
  [[ $J_KIND == incremental ]] || die "vmdr's incremental was $J_KIND"
  STORED[vmdr-inc-j$j]=$(( $(bytes "repo-j$j") - before ))
  log "  repository grew ${STORED[vmdr-inc-j$j]} bytes"
done
log ""
log "## vmdr-snapshot -j 2: rounds 2..$nrounds, an incremental after each, then one without writes"
incs="${W[vmdr-inc-j2]}"
for (( k = 2; k <= nrounds; k++ )); do
  vm_round vm1 "$k"
  vmdr_run "vmdr-inc-j2-$k" repo-j2 vm1 -j 2
  incs+=" ${W[vmdr-inc-j2-$k]}"
done
W[vmdr-inc-med]=$(median <<<"$incs")
vmdr_run vmdr-nochange repo-j2 vm1 -j 2
STORED[vmdr-chain]=$(bytes repo-j2)
log "  repository after one full and $nrounds incrementals: ${STORED[vmdr-chain]} bytes"
log ""
log "## vmdr-snapshot -j 2 of a second VM cloned from the first one's image, into the same repository"
vm_fresh vm2
before=$(bytes repo-j2)
vmdr_run vmdr-clone repo-j2 vm2 -j 2
STORED[vmdr-clone]=$(( $(bytes repo-j2) - before ))
log "  repository grew ${STORED[vmdr-clone]} bytes"
vm_drop vm2

# ---- virtnbdbackup ----------------------------------------------------------------
for v in plain z; do
  args=(); [[ $v == z ]] && args=(--compress)
  log ""
  log "## virtnbdbackup ${args[*]}: full, round 1, incremental"
  vm_fresh vm1
  SETUP="rm -rf vnb-$v" vnb_run "vnb-full-$v" "vnb-$v" vm1 full "${args[@]}"
  STORED[vnb-full-$v]=$(bytes "vnb-$v")
  log "  output $(bytes "vnb-$v") bytes"
  vm_round vm1 1
  before=$(bytes "vnb-$v")
  vnb_run "vnb-inc-$v" "vnb-$v" vm1 inc "${args[@]}"
  STORED[vnb-inc-$v]=$(( $(bytes "vnb-$v") - before ))
  log "  output grew ${STORED[vnb-inc-$v]} bytes"
done
log ""
log "## virtnbdbackup --compress: rounds 2..$nrounds, an incremental after each, then one without writes"
incs="${W[vnb-inc-z]}"
for (( k = 2; k <= nrounds; k++ )); do
  vm_round vm1 "$k"
  vnb_run "vnb-inc-z-$k" vnb-z vm1 inc --compress
  incs+=" ${W[vnb-inc-z-$k]}"
done
W[vnb-inc-med]=$(median <<<"$incs")
vnb_run vnb-nochange vnb-z vm1 inc --compress
STORED[vnb-chain]=$(bytes vnb-z)
log "  output after one full and $nrounds incrementals: ${STORED[vnb-chain]} bytes"
ls -l vnb-z | tee -a "$results"
log ""
log "## virtnbdbackup --compress of the clone"
vm_fresh vm2
SETUP="rm -rf vnb-clone" vnb_run vnb-clone vnb-clone vm2 full --compress
STORED[vnb-clone]=$(bytes vnb-clone)
vm_drop vm2
vm_drop vm1

# ---- the sparse big disk ---------------------------------------------------------------
if [[ $big != 0 ]]; then
  log ""
  log "## vmdr-snapshot -j 2 of the same data on a sparse $big disk: full, round 1, incremental"
  vm_fresh vm3 "$big"
  SETUP="rm -rf repo-big; $vinit -q -r repo-big" vmdr_run vmdr-big-full repo-big vm3 -j 2 --full
  vm_round vm3 1
  vmdr_run vmdr-big-inc repo-big vm3 -j 2
  vm_drop vm3
fi

# ---- the CPU limit --------------------------------------------------------------------
hash=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hash"])' repo-j2/config)
level=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["compression"]["level"])' repo-j2/config)
chunk=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunk_size"])' repo-j2/config)
log ""
log "## CPU limit: $hash + zstd $level at $chunk-byte chunks over img.raw (the disk's bytes), no I/O"
run cc -O2 -Wall -Wextra -o cpulimit "$root/bench/repo/cpulimit.c" -lzstd -lb2 -lxxhash -lcrypto -lpthread
# cpulimit maps and faults the image in before its timers start.
SETUP=: timed cpu-run ./cpulimit -H "$hash" -l "$level" -s "$chunk" -j "$ncpu" img.raw
tee -a "$results" <cmd.out
lim () { awk -v w="$1" -v j="$2" '$1 == "CPULIMIT" && $2 == w && $3 == j {print $4}' cmd.err; }
W[cpu-limit]=$(lim vmdr "$ncpu")
W[cpu-limit-1]=$(lim vmdr 1)
W[cpu-limit-plain]=$(lim plain "$ncpu")

# ---- summary ---------------------------------------------------------------------------
row () {   # LABEL WHAT [STORED]
  local l=$1
  awk -v l="$l" -v what="$2" -v w="${W[$l]:-}" -v c="${C[$l]:-}" -v m="${M[$l]:-}" \
      -v s="${3:-}" -v o="${O[$l]:-}" -v q="${Q[$l]:-}" -v k="${K[$l]:-}" -v d="$data" '
    function f(x) { return x == "" ? "-" : sprintf ("%.2f", x) }
    BEGIN {
    printf "%-15s %-44s %7.2f %7s %6s %10s %7s %6s %6s %6s\n", l, what, w, f(c),
      m == "" ? "-" : sprintf ("%.0f", m / 1024), s == "" ? "-" : sprintf ("%.1f", s / 1e6),
      sprintf ("%.0f", d / 1e6 / w), f(q), f(k), f(o) }' | tee -a "$results"
}
log ""
log "## Summary (one run; seconds; RSS MiB; stored MB = 10^6 bytes; MB/s = the disk's $(calc "$data / 1e6") MB of data / wall;"
log "## cpu = the tool's user+sys; meanwhile: qemu = the VM's QEMU (its NBD server), kernel = kernel CPU outside"
log "## both (writeback of the tool's output), other = user CPU of other load)"
log "$(printf '%-15s %-44s %7s %7s %6s %10s %7s %6s %6s %6s' run what wall cpu RSS stored_MB MB/s qemu kernel other)"
row read-limit "read limit: nbdcopy pull export -> null:"
row cpu-limit "CPU limit: vmdr's $hash+zstd $level, $ncpu thr, no I/O"
row cpu-limit-1 "CPU limit, 1 thread"
row cpu-limit-plain "digest+zstd of every chunk (no dedup), $ncpu thr"
row vmdr-full-j1 "vmdr-snapshot -j 1 full" "${STORED[vmdr-full-j1]}"
row vmdr-full-j2 "vmdr-snapshot -j 2 full" "${STORED[vmdr-full-j2]}"
row vnb-full-plain "virtnbdbackup full" "${STORED[vnb-full-plain]}"
row vnb-full-z "virtnbdbackup --compress full" "${STORED[vnb-full-z]}"
row vmdr-inc-j1 "vmdr-snapshot -j 1 incremental (round 1)" "${STORED[vmdr-inc-j1]}"
row vmdr-inc-j2 "vmdr-snapshot -j 2 incremental (round 1)" "${STORED[vmdr-inc-j2]}"
row vnb-inc-plain "virtnbdbackup incremental (round 1)" "${STORED[vnb-inc-plain]}"
row vnb-inc-z "virtnbdbackup --compress incremental (round 1)" "${STORED[vnb-inc-z]}"
row vmdr-inc-med "vmdr -j 2 incremental, median of $nrounds rounds"
row vnb-inc-med "virtnbdbackup -z incremental, median of $nrounds"
row vmdr-nochange "vmdr -j 2 incremental, no writes"
row vnb-nochange "virtnbdbackup -z incremental, no writes"
row vmdr-clone "vmdr -j 2 first full of the clone" "${STORED[vmdr-clone]}"
row vnb-clone "virtnbdbackup -z first full of the clone" "${STORED[vnb-clone]}"
if [[ $big != 0 ]]; then
  row vmdr-big-full "vmdr -j 2 full, sparse $big disk"
  row vmdr-big-inc "vmdr -j 2 incremental, sparse $big disk"
fi
log "chain of one full + $nrounds incrementals (+ one without writes): vmdr ${STORED[vmdr-chain]} bytes, virtnbdbackup --compress ${STORED[vnb-chain]} bytes"

# ---- the targets of issue 4 -------------------------------------------------------------
lesser=$(awk -v a="${W[read-limit]}" -v b="${W[cpu-limit]}" 'BEGIN { print (a > b ? a : b) }')
log ""
log "## Targets (issue 4); the lesser limit is the slower one: $lesser s"
bench_check "full -j 2: share of the lesser limit's speed" "$(bench_ratio "$lesser" "${W[vmdr-full-j2]}")" ">=" 0.85
bench_check "full -j 2: speed-up over virtnbdbackup --compress" "$(bench_ratio "${W[vnb-full-z]}" "${W[vmdr-full-j2]}")" ">=" 1.5
bench_check "full: repository / virtnbdbackup --compress output" "$(bench_ratio "${STORED[vmdr-full-j2]}" "${STORED[vnb-full-z]}")" "<=" 0.8
bench_check "full: throughput grows with cores (-j 1 wall / -j 2 wall)" "$(bench_ratio "${W[vmdr-full-j1]}" "${W[vmdr-full-j2]}")" ">=" 1.0
bench_check "incremental -j 2: speed-up over virtnbdbackup's (round 1)" "$(bench_ratio "${W[vnb-inc-plain]}" "${W[vmdr-inc-j2]}")" ">=" 3
bench_check "incremental -j 2: speed-up over virtnbdbackup's (medians, -z)" "$(bench_ratio "${W[vnb-inc-med]}" "${W[vmdr-inc-med]}")" ">=" 3
bench_check "incremental: stored / virtnbdbackup --compress incremental" "$(bench_ratio "${STORED[vmdr-inc-j2]}" "${STORED[vnb-inc-z]}")" "<=" 1.5
bench_check "incremental: a run's fixed cost (no writes), seconds" "${W[vmdr-nochange]}" "<=" 1
bench_check "chain of 1 + $nrounds: repository / virtnbdbackup --compress" "$(bench_ratio "${STORED[vmdr-chain]}" "${STORED[vnb-chain]}")" "<=" 0.8
bench_check "clone's first full: stored / the first VM's full" "$(bench_ratio "${STORED[vmdr-clone]}" "${STORED[vmdr-full-j2]}")" "<=" 0.10
bench_check "peak RSS, $size disk, MiB" "$(( M[vmdr-full-j2] / 1024 ))" "<=" 256
[[ $big == 0 ]] || bench_check "peak RSS, sparse $big disk, MiB" "$(( M[vmdr-big-full] / 1024 ))" "<=" 256
log ""
log "# done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
