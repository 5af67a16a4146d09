#!/bin/bash
# Memory images through snapshots: stored by content-defined chunks, a second
# capture with 5 % of its pages changed stores a fraction of the first, both
# come back byte for byte, verify checks them, GC keeps what they need.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd repo-image vmdr-init vmdr-ls vmdr-verify vmdr-prune python3

R=$T/repo
vmdr-init -q -r "$R"
truncate -s 1M "$T/disk"
# 48 MiB of 4 KiB pages: a third zero, some repeated, the rest random; the
# second capture rewrites 5 % of the pages at random places.
python3 - "$T/mem1" "$T/mem2" <<'PY'
import random, sys
rnd = random.Random(7)
pool = [rnd.randbytes(4096) for _ in range(16)]
pages = []
for i in range(12288):
    k = rnd.random()
    pages.append(bytes(4096) if k < 0.3 else pool[rnd.randrange(16)] if k < 0.4 else rnd.randbytes(4096))
open(sys.argv[1], "wb").write(b"".join(pages))
for i in rnd.sample(range(len(pages)), len(pages) // 20):
    pages[i] = rnd.randbytes(4096)
open(sys.argv[2], "wb").write(b"".join(pages))
PY
id1=$(repo-image put "$R" vm vda="$T/disk" memory="$T/mem1") || tap_bail "put 1"
id2=$(repo-image put "$R" vm vda="$T/disk" memory="$T/mem2") || tap_bail "put 2"
new() { python3 -c "import json,glob,sys; print(json.load(open(glob.glob(sys.argv[1])[0]))['memory']['bytes_new'])" "$R/snapshots/vm/${1#vm/}.json"; }
n1=$(new "$id1"); n2=$(new "$id2")
diag "first capture stored $n1 bytes, the second $n2"
tap_ok "the second capture stores under a third of the first ($n2 of $n1)" test $((n2 * 3)) -lt "$n1"
for i in 1 2; do
  id=$(eval echo "\$id$i")
  repo-image get "$R" "$id" memory "$T/out$i" || true
  tap_ok "memory image $i comes back byte for byte" cmp "$T/mem$i" "$T/out$i"
done
tap_ok "verify reads the memory images too" sh -c "vmdr-verify -r '$R' --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if all(s[\"chunks_checked\"] > 100 for s in d[\"snapshots\"]) else 1)'"
vmdr-prune -q -r "$R" --keep-last 1 --grace 0
rm -f "$T/out2"
repo-image get "$R" "$id2" memory "$T/out2"
tap_ok "after GC the kept capture still comes back" cmp "$T/mem2" "$T/out2"
tap_ok "and verifies" vmdr-verify -q -r "$R"

# Damage every stream chunk (the disk is all zero: no chunk of its own):
# verify names the memory image.
python3 - "$R" <<'PY'
import glob, struct, sys
hit = 0
for p in sorted(glob.glob(sys.argv[1] + "/data/*/*")):
    b = bytearray(open(p, "rb").read()); off = 0
    while off + 56 <= len(b) and b[off:off+4] == b"VMB1":
        stored = struct.unpack_from("<I", b, off + 12)[0]
        if b[off+4] == 1 and stored > 100:
            b[off + 56 + 50] ^= 0xff; hit += 1
        off += 56 + stored
    open(p, "wb").write(bytes(b))
sys.exit(0 if hit else 1)
PY
vmdr-verify -r "$R" > "$T/v" 2>/dev/null; st=$?
tap_is "a damaged memory chunk: verify exits 1" "$st" 1
tap_ok "... naming the memory image" grep -q "DAMAGED: .*the memory image offset" "$T/v"
rm -f "$T/out3"
tap_fails "restoring the damaged memory image fails" repo-image get "$R" "$id2" memory "$T/out3"

tap_done
