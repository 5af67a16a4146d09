# Sourced by the benchmarks: the test image they share.  The caller defines
# run (log and execute a command), log, and $results.

# bench_make_image SIZE: img.raw in the current directory, an ext4 of SIZE
# (e.g. 3G) filled from /usr, or from as many of its big directories as fit
# in 5/6 of it ($VMDR_BENCH_SRC names others).  Sets the array dirs.
bench_make_image() {
  local size=$1 image_bytes budget_kb total kb d
  image_bytes=$(numfmt --from=iec "$size")
  budget_kb=$(( image_bytes * 5 / 6 / 1024 ))
  read -r -a dirs <<<"${VMDR_BENCH_SRC:-}"
  if (( ${#dirs[@]} == 0 )); then
    if (( $(du -sk /usr | cut -f1) <= budget_kb )); then
      dirs=(/usr)
    else
      # Libraries, data and docs, headers, helpers, programs: whatever fits.
      total=0
      for d in /usr/lib/x86_64-linux-gnu /usr/share /usr/include /usr/libexec \
               /usr/bin /usr/sbin; do
        [[ -d $d ]] || continue
        kb=$(du -sk "$d" | cut -f1)
        if (( total + kb <= budget_kb )); then
          dirs+=("$d")
          total=$(( total + kb ))
        fi
      done
    fi
  fi
  log "image: $size ext4 holding ${dirs[*]} ($(du -sch "${dirs[@]}" | tail -1 | cut -f1))"
  rm -f img.raw img-changed.raw
  run truncate -s "$size" img.raw
  if [[ ${dirs[*]} == /usr ]]; then
    run mkfs.ext4 -q -F -d /usr img.raw
  else
    rm -rf tree
    for d in "${dirs[@]}"; do
      mkdir -p "tree$(dirname "$d")"
      cp -a "$d" "tree$d"
    done
    run mkfs.ext4 -q -F -d tree img.raw
    rm -rf tree
  fi
  dumpe2fs -h img.raw 2>/dev/null |
    awk -F: '/^Block count/ {n=$2} /^Free blocks/ {f=$2} /^Block size/ {b=$2}
             END {printf "image: file system: %.0f MB of %.0f MB in use\n", (n-f)*b/1e6, n*b/1e6}' |
    tee -a "$results"
}

# ---- timing, shared by the benchmarks ---------------------------------------
# bench_drop_caches: unless $drop is 0, so that inputs are read from disk.
bench_drop_caches() { [[ ${drop:-1} == 1 ]] || return 0; sync; echo 3 >/proc/sys/vm/drop_caches; }
# Machine-wide busy and idle jiffies.
bench_cpu_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }

# bench_wait_quiet: wait (at most $quiet s, default 120) until less than 10 %
# of the machine has been busy for two seconds in a row: other load here
# comes in bursts.
bench_wait_quiet() {
  local waited=0 calm=0 b0 i0 b1 i1 limit=${quiet:-120}
  (( limit > 0 )) || return 0
  while (( calm < 2 )); do
    read -r b0 i0 < <(bench_cpu_jiffies); sleep 1; read -r b1 i1 < <(bench_cpu_jiffies)
    if awk -v b=$(( b1 - b0 )) -v i=$(( i1 - i0 )) 'BEGIN { exit !(b + i == 0 || b / (b + i) < 0.10) }'; then
      calm=$(( calm + 1 ))
      continue
    fi
    calm=0
    (( ++waited < limit )) || { log "  (other load still running after $waited s: measuring anyway)"; return 0; }
  done
  (( waited == 0 )) || log "  (waited $waited s for other load to stop)"
}

# bench_writes IN OUT N SEED: OUT, a sparse copy of IN with N writes of
# 64 KiB of real file data (from /usr/lib) onto distinct 64 KiB-aligned
# offsets all over it: what a guest's scattered writes between two
# backups look like.
bench_writes() {
  cp --sparse=always "$1" "$2"
  python3 - "$2" "$3" "$4" <<'PY'
import os, random, sys
path, n, rnd = sys.argv[1], int(sys.argv[2]), random.Random(int(sys.argv[3]))
size = os.path.getsize(path)
src = [os.path.join(d, f) for d, _, fs in os.walk("/usr/lib") for f in fs
       if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f))
       and os.path.getsize(os.path.join(d, f)) >= 65536][:5000]
with open(path, "r+b") as out:
    for off in rnd.sample(range(size // 65536), n):
        f = rnd.choice(src)
        with open(f, "rb") as i:
            i.seek(rnd.randrange(0, os.path.getsize(f) - 65536 + 1))
            out.seek(off * 65536); out.write(i.read(65536))
PY
}

# bench_describe NAME: the results' first lines: what ran, on which
# machine, with which vmdr (commit, uncommitted changes, build type).
# Needs $root and $build.
bench_describe() {
  local dirty='' buildtype
  [[ -z $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]] ||
    dirty=' (with uncommitted changes)'
  buildtype=$(python3 -c 'import json,sys; print(*[o["value"] for o in json.load(open(sys.argv[1])) if o["name"]=="buildtype"])' \
    "$build/meson-info/intro-buildoptions.json" 2>/dev/null || echo '?')
  log "# vmdr $1 benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -sr)"
  log "vmdr: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty, build $build ($buildtype)"
  lscpu | grep -E '^(CPU\(s\)|Model name)' | tee -a "$results"
  log "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}'), work dir on $(df --output=source "$work" | tail -1)"
  if [[ ${drop:-1} == 1 ]]; then
    log "page cache: dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed run"
  else
    log "page cache: NOT dropped: runs may read from memory"
  fi
}

# bench_median: the median of the numbers on stdin (any spacing).
bench_median() {
  tr -s ' ' '\n' | grep . | sort -g |
    awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# bench_ratio A B: A / B, two decimals.
bench_ratio () { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# bench_check WHAT VALUE OP BOUND: one line of the targets table, "met" or
# "MISSED" (OP: <=, <, >= or >).
bench_check () {
  local ok
  ok=$(awk -v v="$2" -v b="$4" -v op="$3" 'BEGIN {
    met = op == "<=" ? v <= b : op == "<" ? v < b : op == ">=" ? v >= b : v > b
    print met ? "met" : "MISSED" }')
  log "$(printf '  %-72s %7s %s %-5s %s' "$1" "$2" "$3" "$4" "$ok")"
}
