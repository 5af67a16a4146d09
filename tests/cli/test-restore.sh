#!/bin/bash
# vmdr-restore to files: raw and qcow2 equal the source (qemu-img compare),
# holes stay holes, selectors pick the right snapshot, the memory image comes
# back, existing files are kept unless --force, and a damaged chunk or a bad
# input fails with one clear line and leaves nothing behind.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd repo-image vmdr-init vmdr-restore vmdr-verify qemu-img python3

R=$T/repo
O=$T/out
mkdir -p "$O"
vmdr-init -q -r "$R"
# vda: 64 MiB, data at three places, holes between; vdb: 16 MiB of random
# data in its first half; a 4 MiB "memory image".
python3 - "$T" <<'PY'
import random, sys
rnd = random.Random(11)
d = sys.argv[1]
with open(d + "/vda1", "wb") as f:
    f.truncate(64 << 20)
    for off, n in ((0, 1 << 20), (20 << 20, 3 << 20), ((64 << 20) - 65536, 65536)):
        f.seek(off); f.write(rnd.randbytes(n))
with open(d + "/vdb", "wb") as f:
    f.truncate(16 << 20); f.write(rnd.randbytes(8 << 20))
open(d + "/mem", "wb").write(rnd.randbytes(4 << 20))
PY
cp --sparse=always "$T/vda1" "$T/vda2"
printf 'changed' | dd of="$T/vda2" bs=1 seek=$((20 << 20)) conv=notrunc status=none
id1=$(repo-image put "$R" web vda="$T/vda1") || tap_bail "put 1"
sleep 0.01
id2=$(repo-image put "$R" web vda="$T/vda2" vdb="$T/vdb" memory="$T/mem") || tap_bail "put 2"

# allocated KiB of a file
alloc() { du -k "$1" | cut -f1; }
leftovers() { find "$O" -mindepth 1 | wc -l; }

tap_ok "restore the newest snapshot as raw" vmdr-restore -q -r "$R" web@latest -o "$O" --format raw
tap_ok "vda equals the source" qemu-img compare -q -f raw -F raw "$T/vda2" "$O/web-vda.raw"
tap_ok "vdb equals the source" qemu-img compare -q -f raw -F raw "$T/vdb" "$O/web-vdb.raw"
tap_ok "holes stay holes (vda: $(alloc "$O/web-vda.raw") KiB allocated of 65536)" \
  test "$(alloc "$O/web-vda.raw")" -le $((4 * 1024 + 256))
tap_ok "restore as qcow2 (-j 3)" vmdr-restore -q -r "$R" "$id2" -o "$O" --format qcow2 -j 3
tap_ok "qcow2 vda equals the source" qemu-img compare -q -f raw -F qcow2 "$T/vda2" "$O/web-vda.qcow2"
tap_ok "qcow2 vdb equals the source" qemu-img compare -q -f raw -F qcow2 "$T/vdb" "$O/web-vdb.qcow2"
tap_ok "the qcow2 image is valid" qemu-img check -q "$O/web-vda.qcow2"
tap_ok "its holes are unallocated ($(alloc "$O/web-vda.qcow2") KiB)" \
  test "$(alloc "$O/web-vda.qcow2")" -le $((4 * 1024 + 512))
rm -f "$O"/*

tap_ok "an older snapshot by id, one disk, a new name" \
  vmdr-restore -q -r "$R" "$id1" -o "$O" --disks vda --name copy
tap_ok "... equals that point" cmp "$T/vda1" "$O/copy-vda.raw"
tap_is "... and nothing else was written" "$(ls "$O")" "copy-vda.raw"
rm -f "$O"/*
# a millisecond before the second snapshot
t1=$(python3 -c "import datetime as d,sys; t=d.datetime.strptime(sys.argv[1].split('/')[1], '%Y%m%dT%H%M%S.%fZ') - d.timedelta(milliseconds=1); print(t.strftime('%Y%m%dT%H%M%S.') + f'{t.microsecond // 1000:03d}Z')" "$id2")
tap_ok "DOMAIN@TIME picks the newest at or before TIME" \
  sh -c "vmdr-restore -r '$R' 'web@$t1' -o '$O' --json --disks vda | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[\"snapshot\"] == \"$id1\" else 1)'"
rm -f "$O"/*

vmdr-restore -r "$R" web@latest -o "$O" --with-memory --json > "$T/j"
tap_ok "--with-memory brings the memory image back" cmp "$T/mem" "$O/web.save"
tap_is "--json lists the disks, the memory image and the bytes" \
  "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["ok"], [x["target"] for x in d["disks"]], d["memory"].endswith("web.save"), d["bytes"])' "$T/j")" \
  "True ['vda', 'vdb'] True $(((1 << 20) + (3 << 20) + 65536 + (8 << 20)))"

# An existing target: refused before anything is written, then --force.
sum=$(md5sum < "$O/web-vdb.raw")
echo junk > "$O/web-vda.raw"
vmdr-restore -r "$R" web@latest -o "$O" > /dev/null 2> "$T/err"; st=$?
tap_is "an existing file: exit 1" "$st" 1
tap_is "... one line naming it" "$(cat "$T/err")" \
  "vmdr-restore: '$O/web-vda.raw' exists (use --force to replace it)"
tap_is "... and it is unchanged" "$(cat "$O/web-vda.raw")" junk
tap_ok "--force replaces it" vmdr-restore -q -r "$R" web@latest -o "$O" --force
tap_ok "... with the snapshot's bytes" cmp "$T/vda2" "$O/web-vda.raw"
tap_is "... and the other disk is the same" "$(md5sum < "$O/web-vdb.raw")" "$sum"
rm -f "$O"/*

# Bad input: one line, exit status, nothing written.
errline() { "$@" 2>&1 >/dev/null | head -1; }
tap_is "an unknown snapshot" "$(errline vmdr-restore -r "$R" nosuch@latest -o "$O")" \
  "vmdr-restore: no snapshot 'nosuch@latest' in '$R'"
tap_is "an unknown disk" "$(errline vmdr-restore -r "$R" web@latest -o "$O" --disks vdz)" \
  "vmdr-restore: snapshot '$id2' has no disk 'vdz'"
tap_is "no memory image" "$(errline vmdr-restore -r "$R" "$id1" -o "$O" --with-memory)" \
  "vmdr-restore: snapshot '$id1' has no memory image"
vmdr-restore -r "$R" web@latest -o "$O" --format vmdk >/dev/null 2>&1; st=$?
tap_is "a bad --format: exit 2" "$st" 2
vmdr-restore -r "$R" 'not a selector' -o "$O" >/dev/null 2>&1; st=$?
tap_is "a malformed selector: exit 2" "$st" 2
tap_is "a missing output directory" "$(errline vmdr-restore -r "$R" web@latest -o "$T/nodir")" \
  "vmdr-restore: cannot write '$T/nodir/web-vda.raw': No such file or directory"
tap_is "not a repository" "$(errline vmdr-restore -r "$T" web@latest -o "$O")" \
  "vmdr-restore: '$T' is not a vmdr repository (no config; create one with vmdr-init)"
tap_is "nothing was written by any of them" "$(leftovers)" 0

# Damage a chunk only the second snapshot has: vdb's second chunk, found by
# its bytes (random data is stored raw).  The restore names snapshot, disk,
# offset and chunk, and removes vda, which it had already written.
python3 - "$R" "$T/vdb" <<'PY' || tap_bail "cannot damage a chunk"
import glob, sys
want = open(sys.argv[2], "rb").read()[65536:131072]
for p in glob.glob(sys.argv[1] + "/data/*/*"):
    b = bytearray(open(p, "rb").read())
    at = b.find(want)
    if at >= 0:
        b[at + 100] ^= 0xff
        open(p, "wb").write(b)
        sys.exit(0)
sys.exit(1)
PY
vmdr-restore -r "$R" web@latest -o "$O" > /dev/null 2> "$T/err"; st=$?
tap_is "a damaged chunk: exit 1" "$st" 1
tap_ok "... one line naming snapshot, disk, chunk and offset" \
  grep -qE "^vmdr-restore: snapshot '$id2' disk vdb: chunk [0-9a-f]{64} at offset 65536: checksum mismatch or malformed$" "$T/err"
tap_is "... and no partial output, not even the disk restored before" "$(leftovers)" 0
tap_ok "the older snapshot, which does not use that chunk, still restores" \
  vmdr-restore -q -r "$R" "$id1" -o "$O"

# SIGKILL mid-restore: no image under the final name; the next restore
# removes the temporary file and completes.
head -c $((192 << 20)) /dev/urandom > "$T/big"
repo-image put "$R" big vda="$T/big" > /dev/null || tap_bail "put big"
K=$T/killed
caught=0
for attempt in 1 2 3 4 5; do
  rm -rf "$K"; mkdir -p "$K"
  vmdr-restore -q -r "$R" big@latest -o "$K" -j 1 --format qcow2 & pid=$!
  for _ in $(seq 500); do
    compgen -G "$K/.big-vda.qcow2.vmdr-*" > /dev/null && break
    sleep 0.01
  done
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  [ -e "$K/big-vda.qcow2" ] || { caught=1; break; }
done
[ "$caught" = 1 ] || tap_bail "the restore always finished before it could be killed"
tap_is "a restore killed mid-way leaves no image under the final name" "$(ls "$K")" ""
tap_ok "... and no qemu-nbd serving it" wait_until 10 sh -c "! pgrep -af '^qemu-nbd' | grep -qF '$K'"
tap_ok "... only its temporary file" compgen -G "$K/.big-vda.qcow2.vmdr-*"
vmdr-restore -r "$R" big@latest -o "$K" --format qcow2 2> "$T/err"; st=$?
tap_is "the next restore completes, saying it removed the leftover" "$st $(cat "$T/err")" \
  "0 vmdr-restore: warning: removed 1 temporary file of an interrupted restore"
tap_is "... and only the image is left" "$(ls -A "$K")" "big-vda.qcow2"
tap_ok "... equal to the source" qemu-img compare -q -f raw -F qcow2 "$T/big" "$K/big-vda.qcow2"

tap_done
