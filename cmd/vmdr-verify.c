/* vmdr-verify: read back and check every chunk snapshots reference. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <json-c/json.h>

#include "cli.h"
#include "cmd-repo.h"
#include "metrics.h"
#include "verify.h"

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-verify -r REPO [OPTIONS] [SNAPSHOT...]\n"
"\n"
"Check that every chunk and index node the snapshots reference is present\n"
"and intact (its checksum, then its digest).  All snapshots by default;\n"
"SNAPSHOT is an id, DOMAIN@latest or DOMAIN@TIME.  A damaged snapshot is\n"
"marked so that it is never used as the base of an incremental; a full\n"
"verify that finds it whole again removes the mark.\n"
"\n"
"Options:\n"
"  -r, --repo=REPO    the repository (default: $VMDR_REPO)\n"
"      --sample=PCT   check a random PCT percent of the chunks (index nodes: all)\n"
"  -j, --jobs=N       parallel readers (default 2)\n"
"      --json         one JSON object on stdout\n"
"      --metrics-file=PATH\n"
"                     write Prometheus metrics of the run to PATH for\n"
"                     node_exporter's textfile collector (last attempt and\n"
"                     success times, exit status, duration; per domain:\n"
"                     snapshots checked and damaged); atomically, and when the\n"
"                     run fails too\n"
"  -q, --quiet        print only damage\n"
"  -h, --help         show this help and exit\n"
"  -V, --version      show the version and exit\n"
"\n"
"Exit status: 0 all intact, 1 damage found or verify failed, 2 usage,\n"
"3 all intact but the metrics file could not be written.\n");
  exit (status);
}

struct opts {
  bool json, quiet;
  struct vmdr_verify_opts v;
  const char *metrics_file;
  struct metrics *mx, *prev;    /* --metrics-file; NULL without */
  char repo_label[1024];
  double t0;
};

/* Count snapshot ID as checked (and DAMAGED) for its domain. */
static void
record (const struct opts *o, const char *id, bool damaged)
{
  char domain[VMDR_DOMAIN_NAME_MAX + 1];
  const char *slash = strrchr (id, '/');
  const char *const labels[] = { "domain", domain, "repo", o->repo_label, NULL };

  snprintf (domain, sizeof domain, "%.*s", slash ? (int) (slash - id) : (int) strlen (id), id);
  metrics_add (o->mx, "vmdr_verify_snapshots_checked",
               "Snapshots of the domain the last attempt verified", labels, 1);
  metrics_add (o->mx, "vmdr_verify_snapshots_damaged",
               "Snapshots of the domain the last attempt found damaged", labels, damaged);
}

/* The run's own series, the metrics file written: the exit status. */
static int
finish (struct opts *o, int status)
{
  const char *const labels[] = { "repo", o->repo_label, NULL };

  metrics_set_attempt (o->mx, o->prev, "verify", labels, status, metrics_now (),
                       cmd_now () - o->t0);
  return cmd_metrics_end (o->metrics_file, o->mx, o->prev, status);
}

/* Verify one snapshot and report it; returns 1 if damaged, 0, or -errno. */
static int
verify_one (struct vmdr_repo *repo, const char *id, const struct opts *o,
            json_object *out)
{
  struct vmdr_manifest m = { 0 };
  struct vmdr_verify_result res;
  json_object *j = json_object_new_object ();
  char why[512] = "", size[16], hex[VMDR_DIGEST_HEX_LEN + 1];
  int r;

  json_object_object_add (j, "id", json_object_new_string (id));
  r = vmdr_manifest_get (repo, id, &m);
  if (r == -ENOENT) {
    cli_error ("no snapshot '%s'", id);
    json_object_put (j);
    return -ENOENT;
  }
  if (r < 0) {
    snprintf (why, sizeof why, "manifest unreadable: %s", vmdr_damage_text (r));
    memset (&res, 0, sizeof res);
  }
  else if ((r = vmdr_verify_snapshot (repo, &m, &o->v, &res)) == -EBADMSG) {
    if (res.tree_err)
      snprintf (why, sizeof why, "disk %s: index damaged: %s",
                m.disks[res.tree_disk].target, vmdr_damage_text (res.tree_err));
    else {
      vmdr_digest_to_hex (&res.damage[0].digest, hex);
      size_t k = res.damage[0].disk;
      snprintf (why, sizeof why, "%llu chunk%s damaged; first: %s %s offset %llu chunk %s: %s",
                (unsigned long long) res.damaged_chunks, res.damaged_chunks == 1 ? "" : "s",
                k < m.ndisks ? "disk" : "the", k < m.ndisks ? m.disks[k].target : "memory image",
                (unsigned long long) res.damage[0].offset, hex,
                vmdr_damage_text (res.damage[0].err));
    }
  }
  else if (r < 0) {
    cli_error ("cannot verify '%s': %s", id, strerror (-r));
    vmdr_manifest_clear (&m);
    json_object_put (j);
    return r;
  }
  if (why[0]) {
    vmdr_damage_mark (repo, id, why);
    if (!o->json)
      printf ("%s: DAMAGED: %s\n", id, why);
  }
  else {
    if (o->v.sample_permille == 1000)
      vmdr_damage_clear (repo, id);
    if (!o->json && !o->quiet)
      printf ("%s: ok (%llu chunks, %s read)\n", id, (unsigned long long) res.chunks,
              cmd_size (res.bytes, size));
  }
  record (o, id, why[0] != 0);
  json_object_object_add (j, "damaged", json_object_new_boolean (why[0] != 0));
  json_object_object_add (j, "chunks_checked", json_object_new_int64 ((int64_t) res.chunks));
  json_object_object_add (j, "bytes_checked", json_object_new_int64 ((int64_t) res.bytes));
  json_object_object_add (j, "damaged_chunks", json_object_new_int64 ((int64_t) res.damaged_chunks));
  json_object_object_add (j, "problem", why[0] ? json_object_new_string (why) : NULL);
  json_object_array_add (out, j);
  vmdr_verify_result_clear (&res);
  vmdr_manifest_clear (&m);
  return why[0] ? 1 : 0;
}

static unsigned
sample_arg (const char *arg)
{
  char *end;
  double pct;

  errno = 0;
  pct = strtod (arg, &end);
  if (errno || end == arg || *end || !(pct > 0 && pct <= 100))
    cli_usage_error ("invalid sample '%s' (a percentage above 0, at most 100)", arg);
  return (unsigned) (pct * 10 + 0.5) ? (unsigned) (pct * 10 + 0.5) : 1;
}

int
main (int argc, char **argv)
{
  enum { JSON = CHAR_MAX + 1, SAMPLE, METRICS_FILE };
  static const struct option lopts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "sample", required_argument, NULL, SAMPLE },
    { "jobs", required_argument, NULL, 'j' },
    { "json", no_argument, NULL, JSON },
    { "metrics-file", required_argument, NULL, METRICS_FILE },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  struct opts o = { .v = { .threads = 2, .sample_permille = 1000 }, .t0 = cmd_now () };
  const char *repo_opt = NULL, *address;
  struct vmdr_repo *repo;
  char **ids = NULL;
  size_t n = 0, damaged = 0, failed = 0;
  int c, r;

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:j:qhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case SAMPLE: o.v.sample_permille = sample_arg (optarg); break;
    case 'j': o.v.threads = cmd_jobs_arg (optarg); break;
    case JSON: o.json = true; break;
    case METRICS_FILE:
      if (*optarg == '\0')
        cli_usage_error ("invalid --metrics-file ''");
      o.metrics_file = optarg;
      break;
    case 'q': o.quiet = true; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  address = cmd_repo_address (repo_opt);
  metrics_address_label (address, o.repo_label, sizeof o.repo_label);
  cmd_metrics_begin (o.metrics_file, &o.mx, &o.prev);
  if ((repo = cmd_open_repo (address, true)) == NULL)
    return finish (&o, VMDR_EXIT_FAILED);
  if (getrandom (&o.v.seed, sizeof o.v.seed, 0) != sizeof o.v.seed)
    o.v.seed = 0;
  if (vmdr_digest_set_new (&o.v.seen) < 0) {
    cli_error ("out of memory");
    return finish (&o, VMDR_EXIT_FAILED);
  }

  if (optind == argc) {
    if ((r = vmdr_snapshot_list (repo, NULL, &ids, &n)) < 0) {
      cli_error ("cannot list snapshots in '%s': %s", address, strerror (-r));
      return finish (&o, VMDR_EXIT_FAILED);
    }
  }
  else {
    n = (size_t) (argc - optind);
    ids = calloc (n, sizeof *ids);
    for (size_t i = 0; ids && i < n; i++) {
      char id[VMDR_SNAPSHOT_ID_MAX];
      r = vmdr_snapshot_resolve (repo, argv[optind + (int) i], id);
      if (r == -EINVAL)
        cli_usage_error ("invalid snapshot '%s' (an id, DOMAIN@latest or DOMAIN@TIME)",
                         argv[optind + (int) i]);
      if (r < 0) {
        cli_error ("no snapshot matches '%s'", argv[optind + (int) i]);
        return finish (&o, VMDR_EXIT_FAILED);
      }
      ids[i] = strdup (id);
    }
  }

  json_object *out = json_object_new_array ();
  for (size_t i = 0; i < n; i++) {
    r = verify_one (repo, ids[i], &o, out);
    if (r == 1)
      damaged++;
    else if (r < 0)
      failed++;
  }
  if (o.json) {
    json_object *top = json_object_new_object ();
    json_object_object_add (top, "snapshots", out);
    json_object_object_add (top, "damaged", json_object_new_int64 ((int64_t) damaged));
    cmd_json_print (top);
  }
  else
    json_object_put (out);
  if (damaged)
    cli_error ("%zu of %zu snapshot%s damaged", damaged, n, n == 1 ? "" : "s");
  vmdr_digest_set_free (o.v.seen);
  vmdr_strv_free (ids, n);
  vmdr_repo_close (repo);
  return finish (&o, damaged || failed ? VMDR_EXIT_FAILED : VMDR_EXIT_OK);
}
