#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "backup-job.h"
#include "cleanup.h"
#include "live.h"
#include "lock.h"
#include "nbd-source.h"
#include "qemu-nbd.h"
#include "rbd-source.h"
#include "verify.h"

#define MAX_SELECTED VMDR_MAX_DISKS
#define RBD_SAMPLE 16           /* unchanged chunks re-read per RBD disk: the diff check */

struct rbd_disk {               /* a selected disk that is an RBD image */
  struct vmdr_rbd *rbd;
  struct vmdr_rbd_source *src;
};

struct run {
  virDomainPtr dom;
  struct vmdr_repo *repo;
  const struct vmdr_live_opts *o;
  struct vmdr_live_result *res;
  struct vmdr_domain_info info;
  char *domain_xml;
  bool selected[256], incremental[256];
  size_t nselected;
  bool in_job[256];             /* selected, and read through libvirt's job */
  size_t njob, nrbd;
  struct rbd_disk rbd[256];     /* the others: RBD images, read through librbd */
  bool rbd_incremental;         /* some RBD disk was read from a diff */
  struct vmdr_manifest parent;  /* parent.id[0] == 0: none */
  char from[64];                /* checkpoint to increment from; "" = full */
  char checkpoint[64];
  char socket[PATH_MAX];
  char memfile[PATH_MAX];
  bool job, frozen, quiesced, suspended;
  bool offline;                 /* shut off: its images through qemu-nbd */
};

static void __attribute__((format (printf, 2, 3)))
warn (struct vmdr_live_result *res, const char *fmt, ...)
{
  va_list ap;

  if (res->nwarnings == VMDR_MAX_WARNINGS)
    return;
  va_start (ap, fmt);
  vsnprintf (res->warnings[res->nwarnings++], sizeof res->warnings[0], fmt, ap);
  va_end (ap);
}

static int __attribute__((format (printf, 3, 4)))
fail (struct vmdr_live_result *res, int r, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (res->error, sizeof res->error, fmt, ap);
  va_end (ap);
  return r;
}

/* ---- the domain ----------------------------------------------------------- */

static int
select_disks (struct run *run)
{
  const struct vmdr_live_opts *o = run->o;

  for (size_t i = 0; i < o->ndisks; i++) {
    size_t j;
    for (j = 0; j < run->info.ndisks; j++)
      if (strcmp (run->info.disks[j].target, o->disks[i]) == 0)
        break;
    if (j == run->info.ndisks)
      return fail (run->res, -ENOENT, "domain '%s' has no disk '%s'", run->info.name, o->disks[i]);
    run->selected[j] = true;
  }
  for (size_t j = 0; o->disks == NULL && j < run->info.ndisks; j++)
    run->selected[j] = vmdr_disk_backed_up (&run->info.disks[j]);
  for (size_t j = 0; j < run->info.ndisks; j++)
    run->nselected += run->selected[j];
  if (run->nselected == 0)
    return fail (run->res, -ENOENT, "domain '%s' has no disk to back up", run->info.name);
  if (run->nselected > MAX_SELECTED)
    return fail (run->res, -EINVAL, "domain '%s' has more than %d disks", run->info.name, MAX_SELECTED);
  return 0;
}

static int
load_domain (struct run *run, virConnectPtr conn, const char *name)
{
  int r;

  run->dom = virDomainLookupByName (conn, name);
  if (run->dom == NULL)
    return fail (run->res, -ENOENT, "no domain '%s': %s", name, vmdr_virt_error ());
  run->offline = virDomainIsActive (run->dom) != 1;
  run->domain_xml = virDomainGetXMLDesc (run->dom, 0);
  if (run->domain_xml == NULL)
    return fail (run->res, -EIO, "cannot read the XML of '%s': %s", name, vmdr_virt_error ());
  r = vmdr_domain_info_parse (run->domain_xml, strlen (run->domain_xml), &run->info);
  if (r < 0)
    return fail (run->res, r, "cannot parse the XML of '%s'", name);
  return select_disks (run);
}

/* ---- the chain ------------------------------------------------------------ */

static const struct vmdr_manifest_disk *
parent_disk (const struct vmdr_manifest *p, const char *target)
{
  for (size_t i = 0; i < p->ndisks; i++)
    if (strcmp (p->disks[i].target, target) == 0)
      return &p->disks[i];
  return NULL;
}

/* The newest snapshot of the domain, if it can be a base: not damaged. */
static int
find_parent (struct run *run)
{
  char **ids;
  size_t n;
  int r;

  if ((r = vmdr_snapshot_list (run->repo, run->info.name, &ids, &n)) < 0)
    return fail (run->res, r, "cannot list the snapshots of '%s'", run->info.name);
  if (n == 0)
    ;                           /* the first backup of a chain: nothing to say */
  else if (vmdr_damage_is_marked (run->repo, ids[n - 1]) > 0)
    warn (run->res, "the newest snapshot '%s' is damaged: taking a full backup", ids[n - 1]);
  else if ((r = vmdr_manifest_get (run->repo, ids[n - 1], &run->parent)) < 0)
    warn (run->res, "cannot read snapshot '%s' (%s): taking a full backup", ids[n - 1],
          strerror (-r));
  vmdr_strv_free (ids, n);
  return 0;
}

/* Which disks can go incremental from the parent's checkpoint. */
static void
plan_chain (struct run *run)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (run->repo);
  const char *cp = NULL;

  for (size_t i = 0; i < run->info.ndisks; i++) {
    const struct vmdr_manifest_disk *pd;
    if (!run->selected[i] || strcmp (run->info.disks[i].format, "qcow2") != 0)
      continue;
    pd = parent_disk (&run->parent, run->info.disks[i].target);
    if (pd == NULL || pd->checkpoint_name == NULL || pd->chunk_size != cfg->chunk_size ||
        pd->fanout != cfg->fanout || (cp && strcmp (cp, pd->checkpoint_name) != 0))
      continue;
    cp = pd->checkpoint_name;
    run->incremental[i] = true;
  }
  if (cp)
    snprintf (run->from, sizeof run->from, "%s", cp);
}

/* libvirt must know the checkpoint; give it back from the manifest if not. */
static void
ensure_checkpoint (struct run *run)
{
  const struct vmdr_manifest_disk *pd = NULL;
  int r;

  if (run->from[0] == '\0' || vmdr_checkpoint_exists (run->dom, run->from) == 1)
    return;
  for (size_t i = 0; i < run->parent.ndisks && pd == NULL; i++)
    if (run->parent.disks[i].checkpoint_xml)
      pd = &run->parent.disks[i];
  r = pd ? vmdr_checkpoint_redefine (run->dom, pd->checkpoint_xml) : -ENOENT;
  if (r == 0) {
    warn (run->res, "libvirt had lost checkpoint '%s': redefined it from the repository", run->from);
    return;
  }
  warn (run->res, "checkpoint '%s' is gone and cannot be redefined (%s): taking a full backup",
        run->from, r == -ENOENT ? "not recorded" : vmdr_virt_error ());
  run->from[0] = '\0';
  memset (run->incremental, 0, sizeof run->incremental);
}

/* A job left by a killed run of ours is ended; anyone else's is not ours. */
static int
clear_orphan_job (struct run *run)
{
  _cleanup_free_ char *xml = NULL;
  int r = vmdr_backup_running (run->dom);

  if (r <= 0)
    return r < 0 ? fail (run->res, r, "cannot ask libvirt about backup jobs: %s", vmdr_virt_error ()) : 0;
  xml = virDomainBackupGetXMLDesc (run->dom, 0);
  if (xml == NULL || strstr (xml, "vmdr-scratch-") == NULL)
    return fail (run->res, -EBUSY, "another backup job is running on '%s'", run->info.name);
  if ((r = vmdr_backup_end (run->dom)) < 0)
    return fail (run->res, r, "cannot end the job a killed run left: %s", vmdr_virt_error ());
  warn (run->res, "ended a backup job that an interrupted run had left");
  return 0;
}

/* ---- RBD disks -------------------------------------------------------------
 * QEMU keeps no dirty bitmap for an RBD disk, so those are left out of
 * libvirt's job: the point in time is an RBD snapshot and what changed
 * comes from Ceph (replicate/rbd-source.h). */

static int
open_rbd_disk (struct run *run, size_t i)
{
  const struct vmdr_domain_disk *d = &run->info.disks[i];
  const char *id = run->o->ceph_id ? run->o->ceph_id : d->auth_user[0] ? d->auth_user : "admin";
  char pool[128], image[256], err[512];
  int r;

  if (vmdr_disk_rbd_name (d, pool, image) < 0)
    return fail (run->res, -ENOTSUP, "disk '%s' is an RBD image vmdr cannot read: '%s'",
                 d->target, d->name ? d->name : "");
  if ((r = vmdr_rbd_connect (pool, run->o->ceph_conf, id, &run->rbd[i].rbd, err, sizeof err)) < 0)
    return fail (run->res, r, "disk '%s': %s", d->target, err);
  if ((r = vmdr_rbd_source_open (run->rbd[i].rbd, image, &run->rbd[i].src)) < 0)
    return fail (run->res, r, "cannot open the RBD image '%s/%s' of disk '%s': %s", pool, image,
                 d->target, r == -ENOENT ? "no such image" : strerror (-r));
  run->nrbd++;
  return 0;
}

/* Which selected disks libvirt's job reads, and the RBD images of the others. */
static int
open_rbd (struct run *run)
{
  int r;

  for (size_t i = 0; i < run->info.ndisks; i++) {
    if (!run->selected[i])
      continue;
    if (!vmdr_disk_is_rbd (&run->info.disks[i])) {
      run->in_job[i] = true;
      run->njob++;
    } else if ((r = open_rbd_disk (run, i)) < 0)
      return r;
  }
  return 0;
}

/* The RBD snapshots, at the point in time ID (a snapshot id). */
static int
snap_rbd (struct run *run, const char *id)
{
  const char *time = strrchr (id, '/') + 1;
  int r;

  for (size_t i = 0; i < run->info.ndisks; i++)
    if (run->rbd[i].src && (r = vmdr_rbd_source_snap (run->rbd[i].src, time)) < 0)
      return fail (run->res, r, "cannot take an RBD snapshot of disk '%s': %s",
                   run->info.disks[i].target, strerror (-r));
  return 0;
}

/* Once the manifest is written only the newest RBD snapshot stays, as the
 * next diff's base; when the snapshot failed, the one taken goes. */
static void
close_rbd (struct run *run, bool committed)
{
  for (size_t i = 0; i < run->info.ndisks; i++) {
    struct rbd_disk *rd = &run->rbd[i];
    if (rd->src && committed && vmdr_rbd_source_prune (rd->src) < 0)
      warn (run->res, "cannot remove older RBD snapshots of disk '%s'", run->info.disks[i].target);
    if (rd->src && !committed && vmdr_rbd_source_drop (rd->src) < 0)
      warn (run->res, "cannot remove the RBD snapshot of disk '%s'", run->info.disks[i].target);
    vmdr_rbd_source_close (rd->src);
    vmdr_rbd_close (rd->rbd);
    *rd = (struct rbd_disk) { NULL, NULL };
  }
}

/* ---- the point in time ----------------------------------------------------- */

#define AGENT_TIMEOUT_S 10

static double
mono_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Freeze the guest's file systems; without an agent, a warning (or a
 * failure when required).  The agent gets a bounded time to answer. */
static int
freeze (struct run *run)
{
  if (!run->o->quiesce && !run->o->require_quiesce)
    return 0;
  if (run->o->memory) {
    warn (run->res, "--quiesce ignored with --memory: the memory image makes the point consistent");
    return 0;
  }
  virDomainAgentSetResponseTimeout (run->dom, AGENT_TIMEOUT_S, 0);
  if (virDomainFSFreeze (run->dom, NULL, 0, 0) >= 0) {
    run->frozen = run->quiesced = true;
    return 0;
  }
  if (run->o->require_quiesce)
    return fail (run->res, -EIO, "cannot quiesce '%s': %s", run->info.name, vmdr_virt_error ());
  warn (run->res, "cannot quiesce '%s' (%s): the snapshot is crash-consistent",
        run->info.name, vmdr_virt_error ());
  return 0;
}

/* Every path out of the point in time thaws: the guest must not stay frozen. */
static void
thaw (struct run *run)
{
  if (run->frozen && virDomainFSThaw (run->dom, NULL, 0, 0) < 0)
    warn (run->res, "cannot thaw '%s': %s", run->info.name, vmdr_virt_error ());
  run->frozen = false;
  if (run->suspended && virDomainResume (run->dom) < 0)
    warn (run->res, "cannot resume '%s': %s", run->info.name, vmdr_virt_error ());
  run->suspended = false;
}

/* RBD snapshots and libvirt's job are separate acts: one point in time for
 * all of them needs the guest still, unless it is frozen or paused for the
 * memory capture already. */
static int
hold_still (struct run *run)
{
  if (run->nrbd == 0 || run->njob + run->nrbd < 2 || run->frozen || run->o->memory)
    return 0;
  if (virDomainSuspend (run->dom) < 0)
    return fail (run->res, -EIO, "cannot pause '%s' for the backup point: %s", run->info.name,
                 vmdr_virt_error ());
  run->suspended = true;
  return 0;
}

/* A live snapshot with memory and every disk 'manual': QEMU writes RAM
 * while the guest runs and pauses it at the end, the moment the disks'
 * backup job must begin.  No libvirt snapshot metadata is kept. */
static int
save_memory (struct run *run)
{
  struct xbuf_simple { char *p; } x = { NULL };
  size_t len = 0;
  FILE *f;

  snprintf (run->memfile, sizeof run->memfile, "%s/vmdr-mem-%ld.save", run->o->scratch_dir,
            (long) getpid ());
  unlink (run->memfile);
  f = open_memstream (&x.p, &len);
  if (f == NULL)
    return fail (run->res, -ENOMEM, "out of memory");
  fprintf (f, "<domainsnapshot><memory snapshot='external' file='%s'/><disks>", run->memfile);
  for (size_t i = 0; i < run->info.ndisks; i++)
    fprintf (f, "<disk name='%s' snapshot='%s'/>", run->info.disks[i].target,
             run->info.disks[i].is_disk ? "manual" : "no");
  fprintf (f, "</disks></domainsnapshot>");
  fclose (f);
  virDomainSnapshotPtr snap =
    virDomainSnapshotCreateXML (run->dom, x.p, VIR_DOMAIN_SNAPSHOT_CREATE_LIVE |
                                VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA);
  free (x.p);
  if (snap == NULL)
    return fail (run->res, -EIO, "cannot capture the memory of '%s': %s", run->info.name,
                 vmdr_virt_error ());
  virDomainSnapshotFree (snap);
  return 0;
}

/* After a memory capture QEMU leaves the disks inactive: their bitmaps are
 * written out and not loaded again until something activates the disks,
 * so an incremental backup job would find its bitmap missing.  Starting a
 * block job activates them without resuming the guest: a throw-away full
 * job, ended at once, is the supported way to do that through libvirt 9. */
static int
reactivate_disks (struct run *run, const struct vmdr_backup_spec *spec)
{
  struct vmdr_backup_spec wake = *spec;
  char sock[PATH_MAX + 8];
  int r;

  snprintf (sock, sizeof sock, "%s.wake", run->socket);
  wake.socket = sock;
  wake.incremental_from = NULL;
  wake.checkpoint = NULL;
  if ((r = vmdr_backup_begin (run->dom, &wake)) < 0)
    return fail (run->res, r, "cannot reactivate the disks of '%s' after the memory capture: %s",
                 run->info.name, vmdr_virt_error ());
  r = vmdr_backup_end (run->dom);
  unlink (sock);
  return r < 0 ? fail (run->res, r, "cannot end a job: %s", vmdr_virt_error ()) : 0;
}

/* ---- the backup ----------------------------------------------------------- */

/* The job over the disks QEMU keeps bitmaps for. */
static int
begin_job (struct run *run, struct vmdr_backup_spec *spec)
{
  int r = vmdr_backup_begin (run->dom, spec);

  if (r == -ESTALE && spec->incremental_from) {
    /* A bitmap is missing or broken ("in-use" after a host crash, removed
     * by hand): only a full backup can start a sound chain again. */
    warn (run->res, "checkpoint '%s' is inconsistent (%s): taking a full backup", run->from,
          vmdr_virt_error ());
    run->from[0] = '\0';
    memset (run->incremental, 0, sizeof run->incremental);
    spec->incremental_from = NULL;
    r = vmdr_backup_begin (run->dom, spec);
  }
  if (r < 0)
    return fail (run->res, r, "cannot begin the backup of '%s': %s", run->info.name,
                 vmdr_virt_error ());
  run->job = true;
  return 0;
}

static int
begin (struct run *run, struct vmdr_manifest *m)
{
  struct vmdr_backup_spec spec = {
    .socket = run->socket, .scratch_dir = run->o->scratch_dir, .domain = &run->info,
    .selected = run->in_job, .incremental = run->incremental,
    .incremental_from = run->from[0] ? run->from : NULL, .checkpoint = run->checkpoint,
  };
  struct timeval tv;
  int r;

  gettimeofday (&tv, NULL);
  if ((r = vmdr_manifest_start (m, run->info.name, tv.tv_sec, (unsigned) (tv.tv_usec / 1000))) < 0)
    return fail (run->res, r, "invalid domain name '%s'", run->info.name);
  if (run->njob)                /* else no job, no checkpoint */
    snprintf (run->checkpoint, sizeof run->checkpoint, "%s%s", VMDR_CHECKPOINT_PREFIX,
              strrchr (m->id, '/') + 1);
  snprintf (run->socket, sizeof run->socket, "%s/vmdr-%ld.sock", run->o->scratch_dir, (long) getpid ());
  unlink (run->socket);
  if (run->o->memory && (r = save_memory (run)) < 0)
    return r;
  double paused = mono_ms ();
  r = run->o->memory && run->njob ? reactivate_disks (run, &spec) : 0;
  if (r == 0)
    r = freeze (run);
  if (r == 0 && (r = hold_still (run)) == 0 && (r = snap_rbd (run, m->id)) == 0 && run->njob)
    r = begin_job (run, &spec);
  bool held = run->suspended;
  thaw (run);
  if (run->o->memory && virDomainResume (run->dom) < 0 && r == 0)
    r = fail (run->res, -EIO, "cannot resume '%s': %s", run->info.name, vmdr_virt_error ());
  run->res->pause_ms = run->o->memory || held ? mono_ms () - paused : 0;
  return r;
}

/* A disk read: the manifest's entry for it, and the run's totals. */
static void
put_disk (struct run *run, const char *target, const char *format, const struct vmdr_disk_tree *t,
          const struct vmdr_disk_write_stats *st, struct vmdr_manifest_disk *md)
{
  *md = (struct vmdr_manifest_disk) { .virtual_size = t->virtual_size, .chunk_size = t->chunk_size,
                                      .fanout = t->fanout, .depth = t->depth, .root = t->root,
                                      .bytes_read = st->bytes_read, .bytes_new = st->bytes_new };
  snprintf (md->target, sizeof md->target, "%s", target);
  snprintf (md->format, sizeof md->format, "%s", format);
  run->res->bytes_read += st->bytes_read;
  run->res->bytes_new += st->bytes_new;
}

/* Back up disk I from the NBD export named after it on SOCKET: the chunks
 * dirty in BITMAP on top of the parent's tree, or (BITMAP NULL) a full
 * read of its allocated data. */
static int
read_disk_from (struct run *run, size_t i, const char *socket, const char *bitmap,
                struct vmdr_manifest_disk *md)
{
  const struct vmdr_domain_disk *d = &run->info.disks[i];
  const struct vmdr_repo_config *cfg = vmdr_repo_config (run->repo);
  struct vmdr_nbd_source src = { .socket = socket, .export = d->target };
  _cleanup_free_ struct vmdr_chunk_range *ranges = NULL;
  const struct vmdr_manifest_disk *pd = bitmap ? parent_disk (&run->parent, d->target) : NULL;
  struct vmdr_disk_write_stats st;
  struct vmdr_disk_tree parent, t;
  uint64_t size;
  size_t n;
  int r;

  r = vmdr_nbd_chunk_ranges (socket, d->target, pd ? bitmap : NULL, cfg->chunk_size,
                             &size, &ranges, &n);
  if (r < 0)
    return fail (run->res, r, "cannot read the extents of disk '%s': %s", d->target,
                 vmdr_nbd_last_error ());
  if (pd)
    vmdr_manifest_disk_tree (pd, &parent);
  struct vmdr_disk_source s = { .virtual_size = size, .read = vmdr_nbd_source_read,
                                .opaque = &src, .ranges = ranges, .nranges = n };
  r = vmdr_disk_write (run->repo, &s, pd ? &parent : NULL, run->o->threads,
                       run->o->progress, run->o->popaque, &t, &st);
  vmdr_nbd_source_close (&src);
  if (r < 0)
    return fail (run->res, r, "cannot back up disk '%s': %s", d->target, strerror (-r));
  put_disk (run, d->target, d->format[0] ? d->format : "raw", &t, &st, md);
  return 0;
}

/* The base of an RBD disk's diff: the parent's RBD snapshot, when the
 * parent read the disk from RBD with today's geometry. */
static const struct vmdr_manifest_disk *
rbd_parent (struct run *run, const char *target)
{
  const struct vmdr_repo_config *cfg = vmdr_repo_config (run->repo);
  const struct vmdr_manifest_disk *pd = parent_disk (&run->parent, target);

  if (run->o->full || pd == NULL || strcmp (pd->format, "rbd") != 0 || pd->checkpoint_name == NULL ||
      pd->chunk_size != cfg->chunk_size || pd->fanout != cfg->fanout)
    return NULL;
  return pd;
}

/* Disk I, an RBD image, from its snapshot taken at the point: what the
 * diff from the parent's RBD snapshot reports, or all of it.  The
 * snapshot's name goes into the manifest as the next diff's base. */
static int
rbd_disk (struct run *run, size_t i, struct vmdr_manifest_disk *md)
{
  const struct vmdr_domain_disk *d = &run->info.disks[i];
  const struct vmdr_manifest_disk *pd = rbd_parent (run, d->target);
  struct vmdr_rbd_source *src = run->rbd[i].src;
  struct vmdr_rbd_source_opts so = { .sample = RBD_SAMPLE, .threads = run->o->threads,
                                     .progress = run->o->progress, .popaque = run->o->popaque };
  struct vmdr_rbd_source_stats st;
  struct vmdr_disk_tree parent, t;
  int r;

  if (pd) {
    vmdr_manifest_disk_tree (pd, &parent);
    so.base = pd->checkpoint_name;
    so.parent = &parent;
  }
  r = vmdr_rbd_source_write (src, run->repo, &so, &t, &st);
  if (r == -ENOENT && so.base) {
    warn (run->res, "RBD snapshot '%s' of disk '%s' is gone: reading the disk whole", so.base, d->target);
    so.base = NULL;
    so.parent = NULL;
    r = vmdr_rbd_source_write (src, run->repo, &so, &t, &st);
  }
  if (r < 0)
    return fail (run->res, r, "cannot back up RBD disk '%s': %s", d->target, strerror (-r));
  if (st.fell_back)
    warn (run->res, "the RBD diff of disk '%s' missed a change a sampled chunk showed: read it whole",
          d->target);
  put_disk (run, d->target, "rbd", &t, &st.w, md);
  if ((md->checkpoint_name = strdup (vmdr_rbd_source_base (src))) == NULL)
    return fail (run->res, -ENOMEM, "out of memory");
  run->rbd_incremental |= !st.full;
  return 0;
}

/* In a libvirt backup job, the incremental's bitmap is backup-TARGET. */
static int
read_disk (struct run *run, size_t i, struct vmdr_manifest_disk *md)
{
  char bitmap[64];

  if (run->rbd[i].src)
    return rbd_disk (run, i, md);
  snprintf (bitmap, sizeof bitmap, "backup-%s", run->info.disks[i].target);
  return read_disk_from (run, i, run->socket, run->incremental[i] ? bitmap : NULL, md);
}

/* Back up every selected disk with ONE into the manifest's disk entries. */
static int
read_disks (struct run *run, struct vmdr_manifest *m,
            int (*one) (struct run *, size_t, struct vmdr_manifest_disk *))
{
  int r;

  m->disks = calloc (run->nselected, sizeof *m->disks);
  if (m->disks == NULL)
    return fail (run->res, -ENOMEM, "out of memory");
  for (size_t i = 0; i < run->info.ndisks; i++) {
    if (!run->selected[i])
      continue;
    if ((r = one (run, i, &m->disks[m->ndisks])) < 0)
      return r;
    m->ndisks++;
  }
  return 0;
}

/* The checkpoint's XML goes into every disk that has a bitmap in it. */
static int
record_checkpoint (struct run *run, struct vmdr_manifest *m)
{
  _cleanup_free_ char *xml = NULL;
  int r;

  if (run->checkpoint[0] == '\0' || (r = vmdr_checkpoint_exists (run->dom, run->checkpoint)) == 0)
    return 0;                   /* no qcow2 disk, or shut off: no new checkpoint */
  if (r < 0 || (r = vmdr_checkpoint_xml (run->dom, run->checkpoint, &xml)) < 0) {
    /* The data read is sound (e.g. libvirtd restarted mid-run): keep it,
     * without a base for the next run. */
    warn (run->res, "cannot read checkpoint '%s' (%s): the next snapshot will be full",
          run->checkpoint, vmdr_virt_error ());
    return 0;
  }
  for (size_t i = 0, k = 0; i < run->info.ndisks; i++) {
    if (!run->selected[i])
      continue;
    struct vmdr_manifest_disk *md = &m->disks[k++];
    if (strcmp (run->info.disks[i].format, "qcow2") != 0)
      continue;
    md->checkpoint_name = strdup (run->checkpoint);
    md->checkpoint_xml = strdup (xml);
    if (md->checkpoint_name == NULL || md->checkpoint_xml == NULL)
      return fail (run->res, -ENOMEM, "out of memory");
  }
  return 0;
}

static int
store_memory (struct run *run, struct vmdr_manifest *m)
{
  _cleanup_close_ int fd = open (run->memfile, O_RDONLY | O_CLOEXEC);
  int r;

  if (fd < 0)
    return fail (run->res, -errno, "cannot open the memory image '%s': %m", run->memfile);
  if ((r = vmdr_snapshot_write_memory (run->repo, fd, run->o->threads, &m->memory)) < 0)
    return fail (run->res, r, "cannot store the memory image: %s", strerror (-r));
  run->res->memory_bytes = m->memory.size;
  run->res->bytes_new += m->memory.bytes_new;
  return 0;
}

#define RECONNECT_TRIES 120     /* a quarter of a second apart: 30 s */

/* libvirtd restarted under us (an upgrade, a crash): the guest and the
 * backup job live on in QEMU, so reconnect to record the checkpoint and end
 * the job rather than lose the chain.  The caller's connection stays dead;
 * the domain holds a reference to the new one. */
static void
revive (struct run *run)
{
  virConnectPtr old = virDomainGetConnect (run->dom), c = NULL;
  _cleanup_free_ char *uri = NULL;
  virDomainPtr dom;

  /* The client notices a closed socket only when a call fails. */
  if (virDomainIsActive (run->dom) >= 0 || virConnectIsAlive (old) != 0 ||
      (uri = virConnectGetURI (old)) == NULL)
    return;
  for (int i = 0; i < RECONNECT_TRIES && c == NULL; i++)
    if ((c = virConnectOpen (uri)) == NULL)
      usleep (250 * 1000);
  if (c == NULL)
    return;                     /* the callers warn about what fails next */
  dom = virDomainLookupByUUIDString (c, run->info.uuid);
  virConnectClose (c);
  if (dom == NULL)
    return;
  virDomainFree (run->dom);
  run->dom = dom;
}

static int
commit (struct run *run, struct vmdr_manifest *m)
{
  int r;

  if (!run->offline)
    revive (run);
  if (run->o->memory && (r = store_memory (run, m)) < 0)
    return r;
  if ((r = vmdr_repo_flush (run->repo)) < 0)
    return fail (run->res, r, "cannot write to the repository: %s", strerror (-r));
  if ((r = record_checkpoint (run, m)) < 0)
    return r;
  bool incremental = run->from[0] || run->rbd_incremental;
  m->kind = incremental ? VMDR_KIND_INCREMENTAL : VMDR_KIND_FULL;
  m->consistency = run->o->memory ? VMDR_WITH_MEMORY
                 : run->quiesced ? VMDR_QUIESCED : VMDR_CRASH;
  snprintf (m->uuid, sizeof m->uuid, "%s", run->info.uuid);
  if (incremental)
    snprintf (m->parent, sizeof m->parent, "%s", run->parent.id);
  if ((m->domain_xml = strdup (run->domain_xml)) == NULL)
    return fail (run->res, -ENOMEM, "out of memory");
  if ((r = vmdr_manifest_put (run->repo, m)) < 0)
    return fail (run->res, r, "cannot write the manifest: %s", strerror (-r));
  return 0;
}

/* ---- shut-off domains ---------------------------------------------------- */

/* Nothing writes the disks of a shut-off domain, so the checkpoint the
 * parent recorded stays valid: the next snapshot increments from it too. */
static int
copy_checkpoint (const struct vmdr_manifest_disk *pd, struct vmdr_manifest_disk *md)
{
  if (pd == NULL || pd->checkpoint_name == NULL)
    return 0;
  md->checkpoint_name = strdup (pd->checkpoint_name);
  md->checkpoint_xml = pd->checkpoint_xml ? strdup (pd->checkpoint_xml) : NULL;
  return md->checkpoint_name ? 0 : -ENOMEM;
}

/* One disk of a shut-off domain through qemu-nbd: the parent checkpoint's
 * bitmap, kept in the qcow2 image, for an incremental. */
static int
offline_disk (struct run *run, size_t i, struct vmdr_manifest_disk *md)
{
  const struct vmdr_domain_disk *d = &run->info.disks[i];
  const struct vmdr_manifest_disk *pd = run->incremental[i] ? parent_disk (&run->parent, d->target) : NULL;
  struct vmdr_qemu_nbd q = { 0 };
  char sock[PATH_MAX];
  int r;

  if (run->rbd[i].src)
    return rbd_disk (run, i, md);
  if (d->source == NULL || strcmp (d->source_type, "network") == 0)
    return fail (run->res, -ENOTSUP, "disk '%s' of shut-off '%s' has no local image", d->target,
                 run->info.name);
  snprintf (sock, sizeof sock, "%s/vmdr-%ld-%s.sock", run->o->scratch_dir, (long) getpid (), d->target);
  r = vmdr_qemu_nbd_start (d->source, d->format[0] ? d->format : "raw", d->target,
                           pd ? pd->checkpoint_name : NULL, sock, run->o->threads + 1, &q);
  if (r == -ENOENT && pd) {
    warn (run->res, "bitmap '%s' is not in the image of disk '%s': reading it whole",
          pd->checkpoint_name, d->target);
    pd = NULL;
    r = vmdr_qemu_nbd_start (d->source, d->format[0] ? d->format : "raw", d->target, NULL, sock,
                             run->o->threads + 1, &q);
  }
  if (r < 0)
    return fail (run->res, r, "cannot serve disk '%s' (%s) with qemu-nbd: %s", d->target,
                 d->source, strerror (-r));
  r = read_disk_from (run, i, sock, pd ? pd->checkpoint_name : NULL, md);
  vmdr_qemu_nbd_stop (&q);
  unlink (sock);
  if (r == 0 && copy_checkpoint (pd, md) < 0)
    r = fail (run->res, -ENOMEM, "out of memory");
  if (r == 0 && pd == NULL && run->incremental[i])
    run->incremental[i] = false;
  return r;
}

static int
locked_offline (struct run *run)
{
  struct vmdr_manifest *m = &run->res->m;
  struct timeval tv;
  bool any_incremental = false;
  int r;

  if ((r = find_parent (run)) < 0)
    return r;
  if (!run->o->full)
    plan_chain (run);
  gettimeofday (&tv, NULL);
  if ((r = vmdr_manifest_start (m, run->info.name, tv.tv_sec, (unsigned) (tv.tv_usec / 1000))) < 0)
    return fail (run->res, r, "invalid domain name '%s'", run->info.name);
  if ((r = snap_rbd (run, m->id)) < 0 || (r = read_disks (run, m, offline_disk)) < 0)
    return r;
  for (size_t i = 0; i < run->info.ndisks; i++)
    any_incremental |= run->selected[i] && run->incremental[i];
  if (!any_incremental)
    run->from[0] = '\0';
  run->checkpoint[0] = '\0';   /* no new checkpoint: the parent's stays */
  if ((r = commit (run, m)) == 0)
    run->res->incremental = run->from[0] || run->rbd_incremental;
  return r;
}

static int
locked (struct run *run)
{
  struct vmdr_manifest *m = &run->res->m;
  size_t deleted;
  int r;

  if ((r = open_rbd (run)) < 0)
    return r;
  if (run->offline)
    return locked_offline (run);
  if ((r = find_parent (run)) < 0 || (r = clear_orphan_job (run)) < 0)
    return r;
  if (!run->o->full)
    plan_chain (run);
  if (!run->o->full && run->parent.id[0] && run->from[0] == '\0' && run->njob)
    warn (run->res, "no disk of '%s' has a usable checkpoint: taking a full backup", run->info.name);
  ensure_checkpoint (run);
  if ((r = begin (run, m)) < 0)
    return r;
  r = read_disks (run, m, read_disk);
  if (r == 0)
    r = commit (run, m);
  if (run->job && vmdr_backup_end (run->dom) < 0 && r == 0)
    warn (run->res, "cannot end the backup job: %s", vmdr_virt_error ());
  unlink (run->socket);
  if (run->memfile[0])
    unlink (run->memfile);
  if (r == 0 && run->checkpoint[0] &&
      vmdr_checkpoints_prune (run->dom, run->checkpoint, &deleted) < 0)
    warn (run->res, "cannot delete older checkpoints: %s", vmdr_virt_error ());
  run->res->incremental = r == 0 && (run->from[0] || run->rbd_incremental);
  return r;
}

/* Reported, not needed: a chain that cannot be followed is a warning. */
static void
chain_position (struct run *run)
{
  int r = vmdr_manifest_chain (run->repo, &run->res->m, &run->res->chain);

  if (r < 0)
    warn (run->res, "cannot follow the chain of '%s' (%s)", run->res->m.id, strerror (-r));
}

int
vmdr_snapshot_live (virConnectPtr conn, const char *domain, struct vmdr_repo *repo,
                    const struct vmdr_live_opts *o, struct vmdr_live_result *res)
{
  struct run run = { .repo = repo, .o = o, .res = res };
  struct vmdr_lock_holder holder;
  struct vmdr_lock *lock = NULL;
  bool took_over = false;
  int r;

  memset (res, 0, sizeof *res);
  if (o->scratch_dir[0] != '/')
    return fail (res, -EINVAL, "scratch directory '%s' is not an absolute path", o->scratch_dir);
  r = load_domain (&run, conn, domain);
  if (r == 0) {
    r = vmdr_writer_lock (repo, run.info.name, &lock, &holder, &took_over);
    if (r == -EBUSY)
      fail (res, r, "another run holds the lock of '%s' (pid %d on %s since %s)",
            run.info.name, (int) holder.pid, holder.host, holder.started);
    else if (r < 0)
      fail (res, r, "cannot lock '%s' in the repository: %s", run.info.name, strerror (-r));
  }
  if (r == 0) {
    if (took_over)
      warn (res, "took over the lock of a run that died (pid %d)", (int) holder.pid);
    r = locked (&run);
    close_rbd (&run, r == 0);
    if (r == 0)
      chain_position (&run);
    vmdr_lock_release (lock);
  }
  if (r < 0)
    vmdr_manifest_clear (&res->m);
  vmdr_manifest_clear (&run.parent);
  vmdr_domain_info_clear (&run.info);
  free (run.domain_xml);
  if (run.dom)
    virDomainFree (run.dom);
  return r;
}
