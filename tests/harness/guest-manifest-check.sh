#!/bin/bash
# guest-manifest-check.sh ROOT -- check a copy of the test guest's data disk
# (extracted to ROOT) against the manifest the guest wrote: every file listed
# matches its SHA-256, and no file is missing or extra, except the one file
# named in PENDING (a change the guest had started when the copy was taken).
set -uo pipefail
R=$1
[ -f "$R/MANIFEST" ] || { echo "no MANIFEST in $R"; exit 1; }
pending=$(cat "$R/PENDING" 2>/dev/null || true)
bad=0
while read -r sum file; do
  [ "$file" = "$pending" ] && continue
  if [ ! -f "$R/$file" ]; then echo "missing: $file"; bad=1; continue; fi
  [ "$(sha256sum < "$R/$file" | cut -d' ' -f1)" = "$sum" ] || { echo "differs: $file"; bad=1; }
done < "$R/MANIFEST"
for f in $(cd "$R" && find seed churn -type f 2>/dev/null); do
  [ "$f" = "$pending" ] && continue
  grep -q "  $f\$" "$R/MANIFEST" || { echo "not in manifest: $f"; bad=1; }
done
n=$(wc -l < "$R/MANIFEST")
[ "$bad" = 0 ] && echo "manifest ok: $n files${pending:+, $pending pending}"
exit "$bad"
