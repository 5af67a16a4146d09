# Sourced after lib.sh and libvirt-lib.sh by tests that need the real Linux
# guest (built once by guest-build.sh and cached).
#
#   use_guest                     build or reuse the guest; its files in $GUEST_DIR
#   guest_create [-c URI] NAME    copy its data disk to $T/NAME-data.qcow2, define
#                                 and start it; console in $T/NAME.console
#   guest_wait NAME REGEX SECS    wait for a console line matching REGEX
#   guest_counter NAME            the last "N <n>" the guest printed (just n)
#   guest_check_disk IMAGE        fsck a copy (journal replayed) and check every
#                                 file against the guest's manifest
#
# Linux guests boot with TCG: /dev/kvm here is nested software-paging KVM, on
# which SeaBIOS runs but a kernel takes minutes.  VMDR_GUEST_VIRT overrides.

use_guest() {
  need_cmd apt-get dpkg mkfs.ext4 e2fsck debugfs
  GUEST_DIR=$("$HARNESS_DIR/guest-build.sh") || tap_bail "cannot build the test guest"
}

guest_xml() {   # NAME DISK CONSOLE
  cat <<XML
<domain type='${VMDR_GUEST_VIRT:-qemu}'>
  <name>$1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUEST_DIR/vmlinuz</kernel>
    <initrd>$GUEST_DIR/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 ${GUEST_CMDLINE:-}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$2'/><target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='$3' append='on'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

guest_create() {
  local uri=${LV_URI:-} name
  [ "$1" = -c ] && { uri=$2; shift 2; }
  name=$1
  cp "$GUEST_DIR/data.qcow2" "$T/$name-data.qcow2"
  # append='on' keeps the log across save/restore, which would truncate it.
  guest_xml "$name" "$T/$name-data.qcow2" "$T/$name.console" > "$T/$name.xml"
  at_exit "virsh_c '$uri' destroy '$name' >/dev/null 2>&1; virsh_c '$uri' undefine '$name' --snapshots-metadata --checkpoints-metadata >/dev/null 2>&1"
  virsh_c "$uri" define "$T/$name.xml" >/dev/null && virsh_c "$uri" start "$name" >/dev/null
}

guest_wait() {
  local f=$T/$1.console re=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    # the serial console ends lines with CR LF
    tr -d '\r' < "$f" 2>/dev/null | grep -aqE "$re" && return 0
    sleep 0.1
  done
  return 1
}

guest_counter() {
  grep -a '^N [0-9]*' "$T/$1.console" 2>/dev/null | tail -1 | tr -d '\r' | cut -d' ' -f2
}

# Lines of the console after line FROM (1-based): what the guest said since.
guest_console_since() { tail -n "+$(($2 + 1))" "$T/$1.console" | tr -d '\r'; }

guest_check_disk() {
  local img=$1 w
  w=$(mktemp -d "$T/check.XXXXXX")
  qemu-img convert -U -O raw "$img" "$w/disk.raw" || return 1
  # A crash-consistent copy needs its journal replayed: -fy does that and
  # fixes the lazily kept counters; after it, -fn must find nothing.
  e2fsck -fy "$w/disk.raw" > "$w/fsck-y.log" 2>&1
  [ $? -le 1 ] || { cat "$w/fsck-y.log"; return 1; }
  e2fsck -fn "$w/disk.raw" > "$w/fsck-n.log" 2>&1 || { cat "$w/fsck-n.log"; return 1; }
  mkdir -p "$w/fs"
  debugfs -R "rdump / $w/fs" "$w/disk.raw" >/dev/null 2>&1 || return 1
  "$HARNESS_DIR/guest-manifest-check.sh" "$w/fs"
}
