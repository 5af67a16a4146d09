#!/bin/bash
# RBD images as the source of disk snapshots (replicate/rbd-source.h,
# through rbd-source-tool): a full reads only the image's allocated extents,
# an incremental only what rbd_diff_iterate2 reports since the previous
# vmdr snapshot plus a sample of the rest, checked against the parent; with
# the diff's hints thrown away (as a Ceph diff bug would lose them) the
# sample finds the change and the disk is read whole.  Every snapshot
# restores equal to the RBD snapshot it was read from; only the newest
# vmdr snapshot stays on the image; one gone, the next is a full.
#
# usage: test-rbd-source.sh PATH/TO/rbd-source-tool
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/ceph-lib.sh"
TOOL=${1:?usage: test-rbd-source.sh RBD-SOURCE-TOOL}
need_cmd repo-image vmdr-init qemu-io cmp
use_ceph

IMG=vmdr-src-$$
U="rbd://$CEPH_POOL?conf=$CEPH_CONF&id=admin"
R() { timeout 60 rbd -p "$CEPH_POOL" "$@"; }
at_exit "R snap purge --no-progress $IMG >/dev/null 2>&1; R rm --no-progress $IMG >/dev/null 2>&1"

# rbdw create SIZE | write OFF LEN PATTERN | discard OFF LEN, on $IMG
# (QEMU's rbd driver: qemu-block-extra)
rbdw() {
  case "$1" in
    create) R create --size "$(($2 >> 20))M" --object-size 4M "$IMG" ;;
    write) timeout 60 qemu-io -f raw -c "write -P $4 $2 $3" "rbd:$CEPH_POOL/$IMG:conf=$CEPH_CONF" > /dev/null ;;
    discard) timeout 60 qemu-io -f raw -c "discard $2 $3" "rbd:$CEPH_POOL/$IMG:conf=$CEPH_CONF" > /dev/null ;;
  esac
}
field() { sed -n 2p "$T/out" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
S=$T/repo
vmdr-init -q -r "$S"
M=$((1 << 20))

# snap ID: the snapshot restores equal to the RBD snapshot it was read from
same() {
  rm -f "$T/restored" "$T/export"
  repo-image get "$S" "$1" vda "$T/restored" &&
    R export --no-progress "$IMG@vmdr-${1#*/}" "$T/export" > /dev/null 2>&1 &&
    cmp "$T/restored" "$T/export"
}

rbdw create $((64 * M)) || tap_bail "cannot create the image"
rbdw write 0 $((6 * M)) 0x11 && rbdw write $((40 * M)) $M 0x22 || tap_bail "cannot write"
"$TOOL" "$S" web vda "$U" "$IMG" > "$T/out"; st=$?
id1=$(head -1 "$T/out")
diag "full: $(sed -n 2p "$T/out")"
tap_is "a full from the image" "$st $(field kind)" "0 full"
tap_ok "... reads its allocated extents only ($(field bytes_read) bytes of 64 MiB)" \
  test "$(field bytes_read)" -ge $((7 * M)) -a "$(field bytes_read)" -le $((12 * M))
tap_ok "... and restores equal to its RBD snapshot" same "$id1"

rbdw write $((1 * M + 4096)) 100000 0x33 && rbdw write $((41 * M)) 65536 0x44 &&
  rbdw discard $((4 * M)) $((2 * M)) || tap_bail "cannot write"
"$TOOL" "$S" web vda "$U" "$IMG" 64 > "$T/out"; st=$?
id2=$(head -1 "$T/out")
diag "incremental: $(sed -n 2p "$T/out")"
tap_is "an incremental" "$st $(field kind) $(field full) $(field fell_back)" "0 incremental 0 0"
tap_ok "... reads only what the diff reports ($(field bytes_read) bytes)" \
  test "$(field bytes_read)" -gt 0 -a "$(field bytes_read)" -le $((12 * M))
tap_is "... and checked a sample of 64 unchanged chunks against the parent" "$(field sampled)" 64
tap_ok "... restores equal to its RBD snapshot" same "$id2"
tap_is "only the newest vmdr snapshot stays on the image" \
  "$(R snap ls "$IMG" | grep -c 'vmdr-')" 1

# A diff that misses changes (hints dropped): the sample sees it.
rbdw write $((30 * M)) 65536 0x55 || tap_bail "cannot write"
"$TOOL" "$S" web vda "$U" "$IMG" 4096 drop-hints > "$T/out"; st=$?
id3=$(head -1 "$T/out")
diag "hints dropped: $(sed -n 2p "$T/out")"
tap_is "a wrong diff is caught by the sample: the disk read whole" \
  "$st $(field fell_back) $(field full)" "0 1 1"
tap_ok "... and the snapshot restores equal" same "$id3"

# The base snapshot gone from the image: a full again.
R snap rm --no-progress "$IMG@vmdr-${id3#*/}" > /dev/null 2>&1
rbdw write $((50 * M)) 65536 0x66 || tap_bail "cannot write"
"$TOOL" "$S" web vda "$U" "$IMG" > "$T/out"; st=$?
id4=$(head -1 "$T/out")
tap_is "the base snapshot removed from the image: a full" "$st $(field kind)" "0 full"
tap_ok "... restoring equal" same "$id4"

tap_done
