# Sourced by the benchmarks that back up a VM (bench/snapshot, bench/restore):
# a VM without an OS on a copy of base.qcow2 (the backup API needs only QEMU
# running) and rounds of guest writes through its monitor.  The caller sets
# URI, vtype (kvm or qemu), work, LV (the libvirt instance's directory) and
# nwrites, and runs in $work, which holds img.raw.

V () { timeout 300 virsh -q -c "$URI" "$@"; }

vm_xml () {   # NAME IMAGE
  cat <<XML
<domain type='$vtype'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$2'/><target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

vm_drop () {
  V destroy "$1" >/dev/null 2>&1 || true
  V undefine "$1" --checkpoints-metadata >/dev/null 2>&1 || true
}

# vm_fresh NAME [SIZE]: NAME running on a fresh copy of base.qcow2 (grown
# to SIZE), no checkpoints: every tool starts from the same disk.
vm_fresh () {
  local name=$1 img=$work/vm-$1.qcow2
  vm_drop "$name"
  cp --sparse=always base.qcow2 "$img"
  [[ -z ${2:-} ]] || qemu-img resize -q "$img" "$2"
  vm_xml "$name" "$img" >"$work/$name.xml"
  V define "$work/$name.xml" >/dev/null
  # libvirt 9 now and then fails to set up a domain's private /dev here
  # ("Unable to move ... mount to /dev/null"); a second start works.
  V start "$name" >/dev/null || { sleep 1; V start "$name" >/dev/null; }
  QPID=$(cat "$LV/run/qemu/$name.pid")
}

# Round K of guest writes on NAME: one virsh session runs its monitor
# commands (qemu-io on the disk's QOM path, then a flush as a guest's fsync).
vm_round () {
  local name=$1 k=$2
  sed "s/@DOM@/$name/" "plans/round-$k.virsh" >"$work/run.virsh"
  V <"$work/run.virsh" >/dev/null
}

# The plans of ROUNDS rounds of $nwrites writes: distinct 64 KiB-aligned offsets over the whole disk,
# each written with 64 KiB of the image's data from an unaligned offset.
make_plans () {   # ROUNDS
  mkdir -p pieces plans
  python3 - "$nwrites" "$1" "$work" <<'EOF'
import os, random, sys
n, rounds, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
K = 64 << 10
img = open("img.raw", "rb")
size = os.fstat(img.fileno()).st_size
rng = random.Random(42)
qom = "/machine/peripheral/virtio-disk0/virtio-backend"
for k in range(1, rounds + 1):
    with open(f"plans/round-{k}.virsh", "w") as plan:
        for i, off in enumerate(rng.sample(range(size // K), n)):
            while True:     # real data: not mostly zeros
                src = rng.randrange(0, size - K, 4096)
                if src % K == 0:
                    continue
                img.seek(src); data = img.read(K)
                if data.count(0) < K // 2:
                    break
            piece = f"{work}/pieces/{k}-{i}"
            open(piece, "wb").write(data)
            plan.write(f"qemu-monitor-command @DOM@ --hmp 'qemu-io -d {qom} \"write -s {piece} {off * K} 64k\"'\n")
        plan.write(f"qemu-monitor-command @DOM@ --hmp 'qemu-io -d {qom} \"flush\"'\n")
EOF
}
