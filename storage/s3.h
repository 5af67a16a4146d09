/* A small S3 client over libcurl: AWS Signature V4 signing (by libcurl), one
 * reused connection, bounded responses.  It is the transport of the S3
 * repository backend (backend-s3.c), which adds a pool of connections,
 * retries, the choice of single or multipart puts and the object layout.
 *
 * Conventions of this API:
 *  - Every function returns 0 or a negative errno and never prints.
 *  - Output parameters come last and are untouched on failure, except the
 *    optional `struct vmdr_s3_status *st`, which exists to explain failures:
 *    it is filled on success and on failure alike (zeroed when no answer came).
 *  - Strings handed in are only borrowed for the duration of the call.
 *  - A `struct vmdr_s3` is not thread-safe: use one per thread.
 *
 * Errors common to the calls that talk to the server:
 *  -EIO           the server answered with an unexpected non-2xx status
 *  -ENOENT        404 (NoSuchKey, NoSuchBucket)
 *  -EACCES        401/403 (AccessDenied, SignatureDoesNotMatch, ...)
 *  -EEXIST        409 BucketAlreadyExists / BucketAlreadyOwnedByYou
 *  -ENOTEMPTY     409 BucketNotEmpty
 *  -ERANGE        416 InvalidRange
 *  -EAGAIN        429, 503 (SlowDown): worth retrying later
 *  -EFBIG         the response body is larger than the caller's cap
 *  -EBADMSG       a 2xx answer whose XML body cannot be understood
 *  -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -ECONNRESET, -EPROTO (TLS)
 *                 transport failures: st->http is 0 unless the connection
 *                 broke in the middle of an answer; st->message has
 *                 libcurl's explanation
 *  -EINVAL        a bad argument (bucket name, key length, method, ...)
 *  -ENOMEM
 * In every case st->http, st->code and st->message say what the server said.
 */
#ifndef VMDR_STORAGE_S3_H
#define VMDR_STORAGE_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Limits from the S3 protocol, checked before anything is sent. */
#define VMDR_S3_KEY_MAX         1024    /* bytes of UTF-8 in an object key */
#define VMDR_S3_BUCKET_MIN      3
#define VMDR_S3_BUCKET_MAX      63
#define VMDR_S3_LIST_MAX_KEYS   1000    /* the most a ListObjectsV2 page holds */

/* Response body caps.  A caller that expects more says so per request. */
#define VMDR_S3_BODY_DEFAULT_MAX  (1u << 20)
#define VMDR_S3_BODY_HARD_MAX     (512u << 20)  /* larger caps are -EINVAL */
#define VMDR_S3_LIST_BODY_MAX     (8u << 20)    /* 1000 keys of 1 KiB, escaped */

enum vmdr_s3_addressing {
  /* http://endpoint/bucket/key: works with any host name or IP address; what
   * radosgw, MinIO and most on-premises servers expect. */
  VMDR_S3_PATH_STYLE,
  /* http://bucket.endpoint/key: what AWS wants; needs a DNS name that
   * resolves for every bucket, so it is refused for IP-address endpoints.
   * Over https a bucket name with dots does not match the certificate. */
  VMDR_S3_VIRTUAL_HOST_STYLE,
};

/* Where and as whom to connect.  Every string is owned by the struct (heap
 * allocated) and released by vmdr_s3_config_clear, which also wipes the
 * secrets.  Fill it with vmdr_s3_config_from_env or by hand. */
struct vmdr_s3_config {
  char *endpoint;          /* "http[s]://host[:port]", no user, path or query */
  char *region;            /* signing region, e.g. "us-east-1" */
  char *access_key_id;
  char *secret_access_key; /* never logged, never put on a command line */
  char *session_token;     /* NULL: none (long-term keys) */
  enum vmdr_s3_addressing addressing;
  long connect_timeout_ms; /* 0: 10 s */
  /* A transfer slower than 1 KiB/s for this long is abandoned (-ETIMEDOUT).
   * There is no total timeout: big objects take as long as they take.
   * 0: 60 s. */
  long stall_timeout_s;
};

/* Fill *cfg the way the AWS tools do, the environment first:
 *   endpoint: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else the profile's
 *     endpoint_url in the config file, else https://s3.REGION.amazonaws.com
 *   region: AWS_REGION, else AWS_DEFAULT_REGION, else the profile's region in
 *     the config file, else "us-east-1"
 *   credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
 *     when both are set; else aws_access_key_id, aws_secret_access_key and
 *     aws_session_token of the profile in the shared credentials file, else in
 *     the config file.  Never a mix of the two.
 *   the profile: AWS_PROFILE, else "default"; the files:
 *     AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and AWS_CONFIG_FILE
 *     (~/.aws/config, where a profile's section is "[profile NAME]").  A
 *     missing file is no error.
 *   VMDR_S3_ADDRESSING_STYLE = "path" | "virtual"; by default path style for a
 *     custom endpoint, virtual-host style for AWS itself.
 * Empty variables count as unset.
 *
 * Returns 0, or -ENOKEY when no access key and secret are found (or
 * AWS_PROFILE names a profile neither file has), -EINVAL when a value is
 * malformed (endpoint not http/https or with a path, region not [a-z0-9-], a
 * key with control characters, an unknown addressing style, virtual-host
 * style for an IP address), -ENAMETOOLONG when a value exceeds its bound,
 * -EFBIG for a credentials or config file over 256 KiB, -EACCES and other
 * errors of reading an existing file, -ENOMEM.  *cfg is untouched on
 * failure. */
int vmdr_s3_config_from_env (struct vmdr_s3_config *cfg);

/* The same, and on failure a sentence for the user in WHY (WHYSZ bytes,
 * always NUL-terminated; may be NULL): which variable or file is wrong,
 * never a value from it. */
int vmdr_s3_config_load (struct vmdr_s3_config *cfg, char *why, size_t whysz);

/* Check a filled config the way vmdr_s3_open will: 0 or -EINVAL, -ENOKEY,
 * -ENAMETOOLONG as for vmdr_s3_config_from_env. */
int vmdr_s3_config_check (const struct vmdr_s3_config *cfg);

/* Free every member, wiping the secrets first, and zero the struct.  NULL
 * and an already cleared struct are fine. */
void vmdr_s3_config_clear (struct vmdr_s3_config *cfg);

/* A connection: one libcurl handle, reused so that HTTP keep-alive and TLS
 * session reuse work across requests.  It keeps a private copy of the config. */
struct vmdr_s3;

/* Open a connection with a copy of *cfg (the caller may clear cfg at once).
 * Nothing is sent yet.  Returns 0 and *out, or -EINVAL/-ENOKEY/-ENAMETOOLONG
 * from vmdr_s3_config_check, -ENOMEM, -EIO when libcurl cannot initialise. */
int vmdr_s3_open (const struct vmdr_s3_config *cfg, struct vmdr_s3 **out);

/* Close the connection and wipe the credentials.  Accepts NULL; returns NULL
 * so that `s3 = vmdr_s3_close (s3);` leaves nothing dangling. */
struct vmdr_s3 *vmdr_s3_close (struct vmdr_s3 *s3);

/* What the server said about the last request. */
struct vmdr_s3_status {
  long http;              /* HTTP status; 0 when no answer arrived */
  char code[64];          /* S3 error code, e.g. "NoSuchKey"; "" if none
                           * (always "" for HEAD: errors have no body) */
  char message[256];      /* S3 error message, truncated to fit; for a
                           * transport failure, libcurl's description */
  char request_id[128];   /* x-amz-request-id, for reports to the provider */
};

/* One query parameter.  Values are raw: they are %-encoded here. */
struct vmdr_s3_param {
  const char *name;       /* non-NULL, non-empty */
  const char *value;      /* NULL or "" gives "name=" (S3 signs "uploads=") */
};

/* A byte range of an object: `length` bytes from `offset`, or to the end
 * when length is 0. */
struct vmdr_s3_range {
  uint64_t offset;
  uint64_t length;
};

struct vmdr_s3_request {
  const char *method;      /* "GET", "HEAD", "PUT", "POST" or "DELETE" */
  const char *bucket;      /* NULL: the service (ListBuckets) */
  const char *key;         /* NULL: the bucket itself; else 1..1024 bytes */
  const struct vmdr_s3_param *params;  /* n_params of them; any order */
  size_t n_params;
  const void *body;        /* payload of PUT/POST, body_len bytes; NULL if 0 */
  size_t body_len;
  const char *content_type;           /* NULL: none sent */
  /* The body's SHA-256 in lower-case hex when the caller has it already
   * (a pack's id): signed as x-amz-content-sha256 as it is.  NULL: hashed
   * here.  A wrong one makes the server refuse the request. */
  const char *body_sha256;
  const struct vmdr_s3_range *range;  /* NULL: the whole object */
  /* NULL-terminated "Name: value" headers (x-amz-copy-source, If-Match, ...);
   * NULL for none.  They are signed.  CR or LF in one is -EINVAL. */
  const char *const *headers;
  /* Refuse (-EFBIG) a 2xx body larger than this; 0 means
   * VMDR_S3_BODY_DEFAULT_MAX.  Error bodies have their own small cap. */
  size_t max_body;
  /* Where a 2xx body goes: NULL for a malloc'd resp->body; else the
   * caller's buffer of sink_cap bytes (max_body is then ignored: a larger
   * body is -EFBIG), resp->body stays NULL and resp->body_len says how much
   * arrived.  With a range, a server that ignores it and sends the whole
   * object (200) is handled: only the range lands in the sink. */
  void *sink;
  size_t sink_cap;
};

/* The answer to a request. */
struct vmdr_s3_response {
  struct vmdr_s3_status status;
  char etag[128];          /* ETag without the quotes; "" if none */
  int64_t content_length;  /* from the headers; -1 if not given */
  int64_t last_modified;   /* Last-Modified, seconds since the epoch; -1 if
                            * not given */
  char *body;              /* body_len bytes plus a NUL; NULL if empty */
  size_t body_len;
};

/* Free the body and zero *resp.  NULL is fine. */
void vmdr_s3_response_clear (struct vmdr_s3_response *resp);

/* Send one signed request and collect the answer into *resp (which the caller
 * clears afterwards, on failure too: error bodies are kept).  The payload is
 * hashed (SHA-256) into x-amz-content-sha256 so the server can verify it.
 * Returns 0 on a 2xx status, else the errors listed at the top. */
int vmdr_s3_request (struct vmdr_s3 *s3, const struct vmdr_s3_request *req,
                     struct vmdr_s3_response *resp);

/* ---- Simple operations.  `st` may be NULL. ------------------------------ */

/* Create a bucket in the config's region (radosgw: the zonegroup's API name,
 * "default", or us-east-1 for none).  -EEXIST when someone else owns the
 * name; a bucket of your own is a success in us-east-1 and on radosgw, and
 * -EEXIST (BucketAlreadyOwnedByYou) in other AWS regions. */
int vmdr_s3_create_bucket (struct vmdr_s3 *s3, const char *bucket,
                           struct vmdr_s3_status *st);

/* Delete an empty bucket: -ENOTEMPTY if it holds objects, -ENOENT if absent. */
int vmdr_s3_delete_bucket (struct vmdr_s3 *s3, const char *bucket,
                           struct vmdr_s3_status *st);

/* Store len bytes as one object (up to 5 GiB by S3 rules).  *etag_out, if not
 * NULL, gets the ETag (quotes removed); it must hold 128 bytes. */
int vmdr_s3_put_object (struct vmdr_s3 *s3, const char *bucket, const char *key,
                        const void *data, size_t len, char *etag_out,
                        struct vmdr_s3_status *st);

/* Read an object, or only `range` of it when range is not NULL, refusing
 * (-EFBIG) more than max bytes (0: VMDR_S3_BODY_DEFAULT_MAX).  On success
 * *data is a malloc'd buffer of *len bytes plus a NUL, which the caller
 * frees.  A range past the end is -ERANGE. */
int vmdr_s3_get_object (struct vmdr_s3 *s3, const char *bucket, const char *key,
                        const struct vmdr_s3_range *range, size_t max,
                        void **data, size_t *len, struct vmdr_s3_status *st);

/* The size of an object, without its body.  -ENOENT if absent. */
int vmdr_s3_head_object (struct vmdr_s3 *s3, const char *bucket, const char *key,
                         uint64_t *size, struct vmdr_s3_status *st);

/* Delete an object.  Deleting an absent key succeeds (S3 semantics). */
int vmdr_s3_delete_object (struct vmdr_s3 *s3, const char *bucket, const char *key,
                           struct vmdr_s3_status *st);

/* ---- Listing ------------------------------------------------------------ */

struct vmdr_s3_object {
  char *key;              /* decoded, NUL-terminated */
  uint64_t size;
  time_t mtime;           /* LastModified; -1 when the listing has none */
};

/* One page of ListObjectsV2.  Owned by the caller; vmdr_s3_list_page_clear
 * frees it. */
struct vmdr_s3_list_page {
  struct vmdr_s3_object *objects;
  size_t n_objects;
  bool truncated;          /* more pages follow */
  char *next_token;        /* continuation token when truncated, else NULL */
};

void vmdr_s3_list_page_clear (struct vmdr_s3_list_page *page);

/* Fetch one page of the keys under prefix (NULL or "": all), in the server's
 * (UTF-8 binary) order.  token is NULL for the first page, then the previous
 * page's next_token.  max_keys 0 means the server default; more than
 * VMDR_S3_LIST_MAX_KEYS is clamped.  -EBADMSG if the answer is not a sound
 * ListBucketResult (or claims more pages without a token). */
int vmdr_s3_list_objects_v2 (struct vmdr_s3 *s3, const char *bucket,
                             const char *prefix, const char *token,
                             unsigned max_keys, struct vmdr_s3_list_page *page,
                             struct vmdr_s3_status *st);

/* Called once per object by vmdr_s3_list_objects.  Return 0 to go on; any
 * other value stops the listing and is returned by vmdr_s3_list_objects. */
typedef int (*vmdr_s3_list_fn) (const struct vmdr_s3_object *obj, void *opaque);

/* Walk every page under prefix, page_size keys at a time (0: server default).
 * *pages, if not NULL, counts the pages fetched (also on failure).  A server
 * that hands back the same token twice is -EBADMSG rather than a loop. */
int vmdr_s3_list_objects (struct vmdr_s3 *s3, const char *bucket,
                          const char *prefix, unsigned page_size,
                          vmdr_s3_list_fn fn, void *opaque, size_t *pages,
                          struct vmdr_s3_status *st);

/* ---- Multipart upload --------------------------------------------------
 * Initiate, upload parts (1..10000; each but the last at least 5 MiB),
 * complete: nothing is visible before the complete succeeds; abort drops
 * the parts.  An upload neither completed nor aborted stays invisible but
 * holds its parts' space (vmdr_s3_list_multipart_uploads finds it). */

#define VMDR_S3_PARTS_MAX     10000
#define VMDR_S3_PART_MIN      (5u << 20)
#define VMDR_S3_UPLOAD_ID_MAX 1024

/* Start an upload of KEY: *upload_id (malloc'd, the caller's) names it.
 * -EBADMSG when the answer holds no upload id. */
int vmdr_s3_create_multipart (struct vmdr_s3 *s3, const char *bucket,
                              const char *key, char **upload_id,
                              struct vmdr_s3_status *st);

/* Upload part NUMBER (1..VMDR_S3_PARTS_MAX); etag_out (128 bytes) gets its
 * ETag, which complete needs.  -EBADMSG when the answer has none. */
int vmdr_s3_upload_part (struct vmdr_s3 *s3, const char *bucket,
                         const char *key, const char *upload_id,
                         unsigned number, const void *data, size_t len,
                         char *etag_out, struct vmdr_s3_status *st);

/* Assemble parts 1..N (etags[i] is part i+1's) into the object.  HEADERS as
 * in struct vmdr_s3_request (e.g. "If-None-Match: *"), NULL for none.
 * etag_out (128 bytes, may be NULL) gets the object's ETag.  S3 may answer
 * 200 with an <Error> body after a long wait: that is a failure here
 * (-EAGAIN for InternalError, SlowDown and ServiceUnavailable, else -EIO),
 * with the code in st.  -ENOENT (NoSuchUpload) once completed or aborted. */
int vmdr_s3_complete_multipart (struct vmdr_s3 *s3, const char *bucket,
                                const char *key, const char *upload_id,
                                char (*etags)[128], size_t n,
                                const char *const *headers, char *etag_out,
                                struct vmdr_s3_status *st);

/* Abort an upload and free its parts.  An unknown id is -ENOENT. */
int vmdr_s3_abort_multipart (struct vmdr_s3 *s3, const char *bucket,
                             const char *key, const char *upload_id,
                             struct vmdr_s3_status *st);

struct vmdr_s3_upload {
  char *key;
  char *upload_id;
  time_t initiated;       /* -1 when the listing has none */
};

/* One page of ListMultipartUploads; vmdr_s3_upload_page_clear frees it. */
struct vmdr_s3_upload_page {
  struct vmdr_s3_upload *uploads;
  size_t n_uploads;
  bool truncated;
  char *next_key_marker;        /* when truncated, else NULL */
  char *next_upload_id_marker;  /* when truncated (may be NULL) */
};

void vmdr_s3_upload_page_clear (struct vmdr_s3_upload_page *page);

/* Unfinished uploads under PREFIX (NULL: all), a page at a time: the
 * markers are NULL first, then the previous page's next ones.  -EBADMSG if
 * the answer is not a sound ListMultipartUploadsResult. */
int vmdr_s3_list_multipart_uploads (struct vmdr_s3 *s3, const char *bucket,
                                    const char *prefix, const char *key_marker,
                                    const char *upload_id_marker,
                                    struct vmdr_s3_upload_page *page,
                                    struct vmdr_s3_status *st);

/* ---- Building blocks, public because tests and tools need them ---------- */

/* The SigV4 canonical query string of params: names and values %-encoded as
 * RFC 3986 says (only A-Z a-z 0-9 - . _ ~ kept), sorted by encoded name then
 * value, "name=value" joined by '&'; "name=" for an empty value.  Writes a
 * NUL-terminated string to out.  Returns its length, or -ENAMETOOLONG when it
 * does not fit in outsz (or exceeds 8 KiB), -EINVAL for a NULL or empty name
 * or more than 64 parameters. */
int vmdr_s3_canonical_query (const struct vmdr_s3_param *params, size_t n,
                             char *out, size_t outsz);

/* Check a bucket name against the S3 rules (3-63 of a-z 0-9 . -, starting and
 * ending with a letter or digit, no "..", not an IPv4 address): 0 or -EINVAL. */
int vmdr_s3_check_bucket (const char *bucket);

/* A text for the caller's message: "HTTP 404 NoSuchKey: The specified key does
 * not exist." or the transport error.  Always NUL-terminates out. */
void vmdr_s3_status_describe (const struct vmdr_s3_status *st,
                              char *out, size_t outsz);

#endif
