/* vmdr-snapshot: back up running domains, incrementally when it can. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <libvirt/virterror.h>

#include "cleanup.h"
#include "cli.h"
#include "cmd-repo.h"
#include "live.h"
#include "metrics.h"
#include "progress.h"

#define MAX_DISK_ARGS 64

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-snapshot [-c URI] -r REPO [OPTIONS] DOMAIN...\n"
"\n"
"Back up each running DOMAIN into REPO: every disk at one point in time,\n"
"through libvirt's backup API.  Incremental (only the blocks written since\n"
"the last snapshot, from QEMU's dirty bitmaps) when a valid chain exists,\n"
"otherwise a full backup, with a warning saying why.  Quiet on success:\n"
"made for cron.\n"
"\n"
"Options:\n"
"  -c, --connect=URI      libvirt connection (default: libvirt's default)\n"
"  -r, --repo=REPO        the repository (default: $VMDR_REPO)\n"
"      --auto             incremental when possible, else full (the default)\n"
"      --full             a full backup, starting a new chain\n"
"      --disks=vda,vdb    back up only these disks (default: every writable disk)\n"
"      --memory           capture RAM too, at the same point as the disks (the\n"
"                         guest pauses briefly; the pause is reported)\n"
"      --quiesce          freeze the guest's file systems through its agent\n"
"                         around the backup point; without an agent, a warning\n"
"      --require-quiesce  the same, but fail without an agent\n"
"      --scratch-dir=DIR  where libvirt keeps scratch files during the backup\n"
"                         (default /var/tmp)\n"
"      --ceph-conf=FILE   RBD disks: the Ceph configuration (default: Ceph's)\n"
"      --ceph-id=NAME     RBD disks: the cephx user (default: the disk's <auth>\n"
"                         username, else admin)\n"
"  -j, --jobs=N           parallel readers and compressors (default 2)\n"
"      --progress         a progress line on stderr even when it is no terminal\n"
"      --no-progress      none even on a terminal\n"
"      --json             one JSON object on stdout\n"
"      --metrics-file=PATH\n"
"                         write Prometheus metrics of the run to PATH for\n"
"                         node_exporter's textfile collector (per domain: last\n"
"                         attempt and success times, exit status, duration,\n"
"                         bytes read and new, pause, chain length); atomically,\n"
"                         and when the run fails too\n"
"  -q, --quiet            no warnings either\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Exit status: 0 done, 1 failed, 2 usage, 3 done with warnings (e.g. fell\n"
"back to a full backup, or the metrics file could not be written), 4 another\n"
"run holds the domain's lock.\n");
  exit (status);
}

struct opts {
  struct vmdr_live_opts live;
  const char *uri;
  bool json, quiet;
  char *disk_buf;
  const char *disks[MAX_DISK_ARGS];
  struct metrics *mx, *prev;    /* --metrics-file; NULL without */
  char repo_label[1024];
};

/* {"base": FULL, "length": N, "complete": true}; null when unknown. */
static json_object *
chain_json (const struct vmdr_chain *c)
{
  json_object *o;

  if (c->length == 0)
    return NULL;
  o = json_object_new_object ();
  json_object_object_add (o, "base", json_object_new_string (c->base));
  json_object_object_add (o, "length", json_object_new_int64 ((int64_t) c->length));
  json_object_object_add (o, "complete", json_object_new_boolean (c->complete));
  return o;
}

static json_object *
result_json (const char *domain, int r, const struct vmdr_live_result *res, double secs)
{
  json_object *o = json_object_new_object (), *w = json_object_new_array (), *d = json_object_new_array ();

  json_object_object_add (o, "domain", json_object_new_string (domain));
  json_object_object_add (o, "ok", json_object_new_boolean (r == 0));
  json_object_object_add (o, "snapshot", r == 0 ? json_object_new_string (res->m.id) : NULL);
  json_object_object_add (o, "kind", r == 0 ? json_object_new_string (res->incremental ? "incremental" : "full") : NULL);
  json_object_object_add (o, "parent", r == 0 && res->m.parent[0] ? json_object_new_string (res->m.parent) : NULL);
  json_object_object_add (o, "chain", r == 0 ? chain_json (&res->chain) : NULL);
  json_object_object_add (o, "seconds", json_object_new_double (secs));
  json_object_object_add (o, "bytes_read", json_object_new_int64 ((int64_t) res->bytes_read));
  json_object_object_add (o, "bytes_new", json_object_new_int64 ((int64_t) res->bytes_new));
  json_object_object_add (o, "consistency", r == 0 ? json_object_new_string (vmdr_consistency_name (res->m.consistency)) : NULL);
  json_object_object_add (o, "pause_ms", json_object_new_double (res->pause_ms));
  json_object_object_add (o, "memory_bytes", json_object_new_int64 ((int64_t) res->memory_bytes));
  for (size_t i = 0; r == 0 && i < res->m.ndisks; i++) {
    json_object *dj = json_object_new_object ();
    json_object_object_add (dj, "target", json_object_new_string (res->m.disks[i].target));
    json_object_object_add (dj, "format", json_object_new_string (res->m.disks[i].format));
    json_object_object_add (dj, "bytes_read", json_object_new_int64 ((int64_t) res->m.disks[i].bytes_read));
    json_object_object_add (dj, "bytes_new", json_object_new_int64 ((int64_t) res->m.disks[i].bytes_new));
    json_object_array_add (d, dj);
  }
  json_object_object_add (o, "disks", d);
  for (size_t i = 0; i < res->nwarnings; i++)
    json_object_array_add (w, json_object_new_string (res->warnings[i]));
  json_object_object_add (o, "warnings", w);
  json_object_object_add (o, "error", r < 0 ? json_object_new_string (res->error) : NULL);
  return o;
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* DOMAIN's series for --metrics-file: exit STATUS after SECS; RES NULL
 * when the run failed before it reached the domain. */
static void
record (const struct opts *o, const char *domain, int status,
        const struct vmdr_live_result *res, double secs)
{
  static const struct vmdr_live_result none;
  const char *const labels[] = { "domain", domain, "repo", o->repo_label, NULL };

  if (res == NULL)
    res = &none;
  metrics_set_attempt (o->mx, o->prev, "snapshot", labels, status, metrics_now (), secs);
  metrics_set (o->mx, "vmdr_snapshot_bytes_read",
               "Bytes the last attempt read from the domain", labels, (double) res->bytes_read);
  metrics_set (o->mx, "vmdr_snapshot_bytes_new",
               "Bytes the last attempt stored new in the repository, after deduplication "
               "and compression", labels, (double) res->bytes_new);
  metrics_set (o->mx, "vmdr_snapshot_pause_seconds",
               "How long the last attempt paused the guest for its memory (0 without --memory)",
               labels, res->pause_ms / 1000);
  metrics_set (o->mx, "vmdr_snapshot_chain_length",
               "Snapshots in the chain of the last snapshot, from its full backup, both "
               "counted (0: unknown, or the attempt failed)", labels,
               status == VMDR_EXIT_OK || status == VMDR_EXIT_WARNINGS
               ? (double) res->chain.length : 0);
}

/* Snapshot one domain; its exit status. */
static int
one (virConnectPtr conn, struct vmdr_repo *repo, const char *domain,
     const struct opts *o, json_object *all, struct progress *prog)
{
  struct vmdr_live_result res;
  double t0 = now ();
  int r = vmdr_snapshot_live (conn, domain, repo, &o->live, &res), status;

  progress_end (prog);
  if (r < 0)
    cli_error ("%s", res.error);
  for (size_t i = 0; !o->quiet && !o->json && i < res.nwarnings; i++)
    cli_warn ("%s: %s", domain, res.warnings[i]);
  json_object_array_add (all, result_json (domain, r, &res, now () - t0));
  if (r == -EBUSY)
    status = VMDR_EXIT_BUSY;
  else if (r < 0)
    status = VMDR_EXIT_FAILED;
  else
    status = res.nwarnings ? VMDR_EXIT_WARNINGS : VMDR_EXIT_OK;
  record (o, domain, status, &res, now () - t0);
  vmdr_manifest_clear (&res.m);
  return status;
}

/* The run failed before the first domain: each one failed, in the metrics
 * too; the exit status. */
static int
fail_all (struct opts *o, const char *path, int argc, char **argv, double t0)
{
  for (int i = optind; i < argc; i++)
    record (o, argv[i], VMDR_EXIT_FAILED, NULL, now () - t0);
  free (o->disk_buf);
  return cmd_metrics_end (path, o->mx, o->prev, VMDR_EXIT_FAILED);
}

/* After a libvirtd restart the connection stays closed: open another for
 * the next domain (if that fails, its lookup says why). */
static void
reconnect (virConnectPtr *conn, const char *uri)
{
  virConnectPtr c;

  if (virConnectIsAlive (*conn) != 0 || (c = virConnectOpen (uri)) == NULL)
    return;
  virConnectClose (*conn);
  *conn = c;
}

static void
quiet_libvirt (void *opaque, virErrorPtr e)
{
  (void) opaque;                /* errors are reported once, by us */
  (void) e;
}

int
main (int argc, char **argv)
{
  enum { AUTO = CHAR_MAX + 1, FULL, DISKS, SCRATCH, CEPH_CONF, CEPH_ID, JSON, MEMORY, QUIESCE,
         REQUIRE_QUIESCE, PROGRESS, NO_PROGRESS, METRICS_FILE };
  static const struct option lopts[] = {
    { "connect", required_argument, NULL, 'c' },
    { "repo", required_argument, NULL, 'r' },
    { "auto", no_argument, NULL, AUTO },
    { "full", no_argument, NULL, FULL },
    { "disks", required_argument, NULL, DISKS },
    { "scratch-dir", required_argument, NULL, SCRATCH },
    { "ceph-conf", required_argument, NULL, CEPH_CONF },
    { "ceph-id", required_argument, NULL, CEPH_ID },
    { "memory", no_argument, NULL, MEMORY },
    { "quiesce", no_argument, NULL, QUIESCE },
    { "require-quiesce", no_argument, NULL, REQUIRE_QUIESCE },
    { "jobs", required_argument, NULL, 'j' },
    { "json", no_argument, NULL, JSON },
    { "progress", no_argument, NULL, PROGRESS },
    { "no-progress", no_argument, NULL, NO_PROGRESS },
    { "metrics-file", required_argument, NULL, METRICS_FILE },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  struct opts o = { .live = { .scratch_dir = "/var/tmp", .threads = 2 } };
  const char *repo_opt = NULL, *address, *metrics_file = NULL;
  struct vmdr_repo *repo;
  virConnectPtr conn;
  int c, show = -1, status = VMDR_EXIT_OK;
  double t0 = now ();
  struct progress prog;

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":c:r:j:qhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'c': o.uri = optarg; break;
    case 'r': repo_opt = optarg; break;
    case AUTO: o.live.full = false; break;
    case FULL: o.live.full = true; break;
    case DISKS:
      o.live.ndisks = cmd_disks_arg (optarg, &o.disk_buf, o.disks, MAX_DISK_ARGS);
      o.live.disks = o.disks;
      break;
    case SCRATCH: o.live.scratch_dir = optarg; break;
    case CEPH_CONF: o.live.ceph_conf = optarg; break;
    case CEPH_ID: o.live.ceph_id = optarg; break;
    case MEMORY: o.live.memory = true; break;
    case QUIESCE: o.live.quiesce = true; break;
    case REQUIRE_QUIESCE: o.live.quiesce = o.live.require_quiesce = true; break;
    case 'j': o.live.threads = cmd_jobs_arg (optarg); break;
    case JSON: o.json = true; break;
    case PROGRESS: show = 1; break;
    case NO_PROGRESS: show = 0; break;
    case METRICS_FILE:
      if (*optarg == '\0')
        cli_usage_error ("invalid --metrics-file ''");
      metrics_file = optarg;
      break;
    case 'q': o.quiet = true; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  if (optind == argc)
    cli_usage_error ("no domain given");
  address = cmd_repo_address (repo_opt);
  metrics_address_label (address, o.repo_label, sizeof o.repo_label);
  cmd_metrics_begin (metrics_file, &o.mx, &o.prev);
  progress_init (&prog, o.quiet ? 0 : show);
  o.live.progress = progress_cb;
  o.live.popaque = &prog;
  /* libvirtd and QEMU resolve paths in their own working directory. */
  _cleanup_free_ char *scratch = realpath (o.live.scratch_dir, NULL);
  if (scratch == NULL) {
    cli_error ("cannot use scratch directory '%s': %m", o.live.scratch_dir);
    return fail_all (&o, metrics_file, argc, argv, t0);
  }
  o.live.scratch_dir = scratch;
  virSetErrorFunc (NULL, quiet_libvirt);
  /* A libvirtd that restarts mid-run closes our connection: the call that
   * finds out must fail with EPIPE, not kill us silently (libvirt leaves
   * SIGPIPE to the application). */
  signal (SIGPIPE, SIG_IGN);
  conn = virConnectOpen (o.uri);
  if (conn == NULL) {
    cli_error ("cannot connect to libvirt%s%s%s: %s", o.uri ? " at '" : "",
               o.uri ? o.uri : "", o.uri ? "'" : "", virGetLastErrorMessage ());
    return fail_all (&o, metrics_file, argc, argv, t0);
  }
  if ((repo = cmd_open_repo (address, false)) == NULL) {
    virConnectClose (conn);
    return fail_all (&o, metrics_file, argc, argv, t0);
  }
  json_object *all = json_object_new_array ();
  for (int i = optind; i < argc; i++) {
    progress_begin (&prog, argv[i]);
    reconnect (&conn, o.uri);
    int s = one (conn, repo, argv[i], &o, all, &prog);
    /* The worst outcome decides: failed > busy > warnings > ok. */
    if (s == VMDR_EXIT_FAILED || (s == VMDR_EXIT_BUSY && status != VMDR_EXIT_FAILED) ||
        (s == VMDR_EXIT_WARNINGS && status == VMDR_EXIT_OK))
      status = s;
  }
  if (o.json) {
    json_object *top = json_object_new_object ();
    json_object_object_add (top, "snapshots", all);
    cmd_json_print (top);
  }
  else
    json_object_put (all);
  free (o.disk_buf);
  vmdr_repo_close (repo);
  virConnectClose (conn);
  return cmd_metrics_end (metrics_file, o.mx, o.prev, status);
}
