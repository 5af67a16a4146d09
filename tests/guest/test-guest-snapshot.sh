#!/bin/bash
# vmdr-snapshot on the real Linux guest while its workload writes: a
# quiesced snapshot is fsck-clean as it stands; a crash-consistent one is
# clean after journal replay, and its files match the guest's manifest;
# --memory stores RAM with a short pause, and a second capture stores far
# less than the first; no libvirt snapshot metadata or memory file is left.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
. "$HARNESS_DIR/guest-lib.sh"
need_cmd vmdr-snapshot vmdr-init vmdr-verify repo-image python3

use_libvirt
use_guest
g=gsnap-$$
guest_create "$g" || tap_bail "guest did not start"
guest_wait "$g" '^N 20$' 180 || tap_bail "no workload"
wait_until 60 virsh_c "$LV_URI" qemu-agent-command "$g" '{"execute":"guest-ping"}' || tap_bail "no agent"
R=$T/repo
mkdir -p "$T/scratch"
vmdr-init -q -r "$R"
SNAP=(vmdr-snapshot -c "$LV_URI" -r "$R" --scratch-dir "$T/scratch" --json)
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['snapshots'][0]; print(d[sys.argv[2]])" "$T/out" "$1"; }
restore() { rm -f "$T/$2"; repo-image get "$R" "$1" vda "$T/$2"; }

# --- crash-consistent, while the workload writes
"${SNAP[@]}" "$g" > "$T/out"; st=$?
tap_is "crash-consistent snapshot of the running guest" "$st $(field consistency)" "0 crash"
restore "$(field snapshot)" crash.raw
tap_ok "it is fsck-clean after journal replay and matches the guest's manifest" \
  guest_check_disk "$T/crash.raw"

# --- quiesced
"${SNAP[@]}" --quiesce "$g" > "$T/out"; st=$?
tap_is "quiesced snapshot through the guest agent" "$st $(field consistency) $(field kind)" "0 quiesced incremental"
restore "$(field snapshot)" quiesced.raw
tap_ok "a quiesced snapshot is fsck-clean as it stands (no journal replay)" \
  e2fsck -fn "$T/quiesced.raw"
tap_ok "and matches the guest's manifest" guest_check_disk "$T/quiesced.raw"
a=$(guest_counter "$g"); sleep 1
tap_ok "the guest is thawed: its workload goes on" guest_wait "$g" "^N $((a + 2))\$" 20

# --- with memory
"${SNAP[@]}" --memory "$g" > "$T/out"; st=$?
tap_is "snapshot with memory" "$st $(field consistency)" "0 with-memory"
pause=$(field pause_ms); mem1=$(python3 -c "import json,glob,sys; print(json.load(open(glob.glob(sys.argv[1])[0]))['memory']['bytes_new'])" "$R/snapshots/$g/$(field snapshot | cut -d/ -f2).json")
diag "pause $(printf '%.0f' "$pause") ms, memory image $(field memory_bytes) bytes, $mem1 stored"
tap_ok "the pause is under a second ($(printf '%.0f' "$pause") ms)" python3 -c "import sys; sys.exit(0 if $pause < 1000 else 1)"
# QEMU's save format skips zero pages: the image is the RAM in use.
tap_ok "a memory image of the guest's RAM in use ($(field memory_bytes) bytes)" \
  test "$(field memory_bytes)" -gt $((8 << 20)) -a "$(field memory_bytes)" -lt $((300 << 20))
tap_is "the guest runs on after the capture" "$(virsh_c "$LV_URI" domstate "$g")" running
"${SNAP[@]}" --memory "$g" > "$T/out"; st=$?
mem2=$(python3 -c "import json,glob,sys; print(json.load(open(glob.glob(sys.argv[1])[0]))['memory']['bytes_new'])" "$R/snapshots/$g/$(field snapshot | cut -d/ -f2).json")
diag "second memory capture stored $mem2 bytes (first $mem1)"
tap_ok "a second memory capture stores far less than the first ($mem2 < $mem1 / 3)" test $((mem2 * 3)) -lt "$mem1"
rm -f "$T/mem.raw"; repo-image get "$R" "$(field snapshot)" memory "$T/mem.raw"
tap_ok "the memory image comes back (a libvirt save image)" \
  sh -c "virsh -c '$LV_URI' save-image-dumpxml '$T/mem.raw' | grep -q '<name>$g</name>'"
tap_is "no libvirt snapshot metadata is left" "$(virsh_c "$LV_URI" snapshot-list "$g" --name | grep -c .)" 0
tap_is "no memory file or scratch file is left" "$(ls "$T/scratch" | wc -l)" 0
tap_ok "every snapshot verifies" vmdr-verify -q -r "$R"

tap_done
