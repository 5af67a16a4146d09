/* The S3 client: configuration, the connection, signed requests and the
 * simple object and bucket operations.  See s3.h for the contracts. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "cleanup.h"
#include "s3-internal.h"

#define REGION_MAX     32
#define KEY_ID_MAX     128
#define SECRET_MAX     128
#define TOKEN_MAX      8192     /* STS session tokens run to a few KiB */
#define HEADERS_MAX    32       /* caller's extra headers per request */
#define HEADER_MAX     2048     /* bytes of one header line we build */
/* curl's upload buffer for bodies above it: its default of 64 KiB sent a
 * 16 MiB pack in 256 read callbacks and sends; 2 MiB (curl's largest;
 * older ones take less) cut vmdr-replicate's CPU to radosgw by 6-8 %. */
#define UPLOAD_BUFFER  (2L << 20)

struct vmdr_s3 {
  CURL *curl;                   /* reused: keeps the connection alive */
  struct vmdr_s3_config cfg;    /* private copy */
  struct s3_endpoint ep;
  char sigv4[64];               /* "aws:amz:REGION:s3" */
  char errbuf[CURL_ERROR_SIZE];
};

/* ---- configuration ------------------------------------------------------ */

static void
free_secret (char **s)
{
  if (*s) {
    explicit_bzero (*s, strlen (*s));
    free (*s);
    *s = NULL;
  }
}

void
vmdr_s3_config_clear (struct vmdr_s3_config *cfg)
{
  if (!cfg)
    return;
  free (cfg->endpoint);
  free (cfg->region);
  free (cfg->access_key_id);
  free_secret (&cfg->secret_access_key);
  free_secret (&cfg->session_token);
  memset (cfg, 0, sizeof *cfg);
}

#define _cleanup_s3_config_ __attribute__((cleanup (vmdr_s3_config_clear)))

/* A printable token without spaces of 1..max bytes: -EINVAL, -ENAMETOOLONG. */
static int
check_token (const char *s, size_t max)
{
  size_t n = strlen (s);

  if (n == 0)
    return -EINVAL;
  if (n > max)
    return -ENAMETOOLONG;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char) s[i] <= ' ' || (unsigned char) s[i] >= 0x7f)
      return -EINVAL;
  return 0;
}

/* The region goes into "aws:amz:REGION:s3" and a host name. */
static int
check_region (const char *s)
{
  size_t n = s ? strlen (s) : 0;

  if (n == 0)
    return -EINVAL;
  if (n > REGION_MAX)
    return -ENAMETOOLONG;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return -EINVAL;
  return 0;
}

int
vmdr_s3_config_check (const struct vmdr_s3_config *c)
{
  struct s3_endpoint ep;
  int r;

  if (!c)
    return -EINVAL;
  if (!c->access_key_id || !c->access_key_id[0] ||
      !c->secret_access_key || !c->secret_access_key[0])
    return -ENOKEY;
  if ((r = s3_endpoint_parse (c->endpoint, &ep)) < 0 ||
      (r = check_region (c->region)) < 0 ||
      (r = check_token (c->access_key_id, KEY_ID_MAX)) < 0 ||
      (r = check_token (c->secret_access_key, SECRET_MAX)) < 0 ||
      (c->session_token && (r = check_token (c->session_token, TOKEN_MAX)) < 0))
    return r;
  if (c->addressing != VMDR_S3_PATH_STYLE && c->addressing != VMDR_S3_VIRTUAL_HOST_STYLE)
    return -EINVAL;
  if (c->addressing == VMDR_S3_VIRTUAL_HOST_STYLE && ep.host_is_ip)
    return -EINVAL;
  if (c->connect_timeout_ms < 0 || c->stall_timeout_s < 0)
    return -EINVAL;
  return 0;
}

/* *out = a copy of the first of names that is set and not empty, or NULL.
 * secure_getenv: credentials from the environment of a setuid caller are
 * not to be trusted. */
static int
env_dup (char **out, size_t max, const char *name, const char *fallback)
{
  const char *v = secure_getenv (name);

  if ((!v || !v[0]) && fallback)
    v = secure_getenv (fallback);
  if (!v || !v[0])
    return 0;
  if (strlen (v) > max)
    return -ENAMETOOLONG;
  *out = strdup (v);
  return *out ? 0 : -ENOMEM;
}

static const char *
env_get (const char *name)
{
  const char *v = secure_getenv (name);
  return v && v[0] ? v : NULL;
}

static int
env_addressing (bool custom_endpoint, enum vmdr_s3_addressing *out)
{
  const char *v = secure_getenv ("VMDR_S3_ADDRESSING_STYLE");

  if (!v || !v[0])
    *out = custom_endpoint ? VMDR_S3_PATH_STYLE : VMDR_S3_VIRTUAL_HOST_STYLE;
  else if (strcmp (v, "path") == 0)
    *out = VMDR_S3_PATH_STYLE;
  else if (strcmp (v, "virtual") == 0)
    *out = VMDR_S3_VIRTUAL_HOST_STYLE;
  else
    return -EINVAL;
  return 0;
}

/* ---- the AWS shared files ------------------------------------------------ */

static bool
is_blank (char c)
{
  return c == ' ' || c == '\t' || c == '\r';
}

static void
trim_blanks (const char **s, const char **e)
{
  while (*s < *e && is_blank (**s))
    (*s)++;
  while (*e > *s && is_blank ((*e)[-1]))
    (*e)--;
}

static bool
span_is (const char *s, const char *e, const char *want)
{
  return (size_t) (e - s) == strlen (want) && memcmp (s, want, e - s) == 0;
}

int
s3_ini_get (const char *text, size_t len, const char *section,
            const char *name, char *out, size_t outsz)
{
  const char *p = text, *end = text + len;
  bool in = false;

  while (p < end) {
    const char *nl = memchr (p, '\n', end - p);
    const char *le = nl ? nl : end, *s = p, *e = le, *eq;

    p = nl ? nl + 1 : end;
    if (s < e && (*s == ' ' || *s == '\t'))
      continue;                         /* a sub-section's line */
    trim_blanks (&s, &e);
    if (s == e || *s == '#' || *s == ';')
      continue;
    if (*s == '[') {
      const char *cs = s + 1, *ce = e;
      if (ce[-1] != ']' || ce - 1 < cs)
        { in = false; continue; }
      ce--;
      trim_blanks (&cs, &ce);
      in = span_is (cs, ce, section);
      if (in && !name)
        return 1;
      continue;
    }
    if (!in || !name || !(eq = memchr (s, '=', e - s)))
      continue;
    {
      const char *ns = s, *ne = eq, *vs = eq + 1, *ve = e;
      trim_blanks (&ns, &ne);
      trim_blanks (&vs, &ve);
      if (!span_is (ns, ne, name))
        continue;
      if ((size_t) (ve - vs) >= outsz)
        return -ENAMETOOLONG;
      memcpy (out, vs, ve - vs);
      out[ve - vs] = '\0';
      return 1;
    }
  }
  return 0;
}

/* Read a whole shared file into *text (NUL-terminated, the caller wipes
 * and frees it); *text stays NULL when there is no such file. */
static int
read_shared_file (const char *path, char **text, size_t *len)
{
  _cleanup_close_ int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  struct stat sb;
  char *buf;
  size_t got = 0;

  *text = NULL;
  if (fd < 0)
    return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
  if (fstat (fd, &sb) < 0)
    return -errno;
  if (!S_ISREG (sb.st_mode))
    return S_ISDIR (sb.st_mode) ? -EISDIR : -EINVAL;
  if ((uint64_t) sb.st_size > S3_INI_FILE_MAX)
    return -EFBIG;
  if (!(buf = malloc ((size_t) sb.st_size + 1)))
    return -ENOMEM;
  while (got < (size_t) sb.st_size) {
    ssize_t n = read (fd, buf + got, (size_t) sb.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;                            /* shrank meanwhile: what we have */
    got += (size_t) n;
  }
  buf[got] = '\0';
  *text = buf;
  *len = got;
  return 0;
}

static void
wipe_text (char **text, size_t len)
{
  if (*text) {
    explicit_bzero (*text, len);
    free (*text);
    *text = NULL;
  }
}

/* One of the two shared files, read. */
struct shared_file {
  char path[4096];
  char *text;                   /* NULL: absent */
  size_t len;
  char section[160];            /* the profile's section in this file */
};

static int
shared_file_open (struct shared_file *f, const char *env, const char *home_rel,
                  const char *profile, bool config_file, char *why, size_t whysz)
{
  const char *v = env_get (env), *home = env_get ("HOME");
  int r, n;

  f->text = NULL;
  if (v)
    n = snprintf (f->path, sizeof f->path, "%s", v);
  else if (home)
    n = snprintf (f->path, sizeof f->path, "%s/%s", home, home_rel);
  else
    return 0;                           /* nowhere to look */
  if (n < 0 || (size_t) n >= sizeof f->path)
    r = -ENAMETOOLONG;
  else
    r = read_shared_file (f->path, &f->text, &f->len);
  if (r < 0) {
    if (why)
      snprintf (why, whysz, "cannot read the AWS %s file '%s': %s",
                config_file ? "config" : "credentials", f->path, strerror (-r));
    return r;
  }
  /* the config file names a profile "[profile NAME]", except "default" */
  snprintf (f->section, sizeof f->section, "%s%s",
            config_file && strcmp (profile, "default") != 0 ? "profile " : "", profile);
  if (config_file && f->text && !s3_ini_get (f->text, f->len, f->section, NULL, NULL, 0))
    snprintf (f->section, sizeof f->section, "%s", profile);
  return 0;
}

/* *out = the profile's NAME in F (a copy), left NULL when absent. */
static int
shared_get (const struct shared_file *f, const char *name, size_t max, char **out,
            char *why, size_t whysz)
{
  char *buf;
  int r;

  if (!f->text || *out)
    return 0;
  if (!(buf = malloc (max + 1)))
    return -ENOMEM;
  r = s3_ini_get (f->text, f->len, f->section, name, buf, max + 1);
  if (r <= 0 || !buf[0]) {
    explicit_bzero (buf, max + 1);
    free (buf);
    if (r == -ENAMETOOLONG && why)
      snprintf (why, whysz, "'%s' in '%s' is too long", name, f->path);
    return r < 0 ? r : 0;
  }
  *out = buf;
  return 0;
}

static bool
shared_has_profile (const struct shared_file *f)
{
  return f->text && s3_ini_get (f->text, f->len, f->section, NULL, NULL, 0) == 1;
}

int
vmdr_s3_config_load (struct vmdr_s3_config *cfg, char *why, size_t whysz)
{
  _cleanup_s3_config_ struct vmdr_s3_config c = { 0 };
  struct shared_file cred = { .text = NULL }, conf = { .text = NULL };
  const char *profile = env_get ("AWS_PROFILE");
  bool env_keys = env_get ("AWS_ACCESS_KEY_ID") && env_get ("AWS_SECRET_ACCESS_KEY");
  int r;

  if (why && whysz)
    why[0] = '\0';
  if (profile && (strlen (profile) > 128 || check_token (profile, 128) < 0)) {
    if (why)
      snprintf (why, whysz, "AWS_PROFILE is not a profile name");
    return -EINVAL;
  }
  if ((r = shared_file_open (&cred, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials",
                             profile ? profile : "default", false, why, whysz)) < 0)
    goto out;
  if ((r = shared_file_open (&conf, "AWS_CONFIG_FILE", ".aws/config",
                             profile ? profile : "default", true, why, whysz)) < 0)
    goto out;
  if (!env_keys && profile && !shared_has_profile (&cred) && !shared_has_profile (&conf)) {
    if (why)
      snprintf (why, whysz, "no profile '%s' in the AWS credentials or config file", profile);
    r = -ENOKEY;
    goto out;
  }

  if ((r = env_dup (&c.endpoint, S3_ENDPOINT_MAX, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")) < 0 ||
      (r = shared_get (&conf, "endpoint_url", S3_ENDPOINT_MAX, &c.endpoint, why, whysz)) < 0 ||
      (r = env_dup (&c.region, REGION_MAX, "AWS_REGION", "AWS_DEFAULT_REGION")) < 0 ||
      (r = shared_get (&conf, "region", REGION_MAX, &c.region, why, whysz)) < 0)
    goto out;
  if (env_keys) {
    if ((r = env_dup (&c.access_key_id, KEY_ID_MAX, "AWS_ACCESS_KEY_ID", NULL)) < 0 ||
        (r = env_dup (&c.secret_access_key, SECRET_MAX, "AWS_SECRET_ACCESS_KEY", NULL)) < 0 ||
        (r = env_dup (&c.session_token, TOKEN_MAX, "AWS_SESSION_TOKEN", NULL)) < 0)
      goto out;
  }
  else {
    /* the credentials file first, then the config file: one or the other,
     * never a key from one and a secret from the other */
    const struct shared_file *from[] = { &cred, &conf };
    for (size_t i = 0; i < 2 && !c.access_key_id; i++) {
      if ((r = shared_get (from[i], "aws_access_key_id", KEY_ID_MAX, &c.access_key_id, why, whysz)) < 0 ||
          (r = shared_get (from[i], "aws_secret_access_key", SECRET_MAX, &c.secret_access_key, why, whysz)) < 0 ||
          (r = shared_get (from[i], "aws_session_token", TOKEN_MAX, &c.session_token, why, whysz)) < 0)
        goto out;
      if (!c.access_key_id || !c.secret_access_key) {
        free (c.access_key_id);
        c.access_key_id = NULL;
        free_secret (&c.secret_access_key);
        free_secret (&c.session_token);
      }
    }
  }
  if ((r = env_addressing (c.endpoint != NULL, &c.addressing)) < 0) {
    if (why)
      snprintf (why, whysz, "VMDR_S3_ADDRESSING_STYLE must be 'path' or 'virtual'");
    goto out;
  }
  if (!c.region && !(c.region = strdup ("us-east-1"))) {
    r = -ENOMEM;
    goto out;
  }
  /* checked before it goes into a URL */
  if ((r = check_region (c.region)) < 0) {
    if (why)
      snprintf (why, whysz, "the region is not a region name");
    goto out;
  }
  if (!c.endpoint && asprintf (&c.endpoint, "https://s3.%s.amazonaws.com", c.region) < 0) {
    c.endpoint = NULL;
    r = -ENOMEM;
    goto out;
  }
  if ((r = vmdr_s3_config_check (&c)) < 0) {
    if (why && r == -ENOKEY)
      snprintf (why, whysz, "no S3 credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials");
    else if (why)
      snprintf (why, whysz, "bad S3 settings (endpoint, region, keys or addressing style)");
    goto out;
  }
  *cfg = c;
  memset (&c, 0, sizeof c);             /* handed over */
  r = 0;
 out:
  if (r < 0 && why && !why[0])
    snprintf (why, whysz, "bad S3 settings: %s", strerror (-r));
  wipe_text (&cred.text, cred.len);
  wipe_text (&conf.text, conf.len);
  return r;
}

int
vmdr_s3_config_from_env (struct vmdr_s3_config *cfg)
{
  return vmdr_s3_config_load (cfg, NULL, 0);
}

static int
config_copy (struct vmdr_s3_config *dst, const struct vmdr_s3_config *src)
{
  *dst = *src;
  dst->endpoint = strdup (src->endpoint);
  dst->region = strdup (src->region);
  dst->access_key_id = strdup (src->access_key_id);
  dst->secret_access_key = strdup (src->secret_access_key);
  dst->session_token = src->session_token ? strdup (src->session_token) : NULL;
  if (!dst->endpoint || !dst->region || !dst->access_key_id ||
      !dst->secret_access_key || (src->session_token && !dst->session_token)) {
    vmdr_s3_config_clear (dst);
    return -ENOMEM;
  }
  return 0;
}

/* ---- connection --------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

/* curl_global_init is not thread-safe in every libcurl build */
static void
curl_init_once (void)
{
  curl_init_result = curl_global_init (CURL_GLOBAL_DEFAULT);
}

struct vmdr_s3 *
vmdr_s3_close (struct vmdr_s3 *s3)
{
  if (s3) {
    if (s3->curl)
      curl_easy_cleanup (s3->curl);
    vmdr_s3_config_clear (&s3->cfg);
    free (s3);
  }
  return NULL;
}

DEFINE_CLEANUP_FUNC (struct vmdr_s3 *, vmdr_s3_close)
#define _cleanup_s3_ __attribute__((cleanup (vmdr_s3_closep)))

int
vmdr_s3_open (const struct vmdr_s3_config *cfg, struct vmdr_s3 **out)
{
  _cleanup_s3_ struct vmdr_s3 *s3 = NULL;
  int r;

  if ((r = vmdr_s3_config_check (cfg)) < 0)
    return r;
  pthread_once (&curl_once, curl_init_once);
  if (curl_init_result != CURLE_OK)
    return -EIO;
  if (!(s3 = calloc (1, sizeof *s3)))
    return -ENOMEM;
  if ((r = config_copy (&s3->cfg, cfg)) < 0)
    return r;
  if ((r = s3_endpoint_parse (s3->cfg.endpoint, &s3->ep)) < 0)
    return r;
  snprintf (s3->sigv4, sizeof s3->sigv4, "aws:amz:%s:s3", s3->cfg.region);
  if (!(s3->curl = curl_easy_init ()))
    return -EIO;
  *out = STEAL_PTR (s3);
  return 0;
}

/* ---- one transfer ------------------------------------------------------- */

/* State the libcurl callbacks share during one request. */
struct transfer {
  CURL *curl;
  const char *up;               /* request body */
  size_t up_len, up_pos;
  char *body;                   /* response body, NUL-terminated */
  size_t len, cap;
  size_t max_ok;                /* cap for a 2xx body */
  char *sink;                   /* the caller's buffer for a 2xx body */
  size_t sink_cap, sink_len;
  uint64_t seen;                /* 2xx bytes that arrived */
  uint64_t range_offset;        /* where the range starts, if one was asked */
  bool ranged;
  bool too_big, nomem;
  struct vmdr_s3_response *resp;
};

static size_t
read_cb (char *buf, size_t size, size_t nitems, void *opaque)
{
  struct transfer *x = opaque;
  size_t n = size * nitems, left = x->up_len - x->up_pos;

  if (n > left)
    n = left;
  memcpy (buf, x->up + x->up_pos, n);
  x->up_pos += n;
  return n;
}

/* libcurl rewinds the body when it resends on a connection the server had
 * closed meanwhile; without this the request would fail instead. */
static int
seek_cb (void *opaque, curl_off_t offset, int origin)
{
  struct transfer *x = opaque;

  if (origin != SEEK_SET || offset < 0 || (uint64_t) offset > x->up_len)
    return CURL_SEEKFUNC_CANTSEEK;
  x->up_pos = offset;
  return CURL_SEEKFUNC_OK;
}

static int
body_reserve (struct transfer *x, size_t need, size_t limit)
{
  size_t cap;
  char *p;

  if (need + 1 <= x->cap)
    return 0;
  cap = x->cap ? x->cap * 2 : 16384;
  if (x->cap == 0) {                  /* size it once when the length is known */
    curl_off_t cl = -1;
    curl_easy_getinfo (x->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl > 0 && (uint64_t) cl <= limit)
      cap = cl + 1;
  }
  if (cap < need + 1)
    cap = need + 1;
  if (cap > limit + 1)
    cap = limit + 1;
  if (!(p = realloc (x->body, cap)))
    return -ENOMEM;
  x->body = p;
  x->cap = cap;
  return 0;
}

/* A 2xx body into the caller's sink.  A server that ignored the Range
 * header answers 200 with the whole object: keep only the range's bytes. */
static size_t
sink_write (struct transfer *x, const char *data, size_t n, long http)
{
  uint64_t start = x->seen, end = x->seen + n;

  x->seen = end;
  if (x->ranged && http == 200) {
    uint64_t lo = x->range_offset + x->sink_len;      /* the next byte we want */
    uint64_t hi = x->range_offset + x->sink_cap;
    if (end > lo && start < hi && lo >= start) {
      size_t take = (size_t) ((end < hi ? end : hi) - lo);
      memcpy (x->sink + x->sink_len, data + (lo - start), take);
      x->sink_len += take;
    }
    return n;                           /* the rest is dropped */
  }
  if (n > x->sink_cap - x->sink_len) {
    x->too_big = true;
    return 0;
  }
  memcpy (x->sink + x->sink_len, data, n);
  x->sink_len += n;
  return n;
}

static size_t
write_cb (char *data, size_t size, size_t nmemb, void *opaque)
{
  struct transfer *x = opaque;
  size_t n = size * nmemb, limit;
  long http = 0;

  curl_easy_getinfo (x->curl, CURLINFO_RESPONSE_CODE, &http);
  if (x->sink && http / 100 == 2)
    return sink_write (x, data, n, http);
  limit = http / 100 == 2 ? x->max_ok : S3_ERROR_BODY_MAX;
  if (x->len > limit || n > limit - x->len) {
    x->too_big = true;
    return 0;                           /* makes curl stop: CURLE_WRITE_ERROR */
  }
  if (body_reserve (x, x->len + n, limit) < 0) {
    x->nomem = true;
    return 0;
  }
  memcpy (x->body + x->len, data, n);
  x->len += n;
  x->body[x->len] = '\0';
  return n;
}

/* Copy a header's value, trimmed (and unquoted for the ETag), if it fits. */
static void
header_value (const char *line, size_t n, size_t name_len, char *out, size_t outsz,
              bool unquote)
{
  const char *v = line + name_len, *e = line + n;

  while (v < e && (*v == ' ' || *v == '\t'))
    v++;
  while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
    e--;
  if (unquote && e - v >= 2 && *v == '"' && e[-1] == '"')
    v++, e--;
  if ((size_t) (e - v) < outsz) {
    memcpy (out, v, e - v);
    out[e - v] = '\0';
  }
}

static size_t
header_cb (char *line, size_t size, size_t nitems, void *opaque)
{
  struct transfer *x = opaque;
  size_t n = size * nitems;

  if (n >= 5 && memcmp (line, "HTTP/", 5) == 0) {   /* a new response (after 100) */
    x->resp->etag[0] = '\0';
    x->resp->status.request_id[0] = '\0';
  }
  else if (n > 5 && strncasecmp (line, "ETag:", 5) == 0)
    header_value (line, n, 5, x->resp->etag, sizeof x->resp->etag, true);
  else if (n > 17 && strncasecmp (line, "x-amz-request-id:", 17) == 0)
    header_value (line, n, 17, x->resp->status.request_id,
                  sizeof x->resp->status.request_id, false);
  return n;
}

/* ---- building a request ------------------------------------------------- */

static bool
is_method (const char *m, const char *want)
{
  return strcmp (m, want) == 0;
}

static int
check_request (const struct vmdr_s3_request *req)
{
  const char *m = req->method;
  bool has_body_method;
  size_t i;

  if (!m || !(is_method (m, "GET") || is_method (m, "HEAD") || is_method (m, "PUT") ||
              is_method (m, "POST") || is_method (m, "DELETE")))
    return -EINVAL;
  has_body_method = is_method (m, "PUT") || is_method (m, "POST");
  if ((req->body_len > 0 && (!req->body || !has_body_method)) ||
      req->max_body > VMDR_S3_BODY_HARD_MAX || (req->sink_cap > 0 && !req->sink))
    return -EINVAL;
  if ((req->bucket && vmdr_s3_check_bucket (req->bucket) < 0) ||
      (req->key && (!req->bucket || !req->key[0] || strlen (req->key) > VMDR_S3_KEY_MAX)))
    return -EINVAL;
  if (req->range && req->range->length > 0 &&
      req->range->length - 1 > UINT64_MAX - req->range->offset)
    return -EINVAL;
  for (i = 0; req->headers && req->headers[i]; i++)
    if (i == HEADERS_MAX || strpbrk (req->headers[i], "\r\n") ||
        !strchr (req->headers[i], ':') || strlen (req->headers[i]) >= HEADER_MAX)
      return -EINVAL;
  return 0;
}

/* Free a header list, wiping it first: it may carry the session token. */
static void
slist_wipe (struct curl_slist **l)
{
  for (struct curl_slist *i = *l; i; i = i->next)
    explicit_bzero (i->data, strlen (i->data));
  curl_slist_free_all (*l);
}

#define _cleanup_slist_ __attribute__((cleanup (slist_wipe)))

static int
add_header (struct curl_slist **l, const char *fmt, ...)
  __attribute__((format (printf, 2, 3)));

static int
add_header (struct curl_slist **l, const char *fmt, ...)
{
  char line[HEADER_MAX + 64];
  struct curl_slist *n;
  va_list ap;
  int len;

  va_start (ap, fmt);
  len = vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  n = len >= 0 && (size_t) len < sizeof line ? curl_slist_append (*l, line) : NULL;
  explicit_bzero (line, sizeof line);
  if (!n)
    return len < 0 || (size_t) len >= sizeof line ? -EINVAL : -ENOMEM;
  *l = n;
  return 0;
}

/* Hex SHA-256 of the payload: signed as x-amz-content-sha256, so the server
 * refuses a body damaged on the way. */
static int
payload_sha256 (const void *p, size_t n, char hex[65])
{
  static const char digits[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;

  if (!EVP_Digest (n ? p : "", n, md, &md_len, EVP_sha256 (), NULL) || md_len != 32)
    return -EIO;
  for (unsigned i = 0; i < 32; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[64] = '\0';
  return 0;
}

static int
build_headers (const struct vmdr_s3 *s3, const struct vmdr_s3_request *req,
               struct curl_slist **out)
{
  struct curl_slist *l = NULL;
  const struct vmdr_s3_range *rg = req->range;
  char sha[65];
  int r = 0;

  if (req->body_sha256 && (strlen (req->body_sha256) != 64 ||
                           strspn (req->body_sha256, "0123456789abcdef") != 64))
    return -EINVAL;
  if (req->body_sha256)
    snprintf (sha, sizeof sha, "%s", req->body_sha256);
  else
    r = payload_sha256 (req->body, req->body_len, sha);
  if (r < 0 || (r = add_header (&l, "x-amz-content-sha256: %s", sha)) < 0)
    goto fail;
  if (s3->cfg.session_token &&
      (r = add_header (&l, "x-amz-security-token: %s", s3->cfg.session_token)) < 0)
    goto fail;
  if (req->content_type && (r = add_header (&l, "Content-Type: %s", req->content_type)) < 0)
    goto fail;
  if (rg && rg->length > 0)
    r = add_header (&l, "Range: bytes=%" PRIu64 "-%" PRIu64, rg->offset,
                    rg->offset + rg->length - 1);
  else if (rg)
    r = add_header (&l, "Range: bytes=%" PRIu64 "-", rg->offset);
  for (size_t i = 0; r == 0 && req->headers && req->headers[i]; i++)
    r = add_header (&l, "%s", req->headers[i]);
  if (r < 0)
    goto fail;
  *out = l;
  return 0;
 fail:
  slist_wipe (&l);
  return r;
}

static int
build_url (const struct vmdr_s3 *s3, const struct vmdr_s3_request *req, char *url,
           size_t urlsz)
{
  _cleanup_free_ char *query = malloc (S3_QUERY_MAX);
  int r;

  if (!query)
    return -ENOMEM;
  r = vmdr_s3_canonical_query (req->params, req->n_params, query, S3_QUERY_MAX);
  if (r < 0)
    return r;
  r = s3_build_url (&s3->ep, s3->cfg.addressing, req->bucket, req->key, query, url, urlsz);
  return r < 0 ? r : 0;
}

#define SETOPT(h, opt, val) \
  do { if (curl_easy_setopt (h, opt, val) != CURLE_OK) return -EINVAL; } while (0)

static int
setup_method (CURL *h, const struct vmdr_s3_request *req, struct transfer *x)
{
  const char *m = req->method;

  if (is_method (m, "HEAD"))
    SETOPT (h, CURLOPT_NOBODY, 1L);
  else if (is_method (m, "GET"))
    SETOPT (h, CURLOPT_HTTPGET, 1L);
  else if (is_method (m, "DELETE"))
    SETOPT (h, CURLOPT_CUSTOMREQUEST, "DELETE");
  else {                              /* PUT, POST: send the body, even if empty */
    SETOPT (h, CURLOPT_UPLOAD, 1L);
    SETOPT (h, CURLOPT_INFILESIZE_LARGE, (curl_off_t) req->body_len);
    SETOPT (h, CURLOPT_READFUNCTION, read_cb);
    SETOPT (h, CURLOPT_READDATA, x);
    if (req->body_len > UPLOAD_BUFFER)
      SETOPT (h, CURLOPT_UPLOAD_BUFFERSIZE, (long) UPLOAD_BUFFER);
    SETOPT (h, CURLOPT_SEEKFUNCTION, seek_cb);
    SETOPT (h, CURLOPT_SEEKDATA, x);
    if (is_method (m, "POST"))
      SETOPT (h, CURLOPT_CUSTOMREQUEST, "POST");
  }
  return 0;
}

static int
setup_curl (struct vmdr_s3 *s3, const char *url, struct curl_slist *headers,
            struct transfer *x)
{
  CURL *h = s3->curl;
  long connect_ms = s3->cfg.connect_timeout_ms ? s3->cfg.connect_timeout_ms : 10000;
  long stall_s = s3->cfg.stall_timeout_s ? s3->cfg.stall_timeout_s : 60;

  /* reset drops the previous request's options but keeps the connection */
  curl_easy_reset (h);
  s3->errbuf[0] = '\0';
  SETOPT (h, CURLOPT_ERRORBUFFER, s3->errbuf);
  SETOPT (h, CURLOPT_URL, url);
  SETOPT (h, CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT (h, CURLOPT_PATH_AS_IS, 1L);   /* "a/../b" is a key, not a path to tidy */
  SETOPT (h, CURLOPT_NOSIGNAL, 1L);
  SETOPT (h, CURLOPT_TCP_KEEPALIVE, 1L);
  SETOPT (h, CURLOPT_USERAGENT, "vmdr/" PACKAGE_VERSION);
  SETOPT (h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  SETOPT (h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  SETOPT (h, CURLOPT_LOW_SPEED_TIME, stall_s);
  /* the credentials reach curl as options, never in a URL or argv */
  SETOPT (h, CURLOPT_AWS_SIGV4, s3->sigv4);
  SETOPT (h, CURLOPT_USERNAME, s3->cfg.access_key_id);
  SETOPT (h, CURLOPT_PASSWORD, s3->cfg.secret_access_key);
  SETOPT (h, CURLOPT_HTTPHEADER, headers);
  SETOPT (h, CURLOPT_WRITEFUNCTION, write_cb);
  SETOPT (h, CURLOPT_WRITEDATA, x);
  SETOPT (h, CURLOPT_HEADERFUNCTION, header_cb);
  SETOPT (h, CURLOPT_HEADERDATA, x);
  SETOPT (h, CURLOPT_FILETIME, 1L);     /* Last-Modified, parsed by curl */
  return 0;
}

static int
curl_errno (CURLcode cc)
{
  switch (cc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:  return -EHOSTUNREACH;
  case CURLE_COULDNT_CONNECT:        return -ECONNREFUSED;
  case CURLE_OPERATION_TIMEDOUT:     return -ETIMEDOUT;
  case CURLE_OUT_OF_MEMORY:          return -ENOMEM;
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:           return -ECONNRESET;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:     return -EPROTO;
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL:   return -EINVAL;
  default:                           return -EIO;
  }
}

int
s3_http_errno (long http, const char *code)
{
  switch (http) {
  case 401: case 403: return -EACCES;
  case 404:           return -ENOENT;
  case 416:           return -ERANGE;
  case 429: case 503: return -EAGAIN;
  case 409:
    if (strcmp (code, "BucketNotEmpty") == 0)
      return -ENOTEMPTY;
    if (strcmp (code, "BucketAlreadyExists") == 0 ||
        strcmp (code, "BucketAlreadyOwnedByYou") == 0)
      return -EEXIST;
    return -EIO;
  default:
    return http / 100 == 2 ? 0 : -EIO;
  }
}

/* Fill *resp from the finished transfer and decide the result. */
static int
finish (struct vmdr_s3 *s3, struct transfer *x, CURLcode cc,
        struct vmdr_s3_response *resp)
{
  long http = 0;
  curl_off_t cl = -1, mtime = -1;

  curl_easy_getinfo (s3->curl, CURLINFO_RESPONSE_CODE, &http);
  curl_easy_getinfo (s3->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  curl_easy_getinfo (s3->curl, CURLINFO_FILETIME_T, &mtime);
  resp->status.http = http;
  resp->content_length = cl;
  resp->last_modified = mtime;
  resp->body = STEAL_PTR (x->body);
  resp->body_len = x->sink && http / 100 == 2 ? x->sink_len : x->len;
  if (cc == CURLE_WRITE_ERROR && x->nomem)
    return -ENOMEM;
  if (cc == CURLE_WRITE_ERROR && x->too_big && http / 100 == 2)
    return -EFBIG;
  if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && x->too_big)) {
    snprintf (resp->status.message, sizeof resp->status.message, "%s",
              s3->errbuf[0] ? s3->errbuf : curl_easy_strerror (cc));
    return curl_errno (cc);
  }
  if (http / 100 == 2)
    return 0;
  if (resp->body)                       /* not every error has an S3 body */
    (void) s3_parse_error (resp->body, resp->body_len, &resp->status);
  return s3_http_errno (http, resp->status.code);
}

void
vmdr_s3_response_clear (struct vmdr_s3_response *resp)
{
  if (!resp)
    return;
  free (resp->body);
  memset (resp, 0, sizeof *resp);
}

int
vmdr_s3_request (struct vmdr_s3 *s3, const struct vmdr_s3_request *req,
                 struct vmdr_s3_response *resp)
{
  _cleanup_slist_ struct curl_slist *headers = NULL;
  _cleanup_free_ char *url = NULL;
  struct transfer x = { 0 };
  CURLcode cc;
  int r;

  if (!s3 || !req || !resp)
    return -EINVAL;
  vmdr_s3_response_clear (resp);
  resp->content_length = -1;
  resp->last_modified = -1;
  if ((r = check_request (req)) < 0)
    return r;
  if (!(url = malloc (S3_URL_MAX)))
    return -ENOMEM;
  if ((r = build_url (s3, req, url, S3_URL_MAX)) < 0 ||
      (r = build_headers (s3, req, &headers)) < 0)
    return r;
  x.curl = s3->curl;
  x.up = req->body;
  x.up_len = req->body_len;
  x.max_ok = req->max_body ? req->max_body : VMDR_S3_BODY_DEFAULT_MAX;
  x.sink = req->sink;
  x.sink_cap = req->sink_cap;
  x.ranged = req->range != NULL;
  x.range_offset = req->range ? req->range->offset : 0;
  x.resp = resp;
  if ((r = setup_curl (s3, url, headers, &x)) < 0 ||
      (r = setup_method (s3->curl, req, &x)) < 0)
    return r;
  cc = curl_easy_perform (s3->curl);
  r = finish (s3, &x, cc, resp);
  free (x.body);
  /* the handle must not keep pointers into this stack frame; the
   * connection survives the reset */
  curl_easy_reset (s3->curl);
  return r;
}

/* ---- simple operations -------------------------------------------------- */

#define _cleanup_response_ __attribute__((cleanup (vmdr_s3_response_clear)))

static int
report (int r, const struct vmdr_s3_response *resp, struct vmdr_s3_status *st)
{
  if (st)
    *st = resp->status;
  return r;
}

int
vmdr_s3_create_bucket (struct vmdr_s3 *s3, const char *bucket, struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  _cleanup_free_ char *body = NULL;
  struct vmdr_s3_request req = { .method = "PUT", .bucket = bucket };
  int len = 0;

  if (!s3 || !bucket)
    return -EINVAL;
  /* us-east-1 is the default location; any other must be named */
  if (strcmp (s3->cfg.region, "us-east-1") != 0) {
    len = asprintf (&body,
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                    s3->cfg.region);
    if (len < 0) {
      body = NULL;
      return -ENOMEM;
    }
    req.body = body;
    req.body_len = len;
    req.content_type = "application/xml";
  }
  return report (vmdr_s3_request (s3, &req, &resp), &resp, st);
}

int
vmdr_s3_delete_bucket (struct vmdr_s3 *s3, const char *bucket, struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_request req = { .method = "DELETE", .bucket = bucket };

  if (!bucket)
    return -EINVAL;
  return report (vmdr_s3_request (s3, &req, &resp), &resp, st);
}

int
vmdr_s3_put_object (struct vmdr_s3 *s3, const char *bucket, const char *key,
                    const void *data, size_t len, char *etag_out,
                    struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_request req = {
    .method = "PUT", .bucket = bucket, .key = key, .body = data, .body_len = len,
  };
  int r;

  if (!bucket || !key)
    return -EINVAL;
  r = vmdr_s3_request (s3, &req, &resp);
  if (r == 0 && etag_out)
    memcpy (etag_out, resp.etag, sizeof resp.etag);
  return report (r, &resp, st);
}

/* A server may ignore Range and send the whole object (RFC 9110 allows it):
 * cut the range out ourselves. */
static int
apply_range (struct vmdr_s3_response *resp, const struct vmdr_s3_range *rg)
{
  size_t n;

  if (rg->offset > resp->body_len)
    return -ERANGE;
  n = resp->body_len - rg->offset;
  if (rg->length > 0 && rg->length < n)
    n = rg->length;
  if (resp->body) {
    memmove (resp->body, resp->body + rg->offset, n);
    resp->body[n] = '\0';
  }
  resp->body_len = n;
  return 0;
}

int
vmdr_s3_get_object (struct vmdr_s3 *s3, const char *bucket, const char *key,
                    const struct vmdr_s3_range *range, size_t max,
                    void **data, size_t *len, struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_request req = {
    .method = "GET", .bucket = bucket, .key = key, .range = range, .max_body = max,
  };
  int r;

  if (!bucket || !key || !data || !len)
    return -EINVAL;
  r = vmdr_s3_request (s3, &req, &resp);
  if (r == 0 && range && resp.status.http == 200)
    r = apply_range (&resp, range);
  else if (r == 0 && range && range->length > 0 && resp.body_len > range->length)
    r = -EBADMSG;                       /* more than asked for */
  if (r == 0 && !resp.body && !(resp.body = calloc (1, 1)))
    r = -ENOMEM;
  if (r == 0) {
    *len = resp.body_len;
    *data = STEAL_PTR (resp.body);
  }
  return report (r, &resp, st);
}

int
vmdr_s3_head_object (struct vmdr_s3 *s3, const char *bucket, const char *key,
                     uint64_t *size, struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_request req = { .method = "HEAD", .bucket = bucket, .key = key };
  int r;

  if (!bucket || !key || !size)
    return -EINVAL;
  r = vmdr_s3_request (s3, &req, &resp);
  if (r == 0 && resp.content_length < 0)
    r = -EBADMSG;
  if (r == 0)
    *size = resp.content_length;
  return report (r, &resp, st);
}

int
vmdr_s3_delete_object (struct vmdr_s3 *s3, const char *bucket, const char *key,
                       struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_request req = { .method = "DELETE", .bucket = bucket, .key = key };

  if (!bucket || !key)
    return -EINVAL;
  return report (vmdr_s3_request (s3, &req, &resp), &resp, st);
}

/* ---- listing ------------------------------------------------------------ */

int
vmdr_s3_list_objects_v2 (struct vmdr_s3 *s3, const char *bucket,
                         const char *prefix, const char *token,
                         unsigned max_keys, struct vmdr_s3_list_page *page,
                         struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_param params[4] = { { "list-type", "2" } };
  struct vmdr_s3_request req = {
    .method = "GET", .bucket = bucket, .params = params, .n_params = 1,
    .max_body = VMDR_S3_LIST_BODY_MAX,
  };
  char max[16];
  int r;

  if (!bucket || !page || (prefix && strlen (prefix) > VMDR_S3_KEY_MAX) ||
      (token && strlen (token) > S3_TOKEN_MAX))
    return -EINVAL;
  if (prefix && prefix[0])
    params[req.n_params++] = (struct vmdr_s3_param) { "prefix", prefix };
  if (token)
    params[req.n_params++] = (struct vmdr_s3_param) { "continuation-token", token };
  if (max_keys) {
    snprintf (max, sizeof max, "%u",
              max_keys > VMDR_S3_LIST_MAX_KEYS ? VMDR_S3_LIST_MAX_KEYS : max_keys);
    params[req.n_params++] = (struct vmdr_s3_param) { "max-keys", max };
  }
  r = vmdr_s3_request (s3, &req, &resp);
  if (r == 0)
    r = s3_parse_list (resp.body ? resp.body : "", resp.body_len, page);
  return report (r, &resp, st);
}

/* Hand every object of one page to fn. */
static int
list_visit (const struct vmdr_s3_list_page *pg, vmdr_s3_list_fn fn, void *opaque)
{
  for (size_t i = 0; i < pg->n_objects; i++) {
    int r = fn (&pg->objects[i], opaque);
    if (r)
      return r;
  }
  return 0;
}

int
vmdr_s3_list_objects (struct vmdr_s3 *s3, const char *bucket,
                      const char *prefix, unsigned page_size,
                      vmdr_s3_list_fn fn, void *opaque, size_t *pages,
                      struct vmdr_s3_status *st)
{
  _cleanup_free_ char *token = NULL;
  size_t n = 0;
  int r;

  if (!fn)
    return -EINVAL;
  for (;;) {
    __attribute__((cleanup (vmdr_s3_list_page_clear))) struct vmdr_s3_list_page pg = { 0 };

    r = vmdr_s3_list_objects_v2 (s3, bucket, prefix, token, page_size, &pg, st);
    if (r < 0)
      break;
    n++;
    if ((r = list_visit (&pg, fn, opaque)) != 0 || !pg.truncated)
      break;
    if (token && strcmp (token, pg.next_token) == 0) {
      r = -EBADMSG;                     /* the server would have us loop */
      break;
    }
    free (token);
    token = STEAL_PTR (pg.next_token);
  }
  if (pages)
    *pages = n;
  return r;
}

void
vmdr_s3_status_describe (const struct vmdr_s3_status *st, char *out, size_t outsz)
{
  if (outsz == 0)
    return;
  if (!st || (st->http == 0 && !st->message[0]))
    snprintf (out, outsz, "no answer from the server");
  else if (st->http == 0)
    snprintf (out, outsz, "%s", st->message);
  else
    snprintf (out, outsz, "HTTP %ld%s%s%s%s", st->http,
              st->code[0] ? " " : "", st->code,
              st->message[0] ? ": " : "", st->message);
}

/* ---- multipart upload ----------------------------------------------------- */

int
vmdr_s3_create_multipart (struct vmdr_s3 *s3, const char *bucket, const char *key,
                          char **upload_id, struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  const struct vmdr_s3_param params[] = { { "uploads", NULL } };
  struct vmdr_s3_request req = {
    .method = "POST", .bucket = bucket, .key = key, .params = params, .n_params = 1,
  };
  int r;

  if (!bucket || !key || !upload_id)
    return -EINVAL;
  r = vmdr_s3_request (s3, &req, &resp);
  if (r == 0)
    r = s3_parse_upload_id (resp.body ? resp.body : "", resp.body_len, upload_id);
  return report (r, &resp, st);
}

int
vmdr_s3_upload_part (struct vmdr_s3 *s3, const char *bucket, const char *key,
                     const char *upload_id, unsigned number, const void *data,
                     size_t len, char *etag_out, struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  char num[16];
  const struct vmdr_s3_param params[] = {
    { "partNumber", num }, { "uploadId", upload_id },
  };
  struct vmdr_s3_request req = {
    .method = "PUT", .bucket = bucket, .key = key, .params = params, .n_params = 2,
    .body = data, .body_len = len,
  };
  int r;

  if (!bucket || !key || !upload_id || !etag_out || number < 1 ||
      number > VMDR_S3_PARTS_MAX)
    return -EINVAL;
  snprintf (num, sizeof num, "%u", number);
  r = vmdr_s3_request (s3, &req, &resp);
  if (r == 0 && !resp.etag[0])
    r = -EBADMSG;
  if (r == 0)
    memcpy (etag_out, resp.etag, sizeof resp.etag);
  return report (r, &resp, st);
}

/* An ETag from the server goes back inside XML: refuse what would need
 * escaping rather than escape it. */
static bool
etag_plain (const char *e)
{
  return e[0] && strcspn (e, "<>&\"'") == strlen (e);
}

int
vmdr_s3_complete_multipart (struct vmdr_s3 *s3, const char *bucket, const char *key,
                            const char *upload_id, char (*etags)[128], size_t n,
                            const char *const *headers, char *etag_out,
                            struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  _cleanup_free_ char *body = NULL;
  const struct vmdr_s3_param params[] = { { "uploadId", upload_id } };
  struct vmdr_s3_request req = {
    .method = "POST", .bucket = bucket, .key = key, .params = params, .n_params = 1,
    .content_type = "application/xml", .headers = headers,
  };
  struct s3_buf b;
  size_t cap;
  char etag[128];
  int r;

  if (!bucket || !key || !upload_id || !etags || n < 1 || n > VMDR_S3_PARTS_MAX)
    return -EINVAL;
  cap = 128 + n * (128 + 64);
  if (!(body = malloc (cap)))
    return -ENOMEM;
  s3_buf_init (&b, body, cap);
  s3_buf_adds (&b, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
  for (size_t i = 0; i < n; i++) {
    char part[128 + 64];
    if (!etag_plain (etags[i]) || strnlen (etags[i], 128) == 128)
      return -EINVAL;
    snprintf (part, sizeof part, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>",
              i + 1, etags[i]);
    s3_buf_adds (&b, part);
  }
  s3_buf_adds (&b, "</CompleteMultipartUpload>");
  if (b.overflow)
    return -ENOMEM;
  req.body = body;
  req.body_len = b.len;
  r = vmdr_s3_request (s3, &req, &resp);
  if (r == 0) {
    r = s3_parse_complete (resp.body ? resp.body : "", resp.body_len, etag, &resp.status);
    if (r == 1) {                       /* 200 and an <Error>: failed late */
      const char *c = resp.status.code;
      r = strcmp (c, "InternalError") == 0 || strcmp (c, "SlowDown") == 0 ||
          strcmp (c, "ServiceUnavailable") == 0 ? -EAGAIN : -EIO;
    }
  }
  if (r == 0 && etag_out)
    memcpy (etag_out, etag, sizeof etag);
  return report (r, &resp, st);
}

int
vmdr_s3_abort_multipart (struct vmdr_s3 *s3, const char *bucket, const char *key,
                         const char *upload_id, struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  const struct vmdr_s3_param params[] = { { "uploadId", upload_id } };
  struct vmdr_s3_request req = {
    .method = "DELETE", .bucket = bucket, .key = key, .params = params, .n_params = 1,
  };

  if (!bucket || !key || !upload_id)
    return -EINVAL;
  return report (vmdr_s3_request (s3, &req, &resp), &resp, st);
}

int
vmdr_s3_list_multipart_uploads (struct vmdr_s3 *s3, const char *bucket,
                                const char *prefix, const char *key_marker,
                                const char *upload_id_marker,
                                struct vmdr_s3_upload_page *page,
                                struct vmdr_s3_status *st)
{
  _cleanup_response_ struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_param params[4] = { { "uploads", NULL } };
  struct vmdr_s3_request req = {
    .method = "GET", .bucket = bucket, .params = params, .n_params = 1,
    .max_body = VMDR_S3_LIST_BODY_MAX,
  };
  int r;

  if (!bucket || !page || (prefix && strlen (prefix) > VMDR_S3_KEY_MAX) ||
      (key_marker && strlen (key_marker) > VMDR_S3_KEY_MAX) ||
      (upload_id_marker && strlen (upload_id_marker) > VMDR_S3_UPLOAD_ID_MAX))
    return -EINVAL;
  if (prefix && prefix[0])
    params[req.n_params++] = (struct vmdr_s3_param) { "prefix", prefix };
  if (key_marker)
    params[req.n_params++] = (struct vmdr_s3_param) { "key-marker", key_marker };
  if (upload_id_marker)
    params[req.n_params++] = (struct vmdr_s3_param) { "upload-id-marker", upload_id_marker };
  r = vmdr_s3_request (s3, &req, &resp);
  if (r == 0)
    r = s3_parse_uploads (resp.body ? resp.body : "", resp.body_len, page);
  return report (r, &resp, st);
}
