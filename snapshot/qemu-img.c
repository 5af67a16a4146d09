#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "qemu-img.h"

extern char **environ;

/* The text of `qemu-img map --output=json` stays under this: about 110
 * bytes an extent. */
#define MAP_TEXT_MAX ((size_t) VMDR_LAYOUT_MAX * 128)

static int
wait_child (pid_t pid)
{
  int st;

  while (waitpid (pid, &st, 0) < 0)
    if (errno != EINTR)
      return -errno;
  return WIFEXITED (st) && WEXITSTATUS (st) == 0 ? 0 : -EIO;
}

/* Spawn ARGV with standard output on OUT (or /dev/null if OUT < 0) and
 * standard error on /dev/null. */
static int
spawn (const char *const *argv, int out, pid_t *pid)
{
  posix_spawn_file_actions_t fa;
  int r;

  posix_spawn_file_actions_init (&fa);
  if (out >= 0)
    posix_spawn_file_actions_adddup2 (&fa, out, STDOUT_FILENO);
  else
    posix_spawn_file_actions_addopen (&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen (&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  r = posix_spawnp (pid, argv[0], &fa, NULL, (char *const *) argv, environ);
  posix_spawn_file_actions_destroy (&fa);
  return r == 0 ? 0 : -r;
}

int
vmdr_run_quiet (const char *const *argv)
{
  pid_t pid;
  int r = spawn (argv, -1, &pid);

  return r < 0 ? r : wait_child (pid);
}

/* Run ARGV and collect its standard output (at most MAX bytes, NUL
 * terminated) in *TEXT. */
static int
run_capture (const char *const *argv, size_t max, char **text)
{
  _cleanup_free_ char *buf = NULL;
  size_t len = 0, cap = 0;
  int p[2], r = 0, r2;
  pid_t pid;

  if (pipe2 (p, O_CLOEXEC) < 0)
    return -errno;
  r = spawn (argv, p[1], &pid);
  close (p[1]);
  if (r < 0) {
    close (p[0]);
    return r;
  }
  for (;;) {
    if (len + 1 >= cap) {
      char *nb = cap >= max ? NULL : realloc (buf, cap = cap ? cap * 2 : 65536);
      if (nb == NULL) {
        r = cap >= max ? -E2BIG : -ENOMEM;
        break;
      }
      buf = nb;
    }
    ssize_t n = read (p[0], buf + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      r = n < 0 ? -errno : 0;
      break;
    }
    len += (size_t) n;
  }
  close (p[0]);                 /* an early stop: the child gets EPIPE */
  r2 = wait_child (pid);
  if (r == 0 && (r = r2) == 0) {
    buf[len] = '\0';
    *text = buf;
    buf = NULL;
  }
  return r;
}

static bool
get_u64 (json_object *o, const char *key, uint64_t *v)
{
  json_object *x;

  if (!json_object_object_get_ex (o, key, &x) || !json_object_is_type (x, json_type_int))
    return false;
  *v = json_object_get_uint64 (x);
  return json_object_get_int64 (x) >= 0;
}

static bool
get_bool (json_object *o, const char *key)
{
  json_object *x;

  return json_object_object_get_ex (o, key, &x) && json_object_get_boolean (x);
}

/* One entry of the map: 1 a data extent in X, 0 no data, or -errno. */
static int
parse_entry (json_object *e, uint64_t at, uint64_t size, struct vmdr_out_extent *x)
{
  uint64_t start, len, depth;

  if (!json_object_is_type (e, json_type_object) || !get_u64 (e, "start", &start) ||
      !get_u64 (e, "length", &len) || start != at || len == 0 || len > size - start)
    return -EBADMSG;            /* the map covers the disk in order */
  x->start = start;
  x->len = len;
  if (!get_bool (e, "data"))
    return 0;
  if (!get_u64 (e, "depth", &depth) || depth != 0 || get_bool (e, "compressed") ||
      !get_u64 (e, "offset", &x->host) || x->host > UINT64_MAX - len)
    return -ENOTSUP;
  return 1;
}

static int
parse_map (json_object *m, uint64_t size, struct vmdr_out_extent *v, size_t *n)
{
  size_t count = json_object_array_length (m);
  uint64_t at = 0;

  *n = 0;
  for (size_t i = 0; i < count; i++) {
    int r = parse_entry (json_object_array_get_idx (m, i), at, size, &v[*n]);
    if (r < 0)
      return r;
    at += v[*n].len;
    *n += (size_t) r;
  }
  return at == size ? 0 : -EBADMSG;
}

int
vmdr_qemu_img_layout (const char *file, uint64_t size,
                      struct vmdr_out_extent **out, size_t *n)
{
  const char *argv[] = { "qemu-img", "map", "--output=json", "-f", "qcow2", file, NULL };
  _cleanup_free_ char *text = NULL;
  struct vmdr_out_extent *v = NULL;
  json_object *m;
  size_t count;
  int r;

  if ((r = run_capture (argv, MAP_TEXT_MAX, &text)) < 0)
    return r;
  m = json_tokener_parse (text);
  if (m == NULL || !json_object_is_type (m, json_type_array))
    r = -EBADMSG;
  else if ((count = json_object_array_length (m)) > VMDR_LAYOUT_MAX)
    r = -E2BIG;
  else if ((v = calloc (count ? count : 1, sizeof *v)) == NULL)
    r = -ENOMEM;
  else
    r = parse_map (m, size, v, n);
  json_object_put (m);
  if (r < 0) {
    free (v);
    return r;
  }
  *out = v;
  return 0;
}
