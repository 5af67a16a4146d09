/* Internals of the S3 client shared by its source files and its unit tests.
 * Not an API: nothing outside storage/ and tests/ includes this. */
#ifndef VMDR_STORAGE_S3_INTERNAL_H
#define VMDR_STORAGE_S3_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "s3.h"

/* Bounds on what we build and what we accept from the server. */
#define S3_ENDPOINT_MAX   256    /* bytes of AWS_ENDPOINT_URL */
#define S3_HOST_MAX       256
#define S3_QUERY_MAX      8192   /* canonical query: tokens and prefixes, encoded */
#define S3_URL_MAX        16384  /* endpoint + bucket + 3 x key + query */
#define S3_TOKEN_MAX      2048   /* a continuation token, decoded */
#define S3_ERROR_BODY_MAX (64u << 10)
#define S3_XML_DEPTH_MAX  16

/* A bounded string builder over a caller's buffer, always NUL-terminated.
 * An append that does not fit adds what fits and sets `overflow`; later
 * appends add nothing, so a chain of appends needs one check at the end. */
struct s3_buf {
  char *p;
  size_t cap;             /* bytes at p, including room for the NUL */
  size_t len;
  bool overflow;
};

void s3_buf_init (struct s3_buf *b, char *p, size_t cap);
void s3_buf_add (struct s3_buf *b, const char *s, size_t n);
void s3_buf_adds (struct s3_buf *b, const char *s);
void s3_buf_addc (struct s3_buf *b, char c);

/* Append s[0..n) %-encoded as SigV4 wants: unreserved characters kept, '/'
 * kept when keep_slash (object keys in paths), everything else %XX. */
void s3_uri_encode (struct s3_buf *b, const char *s, size_t n, bool keep_slash);

/* The parts of an endpoint URL that requests are built from. */
struct s3_endpoint {
  char scheme[8];         /* "http" or "https" */
  char host[S3_HOST_MAX]; /* name, IPv4 address or [IPv6] */
  char port[8];           /* "" when the URL gave none */
  bool host_is_ip;
};

/* Parse "http[s]://host[:port][/]".  -EINVAL for anything else (user info,
 * a path, a query, another scheme), -ENAMETOOLONG past S3_ENDPOINT_MAX. */
int s3_endpoint_parse (const char *url, struct s3_endpoint *ep);

/* Build the request URL into out.  bucket NULL: the service; key NULL: the
 * bucket.  query is canonical already ("" or NULL for none).  Returns the
 * length, -ENAMETOOLONG if it does not fit, -EINVAL for virtual-host style
 * without a bucket-capable host name. */
int s3_build_url (const struct s3_endpoint *ep, enum vmdr_s3_addressing style,
                  const char *bucket, const char *key, const char *query,
                  char *out, size_t outsz);

/* Decode XML character data s[0..n) (the five predefined entities and
 * &#N; / &#xH; references) and append it to b.  -EBADMSG for an unknown or
 * malformed reference or a NUL; overflow of b is left for the caller. */
int s3_xml_decode (struct s3_buf *b, const char *s, size_t n);

/* Parse a ListObjectsV2 answer (a ListBucketResult) into *page, which is
 * untouched on failure.  -EBADMSG for malformed XML, another root element, a
 * key longer than VMDR_S3_KEY_MAX, more than VMDR_S3_LIST_MAX_KEYS keys,
 * IsTruncated missing or true without a NextContinuationToken. */
int s3_parse_list (const char *xml, size_t len, struct vmdr_s3_list_page *page);

/* Take Code and Message from an S3 <Error> body into st->code and
 * st->message (truncated to fit).  -EBADMSG if it is no such body; st is
 * then untouched. */
int s3_parse_error (const char *xml, size_t len, struct vmdr_s3_status *st);

/* The errno for a non-2xx HTTP status and S3 error code (see s3.h). */
int s3_http_errno (long http, const char *code);

/* An ISO 8601 UTC time as S3 lists it, "2026-11-28T00:59:06.239Z" (the
 * fraction optional) into *t.  -EBADMSG for anything else. */
int s3_parse_iso8601 (const char *s, size_t n, time_t *t);

/* The UploadId of an InitiateMultipartUploadResult, malloc'd into *id.
 * -EBADMSG if there is none or it exceeds VMDR_S3_UPLOAD_ID_MAX. */
int s3_parse_upload_id (const char *xml, size_t len, char **id);

/* A CompleteMultipartUploadResult: 0 and its ETag (unquoted, "" if none)
 * into etag (128 bytes).  An <Error> body: its code and message into *st
 * and 1.  -EBADMSG for anything else. */
int s3_parse_complete (const char *xml, size_t len, char *etag,
                       struct vmdr_s3_status *st);

/* A ListMultipartUploadsResult into *page (untouched on failure): -EBADMSG
 * for malformed XML, more than VMDR_S3_LIST_MAX_KEYS uploads, an upload
 * without Key or UploadId, IsTruncated true without NextKeyMarker. */
int s3_parse_uploads (const char *xml, size_t len, struct vmdr_s3_upload_page *page);

/* ---- the AWS shared files (s3.c) ------------------------------------------ */

#define S3_INI_FILE_MAX (256u << 10)

/* Look NAME up in section SECTION of an AWS-style INI text ("[section]"
 * lines, "name = value" lines, whole-line comments starting with '#' or
 * ';').  Names, values and section names are trimmed of blanks; indented
 * lines (sub-sections such as "s3 =\n  endpoint_url = ...") and other lines
 * are skipped.  The first match wins.  Returns 1 and the value in OUT (OUTSZ
 * bytes), 0 when absent, -ENAMETOOLONG when the value does not fit.  With
 * NAME NULL: 1 when the section exists, else 0. */
int s3_ini_get (const char *text, size_t len, const char *section,
                const char *name, char *out, size_t outsz);

/* ---- the S3 backend (backend-s3.c) ----------------------------------------- */

#define S3_PREFIX_MAX 256       /* bytes of PREFIX in s3://BUCKET/PREFIX */

/* Split "BUCKET[/PREFIX]" (a repository address after "s3://") into the
 * bucket (checked by vmdr_s3_check_bucket) and the prefix, which gets a
 * trailing '/' ("" when none; "BUCKET/" and "BUCKET/p/" are fine).  PREFIX
 * must be a valid vmdr key (backend.h) of at most S3_PREFIX_MAX bytes.
 * bucket holds VMDR_S3_BUCKET_MAX + 1 bytes, prefix S3_PREFIX_MAX + 2.
 * 0 or -EINVAL; the outputs are untouched on failure. */
int s3_location_parse (const char *location, char *bucket, char *prefix);

/* How hard the backend tries a request again. */
struct s3_retry {
  unsigned attempts;            /* tries in all, first included: 1 .. 100 */
  double seconds;               /* no new try this long after the first */
  double refused_seconds;       /* the same, while the endpoint refuses
                                 * connections or does not resolve */
  unsigned base_ms, cap_ms;     /* backoff: base * 2^n, capped */
};

#define S3_RETRY_ATTEMPTS_DEFAULT 10
#define S3_RETRY_SECONDS_DEFAULT  120.0
#define S3_RETRY_REFUSED_DEFAULT  15.0
#define S3_RETRY_BASE_MS          100
#define S3_RETRY_CAP_MS           20000

/* The defaults, changed by VMDR_S3_RETRY_MAX (attempts) and
 * VMDR_S3_RETRY_SECONDS (0 .. 86400, a decimal fraction allowed; it also
 * caps refused_seconds).  -EINVAL for a malformed or out-of-range value
 * (*name then says which variable), *r untouched. */
int s3_retry_from_env (struct s3_retry *r, const char **name);

/* Full jitter: a uniform draw from RND in [0, min(cap, base * 2^n)]
 * milliseconds, before try n + 2 (n = 0 after the first failure). */
unsigned s3_backoff_ms (const struct s3_retry *r, unsigned n, uint64_t rnd);

/* Is a failure of one request worth another try?  ERR from the client, with
 * the status it filled: 429/503 (-EAGAIN), other 5xx but 501 (Not
 * Implemented does not pass), 408, 409 ConditionalRequestConflict,
 * timeouts, resets, refused or unresolved connections, a garbled 2xx
 * answer. */
bool s3_retryable (int err, const struct vmdr_s3_status *st);

/* Whether ERR counts against refused_seconds rather than seconds. */
bool s3_retry_refused (int err);

#endif
