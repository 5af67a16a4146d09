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
