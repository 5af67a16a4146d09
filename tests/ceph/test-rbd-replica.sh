#!/bin/bash
# vmdr-replicate to a warm RBD replica (rbd://POOL/PREFIX?conf=..&id=..)
# against a real single-node Ceph: a full and two incrementals (one grows
# the disk) arrive as RBD snapshots vmdr-TIME whose bytes equal each source
# image; an incremental writes only the chunks that changed (and zeroes
# those that became zero); a rerun writes nothing; a run killed half way,
# rerun, completes; a head left half way to a snapshot that is then skipped
# (damaged at the source) is rolled back before the next one is applied;
# two runs at once: the second is refused (exit 4); bad pool, conf or user:
# one line, exit 1.
#
# usage: test-rbd-replica.sh (the tools come from $VMDR_BUILD_ROOT)
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/ceph-lib.sh"
need_cmd repo-image vmdr-init vmdr-replicate python3 cmp
use_ceph

P=vt$$                          # this run's prefix in the shared pool
U="rbd://$CEPH_POOL/$P?conf=$CEPH_CONF&id=admin"
R() { timeout 60 rbd -p "$CEPH_POOL" "$@"; }
js() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# Everything of this run's prefix, clones first (best effort).
cleanup_images() {
  local i
  for i in $(R ls 2>/dev/null | grep "^$P-" | sort -r); do
    for s in $(R snap ls "$i" --format json 2>/dev/null |
               python3 -c 'import json,sys; [print(s["name"]) for s in json.load(sys.stdin)]'); do
      R snap unprotect "$i@$s" >/dev/null 2>&1
    done
    R snap purge --no-progress "$i" >/dev/null 2>&1
    R rm --no-progress "$i" >/dev/null 2>&1
  done
  for i in $(timeout 60 rados -p "$CEPH_POOL" ls 2>/dev/null | grep "^vmdr_replica\.$P-"); do
    timeout 60 rados -p "$CEPH_POOL" rm "$i" >/dev/null 2>&1
  done
  return 0
}
at_exit cleanup_images

# snap_equals IMAGE SNAPSHOT-ID FILE: the RBD snapshot of that vmdr
# snapshot holds FILE's bytes
snap_equals() {
  rm -f "$T/export"
  R export --no-progress "$1@vmdr-${2#*/}" "$T/export" >/dev/null 2>&1 && cmp "$3" "$T/export"
}

S=$T/src
vmdr-init -q -r "$S"
python3 - "$T" <<'PY'
import random, sys
rnd = random.Random(7)
d = sys.argv[1]
with open(d + "/a1", "wb") as f:      # 24 MiB: 5 MiB of data, a hole, 1 MiB more
    f.truncate(24 << 20); f.write(rnd.randbytes(5 << 20)); f.seek(16 << 20); f.write(rnd.randbytes(1 << 20))
PY
CH=65536
w1=$(repo-image put "$S" web vda="$T/a1") || tap_bail "put"

vmdr-replicate -q -r "$S" --to "$U" --json > "$T/j"; st=$?
tap_is "a full snapshot replicated: exit 0, one applied, one image made" \
  "$st $(js "$T/j" 'd["snapshots_applied"], d["images_created"]')" "0 (1, 1)"
tap_is "... it wrote the 96 data chunks and nothing else" \
  "$(js "$T/j" 'd["chunks_written"], d["bytes_written"], d["bytes_zeroed"]')" "(96, $((96 * CH)), 0)"
tap_is "the image is named PREFIX-DOMAIN-TARGET and sized to the disk" \
  "$(R info "$P-web-vda" --format json | js /dev/stdin 'd["size"]')" $((24 << 20))
tap_ok "its snapshot vmdr-TIME equals the source image" snap_equals "$P-web-vda" "$w1" "$T/a1"

# Two incrementals at once: 3 chunks rewritten and 2 zeroed, then the disk
# grows by 8 MiB with 2 chunks of data at its new end and 1 more changed.
cp --sparse=always "$T/a1" "$T/a2"
dd if=/dev/urandom of="$T/a2" bs=64K count=3 seek=10 conv=notrunc status=none
dd if=/dev/zero of="$T/a2" bs=64K count=2 seek=20 conv=notrunc status=none
w2=$(repo-image put "$S" web vda="$T/a2") || tap_bail "put"
cp --sparse=always "$T/a2" "$T/a3"
truncate -s 32M "$T/a3"
dd if=/dev/urandom of="$T/a3" bs=64K count=2 seek=500 conv=notrunc status=none
dd if=/dev/urandom of="$T/a3" bs=64K count=1 seek=40 conv=notrunc status=none
w3=$(repo-image put "$S" web vda="$T/a3") || tap_bail "put"

vmdr-replicate -q -r "$S" --to "$U" --json > "$T/j"; st=$?
tap_is "two incrementals: both applied, the full already there" \
  "$st $(js "$T/j" 'd["snapshots_applied"], d["snapshots_present"]')" "0 (2, 1)"
tap_is "... writing only the 3 + 3 changed chunks and zeroing the 2 that became zero" \
  "$(js "$T/j" 'd["chunks_written"], d["bytes_written"], d["bytes_zeroed"]')" "(6, $((6 * CH)), $((2 * CH)))"
tap_ok "the snapshot of the first incremental equals its image" snap_equals "$P-web-vda" "$w2" "$T/a2"
tap_ok "the snapshot of the second (grown) equals its image" snap_equals "$P-web-vda" "$w3" "$T/a3"
tap_ok "the full's snapshot is unchanged" snap_equals "$P-web-vda" "$w1" "$T/a1"
tap_is "the snapshots were made oldest first" \
  "$(R snap ls "$P-web-vda" --format json | python3 -c 'import json,sys; print(" ".join(s["name"] for s in sorted(json.load(sys.stdin), key=lambda s: s["id"])))')" \
  "vmdr-${w1#*/} vmdr-${w2#*/} vmdr-${w3#*/}"

vmdr-replicate -q -r "$S" --to "$U" --json > "$T/j"; st=$?
tap_is "a rerun does nothing" \
  "$st $(js "$T/j" 'd["snapshots_applied"], d["snapshots_present"], d["chunks_written"], d["bytes_zeroed"]')" \
  "0 (0, 3, 0, 0)"

# A domain with two disks, and a domain filter.
head -c $((2 << 20)) /dev/urandom > "$T/b1"
truncate -s 8M "$T/b1"
head -c $((1 << 20)) /dev/urandom > "$T/c1"
d1=$(repo-image put "$S" db vda="$T/b1" vdb="$T/c1") || tap_bail "put"
repo-image put "$S" other vda="$T/c1" > /dev/null || tap_bail "put"
vmdr-replicate -q -r "$S" --to "$U" db --json > "$T/j"; st=$?
tap_is "a domain filter: only that domain's snapshot applied" \
  "$st $(js "$T/j" 'd["snapshots_applied"], d["snapshots_present"]')" "0 (1, 0)"
both_equal() { snap_equals "$P-db-vda" "$d1" "$T/b1" && snap_equals "$P-db-vdb" "$d1" "$T/c1"; }
tap_ok "... both its disks equal their images" both_equal
tap_is "... and the other domain got no image" "$(R ls | grep -c "^$P-other-")" 0

# Killed half way through a large snapshot: the snapshot is not there,
# the rerun completes it.
head -c $((48 << 20)) /dev/urandom > "$T/big"
k1=$(repo-image put "$S" big vda="$T/big") || tap_bail "put"
vmdr-replicate -q -r "$S" --to "$U" big -j 1 --bwlimit 8M & pid=$!
used() { R du "$1" --format json 2>/dev/null | js /dev/stdin 'd["images"][0]["used_size"]'; }
wait_until 30 sh -c "[ \"\$(timeout 10 rbd -p '$CEPH_POOL' du '$P-big-vda' --format json 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[\"images\"][0][\"used_size\"])')\" -ge $((8 << 20)) ]"
diag "killing the first run with $(used "$P-big-vda") bytes of the image written"
vmdr-replicate -q -r "$S" --to "$U" big > /dev/null 2> "$T/err"; st=$?
tap_is "a second run meanwhile is refused: exit 4" "$st" 4
tap_is "... with one line" "$(cat "$T/err")" \
  "vmdr-replicate: another run holds a domain at '$U'; try again later"
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
tap_is "killed half way: no RBD snapshot yet" "$(R snap ls "$P-big-vda" | grep -c vmdr-)" 0
start=$(date +%s)
vmdr-replicate -r "$S" --to "$U" big --json > "$T/j" 2> "$T/err"; st=$?
diag "the rerun took $(($(date +%s) - start)) s: $(js "$T/j" 'd["bytes_written"]') bytes written; $(cat "$T/err")"
tap_is "the rerun completes (the dead run's lock taken over)" \
  "$st $(js "$T/j" 'd["snapshots_applied"]')" "0 1"
tap_ok "... and the snapshot equals its image" snap_equals "$P-big-vda" "$k1" "$T/big"

# A head left half way to a snapshot that is then skipped: chunk 0 goes
# a -> b in h2 (whose chunk 300 is damaged at the source), and back to a in
# h3.  h3 must not keep h2's chunk 0.
python3 - "$T" <<'PY'
import random, sys
rnd = random.Random(11)
d = sys.argv[1]
a = bytearray(rnd.randbytes(24 << 20))
open(d + "/h1", "wb").write(a)
b = bytearray(a); b[0:65536] = rnd.randbytes(65536); b[300 << 16:301 << 16] = rnd.randbytes(65536)
open(d + "/h2", "wb").write(b)
open(d + "/h2-300", "wb").write(b[300 << 16:301 << 16])
c = bytearray(a); c[100 << 16:101 << 16] = rnd.randbytes(65536)
open(d + "/h3", "wb").write(c)
PY
h1=$(repo-image put "$S" half vda="$T/h1") || tap_bail "put"
vmdr-replicate -q -r "$S" --to "$U" half || tap_bail "replicate half"
h2=$(repo-image put "$S" half vda="$T/h2") || tap_bail "put"
h3=$(repo-image put "$S" half vda="$T/h3") || tap_bail "put"
python3 - "$S" "$T/h2-300" <<'PY' || tap_bail "cannot damage a chunk"
import glob, sys
want = open(sys.argv[2], "rb").read()
for p in glob.glob(sys.argv[1] + "/data/*/*"):
    b = bytearray(open(p, "rb").read()); at = b.find(want)
    if at >= 0:
        b[at + 7] ^= 0xff; open(p, "wb").write(b); sys.exit(0)
sys.exit(1)
PY
vmdr-replicate -q -r "$S" --to "$U" half -j 1 --json > "$T/j" 2> "$T/err"; st=$?
tap_is "a damaged source snapshot: exit 1, it is skipped, the next one applied" \
  "$st $(js "$T/j" 'd["snapshots_failed"], d["snapshots_applied"], d["rollbacks"]')" "1 (1, 1, 1)"
tap_ok "... named in a warning" grep -q "$h2: not replicated: chunk .* of disk vda at offset $((300 << 16)) is damaged" "$T/j"
tap_is "... with no snapshot for it" "$(R snap ls "$P-half-vda" | grep -c "vmdr-${h2#*/}")" 0
tap_ok "... and the next one equals its image (the half-written head was rolled back)" \
  snap_equals "$P-half-vda" "$h3" "$T/h3"

# Failures: one clear line, exit 1.
errline() { "$@" 2>&1 >/dev/null | head -5; }
tap_is "no such pool" "$(errline vmdr-replicate -r "$S" --to "rbd://nopool$$?conf=$CEPH_CONF")" \
  "vmdr-replicate: cannot open the pool 'nopool$$': no such pool"
vmdr-replicate -q -r "$S" --to "rbd://nopool$$?conf=$CEPH_CONF" 2>/dev/null; st=$?
tap_is "... exit 1" "$st" 1
tap_is "no such conf file" "$(errline vmdr-replicate -r "$S" --to "rbd://$CEPH_POOL?conf=$T/none.conf")" \
  "vmdr-replicate: cannot read the Ceph configuration '$T/none.conf': No such file or directory"
printf '[global\nmon host = \n' > "$T/bad.conf"
tap_is "a malformed conf file" "$(errline vmdr-replicate -r "$S" --to "rbd://$CEPH_POOL?conf=$T/bad.conf")" \
  "vmdr-replicate: cannot read the Ceph configuration '$T/bad.conf': malformed"
tap_is "a user without a key" "$(errline vmdr-replicate -r "$S" --to "rbd://$CEPH_POOL?conf=$CEPH_CONF&id=nobody")" \
  "vmdr-replicate: cannot connect to the Ceph cluster of '$CEPH_CONF' as client.nobody: permission denied (check the user and its key)"
tap_is "a bad address" "$(errline vmdr-replicate -r "$S" --to "rbd://$CEPH_POOL?secret=x")" \
  "vmdr-replicate: invalid RBD address 'rbd://$CEPH_POOL?secret=x': unknown or bad parameter 'secret=x' (conf=FILE, id=NAME, keyring=FILE)"

tap_done
