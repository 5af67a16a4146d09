/* Prometheus text exposition format: a small set of gauges, rendered,
 * written atomically, and read back (metrics.h).
 * The format: https://prometheus.io/docs/instrumenting/exposition_formats/ */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "metrics.h"

#define NAME_MAX_LEN 200

struct series {
  char *labels;                 /* rendered: k="v",k2="v2"; "" for none */
  double value;
};

struct family {
  char *name;
  char *help;                   /* NULL: no HELP line */
  struct series *s;
  size_t n, cap;
};

struct metrics {
  struct family *f;
  size_t n, cap;
  size_t nseries;
  int error;                    /* the first failed set, sticky */
};

/* A growing string; on allocation failure it remembers and stops. */
struct buf {
  char *p;
  size_t len, cap;
  bool oom;
};

static void
buf_add (struct buf *b, const char *s, size_t n)
{
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc (b->p, cap);
    if (p == NULL) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy (b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void
buf_adds (struct buf *b, const char *s)
{
  buf_add (b, s, strlen (s));
}

int
metrics_new (struct metrics **out)
{
  struct metrics *m = calloc (1, sizeof *m);

  if (m == NULL)
    return -ENOMEM;
  *out = m;
  return 0;
}

void
metrics_free (struct metrics *m)
{
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->n; i++) {
    for (size_t j = 0; j < m->f[i].n; j++)
      free (m->f[i].s[j].labels);
    free (m->f[i].s);
    free (m->f[i].name);
    free (m->f[i].help);
  }
  free (m->f);
  free (m);
}

static bool
name_ok (const char *s, bool metric)
{
  size_t n = strlen (s);

  if (n == 0 || n > NAME_MAX_LEN || (s[0] >= '0' && s[0] <= '9'))
    return false;
  if (!metric && s[0] == '_' && s[1] == '_')
    return false;               /* reserved for Prometheus itself */
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || (metric && *p == ':')))
      return false;
  return true;
}

/* The length of the valid UTF-8 sequence at S (N bytes left), or 0. */
static size_t
utf8_len (const unsigned char *s, size_t n)
{
  unsigned char c = s[0], lo = 0x80, hi = 0xbf;
  size_t len;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0)
      lo = 0xa0;
    else if (c == 0xed)
      hi = 0x9f;                /* no UTF-16 surrogates */
  }
  else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f;                /* nothing above U+10FFFF */
  }
  else
    return 0;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return len;
}

/* Render LABELS as `k="v",...` into *out (malloc'd). */
static int
render_labels (const char *const *labels, char **out)
{
  struct buf b = { 0 };
  size_t n = 0;

  buf_adds (&b, "");
  for (; labels && labels[n]; n += 2) {
    const unsigned char *v = (const unsigned char *) labels[n + 1];
    size_t vlen;

    if (v == NULL || n / 2 >= METRICS_MAX_LABELS || !name_ok (labels[n], false) ||
        (vlen = strlen ((const char *) v)) > METRICS_LABEL_VALUE_MAX)
      goto invalid;
    for (size_t k = 0; k < n; k += 2)
      if (strcmp (labels[k], labels[n]) == 0)
        goto invalid;
    if (n)
      buf_adds (&b, ",");
    buf_adds (&b, labels[n]);
    buf_adds (&b, "=\"");
    for (size_t i = 0; i < vlen;) {
      size_t l = utf8_len (v + i, vlen - i);
      if (v[i] == '\\')
        buf_adds (&b, "\\\\");
      else if (v[i] == '"')
        buf_adds (&b, "\\\"");
      else if (v[i] == '\n')
        buf_adds (&b, "\\n");
      else if (l == 0)
        buf_adds (&b, "\xef\xbf\xbd");
      else
        buf_add (&b, (const char *) v + i, l);
      i += l ? l : 1;
    }
    buf_adds (&b, "\"");
  }
  if (b.oom) {
    free (b.p);
    return -ENOMEM;
  }
  *out = b.p;
  return 0;
 invalid:
  free (b.p);
  return -EINVAL;
}

static struct family *
find_family (const struct metrics *m, const char *name)
{
  for (size_t i = 0; i < m->n; i++)
    if (strcmp (m->f[i].name, name) == 0)
      return &m->f[i];
  return NULL;
}

static struct series *
find_series (const struct family *f, const char *labels)
{
  for (size_t i = 0; i < f->n; i++)
    if (strcmp (f->s[i].labels, labels) == 0)
      return &f->s[i];
  return NULL;
}

static int
upsert (struct metrics *m, const char *name, const char *help,
        const char *const *labels, double value, bool add)
{
  _cleanup_free_ char *lbl = NULL;
  struct family *f;
  struct series *s;
  int r;

  if (m == NULL)
    return 0;
  if (m->error)
    return m->error;
  if (!name_ok (name, true)) {
    r = -EINVAL;
    goto fail;
  }
  if ((r = render_labels (labels, &lbl)) < 0)
    goto fail;
  if ((f = find_family (m, name)) == NULL) {
    if (m->n == m->cap) {
      size_t cap = m->cap ? 2 * m->cap : 16;
      struct family *nf = realloc (m->f, cap * sizeof *nf);
      if (nf == NULL)
        goto oom;
      m->f = nf;
      m->cap = cap;
    }
    f = &m->f[m->n];
    memset (f, 0, sizeof *f);
    if ((f->name = strdup (name)) == NULL)
      goto oom;
    m->n++;
  }
  if (help && f->help == NULL && (f->help = strdup (help)) == NULL)
    goto oom;
  if ((s = find_series (f, lbl)) != NULL) {
    s->value = add ? s->value + value : value;
    return 0;
  }
  if (m->nseries >= METRICS_MAX_SERIES) {
    r = -E2BIG;
    goto fail;
  }
  if (f->n == f->cap) {
    size_t cap = f->cap ? 2 * f->cap : 8;
    struct series *ns = realloc (f->s, cap * sizeof *ns);
    if (ns == NULL)
      goto oom;
    f->s = ns;
    f->cap = cap;
  }
  f->s[f->n++] = (struct series) { .labels = STEAL_PTR (lbl), .value = value };
  m->nseries++;
  return 0;
 oom:
  r = -ENOMEM;
 fail:
  m->error = r;
  return r;
}

int
metrics_set (struct metrics *m, const char *name, const char *help,
             const char *const *labels, double value)
{
  return upsert (m, name, help, labels, value, false);
}

int
metrics_add (struct metrics *m, const char *name, const char *help,
             const char *const *labels, double value)
{
  return upsert (m, name, help, labels, value, true);
}

int
metrics_get (const struct metrics *m, const char *name,
             const char *const *labels, double *value)
{
  _cleanup_free_ char *lbl = NULL;
  const struct family *f;
  const struct series *s;

  if (m == NULL || (f = find_family (m, name)) == NULL || render_labels (labels, &lbl) < 0 ||
      (s = find_series (f, lbl)) == NULL)
    return -ENOENT;
  *value = s->value;
  return 0;
}

/* A value as the format spells it: integers without a fraction or exponent
 * (byte counts stay exact), others in the fewest digits that read back
 * the same, NaN and +Inf/-Inf by name. */
static void
format_value (double v, char *buf, size_t size)
{
  if (isnan (v))
    snprintf (buf, size, "NaN");
  else if (isinf (v))
    snprintf (buf, size, v > 0 ? "+Inf" : "-Inf");
  else if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double) (int64_t) v)
    snprintf (buf, size, "%lld", (long long) v);
  else {
    for (int prec = 15; prec <= 17; prec++) {
      snprintf (buf, size, "%.*g", prec, v);
      if (strtod (buf, NULL) == v)
        break;
    }
  }
}

int
metrics_render (const struct metrics *m, char **text, size_t *len)
{
  struct buf b = { 0 };
  char val[40];

  if (m && m->error)
    return m->error;
  buf_adds (&b, "");
  for (size_t i = 0; m && i < m->n; i++) {
    const struct family *f = &m->f[i];
    if (f->help) {
      buf_adds (&b, "# HELP ");
      buf_adds (&b, f->name);
      buf_adds (&b, " ");
      for (const char *p = f->help; *p; p++)
        buf_adds (&b, *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : (char[2]) { *p, 0 });
      buf_adds (&b, "\n");
    }
    buf_adds (&b, "# TYPE ");
    buf_adds (&b, f->name);
    buf_adds (&b, " gauge\n");
    for (size_t j = 0; j < f->n; j++) {
      buf_adds (&b, f->name);
      if (f->s[j].labels[0]) {
        buf_adds (&b, "{");
        buf_adds (&b, f->s[j].labels);
        buf_adds (&b, "}");
      }
      format_value (f->s[j].value, val, sizeof val);
      buf_adds (&b, " ");
      buf_adds (&b, val);
      buf_adds (&b, "\n");
    }
  }
  if (b.oom) {
    free (b.p);
    return -ENOMEM;
  }
  *text = b.p;
  *len = b.len;
  return 0;
}

static int
write_all (int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t w = write (fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    p += w;
    n -= (size_t) w;
  }
  return 0;
}

int
metrics_write (const struct metrics *m, const char *path)
{
  _cleanup_free_ char *text = NULL, *tmp = NULL, *dir = NULL;
  _cleanup_close_ int fd = -1, dfd = -1;
  const char *slash = strrchr (path, '/'), *base = slash ? slash + 1 : path;
  size_t len;
  int r;

  if (*base == '\0' || strlen (path) >= PATH_MAX)
    return -EINVAL;
  if ((r = metrics_render (m, &text, &len)) < 0)
    return r;
  dir = slash ? strndup (path, slash == path ? 1 : (size_t) (slash - path)) : strdup (".");
  if (dir == NULL || asprintf (&tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
    tmp = NULL;
    return -ENOMEM;
  }
  if ((fd = mkostemp (tmp, O_CLOEXEC)) < 0)
    return -errno;
  if ((r = write_all (fd, text, len)) < 0 ||
      (fchmod (fd, 0644) < 0 && (r = -errno)) ||
      (fsync (fd) < 0 && (r = -errno)) ||
      (close (STEAL_FD (fd)) < 0 && (r = -errno)) ||
      (rename (tmp, path) < 0 && (r = -errno))) {
    unlink (tmp);
    return r;
  }
  /* The rename itself must survive a crash: sync the directory too.  Some
   * file systems cannot fsync a directory (EINVAL); the file is there. */
  if ((dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
    return -errno;
  if (fsync (dfd) < 0 && errno != EINVAL)
    return -errno;
  return 0;
}

static void
skip_blanks (char **p)
{
  while (**p == ' ' || **p == '\t')
    ++*p;
}

/* A name at *P into BUF (NAME_MAX_LEN + 1 bytes); *P moves past it. */
static bool
take_name (char **p, bool metric, char *buf)
{
  char *s = *p, *e = s;

  while ((*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z') || (*e >= '0' && *e <= '9') ||
         *e == '_' || (metric && *e == ':'))
    e++;
  if (e == s || e - s > NAME_MAX_LEN || (*s >= '0' && *s <= '9'))
    return false;
  memcpy (buf, s, (size_t) (e - s));
  buf[e - s] = '\0';
  *p = e;
  return true;
}

static bool
parse_value (const char *s, double *v)
{
  char *end;

  if (strcmp (s, "NaN") == 0) {
    *v = NAN;
    return true;
  }
  if (strcmp (s, "+Inf") == 0 || strcmp (s, "-Inf") == 0) {
    *v = s[0] == '+' ? INFINITY : -INFINITY;
    return true;
  }
  /* strtod would take "inf", "nan" and hex too: the format has digits. */
  for (const char *p = s; *p; p++)
    if (!strchr ("0123456789+-.eE", *p))
      return false;
  errno = 0;
  *v = strtod (s, &end);
  return *s && *end == '\0' && errno != ERANGE;
}

/* One sample line (NUL-terminated; label values are unescaped in place)
 * into M: NAME[{LABEL="VALUE",...}] VALUE [TIMESTAMP]. */
static int
parse_sample (struct metrics *m, char *line)
{
  char names[METRICS_MAX_LABELS + 1][NAME_MAX_LEN + 1];
  const char *labels[2 * METRICS_MAX_LABELS + 1];
  char *p = line, *value;
  size_t nl = 0;
  double v;

  if (!take_name (&p, true, names[METRICS_MAX_LABELS]))
    return -EBADMSG;
  if (*p == '{') {
    p++;
    for (;;) {
      char *out;
      skip_blanks (&p);
      if (*p == '}')
        break;
      if (nl == 2 * METRICS_MAX_LABELS || !take_name (&p, false, names[nl / 2]))
        return -EBADMSG;
      skip_blanks (&p);
      if (*p++ != '=')
        return -EBADMSG;
      skip_blanks (&p);
      if (*p++ != '"')
        return -EBADMSG;
      labels[nl] = names[nl / 2];
      labels[nl + 1] = out = p;
      nl += 2;
      for (; *p != '"'; p++) {
        if (*p == '\0')
          return -EBADMSG;
        if (*p == '\\') {
          p++;
          if (*p == 'n')
            *out++ = '\n';
          else if (*p == '\\' || *p == '"')
            *out++ = *p;
          else
            return -EBADMSG;
        }
        else
          *out++ = *p;
      }
      p++;                      /* past the quote, before OUT may overwrite it */
      *out = '\0';
      skip_blanks (&p);
      if (*p == ',')
        p++;
      else if (*p != '}')
        return -EBADMSG;
    }
    p++;
  }
  labels[nl] = NULL;
  if (*p != ' ' && *p != '\t')
    return -EBADMSG;
  skip_blanks (&p);
  value = p;
  while (*p && *p != ' ' && *p != '\t')
    p++;
  if (*p) {
    *p++ = '\0';
    skip_blanks (&p);
    if (*p == '-')              /* a timestamp, in milliseconds */
      p++;
    while (*p >= '0' && *p <= '9')
      p++;
    skip_blanks (&p);
    if (*p)
      return -EBADMSG;
  }
  if (!parse_value (value, &v))
    return -EBADMSG;
  /* A name or label the format allows but a set refuses ("__x", twice
   * the same label) is as malformed here. */
  int r = metrics_set (m, names[METRICS_MAX_LABELS], NULL, labels, v);
  return r == -EINVAL ? -EBADMSG : r;
}

int
metrics_read (const char *path, struct metrics **out)
{
  _cleanup_close_ int fd = -1;
  _cleanup_free_ char *text = NULL;
  struct metrics *m;
  struct stat st;
  size_t len = 0;
  int r;

  /* O_NONBLOCK: a FIFO put there must not hang the run. */
  if ((fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
    return -errno;
  if (fstat (fd, &st) < 0)
    return -errno;
  if (!S_ISREG (st.st_mode))
    return -EINVAL;
  if (st.st_size > (off_t) METRICS_READ_MAX)
    return -EFBIG;
  if ((text = malloc ((size_t) st.st_size + 2)) == NULL)
    return -ENOMEM;
  /* Read one byte more than fits: a file that grew meanwhile is refused. */
  for (;;) {
    ssize_t n = read (fd, text + len, (size_t) st.st_size + 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      break;
    len += (size_t) n;
    if (len > (size_t) st.st_size)
      return -EFBIG;
  }
  text[len] = '\0';
  if (memchr (text, '\0', len) || (len > 0 && text[len - 1] != '\n'))
    return -EBADMSG;
  if ((r = metrics_new (&m)) < 0)
    return r;
  for (char *line = text, *nl; *line; line = nl + 1) {
    nl = strchr (line, '\n');
    *nl = '\0';
    char *p = line;
    skip_blanks (&p);
    if (*p == '\0' || *p == '#')
      continue;
    if ((r = parse_sample (m, p)) < 0) {
      metrics_free (m);
      return r;
    }
  }
  *out = m;
  return 0;
}

const char *
metrics_address_label (const char *address, char *buf, size_t size)
{
  const char *sep = strstr (address, "://"), *auth, *at, *end;
  struct buf b = { 0 };

  if (sep == NULL || sep == address || strspn (address, "abcdefghijklmnopqrstuvwxyz"
                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
                                       != (size_t) (sep - address)) {
    snprintf (buf, size, "%s", address);      /* a plain path */
    return buf;
  }
  auth = sep + 3;
  end = auth + strcspn (auth, "/?#");
  at = memrchr (auth, '@', (size_t) (end - auth));
  buf_add (&b, address, (size_t) (auth - address));
  buf_add (&b, at ? at + 1 : auth, (size_t) (end - (at ? at + 1 : auth)));
  buf_add (&b, end, strcspn (end, "?#"));
  snprintf (buf, size, "%s", b.oom ? "" : b.p);
  free (b.p);
  return buf;
}

double
metrics_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

int
metrics_set_attempt (struct metrics *m, const struct metrics *prev,
                     const char *tool, const char *const *labels,
                     int status, double ended, double seconds)
{
  char attempt[128], success[128], result[128], duration[128];
  double last = 0;

  snprintf (attempt, sizeof attempt, "vmdr_%s_last_attempt_timestamp_seconds", tool);
  snprintf (success, sizeof success, "vmdr_%s_last_success_timestamp_seconds", tool);
  snprintf (result, sizeof result, "vmdr_%s_last_result", tool);
  snprintf (duration, sizeof duration, "vmdr_%s_duration_seconds", tool);
  if (status == VMDR_EXIT_OK || status == VMDR_EXIT_WARNINGS)
    last = ended;
  else if (metrics_get (prev, success, labels, &last) < 0 || !(last >= 0))
    last = 0;
  metrics_set (m, attempt, "When the last attempt ended (Unix time)", labels, ended);
  metrics_set (m, success, "When the last attempt that succeeded (exit status 0 or 3) ended "
               "(Unix time); 0 if none is known", labels, last);
  metrics_set (m, result, "Exit status of the last attempt: 0 done, 1 failed, "
               "3 done with warnings, 4 busy (another run held the lock)", labels, status);
  return metrics_set (m, duration, "How long the last attempt took", labels, seconds);
}
