#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "lock.h"
#include "manifest.h"
#include "pack.h"
#include "prune.h"
#include "snapshot.h"
#include "verify.h"

/* ---- retention -------------------------------------------------------------- */

/* Bucket key of an id's time ("YYYYMMDDTHHMMSS.mmmZ") for a rule. */
static int
bucket (const char *id, int rule, char *key)
{
  const char *t = strrchr (id, '/');
  struct tm tm = { 0 };

  if (t == NULL || strlen (t + 1) != VMDR_TIME_LEN)
    return -EINVAL;
  t++;
  switch (rule) {
  case 0: snprintf (key, 16, "%.11s", t); return 0;   /* hour: YYYYMMDDTHH */
  case 1: snprintf (key, 16, "%.8s", t); return 0;    /* day */
  case 3: snprintf (key, 16, "%.6s", t); return 0;    /* month */
  case 4: snprintf (key, 16, "%.4s", t); return 0;    /* year */
  }
  /* ISO week: "%G-%V" needs the date as a struct tm. */
  if (sscanf (t, "%4d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
    return -EINVAL;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_hour = 12;
  if (timegm (&tm) == (time_t) -1)
    return -EINVAL;
  strftime (key, 16, "%G-%V", &tm);
  return 0;
}

int
vmdr_retention_select (char *const *ids, size_t n, const struct vmdr_keep *k,
                       bool *keep)
{
  const unsigned limits[5] = { k->hourly, k->daily, k->weekly, k->monthly, k->yearly };
  char key[16], last[16];

  if (!k->last && !k->hourly && !k->daily && !k->weekly && !k->monthly && !k->yearly)
    return -EINVAL;
  for (size_t i = 0; i < n; i++)
    keep[i] = n - i <= k->last;
  /* Per rule, newest first: the first snapshot seen in a bucket is kept. */
  for (int rule = 0; rule < 5; rule++) {
    unsigned buckets = 0;
    last[0] = '\0';
    for (size_t i = n; i-- > 0 && buckets < limits[rule];) {
      if (bucket (ids[i], rule, key) < 0)
        return -EINVAL;
      if (strcmp (key, last) == 0)
        continue;
      strcpy (last, key);
      keep[i] = true;
      buckets++;
    }
  }
  return 0;
}

int
vmdr_retention_apply (struct vmdr_repo *repo, const char *domain, const struct vmdr_keep *k,
                      bool dry_run, vmdr_removed_fn fn, void *opaque, size_t *removed)
{
  _cleanup_free_ bool *keep = NULL;
  char **ids;
  size_t n;
  int r;

  *removed = 0;
  if ((r = vmdr_snapshot_list (repo, domain, &ids, &n)) < 0)
    return r;
  if ((keep = calloc (n ? n : 1, sizeof *keep)) == NULL)
    r = -ENOMEM;
  else
    r = vmdr_retention_select (ids, n, k, keep);
  for (size_t i = 0; i < n && r == 0; i++) {
    if (keep[i])
      continue;
    if (!dry_run && (r = vmdr_manifest_delete (repo, ids[i])) < 0)
      break;
    if (!dry_run)
      vmdr_damage_clear (repo, ids[i]);
    if (fn)
      fn (opaque, ids[i]);
    (*removed)++;
  }
  vmdr_strv_free (ids, n);
  return r;
}

int
vmdr_snapshot_domains (struct vmdr_repo *repo, char ***out, size_t *nout)
{
  char **ids, **doms;
  size_t n, k = 0;
  int r;

  if ((r = vmdr_snapshot_list (repo, NULL, &ids, &n)) < 0)
    return r;
  doms = calloc (n ? n : 1, sizeof *doms);
  for (size_t i = 0; doms && i < n; i++) {
    size_t len = vmdr_id_domain_len (ids[i]);
    if (k > 0 && strlen (doms[k - 1]) == len && strncmp (doms[k - 1], ids[i], len) == 0)
      continue;
    if ((doms[k] = strndup (ids[i], len)) == NULL) {
      vmdr_strv_free (doms, k);
      doms = NULL;
      break;
    }
    k++;
  }
  vmdr_strv_free (ids, n);
  if (doms == NULL)
    return -ENOMEM;
  *out = doms;
  *nout = k;
  return 0;
}

/* ---- garbage collection -------------------------------------------------- */

struct mark {
  struct vmdr_digest_set *live;
  int err;
};

static int
mark_node (void *opaque, const struct vmdr_digest *d)
{
  struct mark *m = opaque;
  int r = vmdr_digest_set_add (m->live, d);

  return r < 0 ? r : r == 0;    /* seen before: skip its subtree */
}

static int
mark_leaf (void *opaque, uint64_t first, uint64_t count, const struct vmdr_digest *d)
{
  struct mark *m = opaque;

  (void) first;
  for (uint64_t i = 0; d && i < count; i++)
    if (!vmdr_digest_is_zero (&d[i]) && vmdr_digest_set_add (m->live, &d[i]) < 0)
      return -ENOMEM;
  return 0;
}

static int
mark_stream_leaf (void *opaque, uint64_t offset, const struct vmdr_stream_entry *e, size_t n)
{
  (void) offset;
  for (size_t i = 0; i < n; i++)
    if (mark_leaf (opaque, 0, 1, &e[i].d) < 0)
      return -ENOMEM;
  return 0;
}

static int
mark_all (struct vmdr_repo *repo, struct vmdr_digest_set *live, struct vmdr_gc_stats *st)
{
  struct mark m = { .live = live };
  struct vmdr_zctx *z;
  char **ids;
  size_t n;
  int r;

  if ((r = vmdr_snapshot_list (repo, NULL, &ids, &n)) < 0)
    return r;
  if ((r = vmdr_zctx_new (1, &z)) < 0) {
    vmdr_strv_free (ids, n);
    return r;
  }
  for (size_t i = 0; i < n && r == 0; i++) {
    struct vmdr_manifest man;
    if ((r = vmdr_manifest_get (repo, ids[i], &man)) < 0)
      break;
    for (size_t d = 0; d < man.ndisks && r == 0; d++) {
      struct vmdr_disk_tree t;
      vmdr_manifest_disk_tree (&man.disks[d], &t);
      r = vmdr_disk_tree_walk_nodes (repo, z, &t, mark_node, mark_leaf, &m);
    }
    if (r == 0 && man.memory.present) {
      struct vmdr_stream_tree st_;
      vmdr_manifest_memory_tree (&man.memory, &st_);
      r = vmdr_stream_tree_walk_nodes (repo, z, &st_, mark_node, mark_stream_leaf, &m);
    }
    vmdr_manifest_clear (&man);
    st->snapshots++;
  }
  vmdr_zctx_free (z);
  vmdr_strv_free (ids, n);
  st->objects_reachable = vmdr_digest_set_count (live);
  return r == -ENOENT || r == -EILSEQ ? -EBADMSG : r;
}

struct sweep {
  struct vmdr_repo *repo;
  struct vmdr_digest_set *live;
  struct vmdr_digest_set *indexed;   /* packs that have an index */
  time_t cutoff;
  bool dry_run;
  struct vmdr_gc_stats *st;
};

/* Is any blob of the pack with this index live?  Also counts dead bytes. */
static int
pack_liveness (struct sweep *s, const struct vmdr_pack_entry *e, size_t n,
               uint64_t *dead)
{
  size_t live = 0;

  *dead = 0;
  for (size_t i = 0; i < n; i++) {
    if (vmdr_digest_set_contains (s->live, &e[i].digest))
      live++;
    else
      *dead += VMDR_BLOB_HEADER_LEN + e[i].stored_len;
  }
  return live > 0;
}

static int
sweep_one (void *opaque, const char *key, const struct vmdr_object_info *info)
{
  struct sweep *s = opaque;
  struct vmdr_backend *b = vmdr_repo_backend (s->repo);
  _cleanup_free_ void *data = NULL;
  _cleanup_free_ struct vmdr_pack_entry *e = NULL;
  char pkey[VMDR_PACK_KEY_LEN];
  struct vmdr_object_info pinfo;
  struct vmdr_digest id;
  uint64_t dead;
  size_t len, n;
  int r;

  if (vmdr_pack_id_from_index_key (key, &id) < 0)
    return 0;
  s->st->packs++;
  if (vmdr_digest_set_add (s->indexed, &id) < 0)
    return -ENOMEM;
  r = b->ops->get (b, key, 0, 0, 16 + (size_t) VMDR_PACK_INDEX_MAX_ENTRIES * VMDR_PACK_ENTRY_LEN,
                   &data, &len);
  if (r == 0)
    r = vmdr_pack_index_parse (data, len, &e, &n);
  if (r < 0)
    return r == -EFBIG ? -EBADMSG : r;      /* never guess: stop */
  if (pack_liveness (s, e, n, &dead)) {
    if (dead) {
      s->st->packs_partial++;
      s->st->bytes_unreferenced += dead;
    }
    return 0;
  }
  if (info->mtime > s->cutoff) {
    s->st->packs_young++;
    return 0;
  }
  vmdr_pack_key (&id, pkey);
  if (b->ops->stat (b, pkey, &pinfo) == 0)
    s->st->bytes_deleted += pinfo.size;
  s->st->bytes_deleted += info->size;
  s->st->packs_deleted++;
  if (s->dry_run)
    return 0;
  /* Index first: a pack without an index is invisible garbage. */
  if ((r = b->ops->del (b, key)) < 0)
    return r;
  return b->ops->del (b, pkey);
}

/* A pack without an index is the work of a writer that died between the
 * two puts (or of one still writing: hence the grace period). */
static int
sweep_orphan (void *opaque, const char *key, const struct vmdr_object_info *info)
{
  struct sweep *s = opaque;
  struct vmdr_backend *b = vmdr_repo_backend (s->repo);
  char ikey[VMDR_PACK_KEY_LEN];
  struct vmdr_digest id;

  /* "data/XX/HEX" -> the index key, whose parser checks the shape. */
  if (strncmp (key, "data/", 5) != 0)
    return 0;
  snprintf (ikey, sizeof ikey, "index/%s", key + 5);
  if (vmdr_pack_id_from_index_key (ikey, &id) < 0 ||
      vmdr_digest_set_contains (s->indexed, &id) || info->mtime > s->cutoff)
    return 0;
  s->st->packs_deleted++;
  s->st->bytes_deleted += info->size;
  return s->dry_run ? 0 : b->ops->del (b, key);
}

static int
gc_locked (struct vmdr_repo *repo, time_t grace, bool dry_run, struct vmdr_gc_stats *st)
{
  struct vmdr_digest_set *live;
  struct sweep s = { .repo = repo, .cutoff = time (NULL) - grace,
                     .dry_run = dry_run, .st = st };
  int r;

  /* A writer that started before we took our lock may be storing chunks
   * that only its unwritten manifest references: never run beside one. */
  if ((r = vmdr_lock_any (repo, "domain-")) != 0)
    return r < 0 ? r : -EBUSY;
  /* No writer can start now: an index read from here on is complete for
   * every manifest we will see. */
  if ((r = vmdr_repo_load_index (repo, NULL)) < 0 ||
      (r = vmdr_digest_set_new (&live)) < 0)
    return r;
  r = mark_all (repo, live, st);
  if (r == 0)
    r = vmdr_digest_set_new (&s.indexed);
  if (r == 0) {
    struct vmdr_backend *b = vmdr_repo_backend (repo);
    s.live = live;
    r = b->ops->list (b, "index/", sweep_one, &s);
    if (r == 0)
      r = b->ops->list (b, "data/", sweep_orphan, &s);
    /* Temporary files belong to puts in flight, the locks' own included,
     * which no lock protects: a quarter of an hour whatever the grace. */
    time_t temp_cutoff = s.cutoff < time (NULL) - 900 ? s.cutoff : time (NULL) - 900;
    if (r == 0 && !dry_run && b->ops->sweep_temp)
      r = b->ops->sweep_temp (b, temp_cutoff, &st->temp_removed);
  }
  vmdr_digest_set_free (s.indexed);
  vmdr_digest_set_free (live);
  return r;
}

int
vmdr_gc (struct vmdr_repo *repo, time_t grace, bool dry_run, struct vmdr_gc_stats *st)
{
  struct vmdr_lock *lock;
  int r;

  memset (st, 0, sizeof *st);
  if ((r = vmdr_lock_acquire (repo, "gc", &lock, NULL, NULL)) < 0)
    return r;
  r = gc_locked (repo, grace, dry_run, st);
  vmdr_lock_release (lock);
  return r;
}
