#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>

#include "cli.h"

static const char *progname = "vmdr";

void
cli_init (const char *argv0)
{
  const char *slash;

  if (argv0 == NULL || *argv0 == '\0')
    return;
  slash = strrchr (argv0, '/');
  progname = slash ? slash + 1 : argv0;
}

const char *
cli_progname (void)
{
  return progname;
}

static void __attribute__((format (printf, 2, 0)))
vmessage (const char *prefix, const char *fmt, va_list ap)
{
  /* One fprintf per line so that concurrent writers do not interleave. */
  char line[4096];

  vsnprintf (line, sizeof line, fmt, ap);
  fprintf (stderr, "%s: %s%s\n", progname, prefix, line);
}

void
cli_error (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vmessage ("", fmt, ap);
  va_end (ap);
}

void
cli_warn (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vmessage ("warning: ", fmt, ap);
  va_end (ap);
}

void
cli_usage_error (const char *fmt, ...)
{
  char msg[2048];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  fprintf (stderr, "%s: %s (see '%s --help')\n", progname, msg, progname);
  exit (VMDR_EXIT_USAGE);
}

void
cli_bad_option (int c, char **argv)
{
  /* getopt leaves the offending word just before optind; for a short option
   * inside a cluster ("-xq") optopt names it. */
  const char *word = optind > 0 ? argv[optind - 1] : "";

  if (c == ':')
    cli_usage_error ("option '%s' needs an argument", word);
  if (optopt != 0 && strncmp (word, "--", 2) != 0)
    cli_usage_error ("unknown option '-%c'", optopt);
  cli_usage_error ("unknown option '%s'", word);
}

void
cli_version (void)
{
  printf ("%s (vmdr) %s\n", progname, PACKAGE_VERSION);
  exit (VMDR_EXIT_OK);
}
