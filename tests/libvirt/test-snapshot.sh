#!/bin/bash
# vmdr-snapshot against a real libvirt: a full backup, then incrementals
# after known writes on two disks, each restored and compared with the disk
# at its point in time (qemu-img compare); only dirty chunks are read; lost
# checkpoint metadata is redefined; --full starts a new chain; the lock, bad
# input and foreign checkpoints.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
need_cmd vmdr-snapshot vmdr-init vmdr-ls vmdr-verify repo-image python3
prom() { python3 "$HARNESS_DIR/promparse.py" "$@"; }
PM=$T/vmdr-snapshot.prom

use_libvirt
dom=snap-$$
vm_create "$dom" vda:qcow2:64M vdb:qcow2:32M vdc:raw:8M || tap_bail "cannot create domain"
R=$T/repo
vmdr-init -q -r "$R"
SNAP=(vmdr-snapshot -c "$LV_URI" -r "$R" --scratch-dir "$T")
json() {   # json EXPR [ARGS]: EXPR over the last run's JSON (d = its snapshot)
  local e=$1; shift
  python3 -c "import json,sys; d=json.load(sys.stdin)['snapshots'][0]; print($e)" "$@" < "$T/out"
}

# Restore each disk of snapshot $1 and compare with the images now (the
# domain is paused, so they hold the snapshot's point in time).
same_as_disks() {
  local id=$1 d f
  for d in vda:qcow2 vdb:qcow2 vdc:raw; do
    f=$T/restore-${d%%:*}.raw; rm -f "$f"
    repo-image get "$R" "$id" "${d%%:*}" "$f" || return 1
    qemu-img compare -q -U -f raw -F "${d#*:}" "$f" "$(vm_image "$dom" "${d%%:*}" "${d#*:}")" || {
      echo "disk ${d%%:*} differs"; return 1; }
  done
}
snap_paused() {   # snap_paused ARGS...: snapshot while paused, JSON in $T/out
  virsh_c "$LV_URI" suspend "$dom" >/dev/null
  "${SNAP[@]}" --json "$@" "$dom" > "$T/out" 2> "$T/err"; st=$?
}
resume() { virsh_c "$LV_URI" resume "$dom" >/dev/null; }

# --- full
vm_write "$dom" vda 0xab 1M 1M
vm_write "$dom" vdb 0xcd 0 64k
vm_write "$dom" vdc 0xef 4M 4k
snap_paused --metrics-file "$PM"
tap_is "first snapshot: full, exit 0, nothing on stderr" \
  "$st $(json 'd["kind"]') $(wc -c < "$T/err")" "0 full 0"
id1=$(json 'd["snapshot"]')
tap_ok "--metrics-file: valid Prometheus text" prom "$PM"
tap_is "... last_result 0, bytes read and new as in --json, no pause, chain length 1" \
  "$(prom "$PM" vmdr_snapshot_last_result domain="$dom" "repo=$R") $(prom "$PM" vmdr_snapshot_bytes_read domain="$dom") $(prom "$PM" vmdr_snapshot_bytes_new domain="$dom") $(prom "$PM" vmdr_snapshot_pause_seconds) $(prom "$PM" vmdr_snapshot_chain_length)" \
  "0 $(json 'd["bytes_read"], d["bytes_new"]' | tr -d '(),') 0 1"
tap_ok "... a duration and the success time (now)" python3 -c "import sys,time; sys.exit(not ($(prom "$PM" vmdr_snapshot_duration_seconds) > 0 and 0 <= time.time() - $(prom "$PM" vmdr_snapshot_last_success_timestamp_seconds) < 120))"
tap_ok "full snapshot equals the disks (qemu-img compare)" same_as_disks "$id1"
resume

# --- incremental: known writes on two disks
vm_write "$dom" vda 0x11 4M 64k
vm_write "$dom" vda 0x22 10272k 4k
vm_write "$dom" vdb 0x33 20M 128k
snap_paused --metrics-file "$PM"
tap_is "the incremental's metrics: chain length 2, the bytes read of --json" \
  "$(prom "$PM" vmdr_snapshot_chain_length domain="$dom") $(prom "$PM" vmdr_snapshot_bytes_read domain="$dom")" "2 $(json 'd["bytes_read"]')"
ok_at=$(prom "$PM" vmdr_snapshot_last_success_timestamp_seconds domain="$dom")
tap_is "second snapshot: incremental from the first" \
  "$st $(json 'd["kind"], d["parent"] == sys.argv[1]' "$id1" | tr -d "(),'")" "0 incremental True"
tap_is "only the dirty chunks of the qcow2 disks are read" \
  "$(json '" ".join(str(x["bytes_read"]) for x in d["disks"][:2])')" "131072 131072"
id2=$(json 'd["snapshot"]')
tap_ok "incremental snapshot equals the disks" same_as_disks "$id2"
resume
tap_is "one checkpoint kept: the newest" \
  "$(virsh_c "$LV_URI" checkpoint-list "$dom" --name | tr -d '\n')" "vmdr-${id2#*/}"

# --- libvirt lost the checkpoint: redefined from the repository
virsh_c "$LV_URI" checkpoint-delete "$dom" "vmdr-${id2#*/}" --metadata >/dev/null
vm_write "$dom" vdb 0x44 1M 64k
snap_paused
tap_is "lost checkpoint metadata: redefined, still incremental, exit 3" \
  "$st $(json 'd["kind"]')" "3 incremental"
tap_ok "the warning in the JSON says so" sh -c "grep -q 'had lost checkpoint' '$T/out'"
tap_is "only the new write is read" "$(json 'd["disks"][1]["bytes_read"]')" 65536
tap_ok "and the snapshot equals the disks" same_as_disks "$(json 'd["snapshot"]')"
resume

# --- --full starts a new chain; foreign checkpoints are left alone
echo "<domaincheckpoint><name>foreign</name><disks><disk name='vdc' checkpoint='no'/></disks></domaincheckpoint>" > "$T/foreign.xml"
virsh_c "$LV_URI" checkpoint-create "$dom" "$T/foreign.xml" >/dev/null || tap_bail "cannot make a foreign checkpoint"
snap_paused --full
tap_is "--full: a full snapshot, exit 0" "$st $(json 'd["kind"]')" "0 full"
tap_ok "it equals the disks" same_as_disks "$(json 'd["snapshot"]')"
resume
tap_ok "a foreign checkpoint is never touched" virsh_c "$LV_URI" checkpoint-info "$dom" foreign
tap_ok "every snapshot verifies" vmdr-verify -q -r "$R"
tap_is "four snapshots listed" "$(vmdr-ls -r "$R" "$dom" | tail -n +2 | wc -l)" 4

# --- a broken bitmap: a full backup with exit 3
node=$(virsh_c "$LV_URI" qemu-monitor-command "$dom" '{"execute":"query-block"}' | python3 -c "
import json,sys
for b in json.load(sys.stdin)['return']:
    if b.get('qdev','').startswith('/machine/peripheral/virtio-disk0/'): print(b['inserted']['node-name'])")
cp=$(virsh_c "$LV_URI" checkpoint-list "$dom" --name | grep '^vmdr-')
virsh_c "$LV_URI" qemu-monitor-command "$dom" \
  "{\"execute\":\"block-dirty-bitmap-remove\",\"arguments\":{\"node\":\"$node\",\"name\":\"$cp\"}}" >/dev/null
snap_paused
tap_is "a broken bitmap: full backup, exit 3" "$st $(json 'd["kind"]')" "3 full"
tap_ok "... the warning names the checkpoint" sh -c "grep -q 'inconsistent' '$T/out'"
tap_ok "... and the snapshot equals the disks" same_as_disks "$(json 'd["snapshot"]')"
resume
snap_paused
tap_is "the next run is incremental again" "$st $(json 'd["kind"]')" "0 incremental"
resume

# --- a transient domain loses its checkpoints when it stops
tdom=trans-$$
vm_create --transient "$tdom" vda:qcow2:16M || tap_bail "cannot create transient domain"
vm_write "$tdom" vda 0x12 1M 64k
"${SNAP[@]}" "$tdom" >/dev/null 2>&1
virsh_c "$LV_URI" destroy "$tdom" >/dev/null
virsh_c "$LV_URI" create "$T/$tdom.xml" >/dev/null
vm_write "$tdom" vda 0x13 2M 64k
"${SNAP[@]}" --json "$tdom" > "$T/out" 2>/dev/null; st=$?
tap_is "transient domain restarted: checkpoint redefined, incremental, exit 3" \
  "$st $(json 'd["kind"], d["disks"][0]["bytes_read"]' | tr -d '(),')" "3 incremental 65536"

# --- progress: only when asked (or on a terminal), never on a pipe
vm_write "$dom" vda 0x55 30M 1M
"${SNAP[@]}" --progress "$dom" > /dev/null 2> "$T/err"
tap_ok "--progress draws bytes, rate and ETA on stderr" grep -qa '/s  ETA' "$T/err"
vm_write "$dom" vda 0x56 30M 1M
"${SNAP[@]}" "$dom" > /dev/null 2> "$T/err"
tap_is "no progress on a pipe" "$(wc -c < "$T/err")" 0

# --- bad input and the lock
"${SNAP[@]}" nosuch-$$ >/dev/null 2>"$T/err"; st=$?
tap_is "unknown domain: exit 1, one line" "$st $(wc -l < "$T/err")" "1 1"
tap_ok "... naming it" grep -q "^vmdr-snapshot: no domain 'nosuch-$$'" "$T/err"
"${SNAP[@]}" --disks vdz --metrics-file "$PM" "$dom" >/dev/null 2>"$T/err"; st=$?
tap_is "unknown disk: exit 1" "$st $(cat "$T/err")" "1 vmdr-snapshot: domain '$dom' has no disk 'vdz'"
tap_ok "... its metrics are written too, valid" prom "$PM"
tap_is "... last_result 1; the last success still the earlier one's; chain length 0" \
  "$(prom "$PM" vmdr_snapshot_last_result domain="$dom") $(prom "$PM" vmdr_snapshot_last_success_timestamp_seconds domain="$dom") $(prom "$PM" vmdr_snapshot_chain_length domain="$dom")" \
  "1 $ok_at 0"
"${SNAP[@]}" --scratch-dir "$T/nosuch" "$dom" >/dev/null 2>"$T/err"; st=$?
tap_is "a missing scratch directory: exit 1, one line" "$st $(cat "$T/err")" \
  "1 vmdr-snapshot: cannot use scratch directory '$T/nosuch': No such file or directory"
mkdir -p "$T/rel"
(cd "$T" && vmdr-snapshot -c "$LV_URI" -r "$R" --scratch-dir rel "$dom") >/dev/null 2>"$T/err"; st=$?
tap_is "a relative scratch directory works (libvirtd gets it absolute)" "$st $(wc -c < "$T/err")" "0 0"

# --- shut-off domains: read through qemu-nbd, incremental from the bitmap
off=off-$$
vm_create "$off" vda:qcow2:16M || tap_bail "cannot create domain"
vm_write "$off" vda 0x61 1M 64k
"${SNAP[@]}" "$off" >/dev/null 2>&1 || tap_bail "live snapshot of $off"
vm_write "$off" vda 0x62 3M 64k
vm_write "$off" vda 0x63 9M 4k
# A clean QEMU exit stores the persistent bitmaps in the image.
virsh_c "$LV_URI" qemu-monitor-command "$off" '{"execute":"quit"}' >/dev/null 2>&1
wait_until 10 sh -c "virsh -c '$LV_URI' domstate '$off' | grep -q 'shut off'"
"${SNAP[@]}" --json "$off" > "$T/out" 2> "$T/err"; st=$?
tap_is "a shut-off domain: incremental from the bitmap in its image, exit 0" \
  "$st $(json 'd["kind"], d["disks"][0]["bytes_read"]' | tr -d '(),')" "0 incremental 131072"
img=$(vm_image "$off" vda qcow2); rm -f "$T/off.raw"
repo-image get "$R" "$(json 'd["snapshot"]')" vda "$T/off.raw"
tap_ok "... equal to the disk image" qemu-img compare -q -f raw -F qcow2 "$T/off.raw" "$img"
tap_is "... and no qemu-nbd is left running" "$(pgrep -f "qemu-nbd.*$img" | wc -l)" 0
virsh_c "$LV_URI" start "$off" >/dev/null
vm_write "$off" vda 0x64 12M 64k
"${SNAP[@]}" --json "$off" > "$T/out" 2>/dev/null; st=$?
tap_is "started again: the chain goes on live" "$st $(json 'd["kind"]')" "0 incremental"
vm_write "$off" vda 0x65 14M 64k
# A power cut: QEMU killed outright leaves its bitmaps marked in use
# (virsh destroy would let it exit cleanly on SIGTERM first).
kill -KILL "$(cat "$LV_URI_DIR/run/qemu/$off.pid")"
wait_until 10 sh -c "virsh -c '$LV_URI' domstate '$off' | grep -q 'shut off'"
"${SNAP[@]}" --json "$off" > "$T/out" 2>/dev/null; st=$?
tap_is "after a power cut the bitmap is unusable: a full read, exit 3" "$st $(json 'd["kind"]')" "3 full"
rm -f "$T/off.raw"; repo-image get "$R" "$(json 'd["snapshot"]')" vda "$T/off.raw"
tap_ok "... equal to the disk image" qemu-img compare -q -f raw -F qcow2 "$T/off.raw" "$img"
sleep 30 & holder=$!
at_exit "kill $holder 2>/dev/null"
mkdir -p "$R/locks"
printf '{"host":"%s","pid":%d,"started":"2026-01-01T00:00:00Z","boot_id":"%s"}' "$(hostname)" "$holder" \
  "$(cat /proc/sys/kernel/random/boot_id)" > "$R/locks/domain-$dom"
"${SNAP[@]}" "$dom" >/dev/null 2>"$T/err"; st=$?
tap_is "a second run while one holds the lock: exit 4 at once" "$st" 4
tap_ok "... saying who holds it" grep -q "another run holds the lock of '$dom' (pid $holder" "$T/err"
kill $holder; wait $holder 2>/dev/null
"${SNAP[@]}" "$dom" >/dev/null 2>"$T/err"; st=$?
tap_is "a dead run's lock is taken over, with a warning (exit 3)" "$st" 3
tap_ok "... saying so" grep -q "took over the lock of a run that died" "$T/err"

tap_done
