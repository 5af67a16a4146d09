#!/bin/bash
# libvirt 9 pull-mode backups read with libnbd (snapshot/nbd-reader.c through
# nbd-probe): a full backup returns the written blocks as of its start, and the
# dirty bitmap of an incremental lists exactly the written 64 KiB clusters.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
need_cmd nbd-probe

use_libvirt
dom=pull-$$
vm_create "$dom" vda:qcow2:64M vdb:qcow2:32M || tap_bail "cannot create domain"
img=$(vm_image "$dom" vda qcow2)

checkpoint_xml() {   # NAME
  echo "<domaincheckpoint><name>$1</name><disks><disk name='vda' checkpoint='bitmap'/><disk name='vdb' checkpoint='bitmap'/></disks></domaincheckpoint>"
}
backup_xml() {       # SOCKET [INCREMENTAL_FROM]
  echo "<domainbackup mode='pull'>${2:+<incremental>$2</incremental>}"
  echo " <server transport='unix' socket='$1'/><disks>"
  echo " <disk name='vda' backup='yes' type='file'><scratch file='$T/scratch-vda.qcow2'/></disk>"
  echo " <disk name='vdb' backup='yes' type='file'><scratch file='$T/scratch-vdb.qcow2'/></disk>"
  echo "</disks></domainbackup>"
}
begin() {            # NAME [INCREMENTAL_FROM]
  backup_xml "$T/$1.sock" "${2:-}" > "$T/$1-backup.xml"
  checkpoint_xml "$1" > "$T/$1-cp.xml"
  virsh_c "$LV_URI" backup-begin "$dom" "$T/$1-backup.xml" "$T/$1-cp.xml" >/dev/null
}
end_job() { virsh_c "$LV_URI" domjobabort "$dom" >/dev/null; }

# --- full backup, checkpoint c1
vm_write "$dom" vda 0xab 1M 64k
vm_write "$dom" vda 0xac 40M 192k
vm_write "$dom" vdb 0x5a 0 4k
tap_ok "full pull backup begins" begin c1
vm_write "$dom" vda 0xee 1M 4k       # after the point in time: must not show
tap_ok "export lists allocation" nbd-probe "$T/c1.sock" vda map base:allocation
tap_fails "a full backup offers no dirty bitmap" nbd-probe "$T/c1.sock" vda dirty backup-vda
tap_ok "full export of vda dumped sparsely" nbd-probe "$T/c1.sock" vda dump "$T/full-vda.raw"
tap_ok "full export of vdb dumped sparsely" nbd-probe "$T/c1.sock" vdb dump "$T/full-vdb.raw"
end_job
tap_ok "written block comes back, as of the backup point" \
  qemu-io -r -f raw -c "read -P 0xab 1M 64k" "$T/full-vda.raw"
tap_ok "second written range comes back" \
  qemu-io -r -f raw -c "read -P 0xac 40M 192k" "$T/full-vda.raw"
tap_ok "vdb's write comes back" qemu-io -r -f raw -c "read -P 0x5a 0 4k" "$T/full-vdb.raw"
tap_ok "unwritten space reads as zeros" qemu-io -r -f raw -c "read -P 0 2M 38M" "$T/full-vda.raw"
tap_is "holes stay holes (allocated KiB in the dump)" \
  "$(du -k "$T/full-vda.raw" | cut -f1)" "$((64 + 192))"

# --- incremental since c1, checkpoint c2
vm_write "$dom" vda 0x11 4M 64k
vm_write "$dom" vda 0x22 10272k 4k    # inside the cluster at 10M
vm_write "$dom" vda 0x33 63M 128k     # two clusters, at the end of the disk
vm_write "$dom" vdb 0x44 20M 64k
tap_ok "incremental pull backup begins" begin c2 c1
vm_write "$dom" vda 0x99 4M 64k       # after the point: the export keeps 0x11
tap_is "vda dirty bitmap = exactly the written clusters (and the post-c1 write at 1M)" \
  "$(nbd-probe "$T/c2.sock" vda dirty backup-vda | tr '\n' ';')" \
  "1048576 65536;4194304 65536;10485760 65536;66060288 131072;"
tap_is "vdb dirty bitmap = exactly the written cluster" \
  "$(nbd-probe "$T/c2.sock" vdb dirty backup-vdb | tr '\n' ';')" "20971520 65536;"
tap_ok "dirty data as of the point in time" nbd-probe "$T/c2.sock" vda dump "$T/inc-vda.raw"
end_job
tap_ok "incremental export holds 0x11, not the later 0x99" \
  qemu-io -r -f raw -c "read -P 0x11 4M 64k" "$T/inc-vda.raw"
tap_ok "sub-cluster write inside its cluster" \
  qemu-io -r -f raw -c "read -P 0x22 10272k 4k" "$T/inc-vda.raw"
tap_ok "both end clusters" qemu-io -r -f raw -c "read -P 0x33 63M 128k" "$T/inc-vda.raw"
tap_is "checkpoints kept by libvirt" \
  "$(virsh_c "$LV_URI" checkpoint-list "$dom" --name | tr '\n' ' ')" "c1 c2 "

# --- a full export equals the image while nothing writes (qemu-img compare)
virsh_c "$LV_URI" suspend "$dom" >/dev/null
tap_ok "full backup c3 begins on the paused domain" begin c3
nbd-probe "$T/c3.sock" vda dump "$T/c3-vda.raw"
tap_ok "export equals the disk image (qemu-img compare)" \
  qemu-img compare -U -f raw -F qcow2 "$T/c3-vda.raw" "$img"
end_job
virsh_c "$LV_URI" resume "$dom" >/dev/null
no_scratch() { ! ls "$T"/scratch-* >/dev/null 2>&1; }
tap_ok "scratch files removed by libvirt" wait_until 10 no_scratch

tap_done
