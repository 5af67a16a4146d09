#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "verify.h"

/* ---- digest set ------------------------------------------------------------ */

struct vmdr_digest_set {
  struct vmdr_digest *v;        /* zero digest = empty slot */
  size_t cap, n;
};


int
vmdr_digest_set_new (struct vmdr_digest_set **out)
{
  struct vmdr_digest_set *s = calloc (1, sizeof *s);

  if (s == NULL)
    return -ENOMEM;
  *out = s;
  return 0;
}

void
vmdr_digest_set_free (struct vmdr_digest_set *s)
{
  if (s) {
    free (s->v);
    free (s);
  }
}

size_t vmdr_digest_set_count (const struct vmdr_digest_set *s) { return s->n; }

static struct vmdr_digest *
slot (struct vmdr_digest *v, size_t cap, const struct vmdr_digest *d)
{
  uint64_t h;

  memcpy (&h, d->b, sizeof h);
  for (size_t i = (size_t) h & (cap - 1);; i = (i + 1) & (cap - 1))
    if (vmdr_digest_is_zero (&v[i]) || memcmp (&v[i], d, sizeof *d) == 0)
      return &v[i];
}

bool
vmdr_digest_set_contains (const struct vmdr_digest_set *s, const struct vmdr_digest *d)
{
  return s->cap && memcmp (slot (s->v, s->cap, d), d, sizeof *d) == 0;
}

int
vmdr_digest_set_add (struct vmdr_digest_set *s, const struct vmdr_digest *d)
{
  struct vmdr_digest *p;

  if (4 * (s->n + 1) > 3 * s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 1024;
    struct vmdr_digest *v = calloc (cap, sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
      if (!vmdr_digest_is_zero (&s->v[i]))
        *slot (v, cap, &s->v[i]) = s->v[i];
    free (s->v);
    s->v = v;
    s->cap = cap;
  }
  p = slot (s->v, s->cap, d);
  if (memcmp (p, d, sizeof *d) == 0)
    return 0;
  *p = *d;
  s->n++;
  return 1;
}

/* ---- verifying -------------------------------------------------------------- */

void
vmdr_verify_result_clear (struct vmdr_verify_result *r)
{
  if (r) {
    free (r->damage);
    memset (r, 0, sizeof *r);
  }
}

struct ctx {
  const struct vmdr_verify_opts *o;
  struct vmdr_verify_result *res;
  size_t disk;
  int err;                      /* ENOMEM in a callback */
};

/* A stable per-run sample: chunk digests are uniform, mixed with the seed. */
static bool
want_chunk (void *opaque, uint64_t index, const struct vmdr_digest *d)
{
  struct ctx *c = opaque;
  uint64_t h;
  int r;

  (void) index;
  if (c->o->sample_permille < 1000) {
    memcpy (&h, d->b + 8, sizeof h);
    h ^= c->o->seed;
    h *= 0x9e3779b97f4a7c15ull;
    if ((h >> 32) % 1000 >= c->o->sample_permille)
      return false;
  }
  if (c->o->seen == NULL)
    return true;
  r = vmdr_digest_set_add (c->o->seen, d);
  if (r < 0)
    c->err = r;
  return r == 1;
}

static void
on_damage (void *opaque, const struct vmdr_restore_error *w, int err)
{
  struct ctx *c = opaque;
  struct vmdr_verify_result *res = c->res;

  res->damaged_chunks++;
  if (res->ndamage >= VMDR_VERIFY_MAX_REPORTED)
    return;
  if (res->damage == NULL) {
    res->damage = calloc (VMDR_VERIFY_MAX_REPORTED, sizeof *res->damage);
    if (res->damage == NULL) {
      c->err = -ENOMEM;
      return;
    }
  }
  res->damage[res->ndamage++] = (struct vmdr_verify_damage) {
    .disk = c->disk, .offset = w->offset, .digest = w->digest, .err = err };
}

/* The memory image: every node and chunk, in order (no sampling: memory
 * images are small beside disks, and a resume needs every byte). */
static int
verify_memory (struct vmdr_repo *repo, const struct vmdr_manifest *m,
               const struct vmdr_verify_opts *o, struct vmdr_verify_result *res)
{
  struct vmdr_stream_read_stats st = { 0 };
  struct vmdr_restore_error where;
  struct vmdr_stream_tree t;
  struct ctx c = { .o = o, .res = res, .disk = m->ndisks };
  int r;

  vmdr_manifest_memory_tree (&m->memory, &t);
  r = vmdr_stream_restore (repo, &t, -1, o->threads, &st, &where);
  res->chunks += st.chunks;
  res->bytes += st.bytes;
  if (r == -EBADMSG || r == -EILSEQ || r == -ENOENT) {
    on_damage (&c, &where, r);
    return c.err;
  }
  return r;
}

int
vmdr_verify_snapshot (struct vmdr_repo *repo, const struct vmdr_manifest *m,
                      const struct vmdr_verify_opts *o, struct vmdr_verify_result *res)
{
  struct ctx c = { .o = o, .res = res };
  struct vmdr_read_opts ro = { .fd = -1, .threads = o->threads,
                               .damage = on_damage, .dopaque = &c,
                               .filter = want_chunk, .fopaque = &c };

  memset (res, 0, sizeof *res);
  for (size_t i = 0; i < m->ndisks; i++) {
    struct vmdr_disk_read_stats st = { 0 };
    struct vmdr_disk_tree t;
    int r;

    c.disk = i;
    vmdr_manifest_disk_tree (&m->disks[i], &t);
    r = vmdr_disk_read (repo, &t, &ro, &st, NULL);
    res->chunks += st.chunks;
    res->bytes += st.bytes;
    if (c.err < 0)
      return c.err;
    if (r == -EBADMSG || r == -EILSEQ || r == -ENOENT) {
      if (res->damaged_chunks == 0 && res->tree_err == 0) {
        res->tree_err = r;      /* not a chunk: the index itself */
        res->tree_disk = i;
      }
    }
    else if (r < 0)
      return r;
  }
  if (m->memory.present) {
    int r = verify_memory (repo, m, o, res);
    if (r < 0)
      return r;
  }
  return res->damaged_chunks || res->tree_err ? -EBADMSG : 0;
}

/* ---- marks ------------------------------------------------------------------ */

int
vmdr_damage_mark (struct vmdr_repo *repo, const char *id, const char *why)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  char key[VMDR_KEY_MAX + 1], when[32];
  time_t now = time (NULL);
  struct tm tm;
  json_object *o;
  int r;

  if ((r = vmdr_snapshot_key ("damaged", id, "", key, sizeof key)) < 0)
    return r;
  gmtime_r (&now, &tm);
  strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  o = json_object_new_object ();
  json_object_object_add (o, "id", json_object_new_string (id));
  json_object_object_add (o, "found", json_object_new_string (when));
  json_object_object_add (o, "what", json_object_new_string (why));
  const char *s = json_object_to_json_string (o);
  r = b->ops->put (b, key, s, strlen (s), 0);
  json_object_put (o);
  return r;
}

int
vmdr_damage_clear (struct vmdr_repo *repo, const char *id)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  char key[VMDR_KEY_MAX + 1];
  int r;

  if ((r = vmdr_snapshot_key ("damaged", id, "", key, sizeof key)) < 0)
    return r;
  return b->ops->del (b, key);
}

int
vmdr_damage_is_marked (struct vmdr_repo *repo, const char *id)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  struct vmdr_object_info info;
  char key[VMDR_KEY_MAX + 1];
  int r;

  if ((r = vmdr_snapshot_key ("damaged", id, "", key, sizeof key)) < 0)
    return r;
  r = b->ops->stat (b, key, &info);
  return r == -ENOENT ? 0 : r < 0 ? r : 1;
}

const char *
vmdr_damage_text (int err)
{
  switch (err) {
  case -EBADMSG: return "checksum mismatch or malformed";
  case -EILSEQ: return "content does not match its digest";
  case -ENOENT: return "missing";
  default: return strerror (-err);
  }
}
