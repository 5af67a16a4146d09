/* vmdr-failover: one shot, for a bad day: the newest whole snapshot of a
 * domain restored and brought up on the DR host, with a report. */
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
#include "cmd-libvirt.h"
#include "cmd-repo.h"
#include "failover.h"
#include "progress.h"
#include "rbd-replica.h"

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-failover -c DR_URI -r REPO [OPTIONS] DOMAIN\n"
"       vmdr-failover -c DR_URI --rbd=REPLICA [OPTIONS] DOMAIN\n"
"\n"
"Bring DOMAIN up on the DR host DR_URI from its newest snapshot that is\n"
"whole: its disks are restored into the DR storage (every chunk verified;\n"
"a damaged snapshot is skipped, with a warning, for the one before it), the\n"
"guest is defined with its identity and started, resumed from memory when\n"
"the snapshot has it, and a report gives the snapshot used, the RPO (its\n"
"age) and the RTO (how long this took).  Each step is logged on stderr.\n"
"A rerun after a failure cleans up what the failed run left.\n"
"\n"
"With --rbd, no copy at all: DOMAIN starts from its warm replica in Ceph\n"
"RBD (kept by vmdr-replicate --to rbd://...), its disks copy-on-write clones\n"
"of the newest snapshot whole there, as libvirt network disks; the cephx\n"
"key goes into a libvirt secret on the DR host.\n"
"\n"
"Options:\n"
"  -c, --connect=URI      the DR host's libvirt (required)\n"
"  -r, --repo=REPO        the repository (default: $VMDR_REPO)\n"
"      --rbd=REPLICA      start from the RBD replica\n"
"                         rbd://POOL[/PREFIX]?conf=CEPH.CONF&id=USER\n"
"      --at=TIME          the newest snapshot at or before TIME (ISO 8601)\n"
"      --storage=DIR      where the images go (default /var/lib/libvirt/images)\n"
"      --format=FMT       qcow2 (default) or raw\n"
"      --test             a rehearsal: the guest gets a new identity, the name\n"
"                         DOMAIN-lab and only the isolated test-lab network\n"
"                         (remove it with vmdr-restore --cleanup-lab)\n"
"      --force            replace a guest of that name or UUID on the DR host,\n"
"                         stopping it if it runs\n"
"      --agent-wait=S     after a resume, wait up to S seconds (default 30)\n"
"                         for the guest agent to set the guest's clock: a\n"
"                         guest that does not answer may be hung (warning);\n"
"                         0 skips this\n"
"  -j, --jobs=N           parallel readers (default 2)\n"
"      --progress         a progress line on stderr even when it is no terminal\n"
"      --no-progress      none even on a terminal\n"
"      --json             the report as one JSON object on stdout\n"
"  -q, --quiet            no step log and no warnings\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Exit status: 0 done, 1 failed, 2 usage, 3 done with warnings (a snapshot\n"
"skipped, a device dropped, a resumed guest whose agent does not answer),\n"
"4 another failover of DOMAIN is running.\n");
  exit (status);
}

struct opts {
  struct vmdr_failover_opts f;
  const char *uri;
  bool json, quiet;
  struct progress prog;
};

static void
log_step (void *opaque, const char *what)
{
  struct opts *o = opaque;
  char stamp[16];
  time_t t = time (NULL);
  struct tm tm;

  progress_end (&o->prog);
  strftime (stamp, sizeof stamp, "%H:%M:%S", localtime_r (&t, &tm));
  fprintf (stderr, "%s: %s %s\n", cli_progname (), stamp, what);
}

static void
print_text (const char *domain, const struct opts *o, const struct vmdr_failover_report *rep)
{
  const struct vmdr_restore_result *f = &rep->files;
  char size[16], data[16];

  printf ("%s: %s on %s as '%s'%s\n", domain, o->f.test ? "test failover done" : "failed over",
          o->uri, rep->guest.name, o->f.test ? " (test lab)" : "");
  printf ("  snapshot  %s%s\n", rep->snapshot, rep->guest.resumed ? " (resumed from memory)" : " (booted)");
  printf ("  RPO       %.1f s\n", rep->rpo_seconds);
  printf ("  RTO       %.1f s\n", rep->rto_seconds);
  if (rep->guest.clock_synced)
    printf ("  clock     set by the guest agent after the resume\n");
  for (size_t i = 0; i < f->ndisks; i++)
    if (strncmp (f->disks[i].path, "rbd:", 4) == 0)
      printf ("  disk      %s %s (copy-on-write clone) %s\n", f->disks[i].target,
              cmd_size (f->disks[i].virtual_size, size), f->disks[i].path);
    else
      printf ("  disk      %s %s (%s data) %s\n", f->disks[i].target,
              cmd_size (f->disks[i].virtual_size, size), cmd_size (f->disks[i].bytes, data),
              f->disks[i].path);
  for (size_t i = 0; i < rep->nwarnings; i++)
    printf ("  warning   %s\n", rep->warnings[i]);
  for (size_t i = 0; i < rep->guest.warnings.n; i++)
    printf ("  warning   %s\n", rep->guest.warnings.w[i]);
}

static void
print_json (const char *domain, int r, const struct opts *o,
            const struct vmdr_failover_report *rep)
{
  json_object *j = json_object_new_object (), *d = json_object_new_array (),
    *w = json_object_new_array ();
  const struct vmdr_restore_result *f = &rep->files;

  json_object_object_add (j, "domain", json_object_new_string (domain));
  json_object_object_add (j, "ok", json_object_new_boolean (r == 0));
  json_object_object_add (j, "uri", json_object_new_string (o->uri));
  json_object_object_add (j, "test", json_object_new_boolean (o->f.test));
  json_object_object_add (j, "snapshot", r == 0 ? json_object_new_string (rep->snapshot) : NULL);
  json_object_object_add (j, "guest", r == 0 ? json_object_new_string (rep->guest.name) : NULL);
  json_object_object_add (j, "uuid", r == 0 ? json_object_new_string (rep->guest.uuid) : NULL);
  json_object_object_add (j, "resumed", json_object_new_boolean (rep->guest.resumed));
  json_object_object_add (j, "clock_synced", json_object_new_boolean (rep->guest.clock_synced));
  json_object_object_add (j, "rpo_seconds", json_object_new_double (rep->rpo_seconds));
  json_object_object_add (j, "rto_seconds", json_object_new_double (rep->rto_seconds));
  json_object_object_add (j, "bytes", json_object_new_int64 ((int64_t) f->bytes));
  for (size_t i = 0; r == 0 && i < f->ndisks; i++) {
    json_object *dj = json_object_new_object ();
    json_object_object_add (dj, "target", json_object_new_string (f->disks[i].target));
    json_object_object_add (dj, "path", json_object_new_string (f->disks[i].path));
    json_object_object_add (dj, "virtual_size", json_object_new_int64 ((int64_t) f->disks[i].virtual_size));
    json_object_object_add (dj, "bytes", json_object_new_int64 ((int64_t) f->disks[i].bytes));
    json_object_array_add (d, dj);
  }
  json_object_object_add (j, "disks", d);
  for (size_t i = 0; i < rep->nwarnings; i++)
    json_object_array_add (w, json_object_new_string (rep->warnings[i]));
  for (size_t i = 0; i < rep->guest.warnings.n; i++)
    json_object_array_add (w, json_object_new_string (rep->guest.warnings.w[i]));
  json_object_object_add (j, "warnings", w);
  json_object_object_add (j, "error", r < 0 ? json_object_new_string (rep->error) : NULL);
  cmd_json_print (j);
}

static int
exit_status (int r, const struct vmdr_failover_report *rep)
{
  if (r == -EBUSY)
    return VMDR_EXIT_BUSY;
  if (r < 0)
    return VMDR_EXIT_FAILED;
  return rep->nwarnings || rep->guest.warnings.n ? VMDR_EXIT_WARNINGS : VMDR_EXIT_OK;
}

/* --rbd: the exit status. */
static int
failover_rbd (const char *address, const char *domain, struct opts *o)
{
  struct vmdr_failover_report rep;
  struct vmdr_rbd *rbd;
  virConnectPtr conn;
  char error[768];
  int r;

  if ((conn = cmd_libvirt_connect (o->uri)) == NULL)
    return VMDR_EXIT_FAILED;
  if (vmdr_rbd_open (address, &rbd, error, sizeof error) < 0) {
    cli_error ("%s", error);
    virConnectClose (conn);
    return VMDR_EXIT_FAILED;
  }
  progress_init (&o->prog, 0);  /* nothing is copied: no progress to show */
  o->f.step = o->quiet ? NULL : log_step;
  o->f.sopaque = o;
  r = vmdr_failover_rbd (conn, rbd, domain, &o->f, &rep);
  if (r < 0)
    cli_error ("%s", rep.error);
  if (o->json)
    print_json (domain, r, o, &rep);
  else if (r == 0)
    print_text (domain, o, &rep);
  vmdr_restore_result_clear (&rep.files);
  vmdr_rbd_close (rbd);
  virConnectClose (conn);
  return exit_status (r, &rep);
}

/* --agent-wait: 0 (no check) becomes -1, as 0 means the default. */
static int
agent_wait_arg (const char *arg)
{
  long v = cmd_long_arg ("--agent-wait", arg, 0, 3600);

  return v == 0 ? -1 : (int) v;
}

int
main (int argc, char **argv)
{
  enum { AT = CHAR_MAX + 1, STORAGE, FORMAT, TEST, FORCE, JSON, PROGRESS, NO_PROGRESS, RBD,
         AGENT_WAIT };
  static const struct option lopts[] = {
    { "connect", required_argument, NULL, 'c' },
    { "repo", required_argument, NULL, 'r' },
    { "rbd", required_argument, NULL, RBD },
    { "at", required_argument, NULL, AT },
    { "storage", required_argument, NULL, STORAGE },
    { "format", required_argument, NULL, FORMAT },
    { "test", no_argument, NULL, TEST },
    { "force", no_argument, NULL, FORCE },
    { "agent-wait", required_argument, NULL, AGENT_WAIT },
    { "jobs", required_argument, NULL, 'j' },
    { "json", no_argument, NULL, JSON },
    { "progress", no_argument, NULL, PROGRESS },
    { "no-progress", no_argument, NULL, NO_PROGRESS },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  struct opts o = { .f = { .storage = "/var/lib/libvirt/images", .format = "qcow2",
                           .threads = 2, .wait_seconds = 60 } };
  const char *repo_opt = NULL, *address, *rbd_opt = NULL;
  bool storage_given = false, format_given = false;
  struct vmdr_failover_report rep;
  struct vmdr_repo *repo;
  virConnectPtr conn;
  int c, show = -1, r;

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":c:r:j:qhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'c': o.uri = optarg; break;
    case 'r': repo_opt = optarg; break;
    case AT: o.f.at = optarg; break;
    case STORAGE: o.f.storage = optarg; storage_given = true; break;
    case FORMAT:
      if (!vmdr_restore_format_valid (optarg))
        cli_usage_error ("invalid --format '%s' (raw or qcow2)", optarg);
      o.f.format = optarg;
      format_given = true;
      break;
    case RBD:
      if (!vmdr_rbd_address_is (optarg))
        cli_usage_error ("invalid --rbd '%s' (rbd://POOL[/PREFIX]?conf=FILE&id=NAME)", optarg);
      rbd_opt = optarg;
      break;
    case TEST: o.f.test = true; break;
    case FORCE: o.f.force = true; break;
    case AGENT_WAIT: o.f.agent_wait = agent_wait_arg (optarg); break;
    case 'j': o.f.threads = cmd_jobs_arg (optarg); break;
    case JSON: o.json = true; break;
    case PROGRESS: show = 1; break;
    case NO_PROGRESS: show = 0; break;
    case 'q': o.quiet = true; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  if (o.uri == NULL)
    cli_usage_error ("no DR host: give -c URI");
  if (optind == argc)
    cli_usage_error ("no domain given");
  if (argc - optind > 1)
    cli_usage_error ("one domain at a time ('%s' is extra)", argv[optind + 1]);
  if (rbd_opt && (repo_opt || storage_given || format_given))
    cli_usage_error ("--rbd starts from the replica: no %s", repo_opt ? "-r" :
                     storage_given ? "--storage" : "--format");
  if (rbd_opt)
    return failover_rbd (rbd_opt, argv[optind], &o);
  address = cmd_repo_address (repo_opt);
  if ((conn = cmd_libvirt_connect (o.uri)) == NULL)
    return VMDR_EXIT_FAILED;
  if ((repo = cmd_open_repo (address, true)) == NULL) {
    virConnectClose (conn);
    return VMDR_EXIT_FAILED;
  }
  progress_init (&o.prog, o.quiet ? 0 : show);
  progress_begin (&o.prog, argv[optind]);
  o.f.progress = progress_cb;
  o.f.popaque = &o.prog;
  o.f.step = o.quiet ? NULL : log_step;
  o.f.sopaque = &o;
  r = vmdr_failover (conn, repo, argv[optind], &o.f, &rep);
  progress_end (&o.prog);
  if (r < 0)
    cli_error ("%s", rep.error);
  if (o.json)
    print_json (argv[optind], r, &o, &rep);
  else if (r == 0)
    print_text (argv[optind], &o, &rep);
  vmdr_restore_result_clear (&rep.files);
  vmdr_repo_close (repo);
  virConnectClose (conn);
  return exit_status (r, &rep);
}
