#!/bin/bash
# The test lab (snapshot/lab.h, snapshot/domain-xml.h) through tests/harness/lab-tool:
# the isolated network is made once and reused, a network of that name that is
# not isolated is refused and left alone; a running guest's XML rewritten for
# the lab (new name, new identity, copies of its images) defines and starts
# with its NIC on the lab network only; a saved memory state resumes into the
# lab with a strict rewrite; cleanup removes the lab guests, their images and
# the network, and nothing else.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"

need_cmd lab-tool qemu-img qemu-io
use_libvirt
U=$LV_URI
LAB=vmdr-lab
other=lab-other-$$ fwd=lab-fwd-$$ hostonly=lab-hostonly-$$
src=labsrc-$$ mem=labmem-$$
V() { virsh_c "$U" "$@"; }

# Networks make bridges in the host's network namespace: remove them before
# the daemon goes (at_exit runs last registered first).
at_exit "for n in $LAB $other $fwd $hostonly; do virsh_c '$U' net-destroy \$n >/dev/null 2>&1; virsh_c '$U' net-undefine \$n >/dev/null 2>&1; done"
at_exit "for d in $src-lab $mem; do virsh_c '$U' destroy \$d >/dev/null 2>&1; virsh_c '$U' undefine \$d --nvram >/dev/null 2>&1; done"

net_field() { V net-info "$1" | awk -v f="$2:" '$1 == f { print $2 }'; }
# "TYPE SOURCE" of each interface, one per line
ifaces() { V domiflist "$1" | awk '{ print $2, $3 }'; }
# The bridge each of a domain's tap devices is enslaved to
tap_bridges() {
  local t
  for t in $(V domiflist "$1" | awk '{ print $1 }'); do
    basename "$(readlink "/sys/class/net/$t/master")"
  done
}

# ---- the network ----
tap_ok "ensure makes the lab network" lab-tool ensure "$U"
tap_ok "ensure again reuses it" lab-tool ensure "$U"
x=$(V net-dumpxml $LAB)
tap_is "it has no <forward>, <ip> or <route>" "$(grep -cE '<(forward|ip|route)[ />]' <<< "$x")" 0
tap_is "it is marked as vmdr's" "$(grep -c 'https://vmdr.dev/xmlns/lab/1' <<< "$x")" 1
tap_is "active, persistent, autostarted" \
  "$(net_field $LAB Active) $(net_field $LAB Persistent) $(net_field $LAB Autostart)" "yes yes yes"
tap_is "one of it" "$(V net-list --all --name | grep -cx $LAB)" 1
lab_bridge=$(net_field $LAB Bridge)

# Networks that are not isolated: refused by name, and not changed.  Only
# defined: starting them would touch the host's networking.
V net-define /dev/stdin > /dev/null <<XML
<network><name>$fwd</name><forward mode='bridge'/><bridge name='vmdrnobr$$'/></network>
XML
V net-define /dev/stdin > /dev/null <<XML
<network><name>$hostonly</name><ip address='192.0.2.1' prefix='24'/></network>
XML
for n in $fwd $hostonly; do
  before=$(V net-dumpxml --inactive $n)
  out=$(lab-tool ensure "$U" $n 2>&1); st=$?
  tap_is "a network with $(grep -oE '<(forward|ip)' <<< "$before" | head -1)> is refused" \
    "$st $(grep -c 'is not isolated' <<< "$out")" "1 1"
  tap_is "... and left as it was" "$(V net-dumpxml --inactive $n) $(net_field $n Active)" "$before no"
done

# An isolated network vmdr did not make: used, not changed.
V net-define /dev/stdin > /dev/null <<XML
<network><name>$other</name></network>
XML
V net-start $other > /dev/null
tap_ok "an isolated network of someone else's is reused" lab-tool ensure "$U" $other
tap_is "... its autostart untouched" "$(net_field $other Autostart)" no

# ---- a running guest, rewritten into the lab ----
tap_ok "source guest with qcow2 + raw disks" vm_create "$src" vda:qcow2:32M vdb:raw:8M
# No hotplug on the factory's machine (no ACPI): the NIC goes into the
# definition and the guest restarts.
with_nic() {
  V attach-interface "$1" network $other --model virtio --config > /dev/null &&
    V destroy "$1" > /dev/null && V start "$1" > /dev/null
}
tap_ok "... and a NIC on $other" with_nic "$src"
tap_ok "... that wrote to its disk" vm_write "$src" vda 0xab 1M 64k
src_uuid=$(V domuuid "$src")
src_mac=$(V domiflist "$src" | awk '{ print $5 }')

mkdir -p "$T/lab"
vda=$T/lab/$src-vda.qcow2 vdb=$T/lab/$src-vdb.raw
qemu-img convert -U -O qcow2 "$(vm_image "$src" vda qcow2)" "$vda" &&
  cp --sparse=always "$(vm_image "$src" vdb raw)" "$vdb" || tap_bail "cannot copy the images"
V dumpxml "$src" > "$T/src-live.xml"
tap_ok "the live XML rewritten for the lab" \
  sh -c "lab-tool rewrite --name '$src-lab' --new-identity --network $LAB --lab --snapshot snap-1 \
    --disk 'vda=qcow2:$vda' --disk 'vdb=raw:$vdb' < '$T/src-live.xml' > '$T/lab.xml'"
tap_ok "libvirt defines it" V define "$T/lab.xml"
tap_ok "and starts it" V start "$src-lab"
tap_is "it runs" "$(V domstate "$src-lab")" running
tap_is "its one interface is on $LAB" "$(ifaces "$src-lab")" "network $LAB"
tap_is "its tap device is on the lab bridge" "$(tap_bridges "$src-lab")" "$lab_bridge"
tap_is "a new UUID" "$([ "$(V domuuid "$src-lab")" != "$src_uuid" ] && echo yes)" yes
lab_mac=$(V domiflist "$src-lab" | awk '{ print $5 }')
tap_is "a new MAC" "$([ -n "$lab_mac" ] && [ "$lab_mac" != "$src_mac" ] && echo yes)" yes
tap_is "its disks are the copies" "$(V domblklist "$src-lab" | awk '{ print $2 }' | tr '\n' ' ')" "$vda $vdb "
tap_ok "the copy holds what the source wrote" qemu-io -r -U -f qcow2 -c "read -P 0xab 1M 64k" "$vda"
tap_is "the source still runs on $other" "$(V domstate "$src") $(ifaces "$src")" "running network $other"

# ---- a memory state resumed into the lab ----
tap_ok "a guest to save" vm_create "$mem" vda:qcow2:16M
with_nic "$mem" || tap_bail "no NIC for $mem"
mem_mac=$(V domiflist "$mem" | awk '{ print $5 }')
memvda=$T/lab/$mem-vda.qcow2
tap_ok "saved" V save "$mem" "$T/mem.save"
V save-image-dumpxml "$T/mem.save" > "$T/mem-save.xml"
qemu-img convert -O qcow2 "$(vm_image "$mem" vda qcow2)" "$memvda" || tap_bail "cannot copy"
tap_fails "a strict rewrite refuses a new identity" \
  sh -c "lab-tool rewrite --strict --new-identity --network $LAB --disk 'vda=qcow2:$memvda' < '$T/mem-save.xml'"
tap_ok "a strict rewrite onto the lab" \
  sh -c "lab-tool rewrite --strict --network $LAB --lab --snapshot snap-2 --disk 'vda=qcow2:$memvda' \
    < '$T/mem-save.xml' > '$T/mem-lab.xml'"
tap_ok "libvirt resumes the memory state with it" V restore "$T/mem.save" --xml "$T/mem-lab.xml"
tap_is "it runs, on $LAB, from the copy, with its own MAC" \
  "$(V domstate "$mem") $(ifaces "$mem") $(V domblklist "$mem" | awk '$1 == "vda" { print $2 }') $(V domiflist "$mem" | awk '{ print $5 }')" \
  "running network $LAB $memvda $mem_mac"

# ---- cleanup ----
out=$(lab-tool cleanup "$U" 2>&1); st=$?
tap_is "cleanup removes the two lab guests" "$st $out" "0 removed 2"
tap_fails "the lab guest is gone" V dominfo "$src-lab"
tap_is "the resumed guest stopped, its own definition kept" \
  "$(V domstate "$mem") $(V dominfo "$mem" | awk '/^Persistent/ { print $2 }')" "shut off yes"
tap_is "the lab images are gone" "$(ls "$T/lab" | wc -l)" 0
tap_is "the resumed guest's own image is not" "$([ -f "$(vm_image "$mem" vda qcow2)" ] && echo yes)" yes
tap_fails "the lab network is gone" V net-info $LAB
tap_is "the source guest still runs, on $other" "$(V domstate "$src") $(ifaces "$src")" "running network $other"
tap_is "its images are there" \
  "$([ -f "$(vm_image "$src" vda qcow2)" ] && [ -f "$(vm_image "$src" vdb raw)" ] && echo yes)" yes
tap_is "the networks that are not vmdr's are untouched" \
  "$(net_field $other Active) $(V net-list --all --name | grep -cE "^($fwd|$hostonly)$")" "yes 2"
tap_is "cleanup again: nothing to do" "$(lab-tool cleanup "$U")" "removed 0"

# A lab network vmdr made but that a guest which is not a lab guest uses: kept.
lab-tool ensure "$U" || tap_bail "no lab network"
V detach-interface "$src" network --mac "$src_mac" --live --config > /dev/null 2>&1
V attach-interface "$src" network $LAB --model virtio --config > /dev/null
out=$(lab-tool cleanup "$U" 2>&1); st=$?
tap_is "cleanup keeps a lab network another guest uses" "$st $(grep -c "still used by '$src'" <<< "$out")" "1 1"
tap_is "... and it stays" "$(net_field $LAB Active)" yes

tap_done
