# Sourced after lib.sh by tests that need libvirt: instances and a VM factory.
#
#   use_libvirt             URI of the primary instance in $LV_URI
#   use_libvirt_dr          URI of a second, independent instance in $LV_DR_URI
#   use_libvirt_own         like use_libvirt, but never the shared instance:
#                           for tests that stop or restart the daemon
#   lv_stop, lv_restart     stop the primary's libvirtd (guests keep running),
#                           start it again on the same state
#   vm_create [-c URI] [--transient] [--mem MIB] [--nic] NAME DISK...
#                           DISK = TARGET:FORMAT:SIZE, e.g. vda:qcow2:64M vdb:raw:16M;
#                           --nic adds a virtio NIC (user networking);
#                           images go to $T/img/NAME-TARGET.FORMAT; the domain is
#                           started, and destroyed + undefined at exit
#   vm_write [-c URI] NAME TARGET PATTERN OFFSET LENGTH
#                           a guest write of byte PATTERN, through the monitor
#   vm_write_file [-c URI] NAME TARGET FILE OFFSET LENGTH
#                           the same with the first LENGTH bytes of FILE
#   vm_image NAME TARGET FORMAT   path of a disk image made by vm_create
#   virsh_c URI ARGS...     virsh on that instance, bounded in time
#
# An instance is reused when scripts/test started one for the whole run
# (VMDR_TEST_LIBVIRT_DIR / VMDR_TEST_LIBVIRT_DR_DIR); otherwise the test starts
# its own under $T and stops it at exit.

LV_HARNESS=$HARNESS_DIR/libvirt.sh

need_libvirt_pkgs() {
  need_root
  need_cmd virsh qemu-img qemu-io tini unshare
  [ -x /usr/sbin/libvirtd ] || tap_skip_all "needs libvirt-daemon-system"
  [ -x /usr/bin/qemu-system-x86_64 ] || tap_skip_all "needs qemu-system-x86"
}

_lv_start() {   # _lv_start VAR SHARED_DIR PRIVATE_DIR
  local var=$1 shared=$2 private=$3 dir uri
  if [ -n "$shared" ] && "$LV_HARNESS" status "$shared" 2>/dev/null; then
    dir=$shared
  else
    dir=$private
    at_exit "'$LV_HARNESS' down '$dir'"
  fi
  uri=$("$LV_HARNESS" up "$dir") || tap_bail "libvirtd did not start in $dir"
  printf -v "$var" '%s' "$uri"
  printf -v "${var}_DIR" '%s' "$dir"
}

use_libvirt() {
  need_libvirt_pkgs
  _lv_start LV_URI "${VMDR_TEST_LIBVIRT_DIR:-}" "$T/libvirt"
}

use_libvirt_dr() {
  need_libvirt_pkgs
  _lv_start LV_DR_URI "${VMDR_TEST_LIBVIRT_DR_DIR:-}" "$T/libvirt-dr"
}

use_libvirt_own() {
  need_libvirt_pkgs
  _lv_start LV_URI "" "$T/libvirt"
}

lv_stop() { "$LV_HARNESS" stop "$LV_URI_DIR"; }
lv_restart() { "$LV_HARNESS" restart "$LV_URI_DIR" >/dev/null; }

virsh_c() { local uri=$1; shift; timeout 120 virsh -q -c "$uri" "$@"; }

# kvm when this instance can start a KVM guest, else TCG ("qemu").  Decided
# once per instance and remembered in its directory.
_lv_virt_type() {
  local uri=$1 dir=$2 f=$2/virt-type
  if [ ! -s "$f" ]; then
    if [ -w /dev/kvm ] && virsh_c "$uri" domcapabilities --virttype kvm >/dev/null 2>&1; then
      echo kvm > "$f"
    else
      echo qemu > "$f"
    fi
  fi
  cat "$f"
}

_lv_dir_of() {
  case "$1" in
    "${LV_URI:-}") echo "$LV_URI_DIR" ;;
    "${LV_DR_URI:-}") echo "$LV_DR_URI_DIR" ;;
    *) tap_bail "unknown libvirt URI $1" ;;
  esac
}

vm_image() { echo "$T/img/$1-$2.$3"; }

_vm_disk_xml() {   # TARGET FORMAT PATH
  printf "    <disk type='file' device='disk'>\n"
  printf "      <driver name='qemu' type='%s'/>\n" "$2"
  printf "      <source file='%s'/><target dev='%s' bus='virtio'/>\n" "$3" "$1"
  printf "    </disk>\n"
}

_vm_xml() {   # TYPE NAME MEM DISKXML
  cat <<XML
<domain type='$1'>
  <name>$2</name>
  <memory unit='MiB'>$3</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
$4
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

vm_create() {
  local uri=${LV_URI:-} transient=0 mem=64 name spec disks="" t f s img type
  while [ $# -gt 0 ]; do
    case "$1" in
      -c) uri=$2; shift 2 ;;
      --transient) transient=1; shift ;;
      --nic) disks+="    <interface type='user'><model type='virtio'/></interface>"$'\n'; shift ;;
      --mem) mem=$2; shift 2 ;;
      *) break ;;
    esac
  done
  name=$1; shift
  mkdir -p "$T/img"
  for spec in "$@"; do
    IFS=: read -r t f s <<< "$spec"
    img=$(vm_image "$name" "$t" "$f")
    qemu-img create -q -f "$f" "$img" "$s" || return 1
    disks+=$(_vm_disk_xml "$t" "$f" "$img")$'\n'
  done
  type=$(_lv_virt_type "$uri" "$(_lv_dir_of "$uri")")
  _vm_xml "$type" "$name" "$mem" "$disks" > "$T/$name.xml"
  at_exit "virsh_c '$uri' destroy '$name' >/dev/null 2>&1; virsh_c '$uri' undefine '$name' --checkpoints-metadata --snapshots-metadata >/dev/null 2>&1"
  if [ "$transient" = 1 ]; then
    virsh_c "$uri" create "$T/$name.xml" >/dev/null
  else
    virsh_c "$uri" define "$T/$name.xml" >/dev/null && virsh_c "$uri" start "$name" >/dev/null
  fi
}

# The QOM path of a disk's backend stays put across snapshots and block jobs,
# unlike node names; libvirt names the device of the Nth disk virtio-diskN.
_vm_qom() {
  local uri=$1 name=$2 target=$3 idx
  idx=$(virsh_c "$uri" domblklist "$name" | awk -v t="$target" '$1 == t { print NR - 1 }')
  [ -n "$idx" ] || return 1
  echo "/machine/peripheral/virtio-disk$idx/virtio-backend"
}

# A qemu-io command on a disk, then a flush: QEMU's qcow2 metadata goes back
# to the image, so that other tools can read the bytes from the image file,
# as after a guest's fsync.
_vm_io() {   # URI NAME TARGET COMMAND
  local qom out c
  qom=$(_vm_qom "$1" "$2" "$3") || { echo "no disk $3 in $2" >&2; return 1; }
  # qemu-io prints into the domain log, not the reply: an error shows as text
  # in the reply only when the command itself is refused.
  for c in "$4" flush; do
    out=$(virsh_c "$1" qemu-monitor-command "$2" --hmp "qemu-io -d $qom \"$c\"") || return 1
    [ -z "$out" ] || { echo "$out" >&2; return 1; }
  done
}

vm_write() {
  local uri=${LV_URI:-}
  [ "$1" = -c ] && { uri=$2; shift 2; }
  _vm_io "$uri" "$1" "$2" "write -P $3 $4 $5"
}

vm_write_file() {
  local uri=${LV_URI:-}
  [ "$1" = -c ] && { uri=$2; shift 2; }
  _vm_io "$uri" "$1" "$2" "write -s $3 $4 $5"
}
