/* rbd-source-tool: store an RBD image as a snapshot of a domain through
 * replicate/rbd-source.h, the way vmdr-snapshot is to for an RBD-backed
 * disk (an RBD snapshot at the backup point, the diff from the previous
 * one, a sample of the rest checked), for tests/ceph/test-rbd-source.sh.
 *
 *   rbd-source-tool REPO DOMAIN TARGET RBD-ADDRESS IMAGE [SAMPLE [drop-hints]]
 *
 * Prints the snapshot id, then one line of figures:
 *   bytes_read=N extents=N sampled=N full=0|1 fell_back=0|1 kind=full|incremental
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lock.h"
#include "manifest.h"
#include "rbd-source.h"
#include "snapshot.h"

static int
die (const char *what, int r)
{
  fprintf (stderr, "rbd-source-tool: %s: %s\n", what, strerror (-r));
  return 1;
}

/* The newest snapshot of DOMAIN with disk TARGET taken from RBD: its id,
 * tree and RBD snapshot.  0 or -ENOENT. */
static int
find_parent (struct vmdr_repo *repo, const char *domain, const char *target, char *id,
             struct vmdr_disk_tree *t, char *base)
{
  char **ids = NULL;
  size_t n = 0;
  int r = vmdr_snapshot_list (repo, domain, &ids, &n);

  if (r == 0)
    r = -ENOENT;
  for (size_t i = n; r == -ENOENT && i-- > 0;) {
    struct vmdr_manifest m = { 0 };
    if (vmdr_manifest_get (repo, ids[i], &m) < 0)
      continue;
    for (size_t k = 0; k < m.ndisks; k++)
      if (strcmp (m.disks[k].target, target) == 0 && m.disks[k].checkpoint_name &&
          strncmp (m.disks[k].checkpoint_name, VMDR_RBD_SNAP_PREFIX, 5) == 0) {
        vmdr_manifest_disk_tree (&m.disks[k], t);
        snprintf (base, 64, "%s", m.disks[k].checkpoint_name);
        strcpy (id, ids[i]);
        r = 0;
      }
    vmdr_manifest_clear (&m);
  }
  vmdr_strv_free (ids, n);
  return r;
}

int
main (int argc, char **argv)
{
  struct vmdr_repo *repo;
  struct vmdr_rbd *rbd;
  struct vmdr_rbd_source *s;
  struct vmdr_lock *lock;
  struct vmdr_manifest m = { 0 };
  struct vmdr_disk_tree parent, t;
  struct vmdr_rbd_source_stats st;
  struct timespec now;
  char error[768], pid[VMDR_SNAPSHOT_ID_MAX] = "", base[64] = "";
  int r;

  if (argc < 6 || argc > 8) {
    fprintf (stderr, "usage: rbd-source-tool REPO DOMAIN TARGET RBD-ADDRESS IMAGE [SAMPLE [drop-hints]]\n");
    return 2;
  }
  struct vmdr_rbd_source_opts o = {
    .sample = argc > 6 ? (unsigned) atoi (argv[6]) : 16, .threads = 2,
    .test_drop_hints = argc > 7 && strcmp (argv[7], "drop-hints") == 0,
  };
  if ((r = vmdr_repo_open (argv[1], &repo)) < 0)
    return die (argv[1], r);
  if ((r = vmdr_rbd_open (argv[4], &rbd, error, sizeof error)) < 0) {
    fprintf (stderr, "rbd-source-tool: %s\n", error);
    return 1;
  }
  if ((r = vmdr_writer_lock (repo, argv[2], &lock, NULL, NULL)) < 0)
    return die ("lock", r);
  if (find_parent (repo, argv[2], argv[3], pid, &parent, base) == 0) {
    o.base = base;
    o.parent = &parent;
  }
  clock_gettime (CLOCK_REALTIME, &now);
  if ((r = vmdr_manifest_start (&m, argv[2], now.tv_sec, (unsigned) (now.tv_nsec / 1000000))) < 0)
    return die ("manifest", r);
  if ((r = vmdr_rbd_source_open (rbd, argv[5], &s)) < 0)
    return die (argv[5], r);
  if ((r = vmdr_rbd_source_snap (s, strrchr (m.id, '/') + 1)) < 0)
    return die ("rbd snapshot", r);
  r = vmdr_rbd_source_write (s, repo, &o, &t, &st);
  if (r == -ENOENT && o.base) {         /* the base is gone from the image: a full */
    o.base = NULL;
    o.parent = NULL;
    pid[0] = '\0';
    r = vmdr_rbd_source_write (s, repo, &o, &t, &st);
  }
  if (r < 0) {
    vmdr_rbd_source_drop (s);
    return die ("write", r);
  }
  if ((m.disks = calloc (1, sizeof *m.disks)) == NULL)
    return die ("manifest", -ENOMEM);
  m.ndisks = 1;
  snprintf (m.disks[0].target, sizeof m.disks[0].target, "%s", argv[3]);
  snprintf (m.disks[0].format, sizeof m.disks[0].format, "rbd");
  m.disks[0].virtual_size = t.virtual_size;
  m.disks[0].chunk_size = t.chunk_size;
  m.disks[0].fanout = t.fanout;
  m.disks[0].depth = t.depth;
  m.disks[0].root = t.root;
  m.disks[0].bytes_read = st.w.bytes_read;
  m.disks[0].bytes_new = st.w.bytes_new;
  m.disks[0].checkpoint_name = strdup (vmdr_rbd_source_base (s));
  m.kind = pid[0] ? VMDR_KIND_INCREMENTAL : VMDR_KIND_FULL;
  snprintf (m.parent, sizeof m.parent, "%s", pid);
  m.consistency = VMDR_CRASH;
  if ((r = vmdr_repo_flush (repo)) < 0 || (r = vmdr_manifest_put (repo, &m)) < 0) {
    vmdr_rbd_source_drop (s);
    return die ("store", r);
  }
  if ((r = vmdr_rbd_source_prune (s)) < 0)
    return die ("prune", r);
  printf ("%s\nbytes_read=%llu extents=%llu sampled=%llu full=%d fell_back=%d kind=%s\n", m.id,
          (unsigned long long) st.w.bytes_read, (unsigned long long) st.extents,
          (unsigned long long) st.sampled, st.full, st.fell_back, vmdr_kind_name (m.kind));
  vmdr_manifest_clear (&m);
  vmdr_rbd_source_close (s);
  vmdr_lock_release (lock);
  vmdr_rbd_close (rbd);
  vmdr_repo_close (repo);
  return 0;
}
