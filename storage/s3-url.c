/* Everything the S3 client puts into a URL: endpoints, bucket names, object
 * keys and the canonical query string.  libcurl 7.88 signs the path and the
 * query exactly as given, so what is built here must already be the SigV4
 * canonical form, or the server computes another signature. */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cleanup.h"
#include "s3-internal.h"

#define S3_PARAMS_MAX 64         /* no S3 call needs more than a handful */

void
s3_buf_init (struct s3_buf *b, char *p, size_t cap)
{
  b->p = p;
  b->cap = cap;
  b->len = 0;
  b->overflow = cap == 0;
  if (cap > 0)
    p[0] = '\0';
}

void
s3_buf_add (struct s3_buf *b, const char *s, size_t n)
{
  if (b->overflow)
    return;
  if (n >= b->cap - b->len) {       /* keep a byte for the NUL */
    b->overflow = true;
    n = b->cap - b->len - 1;        /* what fits: truncation is a feature */
  }
  memcpy (b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void
s3_buf_adds (struct s3_buf *b, const char *s)
{
  s3_buf_add (b, s, strlen (s));
}

void
s3_buf_addc (struct s3_buf *b, char c)
{
  s3_buf_add (b, &c, 1);
}

static bool
is_unreserved (unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

void
s3_uri_encode (struct s3_buf *b, const char *s, size_t n, bool keep_slash)
{
  static const char hex[] = "0123456789ABCDEF";   /* SigV4 wants upper case */

  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (is_unreserved (c) || (keep_slash && c == '/'))
      s3_buf_addc (b, c);
    else {
      char e[3] = { '%', hex[c >> 4], hex[c & 15] };
      s3_buf_add (b, e, 3);
    }
  }
}

struct enc_param {
  const char *name;        /* both point into one scratch buffer */
  const char *value;
};

static int
cmp_enc_param (const void *a, const void *b)
{
  const struct enc_param *x = a, *y = b;
  int c = strcmp (x->name, y->name);
  return c ? c : strcmp (x->value, y->value);
}

/* Encode every name and value, NUL-separated, into scratch. */
static int
encode_params (const struct vmdr_s3_param *params, size_t n,
               struct s3_buf *scratch, struct enc_param *enc)
{
  for (size_t i = 0; i < n; i++) {
    const char *v = params[i].value ? params[i].value : "";

    if (!params[i].name || !params[i].name[0])
      return -EINVAL;
    enc[i].name = scratch->p + scratch->len;
    s3_uri_encode (scratch, params[i].name, strlen (params[i].name), false);
    s3_buf_addc (scratch, '\0');
    enc[i].value = scratch->p + scratch->len;
    s3_uri_encode (scratch, v, strlen (v), false);
    s3_buf_addc (scratch, '\0');
  }
  return scratch->overflow ? -ENAMETOOLONG : 0;
}

int
vmdr_s3_canonical_query (const struct vmdr_s3_param *params, size_t n,
                         char *out, size_t outsz)
{
  _cleanup_free_ struct enc_param *enc = NULL;
  _cleanup_free_ char *scratch = NULL;
  struct s3_buf sb, ob;
  int r;

  if (n > S3_PARAMS_MAX || (n > 0 && !params))
    return -EINVAL;
  enc = calloc (n ? n : 1, sizeof *enc);
  scratch = malloc (S3_QUERY_MAX);
  if (!enc || !scratch)
    return -ENOMEM;
  s3_buf_init (&sb, scratch, S3_QUERY_MAX);
  r = encode_params (params, n, &sb, enc);
  if (r < 0)
    return r;
  /* SigV4 sorts by the encoded names: encoding is monotonic only per byte. */
  qsort (enc, n, sizeof *enc, cmp_enc_param);

  s3_buf_init (&ob, out, outsz);
  for (size_t i = 0; i < n; i++) {
    if (i > 0)
      s3_buf_addc (&ob, '&');
    s3_buf_adds (&ob, enc[i].name);
    s3_buf_addc (&ob, '=');
    s3_buf_adds (&ob, enc[i].value);
  }
  if (ob.overflow || ob.len > INT32_MAX)
    return -ENAMETOOLONG;
  return (int) ob.len;
}

static bool
is_ipv4 (const char *s)
{
  struct in_addr a;
  return inet_pton (AF_INET, s, &a) == 1;
}

int
vmdr_s3_check_bucket (const char *bucket)
{
  size_t n;

  if (!bucket)
    return -EINVAL;
  n = strlen (bucket);
  if (n < VMDR_S3_BUCKET_MIN || n > VMDR_S3_BUCKET_MAX)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    char c = bucket[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && c != '.' && c != '-')
      return -EINVAL;
    if (!alnum && (i == 0 || i == n - 1))
      return -EINVAL;
  }
  /* "a..b" is no DNS name, and an IP-shaped name breaks virtual-host style */
  if (strstr (bucket, "..") || is_ipv4 (bucket))
    return -EINVAL;
  return 0;
}

static void
curlu_cleanup (CURLU **u)
{
  curl_url_cleanup (*u);
}

static void
curl_str_cleanup (char **s)
{
  curl_free (*s);
}

#define _cleanup_curlu_ __attribute__((cleanup (curlu_cleanup)))
#define _cleanup_curl_str_ __attribute__((cleanup (curl_str_cleanup)))

/* 0 if URL part `what` is absent.  Credentials in the URL would end up in
 * logs and error messages, a path or query would be signed wrongly. */
static int
part_absent (CURLU *u, CURLUPart what)
{
  _cleanup_curl_str_ char *s = NULL;
  CURLUcode rc = curl_url_get (u, what, &s, 0);

  if (rc == CURLUE_OK)
    return what == CURLUPART_PATH && strcmp (s, "/") == 0 ? 0 : -EINVAL;
  return rc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : 0;
}

/* Copy part `what` of u into out: -EINVAL if missing, -ENAMETOOLONG if long. */
static int
part_copy (CURLU *u, CURLUPart what, char *out, size_t outsz, bool optional)
{
  _cleanup_curl_str_ char *s = NULL;
  CURLUcode rc = curl_url_get (u, what, &s, 0);

  if (rc == CURLUE_OUT_OF_MEMORY)
    return -ENOMEM;
  if (rc != CURLUE_OK) {
    if (!optional)
      return -EINVAL;
    out[0] = '\0';
    return 0;
  }
  if (strlen (s) >= outsz)
    return -ENAMETOOLONG;
  strcpy (out, s);
  return 0;
}

int
s3_endpoint_parse (const char *url, struct s3_endpoint *ep)
{
  static const CURLUPart absent[] = {
    CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS, CURLUPART_PATH,
    CURLUPART_QUERY, CURLUPART_FRAGMENT,
  };
  _cleanup_curlu_ CURLU *u = NULL;
  struct s3_endpoint e = { 0 };
  int r;

  if (!url)
    return -EINVAL;
  if (strlen (url) > S3_ENDPOINT_MAX)
    return -ENAMETOOLONG;
  u = curl_url ();
  if (!u)
    return -ENOMEM;
  if (curl_url_set (u, CURLUPART_URL, url, 0) != CURLUE_OK)
    return -EINVAL;
  for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
    if ((r = part_absent (u, absent[i])) < 0)
      return r;
  /* a scheme too long for e.scheme is no http or https either */
  if (part_copy (u, CURLUPART_SCHEME, e.scheme, sizeof e.scheme, false) < 0 ||
      (strcmp (e.scheme, "http") != 0 && strcmp (e.scheme, "https") != 0))
    return -EINVAL;
  if ((r = part_copy (u, CURLUPART_HOST, e.host, sizeof e.host, false)) < 0 ||
      (r = part_copy (u, CURLUPART_PORT, e.port, sizeof e.port, true)) < 0)
    return r;
  e.host_is_ip = e.host[0] == '[' || is_ipv4 (e.host);
  *ep = e;
  return 0;
}

int
s3_build_url (const struct s3_endpoint *ep, enum vmdr_s3_addressing style,
              const char *bucket, const char *key, const char *query,
              char *out, size_t outsz)
{
  bool vhost = style == VMDR_S3_VIRTUAL_HOST_STYLE && bucket;
  struct s3_buf b;

  if (key && !bucket)
    return -EINVAL;
  if (vhost && ep->host_is_ip)
    return -EINVAL;
  s3_buf_init (&b, out, outsz);
  s3_buf_adds (&b, ep->scheme);
  s3_buf_adds (&b, "://");
  if (vhost) {
    s3_buf_adds (&b, bucket);
    s3_buf_addc (&b, '.');
  }
  s3_buf_adds (&b, ep->host);
  if (ep->port[0]) {
    s3_buf_addc (&b, ':');
    s3_buf_adds (&b, ep->port);
  }
  s3_buf_addc (&b, '/');
  if (bucket && !vhost) {
    s3_buf_adds (&b, bucket);
    if (key)
      s3_buf_addc (&b, '/');
  }
  if (key)
    s3_uri_encode (&b, key, strlen (key), true);
  if (query && query[0]) {
    s3_buf_addc (&b, '?');
    s3_buf_adds (&b, query);
  }
  if (b.overflow || b.len > INT32_MAX)
    return -ENAMETOOLONG;
  return (int) b.len;
}
