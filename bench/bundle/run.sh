#!/bin/bash
# shellcheck disable=SC2016  # SETUP code is single-quoted: timed evals it
# The bundle benchmark (issue 7): vmdr-export of a snapshot to a bundle
# file and vmdr-import of it into an empty repository, beside `tar --zstd`
# of the same raw image and its untar, in one run.
#
# The disk is bench/lib.sh's image (an ext4 of VMDR_BENCH_SIZE filled from
# /usr), stored as one snapshot in a local repository (repo-image put,
# untimed).  Then, in each of VMDR_BENCH_ROUNDS rounds, each run after
# `sync; echo 3 > /proc/sys/vm/drop_caches` and after waiting for other
# load:
#
#   tar-c        tar --zstd -cSf img.tar.zst img.raw       (the export baseline)
#   tar-x        tar --zstd -xSf img.tar.zst into a directory (the import one)
#   export       vmdr-export of the snapshot to bundle.tar
#   export-zstd  the same with --zstd (bundle.tar.zst)
#   import       vmdr-import of bundle.tar into an empty repository
#   import-zstd  vmdr-import of bundle.tar.zst into an empty repository
#
# Wall, CPU (user+sys, children included: tar's zstd) and peak RSS from
# /usr/bin/time, medians over the rounds; MB/s = the image's allocated
# bytes / wall; "out" = what the run wrote (the archive, the bundle, the
# untarred image's allocated bytes, the imported repository).  The untarred
# image and the imported snapshot (restored) are compared with the image.
# Targets (the issue): export within 1.2x of tar --zstd's wall time while
# writing a smaller bundle (dedup), import within 1.5x of the untar's.  The
# size target is checked for the compressed bundle (--zstd) against the
# compressed archive; the plain bundle's size is reported beside it.
#
# As root on Debian 12 (dropping caches, mkfs.ext4 -d) with e2fsprogs, tar,
# zstd and time, and vmdr built (its tests too: repo-image).  Takes about
# 5 minutes on 2 cores with 3 rounds; needs about 15 GB in $VMDR_BENCH_DIR.
# Only the results file is left behind.
#
# Environment:
#   VMDR_BUILD          the vmdr build directory (../../build from here)
#   VMDR_BENCH_DIR      work directory (/var/tmp/vmdr-bundlebench)
#   VMDR_BENCH_SIZE     image size (3G)
#   VMDR_BENCH_SRC      directories to put into the image (see bench/lib.sh)
#   VMDR_BENCH_JOBS     vmdr-import -j (default: nproc)
#   VMDR_BENCH_INIT     extra vmdr-init arguments for the source repository
#                       (e.g. "--compression-level=3", tar --zstd's level)
#   VMDR_BENCH_ROUNDS   rounds of every run (3); medians reported
#   VMDR_BENCH_DROP     0 not to drop the page cache
#   VMDR_BENCH_QUIET    seconds to wait for other load before a run (120)
#   VMDR_BENCH_KEEP     1 to keep the image, the archives and the repositories
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bench/lib.sh"
build=$(cd "${VMDR_BUILD:-$root/build}" && pwd)
work=${VMDR_BENCH_DIR:-/var/tmp/vmdr-bundlebench}
size=${VMDR_BENCH_SIZE:-3G}
jobs=${VMDR_BENCH_JOBS:-$(nproc)}
rounds=${VMDR_BENCH_ROUNDS:-3}
read -r -a init_args <<<"${VMDR_BENCH_INIT:-}"
# shellcheck disable=SC2034  # drop and quiet are bench/lib.sh's settings
drop=${VMDR_BENCH_DROP:-1} quiet=${VMDR_BENCH_QUIET:-120}
results=$work/results.txt
repo_image=$build/tests/harness/repo-image

log () { printf '%s\n' "$*" | tee -a "$results"; }
run () { log "\$ $*"; "$@" 2>&1 | tee -a "$results"; }
die () { log "bundle bench: $*"; exit 1; }
calc () { awk "BEGIN { printf \"%s\", $* }"; }

[[ $(id -u) == 0 ]] || { echo "bundle bench: needs root" >&2; exit 1; }
for t in "$build/cmd/vmdr-init" "$build/cmd/vmdr-export" "$build/cmd/vmdr-import" \
         "$build/cmd/vmdr-restore" "$repo_image"; do
  [[ -x $t ]] || { echo "bundle bench: $t missing: build vmdr first (ninja -C $build)" >&2; exit 1; }
done
for c in /usr/bin/time zstd tar mkfs.ext4; do
  command -v "$c" >/dev/null || { echo "bundle bench: $c missing (apt-get install time zstd tar e2fsprogs)" >&2; exit 1; }
done
export PATH=$build/cmd:$PATH

mkdir -p "$work"
cd "$work"
: >"$results"
cleanup () {
  [[ ${VMDR_BENCH_KEEP:-0} == 1 ]] && return
  cd /
  rm -rf "$work"/{tree,img.raw,img.tar.zst,bundle.tar,bundle.tar.zst,repo,dst,untar,check,time.out,cmd.out,cmd.err}
}
trap cleanup EXIT

# timed LABEL CMD...: run SETUP (shell code, if set), wait for a quiet
# machine, drop the page cache, run CMD; its wall, user+sys and peak RSS
# (KiB) are added to LABEL's lists, and the CPU the rest of the machine
# used meanwhile is logged ("other": this machine is shared).
declare -A WALLS CPUS RSSS OTHERS
timed () {
  local label=$1 w u s m b0 b1 other
  shift
  [[ -z ${SETUP:-} ]] || eval "$SETUP"
  bench_wait_quiet
  bench_drop_caches
  read -r b0 _ < <(bench_cpu_jiffies)
  /usr/bin/time -o "$work/time.out" -f '%e %U %S %M' "$@" >"$work/cmd.out" 2>"$work/cmd.err" || {
    cat "$work/cmd.out" "$work/cmd.err" >&2; die "failed: $*"; }
  read -r b1 _ < <(bench_cpu_jiffies)
  read -r w u s m < <(tail -1 "$work/time.out")
  other=$(awk -v b=$(( b1 - b0 )) -v hz="$(getconf CLK_TCK)" -v u="$u" -v s="$s" 'BEGIN {
    o = b / hz - u - s; printf "%.2f", o < 0 ? 0 : o }')
  WALLS[$label]+=" $w" CPUS[$label]+=" $(calc "$u + $s")" RSSS[$label]+=" $m" OTHERS[$label]+=" $other"
  log "\$ $*"
  log "  [$label] wall $w s, CPU $(calc "$u + $s") s (user $u, sys $s), peak RSS $(( m / 1024 )) MiB, other CPU meanwhile $other s"
}

bytes () { du -sb "$1" | cut -f1; }

# ---- the image and the snapshot (untimed) --------------------------------------
bench_describe bundle
log "$(tar --version | head -1), $(zstd --version), vmdr-import -j $jobs, $rounds round(s)"
bench_make_image "$size"
# Blocks of zeros as holes, as a backup tool would see the disk.
cp --sparse=always img.raw img.tmp
mv img.tmp img.raw
virt=$(stat -c %s img.raw)
data=$(du -B1 img.raw | cut -f1)
log "image: virtual $virt bytes, allocated (du) $data bytes"
rm -rf repo
run vmdr-init -q -r repo "${init_args[@]}"
snap=$("$repo_image" put repo bench vda=img.raw -j "$jobs")
log "snapshot $snap; repository $(bytes repo) bytes; config: $(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print("hash", c["hash"], "chunk", c["chunk_size"], "zstd level", c["compression"]["level"])' repo/config)"

# ---- the rounds ---------------------------------------------------------------
declare -A OUT
for (( round = 1; round <= rounds; round++ )); do
  log ""
  log "######## round $round of $rounds"
  SETUP='rm -f img.tar.zst' timed tar-c tar --zstd -cSf img.tar.zst img.raw
  OUT[tar-c]=$(bytes img.tar.zst)
  SETUP='rm -rf untar; mkdir untar' timed tar-x tar --zstd -xSf img.tar.zst -C untar
  OUT[tar-x]=$(du -B1 untar/img.raw | cut -f1)
  SETUP='rm -f bundle.tar' timed export vmdr-export -q -r repo "$snap" -o bundle.tar
  OUT[export]=$(bytes bundle.tar)
  SETUP='rm -f bundle.tar.zst' timed export-zstd vmdr-export -q -r repo "$snap" -o bundle.tar.zst --zstd
  OUT[export-zstd]=$(bytes bundle.tar.zst)
  SETUP='rm -rf dst' timed import vmdr-import -q -r dst -j "$jobs" bundle.tar
  OUT[import]=$(bytes dst)
  SETUP='rm -rf dst' timed import-zstd vmdr-import -q -r dst -j "$jobs" bundle.tar.zst
  OUT[import-zstd]=$(bytes dst)
done

# ---- the outputs are the image --------------------------------------------------
log ""
cmp img.raw untar/img.raw || die "the untarred image differs from img.raw"
log "untarred image identical to img.raw (cmp)"
rm -rf check
mkdir check
vmdr-restore -q -r dst bench@latest -o check
cmp img.raw check/bench-vda.raw || die "the imported snapshot differs from img.raw"
log "imported snapshot (of bundle.tar.zst), restored, identical to img.raw (cmp)"
rm -rf check untar

# ---- summary --------------------------------------------------------------------
declare -A WALL CPU RSS OTHER
for l in "${!WALLS[@]}"; do
  WALL[$l]=$(bench_median <<<"${WALLS[$l]}")
  CPU[$l]=$(bench_median <<<"${CPUS[$l]}")
  RSS[$l]=$(bench_median <<<"${RSSS[$l]}")
  OTHER[$l]=$(bench_median <<<"${OTHERS[$l]}")
done
row () {   # LABEL WHAT
  local l=$1
  awk -v l="$l" -v what="$2" -v w="${WALL[$l]}" -v c="${CPU[$l]}" -v m="${RSS[$l]}" \
      -v out="${OUT[$l]}" -v d="$data" -v o="${OTHER[$l]}" -v ws="${WALLS[$l]}" 'BEGIN {
    n = split (ws, a, " "); lo = hi = a[1]
    for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
    printf "%-12s %-40s %6.2f %13s %6.2f %5.0f %9.1f %6.0f %6.2f\n", l, what, w,
      sprintf ("%.2f-%.2f", lo, hi), c, m / 1024, out / 1e6, d / 1e6 / w, o }' | tee -a "$results"
}
log ""
log "## Summary: medians of $rounds round(s) (wall range min-max); wall and CPU (user+sys, children"
log "## included) in seconds; RSS MiB; out = MB written; MB/s = the image's $(calc "$data / 1e6") MB"
log "## of data / wall; other = CPU seconds the rest of the machine used during the run (median)"
log "$(printf '%-12s %-40s %6s %13s %6s %5s %9s %6s %6s' run what wall range cpu RSS out_MB MB/s other)"
row tar-c "tar --zstd -cSf (export baseline)"
row export "vmdr-export"
row export-zstd "vmdr-export --zstd"
row tar-x "tar --zstd -xSf (import baseline)"
row import "vmdr-import -j $jobs of bundle.tar"
row import-zstd "vmdr-import -j $jobs of bundle.tar.zst"

log ""
log "## Targets (issue 7)"
for v in export export-zstd; do
  bench_check "$v: wall / tar --zstd -c's" "$(bench_ratio "${WALL[$v]}" "${WALL[tar-c]}")" "<=" 1.2
done
# Like for like: a compressed stream against a compressed stream.  The plain
# bundle (chunks compressed one by one, no stream compression) is no target.
bench_check "export-zstd: bundle bytes / img.tar.zst's" "$(bench_ratio "${OUT[export-zstd]}" "${OUT[tar-c]}")" "<" 1
log "$(printf '  %-72s %7s (reported)' "export (plain): bundle bytes / img.tar.zst's" "$(bench_ratio "${OUT[export]}" "${OUT[tar-c]}")")"
for v in import import-zstd; do
  bench_check "$v: wall / tar --zstd -x's" "$(bench_ratio "${WALL[$v]}" "${WALL[tar-x]}")" "<=" 1.5
done
log "(sizes: img.tar.zst ${OUT[tar-c]}, bundle.tar ${OUT[export]}, bundle.tar.zst ${OUT[export-zstd]}, source repository $(bytes repo) bytes)"
log ""
log "# done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
