#!/bin/bash
# The libvirt harness itself: a private daemon starts, the VM factory makes
# persistent and transient domains with qcow2 and raw disks, guest writes land
# in the images, and a second instance is independent of the first.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"

use_libvirt
use_libvirt_dr
tap_ok "primary instance answers" virsh_c "$LV_URI" version
tap_ok "DR instance answers" virsh_c "$LV_DR_URI" version
tap_is "instances are distinct daemons" "$([ "$LV_URI_DIR" != "$LV_DR_URI_DIR" ] && echo yes)" yes

dom=inst-$$
tap_ok "persistent domain with qcow2 + raw disks starts" \
  vm_create "$dom" vda:qcow2:64M vdb:raw:16M vdc:qcow2:8M
tap_is "it is running" "$(virsh_c "$LV_URI" domstate "$dom")" running
tap_is "it has three disks" "$(virsh_c "$LV_URI" domblklist "$dom" | awk '{print $1}' | tr '\n' ' ')" "vda vdb vdc "
tap_is "persistent" "$(virsh_c "$LV_URI" dominfo "$dom" | awk '/^Persistent/ {print $2}')" yes
tap_is "sizes as asked" \
  "$(for d in vda:qcow2 vdb:raw vdc:qcow2; do qemu-img info -U --output=json "$(vm_image "$dom" "${d%:*}" "${d#*:}")" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; done | tr '\n' ' ')" \
  "67108864 16777216 8388608 "

# Guest writes through the monitor reach the images, on every disk.
tap_ok "guest write on vda" vm_write "$dom" vda 0xab 1M 64k
tap_ok "guest write on vdb (raw)" vm_write "$dom" vdb 0xcd 0 4k
tap_ok "guest write on vdc" vm_write "$dom" vdc 0xef 7M 4k
tap_ok "vda holds the written bytes" \
  qemu-io -r -U -f qcow2 -c "read -P 0xab 1M 64k" "$(vm_image "$dom" vda qcow2)"
tap_ok "vdb holds the written bytes" \
  qemu-io -r -U -f raw -c "read -P 0xcd 0 4k" "$(vm_image "$dom" vdb raw)"
tap_ok "vdc holds the written bytes" \
  qemu-io -r -U -f qcow2 -c "read -P 0xef 7M 4k" "$(vm_image "$dom" vdc qcow2)"
tap_fails "a write to a missing disk is refused" vm_write "$dom" vdz 0x11 0 4k

# Transient domains disappear when destroyed.
tdom=trans-$$
tap_ok "transient domain starts" vm_create --transient "$tdom" vda:qcow2:16M
tap_is "transient" "$(virsh_c "$LV_URI" dominfo "$tdom" | awk '/^Persistent/ {print $2}')" no
virsh_c "$LV_URI" destroy "$tdom" >/dev/null
tap_fails "destroyed transient domain is gone" virsh_c "$LV_URI" dominfo "$tdom"

# The DR instance does not see the primary's domains, and has its own.
tap_fails "DR instance does not see the primary's domain" virsh_c "$LV_DR_URI" dominfo "$dom"
tap_ok "domain on the DR instance starts" vm_create -c "$LV_DR_URI" "dr-$$" vda:qcow2:16M
tap_fails "primary does not see the DR domain" virsh_c "$LV_URI" dominfo "dr-$$"

tap_done
