#!/bin/bash
# vmdr-snapshot of a running domain with an RBD disk (a libvirt network
# disk) beside a qcow2 file disk: the RBD disk is left out of libvirt's
# backup job and read from an RBD snapshot taken at the same point, a full
# and then only what rbd_diff_iterate2 reports; every snapshot restores
# equal to both disks at its point; only the newest vmdr snapshot stays on
# the image; a base gone from the image means a full of that disk; a bad
# cephx user fails cleanly and leaves nothing; a shut-off domain's RBD disk
# is read the same way.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
. "$HARNESS_DIR/ceph-lib.sh"
need_cmd vmdr-snapshot vmdr-init vmdr-ls vmdr-restore repo-image python3 qemu-img cmp

use_ceph
use_libvirt
dom=rbdsnap-$$
IMG=vmdr-snap-$$
M=$((1 << 20))
R() { timeout 60 rbd -p "$CEPH_POOL" "$@"; }
at_exit "R snap purge --no-progress $IMG >/dev/null 2>&1; R rm --no-progress $IMG >/dev/null 2>&1"

R create --size 64M --object-size 4M "$IMG" || tap_bail "cannot create the RBD image"
mkdir -p "$T/img"
QCOW=$(vm_image "$dom" vda qcow2)
qemu-img create -q -f qcow2 "$QCOW" 32M || tap_bail "cannot create the qcow2 image"
rbd_xml="    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='rbd' name='$CEPH_POOL/$IMG'><config file='$CEPH_CONF'/></source>
      <target dev='vdb' bus='virtio'/>
    </disk>"
_vm_xml "$(_lv_virt_type "$LV_URI" "$(_lv_dir_of "$LV_URI")")" "$dom" 64 \
  "$(_vm_disk_xml vda qcow2 "$QCOW")
$rbd_xml" > "$T/$dom.xml"
at_exit "virsh_c '$LV_URI' destroy '$dom' >/dev/null 2>&1; virsh_c '$LV_URI' undefine '$dom' --checkpoints-metadata >/dev/null 2>&1"
virsh_c "$LV_URI" define "$T/$dom.xml" > /dev/null && virsh_c "$LV_URI" start "$dom" > /dev/null ||
  tap_bail "cannot start a domain on an RBD disk"

Rp=$T/repo
vmdr-init -q -r "$Rp"
SNAP=(vmdr-snapshot -c "$LV_URI" -r "$Rp" --scratch-dir "$T" --ceph-conf "$CEPH_CONF")
json() {   # json EXPR [ARGS]: EXPR over the last run's JSON (d = its snapshot)
  local e=$1; shift
  python3 -c "import json,sys; d=json.load(sys.stdin)['snapshots'][0]; print($e)" "$@" < "$T/out"
}
disk() { json "[x for x in d['disks'] if x['target'] == '$1'][0]['$2']"; }
snap() { "${SNAP[@]}" --json "$@" "$dom" > "$T/out" 2> "$T/err"; st=$?; }
vmdr_snaps() { R snap ls "$IMG" 2>/dev/null | awk '$2 ~ /^vmdr-/ { print $2 }'; }
nsnaps() { vmdr-ls -r "$Rp" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["snapshots"]))'; }

# keep ID: what both disks hold at snapshot ID's point (nothing writes
# them but this test), to compare its restore with later.
keep() {
  qemu-img convert -U -f qcow2 -O raw "$QCOW" "$T/want-${1#*/}-vda" &&
    R export --no-progress "$IMG@vmdr-${1#*/}" "$T/want-${1#*/}-vdb" > /dev/null 2>&1
}
same() {   # same ID: both disks restore equal to what keep saw
  local d
  for d in vda vdb; do
    rm -f "$T/got"
    repo-image get "$Rp" "$1" "$d" "$T/got" || return 1
    cmp "$T/got" "$T/want-${1#*/}-$d" || { echo "disk $d differs"; return 1; }
  done
}

# --- a full
vm_write "$dom" vda 0xab 1M 1M && vm_write "$dom" vdb 0x11 0 6M && vm_write "$dom" vdb 0x22 40M 1M ||
  tap_bail "cannot write through the monitor"
snap
id1=$(json 'd["snapshot"]')
sed 's/^/# /' "$T/err"
tap_is "a full of both disks, exit 0, nothing on stderr" "$st $(json 'd["kind"]') $(wc -c < "$T/err")" "0 full 0"
tap_is "... the RBD disk read from an RBD snapshot named after the vmdr snapshot" \
  "$(vmdr_snaps)" "vmdr-${id1#*/}"
tap_ok "... that held only the image's data ($(disk vdb bytes_read) bytes read)" \
  test "$(disk vdb bytes_read)" -ge $((7 * M)) -a "$(disk vdb bytes_read)" -le $((8 * M))
keep "$id1" || tap_bail "cannot read the disks"
tap_ok "the full restores equal to both disks" same "$id1"

# --- an incremental: QEMU's bitmap for vda, the RBD diff for vdb
vm_write "$dom" vda 0x33 4M 64k && vm_write "$dom" vdb 0x44 20M 128k && vm_write "$dom" vdb 0x45 60M 64k ||
  tap_bail "cannot write through the monitor"
snap
id2=$(json 'd["snapshot"]')
tap_is "an incremental from the first" \
  "$st $(json 'd["kind"], d["parent"] == sys.argv[1]' "$id1" | tr -d "(),'")" "0 incremental True"
tap_is "... vda from QEMU's bitmap: the chunk written" "$(disk vda bytes_read)" 65536
tap_ok "... vdb from the RBD diff: what was written and a sample of the rest ($(disk vdb bytes_read) bytes)" \
  test "$(disk vdb bytes_read)" -ge $((192 * 1024)) -a "$(disk vdb bytes_read)" -le $((2 * M))
keep "$id2" || tap_bail "cannot read the disks"
tap_ok "the incremental restores equal to both disks" same "$id2"
tap_is "only the newest vmdr snapshot stays on the image" "$(vmdr_snaps)" "vmdr-${id2#*/}"
mkdir -p "$T/restored"
vmdr-restore -q -r "$Rp" "$id2" -o "$T/restored" --format raw > /dev/null 2> "$T/err" || sed 's/^/# /' "$T/err"
tap_ok "vmdr-restore writes the RBD disk as a raw image, equal" cmp "$T/restored/$dom-vdb.raw" "$T/want-${id2#*/}-vdb"

# --- with --memory: the guest paused for the RAM, both disks at that point
vm_write "$dom" vda 0x66 8M 64k && vm_write "$dom" vdb 0x67 10M 64k || tap_bail "cannot write"
snap --memory
idm=$(json 'd["snapshot"]')
tap_is "--memory: an incremental with memory" \
  "$st $(json 'd["kind"], d["consistency"]' | tr -d "(),'")" "0 incremental with-memory"
keep "$idm" || tap_bail "cannot read the disks"
tap_ok "... both disks restore equal" same "$idm"

# --- only the RBD disk: no libvirt job at all, no checkpoint
vm_write "$dom" vdb 0x68 12M 64k || tap_bail "cannot write"
cps=$(virsh_c "$LV_URI" checkpoint-list "$dom" --name | sort)
snap --disks vdb
idr=$(json 'd["snapshot"]')
tap_is "--disks vdb: an incremental of the RBD disk alone" \
  "$st $(json 'd["kind"], len(d["disks"])' | tr -d "(),'") $(disk vdb bytes_read)" "0 incremental 1 65536"
tap_is "... libvirt's checkpoints untouched" "$(virsh_c "$LV_URI" checkpoint-list "$dom" --name | sort)" "$cps"
rm -f "$T/got"
repo-image get "$Rp" "$idr" vdb "$T/got"
R export --no-progress "$IMG@vmdr-${idr#*/}" "$T/want" > /dev/null 2>&1
tap_ok "... restoring equal" cmp "$T/got" "$T/want"
id2=$idr

# --- a bad cephx user: one line, nothing in the repository or on the image
n=$(nsnaps)
"${SNAP[@]}" --ceph-id nobody "$dom" > "$T/out" 2> "$T/err"; st=$?
diag "$(cat "$T/err")"
tap_is "an unknown cephx user: exit 1, one line naming the disk" \
  "$st $(wc -l < "$T/err") $(grep -c "disk 'vdb'" "$T/err")" "1 1 1"
tap_is "... and nothing stored, nothing left on the image" "$(nsnaps) $(vmdr_snaps)" "$n vmdr-${id2#*/}"

# --- the base gone from the image: that disk is read whole, with a warning
R snap rm --no-progress "$IMG@vmdr-${id2#*/}" > /dev/null 2>&1
vm_write "$dom" vdb 0x55 30M 64k || tap_bail "cannot write"
snap
id3=$(json 'd["snapshot"]')
tap_is "the base RBD snapshot removed: done with a warning (exit 3)" \
  "$st $(json '"is gone: reading the disk whole" in " ".join(d["warnings"])')" "3 True"
tap_ok "... vdb read whole" test "$(disk vdb bytes_read)" -ge $((7 * M))
keep "$id3" || tap_bail "cannot read the disks"
tap_ok "... and the snapshot restores equal" same "$id3"

# --- shut off: the RBD disk from its own snapshot, vda through qemu-nbd
virsh_c "$LV_URI" destroy "$dom" > /dev/null
R snap ls "$IMG" > /dev/null   # the guest's lock on the image is released
snap
id4=$(json 'd["snapshot"]')
tap_is "a shut-off domain: an incremental too" "$st $(json 'd["kind"]')" "0 incremental"
keep "$id4" || tap_bail "cannot read the disks"
tap_ok "... restoring equal" same "$id4"

tap_done
