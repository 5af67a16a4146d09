#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cli.h"
#include "clock.h"
#include "cmd-repo.h"
#include "prune.h"
#include "disk-io.h"
#include "metrics.h"

const char *
cmd_repo_address (const char *opt)
{
  const char *env = getenv ("VMDR_REPO");

  if (opt && *opt)
    return opt;
  if (env && *env)
    return env;
  cli_usage_error ("no repository: give -r REPO or set VMDR_REPO");
}

struct vmdr_repo *
cmd_open_repo (const char *address, bool load_index)
{
  struct vmdr_repo *repo;
  size_t damaged = 0;
  int r;

  r = vmdr_repo_open (address, &repo);
  /* A backend that talks to a server has its words for the failure (S3:
   * "HTTP 404 NoSuchBucket", "HTTP 403 SignatureDoesNotMatch"); an absent
   * config is still "not a repository". */
  if (r < 0 && r != -ENOTRECOVERABLE && vmdr_backend_error ()) {
    cli_error ("cannot open repository '%s': %s", address, vmdr_backend_error ());
    return NULL;
  }
  switch (r) {
  case 0:
    break;
  case -ENOTRECOVERABLE:
    cli_error ("'%s' is not a vmdr repository (no config; create one with vmdr-init)", address);
    return NULL;
  case -EPROTONOSUPPORT:
    cli_error ("'%s' has a newer repository format than this vmdr (%s) knows; upgrade vmdr",
               address, PACKAGE_VERSION);
    return NULL;
  case -EBADMSG:
  case -EINVAL:
    cli_error ("'%s': the repository config is damaged", address);
    return NULL;
  case -EAFNOSUPPORT:
    cli_error ("'%s': unknown repository type (use a path, file://PATH or s3://BUCKET[/PREFIX])",
               address);
    return NULL;
  default:
    cli_error ("cannot open repository '%s': %s", address, strerror (-r));
    return NULL;
  }
  if (load_index && (r = vmdr_repo_load_index (repo, &damaged)) < 0) {
    struct vmdr_backend *b = vmdr_repo_backend (repo);
    char why[512] = "";
    if (!b->ops->describe_error || !b->ops->describe_error (b, why, sizeof why))
      snprintf (why, sizeof why, "%s", strerror (-r));
    cli_error ("cannot read the index of '%s': %s", address, why);
    vmdr_repo_close (repo);
    return NULL;
  }
  if (damaged)
    cli_warn ("%zu damaged pack index object%s skipped; run vmdr-verify",
              damaged, damaged == 1 ? "" : "s");
  return repo;
}

unsigned
cmd_jobs_arg (const char *arg)
{
  char *end;
  long jobs;

  errno = 0;
  jobs = strtol (arg, &end, 10);
  if (errno || *end || end == arg || jobs < 1 || jobs > VMDR_MAX_THREADS)
    cli_usage_error ("invalid number of jobs '%s' (1 to %d)", arg, VMDR_MAX_THREADS);
  return (unsigned) jobs;
}

long
cmd_long_arg (const char *opt, const char *arg, long min, long max)
{
  char *end;
  long v;

  errno = 0;
  v = strtol (arg, &end, 10);
  if (errno || end == arg || *end || v < min || v > max)
    cli_usage_error ("invalid %s '%s' (%ld to %ld)", opt, arg, min, max);
  return v;
}

void
cmd_keep_arg (int c, int base, const char *arg, struct vmdr_keep *k)
{
  static const char *const names[CMD_KEEP_COUNT] = {
    "--keep-last", "--keep-hourly", "--keep-daily", "--keep-weekly", "--keep-monthly", "--keep-yearly",
  };
  unsigned *fields[CMD_KEEP_COUNT] = {
    &k->last, &k->hourly, &k->daily, &k->weekly, &k->monthly, &k->yearly,
  };
  int i = c - base;

  if (i < 0 || i >= CMD_KEEP_COUNT)
    abort ();                   /* the caller's table is wrong */
  *fields[i] = (unsigned) cmd_long_arg (names[i], arg, 0, 1000000);
}

const char *
cmd_size (uint64_t bytes, char *buf)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
  double v = (double) bytes;
  int u = 0;

  while (v >= 1024 && u < 6) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, 16, "%llu B", (unsigned long long) bytes);
  else
    snprintf (buf, 16, "%.1f %s", v, units[u]);
  return buf;
}

double
cmd_now (void)
{
  return vmdr_mono_seconds ();
}

size_t
cmd_disks_arg (const char *arg, char **buf, const char **out, size_t max)
{
  char *save = NULL, *t;
  size_t n = 0;

  free (*buf);
  if ((*buf = strdup (arg)) == NULL)
    cli_usage_error ("out of memory");
  for (t = strtok_r (*buf, ",", &save); t; t = strtok_r (NULL, ",", &save)) {
    if (n == max || strlen (t) >= 32)
      cli_usage_error ("invalid --disks '%s'", arg);
    out[n++] = t;
  }
  if (n == 0)
    cli_usage_error ("invalid --disks '%s'", arg);
  return n;
}

void
cmd_json_print (struct json_object *j)
{
  printf ("%s\n", json_object_to_json_string_ext (j, JSON_C_TO_STRING_PRETTY |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (j);
}

void
cmd_metrics_begin (const char *path, struct metrics **m, struct metrics **prev)
{
  *m = *prev = NULL;
  if (path == NULL)
    return;
  if (metrics_new (m) < 0) {
    cli_error ("out of memory");
    exit (VMDR_EXIT_FAILED);
  }
  /* Absent (the first run), or not ours: last success times start from 0. */
  if (metrics_read (path, prev) < 0)
    *prev = NULL;
}

int
cmd_metrics_end (const char *path, struct metrics *m, struct metrics *prev, int status)
{
  int r;

  if (path == NULL)
    return status;
  r = metrics_write (m, path);
  metrics_free (m);
  metrics_free (prev);
  if (r == 0)
    return status;
  if (r == -E2BIG)
    cli_error ("cannot write metrics '%s': more than %d series", path, METRICS_MAX_SERIES);
  else
    cli_error ("cannot write metrics '%s': %s", path, strerror (-r));
  return status == VMDR_EXIT_OK ? VMDR_EXIT_WARNINGS : status;
}
