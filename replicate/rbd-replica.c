#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "clock.h"
#include "cleanup.h"
#include "disk-diff.h"
#include "rbd-internal.h"
#include "snapshot.h"
#include "sync.h"
#include "verify.h"

#define OBJECT_PREFIX "vmdr_replica."
#define META_APPLYING "vmdr.applying"
#define LOCK_NAME "vmdr-replicate"
#define LOCK_SECONDS 120        /* a dead run's lock lasts this long */
#define LOCK_RENEW 20
#define IMAGE_ORDER 22          /* 4 MiB objects, RBD's default */
#define QUEUE_MAX 1024
#define BATCH_BYTES (8u << 20)  /* chunks one worker reads and writes at once */
#define ZERO_STEP (1ull << 30)  /* the most one write_zeroes call is given */
#define KEYFILE_MAX (64u << 10)


/* ---- the address ----------------------------------------------------------- */

bool
vmdr_rbd_address_is (const char *address)
{
  return strncmp (address, "rbd://", 6) == 0;
}

static bool
name_ok (const char *s, bool dash)
{
  size_t n = strlen (s);

  if (n == 0 || n >= 128)
    return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || (*p == '-' && dash)))
      return false;
  return true;
}

static int
hexval (char c)
{
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
    : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* %XX-decode the LEN bytes at S into OUT (SIZE bytes). */
static int
decode (const char *s, size_t len, char *out, size_t size)
{
  size_t o = 0;

  for (size_t i = 0; i < len; i++) {
    int c = (unsigned char) s[i];
    if (c == '%') {
      if (i + 2 >= len)
        return -EINVAL;
      int h = hexval (s[i + 1]), l = hexval (s[i + 2]);
      if (h < 0 || l < 0 || (h == 0 && l == 0))
        return -EINVAL;
      c = h * 16 + l;
      i += 2;
    }
    if (o + 1 >= size)
      return -EINVAL;
    out[o++] = (char) c;
  }
  out[o] = '\0';
  return 0;
}

/* rbd://POOL[/PREFIX][?conf=FILE&id=NAME&keyring=FILE] */
static int
parse_address (const char *address, struct vmdr_rbd *rbd, char *keyring, size_t klen,
               char *error, size_t errlen)
{
  const char *p = address + 6, *q = strchr (p, '?'), *slash;
  size_t plen = q ? (size_t) (q - p) : strlen (p);
  char conf[4096] = "";

  keyring[0] = '\0';
  slash = memchr (p, '/', plen);
  snprintf (rbd->pool, sizeof rbd->pool, "%.*s", (int) (slash ? slash - p : (long) plen), p);
  if (slash)
    snprintf (rbd->prefix, sizeof rbd->prefix, "%.*s", (int) (p + plen - slash - 1), slash + 1);
  if (!name_ok (rbd->pool, true) || (slash && !name_ok (rbd->prefix, true))) {
    snprintf (error, errlen, "invalid RBD address '%s': want rbd://POOL[/PREFIX]?conf=FILE&id=NAME",
              address);
    return -EINVAL;
  }
  strcpy (rbd->id, "admin");
  for (const char *a = q ? q + 1 : NULL; a && *a;) {
    const char *end = strchr (a, '&'), *eq;
    size_t alen = end ? (size_t) (end - a) : strlen (a);
    char *dst = NULL, val[4096];
    size_t dlen = 0;
    eq = memchr (a, '=', alen);
    if (eq && (size_t) (eq - a) == 4 && strncmp (a, "conf", 4) == 0)
      dst = conf, dlen = sizeof conf;
    else if (eq && (size_t) (eq - a) == 2 && strncmp (a, "id", 2) == 0)
      dst = rbd->id, dlen = sizeof rbd->id;
    else if (eq && (size_t) (eq - a) == 7 && strncmp (a, "keyring", 7) == 0)
      dst = keyring, dlen = klen;
    if (dst == NULL || decode (eq + 1, alen - (size_t) (eq + 1 - a), val, sizeof val) < 0 ||
        val[0] == '\0' || strlen (val) >= dlen) {
      snprintf (error, errlen, "invalid RBD address '%s': unknown or bad parameter '%.*s' "
                "(conf=FILE, id=NAME, keyring=FILE)", address, (int) alen, a);
      return -EINVAL;
    }
    strcpy (dst, val);
    a = end ? end + 1 : NULL;
  }
  if (strncmp (rbd->id, "client.", 7) == 0)
    memmove (rbd->id, rbd->id + 7, strlen (rbd->id + 7) + 1);
  if (!name_ok (rbd->id, true)) {
    snprintf (error, errlen, "invalid RBD address '%s': bad user id '%s'", address, rbd->id);
    return -EINVAL;
  }
  if (conf[0] && (rbd->conf = strdup (conf)) == NULL)
    return -ENOMEM;
  return 0;
}

/* ---- connecting ------------------------------------------------------------ */

static void
boot_id (char *out, size_t size)
{
  FILE *f = fopen ("/proc/sys/kernel/random/boot_id", "re");

  out[0] = '\0';
  if (f) {
    if (fgets (out, (int) size, f) == NULL)
      out[0] = '\0';
    out[strcspn (out, "\n")] = '\0';
    fclose (f);
  }
}

/* Who holds a lock, so that a lock left by a dead run on this host can be
 * taken over without waiting for it to expire. */
static void
make_cookie (char *out, size_t size)
{
  char host[65] = "", boot[64];

  gethostname (host, sizeof host - 1);
  host[strcspn (host, ":")] = '\0';
  boot_id (boot, sizeof boot);
  snprintf (out, size, "vmdr:%s:%ld:%s", host, (long) getpid (), boot);
}

/* Is COOKIE a lock holder of this host that is gone? */
static bool
holder_gone (const char *cookie)
{
  char host[65] = "", boot[64], h[65], b[64];
  long pid;

  if (sscanf (cookie, "vmdr:%64[^:]:%ld:%63s", h, &pid, b) != 3 || pid <= 0)
    return false;
  gethostname (host, sizeof host - 1);
  host[strcspn (host, ":")] = '\0';
  boot_id (boot, sizeof boot);
  if (strcmp (h, host) != 0)
    return false;               /* another host: only its expiry tells */
  return strcmp (b, boot) != 0 || (kill ((pid_t) pid, 0) < 0 && errno == ESRCH);
}

static const char *
rados_text (int r)
{
  switch (r) {
  case -ETIMEDOUT: return "no monitor answered in time";
  case -EACCES:
  case -EPERM: return "permission denied (check the user and its key)";
  case -ENOENT: return "not found";
  default: return strerror (-r);
  }
}

/* Connect RBD (pool, id and conf set) with KEYRING ("": the conf's). */
static int
connect_cluster (struct vmdr_rbd *rbd, const char *keyring, char *error, size_t errlen)
{
  static const char *const quiet[][2] = {
    { "log_to_stderr", "false" }, { "err_to_stderr", "false" },
    { "log_to_syslog", "false" }, { "err_to_syslog", "false" },
  };
  char name[160], t[16];
  struct stat sb;
  int r;

  if ((r = vmdr_ceph_load (error, errlen)) < 0)
    return r;
  if (rbd->conf && stat (rbd->conf, &sb) < 0) {
    r = -errno;
    snprintf (error, errlen, "cannot read the Ceph configuration '%s': %s", rbd->conf, strerror (errno));
    goto fail;
  }
  snprintf (name, sizeof name, "client.%s", rbd->id);
  if ((r = rados_create2 (&rbd->cluster, "ceph", name, 0)) < 0) {
    rbd->cluster = NULL;
    snprintf (error, errlen, "cannot set up a Ceph client: %s", strerror (-r));
    goto fail;
  }
  if ((r = rados_conf_read_file (rbd->cluster, rbd->conf)) < 0) {
    snprintf (error, errlen, "cannot read the Ceph configuration '%s': %s",
              rbd->conf ? rbd->conf : "(default)", r == -EINVAL ? "malformed" : strerror (-r));
    goto fail;
  }
  for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++)
    rados_conf_set (rbd->cluster, quiet[i][0], quiet[i][1]);
  snprintf (t, sizeof t, "%d", VMDR_RBD_TIMEOUT);
  if ((keyring[0] && (r = rados_conf_set (rbd->cluster, "keyring", keyring)) < 0) ||
      (r = rados_conf_set (rbd->cluster, "client_mount_timeout", t)) < 0 ||
      (r = rados_conf_set (rbd->cluster, "rados_mon_op_timeout", t)) < 0 ||
      (r = rados_conf_set (rbd->cluster, "rados_osd_op_timeout", t)) < 0) {
    snprintf (error, errlen, "cannot configure the Ceph client: %s", strerror (-r));
    goto fail;
  }
  if ((r = rados_connect (rbd->cluster)) < 0) {
    snprintf (error, errlen, "cannot connect to the Ceph cluster of '%s' as client.%s: %s",
              rbd->conf ? rbd->conf : "the default configuration", rbd->id,
              r == -ENOENT ? "no key found for the user (keyring)" : rados_text (r));
    goto fail;
  }
  if ((r = rados_ioctx_create (rbd->cluster, rbd->pool, &rbd->io)) < 0) {
    rbd->io = NULL;
    snprintf (error, errlen, "cannot open the pool '%s': %s", rbd->pool,
              r == -ENOENT ? "no such pool" : rados_text (r));
    goto fail;
  }
  make_cookie (rbd->cookie, sizeof rbd->cookie);
  return 0;
 fail:
  return r;
}

int
vmdr_rbd_open (const char *address, struct vmdr_rbd **out, char *error, size_t errlen)
{
  char keyring[4096];
  struct vmdr_rbd *rbd = calloc (1, sizeof *rbd);
  int r;

  if (rbd == NULL)
    return -ENOMEM;
  if ((r = parse_address (address, rbd, keyring, sizeof keyring, error, errlen)) < 0 ||
      (r = connect_cluster (rbd, keyring, error, errlen)) < 0) {
    vmdr_rbd_close (rbd);
    return r;
  }
  *out = rbd;
  return 0;
}

int
vmdr_rbd_connect (const char *pool, const char *conf, const char *id, struct vmdr_rbd **out,
                  char *error, size_t errlen)
{
  struct vmdr_rbd *rbd;
  int r;

  if (!name_ok (pool, true) || !name_ok (id, true)) {
    snprintf (error, errlen, "invalid RBD pool '%s' or user '%s'", pool, id);
    return -EINVAL;
  }
  if ((rbd = calloc (1, sizeof *rbd)) == NULL)
    return -ENOMEM;
  snprintf (rbd->pool, sizeof rbd->pool, "%s", pool);
  snprintf (rbd->id, sizeof rbd->id, "%s", id);
  if (conf && (rbd->conf = strdup (conf)) == NULL)
    r = -ENOMEM;
  else
    r = connect_cluster (rbd, "", error, errlen);
  if (r < 0) {
    vmdr_rbd_close (rbd);
    return r;
  }
  *out = rbd;
  return 0;
}

void
vmdr_rbd_close (struct vmdr_rbd *rbd)
{
  if (rbd == NULL)
    return;
  if (rbd->io)
    rados_ioctx_destroy (rbd->io);
  if (rbd->cluster)
    rados_shutdown (rbd->cluster);
  free (rbd->conf);
  free (rbd);
}

const char *vmdr_rbd_pool (const struct vmdr_rbd *rbd) { return rbd->pool; }
const char *vmdr_rbd_user (const struct vmdr_rbd *rbd) { return rbd->id; }
const char *vmdr_rbd_conf (const struct vmdr_rbd *rbd) { return rbd->conf; }

/* ---- names ------------------------------------------------------------------- */

/* [PREFIX-]ESCAPED-DOMAIN into KEY (VMDR_RBD_NAME_MAX bytes). */
static int
domain_key (const struct vmdr_rbd *rbd, const char *domain, char *key)
{
  char esc[3 * VMDR_DOMAIN_NAME_MAX + 1];
  int n;

  if (vmdr_domain_escape (domain, esc, sizeof esc) < 0)
    return -EINVAL;
  n = snprintf (key, VMDR_RBD_NAME_MAX, "%s%s%s", rbd->prefix, rbd->prefix[0] ? "-" : "", esc);
  return n < VMDR_RBD_NAME_MAX ? 0 : -ENAMETOOLONG;
}

int
vmdr_rbd_image_name (const struct vmdr_rbd *rbd, const char *domain, const char *target,
                     char *name)
{
  char key[VMDR_RBD_NAME_MAX];
  int r;

  if (!name_ok (target, false))
    return -EINVAL;
  if ((r = domain_key (rbd, domain, key)) < 0)
    return r;
  return snprintf (name, VMDR_RBD_NAME_MAX, "%s-%s", key, target) < VMDR_RBD_NAME_MAX
    ? 0 : -ENAMETOOLONG;
}

/* The index object of DOMAIN, or with TIME the object of its manifest. */
static int
object_name (const struct vmdr_rbd *rbd, const char *domain, const char *time, char *oid)
{
  char key[VMDR_RBD_NAME_MAX];
  int r;

  if ((r = domain_key (rbd, domain, key)) < 0)
    return r;
  return snprintf (oid, VMDR_RBD_NAME_MAX, OBJECT_PREFIX "%s%s%s", key, time ? "." : "",
                   time ? time : "") < VMDR_RBD_NAME_MAX ? 0 : -ENAMETOOLONG;
}

static void
snap_name (const char *time, char *out, size_t size)
{
  snprintf (out, size, VMDR_RBD_SNAP_PREFIX "%s", time);
}

/* The time part of snapshot id ID. */
static const char *
id_time (const char *id)
{
  return strrchr (id, '/') + 1;
}

/* ---- locks ------------------------------------------------------------------- */

/* Break the lock on NAME if its holder is a dead process of this host:
 * 1 if broken, else 0. */
static int
break_stale (struct vmdr_rbd *rbd, const char *name)
{
  char tag[256], clients[1024], cookies[1024], addrs[1024];
  size_t tl = sizeof tag, cl = sizeof clients, kl = sizeof cookies, al = sizeof addrs;
  int exclusive = 0, broken = 0;
  ssize_t n = rados_list_lockers (rbd->io, name, LOCK_NAME, &exclusive, tag, &tl, clients, &cl,
                                  cookies, &kl, addrs, &al);

  for (ssize_t i = 0, c = 0, k = 0; i < n && (size_t) c < cl && (size_t) k < kl; i++) {
    const char *client = clients + c, *cookie = cookies + k;
    if (holder_gone (cookie) && rados_break_lock (rbd->io, name, LOCK_NAME, client, cookie) == 0)
      broken = 1;
    c += (ssize_t) strlen (client) + 1;
    k += (ssize_t) strlen (cookie) + 1;
  }
  return broken;
}

int
vmdr_rbd_lock (struct vmdr_rbd *rbd, const char *name, unsigned seconds)
{
  struct timeval tv = { .tv_sec = seconds };
  int r = rados_lock_exclusive (rbd->io, name, LOCK_NAME, rbd->cookie, "vmdr", &tv,
                                LIBRADOS_LOCK_FLAG_MAY_RENEW);

  if (r == -EBUSY && break_stale (rbd, name)) {
    r = rados_lock_exclusive (rbd->io, name, LOCK_NAME, rbd->cookie, "vmdr", &tv,
                              LIBRADOS_LOCK_FLAG_MAY_RENEW);
    return r == 0 || r == -EEXIST ? 1 : r;
  }
  return r == -EEXIST ? 0 : r;
}

void
vmdr_rbd_unlock (struct vmdr_rbd *rbd, const char *name)
{
  rados_unlock (rbd->io, name, LOCK_NAME, rbd->cookie);
}

/* A domain's lock, renewed by a thread of its own while the run works. */
struct held_lock {
  struct vmdr_rbd *rbd;
  char oid[VMDR_RBD_NAME_MAX];
  pthread_t tid;
  pthread_mutex_t m;
  pthread_cond_t c;
  bool stop, lost, took_over;
};

static void *
renewer (void *opaque)
{
  struct held_lock *l = opaque;
  struct timespec at;

  pthread_mutex_lock (&l->m);
  while (!l->stop) {
    clock_gettime (CLOCK_REALTIME, &at);
    at.tv_sec += LOCK_RENEW;
    if (pthread_cond_timedwait (&l->c, &l->m, &at) == 0 || l->stop)
      continue;
    pthread_mutex_unlock (&l->m);
    int r = vmdr_rbd_lock (l->rbd, l->oid, LOCK_SECONDS);
    pthread_mutex_lock (&l->m);
    if (r < 0)
      l->lost = true;
  }
  pthread_mutex_unlock (&l->m);
  return NULL;
}

static int
hold_lock (struct vmdr_rbd *rbd, const char *oid, struct held_lock *l)
{
  int r;

  memset (l, 0, sizeof *l);
  l->rbd = rbd;
  snprintf (l->oid, sizeof l->oid, "%s", oid);
  if ((r = vmdr_rbd_lock (rbd, oid, LOCK_SECONDS)) < 0)
    return r;
  l->took_over = r > 0;
  pthread_mutex_init (&l->m, NULL);
  pthread_cond_init (&l->c, NULL);
  if (pthread_create (&l->tid, NULL, renewer, l) != 0) {
    pthread_cond_destroy (&l->c);
    pthread_mutex_destroy (&l->m);
    vmdr_rbd_unlock (rbd, oid);
    return -EAGAIN;
  }
  return 0;
}

/* Stop renewing and release; -ENOLCK if a renewal failed meanwhile. */
static int
drop_lock (struct held_lock *l)
{
  bool lost;

  pthread_mutex_lock (&l->m);
  l->stop = true;
  pthread_cond_signal (&l->c);
  pthread_mutex_unlock (&l->m);
  pthread_join (l->tid, NULL);
  lost = l->lost;
  pthread_cond_destroy (&l->c);
  pthread_mutex_destroy (&l->m);
  vmdr_rbd_unlock (l->rbd, l->oid);
  return lost ? -ENOLCK : 0;
}

/* ---- the index object ---------------------------------------------------------- */

/* The omap keys of OID (times), sorted; a missing object has none. */
static int
list_keys (struct vmdr_rbd *rbd, const char *oid, char ***out, size_t *nout)
{
  char **v = NULL, last[64] = "";
  size_t n = 0, cap = 0;
  unsigned char more = 1;
  int r = 0;

  while (more && r == 0) {
    rados_read_op_t op = rados_create_read_op ();
    rados_omap_iter_t it = NULL;
    int rval = 0;
    if (op == NULL) {
      r = -ENOMEM;
      break;
    }
    rados_read_op_omap_get_keys2 (op, last, 1000, &it, &more, &rval);
    r = rados_read_op_operate (op, rbd->io, oid, 0);
    if (r == 0)
      r = rval;
    for (char *k; r == 0 && it; ) {
      size_t klen;
      if ((r = rados_omap_get_next2 (it, &k, NULL, &klen, NULL)) < 0 || k == NULL)
        break;
      if (klen != VMDR_TIME_LEN)
        continue;               /* not ours */
      if (n == cap) {
        char **nv = realloc (v, (cap = cap ? 2 * cap : 64) * sizeof *v);
        if (nv == NULL) {
          r = -ENOMEM;
          break;
        }
        v = nv;
      }
      if ((v[n] = strndup (k, klen)) == NULL) {
        r = -ENOMEM;
        break;
      }
      snprintf (last, sizeof last, "%s", v[n++]);
    }
    if (it)
      rados_omap_get_end (it);
    rados_release_read_op (op);
  }
  if (r == -ENOENT)
    r = 0, more = 0;
  if (r < 0) {
    vmdr_strv_free (v, n);
    return r;
  }
  *out = v;
  *nout = n;
  return 0;
}

int
vmdr_rbd_snapshots (struct vmdr_rbd *rbd, const char *domain, char ***times, size_t *n)
{
  char oid[VMDR_RBD_NAME_MAX];
  int r;

  if ((r = object_name (rbd, domain, NULL, oid)) < 0)
    return r;
  return list_keys (rbd, oid, times, n);
}

int
vmdr_rbd_manifest (struct vmdr_rbd *rbd, const char *domain, const char *time,
                   struct vmdr_manifest *m)
{
  char oid[VMDR_RBD_NAME_MAX];
  _cleanup_free_ char *buf = NULL;
  uint64_t size;
  time_t mtime;
  int r;

  if ((r = object_name (rbd, domain, time, oid)) < 0)
    return r;
  if ((r = rados_stat (rbd->io, oid, &size, &mtime)) < 0)
    return r;
  if (size == 0 || size > VMDR_MANIFEST_MAX)
    return -EBADMSG;
  if ((buf = malloc (size + 1)) == NULL)
    return -ENOMEM;
  if ((r = rados_read (rbd->io, oid, buf, size, 0)) < 0)
    return r;
  if ((uint64_t) r != size)
    return -EBADMSG;
  buf[size] = '\0';
  return vmdr_manifest_parse (buf, size, m);
}

/* Record M as replicated whole: its manifest, then its key in the index. */
static int
put_manifest (struct vmdr_rbd *rbd, const char *index, const struct vmdr_manifest *m)
{
  char oid[VMDR_RBD_NAME_MAX];
  const char *key = id_time (m->id), *val = "";
  size_t vlen = 0;
  _cleanup_free_ char *json = NULL;
  rados_write_op_t op;
  int r;

  if ((r = object_name (rbd, m->domain, key, oid)) < 0 ||
      (r = vmdr_manifest_format (m, &json)) < 0 ||
      (r = rados_write_full (rbd->io, oid, json, strlen (json))) < 0)
    return r;
  if ((op = rados_create_write_op ()) == NULL)
    return -ENOMEM;
  rados_write_op_omap_set (op, &key, &val, &vlen, 1);
  r = rados_write_op_operate (op, rbd->io, index, NULL, 0);
  rados_release_write_op (op);
  return r;
}

/* ---- images ------------------------------------------------------------------ */

/* The newest vmdr-TIME snapshot of IMAGE into TIME ("" for none), and
 * whether WANT exists. */
static int
newest_snapshot (rbd_image_t image, const char *want, char *time, bool *has_want)
{
  int max = 64, r;
  rbd_snap_info_t *s = NULL;
  size_t plen = strlen (VMDR_RBD_SNAP_PREFIX);

  for (;;) {
    free (s);
    if ((s = calloc ((size_t) max, sizeof *s)) == NULL)
      return -ENOMEM;
    r = rbd_snap_list (image, s, &max);
    if (r != -ERANGE)
      break;
  }
  time[0] = '\0';
  if (has_want)
    *has_want = false;
  for (int i = 0; r >= 0 && i < r; i++) {
    const char *n = s[i].name;
    if (strncmp (n, VMDR_RBD_SNAP_PREFIX, plen) != 0 || strlen (n + plen) != VMDR_TIME_LEN)
      continue;
    if (strcmp (n + plen, time) > 0)
      strcpy (time, n + plen);
    if (has_want && want && strcmp (n + plen, want) == 0)
      *has_want = true;
  }
  if (r >= 0)
    rbd_snap_list_end (s);
  free (s);
  return r < 0 ? r : 0;
}

int
vmdr_rbd_has_snapshot (struct vmdr_rbd *rbd, const char *name, const char *time)
{
  char snap[64];
  rbd_image_t image;
  bool exists = false;
  int r;

  snap_name (time, snap, sizeof snap);
  if ((r = rbd_open_read_only (rbd->io, name, &image, NULL)) < 0)
    return r == -ENOENT ? 0 : r;
  r = rbd_snap_exists (image, snap, &exists);
  rbd_close (image);
  return r < 0 ? r : exists;
}

int
vmdr_rbd_remove (struct vmdr_rbd *rbd, const char *name)
{
  return rbd_remove (rbd->io, name);
}

int
vmdr_rbd_clone (struct vmdr_rbd *rbd, const char *parent, const char *time, const char *clone)
{
  char snap[64];
  rbd_image_t image;
  rbd_image_options_t opts;
  int prot = 0, r;

  snap_name (time, snap, sizeof snap);
  r = rbd_remove (rbd->io, clone);
  if (r < 0 && r != -ENOENT)
    return r;
  if ((r = rbd_open (rbd->io, parent, &image, NULL)) < 0)
    return r;
  if ((r = rbd_snap_is_protected (image, snap, &prot)) == 0 && !prot)
    r = rbd_snap_protect (image, snap);
  rbd_close (image);
  if (r < 0 && r != -EBUSY)     /* EBUSY: protected meanwhile */
    return r;
  rbd_image_options_create (&opts);
  r = rbd_clone3 (rbd->io, parent, snap, rbd->io, clone, opts);
  rbd_image_options_destroy (opts);
  return r;
}

/* ---- credentials and monitors, for a DR host ------------------------------- */

int
vmdr_rbd_fsid (struct vmdr_rbd *rbd, char *fsid)
{
  int r = rados_cluster_fsid (rbd->cluster, fsid, 37);
  return r < 0 ? r : 0;
}

/* The first line of FILE (at most KEYFILE_MAX bytes) into a malloc'd string. */
static int
read_small (const char *path, char **out)
{
  _cleanup_close_ int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  char *buf;
  ssize_t n;

  if (fd < 0)
    return -errno;
  if ((buf = malloc (KEYFILE_MAX + 1)) == NULL)
    return -ENOMEM;
  n = read (fd, buf, KEYFILE_MAX + 1);
  if (n < 0 || n > KEYFILE_MAX) {
    int e = n < 0 ? -errno : -EFBIG;
    explicit_bzero (buf, KEYFILE_MAX + 1);
    free (buf);
    return e;
  }
  buf[n] = '\0';
  *out = buf;
  return 0;
}

static void
free_secret (char *s)
{
  if (s) {
    explicit_bzero (s, strlen (s));
    free (s);
  }
}

static char *
trim (char *s)
{
  char *e;

  while (*s == ' ' || *s == '\t')
    s++;
  e = s + strcspn (s, "\r\n");
  while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
    e--;
  *e = '\0';
  return s;
}

/* Base64 K (as in a keyring) into KEY. */
static int
copy_key (const char *k, uint8_t *key, size_t *len)
{
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint32_t acc = 0;
  size_t n = 0, bits = 0, i = 0;

  for (; k[i] && k[i] != '='; i++) {
    const char *p = strchr (b64, k[i]);
    if (p == NULL)
      return -EBADMSG;
    acc = acc << 6 | (uint32_t) (p - b64);
    bits += 6;
    if (bits >= 8) {
      if (n == VMDR_RBD_KEY_MAX)
        return -EBADMSG;
      bits -= 8;
      key[n++] = (uint8_t) (acc >> bits);
    }
  }
  while (k[i] == '=')
    i++;
  if (k[i] != '\0' || n == 0)
    return -EBADMSG;
  *len = n;
  return 0;
}

/* The key of client.ID in keyring text BUF. */
static int
keyring_key (char *buf, const char *id, uint8_t *key, size_t *len)
{
  char section[160];
  bool in = false;

  snprintf (section, sizeof section, "[client.%s]", id);
  for (char *line = buf, *next; line && *line; line = next) {
    next = strchr (line, '\n');
    if (next)
      *next++ = '\0';
    char *l = trim (line);
    if (l[0] == '[') {
      in = strcmp (l, section) == 0;
      continue;
    }
    if (in && strncmp (l, "key", 3) == 0) {
      char *v = trim (l + 3);
      if (*v == '=')
        return copy_key (trim (v + 1), key, len);
    }
  }
  return -ENOENT;
}

int
vmdr_rbd_key (struct vmdr_rbd *rbd, uint8_t *key, size_t *len)
{
  char val[4096];
  char *buf;
  int r;

  if (rados_conf_get (rbd->cluster, "key", val, sizeof val) == 0 && val[0]) {
    r = copy_key (trim (val), key, len);
    explicit_bzero (val, sizeof val);
    return r;
  }
  if (rados_conf_get (rbd->cluster, "keyfile", val, sizeof val) == 0 && val[0]) {
    if ((r = read_small (trim (val), &buf)) < 0)
      return r;
    r = copy_key (trim (buf), key, len);
    free_secret (buf);
    return r;
  }
  if ((r = rados_conf_get (rbd->cluster, "keyring", val, sizeof val)) < 0)
    return r;
  /* A list: the first file that exists, as librados reads it. */
  for (char *save = NULL, *p = strtok_r (val, ",; \t", &save); p; p = strtok_r (NULL, ",; \t", &save)) {
    if ((r = read_small (p, &buf)) == -ENOENT)
      continue;
    if (r < 0)
      return r;
    r = keyring_key (buf, rbd->id, key, len);
    free_secret (buf);
    return r;
  }
  return -ENOENT;
}

/* "1.2.3.4:6789" or "[::1]:6789" (a trailing "/nonce" allowed). */
static bool
split_addr (const char *a, struct vmdr_rbd_mon *m)
{
  const char *colon;
  char *end;
  size_t hlen;

  if (a[0] == '[') {
    const char *close = strchr (a, ']');
    if (close == NULL || close[1] != ':')
      return false;
    hlen = (size_t) (close - a - 1);
    a++;
    colon = close + 1;
  } else {
    if ((colon = strrchr (a, ':')) == NULL)
      return false;
    hlen = (size_t) (colon - a);
  }
  if (hlen == 0 || hlen >= sizeof m->host)
    return false;
  memcpy (m->host, a, hlen);
  m->host[hlen] = '\0';
  unsigned long port = strtoul (colon + 1, &end, 10);
  if (port == 0 || port > 65535 || (*end && *end != '/'))
    return false;
  m->port = (unsigned) port;
  return true;
}

/* LEN bytes of JSON (not NUL-terminated). */
static json_object *
parse_json (const char *buf, size_t len)
{
  json_tokener *tok = json_tokener_new ();
  json_object *j;

  if (tok == NULL)
    return NULL;
  j = json_tokener_parse_ex (tok, buf, (int) len);
  if (j && json_tokener_get_error (tok) != json_tokener_success) {
    json_object_put (j);
    j = NULL;
  }
  json_tokener_free (tok);
  return j;
}

int
vmdr_rbd_monitors (struct vmdr_rbd *rbd, struct vmdr_rbd_mon *mons, size_t max, size_t *n)
{
  const char *cmd[] = { "{\"prefix\": \"mon dump\", \"format\": \"json\"}" };
  char *outbuf = NULL, *outs = NULL;
  size_t outlen = 0, outslen = 0, k = 0;
  json_object *j = NULL, *ms;
  bool all = true;
  int r;

  if ((r = rados_mon_command (rbd->cluster, cmd, 1, "", 0, &outbuf, &outlen, &outs, &outslen)) < 0)
    goto out;
  if (outlen == 0 || outlen > (1u << 20) || (j = parse_json (outbuf, outlen)) == NULL ||
      !json_object_object_get_ex (j, "mons", &ms) || !json_object_is_type (ms, json_type_array)) {
    r = -EBADMSG;
    goto out;
  }
  for (size_t i = 0; i < json_object_array_length (ms) && all; i++) {
    json_object *pa, *av, *mon = json_object_array_get_idx (ms, i);
    struct vmdr_rbd_mon v1 = { "" }, v2 = { "" };
    if (!json_object_object_get_ex (mon, "public_addrs", &pa) ||
        !json_object_object_get_ex (pa, "addrvec", &av) || !json_object_is_type (av, json_type_array)) {
      all = false;
      break;
    }
    for (size_t a = 0; a < json_object_array_length (av); a++) {
      json_object *e = json_object_array_get_idx (av, a), *t, *ad;
      if (!json_object_object_get_ex (e, "type", &t) || !json_object_object_get_ex (e, "addr", &ad))
        continue;
      if (strcmp (json_object_get_string (t), "v1") == 0)
        split_addr (json_object_get_string (ad), &v1);
      else if (strcmp (json_object_get_string (t), "v2") == 0)
        split_addr (json_object_get_string (ad), &v2);
    }
    /* An address without a type means v2 on 3300 and v1 on any other port. */
    if (v1.host[0] && k < max)
      mons[k++] = v1;
    else if (v2.host[0] && v2.port == 3300 && k < max)
      mons[k++] = v2;
    else
      all = false;
  }
  *n = all ? k : 0;
  r = 0;
 out:
  if (j)
    json_object_put (j);
  rados_buffer_free (outbuf);
  rados_buffer_free (outs);
  return r;
}

/* ---- applying a snapshot to an image ------------------------------------------ */

struct job {
  uint64_t index;
  struct vmdr_digest d;
};

/* One disk being written: the diff walk queues chunks, workers read them
 * from the repository (verified) and write them to the image. */
struct applier {
  struct vmdr_repo *src;
  rbd_image_t image;
  uint64_t size;
  uint32_t chunk_size;
  uint64_t per;                 /* chunks in the source's groups (1: none) */
  const struct vmdr_rbd_opts *o;
  struct vmdr_rbd_stats *st;
  uint64_t *bw_bytes;           /* the run's bytes written, for --bwlimit */
  double bw_t0;

  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full, idle;
  struct job q[QUEUE_MAX];
  size_t head, count, busy;
  bool closed;
  int err;
  struct vmdr_digest bad;       /* the chunk that failed, when err is damage */
  uint64_t bad_index;
};

static void
throttle (struct applier *a, uint64_t sent)
{
  vmdr_bwlimit_sleep (a->o->bwlimit, a->bw_t0, sent);
}

/* Read (verified) and write N jobs. */
static int
write_batch (struct applier *a, struct vmdr_repo_reader *rd, struct vmdr_chunk_get *req,
             rbd_completion_t *c, const struct job *jobs, size_t n, uint64_t *bytes)
{
  int r = 0;
  size_t issued = 0;

  for (size_t i = 0; i < n; i++)
    req[i].d = jobs[i].d;
  if ((r = vmdr_repo_get_chunks (a->src, rd, req, n)) < 0)
    return r;
  *bytes = 0;
  for (size_t i = 0; i < n && r == 0; i++) {
    uint64_t off = jobs[i].index * a->chunk_size;
    size_t want = a->size - off < a->chunk_size ? (size_t) (a->size - off) : a->chunk_size;
    if ((r = req[i].err) < 0 || (req[i].len != want && (r = -EBADMSG))) {
      pthread_mutex_lock (&a->lock);
      a->bad = jobs[i].d;
      a->bad_index = jobs[i].index;
      pthread_mutex_unlock (&a->lock);
      break;
    }
    if ((r = rbd_aio_create_completion (NULL, NULL, &c[i])) < 0)
      break;
    if ((r = rbd_aio_write (a->image, off, want, req[i].buf, c[i])) < 0) {
      rbd_aio_release (c[i]);
      break;
    }
    issued = i + 1;
    *bytes += want;
  }
  for (size_t i = 0; i < issued; i++) {
    rbd_aio_wait_for_complete (c[i]);
    ssize_t w = rbd_aio_get_return_value (c[i]);
    if (w < 0 && r == 0)
      r = (int) w;
    rbd_aio_release (c[i]);
  }
  return r;
}

struct worker_state {
  struct applier *a;
  struct vmdr_repo_reader *rd;
  struct vmdr_chunk_get *req;
  rbd_completion_t *c;
  size_t batch;
};

static void *
worker (void *opaque)
{
  struct worker_state *ws = opaque;
  struct applier *a = ws->a;
  struct job jobs[VMDR_GET_CHUNKS_MAX];

  pthread_mutex_lock (&a->lock);
  for (;;) {
    if (a->count == 0) {
      if (a->closed)
        break;
      pthread_cond_wait (&a->not_empty, &a->lock);
      continue;
    }
    size_t n = 0;
    while (a->count > 0 && n < ws->batch) {
      /* Whole groups to a batch where they fit: a group split between
       * two workers would be decompressed twice. */
      uint64_t g = a->q[a->head].index / a->per;
      if (n > 0 && g != jobs[n - 1].index / a->per && n + a->per > ws->batch)
        break;
      jobs[n++] = a->q[a->head];
      a->head = (a->head + 1) % QUEUE_MAX;
      a->count--;
    }
    a->busy++;
    pthread_cond_broadcast (&a->not_full);
    bool skip = a->err != 0;
    pthread_mutex_unlock (&a->lock);
    uint64_t bytes = 0;
    int e = skip ? 0 : write_batch (a, ws->rd, ws->req, ws->c, jobs, n, &bytes);
    pthread_mutex_lock (&a->lock);
    a->busy--;
    if (e < 0 && a->err == 0)
      a->err = e;
    if (e == 0 && !skip) {
      a->st->chunks_written += n;
      a->st->bytes_written += bytes;
      a->st->bytes_read += bytes;
      *a->bw_bytes += bytes;
      if (a->o->progress)
        a->o->progress (a->o->popaque, a->st->bytes_read, 0);
    }
    uint64_t sent = *a->bw_bytes;
    if (a->count == 0 && a->busy == 0)
      pthread_cond_broadcast (&a->idle);
    pthread_mutex_unlock (&a->lock);
    throttle (a, sent);
    pthread_mutex_lock (&a->lock);
  }
  pthread_cond_broadcast (&a->idle);
  pthread_mutex_unlock (&a->lock);
  return NULL;
}

static int
push (struct applier *a, uint64_t index, const struct vmdr_digest *d)
{
  int e;

  pthread_mutex_lock (&a->lock);
  while (a->count == QUEUE_MAX && a->err == 0)
    pthread_cond_wait (&a->not_full, &a->lock);
  if (a->err == 0) {
    a->q[(a->head + a->count) % QUEUE_MAX] = (struct job) { index, *d };
    a->count++;
    pthread_cond_signal (&a->not_empty);
  }
  e = a->err;
  pthread_mutex_unlock (&a->lock);
  return e;
}

/* Zero chunks [first, first + count) of the image. */
static int
zero_range (struct applier *a, uint64_t first, uint64_t count)
{
  uint64_t off = first * a->chunk_size, end = (first + count) * a->chunk_size;

  if (end > a->size)
    end = a->size;
  for (uint64_t at = off; at < end;) {
    size_t len = end - at > ZERO_STEP ? ZERO_STEP : (size_t) (end - at);
    ssize_t w = rbd_write_zeroes (a->image, at, len, 0, 0);
    if (w < 0)
      return (int) w;
    at += len;
  }
  if (end > off) {
    pthread_mutex_lock (&a->lock);
    a->st->bytes_zeroed += end - off;
    pthread_mutex_unlock (&a->lock);
  }
  return 0;
}

static int
on_diff (void *opaque, uint64_t first, uint64_t count, const struct vmdr_digest *d)
{
  struct applier *a = opaque;
  uint64_t zfirst = 0, zcount = 0;
  int r = 0;

  if (d == NULL)
    return zero_range (a, first, count);
  for (uint64_t i = 0; i < count && r == 0; i++) {
    if (vmdr_digest_is_zero (&d[i])) {
      if (zcount == 0)
        zfirst = first + i;
      zcount++;
      continue;
    }
    if (zcount && (r = zero_range (a, zfirst, zcount)) < 0)
      break;
    zcount = 0;
    r = push (a, first + i, &d[i]);
  }
  if (r == 0 && zcount)
    r = zero_range (a, zfirst, zcount);
  return r;
}

/* Write into IMAGE what differs between OLD (NULL: unknown) and NEW. */
static int
apply_diff (struct vmdr_repo *src, rbd_image_t image, const struct vmdr_disk_tree *old,
            const struct vmdr_disk_tree *new, const struct vmdr_rbd_opts *o,
            struct vmdr_rbd_stats *st, uint64_t *bw_bytes, double bw_t0,
            struct vmdr_digest *bad, uint64_t *bad_index)
{
  uint32_t group = vmdr_repo_config (src)->group_size;
  struct applier a = {
    .src = src, .image = image, .size = new->virtual_size, .chunk_size = new->chunk_size,
    .per = group > new->chunk_size ? group / new->chunk_size : 1,
    .o = o, .st = st, .bw_bytes = bw_bytes, .bw_t0 = bw_t0,
  };
  struct worker_state ws[VMDR_MAX_THREADS] = { { 0 } };
  pthread_t tids[VMDR_MAX_THREADS];
  size_t batch = BATCH_BYTES / new->chunk_size;
  struct vmdr_zctx *z = NULL;
  unsigned started = 0;
  int r, r2;

  if (batch < 1)
    batch = 1;
  if (batch > VMDR_GET_CHUNKS_MAX)
    batch = VMDR_GET_CHUNKS_MAX;
  pthread_mutex_init (&a.lock, NULL);
  pthread_cond_init (&a.not_empty, NULL);
  pthread_cond_init (&a.not_full, NULL);
  pthread_cond_init (&a.idle, NULL);
  r = vmdr_zctx_new (1, &z);
  for (unsigned k = 0; r == 0 && k < o->threads; k++) {
    ws[k].a = &a;
    ws[k].batch = batch;
    if ((r = vmdr_repo_reader_new (src, &ws[k].rd)) < 0)
      break;
    ws[k].req = calloc (batch, sizeof *ws[k].req);
    ws[k].c = calloc (batch, sizeof *ws[k].c);
    if (ws[k].req == NULL || ws[k].c == NULL) {
      r = -ENOMEM;
      break;
    }
    for (size_t i = 0; i < batch && r == 0; i++) {
      ws[k].req[i].cap = new->chunk_size;
      if ((ws[k].req[i].buf = malloc (new->chunk_size)) == NULL)
        r = -ENOMEM;
    }
  }
  for (; r == 0 && started < o->threads; started++)
    if (pthread_create (&tids[started], NULL, worker, &ws[started]) != 0)
      break;
  if (r == 0 && started == 0)
    r = -EAGAIN;
  if (r == 0)
    r = vmdr_disk_tree_diff (src, z, old, new, on_diff, &a);
  pthread_mutex_lock (&a.lock);
  a.closed = true;
  if (r < 0 && a.err == 0)
    a.err = r;                  /* the workers only empty the queue now */
  pthread_cond_broadcast (&a.not_empty);
  pthread_mutex_unlock (&a.lock);
  for (unsigned k = 0; k < started; k++)
    pthread_join (tids[k], NULL);
  r2 = a.err;
  if (r == 0)
    r = r2;
  *bad = a.bad;
  *bad_index = a.bad_index;
  for (unsigned k = 0; k < o->threads; k++) {
    for (size_t i = 0; ws[k].req && i < batch; i++)
      free (ws[k].req[i].buf);
    free (ws[k].req);
    free (ws[k].c);
    vmdr_repo_reader_free (ws[k].rd);
  }
  vmdr_zctx_free (z);
  pthread_cond_destroy (&a.idle);
  pthread_cond_destroy (&a.not_full);
  pthread_cond_destroy (&a.not_empty);
  pthread_mutex_destroy (&a.lock);
  return r;
}

/* ---- replicating ------------------------------------------------------------------ */

struct run {
  struct vmdr_repo *src;
  struct vmdr_rbd *rbd;
  const struct vmdr_rbd_opts *o;
  struct vmdr_rbd_stats *st;
  uint64_t bw_bytes;
  double t0;
  bool took_over;               /* the domain's lock was a dead run's */
};

static void __attribute__((format (printf, 2, 3)))
warn (struct vmdr_rbd_stats *st, const char *fmt, ...)
{
  va_list ap;

  if (st->nwarnings == VMDR_RBD_MAX_WARNINGS)
    return;
  va_start (ap, fmt);
  vsnprintf (st->warnings[st->nwarnings++], sizeof st->warnings[0], fmt, ap);
  va_end (ap);
}

static int
image_applying (rbd_image_t image, char *val, size_t size)
{
  size_t len = size;
  int r = rbd_metadata_get (image, META_APPLYING, val, &len);

  if (r == -ENOENT || r == -ERANGE) {
    val[0] = '\0';
    return r == -ENOENT ? 0 : 1;        /* too long: not a name we wrote */
  }
  return r < 0 ? r : 1;
}

static int
create_image (struct run *run, const char *name, uint64_t size)
{
  rbd_image_options_t opts;
  int r;

  rbd_image_options_create (&opts);
  rbd_image_options_set_uint64 (opts, RBD_IMAGE_OPTION_ORDER, IMAGE_ORDER);
  r = rbd_create4 (run->rbd->io, name, size, opts);
  rbd_image_options_destroy (opts);
  if (r == 0)
    run->st->images_created++;
  return r;
}

/* The tree of disk TARGET in snapshot DOMAIN/TIME at the source: 0, or
 * -ENOENT (no such snapshot or disk any more). */
static int
base_tree (struct run *run, const char *domain, const char *time, const char *target,
           struct vmdr_disk_tree *t)
{
  char id[VMDR_SNAPSHOT_ID_MAX];
  struct vmdr_manifest m = { 0 };
  int r;

  snprintf (id, sizeof id, "%s/%s", domain, time);
  if ((r = vmdr_manifest_get (run->src, id, &m)) < 0)
    return r;
  r = -ENOENT;
  for (size_t i = 0; i < m.ndisks; i++)
    if (strcmp (m.disks[i].target, target) == 0) {
      vmdr_manifest_disk_tree (&m.disks[i], t);
      r = 0;
    }
  vmdr_manifest_clear (&m);
  return r;
}

/* Break the exclusive lock a dead run left on IMAGE, so that the first
 * write need not wait until the cluster notices that its owner is gone
 * (30 s).  Only when the domain's lock was taken over from a dead run:
 * the heads are written by vmdr-replicate alone, under that lock. */
static void
break_dead_owner (rbd_image_t image)
{
  char *owners[4];
  size_t n = 4;
  rbd_lock_mode_t mode;

  if (rbd_lock_get_owners (image, &mode, owners, &n) < 0)
    return;
  for (size_t i = 0; i < n; i++)
    rbd_lock_break (image, mode, owners[i]);
  rbd_lock_get_owners_cleanup (owners, n);
}

/* Bring the image of disk D of M to M's snapshot.  0, 1 (damage at the
 * source: skip this snapshot), or -errno; WHERE says what failed. */
static int
apply_disk (struct run *run, const struct vmdr_manifest *m, const struct vmdr_manifest_disk *d,
            char *where, size_t wlen)
{
  const char *time = id_time (m->id);
  char name[VMDR_RBD_NAME_MAX], snap[64], newest[VMDR_TIME_LEN + 1], applying[64];
  struct vmdr_disk_tree new, base, *old = NULL;
  struct vmdr_digest bad;
  uint64_t bad_index = 0, size;
  rbd_image_t image = NULL;
  bool has, fresh = false;
  int r;

  snap_name (time, snap, sizeof snap);
  vmdr_manifest_disk_tree (d, &new);
  if ((r = vmdr_rbd_image_name (run->rbd, m->domain, d->target, name)) < 0) {
    snprintf (where, wlen, "no RBD image name for disk %s of '%s'", d->target, m->domain);
    return r;
  }
  snprintf (where, wlen, "image '%s/%.300s'", run->rbd->pool, name);
  r = rbd_open (run->rbd->io, name, &image, NULL);
  if (r == -ENOENT) {
    if ((r = create_image (run, name, d->virtual_size)) < 0 ||
        (r = rbd_open (run->rbd->io, name, &image, NULL)) < 0)
      return r;
    fresh = true;
  }
  if (r < 0)
    return r;
  if (run->took_over && !fresh)
    break_dead_owner (image);
  if ((r = newest_snapshot (image, time, newest, &has)) < 0)
    goto out;
  if (has)
    goto out;                   /* applied by an earlier run */
  if ((r = image_applying (image, applying, sizeof applying)) < 0)
    goto out;
  if (r > 0 && strcmp (applying, snap) != 0 && !(newest[0] && strncmp (applying, VMDR_RBD_SNAP_PREFIX, 5) == 0 &&
                                                 strcmp (applying + 5, newest) == 0)) {
    /* Half way to another snapshot: back to the last whole one. */
    if (newest[0]) {
      char last[64];
      snap_name (newest, last, sizeof last);
      if ((r = rbd_snap_rollback (image, last)) < 0)
        goto out;
    } else {
      rbd_close (image);
      image = NULL;
      if ((r = rbd_remove (run->rbd->io, name)) < 0 ||
          (r = create_image (run, name, d->virtual_size)) < 0 ||
          (r = rbd_open (run->rbd->io, name, &image, NULL)) < 0)
        goto out;
      run->st->images_created--;        /* made again, not new */
      fresh = true;
    }
    run->st->rollbacks++;
  }
  else if (r > 0 && newest[0] == '\0')
    fresh = true;               /* made by a run that died writing this very snapshot */
  /* Else an image without snapshots and not marked: one vmdr did not
   * write (or made and died before marking it), its content unknown. */
  if (fresh) {
    base = (struct vmdr_disk_tree) { .virtual_size = 0, .chunk_size = new.chunk_size,
                                     .fanout = new.fanout };
    old = &base;
  }
  else if (newest[0]) {
    if ((r = base_tree (run, m->domain, newest, d->target, &base)) == 0)
      old = &base;
    else if (r == -ENOENT)
      warn (run->st, "%s: its snapshot %s is no longer in the repository: every chunk of %s written",
            m->id, newest, d->target);
    else
      goto out;
  }
  if ((r = rbd_metadata_set (image, META_APPLYING, snap)) < 0 ||
      (r = rbd_get_size (image, &size)) < 0 ||
      (size != d->virtual_size && (r = rbd_resize2 (image, d->virtual_size, true, NULL, NULL)) < 0))
    goto out;
  r = apply_diff (run->src, image, old, &new, run->o, run->st, &run->bw_bytes, run->t0,
                  &bad, &bad_index);
  if (r == -EINVAL && old) {    /* other geometry: write it all */
    r = apply_diff (run->src, image, NULL, &new, run->o, run->st, &run->bw_bytes, run->t0,
                    &bad, &bad_index);
  }
  if (r == -EBADMSG || r == -EILSEQ || r == -ENOENT) {
    char hex[VMDR_DIGEST_HEX_LEN + 1];
    vmdr_digest_to_hex (&bad, hex);
    if (vmdr_digest_is_zero (&bad))
      snprintf (where, wlen, "the index of disk %s is damaged at the source (%s)",
                d->target, vmdr_damage_text (r));
    else
      snprintf (where, wlen, "chunk %s of disk %s at offset %llu is damaged at the source (%s)",
                hex, d->target, (unsigned long long) bad_index * d->chunk_size,
                vmdr_damage_text (r));
    r = 1;
    goto out;
  }
  if (r < 0 || (r = rbd_flush (image)) < 0 || (r = rbd_snap_create (image, snap)) < 0)
    goto out;
  rbd_metadata_remove (image, META_APPLYING);   /* best effort: see newest above */
 out:
  if (image)
    rbd_close (image);
  return r;
}

/* Apply snapshot ID: 0, 1 (skipped: damaged at the source, or older than
 * an image has), or -errno. */
static int
apply_snapshot (struct run *run, const char *index, const char *id)
{
  struct vmdr_manifest m = { 0 };
  char where[512] = "";
  int r;

  if ((r = vmdr_manifest_get (run->src, id, &m)) < 0) {
    if (r == -EBADMSG || r == -ENOENT) {
      warn (run->st, "%s: not replicated: its manifest is unreadable (%s)", id, vmdr_damage_text (r));
      run->st->snapshots_failed++;
      return 1;
    }
    warn (run->st, "%s: cannot read its manifest: %s", id, strerror (-r));
    return r;
  }
  /* An image with a newer snapshot already: this one would go back in time. */
  for (size_t i = 0; i < m.ndisks && r == 0; i++) {
    char name[VMDR_RBD_NAME_MAX], newest[VMDR_TIME_LEN + 1];
    rbd_image_t image;
    if (vmdr_rbd_image_name (run->rbd, m.domain, m.disks[i].target, name) < 0 ||
        rbd_open_read_only (run->rbd->io, name, &image, NULL) < 0)
      continue;
    if (newest_snapshot (image, NULL, newest, NULL) == 0 && strcmp (newest, id_time (id)) > 0)
      r = 1;
    rbd_close (image);
  }
  if (r == 1) {
    run->st->snapshots_older++;
    vmdr_manifest_clear (&m);
    return 1;
  }
  for (size_t i = 0; i < m.ndisks && r == 0; i++)
    r = apply_disk (run, &m, &m.disks[i], where, sizeof where);
  if (r == 0 && (r = put_manifest (run->rbd, index, &m)) < 0)
    snprintf (where, sizeof where, "the manifest of %s", id);
  vmdr_manifest_clear (&m);
  if (r == 1) {
    warn (run->st, "%s: not replicated: %s; run vmdr-verify", id, where);
    run->st->snapshots_failed++;
  }
  else if (r < 0)
    warn (run->st, "%s: %s: %s", id, where, rados_text (r));
  else
    run->st->snapshots_applied++;
  return r;
}


static bool
listed (char **v, size_t n, const char *s)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp (v[i], s) == 0)
      return true;
  return false;
}

/* The snapshots IDS[*i ..] of one domain, under its lock on the replica. */
static int
replicate_domain (struct run *run, char **ids, size_t n, size_t *i)
{
  char domain[VMDR_DOMAIN_NAME_MAX + 1], index[VMDR_RBD_NAME_MAX];
  size_t len = vmdr_id_domain_len (ids[*i]), ndone = 0;
  char **done = NULL;
  struct held_lock lock;
  int r, r2;

  snprintf (domain, sizeof domain, "%.*s", (int) len, ids[*i]);
  if ((r = object_name (run->rbd, domain, NULL, index)) < 0) {
    warn (run->st, "%s: no replica name for this domain", domain);
    return r;
  }
  if ((r = hold_lock (run->rbd, index, &lock)) < 0) {
    if (r != -EBUSY)
      warn (run->st, "%s: cannot take its lock on the replica: %s", domain, rados_text (r));
    return r;
  }
  run->took_over = lock.took_over;
  if (lock.took_over)
    warn (run->st, "%s: took over the lock of a run that died on this host", domain);
  if ((r = list_keys (run->rbd, index, &done, &ndone)) < 0)
    warn (run->st, "%s: cannot read its index on the replica: %s", domain, rados_text (r));
  for (; r == 0 && *i < n && vmdr_id_domain_len (ids[*i]) == len && strncmp (ids[*i], domain, len) == 0;
       ++*i) {
    const char *time = id_time (ids[*i]);
    if (listed (done, ndone, time)) {
      run->st->snapshots_present++;
      continue;
    }
    if (ndone && strcmp (time, done[ndone - 1]) < 0) {
      run->st->snapshots_older++;
      continue;
    }
    if (run->o->step)
      run->o->step (run->o->sopaque, ids[*i], *i + 1, n);
    if ((r = apply_snapshot (run, index, ids[*i])) > 0)
      r = 0;
  }
  vmdr_strv_free (done, ndone);
  r2 = drop_lock (&lock);
  if (r == 0 && r2 < 0) {
    warn (run->st, "%s: its lock on the replica expired during the run", domain);
    r = r2;
  }
  return r;
}

int
vmdr_rbd_replicate (struct vmdr_repo *src, struct vmdr_rbd *rbd,
                    const struct vmdr_rbd_opts *o, struct vmdr_rbd_stats *st)
{
  struct run run = { .src = src, .rbd = rbd, .o = o, .st = st, .t0 = vmdr_mono_seconds () };
  char since[VMDR_TIME_LEN + 1] = "";
  char **ids = NULL;
  size_t n = 0, k = 0, i = 0;
  int r;

  memset (st, 0, sizeof *st);
  if (o->threads < 1 || o->threads > VMDR_MAX_THREADS)
    return -EINVAL;
  if (o->since && vmdr_time_key (o->since, since) < 0)
    return -EINVAL;
  if ((r = vmdr_snapshot_list (src, NULL, &ids, &n)) < 0)
    return r;
  for (size_t j = 0; j < n; j++) {
    if (vmdr_sync_wanted (o->domains, o->ndomains, ids[j], since))
      ids[k++] = ids[j];
    else
      free (ids[j]);
  }
  n = k;
  while (r == 0 && i < n)
    r = replicate_domain (&run, ids, n, &i);
  vmdr_strv_free (ids, n);
  if (r == 0 && st->snapshots_failed)
    r = -EBADMSG;
  return r;
}
