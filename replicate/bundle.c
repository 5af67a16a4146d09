/* Bundles (docs/bundle-format.md): export a repository subset as a pax tar
 * stream, and import one without trusting a byte of it. */
#include <config.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <zstd.h>

#include "bundle.h"
#include "cleanup.h"
#include "disk-index.h"
#include "endian-util.h"
#include "lock.h"
#include "pack.h"
#include "snapshot.h"
#include "stream-index.h"
#include "verify.h"

#define HEADER_NAME "vmdr-bundle.json"
#define CONFIG_NAME "config"
#define BLOB_PREFIX "blobs/"
#define BLOB_NAME_LEN (sizeof BLOB_PREFIX - 1 + 3 + VMDR_DIGEST_HEX_LEN)
#define NODE_HEADER 16
#define READ_BLOCK (64u << 10)

static void __attribute__((format (printf, 3, 4)))
say (char *why, size_t len, const char *fmt, ...)
{
  va_list ap;

  if (why == NULL || len == 0)
    return;
  va_start (ap, fmt);
  vsnprintf (why, len, fmt, ap);
  va_end (ap);
}

/* The largest plaintext a blob of a repository with config C holds: a
 * disk chunk, a stream chunk, or an index node (stream nodes are the
 * larger: 40 bytes an entry). */
static size_t
raw_cap (const struct vmdr_repo_config *c)
{
  size_t cap = c->chunk_size;

  if (c->cdc_max > cap)
    cap = c->cdc_max;
  if (NODE_HEADER + (size_t) c->fanout * 40 > cap)
    cap = NODE_HEADER + (size_t) c->fanout * 40;
  return cap;
}

static void
blob_name (const struct vmdr_digest *d, char *name)
{
  char hex[VMDR_DIGEST_HEX_LEN + 1];

  vmdr_digest_to_hex (d, hex);
  snprintf (name, BLOB_NAME_LEN + 1, BLOB_PREFIX "%.2s/%s", hex, hex);
}

/* ---- a set of digests ------------------------------------------------------ */

/* Open addressing; digests are uniformly distributed (the ones a bundle
 * could choose are checked before the set grows far), so their first
 * bytes are the hash.  Not verify.h's digest set: the flags on each entry
 * spare a second and third set of the same digests. */
#define F_BASE 1u               /* export: the base has it */
#define F_REACHED 2u            /* import: a manifest's walk got here */

struct dentry {
  struct vmdr_digest d;
  uint8_t used, flags, gen;
  uint8_t kind;                 /* import: enum vmdr_blob_kind */
};

struct dset {
  struct dentry *v;
  size_t cap, n;                /* cap a power of two, or 0 */
};

static size_t
dslot (const struct dset *s, const struct vmdr_digest *d)
{
  uint64_t h;

  memcpy (&h, d->b, sizeof h);
  return (size_t) h & (s->cap - 1);
}

static struct dentry *
dset_find (const struct dset *s, const struct vmdr_digest *d)
{
  if (s->cap == 0)
    return NULL;
  for (size_t i = dslot (s, d);; i = (i + 1) & (s->cap - 1)) {
    if (!s->v[i].used)
      return NULL;
    if (memcmp (&s->v[i].d, d, sizeof *d) == 0)
      return &s->v[i];
  }
}

static int
dset_grow (struct dset *s)
{
  size_t cap = s->cap ? 2 * s->cap : 1024;
  struct dentry *old = s->v, *v = calloc (cap, sizeof *v);
  size_t oldcap = s->cap;

  if (v == NULL)
    return -ENOMEM;
  s->v = v;
  s->cap = cap;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].used) {
      size_t j = dslot (s, &old[i].d);
      while (v[j].used)
        j = (j + 1) & (cap - 1);
      v[j] = old[i];
    }
  free (old);
  return 0;
}

/* D's entry, added (zeroed but for the digest) if absent.  NULL: -ENOMEM. */
static struct dentry *
dset_add (struct dset *s, const struct vmdr_digest *d)
{
  struct dentry *e = dset_find (s, d);
  size_t i;

  if (e)
    return e;
  if ((s->n + 1) * 4 > s->cap * 3 && dset_grow (s) < 0)
    return NULL;
  for (i = dslot (s, d); s->v[i].used; i = (i + 1) & (s->cap - 1))
    ;
  s->v[i] = (struct dentry) { .d = *d, .used = 1 };
  s->n++;
  return &s->v[i];
}

static void
dset_free (struct dset *s)
{
  free (s->v);
  *s = (struct dset) { 0 };
}

/* ---- export ------------------------------------------------------------------ */

struct node_ref {
  struct vmdr_digest d;
  uint8_t kind;
};

struct exporter {
  struct vmdr_repo *repo;
  const struct vmdr_repo_config *cfg;
  const struct vmdr_bundle_export_opts *o;
  struct vmdr_zctx *z;
  struct dset set;
  uint8_t gen;                  /* 1: counting, 2: writing */
  bool base_pass;
  enum vmdr_blob_kind node_kind;        /* of the tree being walked */
  struct node_ref *nodes;       /* a snapshot's new nodes, in walk order */
  size_t nnodes, nodes_cap;
  uint64_t blobs, bytes;        /* this pass */
  uint64_t total_bytes;         /* counted by the first pass */
  uint8_t *raw;                 /* verification buffer */
  size_t rawcap;
  uint8_t *plain;               /* a raw blob, for zstd bundles */
  /* The group blob last read: its members come one after another. */
  struct vmdr_zctx *gz;
  void *gblob;
  struct vmdr_blob_group group;
  struct vmdr_digest gpack;
  uint32_t goffset;

  struct archive *a;
  struct archive_entry *e;
  time_t now;
  int fd;
  uint64_t out_bytes;
  int werr;                     /* errno of a failed write(2) */
  ZSTD_CCtx *zc;                /* --zstd: the stream's compressor */
  uint8_t *zout;
  size_t zoutcap;
  bool closing;                 /* the archive is being closed normally */
  char *why;
  size_t whylen;
};

/* Write LEN bytes at BUF to the output.  0, or -1 with ex->werr set. */
static int
write_fd (struct exporter *ex, const void *buf, size_t len)
{
  size_t done = 0;

  while (done < len) {
    ssize_t n = write (ex->fd, (const char *) buf + done, len - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ex->werr = n < 0 ? errno : EIO;
      return -1;
    }
    done += (size_t) n;
  }
  ex->out_bytes += len;
  return 0;
}

/* --zstd bundles are compressed here, not by libarchive's zstd filter,
 * for long-distance matching over a 32 MiB window: it finds the repeats
 * that chunk dedup cannot (a file again at an offset that is no chunk
 * boundary).  The bench image (/usr in ext4): 8 % smaller than tar
 * --zstd's archive, where plain level 3 was 1 % larger.  A reader needs a
 * 32 MiB window; zstd decoders take up to 128 MiB without being told. */
#define BUNDLE_ZSTD_WINDOW_LOG 25

/* Online CPUs, 1 .. 8: the stream is most of a zstd export's CPU. */
static int
bundle_threads (void)
{
  long n = sysconf (_SC_NPROCESSORS_ONLN);

  return n < 1 ? 1 : n > 8 ? 8 : (int) n;
}

static int
zs_open (struct exporter *ex, int level)
{
  if ((ex->zc = ZSTD_createCCtx ()) == NULL)
    return -ENOMEM;
  if (ZSTD_isError (ZSTD_CCtx_setParameter (ex->zc, ZSTD_c_compressionLevel, level)) ||
      ZSTD_isError (ZSTD_CCtx_setParameter (ex->zc, ZSTD_c_windowLog, BUNDLE_ZSTD_WINDOW_LOG)) ||
      ZSTD_isError (ZSTD_CCtx_setParameter (ex->zc, ZSTD_c_enableLongDistanceMatching, 1)) ||
      ZSTD_isError (ZSTD_CCtx_setParameter (ex->zc, ZSTD_c_checksumFlag, 1)))
    return -EINVAL;
  /* A libzstd built without threads refuses: then one. */
  ZSTD_CCtx_setParameter (ex->zc, ZSTD_c_nbWorkers, bundle_threads ());
  ex->zoutcap = ZSTD_CStreamOutSize ();
  ex->zout = malloc (ex->zoutcap);
  return ex->zout ? 0 : -ENOMEM;
}

/* Compress LEN bytes at BUF (with END, then end the frame) and write what
 * comes out.  0, or -1 with ex->werr set. */
static int
zs_write (struct exporter *ex, const void *buf, size_t len, ZSTD_EndDirective end)
{
  ZSTD_inBuffer in = { buf, len, 0 };

  for (;;) {
    ZSTD_outBuffer out = { ex->zout, ex->zoutcap, 0 };
    size_t left = ZSTD_compressStream2 (ex->zc, &out, &in, end);
    if (ZSTD_isError (left)) {
      ex->werr = EIO;
      return -1;
    }
    if (out.pos > 0 && write_fd (ex, ex->zout, out.pos) < 0)
      return -1;
    if (end == ZSTD_e_end ? left == 0 : in.pos == in.size)
      return 0;
  }
}

static la_ssize_t
write_cb (struct archive *a, void *opaque, const void *buf, size_t len)
{
  struct exporter *ex = opaque;
  int r = ex->zc ? zs_write (ex, buf, len, ZSTD_e_continue) : write_fd (ex, buf, len);

  if (r < 0) {
    archive_set_error (a, ex->werr, "%s", strerror (ex->werr));
    return -1;
  }
  return (la_ssize_t) len;
}

/* The end of a zstd stream, only when the archive closes normally: a
 * bundle cut short by an error is a truncated frame, not a whole one. */
static int
close_cb (struct archive *a, void *opaque)
{
  struct exporter *ex = opaque;

  if (ex->zc && ex->closing && zs_write (ex, NULL, 0, ZSTD_e_end) < 0) {
    archive_set_error (a, ex->werr, "%s", strerror (ex->werr));
    return ARCHIVE_FATAL;
  }
  return ARCHIVE_OK;
}

/* An archive failure: -EIO, and the reason. */
static int
archive_fail (struct exporter *ex, const char *what)
{
  say (ex->why, ex->whylen, "cannot write %s: %s", what,
       ex->werr ? strerror (ex->werr) : archive_error_string (ex->a));
  return -EIO;
}

static int
put_entry (struct exporter *ex, const char *name, const void *data, size_t len)
{
  archive_entry_clear (ex->e);
  archive_entry_set_pathname (ex->e, name);
  archive_entry_set_filetype (ex->e, AE_IFREG);
  archive_entry_set_perm (ex->e, 0444);
  archive_entry_set_size (ex->e, (la_int64_t) len);
  archive_entry_set_mtime (ex->e, ex->now, 0);
  if (archive_write_header (ex->a, ex->e) != ARCHIVE_OK)
    return archive_fail (ex, "the bundle");
  if (len && archive_write_data (ex->a, data, len) != (la_ssize_t) len)
    return archive_fail (ex, "the bundle");
  return 0;
}

/* The blob of BLEN bytes at OFFSET in PACK, as stored: *blob (malloc'd).
 * 0, -EBADMSG (the pack is shorter than its index says), -errno. */
static int
get_stored (struct exporter *ex, const struct vmdr_digest *pack, uint32_t offset, size_t blen,
            void **blob)
{
  struct vmdr_backend *b = vmdr_repo_backend (ex->repo);
  char key[VMDR_PACK_KEY_LEN];
  size_t len;
  int r;

  vmdr_pack_key (pack, key);
  r = b->ops->get (b, key, offset, blen, blen, blob, &len);
  if (r == 0 && len != blen) {
    free (*blob);
    *blob = NULL;
  }
  return r == -ERANGE || (r == 0 && len != blen) ? -EBADMSG : r;
}

/* Member D of the group blob at OFFSET in PACK (STORED payload bytes) into
 * ex->raw, checked: the group is read and decompressed once for all the
 * members that follow one another.  0 and *raw, or -errno. */
static int
read_member (struct exporter *ex, const struct vmdr_digest *d, uint32_t stored,
             const struct vmdr_digest *pack, uint32_t offset, size_t *raw)
{
  size_t blen = VMDR_BLOB_HEADER_LEN + (size_t) stored;
  int r;

  if (ex->gblob == NULL || ex->goffset != offset ||
      memcmp (&ex->gpack, pack, sizeof *pack) != 0) {
    free (ex->gblob);
    ex->gblob = NULL;
    r = get_stored (ex, pack, offset, blen, &ex->gblob);
    if (r == 0)
      r = vmdr_blob_group_open (ex->gz, ex->cfg->hash, ex->gblob, blen, &ex->group);
    if (r < 0) {
      free (ex->gblob);
      ex->gblob = NULL;
      return r == -EINVAL ? -EBADMSG : r;
    }
    ex->gpack = *pack;
    ex->goffset = offset;
  }
  r = vmdr_blob_group_get (&ex->group, ex->cfg->hash, d, ex->raw, ex->rawcap, raw);
  return r == -ENOENT ? -EILSEQ : r;
}

/* Read blob D of KIND as stored, check it whole, and write it as an entry. */
static int
emit_blob (struct exporter *ex, const struct vmdr_digest *d, enum vmdr_blob_kind kind,
           uint32_t stored, uint32_t raw_len, const struct vmdr_digest *pack, uint32_t offset,
           bool grouped)
{
  char name[BLOB_NAME_LEN + 1], hex[VMDR_DIGEST_HEX_LEN + 1];
  _cleanup_free_ void *blob = NULL;
  struct vmdr_blob_header h;
  size_t blen = VMDR_BLOB_HEADER_LEN + (size_t) stored, raw;
  int r;

  if (grouped)
    r = read_member (ex, d, stored, pack, offset, &raw);
  else {
    r = get_stored (ex, pack, offset, blen, &blob);
    if (r == 0 && (vmdr_blob_parse_header (blob, blen, &h) < 0 || h.kind != kind))
      r = -EBADMSG;
    if (r == 0)
      r = vmdr_blob_decode (ex->z, ex->cfg->hash, blob, blen, d, ex->raw, ex->rawcap, &raw);
  }
  if (r == -ENOBUFS)
    r = -EBADMSG;
  bool raw_out = ex->o->zstd || grouped;

  if (r == 0 && raw_out && raw != raw_len)
    r = -EBADMSG;               /* the pack index disagrees */
  if (r < 0) {
    vmdr_digest_to_hex (d, hex);
    say (ex->why, ex->whylen, "cannot read blob %s: %s", hex, vmdr_damage_text (r));
    return r;
  }
  blob_name (d, name);
  /* A zstd bundle carries raw blobs: compressed as one stream, chunks
   * share a window, which 64 KiB frames cannot (bench image: 602 MB,
   * where the packs' blobs under libarchive's zstd filter made 742 MB). */
  if (raw_out &&
      (r = vmdr_blob_encode (NULL, kind, d, ex->raw, raw, ex->plain,
                             vmdr_blob_bound (ex->rawcap), &blen)) == 0)
    return put_entry (ex, name, ex->plain, blen);
  return r < 0 ? r : put_entry (ex, name, blob, blen);
}

/* Blob D of KIND goes into the bundle: counted in the first pass, written
 * in the second. */
static int
add_blob (struct exporter *ex, const struct vmdr_digest *d, enum vmdr_blob_kind kind)
{
  char hex[VMDR_DIGEST_HEX_LEN + 1];
  struct vmdr_digest pack;
  uint32_t offset, stored, raw_len;
  bool grouped = false, raw;
  int r;

  if ((r = vmdr_repo_locate (ex->repo, d, &pack, &offset, &stored)) < 0 ||
      (r = vmdr_repo_raw_len (ex->repo, d, &raw_len, &grouped)) < 0 ||
      stored > VMDR_BLOB_MAX_STORED || raw_len == 0 || raw_len > ex->rawcap) {
    vmdr_digest_to_hex (d, hex);
    r = r < 0 ? r : -EBADMSG;
    say (ex->why, ex->whylen, "cannot read blob %s: %s", hex, vmdr_damage_text (r));
    return r;
  }
  /* A bundle holds a blob per chunk: a member of a group goes raw (its
   * size known in the counting pass, before anything is read). */
  raw = ex->o->zstd || grouped;
  if (ex->gen == 2 && (r = emit_blob (ex, d, kind, stored, raw_len, &pack, offset, grouped)) < 0)
    return r;
  ex->blobs++;
  ex->bytes += VMDR_BLOB_HEADER_LEN + (uint64_t) (raw ? raw_len : stored);
  if (ex->gen == 2 && ex->o->progress)
    ex->o->progress (ex->o->popaque, ex->bytes, ex->total_bytes);
  return 0;
}

/* Seen already: in the base, or met earlier in this pass. */
static bool
seen (struct exporter *ex, const struct vmdr_digest *d)
{
  struct dentry *e = dset_find (&ex->set, d);

  return e && ((e->flags & F_BASE) || e->gen == ex->gen);
}

/* Mark D seen; 0 or -ENOMEM. */
static int
mark (struct exporter *ex, const struct vmdr_digest *d)
{
  struct dentry *e = dset_add (&ex->set, d);

  if (e == NULL)
    return -ENOMEM;
  if (ex->base_pass)
    e->flags |= F_BASE;
  else
    e->gen = ex->gen;
  return 0;
}

static int
ex_node (void *opaque, const struct vmdr_digest *d)
{
  struct exporter *ex = opaque;
  int r;

  if (seen (ex, d))
    return 1;                   /* and so is everything below it */
  if ((r = mark (ex, d)) < 0 || ex->base_pass)
    return r;
  if (ex->nnodes == ex->nodes_cap) {
    size_t cap = ex->nodes_cap ? 2 * ex->nodes_cap : 256;
    struct node_ref *v = realloc (ex->nodes, cap * sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    ex->nodes = v;
    ex->nodes_cap = cap;
  }
  ex->nodes[ex->nnodes++] = (struct node_ref) { *d, (uint8_t) ex->node_kind };
  return 0;
}

static int
ex_chunk (struct exporter *ex, const struct vmdr_digest *d)
{
  int r;

  if (vmdr_digest_is_zero (d) || seen (ex, d))
    return 0;
  if ((r = mark (ex, d)) < 0 || ex->base_pass)
    return r;
  return add_blob (ex, d, VMDR_BLOB_DATA);
}

static int
ex_disk_leaf (void *opaque, uint64_t first, uint64_t count, const struct vmdr_digest *d)
{
  int r = 0;

  (void) first;
  for (uint64_t i = 0; d && i < count && r == 0; i++)
    r = ex_chunk (opaque, &d[i]);
  return r;
}

static int
ex_stream_leaf (void *opaque, uint64_t offset, const struct vmdr_stream_entry *e, size_t n)
{
  int r = 0;

  (void) offset;
  for (size_t i = 0; i < n && r == 0; i++)
    r = ex_chunk (opaque, &e[i].d);
  return r;
}

/* Walk M's trees: its new data chunks as they come, then its new nodes,
 * children before parents (the reverse of the walk's pre-order). */
static int
ex_snapshot (struct exporter *ex, const struct vmdr_manifest *m)
{
  int r = 0;

  ex->nnodes = 0;
  ex->node_kind = VMDR_BLOB_DISK_NODE;
  for (size_t i = 0; i < m->ndisks && r == 0; i++) {
    struct vmdr_disk_tree t;
    vmdr_manifest_disk_tree (&m->disks[i], &t);
    r = vmdr_disk_tree_walk_nodes (ex->repo, ex->z, &t, ex_node, ex_disk_leaf, ex);
  }
  if (r == 0 && m->memory.present) {
    struct vmdr_stream_tree t;
    vmdr_manifest_memory_tree (&m->memory, &t);
    ex->node_kind = VMDR_BLOB_STREAM_NODE;
    r = vmdr_stream_tree_walk_nodes (ex->repo, ex->z, &t, ex_node, ex_stream_leaf, ex);
  }
  if (r < 0 && (ex->why == NULL || ex->why[0] == '\0'))
    say (ex->why, ex->whylen, "cannot read the index of %s: %s", m->id, vmdr_damage_text (r));
  for (size_t i = ex->nnodes; r == 0 && i-- > 0;)
    r = add_blob (ex, &ex->nodes[i].d, ex->nodes[i].kind);
  return r;
}

static char *
header_json (struct exporter *ex, const char *const *ids, size_t n)
{
  json_object *o = json_object_new_object (), *a = json_object_new_array ();
  char created[32], *s = NULL;
  struct tm tm;

  gmtime_r (&ex->now, &tm);
  strftime (created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_object_object_add (o, "format", json_object_new_string ("vmdr-bundle"));
  json_object_object_add (o, "version", json_object_new_int (VMDR_BUNDLE_VERSION));
  json_object_object_add (o, "created", json_object_new_string (created));
  json_object_object_add (o, "tool", json_object_new_string ("vmdr " PACKAGE_VERSION));
  json_object_object_add (o, "repository", json_object_new_string (ex->cfg->id));
  json_object_object_add (o, "base", ex->o->base ? json_object_new_string (ex->o->base) : NULL);
  for (size_t i = 0; i < n; i++)
    json_object_array_add (a, json_object_new_string (ids[i]));
  json_object_object_add (o, "snapshots", a);
  json_object_object_add (o, "blobs", json_object_new_int64 ((int64_t) ex->blobs));
  json_object_object_add (o, "blob_bytes", json_object_new_int64 ((int64_t) ex->bytes));
  s = strdup (json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (o);
  return s;
}

static int
ex_open_archive (struct exporter *ex)
{
  int r;

  if ((ex->a = archive_write_new ()) == NULL || (ex->e = archive_entry_new ()) == NULL)
    return -ENOMEM;
  if (archive_write_set_format_pax_restricted (ex->a) != ARCHIVE_OK)
    return archive_fail (ex, "a pax archive");
  if (ex->o->zstd && (r = zs_open (ex, ex->o->zstd_level ? ex->o->zstd_level : 3)) < 0) {
    say (ex->why, ex->whylen, "cannot set up zstd: %s", strerror (-r));
    return r;
  }
  /* No padding of the last block to 10 KiB: after zstd it would be bytes
   * that are no frame. */
  archive_write_set_bytes_in_last_block (ex->a, 1);
  if (archive_write_open (ex->a, ex, NULL, write_cb, close_cb) != ARCHIVE_OK)
    return archive_fail (ex, "the bundle");
  return 0;
}

/* The passes over every snapshot: count (GEN 1) or write (GEN 2). */
static int
ex_pass (struct exporter *ex, const struct vmdr_manifest *ms, size_t n, uint8_t gen)
{
  int r = 0;

  ex->gen = gen;
  ex->blobs = ex->bytes = 0;
  for (size_t i = 0; i < n && r == 0; i++)
    r = ex_snapshot (ex, &ms[i]);
  return r;
}

int
vmdr_bundle_export (struct vmdr_repo *repo, const char *const *ids, size_t n,
                    const struct vmdr_bundle_export_opts *o, int fd,
                    struct vmdr_bundle_stats *st, char *why, size_t whylen)
{
  struct exporter ex = { .repo = repo, .cfg = vmdr_repo_config (repo), .o = o,
                         .fd = fd, .why = why, .whylen = whylen, .now = time (NULL) };
  struct vmdr_manifest *ms = NULL, base = { 0 };
  _cleanup_free_ char *header = NULL, *config = NULL;
  uint64_t blobs, bytes;
  size_t loaded = 0;
  int r;

  say (why, whylen, "%s", "");
  if (n == 0 || n > VMDR_BUNDLE_MAX_SNAPSHOTS ||
      (o->zstd && (o->zstd_level < 0 || o->zstd_level > 19))) {
    say (why, whylen, "%s", n == 0 ? "no snapshot to export" : "too many snapshots or a bad level");
    return -EINVAL;
  }
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < i; j++)
      if (strcmp (ids[i], ids[j]) == 0) {
        say (why, whylen, "snapshot %s given twice", ids[i]);
        return -EINVAL;
      }
  ex.rawcap = raw_cap (ex.cfg);
  if ((ms = calloc (n, sizeof *ms)) == NULL || (ex.raw = malloc (ex.rawcap)) == NULL ||
      (ex.plain = malloc (vmdr_blob_bound (ex.rawcap))) == NULL ||
      (r = vmdr_zctx_new (1, &ex.z)) < 0 || (r = vmdr_zctx_new (1, &ex.gz)) < 0) {
    r = -ENOMEM;
    goto out;
  }
  for (; loaded < n; loaded++)
    if ((r = vmdr_manifest_get (repo, ids[loaded], &ms[loaded])) < 0) {
      say (why, whylen, "cannot read snapshot %s: %s", ids[loaded],
           r == -ENOENT ? "no such snapshot" : vmdr_damage_text (r));
      goto out;
    }
  if (o->base) {
    if ((r = vmdr_manifest_get (repo, o->base, &base)) < 0) {
      say (why, whylen, "cannot read the base %s: %s", o->base,
           r == -ENOENT ? "no such snapshot" : vmdr_damage_text (r));
      goto out;
    }
    ex.base_pass = true;
    r = ex_snapshot (&ex, &base);
    ex.base_pass = false;
    if (r < 0)
      goto out;
  }
  /* Count first, so that the header can bound what an importer takes. */
  if ((r = ex_pass (&ex, ms, n, 1)) < 0)
    goto out;
  if (ex.blobs > VMDR_BUNDLE_MAX_BLOBS) {
    say (why, whylen, "%llu blobs are more than a bundle holds (%u): export fewer snapshots",
         (unsigned long long) ex.blobs, VMDR_BUNDLE_MAX_BLOBS);
    r = -EFBIG;
    goto out;
  }
  blobs = ex.blobs;
  bytes = ex.total_bytes = ex.bytes;
  if ((header = header_json (&ex, ids, n)) == NULL ||
      (r = vmdr_repo_config_format (ex.cfg, &config)) < 0) {
    r = -ENOMEM;
    goto out;
  }
  if ((r = ex_open_archive (&ex)) < 0 ||
      (r = put_entry (&ex, HEADER_NAME, header, strlen (header))) < 0 ||
      (r = put_entry (&ex, CONFIG_NAME, config, strlen (config))) < 0 ||
      (r = ex_pass (&ex, ms, n, 2)) < 0)
    goto out;
  if (ex.blobs != blobs || ex.bytes != bytes) {
    say (why, whylen, "the repository changed during the export");
    r = -EIO;
    goto out;
  }
  for (size_t i = 0; i < n && r == 0; i++) {
    _cleanup_free_ char *json = NULL;
    char key[VMDR_KEY_MAX + 1];
    if ((r = vmdr_manifest_key (ms[i].id, key, sizeof key)) < 0 ||
        (r = vmdr_manifest_format (&ms[i], &json)) < 0)
      break;
    r = put_entry (&ex, key, json, strlen (json));
  }
  ex.closing = true;
  if (r == 0 && archive_write_close (ex.a) != ARCHIVE_OK)
    r = archive_fail (&ex, "the bundle");
  ex.closing = false;
  if (r == 0 && st)
    *st = (struct vmdr_bundle_stats) { .snapshots = n, .blobs = blobs, .blob_bytes = bytes,
                                       .bundle_bytes = ex.out_bytes };
 out:
  if (ex.a)
    archive_write_free (ex.a);   /* after a failure: no end of archive */
  archive_entry_free (ex.e);
  for (size_t i = 0; ms && i < loaded; i++)
    vmdr_manifest_clear (&ms[i]);
  free (ms);
  vmdr_manifest_clear (&base);
  dset_free (&ex.set);
  free (ex.nodes);
  free (ex.raw);
  free (ex.plain);
  free (ex.gblob);
  vmdr_zctx_free (ex.gz);
  ZSTD_freeCCtx (ex.zc);
  free (ex.zout);
  vmdr_zctx_free (ex.z);
  return r;
}

/* ---- reading a bundle ------------------------------------------------------- */

struct vmdr_bundle_reader {
  struct archive *a;
  bool header_read, failed;
  struct vmdr_bundle_info info;
  char why[VMDR_BUNDLE_WHY_MAX];
};

static void __attribute__((format (printf, 2, 3)))
rd_say (struct vmdr_bundle_reader *rd, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (rd->why, sizeof rd->why, fmt, ap);
  va_end (ap);
}

static int
reader_new (struct vmdr_bundle_reader **out)
{
  struct vmdr_bundle_reader *rd = calloc (1, sizeof *rd);

  if (rd == NULL || (rd->a = archive_read_new ()) == NULL) {
    free (rd);
    return -ENOMEM;
  }
  /* tar (pax, ustar, GNU) only, plain or zstd: nothing else is a bundle,
   * and every other format is attack surface. */
  if (archive_read_support_format_tar (rd->a) != ARCHIVE_OK ||
      archive_read_support_filter_zstd (rd->a) != ARCHIVE_OK) {
    vmdr_bundle_reader_free (rd);
    return -ENOTSUP;
  }
  *out = rd;
  return 0;
}

int
vmdr_bundle_reader_open_fd (int fd, struct vmdr_bundle_reader **out)
{
  struct vmdr_bundle_reader *rd;
  int r = reader_new (&rd);

  if (r < 0)
    return r;
  if (archive_read_open_fd (rd->a, fd, READ_BLOCK) != ARCHIVE_OK) {
    rd_say (rd, "not a readable bundle: %s", archive_error_string (rd->a));
    rd->failed = true;
  }
  *out = rd;
  return 0;
}

int
vmdr_bundle_reader_open_memory (const void *buf, size_t len,
                                struct vmdr_bundle_reader **out)
{
  struct vmdr_bundle_reader *rd;
  int r = reader_new (&rd);

  if (r < 0)
    return r;
  if (archive_read_open_memory (rd->a, buf, len) != ARCHIVE_OK) {
    rd_say (rd, "not a readable bundle: %s", archive_error_string (rd->a));
    rd->failed = true;
  }
  *out = rd;
  return 0;
}

void
vmdr_bundle_reader_free (struct vmdr_bundle_reader *rd)
{
  if (rd == NULL)
    return;
  archive_read_free (rd->a);
  vmdr_strv_free (rd->info.snapshots, rd->info.nsnapshots);
  free (rd);
}

const char *
vmdr_bundle_reader_error (const struct vmdr_bundle_reader *rd)
{
  return rd->why;
}

/* NAME made safe to print: at most 80 bytes, unprintable ones as '?'. */
static const char *
printable (const char *name, char *buf, size_t size)
{
  size_t i = 0;

  for (; name[i] && i + 4 < size && i < 80; i++)
    buf[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
  if (name[i] && i + 4 <= size) {
    memcpy (buf + i, "...", 3);
    i += 3;
  }
  buf[i] = '\0';
  return buf;
}

/* A stream error: -EIO for a read that failed, -EBADMSG for bytes that
 * are no tar (or zstd), truncation included. */
static int
stream_fail (struct vmdr_bundle_reader *rd, const char *where)
{
  int e = archive_errno (rd->a);
  const char *s = archive_error_string (rd->a);

  rd_say (rd, "%s: %s", where, s ? s : "unreadable");
  rd->failed = true;
  if (e == ENOMEM)
    return -ENOMEM;
  /* read(2)'s errors; the rest are libarchive's words for bytes it
   * cannot take (EILSEQ, EINVAL, -1) */
  return e == EIO || e == EBADF || e == EISDIR || e == EINTR || e == EAGAIN || e == ENXIO ||
         e == ENODEV || e == ETIMEDOUT || e == ECONNRESET ? -EIO : -EBADMSG;
}

static const char *
type_name (mode_t type)
{
  switch (type) {
  case AE_IFLNK: return "a symbolic link";
  case AE_IFDIR: return "a directory";
  case AE_IFCHR: return "a character device";
  case AE_IFBLK: return "a block device";
  case AE_IFIFO: return "a FIFO";
  case AE_IFSOCK: return "a socket";
  default: return "not a regular file";
  }
}

/* The next entry: 1 with its name (valid until the next call) and size,
 * checked to be a plain file at a relative path without "..", or 0 at the
 * end of the archive, or -EBADMSG / -EIO. */
static int
next_entry (struct vmdr_bundle_reader *rd, const char **name, uint64_t *size)
{
  struct archive_entry *e;
  const char *p, *link;
  char pb[96], lb[96];
  int r;

  if (rd->failed)
    return -EBADMSG;
  r = archive_read_next_header (rd->a, &e);
  if (r == ARCHIVE_EOF)
    return 0;
  if (r != ARCHIVE_OK)
    return stream_fail (rd, "not a readable bundle");
  rd->failed = true;            /* until this entry proves fine */
  p = archive_entry_pathname (e);
  if (p == NULL || *p == '\0') {
    rd_say (rd, "an entry without a name");
    return -EBADMSG;
  }
  printable (p, pb, sizeof pb);
  if (p[0] == '/') {
    rd_say (rd, "entry '%s': an absolute path", pb);
    return -EBADMSG;
  }
  for (const char *c = p; (c = strstr (c, "..")) != NULL; c += 2)
    if ((c == p || c[-1] == '/') && (c[2] == '\0' || c[2] == '/')) {
      rd_say (rd, "entry '%s': '..' in the path", pb);
      return -EBADMSG;
    }
  if ((link = archive_entry_hardlink (e)) != NULL) {
    rd_say (rd, "entry '%s': a hard link (to '%s')", pb, printable (link, lb, sizeof lb));
    return -EBADMSG;
  }
  if ((link = archive_entry_symlink (e)) != NULL || archive_entry_filetype (e) == AE_IFLNK) {
    rd_say (rd, "entry '%s': a symbolic link (to '%s')", pb,
            link ? printable (link, lb, sizeof lb) : "?");
    return -EBADMSG;
  }
  if (archive_entry_filetype (e) != AE_IFREG) {
    rd_say (rd, "entry '%s': %s", pb, type_name (archive_entry_filetype (e)));
    return -EBADMSG;
  }
  if (archive_entry_sparse_count (e) > 0) {
    rd_say (rd, "entry '%s': a sparse file", pb);
    return -EBADMSG;
  }
  if (!archive_entry_size_is_set (e) || archive_entry_size (e) < 0) {
    rd_say (rd, "entry '%s': no size", pb);
    return -EBADMSG;
  }
  rd->failed = false;
  *name = p;
  *size = (uint64_t) archive_entry_size (e);
  return 1;
}

/* An entry that should not be where it is. */
static int
unexpected (struct vmdr_bundle_reader *rd, const char *name, const char *want)
{
  char pb[96];

  rd_say (rd, "entry '%s': not a bundle entry here (expected %s)",
          printable (name, pb, sizeof pb), want);
  rd->failed = true;
  return -EBADMSG;
}

static int
too_large (struct vmdr_bundle_reader *rd, const char *name, uint64_t size, uint64_t max)
{
  char pb[96];

  rd_say (rd, "entry '%s': %llu bytes, more than the %llu it may have",
          printable (name, pb, sizeof pb), (unsigned long long) size, (unsigned long long) max);
  rd->failed = true;
  return -EBADMSG;
}

/* Read the current entry's SIZE bytes into BUF. */
static int
read_data (struct vmdr_bundle_reader *rd, const char *name, void *buf, size_t size)
{
  char pb[96], where[128];
  size_t got = 0;

  while (got < size) {
    la_ssize_t n = archive_read_data (rd->a, (char *) buf + got, size - got);
    if (n < 0) {
      snprintf (where, sizeof where, "entry '%s'", printable (name, pb, sizeof pb));
      return stream_fail (rd, where);
    }
    if (n == 0) {
      rd_say (rd, "entry '%s': shorter than its size", printable (name, pb, sizeof pb));
      rd->failed = true;
      return -EBADMSG;
    }
    got += (size_t) n;
  }
  return 0;
}

/* Read a whole small entry (MAX bytes at most) as a NUL-terminated string. */
static int
read_small (struct vmdr_bundle_reader *rd, const char *want, uint64_t max, char **out,
            size_t *len)
{
  const char *name;
  uint64_t size;
  char *buf;
  int r = next_entry (rd, &name, &size);

  if (r == 0) {
    rd_say (rd, "the bundle ends before its %s", want);
    rd->failed = true;
    return -EBADMSG;
  }
  if (r < 0)
    return r;
  if (strcmp (name, want) != 0)
    return unexpected (rd, name, want);
  if (size > max)
    return too_large (rd, name, size, max);
  if ((buf = malloc ((size_t) size + 1)) == NULL)
    return -ENOMEM;
  if ((r = read_data (rd, name, buf, (size_t) size)) < 0) {
    free (buf);
    return r;
  }
  buf[size] = '\0';
  *out = buf;
  *len = (size_t) size;
  return 0;
}

static bool
valid_id (const char *id)
{
  char key[VMDR_KEY_MAX + 1];

  return strlen (id) < VMDR_SNAPSHOT_ID_MAX && vmdr_manifest_key (id, key, sizeof key) == 0;
}

static int
parse_header (struct vmdr_bundle_reader *rd, const char *json, size_t len)
{
  struct vmdr_bundle_info *in = &rd->info;
  json_object *o, *v, *snaps;
  json_tokener *tok;
  size_t n;
  int64_t blobs, bytes;
  int r = -EBADMSG;

  if ((tok = json_tokener_new_ex (8)) == NULL)
    return -ENOMEM;
  o = json_tokener_parse_ex (tok, json, (int) len);
  if (o == NULL || json_tokener_get_error (tok) != json_tokener_success ||
      json_tokener_get_parse_end (tok) + strspn (json + json_tokener_get_parse_end (tok), " \t\r\n") != len ||
      !json_object_is_type (o, json_type_object) ||
      !json_object_object_get_ex (o, "format", &v) || !json_object_is_type (v, json_type_string) ||
      strcmp (json_object_get_string (v), "vmdr-bundle") != 0 ||
      !json_object_object_get_ex (o, "version", &v) || !json_object_is_type (v, json_type_int)) {
    rd_say (rd, "not a vmdr bundle (its header is no bundle header)");
    goto out;
  }
  if (json_object_get_int64 (v) > VMDR_BUNDLE_VERSION || json_object_get_int64 (v) < 1) {
    rd_say (rd, "a bundle of version %lld, which this vmdr (%s) does not read",
            (long long) json_object_get_int64 (v), PACKAGE_VERSION);
    r = json_object_get_int64 (v) > VMDR_BUNDLE_VERSION ? -EPROTONOSUPPORT : -EBADMSG;
    goto out;
  }
  if (!json_object_object_get_ex (o, "blobs", &v) || !json_object_is_type (v, json_type_int) ||
      (blobs = json_object_get_int64 (v)) < 0 ||
      !json_object_object_get_ex (o, "blob_bytes", &v) || !json_object_is_type (v, json_type_int) ||
      (bytes = json_object_get_int64 (v)) < 0 ||
      !json_object_object_get_ex (o, "snapshots", &snaps) ||
      !json_object_is_type (snaps, json_type_array) ||
      !json_object_object_get_ex (o, "base", &v) ||
      !(v == NULL || json_object_is_type (v, json_type_string))) {
    rd_say (rd, "the bundle header lacks a member or has a bad one");
    goto out;
  }
  if (v && !valid_id (json_object_get_string (v))) {
    rd_say (rd, "the bundle header names a malformed base");
    goto out;
  }
  if (v)
    snprintf (in->base, sizeof in->base, "%s", json_object_get_string (v));
  if ((uint64_t) blobs > VMDR_BUNDLE_MAX_BLOBS ||
      (uint64_t) bytes > (uint64_t) blobs * (VMDR_BLOB_HEADER_LEN + VMDR_BLOB_MAX_STORED) ||
      (uint64_t) bytes < (uint64_t) blobs * (VMDR_BLOB_HEADER_LEN + 1)) {
    rd_say (rd, "the bundle declares %lld blobs of %lld bytes: out of bounds (at most %u blobs)",
            (long long) blobs, (long long) bytes, VMDR_BUNDLE_MAX_BLOBS);
    goto out;
  }
  in->blobs = (uint64_t) blobs;
  in->blob_bytes = (uint64_t) bytes;
  n = json_object_array_length (snaps);
  if (n == 0 || n > VMDR_BUNDLE_MAX_SNAPSHOTS) {
    rd_say (rd, "the bundle declares %zu snapshots (1 to %u)", n, VMDR_BUNDLE_MAX_SNAPSHOTS);
    goto out;
  }
  if ((in->snapshots = calloc (n, sizeof *in->snapshots)) == NULL) {
    r = -ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    json_object *s = json_object_array_get_idx (snaps, i);
    const char *id = json_object_is_type (s, json_type_string) ? json_object_get_string (s) : NULL;
    if (id == NULL || !valid_id (id) || strcmp (id, in->base) == 0) {
      rd_say (rd, "the bundle header names a malformed snapshot id");
      goto out;
    }
    for (size_t j = 0; j < i; j++)
      if (strcmp (in->snapshots[j], id) == 0) {
        rd_say (rd, "the bundle header names snapshot %s twice", id);
        goto out;
      }
    if ((in->snapshots[i] = strdup (id)) == NULL) {
      r = -ENOMEM;
      goto out;
    }
    in->nsnapshots = i + 1;
  }
  r = 0;
 out:
  json_object_put (o);
  json_tokener_free (tok);
  return r;
}

int
vmdr_bundle_read_header (struct vmdr_bundle_reader *rd, const struct vmdr_bundle_info **info)
{
  _cleanup_free_ char *header = NULL, *config = NULL;
  size_t len;
  int r;

  if (rd->header_read)
    return -EINVAL;
  rd->header_read = true;
  if ((r = read_small (rd, HEADER_NAME, VMDR_BUNDLE_HEADER_MAX, &header, &len)) < 0)
    return r;
  if ((r = parse_header (rd, header, len)) < 0) {
    rd->failed = true;
    return r;
  }
  if ((r = read_small (rd, CONFIG_NAME, VMDR_CONFIG_MAX, &config, &len)) < 0)
    return r;
  r = vmdr_repo_config_parse (config, len, &rd->info.config);
  if (r < 0) {
    rd_say (rd, r == -EPROTONOSUPPORT ? "the bundle comes from a newer repository format"
                                       : "the bundle's repository config is malformed");
    rd->failed = true;
    return r == -EPROTONOSUPPORT ? r : -EBADMSG;
  }
  *info = &rd->info;
  return 0;
}

int
vmdr_bundle_compatible (struct vmdr_bundle_reader *rd, struct vmdr_repo *repo)
{
  const struct vmdr_repo_config *a = &rd->info.config, *b = vmdr_repo_config (repo);

  if (a->hash != b->hash)
    rd_say (rd, "the bundle's digest is %s, the repository's %s", vmdr_hash_name (a->hash),
            vmdr_hash_name (b->hash));
  else if (a->chunk_size != b->chunk_size)
    rd_say (rd, "the bundle's chunk size is %u, the repository's %u", a->chunk_size, b->chunk_size);
  else if (a->fanout != b->fanout)
    rd_say (rd, "the bundle's index fanout is %u, the repository's %u", a->fanout, b->fanout);
  else if (a->cdc_min != b->cdc_min || a->cdc_avg != b->cdc_avg || a->cdc_max != b->cdc_max)
    rd_say (rd, "the bundle's stream chunking is %u/%u/%u, the repository's %u/%u/%u",
            a->cdc_min, a->cdc_avg, a->cdc_max, b->cdc_min, b->cdc_avg, b->cdc_max);
  else
    return 0;
  return -EXDEV;
}

/* ---- import ------------------------------------------------------------------ */

struct job {
  struct vmdr_digest d;
  uint8_t *blob;                /* the entry, owned by the job */
  size_t len;
  uint64_t seq;                 /* its place in the bundle */
};

#define QUEUE_MAX 16

struct importer {
  struct vmdr_bundle_reader *rd;
  struct vmdr_repo *repo;
  const struct vmdr_repo_config *cfg;
  const struct vmdr_bundle_import_opts *o;
  struct vmdr_bundle_stats *st;
  struct dset set;              /* the blobs of the bundle so far */
  bool incremental;
  size_t rawcap, entry_max;
  struct vmdr_zctx *z;          /* the reading thread's */
  uint8_t *raw;
  struct vmdr_manifest *ms;     /* held until the end */
  size_t nms;
  uint64_t reached;             /* distinct bundle blobs the manifests need */

  /* Workers verify and store data chunks; index nodes wait for them. */
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full, idle;
  struct job q[QUEUE_MAX];
  size_t head, count, busy, qmax;
  bool closed;
  int err;                      /* the worker error of the earliest blob */
  uint64_t err_seq;             /* (the one a single thread would meet first) */
  char why[VMDR_BUNDLE_WHY_MAX];
};

/* Verify blob J (its entry bytes) and store it.  Any thread. */
static int
store_blob (struct importer *im, struct vmdr_zctx *z, uint8_t *raw, const struct job *j,
            char *why, size_t whylen, size_t *stored)
{
  char hex[VMDR_DIGEST_HEX_LEN + 1];
  size_t len;
  int r = vmdr_blob_decode (z, im->cfg->hash, j->blob, j->len, &j->d, raw, im->rawcap, &len);

  if (r < 0) {
    vmdr_digest_to_hex (&j->d, hex);
    say (why, whylen, "blob %s: %s", hex,
         r == -EILSEQ ? "its bytes do not have the digest it is named by"
         : r == -EBADMSG || r == -ENOBUFS ? "damaged (checksum mismatch or malformed)"
         : strerror (-r));
    return r == -ENOBUFS ? -EBADMSG : r;
  }
  r = vmdr_repo_put_chunk (im->repo, z, (enum vmdr_blob_kind) j->blob[4], &j->d, raw, len, stored);
  if (r < 0)
    say (why, whylen, "cannot store a chunk: %s", strerror (-r));
  return r;
}

static void
account (struct importer *im, size_t stored)
{
  if (stored) {
    im->st->blobs_new++;
    im->st->bytes_new += stored;
  }
}

struct worker_state {
  struct importer *im;
  struct vmdr_zctx *z;
  uint8_t *raw;
};

static void *
worker (void *opaque)
{
  struct worker_state *ws = opaque;
  struct importer *im = ws->im;
  char why[VMDR_BUNDLE_WHY_MAX];

  pthread_mutex_lock (&im->lock);
  for (;;) {
    if (im->count == 0) {
      if (im->closed)
        break;
      pthread_cond_wait (&im->not_empty, &im->lock);
      continue;
    }
    struct job j = im->q[im->head];
    size_t stored = 0;
    int e = 0;
    im->head = (im->head + 1) % QUEUE_MAX;
    im->count--;
    im->busy++;
    pthread_cond_signal (&im->not_full);
    bool skip = im->err != 0;
    pthread_mutex_unlock (&im->lock);
    if (!skip)
      e = store_blob (im, ws->z, ws->raw, &j, why, sizeof why, &stored);
    free (j.blob);
    pthread_mutex_lock (&im->lock);
    im->busy--;
    if (e < 0 && (im->err == 0 || j.seq < im->err_seq)) {
      im->err = e;
      im->err_seq = j.seq;
      memcpy (im->why, why, sizeof why);
    }
    else if (e == 0)
      account (im, stored);
    if (im->count == 0 && im->busy == 0)
      pthread_cond_broadcast (&im->idle);
  }
  pthread_cond_broadcast (&im->idle);
  pthread_mutex_unlock (&im->lock);
  return NULL;
}

/* Hand blob J to the workers (or store it here when there are none).
 * Takes J's blob in every case. */
static int
submit (struct importer *im, struct job *j)
{
  size_t stored = 0;
  int e;

  if (im->qmax == 0) {
    e = store_blob (im, im->z, im->raw, j, im->rd->why, sizeof im->rd->why, &stored);
    free (j->blob);
    if (e == 0)
      account (im, stored);
    return e;
  }
  pthread_mutex_lock (&im->lock);
  while (im->count == im->qmax && im->err == 0)
    pthread_cond_wait (&im->not_full, &im->lock);
  if ((e = im->err) == 0) {
    im->q[(im->head + im->count) % QUEUE_MAX] = *j;
    im->count++;
    pthread_cond_signal (&im->not_empty);
  }
  pthread_mutex_unlock (&im->lock);
  if (e)
    free (j->blob);
  return e;
}

/* Wait for the workers to store everything queued: the first error. */
static int
drain (struct importer *im)
{
  int e;

  if (im->qmax == 0)
    return 0;
  pthread_mutex_lock (&im->lock);
  while (im->count > 0 || im->busy > 0)
    pthread_cond_wait (&im->idle, &im->lock);
  e = im->err;
  pthread_mutex_unlock (&im->lock);
  if (e)
    memcpy (im->rd->why, im->why, sizeof im->why);
  return e;
}

/* Is D there for a node or a manifest to name: in the bundle so far, or
 * (for an incremental bundle) in the repository? */
static bool
present (struct importer *im, const struct vmdr_digest *d)
{
  return dset_find (&im->set, d) != NULL ||
         (im->incremental && vmdr_repo_has_chunk (im->repo, d));
}

static const char *
elsewhere (const struct importer *im)
{
  return im->incremental ? "neither in the bundle before it nor in the repository"
                         : "not in the bundle before it";
}

/* An index node, verified: every child it names must have come before it
 * (or be in the repository, for an incremental bundle), so that a node
 * stored always has its whole subtree stored.  Then store it. */
static int
import_node (struct importer *im, struct job *j)
{
  char hex[VMDR_DIGEST_HEX_LEN + 1], chex[VMDR_DIGEST_HEX_LEN + 1];
  uint8_t kind = j->blob[4];
  const char *magic = kind == VMDR_BLOB_DISK_NODE ? "VMX1" : "VMS1";
  size_t width = kind == VMDR_BLOB_DISK_NODE ? VMDR_DIGEST_LEN : VMDR_DIGEST_LEN + 8;
  size_t len, stored = 0, n;
  int r;

  if ((r = drain (im)) < 0) {
    free (j->blob);
    return r;
  }
  vmdr_digest_to_hex (&j->d, hex);
  r = vmdr_blob_decode (im->z, im->cfg->hash, j->blob, j->len, &j->d, im->raw, im->rawcap, &len);
  if (r < 0) {
    free (j->blob);
    rd_say (im->rd, "blob %s: %s", hex,
            r == -EILSEQ ? "its bytes do not have the digest it is named by"
                         : "damaged (checksum mismatch or malformed)");
    return r == -ENOBUFS ? -EBADMSG : r;
  }
  n = len >= NODE_HEADER ? get_le32 (im->raw + 8) : 0;
  if (len < NODE_HEADER || memcmp (im->raw, magic, 4) != 0 || n == 0 || n > im->cfg->fanout ||
      len != NODE_HEADER + n * width) {
    free (j->blob);
    rd_say (im->rd, "blob %s: a malformed index node", hex);
    return -EBADMSG;
  }
  for (size_t i = 0; i < n; i++) {
    struct vmdr_digest c;
    memcpy (c.b, im->raw + NODE_HEADER + i * width, VMDR_DIGEST_LEN);
    if (!vmdr_digest_is_zero (&c) && !present (im, &c)) {
      free (j->blob);
      vmdr_digest_to_hex (&c, chex);
      rd_say (im->rd, "index node %s names %s, which is %s", hex, chex, elsewhere (im));
      return -EBADMSG;
    }
  }
  r = vmdr_repo_put_chunk (im->repo, im->z, kind, &j->d, im->raw, len, &stored);
  free (j->blob);
  if (r < 0) {
    rd_say (im->rd, "cannot store an index node: %s", strerror (-r));
    return r;
  }
  account (im, stored);
  return 0;
}

/* Entry NAME of SIZE bytes should be blob number K: check and read it. */
static int
import_blob (struct importer *im, const char *name, uint64_t size, uint64_t *bytes)
{
  struct vmdr_bundle_reader *rd = im->rd;
  struct job j = { 0 };
  struct vmdr_blob_header h;
  struct dentry *e;
  char pb[96];
  int r;

  if (strlen (name) != BLOB_NAME_LEN || strncmp (name, BLOB_PREFIX, strlen (BLOB_PREFIX)) != 0 ||
      name[strlen (BLOB_PREFIX) + 2] != '/' ||
      strncmp (name + strlen (BLOB_PREFIX), name + strlen (BLOB_PREFIX) + 3, 2) != 0 ||
      strspn (name + strlen (BLOB_PREFIX) + 3, "0123456789abcdef") != VMDR_DIGEST_HEX_LEN ||
      vmdr_digest_from_hex (name + strlen (BLOB_PREFIX) + 3, &j.d) < 0)
    return unexpected (rd, name, "a blob");
  printable (name, pb, sizeof pb);
  if (vmdr_digest_is_zero (&j.d)) {
    rd_say (rd, "entry '%s': the zero digest names no blob", pb);
    return -EBADMSG;
  }
  if (dset_find (&im->set, &j.d)) {
    rd_say (rd, "entry '%s' appears twice", pb);
    return -EBADMSG;
  }
  if (size > im->entry_max)
    return too_large (rd, name, size, im->entry_max);
  if (size <= VMDR_BLOB_HEADER_LEN) {
    rd_say (rd, "entry '%s': %llu bytes, too short for a blob", pb, (unsigned long long) size);
    return -EBADMSG;
  }
  if (*bytes + size > rd->info.blob_bytes) {
    rd_say (rd, "entry '%s': the blobs are larger than the %llu bytes the bundle declares",
            pb, (unsigned long long) rd->info.blob_bytes);
    return -EBADMSG;
  }
  if ((j.blob = malloc ((size_t) size)) == NULL)
    return -ENOMEM;
  j.len = (size_t) size;
  if ((r = read_data (rd, name, j.blob, j.len)) < 0) {
    free (j.blob);
    return r;
  }
  *bytes += size;
  if (vmdr_blob_parse_header (j.blob, j.len, &h) < 0 || h.raw_len > im->rawcap) {
    free (j.blob);
    rd_say (rd, "entry '%s': not a blob, or one with lengths out of bounds", pb);
    return -EBADMSG;
  }
  if (j.len != VMDR_BLOB_HEADER_LEN + (size_t) h.stored_len) {
    free (j.blob);
    rd_say (rd, "entry '%s': %zu bytes, but the blob in it says %zu", pb, j.len,
            VMDR_BLOB_HEADER_LEN + (size_t) h.stored_len);
    return -EBADMSG;
  }
  if ((e = dset_add (&im->set, &j.d)) == NULL) {
    free (j.blob);
    return -ENOMEM;
  }
  e->kind = (uint8_t) h.kind;
  j.seq = im->st->blobs++;
  if (h.kind == VMDR_BLOB_DATA)
    return submit (im, &j);
  return import_node (im, &j);
}

/* ---- manifests: whole trees, or nothing ---------------------------------------- */

struct check {
  struct importer *im;
  const char *id;
};

/* Where a manifest's walk meets D: a blob of the bundle (walk on, once),
 * one the repository holds (its subtree is whole there), or neither. */
static int
check_node (void *opaque, const struct vmdr_digest *d)
{
  struct check *c = opaque;
  struct dentry *e = dset_find (&c->im->set, d);
  char hex[VMDR_DIGEST_HEX_LEN + 1];

  if (e && e->kind == VMDR_BLOB_DATA) {
    vmdr_digest_to_hex (d, hex);
    rd_say (c->im->rd, "snapshot %s names chunk %s as an index node", c->id, hex);
    return -EBADMSG;
  }
  if (e) {
    if (e->flags & F_REACHED)
      return 1;                 /* walked for an earlier snapshot */
    e->flags |= F_REACHED;
    c->im->reached++;
    return 0;
  }
  if (c->im->incremental && vmdr_repo_has_chunk (c->im->repo, d))
    return 1;
  vmdr_digest_to_hex (d, hex);
  rd_say (c->im->rd, "snapshot %s needs %s, which is %s", c->id, hex,
          c->im->incremental ? "neither in the bundle nor in the repository" : "not in the bundle");
  return -ENOENT;
}

static int
check_chunk (struct check *c, const struct vmdr_digest *d)
{
  struct dentry *e;

  if (vmdr_digest_is_zero (d))
    return 0;
  if ((e = dset_find (&c->im->set, d)) != NULL) {
    if (e->kind != VMDR_BLOB_DATA) {
      char hex[VMDR_DIGEST_HEX_LEN + 1];
      vmdr_digest_to_hex (d, hex);
      rd_say (c->im->rd, "snapshot %s names index node %s as a chunk", c->id, hex);
      return -EBADMSG;
    }
    if (!(e->flags & F_REACHED)) {
      e->flags |= F_REACHED;
      c->im->reached++;
    }
    return 0;
  }
  return check_node (c, d) < 0 ? -ENOENT : 0;
}

static int
check_disk_leaf (void *opaque, uint64_t first, uint64_t count, const struct vmdr_digest *d)
{
  int r = 0;

  (void) first;
  for (uint64_t i = 0; d && i < count && r == 0; i++)
    r = check_chunk (opaque, &d[i]);
  return r;
}

static int
check_stream_leaf (void *opaque, uint64_t offset, const struct vmdr_stream_entry *e, size_t n)
{
  int r = 0;

  (void) offset;
  for (size_t i = 0; i < n && r == 0; i++)
    r = check_chunk (opaque, &e[i].d);
  return r;
}

/* Every tree of M whole: walk the nodes the bundle brought (each checked
 * by the walker: digest, magic, level, counts, lengths) down to chunks
 * that arrived or that the repository holds. */
static int
check_manifest (struct importer *im, const struct vmdr_manifest *m)
{
  struct check c = { .im = im, .id = m->id };
  int r = 0;

  for (size_t i = 0; i < m->ndisks; i++)
    if (m->disks[i].chunk_size != im->cfg->chunk_size || m->disks[i].fanout != im->cfg->fanout) {
      rd_say (im->rd, "snapshot %s: disk %s has other chunking than the bundle", m->id,
              m->disks[i].target);
      return -EBADMSG;
    }
  if (m->memory.present && m->memory.fanout != im->cfg->fanout) {
    rd_say (im->rd, "snapshot %s: its memory image has another fanout than the bundle", m->id);
    return -EBADMSG;
  }
  im->rd->why[0] = '\0';
  for (size_t i = 0; i < m->ndisks && r == 0; i++) {
    struct vmdr_disk_tree t;
    vmdr_manifest_disk_tree (&m->disks[i], &t);
    r = vmdr_disk_tree_walk_nodes (im->repo, im->z, &t, check_node, check_disk_leaf, &c);
  }
  if (r == 0 && m->memory.present) {
    struct vmdr_stream_tree t;
    vmdr_manifest_memory_tree (&m->memory, &t);
    r = vmdr_stream_tree_walk_nodes (im->repo, im->z, &t, check_node, check_stream_leaf, &c);
  }
  if (r < 0 && im->rd->why[0] == '\0')
    rd_say (im->rd, "snapshot %s: its index is malformed (%s)", m->id, vmdr_damage_text (r));
  return r < 0 && r != -ENOMEM ? -EBADMSG : r;
}

/* Entry NAME of SIZE bytes should be manifest number K. */
static int
import_manifest (struct importer *im, const char *name, uint64_t size, size_t k,
                 uint64_t *total)
{
  struct vmdr_bundle_reader *rd = im->rd;
  const char *id = rd->info.snapshots[k];
  char key[VMDR_KEY_MAX + 1], want[VMDR_KEY_MAX + 32], pb[96];
  _cleanup_free_ char *json = NULL;
  struct vmdr_manifest m;
  int r;

  if (vmdr_manifest_key (id, key, sizeof key) < 0)
    return -EINVAL;
  if (strcmp (name, key) != 0) {
    snprintf (want, sizeof want, "'%s'", key);
    return unexpected (rd, name, want);
  }
  if (size > VMDR_MANIFEST_MAX || *total + size > VMDR_BUNDLE_MANIFESTS_MAX)
    return too_large (rd, name, size, size > VMDR_MANIFEST_MAX ? VMDR_MANIFEST_MAX
                                                               : VMDR_BUNDLE_MANIFESTS_MAX - *total);
  *total += size;
  if ((json = malloc ((size_t) size + 1)) == NULL)
    return -ENOMEM;
  if ((r = read_data (rd, name, json, (size_t) size)) < 0)
    return r;
  json[size] = '\0';
  if ((r = vmdr_manifest_parse (json, (size_t) size, &m)) < 0) {
    rd_say (rd, "entry '%s': %s", printable (name, pb, sizeof pb),
            r == -EPROTONOSUPPORT ? "a manifest of a newer format" : "a malformed manifest");
    return r == -ENOMEM ? r : -EBADMSG;
  }
  if (strcmp (m.id, id) != 0) {
    rd_say (rd, "entry '%s': the manifest of %s, not of %s", printable (name, pb, sizeof pb),
            m.id, id);
    vmdr_manifest_clear (&m);
    return -EBADMSG;
  }
  if ((r = drain (im)) < 0 || (r = check_manifest (im, &m)) < 0) {
    vmdr_manifest_clear (&m);
    return r;
  }
  im->ms[im->nms++] = m;
  return 0;
}

/* ---- the whole import ----------------------------------------------------------- */

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The writer lock of every domain of the bundle, in name order. */
static int
lock_domains (struct importer *im, struct vmdr_lock **locks, size_t *nlocks)
{
  struct vmdr_bundle_info *in = &im->rd->info;
  _cleanup_free_ char **doms = calloc (in->nsnapshots, sizeof *doms);
  char domain[VMDR_DOMAIN_NAME_MAX + 1];
  struct vmdr_lock_holder holder;
  size_t nd = 0;
  int r = 0;

  if (doms == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < in->nsnapshots; i++)
    doms[nd++] = in->snapshots[i];
  qsort (doms, nd, sizeof *doms, cmp_str);
  for (size_t i = 0; i < nd && r == 0; i++) {
    const char *slash = strrchr (doms[i], '/');
    snprintf (domain, sizeof domain, "%.*s", (int) (slash - doms[i]), doms[i]);
    if (i > 0 && strncmp (doms[i - 1], doms[i], (size_t) (slash - doms[i]) + 1) == 0)
      continue;                 /* that domain is locked already */
    memset (&holder, 0, sizeof holder);
    r = vmdr_writer_lock (im->repo, domain, &locks[*nlocks], &holder, NULL);
    if (r == 0)
      ++*nlocks;
    else if (r == -EBUSY && holder.pid)
      rd_say (im->rd, "a writer holds domain '%s' (%s, pid %d, since %s); try again later",
              domain, holder.host, (int) holder.pid, holder.started);
    else if (r == -EBUSY)
      rd_say (im->rd, "a writer or GC holds domain '%s'; try again later", domain);
    else
      rd_say (im->rd, "cannot lock domain '%s': %s", domain, strerror (-r));
  }
  return r;
}

/* Everything after the header: the blobs, the manifests, the end. */
static int
import_stream (struct importer *im)
{
  struct vmdr_bundle_reader *rd = im->rd;
  struct vmdr_bundle_info *in = &rd->info;
  uint64_t bytes = 0, mbytes = 0;
  const char *name;
  uint64_t size;
  size_t k = 0;
  int r;

  for (uint64_t b = 0; b < in->blobs; b++) {
    if ((r = next_entry (rd, &name, &size)) <= 0)
      goto early;
    if (strncmp (name, "snapshots/", strlen ("snapshots/")) == 0) {
      rd_say (rd, "the bundle holds %llu blobs, fewer than the %llu it declares",
              (unsigned long long) b, (unsigned long long) in->blobs);
      return -EBADMSG;
    }
    if ((r = import_blob (im, name, size, &bytes)) < 0)
      return r;
    if (im->o->progress)
      im->o->progress (im->o->popaque, bytes, in->blob_bytes);
  }
  if (bytes != in->blob_bytes) {
    rd_say (rd, "the blobs are %llu bytes, not the %llu the bundle declares",
            (unsigned long long) bytes, (unsigned long long) in->blob_bytes);
    return -EBADMSG;
  }
  for (; k < in->nsnapshots; k++) {
    if ((r = next_entry (rd, &name, &size)) <= 0)
      goto early;
    if (strncmp (name, BLOB_PREFIX, strlen (BLOB_PREFIX)) == 0) {
      rd_say (rd, "the bundle holds more blobs than the %llu it declares",
              (unsigned long long) in->blobs);
      return -EBADMSG;
    }
    if ((r = import_manifest (im, name, size, k, &mbytes)) < 0)
      return r;
  }
  if ((r = next_entry (rd, &name, &size)) < 0)
    return r;
  if (r > 0)
    return unexpected (rd, name, "the end of the bundle");
  if (im->reached != in->blobs) {
    rd_say (rd, "%llu blobs of the bundle belong to none of its snapshots",
            (unsigned long long) (in->blobs - im->reached));
    return -EBADMSG;
  }
  return 0;
 early:
  if (r == 0)
    rd_say (rd, "the bundle ends early: after %llu of %llu blobs and %zu of %zu manifests",
            (unsigned long long) im->st->blobs, (unsigned long long) in->blobs, k,
            in->nsnapshots);
  return r < 0 ? r : -EBADMSG;
}

/* Snapshots the repository holds already: the same ones (counted, not
 * stored again), or others of the same id (refused). */
static int
check_existing (struct importer *im, bool *have)
{
  for (size_t i = 0; i < im->nms; i++) {
    struct vmdr_manifest old = { 0 };
    _cleanup_free_ char *a = NULL, *b = NULL;
    int r = vmdr_manifest_get (im->repo, im->ms[i].id, &old);

    have[i] = false;
    if (r == -ENOENT)
      continue;
    if (r == 0 && (r = vmdr_manifest_format (&old, &a)) == 0)
      r = vmdr_manifest_format (&im->ms[i], &b);
    vmdr_manifest_clear (&old);
    if (r < 0 && r != -EBADMSG) {
      rd_say (im->rd, "cannot read snapshot %s in the repository: %s", im->ms[i].id,
              strerror (-r));
      return r;
    }
    if (r < 0 || strcmp (a, b) != 0) {
      rd_say (im->rd, "the repository holds another snapshot %s", im->ms[i].id);
      return -EEXIST;
    }
    have[i] = true;
  }
  return 0;
}

static int
finish (struct importer *im)
{
  _cleanup_free_ bool *have = calloc (im->nms, sizeof *have);
  int r;

  if (have == NULL)
    return -ENOMEM;
  if ((r = vmdr_repo_flush (im->repo)) < 0) {
    rd_say (im->rd, "cannot store the chunks: %s", strerror (-r));
    return r;
  }
  if ((r = check_existing (im, have)) < 0)
    return r;
  for (size_t i = 0; i < im->nms; i++) {
    if (have[i]) {
      im->st->snapshots_present++;
      continue;
    }
    if ((r = vmdr_manifest_put (im->repo, &im->ms[i])) < 0) {
      rd_say (im->rd, "cannot store the manifest of %s: %s", im->ms[i].id, strerror (-r));
      return r;
    }
  }
  return 0;
}

static int
start_workers (struct importer *im, unsigned threads, pthread_t *tids,
               struct worker_state *ws, unsigned *started)
{
  int level = im->cfg->zstd_level;

  pthread_mutex_init (&im->lock, NULL);
  pthread_cond_init (&im->not_empty, NULL);
  pthread_cond_init (&im->not_full, NULL);
  pthread_cond_init (&im->idle, NULL);
  for (unsigned k = 0; k < threads; k++) {
    ws[k].im = im;
    if ((ws[k].raw = malloc (im->rawcap)) == NULL || vmdr_zctx_new (level, &ws[k].z) < 0)
      return -ENOMEM;
  }
  for (; *started < threads; ++*started)
    if (pthread_create (&tids[*started], NULL, worker, &ws[*started]) != 0)
      break;
  if (*started == 0)
    return -EAGAIN;
  /* A few entries in flight per worker: enough to keep them busy, and the
   * memory stays a few blobs. */
  im->qmax = 2 * *started + 2 < QUEUE_MAX ? 2 * *started + 2 : QUEUE_MAX;
  return 0;
}

static void
stop_workers (struct importer *im, unsigned threads, pthread_t *tids,
              struct worker_state *ws, unsigned started)
{
  pthread_mutex_lock (&im->lock);
  im->closed = true;
  pthread_cond_broadcast (&im->not_empty);
  pthread_mutex_unlock (&im->lock);
  for (unsigned k = 0; k < started; k++)
    pthread_join (tids[k], NULL);
  for (size_t i = 0; i < im->count; i++)
    free (im->q[(im->head + i) % QUEUE_MAX].blob);
  for (unsigned k = 0; k < threads; k++) {
    vmdr_zctx_free (ws[k].z);
    free (ws[k].raw);
  }
  pthread_cond_destroy (&im->idle);
  pthread_cond_destroy (&im->not_full);
  pthread_cond_destroy (&im->not_empty);
  pthread_mutex_destroy (&im->lock);
}

int
vmdr_bundle_import (struct vmdr_bundle_reader *rd, struct vmdr_repo *repo,
                    const struct vmdr_bundle_import_opts *o, struct vmdr_bundle_stats *st)
{
  struct vmdr_bundle_stats dummy;
  struct importer im = { .rd = rd, .repo = repo, .cfg = vmdr_repo_config (repo), .o = o };
  struct vmdr_lock *locks[VMDR_BUNDLE_MAX_SNAPSHOTS];
  pthread_t tids[VMDR_MAX_THREADS];
  struct worker_state ws[VMDR_MAX_THREADS] = { { 0 } };
  struct vmdr_manifest base = { 0 };
  unsigned started = 0;
  size_t nlocks = 0;
  int r;

  if (!rd->header_read || rd->failed || o->threads > VMDR_MAX_THREADS)
    return rd->failed ? -EBADMSG : -EINVAL;
  im.st = st ? st : &dummy;
  *im.st = (struct vmdr_bundle_stats) { .snapshots = rd->info.nsnapshots };
  if ((r = vmdr_bundle_compatible (rd, repo)) < 0)
    return r;
  rd->why[0] = '\0';
  im.incremental = rd->info.base[0] != '\0';
  im.rawcap = raw_cap (im.cfg);
  im.entry_max = vmdr_blob_bound (im.rawcap);
  if ((im.raw = malloc (im.rawcap)) == NULL ||
      (im.ms = calloc (rd->info.nsnapshots, sizeof *im.ms)) == NULL ||
      vmdr_zctx_new (im.cfg->zstd_level, &im.z) < 0) {
    r = -ENOMEM;
    goto out;
  }
  if ((r = lock_domains (&im, locks, &nlocks)) < 0)
    goto out;
  if (im.incremental && (r = vmdr_manifest_get (repo, rd->info.base, &base)) < 0) {
    if (r == -ENOENT)
      rd_say (rd, "the bundle applies on top of snapshot %s, which the repository does not "
              "hold: import the bundle that has it first", rd->info.base);
    else
      rd_say (rd, "cannot read the base %s: %s", rd->info.base, vmdr_damage_text (r));
    goto out;
  }
  if (o->threads > 0 && (r = start_workers (&im, o->threads, tids, ws, &started)) < 0)
    goto out;
  r = import_stream (&im);
  if (started) {
    /* A worker's error is about an earlier blob than any error here: it
     * is the one a single thread would have met, so it is the one said. */
    int r2 = drain (&im);
    if (r2 < 0)
      r = r2;
  }
  if (r < 0)
    rd->failed = true;
  else
    r = finish (&im);
 out:
  if (o->threads > 0 && im.qmax)
    stop_workers (&im, o->threads, tids, ws, started);
  else
    for (unsigned k = 0; k < o->threads; k++) {
      vmdr_zctx_free (ws[k].z);
      free (ws[k].raw);
    }
  /* What was stored stays (unreferenced, GC's to sweep) but must be
   * written: a repository with chunks pending cannot reload its index. */
  if (r < 0)
    vmdr_repo_flush (repo);
  for (size_t i = nlocks; i-- > 0;)
    vmdr_lock_release (locks[i]);
  for (size_t i = 0; i < im.nms; i++)
    vmdr_manifest_clear (&im.ms[i]);
  free (im.ms);
  vmdr_manifest_clear (&base);
  dset_free (&im.set);
  free (im.raw);
  vmdr_zctx_free (im.z);
  return r;
}
