#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nbd-reader.h"
#include "qemu-nbd.h"

extern char **environ;

/* The server is ready once it accepts a connection. */
static bool
listening (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd, ok;

  if (strlen (path) >= sizeof sa.sun_path)
    return false;
  strcpy (sa.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  ok = connect (fd, (struct sockaddr *) &sa, sizeof sa) == 0;
  close (fd);
  return ok;
}

/* The server serves EXPORT: an NBD handshake completes.  qemu-nbd listens
 * before it opens the image and checks the bitmap, and a connection made
 * then dies with it when it refuses them; only the main loop, which runs
 * once the export exists, answers a handshake. */
static bool
serving (const char *path, const char *export)
{
  struct vmdr_nbd *c;

  if (vmdr_nbd_open_unix (path, export, NULL, &c) < 0)
    return false;
  vmdr_nbd_close (c);
  return true;
}

/* The path of PROG in $PATH, in BUF.  0 or -ENOENT. */
static int
find_program (const char *prog, char *buf, size_t size)
{
  const char *path = getenv ("PATH");
  const char *p = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";

  while (*p) {
    size_t n = strcspn (p, ":");
    if (n > 0 && (size_t) snprintf (buf, size, "%.*s/%s", (int) n, p, prog) < size &&
        access (buf, X_OK) == 0)
      return 0;
    p += n + (p[n] == ':');
  }
  return -ENOENT;
}

/* Start qemu-nbd as our child, made to die with us (PR_SET_PDEATHSIG): a
 * tool killed with SIGKILL must not leave a server holding an image.  The
 * signal is SIGKILL, not SIGTERM: a qemu-nbd still starting up when we die
 * can lose a SIGTERM (seen here: one left waiting for its first client,
 * which a later SIGTERM ended), and what it serves then is a temporary
 * image or a read-only one, nothing to flush.
 * Only async-signal-safe calls between fork and exec. */
static int
start_child (const char *const *argv, char *const *envp, pid_t *out)
{
  char exe[4096];
  pid_t parent = getpid (), pid;
  int r;

  if ((r = find_program (argv[0], exe, sizeof exe)) < 0)
    return r;
  pid = fork ();
  if (pid < 0)
    return -errno;
  if (pid == 0) {
    int null = open ("/dev/null", O_WRONLY);
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () != parent)   /* the parent died before the prctl */
      _exit (127);
    /* qemu-nbd's own messages would break a tool's one-line errors. */
    if (null >= 0) {
      dup2 (null, STDOUT_FILENO);
      dup2 (null, STDERR_FILENO);
    }
    execve (exe, (char *const *) argv, envp);
    _exit (127);
  }
  *out = pid;
  return 0;
}

/* Spawn qemu-nbd with ARGV and wait until it listens on SOCKET (10 s), or,
 * with EXPORT, until it serves that (a persistent server only: a probe that
 * disconnects would end any other). */
static int
spawn (const char *const *argv, char *const *envp, const char *socket, const char *export,
       bool bitmap, struct vmdr_qemu_nbd *out)
{
  int st, r;
  pid_t pid;

  unlink (socket);
  if ((r = start_child (argv, envp, &pid)) < 0)
    return r;
  /* Our child, so that we reap it: poll until it listens or dies (10 s). */
  for (int i = 0; i < 1000; i++) {
    if (waitpid (pid, &st, WNOHANG) == pid)
      return bitmap ? -ENOENT : -EIO;    /* it refused the image or bitmap */
    if (export ? serving (socket, export) : listening (socket)) {
      out->pid = pid;
      return 0;
    }
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    nanosleep (&ts, NULL);
  }
  kill (pid, SIGKILL);
  waitpid (pid, &st, 0);
  return -ETIMEDOUT;
}

int
vmdr_qemu_nbd_start (const char *file, const char *format, const char *export,
                     const char *bitmap, const char *socket, unsigned shared,
                     struct vmdr_qemu_nbd *out)
{
  char sh[16];
  const char *argv[20];
  int n = 0;

  snprintf (sh, sizeof sh, "%u", shared);
  argv[n++] = "qemu-nbd";
  argv[n++] = "--persistent";
  argv[n++] = "--read-only";
  argv[n++] = "--shared"; argv[n++] = sh;
  argv[n++] = "--socket"; argv[n++] = socket;
  argv[n++] = "--export-name"; argv[n++] = export;
  argv[n++] = "--format"; argv[n++] = format;
  if (bitmap) {
    argv[n++] = "--bitmap";
    argv[n++] = bitmap;
  }
  argv[n++] = file;
  argv[n] = NULL;
  return spawn (argv, environ, socket, export, bitmap != NULL, out);
}

/* O_DIRECT where the file system has it (not tmpfs): a restore writes each
 * byte once, and through the page cache qemu-nbd spends as long copying and
 * writing back as the whole restore takes otherwise. */
static const char *
cache_mode (const char *file)
{
  int fd = open (file, O_RDWR | O_DIRECT | O_CLOEXEC);

  if (fd < 0)
    return "writeback";
  close (fd);
  return "none";
}

/* glibc returns each freed multi-MiB request buffer to the kernel and maps
 * the next one afresh; qemu-nbd then spends more time in page faults than in
 * writing.  These tunables keep such buffers in the heap.  ENV holds
 * ENV_MAX entries; "GLIBC_TUNABLES" of our own environment wins. */
#define ENV_MAX 256
static void
writer_env (char **env)
{
  bool own = false;
  size_t n = 0;

  for (char **e = environ; *e && n < ENV_MAX - 2; e++) {
    own |= strncmp (*e, "GLIBC_TUNABLES=", 15) == 0;
    env[n++] = *e;
  }
  if (!own)
    env[n++] = (char *) "GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:"
                        "glibc.malloc.mmap_threshold=33554432";
  env[n] = NULL;
}

int
vmdr_qemu_nbd_start_writable (const char *file, const char *format, const char *export,
                              const char *socket, unsigned shared,
                              struct vmdr_qemu_nbd *out)
{
  char sh[16];
  char *env[ENV_MAX];
  /* Not --persistent: it exits once its last client is gone, so a writer
   * killed with SIGKILL leaves no server behind. */
  const char *argv[] = {
    "qemu-nbd", "--shared", sh, "--socket", socket,
    "--export-name", export, "--format", format, "--cache", cache_mode (file),
    "--discard", "unmap", file, NULL
  };

  snprintf (sh, sizeof sh, "%u", shared);
  writer_env (env);
  return spawn (argv, env, socket, NULL, false, out);
}

int
vmdr_qemu_nbd_stop (struct vmdr_qemu_nbd *q)
{
  int st;

  if (q->pid <= 0)
    return 0;
  kill (q->pid, SIGTERM);
  if (waitpid (q->pid, &st, 0) < 0)
    st = -1;
  q->pid = 0;
  /* SIGTERM is how it is told to stop: that death is a clean exit. */
  if (WIFSIGNALED (st) && WTERMSIG (st) == SIGTERM)
    return 0;
  return WIFEXITED (st) && WEXITSTATUS (st) == 0 ? 0 : -EIO;
}
