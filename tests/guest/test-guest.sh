#!/bin/bash
# The real Linux test guest: it boots from Debian's kernel, runs its write
# workload, answers through the guest agent, continues its in-memory counter
# across save/restore, and its disk after a power cut is fsck-clean and
# matches the manifest it wrote.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
. "$HARNESS_DIR/guest-lib.sh"

use_libvirt
use_guest
tap_is "guest build is cached" "$("$HARNESS_DIR/guest-build.sh" 2>/dev/null)" "$GUEST_DIR"

g=guest-$$
tap_ok "guest defined and started" guest_create "$g" || tap_bail "guest did not start"
t0=$(date +%s.%N)
tap_ok "guest boots and its workload reports on the console" guest_wait "$g" '^N 1' 180 ||
  { cat "$T/$g.console"; tap_bail "no workload output"; }
diag "first workload line $(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)") s after start"
tap_is "one boot" "$(grep -ac '^BOOT' "$T/$g.console")" 1
tap_ok "the counter advances" guest_wait "$g" '^N 12$' 60

tap_ok "guest agent answers" wait_until 60 virsh_c "$LV_URI" qemu-agent-command "$g" '{"execute":"guest-ping"}'
tap_ok "filesystems freeze through the agent" virsh_c "$LV_URI" domfsfreeze "$g"
a=$(guest_counter "$g"); sleep 1.5; b=$(guest_counter "$g")
tap_is "the workload stalls while frozen (its next write blocks)" "$b" "$((a < b ? a + 1 : a))"
tap_ok "and thaws" virsh_c "$LV_URI" domfsthaw "$g"
tap_ok "the workload goes on after thaw" guest_wait "$g" "^N $((b + 3))\$" 30

# Save/restore: the counter lives only in guest memory, so continuing it
# proves the memory image came back.
tap_ok "save" virsh_c "$LV_URI" save "$g" "$T/$g.save"
saved=$(guest_counter "$g"); lines=$(wc -l < "$T/$g.console")
tap_is "saved guest is off" "$(virsh_c "$LV_URI" domstate "$g")" "shut off"
tap_ok "restore" virsh_c "$LV_URI" restore "$T/$g.save"
guest_wait "$g" "^N $((saved + 2))\$" 30
first=$(guest_console_since "$g" "$lines" | grep -a '^N ' | head -1)
tap_is "the counter continues after restore" "$first" "N $((saved + 1))"
tap_is "no second boot" "$(grep -ac '^BOOT' "$T/$g.console")" 1

# Power cut while it writes: the disk must still be consistent.
guest_wait "$g" "^N $((saved + 10))\$" 30
virsh_c "$LV_URI" destroy "$g" >/dev/null
tap_ok "after a power cut: fsck clean, files match the guest's manifest" \
  guest_check_disk "$T/$g-data.qcow2"

# The checker itself must catch damage: flip a seeded file's bytes.
w=$T/damaged; mkdir -p "$w/fs"
qemu-img convert -O raw "$T/$g-data.qcow2" "$w/d.raw"
e2fsck -fy "$w/d.raw" >/dev/null 2>&1
debugfs -R "rdump / $w/fs" "$w/d.raw" >/dev/null 2>&1
printf 'x' | dd of="$w/fs/seed/file2" bs=1 seek=100 conv=notrunc 2>/dev/null
tap_fails "the manifest check catches a changed file" "$HARNESS_DIR/guest-manifest-check.sh" "$w/fs"

tap_done
