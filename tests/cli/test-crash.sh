#!/bin/bash
# Crash safety: a writer killed with SIGKILL at random points leaves every
# earlier snapshot restorable and no partial snapshot listed; the next
# writer takes over its stale lock; GC sweeps what the dead left.  And GC
# run again and again beside a live writer never removes a chunk it needs.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd repo-image vmdr-init vmdr-ls vmdr-verify vmdr-prune python3

KILLS=${VMDR_CRASH_KILLS:-24}
R=$T/repo
vmdr-init -q -r "$R" --pack-size 1M || tap_bail "init"
# 24 MiB of incompressible data: about 24 packs per full write.
python3 -c "import random,sys; random.seed(1); sys.stdout.buffer.write(random.randbytes(24 << 20))" > "$T/img"
mutate() {  # rewrite 2 MiB at a random place: each snapshot has new data
  python3 -c "import random,sys; random.seed($1); f=open(sys.argv[1],'r+b'); f.seek(random.randrange(22) << 20); f.write(random.randbytes(2 << 20))" "$T/img"
}
count() { vmdr-ls -r "$R" | tail -n +2 | wc -l; }

repo-image put "$R" vm vda="$T/img" > "$T/id.0" || tap_bail "first put"
cp "$T/img" "$T/img.0"   # (only its checksum is kept below)
# How long one incremental write takes here: kills land inside that window.
mutate 0
t0=$(date +%s%N); repo-image put "$R" vm vda="$T/img" > "$T/id.x" || tap_bail "second put"
span=$(( ($(date +%s%N) - t0) / 1000 ))      # microseconds
mv "$T/id.x" "$T/id.00"; cp "$T/img" "$T/img.00"
done_ok=2 killed=0 bad_ls=0 lock_fail=0 prev=2
sha256sum < "$T/img.0" | cut -d' ' -f1 > "$T/sums"
sha256sum < "$T/img.00" | cut -d' ' -f1 >> "$T/sums"
i=0
# Until KILLS writers died mid-run (at most 4 x KILLS tries): a writer that
# finished before its kill shrinks the window the next kill is drawn from.
while [ "$killed" -lt "$KILLS" ] && [ "$i" -lt $((4 * KILLS)) ]; do
  i=$((i + 1))
  mutate "$i"
  sha256sum < "$T/img" | cut -d' ' -f1 >> "$T/sums"   # what a snapshot may hold
  repo-image put "$R" vm vda="$T/img" > "$T/id.$i" 2> "$T/err.$i" &
  pid=$!
  sleep "$(printf '0.%06d' $(( (RANDOM * 32768 + RANDOM) % span )))"
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"; st=$?
  [ "$st" = 137 ] && killed=$((killed + 1))     # (kill succeeds on a zombie too)
  if [ "$st" = 0 ] && [ -s "$T/id.$i" ]; then
    done_ok=$((done_ok + 1)); span=$((span * 3 / 4 + 1))
  else
    grep -q 'Device or resource busy' "$T/err.$i" && lock_fail=$((lock_fail + 1))
    rm -f "$T/id.$i"
  fi
  # A writer killed after its manifest landed has a complete snapshot: the
  # list grows by one per run at most, and never misses a finished one.
  n=$(count)
  [ "$n" -ge "$prev" ] && [ "$n" -le $((prev + 1)) ] && [ "$n" -ge "$done_ok" ] || bad_ls=$((bad_ls + 1))
  prev=$n
done
diag "$killed of $i writers killed mid-run, $((done_ok - 2)) finished first"
tap_ok "at least $KILLS writers were killed mid-run" test "$killed" -ge "$KILLS"
tap_is "the list only grows by complete snapshots and keeps every finished one" "$bad_ls" 0
tap_is "no writer was refused by a dead writer's lock" "$lock_fail" 0
tap_ok "every listed snapshot verifies" vmdr-verify -q -r "$R"
restores_known() {   # every listed snapshot restores to an image that was written
  local id bad=0
  for id in $(vmdr-ls -r "$R" vm | tail -n +2 | awk '{print $1}'); do
    rm -f "$T/out"
    repo-image get "$R" "$id" vda "$T/out" &&
      grep -qx "$(sha256sum < "$T/out" | cut -d' ' -f1)" "$T/sums" || bad=$((bad + 1))
  done
  [ "$bad" = 0 ]
}
tap_ok "every listed snapshot restores to an image as written" restores_known
for f in "$T"/id.*; do
  vmdr-ls -r "$R" vm | grep "^$(cat "$f") " > /dev/null || { bad_ls=1; diag "missing $(cat "$f")"; }
done
tap_is "every finished writer's snapshot is listed" "$bad_ls" 0
tap_ok "the dead left garbage: temporary files or unindexed packs" \
  sh -c "[ -n \"\$(ls '$R/tmp' 2>/dev/null)\" ] || [ $killed -gt 0 ]"
# Temporary files are swept after 15 minutes at least.  (find, not a glob:
# with none left, touch would create a file named '*'.)
find "$R/tmp" -type f -exec touch -d '1 hour ago' {} + 2>/dev/null
vmdr-prune -q -r "$R" --keep-last 1000 --grace 0 || tap_bail "gc failed"
tap_is "gc sweeps the dead writers' temporary files" "$(ls "$R/tmp" 2>/dev/null | wc -l)" 0
tap_ok "after gc, everything still verifies" vmdr-verify -q -r "$R"
tap_is "and nothing listed was lost" "$(count)" "$prev"

# GC beside a live writer: prune in a loop while snapshots are written.
mutate 999
( for j in 1 2 3; do mutate $((1000 + j)); repo-image put "$R" vm2 vda="$T/img" >/dev/null 2>>"$T/writer.err" || exit 1; done ) &
writer=$!
busy=0 ran=0
while kill -0 "$writer" 2>/dev/null; do
  vmdr-prune -q -r "$R" --keep-last 1000 --grace 0 2>>"$T/prune.err"; st=$?
  case $st in 0) ran=$((ran + 1)) ;; 4) busy=$((busy + 1)) ;; *) tap_bail "prune failed: $st: $(tail -1 "$T/prune.err")" ;; esac
done
wait "$writer"; wst=$?
diag "gc ran $ran times and stood back $busy times beside the writer"
tap_is "the writer finished" "$wst" 0 || cat "$T/writer.err"
tap_ok "gc ran or stood back beside the writer ($ran/$busy)" test $((ran + busy)) -ge 1
tap_ok "everything verifies after gc beside a writer" vmdr-verify -q -r "$R"

tap_done
