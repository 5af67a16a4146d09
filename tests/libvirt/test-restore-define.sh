#!/bin/bash
# vmdr-restore --define and vmdr-failover against a second libvirtd that
# plays the DR site: the guest is defined on the restored images (new
# identity unless kept), started, refused when one is in the way, put on the
# isolated lab network in --test-lab and cleaned up after; failover picks the
# newest whole snapshot, skips a damaged one with a warning, and refuses to
# start a second copy.
. "$(dirname "$0")/../harness/lib.sh"
. "$HARNESS_DIR/libvirt-lib.sh"
need_cmd vmdr-init vmdr-snapshot vmdr-restore vmdr-failover qemu-img python3

use_libvirt
use_libvirt_dr
src=rdef-$$
vm_create --nic "$src" vda:qcow2:64M vdb:raw:16M || tap_bail "cannot create $src"
vm_write "$src" vda 0x61 0 1M && vm_write "$src" vdb 0x62 4M 2M || tap_bail "guest writes"
R=$T/repo
mkdir -p "$T/scratch" "$T/dr" "$T/fo" "$T/lab"
vmdr-init -q -r "$R"
vmdr-snapshot -q -c "$LV_URI" -r "$R" --scratch-dir "$T/scratch" "$src" || tap_bail "snapshot 1"
# the images at the snapshot point (the domain has no OS: nothing else writes)
for t in vda:qcow2 vdb:raw; do
  qemu-img convert -U -O raw "$(vm_image "$src" "${t%:*}" "${t#*:}")" "$T/${t%:*}.1"
done
at_exit "virsh_c '$LV_DR_URI' destroy '$src' >/dev/null 2>&1; virsh_c '$LV_DR_URI' undefine '$src' >/dev/null 2>&1"
at_exit "vmdr-restore -q --cleanup-lab -c '$LV_DR_URI' >/dev/null 2>&1"
DR() { virsh_c "$LV_DR_URI" "$@"; }
mac_of() { virsh_c "$1" domiflist "$2" | awk 'NF { print $5 }'; }
uuid_src=$(virsh_c "$LV_URI" domuuid "$src")

vmdr-restore -r "$R" "$src@latest" -o "$T/dr" --define "$LV_DR_URI" --start --json > "$T/j"; st=$?
tap_is "restore --define --start on the DR host" "$st" 0
tap_is "the guest runs there" "$(DR domstate "$src")" running
tap_ok "with a new UUID" test "$(DR domuuid "$src")" != "$uuid_src"
tap_ok "and a new MAC address" test "$(mac_of "$LV_DR_URI" "$src")" != "$(mac_of "$LV_URI" "$src")"
tap_is "its disks are the restored images" "$(DR domblklist "$src" | awk '{print $2}' | tr '\n' ' ')" \
  "$T/dr/$src-vda.qcow2 $T/dr/$src-vdb.raw "
tap_ok "vda equals the source at the snapshot point" qemu-img compare -U -q -f raw -F qcow2 "$T/vda.1" "$T/dr/$src-vda.qcow2"
tap_ok "vdb too" qemu-img compare -U -q -f raw -F raw "$T/vdb.1" "$T/dr/$src-vdb.raw"
tap_is "--json names the guest" "$(python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))["guest"]; print(g["name"], g["defined"], g["started"])' "$T/j")" \
  "$src True True"

ls -la "$T/dr" > "$T/before"
errline() { "$@" 2>&1 >/dev/null | head -1; }
tap_is "a domain of that name in the way: refused before anything is written" \
  "$(errline vmdr-restore -r "$R" "$src@latest" -o "$T/dr2" --define "$LV_DR_URI")" \
  "vmdr-restore: a domain named '$src' exists on the target and runs (use --force to replace it)"
tap_ok "... nothing was written" test ! -e "$T/dr2"
tap_is "an unreachable libvirt: one line" \
  "$(errline vmdr-restore -r "$R" "$src@latest" -o "$T/dr" --define "qemu:///system?socket=$T/nosock")" \
  "vmdr-restore: cannot connect to libvirt at 'qemu:///system?socket=$T/nosock': Failed to connect socket to '$T/nosock': No such file or directory"
ls -la "$T/dr" > "$T/after"
tap_ok "... and nothing changed in the output directory" cmp "$T/before" "$T/after"
tap_ok "--force --keep-identity replaces it" \
  vmdr-restore -q -r "$R" "$src@latest" -o "$T/dr" --define "$LV_DR_URI" --start --force --keep-identity
tap_is "... and keeps the source's UUID" "$(DR domuuid "$src")" "$uuid_src"
tap_is "... and MAC" "$(mac_of "$LV_DR_URI" "$src")" "$(mac_of "$LV_URI" "$src")"
DR destroy "$src" >/dev/null; DR undefine "$src" >/dev/null

# --- the test lab
DR net-list --all --name | grep -c . > "$T/nets-before"
vmdr-restore -q -r "$R" "$src@latest" -o "$T/lab" --define "$LV_DR_URI" --start --test-lab; st=$?
tap_is "restore --test-lab" "$st" 0
tap_is "the lab guest runs as NAME-lab" "$(DR domstate "$src-lab")" running
tap_is "its NIC is on the lab network only" "$(DR domiflist "$src-lab" | awk 'NF { print $2, $3 }')" "network vmdr-lab"
DR net-dumpxml vmdr-lab > "$T/net.xml"
tap_ok "the lab network has no forward and no IP: no route out" \
  sh -c "! grep -qE '<forward|<ip' '$T/net.xml'"
tap_ok "the source guest is untouched" test "$(virsh_c "$LV_URI" domstate "$src")" = running
tap_ok "--cleanup-lab" vmdr-restore -q --cleanup-lab -c "$LV_DR_URI"
tap_ok "... removes the lab guest" sh -c "! virsh -c '$LV_DR_URI' dominfo '$src-lab' >/dev/null 2>&1"
tap_is "... its images" "$(ls "$T/lab" | wc -l)" 0
tap_ok "... and the network" sh -c "! virsh -c '$LV_DR_URI' net-info vmdr-lab >/dev/null 2>&1"

# --- failover: a second snapshot, damaged; failover skips it
vm_write "$src" vda 0x63 0 64K || tap_bail "guest write 2"
vmdr-snapshot -q -c "$LV_URI" -r "$R" --scratch-dir "$T/scratch" "$src" || tap_bail "snapshot 2"
python3 - "$R" <<'PY' || tap_bail "cannot damage the second snapshot"
import glob, os, sys
# 64 KiB of 0x63 compress to a few bytes: the newest pack's first blob.
packs = sorted(glob.glob(sys.argv[1] + "/data/*/*"), key=os.path.getmtime)
with open(packs[-1], "r+b") as f:
    b = bytearray(f.read(64)); b[56] ^= 0xff; f.seek(0); f.write(b)
PY
vmdr-failover -c "$LV_DR_URI" -r "$R" "$src" --storage "$T/fo" --json > "$T/f" 2> "$T/f.err"; st=$?
tap_is "failover with a damaged newest snapshot: done with warnings" "$st" 3
tap_ok "... the damaged one is skipped, and said so" \
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if any(w.startswith("skipped") for w in d["warnings"]) else 1)' "$T/f"
tap_is "the guest runs on the DR host under its own name and UUID" \
  "$(DR domstate "$src") $(DR domuuid "$src")" "running $uuid_src"
tap_ok "from the previous snapshot: vda equals that point" \
  qemu-img compare -U -q -f raw -F qcow2 "$T/vda.1" "$T/fo/$src-vda.qcow2"
tap_ok "the report gives the snapshot, RPO and RTO" \
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["snapshot"] and d["rpo_seconds"] > 0 and 0 < d["rto_seconds"] < 60 else 1)' "$T/f"
tap_ok "each step is logged" grep -q "restoring '$src/" "$T/f.err"
vmdr-failover -q -c "$LV_DR_URI" -r "$R" "$src" --storage "$T/fo" 2> "$T/f.err"; st=$?
tap_is "a second failover while the guest runs is refused" "$st $(cut -d, -f1 "$T/f.err")" \
  "1 vmdr-failover: '$src' already runs on the target"
tap_ok "--test rehearses it in the lab next to the running guest" \
  sh -c "vmdr-failover -q -c '$LV_DR_URI' -r '$R' '$src' --storage '$T/fo' --test > /dev/null; [ \$? -le 3 ]"
tap_is "... as NAME-lab on the lab network" "$(DR domiflist "$src-lab" | awk 'NF { print $3 }')" "vmdr-lab"
tap_ok "cleanup" vmdr-restore -q --cleanup-lab -c "$LV_DR_URI"
tap_is "... leaves the real failover running" "$(DR domstate "$src")" running

# --- a rerun after a failover that died half way: its guest defined but
# not running, a temporary image left behind.  The rerun removes both.
DR destroy "$src" > /dev/null
touch "$T/fo/.$src-vda.qcow2.vmdr-AbC123"
vmdr-failover -c "$LV_DR_URI" -r "$R" "$src" --storage "$T/fo" --json > "$T/f" 2> "$T/f.err"; st=$?
tap_is "a rerun over a half-done failover completes (with warnings)" "$st" 3
tap_is "... the guest runs" "$(DR domstate "$src")" running
tap_ok "... the leftovers are named in the warnings" python3 -c '
import json, sys
w = json.load(open(sys.argv[1]))["warnings"]
sys.exit(0 if any("left by an earlier run" in x for x in w) and any("1 temporary file left" in x for x in w) else 1)' "$T/f"
tap_is "... and no temporary file is left" "$(ls -A "$T/fo" | grep -c '\.vmdr-[A-Za-z0-9]\{6\}$')" 0

tap_done
