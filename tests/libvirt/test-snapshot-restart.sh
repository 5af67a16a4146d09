#!/bin/bash
# vmdr-snapshot across libvirtd restarts, with the guest left running as on a
# real host: after a restart the next run is still incremental and equals the
# disks; when libvirtd's checkpoint metadata is wiped while it is down, vmdr
# redefines the checkpoint from the repository and stays incremental; a run
# caught mid-transfer by a restart reconnects and finishes (and so does the
# next domain of the same run).  Also the chain position in --json, and a
# chain whose full was pruned.
# Uses a libvirt instance of its own: it restarts the daemon.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
need_cmd vmdr-snapshot vmdr-init vmdr-prune repo-image python3

use_libvirt_own
dom=restart-$$
vm_create "$dom" vda:qcow2:256M vdb:qcow2:32M || tap_bail "cannot create domain"
vm_create "$dom-b" vda:qcow2:16M || tap_bail "cannot create domain"
R=$T/repo
vmdr-init -q -r "$R"
SNAP=(vmdr-snapshot -c "$LV_URI" -r "$R" --scratch-dir "$T")
json() {   # json EXPR [ARGS]: EXPR over the last run's JSON (d = its snapshot)
  local e=$1; shift
  python3 -c "import json,sys; d=json.load(sys.stdin)['snapshots'][0]; print($e)" "$@" < "$T/out"
}
chain() { json '"%s %d %s" % (d["chain"]["base"] == sys.argv[1], d["chain"]["length"], d["chain"]["complete"])' "$1"; }

# Restore each disk of snapshot $1 and compare with the images now (the
# domain is paused, so they hold the snapshot's point in time).
same_as_disks() {
  local id=$1 d f
  for d in vda vdb; do
    f=$T/restore-$d.raw; rm -f "$f"
    repo-image get "$R" "$id" "$d" "$f" || return 1
    qemu-img compare -q -U -f raw -F qcow2 "$f" "$(vm_image "$dom" "$d" qcow2)" || {
      echo "disk $d differs"; return 1; }
  done
}
snap_paused() {   # snap_paused ARGS...: snapshot while paused, JSON in $T/out
  virsh_c "$LV_URI" suspend "$dom" >/dev/null
  "${SNAP[@]}" --json "$@" "$dom" > "$T/out" 2> "$T/err"; st=$?
}
resume() { virsh_c "$LV_URI" resume "$dom" >/dev/null; }
checkpoints() { virsh_c "$LV_URI" checkpoint-list "$dom" --name | tr -d '\n'; }
daemon_pid() { cat "$LV_URI_DIR/libvirtd.pid"; }

# --- full
vm_write "$dom" vda 0xab 1M 1M
vm_write "$dom" vdb 0xcd 0 64k
snap_paused
tap_is "full snapshot: exit 0" "$st $(json 'd["kind"]')" "0 full"
id1=$(json 'd["snapshot"]')
tap_is "... chain: its own base, length 1" "$(chain "$id1")" "True 1 True"
tap_ok "... equals the disks" same_as_disks "$id1"
resume

# --- libvirtd restarted between runs
vm_write "$dom" vda 0x11 4M 64k
vm_write "$dom" vdb 0x22 20M 128k
p0=$(daemon_pid)
lv_restart || tap_bail "libvirtd did not restart"
tap_ok "libvirtd is another process now" test "$p0" != "$(daemon_pid)"
tap_is "the guest kept running through the restart" "$(virsh_c "$LV_URI" domstate "$dom")" running
tap_is "libvirt still knows vmdr's checkpoint" "$(checkpoints)" "vmdr-${id1#*/}"
snap_paused
tap_is "after a restart: incremental from the full, exit 0" \
  "$st $(json 'd["kind"], d["parent"] == sys.argv[1]' "$id1" | tr -d "(),'")" "0 incremental True"
tap_is "... reading only the dirty chunks" \
  "$(json '" ".join(str(x["bytes_read"]) for x in d["disks"])')" "65536 131072"
id2=$(json 'd["snapshot"]')
tap_is "... chain: base the full, length 2" "$(chain "$id1")" "True 2 True"
tap_ok "... equals the disks" same_as_disks "$id2"
resume

# --- libvirtd's checkpoint metadata wiped while it is down
vm_write "$dom" vda 0x33 8M 64k
lv_stop || tap_bail "libvirtd did not stop"
tap_is "the guest runs on without libvirtd" "$(pgrep -fc "qemu-system.*guest=$dom,")" 1
n=$(ls "$LV_URI_DIR/lib/qemu/checkpoint/$dom/"*.xml 2>/dev/null | wc -l)
rm -f "$LV_URI_DIR/lib/qemu/checkpoint/$dom/"*.xml
lv_restart || tap_bail "libvirtd did not restart"
tap_is "its checkpoint files were there and are gone: libvirt lost them" "$n $(checkpoints)" "1 "
snap_paused
tap_is "lost metadata: redefined, still incremental, exit 3" "$st $(json 'd["kind"]')" "3 incremental"
tap_ok "... the warning says so" grep -q "had lost checkpoint 'vmdr-${id2#*/}': redefined" "$T/out"
tap_is "... only the new write is read" \
  "$(json '" ".join(str(x["bytes_read"]) for x in d["disks"])')" "65536 0"
id3=$(json 'd["snapshot"]')
tap_is "... chain: length 3" "$(chain "$id1")" "True 3 True"
tap_ok "... equals the disks" same_as_disks "$id3"
resume
tap_is "one checkpoint kept: the newest" "$(checkpoints)" "vmdr-${id3#*/}"

# --- the next restart after that is an ordinary one
vm_write "$dom" vdb 0x44 2M 64k
lv_restart || tap_bail "libvirtd did not restart"
snap_paused
tap_is "the run after: incremental, exit 0, chain length 4" \
  "$st $(json 'd["kind"]') $(chain "$id1")" "0 incremental True 4 True"
tap_ok "... equals the disks" same_as_disks "$(json 'd["snapshot"]')"
resume

# --- libvirtd restarted mid-transfer: the run reconnects and finishes.
# The run is stopped (SIGSTOP) once its backup job exists, so the restart
# falls mid-run whatever the machine's speed; a run that got past its job
# first (the data read already) is tried again.
python3 -c "import random,sys; random.seed(5); sys.stdout.buffer.write(random.randbytes(96 << 20))" > "$T/blob"
vm_write_file "$dom" vda "$T/blob" 128M 96M
vm_write "$dom" vda 0x66 0 4k
virsh_c "$LV_URI" suspend "$dom" >/dev/null
caught=0
for try in 1 2 3 4 5; do
  "${SNAP[@]}" --json --full "$dom" "$dom-b" > "$T/out" 2> "$T/err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null && [ ! -e "$T/vmdr-scratch-vda.qcow2" ]; do sleep 0.01; done
  kill -STOP "$pid" 2>/dev/null
  # The scratch file comes first, the job a moment later: libvirtd sets it
  # up while we are stopped, but only we end it.
  if wait_until 5 sh -c "virsh -c '$LV_URI' domjobinfo '$dom' | grep -q Backup"; then
    caught=1
    lv_restart || tap_bail "libvirtd did not restart"
  fi
  kill -CONT "$pid" 2>/dev/null; wait "$pid"; st=$?
  [ "$caught" = 1 ] && break
  diag "try $try: the run got past its job before the restart (exit $st)"
done
tap_is "a run across a restart: both domains done, exit 0" \
  "$caught $st $(python3 -c 'import json,sys; print(*[s["kind"] for s in json.load(sys.stdin)["snapshots"]])' < "$T/out")" \
  "1 0 full full"
id5=$(json 'd["snapshot"]')
tap_ok "... it equals the disks" same_as_disks "$id5"
tap_is "... it ended its job and kept only its checkpoint" \
  "$(virsh_c "$LV_URI" domjobinfo "$dom" | awk '/^Operation/ {print $2}')$(checkpoints)" "vmdr-${id5#*/}"
tap_is "... and left no scratch files" "$(ls "$T" | grep -c '^vmdr-')" 0
resume
vm_write "$dom" vda 0x67 1M 64k
snap_paused
tap_is "the next run is incremental, exit 0" "$st $(json 'd["kind"], d["parent"] == sys.argv[1]' "$id5" | tr -d "(),'")" \
  "0 incremental True"
resume

# --- a chain whose full was pruned: the oldest left is its base
id6=$(json 'd["snapshot"]')
vmdr-prune -q -r "$R" --keep-last 1 --no-gc "$dom" || tap_bail "vmdr-prune failed"
vm_write "$dom" vda 0x55 12M 64k
snap_paused
tap_is "full pruned: incremental, chain from the oldest left, length 2, incomplete" \
  "$st $(json 'd["kind"]') $(chain "$id6")" "0 incremental True 2 False"
resume
snap_paused --full
tap_is "--full: a new chain of length 1" "$(chain "$(json 'd["snapshot"]')")" "True 1 True"
resume

tap_done
