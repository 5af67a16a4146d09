/* vmdr-replicate: copy the snapshots another repository lacks. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "cli.h"
#include "cmd-repo.h"
#include "metrics.h"
#include "progress.h"
#include "prune.h"
#include "rbd-replica.h"
#include "size.h"
#include "sync.h"

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-replicate -r SRC --to DST [OPTIONS] [DOMAIN...]\n"
"\n"
"Copy every snapshot (of DOMAIN..., or of all domains) that DST lacks,\n"
"oldest first, sending only the chunks DST does not have, each verified\n"
"against its digest on the way, and each snapshot's manifest last: a\n"
"snapshot appears at DST only once all of it is there.  An interrupted run,\n"
"run again, goes on without sending again what arrived.  DST is created,\n"
"with SRC's chunking, if it is not a repository yet.  Snapshots pruned at\n"
"SRC stay at DST unless --prune-dst applies DST's own rules after the copy.\n"
"\n"
"DST may also be a warm replica in Ceph RBD,\n"
"  rbd://POOL[/PREFIX]?conf=CEPH.CONF&id=USER[&keyring=FILE]\n"
"one RBD image per disk ([PREFIX-]DOMAIN-TARGET): each snapshot is written\n"
"into it as what changed since the last one replicated, then kept as the\n"
"RBD snapshot vmdr-TIME; vmdr-failover --rbd starts guests from them.\n"
"The cephx key comes from the keyring the conf names, never the command line.\n"
"\n"
"Options:\n"
"  -r, --repo=SRC         the source repository (default: $VMDR_REPO)\n"
"      --to=DST           the destination repository\n"
"      --since=TIME       only snapshots taken at or after TIME (ISO 8601)\n"
"      --bwlimit=RATE     at most RATE bytes a second to DST (K, M, G suffixes)\n"
"  -j, --jobs=N           parallel copiers (default 2)\n"
"      --prune-dst        after a complete copy, remove the snapshots of the\n"
"                         domains replicated (all, without DOMAIN) that\n"
"                         DST's rules do not keep, then collect DST's garbage\n"
"                         (packs unreferenced for an hour); rules as in\n"
"                         vmdr-prune, at least one:\n"
"      --keep-last=N, --keep-hourly=N, --keep-daily=N, --keep-weekly=N,\n"
"      --keep-monthly=N, --keep-yearly=N\n"
"      --progress         a progress line on stderr even when it is no terminal\n"
"      --no-progress      none even on a terminal\n"
"      --json             one JSON object on stdout\n"
"      --metrics-file=PATH\n"
"                         write Prometheus metrics of the run to PATH for\n"
"                         node_exporter's textfile collector (last attempt and\n"
"                         success times, exit status, duration, bytes sent,\n"
"                         snapshots copied and failed); atomically, and when\n"
"                         the run fails too\n"
"  -q, --quiet            no warnings either\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Exit status: 0 done, 1 failed (or a snapshot could not be copied), 2 usage,\n"
"3 done but the metrics file could not be written, 4 a writer or GC (or\n"
"another replicate, for RBD) holds a domain at DST.\n");
  exit (status);
}

struct opts {
  struct vmdr_sync_opts s;
  const char *to;
  bool json, quiet, prune_dst;
  struct vmdr_keep keep;
  struct progress prog;
  const char *metrics_file;
  struct metrics *mx, *prev;    /* --metrics-file; NULL without */
  char repo_label[1024], dst_label[1024];
  double t0;
  uint64_t bytes_sent;          /* for the metrics: to a repository or RBD */
  size_t copied, failed;
};

/* The run's series, the metrics file written: the exit status. */
static int
finish (struct opts *o, int status)
{
  const char *const labels[] = { "repo", o->repo_label, "destination", o->dst_label, NULL };

  metrics_set_attempt (o->mx, o->prev, "replicate", labels, status, metrics_now (),
                       cmd_now () - o->t0);
  metrics_set (o->mx, "vmdr_replicate_bytes_sent",
               "Bytes the last attempt stored at the destination (to RBD: written)", labels,
               (double) o->bytes_sent);
  metrics_set (o->mx, "vmdr_replicate_snapshots_copied",
               "Snapshots the last attempt copied (to RBD: applied)", labels, (double) o->copied);
  metrics_set (o->mx, "vmdr_replicate_snapshots_failed",
               "Snapshots the last attempt could not copy (damaged at the source)", labels,
               (double) o->failed);
  return cmd_metrics_end (o->metrics_file, o->mx, o->prev, status);
}

static void
log_step (void *opaque, const char *id, size_t no, size_t of)
{
  struct opts *o = opaque;

  (void) no, (void) of;
  progress_end (&o->prog);
  progress_begin (&o->prog, id);
}

/* Open DST, creating it with SRC's chunking when it is no repository yet. */
static struct vmdr_repo *
open_dst (const char *address, struct vmdr_repo *src, bool quiet)
{
  struct vmdr_repo_config cfg;
  struct vmdr_repo *dst;
  int r = vmdr_repo_open (address, &dst);

  if (r == -ENOTRECOVERABLE || (r == -ENOENT && !strstr (address, "://"))) {
    if (vmdr_repo_config_default (&cfg) < 0) {
      cli_error ("cannot get random bytes for the repository id");
      return NULL;
    }
    const struct vmdr_repo_config *s = vmdr_repo_config (src);
    cfg.hash = s->hash;
    cfg.chunk_size = s->chunk_size;
    cfg.fanout = s->fanout;
    cfg.cdc_min = s->cdc_min, cfg.cdc_avg = s->cdc_avg, cfg.cdc_max = s->cdc_max;
    cfg.zstd_level = s->zstd_level;
    cfg.pack_size = s->pack_size;
    if (r == -ENOENT && mkdir (address, 0700) < 0) {
      cli_error ("cannot create '%s': %m", address);
      return NULL;
    }
    if ((r = vmdr_repo_init (address, &cfg)) < 0) {
      cli_error ("cannot create a repository in '%s': %s", address, strerror (-r));
      return NULL;
    }
    if (!quiet)
      cli_warn ("created the repository '%s' with the chunking of the source", address);
  }
  else if (r == 0)
    vmdr_repo_close (dst);
  return cmd_open_repo (address, false);
}

struct pruned {
  json_object *ids;             /* the snapshots removed at DST */
  uint64_t bytes_deleted;       /* by DST's GC */
};

static void
print_json (int r, const struct vmdr_sync_stats *st, const struct pruned *p, double secs)
{
  json_object *j = json_object_new_object (), *w = json_object_new_array ();

  json_object_object_add (j, "ok", json_object_new_boolean (r == 0));
  json_object_object_add (j, "seconds", json_object_new_double (secs));
  json_object_object_add (j, "snapshots_copied", json_object_new_int64 ((int64_t) st->snapshots_copied));
  json_object_object_add (j, "snapshots_present", json_object_new_int64 ((int64_t) st->snapshots_present));
  json_object_object_add (j, "snapshots_failed", json_object_new_int64 ((int64_t) st->snapshots_failed));
  json_object_object_add (j, "chunks_sent", json_object_new_int64 ((int64_t) st->chunks_sent));
  json_object_object_add (j, "bytes_sent", json_object_new_int64 ((int64_t) st->bytes_sent));
  json_object_object_add (j, "chunks_present", json_object_new_int64 ((int64_t) st->chunks_present));
  json_object_object_add (j, "bytes_read", json_object_new_int64 ((int64_t) st->bytes_read));
  json_object_object_add (j, "pruned", json_object_get (p->ids));
  json_object_object_add (j, "bytes_deleted", json_object_new_int64 ((int64_t) p->bytes_deleted));
  for (size_t i = 0; i < st->nwarnings; i++)
    json_object_array_add (w, json_object_new_string (st->warnings[i]));
  json_object_object_add (j, "warnings", w);
  cmd_json_print (j);
}

static void
print_rbd_json (int r, const struct vmdr_rbd_stats *st, double secs)
{
  json_object *j = json_object_new_object (), *w = json_object_new_array ();

  json_object_object_add (j, "ok", json_object_new_boolean (r == 0));
  json_object_object_add (j, "target", json_object_new_string ("rbd"));
  json_object_object_add (j, "seconds", json_object_new_double (secs));
  json_object_object_add (j, "snapshots_applied", json_object_new_int64 ((int64_t) st->snapshots_applied));
  json_object_object_add (j, "snapshots_present", json_object_new_int64 ((int64_t) st->snapshots_present));
  json_object_object_add (j, "snapshots_older", json_object_new_int64 ((int64_t) st->snapshots_older));
  json_object_object_add (j, "snapshots_failed", json_object_new_int64 ((int64_t) st->snapshots_failed));
  json_object_object_add (j, "images_created", json_object_new_int64 ((int64_t) st->images_created));
  json_object_object_add (j, "rollbacks", json_object_new_int64 ((int64_t) st->rollbacks));
  json_object_object_add (j, "chunks_written", json_object_new_int64 ((int64_t) st->chunks_written));
  json_object_object_add (j, "bytes_written", json_object_new_int64 ((int64_t) st->bytes_written));
  json_object_object_add (j, "bytes_zeroed", json_object_new_int64 ((int64_t) st->bytes_zeroed));
  json_object_object_add (j, "bytes_read", json_object_new_int64 ((int64_t) st->bytes_read));
  for (size_t i = 0; i < st->nwarnings; i++)
    json_object_array_add (w, json_object_new_string (st->warnings[i]));
  json_object_object_add (j, "warnings", w);
  cmd_json_print (j);
}

/* Bring the RBD replica at o->to up to date; the exit status. */
static int
replicate_rbd (struct vmdr_repo *src, struct opts *o)
{
  struct vmdr_rbd_opts ro = {
    .domains = o->s.domains, .ndomains = o->s.ndomains, .since = o->s.since,
    .bwlimit = o->s.bwlimit, .threads = o->s.threads, .step = log_step, .sopaque = o,
    .progress = progress_cb, .popaque = &o->prog,
  };
  struct vmdr_rbd_stats st = { 0 };
  struct vmdr_rbd *rbd;
  char error[768], written[16], zeroed[16];
  double t0 = cmd_now ();
  int r;

  if ((r = vmdr_rbd_open (o->to, &rbd, error, sizeof error)) < 0) {
    cli_error ("%s", error);
    if (o->json)
      print_rbd_json (r, &st, cmd_now () - t0);
    return VMDR_EXIT_FAILED;
  }
  r = vmdr_rbd_replicate (src, rbd, &ro, &st);
  o->bytes_sent = st.bytes_written;
  o->copied = st.snapshots_applied;
  o->failed = st.snapshots_failed;
  progress_end (&o->prog);
  vmdr_rbd_close (rbd);
  if (r == -EINVAL)
    cli_usage_error ("invalid --since '%s'", o->s.since);
  else if (r == -EBUSY)
    cli_error ("another run holds a domain at '%s'; try again later", o->to);
  /* The other errors are in the warnings, with where they happened. */
  for (size_t i = 0; i < st.nwarnings && !o->json; i++)
    if (!o->quiet || r < 0)
      cli_error ("%s", st.warnings[i]);
  if (r < 0 && r != -EBUSY && r != -EBADMSG && st.nwarnings == 0)
    cli_error ("cannot replicate to '%s': %s", o->to, strerror (-r));
  if (o->json)
    print_rbd_json (r, &st, cmd_now () - t0);
  else if (!o->quiet && r == 0)
    printf ("%zu snapshot%s applied (%zu already there), %s written, %s zeroed\n",
            st.snapshots_applied, st.snapshots_applied == 1 ? "" : "s", st.snapshots_present,
            cmd_size (st.bytes_written, written), cmd_size (st.bytes_zeroed, zeroed));
  return r == -EBUSY ? VMDR_EXIT_BUSY : r < 0 ? VMDR_EXIT_FAILED : VMDR_EXIT_OK;
}

static void
note_pruned (void *opaque, const char *id)
{
  json_object_array_add (opaque, json_object_new_string (id));
}

/* --prune-dst: DST's rules over the domains replicated, then DST's GC.
 * Errors are printed; the exit status. */
static int
prune_dst (struct vmdr_repo *dst, const struct opts *o, struct pruned *p)
{
  char **doms = (char **) o->s.domains, freed[16];
  size_t n = o->s.ndomains, removed;
  struct vmdr_gc_stats gc;
  int r = 0;

  if (doms == NULL && (r = vmdr_snapshot_domains (dst, &doms, &n)) < 0) {
    cli_error ("cannot list the domains at '%s': %s", o->to, strerror (-r));
    return VMDR_EXIT_FAILED;
  }
  for (size_t i = 0; i < n && r == 0; i++)
    if ((r = vmdr_retention_apply (dst, doms[i], &o->keep, false, note_pruned, p->ids, &removed)) < 0)
      cli_error ("cannot prune '%s' at '%s': %s", doms[i], o->to, strerror (-r));
  if (o->s.domains == NULL)
    vmdr_strv_free (doms, n);
  if (r < 0)
    return VMDR_EXIT_FAILED;
  if ((r = vmdr_gc (dst, 3600, false, &gc)) == -EBUSY) {
    cli_error ("a writer or GC holds '%s': its garbage is collected next time", o->to);
    return VMDR_EXIT_BUSY;
  }
  if (r < 0) {
    cli_error ("cannot collect the garbage of '%s': %s", o->to, strerror (-r));
    return VMDR_EXIT_FAILED;
  }
  p->bytes_deleted = gc.bytes_deleted;
  if (!o->quiet && !o->json)
    printf ("%zu snapshot%s pruned at the destination, %s freed\n", json_object_array_length (p->ids),
            json_object_array_length (p->ids) == 1 ? "" : "s", cmd_size (gc.bytes_deleted, freed));
  return VMDR_EXIT_OK;
}

/* Run the copy; the exit status. */
static int
replicate (struct vmdr_repo *src, struct vmdr_repo *dst, struct opts *o, const char *srca)
{
  struct vmdr_sync_stats st;
  struct pruned p = { .ids = json_object_new_array () };
  double t0 = cmd_now ();
  char sent[16];
  int r = vmdr_sync (src, dst, &o->s, &st), status;

  o->bytes_sent = st.bytes_sent;
  o->copied = st.snapshots_copied;
  o->failed = st.snapshots_failed;
  progress_end (&o->prog);
  if (r == -EXDEV)
    cli_error ("'%s' has other chunking than '%s' (digest, chunk size or fanout): "
               "replicate into a new repository", o->to, srca);
  else if (r == -EINVAL)
    cli_usage_error ("invalid --since '%s'", o->s.since);
  else if (r == -EBUSY)
    cli_error ("a writer or GC holds a domain at '%s'; try again later", o->to);
  else if (r < 0 && r != -EBADMSG)
    cli_error ("cannot replicate to '%s': %s", o->to, strerror (-r));
  for (size_t i = 0; i < st.nwarnings && !o->json; i++)
    cli_error ("%s", st.warnings[i]);
  if (!o->json && !o->quiet && r == 0)
    printf ("%zu snapshot%s copied (%zu already there), %s sent\n", st.snapshots_copied,
            st.snapshots_copied == 1 ? "" : "s", st.snapshots_present,
            cmd_size (st.bytes_sent, sent));
  status = r == -EBUSY ? VMDR_EXIT_BUSY : r < 0 ? VMDR_EXIT_FAILED : VMDR_EXIT_OK;
  /* Only after a whole copy: DST must not lose what SRC has not given it. */
  if (status == VMDR_EXIT_OK && o->prune_dst)
    status = prune_dst (dst, o, &p);
  if (o->json)
    print_json (status == VMDR_EXIT_OK ? 0 : r < 0 ? r : -EIO, &st, &p, cmd_now () - t0);
  json_object_put (p.ids);
  return status;
}

int
main (int argc, char **argv)
{
  enum { TO = CHAR_MAX + 1, SINCE, BWLIMIT, JSON, PROGRESS, NO_PROGRESS, PRUNE_DST, METRICS_FILE,
         KEEP };
  static const struct option lopts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "to", required_argument, NULL, TO },
    { "since", required_argument, NULL, SINCE },
    { "bwlimit", required_argument, NULL, BWLIMIT },
    { "jobs", required_argument, NULL, 'j' },
    { "json", no_argument, NULL, JSON },
    { "metrics-file", required_argument, NULL, METRICS_FILE },
    { "progress", no_argument, NULL, PROGRESS },
    { "no-progress", no_argument, NULL, NO_PROGRESS },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { "prune-dst", no_argument, NULL, PRUNE_DST },
    CMD_KEEP_OPTIONS (KEEP),
    { NULL },
  };
  struct opts o = { .s = { .threads = 2 }, .t0 = cmd_now () };
  const char *repo_opt = NULL, *address;
  struct vmdr_repo *src, *dst;
  int c, show = -1, status, keeps = 0;

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:j:qhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case TO: o.to = optarg; break;
    case SINCE: o.s.since = optarg; break;
    case BWLIMIT:
      if (vmdr_parse_size (optarg, 1ull << 40, &o.s.bwlimit) < 0 || o.s.bwlimit == 0)
        cli_usage_error ("invalid --bwlimit '%s'", optarg);
      break;
    case 'j': o.s.threads = cmd_jobs_arg (optarg); break;
    case JSON: o.json = true; break;
    case METRICS_FILE:
      if (*optarg == '\0')
        cli_usage_error ("invalid --metrics-file ''");
      o.metrics_file = optarg;
      break;
    case PROGRESS: show = 1; break;
    case NO_PROGRESS: show = 0; break;
    case 'q': o.quiet = true; break;
    case PRUNE_DST: o.prune_dst = true; break;
    case KEEP ... KEEP + CMD_KEEP_COUNT - 1: cmd_keep_arg (c, KEEP, optarg, &o.keep); keeps++; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  if (o.to == NULL)
    cli_usage_error ("no destination: give --to DST");
  if (keeps && !o.prune_dst)
    cli_usage_error ("--keep-* rules apply to the destination only with --prune-dst");
  if (o.prune_dst && !(o.keep.last || o.keep.hourly || o.keep.daily || o.keep.weekly ||
                       o.keep.monthly || o.keep.yearly))
    cli_usage_error ("--prune-dst needs a rule that keeps something (--keep-last=N, ...)");
  if (o.prune_dst && vmdr_rbd_address_is (o.to))
    cli_usage_error ("--prune-dst applies to repositories, not to an RBD replica");
  for (int i = optind; i < argc; i++)
    if (!vmdr_domain_name_valid (argv[i]))
      cli_usage_error ("invalid domain name '%s'", argv[i]);
  if (optind < argc) {
    o.s.domains = (const char *const *) argv + optind;
    o.s.ndomains = (size_t) (argc - optind);
  }
  address = cmd_repo_address (repo_opt);
  if (strcmp (address, o.to) == 0)
    cli_usage_error ("the source and the destination are the same");
  metrics_address_label (address, o.repo_label, sizeof o.repo_label);
  metrics_address_label (o.to, o.dst_label, sizeof o.dst_label);
  cmd_metrics_begin (o.metrics_file, &o.mx, &o.prev);
  if ((src = cmd_open_repo (address, true)) == NULL)
    return finish (&o, VMDR_EXIT_FAILED);
  if (vmdr_rbd_address_is (o.to)) {
    progress_init (&o.prog, o.quiet ? 0 : show);
    status = replicate_rbd (src, &o);
    vmdr_repo_close (src);
    return finish (&o, status);
  }
  if ((dst = open_dst (o.to, src, o.quiet)) == NULL) {
    vmdr_repo_close (src);
    return finish (&o, VMDR_EXIT_FAILED);
  }
  progress_init (&o.prog, o.quiet ? 0 : show);
  o.s.progress = progress_cb;
  o.s.popaque = &o.prog;
  o.s.step = log_step;
  o.s.sopaque = &o;
  status = replicate (src, dst, &o, address);
  vmdr_repo_close (dst);
  vmdr_repo_close (src);
  return finish (&o, status);
}
