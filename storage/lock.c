#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "lock.h"
#include "manifest.h"

#define LOCK_MAX 4096

struct vmdr_lock {
  struct vmdr_repo *repo;
  char key[VMDR_KEY_MAX + 1];
};

/* The boot id tells a lock from before a reboot: its pid means nothing. */
static void
boot_id (char *out, size_t size)
{
  FILE *f = fopen ("/proc/sys/kernel/random/boot_id", "re");

  out[0] = '\0';
  if (f) {
    if (fgets (out, (int) size, f))
      out[strcspn (out, "\n")] = '\0';
    fclose (f);
  }
}

static int
holder_json (char **out)
{
  char host[256] = "", boot[64], started[32];
  time_t now = time (NULL);
  struct tm tm;

  gethostname (host, sizeof host - 1);
  boot_id (boot, sizeof boot);
  gmtime_r (&now, &tm);
  strftime (started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_object *o = json_object_new_object ();
  json_object_object_add (o, "host", json_object_new_string (host));
  json_object_object_add (o, "pid", json_object_new_int ((int) getpid ()));
  json_object_object_add (o, "started", json_object_new_string (started));
  json_object_object_add (o, "boot_id", json_object_new_string (boot));
  *out = strdup (json_object_to_json_string (o));
  json_object_put (o);
  return *out ? 0 : -ENOMEM;
}

static const char *
member (json_object *o, const char *k)
{
  json_object *m;

  if (json_object_object_get_ex (o, k, &m) && json_object_is_type (m, json_type_string))
    return json_object_get_string (m);
  return "";
}

/* Read lock KEY: *stale when its holder is provably gone.  -ENOENT when the
 * lock vanished meanwhile. */
static int
read_holder (struct vmdr_backend *b, const char *key,
             struct vmdr_lock_holder *h, bool *stale)
{
  _cleanup_free_ void *data = NULL;
  char host[256] = "", boot[64];
  json_object *o, *pid;
  size_t len;
  int r;

  r = b->ops->get (b, key, 0, 0, LOCK_MAX, &data, &len);
  if (r < 0)
    return r == -EFBIG ? 0 : r;   /* unreadable: treat as held */
  o = json_tokener_parse (data);
  memset (h, 0, sizeof *h);
  *stale = false;
  if (o == NULL || !json_object_is_type (o, json_type_object)) {
    json_object_put (o);
    return 0;                   /* garbage: held, a person must look */
  }
  snprintf (h->host, sizeof h->host, "%s", member (o, "host"));
  snprintf (h->started, sizeof h->started, "%s", member (o, "started"));
  if (json_object_object_get_ex (o, "pid", &pid) && json_object_is_type (pid, json_type_int))
    h->pid = (pid_t) json_object_get_int (pid);
  gethostname (host, sizeof host - 1);
  boot_id (boot, sizeof boot);
  if (strcmp (h->host, host) == 0 && h->pid > 0)
    *stale = strcmp (member (o, "boot_id"), boot) != 0 ||
             (kill (h->pid, 0) < 0 && errno == ESRCH);
  json_object_put (o);
  return 0;
}

int
vmdr_lock_acquire (struct vmdr_repo *repo, const char *name,
                   struct vmdr_lock **out, struct vmdr_lock_holder *holder,
                   bool *took_over)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  _cleanup_free_ char *json = NULL;
  struct vmdr_lock_holder h;
  struct vmdr_lock *l;
  bool stale = false;
  int r;

  if (took_over)
    *took_over = false;
  l = calloc (1, sizeof *l);
  if (l == NULL)
    return -ENOMEM;
  l->repo = repo;
  snprintf (l->key, sizeof l->key, "locks/%s", name);
  if (!vmdr_key_valid (l->key) || (r = holder_json (&json)) < 0) {
    free (l);
    return -EINVAL;
  }
  /* Twice at most: once, and once more after removing a stale lock. */
  for (int attempt = 0; attempt < 2; attempt++) {
    r = b->ops->put (b, l->key, json, strlen (json), VMDR_PUT_EXCLUSIVE);
    if (r != -EEXIST)
      break;
    r = read_holder (b, l->key, &h, &stale);
    if (r == -ENOENT)
      continue;                 /* released meanwhile: try again */
    if (r < 0)
      break;
    if (holder)
      *holder = h;
    r = -EBUSY;
    if (!stale || attempt > 0)
      break;
    if ((r = b->ops->del (b, l->key)) < 0)
      break;
    if (took_over)
      *took_over = true;
  }
  if (r < 0) {
    free (l);
    return r;
  }
  *out = l;
  return 0;
}

int
vmdr_lock_release (struct vmdr_lock *l)
{
  int r;

  if (l == NULL)
    return 0;
  struct vmdr_backend *b = vmdr_repo_backend (l->repo);
  r = b->ops->del (b, l->key);
  free (l);
  return r;
}

struct any {
  struct vmdr_backend *b;
  int held;
};

static int
any_one (void *opaque, const char *key, const struct vmdr_object_info *info)
{
  struct any *a = opaque;
  struct vmdr_lock_holder h;
  bool stale;

  (void) info;
  if (read_holder (a->b, key, &h, &stale) == 0 && !stale)
    a->held = 1;
  return 0;
}

int
vmdr_lock_any (struct vmdr_repo *repo, const char *prefix)
{
  struct any a = { .b = vmdr_repo_backend (repo) };
  char p[VMDR_KEY_MAX + 1];
  int r;

  snprintf (p, sizeof p, "locks/%s", prefix);
  r = a.b->ops->list (a.b, p, any_one, &a);
  return r < 0 ? r : a.held;
}

int
vmdr_lock_name_domain (const char *domain, char *name, size_t size)
{
  char esc[3 * VMDR_DOMAIN_NAME_MAX + 1];
  int n;

  if (vmdr_domain_escape (domain, esc, sizeof esc) < 0)
    return -EINVAL;
  n = snprintf (name, size, "domain-%s", esc);
  return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}
