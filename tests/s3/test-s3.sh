#!/bin/bash
# The S3 client (storage/s3.h, through s3-smoke) against a real radosgw:
# buckets, objects with awkward keys, ranges, paged listings, and the errors
# the server gives (404 NoSuchKey, 403 SignatureDoesNotMatch, 409 BucketNotEmpty).
#
# usage: test-s3.sh PATH/TO/s3-smoke
. "$(dirname "$0")/../harness/lib.sh"
. "$(dirname "$0")/../harness/ceph-lib.sh"

S3=${1:?usage: test-s3.sh S3-SMOKE}
use_ceph

B=vmdr-s3-test-$$-$RANDOM
s3() { timeout 60 "$S3" "$@"; }

# srv_err CMD...: "EXIT:STDOUT" of a call the server should refuse.
srv_err() {
  local out rc
  out=$(s3 "$@" 2>/dev/null); rc=$?
  echo "$rc:$out"
}

# Best effort, for a run that stopped halfway on a shared cluster.
cleanup_bucket() {
  local line
  s3 ls "$B" "" 1000 2>/dev/null | while IFS= read -r line; do
    case "$line" in pages=*) ;; *) s3 rm "$B" "${line% *}" >/dev/null 2>&1 ;; esac
  done
  s3 rb "$B" >/dev/null 2>&1
  return 0
}
at_exit cleanup_bucket

head -c 1000 /dev/urandom > "$T/small"
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom > "$T/big"   # > 1 MiB: Expect: 100-continue
: > "$T/empty"
UKEY='dir/with space/ünïcødé €+%&=?#~*(1).bin'
XKEY="xml/a&b<c>\"d'e"

tap_fails "a bucket name S3 forbids is refused before sending" s3 mb "Bad_Bucket"
tap_ok "create bucket" s3 mb "$B"

etag=$(s3 put "$B" dir/small.bin "$T/small")
tap_is "PUT object, ETag is the MD5 of the content" "$etag" "$(md5sum < "$T/small" | cut -d' ' -f1)"
tap_ok "GET object" s3 get "$B" dir/small.bin "$T/small.got"
tap_ok "GET gives the bytes PUT stored" cmp "$T/small" "$T/small.got"

tap_ok "PUT a key with spaces, unicode and reserved characters" s3 put "$B" "$UKEY" "$T/small"
tap_ok "GET it back" s3 get "$B" "$UKEY" "$T/ukey.got"
tap_ok "same bytes under the awkward key" cmp "$T/small" "$T/ukey.got"

tap_ok "PUT 3 MiB" s3 put "$B" big.bin "$T/big"
tap_ok "GET 3 MiB" s3 --max $((4 << 20)) get "$B" big.bin "$T/big.got"
tap_ok "3 MiB read back intact" cmp "$T/big" "$T/big.got"
tap_is "HEAD gives the size" "$(s3 head "$B" big.bin)" $((3 * 1024 * 1024 + 17))
tap_is "a body over the caller's cap is refused" \
  "$(srv_err --max 1000000 get "$B" big.bin "$T/x")" "3:http=200 code=- errno=EFBIG"

tap_ok "PUT an empty object" s3 put "$B" empty "$T/empty"
tap_ok "GET an empty object" s3 get "$B" empty "$T/empty.got"
tap_is "empty object is empty" "$(stat -c %s "$T/empty.got")" 0

tap_ok "ranged GET (bytes 1048570-1048669)" s3 get "$B" big.bin "$T/range.got" 1048570 100
tail -c +1048571 "$T/big" | head -c 100 > "$T/range.want"
tap_ok "range holds the right bytes" cmp "$T/range.want" "$T/range.got"
tap_ok "ranged GET to the end" s3 get "$B" big.bin "$T/tail.got" 3145700
tail -c +3145701 "$T/big" > "$T/tail.want"
tap_ok "open-ended range holds the right bytes" cmp "$T/tail.want" "$T/tail.got"
tap_is "a range past the end of an object is 416 InvalidRange" \
  "$(srv_err get "$B" dir/small.bin "$T/x" 5000 10)" "3:http=416 code=InvalidRange errno=ERANGE"

# five objects under page/, listed two at a time: three pages
want=""
for i in 1 2 3 4 5; do
  printf 'object %d' "$i" > "$T/p$i"
  s3 put "$B" "page/obj-$i" "$T/p$i" >/dev/null || tap_bail "cannot PUT page/obj-$i"
  want+="page/obj-$i 8"$'\n'
done
tap_is "list by prefix, 2 keys a page: 5 keys in order, 3 pages" \
  "$(s3 ls "$B" page/ 2)" "${want}pages=3"
tap_is "list by prefix in one page" "$(s3 ls "$B" page/ 0 | tail -n 1)" "pages=1"
tap_is "list an unused prefix" "$(s3 ls "$B" nothing/ 2)" "pages=1"
# one handle, one connection: five requests must not mean five TCP handshakes
if command -v strace >/dev/null && strace -f -qq -o /dev/null true 2>/dev/null; then
  strace -f -qq -e trace=connect -o "$T/connects" "$S3" ls "$B" page/ 1 > "$T/ls1"
  tap_is "five pages over one kept-alive connection" \
    "$(tail -n 1 "$T/ls1"), $(grep -c 'AF_INET' "$T/connects") connect" "pages=5, 1 connect"
else
  tap_skip "five pages over one kept-alive connection" "needs strace"
fi

tap_ok "PUT a key with XML special characters" s3 put "$B" "$XKEY" "$T/small"
tap_is "its listed key is decoded" "$(s3 ls "$B" xml/ 10)" "$XKEY 1000"$'\n'"pages=1"
tap_is "the unicode key lists as stored" "$(s3 ls "$B" dir/with 10)" "$UKEY 1000"$'\n'"pages=1"

tap_is "deleting a non-empty bucket is 409 BucketNotEmpty" \
  "$(srv_err rb "$B")" "3:http=409 code=BucketNotEmpty errno=ENOTEMPTY"
tap_is "a missing key is 404 NoSuchKey" \
  "$(srv_err get "$B" no/such/key "$T/x")" "3:http=404 code=NoSuchKey errno=ENOENT"
tap_is "HEAD of a missing key is 404 (no body, no code)" \
  "$(srv_err head "$B" no/such/key)" "3:http=404 code=- errno=ENOENT"
tap_is "a wrong secret is 403 SignatureDoesNotMatch" \
  "$(AWS_SECRET_ACCESS_KEY=wrong-secret-0000000000 srv_err get "$B" dir/small.bin "$T/x")" \
  "3:http=403 code=SignatureDoesNotMatch errno=EACCES"
tap_is "an unknown access key is 403 InvalidAccessKeyId" \
  "$(AWS_ACCESS_KEY_ID=NOSUCHKEY0000000000 srv_err get "$B" dir/small.bin "$T/x")" \
  "3:http=403 code=InvalidAccessKeyId errno=EACCES"

# radosgw is set up with "rgw dns name = localhost", and libcurl maps
# *.localhost to the loopback address by itself
port=${AWS_ENDPOINT_URL##*:}
tap_ok "virtual-host style GET" env AWS_ENDPOINT_URL="http://localhost:$port" \
  VMDR_S3_ADDRESSING_STYLE=virtual "$S3" get "$B" "$UKEY" "$T/vhost.got"
tap_ok "virtual-host style gives the same bytes" cmp "$T/small" "$T/vhost.got"
tap_is "virtual-host style listing" "$(AWS_ENDPOINT_URL="http://localhost:$port" \
  VMDR_S3_ADDRESSING_STYLE=virtual s3 ls "$B" page/ 3 | tail -n 1)" "pages=2"
# radosgw's access log shows the request path: /BUCKET/KEY in path style,
# /KEY in virtual-host style (the bucket went in the Host header)
rgw_log=$CEPH_DIR/log/client.rgw.log
s3 put "$B" vhost/only.bin "$T/small" >/dev/null
AWS_ENDPOINT_URL="http://localhost:$port" VMDR_S3_ADDRESSING_STYLE=virtual \
  s3 get "$B" vhost/only.bin "$T/vhost2.got"
tap_ok "radosgw saw the path-style PUT as /BUCKET/KEY" \
  wait_until 5 grep -qF "\"PUT /$B/vhost/only.bin HTTP/" "$rgw_log"
tap_ok "radosgw saw the virtual-host GET as /KEY" \
  wait_until 5 grep -qF '"GET /vhost/only.bin HTTP/' "$rgw_log"

out=$(AWS_ENDPOINT_URL=http://127.0.0.1:1 s3 get "$B" dir/small.bin "$T/x" 2>&1); rc=$?
tap_is "a closed port is a transport error (exit 1, no HTTP status)" "$rc" 1
tap_fails "missing credentials are refused" env -u AWS_SECRET_ACCESS_KEY "$S3" head "$B" big.bin

ok=0
for k in dir/small.bin "$UKEY" "$XKEY" big.bin empty vhost/only.bin page/obj-{1,2,3,4,5}; do
  s3 rm "$B" "$k" || ok=1
done
tap_is "DELETE every object" "$ok" 0
tap_is "a deleted key is 404 NoSuchKey" \
  "$(srv_err get "$B" dir/small.bin "$T/x")" "3:http=404 code=NoSuchKey errno=ENOENT"
tap_is "the bucket lists empty" "$(s3 ls "$B" "" 0)" "pages=1"
tap_ok "delete the bucket" s3 rb "$B"
tap_is "a deleted bucket is 404 NoSuchBucket" \
  "$(srv_err rb "$B")" "3:http=404 code=NoSuchBucket errno=ENOENT"

tap_done
