#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "clock.h"
#include "cleanup.h"
#include "failover.h"
#include "rbd-replica.h"
#include "verify.h"

struct run {
  virConnectPtr conn;
  struct vmdr_repo *repo;
  const char *domain;
  const struct vmdr_failover_opts *o;
  struct vmdr_failover_report *rep;
  char name[256];               /* the guest's name on the target */
};

static void __attribute__((format (printf, 2, 3)))
step (struct run *run, const char *fmt, ...)
{
  char buf[512];
  va_list ap;

  if (run->o->step == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  run->o->step (run->o->sopaque, buf);
}

static void __attribute__((format (printf, 2, 3)))
warn (struct run *run, const char *fmt, ...)
{
  struct vmdr_failover_report *rep = run->rep;
  va_list ap;

  if (rep->nwarnings == VMDR_FAILOVER_MAX_WARNINGS)
    return;
  va_start (ap, fmt);
  vsnprintf (rep->warnings[rep->nwarnings++], sizeof rep->warnings[0], fmt, ap);
  va_end (ap);
}

static int __attribute__((format (printf, 3, 4)))
fail (struct run *run, int r, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (run->rep->error, sizeof run->rep->error, fmt, ap);
  va_end (ap);
  return r;
}

/* Seconds from the snapshot's point in time ("YYYY-MM-DDTHH:MM:SS.mmmZ")
 * to now. */
static double
age (const char *created)
{
  struct tm tm = { 0 };
  struct timespec now;
  const char *rest = strptime (created, "%Y-%m-%dT%H:%M:%S", &tm);
  double ms = rest && *rest == '.' ? atof (rest) : 0;

  if (rest == NULL)
    return 0;
  clock_gettime (CLOCK_REALTIME, &now);
  return (double) now.tv_sec + now.tv_nsec / 1e9 - ((double) timegm (&tm) + ms);
}

/* One failover of a domain into a storage directory at a time. */
static int
lock_storage (struct run *run, int *fd)
{
  char path[4096];

  snprintf (path, sizeof path, "%s/.%s.vmdr-failover.lock", run->o->storage, run->name);
  *fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (*fd < 0)
    return fail (run, -errno, "cannot open '%s': %s", path, strerror (errno));
  if (flock (*fd, LOCK_EX | LOCK_NB) < 0)
    return fail (run, errno == EWOULDBLOCK ? -EBUSY : -errno,
                 "another failover of '%s' into '%s' is running", run->name, run->o->storage);
  return 0;
}

/* A guest of that name left by an earlier failover that did not finish
 * (defined by vmdr, not running): remove it and its images.  One that runs
 * is a finished failover: refused without force. */
static int
clear_half_guest (struct run *run)
{
  virDomainPtr d = virDomainLookupByName (run->conn, run->name);
  _cleanup_free_ char *xml = NULL;
  char snap[VMDR_SNAPSHOT_ID_MAX] = "", **images = NULL;
  size_t n = 0;
  bool lab = false;
  int r = 0;

  if (d == NULL)
    return 0;
  xml = virDomainGetXMLDesc (d, VIR_DOMAIN_XML_INACTIVE);
  if (xml == NULL || vmdr_domain_xml_restore_info (xml, strlen (xml), &lab, &images, &n,
                                                   snap, sizeof snap) < 0 || snap[0] == '\0')
    goto out;                   /* not vmdr's: bringup_check decides */
  if (virDomainIsActive (d) == 1) {
    if (!run->o->force)
      r = fail (run, -EEXIST, "'%s' already runs on the target, failed over from '%s' (use --force to replace it)",
                run->name, snap);
    goto out;
  }
  step (run, "removing '%s', left half restored by an earlier run", run->name);
  if (virDomainUndefineFlags (d, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_NVRAM) < 0) {
    r = fail (run, -EIO, "cannot remove the half restored '%s': %s", run->name,
              virGetLastErrorMessage ());
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    unlink (images[i]);
  warn (run, "removed the guest '%s' and its images, left by an earlier run from '%s'",
        run->name, snap);
 out:
  for (size_t i = 0; i < n; i++)
    free (images[i]);
  free (images);
  virDomainFree (d);
  return r;
}

/* The snapshots to try, newest first, at or before o->at. */
static int
candidates (struct run *run, char ***ids, size_t *n)
{
  char cut[VMDR_SNAPSHOT_ID_MAX], sel[VMDR_SNAPSHOT_ID_MAX + 64];
  int r;

  if ((r = vmdr_snapshot_list (run->repo, run->domain, ids, n)) < 0)
    return fail (run, r, "cannot list the snapshots of '%s': %s", run->domain, strerror (-r));
  if (run->o->at) {
    snprintf (sel, sizeof sel, "%s@%s", run->domain, run->o->at);
    if ((r = vmdr_snapshot_resolve (run->repo, sel, cut)) < 0)
      return fail (run, r, r == -EINVAL ? "invalid time '%s'" : "no snapshot of '%s' at or before %s",
                   r == -EINVAL ? run->o->at : run->domain, run->o->at);
    while (*n > 0 && strcmp ((*ids)[*n - 1], cut) > 0)
      free ((*ids)[--*n]);
  }
  if (*n == 0)
    return fail (run, -ENOENT, "no snapshot of '%s' in the repository", run->domain);
  return 0;
}

/* Wait until the guest runs (a resume or start can take a moment). */
static int
wait_running (struct run *run)
{
  virDomainPtr d = virDomainLookupByName (run->conn, run->name);
  double end = vmdr_mono_seconds () + run->o->wait_seconds;
  int state = 0, reason;

  while (d && virDomainGetState (d, &state, &reason, 0) == 0 &&
         state != VIR_DOMAIN_RUNNING && vmdr_mono_seconds () < end)
    usleep (100 * 1000);
  if (d)
    virDomainFree (d);
  if (state != VIR_DOMAIN_RUNNING)
    return fail (run, -ETIMEDOUT, "'%s' was started but does not run", run->name);
  return 0;
}

/* Try snapshot ID: 1 when it is damaged (skip it), 0 done, or -errno. */
static int
try_snapshot (struct run *run, const char *id, bool *checked)
{
  struct vmdr_failover_report *rep = run->rep;
  struct vmdr_manifest m = { 0 };
  struct vmdr_bringup_opts g = { .keep_identity = !run->o->test, .start = true,
                                 .test_lab = run->o->test, .force = run->o->force,
                                 .agent_wait = run->o->agent_wait };
  struct vmdr_restore_files_opts f = {
    .dir = run->o->storage, .name = run->name, .format = run->o->format,
    .io = { .threads = run->o->threads, .progress = run->o->progress, .popaque = run->o->popaque },
  };
  int r;

  if (vmdr_damage_is_marked (run->repo, id) > 0) {
    warn (run, "skipped '%s': vmdr-verify found it damaged", id);
    return 1;
  }
  if ((r = vmdr_manifest_get (run->repo, id, &m)) < 0) {
    warn (run, "skipped '%s': its manifest is unreadable: %s", id, vmdr_damage_text (r));
    return 1;
  }
  g.memory = f.memory = m.memory.present;
  if (!*checked && (r = vmdr_bringup_check (run->conn, &m, &g, &rep->guest)) < 0) {
    snprintf (rep->error, sizeof rep->error, "%s", rep->guest.error);
    goto out;
  }
  *checked = true;
  step (run, "restoring '%s'%s into '%s'", id, m.memory.present ? " with its memory" : "",
        run->o->storage);
  vmdr_restore_result_clear (&rep->files);
  r = vmdr_restore_snapshot_files (run->repo, &m, &f, &rep->files);
  if (rep->files.stale_removed)
    warn (run, "removed %zu temporary file%s left by an interrupted run", rep->files.stale_removed,
          rep->files.stale_removed == 1 ? "" : "s");
  if (r < 0) {
    if (r == -EBADMSG || r == -EILSEQ || r == -ENOENT) {
      warn (run, "skipped '%s': %s", id, rep->files.error);
      vmdr_damage_mark (run->repo, id, rep->files.error);   /* best effort */
      r = 1;
    }
    else
      snprintf (rep->error, sizeof rep->error, "%s", rep->files.error);
    goto out;
  }
  step (run, "%s '%s' on the target", m.memory.present ? "resuming" : "starting", run->name);
  if ((r = vmdr_bringup (run->conn, &m, &rep->files, &g, &rep->guest)) < 0) {
    for (size_t i = 0; i < rep->files.ndisks; i++)   /* never half a guest */
      unlink (rep->files.disks[i].path);
    if (rep->files.memory_path)
      unlink (rep->files.memory_path);
    snprintf (rep->error, sizeof rep->error, "%s", rep->guest.error);
    goto out;
  }
  snprintf (rep->snapshot, sizeof rep->snapshot, "%s", id);
  rep->rpo_seconds = age (m.created);
 out:
  vmdr_manifest_clear (&m);
  return r;
}

int
vmdr_failover (virConnectPtr conn, struct vmdr_repo *repo, const char *domain,
               const struct vmdr_failover_opts *o, struct vmdr_failover_report *rep)
{
  struct run run = { conn, repo, domain, o, rep, "" };
  struct vmdr_bringup_opts g = { .test_lab = o->test };
  struct vmdr_manifest probe = { 0 };
  _cleanup_close_ int lock = -1;
  char **ids = NULL;
  size_t n = 0;
  double t0 = vmdr_mono_seconds ();
  bool checked = false;
  int r;

  memset (rep, 0, sizeof *rep);
  snprintf (probe.domain, sizeof probe.domain, "%s", domain);
  if ((r = vmdr_bringup_name (&probe, &g, run.name, rep->error, sizeof rep->error)) < 0)
    return r;
  if ((r = lock_storage (&run, &lock)) < 0 || (r = clear_half_guest (&run)) < 0 ||
      (r = candidates (&run, &ids, &n)) < 0)
    goto out;
  for (size_t i = n; i-- > 0;) {
    if ((r = try_snapshot (&run, ids[i], &checked)) <= 0)
      break;
  }
  if (r > 0)
    r = fail (&run, -ENOENT, "no snapshot of '%s' is whole: every one was skipped", domain);
  if (r == 0) {
    step (&run, "waiting until '%s' runs", run.name);
    r = wait_running (&run);
  }
  rep->rto_seconds = vmdr_mono_seconds () - t0;
 out:
  vmdr_strv_free (ids, n);
  return r;
}

/* ---- from a warm RBD replica -------------------------------------------------- */

#define CLONE_SUFFIX ".failover"

struct rbd_disks {
  struct vmdr_xml_disk_map map[VMDR_MAX_DISKS];
  struct vmdr_xml_rbd_disk src[VMDR_MAX_DISKS];
  char name[VMDR_MAX_DISKS][VMDR_RBD_NAME_MAX + 160];    /* POOL/CLONE */
  char clone[VMDR_MAX_DISKS][VMDR_RBD_NAME_MAX + 16];
  struct vmdr_rbd_mon mons[VMDR_RBD_MAX_MONS];
  struct vmdr_xml_host hosts[VMDR_RBD_MAX_MONS];
  char secret[VIR_UUID_STRING_BUFLEN];
  char conf[4096];
  size_t n, nmons, made;
};

/* The snapshot times of DOMAIN on the replica to try, oldest first, at or
 * before o->at. */
static int
rbd_candidates (struct run *run, struct vmdr_rbd *rbd, char ***times, size_t *n)
{
  char cut[VMDR_TIME_LEN + 1];
  int r;

  if ((r = vmdr_rbd_snapshots (rbd, run->domain, times, n)) < 0)
    return fail (run, r, "cannot list the snapshots of '%s' on the RBD replica: %s", run->domain,
                 strerror (-r));
  if (run->o->at) {
    if (vmdr_time_key (run->o->at, cut) < 0)
      return fail (run, -EINVAL, "invalid time '%s'", run->o->at);
    while (*n > 0 && strcmp ((*times)[*n - 1], cut) > 0)
      free ((*times)[--*n]);
  }
  if (*n == 0)
    return fail (run, -ENOENT, "no snapshot of '%s' on the RBD replica%s%s", run->domain,
                 run->o->at ? " at or before " : "", run->o->at ? run->o->at : "");
  return 0;
}

/* The cephx key in a libvirt secret on the target, and how QEMU finds the
 * monitors: by address when the monmap allows, else through the conf. */
static int
rbd_access (struct run *run, struct vmdr_rbd *rbd, struct rbd_disks *dk)
{
  uint8_t key[VMDR_RBD_KEY_MAX];
  char fsid[37], err[512];
  size_t keylen = 0;
  int r;

  if ((r = vmdr_rbd_key (rbd, key, &keylen)) < 0)
    return fail (run, r, "cannot find the cephx key of client.%s (keyring): %s", vmdr_rbd_user (rbd),
                 r == -ENOENT ? "no key for it" : strerror (-r));
  if ((r = vmdr_rbd_fsid (rbd, fsid)) == 0)
    r = vmdr_bringup_ceph_secret (run->conn, vmdr_rbd_user (rbd), fsid, key, keylen, dk->secret,
                                  err, sizeof err);
  explicit_bzero (key, sizeof key);
  if (r < 0)
    return fail (run, r, "%s", err);
  if ((r = vmdr_rbd_monitors (rbd, dk->mons, VMDR_RBD_MAX_MONS, &dk->nmons)) < 0)
    return fail (run, r, "cannot read the Ceph monitor map: %s", strerror (-r));
  for (size_t i = 0; i < dk->nmons; i++)
    dk->hosts[i] = (struct vmdr_xml_host) { dk->mons[i].host, dk->mons[i].port };
  dk->conf[0] = '\0';
  if (vmdr_rbd_conf (rbd) && realpath (vmdr_rbd_conf (rbd), dk->conf) == NULL)
    return fail (run, -errno, "cannot resolve '%s': %s", vmdr_rbd_conf (rbd), strerror (errno));
  if (dk->nmons == 0 && dk->conf[0] == '\0')
    snprintf (dk->conf, sizeof dk->conf, "/etc/ceph/ceph.conf");
  return 0;
}

static void
rbd_remove_clones (struct vmdr_rbd *rbd, struct rbd_disks *dk)
{
  for (size_t i = 0; i < dk->made; i++)
    vmdr_rbd_remove (rbd, dk->clone[i]);
  dk->made = 0;
}

/* Clone M's disks from snapshot TIME and map them for the domain XML. */
static int
rbd_clone_disks (struct run *run, struct vmdr_rbd *rbd, const struct vmdr_manifest *m,
                 const char *time, struct rbd_disks *dk)
{
  struct vmdr_restore_result *files = &run->rep->files;
  char image[VMDR_RBD_NAME_MAX];
  int r;

  vmdr_restore_result_clear (files);
  if ((files->disks = calloc (m->ndisks, sizeof *files->disks)) == NULL)
    return fail (run, -ENOMEM, "out of memory");
  for (size_t i = 0; i < m->ndisks; i++) {
    const struct vmdr_manifest_disk *d = &m->disks[i];
    if ((r = vmdr_rbd_image_name (rbd, m->domain, d->target, image)) < 0 ||
        (r = vmdr_rbd_image_name (rbd, run->name, d->target, dk->clone[i])) < 0)
      return fail (run, r, "no RBD image name for disk %s", d->target);
    strcat (dk->clone[i], CLONE_SUFFIX);
    step (run, "cloning '%s@" VMDR_RBD_SNAP_PREFIX "%s' as '%s'", image, time, dk->clone[i]);
    if ((r = vmdr_rbd_clone (rbd, image, time, dk->clone[i])) < 0)
      return fail (run, r, r == -EBUSY ? "cannot replace the clone '%s/%s': it is in use"
                                       : "cannot clone '%s/%s': %s",
                   vmdr_rbd_pool (rbd), r == -EBUSY ? dk->clone[i] : image, strerror (-r));
    dk->made = i + 1;
    snprintf (dk->name[i], sizeof dk->name[i], "%s/%s", vmdr_rbd_pool (rbd), dk->clone[i]);
    dk->src[i] = (struct vmdr_xml_rbd_disk) {
      .name = dk->name[i], .hosts = dk->hosts, .nhosts = dk->nmons,
      .config = dk->conf[0] ? dk->conf : NULL, .username = vmdr_rbd_user (rbd),
      .secret_uuid = dk->secret,
    };
    dk->map[i] = (struct vmdr_xml_disk_map) { d->target, NULL, "raw", &dk->src[i] };
    struct vmdr_restored_disk *f = &files->disks[files->ndisks];
    snprintf (f->target, sizeof f->target, "%s", d->target);
    snprintf (f->format, sizeof f->format, "raw");
    f->virtual_size = d->virtual_size;
    if (asprintf (&f->path, "rbd:%s", dk->name[i]) < 0) {
      f->path = NULL;
      return fail (run, -ENOMEM, "out of memory");
    }
    files->ndisks++;
  }
  dk->n = m->ndisks;
  return 0;
}

/* Try replicated snapshot TIME: 1 to skip it (not whole), 0 done, -errno. */
static int
try_rbd_snapshot (struct run *run, struct vmdr_rbd *rbd, const char *time, bool *checked,
                  struct rbd_disks *dk)
{
  struct vmdr_failover_report *rep = run->rep;
  struct vmdr_manifest m = { 0 };
  struct vmdr_bringup_opts g = { .keep_identity = !run->o->test, .start = true,
                                 .test_lab = run->o->test, .force = run->o->force,
                                 .agent_wait = run->o->agent_wait };
  char image[VMDR_RBD_NAME_MAX];
  int r;

  if ((r = vmdr_rbd_manifest (rbd, run->domain, time, &m)) < 0) {
    warn (run, "skipped %s/%s: its manifest on the replica is unreadable: %s", run->domain, time,
          r == -EBADMSG ? "malformed" : strerror (-r));
    return r == -EBADMSG || r == -ENOENT ? 1 : r;
  }
  if (m.ndisks == 0 || m.ndisks > VMDR_MAX_DISKS) {
    warn (run, "skipped '%s': no disks to start from", m.id);
    r = 1;
    goto out;
  }
  for (size_t i = 0; i < m.ndisks; i++) {
    if ((r = vmdr_rbd_image_name (rbd, m.domain, m.disks[i].target, image)) == 0)
      r = vmdr_rbd_has_snapshot (rbd, image, time);
    if (r < 0) {
      fail (run, r, "cannot read the image of disk %s on the replica: %s", m.disks[i].target,
            strerror (-r));
      goto out;
    }
    if (r == 0) {
      warn (run, "skipped '%s': disk %s has no snapshot " VMDR_RBD_SNAP_PREFIX "%s on the replica",
            m.id, m.disks[i].target, time);
      r = 1;
      goto out;
    }
  }
  if (!*checked && (r = vmdr_bringup_check (run->conn, &m, &g, &rep->guest)) < 0) {
    snprintf (rep->error, sizeof rep->error, "%s", rep->guest.error);
    goto out;
  }
  *checked = true;
  if ((r = vmdr_bringup_clear (run->conn, &m, &g, &rep->guest)) < 0) {
    snprintf (rep->error, sizeof rep->error, "%s", rep->guest.error);
    goto out;
  }
  if ((r = rbd_access (run, rbd, dk)) < 0 || (r = rbd_clone_disks (run, rbd, &m, time, dk)) < 0) {
    rbd_remove_clones (rbd, dk);
    goto out;
  }
  step (run, "starting '%s' on the target from the RBD replica", run->name);
  if ((r = vmdr_bringup_disks (run->conn, &m, dk->map, dk->n, &g, &rep->guest)) < 0) {
    rbd_remove_clones (rbd, dk);        /* never half a guest */
    snprintf (rep->error, sizeof rep->error, "%s", rep->guest.error);
    goto out;
  }
  if (m.memory.present)
    warn (run, "'%s' was taken with memory, which the replica does not hold: the guest was booted",
          m.id);
  snprintf (rep->snapshot, sizeof rep->snapshot, "%s", m.id);
  rep->rpo_seconds = age (m.created);
 out:
  vmdr_manifest_clear (&m);
  return r;
}

int
vmdr_failover_rbd (virConnectPtr conn, struct vmdr_rbd *rbd, const char *domain,
                   const struct vmdr_failover_opts *o, struct vmdr_failover_report *rep)
{
  struct run run = { conn, NULL, domain, o, rep, "" };
  struct vmdr_bringup_opts g = { .test_lab = o->test };
  struct vmdr_manifest probe = { 0 };
  _cleanup_free_ struct rbd_disks *dk = calloc (1, sizeof *dk);
  char lock[VMDR_RBD_NAME_MAX + 32], key[VMDR_RBD_NAME_MAX];
  char **times = NULL;
  size_t n = 0;
  double t0 = vmdr_mono_seconds ();
  bool checked = false;
  int r;

  memset (rep, 0, sizeof *rep);
  if (dk == NULL)
    return fail (&run, -ENOMEM, "out of memory");
  snprintf (probe.domain, sizeof probe.domain, "%s", domain);
  if ((r = vmdr_bringup_name (&probe, &g, run.name, rep->error, sizeof rep->error)) < 0)
    return r;
  /* One failover of a guest from a replica at a time. */
  if ((r = vmdr_rbd_image_name (rbd, run.name, "failover", key)) < 0)
    return fail (&run, r, "invalid guest name '%s'", run.name);
  snprintf (lock, sizeof lock, "vmdr_failover.%s", key);
  if ((r = vmdr_rbd_lock (rbd, lock, 600)) < 0)
    return fail (&run, r, r == -EBUSY ? "another failover of '%s' from this replica is running"
                                      : "cannot lock the failover of '%s' on the replica: %s",
                 run.name, strerror (-r));
  if ((r = clear_half_guest (&run)) < 0 || (r = rbd_candidates (&run, rbd, &times, &n)) < 0)
    goto out;
  for (size_t i = n; i-- > 0;) {
    if ((r = try_rbd_snapshot (&run, rbd, times[i], &checked, dk)) <= 0)
      break;
  }
  if (r > 0)
    r = fail (&run, -ENOENT, "no snapshot of '%s' is whole on the RBD replica", domain);
  if (r == 0) {
    step (&run, "waiting until '%s' runs", run.name);
    r = wait_running (&run);
  }
  rep->rto_seconds = vmdr_mono_seconds () - t0;
 out:
  vmdr_strv_free (times, n);
  vmdr_rbd_unlock (rbd, lock);
  return r;
}
