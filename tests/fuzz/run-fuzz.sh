#!/bin/bash
# Run each libFuzzer target for VMDR_FUZZ_SECONDS (default 8), seeded with
# real objects made by the tools: a crash, leak or sanitizer report fails.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd vmdr-init vmdr-export repo-image python3
F=$VMDR_BUILD_ROOT/tests/fuzz
[ -x "$F/fuzz-config" ] || tap_skip_all "fuzz targets not built (clang build with -Dfuzz=enabled)"
SECS=${VMDR_FUZZ_SECONDS:-8}

# Seeds: a config, a manifest, a pack index, a blob, S3 answers, domain XML.
R=$T/repo
vmdr-init -q -r "$R" --pack-size 1M
head -c 300000 /dev/urandom > "$T/img"; head -c 200000 /dev/zero | tr '\0' 'a' >> "$T/img"
repo-image put "$R" seed vda="$T/img" >/dev/null || tap_bail "cannot make seeds"
mkdir -p "$T"/corpus/{config,manifest,pack_index,blob,s3_xml,domain_xml,bundle}
cp "$R/config" "$T/corpus/config/"
cp "$R"/snapshots/seed/*.json "$T/corpus/manifest/"
cp "$R"/index/*/* "$T/corpus/pack_index/"
python3 - "$R" "$T/corpus/blob" <<'PY'
import glob, struct, sys
pack = open(glob.glob(sys.argv[1] + "/data/*/*")[0], "rb").read()
off, n = 0, 0
while off + 56 <= len(pack) and pack[off:off+4] == b"VMB1" and n < 8:
    stored = struct.unpack_from("<I", pack, off + 12)[0]
    open(f"{sys.argv[2]}/blob{n}", "wb").write(pack[off:off + 56 + stored])
    off += 56 + stored; n += 1
PY
cat > "$T/corpus/s3_xml/list" <<'XML'
<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated><NextContinuationToken>tok&amp;1</NextContinuationToken><Contents><Key>a &lt;b&gt;</Key><Size>12</Size></Contents><Contents><Key>c/d</Key><Size>0</Size></Contents></ListBucketResult>
XML
echo '<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>The key &quot;x&quot; does not exist</Message></Error>' > "$T/corpus/s3_xml/error"

# A running domain's XML as libvirt 9.0 gives it, and one with vmdr's metadata.
cat > "$T/corpus/domain_xml/live" <<'XML'
<domain type='kvm' id='5'><name>web1</name><uuid>33aebc9d-32ea-4fd1-914d-75924c598b5f</uuid>
<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/web1.qcow2' index='2'/>
<backingStore type='file' index='3'><format type='qcow2'/><source file='/i/base.qcow2'/><backingStore/></backingStore>
<target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>
<disk type='network' device='disk'><source protocol='rbd' name='p/i'><host name='h'/></source><target dev='vdb'/></disk>
<disk type='file' device='cdrom'><source file='/iso/d.iso' index='1'/><target dev='sda' bus='sata'/><readonly/></disk>
<interface type='network'><mac address='52:54:00:03:92:e0'/><source network='default' portid='x' bridge='virbr0'/>
<target dev='vnet4'/><model type='virtio'/><alias name='ua-net0'/></interface>
<interface type='direct'><source dev='eno1' mode='bridge'/></interface>
<serial type='file'><source path='/var/log/s.log'/><target port='0'/></serial>
<console type='pty' tty='/dev/pts/0'><source path='/dev/pts/0'/><target type='serial' port='0'/></console>
<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-5-web1/org.qemu.guest_agent.0'/>
<target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel>
<graphics type='vnc' port='5900' autoport='yes' websocket='5700'/>
<hostdev mode='subsystem' type='pci'><source><address domain='0x0' bus='0x3' slot='0x0' function='0x0'/></source></hostdev>
</devices><seclabel type='dynamic' model='dac'><label>+0:+0</label></seclabel></domain>
XML
cat > "$T/corpus/domain_xml/restored" <<'XML'
<domain><name>a-lab</name><metadata><vmdr:restore xmlns:vmdr="https://vmdr.dev/xmlns/restore/1" snapshot="s" lab="yes">
<vmdr:image target="vda" path="/r/a.qcow2"/></vmdr:restore></metadata><devices><disk type='file' device='disk'>
<source file='/r/a.qcow2'/><target dev='vda'/></disk></devices></domain>
XML

# Bundles (each well under -max_len): two snapshots with a memory image, an
# incremental one, and zstd; fuzz-bundle imports into a scratch repository in $T.
B=$T/brepo
vmdr-init -q -r "$B" --pack-size 1M
python3 -c "import sys; open(sys.argv[1], 'wb').write(b''.join(b'sector %06d of a seed disk\\n' % i for i in range(5000))); open(sys.argv[2], 'wb').write(b''.join(b'page %05d\\n' % (i % 700) for i in range(4000)))" "$T/bimg" "$T/bmem"
b1=$(repo-image put "$B" seed vda="$T/bimg" memory="$T/bmem") || tap_bail "cannot make seeds"
printf changed | dd of="$T/bimg" bs=1 seek=70000 conv=notrunc status=none
b2=$(repo-image put "$B" seed vda="$T/bimg") || tap_bail "cannot make seeds"
vmdr-export -q -r "$B" "$b1" "$b2" -o "$T/corpus/bundle/full" && vmdr-export -q -r "$B" --since "$b1" "$b2" -o "$T/corpus/bundle/incremental" &&
  vmdr-export -q -r "$B" --zstd "$b1" -o "$T/corpus/bundle/zstd" || tap_bail "cannot make seeds"
export VMDR_FUZZ_SCRATCH=$T

for t in config manifest pack_index blob s3_xml domain_xml bundle; do
  "$F/fuzz-$t" -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 "$T/corpus/$t" > "$T/$t.log" 2>&1
  st=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$t.log")
  _tap_result "$st" "fuzz-$t: ${runs:-?} inputs in ${SECS}s, no crash" "$(tail -30 "$T/$t.log")"
done
tap_done
