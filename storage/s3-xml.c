/* Just enough XML for S3 answers: ListBucketResult and Error.
 *
 * No XML library is available, and S3 answers are simple: elements without
 * mixed content, no DTD, no CDATA.  The reader below checks well-formedness
 * (matching tags, one root, bounded depth) so that truncated or garbage input
 * is refused rather than half-read, and it refuses DOCTYPE outright: entity
 * definitions are how XML parsers get blown up. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "s3-internal.h"

enum xml_type { XML_EOF, XML_START, XML_END, XML_TEXT };

struct xml_tok {
  enum xml_type type;
  const char *s;              /* element name, or raw (undecoded) text */
  size_t n;
};

struct xml_reader {
  const char *p, *end;
  const char *name[S3_XML_DEPTH_MAX];   /* open elements */
  size_t name_len[S3_XML_DEPTH_MAX];
  int depth;
  bool root_seen;
  bool pending_end;           /* "<a/>": report its END next */
};

static void
xml_init (struct xml_reader *r, const char *xml, size_t len)
{
  memset (r, 0, sizeof *r);
  r->p = xml;
  r->end = xml + len;
}

static bool
is_space (char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool
is_name_char (char c, bool first)
{
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':')
    return true;
  return !first && ((c >= '0' && c <= '9') || c == '-' || c == '.');
}

static size_t
name_len (const char *p, const char *end)
{
  size_t n = 0;
  while (p + n < end && is_name_char (p[n], n == 0))
    n++;
  return n;
}

static bool
starts (const struct xml_reader *r, const char *s)
{
  size_t n = strlen (s);
  return (size_t) (r->end - r->p) >= n && memcmp (r->p, s, n) == 0;
}

/* Skip past the next `term`, which must exist. */
static int
skip_past (struct xml_reader *r, const char *term)
{
  const char *t = memmem (r->p, r->end - r->p, term, strlen (term));
  if (!t)
    return -EBADMSG;
  r->p = t + strlen (term);
  return 0;
}

/* After an element name: attributes (skipped, quotes honoured), then ">" or
 * "/>".  Sets *empty for the latter. */
static int
skip_attributes (struct xml_reader *r, bool *empty)
{
  while (r->p < r->end) {
    char c = *r->p++;
    if (c == '>') {
      *empty = false;
      return 0;
    }
    if (c == '/' && r->p < r->end && *r->p == '>') {
      r->p++;
      *empty = true;
      return 0;
    }
    if (c == '"' || c == '\'') {
      const char *q = memchr (r->p, c, r->end - r->p);
      if (!q)
        return -EBADMSG;
      r->p = q + 1;
    }
    else if (c == '<')
      return -EBADMSG;
  }
  return -EBADMSG;
}

static int
read_start (struct xml_reader *r, struct xml_tok *t)
{
  size_t n = name_len (++r->p, r->end);
  bool empty;
  int e;

  if (n == 0 || r->depth == S3_XML_DEPTH_MAX || (r->depth == 0 && r->root_seen))
    return -EBADMSG;                  /* no name, too deep, a second root */
  t->type = XML_START;
  t->s = r->p;
  t->n = n;
  r->p += n;
  if ((e = skip_attributes (r, &empty)) < 0)
    return e;
  r->name[r->depth] = t->s;
  r->name_len[r->depth] = n;
  r->depth++;
  r->root_seen = true;
  r->pending_end = empty;
  return 0;
}

static int
read_end (struct xml_reader *r, struct xml_tok *t)
{
  size_t n;

  r->p += 2;
  n = name_len (r->p, r->end);
  if (r->depth == 0 || n != r->name_len[r->depth - 1] ||
      memcmp (r->p, r->name[r->depth - 1], n) != 0)
    return -EBADMSG;                  /* a close tag that closes nothing open */
  r->p += n;
  while (r->p < r->end && is_space (*r->p))
    r->p++;
  if (r->p == r->end || *r->p++ != '>')
    return -EBADMSG;
  r->depth--;
  t->type = XML_END;
  t->s = r->name[r->depth];
  t->n = n;
  return 0;
}

/* Text up to the next tag.  Outside the root only white space may appear. */
static int
read_text (struct xml_reader *r, struct xml_tok *t, bool *skip)
{
  const char *lt = memchr (r->p, '<', r->end - r->p);
  const char *e = lt ? lt : r->end;

  t->type = XML_TEXT;
  t->s = r->p;
  t->n = e - r->p;
  r->p = e;
  *skip = r->depth == 0;
  if (r->depth == 0)
    for (size_t i = 0; i < t->n; i++)
      if (!is_space (t->s[i]))
        return -EBADMSG;
  return 0;
}

/* The next token; at the end, XML_EOF if the document was complete. */
static int
xml_next (struct xml_reader *r, struct xml_tok *t)
{
  if (r->pending_end) {
    r->pending_end = false;
    r->depth--;
    t->type = XML_END;
    t->s = r->name[r->depth];
    t->n = r->name_len[r->depth];
    return 0;
  }
  while (r->p < r->end) {
    bool skip = false;
    int e;

    if (*r->p != '<')
      e = read_text (r, t, &skip);
    else if (starts (r, "<?")) {            /* <?xml ...?> */
      e = skip_past (r, "?>");
      skip = true;
    }
    else if (starts (r, "<!--")) {
      e = skip_past (r, "-->");
      skip = true;
    }
    else if (starts (r, "<!"))
      return -EBADMSG;                /* DOCTYPE, CDATA: not from S3 */
    else if (starts (r, "</"))
      e = read_end (r, t);
    else
      e = read_start (r, t);
    if (e < 0 || !skip)
      return e;
  }
  if (r->depth > 0 || !r->root_seen)
    return -EBADMSG;                  /* truncated, or empty */
  t->type = XML_EOF;
  return 0;
}

static bool
tok_is (const struct xml_tok *t, const char *name)
{
  return t->n == strlen (name) && memcmp (t->s, name, t->n) == 0;
}

/* ---- character data ----------------------------------------------------- */

static void
add_utf8 (struct s3_buf *b, unsigned long cp)
{
  char u[4];
  size_t n;

  if (cp < 0x80)
    u[0] = cp, n = 1;
  else if (cp < 0x800)
    u[0] = 0xc0 | (cp >> 6), u[1] = 0x80 | (cp & 0x3f), n = 2;
  else if (cp < 0x10000)
    u[0] = 0xe0 | (cp >> 12), u[1] = 0x80 | ((cp >> 6) & 0x3f),
    u[2] = 0x80 | (cp & 0x3f), n = 3;
  else
    u[0] = 0xf0 | (cp >> 18), u[1] = 0x80 | ((cp >> 12) & 0x3f),
    u[2] = 0x80 | ((cp >> 6) & 0x3f), u[3] = 0x80 | (cp & 0x3f), n = 4;
  s3_buf_add (b, u, n);
}

/* &#N; or &#xH; (ref points after '#'); code points that XML forbids or
 * that a C string cannot hold are refused. */
static int
decode_charref (struct s3_buf *b, const char *ref, size_t n)
{
  bool hex = n > 0 && (ref[0] == 'x');
  unsigned long cp = 0;
  size_t i = hex ? 1 : 0;

  if (i == n)
    return -EBADMSG;
  for (; i < n; i++) {
    char c = ref[i];
    int d = c >= '0' && c <= '9' ? c - '0'
          : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
          : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0 || cp > 0x10ffff)
      return -EBADMSG;
    cp = cp * (hex ? 16 : 10) + d;
  }
  if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return -EBADMSG;
  add_utf8 (b, cp);
  return 0;
}

static int
decode_ref (struct s3_buf *b, const char *ref, size_t n)
{
  static const struct { const char *name; char c; } named[] = {
    { "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
  };

  if (n > 0 && ref[0] == '#')
    return decode_charref (b, ref + 1, n - 1);
  for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
    if (strlen (named[i].name) == n && memcmp (ref, named[i].name, n) == 0) {
      s3_buf_addc (b, named[i].c);
      return 0;
    }
  return -EBADMSG;
}

int
s3_xml_decode (struct s3_buf *b, const char *s, size_t n)
{
  const char *end = s + n;

  while (s < end) {
    const char *amp = memchr (s, '&', end - s);
    const char *run_end = amp ? amp : end;
    const char *semi;

    if (memchr (s, '\0', run_end - s))
      return -EBADMSG;
    s3_buf_add (b, s, run_end - s);
    if (!amp)
      break;
    /* the longest reference is "&#x10FFFF;" */
    semi = memchr (amp, ';', end - amp < 12 ? (size_t) (end - amp) : 12);
    if (!semi || decode_ref (b, amp + 1, semi - amp - 1) < 0)
      return -EBADMSG;
    s = semi + 1;
  }
  return 0;
}

/* ---- times ---------------------------------------------------------------- */

static void
trim (const char **s, size_t *n)
{
  while (*n > 0 && is_space (**s))
    (*s)++, (*n)--;
  while (*n > 0 && is_space ((*s)[*n - 1]))
    (*n)--;
}


/* N decimal digits at s into *v. */
static bool
digits (const char *s, size_t n, int *v)
{
  *v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    *v = *v * 10 + (s[i] - '0');
  }
  return true;
}

int
s3_parse_iso8601 (const char *s, size_t n, time_t *t)
{
  struct tm tm = { 0 };
  int y, mo, d, h, mi, sec;
  size_t i = 19;
  time_t v;

  trim (&s, &n);
  /* YYYY-MM-DDTHH:MM:SS[.fff]Z */
  if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || !digits (s, 4, &y) || !digits (s + 5, 2, &mo) ||
      !digits (s + 8, 2, &d) || !digits (s + 11, 2, &h) ||
      !digits (s + 14, 2, &mi) || !digits (s + 17, 2, &sec))
    return -EBADMSG;
  if (s[i] == '.') {
    int frac;
    size_t f = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
    if (i == f || i - f > 9 || !digits (s + f, i - f, &frac))
      return -EBADMSG;
  }
  if (i + 1 != n || s[i] != 'Z' || y < 1970 || mo < 1 || mo > 12 || d < 1 ||
      d > 31 || h > 23 || mi > 59 || sec > 60)
    return -EBADMSG;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  if ((v = timegm (&tm)) == (time_t) -1)
    return -EBADMSG;
  *t = v;
  return 0;
}

/* ---- ListBucketResult --------------------------------------------------- */

enum list_field { F_NONE, F_TRUNCATED, F_TOKEN, F_KEY, F_SIZE, F_MTIME };

struct list_state {
  struct vmdr_s3_list_page page;
  size_t cap;                       /* allocated page.objects */
  struct vmdr_s3_object cur;        /* the <Contents> being read */
  bool in_contents, have_size, have_truncated;
  enum list_field field;            /* the leaf being read, if wanted */
  struct s3_buf text;
  char text_buf[S3_TOKEN_MAX + 1];
};

static int
parse_u64 (const char *s, size_t n, uint64_t *out)
{
  uint64_t v = 0;

  trim (&s, &n);
  if (n == 0 || n > 20)
    return -EBADMSG;
  for (size_t i = 0; i < n; i++) {
    unsigned d = (unsigned char) s[i] - '0';
    if (d > 9 || v > (UINT64_MAX - d) / 10)
      return -EBADMSG;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

static int
parse_bool (const char *s, size_t n, bool *out)
{
  trim (&s, &n);
  if (n == 4 && memcmp (s, "true", 4) == 0)
    *out = true;
  else if (n == 5 && memcmp (s, "false", 5) == 0)
    *out = false;
  else
    return -EBADMSG;
  return 0;
}

static int
list_start (struct list_state *st, const struct xml_tok *t, int depth)
{
  if (st->field != F_NONE)
    return -EBADMSG;                  /* a leaf we read has children */
  if (depth == 1)
    return tok_is (t, "ListBucketResult") ? 0 : -EBADMSG;
  if (depth == 2 && tok_is (t, "IsTruncated"))
    st->field = F_TRUNCATED;
  else if (depth == 2 && tok_is (t, "NextContinuationToken"))
    st->field = F_TOKEN;
  else if (depth == 2 && tok_is (t, "Contents")) {
    st->in_contents = true;
    st->have_size = false;
    st->cur.mtime = -1;
  }
  else if (depth == 3 && st->in_contents && tok_is (t, "Key"))
    st->field = F_KEY;
  else if (depth == 3 && st->in_contents && tok_is (t, "Size"))
    st->field = F_SIZE;
  else if (depth == 3 && st->in_contents && tok_is (t, "LastModified"))
    st->field = F_MTIME;
  s3_buf_init (&st->text, st->text_buf, sizeof st->text_buf);
  return 0;
}

/* A wanted leaf ended: store its text. */
static int
list_leaf (struct list_state *st)
{
  struct s3_buf *t = &st->text;

  if (t->overflow)
    return -EBADMSG;
  switch (st->field) {
  case F_TRUNCATED:
    st->have_truncated = true;
    return parse_bool (t->p, t->len, &st->page.truncated);
  case F_TOKEN:
    free (st->page.next_token);
    st->page.next_token = strdup (t->p);
    return st->page.next_token ? 0 : -ENOMEM;
  case F_KEY:
    if (st->cur.key || t->len == 0 || t->len > VMDR_S3_KEY_MAX)
      return -EBADMSG;
    st->cur.key = strdup (t->p);
    return st->cur.key ? 0 : -ENOMEM;
  case F_SIZE:
    st->have_size = true;
    return parse_u64 (t->p, t->len, &st->cur.size);
  case F_MTIME:
    return s3_parse_iso8601 (t->p, t->len, &st->cur.mtime);
  case F_NONE:
    break;
  }
  return 0;
}

/* </Contents>: the object is complete. */
static int
list_add_object (struct list_state *st)
{
  struct vmdr_s3_list_page *pg = &st->page;

  st->in_contents = false;
  if (!st->cur.key || !st->have_size || pg->n_objects == VMDR_S3_LIST_MAX_KEYS)
    return -EBADMSG;
  if (pg->n_objects == st->cap) {
    size_t cap = st->cap ? st->cap * 2 : 64;
    struct vmdr_s3_object *o = reallocarray (pg->objects, cap, sizeof *o);
    if (!o)
      return -ENOMEM;
    pg->objects = o;
    st->cap = cap;
  }
  pg->objects[pg->n_objects++] = st->cur;
  memset (&st->cur, 0, sizeof st->cur);
  return 0;
}

static int
list_end (struct list_state *st, int depth)
{
  int e = 0;

  if (st->field != F_NONE) {
    e = list_leaf (st);
    st->field = F_NONE;
  }
  else if (depth == 1 && st->in_contents)
    e = list_add_object (st);
  return e;
}

static int
list_run (struct list_state *st, const char *xml, size_t len)
{
  struct xml_reader r;
  struct xml_tok t;
  int e;

  xml_init (&r, xml, len);
  while ((e = xml_next (&r, &t)) == 0 && t.type != XML_EOF) {
    if (t.type == XML_START)
      e = list_start (st, &t, r.depth);
    else if (t.type == XML_END)
      e = list_end (st, r.depth);
    else if (st->field != F_NONE)
      e = s3_xml_decode (&st->text, t.s, t.n);
    if (e < 0)
      return e;
  }
  if (e < 0)
    return e;
  if (!st->have_truncated || (st->page.truncated && !st->page.next_token))
    return -EBADMSG;
  if (!st->page.truncated) {          /* the contract: NULL unless truncated */
    free (st->page.next_token);
    st->page.next_token = NULL;
  }
  return 0;
}

int
s3_parse_list (const char *xml, size_t len, struct vmdr_s3_list_page *page)
{
  _cleanup_free_ struct list_state *st = calloc (1, sizeof *st);
  int e;

  if (!st)
    return -ENOMEM;
  e = list_run (st, xml, len);
  free (st->cur.key);
  if (e < 0) {
    vmdr_s3_list_page_clear (&st->page);
    return e;
  }
  *page = st->page;
  return 0;
}

void
vmdr_s3_list_page_clear (struct vmdr_s3_list_page *page)
{
  if (!page)
    return;
  for (size_t i = 0; i < page->n_objects; i++)
    free (page->objects[i].key);
  free (page->objects);
  free (page->next_token);
  memset (page, 0, sizeof *page);
}

/* ---- Error -------------------------------------------------------------- */

/* Drop a UTF-8 sequence cut in half by truncation. */
static void
trim_partial_utf8 (struct s3_buf *b)
{
  size_t i = b->len, cont = 0;

  while (i > 0 && ((unsigned char) b->p[i - 1] & 0xc0) == 0x80 && cont < 3)
    i--, cont++;
  if (i > 0 && ((unsigned char) b->p[i - 1] & 0x80)) {
    unsigned char lead = b->p[i - 1];
    size_t need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
    if (need != cont)
      b->len = i - 1, b->p[b->len] = '\0';
  }
}

int
s3_parse_error (const char *xml, size_t len, struct vmdr_s3_status *st)
{
  struct vmdr_s3_status tmp = *st;
  struct s3_buf code, msg, *cur = NULL;
  struct xml_reader r;
  struct xml_tok t;
  int e;

  s3_buf_init (&code, tmp.code, sizeof tmp.code);
  s3_buf_init (&msg, tmp.message, sizeof tmp.message);
  xml_init (&r, xml, len);
  while ((e = xml_next (&r, &t)) == 0 && t.type != XML_EOF) {
    if (t.type == XML_START) {
      if (r.depth == 1 && !tok_is (&t, "Error"))
        return -EBADMSG;
      cur = r.depth != 2 ? NULL
          : tok_is (&t, "Code") ? &code : tok_is (&t, "Message") ? &msg : NULL;
    }
    else if (t.type == XML_END)
      cur = NULL;
    else if (cur && s3_xml_decode (cur, t.s, t.n) < 0)
      return -EBADMSG;
  }
  if (e < 0)
    return e;
  trim_partial_utf8 (&code);
  trim_partial_utf8 (&msg);
  *st = tmp;
  return 0;
}

/* ---- leaves of small answers ------------------------------------------- */

/* Calls fn for every element without children at depth 2 or 3 (the root
 * is 1) with its decoded text (NULL when it exceeds S3_TOKEN_MAX bytes: fn
 * decides whether it matters), and at the end of every depth-2 element
 * with children (text NULL, leaf false), so that records can be closed.
 * The root must be named ROOT (else -EBADMSG, or 1 if it is "Error" and
 * error_ok: the caller parses that). */
typedef int (*leaf_fn) (void *opaque, int depth, const char *parent, size_t plen,
                        const char *name, size_t nlen, const char *text, bool leaf);

static int
walk_leaves (const char *xml, size_t len, const char *root, bool error_ok,
             leaf_fn fn, void *opaque)
{
  _cleanup_free_ char *buf = malloc (S3_TOKEN_MAX + 1);
  struct s3_buf text;
  struct xml_reader r;
  struct xml_tok t;
  const char *parent = "";
  size_t plen = 0;
  bool leaf = false;
  int e;

  if (!buf)
    return -ENOMEM;
  xml_init (&r, xml, len);
  s3_buf_init (&text, buf, S3_TOKEN_MAX + 1);
  while ((e = xml_next (&r, &t)) == 0 && t.type != XML_EOF) {
    if (t.type == XML_START) {
      if (r.depth == 1 && !tok_is (&t, root))
        return error_ok && tok_is (&t, "Error") ? 1 : -EBADMSG;
      if (r.depth == 2) {
        parent = t.s;
        plen = t.n;
      }
      leaf = true;                /* until a child shows up */
      s3_buf_init (&text, buf, S3_TOKEN_MAX + 1);
    }
    else if (t.type == XML_TEXT) {
      if (leaf && s3_xml_decode (&text, t.s, t.n) < 0)
        return -EBADMSG;
    }
    else {                        /* XML_END; r.depth is the parent's now */
      int depth = r.depth + 1;
      if (leaf && (depth == 2 || depth == 3))
        e = fn (opaque, depth, parent, plen, t.s, t.n,
                text.overflow ? NULL : text.p, true);
      else if (!leaf && depth == 2)
        e = fn (opaque, depth, parent, plen, t.s, t.n, NULL, false);
      if (e < 0)
        return e;
      leaf = false;
    }
  }
  return e;
}

static bool
name_is (const char *s, size_t n, const char *want)
{
  return n == strlen (want) && memcmp (s, want, n) == 0;
}

static int
upload_id_leaf (void *opaque, int depth, const char *parent, size_t plen,
                const char *name, size_t nlen, const char *text, bool leaf)
{
  char **id = opaque;

  (void) parent, (void) plen;
  if (!leaf || depth != 2 || !name_is (name, nlen, "UploadId"))
    return 0;
  if (!text || !text[0] || strlen (text) > VMDR_S3_UPLOAD_ID_MAX || *id)
    return -EBADMSG;
  *id = strdup (text);
  return *id ? 0 : -ENOMEM;
}

int
s3_parse_upload_id (const char *xml, size_t len, char **id)
{
  char *got = NULL;
  int e = walk_leaves (xml, len, "InitiateMultipartUploadResult", false,
                       upload_id_leaf, &got);

  if (e == 0 && !got)
    e = -EBADMSG;
  if (e < 0) {
    free (got);
    return e;
  }
  *id = got;
  return 0;
}

static int
etag_leaf (void *opaque, int depth, const char *parent, size_t plen,
           const char *name, size_t nlen, const char *text, bool leaf)
{
  char *etag = opaque;
  size_t n;

  (void) parent, (void) plen;
  if (!leaf || depth != 2 || !name_is (name, nlen, "ETag"))
    return 0;
  if (!text)
    return -EBADMSG;
  n = strlen (text);
  if (n >= 2 && text[0] == '"' && text[n - 1] == '"')
    text++, n -= 2;
  if (n >= 128)
    return -EBADMSG;
  memcpy (etag, text, n);
  etag[n] = '\0';
  return 0;
}

int
s3_parse_complete (const char *xml, size_t len, char *etag,
                   struct vmdr_s3_status *st)
{
  char tag[128] = "";
  int e = walk_leaves (xml, len, "CompleteMultipartUploadResult", true,
                       etag_leaf, tag);

  if (e == 1)
    return s3_parse_error (xml, len, st) < 0 ? -EBADMSG : 1;
  if (e < 0)
    return e;
  memcpy (etag, tag, sizeof tag);
  return 0;
}

struct uploads_state {
  struct vmdr_s3_upload_page page;
  size_t cap;
  struct vmdr_s3_upload cur;
  bool have_truncated;
};

static int
dup_text (char **dst, const char *text, size_t max)
{
  if (!text || !text[0] || strlen (text) > max || *dst)
    return -EBADMSG;
  *dst = strdup (text);
  return *dst ? 0 : -ENOMEM;
}

static int
uploads_add (struct uploads_state *u)
{
  struct vmdr_s3_upload_page *pg = &u->page;

  if (!u->cur.key || !u->cur.upload_id || pg->n_uploads == VMDR_S3_LIST_MAX_KEYS)
    return -EBADMSG;
  if (pg->n_uploads == u->cap) {
    size_t cap = u->cap ? u->cap * 2 : 16;
    struct vmdr_s3_upload *p = reallocarray (pg->uploads, cap, sizeof *p);
    if (!p)
      return -ENOMEM;
    pg->uploads = p;
    u->cap = cap;
  }
  pg->uploads[pg->n_uploads++] = u->cur;
  u->cur = (struct vmdr_s3_upload) { .initiated = -1 };
  return 0;
}

static int
uploads_leaf (void *opaque, int depth, const char *parent, size_t plen,
              const char *name, size_t nlen, const char *text, bool leaf)
{
  struct uploads_state *u = opaque;
  bool in_upload = name_is (parent, plen, "Upload");

  if (!leaf)
    return in_upload ? uploads_add (u) : 0;
  if (depth == 2 && name_is (name, nlen, "IsTruncated")) {
    u->have_truncated = true;
    return text ? parse_bool (text, strlen (text), &u->page.truncated) : -EBADMSG;
  }
  if (depth == 2 && name_is (name, nlen, "NextKeyMarker")) {
    free (u->page.next_key_marker);
    u->page.next_key_marker = NULL;
    return text && text[0] ? dup_text (&u->page.next_key_marker, text, VMDR_S3_KEY_MAX) : 0;
  }
  if (depth == 2 && name_is (name, nlen, "NextUploadIdMarker")) {
    free (u->page.next_upload_id_marker);
    u->page.next_upload_id_marker = NULL;
    return text && text[0]
      ? dup_text (&u->page.next_upload_id_marker, text, VMDR_S3_UPLOAD_ID_MAX) : 0;
  }
  if (depth != 3 || !in_upload)
    return 0;
  if (name_is (name, nlen, "Key"))
    return dup_text (&u->cur.key, text, VMDR_S3_KEY_MAX);
  if (name_is (name, nlen, "UploadId"))
    return dup_text (&u->cur.upload_id, text, VMDR_S3_UPLOAD_ID_MAX);
  if (name_is (name, nlen, "Initiated"))
    return text ? s3_parse_iso8601 (text, strlen (text), &u->cur.initiated) : -EBADMSG;
  return 0;
}

int
s3_parse_uploads (const char *xml, size_t len, struct vmdr_s3_upload_page *page)
{
  struct uploads_state u = { .cur = { .initiated = -1 } };
  int e = walk_leaves (xml, len, "ListMultipartUploadsResult", false,
                       uploads_leaf, &u);

  free (u.cur.key);
  free (u.cur.upload_id);
  if (e == 0 && (!u.have_truncated || (u.page.truncated && !u.page.next_key_marker)))
    e = -EBADMSG;
  if (e < 0) {
    vmdr_s3_upload_page_clear (&u.page);
    return e;
  }
  if (!u.page.truncated) {
    free (u.page.next_key_marker);
    free (u.page.next_upload_id_marker);
    u.page.next_key_marker = u.page.next_upload_id_marker = NULL;
  }
  *page = u.page;
  return 0;
}

void
vmdr_s3_upload_page_clear (struct vmdr_s3_upload_page *page)
{
  if (!page)
    return;
  for (size_t i = 0; i < page->n_uploads; i++) {
    free (page->uploads[i].key);
    free (page->uploads[i].upload_id);
  }
  free (page->uploads);
  free (page->next_key_marker);
  free (page->next_upload_id_marker);
  memset (page, 0, sizeof *page);
}
