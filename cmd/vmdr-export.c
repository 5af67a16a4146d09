/* vmdr-export: snapshots as a bundle, a tar stream for a disk, a tape or
 * a pipe. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bundle.h"
#include "cleanup.h"
#include "cli.h"
#include "cmd-repo.h"
#include "progress.h"

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-export -r REPO [OPTIONS] SNAPSHOT... -o FILE|-\n"
"\n"
"Write the snapshots as a bundle: one POSIX pax tar stream with the\n"
"repository's config, their manifests and every chunk and index node they\n"
"need, each checked on the way, for vmdr-import to read at the other end.\n"
"The bundle streams: nothing is staged on disk, and '-o -' writes it to\n"
"standard output (vmdr-export ... -o - | ssh dr vmdr-import -r REPO -).\n"
"SNAPSHOT is an id, DOMAIN@latest or DOMAIN@TIME.\n"
"\n"
"Options:\n"
"  -r, --repo=REPO        the repository (default: $VMDR_REPO)\n"
"  -o, --output=FILE      the bundle, or - for standard output\n"
"      --since=SNAPSHOT   an incremental bundle: without what SNAPSHOT has\n"
"                         (the importing repository must hold SNAPSHOT)\n"
"      --zstd             compress the bundle with zstd\n"
"      --progress         a progress line on stderr even when it is no terminal\n"
"      --no-progress      none even on a terminal\n"
"      --json             one JSON object on stdout (not with -o -)\n"
"  -q, --quiet            print nothing but errors\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Exit status: 0 done, 1 failed, 2 usage.\n");
  exit (status);
}

/* ERR: the message of a failure, or NULL. */
static void
print_json (const char *output, char *const *ids, size_t n, const char *base,
            const struct vmdr_bundle_stats *st, double secs, const char *err)
{
  json_object *j = json_object_new_object (), *a = json_object_new_array ();

  json_object_object_add (j, "ok", json_object_new_boolean (err == NULL));
  json_object_object_add (j, "error", err ? json_object_new_string (err) : NULL);
  json_object_object_add (j, "output", json_object_new_string (output));
  json_object_object_add (j, "base", base ? json_object_new_string (base) : NULL);
  for (size_t i = 0; i < n; i++)
    json_object_array_add (a, json_object_new_string (ids[i]));
  json_object_object_add (j, "snapshots", a);
  json_object_object_add (j, "blobs", json_object_new_int64 ((int64_t) st->blobs));
  json_object_object_add (j, "blob_bytes", json_object_new_int64 ((int64_t) st->blob_bytes));
  json_object_object_add (j, "bundle_bytes", json_object_new_int64 ((int64_t) st->bundle_bytes));
  json_object_object_add (j, "seconds", json_object_new_double (secs));
  cmd_json_print (j);
}

/* A selector -> an id, or exit with a message. */
static char *
resolve (struct vmdr_repo *repo, const char *sel)
{
  char id[VMDR_SNAPSHOT_ID_MAX];
  int r = vmdr_snapshot_resolve (repo, sel, id);

  if (r == -EINVAL)
    cli_usage_error ("invalid snapshot '%s' (an id, DOMAIN@latest or DOMAIN@TIME)", sel);
  if (r == -ENOENT) {
    cli_error ("no snapshot '%s' in the repository", sel);
    exit (VMDR_EXIT_FAILED);
  }
  if (r < 0) {
    cli_error ("cannot look up snapshot '%s': %s", sel, strerror (-r));
    exit (VMDR_EXIT_FAILED);
  }
  return strdup (id);
}

int
main (int argc, char **argv)
{
  enum { SINCE = CHAR_MAX + 1, ZSTD, JSON, PROGRESS, NO_PROGRESS };
  static const struct option lopts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "output", required_argument, NULL, 'o' },
    { "since", required_argument, NULL, SINCE },
    { "zstd", no_argument, NULL, ZSTD },
    { "json", no_argument, NULL, JSON },
    { "progress", no_argument, NULL, PROGRESS },
    { "no-progress", no_argument, NULL, NO_PROGRESS },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  struct vmdr_bundle_export_opts eo = { 0 };
  struct vmdr_bundle_stats st = { 0 };
  const char *repo_opt = NULL, *output = NULL, *since = NULL;
  _cleanup_free_ char *base = NULL, *tmp = NULL;
  char why[VMDR_BUNDLE_WHY_MAX], size[16];
  bool json = false, quiet = false;
  struct vmdr_repo *repo;
  struct progress prog;
  char **ids = NULL;
  size_t n = 0;
  int c, show = -1, fd, r = 0;
  double t0;

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:o:qhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case 'o': output = optarg; break;
    case SINCE: since = optarg; break;
    case ZSTD: eo.zstd = true; break;
    case JSON: json = true; break;
    case PROGRESS: show = 1; break;
    case NO_PROGRESS: show = 0; break;
    case 'q': quiet = true; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  if (optind == argc)
    cli_usage_error ("no snapshot to export");
  if (output == NULL || *output == '\0')
    cli_usage_error ("no output: give -o FILE, or -o - for standard output");
  if (strcmp (output, "-") == 0 && json)
    cli_usage_error ("--json needs standard output: give -o FILE");
  if (strcmp (output, "-") == 0 && isatty (STDOUT_FILENO))
    cli_usage_error ("standard output is a terminal: redirect it, or give -o FILE");
  if ((repo = cmd_open_repo (cmd_repo_address (repo_opt), true)) == NULL)
    return VMDR_EXIT_FAILED;
  if ((ids = calloc ((size_t) (argc - optind), sizeof *ids)) == NULL) {
    cli_error ("out of memory");
    r = -ENOMEM;
    goto out;
  }
  for (int i = optind; i < argc; i++) {
    char *id = resolve (repo, argv[i]);
    bool dup = false;
    for (size_t k = 0; k < n && !dup; k++)
      dup = strcmp (ids[k], id) == 0;
    if (dup)
      free (id);
    else
      ids[n++] = id;
  }
  if (since && (base = resolve (repo, since)) != NULL)
    for (size_t k = 0; k < n; k++)
      if (strcmp (ids[k], base) == 0)
        cli_usage_error ("snapshot %s is the base (--since): the bundle would hold nothing of it", base);
  eo.base = base;

  /* A file is written beside its name and renamed when whole: a failed
   * export leaves no half bundle that looks like one. */
  if (strcmp (output, "-") == 0)
    fd = STDOUT_FILENO;
  else {
    if (asprintf (&tmp, "%s.XXXXXX", output) < 0) {
      tmp = NULL;               /* undefined after a failure */
      cli_error ("out of memory");
      r = -ENOMEM;
      goto out;
    }
    if ((fd = mkostemp (tmp, O_CLOEXEC)) < 0) {
      cli_error ("cannot create '%s': %s", output, strerror (errno));
      r = -EIO;
      goto out;
    }
    mode_t um = umask (0);      /* mkostemp made it 0600: as a file made by open */
    umask (um);
    if (fchmod (fd, 0666 & ~um) < 0) {
      cli_error ("cannot create '%s': %s", output, strerror (errno));
      close (fd);
      unlink (tmp);
      r = -EIO;
      goto out;
    }
  }
  signal (SIGPIPE, SIG_IGN);    /* a reader gone: EPIPE, and a message */
  progress_init (&prog, quiet ? 0 : show);
  progress_begin (&prog, n == 1 ? ids[0] : "export");
  eo.progress = progress_cb;
  eo.popaque = &prog;
  t0 = cmd_now ();
  r = vmdr_bundle_export (repo, (const char *const *) ids, n, &eo, fd, &st, why, sizeof why);
  progress_end (&prog);
  if (r == 0 && tmp && (fsync (fd) < 0 || close (fd) < 0 || rename (tmp, output) < 0)) {
    snprintf (why, sizeof why, "cannot write '%s': %s", output, strerror (errno));
    r = -EIO;
  }
  else if (tmp && r < 0)
    close (fd);
  if (r < 0) {
    if (tmp)
      unlink (tmp);
    cli_error ("cannot export: %s", why[0] ? why : strerror (-r));
    if (json)
      print_json (output, ids, n, base, &st, cmd_now () - t0, why[0] ? why : strerror (-r));
  }
  else if (json)
    print_json (output, ids, n, base, &st, cmd_now () - t0, NULL);
  else if (!quiet && fd != STDOUT_FILENO)
    printf ("%zu snapshot%s, %llu blobs: %s in '%s'\n", n, n == 1 ? "" : "s",
            (unsigned long long) st.blobs, cmd_size (st.bundle_bytes, size), output);
 out:
  vmdr_strv_free (ids, n);
  vmdr_repo_close (repo);
  return r < 0 ? VMDR_EXIT_FAILED : VMDR_EXIT_OK;
}
