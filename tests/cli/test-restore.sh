#!/bin/bash
# vmdr-restore to files: raw and qcow2 equal the source (qemu-img compare),
# holes stay holes, selectors pick the right snapshot, the memory image comes
# back, existing files are kept unless --force, and a damaged chunk or a bad
# input fails with one clear line and leaves nothing behind.  The same for
# --archive: a pax tar that GNU tar (and bsdtar) extract as sparse files.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd repo-image vmdr-init vmdr-restore vmdr-verify qemu-img python3 tar

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
printf '<domain type="kvm">\n  <name>web</name>\n</domain>\n' > "$T/web.xml"
id2=$(repo-image put "$R" web vda="$T/vda2" vdb="$T/vdb" memory="$T/mem" xml="$T/web.xml") ||
  tap_bail "put 2"

# allocated KiB of a file
alloc() { du -k "$1" | cut -f1; }
leftovers() { find "$O" -mindepth 1 | wc -l; }
errline() { "$@" 2>&1 >/dev/null | head -1; }

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
# bytes qemu reads from the image's data clusters (not zero clusters)
qdata() { qemu-img map --output=json "$1" |
  python3 -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))'; }
tap_ok "... and qemu sees them as holes ($(qdata "$O/web-vda.qcow2") bytes of data)" \
  test "$(qdata "$O/web-vda.qcow2")" -le $((5 << 20))
rm -f "$O"/*
# Fault injection: a qemu-img whose map says the data is compressed (not
# plainly in the file), so the restore writes all of it through qemu-nbd.
mkdir -p "$T/bin"
printf '#!/bin/sh\nif [ "$1" = map ]; then %s "$@" | sed "s/\"data\": true/\"data\": true, \"compressed\": true/g"; else exec %s "$@"; fi\n' \
  "$(command -v qemu-img)" "$(command -v qemu-img)" > "$T/bin/qemu-img"
chmod +x "$T/bin/qemu-img"
tap_ok "qcow2 when qemu-img's map is not plain: through qemu-nbd" \
  env PATH="$T/bin:$PATH" vmdr-restore -q -r "$R" "$id2" -o "$O" --format qcow2 --disks vda
tap_ok "... equals the source" qemu-img compare -q -f raw -F qcow2 "$T/vda2" "$O/web-vda.qcow2"
tap_ok "... holes unallocated ($(alloc "$O/web-vda.qcow2") KiB)" \
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

# --archive: the images as sparse entries of one pax tar stream.
A=$T/arc
mkdir -p "$A"
tap_ok "--archive FILE with the memory image" \
  vmdr-restore -q -r "$R" web@latest --archive "$A/web.tar" --with-memory
tap_is "... its entries: the domain XML, the disks, the memory image" \
  "$(tar -tf "$A/web.tar" | tr '\n' ' ')" "web.xml web-vda.raw web-vdb.raw web.save "
datab=$(((1 << 20) + (3 << 20) + 65536 + (8 << 20) + (4 << 20)))
tap_ok "... holds the data, not the holes ($(stat -c %s "$A/web.tar") bytes for $datab of data)" \
  test "$(stat -c %s "$A/web.tar")" -le $((datab + (256 << 10)))
mkdir "$A/x"
tap_ok "GNU tar -xSf extracts it" tar -xSf "$A/web.tar" -C "$A/x"
tap_ok "... vda equals the source" qemu-img compare -q -f raw -F raw "$T/vda2" "$A/x/web-vda.raw"
tap_ok "... vdb equals the source" qemu-img compare -q -f raw -F raw "$T/vdb" "$A/x/web-vdb.raw"
tap_ok "... the memory image too" cmp "$T/mem" "$A/x/web.save"
tap_ok "... and the domain XML" cmp "$T/web.xml" "$A/x/web.xml"
tap_is "... sizes as the sources" "$(stat -c %s "$A/x/web-vda.raw" "$A/x/web-vdb.raw" | tr '\n' ' ')" \
  "$((64 << 20)) $((16 << 20)) "
tap_ok "... holes stay holes (vda: $(alloc "$A/x/web-vda.raw") KiB allocated of 65536)" \
  test "$(alloc "$A/x/web-vda.raw")" -le $((4 * 1024 + 256))
if command -v bsdtar > /dev/null; then
  mkdir "$A/b"
  tap_ok "bsdtar extracts it too" bsdtar -xSf "$A/web.tar" -C "$A/b"
  tap_ok "... the same files" sh -c "cmp '$A/x/web-vda.raw' '$A/b/web-vda.raw' && cmp '$A/x/web-vdb.raw' '$A/b/web-vdb.raw' && cmp '$A/x/web.save' '$A/b/web.save'"
  tap_ok "... sparse ($(alloc "$A/b/web-vda.raw") KiB)" test "$(alloc "$A/b/web-vda.raw")" -le $((4 * 1024 + 256))
else
  tap_skip "bsdtar extracts it too" "no bsdtar (libarchive-tools)"
fi
rm -rf "$A/x" "$A/b"

vmdr-restore -r "$R" web@latest --archive - --disks vdb --name copy 2> "$T/err" | tar -tvf - > "$T/list"
tap_is "--archive - to a pipe: tar -tvf - lists it" \
  "$(awk '{ print $1, $3, $6 }' "$T/list" | tr '\n' ' ')" \
  "-rw------- $(stat -c %s "$T/web.xml") copy.xml -rw------- $((16 << 20)) copy-vdb.raw "
tap_is "... and nothing on stderr" "$(cat "$T/err")" ""
vmdr-restore -q -r "$R" web@latest --archive - --with-memory > "$A/again.tar"
tap_ok "the same snapshot makes the same archive, to a file or a pipe" cmp "$A/web.tar" "$A/again.tar"
vmdr-restore -r "$R" "$id1" --archive "$A/one.tar" --json > "$T/j"
tap_is "--json names the archive, its bytes and the entries" \
  "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["ok"], d["archive"]["path"].endswith("one.tar"), d["archive"]["bytes"], [x["path"] for x in d["disks"]], d["memory"])' "$T/j")" \
  "True True $(stat -c %s "$A/one.tar") ['web-vda.raw'] None"

# An existing archive is refused, unless --force.
sum=$(md5sum < "$A/one.tar")
vmdr-restore -r "$R" web@latest --archive "$A/one.tar" > /dev/null 2> "$T/err"; st=$?
tap_is "an existing archive: exit 1, one line" "$st $(cat "$T/err")" \
  "1 vmdr-restore: '$A/one.tar' exists (use --force to replace it)"
tap_is "... and it is unchanged" "$(md5sum < "$A/one.tar")" "$sum"
tap_ok "--force replaces it" vmdr-restore -q -r "$R" web@latest --archive "$A/one.tar" --force
tap_ok "... with the newest snapshot" cmp "$A/web.tar" <(vmdr-restore -q -r "$R" web@latest --archive - --with-memory)
tap_is "... and nothing else is left beside it" "$(ls -A "$A" | tr '\n' ' ')" "again.tar one.tar web.tar "

usage_st() { "$@" > /dev/null 2>&1; echo $?; }
tap_is "--archive with -o, --define, --format qcow2, or --json to stdout: exit 2" \
  "$(usage_st vmdr-restore -r "$R" web@latest --archive "$A/u.tar" -o "$O") $(usage_st vmdr-restore -r "$R" web@latest --archive "$A/u.tar" --define test:///default) $(usage_st vmdr-restore -r "$R" web@latest --archive "$A/u.tar" --format qcow2) $(usage_st vmdr-restore -r "$R" web@latest --archive - --json)" \
  "2 2 2 2"
tap_is "... one line saying why" "$(errline vmdr-restore -r "$R" web@latest --archive "$A/u.tar" --format qcow2)" \
  "vmdr-restore: --archive holds raw images: not --format qcow2 (see 'vmdr-restore --help')"
tap_is "--archive --format raw is fine" "$(usage_st vmdr-restore -q -r "$R" "$id1" --archive - --format raw)" 0

# Odd sizes: a disk whose size is no multiple of 512 (data in its last,
# short block), one all holes, and one over 8 GiB (pax size records).
python3 - "$T" <<'PY'
import random, sys
rnd = random.Random(5)
d = sys.argv[1]
with open(d + "/odd", "wb") as f:
    f.truncate((1 << 20) + 12345)
    f.write(rnd.randbytes(70000)); f.seek((1 << 20) + 12345 - 5000); f.write(rnd.randbytes(5000))
with open(d + "/zero", "wb") as f:
    f.truncate(8 << 20)
with open(d + "/huge", "wb") as f:
    f.truncate(9 << 30); f.seek(4 << 30); f.write(rnd.randbytes(300000))
    f.seek((9 << 30) - (1 << 20)); f.write(rnd.randbytes(1 << 20))
PY
repo-image put "$R" edge vda="$T/odd" vdb="$T/zero" vdc="$T/huge" > /dev/null || tap_bail "put edge"
mkdir "$A/x"
tap_ok "odd sizes: archived to a pipe and extracted" \
  sh -c "vmdr-restore -q -r '$R' edge@latest --archive - | tar -xSf - -C '$A/x'"
tap_ok "... a size no multiple of 512" cmp "$T/odd" "$A/x/edge-vda.raw"
tap_ok "... all holes" cmp "$T/zero" "$A/x/edge-vdb.raw"
tap_is "... and none allocated" "$(alloc "$A/x/edge-vdb.raw")" 0
tap_ok "... 9 GiB" qemu-img compare -q -f raw -F raw "$T/huge" "$A/x/edge-vdc.raw"
tap_ok "... sparse ($(alloc "$A/x/edge-vdc.raw") KiB allocated)" test "$(alloc "$A/x/edge-vdc.raw")" -le 2048
rm -rf "$A/x" "$T/huge" "$T/zero" "$T/odd"

# Bad input: one line, exit status, nothing written.
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
vmdr-restore -r "$R" web@latest --archive "$O/web.tar" > /dev/null 2> "$T/err"; st=$?
tap_is "--archive of it: exit 1" "$st" 1
tap_ok "... the same line" \
  grep -qE "^vmdr-restore: snapshot '$id2' disk vdb: chunk [0-9a-f]{64} at offset 65536: checksum mismatch or malformed$" "$T/err"
tap_is "... and no archive, nor its temporary file" "$(leftovers)" 0
vmdr-restore -r "$R" web@latest --archive - 2> "$T/err" > "$T/cut.tar"; st=$?
tap_is "--archive - of it: exit 1, the same line" \
  "$st $(grep -cE "^vmdr-restore: snapshot '$id2' disk vdb: chunk [0-9a-f]{64} at offset 65536: checksum mismatch or malformed$" "$T/err")" "1 1"
tap_fails "... and the stream is cut short: tar says so" tar -tf "$T/cut.tar"
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
