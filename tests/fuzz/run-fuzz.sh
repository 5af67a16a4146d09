#!/bin/bash
# Run each libFuzzer target for VMDR_FUZZ_SECONDS (default 8), seeded with
# real objects made by the tools: a crash, leak or sanitizer report fails.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd vmdr-init repo-image python3
F=$VMDR_BUILD_ROOT/tests/fuzz
[ -x "$F/fuzz-config" ] || tap_skip_all "fuzz targets not built (clang build with -Dfuzz=enabled)"
SECS=${VMDR_FUZZ_SECONDS:-8}

# Seeds: a config, a manifest, a pack index, a blob, S3 answers.
R=$T/repo
vmdr-init -q -r "$R" --pack-size 1M
head -c 300000 /dev/urandom > "$T/img"; head -c 200000 /dev/zero | tr '\0' 'a' >> "$T/img"
repo-image put "$R" seed vda="$T/img" >/dev/null || tap_bail "cannot make seeds"
mkdir -p "$T"/corpus/{config,manifest,pack_index,blob,s3_xml}
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

for t in config manifest pack_index blob s3_xml; do
  "$F/fuzz-$t" -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 "$T/corpus/$t" > "$T/$t.log" 2>&1
  st=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$t.log")
  _tap_result "$st" "fuzz-$t: ${runs:-?} inputs in ${SECS}s, no crash" "$(tail -30 "$T/$t.log")"
done
tap_done
