/* Internals of the S3 client shared by its source files and its unit tests.
 * Not an API: nothing outside storage/ and tests/ includes this. */
#ifndef VMDR_STORAGE_S3_INTERNAL_H
#define VMDR_STORAGE_S3_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
