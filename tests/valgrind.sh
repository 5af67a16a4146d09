#!/bin/bash
# Test wrapper for 'meson test --setup valgrind': memcheck on the test and on
# every child (Criterion runs each test in a child whose exit code it does not
# pass on), so errors are read back from the per-process logs instead.
set -u
logs=$(mktemp -d "${TMPDIR:-/tmp}/vmdr-valgrind.XXXXXX")
valgrind --quiet --trace-children=yes --leak-check=full --errors-for-leak-kinds=definite \
  --log-file="$logs/vg.%p" "$@"
st=$?
if grep -qs 'ERROR SUMMARY: [1-9]\|Invalid \|uninitialised\|definitely lost' "$logs"/vg.*; then
  cat "$logs"/vg.* >&2
  st=99
fi
rm -rf "$logs"
exit "$st"
