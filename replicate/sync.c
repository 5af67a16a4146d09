#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cleanup.h"
#include "disk-index.h"
#include "lock.h"
#include "snapshot.h"
#include "stream-index.h"
#include "sync.h"
#include "verify.h"

#define QUEUE_MAX 1024
#define NODE_CAP (256u << 10)   /* the largest index node: 4096 entries */
#define COPYING_MAX 64
_Static_assert (COPYING_MAX >= VMDR_MAX_THREADS, "a place for every worker");

struct job {
  struct vmdr_digest d;
  enum vmdr_blob_kind kind;
};

/* The worker pool that moves chunks from SRC to DST. */
struct copier {
  struct vmdr_repo *src, *dst;
  const struct vmdr_sync_opts *o;
  size_t cap;                   /* plaintext buffer per worker */
  double t0;                    /* for --bwlimit */

  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full, idle;
  struct job q[QUEUE_MAX];
  size_t head, count, busy;
  bool closed;
  int err;
  struct vmdr_sync_stats *st;
  /* Blobs being copied, by place in SRC: a group's members are copied
   * with it, so a worker that meets one goes on instead of fetching and
   * verifying the group a second time. */
  struct place { struct vmdr_digest pack; uint32_t offset; } copying[COPYING_MAX];
  size_t ncopying;
};

enum claim { CLAIMED, UNTRACKED, COMING };

/* Where P is in c->copying, or ncopying.  Under the lock. */
static size_t
find_place_locked (const struct copier *c, const struct place *p)
{
  size_t i;

  for (i = 0; i < c->ncopying; i++)
    if (c->copying[i].offset == p->offset &&
        memcmp (&c->copying[i].pack, &p->pack, sizeof p->pack) == 0)
      break;
  return i;
}

/* Claim the place of J's blob in SRC.  COMING: another worker copies the
 * blob there (a group J is a member of), and J with it, before the
 * snapshot's nodes go (they wait for every chunk); UNTRACKED: no room to
 * track it, copy it anyway. */
static enum claim
claim (struct copier *c, const struct job *j, struct place *p)
{
  enum claim ret = UNTRACKED;
  uint32_t stored;

  if (vmdr_repo_locate (c->src, &j->d, &p->pack, &p->offset, &stored) < 0)
    return UNTRACKED;
  pthread_mutex_lock (&c->lock);
  if (find_place_locked (c, p) < c->ncopying)
    ret = COMING;
  else if (c->ncopying < COPYING_MAX) {
    c->copying[c->ncopying++] = *p;
    ret = CLAIMED;
  }
  pthread_mutex_unlock (&c->lock);
  return ret;
}

static void
unclaim (struct copier *c, const struct place *p)
{
  pthread_mutex_lock (&c->lock);
  size_t i = find_place_locked (c, p);
  if (i < c->ncopying)
    c->copying[i] = c->copying[--c->ncopying];
  pthread_mutex_unlock (&c->lock);
}

/* Put each member of group BLOB (verified whole) into DST one by one: a
 * version 1 repository holds no groups.  *stored: the bytes added. */
static int
put_members (struct copier *c, struct vmdr_zctx *z, enum vmdr_blob_kind kind,
             const void *blob, size_t blen, size_t *stored)
{
  struct vmdr_blob_group g;
  size_t off = 0, s;
  int r;

  *stored = 0;
  if ((r = vmdr_blob_group_open (z, vmdr_repo_config (c->src)->hash, blob, blen, &g)) < 0)
    return r;
  for (size_t i = 0; i < g.n && r == 0; i++) {
    struct vmdr_digest d;
    uint32_t len;
    vmdr_blob_group_member (g.table, i, &d, &len);
    r = vmdr_repo_put_chunk (c->dst, z, kind, &d, g.plain + off, len, &s);
    *stored += s;
    off += len;
  }
  return r;
}

/* Move one chunk unless DST has it.  Returns the bytes stored at DST. */
static int
copy_one (struct copier *c, struct vmdr_zctx *z, void *buf, const struct job *j,
          size_t *stored, size_t *len)
{
  struct place p;
  const void *blob;
  size_t blen;
  enum claim claimed;
  int r;

  *stored = *len = 0;
  if (vmdr_repo_has_chunk (c->dst, &j->d))
    return 0;
  /* A worker does not wait for a group another one copies: it goes on
   * with the next chunk, so that the workers copy different groups. */
  if ((claimed = claim (c, j, &p)) == COMING)
    return 0;
  r = 0;
  if (vmdr_repo_has_chunk (c->dst, &j->d))
    goto out;                   /* its group came meanwhile */
  /* Verified against its digest (decompressed, hashed; a group: all its
   * members), then stored as it came: compressing it again would cost
   * more than all the rest. */
  if ((r = vmdr_repo_get_blob (c->src, z, &j->d, &blob, &blen, buf, c->cap, len)) < 0)
    goto out;
  r = vmdr_repo_put_blob (c->dst, &j->d, blob, blen, stored);
  if (r == -EPROTONOSUPPORT)    /* a group, into a version 1 repository */
    r = put_members (c, z, j->kind, blob, blen, stored);
out:
  if (claimed == CLAIMED)
    unclaim (c, &p);
  return r;
}

/* --bwlimit: sleep until the bytes sent fit the rate.  Called unlocked. */
static void
throttle (struct copier *c, uint64_t sent)
{
  vmdr_bwlimit_sleep (c->o->bwlimit, c->t0, sent);
}

static void
account (struct copier *c, size_t stored, size_t len)
{
  if (stored) {
    c->st->chunks_sent++;
    c->st->bytes_sent += stored;
  }
  else if (len == 0)
    c->st->chunks_present++;
  c->st->bytes_read += len;
  if (c->o->progress)
    c->o->progress (c->o->popaque, c->st->bytes_read, 0);
}

/* A worker's own state, made before it starts: a worker that could not
 * start would leave the queue with nobody to empty it. */
struct worker_state {
  struct copier *c;
  struct vmdr_zctx *z;
  void *buf;
};

static void *
worker (void *opaque)
{
  struct worker_state *ws = opaque;
  struct copier *c = ws->c;
  struct vmdr_zctx *z = ws->z;
  void *buf = ws->buf;
  int e;

  pthread_mutex_lock (&c->lock);
  for (;;) {                    /* an error only empties the queue: drain clears it */
    if (c->count == 0) {
      if (c->closed)
        break;
      pthread_cond_wait (&c->not_empty, &c->lock);
      continue;
    }
    struct job j = c->q[c->head];
    size_t stored, len;
    c->head = (c->head + 1) % QUEUE_MAX;
    c->count--;
    c->busy++;
    pthread_cond_signal (&c->not_full);
    pthread_mutex_unlock (&c->lock);
    bool skip = c->err != 0;    /* after an error the queue is only emptied */
    e = skip ? 0 : copy_one (c, z, buf, &j, &stored, &len);
    pthread_mutex_lock (&c->lock);
    c->busy--;
    if (e < 0 && c->err == 0)
      c->err = e;
    else if (e == 0 && !skip)
      account (c, stored, len);
    uint64_t sent = c->st->bytes_sent;
    if (c->count == 0 && c->busy == 0)
      pthread_cond_broadcast (&c->idle);
    pthread_mutex_unlock (&c->lock);
    throttle (c, sent);
    pthread_mutex_lock (&c->lock);
  }
  pthread_cond_broadcast (&c->idle);
  pthread_cond_broadcast (&c->not_full);
  pthread_mutex_unlock (&c->lock);
  return NULL;
}

static int
push (struct copier *c, const struct vmdr_digest *d, enum vmdr_blob_kind kind)
{
  int e;

  pthread_mutex_lock (&c->lock);
  while (c->count == QUEUE_MAX && c->err == 0)
    pthread_cond_wait (&c->not_full, &c->lock);
  if (c->err == 0) {
    c->q[(c->head + c->count) % QUEUE_MAX] = (struct job) { *d, kind };
    c->count++;
    pthread_cond_signal (&c->not_empty);
  }
  e = c->err;
  pthread_mutex_unlock (&c->lock);
  return e;
}

/* Wait until every queued chunk is done; the first error, and clear it
 * (a damaged snapshot must not stop the next one). */
static int
drain (struct copier *c)
{
  int e;

  pthread_mutex_lock (&c->lock);
  while (c->count > 0 || c->busy > 0)
    pthread_cond_wait (&c->idle, &c->lock);
  e = c->err;
  c->err = 0;
  pthread_mutex_unlock (&c->lock);
  return e;
}

/* ---- one snapshot ---------------------------------------------------------- */

/* The index nodes DST lacks, in walk (pre-)order; copied in reverse. */
struct walk {
  struct copier *c;
  struct vmdr_digest *nodes;
  size_t n, cap;
  enum vmdr_blob_kind node_kind;
};

static int
on_node (void *opaque, const struct vmdr_digest *d)
{
  struct walk *w = opaque;

  if (vmdr_repo_has_chunk (w->c->dst, d))
    return 1;                   /* its whole subtree is there */
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 64;
    struct vmdr_digest *v = realloc (w->nodes, cap * sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    w->nodes = v;
    w->cap = cap;
  }
  w->nodes[w->n++] = *d;
  return 0;
}

static int
on_disk_leaf (void *opaque, uint64_t first, uint64_t count, const struct vmdr_digest *d)
{
  struct walk *w = opaque;
  int e = 0;

  (void) first;
  for (uint64_t i = 0; d && i < count && e == 0; i++)
    if (!vmdr_digest_is_zero (&d[i]))
      e = push (w->c, &d[i], VMDR_BLOB_DATA);
  return e;
}

static int
on_stream_leaf (void *opaque, uint64_t offset, const struct vmdr_stream_entry *e, size_t n)
{
  (void) offset;
  for (size_t i = 0; i < n; i++) {
    int r = on_disk_leaf (opaque, 0, 1, &e[i].d);
    if (r < 0)
      return r;
  }
  return 0;
}

/* Walk M's trees at SRC queueing the chunks DST lacks and collecting its
 * missing nodes; then the nodes, children first, from this thread. */
static int
copy_trees (struct copier *c, struct vmdr_zctx *z, const struct vmdr_manifest *m)
{
  struct walk w = { .c = c };
  size_t first_stream_node = 0;
  _cleanup_free_ void *buf = malloc (c->cap);
  int r = buf ? 0 : -ENOMEM, r2;

  for (size_t i = 0; i < m->ndisks && r == 0; i++) {
    struct vmdr_disk_tree t;
    vmdr_manifest_disk_tree (&m->disks[i], &t);
    r = vmdr_disk_tree_walk_nodes (c->src, z, &t, on_node, on_disk_leaf, &w);
  }
  first_stream_node = w.n;
  if (r == 0 && m->memory.present) {
    struct vmdr_stream_tree t;
    vmdr_manifest_memory_tree (&m->memory, &t);
    r = vmdr_stream_tree_walk_nodes (c->src, z, &t, on_node, on_stream_leaf, &w);
  }
  r2 = drain (c);
  if (r == 0)
    r = r2;
  for (size_t i = w.n; r == 0 && i-- > 0;) {
    struct job j = { w.nodes[i], i >= first_stream_node ? VMDR_BLOB_STREAM_NODE
                                                        : VMDR_BLOB_DISK_NODE };
    size_t stored, len;
    if ((r = copy_one (c, z, buf, &j, &stored, &len)) == 0) {
      pthread_mutex_lock (&c->lock);
      account (c, stored, len);
      pthread_mutex_unlock (&c->lock);
    }
  }
  free (w.nodes);
  return r;
}

static void __attribute__((format (printf, 2, 3)))
warn (struct vmdr_sync_stats *st, const char *fmt, ...)
{
  va_list ap;

  if (st->nwarnings == VMDR_SYNC_MAX_WARNINGS)
    return;
  va_start (ap, fmt);
  vsnprintf (st->warnings[st->nwarnings++], sizeof st->warnings[0], fmt, ap);
  va_end (ap);
}

/* Copy snapshot ID: 0, 1 (skipped: damaged at the source), or -errno. */
static int
copy_snapshot (struct copier *c, struct vmdr_zctx *z, const char *id)
{
  struct vmdr_manifest m = { 0 };
  int r;

  if ((r = vmdr_manifest_get (c->src, id, &m)) == 0 &&
      (r = copy_trees (c, z, &m)) == 0 &&
      (r = vmdr_repo_flush (c->dst)) == 0)
    r = vmdr_manifest_put (c->dst, &m);   /* last: now it exists there */
  vmdr_manifest_clear (&m);
  if (r == -EBADMSG || r == -EILSEQ || r == -ENOENT) {
    warn (c->st, "%s: not copied: damaged at the source (%s); run vmdr-verify", id,
          vmdr_damage_text (r));
    return 1;
  }
  return r;
}

int
vmdr_sync_compatible (struct vmdr_repo *src, struct vmdr_repo *dst)
{
  const struct vmdr_repo_config *a = vmdr_repo_config (src), *b = vmdr_repo_config (dst);

  return a->hash == b->hash && a->chunk_size == b->chunk_size && a->fanout == b->fanout
    ? 0 : -EXDEV;
}

bool
vmdr_sync_wanted (const char *const *domains, size_t ndomains, const char *id, const char *since)
{
  size_t dlen = vmdr_id_domain_len (id);
  bool dom = domains == NULL;

  for (size_t i = 0; !dom && i < ndomains; i++)
    dom = strlen (domains[i]) == dlen && strncmp (domains[i], id, dlen) == 0;
  return dom && (since[0] == '\0' || strcmp (id + dlen + 1, since) >= 0);
}

/* The snapshots to copy: at SRC, wanted, not at DST; sorted by domain, then
 * time (so each domain's chain goes oldest first). */
static int
todo (struct vmdr_repo *src, struct vmdr_repo *dst, const struct vmdr_sync_opts *o,
      char ***ids, size_t *n, struct vmdr_sync_stats *st)
{
  char since[VMDR_TIME_LEN + 1] = "";
  char **have = NULL;
  size_t nhave = 0, k = 0;
  int r;

  if (o->since && vmdr_time_key (o->since, since) < 0)
    return -EINVAL;
  if ((r = vmdr_snapshot_list (src, NULL, ids, n)) < 0 ||
      (r = vmdr_snapshot_list (dst, NULL, &have, &nhave)) < 0)
    return r;
  for (size_t i = 0, j = 0; i < *n; i++) {
    while (j < nhave && strcmp (have[j], (*ids)[i]) < 0)
      j++;
    bool there = j < nhave && strcmp (have[j], (*ids)[i]) == 0;
    if (vmdr_sync_wanted (o->domains, o->ndomains, (*ids)[i], since) && there)
      st->snapshots_present++;
    if (vmdr_sync_wanted (o->domains, o->ndomains, (*ids)[i], since) && !there)
      (*ids)[k++] = (*ids)[i];
    else
      free ((*ids)[i]);
  }
  *n = k;
  vmdr_strv_free (have, nhave);
  return 0;
}

/* Copy IDS[*i ..] of one domain under that domain's writer lock at DST
 * (no GC there meanwhile; its index reloaded). */
static int
copy_domain (struct copier *c, struct vmdr_zctx *z, char **ids, size_t n, size_t *i)
{
  char domain[VMDR_DOMAIN_NAME_MAX + 1];
  size_t len = vmdr_id_domain_len (ids[*i]);
  struct vmdr_lock *lock;
  int r;

  snprintf (domain, sizeof domain, "%.*s", (int) len, ids[*i]);
  if ((r = vmdr_writer_lock (c->dst, domain, &lock, NULL, NULL)) < 0)
    return r;
  for (; *i < n && vmdr_id_domain_len (ids[*i]) == len && strncmp (ids[*i], domain, len) == 0; ++*i) {
    if (c->o->step)
      c->o->step (c->o->sopaque, ids[*i], *i + 1, n);
    if ((r = copy_snapshot (c, z, ids[*i])) < 0)
      break;
    if (r == 0)
      c->st->snapshots_copied++;
    else
      c->st->snapshots_failed++;
    r = 0;
  }
  /* What a skipped snapshot put stays unreferenced (GC takes it), but it
   * must be written: the next domain's lock reloads the index. */
  int r2 = vmdr_repo_flush (c->dst);
  vmdr_lock_release (lock);
  return r < 0 ? r : r2;
}

int
vmdr_sync (struct vmdr_repo *src, struct vmdr_repo *dst,
           const struct vmdr_sync_opts *o, struct vmdr_sync_stats *st)
{
  struct copier c = { .src = src, .dst = dst, .o = o, .st = st, .t0 = vmdr_mono_seconds () };
  pthread_t tids[VMDR_MAX_THREADS];
  struct worker_state ws[VMDR_MAX_THREADS] = { { 0 } };
  int level = vmdr_repo_config (dst)->zstd_level;
  struct vmdr_zctx *z = NULL;
  unsigned started = 0;
  char **ids = NULL;
  size_t n = 0, i = 0;
  int r;

  memset (st, 0, sizeof *st);
  if (o->threads < 1 || o->threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if ((r = vmdr_sync_compatible (src, dst)) < 0 || (r = todo (src, dst, o, &ids, &n, st)) < 0 ||
      n == 0)
    goto out;
  c.cap = vmdr_repo_config (src)->chunk_size > NODE_CAP ? vmdr_repo_config (src)->chunk_size
                                                         : NODE_CAP;
  pthread_mutex_init (&c.lock, NULL);
  pthread_cond_init (&c.not_empty, NULL);
  pthread_cond_init (&c.not_full, NULL);
  pthread_cond_init (&c.idle, NULL);
  r = vmdr_zctx_new (level, &z);
  for (unsigned k = 0; r == 0 && k < o->threads; k++) {
    ws[k].c = &c;
    if ((ws[k].buf = malloc (c.cap)) == NULL)
      r = -ENOMEM;
    else
      r = vmdr_zctx_new (level, &ws[k].z);
  }
  for (; r == 0 && started < o->threads; started++)
    if (pthread_create (&tids[started], NULL, worker, &ws[started]) != 0)
      break;
  if (r == 0 && started == 0)
    r = -EAGAIN;
  while (r == 0 && i < n)
    r = copy_domain (&c, z, ids, n, &i);
  pthread_mutex_lock (&c.lock);
  c.closed = true;
  pthread_cond_broadcast (&c.not_empty);
  pthread_mutex_unlock (&c.lock);
  for (unsigned k = 0; k < started; k++)
    pthread_join (tids[k], NULL);
  for (unsigned k = 0; k < o->threads; k++) {
    vmdr_zctx_free (ws[k].z);
    free (ws[k].buf);
  }
  vmdr_zctx_free (z);
  pthread_cond_destroy (&c.idle);
  pthread_cond_destroy (&c.not_full);
  pthread_cond_destroy (&c.not_empty);
  pthread_mutex_destroy (&c.lock);
 out:
  vmdr_strv_free (ids, n);
  if (r == 0 && st->snapshots_failed)
    r = -EBADMSG;
  return r;
}
