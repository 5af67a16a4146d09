/* vmdr-restore: bring a snapshot's disks (and memory) back as image files,
 * and the guest back on a libvirt host: defined, started or resumed, or
 * into an isolated test lab. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "cmd-libvirt.h"
#include "cmd-repo.h"
#include "bringup.h"
#include "lab.h"
#include "progress.h"
#include "restore.h"

#define MAX_DISK_ARGS 64

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-restore -r REPO [OPTIONS] SNAPSHOT\n"
"       vmdr-restore -r REPO [OPTIONS] SNAPSHOT --archive FILE|-\n"
"       vmdr-restore --cleanup-lab [-c URI]\n"
"\n"
"Write the disks of SNAPSHOT (an id, DOMAIN@latest or DOMAIN@TIME, the\n"
"newest at or before TIME) as sparse image files named NAME-TARGET.FORMAT,\n"
"verifying every chunk against its digest.  A damaged chunk stops the\n"
"restore with an error naming it, and nothing is left behind.  With\n"
"--define, the guest is defined on a libvirt host on top of them.\n"
"\n"
"With --archive, the images go into one POSIX pax tar archive instead (FILE,\n"
"or - for standard output), streamed, for other tools: NAME.xml (the domain\n"
"XML as the snapshot recorded it), NAME-TARGET.raw for each disk and, with\n"
"--with-memory, NAME.save, the images as sparse entries that GNU tar and\n"
"bsdtar extract as sparse files.  A damaged chunk leaves no archive FILE.\n"
"\n"
"Options:\n"
"  -r, --repo=REPO        the repository (default: $VMDR_REPO)\n"
"  -o, --output=DIR       where the images go (default: the current directory)\n"
"      --archive=FILE     write them as one tar archive FILE (- for standard\n"
"                         output) instead; not with -o, --define or qcow2\n"
"      --format=FMT       raw or qcow2 (default: each disk's own format)\n"
"      --disks=vda,vdb    restore only these disks\n"
"      --name=NAME        name the images (and the guest) NAME, not the domain's\n"
"      --with-memory      also the memory image, as NAME.save; with --define,\n"
"                         resume the guest from it where it was (it keeps its\n"
"                         name, UUID and MAC addresses)\n"
"      --force            replace existing files (and, with --define, a domain\n"
"                         of the same name or UUID, stopping it if it runs)\n"
"      --define=URI       define the guest on this libvirt host: disks on the\n"
"                         restored images, a new UUID and MAC addresses,\n"
"                         host-specific devices dropped with a warning\n"
"      --keep-identity    keep the guest's UUID and MAC addresses\n"
"      --start            start the guest once defined\n"
"      --test-lab         every NIC on the isolated network " VMDR_LAB_NETWORK " (made\n"
"                         if missing: no forward, no route out), name NAME-lab\n"
"      --cleanup-lab      remove every test-lab guest, its images and the lab\n"
"                         network from the libvirt host (-c URI)\n"
"  -c, --connect=URI      the libvirt host of --cleanup-lab\n"
"  -j, --jobs=N           parallel readers (default 2)\n"
"      --progress         a progress line on stderr even when it is no terminal\n"
"      --no-progress      none even on a terminal\n"
"      --json             one JSON object on stdout\n"
"  -q, --quiet            no warnings either\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Exit status: 0 done, 1 failed, 2 usage, 3 done with warnings (devices\n"
"dropped).\n");
  exit (status);
}

struct opts {
  struct vmdr_restore_files_opts files;
  struct vmdr_bringup_opts guest;
  struct progress prog;
  const char *define_uri, *uri;
  const char *archive;          /* --archive FILE, "-": standard output */
  bool cleanup_lab;
  bool json, quiet;
  char *disk_buf;
  const char *disks[MAX_DISK_ARGS];
};

static json_object *
guest_json (const struct opts *o, const struct vmdr_bringup_result *g)
{
  json_object *j, *w;

  if (o->define_uri == NULL)
    return NULL;
  j = json_object_new_object ();
  w = json_object_new_array ();
  json_object_object_add (j, "uri", json_object_new_string (o->define_uri));
  json_object_object_add (j, "name", json_object_new_string (g->name));
  json_object_object_add (j, "uuid", g->uuid[0] ? json_object_new_string (g->uuid) : NULL);
  json_object_object_add (j, "defined", json_object_new_boolean (g->defined));
  json_object_object_add (j, "started", json_object_new_boolean (g->started));
  json_object_object_add (j, "resumed", json_object_new_boolean (g->resumed));
  json_object_object_add (j, "clock_synced", json_object_new_boolean (g->clock_synced));
  json_object_object_add (j, "test_lab", json_object_new_boolean (o->guest.test_lab));
  for (size_t i = 0; i < g->warnings.n; i++)
    json_object_array_add (w, json_object_new_string (g->warnings.w[i]));
  json_object_object_add (j, "warnings", w);
  return j;
}

static void
print_json (const struct opts *opts, const struct vmdr_manifest *m, int r,
            const struct vmdr_restore_result *res, const struct vmdr_bringup_result *g,
            const char *error, double secs)
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
  json_object_object_add (o, "memory", r == 0 && res->memory_path && !g->resumed
                          ? json_object_new_string (res->memory_path) : NULL);
  if (opts->archive) {          /* the disks' and memory's paths are entry names */
    json_object *a = json_object_new_object ();
    json_object_object_add (a, "path", json_object_new_string (opts->archive));
    json_object_object_add (a, "bytes", json_object_new_int64 ((int64_t) res->archive_bytes));
    json_object_object_add (o, "archive", a);
  }
  json_object_object_add (o, "guest", guest_json (opts, g));
  json_object_object_add (o, "error", r < 0 ? json_object_new_string (error) : NULL);
  cmd_json_print (o);
}

/* --cleanup-lab: its exit status. */
static int
cleanup_lab (const struct opts *o)
{
  virConnectPtr conn = cmd_libvirt_connect (o->uri);
  char err[256];
  size_t removed = 0;
  int r;

  if (conn == NULL)
    return VMDR_EXIT_FAILED;
  r = vmdr_lab_cleanup (conn, VMDR_LAB_NETWORK, &removed, err, sizeof err);
  virConnectClose (conn);
  if (r < 0) {
    cli_error ("cannot clean up the test lab: %s", err);
    return VMDR_EXIT_FAILED;
  }
  if (!o->quiet && !o->json)
    printf ("removed %zu test-lab guest%s and the network %s\n", removed,
            removed == 1 ? "" : "s", VMDR_LAB_NETWORK);
  if (o->json)
    printf ("{ \"removed\": %zu }\n", removed);
  return VMDR_EXIT_OK;
}

/* Restore M (and define it on CONN when asked); 0 or -errno, after a
 * message. */
static int
restore (struct vmdr_repo *repo, const struct vmdr_manifest *m, struct opts *o,
         virConnectPtr conn, struct vmdr_restore_result *res,
         struct vmdr_bringup_result *g, double t0)
{
  const char *error;
  int r = 0;

  memset (res, 0, sizeof *res);
  memset (g, 0, sizeof *g);
  if (conn) {
    r = vmdr_bringup_check (conn, m, &o->guest, g);
    o->files.name = g->name;
  }
  if (r == 0 && o->archive)
    r = vmdr_restore_snapshot_archive (repo, m, &o->files,
                                       strcmp (o->archive, "-") == 0 ? NULL : o->archive,
                                       STDOUT_FILENO, res);
  else if (r == 0)
    r = vmdr_restore_snapshot_files (repo, m, &o->files, res);
  error = g->error[0] ? g->error : res->error;
  if (r == 0 && conn && (r = vmdr_bringup (conn, m, res, &o->guest, g)) < 0) {
    for (size_t i = 0; i < res->ndisks; i++)   /* no half a guest */
      unlink (res->disks[i].path);
    if (res->memory_path)
      unlink (res->memory_path);
    error = g->error;
  }
  progress_end (&o->prog);
  if (res->stale_removed && !o->quiet)
    cli_warn ("removed %zu temporary file%s of an interrupted restore", res->stale_removed,
              res->stale_removed == 1 ? "" : "s");
  if (r < 0)
    cli_error ("%s", error);
  for (size_t i = 0; !o->quiet && !o->json && i < g->warnings.n; i++)
    cli_warn ("%s", g->warnings.w[i]);
  if (o->json)
    print_json (o, m, r, res, g, error, cmd_now () - t0);
  return r;
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
         NO_PROGRESS, DEFINE, KEEP_IDENTITY, START, TEST_LAB, CLEANUP_LAB, ARCHIVE };
  static const struct option lopts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "output", required_argument, NULL, 'o' },
    { "archive", required_argument, NULL, ARCHIVE },
    { "format", required_argument, NULL, FORMAT },
    { "disks", required_argument, NULL, DISKS },
    { "name", required_argument, NULL, NAME },
    { "with-memory", no_argument, NULL, WITH_MEMORY },
    { "force", no_argument, NULL, FORCE },
    { "define", required_argument, NULL, DEFINE },
    { "keep-identity", no_argument, NULL, KEEP_IDENTITY },
    { "start", no_argument, NULL, START },
    { "test-lab", no_argument, NULL, TEST_LAB },
    { "cleanup-lab", no_argument, NULL, CLEANUP_LAB },
    { "connect", required_argument, NULL, 'c' },
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
  struct vmdr_bringup_result g;
  struct vmdr_repo *repo;
  virConnectPtr conn = NULL;
  int c, show = -1, r;
  bool output_given = false;
  double t0 = cmd_now ();

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:o:c:j:qhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case 'o': o.files.dir = optarg; output_given = true; break;
    case ARCHIVE: o.archive = optarg; break;
    case FORMAT:
      if (!vmdr_restore_format_valid (optarg))
        cli_usage_error ("invalid --format '%s' (raw or qcow2)", optarg);
      o.files.format = optarg;
      break;
    case DISKS:
      o.files.ndisks = cmd_disks_arg (optarg, &o.disk_buf, o.disks, MAX_DISK_ARGS);
      o.files.disks = o.disks;
      break;
    case NAME:
      if (!vmdr_domain_name_valid (optarg))
        cli_usage_error ("invalid --name '%s'", optarg);
      o.files.name = o.guest.name = optarg;
      break;
    case WITH_MEMORY: o.files.memory = o.guest.memory = true; break;
    case FORCE: o.files.io.force = o.guest.force = true; break;
    case DEFINE: o.define_uri = optarg; break;
    case KEEP_IDENTITY: o.guest.keep_identity = true; break;
    case START: o.guest.start = true; break;
    case TEST_LAB: o.guest.test_lab = true; break;
    case CLEANUP_LAB: o.cleanup_lab = true; break;
    case 'c': o.uri = optarg; break;
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
  if (o.cleanup_lab) {
    if (optind < argc)
      cli_usage_error ("--cleanup-lab takes no snapshot");
    return cleanup_lab (&o);
  }
  if (optind == argc)
    cli_usage_error ("no snapshot given");
  if (argc - optind > 1)
    cli_usage_error ("one snapshot at a time ('%s' is extra)", argv[optind + 1]);
  if (!o.define_uri && (o.guest.keep_identity || o.guest.start || o.guest.test_lab))
    cli_usage_error ("--keep-identity, --start and --test-lab need --define URI");
  if (o.archive) {
    bool out = strcmp (o.archive, "-") == 0;
    if (*o.archive == '\0')
      cli_usage_error ("no archive: give --archive FILE, or - for standard output");
    if (output_given)
      cli_usage_error ("--archive and -o are two different outputs: give one");
    if (o.define_uri)
      cli_usage_error ("--define needs image files: not with --archive");
    if (o.files.format && strcmp (o.files.format, "raw") != 0)
      cli_usage_error ("--archive holds raw images: not --format %s", o.files.format);
    if (out && o.json)
      cli_usage_error ("--json needs standard output: give --archive FILE");
    if (out && isatty (STDOUT_FILENO))
      cli_usage_error ("standard output is a terminal: redirect it, or give --archive FILE");
    if (out)
      signal (SIGPIPE, SIG_IGN);  /* a reader gone: EPIPE, and a message */
  }
  if (o.guest.memory && o.define_uri)
    o.guest.start = true;     /* a resume is a start */
  address = cmd_repo_address (repo_opt);
  if (o.define_uri && (conn = cmd_libvirt_connect (o.define_uri)) == NULL)
    return VMDR_EXIT_FAILED;
  if ((repo = open_snapshot (address, argv[optind], &m)) == NULL) {
    if (conn)
      virConnectClose (conn);
    return VMDR_EXIT_FAILED;
  }
  progress_init (&o.prog, o.quiet ? 0 : show);
  progress_begin (&o.prog, m.id);
  o.files.io.progress = progress_cb;
  o.files.io.popaque = &o.prog;
  r = restore (repo, &m, &o, conn, &res, &g, t0);
  vmdr_restore_result_clear (&res);
  vmdr_manifest_clear (&m);
  free (o.disk_buf);
  vmdr_repo_close (repo);
  if (conn)
    virConnectClose (conn);
  return r < 0 ? VMDR_EXIT_FAILED : g.warnings.n ? VMDR_EXIT_WARNINGS : VMDR_EXIT_OK;
}
