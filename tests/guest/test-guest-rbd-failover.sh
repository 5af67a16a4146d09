#!/bin/bash
# vmdr-failover --rbd of the real Linux guest: snapshots of it (a full and
# an incremental, no memory) replicated to a warm RBD replica, then the
# guest started on the DR libvirtd straight from copy-on-write clones of
# the replica's newest snapshot, as libvirt network disks with the cephx key
# in a libvirt secret.  It boots there (a second BOOT line, its agent
# answers), and its disk, exported from Ceph while the guest's file systems
# are frozen, is fsck-clean and matches the manifest the guest wrote.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
. "$HARNESS_DIR/guest-lib.sh"
. "$HARNESS_DIR/ceph-lib.sh"
need_cmd vmdr-snapshot vmdr-init vmdr-replicate vmdr-failover debugfs python3 rbd

use_ceph
use_libvirt
use_libvirt_dr
use_guest
g=grbd-$$
P=gt$$
U="rbd://$CEPH_POOL/$P?conf=$CEPH_CONF&id=admin"
R() { timeout 60 rbd -p "$CEPH_POOL" "$@"; }
DR() { virsh_c "$LV_DR_URI" "$@"; }
js() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

cleanup_images() {
  local i s
  for i in $(R ls 2>/dev/null | grep "^$P-" | sort -r); do      # .failover clones first
    for s in $(R snap ls "$i" --format json 2>/dev/null |
               python3 -c 'import json,sys; [print(s["name"]) for s in json.load(sys.stdin)]'); do
      R snap unprotect "$i@$s" >/dev/null 2>&1
    done
    R snap purge --no-progress "$i" >/dev/null 2>&1
    R rm --no-progress "$i" >/dev/null 2>&1
  done
  for i in $(timeout 60 rados -p "$CEPH_POOL" ls 2>/dev/null | grep -E "^vmdr_(replica|failover)\.$P-"); do
    timeout 60 rados -p "$CEPH_POOL" rm "$i" >/dev/null 2>&1
  done
  return 0
}
at_exit cleanup_images

guest_create "$g" || tap_bail "guest did not start"
guest_wait "$g" '^N 10$' 180 || tap_bail "no workload"
wait_until 60 virsh_c "$LV_URI" qemu-agent-command "$g" '{"execute":"guest-ping"}' || tap_bail "no agent"
Rp=$T/repo
mkdir -p "$T/scratch"
vmdr-init -q -r "$Rp"
SNAP=(vmdr-snapshot -q -c "$LV_URI" -r "$Rp" --scratch-dir "$T/scratch")
"${SNAP[@]}" "$g" || tap_bail "full snapshot"
vmdr-replicate -q -r "$Rp" --to "$U" --json > "$T/j1" || tap_bail "replicate the full"
guest_wait "$g" '^N 20$' 120
"${SNAP[@]}" "$g" || tap_bail "incremental snapshot"
virsh_c "$LV_URI" destroy "$g" > /dev/null     # the disaster

vmdr-replicate -q -r "$Rp" --to "$U" --json > "$T/j2"; st=$?
diag "replicated: the full wrote $(js "$T/j1" 'd["bytes_written"]') bytes, the incremental $(js "$T/j2" 'd["bytes_written"]') (zeroed $(js "$T/j2" 'd["bytes_zeroed"]'))"
tap_is "the incremental replicated to RBD" "$st $(js "$T/j2" 'd["snapshots_applied"], d["snapshots_present"]')" "0 (1, 1)"
tap_ok "... writing less than the full did" \
  test "$(js "$T/j2" 'd["bytes_written"]')" -lt "$(js "$T/j1" 'd["bytes_written"]')"

at_exit "virsh_c '$LV_DR_URI' destroy '$g' >/dev/null 2>&1; virsh_c '$LV_DR_URI' undefine '$g' >/dev/null 2>&1"
t0=$(date +%s.%N)
vmdr-failover -c "$LV_DR_URI" --rbd "$U" "$g" --json > "$T/f" 2> "$T/f.err"; st=$?
sed 's/^/# /' "$T/f.err"
diag "$(js "$T/f" '"snapshot %s RPO %.1f s RTO %.1f s warnings %s" % (d["snapshot"], d["rpo_seconds"], d["rto_seconds"], d["warnings"])')"
tap_ok "failover from the RBD replica" test "$st" -le 3
tap_is "... from the newest snapshot" "$(js "$T/f" 'd["snapshot"]')" "$(vmdr-ls -r "$Rp" --json | js /dev/stdin 'd["snapshots"][-1]["id"]')"
tap_ok "... in seconds: the disks are clones, nothing is copied (RTO under 10 s)" \
  python3 -c "import json,sys; sys.exit(0 if json.load(open('$T/f'))['rto_seconds'] < 10 else 1)"
tap_is "it runs on the DR host" "$(DR domstate "$g")" running
DR dumpxml "$g" > "$T/dr.xml"
tap_ok "... on a network disk: the clone of the replica's snapshot, through a ceph secret" \
  python3 - "$T/dr.xml" "$CEPH_POOL/$P-$g-vda.failover" <<'PY'
import sys, xml.etree.ElementTree as ET
d = ET.parse(sys.argv[1]).find("devices/disk")
s, a = d.find("source"), d.find("auth")
ok = (d.get("type") == "network" and s.get("protocol") == "rbd" and s.get("name") == sys.argv[2]
      and a is not None and a.get("username") == "admin" and a.find("secret").get("type") == "ceph")
print("# disk:", ET.tostring(d).decode()[:400])
sys.exit(0 if ok else 1)
PY
tap_ok "... whose parent is the replica image at its vmdr snapshot" \
  sh -c "timeout 60 rbd -p '$CEPH_POOL' info '$P-$g-vda.failover' | grep -q 'parent: $CEPH_POOL/$P-$g-vda@vmdr-'"
tap_ok "it boots there: its agent answers" wait_until 180 virsh_c "$LV_DR_URI" qemu-agent-command "$g" '{"execute":"guest-ping"}'
diag "the agent answered $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t0" "$(date +%s.%N)") s after vmdr-failover started (a TCG boot)"

# Its disk as Ceph holds it, taken with the guest's file systems frozen.
DR qemu-agent-command "$g" '{"execute":"guest-fsfreeze-freeze"}' > /dev/null || tap_bail "freeze"
R export --no-progress "$P-$g-vda.failover" "$T/dr.raw" > /dev/null 2>&1; st=$?
DR qemu-agent-command "$g" '{"execute":"guest-fsfreeze-thaw"}' > /dev/null
tap_is "its disk exported from the clone" "$st" 0
tap_is "a second BOOT line: it booted on the DR host" \
  "$(debugfs -R "cat /log" "$T/dr.raw" 2>/dev/null | tr -d '\r' | grep -c '^BOOT')" 2
tap_ok "its disk is fsck-clean and matches the guest's manifest" guest_check_disk "$T/dr.raw"
tap_ok "the replica image itself was not written by the guest" \
  sh -c "[ \"\$(timeout 60 rbd -p '$CEPH_POOL' snap ls '$P-$g-vda' | grep -c vmdr-)\" = 2 ]"

vmdr-failover -c "$LV_DR_URI" --rbd "$U" "$g" > /dev/null 2> "$T/err"; st=$?
tap_is "a second failover while it runs: refused, exit 1" "$st" 1
tap_ok "... saying why" grep -q "already runs on the target" "$T/err"
vmdr-failover -c "$LV_DR_URI" --rbd "$U" "$g" --force --json > "$T/f" 2> "$T/f.err"; st=$?
tap_ok "with --force: the running guest and its clone are replaced" test "$st" -le 3
tap_ok "... and the new one boots" wait_until 180 virsh_c "$LV_DR_URI" qemu-agent-command "$g" '{"execute":"guest-ping"}'

tap_done
