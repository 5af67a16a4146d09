#!/usr/bin/env python3
"""Hostile bundles for vmdr-import, made from a good one.

    bundle-corpus.py GOOD.tar OUTDIR ESCAPE

writes OUTDIR/NAME.tar for every case and OUTDIR/cases.tsv: one line per
case, NAME TAB WHY, where WHY is what vmdr-import must say after
"cannot import 'FILE': " (a Python regular expression, matched whole).
ESCAPE is an absolute path that no import may create.

GOOD.tar is a plain full bundle of one snapshot with at least two disk
chunks and an index node (docs/bundle-format.md).
"""
import io
import json
import os
import re
import sys
import tarfile

good, out, escape = sys.argv[1], sys.argv[2], sys.argv[3]
HEX = "[0-9a-f]{64}"

with tarfile.open(good) as t:
    entries = [(m, t.extractfile(m).read()) for m in t.getmembers()]
header = json.loads(entries[0][1])
blobs = [e for e in entries if e[0].name.startswith("blobs/")]
manifests = [e for e in entries if e[0].name.startswith("snapshots/")]
assert entries[0][0].name == "vmdr-bundle.json" and entries[1][0].name == "config"
assert len(blobs) == header["blobs"] >= 3 and len(manifests) == 1
snap = header["snapshots"][0]
cases = []


def info(name, size=0, type=tarfile.REGTYPE, linkname=""):
    i = tarfile.TarInfo(name)
    i.size, i.type, i.linkname, i.mode, i.mtime = size, type, linkname, 0o444, 0
    return i


def write(case, why, members, raw=None):
    """MEMBERS: (TarInfo, bytes or None) in order, as a tar; or RAW bytes."""
    path = os.path.join(out, case + ".tar")
    with open(path, "wb") as f:
        if raw is not None:
            f.write(raw)
        else:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as t:
                for i, data in members:
                    if i.type == tarfile.REGTYPE and data is not None:
                        i.size = len(data)
                    t.addfile(i, io.BytesIO(data) if data is not None and i.type == tarfile.REGTYPE else None)
    cases.append((case, why))


def raw_entries(members):
    """The tar bytes of MEMBERS without the end of the archive."""
    return b"".join(i.tobuf(tarfile.PAX_FORMAT) + d + b"\0" * (-len(d) % 512) for i, d in members)


def copy(entries_):
    return [(info(m.name, len(d)), d) for m, d in entries_]


def with_header(h, rest):
    d = json.dumps(h).encode()
    return [(info("vmdr-bundle.json", len(d)), d)] + rest


def esc(s):
    return re.escape(s)


head2 = copy(entries[:2])
body = copy(entries[2:])

# Paths that lead out of the repository.
write("absolute", f"entry '{esc(escape)}': an absolute path",
      [(info(escape, 5), b"owned")] + copy(entries))
write("dotdot", "entry 'blobs/\\.\\./\\.\\./pwned': '\\.\\.' in the path",
      head2 + [(info("blobs/../../pwned", 5), b"owned")] + body)
long_abs = escape + "/" + "x" * 150     # only a pax header can carry it
write("pax-absolute", f"entry '{esc(long_abs[:80])}\\.\\.\\.': an absolute path",
      [(info(long_abs, 5), b"owned")] + copy(entries))

# Entries that are no plain files.
write("symlink", "entry 'config': a symbolic link \\(to '/etc/passwd'\\)",
      copy(entries[:1]) + [(info("config", type=tarfile.SYMTYPE, linkname="/etc/passwd"), None)] + body)
write("hardlink", "entry 'config': a hard link \\(to 'vmdr-bundle\\.json'\\)",
      copy(entries[:1]) + [(info("config", type=tarfile.LNKTYPE, linkname="vmdr-bundle.json"), None)] + body)
dev = info("config", type=tarfile.CHRTYPE)
dev.devmajor, dev.devminor = 1, 3
write("device", "entry 'config': a character device", copy(entries[:1]) + [(dev, None)] + body)
write("fifo", "entry 'config': a FIFO",
      copy(entries[:1]) + [(info("config", type=tarfile.FIFOTYPE), None)] + body)
write("directory", "entry 'blobs/': a directory",
      head2 + [(info("blobs/", type=tarfile.DIRTYPE), None)] + body)

# Sizes: larger than the bound (a header that says 1 GiB, and no data),
# and a blob entry larger than the blob it holds.
big = info("config", 1 << 30)
write("too-large", "entry 'config': 1073741824 bytes, more than the 65536 it may have", None,
      raw=raw_entries(copy(entries[:1])) + big.tobuf(tarfile.PAX_FORMAT) + b"\0" * 4096)
m0, d0 = blobs[0]
n0 = len(d0)
write("blob-longer", f"entry '{esc(m0.name)}': {n0 + 10} bytes, but the blob in it says {n0}",
      head2 + [(info(m0.name), d0 + b"0123456789")] + copy(blobs[1:] + manifests))

# Duplicates, counts, and a bomb of tiny entries.
write("duplicate", f"entry '{esc(m0.name)}' appears twice",
      head2 + copy([blobs[0]] + blobs) + copy(manifests))
write("duplicate-header", "entry 'vmdr-bundle\\.json': not a bundle entry here \\(expected config\\)",
      copy(entries[:1]) + copy(entries))
h = dict(header, blobs=1 << 40, blob_bytes=(1 << 40) * 100)
write("declares-too-many",
      f"the bundle declares {1 << 40} blobs of {(1 << 40) * 100} bytes: out of bounds \\(at most 268435456 blobs\\)",
      with_header(h, copy(entries[1:])))
last = blobs[-1]
h = dict(header, blobs=header["blobs"] - 1, blob_bytes=header["blob_bytes"] - len(last[1]))
write("more-than-declared", f"the bundle holds more blobs than the {header['blobs'] - 1} it declares",
      with_header(h, copy(entries[1:])))
bomb = [(info("blobs/%s/%s" % (("%064x" % i)[:2], "%064x" % i)), b"") for i in range(1, 50001)]
write("bomb", f"entry 'blobs/00/{'0' * 63}1': 0 bytes, too short for a blob", head2 + bomb + body)

# A stream cut short: inside an entry, and between two entries.
data = open(good, "rb").read()
with open(os.path.join(out, "truncated.tar"), "wb") as f:
    f.write(data[:len(data) // 2 + 100])
cases.append(("truncated", "entry '[^']*': Truncated tar archive.*"))
write("ends-early", f"the bundle ends early: after 2 of {header['blobs']} blobs and 0 of 1 manifests", None,
      raw=raw_entries(copy(entries[:4])))

# Blobs that are not what they say.
bad = bytearray(d0)
bad[-1] ^= 0x55
write("corrupt-blob", f"blob {m0.name[9:]}: damaged \\(checksum mismatch or malformed\\)",
      head2 + [(info(m0.name), bytes(bad))] + copy(blobs[1:] + manifests))
other = "blobs/%s/%s" % (blobs[1][0].name[6:8], blobs[1][0].name[9:])
write("misnamed", f"blob {other[9:]}: its bytes do not have the digest it is named by",
      head2 + [(info(other), d0), (info(m0.name), blobs[1][1])] + copy(blobs[2:] + manifests))
# The root node first: before the chunks it names.
write("node-first", f"index node {blobs[-1][0].name[9:]} names {HEX}, which is not in the bundle before it",
      head2 + copy([blobs[-1]] + blobs[:-1] + manifests))

# A manifest that points outside the bundle.
man = json.loads(manifests[0][1])
fake = "ab" * 32
man["disks"][0]["root"] = fake
md = json.dumps(man).encode()
write("outside", f"snapshot {esc(snap)} needs {fake}, which is not in the bundle",
      head2 + copy(blobs) + [(info(manifests[0][0].name), md)])

# ... or names a chunk where an index node belongs.
man = json.loads(manifests[0][1])
man["disks"][0]["root"] = m0.name[9:]
md = json.dumps(man).encode()
write("chunk-as-node", f"snapshot {esc(snap)} names chunk {m0.name[9:]} as an index node",
      head2 + copy(blobs) + [(info(manifests[0][0].name), md)])

# Not a tar at all, and a tar of something else.
with open(os.path.join(out, "garbage.tar"), "wb") as f:
    f.write(os.urandom(4096))
cases.append(("garbage", "not a readable bundle: .*"))
write("other-tar", "entry 'etc/passwd': not a bundle entry here \\(expected vmdr-bundle\\.json\\)",
      [(info("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n")])

with open(os.path.join(out, "cases.tsv"), "w") as f:
    for case, why in cases:
        f.write(f"{case}\t{why}\n")
