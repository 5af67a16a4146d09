/* The S3 backend: a repository under s3://BUCKET[/PREFIX], one object per
 * key (PREFIX/KEY), over the S3 client of s3.h.
 *
 * - Connections: a bounded pool of struct vmdr_s3 (one libcurl handle and
 *   its kept-alive connection each); a call takes one for each request and
 *   gives it back, so the restore workers and the pack flusher each get
 *   their own, and the connections outlive the calls.
 * - Retries: a request that fails for a reason that may pass (429 and 503
 *   SlowDown, other 5xx, timeouts, resets, refused connections) is sent
 *   again after an exponential backoff with full jitter, within a bound of
 *   attempts and of seconds (s3_retry_from_env).  What still fails fails
 *   the call with the errno, and the server's words are kept for the
 *   caller's message (vmdr_backend_error, describe_error).
 * - Atomicity: S3 shows an object whole or not at all.  A single PUT is
 *   atomic; a large object goes up as a multipart upload, invisible until
 *   its complete, and aborted on failure.  Nothing temporary is ever
 *   visible; uploads left by a writer that died are aborted by sweep_temp.
 * - Exclusive puts: see s3b_put_exclusive.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"
#include "backend.h"
#include "cleanup.h"
#include "s3-internal.h"
#include "size.h"

#define POOL_MAX        64              /* connections; callers beyond wait */
#define ERROR_TEXT_MAX  400
#define MULTIPART_THRESHOLD_DEFAULT (64ull << 20)
#define PART_SIZE_DEFAULT           (16ull << 20)

struct s3b {
  struct vmdr_backend base;     /* first: the ops see a struct vmdr_backend */
  struct vmdr_s3_config cfg;    /* the pool's connections are opened from it */
  char bucket[VMDR_S3_BUCKET_MAX + 1];
  char prefix[S3_PREFIX_MAX + 2];       /* "" or "PREFIX/" */
  size_t prefix_len;
  struct s3_retry retry;
  uint64_t multipart_threshold; /* objects this large go up in parts */
  uint64_t part_size;

  pthread_mutex_t lock;         /* the pool and last_error */
  pthread_cond_t idle_cond;
  struct vmdr_s3 *idle[POOL_MAX];
  size_t n_idle, n_open;
  char last_error[ERROR_TEXT_MAX];      /* "" when none */
  bool no_if_none_match;        /* the server refused the header (501) */
};

static struct s3b *
to_s3b (struct vmdr_backend *b)
{
  return (struct s3b *) b;
}

/* ---- pure parts: the address, the retry policy ------------------------- */

int
s3_location_parse (const char *location, char *bucket, char *prefix)
{
  const char *slash = strchr (location, '/');
  size_t blen = slash ? (size_t) (slash - location) : strlen (location);
  char b[VMDR_S3_BUCKET_MAX + 1], p[S3_PREFIX_MAX + 2];
  const char *ps;
  size_t plen;

  if (blen > VMDR_S3_BUCKET_MAX)
    return -EINVAL;
  memcpy (b, location, blen);
  b[blen] = '\0';
  if (vmdr_s3_check_bucket (b) < 0)
    return -EINVAL;
  ps = slash ? slash + 1 : "";
  plen = strlen (ps);
  if (plen > 0 && ps[plen - 1] == '/')          /* "BUCKET/p/" is "BUCKET/p" */
    plen--;
  if (plen > S3_PREFIX_MAX)
    return -EINVAL;
  memcpy (p, ps, plen);
  p[plen] = '\0';
  if (plen > 0 && !vmdr_key_valid (p))
    return -EINVAL;
  if (plen > 0) {
    p[plen] = '/';
    p[plen + 1] = '\0';
  }
  memcpy (bucket, b, blen + 1);
  memcpy (prefix, p, strlen (p) + 1);
  return 0;
}

int
s3_retry_from_env (struct s3_retry *out, const char **name)
{
  struct s3_retry r = {
    .attempts = S3_RETRY_ATTEMPTS_DEFAULT,
    .seconds = S3_RETRY_SECONDS_DEFAULT,
    .refused_seconds = S3_RETRY_REFUSED_DEFAULT,
    .base_ms = S3_RETRY_BASE_MS,
    .cap_ms = S3_RETRY_CAP_MS,
  };
  const char *v;
  char *end;

  if ((v = secure_getenv ("VMDR_S3_RETRY_MAX")) && v[0]) {
    unsigned long n;
    errno = 0;
    n = strtoul (v, &end, 10);
    if (errno || *end || v[0] == '-' || n < 1 || n > 100) {
      *name = "VMDR_S3_RETRY_MAX";
      return -EINVAL;
    }
    r.attempts = (unsigned) n;
  }
  if ((v = secure_getenv ("VMDR_S3_RETRY_SECONDS")) && v[0]) {
    double d;
    errno = 0;
    d = strtod (v, &end);
    if (errno || *end || !(d >= 0 && d <= 86400)) {
      *name = "VMDR_S3_RETRY_SECONDS";
      return -EINVAL;
    }
    r.seconds = d;
  }
  if (r.refused_seconds > r.seconds)
    r.refused_seconds = r.seconds;
  *out = r;
  return 0;
}

unsigned
s3_backoff_ms (const struct s3_retry *r, unsigned n, uint64_t rnd)
{
  uint64_t ceiling = r->base_ms;

  for (unsigned i = 0; i < n && ceiling < r->cap_ms; i++)
    ceiling *= 2;
  if (ceiling > r->cap_ms)
    ceiling = r->cap_ms;
  return (unsigned) (rnd % (ceiling + 1));
}

bool
s3_retry_refused (int err)
{
  return err == -ECONNREFUSED || err == -EHOSTUNREACH;
}

bool
s3_retryable (int err, const struct vmdr_s3_status *st)
{
  switch (err) {
  case -EAGAIN:                 /* 429, 503 SlowDown */
  case -ETIMEDOUT:
  case -ECONNRESET:
  case -ECONNREFUSED:
  case -EHOSTUNREACH:
  case -EBADMSG:                /* a 2xx answer cut short or garbled */
    return true;
  case -EIO:                    /* 501: the server lacks it, for good */
    return (st->http / 100 == 5 && st->http != 501) || st->http == 408 ||
           (st->http == 409 && strcmp (st->code, "ConditionalRequestConflict") == 0);
  default:
    return false;
  }
}

/* ---- errors for the caller's message ------------------------------------ */

/* Keep the text of a call that failed for good: for this thread
 * (vmdr_backend_error) and, unless the errno says it all (an absent key),
 * for the backend (describe_error). */
static int
fail (struct s3b *s, int r, const struct vmdr_s3_status *st, unsigned attempts,
      double seconds)
{
  char text[ERROR_TEXT_MAX];
  size_t n;

  /* a 2xx that we refused (too large, garbled): the errno says more */
  if (st && st->http / 100 != 2 && (st->http || st->message[0]))
    vmdr_s3_status_describe (st, text, sizeof text);
  else
    snprintf (text, sizeof text, "%s", strerror (-r));
  n = strlen (text);
  if (attempts > 1 && n < sizeof text)
    snprintf (text + n, sizeof text - n, " (gave up after %u attempts in %.1f s)",
              attempts, seconds);
  vmdr_backend_set_error ("%s", text);
  if (!(r == -ENOENT && !(st && strcmp (st->code, "NoSuchBucket") == 0)) &&
      r != -EEXIST && r != -ERANGE) {
    pthread_mutex_lock (&s->lock);
    snprintf (s->last_error, sizeof s->last_error, "%s", text);
    pthread_mutex_unlock (&s->lock);
  }
  return r;
}

static bool
s3b_describe_error (struct vmdr_backend *b, char *buf, size_t size)
{
  struct s3b *s = to_s3b (b);
  bool any;

  if (size == 0)
    return false;
  pthread_mutex_lock (&s->lock);
  any = s->last_error[0] != '\0';
  snprintf (buf, size, "%s", s->last_error);
  pthread_mutex_unlock (&s->lock);
  return any;
}

/* ---- the connection pool ---------------------------------------------- */

static int
pool_get (struct s3b *s, struct vmdr_s3 **out)
{
  int r;

  pthread_mutex_lock (&s->lock);
  while (s->n_idle == 0 && s->n_open == POOL_MAX)
    pthread_cond_wait (&s->idle_cond, &s->lock);
  if (s->n_idle > 0) {
    *out = s->idle[--s->n_idle];        /* the most recently used: still warm */
    pthread_mutex_unlock (&s->lock);
    return 0;
  }
  s->n_open++;
  pthread_mutex_unlock (&s->lock);
  if ((r = vmdr_s3_open (&s->cfg, out)) < 0) {
    pthread_mutex_lock (&s->lock);
    s->n_open--;
    pthread_cond_signal (&s->idle_cond);
    pthread_mutex_unlock (&s->lock);
  }
  return r;
}

static void
pool_put (struct s3b *s, struct vmdr_s3 *c)
{
  pthread_mutex_lock (&s->lock);
  s->idle[s->n_idle++] = c;
  pthread_cond_signal (&s->idle_cond);
  pthread_mutex_unlock (&s->lock);
}

/* ---- one request, tried again while it may succeed ---------------------- */

/* One try of a request on connection C; fills *st (zeroed beforehand). */
typedef int (*attempt_fn) (struct s3b *s, struct vmdr_s3 *c, void *ctx,
                           struct vmdr_s3_status *st);

static uint64_t
random64 (void)
{
  uint64_t v;
  struct timespec ts;

  if (getrandom (&v, sizeof v, GRND_NONBLOCK) == (ssize_t) sizeof v)
    return v;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_nsec * 0x9e3779b97f4a7c15ull;
}

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };

  while (nanosleep (&ts, &ts) < 0 && errno == EINTR)
    ;
}

struct call_result {
  unsigned attempts;
  double seconds;
};

/* Run FN until it succeeds, fails for good, or the bounds are reached.
 * *st is the last try's status; *res (may be NULL) how it went. */
static int
call (struct s3b *s, attempt_fn fn, void *ctx, struct vmdr_s3_status *st,
      struct call_result *res)
{
  struct call_result cr = { 0 };
  double start = vmdr_mono_seconds ();
  struct vmdr_s3 *c;
  int r;

  for (;;) {
    double budget;
    unsigned delay;

    memset (st, 0, sizeof *st);
    if ((r = pool_get (s, &c)) < 0)
      break;
    r = fn (s, c, ctx, st);
    pool_put (s, c);
    cr.attempts++;
    if (r >= 0 || !s3_retryable (r, st))
      break;
    if (cr.attempts >= s->retry.attempts)
      break;
    delay = s3_backoff_ms (&s->retry, cr.attempts - 1, random64 ());
    budget = s3_retry_refused (r) ? s->retry.refused_seconds : s->retry.seconds;
    if (vmdr_mono_seconds () - start + delay / 1000.0 > budget)
      break;
    sleep_ms (delay);
  }
  cr.seconds = vmdr_mono_seconds () - start;
  if (res)
    *res = cr;
  return r;
}

/* PREFIX/KEY into out (VMDR_S3_KEY_MAX + 1 bytes): -EINVAL for a bad key. */
static int
full_key (const struct s3b *s, const char *key, char *out)
{
  if (!vmdr_key_valid (key))
    return -EINVAL;
  snprintf (out, VMDR_S3_KEY_MAX + 1, "%s%s", s->prefix, key);
  return 0;
}

/* ---- open and close ------------------------------------------------------ */

static int
probe_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct vmdr_s3_list_page page = { 0 };
  int r = vmdr_s3_list_objects_v2 (c, s->bucket, s->prefix, NULL, 1, &page, st);

  (void) ctx;

  vmdr_s3_list_page_clear (&page);
  return r;
}

static void s3b_close (struct vmdr_backend *b);

static int
env_size (const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
  const char *v = secure_getenv (name);
  uint64_t n;

  if (!v || !v[0])
    return 0;
  if (vmdr_parse_size (v, max, &n) < 0 || n < min) {
    vmdr_backend_set_error ("invalid %s (a size from %" PRIu64 " to %" PRIu64 ")",
                            name, min, max);
    return -EINVAL;
  }
  *out = n;
  return 0;
}

static int
s3b_open (const char *location, struct vmdr_backend **out)
{
  struct s3b *s;
  struct vmdr_s3_status st;
  struct call_result cr;
  char why[ERROR_TEXT_MAX];
  const char *bad = NULL;
  int r;

  if (!(s = calloc (1, sizeof *s)))
    return -ENOMEM;
  s->base.ops = &vmdr_backend_s3;
  pthread_mutex_init (&s->lock, NULL);
  pthread_cond_init (&s->idle_cond, NULL);
  s->multipart_threshold = MULTIPART_THRESHOLD_DEFAULT;
  s->part_size = PART_SIZE_DEFAULT;
  if (s3_location_parse (location, s->bucket, s->prefix) < 0) {
    vmdr_backend_set_error ("not an S3 repository address: s3://BUCKET[/PREFIX] "
                            "with a valid bucket name and prefix");
    r = -EINVAL;
    goto err;
  }
  s->prefix_len = strlen (s->prefix);
  if ((r = vmdr_s3_config_load (&s->cfg, why, sizeof why)) < 0) {
    vmdr_backend_set_error ("%s", why);
    goto err;
  }
  if ((r = s3_retry_from_env (&s->retry, &bad)) < 0) {
    vmdr_backend_set_error ("invalid %s", bad);
    goto err;
  }
  if ((r = env_size ("VMDR_S3_MULTIPART_THRESHOLD", 1, 5ull << 30,
                     &s->multipart_threshold)) < 0 ||
      (r = env_size ("VMDR_S3_PART_SIZE", VMDR_S3_PART_MIN, 5ull << 30,
                     &s->part_size)) < 0)
    goto err;
  /* One small listing: the bucket exists, the credentials work, the
   * endpoint answers; each failure gets its own words now rather than a
   * puzzling one later ("not a repository" for a missing bucket). */
  if ((r = call (s, probe_attempt, NULL, &st, &cr)) < 0) {
    fail (s, r, &st, cr.attempts, cr.seconds);
    goto err;
  }
  vmdr_backend_set_error (NULL);
  *out = &s->base;
  return 0;
 err:
  s3b_close (&s->base);
  return r;
}

static void
s3b_close (struct vmdr_backend *b)
{
  struct s3b *s = to_s3b (b);

  if (!s)
    return;
  for (size_t i = 0; i < s->n_idle; i++)
    vmdr_s3_close (s->idle[i]);
  vmdr_s3_config_clear (&s->cfg);       /* wipes the secret */
  pthread_cond_destroy (&s->idle_cond);
  pthread_mutex_destroy (&s->lock);
  free (s);
}

/* ---- put ----------------------------------------------------------------- */

struct put_ctx {
  const char *key;              /* the full key */
  const void *data;
  size_t len;
  const char *const *headers;
  const char *sha256;           /* of data, in hex, when known; NULL */
  /* multipart */
  char *upload_id;
  unsigned part;                /* 1-based */
  size_t part_size, n_parts;
  char (*etags)[128];
};

static int
put_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct put_ctx *p = ctx;
  struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_request req = {
    .method = "PUT", .bucket = s->bucket, .key = p->key, .body = p->data,
    .body_len = p->len, .headers = p->headers, .body_sha256 = p->sha256,
  };
  int r;

  r = vmdr_s3_request (c, &req, &resp);
  *st = resp.status;
  vmdr_s3_response_clear (&resp);
  return r;
}

struct head_ctx {
  const char *key;              /* full */
  int64_t size, mtime;
  char etag[128];
};

static int
head_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct head_ctx *h = ctx;
  struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_request req = { .method = "HEAD", .bucket = s->bucket, .key = h->key };
  int r;

  r = vmdr_s3_request (c, &req, &resp);
  *st = resp.status;
  h->size = resp.content_length;
  h->mtime = resp.last_modified;
  memcpy (h->etag, resp.etag, sizeof h->etag);
  vmdr_s3_response_clear (&resp);
  return r;
}

/* HEAD of a full key: 0 and its size, mtime and ETag, or -errno. */
static int
s3b_head (struct s3b *s, const char *key, uint64_t *size, time_t *mtime, char *etag,
          struct vmdr_s3_status *st, struct call_result *cr)
{
  struct head_ctx h = { .key = key };
  int r = call (s, head_attempt, &h, st, cr);

  if (r == 0 && h.size < 0)
    r = -EBADMSG;
  if (r < 0)
    return r;
  *size = (uint64_t) h.size;
  /* no Last-Modified: say "now", so that GC takes it for young */
  *mtime = h.mtime >= 0 ? (time_t) h.mtime : time (NULL);
  if (etag)
    memcpy (etag, h.etag, sizeof h.etag);
  return 0;
}

static int
mp_init_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct put_ctx *p = ctx;

  free (p->upload_id);
  p->upload_id = NULL;
  return vmdr_s3_create_multipart (c, s->bucket, p->key, &p->upload_id, st);
}

static int
mp_part_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct put_ctx *p = ctx;
  size_t off = (size_t) (p->part - 1) * p->part_size;
  size_t n = p->len - off < p->part_size ? p->len - off : p->part_size;

  return vmdr_s3_upload_part (c, s->bucket, p->key, p->upload_id, p->part,
                              (const char *) p->data + off, n, p->etags[p->part - 1], st);
}

static int
mp_complete_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct put_ctx *p = ctx;

  return vmdr_s3_complete_multipart (c, s->bucket, p->key, p->upload_id, p->etags,
                                     p->n_parts, p->headers, NULL, st);
}

static int
mp_abort_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct put_ctx *p = ctx;

  return vmdr_s3_abort_multipart (c, s->bucket, p->key, p->upload_id, st);
}

/* Did a complete whose answer we lost take effect?  The object is there
 * with our size and a multipart ETag ("...-N"). */
static bool
completed_meanwhile (struct s3b *s, struct put_ctx *p)
{
  struct vmdr_s3_status st;
  char etag[128], suffix[16];
  uint64_t size;
  time_t mtime;
  size_t n;

  if (s3b_head (s, p->key, &size, &mtime, etag, &st, NULL) < 0 || size != p->len)
    return false;
  snprintf (suffix, sizeof suffix, "-%zu", p->n_parts);
  n = strlen (etag);
  return n > strlen (suffix) && strcmp (etag + n - strlen (suffix), suffix) == 0;
}

/* Parts of the multipart upload of P: at least part_size, and few enough
 * for S3's 10000; a multiple of 1 MiB. */
static size_t
part_size_for (const struct s3b *s, size_t len)
{
  uint64_t ps = s->part_size;
  uint64_t need = (len + VMDR_S3_PARTS_MAX - 1) / VMDR_S3_PARTS_MAX;

  if (ps < need)
    ps = (need + (1u << 20) - 1) & ~(uint64_t) ((1u << 20) - 1);
  return (size_t) ps;
}

static int
put_multipart (struct s3b *s, struct put_ctx *p, struct vmdr_s3_status *st,
               struct call_result *cr)
{
  struct vmdr_s3_status ast;
  int r;

  p->part_size = part_size_for (s, p->len);
  p->n_parts = (p->len + p->part_size - 1) / p->part_size;
  if (p->n_parts == 0)
    p->n_parts = 1;
  if (!(p->etags = calloc (p->n_parts, sizeof *p->etags)))
    return -ENOMEM;
  if ((r = call (s, mp_init_attempt, p, st, cr)) < 0)
    goto out;
  for (p->part = 1; p->part <= p->n_parts; p->part++)
    if ((r = call (s, mp_part_attempt, p, st, cr)) < 0)
      goto abort;
  r = call (s, mp_complete_attempt, p, st, cr);
  /* A complete that worked but whose answer was lost, and that was sent
   * again (by our retry, or by libcurl itself: it resends a request whose
   * reused connection closed before any answer): NoSuchUpload now. */
  if (r == -ENOENT && completed_meanwhile (s, p))
    r = 0;
  if (r == 0 || r == -ENOENT)
    goto out;
 abort:
  /* best effort: what stays behind is invisible, and sweep_temp takes it */
  (void) call (s, mp_abort_attempt, p, &ast, NULL);
 out:
  free (p->etags);
  p->etags = NULL;
  free (p->upload_id);
  p->upload_id = NULL;
  return r;
}

/* One put of P as a single PUT or in parts. */
static int
put_once (struct s3b *s, struct put_ctx *p, struct vmdr_s3_status *st,
          struct call_result *cr)
{
  if (p->len >= s->multipart_threshold && p->len > VMDR_S3_PART_MIN)
    return put_multipart (s, p, st, cr);
  return call (s, put_attempt, p, st, cr);
}

static int
get_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st);

struct get_ctx {
  const char *key;
  struct vmdr_s3_range range;
  bool ranged;
  size_t max;
  void *data;
  size_t len;
};

/* After an exclusive put was refused: is the object the one we sent?  Then
 * an earlier try of ours stored it and its answer was lost (our retry, or
 * libcurl's own resend of a request whose reused connection closed before
 * any answer: we cannot know which try it was).  No other writer puts the
 * same bytes: a lock names its holder's pid and time, a manifest its
 * snapshot, a config its random id. */
static bool
stored_by_us (struct s3b *s, const struct put_ctx *p)
{
  struct get_ctx g = { .key = p->key, .max = p->len + 1 };
  struct vmdr_s3_status st;
  bool same;

  if (call (s, get_attempt, &g, &st, NULL) < 0)
    return false;
  same = g.len == p->len && (p->len == 0 || memcmp (g.data, p->data, p->len) == 0);
  free (g.data);
  return same;
}

/* S3 has no create-if-absent that every server honours.  We send
 * "If-None-Match: *" (AWS since 2024, and radosgw 16 here answers 412
 * PreconditionFailed when the key exists: that closes the race), and since
 * a server may ignore the header, ask first with a HEAD.  On a server that
 * ignores it two writers that both see the key absent between their HEAD
 * and their PUT both succeed, and the later PUT wins: exclusive puts (the
 * config, manifests, locks) are then only as exclusive as that window is
 * short.  docs/repository-format.md, section 1, says so too. */
static int
s3b_put_exclusive (struct s3b *s, struct put_ctx *p, struct vmdr_s3_status *st,
                   struct call_result *cr)
{
  static const char *const if_none_match[] = { "If-None-Match: *", NULL };
  uint64_t size;
  time_t mtime;
  int r;

  r = s3b_head (s, p->key, &size, &mtime, NULL, st, cr);
  if (r == 0)
    return -EEXIST;
  if (r != -ENOENT)
    return r;
  if (!__atomic_load_n (&s->no_if_none_match, __ATOMIC_RELAXED)) {
    p->headers = if_none_match;
    r = put_once (s, p, st, cr);
    if (r == 0 || st->http != 501)
      goto done;
    /* a server that refuses the header rather than ignore it: HEAD-then-PUT
     * from now on */
    __atomic_store_n (&s->no_if_none_match, true, __ATOMIC_RELAXED);
  }
  p->headers = NULL;
  r = put_once (s, p, st, cr);
 done:
  if (r < 0 && st->http == 412)         /* PreconditionFailed: it exists */
    r = -EEXIST;
  if (r == -EEXIST && stored_by_us (s, p))
    r = 0;
  return r;
}

/* A put; SHA (hex) the data's SHA-256 when known, else NULL. */
static int
put_key (struct vmdr_backend *b, const char *key, const void *data, size_t len,
         unsigned flags, const char *sha)
{
  struct s3b *s = to_s3b (b);
  struct put_ctx p = { .data = data, .len = len, .sha256 = sha };
  struct vmdr_s3_status st = { 0 };
  struct call_result cr = { 0 };
  char fk[VMDR_S3_KEY_MAX + 1];
  int r;

  vmdr_backend_set_error (NULL);
  if ((r = full_key (s, key, fk)) < 0)
    return r;
  p.key = fk;
  if (flags & VMDR_PUT_EXCLUSIVE)
    r = s3b_put_exclusive (s, &p, &st, &cr);
  else
    r = put_once (s, &p, &st, &cr);
  return r < 0 ? fail (s, r, &st, cr.attempts, cr.seconds) : 0;
}

static int
s3b_put (struct vmdr_backend *b, const char *key, const void *data, size_t len,
         unsigned flags)
{
  return put_key (b, key, data, len, flags, NULL);
}

/* Signing hashes the payload: a pack's id is that hash already. */
static int
s3b_put_sha256 (struct vmdr_backend *b, const char *key, const void *data, size_t len,
                unsigned flags, const uint8_t sha256[32])
{
  static const char digits[] = "0123456789abcdef";
  char hex[65];

  for (unsigned i = 0; i < 32; i++) {
    hex[2 * i] = digits[sha256[i] >> 4];
    hex[2 * i + 1] = digits[sha256[i] & 15];
  }
  hex[64] = '\0';
  return put_key (b, key, data, len, flags, hex);
}

/* ---- get, read, stat ----------------------------------------------------- */

static int
get_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct get_ctx *g = ctx;
  size_t max = g->max > VMDR_S3_BODY_HARD_MAX ? VMDR_S3_BODY_HARD_MAX : g->max;

  return vmdr_s3_get_object (c, s->bucket, g->key, g->ranged ? &g->range : NULL,
                             max ? max : 1, &g->data, &g->len, st);
}

struct read_ctx {
  const char *key;
  struct vmdr_s3_range range;
  void *buf;
  size_t got;
};

static int
read_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct read_ctx *rc = ctx;
  struct vmdr_s3_response resp = { 0 };
  struct vmdr_s3_request req = {
    .method = "GET", .bucket = s->bucket, .key = rc->key, .range = &rc->range,
    .sink = rc->buf, .sink_cap = rc->range.length,
  };
  int r;

  r = vmdr_s3_request (c, &req, &resp);
  rc->got = resp.body_len;
  *st = resp.status;
  vmdr_s3_response_clear (&resp);
  return r;
}

/* LEN (> 0) bytes at OFFSET of full key FK into a malloc'd buffer, straight
 * from the socket: without the client's cap on response bodies. */
static int
get_into (struct s3b *s, const char *fk, uint64_t offset, size_t len, void **data,
          struct vmdr_s3_status *st, struct call_result *cr)
{
  struct read_ctx rc = { .key = fk, .range = { .offset = offset, .length = len } };
  int r;

  if (len == SIZE_MAX || !(rc.buf = malloc (len + 1)))
    return -ENOMEM;
  r = call (s, read_attempt, &rc, st, cr);
  if (r == 0 && rc.got != len)
    r = -ERANGE;                /* the object ends before OFFSET + LEN */
  if (r < 0) {
    free (rc.buf);
    return r;
  }
  ((char *) rc.buf)[len] = '\0';
  *data = rc.buf;
  return 0;
}

static int
s3b_get (struct vmdr_backend *b, const char *key, uint64_t offset, size_t len,
         size_t max, void **data, size_t *len_out)
{
  struct s3b *s = to_s3b (b);
  struct get_ctx g = { .max = max };
  struct vmdr_s3_status st = { 0 }, hst;
  struct call_result cr = { 0 };
  char fk[VMDR_S3_KEY_MAX + 1];
  uint64_t size;
  time_t mtime;
  int r;

  vmdr_backend_set_error (NULL);
  if ((r = full_key (s, key, fk)) < 0)
    return r;
  if (len > max)
    return -EFBIG;
  g.key = fk;
  if (len > 0) {                /* the size is known: no cap, no copy */
    if ((r = get_into (s, fk, offset, len, &g.data, &st, &cr)) == 0)
      g.len = len;
  }
  else {
    g.ranged = offset > 0;
    g.range = (struct vmdr_s3_range) { .offset = offset };
    r = call (s, get_attempt, &g, &st, &cr);
    /* larger than the client takes in one body, or "bytes=SIZE-" (416),
     * which is an empty answer here: ask for the size */
    if ((r == -EFBIG && max > VMDR_S3_BODY_HARD_MAX) || (r == -ERANGE && offset > 0)) {
      int h = s3b_head (s, fk, &size, &mtime, NULL, &hst, NULL);
      if (h == 0 && offset > size)
        r = -ERANGE;
      else if (h == 0 && size - offset > max)
        r = -EFBIG;
      else if (h == 0 && size == offset) {
        if (!(g.data = calloc (1, 1)))
          return -ENOMEM;
        g.len = 0;
        r = 0;
      }
      else if (h == 0 && r == -EFBIG) {
        if ((r = get_into (s, fk, offset, (size_t) (size - offset), &g.data, &st, &cr)) == 0)
          g.len = (size_t) (size - offset);
      }
    }
  }
  if (r == 0 && g.len > max) {
    free (g.data);
    return -EFBIG;
  }
  if (r < 0)
    return fail (s, r, &st, cr.attempts, cr.seconds);
  *data = g.data;
  *len_out = g.len;
  return 0;
}

static int
s3b_read (struct vmdr_backend *b, const char *key, uint64_t offset, size_t len,
          void *buf)
{
  struct s3b *s = to_s3b (b);
  struct read_ctx rc = { .buf = buf, .range = { .offset = offset, .length = len } };
  struct vmdr_s3_status st;
  struct call_result cr;
  char fk[VMDR_S3_KEY_MAX + 1];
  int r;

  vmdr_backend_set_error (NULL);
  if (len == 0 || len > VMDR_READ_MAX || offset > (uint64_t) INT64_MAX - len)
    return -EINVAL;
  if ((r = full_key (s, key, fk)) < 0)
    return r;
  rc.key = fk;
  r = call (s, read_attempt, &rc, &st, &cr);
  if (r == 0 && rc.got != len)
    return -ERANGE;             /* the object ends before OFFSET + LEN */
  return r < 0 ? fail (s, r, &st, cr.attempts, cr.seconds) : 0;
}

static int
s3b_stat (struct vmdr_backend *b, const char *key, struct vmdr_object_info *info)
{
  struct s3b *s = to_s3b (b);
  struct vmdr_s3_status st;
  struct call_result cr;
  char fk[VMDR_S3_KEY_MAX + 1];
  uint64_t size;
  time_t mtime;
  int r;

  vmdr_backend_set_error (NULL);
  if ((r = full_key (s, key, fk)) < 0)
    return r;
  if ((r = s3b_head (s, fk, &size, &mtime, NULL, &st, &cr)) < 0)
    return fail (s, r, &st, cr.attempts, cr.seconds);
  info->size = size;
  info->mtime = mtime;
  return 0;
}

/* ---- list ---------------------------------------------------------------- */

struct list_ctx {
  const char *prefix;           /* full */
  char *token;                  /* the next page's, NULL first */
  struct vmdr_s3_list_page page;
};

static int
list_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct list_ctx *l = ctx;

  vmdr_s3_list_page_clear (&l->page);
  return vmdr_s3_list_objects_v2 (c, s->bucket, l->prefix, l->token,
                                  VMDR_S3_LIST_MAX_KEYS, &l->page, st);
}

/* Hand one page to FN, keys without our prefix; keys that are no vmdr key
 * (someone else's objects) are skipped. */
static int
list_visit (struct s3b *s, const struct vmdr_s3_list_page *pg, vmdr_list_fn fn,
            void *opaque)
{
  time_t t_now = time (NULL);

  for (size_t i = 0; i < pg->n_objects; i++) {
    const struct vmdr_s3_object *o = &pg->objects[i];
    struct vmdr_object_info info = {
      .size = o->size,
      .mtime = o->mtime >= 0 ? o->mtime : t_now,        /* unknown: young */
    };
    const char *key;
    int r;

    if (strncmp (o->key, s->prefix, s->prefix_len) != 0)
      continue;
    key = o->key + s->prefix_len;
    if (!vmdr_key_valid (key))
      continue;
    if ((r = fn (opaque, key, &info)) != 0)
      return r;
  }
  return 0;
}

static int
s3b_list (struct vmdr_backend *b, const char *prefix, vmdr_list_fn fn, void *opaque)
{
  struct s3b *s = to_s3b (b);
  struct list_ctx l = { 0 };
  struct vmdr_s3_status st;
  struct call_result cr;
  char fp[VMDR_S3_KEY_MAX + 1];
  int r, n;

  vmdr_backend_set_error (NULL);
  n = snprintf (fp, sizeof fp, "%s%s", s->prefix, prefix);
  if (n < 0 || (size_t) n >= sizeof fp)
    return -EINVAL;
  l.prefix = fp;
  /* page by page, each fetched with its own retries; FN runs with no
   * connection held, so that it may call the backend itself */
  for (;;) {
    if ((r = call (s, list_attempt, &l, &st, &cr)) < 0) {
      fail (s, r, &st, cr.attempts, cr.seconds);
      break;
    }
    if ((r = list_visit (s, &l.page, fn, opaque)) != 0 || !l.page.truncated)
      break;
    if (l.token && strcmp (l.token, l.page.next_token) == 0) {
      r = -EBADMSG;             /* the server would have us loop */
      break;
    }
    free (l.token);
    l.token = STEAL_PTR (l.page.next_token);
  }
  vmdr_s3_list_page_clear (&l.page);
  free (l.token);
  return r;
}

/* ---- del, sweep ------------------------------------------------------------ */

static int
del_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  return vmdr_s3_delete_object (c, s->bucket, ctx, st);
}

static int
s3b_del (struct vmdr_backend *b, const char *key)
{
  struct s3b *s = to_s3b (b);
  struct vmdr_s3_status st;
  struct call_result cr;
  char fk[VMDR_S3_KEY_MAX + 1];
  int r;

  vmdr_backend_set_error (NULL);
  if ((r = full_key (s, key, fk)) < 0)
    return r;
  r = call (s, del_attempt, fk, &st, &cr);
  if (r == -ENOENT && strcmp (st.code, "NoSuchBucket") != 0)
    r = 0;                      /* absent already */
  return r < 0 ? fail (s, r, &st, cr.attempts, cr.seconds) : 0;
}

struct uploads_ctx {
  char *key_marker, *id_marker;
  struct vmdr_s3_upload_page page;
};

static int
uploads_attempt (struct s3b *s, struct vmdr_s3 *c, void *ctx, struct vmdr_s3_status *st)
{
  struct uploads_ctx *u = ctx;

  vmdr_s3_upload_page_clear (&u->page);
  return vmdr_s3_list_multipart_uploads (c, s->bucket, s->prefix, u->key_marker,
                                         u->id_marker, &u->page, st);
}

/* Abort the multipart uploads under our prefix begun before CUTOFF: the
 * parts of writers that died (ours abort their own on failure).  They were
 * never visible; they only hold space. */
static int
s3b_sweep_temp (struct vmdr_backend *b, time_t cutoff, uint64_t *removed)
{
  struct s3b *s = to_s3b (b);
  struct uploads_ctx u = { 0 };
  struct vmdr_s3_status st;
  struct call_result cr;
  int r;

  vmdr_backend_set_error (NULL);
  *removed = 0;
  for (;;) {
    if ((r = call (s, uploads_attempt, &u, &st, &cr)) == -EACCES && !u.key_marker) {
      /* a policy without s3:ListBucketMultipartUploads: nothing we may
       * sweep, and no reason to fail the GC that ran before */
      vmdr_backend_set_error (NULL);
      r = 0;
      break;
    }
    if (r < 0) {
      fail (s, r, &st, cr.attempts, cr.seconds);
      break;
    }
    for (size_t i = 0; r == 0 && i < u.page.n_uploads; i++) {
      const struct vmdr_s3_upload *up = &u.page.uploads[i];
      struct put_ctx p = { .key = up->key, .upload_id = up->upload_id };
      if (up->initiated < 0 || up->initiated > cutoff ||
          strncmp (up->key, s->prefix, s->prefix_len) != 0)
        continue;
      r = call (s, mp_abort_attempt, &p, &st, &cr);
      if (r == -ENOENT)
        r = 0;                  /* finished or aborted meanwhile */
      else if (r < 0)
        fail (s, r, &st, cr.attempts, cr.seconds);
      else
        (*removed)++;
    }
    if (r < 0 || !u.page.truncated)
      break;
    free (u.key_marker);
    free (u.id_marker);
    u.key_marker = STEAL_PTR (u.page.next_key_marker);
    u.id_marker = STEAL_PTR (u.page.next_upload_id_marker);
  }
  vmdr_s3_upload_page_clear (&u.page);
  free (u.key_marker);
  free (u.id_marker);
  return r;
}

const struct vmdr_backend_ops vmdr_backend_s3 = {
  .name = "s3",
  .atomic_put = true,
  .open = s3b_open,
  .close = s3b_close,
  .put = s3b_put,
  .put_sha256 = s3b_put_sha256,
  .get = s3b_get,
  .read = s3b_read,
  .stat = s3b_stat,
  .list = s3b_list,
  .del = s3b_del,
  .sweep_temp = s3b_sweep_temp,
  .describe_error = s3b_describe_error,
};
