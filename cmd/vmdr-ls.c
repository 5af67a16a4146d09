/* vmdr-ls: list the snapshots in a repository. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "cmd-repo.h"
#include "manifest.h"
#include "verify.h"

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-ls -r REPO [--json] [DOMAIN]\n"
"\n"
"List the snapshots in REPO, of every domain or of DOMAIN: id, creation\n"
"time, kind, consistency, logical size, bytes new in the repository when\n"
"it was taken, and whether vmdr-verify found it damaged.\n"
"\n"
"Options:\n"
"  -r, --repo=REPO  the repository (default: $VMDR_REPO)\n"
"      --json       one JSON object on stdout\n"
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

int
main (int argc, char **argv)
{
  enum { JSON = CHAR_MAX + 1 };
  static const struct option opts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "json", no_argument, NULL, JSON },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  const char *repo_opt = NULL, *domain = NULL, *address;
  struct vmdr_repo *repo;
  struct row *rows;
  bool json = false;
  char **ids;
  size_t n, ok = 0;
  int c, r, status = VMDR_EXIT_OK;

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:hV", opts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case JSON: json = true; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  if (optind < argc)
    domain = argv[optind++];
  if (optind < argc)
    cli_usage_error ("unexpected argument '%s'", argv[optind]);
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
