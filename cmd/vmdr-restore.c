/* vmdr-restore: bring a snapshot's disks (and memory) back as image files. */
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
#include "progress.h"
#include "restore.h"

#define MAX_DISK_ARGS 64

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-restore -r REPO [OPTIONS] SNAPSHOT\n"
"\n"
"Write the disks of SNAPSHOT (an id, DOMAIN@latest or DOMAIN@TIME, the\n"
"newest at or before TIME) as sparse image files named NAME-TARGET.FORMAT,\n"
"verifying every chunk against its digest.  A damaged chunk stops the\n"
"restore with an error naming it, and nothing is left behind.\n"
"\n"
"Options:\n"
"  -r, --repo=REPO        the repository (default: $VMDR_REPO)\n"
"  -o, --output=DIR       where the images go (default: the current directory)\n"
"      --format=FMT       raw or qcow2 (default: each disk's own format)\n"
"      --disks=vda,vdb    restore only these disks\n"
"      --name=NAME        name the images (and the guest) NAME, not the domain's\n"
"      --with-memory      also the memory image, as NAME.save\n"
"      --force            replace existing files\n"
"  -j, --jobs=N           parallel readers (default 2)\n"
"      --progress         a progress line on stderr even when it is no terminal\n"
"      --no-progress      none even on a terminal\n"
"      --json             one JSON object on stdout\n"
"  -q, --quiet            no warnings either\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Exit status: 0 done, 1 failed, 2 usage.\n");
  exit (status);
}

struct opts {
  struct vmdr_restore_files_opts files;
  bool json, quiet;
  char *disk_buf;
  const char *disks[MAX_DISK_ARGS];
};

static void
parse_disks (struct opts *o, const char *arg)
{
  char *save = NULL, *t;

  free (o->disk_buf);
  o->disk_buf = strdup (arg);
  o->files.ndisks = 0;
  for (t = strtok_r (o->disk_buf, ",", &save); t; t = strtok_r (NULL, ",", &save)) {
    if (o->files.ndisks == MAX_DISK_ARGS || strlen (t) >= 32)
      cli_usage_error ("invalid --disks '%s'", arg);
    o->disks[o->files.ndisks++] = t;
  }
  if (o->files.ndisks == 0)
    cli_usage_error ("invalid --disks '%s'", arg);
  o->files.disks = o->disks;
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
print_json (const struct vmdr_manifest *m, int r, const struct vmdr_restore_result *res,
            double secs)
{
  json_object *o = json_object_new_object (), *d = json_object_new_array ();

  json_object_object_add (o, "snapshot", json_object_new_string (m->id));
  json_object_object_add (o, "ok", json_object_new_boolean (r == 0));
  json_object_object_add (o, "seconds", json_object_new_double (secs));
  json_object_object_add (o, "bytes", json_object_new_int64 ((int64_t) res->bytes));
  for (size_t i = 0; r == 0 && i < res->ndisks; i++) {
    json_object *dj = json_object_new_object ();
    json_object_object_add (dj, "target", json_object_new_string (res->disks[i].target));
    json_object_object_add (dj, "path", json_object_new_string (res->disks[i].path));
    json_object_object_add (dj, "format", json_object_new_string (res->disks[i].format));
    json_object_object_add (dj, "virtual_size", json_object_new_int64 ((int64_t) res->disks[i].virtual_size));
    json_object_object_add (dj, "bytes", json_object_new_int64 ((int64_t) res->disks[i].bytes));
    json_object_array_add (d, dj);
  }
  json_object_object_add (o, "disks", d);
  json_object_object_add (o, "memory", r == 0 && res->memory_path
                          ? json_object_new_string (res->memory_path) : NULL);
  json_object_object_add (o, "error", r < 0 ? json_object_new_string (res->error) : NULL);
  printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (o);
}

/* Open REPO, find SELECTOR's manifest; NULL after a message. */
static struct vmdr_repo *
open_snapshot (const char *address, const char *selector, struct vmdr_manifest *m)
{
  struct vmdr_repo *repo = cmd_open_repo (address, true);
  char id[VMDR_SNAPSHOT_ID_MAX];
  int r;

  if (repo == NULL)
    return NULL;
  r = vmdr_snapshot_resolve (repo, selector, id);
  if (r == 0)
    r = vmdr_manifest_get (repo, id, m);
  if (r == -ENOENT)
    cli_error ("no snapshot '%s' in '%s'", selector, address);
  else if (r == -EINVAL)
    cli_usage_error ("invalid snapshot '%s' (an id, DOMAIN@latest or DOMAIN@TIME)", selector);
  else if (r < 0)
    cli_error ("cannot read snapshot '%s': %s", selector, strerror (-r));
  if (r < 0) {
    vmdr_repo_close (repo);
    return NULL;
  }
  return repo;
}

int
main (int argc, char **argv)
{
  enum { FORMAT = CHAR_MAX + 1, DISKS, NAME, WITH_MEMORY, FORCE, JSON, PROGRESS,
         NO_PROGRESS };
  static const struct option lopts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "output", required_argument, NULL, 'o' },
    { "format", required_argument, NULL, FORMAT },
    { "disks", required_argument, NULL, DISKS },
    { "name", required_argument, NULL, NAME },
    { "with-memory", no_argument, NULL, WITH_MEMORY },
    { "force", no_argument, NULL, FORCE },
    { "jobs", required_argument, NULL, 'j' },
    { "json", no_argument, NULL, JSON },
    { "progress", no_argument, NULL, PROGRESS },
    { "no-progress", no_argument, NULL, NO_PROGRESS },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  struct opts o = { .files = { .dir = ".", .io = { .threads = 2 } } };
  const char *repo_opt = NULL, *address;
  struct vmdr_manifest m = { 0 };
  struct vmdr_restore_result res;
  struct vmdr_repo *repo;
  struct progress prog;
  int c, show = -1, r;
  double t0 = now ();

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:o:j:qhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case 'o': o.files.dir = optarg; break;
    case FORMAT:
      if (!vmdr_restore_format_valid (optarg))
        cli_usage_error ("invalid --format '%s' (raw or qcow2)", optarg);
      o.files.format = optarg;
      break;
    case DISKS: parse_disks (&o, optarg); break;
    case NAME:
      if (!vmdr_domain_name_valid (optarg))
        cli_usage_error ("invalid --name '%s'", optarg);
      o.files.name = optarg;
      break;
    case WITH_MEMORY: o.files.memory = true; break;
    case FORCE: o.files.io.force = true; break;
    case 'j': o.files.io.threads = cmd_jobs_arg (optarg); break;
    case JSON: o.json = true; break;
    case PROGRESS: show = 1; break;
    case NO_PROGRESS: show = 0; break;
    case 'q': o.quiet = true; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  if (optind == argc)
    cli_usage_error ("no snapshot given");
  if (argc - optind > 1)
    cli_usage_error ("one snapshot at a time ('%s' is extra)", argv[optind + 1]);
  address = cmd_repo_address (repo_opt);
  if ((repo = open_snapshot (address, argv[optind], &m)) == NULL)
    return VMDR_EXIT_FAILED;
  progress_init (&prog, o.quiet ? 0 : show);
  progress_begin (&prog, m.id);
  o.files.io.progress = progress_cb;
  o.files.io.popaque = &prog;
  r = vmdr_restore_snapshot_files (repo, &m, &o.files, &res);
  progress_end (&prog);
  if (r < 0)
    cli_error ("%s", res.error);
  if (o.json)
    print_json (&m, r, &res, now () - t0);
  vmdr_restore_result_clear (&res);
  vmdr_manifest_clear (&m);
  free (o.disk_buf);
  vmdr_repo_close (repo);
  return r < 0 ? VMDR_EXIT_FAILED : VMDR_EXIT_OK;
}
