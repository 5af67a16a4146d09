/* vmdr-prune: remove snapshots by retention rules, then collect garbage. */
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
#include "metrics.h"
#include "manifest.h"
#include "prune.h"
#include "verify.h"

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-prune -r REPO --keep-RULE N... [OPTIONS] [DOMAIN...]\n"
"\n"
"Remove the snapshots of each DOMAIN (default: all) that no rule keeps,\n"
"then delete the packs no remaining snapshot references.  Every snapshot\n"
"is self-contained: removing one never breaks another.\n"
"\n"
"Rules (at least one):\n"
"      --keep-last=N      the newest N snapshots\n"
"      --keep-hourly=N    the newest snapshot of each of the last N hours that have one\n"
"      --keep-daily=N     ... days\n"
"      --keep-weekly=N    ... ISO weeks\n"
"      --keep-monthly=N   ... months\n"
"      --keep-yearly=N    ... years\n"
"\n"
"Options:\n"
"  -r, --repo=REPO        the repository (default: $VMDR_REPO)\n"
"  -n, --dry-run          say what would be removed, change nothing\n"
"      --grace=SECONDS    never delete packs younger than this (default 3600)\n"
"      --no-gc            remove snapshots only\n"
"      --json             one JSON object on stdout\n"
"      --metrics-file=PATH\n"
"                         write Prometheus metrics of the run to PATH for\n"
"                         node_exporter's textfile collector (last attempt and\n"
"                         success times, exit status, duration, bytes freed;\n"
"                         per domain: snapshots removed); atomically, and when\n"
"                         the run fails too\n"
"  -q, --quiet            print only errors\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Exit status: 0 done, 1 failed, 2 usage, 3 done but the metrics file could\n"
"not be written, 4 a backup is running (try later).\n");
  exit (status);
}

/* --grace: seconds, 0 to 1000000. */
static long
grace_arg (const char *arg)
{
  return cmd_long_arg ("--grace", arg, 0, 1000000);
}

struct opts {
  struct vmdr_keep keep;
  bool dry_run, gc, json, quiet;
  long grace;
  const char *metrics_file;
  struct metrics *mx, *prev;    /* --metrics-file; NULL without */
  char repo_label[1024];
  double t0;
  uint64_t freed;               /* by GC, for the metrics */
};

/* Add N to the snapshots removed of DOMAIN (0: the series exists). */
static void
record (const struct opts *o, const char *domain, double n)
{
  const char *const labels[] = { "domain", domain, "repo", o->repo_label, NULL };

  metrics_add (o->mx, "vmdr_prune_snapshots_removed",
               "Snapshots of the domain the last attempt removed", labels, n);
}

/* The run's own series, the metrics file written: the exit status. */
static int
finish (struct opts *o, int status)
{
  const char *const labels[] = { "repo", o->repo_label, NULL };

  metrics_set_attempt (o->mx, o->prev, "prune", labels, status, metrics_now (),
                       cmd_now () - o->t0);
  metrics_set (o->mx, "vmdr_prune_bytes_freed",
               "Bytes of packs the garbage collection of the last attempt deleted", labels,
               (double) o->freed);
  return cmd_metrics_end (o->metrics_file, o->mx, o->prev, status);
}

struct pruning {
  const struct opts *o;
  const char *domain;
  json_object *removed;
};

static void
pruned (void *opaque, const char *id)
{
  struct pruning *p = opaque;

  if (!p->o->json && !p->o->quiet)
    printf ("%s %s\n", p->o->dry_run ? "would remove" : "removed", id);
  json_object_array_add (p->removed, json_object_new_string (id));
  record (p->o, p->domain, 1);
}

/* Apply the rules to one domain's snapshots; counts into *removed. */
static int
prune_domain (struct vmdr_repo *repo, const char *domain, const struct opts *o,
              json_object *removed_j, size_t *removed)
{
  struct pruning p = { o, domain, removed_j };
  size_t n;
  int r;

  record (o, domain, 0);
  r = vmdr_retention_apply (repo, domain, &o->keep, o->dry_run, pruned, &p, &n);
  *removed += n;
  if (r < 0)
    cli_error ("cannot prune '%s': %s", domain, strerror (-r));
  return r;
}

static int
run_gc (struct vmdr_repo *repo, struct opts *o, json_object *top)
{
  struct vmdr_gc_stats st;
  char freed[16], dead[16];
  int r = vmdr_gc (repo, o->grace, o->dry_run, &st);

  if (r == -EBUSY) {
    cli_error ("a backup or another prune is running; garbage collection skipped, try later");
    return VMDR_EXIT_BUSY;
  }
  if (r < 0) {
    cli_error ("garbage collection failed: %s; nothing was deleted after the failure",
               strerror (-r));
    return VMDR_EXIT_FAILED;
  }
  if (!o->json && !o->quiet)
    printf ("gc: %llu snapshots, %llu objects live; %s %llu of %llu packs (%s); "
            "%llu unreferenced packs within the grace period; %s unreferenced in %llu partly live packs\n",
            (unsigned long long) st.snapshots, (unsigned long long) st.objects_reachable,
            o->dry_run ? "would delete" : "deleted", (unsigned long long) st.packs_deleted,
            (unsigned long long) st.packs, cmd_size (st.bytes_deleted, freed),
            (unsigned long long) st.packs_young, cmd_size (st.bytes_unreferenced, dead),
            (unsigned long long) st.packs_partial);
  o->freed = st.bytes_deleted;
  json_object *g = json_object_new_object ();
  json_object_object_add (g, "packs", json_object_new_int64 ((int64_t) st.packs));
  json_object_object_add (g, "packs_deleted", json_object_new_int64 ((int64_t) st.packs_deleted));
  json_object_object_add (g, "bytes_deleted", json_object_new_int64 ((int64_t) st.bytes_deleted));
  json_object_object_add (g, "packs_young", json_object_new_int64 ((int64_t) st.packs_young));
  json_object_object_add (g, "bytes_unreferenced", json_object_new_int64 ((int64_t) st.bytes_unreferenced));
  json_object_object_add (top, "gc", g);
  return VMDR_EXIT_OK;
}

int
main (int argc, char **argv)
{
  enum { KEEP = CHAR_MAX + 1, GRACE = KEEP + CMD_KEEP_COUNT, NO_GC, JSON, METRICS_FILE };
  static const struct option lopts[] = {
    { "repo", required_argument, NULL, 'r' },
    CMD_KEEP_OPTIONS (KEEP),
    { "grace", required_argument, NULL, GRACE },
    { "no-gc", no_argument, NULL, NO_GC },
    { "dry-run", no_argument, NULL, 'n' },
    { "json", no_argument, NULL, JSON },
    { "metrics-file", required_argument, NULL, METRICS_FILE },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  struct opts o = { .gc = true, .grace = 3600, .t0 = cmd_now () };
  const char *repo_opt = NULL, *address;
  struct vmdr_repo *repo;
  char **doms = NULL;
  size_t ndoms = 0, removed = 0;
  int c, r, status = VMDR_EXIT_OK;

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:nqhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case KEEP ... KEEP + CMD_KEEP_COUNT - 1: cmd_keep_arg (c, KEEP, optarg, &o.keep); break;
    case GRACE: o.grace = grace_arg (optarg); break;
    case NO_GC: o.gc = false; break;
    case 'n': o.dry_run = true; break;
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
  if (!o.keep.last && !o.keep.hourly && !o.keep.daily && !o.keep.weekly &&
      !o.keep.monthly && !o.keep.yearly)
    cli_usage_error ("give at least one --keep-* rule above 0 (nothing would be kept)");
  for (int i = optind; i < argc; i++)
    if (!vmdr_domain_name_valid (argv[i]))
      cli_usage_error ("invalid domain name '%s'", argv[i]);
  address = cmd_repo_address (repo_opt);
  metrics_address_label (address, o.repo_label, sizeof o.repo_label);
  cmd_metrics_begin (o.metrics_file, &o.mx, &o.prev);
  if ((repo = cmd_open_repo (address, true)) == NULL)
    return finish (&o, VMDR_EXIT_FAILED);

  if (optind == argc && (r = vmdr_snapshot_domains (repo, &doms, &ndoms)) < 0) {
    cli_error ("cannot list snapshots in '%s': %s", address, strerror (-r));
    vmdr_repo_close (repo);
    return finish (&o, VMDR_EXIT_FAILED);
  }
  json_object *top = json_object_new_object (), *rm = json_object_new_array ();
  size_t n = doms ? ndoms : (size_t) (argc - optind);
  for (size_t i = 0; i < n && status == VMDR_EXIT_OK; i++)
    if (prune_domain (repo, doms ? doms[i] : argv[optind + (int) i], &o, rm, &removed) < 0)
      status = VMDR_EXIT_FAILED;
  json_object_object_add (top, "removed", rm);
  json_object_object_add (top, "dry_run", json_object_new_boolean (o.dry_run));
  if (status == VMDR_EXIT_OK && o.gc)
    status = run_gc (repo, &o, top);
  if (o.json)
    cmd_json_print (top);
  else
    json_object_put (top);
  vmdr_strv_free (doms, ndoms);
  vmdr_repo_close (repo);
  return finish (&o, status);
}
