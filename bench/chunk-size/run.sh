#!/bin/bash
# The chunk-geometry benchmark behind docs/repository-format.md, section 12.
#
# Builds chunkbench, makes a realistic raw disk image (ext4 filled with
# /usr, or with as much of it as fits) and a changed copy (200 scattered
# 64 KiB writes of the image's own data, like a cron incremental), runs
# chunkbench over both, then, if restic is installed, backs the image and
# then the changed copy up with restic for comparison.  Everything but the
# results file is removed at the end.
#
# As root (mkfs.ext4 -d keeps owners), on Debian 12 with libzstd-dev
# libb2-dev libxxhash-dev libssl-dev e2fsprogs gcc (and optionally restic).
# Takes 10 to 20 minutes on 2 cores; needs about 12 GB in $VMDR_BENCH_DIR
# and 10 GB of RAM (both images are mapped whole).
#
# Environment:
#   VMDR_BENCH_DIR      work directory (/var/tmp/vmdr-chunkbench)
#   VMDR_BENCH_SIZE     image size (3G)
#   VMDR_BENCH_SRC      directories to put into the image (default: /usr if
#                       it fits in 5/6 of the image, else a subset of it)
#   VMDR_BENCH_ARGS     extra chunkbench arguments (e.g. "-s 64K,1M")
#   VMDR_BENCH_RESTIC   0 to skip restic
#   VMDR_BENCH_KEEP     1 to keep the images and the restic repository
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
work=${VMDR_BENCH_DIR:-/var/tmp/vmdr-chunkbench}
size=${VMDR_BENCH_SIZE:-3G}
results=$work/results.txt

cleanup () {
  [[ ${VMDR_BENCH_KEEP:-0} == 1 ]] && return
  rm -rf "$work/tree" "$work/img.raw" "$work/img-changed.raw" \
         "$work/restic-repo" "$work/restic-cache" "$work/chunkbench" \
         "$work/restic.err" "$work/restic.time"
}
trap cleanup EXIT

log () { printf '%s\n' "$*" | tee -a "$results"; }
run () { log "\$ $*"; "$@" 2>&1 | tee -a "$results"; }

mkdir -p "$work"
: >"$results"
cd "$work"

log "# vmdr chunk-size benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -sr)"
lscpu | head -20 | tee -a "$results"
log "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}'), nproc $(nproc)"
log "restic: $(restic version 2>/dev/null || echo 'not installed')"

# ---- build ----------------------------------------------------------------
run cc -O2 -Wall -Wextra -o "$work/chunkbench" "$here/chunkbench.c" \
    -lzstd -lb2 -lxxhash -lcrypto -lpthread

# ---- the image -----------------------------------------------------------
bench_make_image "$size"
log "image: $(du -B1 img.raw | cut -f1) bytes allocated (sparse)"

run cp --sparse=always img.raw img-changed.raw
run ./chunkbench mutate -n 200 -b 64K -S 1 img.raw img-changed.raw

# ---- chunkbench ------------------------------------------------------------
# Progress goes to stderr, tables to stdout.
log "\$ ./chunkbench ${VMDR_BENCH_ARGS:-} img.raw img-changed.raw"
# shellcheck disable=SC2086
./chunkbench ${VMDR_BENCH_ARGS:-} img.raw img-changed.raw | tee -a "$results"

# ---- restic ------------------------------------------------------------------
# Time: wall, user and system CPU seconds of one command.
timed () {
  local TIMEFORMAT='%R %U %S'
  { time "$@" >/dev/null 2>restic.err; } 2>restic.time ||
    { cat restic.err >&2; return 1; }
  read -r wall user sys <restic.time
  log "\$ $*"
  log "  wall ${wall}s, CPU $(awk "BEGIN {print $user + $sys}")s (user $user, sys $sys)"
}

if [[ ${VMDR_BENCH_RESTIC:-1} != 0 ]] && command -v restic >/dev/null; then
  export RESTIC_PASSWORD=x RESTIC_REPOSITORY=$work/restic-repo
  export RESTIC_CACHE_DIR=$work/restic-cache
  log ""
  log "## restic (content-defined chunks, avg 1 MiB; compression auto)"
  rm -rf restic-repo restic-cache
  restic init --repository-version 2 -q >/dev/null
  log "repository: $(du -sb restic-repo | cut -f1) bytes after init"
  timed restic backup img.raw
  full=$(du -sb restic-repo | cut -f1)
  log "repository: $full bytes after the full backup"
  # The same file name with the changed contents: restic rereads it whole.
  mv img-changed.raw img.raw
  timed restic backup img.raw
  incr=$(du -sb restic-repo | cut -f1)
  log "repository: $incr bytes after the incremental, growth $(( incr - full )) bytes"
  restic stats --mode raw-data 2>&1 | tee -a "$results"
fi

log ""
log "# done $(date -u +%Y-%m-%dT%H:%M:%SZ)"
