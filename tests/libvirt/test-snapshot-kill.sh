#!/bin/bash
# vmdr-snapshot killed with SIGKILL mid-transfer, several times: the earlier
# snapshots stay intact, and the next run ends the orphaned backup job,
# leaves no scratch files behind, and produces a correct snapshot.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
need_cmd vmdr-snapshot vmdr-init vmdr-ls vmdr-verify repo-image python3

use_libvirt
dom=kill-$$
vm_create "$dom" vda:qcow2:512M || tap_bail "cannot create domain"
R=$T/repo
mkdir -p "$T/scratch"
vmdr-init -q -r "$R"
SNAP=(vmdr-snapshot -c "$LV_URI" -r "$R" --scratch-dir "$T/scratch" -j 2)

# 192 MiB of incompressible guest data, written through the monitor in 8 MiB
# pieces from a file the guest disk "reads" (qemu-io write -s).
python3 -c "import random,sys; random.seed(3); sys.stdout.buffer.write(random.randbytes(8 << 20))" > "$T/blob"
qom=$(virsh_c "$LV_URI" domblklist "$dom" >/dev/null; echo /machine/peripheral/virtio-disk0/virtio-backend)
for i in $(seq 0 23); do
  virsh_c "$LV_URI" qemu-monitor-command "$dom" --hmp "qemu-io -d $qom \"write -s $T/blob $((i * 8))M 8M\"" >/dev/null
  vm_write "$dom" vda "0x$((i % 9 + 1))1" "$((i * 8 + 4))M" 4k     # make every piece differ
done

"${SNAP[@]}" "$dom" > /dev/null 2>&1 || tap_bail "first snapshot failed"
t0=$(date +%s%N); vm_write "$dom" vda 0x77 300M 1M
"${SNAP[@]}" --full "$dom" > /dev/null 2>&1; span=$(( ($(date +%s%N) - t0) / 1000 ))
diag "a full snapshot of 192 MiB takes $((span / 1000)) ms"
n0=$(vmdr-ls -r "$R" | tail -n +2 | wc -l)

# Kill until three runs died mid-transfer (at most 15 tries); a run that
# finished first (dedup makes later fulls quicker) shrinks the window.
killed=0 i=0
while [ "$killed" -lt 3 ] && [ "$i" -lt 15 ]; do
  i=$((i + 1))
  vm_write "$dom" vda "0x$((i % 9 + 1))5" "$((i * 16 % 500))M" 64k
  "${SNAP[@]}" --full "$dom" > /dev/null 2>&1 &
  pid=$!
  sleep "$(printf '0.%06d' $(( (RANDOM * 32768 + RANDOM) % span + span / 20 )))"
  kill -KILL "$pid" 2>/dev/null; wait "$pid"
  if [ $? = 137 ]; then killed=$((killed + 1)); else span=$((span * 2 / 3 + 1)); fi
done
diag "$killed of $i runs killed mid-transfer"
tap_ok "runs were killed mid-transfer" test "$killed" -ge 3
tap_ok "the earlier snapshots verify" vmdr-verify -q -r "$R"

virsh_c "$LV_URI" suspend "$dom" >/dev/null
"${SNAP[@]}" --json "$dom" > "$T/out" 2> "$T/err"; st=$?
tap_is "the next run succeeds (exit 0 or 3)" "$((st == 0 || st == 3))" 1
if [ "$killed" -gt 0 ]; then
  tap_ok "... after ending the job a killed run left (if one was still running)" \
    sh -c "[ $st = 0 ] || grep -q 'ended a backup job\|took over the lock' '$T/out'"
fi
id=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['snapshots'][0]['snapshot'])" "$T/out")
repo-image get "$R" "$id" vda "$T/restored"
tap_ok "and its snapshot equals the disk (qemu-img compare)" \
  qemu-img compare -q -U -f raw -F qcow2 "$T/restored" "$(vm_image "$dom" vda qcow2)"
virsh_c "$LV_URI" resume "$dom" >/dev/null
tap_ok "no backup job is left running" sh -c "! virsh -c '$LV_URI' domjobinfo '$dom' | grep -q Backup"
tap_is "no scratch files are left" "$(ls "$T/scratch" | grep -c scratch)" 0
tap_is "one vmdr checkpoint is left" \
  "$(virsh_c "$LV_URI" checkpoint-list "$dom" --name | grep -c '^vmdr-')" 1
tap_ok "everything verifies" vmdr-verify -q -r "$R"

tap_done
