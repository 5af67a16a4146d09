#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "bringup.h"
#include "cleanup.h"
#include "clock.h"
#include "lab.h"

static int __attribute__((format (printf, 4, 5)))
fail (char *error, size_t len, int r, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (error, len, fmt, ap);
  va_end (ap);
  return r;
}

#define FAIL(res, r, ...) fail ((res)->error, sizeof (res)->error, (r), __VA_ARGS__)

static bool
resumes (const struct vmdr_bringup_opts *o)
{
  return o->memory;
}

int
vmdr_bringup_name (const struct vmdr_manifest *m, const struct vmdr_bringup_opts *o,
                   char *name, char *error, size_t errlen)
{
  int n;

  if (resumes (o) && o->name && strcmp (o->name, m->domain) != 0)
    return fail (error, errlen, -EINVAL,
                 "a guest resumed from memory keeps its name '%s' (drop --name)", m->domain);
  if (o->name)
    n = snprintf (name, 256, "%s", o->name);
  else if (o->test_lab && !resumes (o))
    n = snprintf (name, 256, "%s-lab", m->domain);
  else
    n = snprintf (name, 256, "%s", m->domain);
  if (n >= 256 || !vmdr_domain_name_valid (name))
    return fail (error, errlen, -EINVAL, "invalid guest name '%s'", name);
  return 0;
}

static bool
keeps_identity (const struct vmdr_bringup_opts *o)
{
  return o->keep_identity || resumes (o);
}

/* The domains in the way of guest NAME (and of M's UUID when kept). */
static virDomainPtr
in_the_way (virConnectPtr conn, const struct vmdr_manifest *m,
            const struct vmdr_bringup_opts *o, const char *name, bool *by_uuid)
{
  virDomainPtr d = virDomainLookupByName (conn, name);

  *by_uuid = false;
  if (d == NULL && keeps_identity (o) && m->uuid[0]) {
    d = virDomainLookupByUUIDString (conn, m->uuid);
    *by_uuid = d != NULL;
  }
  return d;
}

int
vmdr_bringup_check (virConnectPtr conn, const struct vmdr_manifest *m,
                    const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res)
{
  virDomainPtr d;
  bool by_uuid;
  int r;

  memset (res, 0, sizeof *res);
  if ((r = vmdr_bringup_name (m, o, res->name, res->error, sizeof res->error)) < 0)
    return r;
  if (o->force || (d = in_the_way (conn, m, o, res->name, &by_uuid)) == NULL)
    return 0;
  if (by_uuid)
    FAIL (res, -EEXIST, "domain '%s' on the target has the UUID of '%s' (use --force to replace it)",
          virDomainGetName (d), m->domain);
  else
    FAIL (res, -EEXIST, "a domain named '%s' exists on the target%s (use --force to replace it)",
          res->name, virDomainIsActive (d) == 1 ? " and runs" : "");
  virDomainFree (d);
  return -EEXIST;
}

/* --force: destroy and undefine whatever is in the way, with its metadata. */
static int
remove_in_the_way (virConnectPtr conn, const struct vmdr_manifest *m,
                   const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res)
{
  const unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
    VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM;
  virDomainPtr d;
  bool by_uuid;

  while ((d = in_the_way (conn, m, o, res->name, &by_uuid)) != NULL) {
    int ok = (virDomainIsActive (d) != 1 || virDomainDestroy (d) == 0) &&
      (virDomainIsPersistent (d) != 1 || virDomainUndefineFlags (d, flags) == 0);
    virDomainFree (d);
    if (!ok)
      return FAIL (res, -EIO, "cannot replace the domain '%s' on the target: %s",
                   res->name, virGetLastErrorMessage ());
  }
  return 0;
}

/* The XML to define: the save image's when resuming (libvirt compares the
 * two), else the one stored with the snapshot.  Malloc'd. */
static char *
source_xml (virConnectPtr conn, const struct vmdr_manifest *m,
            const struct vmdr_restore_result *files, const struct vmdr_bringup_opts *o,
            struct vmdr_bringup_result *res)
{
  char *xml;

  if (resumes (o)) {
    if ((xml = virDomainSaveImageGetXMLDesc (conn, files->memory_path, 0)) == NULL)
      FAIL (res, -EIO, "cannot read the saved state '%s': %s", files->memory_path,
            virGetLastErrorMessage ());
    return xml;
  }
  if (m->domain_xml == NULL) {
    FAIL (res, -ENOENT, "snapshot '%s' has no domain XML to define", m->id);
    return NULL;
  }
  if ((xml = strdup (m->domain_xml)) == NULL)
    FAIL (res, -ENOMEM, "out of memory");
  return xml;
}

static int
rewrite (const char *xml, const struct vmdr_manifest *m, const struct vmdr_xml_disk_map *map,
         size_t nmap, const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res,
         char **out)
{
  struct vmdr_xml_rewrite rw = {
    .name = resumes (o) ? NULL : res->name, .new_identity = !keeps_identity (o), .disks = map,
    .ndisks = nmap, .network = o->test_lab ? VMDR_LAB_NETWORK : NULL,
    .strict = resumes (o), .snapshot_id = m->id, .lab = o->test_lab,
  };
  int r;

  r = vmdr_domain_xml_rewrite (xml, strlen (xml), &rw, out, &res->warnings);
  if (r == -ENOTSUP && res->warnings.n > 0)
    return FAIL (res, r, "cannot resume '%s' from memory here: %s", m->domain,
                 res->warnings.w[res->warnings.n - 1]);
  if (r < 0)
    return FAIL (res, r, "cannot rewrite the domain XML of snapshot '%s': %s", m->id,
                 r == -EBADMSG ? "not a domain XML" : strerror (-r));
  return 0;
}

static void __attribute__((format (printf, 2, 3)))
warn (struct vmdr_bringup_result *res, const char *fmt, ...)
{
  struct vmdr_xml_warnings *w = &res->warnings;
  va_list ap;

  if (w->n == VMDR_XML_MAX_WARNINGS) {
    w->more++;
    return;
  }
  va_start (ap, fmt);
  vsnprintf (w->w[w->n++], sizeof w->w[0], fmt, ap);
  va_end (ap);
}

/* How far the guest's clock is behind the host's, in seconds; false when
 * its agent cannot say. */
static bool
clock_lag (virDomainPtr dom, long long *lag)
{
  long long secs;
  unsigned int ns;

  if (virDomainGetTime (dom, &secs, &ns, 0) < 0)
    return false;
  *lag = (long long) time (NULL) - secs;
  return true;
}

/* Ask the agent of the resumed DOM to set the guest's clock: from the
 * RTC, or (a guest that cannot, such as Windows or one without
 * /sbin/hwclock) to the host's time.  1 done, 0 the agent answered with
 * an error (in ERR), -1 the agent is not there (yet), -2 the guest has no
 * agent channel. */
static int
sync_clock (virDomainPtr dom, char *err, size_t errlen)
{
  struct timespec now;
  long long lag;

  if (virDomainSetTime (dom, 0, 0, VIR_DOMAIN_TIME_SYNC) == 0)
    return 1;
  switch (virGetLastErrorCode ()) {
  case VIR_ERR_ARGUMENT_UNSUPPORTED:     /* "guest agent is not configured" */
    return -2;
  case VIR_ERR_AGENT_UNRESPONSIVE:       /* not connected, or no answer */
  case VIR_ERR_AGENT_UNSYNCED:
    return -1;
  default:
    break;
  }
  snprintf (err, errlen, "%s", virGetLastErrorMessage ());
  /* hwclock -w fails after the clock is set: judge by the clock. */
  clock_gettime (CLOCK_REALTIME, &now);
  if (virDomainSetTime (dom, now.tv_sec, (unsigned) now.tv_nsec, 0) == 0)
    return 1;
  return clock_lag (dom, &lag) && llabs (lag) <= VMDR_CLOCK_SKEW_S ? 1 : 0;
}

/* After a resume: see vmdr_bringup in the header. */
static void
settle_resumed (virDomainPtr dom, const struct vmdr_bringup_opts *o,
                struct vmdr_bringup_result *res)
{
  int wait = o->agent_wait ? o->agent_wait : VMDR_AGENT_WAIT_S;
  double end = vmdr_mono_seconds () + wait;
  char err[256] = "";
  long long lag;
  int r;

  if (o->agent_wait < 0)
    return;
  while ((r = sync_clock (dom, err, sizeof err)) == -1 && vmdr_mono_seconds () < end)
    sleep (1);
  if (r == 1)
    res->clock_synced = true;
  else if (r == 0 && clock_lag (dom, &lag))
    warn (res, "'%s' was resumed, but its clock, %lld s behind the host's, could not be set: %s",
          res->name, lag, err);
  else if (r == 0)
    warn (res, "'%s' was resumed, but its clock could not be set: %s", res->name, err);
  else if (r == -1)
    warn (res, "'%s' was resumed, but its guest agent has not answered in %d s: "
          "the guest may be hung (%s)", res->name, wait, virGetLastErrorMessage ());
}

/* Start or resume (from MEMORY_PATH) the defined DOM. */
static int
run (virConnectPtr conn, virDomainPtr dom, const char *xml, const char *memory_path,
     const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res)
{
  if (resumes (o)) {
    if (virDomainRestoreFlags (conn, memory_path, xml, VIR_DOMAIN_SAVE_RUNNING) < 0)
      return FAIL (res, -EIO, "cannot resume '%s' from its memory image: %s", res->name,
                   virGetLastErrorMessage ());
    res->started = res->resumed = true;
    unlink (memory_path);         /* consumed: the guest runs from it now */
    settle_resumed (dom, o, res);
    return 0;
  }
  if (o->start) {
    if (virDomainCreate (dom) < 0)
      return FAIL (res, -EIO, "cannot start '%s': %s", res->name, virGetLastErrorMessage ());
    res->started = true;
  }
  return 0;
}

static int
bring_up (virConnectPtr conn, const struct vmdr_manifest *m, const struct vmdr_xml_disk_map *map,
          size_t nmap, const struct vmdr_restore_result *files,
          const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res)
{
  _cleanup_free_ char *xml = NULL, *defxml = NULL;
  char err[256];
  virDomainPtr dom;
  int r;

  memset (res, 0, sizeof *res);
  if ((r = vmdr_bringup_name (m, o, res->name, res->error, sizeof res->error)) < 0)
    return r;
  if (resumes (o) && files->memory_path == NULL)
    return FAIL (res, -EINVAL, "no memory image was restored");
  if (o->force && (r = remove_in_the_way (conn, m, o, res)) < 0)
    return r;
  if ((xml = source_xml (conn, m, files, o, res)) == NULL)
    return -EIO;
  if ((r = rewrite (xml, m, map, nmap, o, res, &defxml)) < 0)
    return r;
  if (o->test_lab && (r = vmdr_lab_network_ensure (conn, VMDR_LAB_NETWORK, err, sizeof err)) < 0)
    return FAIL (res, r, "cannot set up the test-lab network: %s", err);
  if ((dom = virDomainDefineXML (conn, defxml)) == NULL)
    return FAIL (res, -EIO, "cannot define '%s': %s", res->name, virGetLastErrorMessage ());
  res->defined = true;
  virDomainGetUUIDString (dom, res->uuid);
  if ((r = run (conn, dom, defxml, files->memory_path, o, res)) < 0) {
    virDomainUndefineFlags (dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_NVRAM);
    res->defined = false;
  }
  virDomainFree (dom);
  return r;
}

int
vmdr_bringup (virConnectPtr conn, const struct vmdr_manifest *m,
              const struct vmdr_restore_result *files,
              const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res)
{
  struct vmdr_xml_disk_map map[VMDR_MAX_DISKS];
  size_t n = files->ndisks < VMDR_MAX_DISKS ? files->ndisks : VMDR_MAX_DISKS;

  for (size_t i = 0; i < n; i++)
    map[i] = (struct vmdr_xml_disk_map) { files->disks[i].target, files->disks[i].path,
                                          files->disks[i].format, NULL };
  return bring_up (conn, m, map, n, files, o, res);
}

int
vmdr_bringup_disks (virConnectPtr conn, const struct vmdr_manifest *m,
                    const struct vmdr_xml_disk_map *map, size_t n,
                    const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res)
{
  struct vmdr_restore_result none = { 0 };

  if (o->memory) {
    memset (res, 0, sizeof *res);
    return FAIL (res, -EINVAL, "no memory image to resume from");
  }
  return bring_up (conn, m, map, n, &none, o, res);
}

int
vmdr_bringup_clear (virConnectPtr conn, const struct vmdr_manifest *m,
                    const struct vmdr_bringup_opts *o, struct vmdr_bringup_result *res)
{
  int r;

  memset (res, 0, sizeof *res);
  if (!o->force)
    return 0;
  if ((r = vmdr_bringup_name (m, o, res->name, res->error, sizeof res->error)) < 0)
    return r;
  return remove_in_the_way (conn, m, o, res);
}

int
vmdr_bringup_ceph_secret (virConnectPtr conn, const char *user, const char *fsid,
                          const uint8_t *key, size_t keylen, char *uuid,
                          char *error, size_t errlen)
{
  char usage[256], xml[768];
  virSecretPtr s;
  int r = 0;

  for (const char *p = user; *p; p++)   /* goes into XML unescaped */
    if (strchr ("<>&'\"", *p))
      return fail (error, errlen, -EINVAL, "invalid Ceph user '%s'", user);
  for (const char *p = fsid; *p; p++)
    if (strchr ("<>&'\"", *p))
      return fail (error, errlen, -EINVAL, "invalid Ceph fsid '%s'", fsid);
  snprintf (usage, sizeof usage, "vmdr client.%s@%s", user, fsid);
  if ((s = virSecretLookupByUsage (conn, VIR_SECRET_USAGE_TYPE_CEPH, usage)) == NULL) {
    snprintf (xml, sizeof xml,
              "<secret ephemeral='no' private='yes'>"
              "<description>cephx key of client.%s, for guests started by vmdr</description>"
              "<usage type='ceph'><name>%s</name></usage></secret>", user, usage);
    if ((s = virSecretDefineXML (conn, xml, 0)) == NULL)
      return fail (error, errlen, -EIO, "cannot define the libvirt secret for client.%s: %s",
                   user, virGetLastErrorMessage ());
  }
  if (virSecretSetValue (s, key, keylen, 0) < 0)
    r = fail (error, errlen, -EIO, "cannot set the libvirt secret for client.%s: %s", user,
              virGetLastErrorMessage ());
  else if (virSecretGetUUIDString (s, uuid) < 0)
    r = fail (error, errlen, -EIO, "cannot read the libvirt secret's UUID: %s",
              virGetLastErrorMessage ());
  virSecretFree (s);
  return r;
}
