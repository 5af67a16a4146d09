/* vmdr: the git-style front end.  "vmdr TOOL ARGS..." runs vmdr-TOOL from the
 * directory this program lives in (or $VMDR_EXEC_PATH), so that a build tree
 * and an installed tree each run their own tools. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"

#define MAX_TOOL_NAME 64

static void __attribute__((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: vmdr [--exec-path] COMMAND [ARGS...]\n"
"       vmdr help [COMMAND]\n"
"\n"
"Disaster recovery for KVM/libvirt virtual machines.  Runs vmdr-COMMAND.\n"
"\n"
"Options:\n"
"      --exec-path  print the directory the vmdr-COMMAND tools are run from\n"
"  -h, --help       show this help and exit\n"
"  -V, --version    show the version and exit\n"
"\n"
"'vmdr help' lists the commands installed; 'vmdr help COMMAND' shows the\n"
"manual of one.\n");
  exit (status);
}

/* The tools live next to this program unless VMDR_EXEC_PATH says otherwise. */
static int
exec_path (char *out, size_t size)
{
  const char *env = getenv ("VMDR_EXEC_PATH");
  char self[PATH_MAX];
  ssize_t n;
  char *slash;

  if (env && *env) {
    if (strlen (env) >= size)
      return -ENAMETOOLONG;
    strcpy (out, env);
    return 0;
  }
  n = readlink ("/proc/self/exe", self, sizeof self - 1);
  if (n < 0)
    return -errno;
  self[n] = '\0';
  slash = strrchr (self, '/');
  if (slash == NULL || (size_t) (slash - self) >= size)
    return -ENAMETOOLONG;
  *slash = '\0';
  strcpy (out, self);
  return 0;
}

/* Command names are short and plain: never a path, never an option. */
static int
valid_command (const char *name)
{
  size_t len = strlen (name);

  if (len == 0 || len > MAX_TOOL_NAME || name[0] == '-')
    return 0;
  return strspn (name, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}

static int
tool_path (const char *dir, const char *name, char *out, size_t size)
{
  int n = snprintf (out, size, "%s/vmdr-%s", dir, name);

  if (n < 0 || (size_t) n >= size)
    return -ENAMETOOLONG;
  return access (out, X_OK) == 0 ? 0 : -errno;
}

static int
cmp_str (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static int
list_commands (const char *dir)
{
  DIR *d = opendir (dir);
  char *names[256];
  size_t n = 0;
  struct dirent *e;

  if (d == NULL) {
    cli_error ("cannot open '%s': %s", dir, strerror (errno));
    return VMDR_EXIT_FAILED;
  }
  while ((e = readdir (d)) != NULL && n < sizeof names / sizeof names[0]) {
    char path[PATH_MAX];
    const char *name = e->d_name + 5;
    if (strncmp (e->d_name, "vmdr-", 5) != 0 || !valid_command (name) ||
        tool_path (dir, name, path, sizeof path) < 0)
      continue;
    names[n] = strdup (name);
    if (names[n])
      n++;
  }
  closedir (d);
  qsort (names, n, sizeof names[0], cmp_str);
  printf ("vmdr commands in '%s':\n", dir);
  for (size_t i = 0; i < n; i++) {
    printf ("  %s\n", names[i]);
    free (names[i]);
  }
  if (n == 0)
    printf ("  (none installed)\n");
  return VMDR_EXIT_OK;
}

static int
run_tool (const char *dir, const char *name, char **argv)
{
  char path[PATH_MAX], argv0[MAX_TOOL_NAME + 8];
  int r;

  r = valid_command (name) ? tool_path (dir, name, path, sizeof path) : -ENOENT;
  if (r == -ENOENT || r == -EACCES) {     /* absent, or not a program */
    cli_error ("'%s' is not a vmdr command; see 'vmdr help'", name);
    return VMDR_EXIT_USAGE;
  }
  if (r < 0) {
    cli_error ("cannot run '%s': %s", path, strerror (-r));
    return VMDR_EXIT_FAILED;
  }
  snprintf (argv0, sizeof argv0, "vmdr-%s", name);
  argv[0] = argv0;
  execv (path, argv);
  cli_error ("cannot run '%s': %s", path, strerror (errno));
  return VMDR_EXIT_FAILED;
}

/* PATH is a regular file we may read. */
static bool
readable_file (const char *path)
{
  struct stat sb;

  return stat (path, &sb) == 0 && S_ISREG (sb.st_mode) && access (path, R_OK) == 0;
}

/* A page PAGE.1 built but not installed: in $VMDR_MAN_PATH, or in the build
 * tree this program runs from (meson builds the tools into BUILDDIR/cmd and
 * the pages into BUILDDIR/docs/man).  0 and its path in OUT, or -ENOENT.
 * The path never starts with '-': man must not take it for an option. */
static int
built_page (const char *dir, const char *page, char *out, size_t size)
{
  const char *env = getenv ("VMDR_MAN_PATH");
  int n;

  if (env && *env) {
    n = snprintf (out, size, "%s%s/%s.1", env[0] == '/' ? "" : "./", env, page);
    if (n > 0 && (size_t) n < size && readable_file (out))
      return 0;
  }
  n = snprintf (out, size, "%s%s/../docs/man/%s.1", dir[0] == '/' ? "" : "./", dir, page);
  if (n > 0 && (size_t) n < size && readable_file (out))
    return 0;
  return -ENOENT;
}

/* Does man(1) find an installed PAGE?  "man -w PAGE", run without a shell,
 * its output discarded; false when man cannot be run. */
static bool
man_page_installed (const char *page)
{
  char *args[] = { (char *) "man", (char *) "-w", (char *) page, NULL };
  posix_spawn_file_actions_t fa;
  int st, r;
  pid_t pid;

  if (posix_spawn_file_actions_init (&fa) != 0)
    return false;
  r = posix_spawn_file_actions_addopen (&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  if (r == 0)
    r = posix_spawn_file_actions_addopen (&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  if (r == 0)
    r = posix_spawnp (&pid, "man", &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy (&fa);
  if (r != 0)
    return false;
  while (waitpid (pid, &st, 0) < 0)
    if (errno != EINTR)
      return false;
  return WIFEXITED (st) && WEXITSTATUS (st) == 0;
}

/* "vmdr help TOOL": its manual page, built (VMDR_MAN_PATH, the build tree)
 * or installed, shown by man(1); else (no page, no man) its --help.  NAME
 * passed valid_command, and man gets it as one argument: no shell sees it. */
static int
help_tool (const char *dir, const char *name)
{
  char page[MAX_TOOL_NAME + 8], path[PATH_MAX];
  char *args[] = { NULL, (char *) "--help", NULL };

  if (!valid_command (name)) {
    cli_error ("'%s' is not a vmdr command; see 'vmdr help'", name);
    return VMDR_EXIT_USAGE;
  }
  snprintf (page, sizeof page, "vmdr-%s", name);
  if (built_page (dir, page, path, sizeof path) == 0)
    execlp ("man", "man", "-l", path, (char *) NULL);
  else if (man_page_installed (page))
    execlp ("man", "man", page, (char *) NULL);
  return run_tool (dir, name, args);
}

int
main (int argc, char **argv)
{
  enum { EXEC_PATH = CHAR_MAX + 1 };
  static const struct option long_options[] = {
    { "exec-path", no_argument, NULL, EXEC_PATH },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL },
  };
  char dir[PATH_MAX];
  int c, r;

  cli_init (argv[0]);
  r = exec_path (dir, sizeof dir);
  /* '+': stop at the command, its options are its own; ':' and opterr = 0:
   * we print the one-line error ourselves. */
  opterr = 0;
  while ((c = getopt_long (argc, argv, "+:hV", long_options, NULL)) != -1) {
    switch (c) {
    case EXEC_PATH:
      if (r < 0) {
        cli_error ("cannot find the tools' directory: %s", strerror (-r));
        return VMDR_EXIT_FAILED;
      }
      printf ("%s\n", dir);
      return VMDR_EXIT_OK;
    case 'h':
      usage (stdout, VMDR_EXIT_OK);
    case 'V':
      cli_version ();
    default:
      cli_bad_option (c, argv);
    }
  }
  if (optind >= argc)
    usage (stderr, VMDR_EXIT_USAGE);
  if (r < 0) {
    cli_error ("cannot find the tools' directory: %s", strerror (-r));
    return VMDR_EXIT_FAILED;
  }
  if (strcmp (argv[optind], "help") == 0) {
    if (optind + 1 >= argc)
      return list_commands (dir);
    if (optind + 2 < argc)
      cli_usage_error ("'help' takes one command");
    return help_tool (dir, argv[optind + 1]);
  }
  return run_tool (dir, argv[optind], argv + optind);
}
