/* Helpers shared by the tools in cmd/ (and only by them: libraries never
 * print).  One error style everywhere, after git's CodingGuidelines:
 *   vmdr-restore: cannot open 'PATH': No such file or directory
 */
#ifndef VMDR_CLI_H
#define VMDR_CLI_H

#include <stdarg.h>
#include <stdbool.h>

/* Exit codes documented in vmdr(7); every tool uses these and no others. */
enum vmdr_exit {
  VMDR_EXIT_OK = 0,
  VMDR_EXIT_FAILED = 1,
  VMDR_EXIT_USAGE = 2,
  VMDR_EXIT_WARNINGS = 3,       /* done, but something was done instead */
  VMDR_EXIT_BUSY = 4,           /* another run holds the lock */
};

/* Set the program name used as the prefix of every message: the basename of
 * argv0.  Call once, first thing in main().  argv0 must outlive the program. */
void cli_init (const char *argv0);
const char *cli_progname (void);

/* "PROG: MESSAGE\n" on stderr.  Warnings say what was done instead. */
void cli_error (const char *fmt, ...) __attribute__((format (printf, 1, 2)));
void cli_warn (const char *fmt, ...) __attribute__((format (printf, 1, 2)));

/* One line, "PROG: MESSAGE (see 'PROG --help')", on stderr; exit 2. */
void cli_usage_error (const char *fmt, ...)
  __attribute__((format (printf, 1, 2), noreturn));

/* For getopt_long run with opterr = 0 and an optstring starting with ':'
 * (after any '+'): report the option that getopt_long refused (C is what it
 * returned, '?' or ':') in one line and exit 2. */
void cli_bad_option (int c, char **argv) __attribute__((noreturn));

/* "PROG (vmdr) VERSION" on stdout, exit 0. */
void cli_version (void) __attribute__((noreturn));

#endif
