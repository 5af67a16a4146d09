/* vmdr-import: the snapshots of a bundle into a repository, trusting
 * nothing in it. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
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
"Usage: vmdr-import -r REPO [OPTIONS] FILE|-\n"
"\n"
"Store the snapshots of a bundle made by vmdr-export (plain or zstd; - reads\n"
"standard input).  Every chunk is checked against its digest before it\n"
"counts, and the snapshots appear only once all of them arrived: an import\n"
"that fails or is interrupted leaves the repository as it was, but for\n"
"chunks no snapshot uses (vmdr-prune sweeps them); run it again to finish.\n"
"An incremental bundle needs its base snapshot in REPO.  REPO is created,\n"
"with the bundle's chunking, if it is not a repository yet.\n"
"\n"
"Options:\n"
"  -r, --repo=REPO        the repository (default: $VMDR_REPO)\n"
"  -j, --jobs=N           parallel verifiers (default 2)\n"
"      --progress         a progress line on stderr even when it is no terminal\n"
"      --no-progress      none even on a terminal\n"
"      --json             one JSON object on stdout\n"
"  -q, --quiet            print nothing but errors\n"
"  -h, --help             show this help and exit\n"
"  -V, --version          show the version and exit\n"
"\n"
"Exit status: 0 done, 1 failed, 2 usage,\n"
"4 a writer or GC holds one of the bundle's domains.\n");
  exit (status);
}

/* Open the repository at ADDRESS, creating it with the bundle's chunking
 * when the location holds none yet (and the bundle needs no base). */
static struct vmdr_repo *
open_repo (const char *address, const struct vmdr_bundle_info *in, bool quiet)
{
  struct vmdr_repo_config cfg;
  struct vmdr_repo *repo;
  int r = vmdr_repo_open (address, &repo);

  if (r == 0) {
    vmdr_repo_close (repo);
    return cmd_open_repo (address, false);
  }
  if (r != -ENOTRECOVERABLE && !(r == -ENOENT && !strstr (address, "://")))
    return cmd_open_repo (address, false);      /* says why */
  if (in->base[0]) {
    cli_error ("the bundle applies on top of snapshot %s, and '%s' is no repository yet: "
               "import the bundle that has it first", in->base, address);
    return NULL;
  }
  if (vmdr_repo_config_default (&cfg) < 0) {
    cli_error ("cannot get random bytes for the repository id");
    return NULL;
  }
  cfg.hash = in->config.hash;
  cfg.chunk_size = in->config.chunk_size;
  cfg.fanout = in->config.fanout;
  cfg.cdc_min = in->config.cdc_min, cfg.cdc_avg = in->config.cdc_avg;
  cfg.cdc_max = in->config.cdc_max;
  cfg.zstd_level = in->config.zstd_level;
  cfg.pack_size = in->config.pack_size;
  if (r == -ENOENT && mkdir (address, 0700) < 0) {
    cli_error ("cannot create '%s': %m", address);
    return NULL;
  }
  if ((r = vmdr_repo_init (address, &cfg)) < 0) {
    cli_error ("cannot create a repository in '%s': %s", address, strerror (-r));
    return NULL;
  }
  if (!quiet)
    cli_warn ("created the repository '%s' with the chunking of the bundle", address);
  return cmd_open_repo (address, false);
}

/* The result as one JSON object: IN is NULL when the header could not be
 * read, ERR the message of a failure (NULL: none). */
static void
print_json (const struct vmdr_bundle_info *in, const struct vmdr_bundle_stats *st, double secs,
            const char *err)
{
  json_object *j = json_object_new_object (), *a = json_object_new_array ();

  json_object_object_add (j, "ok", json_object_new_boolean (err == NULL));
  json_object_object_add (j, "error", err ? json_object_new_string (err) : NULL);
  if (in == NULL) {
    json_object_put (a);
    goto out;
  }
  json_object_object_add (j, "base", in->base[0] ? json_object_new_string (in->base) : NULL);
  for (size_t i = 0; i < in->nsnapshots; i++)
    json_object_array_add (a, json_object_new_string (in->snapshots[i]));
  json_object_object_add (j, "snapshots", a);
  json_object_object_add (j, "snapshots_imported",
                          json_object_new_int64 ((int64_t) (st->snapshots - st->snapshots_present)));
  json_object_object_add (j, "snapshots_present", json_object_new_int64 ((int64_t) st->snapshots_present));
  json_object_object_add (j, "blobs", json_object_new_int64 ((int64_t) st->blobs));
  json_object_object_add (j, "blobs_new", json_object_new_int64 ((int64_t) st->blobs_new));
  json_object_object_add (j, "bytes_new", json_object_new_int64 ((int64_t) st->bytes_new));
  json_object_object_add (j, "seconds", json_object_new_double (secs));
 out:
  cmd_json_print (j);
}

int
main (int argc, char **argv)
{
  enum { JSON = CHAR_MAX + 1, PROGRESS, NO_PROGRESS };
  static const struct option lopts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "jobs", required_argument, NULL, 'j' },
    { "json", no_argument, NULL, JSON },
    { "progress", no_argument, NULL, PROGRESS },
    { "no-progress", no_argument, NULL, NO_PROGRESS },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  struct vmdr_bundle_import_opts io = { .threads = 2 };
  struct vmdr_bundle_stats st = { 0 };
  const struct vmdr_bundle_info *in;
  struct vmdr_bundle_reader *rd;
  const char *repo_opt = NULL, *address, *file;
  bool json = false, quiet = false;
  struct vmdr_repo *repo;
  struct progress prog;
  char what[PATH_MAX + 16], size[16];
  int c, show = -1, fd, r;
  double t0 = cmd_now ();

  cli_init (argv[0]);
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:j:qhV", lopts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case 'j': io.threads = cmd_jobs_arg (optarg); break;
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
    cli_usage_error ("no bundle: give FILE, or - for standard input");
  if (argc - optind > 1)
    cli_usage_error ("one bundle at a time");
  file = argv[optind];
  address = cmd_repo_address (repo_opt);
  if (strcmp (file, "-") == 0) {
    if (isatty (STDIN_FILENO))
      cli_usage_error ("standard input is a terminal: pipe a bundle into it, or give FILE");
    fd = STDIN_FILENO;
    snprintf (what, sizeof what, "the bundle on standard input");
  }
  else if ((fd = open (file, O_RDONLY | O_CLOEXEC)) < 0) {
    cli_error ("cannot open '%s': %m", file);
    return VMDR_EXIT_FAILED;
  }
  else
    snprintf (what, sizeof what, "'%s'", file);
  if (vmdr_bundle_reader_open_fd (fd, &rd) < 0) {
    cli_error ("out of memory");
    return VMDR_EXIT_FAILED;
  }
  if ((r = vmdr_bundle_read_header (rd, &in)) < 0) {
    if (r == -EPROTONOSUPPORT)
      cli_error ("cannot import %s: %s; upgrade vmdr", what, vmdr_bundle_reader_error (rd));
    else
      cli_error ("cannot import %s: %s", what, vmdr_bundle_reader_error (rd));
    if (json)
      print_json (NULL, &st, cmd_now () - t0, vmdr_bundle_reader_error (rd));
    vmdr_bundle_reader_free (rd);
    return VMDR_EXIT_FAILED;
  }
  if ((repo = open_repo (address, in, quiet)) == NULL) {
    if (json)
      print_json (in, &st, cmd_now () - t0, "cannot open the repository");
    vmdr_bundle_reader_free (rd);
    return VMDR_EXIT_FAILED;
  }
  if (vmdr_bundle_compatible (rd, repo) < 0) {
    cli_error ("'%s' has other chunking than the bundle (%s): import into a new repository",
               address, vmdr_bundle_reader_error (rd));
    if (json)
      print_json (in, &st, cmd_now () - t0, vmdr_bundle_reader_error (rd));
    r = -EXDEV;
    goto out;
  }
  progress_init (&prog, quiet ? 0 : show);
  progress_begin (&prog, in->nsnapshots == 1 ? in->snapshots[0] : "import");
  io.progress = progress_cb;
  io.popaque = &prog;
  r = vmdr_bundle_import (rd, repo, &io, &st);
  progress_end (&prog);
  if (r < 0) {
    const char *why = vmdr_bundle_reader_error (rd);
    cli_error ("cannot import %s: %s", what, *why ? why : strerror (-r));
    if (json)
      print_json (in, &st, cmd_now () - t0, *why ? why : strerror (-r));
  }
  else if (json)
    print_json (in, &st, cmd_now () - t0, NULL);
  else if (!quiet)
    printf ("%llu snapshot%s imported (%llu already there), %s stored\n",
            (unsigned long long) (st.snapshots - st.snapshots_present),
            st.snapshots - st.snapshots_present == 1 ? "" : "s",
            (unsigned long long) st.snapshots_present, cmd_size (st.bytes_new, size));
 out:
  vmdr_bundle_reader_free (rd);
  vmdr_repo_close (repo);
  if (fd != STDIN_FILENO)
    close (fd);
  return r == -EBUSY ? VMDR_EXIT_BUSY : r < 0 ? VMDR_EXIT_FAILED : VMDR_EXIT_OK;
}
