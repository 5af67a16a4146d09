/* Repository access: config, chunk index, chunk puts into packs, chunk gets. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "pack.h"
#include "repo.h"

#define PENDING UINT32_MAX      /* chunk in the pack being written */
#define QUEUE_MAX 2             /* full packs waiting to be written */
/* Packs written at once: a pack's upload to an object store is one
 * request, bound by its round trips and the server, not by our CPU. */
#define FLUSHERS 3

/* One chunk-index slot.  digest all zero = empty slot (the zero digest is
 * never stored: all-zero chunks are not chunks). */
struct slot {
  struct vmdr_digest d;
  uint32_t pack;                /* index into repo->packs, or PENDING */
  uint32_t offset;
  uint32_t stored_len;
  uint32_t raw_len;
  bool grouped;                 /* a member of a group blob */
};

struct vmdr_repo {
  struct vmdr_backend *b;
  struct vmdr_repo_config cfg;

  pthread_mutex_t lock;         /* everything below */
  struct slot *slots;
  size_t nslots, used;          /* nslots a power of two */
  struct vmdr_digest *packs;
  size_t npacks, packs_cap;
  struct vmdr_pack_writer *w;
  /* Writers whose packs are written, kept with their buffers for the next
   * packs: at most one per pack that can be in flight. */
  struct vmdr_pack_writer *spare[FLUSHERS + QUEUE_MAX];
  unsigned nspare;
  unsigned inflight;            /* detached packs queued or being written */
  pthread_cond_t flushed;       /* signalled when one is done */
  /* Full packs wait here for the flusher threads, which write them while
   * the workers go on compressing: at most QUEUE_MAX of them (memory).
   * Each flusher writes its pack's data at once, but the index objects,
   * which make packs visible, in the order the packs were filled: the
   * pack numbered seq_indexed is the next whose index may go. */
  struct vmdr_pack_writer *queue[QUEUE_MAX];
  size_t queued;
  pthread_cond_t queue_cond;    /* the queue changed */
  pthread_t flushers[FLUSHERS];
  unsigned nflushers;
  bool flushers_tried, stopping;
  uint64_t seq_taken, seq_indexed;
  /* A failed pack write loses the pending chunks the index still lists:
   * from then on every put and flush fails with this error. */
  int failed;
};

static size_t
slot_hash (const struct vmdr_digest *d)
{
  uint64_t h;

  memcpy (&h, d->b, sizeof h);  /* digests are uniform already */
  return (size_t) h;
}

static struct slot *
find_slot (struct slot *slots, size_t nslots, const struct vmdr_digest *d)
{
  size_t i = slot_hash (d) & (nslots - 1);

  for (;; i = (i + 1) & (nslots - 1))
    if (vmdr_digest_is_zero (&slots[i].d) || memcmp (&slots[i].d, d, sizeof *d) == 0)
      return &slots[i];
}

static int
grow_table (struct vmdr_repo *r)
{
  size_t n = r->nslots ? 2 * r->nslots : 1u << 14;
  struct slot *s = calloc (n, sizeof *s);

  if (s == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < r->nslots; i++)
    if (!vmdr_digest_is_zero (&r->slots[i].d))
      *find_slot (s, n, &r->slots[i].d) = r->slots[i];
  free (r->slots);
  r->slots = s;
  r->nslots = n;
  return 0;
}

static struct slot *
lookup (struct vmdr_repo *r, const struct vmdr_digest *d)
{
  struct slot *s;

  if (r->nslots == 0)
    return NULL;
  s = find_slot (r->slots, r->nslots, d);
  return vmdr_digest_is_zero (&s->d) ? NULL : s;
}

/* Insert or overwrite; keeps the load factor under 3/4. */
static int
insert (struct vmdr_repo *r, const struct slot *v)
{
  struct slot *s;
  int ret;

  if (4 * (r->used + 1) > 3 * r->nslots && (ret = grow_table (r)) < 0)
    return ret;
  s = find_slot (r->slots, r->nslots, &v->d);
  if (vmdr_digest_is_zero (&s->d))
    r->used++;
  *s = *v;
  return 0;
}

static int
add_pack (struct vmdr_repo *r, const struct vmdr_digest *id, uint32_t *no)
{
  if (r->npacks == r->packs_cap) {
    size_t cap = r->packs_cap ? 2 * r->packs_cap : 64;
    void *p = reallocarray (r->packs, cap, sizeof *r->packs);
    if (p == NULL)
      return -ENOMEM;
    r->packs = p;
    r->packs_cap = cap;
  }
  if (r->npacks >= PENDING)
    return -EFBIG;
  r->packs[r->npacks] = *id;
  *no = (uint32_t) r->npacks++;
  return 0;
}

/* Index a pack's entries.  With REPLACE, entries override what is there
 * (pending chunks becoming stored); without, first copy wins. */
static int
index_entries (struct vmdr_repo *r, uint32_t pack,
               const struct vmdr_pack_entry *e, size_t n, bool replace)
{
  for (size_t i = 0; i < n; i++) {
    struct slot v = { .d = e[i].digest, .pack = pack, .offset = e[i].offset,
                      .stored_len = e[i].stored_len, .raw_len = e[i].raw_len,
                      .grouped = e[i].grouped };
    int ret;
    if (vmdr_digest_is_zero (&v.d) || (!replace && lookup (r, &v.d)))
      continue;
    if ((ret = insert (r, &v)) < 0)
      return ret;
  }
  return 0;
}

/* ---- opening ------------------------------------------------------------ */

static int
read_config (struct vmdr_backend *b, struct vmdr_repo_config *cfg)
{
  _cleanup_free_ void *data = NULL;
  size_t len;
  int ret;

  ret = b->ops->get (b, "config", 0, 0, VMDR_CONFIG_MAX, &data, &len);
  if (ret == -ENOENT)
    return -ENOTRECOVERABLE;
  if (ret == -EFBIG)
    return -EBADMSG;
  if (ret < 0)
    return ret;
  return vmdr_repo_config_parse (data, len, cfg);
}

int
vmdr_repo_init (const char *address, const struct vmdr_repo_config *cfg)
{
  struct vmdr_backend *b;
  _cleanup_free_ char *json = NULL;
  int ret;

  if ((ret = vmdr_repo_config_check (cfg)) < 0)
    return ret;
  if ((ret = vmdr_repo_config_format (cfg, &json)) < 0)
    return ret;
  if ((ret = vmdr_backend_open (address, &b)) < 0)
    return ret;
  ret = b->ops->put (b, "config", json, strlen (json), VMDR_PUT_EXCLUSIVE);
  vmdr_backend_close (b);
  return ret;
}

int
vmdr_repo_open (const char *address, struct vmdr_repo **out)
{
  struct vmdr_repo *r = calloc (1, sizeof *r);
  int ret;

  if (r == NULL)
    return -ENOMEM;
  pthread_mutex_init (&r->lock, NULL);
  pthread_cond_init (&r->flushed, NULL);
  pthread_cond_init (&r->queue_cond, NULL);
  if ((ret = vmdr_backend_open (address, &r->b)) < 0 ||
      (ret = read_config (r->b, &r->cfg)) < 0 ||
      (ret = vmdr_pack_writer_new (r->cfg.pack_size, &r->w)) < 0) {
    vmdr_repo_close (r);
    return ret;
  }
  *out = r;
  return 0;
}

static void stop_flusher (struct vmdr_repo *r);

void
vmdr_repo_close (struct vmdr_repo *r)
{
  if (r == NULL)
    return;
  stop_flusher (r);
  vmdr_pack_writer_free (r->w);
  while (r->nspare > 0)
    vmdr_pack_writer_free (r->spare[--r->nspare]);
  vmdr_backend_close (r->b);
  free (r->slots);
  free (r->packs);
  pthread_cond_destroy (&r->flushed);
  pthread_cond_destroy (&r->queue_cond);
  pthread_mutex_destroy (&r->lock);
  free (r);
}

const struct vmdr_repo_config *vmdr_repo_config (const struct vmdr_repo *r) { return &r->cfg; }
struct vmdr_backend *vmdr_repo_backend (struct vmdr_repo *r) { return r->b; }

size_t
vmdr_repo_chunk_count (struct vmdr_repo *r)
{
  size_t n;

  pthread_mutex_lock (&r->lock);
  n = r->used;
  pthread_mutex_unlock (&r->lock);
  return n;
}

/* Pack indexes are read by this many threads at once: from an object store
 * each is a request, and a repository has thousands. */
#define LOAD_THREADS 8
#define LOAD_MAX_PACKS (16u << 20)

struct load {
  struct vmdr_repo *r;
  pthread_mutex_t lock;         /* the fields below */
  char **keys;                  /* the index objects listed */
  size_t n, cap, next;
  size_t damaged;
  int err;
};

static int
collect_key (void *opaque, const char *key, const struct vmdr_object_info *info)
{
  struct load *l = opaque;
  struct vmdr_digest id;

  (void) info;
  if (vmdr_pack_id_from_index_key (key, &id) < 0)
    return 0;                   /* not ours: ignore */
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 1024;
    char **k = cap <= LOAD_MAX_PACKS ? realloc (l->keys, cap * sizeof *k) : NULL;
    if (k == NULL)
      return cap <= LOAD_MAX_PACKS ? -ENOMEM : -EFBIG;
    l->keys = k;
    l->cap = cap;
  }
  if ((l->keys[l->n] = strdup (key)) == NULL)
    return -ENOMEM;
  l->n++;
  return 0;
}

/* Read and index one pack index object; a damaged one is counted. */
static int
load_one (struct load *l, const char *key)
{
  struct vmdr_repo *r = l->r;
  _cleanup_free_ void *data = NULL;
  _cleanup_free_ struct vmdr_pack_entry *e = NULL;
  struct vmdr_digest id;
  size_t len, n;
  uint32_t no;
  int ret;

  vmdr_pack_id_from_index_key (key, &id);
  ret = r->b->ops->get (r->b, key, 0, 0,
                        16 + (size_t) VMDR_PACK_INDEX_MAX_ENTRIES * VMDR_PACK_ENTRY_LEN,
                        &data, &len);
  if (ret == -ENOENT)
    return 0;                   /* deleted by GC meanwhile */
  if (ret == 0)
    ret = vmdr_pack_index_parse (data, len, &e, &n);
  if (ret == -EBADMSG || ret == -EFBIG) {
    pthread_mutex_lock (&l->lock);
    l->damaged++;
    pthread_mutex_unlock (&l->lock);
    return 0;
  }
  if (ret < 0)
    return ret;
  pthread_mutex_lock (&r->lock);
  if ((ret = add_pack (r, &id, &no)) == 0)
    ret = index_entries (r, no, e, n, false);
  pthread_mutex_unlock (&r->lock);
  return ret;
}

static void *
load_worker (void *opaque)
{
  struct load *l = opaque;

  for (;;) {
    pthread_mutex_lock (&l->lock);
    size_t i = l->next++;
    bool stop = i >= l->n || l->err < 0;
    pthread_mutex_unlock (&l->lock);
    if (stop)
      return NULL;
    int ret = load_one (l, l->keys[i]);
    if (ret < 0) {
      pthread_mutex_lock (&l->lock);
      if (l->err == 0)
        l->err = ret;
      pthread_mutex_unlock (&l->lock);
    }
  }
}

/* Run load_worker in LOAD_THREADS threads (or this one, when none starts). */
static int
load_all (struct load *l)
{
  pthread_t t[LOAD_THREADS];
  size_t nt = 0;

  while (nt < LOAD_THREADS && nt < l->n && pthread_create (&t[nt], NULL, load_worker, l) == 0)
    nt++;
  if (nt == 0)
    load_worker (l);
  for (size_t i = 0; i < nt; i++)
    pthread_join (t[i], NULL);
  return l->err;
}

int
vmdr_repo_load_index (struct vmdr_repo *r, size_t *damaged)
{
  struct load l = { .r = r };
  int ret;

  pthread_mutex_lock (&r->lock);
  /* Start from nothing: packs deleted by a GC since the last load must not
   * be found (chunks in the pack being written would be lost: refuse). */
  if (vmdr_pack_count (r->w) > 0 || r->inflight > 0) {
    pthread_mutex_unlock (&r->lock);
    return -EBUSY;
  }
  if (r->nslots)
    memset (r->slots, 0, r->nslots * sizeof *r->slots);
  r->used = 0;
  r->npacks = 0;
  pthread_mutex_unlock (&r->lock);
  pthread_mutex_init (&l.lock, NULL);
  ret = r->b->ops->list (r->b, "index/", collect_key, &l);
  if (ret == 0)
    ret = load_all (&l);
  for (size_t i = 0; i < l.n; i++)
    free (l.keys[i]);
  free (l.keys);
  pthread_mutex_destroy (&l.lock);
  if (damaged)
    *damaged = l.damaged;
  return ret;
}

/* ---- writing -------------------------------------------------------------- */

bool
vmdr_repo_has_chunk (struct vmdr_repo *r, const struct vmdr_digest *d)
{
  bool found;

  pthread_mutex_lock (&r->lock);
  found = lookup (r, d) != NULL;
  pthread_mutex_unlock (&r->lock);
  return found;
}

/* Take the current pack out of the way (if it holds blobs) so that it can
 * be written without the lock while other threads fill a fresh one.  Under
 * the lock; *out is NULL when there was nothing to write. */
static int
detach_locked (struct vmdr_repo *r, struct vmdr_pack_writer **out)
{
  struct vmdr_pack_writer *fresh;
  int ret;

  *out = NULL;
  if (vmdr_pack_count (r->w) == 0)
    return 0;
  if (r->nspare > 0)
    fresh = r->spare[--r->nspare];
  else if ((ret = vmdr_pack_writer_new (r->cfg.pack_size, &fresh)) < 0)
    return ret;
  *out = r->w;
  r->w = fresh;
  r->inflight++;
  return 0;
}

/* Wait for the turn of pack SEQ to write its index, under the lock. */
static void
wait_turn_locked (struct vmdr_repo *r, uint64_t seq)
{
  while (r->seq_indexed != seq)
    pthread_cond_wait (&r->flushed, &r->lock);
}

/* Write detached pack number SEQ, then, in its turn, its index (the
 * visibility rule), without the lock; then index its blobs.  W goes to
 * the spares (or is freed). */
static int
write_detached (struct vmdr_repo *r, struct vmdr_pack_writer *w, uint64_t seq)
{
  _cleanup_free_ void *index = NULL;
  const void *pack = NULL;
  _cleanup_free_ struct vmdr_pack_entry *e = NULL;
  char key[VMDR_PACK_KEY_LEN];
  struct vmdr_digest id;
  size_t plen, ilen, n = 0;
  uint32_t no;
  int ret;

  /* A backend that signs a payload's SHA-256 gets it as the pack's name;
   * others, a name that costs no second pass over the pack. */
  bool by_sha = r->cfg.hash == VMDR_HASH_SHA256 && r->b->ops->put_sha256;
  ret = vmdr_pack_finish (w, r->cfg.hash, by_sha, &pack, &plen, &index, &ilen, &id);
  /* After a pack failed, no later one may become visible: packs appear in
   * the order they were filled, so an index node is never there without
   * the chunks below it (replication resumes on that). */
  pthread_mutex_lock (&r->lock);
  if (ret == 0 && r->failed < 0)
    ret = r->failed;
  pthread_mutex_unlock (&r->lock);
  if (ret == 0) {
    vmdr_pack_key (&id, key);
    if (by_sha)
      ret = vmdr_backend_put_sha256 (r->b, key, pack, plen, 0, id.b);
    else
      ret = r->b->ops->put (r->b, key, pack, plen, 0);
  }
  pthread_mutex_lock (&r->lock);
  wait_turn_locked (r, seq);
  if (ret == 0 && r->failed < 0)
    ret = r->failed;            /* an earlier pack failed: stay invisible */
  pthread_mutex_unlock (&r->lock);
  if (ret == 0) {
    vmdr_pack_index_key (&id, key);
    ret = r->b->ops->put (r->b, key, index, ilen, 0);
  }
  if (ret == 0)
    ret = vmdr_pack_index_parse (index, ilen, &e, &n);
  pthread_mutex_lock (&r->lock);
  if (ret == 0 && (ret = add_pack (r, &id, &no)) == 0)
    ret = index_entries (r, no, e, n, true);
  if (ret < 0 && r->failed == 0)
    r->failed = ret;
  if (r->nspare < sizeof r->spare / sizeof r->spare[0]) {
    vmdr_pack_writer_reset (w);
    r->spare[r->nspare++] = w;
  } else
    vmdr_pack_writer_free (w);
  r->inflight--;
  r->seq_indexed++;
  pthread_cond_broadcast (&r->flushed);
  pthread_mutex_unlock (&r->lock);
  return ret;
}

/* The flusher: writes queued packs in order until stopped with an empty
 * queue. */
static void *
flusher (void *opaque)
{
  struct vmdr_repo *r = opaque;

  pthread_mutex_lock (&r->lock);
  for (;;) {
    while (r->queued == 0 && !r->stopping)
      pthread_cond_wait (&r->queue_cond, &r->lock);
    if (r->queued == 0)
      break;
    struct vmdr_pack_writer *w = r->queue[0];
    uint64_t seq = r->seq_taken++;
    memmove (r->queue, r->queue + 1, --r->queued * sizeof r->queue[0]);
    pthread_cond_broadcast (&r->queue_cond);
    pthread_mutex_unlock (&r->lock);
    write_detached (r, w, seq);
    pthread_mutex_lock (&r->lock);
  }
  pthread_mutex_unlock (&r->lock);
  return NULL;
}

/* Hand a detached pack to the flusher, waiting while the queue is full.
 * Without a flusher thread (it could not start) the caller writes it. */
static int
enqueue (struct vmdr_repo *r, struct vmdr_pack_writer *w)
{
  pthread_mutex_lock (&r->lock);
  if (!r->flushers_tried && !r->stopping) {
    r->flushers_tried = true;
    while (r->nflushers < FLUSHERS &&
           pthread_create (&r->flushers[r->nflushers], NULL, flusher, r) == 0)
      r->nflushers++;
  }
  if (r->nflushers == 0) {
    uint64_t seq = r->seq_taken++;
    pthread_mutex_unlock (&r->lock);
    return write_detached (r, w, seq);
  }
  while (r->queued == QUEUE_MAX)
    pthread_cond_wait (&r->queue_cond, &r->lock);
  r->queue[r->queued++] = w;
  pthread_cond_broadcast (&r->queue_cond);
  pthread_mutex_unlock (&r->lock);
  return 0;
}

static void
stop_flusher (struct vmdr_repo *r)
{
  pthread_mutex_lock (&r->lock);
  r->stopping = true;
  pthread_cond_broadcast (&r->queue_cond);
  pthread_mutex_unlock (&r->lock);
  for (unsigned i = 0; i < r->nflushers; i++)
    pthread_join (r->flushers[i], NULL);
  r->nflushers = 0;
}

int
vmdr_repo_flush (struct vmdr_repo *r)
{
  struct vmdr_pack_writer *w = NULL;
  int ret;

  pthread_mutex_lock (&r->lock);
  ret = r->failed < 0 ? r->failed : detach_locked (r, &w);
  pthread_mutex_unlock (&r->lock);
  if (ret == 0 && w)             /* behind the queued ones: in order */
    ret = enqueue (r, w);
  /* Durable means every pack in flight too, whoever writes it. */
  pthread_mutex_lock (&r->lock);
  while (r->inflight > 0)
    pthread_cond_wait (&r->flushed, &r->lock);
  if (ret < 0 && r->failed == 0)
    r->failed = ret;
  ret = r->failed;
  pthread_mutex_unlock (&r->lock);
  return ret;
}

/* Add an encoded blob to the current pack, indexing the chunks of M (N of
 * them: the blob's chunk, or the group's members) that the index lacks;
 * *full gets the pack to write when this one filled it.  Under the lock. */
static int
add_blob_locked (struct vmdr_repo *r, const struct vmdr_blob_member *m, size_t n,
                 const uint8_t *blob, size_t blen, struct vmdr_pack_writer **full)
{
  uint32_t offset = (uint32_t) vmdr_pack_bytes (r->w);
  int ret;

  *full = NULL;
  ret = vmdr_pack_add (r->w, blob, blen);
  if (ret == -EFBIG) {           /* offsets full before the target: rare */
    if ((ret = detach_locked (r, full)) < 0)
      return ret;
    offset = 0;
    ret = vmdr_pack_add (r->w, blob, blen);
  }
  for (size_t i = 0; ret == 0 && i < n; i++) {
    struct slot v = { .d = m[i].d, .pack = PENDING, .offset = offset,
                      .stored_len = (uint32_t) (blen - VMDR_BLOB_HEADER_LEN),
                      .raw_len = m[i].len, .grouped = blob[5] == VMDR_BLOB_GROUP };
    if (lookup (r, &m[i].d) == NULL)
      ret = insert (r, &v);
  }
  if (ret < 0)
    return ret;
  return *full == NULL && vmdr_pack_full (r->w) ? detach_locked (r, full) : 0;
}

static int store_blob (struct vmdr_repo *r, const struct vmdr_blob_member *m, size_t n,
                       const uint8_t *blob, size_t blen, size_t *stored_bytes);

int
vmdr_repo_put_chunk (struct vmdr_repo *r, struct vmdr_zctx *z,
                     enum vmdr_blob_kind kind, const struct vmdr_digest *d,
                     const void *data, size_t len, size_t *stored_bytes)
{
  _cleanup_free_ uint8_t *own = NULL;
  uint8_t *blob;
  size_t blen, cap;
  int ret;

  if (stored_bytes)
    *stored_bytes = 0;
  if (vmdr_digest_is_zero (d))
    return -EINVAL;
  if (vmdr_repo_has_chunk (r, d))
    return 0;
  /* Compress outside the lock: that is where the CPU time goes. */
  cap = vmdr_blob_bound (len);
  blob = z ? vmdr_zctx_buffer (z, VMDR_ZBUF_ENCODE, cap) : (own = malloc (cap));
  if (blob == NULL)
    return -ENOMEM;
  ret = vmdr_blob_encode (z, kind, d, data, len, blob, cap, &blen);
  if (ret < 0)
    return ret;
  return store_blob (r, &(struct vmdr_blob_member) { *d, data, (uint32_t) len }, 1,
                     blob, blen, stored_bytes);
}

/* The chunks of M that are new: not zero, not stored, not twice in M.
 * Their indexes into NEW; the count. */
static size_t
new_members (struct vmdr_repo *r, const struct vmdr_blob_member *m, size_t n, size_t *new)
{
  size_t k = 0;

  pthread_mutex_lock (&r->lock);
  for (size_t i = 0; i < n; i++) {
    bool dup = lookup (r, &m[i].d) != NULL;
    for (size_t j = 0; !dup && j < k; j++)
      dup = memcmp (&m[new[j]].d, &m[i].d, sizeof m[i].d) == 0;
    if (!dup)
      new[k++] = i;
  }
  pthread_mutex_unlock (&r->lock);
  return k;
}

int
vmdr_repo_put_chunks (struct vmdr_repo *r, struct vmdr_zctx *z,
                      enum vmdr_blob_kind kind, const struct vmdr_blob_member *m,
                      size_t n, size_t *stored)
{
  struct vmdr_blob_member g[VMDR_GROUP_MAX];
  size_t new[VMDR_GROUP_MAX], k, raw = 0, blen, bytes = 0;
  uint8_t *blob;
  int ret = 0;

  if (n > VMDR_GROUP_MAX)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (stored)
      stored[i] = 0;
    if (vmdr_digest_is_zero (&m[i].d))
      return -EINVAL;
  }
  k = new_members (r, m, n, new);
  for (size_t j = 0; j < k; j++) {
    g[j] = m[new[j]];
    raw += g[j].len;
  }
  /* Compress outside the lock: that is where the CPU time goes. */
  if (k >= 2 && r->cfg.group_size > 0 && raw <= VMDR_BLOB_MAX_RAW) {
    size_t cap = vmdr_blob_group_bound (k, raw);
    if ((blob = vmdr_zctx_buffer (z, VMDR_ZBUF_ENCODE, cap)) == NULL)
      return -ENOMEM;
    ret = vmdr_blob_encode_group (z, r->cfg.hash, kind, g, k, blob, cap, &blen);
    if (ret == 0)
      ret = store_blob (r, g, k, blob, blen, &bytes);
    if (ret == 0 && stored)     /* shared out by length, the rest to the last */
      for (size_t j = 0, left = bytes; j < k; j++) {
        size_t share = j + 1 < k ? (size_t) ((uint64_t) bytes * g[j].len / raw) : left;
        stored[new[j]] = share;
        left -= share;
      }
    if (ret != -ERANGE)
      return ret;
    ret = 0;
  }
  /* One by one: a lone new chunk, no groups, or data zstd cannot shrink. */
  for (size_t j = 0; ret >= 0 && j < k; j++)
    ret = vmdr_repo_put_chunk (r, z, kind, &g[j].d, g[j].data, g[j].len,
                               stored ? &stored[new[j]] : NULL);
  return ret < 0 ? ret : 0;
}

/* put_blob of a group H that has D as a member: all its members come. */
static int
put_group_blob (struct vmdr_repo *r, const struct vmdr_digest *d, const void *blob,
                size_t blen, const struct vmdr_blob_header *h, size_t *stored_bytes)
{
  struct vmdr_blob_member m[VMDR_GROUP_MAX];
  const uint8_t *table;
  size_t n;
  bool member = false;
  int ret;

  if ((ret = vmdr_blob_group_table (blob, blen, h, &table, &n)) < 0)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    vmdr_blob_group_member (table, i, &m[i].d, &m[i].len);
    m[i].data = NULL;
    member |= memcmp (&m[i].d, d, sizeof *d) == 0;
  }
  if (!member)
    return -EINVAL;
  if (r->cfg.version < 2)
    return -EPROTONOSUPPORT;
  if (vmdr_repo_has_chunk (r, d))
    return 0;
  return store_blob (r, m, n, blob, blen, stored_bytes);
}

int
vmdr_repo_put_blob (struct vmdr_repo *r, const struct vmdr_digest *d,
                    const void *blob, size_t blen, size_t *stored_bytes)
{
  struct vmdr_blob_header h;
  int ret;

  if (stored_bytes)
    *stored_bytes = 0;
  if (vmdr_digest_is_zero (d))
    return -EINVAL;
  if ((ret = vmdr_blob_parse_header (blob, blen, &h)) < 0)
    return ret;
  if (blen != VMDR_BLOB_HEADER_LEN + (size_t) h.stored_len)
    return -EINVAL;
  if (h.compression == VMDR_BLOB_GROUP)
    return put_group_blob (r, d, blob, blen, &h, stored_bytes);
  if (memcmp (&h.digest, d, sizeof *d) != 0)
    return -EINVAL;
  if (vmdr_repo_has_chunk (r, d))
    return 0;
  return store_blob (r, &(struct vmdr_blob_member) { .d = *d, .len = h.raw_len }, 1,
                     blob, blen, stored_bytes);
}

/* Add encoded BLOB, holding the N chunks of M, unless another thread
 * stored them all meanwhile; a pack it fills goes to the flusher. */
static int
store_blob (struct vmdr_repo *r, const struct vmdr_blob_member *m, size_t n,
            const uint8_t *blob, size_t blen, size_t *stored_bytes)
{
  struct vmdr_pack_writer *full = NULL;
  bool any = false;
  int ret = 0;

  pthread_mutex_lock (&r->lock);
  for (size_t i = 0; !any && i < n; i++)
    any = lookup (r, &m[i].d) == NULL;
  if (r->failed < 0)
    ret = r->failed;
  else if (!any)
    blen = 0;                   /* another thread stored it meanwhile */
  else if ((ret = add_blob_locked (r, m, n, blob, blen, &full)) < 0)
    r->failed = ret;
  pthread_mutex_unlock (&r->lock);
  /* A full pack goes to the flusher thread: the workers go on
   * compressing while it is hashed, written and fsync'd. */
  if (full) {
    int w = enqueue (r, full);
    if (ret == 0)
      ret = w;
  }
  if (ret == 0 && stored_bytes)
    *stored_bytes = blen;
  return ret;
}

/* ---- reading -------------------------------------------------------------- */

int
vmdr_repo_locate (struct vmdr_repo *r, const struct vmdr_digest *d,
                  struct vmdr_digest *pack, uint32_t *offset,
                  uint32_t *stored_len)
{
  struct slot *s;
  int ret = -ENOENT;

  pthread_mutex_lock (&r->lock);
  s = lookup (r, d);
  if (s && s->pack != PENDING) {
    *pack = r->packs[s->pack];
    *offset = s->offset;
    *stored_len = s->stored_len;
    ret = 0;
  }
  else if (s)
    ret = -EAGAIN;              /* not flushed yet */
  pthread_mutex_unlock (&r->lock);
  return ret;
}

int
vmdr_repo_raw_len (struct vmdr_repo *r, const struct vmdr_digest *d, uint32_t *raw_len,
                   bool *grouped)
{
  struct slot *s;

  pthread_mutex_lock (&r->lock);
  s = lookup (r, d);
  if (s)
    *raw_len = s->raw_len;
  if (s && grouped)
    *grouped = s->grouped;
  pthread_mutex_unlock (&r->lock);
  return s ? 0 : -ENOENT;
}

/* The stored blob of D, header and payload: *out and *out_len, in Z's
 * read buffer, or (Z NULL) malloc'd into *own, which the caller frees. */
static int
read_blob (struct vmdr_repo *r, struct vmdr_zctx *z, const struct vmdr_digest *d,
           void **out, size_t *out_len, void **own)
{
  char key[VMDR_PACK_KEY_LEN];
  struct vmdr_digest pack;
  uint32_t offset, stored;
  size_t blen;
  void *blob;
  int ret;

  *own = NULL;
  ret = vmdr_repo_locate (r, d, &pack, &offset, &stored);
  if (ret == -EAGAIN) {         /* written by us, still in memory: flush */
    if ((ret = vmdr_repo_flush (r)) < 0)
      return ret;
    ret = vmdr_repo_locate (r, d, &pack, &offset, &stored);
  }
  if (ret < 0)
    return ret;
  if (stored > VMDR_BLOB_MAX_STORED)
    return -EFBIG;              /* an index entry no blob can match */
  blen = VMDR_BLOB_HEADER_LEN + (size_t) stored;
  blob = z ? vmdr_zctx_buffer (z, VMDR_ZBUF_READ, blen) : (*own = malloc (blen));
  if (blob == NULL)
    return -ENOMEM;
  vmdr_pack_key (&pack, key);
  ret = vmdr_backend_read (r->b, key, offset, blen, blob);
  if (ret == -ERANGE)
    return -EBADMSG;            /* the pack is shorter than its index says */
  if (ret < 0)
    return ret;
  *out = blob;
  *out_len = blen;
  return 0;
}

int
vmdr_repo_get_chunk (struct vmdr_repo *r, struct vmdr_zctx *z,
                     const struct vmdr_digest *d, void *buf, size_t cap,
                     size_t *len)
{
  _cleanup_free_ void *own = NULL;
  void *blob;
  size_t blen;
  int ret = read_blob (r, z, d, &blob, &blen, &own);

  if (ret < 0)
    return ret;
  return vmdr_blob_decode (z, r->cfg.hash, blob, blen, d, buf, cap, len);
}

int
vmdr_repo_get_blob (struct vmdr_repo *r, struct vmdr_zctx *z, const struct vmdr_digest *d,
                    const void **blob, size_t *blen, void *buf, size_t cap, size_t *len)
{
  _cleanup_free_ void *own = NULL;
  void *b;
  int ret;

  *blob = NULL;
  if (z == NULL)
    return -EINVAL;             /* the blob lives in Z's buffer */
  if ((ret = read_blob (r, z, d, &b, blen, &own)) < 0)
    return ret;
  if ((ret = vmdr_blob_decode (z, r->cfg.hash, b, *blen, d, buf, cap, len)) == 0)
    *blob = b;
  return ret;
}

/* ---- batched reads ---------------------------------------------------------- */

/* Blobs at most this far apart in a pack are read together, the bytes
 * between them read and dropped: cheaper than a second request, and a
 * read from the disk brings them into memory anyway.  Between the blobs
 * of a full backup that an incremental replaced lie one or two others. */
#define GAP_MAX (128u << 10)

struct vmdr_repo_reader {
  struct vmdr_zctx *z;
  uint8_t *buf;                 /* a run of blobs as read */
  size_t cap;
};

int
vmdr_repo_reader_new (struct vmdr_repo *r, struct vmdr_repo_reader **out)
{
  struct vmdr_repo_reader *rd = calloc (1, sizeof *rd);

  (void) r;
  if (rd == NULL)
    return -ENOMEM;
  rd->cap = VMDR_GET_READ_MAX;
  if (vmdr_zctx_new (1, &rd->z) < 0 || (rd->buf = malloc (rd->cap)) == NULL) {
    vmdr_repo_reader_free (rd);
    return -ENOMEM;
  }
  *out = rd;
  return 0;
}

void
vmdr_repo_reader_free (struct vmdr_repo_reader *rd)
{
  if (rd == NULL)
    return;
  vmdr_zctx_free (rd->z);
  free (rd->buf);
  free (rd);
}

/* Where one request's blob lies. */
struct blob_at {
  uint32_t pack;                /* index into repo->packs */
  uint32_t offset;
  uint32_t len;                 /* header + stored bytes */
  uint32_t i;                   /* the request */
};

static int
cmp_blob_at (const void *a, const void *b)
{
  const struct blob_at *x = a, *y = b;

  if (x->pack != y->pack)
    return x->pack < y->pack ? -1 : 1;
  if (x->offset != y->offset)
    return x->offset < y->offset ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* The run of blobs from AT[K] (sorted) that one read covers: blobs close
 * together in one pack, at most VMDR_GET_READ_MAX bytes.  The index after
 * it, and its byte range in *START, *END. */
static size_t
run_of (const struct blob_at *at, size_t found, size_t k, uint64_t *start, uint64_t *end)
{
  size_t j;

  *start = at[k].offset;
  *end = *start + at[k].len;
  for (j = k + 1; j < found && at[j].pack == at[k].pack &&
       at[j].offset <= *end + GAP_MAX; j++) {
    uint64_t e = at[j].offset + at[j].len > *end ? at[j].offset + at[j].len : *end;
    /* Members of a group already read stay in its run, however large:
     * a group is read and decompressed once. */
    if (e - *start > VMDR_GET_READ_MAX && e > *end)
      break;
    *end = e;
  }
  return j;
}

/* Where chunk D's blob is, as request I, into *AT: 0, -ENOENT, -EAGAIN
 * (still in the pack being written) or -EBADMSG (an index entry no blob
 * can match).  Under the lock. */
static int
blob_at_locked (struct vmdr_repo *r, const struct vmdr_digest *d, size_t i,
                struct blob_at *at)
{
  struct slot *s = lookup (r, d);

  if (s == NULL)
    return -ENOENT;
  if (s->pack == PENDING)
    return -EAGAIN;
  if (s->stored_len > VMDR_BLOB_MAX_STORED)
    return -EBADMSG;
  *at = (struct blob_at) { .pack = s->pack, .offset = s->offset, .i = (uint32_t) i,
                           .len = VMDR_BLOB_HEADER_LEN + s->stored_len };
  return 0;
}

/* Find every request's blob, under one lock, into AT (the number found is
 * returned); requests not found get their error now, those still in the
 * pack being written -EAGAIN and *pending. */
static size_t
locate_all (struct vmdr_repo *r, struct vmdr_chunk_get *req, size_t n,
            struct blob_at *at, bool *pending)
{
  size_t found = 0;

  *pending = false;
  pthread_mutex_lock (&r->lock);
  for (size_t i = 0; i < n; i++) {
    req[i].err = blob_at_locked (r, &req[i].d, i, &at[found]);
    if (req[i].err == 0)
      found++;
    *pending |= req[i].err == -EAGAIN;
  }
  pthread_mutex_unlock (&r->lock);
  return found;
}

/* The requests AT[k..) for members of the group blob at BLOB (all at its
 * offset, side by side as sorted): the group decompressed once, each
 * member checked against its digest.  The index after them. */
static size_t
get_members (struct vmdr_repo *r, struct vmdr_repo_reader *rd, struct vmdr_chunk_get *req,
             const struct blob_at *at, size_t n, size_t k, const uint8_t *blob)
{
  struct vmdr_blob_group g;
  size_t j;
  int e = vmdr_blob_group_open (rd->z, r->cfg.hash, blob, at[k].len, &g);

  for (j = k; j < n && at[j].offset == at[k].offset; j++) {
    struct vmdr_chunk_get *q = &req[at[j].i];
    q->err = e < 0 ? (e == -EINVAL ? -EBADMSG : e)
                   : vmdr_blob_group_get (&g, r->cfg.hash, &q->d, q->buf, q->cap, &q->len);
    if (q->err == -ENOENT)
      q->err = -EILSEQ;         /* the index says it is here, the group says not */
  }
  return j;
}

/* Read the blobs AT[0..n) of one pack, sorted by offset, bytes [start, end)
 * of it, in one read, and decode them; one by one if that read fails. */
static void
read_run (struct vmdr_repo *r, struct vmdr_repo_reader *rd,
          struct vmdr_chunk_get *req, const struct blob_at *at, size_t n,
          uint64_t start, uint64_t end)
{
  char key[VMDR_PACK_KEY_LEN];
  struct vmdr_digest pack;
  size_t len = (size_t) (end - start);
  int e;

  if (len > rd->cap) {          /* one big blob: grow for it */
    void *p = realloc (rd->buf, len);
    if (p == NULL) {
      for (size_t k = 0; k < n; k++)
        req[at[k].i].err = -ENOMEM;
      return;
    }
    rd->buf = p;
    rd->cap = len;
  }
  pthread_mutex_lock (&r->lock);
  pack = r->packs[at[0].pack];
  pthread_mutex_unlock (&r->lock);
  vmdr_pack_key (&pack, key);
  e = vmdr_backend_read (r->b, key, start, len, rd->buf);
  if (e < 0 && n > 1) {         /* find out which blobs it was */
    for (size_t k = 0; k < n; k++)
      read_run (r, rd, req, &at[k], 1, at[k].offset, at[k].offset + at[k].len);
    return;
  }
  for (size_t k = 0; k < n; k++) {
    struct vmdr_chunk_get *q = &req[at[k].i];
    const uint8_t *blob = rd->buf + (at[k].offset - start);
    if (e < 0)
      q->err = e == -ERANGE ? -EBADMSG : e;   /* shorter than its index says */
    else if (blob[5] == VMDR_BLOB_GROUP)
      k = get_members (r, rd, req, at, n, k, blob) - 1;
    else
      q->err = vmdr_blob_decode (rd->z, r->cfg.hash, blob, at[k].len, &q->d,
                                 q->buf, q->cap, &q->len);
  }
}

int
vmdr_repo_get_chunks (struct vmdr_repo *r, struct vmdr_repo_reader *rd,
                      struct vmdr_chunk_get *req, size_t n)
{
  struct blob_at at[VMDR_GET_CHUNKS_MAX];
  size_t found, k, j;
  bool pending;

  if (n > VMDR_GET_CHUNKS_MAX)
    return -EINVAL;
  found = locate_all (r, req, n, at, &pending);
  if (pending) {                /* written by us, still in memory: flush */
    int e = vmdr_repo_flush (r);
    if (e == 0)
      found = locate_all (r, req, n, at, &pending);
    for (size_t i = 0; e < 0 && i < n; i++)
      if (req[i].err == -EAGAIN)
        req[i].err = e;
  }
  /* Pack order, then runs of blobs close together in one pack. */
  qsort (at, found, sizeof at[0], cmp_blob_at);
  for (k = 0; k < found; k = j) {
    uint64_t start, end;
    j = run_of (at, found, k, &start, &end);
    read_run (r, rd, req, &at[k], j - k, start, end);
  }
  return 0;
}

void
vmdr_repo_prefetch (struct vmdr_repo *r, const struct vmdr_digest *d, size_t n)
{
  struct blob_at at[VMDR_GET_CHUNKS_MAX];
  struct run { char key[VMDR_PACK_KEY_LEN]; uint64_t start, end; } *runs;
  size_t found = 0, nruns = 0;

  if (r->b->ops->prefetch == NULL || n == 0 || n > VMDR_GET_CHUNKS_MAX ||
      (runs = malloc (n * sizeof *runs)) == NULL)
    return;
  pthread_mutex_lock (&r->lock);
  for (size_t i = 0; i < n; i++)
    if (blob_at_locked (r, &d[i], i, &at[found]) == 0)
      found++;
  qsort (at, found, sizeof at[0], cmp_blob_at);
  for (size_t k = 0, j; k < found; k = j, nruns++) {
    j = run_of (at, found, k, &runs[nruns].start, &runs[nruns].end);
    vmdr_pack_key (&r->packs[at[k].pack], runs[nruns].key);
  }
  pthread_mutex_unlock (&r->lock);
  for (size_t k = 0; k < nruns; k++)
    r->b->ops->prefetch (r->b, runs[k].key, runs[k].start, runs[k].end - runs[k].start);
  free (runs);
}
