#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "manifest.h"

static const char *const kind_names[] = { "full", "incremental" };
static const char *const consistency_names[] = { "crash", "quiesced", "with-memory" };

const char *vmdr_kind_name (enum vmdr_snapshot_kind k) { return kind_names[k]; }
const char *vmdr_consistency_name (enum vmdr_consistency c) { return consistency_names[c]; }

void
vmdr_manifest_clear (struct vmdr_manifest *m)
{
  if (m == NULL)
    return;
  for (size_t i = 0; i < m->ndisks; i++) {
    free (m->disks[i].checkpoint_name);
    free (m->disks[i].checkpoint_xml);
  }
  free (m->disks);
  free (m->domain_xml);
  memset (m, 0, sizeof *m);
}

bool
vmdr_domain_name_valid (const char *name)
{
  size_t len = strlen (name);

  if (len == 0 || len > VMDR_DOMAIN_NAME_MAX || strcmp (name, ".") == 0 ||
      strcmp (name, "..") == 0)
    return false;
  for (const unsigned char *p = (const unsigned char *) name; *p; p++)
    if (*p == '/' || *p < 0x20 || *p == 0x7f)
      return false;
  return true;
}

int
vmdr_manifest_start (struct vmdr_manifest *m, const char *domain, time_t when,
                     unsigned msec)
{
  struct tm tm;
  char t[20], iso[20];          /* 15 and 19 characters: 4-digit years */

  if (!vmdr_domain_name_valid (domain) || msec > 999 || gmtime_r (&when, &tm) == NULL ||
      tm.tm_year + 1900 > 9999)
    return -EINVAL;
  strftime (t, sizeof t, "%Y%m%dT%H%M%S", &tm);
  strftime (iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf (m->id, sizeof m->id, "%s/%s.%03uZ", domain, t, msec);
  snprintf (m->domain, sizeof m->domain, "%s", domain);
  snprintf (m->created, sizeof m->created, "%s.%03uZ", iso, msec);
  snprintf (m->tool, sizeof m->tool, "vmdr %s", PACKAGE_VERSION);
  return 0;
}

/* ---- ids and keys --------------------------------------------------------- */

static bool
time_valid (const char *t)
{
  /* YYYYMMDDTHHMMSS.mmmZ */
  static const char shape[] = "ddddddddTdddddd.dddZ";

  if (strlen (t) != VMDR_TIME_LEN)
    return false;
  for (size_t i = 0; i < VMDR_TIME_LEN; i++)
    if (shape[i] == 'd' ? !isdigit ((unsigned char) t[i]) : t[i] != shape[i])
      return false;
  return true;
}

/* Split an id at its last '/': domain and time, both checked. */
static int
split_id (const char *id, char *domain, const char **time)
{
  const char *slash = strrchr (id, '/');
  size_t dlen;

  if (slash == NULL || !time_valid (slash + 1))
    return -EINVAL;
  dlen = (size_t) (slash - id);
  if (dlen == 0 || dlen > VMDR_DOMAIN_NAME_MAX)
    return -EINVAL;
  memcpy (domain, id, dlen);
  domain[dlen] = '\0';
  if (!vmdr_domain_name_valid (domain))
    return -EINVAL;
  *time = slash + 1;
  return 0;
}

/* Every byte outside [A-Za-z0-9._-] as %XX: keys stay portable. */
static void
escape_domain (const char *d, char *out)
{
  for (; *d; d++) {
    unsigned char c = (unsigned char) *d;
    if (isalnum (c) || c == '.' || c == '_' || c == '-')
      *out++ = (char) c;
    else
      out += sprintf (out, "%%%02X", c);
  }
  *out = '\0';
}

static int
unescape_domain (const char *e, char *out, size_t size)
{
  size_t n = 0;

  for (; *e; e++) {
    unsigned v;
    if (n + 1 >= size)
      return -EINVAL;
    if (*e == '%') {
      if (!isxdigit ((unsigned char) e[1]) || !isxdigit ((unsigned char) e[2]) ||
          sscanf (e + 1, "%2x", &v) != 1)
        return -EINVAL;
      out[n++] = (char) v;
      e += 2;
    }
    else
      out[n++] = *e;
  }
  out[n] = '\0';
  return vmdr_domain_name_valid (out) ? 0 : -EINVAL;
}

int
vmdr_snapshot_key (const char *dir, const char *id, const char *suffix,
                   char *key, size_t size)
{
  char domain[VMDR_DOMAIN_NAME_MAX + 1], esc[3 * VMDR_DOMAIN_NAME_MAX + 1];
  const char *t;
  int n;

  if (split_id (id, domain, &t) < 0)
    return -EINVAL;
  escape_domain (domain, esc);
  n = snprintf (key, size, "%s/%s/%s%s", dir, esc, t, suffix);
  return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

int
vmdr_manifest_key (const char *id, char *key, size_t size)
{
  return vmdr_snapshot_key ("snapshots", id, ".json", key, size);
}

int
vmdr_domain_escape (const char *domain, char *out, size_t size)
{
  if (!vmdr_domain_name_valid (domain) || size < 3 * strlen (domain) + 1)
    return -EINVAL;
  escape_domain (domain, out);
  return 0;
}

/* ---- JSON ----------------------------------------------------------------- */

static void
add_str (json_object *o, const char *k, const char *v)
{
  json_object_object_add (o, k, v ? json_object_new_string (v) : NULL);
}

static void
add_u64 (json_object *o, const char *k, uint64_t v)
{
  json_object_object_add (o, k, json_object_new_int64 ((int64_t) v));
}

static json_object *
disk_json (const struct vmdr_manifest_disk *d)
{
  json_object *o = json_object_new_object ();
  char hex[VMDR_DIGEST_HEX_LEN + 1];

  vmdr_digest_to_hex (&d->root, hex);
  add_str (o, "target", d->target);
  add_str (o, "format", d->format);
  add_u64 (o, "virtual_size", d->virtual_size);
  add_u64 (o, "chunk_size", d->chunk_size);
  add_u64 (o, "fanout", d->fanout);
  add_u64 (o, "depth", d->depth);
  add_str (o, "root", hex);
  add_u64 (o, "bytes_read", d->bytes_read);
  add_u64 (o, "bytes_new", d->bytes_new);
  if (d->checkpoint_name) {
    json_object *c = json_object_new_object ();
    add_str (c, "name", d->checkpoint_name);
    add_str (c, "xml", d->checkpoint_xml);
    json_object_object_add (o, "checkpoint", c);
  }
  else
    json_object_object_add (o, "checkpoint", NULL);
  return o;
}

static json_object *
memory_json (const struct vmdr_manifest_memory *mem)
{
  json_object *o = json_object_new_object ();
  char hex[VMDR_DIGEST_HEX_LEN + 1];

  vmdr_digest_to_hex (&mem->root, hex);
  add_u64 (o, "size", mem->size);
  add_u64 (o, "fanout", mem->fanout);
  add_u64 (o, "depth", mem->depth);
  add_str (o, "root", hex);
  add_u64 (o, "bytes_new", mem->bytes_new);
  return o;
}

int
vmdr_manifest_format (const struct vmdr_manifest *m, char **json)
{
  json_object *o = json_object_new_object (), *dom, *disks;
  const char *s;

  if (o == NULL)
    return -ENOMEM;
  add_str (o, "format", "vmdr-snapshot");
  json_object_object_add (o, "version", json_object_new_int (1));
  add_str (o, "id", m->id);
  dom = json_object_new_object ();
  add_str (dom, "name", m->domain);
  add_str (dom, "uuid", m->uuid);
  json_object_object_add (o, "domain", dom);
  add_str (o, "created", m->created);
  add_str (o, "parent", m->parent[0] ? m->parent : NULL);
  add_str (o, "kind", kind_names[m->kind]);
  add_str (o, "consistency", consistency_names[m->consistency]);
  add_str (o, "tool", m->tool);
  disks = json_object_new_array ();
  for (size_t i = 0; i < m->ndisks; i++)
    json_object_array_add (disks, disk_json (&m->disks[i]));
  json_object_object_add (o, "disks", disks);
  json_object_object_add (o, "memory", m->memory.present ? memory_json (&m->memory) : NULL);
  add_str (o, "domain_xml", m->domain_xml);
  s = json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
  *json = s ? strdup (s) : NULL;
  json_object_put (o);
  return *json ? 0 : -ENOMEM;
}

/* Copy string member K of O into BUF (SIZE bytes); absent or null gives ""
 * when OPTIONAL. */
static int
get_strbuf (json_object *o, const char *k, char *buf, size_t size, bool optional)
{
  json_object *m;
  const char *s;

  if (!json_object_object_get_ex (o, k, &m) || m == NULL) {
    buf[0] = '\0';
    return optional ? 0 : -EBADMSG;
  }
  if (!json_object_is_type (m, json_type_string))
    return -EBADMSG;
  s = json_object_get_string (m);
  if (strlen (s) >= size)
    return -EBADMSG;
  strcpy (buf, s);
  return 0;
}

static int
get_strdup (json_object *o, const char *k, char **out)
{
  json_object *m;

  *out = NULL;
  if (!json_object_object_get_ex (o, k, &m) || m == NULL)
    return 0;
  if (!json_object_is_type (m, json_type_string))
    return -EBADMSG;
  *out = strdup (json_object_get_string (m));
  return *out ? 0 : -ENOMEM;
}

static int
get_u64 (json_object *o, const char *k, uint64_t max, uint64_t *v)
{
  json_object *m;
  int64_t i;

  if (!json_object_object_get_ex (o, k, &m) || !json_object_is_type (m, json_type_int))
    return -EBADMSG;
  i = json_object_get_int64 (m);
  if (i < 0 || (uint64_t) i > max)
    return -EBADMSG;
  *v = (uint64_t) i;
  return 0;
}

static int
get_enum (json_object *o, const char *k, const char *const *names, size_t n, int *v)
{
  char buf[32];
  int r = get_strbuf (o, k, buf, sizeof buf, false);

  if (r < 0)
    return r;
  for (size_t i = 0; i < n; i++)
    if (strcmp (buf, names[i]) == 0) {
      *v = (int) i;
      return 0;
    }
  return -EBADMSG;
}

static int
parse_disk (json_object *o, struct vmdr_manifest_disk *d)
{
  char hex[VMDR_DIGEST_HEX_LEN + 1];
  uint64_t cs, fo, depth;
  json_object *c;
  int r;

  if (!json_object_is_type (o, json_type_object))
    return -EBADMSG;
  if ((r = get_strbuf (o, "target", d->target, sizeof d->target, false)) < 0 ||
      (r = get_strbuf (o, "format", d->format, sizeof d->format, false)) < 0 ||
      (r = get_u64 (o, "virtual_size", INT64_MAX, &d->virtual_size)) < 0 ||
      (r = get_u64 (o, "chunk_size", VMDR_CHUNK_MAX, &cs)) < 0 ||
      (r = get_u64 (o, "fanout", 4096, &fo)) < 0 ||
      (r = get_u64 (o, "depth", 64, &depth)) < 0 ||
      (r = get_strbuf (o, "root", hex, sizeof hex, false)) < 0 ||
      (r = get_u64 (o, "bytes_read", INT64_MAX, &d->bytes_read)) < 0 ||
      (r = get_u64 (o, "bytes_new", INT64_MAX, &d->bytes_new)) < 0)
    return r;
  if (vmdr_digest_from_hex (hex, &d->root) < 0)
    return -EBADMSG;
  d->chunk_size = (uint32_t) cs;
  d->fanout = (uint32_t) fo;
  d->depth = (uint32_t) depth;
  if (json_object_object_get_ex (o, "checkpoint", &c) && c != NULL) {
    if (!json_object_is_type (c, json_type_object) ||
        (r = get_strdup (c, "name", &d->checkpoint_name)) < 0 ||
        (r = get_strdup (c, "xml", &d->checkpoint_xml)) < 0)
      return r < 0 ? r : -EBADMSG;
  }
  return 0;
}

static int
parse_memory (json_object *o, struct vmdr_manifest_memory *mem)
{
  char hex[VMDR_DIGEST_HEX_LEN + 1];
  uint64_t fanout, depth;
  int r;

  if (o == NULL)
    return 0;                   /* null: no memory image */
  if (!json_object_is_type (o, json_type_object) ||
      (r = get_u64 (o, "size", INT64_MAX, &mem->size)) < 0 ||
      (r = get_u64 (o, "fanout", 4096, &fanout)) < 0 ||
      (r = get_u64 (o, "depth", 64, &depth)) < 0 ||
      (r = get_strbuf (o, "root", hex, sizeof hex, false)) < 0 ||
      (r = get_u64 (o, "bytes_new", INT64_MAX, &mem->bytes_new)) < 0 ||
      vmdr_digest_from_hex (hex, &mem->root) < 0)
    return -EBADMSG;
  mem->fanout = (uint32_t) fanout;
  mem->depth = (uint32_t) depth;
  mem->present = true;
  return 0;
}

static int
parse_members (json_object *o, struct vmdr_manifest *m)
{
  json_object *memory = NULL;
  json_object *dom, *disks;
  char fmt[32], domain_check[VMDR_DOMAIN_NAME_MAX + 1];
  const char *t;
  uint64_t version;
  int r, kind, cons;

  if (get_strbuf (o, "format", fmt, sizeof fmt, false) < 0 ||
      strcmp (fmt, "vmdr-snapshot") != 0 || get_u64 (o, "version", 1000, &version) < 0)
    return -EBADMSG;
  if (version > 1)
    return -EPROTONOSUPPORT;
  if ((r = get_strbuf (o, "id", m->id, sizeof m->id, false)) < 0 ||
      !json_object_object_get_ex (o, "domain", &dom) ||
      !json_object_is_type (dom, json_type_object) ||
      (r = get_strbuf (dom, "name", m->domain, sizeof m->domain, false)) < 0 ||
      (r = get_strbuf (dom, "uuid", m->uuid, sizeof m->uuid, true)) < 0 ||
      (r = get_strbuf (o, "created", m->created, sizeof m->created, false)) < 0 ||
      (r = get_strbuf (o, "parent", m->parent, sizeof m->parent, true)) < 0 ||
      (r = get_strbuf (o, "tool", m->tool, sizeof m->tool, true)) < 0 ||
      (r = get_enum (o, "kind", kind_names, 2, &kind)) < 0 ||
      (r = get_enum (o, "consistency", consistency_names, 3, &cons)) < 0 ||
      (r = get_strdup (o, "domain_xml", &m->domain_xml)) < 0)
    return r < 0 ? r : -EBADMSG;
  /* The id must agree with the domain it claims. */
  if (split_id (m->id, domain_check, &t) < 0 || strcmp (domain_check, m->domain) != 0)
    return -EBADMSG;
  m->kind = kind;
  m->consistency = cons;
  if (json_object_object_get_ex (o, "memory", &memory) && (r = parse_memory (memory, &m->memory)) < 0)
    return r;
  if (!json_object_object_get_ex (o, "disks", &disks) ||
      !json_object_is_type (disks, json_type_array) ||
      json_object_array_length (disks) > VMDR_MAX_DISKS)
    return -EBADMSG;
  m->ndisks = json_object_array_length (disks);
  m->disks = calloc (m->ndisks ? m->ndisks : 1, sizeof *m->disks);
  if (m->disks == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < m->ndisks; i++)
    if ((r = parse_disk (json_object_array_get_idx (disks, i), &m->disks[i])) < 0)
      return r;
  return 0;
}

int
vmdr_manifest_parse (const char *json, size_t len, struct vmdr_manifest *out)
{
  struct vmdr_manifest m = { 0 };
  json_tokener *tok;
  json_object *o;
  int r;

  if (len > VMDR_MANIFEST_MAX)
    return -EBADMSG;
  tok = json_tokener_new_ex (16);
  if (tok == NULL)
    return -ENOMEM;
  o = json_tokener_parse_ex (tok, json, (int) len);
  r = o && json_tokener_get_error (tok) == json_tokener_success &&
      json_object_is_type (o, json_type_object) ? parse_members (o, &m) : -EBADMSG;
  json_object_put (o);
  json_tokener_free (tok);
  if (r < 0)
    vmdr_manifest_clear (&m);
  else
    *out = m;
  return r;
}

/* ---- repository access ------------------------------------------------------ */

int
vmdr_manifest_put (struct vmdr_repo *repo, const struct vmdr_manifest *m)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  _cleanup_free_ char *json = NULL;
  char key[VMDR_KEY_MAX + 1];
  int r;

  if ((r = vmdr_manifest_key (m->id, key, sizeof key)) < 0 ||
      (r = vmdr_manifest_format (m, &json)) < 0)
    return r;
  return b->ops->put (b, key, json, strlen (json), VMDR_PUT_EXCLUSIVE);
}

int
vmdr_manifest_get (struct vmdr_repo *repo, const char *id, struct vmdr_manifest *m)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  _cleanup_free_ void *data = NULL;
  char key[VMDR_KEY_MAX + 1];
  size_t len;
  int r;

  if ((r = vmdr_manifest_key (id, key, sizeof key)) < 0)
    return r;
  r = b->ops->get (b, key, 0, 0, VMDR_MANIFEST_MAX, &data, &len);
  if (r == -EFBIG)
    return -EBADMSG;
  if (r < 0)
    return r;
  r = vmdr_manifest_parse (data, len, m);
  if (r == 0 && strcmp (m->id, id) != 0) {   /* a manifest filed under another name */
    vmdr_manifest_clear (m);
    return -EBADMSG;
  }
  return r;
}

int
vmdr_manifest_delete (struct vmdr_repo *repo, const char *id)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  char key[VMDR_KEY_MAX + 1];
  int r;

  if ((r = vmdr_manifest_key (id, key, sizeof key)) < 0)
    return r;
  return b->ops->del (b, key);
}

struct idlist {
  char **v;
  size_t n, cap;
};

/* "snapshots/ESC/TIME.json" -> "DOMAIN/TIME"; other keys are skipped. */
static int
collect_id (void *opaque, const char *key, const struct vmdr_object_info *info)
{
  struct idlist *l = opaque;
  char esc[VMDR_KEY_MAX + 1], domain[VMDR_DOMAIN_NAME_MAX + 1], t[VMDR_TIME_LEN + 1];
  const char *rest = key + strlen ("snapshots/"), *slash = strchr (rest, '/');
  size_t tl;

  (void) info;
  if (slash == NULL || (size_t) (slash - rest) >= sizeof esc)
    return 0;
  memcpy (esc, rest, (size_t) (slash - rest));
  esc[slash - rest] = '\0';
  tl = strlen (slash + 1);
  if (tl != VMDR_TIME_LEN + 5 || strcmp (slash + 1 + VMDR_TIME_LEN, ".json") != 0)
    return 0;
  memcpy (t, slash + 1, VMDR_TIME_LEN);
  t[VMDR_TIME_LEN] = '\0';
  if (!time_valid (t) || unescape_domain (esc, domain, sizeof domain) < 0)
    return 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    void *p = reallocarray (l->v, cap, sizeof *l->v);
    if (p == NULL)
      return -ENOMEM;
    l->v = p;
    l->cap = cap;
  }
  if (asprintf (&l->v[l->n], "%s/%s", domain, t) < 0)
    return -ENOMEM;
  l->n++;
  return 0;
}

static int
cmp_ids (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

void
vmdr_strv_free (char **v, size_t n)
{
  for (size_t i = 0; i < n && v; i++)
    free (v[i]);
  free (v);
}

size_t
vmdr_id_domain_len (const char *id)
{
  return (size_t) (strrchr (id, '/') - id);
}

int
vmdr_time_key (const char *when, char *out)
{
  int Y, M, D, h, m, s, n = 0;

  if (strlen (when) == VMDR_TIME_LEN && when[8] == 'T' && when[VMDR_TIME_LEN - 1] == 'Z') {
    strcpy (out, when);
    return 0;
  }
  if (sscanf (when, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &s, &n) != 6 ||
      (when[n] != '\0' && strcmp (when + n, "Z") != 0))
    return -EINVAL;
  snprintf (out, VMDR_TIME_LEN + 1, "%04d%02d%02dT%02d%02d%02d.000Z", Y, M, D, h, m, s);
  return 0;
}

int
vmdr_snapshot_list (struct vmdr_repo *repo, const char *domain, char ***ids, size_t *n)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  char prefix[3 * VMDR_DOMAIN_NAME_MAX + 16], esc[3 * VMDR_DOMAIN_NAME_MAX + 1];
  struct idlist l = { 0 };
  int r;

  if (domain) {
    if (!vmdr_domain_name_valid (domain))
      return -EINVAL;
    escape_domain (domain, esc);
    snprintf (prefix, sizeof prefix, "snapshots/%s/", esc);
  }
  else
    snprintf (prefix, sizeof prefix, "snapshots/");
  r = b->ops->list (b, prefix, collect_id, &l);
  if (r < 0) {
    vmdr_strv_free (l.v, l.n);
    return r;
  }
  /* Sorted by domain, then time: the time format sorts as text. */
  if (l.n > 1)                  /* qsort (NULL, 0) is undefined */
    qsort (l.v, l.n, sizeof *l.v, cmp_ids);
  *ids = l.v;
  *n = l.n;
  return 0;
}

/* "2026-11-27T21:00:00[.mmm][Z]" or an id time -> id time; for a time
 * without milliseconds, the end of that second (so "at or before" holds). */
static int
normalize_time (const char *s, char *out)
{
  int Y, M, D, h, m, sec, ms = 999, n = 0;

  if (time_valid (s)) {
    strcpy (out, s);
    return 0;
  }
  if (sscanf (s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6)
    return -EINVAL;
  s += n;
  if (*s == '.') {
    int k = 0;
    if (sscanf (s, ".%3d%n", &ms, &k) != 1 || k != 4)
      return -EINVAL;
    s += k;
  }
  if (strcmp (s, "Z") != 0 && *s != '\0')
    return -EINVAL;
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 ||
      Y < 1970 || Y > 9999 || h < 0 || m < 0 || sec < 0)
    return -EINVAL;
  char buf[64];
  snprintf (buf, sizeof buf, "%04d%02d%02dT%02d%02d%02d.%03dZ", Y, M, D, h, m, sec, ms);
  if (!time_valid (buf))
    return -EINVAL;
  strcpy (out, buf);
  return 0;
}

int
vmdr_snapshot_resolve (struct vmdr_repo *repo, const char *sel, char *id)
{
  char domain[VMDR_DOMAIN_NAME_MAX + 1], t[VMDR_TIME_LEN + 1];
  const char *at = strrchr (sel, '@'), *unused;
  char **ids;
  size_t n, best = SIZE_MAX;
  int r;

  if (at == NULL) {             /* a plain id */
    if (split_id (sel, domain, &unused) < 0)
      return -EINVAL;
    snprintf (id, VMDR_SNAPSHOT_ID_MAX, "%s", sel);
    return 0;
  }
  if ((size_t) (at - sel) > VMDR_DOMAIN_NAME_MAX || at == sel)
    return -EINVAL;
  memcpy (domain, sel, (size_t) (at - sel));
  domain[at - sel] = '\0';
  if (!vmdr_domain_name_valid (domain))
    return -EINVAL;
  if (strcmp (at + 1, "latest") == 0)
    strcpy (t, "99999999T999999.999Z");
  else if (normalize_time (at + 1, t) < 0)
    return -EINVAL;
  if ((r = vmdr_snapshot_list (repo, domain, &ids, &n)) < 0)
    return r;
  for (size_t i = 0; i < n; i++)
    if (strcmp (strrchr (ids[i], '/') + 1, t) <= 0)
      best = i;
  if (best != SIZE_MAX)
    snprintf (id, VMDR_SNAPSHOT_ID_MAX, "%s", ids[best]);
  vmdr_strv_free (ids, n);
  return best == SIZE_MAX ? -ENOENT : 0;
}

/* PARENT is an older snapshot of ID's domain: ids are "DOMAIN/TIME" with a
 * fixed-width TIME, so this also rules out loops in damaged manifests. */
static bool
older_sibling (const char *parent, const char *id)
{
  const char *ps = strrchr (parent, '/'), *is = strrchr (id, '/');

  return ps && is && ps - parent == is - id && memcmp (parent, id, (size_t) (is - id)) == 0 &&
         strcmp (ps, is) < 0;
}

int
vmdr_manifest_chain (struct vmdr_repo *repo, const struct vmdr_manifest *m,
                     struct vmdr_chain *chain)
{
  struct vmdr_chain c = { .length = 1, .complete = true };
  char parent[VMDR_SNAPSHOT_ID_MAX];
  bool incremental = m->kind == VMDR_KIND_INCREMENTAL;
  int r;

  snprintf (c.base, sizeof c.base, "%s", m->id);
  snprintf (parent, sizeof parent, "%s", m->parent);
  while (incremental) {
    struct vmdr_manifest p = { 0 };
    if (parent[0] == '\0' || !older_sibling (parent, c.base))
      return -EBADMSG;
    if ((r = vmdr_manifest_get (repo, parent, &p)) == -ENOENT) {
      c.complete = false;
      break;
    }
    if (r < 0)
      return r;
    memcpy (c.base, parent, sizeof c.base);
    memcpy (parent, p.parent, sizeof parent);
    incremental = p.kind == VMDR_KIND_INCREMENTAL;
    c.length++;
    vmdr_manifest_clear (&p);
  }
  *chain = c;
  return 0;
}
