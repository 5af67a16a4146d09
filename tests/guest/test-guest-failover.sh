#!/bin/bash
# vmdr-failover of the real Linux guest to the DR libvirtd: from a snapshot
# with memory the guest resumes where it was (its in-memory counter goes on
# from the snapshot point, no new boot); from one without, it boots, and its
# disk is fsck-clean and matches the manifest the guest wrote.  A resumed
# guest's clock is set by its agent (it stood at the snapshot point); one
# whose agent does not answer (stopped in the guest before the snapshot,
# as a hung guest) is resumed with a warning that it may be hung.
#
# The guest appends "N <counter>" to /data/log and "BOOT ..." at each boot;
# the DR copy's log is read from a frozen (agent fsfreeze) copy of its disk.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
. "$HARNESS_DIR/guest-lib.sh"
need_cmd vmdr-snapshot vmdr-init vmdr-failover vmdr-restore debugfs python3

use_libvirt
use_libvirt_dr
use_guest
g=gfo-$$
guest_create "$g" || tap_bail "guest did not start"
guest_wait "$g" '^N 10$' 180 || tap_bail "no workload"
wait_until 60 virsh_c "$LV_URI" qemu-agent-command "$g" '{"execute":"guest-ping"}' || tap_bail "no agent"
R=$T/repo
mkdir -p "$T/scratch" "$T/fo"
vmdr-init -q -r "$R"
SNAP=(vmdr-snapshot -q -c "$LV_URI" -r "$R" --scratch-dir "$T/scratch")
"${SNAP[@]}" "$g" || tap_bail "snapshot without memory"
t_disk=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1.1
c0=$(guest_counter "$g")
"${SNAP[@]}" --memory "$g" || tap_bail "snapshot with memory"
c1=$(guest_counter "$g")
diag "memory snapshot taken between counter $c0 and $c1"
t_mem=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1.1
# The newest snapshot: memory, with the guest's agent stopped (SIGSTOP).
virsh_c "$LV_URI" qemu-agent-command "$g" \
  '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","sleep 1; killall -STOP qemu-ga"]}}' > /dev/null ||
  tap_bail "cannot stop the guest's agent"
sleep 2
! virsh_c "$LV_URI" qemu-agent-command --timeout 3 "$g" '{"execute":"guest-ping"}' > /dev/null 2>&1 ||
  tap_bail "the guest's agent still answers"
"${SNAP[@]}" --memory "$g" || tap_bail "snapshot with memory, agent stopped"
virsh_c "$LV_URI" destroy "$g" > /dev/null     # the disaster
sleep 6     # so that a clock left at the snapshot point is seen to lag
DR() { virsh_c "$LV_DR_URI" "$@"; }
at_exit "virsh_c '$LV_DR_URI' destroy '$g' >/dev/null 2>&1; virsh_c '$LV_DR_URI' undefine '$g' >/dev/null 2>&1"

# The DR copy's /data/log, from a copy of its disk taken with the guest's
# file systems frozen.
dr_log() {
  DR qemu-agent-command "$g" '{"execute":"guest-fsfreeze-freeze"}' > /dev/null || return 1
  qemu-img convert -U -O raw "$T/fo/$g-vda.qcow2" "$T/dr.raw"
  DR qemu-agent-command "$g" '{"execute":"guest-fsfreeze-thaw"}' > /dev/null
  debugfs -R "cat /log" "$T/dr.raw" 2>/dev/null | tr -d '\r'
}

vmdr-failover -c "$LV_DR_URI" -r "$R" "$g" --storage "$T/fo" --at "$t_mem" --json > "$T/f" 2> "$T/f.err"; st=$?
diag "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("snapshot", d["snapshot"], "RPO %.1f s RTO %.1f s" % (d["rpo_seconds"], d["rto_seconds"]), "warnings:", d["warnings"])' "$T/f")"
tap_ok "failover from the snapshot with memory" test "$st" -le 3
tap_is "the guest was resumed, not booted" \
  "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["resumed"])' "$T/f")" True
tap_is "it runs on the DR host" "$(DR domstate "$g")" running
tap_ok "its agent answers there" wait_until 60 virsh_c "$LV_DR_URI" qemu-agent-command "$g" '{"execute":"guest-ping"}'
tap_is "the report says its clock was set, and warns of nothing about it" \
  "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["clock_synced"], [w for w in d["warnings"] if "resumed" in w])' "$T/f")" "True []"
gt=$(DR domtime "$g" | awk '/Time:/ {print $2}')
lag=$(( $(date +%s) - ${gt:-0} ))
diag "the guest's clock is $lag s behind the host's (RPO above)"
tap_ok "its clock is the host's, not the snapshot point's" test "${lag#-}" -le 3
sleep 3
dr_log > "$T/log1" || tap_bail "cannot read the DR guest's log"
tap_is "no new boot: one BOOT line in the guest's log" "$(grep -c '^BOOT' "$T/log1")" 1
tap_ok "the counter goes on past the snapshot point without a reset" python3 - "$T/log1" "$c0" "$c1" <<'PY'
import sys
ns = [int(l.split()[1]) for l in open(sys.argv[1]) if l.startswith("N ")]
c0, c1 = int(sys.argv[2]), int(sys.argv[3])
steps_ok = all(b == a + 1 for a, b in zip(ns, ns[1:]))
print("# last counters:", ns[-5:], "steps all +1:", steps_ok)
sys.exit(0 if steps_ok and ns[-1] > c1 + 1 and ns[-1] > c0 else 1)
PY
DR destroy "$g" > /dev/null; DR undefine "$g" > /dev/null
rm -f "$T/fo"/*

vmdr-failover -c "$LV_DR_URI" -r "$R" "$g" --storage "$T/fo" --agent-wait 5 --json > "$T/f" 2> "$T/f.err"; st=$?
tap_is "a resumed guest whose agent does not answer: done with warnings" "$st" 3
tap_ok "the warning says it may be hung" python3 - "$T/f" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("# resumed:", d["resumed"], "clock_synced:", d["clock_synced"], "warnings:", d["warnings"])
sys.exit(0 if d["resumed"] and not d["clock_synced"] and
         any("has not answered in 5 s: the guest may be hung" in w for w in d["warnings"]) else 1)
PY
DR destroy "$g" > /dev/null; DR undefine "$g" > /dev/null
rm -f "$T/fo"/*

vmdr-failover -c "$LV_DR_URI" -r "$R" "$g" --storage "$T/fo" --at "$t_disk" --json > "$T/f" 2> "$T/f.err"; st=$?
tap_ok "failover --at the snapshot without memory" test "$st" -le 3
tap_is "the guest was booted" \
  "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["resumed"])' "$T/f")" False
tap_ok "it comes up: its agent answers" wait_until 180 virsh_c "$LV_DR_URI" qemu-agent-command "$g" '{"execute":"guest-ping"}'
dr_log > "$T/log2" || tap_bail "cannot read the DR guest's log"
tap_is "a second BOOT line: it booted on the DR host" "$(grep -c '^BOOT' "$T/log2")" 2
tap_ok "its disk is fsck-clean and matches the guest's manifest" guest_check_disk "$T/dr.raw"

tap_done
