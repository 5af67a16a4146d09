#!/bin/bash
# vmdr-prune and GC: retention removes snapshots, GC frees exactly what no
# snapshot references, the rest still restores; a dry run changes nothing;
# GC never runs beside a writer.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd repo-image vmdr-init vmdr-ls vmdr-verify vmdr-prune python3
prom() { python3 "$HARNESS_DIR/promparse.py" "$@"; }
P=$T/vmdr-prune.prom

R=$T/repo
vmdr-init -q -r "$R" --pack-size 1M || tap_bail "init"
mkimg() {  # mkimg FILE SEED: 4 MiB of data unique to SEED
  python3 -c "import random,sys; random.seed($2); sys.stdout.buffer.write(random.randbytes(4 << 20))" > "$1"
}
for i in 1 2 3; do
  mkimg "$T/img$i" "$i"
  repo-image put "$R" vm vda="$T/img$i" > "$T/id$i" || tap_bail "put $i"
  sleep 0.01
done
repo-image put "$R" other vda="$T/img1" > "$T/id-other"   # shares img1's chunks
tap_is "four snapshots" "$(vmdr-ls -r "$R" | tail -n +2 | wc -l)" 4
size0=$(du -sb "$R/data" | cut -f1)

vmdr-prune -r "$R" >/dev/null 2>"$T/err"; st=$?
tap_is "no rule: refused with exit 2" "$st $(grep -c 'at least one --keep' "$T/err")" "2 1"

out=$(vmdr-prune -r "$R" --keep-last 1 --grace 0 --dry-run vm)
tap_is "dry run names what it would remove" "$(echo "$out" | grep -c '^would remove vm/')" 2
tap_is "dry run removes nothing" "$(vmdr-ls -r "$R" | tail -n +2 | wc -l) $(du -sb "$R/data" | cut -f1)" "4 $size0"

out=$(vmdr-prune -r "$R" --keep-last 1 --grace 3600 --metrics-file "$P" vm)
tap_is "keep-last 1 removes the two older snapshots of vm" "$(echo "$out" | grep -c '^removed vm/')" 2
tap_ok "young packs survive the grace period" sh -c "echo '$out' | grep -q 'deleted 0 of'"
tap_ok "--metrics-file: valid Prometheus text" prom "$P"
tap_is "... last_result 0, 2 removed of vm, only vm, 0 bytes freed" \
  "$(prom "$P" vmdr_prune_last_result "repo=$R") $(prom "$P" vmdr_prune_snapshots_removed domain=vm "repo=$R") $(prom --count "$P" vmdr_prune_snapshots_removed) $(prom "$P" vmdr_prune_bytes_freed)" \
  "0 2 1 0"
tap_is "the other domain is untouched" "$(vmdr-ls -r "$R" other | tail -n +2 | wc -l)" 1

out=$(vmdr-prune -r "$R" --keep-last 1 --grace 0 --json --metrics-file "$P")
tap_is "gc deletes img2's packs only (img1 is shared with 'other')" \
  "$(echo "$out" | python3 -c 'import json,sys; g=json.load(sys.stdin)["gc"]; print(g["packs_deleted"] > 0, g["bytes_deleted"] > 4000000, g["bytes_deleted"] < 5000000)')" \
  "True True True"
tap_is "--metrics-file: the bytes freed are those of --json" "$(prom "$P" vmdr_prune_bytes_freed)" \
  "$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["gc"]["bytes_deleted"])')"
tap_is "... every domain, none removed this time" \
  "$(prom "$P" vmdr_prune_snapshots_removed domain=vm) $(prom "$P" vmdr_prune_snapshots_removed domain=other)" "0 0"
ok_at=$(prom "$P" vmdr_prune_last_success_timestamp_seconds)
size1=$(du -sb "$R/data" | cut -f1)
tap_ok "the repository shrank by about one image ($size0 -> $size1)" test $((size0 - size1)) -gt 4000000
tap_ok "all remaining snapshots verify" vmdr-verify -q -r "$R"
repo-image get "$R" "$(cat "$T/id3")" vda "$T/out3"
tap_ok "newest vm snapshot restores" cmp "$T/img3" "$T/out3"
repo-image get "$R" "$(cat "$T/id-other")" vda "$T/out1"
tap_ok "the shared chunks of 'other' survived" cmp "$T/img1" "$T/out1"

# A pack without an index (a writer killed between its two puts) is swept.
orphan=$R/data/ab/ab$(printf '%062d' 0)
young=$R/data/ab/ab$(printf '%061d' 0)1
mkdir -p "$R/data/ab"
head -c 1000 /dev/urandom > "$orphan"
head -c 1000 /dev/urandom > "$young"
touch -d '2 hours ago' "$orphan"
tap_ok "prune with a grace period" vmdr-prune -q -r "$R" --keep-last 10 --grace 60
tap_ok "an orphan pack older than the grace period is deleted" test ! -e "$orphan"
tap_ok "a younger one is not (a writer may be between its two puts)" test -e "$young"
rm -f "$young"

# GC never runs beside a writer: a live writer's lock makes prune exit 4.
sleep 30 & holder=$!
at_exit "kill $holder 2>/dev/null"
mkdir -p "$R/locks"
printf '{"host":"%s","pid":%d,"started":"x","boot_id":"%s"}' "$(hostname)" "$holder" \
  "$(cat /proc/sys/kernel/random/boot_id)" > "$R/locks/domain-vm"
vmdr-prune -r "$R" --keep-last 1 --grace 0 --metrics-file "$P" >/dev/null 2>"$T/err"; st=$?
tap_is "prune beside a running backup: exit 4, one line" "$st $(wc -l < "$T/err")" "4 1"
tap_is "... and nothing was removed" "$(vmdr-ls -r "$R" | tail -n +2 | wc -l)" 2
tap_ok "... its metrics are written, valid" prom "$P"
tap_is "... last_result 4, the last success still the earlier run's" \
  "$(prom "$P" vmdr_prune_last_result) $(prom "$P" vmdr_prune_last_success_timestamp_seconds)" "4 $ok_at"
echo 'not metrics' > "$T/garbage.prom"
vmdr-prune -r "$R" --keep-last 1 --grace 0 --metrics-file "$T/garbage.prom" >/dev/null 2>&1; st=$?
tap_is "a previous file that does not parse is replaced; no success known: 0" \
  "$st $(prom "$T/garbage.prom" vmdr_prune_last_success_timestamp_seconds)" "4 0"
kill $holder; wait $holder 2>/dev/null
vmdr-prune -r "$R" --keep-last 1 --grace 0 >/dev/null 2>"$T/err"; st=$?
tap_is "a dead writer's lock is stale: prune runs" "$st" 0
# And a writer refuses to start while GC holds its lock.
sleep 30 & holder=$!
printf '{"host":"%s","pid":%d,"started":"x","boot_id":"%s"}' "$(hostname)" "$holder" \
  "$(cat /proc/sys/kernel/random/boot_id)" > "$R/locks/gc"
n0=$(vmdr-ls -r "$R" | tail -n +2 | wc -l)
repo-image put "$R" vm vda="$T/img2" > "$T/waited" &
writer=$!
sleep 1
tap_ok "a writer waits while GC runs" kill -0 "$writer"
tap_is "... and has written no snapshot" "$(vmdr-ls -r "$R" | tail -n +2 | wc -l)" "$n0"
kill $holder; wait $holder 2>/dev/null
wait "$writer"; st=$?
tap_is "it goes on once the GC is gone (its lock is stale)" "$st $(vmdr-ls -r "$R" | tail -n +2 | wc -l)" "0 $((n0 + 1))"

tap_done
