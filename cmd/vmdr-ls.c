/* vmdr-ls: list the snapshots in a repository. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cli.h"
#include "cmd-repo.h"
#include "manifest.h"
#include "metrics.h"
#include "verify.h"

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-ls -r REPO [--json | --metrics] [DOMAIN]\n"
"\n"
"List the snapshots in REPO, of every domain or of DOMAIN: id, creation\n"
"time, kind, consistency, logical size, bytes new in the repository when\n"
"it was taken, and whether vmdr-verify found it damaged.\n"
"\n"
"Options:\n"
"  -r, --repo=REPO  the repository (default: $VMDR_REPO)\n"
"      --json       one JSON object on stdout\n"
"      --metrics    Prometheus gauges on stdout instead, for node_exporter's\n"
"                   textfile collector or a scrape: per domain the time and\n"
"                   age of the newest snapshot not marked damaged (its\n"
"                   recovery point; 0 and now when there is none), the\n"
"                   snapshots and the damaged ones; the repository's size\n"
"  -h, --help       show this help and exit\n"
"  -V, --version    show the version and exit\n");
  exit (status);
}

struct row {
  struct vmdr_manifest m;
  uint64_t size, fresh;
  int damaged;
};

static void
print_table (struct row *rows, size_t n)
{
  printf ("%-40s %-20s %-11s %-11s %10s %10s  %s\n", "SNAPSHOT", "CREATED",
          "KIND", "CONSISTENCY", "SIZE", "NEW", "STATUS");
  for (size_t i = 0; i < n; i++) {
    char s[16], f[16], created[20];
    /* "2026-11-27T21:00:00.000Z" shown as "2026-11-27 21:00:00" */
    snprintf (created, sizeof created, "%.10s %.8s", rows[i].m.created, rows[i].m.created + 11);
    printf ("%-40s %-20s %-11s %-11s %10s %10s  %s\n", rows[i].m.id, created,
            vmdr_kind_name (rows[i].m.kind), vmdr_consistency_name (rows[i].m.consistency),
            cmd_size (rows[i].size, s), cmd_size (rows[i].fresh, f),
            rows[i].damaged ? "DAMAGED" : "ok");
  }
}

static void
print_json (struct row *rows, size_t n)
{
  json_object *o = json_object_new_object (), *a = json_object_new_array ();

  for (size_t i = 0; i < n; i++) {
    const struct vmdr_manifest *m = &rows[i].m;
    json_object *s = json_object_new_object (), *disks = json_object_new_array ();
    json_object_object_add (s, "id", json_object_new_string (m->id));
    json_object_object_add (s, "domain", json_object_new_string (m->domain));
    json_object_object_add (s, "created", json_object_new_string (m->created));
    json_object_object_add (s, "kind", json_object_new_string (vmdr_kind_name (m->kind)));
    json_object_object_add (s, "consistency",
                            json_object_new_string (vmdr_consistency_name (m->consistency)));
    json_object_object_add (s, "parent", m->parent[0] ? json_object_new_string (m->parent) : NULL);
    json_object_object_add (s, "size", json_object_new_int64 ((int64_t) rows[i].size));
    json_object_object_add (s, "bytes_new", json_object_new_int64 ((int64_t) rows[i].fresh));
    json_object_object_add (s, "damaged", json_object_new_boolean (rows[i].damaged));
    for (size_t d = 0; d < m->ndisks; d++) {
      json_object *dj = json_object_new_object ();
      json_object_object_add (dj, "target", json_object_new_string (m->disks[d].target));
      json_object_object_add (dj, "virtual_size", json_object_new_int64 ((int64_t) m->disks[d].virtual_size));
      json_object_object_add (dj, "bytes_new", json_object_new_int64 ((int64_t) m->disks[d].bytes_new));
      json_object_array_add (disks, dj);
    }
    json_object_object_add (s, "disks", disks);
    json_object_array_add (a, s);
  }
  json_object_object_add (o, "snapshots", a);
  cmd_json_print (o);
}

static int
add_size (void *opaque, const char *key, const struct vmdr_object_info *info)
{
  (void) key;
  *(uint64_t *) opaque += info->size;
  return 0;
}

/* When snapshot ID was taken, in seconds since the epoch; -1 if malformed. */
static double
id_time (const char *id)
{
  const char *t = strrchr (id, '/');
  struct tm tm = { 0 };
  int ms, n = 0;

  if (t == NULL || sscanf (t + 1, "%4d%2d%2dT%2d%2d%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon,
                           &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &n) != 7 ||
      t[1 + n] != '\0')
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (double) timegm (&tm) + ms / 1000.0;
}

/* --metrics: the gauges of IDS (sorted by domain, then time; those of
 * DOMAIN when not NULL) and of the repository, on stdout.  Only ids and
 * damage marks are read, no manifest: cheap enough for every scrape.
 * The exit status. */
static int
print_metrics (struct vmdr_repo *repo, const char *address, const char *domain,
               char **ids, size_t n)
{
  struct vmdr_backend *b = vmdr_repo_backend (repo);
  char label[1024], dom[VMDR_DOMAIN_NAME_MAX + 1];
  const char *const rl[] = { "repo", label, NULL };
  const char *const dl[] = { "domain", dom, "repo", label, NULL };
  struct metrics *m;
  uint64_t size = 0;
  double now = metrics_now ();
  size_t len;
  char *text;
  int r;

  metrics_address_label (address, label, sizeof label);
  if ((r = b->ops->list (b, "", add_size, &size)) < 0) {
    cli_error ("cannot list the objects in '%s': %s", address, strerror (-r));
    return VMDR_EXIT_FAILED;
  }
  if (metrics_new (&m) < 0) {
    cli_error ("out of memory");
    return VMDR_EXIT_FAILED;
  }
  metrics_set (m, "vmdr_repository_size_bytes",
               "Bytes of all the objects stored in the repository", rl, (double) size);
  for (size_t i = 0, j; i < n || (i == 0 && domain); i = j) {
    size_t count = 0, damaged = 0;
    double newest = 0;

    /* One domain: ids[i .. j), or none at all for a DOMAIN without any. */
    snprintf (dom, sizeof dom, "%s", domain ? domain : "");
    for (j = i; j < n; j++) {
      size_t dlen = vmdr_id_domain_len (ids[j]);
      if (j > i && (strlen (dom) != dlen || strncmp (dom, ids[j], dlen) != 0))
        break;
      snprintf (dom, sizeof dom, "%.*s", (int) dlen, ids[j]);
      if ((r = vmdr_damage_is_marked (repo, ids[j])) < 0) {
        cli_error ("cannot read the damage mark of '%s': %s", ids[j], strerror (-r));
        metrics_free (m);
        return VMDR_EXIT_FAILED;
      }
      count++;
      if (r > 0)
        damaged++;
      else if (id_time (ids[j]) > newest)
        newest = id_time (ids[j]);
    }
    metrics_set (m, "vmdr_repository_snapshots", "Snapshots of the domain", dl, (double) count);
    metrics_set (m, "vmdr_repository_snapshots_damaged",
                 "Snapshots of the domain that vmdr-verify marked damaged", dl, (double) damaged);
    metrics_set (m, "vmdr_repository_newest_snapshot_timestamp_seconds",
                 "When the newest snapshot of the domain not marked damaged was taken "
                 "(Unix time); 0 if there is none", dl, newest);
    metrics_set (m, "vmdr_repository_newest_snapshot_age_seconds",
                 "Age of the newest snapshot of the domain not marked damaged: the "
                 "recovery point objective met now", dl, now - newest);
    if (j == i)
      break;                    /* DOMAIN without snapshots */
  }
  if ((r = metrics_render (m, &text, &len)) < 0) {
    cli_error ("cannot format the metrics: %s", strerror (-r));
    metrics_free (m);
    return VMDR_EXIT_FAILED;
  }
  fwrite (text, 1, len, stdout);
  free (text);
  metrics_free (m);
  return VMDR_EXIT_OK;
}

int
main (int argc, char **argv)
{
  enum { JSON = CHAR_MAX + 1, METRICS };
  static const struct option opts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "json", no_argument, NULL, JSON },
    { "metrics", no_argument, NULL, METRICS },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  const char *repo_opt = NULL, *domain = NULL, *address;
  struct vmdr_repo *repo;
  struct row *rows;
  bool json = false, metrics = false;
  char **ids;
  size_t n, ok = 0;
  int c, r, status = VMDR_EXIT_OK;

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:hV", opts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case JSON: json = true; break;
    case METRICS: metrics = true; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  if (optind < argc)
    domain = argv[optind++];
  if (optind < argc)
    cli_usage_error ("unexpected argument '%s'", argv[optind]);
  if (json && metrics)
    cli_usage_error ("--json and --metrics exclude each other");
  if (domain && !vmdr_domain_name_valid (domain))
    cli_usage_error ("invalid domain name '%s'", domain);
  address = cmd_repo_address (repo_opt);
  if ((repo = cmd_open_repo (address, false)) == NULL)
    return VMDR_EXIT_FAILED;
  if ((r = vmdr_snapshot_list (repo, domain, &ids, &n)) < 0) {
    cli_error ("cannot list snapshots in '%s': %s", address, strerror (-r));
    vmdr_repo_close (repo);
    return VMDR_EXIT_FAILED;
  }
  if (metrics) {
    status = print_metrics (repo, address, domain, ids, n);
    vmdr_strv_free (ids, n);
    vmdr_repo_close (repo);
    return status;
  }
  rows = calloc (n ? n : 1, sizeof *rows);
  if (rows == NULL) {
    cli_error ("out of memory");
    return VMDR_EXIT_FAILED;
  }
  for (size_t i = 0; i < n; i++) {
    struct row *w = &rows[ok];
    if ((r = vmdr_manifest_get (repo, ids[i], &w->m)) < 0) {
      cli_warn ("cannot read snapshot '%s': %s; skipped", ids[i], strerror (-r));
      status = VMDR_EXIT_WARNINGS;
      continue;
    }
    for (size_t d = 0; d < w->m.ndisks; d++) {
      w->size += w->m.disks[d].virtual_size;
      w->fresh += w->m.disks[d].bytes_new;
    }
    w->damaged = vmdr_damage_is_marked (repo, ids[i]) > 0;
    ok++;
  }
  if (json)
    print_json (rows, ok);
  else
    print_table (rows, ok);
  for (size_t i = 0; i < ok; i++)
    vmdr_manifest_clear (&rows[i].m);
  free (rows);
  vmdr_strv_free (ids, n);
  vmdr_repo_close (repo);
  return status;
}
