/* vmdr-init: create a repository. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cmd-repo.h"
#include "repo.h"
#include "size.h"

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr-init -r REPO [OPTIONS]\n"
"\n"
"Create an empty vmdr repository at REPO (a path or file://PATH: the\n"
"directory is created if its parent exists; or s3://BUCKET[/PREFIX]: the\n"
"bucket must exist).\n"
"\n"
"Options:\n"
"  -r, --repo=REPO            where (default: $VMDR_REPO)\n"
"      --chunk-size=SIZE      disk chunk size, a power of two from 64K to 4M (64K)\n"
"      --hash=NAME            sha256 or blake2b-256 (default: the faster on this CPU)\n"
"      --compression-level=N  zstd level, -7 to 19 (2)\n"
"      --group-size=SIZE      compress a disk's new chunks in groups of SIZE,\n"
"                             the chunk size to 8M, or 0 for none (8M)\n"
"      --pack-size=SIZE       target pack object size, 1M to 1G (16M)\n"
"  -q, --quiet                print nothing on success\n"
"  -h, --help                 show this help and exit\n"
"  -V, --version              show the version and exit\n");
  exit (status);
}

static uint64_t
size_arg (const char *opt, const char *arg, uint64_t max)
{
  uint64_t v;

  if (vmdr_parse_size (arg, max, &v) < 0)
    cli_usage_error ("invalid %s '%s'", opt, arg);
  return v;
}

/* Plain paths that do not exist yet are created, like git init. */
static int
make_dir (const char *address)
{
  const char *path = address;

  if (strncmp (path, "file://", 7) == 0)
    path += 7;
  else if (strstr (path, "://"))
    return 0;                   /* not a local path */
  if (mkdir (path, 0755) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

int
main (int argc, char **argv)
{
  enum { CHUNK_SIZE = CHAR_MAX + 1, HASH, LEVEL, PACK_SIZE, GROUP_SIZE };
  static const struct option opts[] = {
    { "repo", required_argument, NULL, 'r' },
    { "chunk-size", required_argument, NULL, CHUNK_SIZE },
    { "hash", required_argument, NULL, HASH },
    { "compression-level", required_argument, NULL, LEVEL },
    { "pack-size", required_argument, NULL, PACK_SIZE },
    { "group-size", required_argument, NULL, GROUP_SIZE },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  struct vmdr_repo_config cfg;
  const char *repo_opt = NULL, *address;
  bool quiet = false;
  char *end;
  long level;
  int c, r;

  cli_init (argv[0]);
  if (vmdr_repo_config_default (&cfg) < 0) {
    cli_error ("cannot get random bytes for the repository id");
    return VMDR_EXIT_FAILED;
  }
  opterr = 0;
  while ((c = getopt_long (argc, argv, ":r:qhV", opts, NULL)) != -1) {
    switch (c) {
    case 'r': repo_opt = optarg; break;
    case CHUNK_SIZE: cfg.chunk_size = (uint32_t) size_arg ("chunk size", optarg, VMDR_CHUNK_MAX); break;
    case PACK_SIZE: cfg.pack_size = size_arg ("pack size", optarg, 1ull << 30); break;
    case GROUP_SIZE:
      cfg.group_size = strcmp (optarg, "0") == 0 ? 0
                       : (uint32_t) size_arg ("group size", optarg, VMDR_GROUP_SIZE_MAX);
      break;
    case HASH:
      if (vmdr_hash_from_name (optarg, &cfg.hash) < 0)
        cli_usage_error ("unknown hash '%s' (use sha256 or blake2b-256)", optarg);
      break;
    case LEVEL:
      errno = 0;
      level = strtol (optarg, &end, 10);
      if (errno || *end || end == optarg || level < -7 || level > 19)
        cli_usage_error ("invalid compression level '%s' (-7 to 19)", optarg);
      cfg.zstd_level = (int) level;
      break;
    case 'q': quiet = true; break;
    case 'h': usage (stdout, VMDR_EXIT_OK);
    case 'V': cli_version ();
    default: cli_bad_option (c, argv);
    }
  }
  if (optind < argc)
    cli_usage_error ("unexpected argument '%s'", argv[optind]);
  address = cmd_repo_address (repo_opt);
  if (vmdr_repo_config_check (&cfg) < 0)
    cli_usage_error ("chunk size must be a power of two from 64K to 4M, group size one "
                     "from the chunk size to 8M or 0, pack size from 1M to 1G");

  if ((r = make_dir (address)) < 0) {
    cli_error ("cannot create '%s': %s", address, strerror (-r));
    return VMDR_EXIT_FAILED;
  }
  r = vmdr_repo_init (address, &cfg);
  if (r == -EEXIST) {
    cli_error ("'%s' is already a vmdr repository", address);
    return VMDR_EXIT_FAILED;
  }
  if (r < 0) {
    cli_error ("cannot create a repository in '%s': %s", address,
               vmdr_backend_error () ? vmdr_backend_error () : strerror (-r));
    return VMDR_EXIT_FAILED;
  }
  if (!quiet) {
    char cs[16];
    printf ("initialized vmdr repository in '%s' (id %s, %s, %s chunks, zstd %d)\n",
            address, cfg.id, vmdr_hash_name (cfg.hash), cmd_size (cfg.chunk_size, cs),
            cfg.zstd_level);
  }
  return VMDR_EXIT_OK;
}
