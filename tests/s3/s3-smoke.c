/* s3-smoke: a tiny S3 tool over storage/s3.h for tests/s3/test-s3.sh.
 *
 *   s3-smoke [--max BYTES] COMMAND ARGS...
 *     mb BUCKET                   create a bucket
 *     rb BUCKET                   delete a bucket
 *     put BUCKET KEY FILE         upload FILE, print the ETag
 *     get BUCKET KEY FILE [OFFSET [LENGTH]]
 *                                 download (a range of) an object to FILE
 *     head BUCKET KEY             print the object's size
 *     rm BUCKET KEY               delete an object
 *     ls BUCKET PREFIX PAGE_SIZE  print the keys, then "pages=N"
 *     mpu-init BUCKET KEY         start a multipart upload, print its id
 *     mpu-ls BUCKET PREFIX        print "KEY UPLOAD-ID" of unfinished uploads
 *     sweep REPO SECONDS          the repository backend's sweep_temp, with a
 *                                 cutoff SECONDS from now; print "removed=N"
 *     bget REPO KEY FILE OFFSET LEN MAX
 *                                 the backend's get into FILE; on failure
 *                                 print the errno's name and exit 3
 *
 * Connection and credentials come from the environment only (AWS_*, see
 * vmdr_s3_config_from_env).  When the server refuses a request, stdout gets
 * "http=STATUS code=CODE errno=NAME" and the exit status is 3; other failures
 * exit 1, usage errors 2. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <time.h>

#include "backend.h"
#include "cleanup.h"
#include "s3.h"

#define FILE_MAX (256u << 20)

static const char *prog = "s3-smoke";

static void
usage (FILE *f, int status)
{
  fprintf (f, "usage: %s [--max BYTES] mb|rb|put|get|head|rm|ls|mpu-init|mpu-ls|sweep ARGS...\n",
           prog);
  exit (status);
}

/* Report a failed call; exit 3 when the server answered, 1 otherwise. */
static void
fail (const char *what, const char *bucket, const char *key, int r,
      const struct vmdr_s3_status *st)
{
  char desc[512];

  vmdr_s3_status_describe (st, desc, sizeof desc);
  fprintf (stderr, "%s: %s '%s%s%s': %s (%s)\n", prog, what, bucket,
           key ? "/" : "", key ? key : "", strerror (-r), desc);
  if (st->http != 0) {
    printf ("http=%ld code=%s errno=%s\n", st->http, st->code[0] ? st->code : "-",
            strerrorname_np (-r) ? strerrorname_np (-r) : "?");
    exit (3);
  }
  exit (1);
}

static int
read_file (const char *path, void **data, size_t *len)
{
  _cleanup_close_ int fd = open (path, O_RDONLY | O_CLOEXEC);
  _cleanup_free_ char *buf = NULL;
  struct stat sb;
  size_t got = 0;

  if (fd < 0 || fstat (fd, &sb) < 0)
    return -errno;
  if ((uint64_t) sb.st_size > FILE_MAX)
    return -EFBIG;
  if (!(buf = malloc (sb.st_size ? sb.st_size : 1)))
    return -ENOMEM;
  while (got < (size_t) sb.st_size) {
    ssize_t n = read (fd, buf + got, sb.st_size - got);
    if (n <= 0)
      return n < 0 ? -errno : -EIO;
    got += n;
  }
  *data = STEAL_PTR (buf);
  *len = got;
  return 0;
}

static int
write_file (const char *path, const void *data, size_t len)
{
  _cleanup_close_ int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  size_t done = 0;

  if (fd < 0)
    return -errno;
  while (done < len) {
    ssize_t n = write (fd, (const char *) data + done, len - done);
    if (n < 0)
      return -errno;
    done += n;
  }
  return close (STEAL_FD (fd)) < 0 ? -errno : 0;
}

static uint64_t
parse_u64 (const char *s)
{
  char *end;
  uint64_t v;

  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno || end == s || *end || s[0] == '-')
    usage (stderr, 2);
  return v;
}

static int
cmd_put (struct vmdr_s3 *s3, char **a)
{
  _cleanup_free_ void *data = NULL;
  struct vmdr_s3_status st;
  char etag[128];
  size_t len = 0;
  int r;

  if ((r = read_file (a[2], &data, &len)) < 0) {
    fprintf (stderr, "%s: cannot read '%s': %s\n", prog, a[2], strerror (-r));
    return 1;
  }
  if ((r = vmdr_s3_put_object (s3, a[0], a[1], data, len, etag, &st)) < 0)
    fail ("put", a[0], a[1], r, &st);
  printf ("%s\n", etag);
  return 0;
}

static int
cmd_get (struct vmdr_s3 *s3, char **a, int n, size_t max)
{
  _cleanup_free_ void *data = NULL;
  struct vmdr_s3_range range = { 0 };
  struct vmdr_s3_status st;
  size_t len = 0;
  int r;

  if (n >= 4)
    range.offset = parse_u64 (a[3]);
  if (n >= 5)
    range.length = parse_u64 (a[4]);
  r = vmdr_s3_get_object (s3, a[0], a[1], n >= 4 ? &range : NULL, max, &data, &len, &st);
  if (r < 0)
    fail ("get", a[0], a[1], r, &st);
  if ((r = write_file (a[2], data, len)) < 0) {
    fprintf (stderr, "%s: cannot write '%s': %s\n", prog, a[2], strerror (-r));
    return 1;
  }
  return 0;
}

static int
print_key (const struct vmdr_s3_object *obj, void *opaque)
{
  (void) opaque;
  printf ("%s %" PRIu64 "\n", obj->key, obj->size);
  return 0;
}

static int
cmd_ls (struct vmdr_s3 *s3, char **a)
{
  struct vmdr_s3_status st;
  size_t pages = 0;
  uint64_t page_size = parse_u64 (a[2]);
  int r;

  if (page_size > VMDR_S3_LIST_MAX_KEYS)
    usage (stderr, 2);
  r = vmdr_s3_list_objects (s3, a[0], a[1], page_size, print_key, NULL, &pages, &st);
  if (r < 0)
    fail ("ls", a[0], a[1], r, &st);
  printf ("pages=%zu\n", pages);
  return 0;
}

static int
cmd_mpu_ls (struct vmdr_s3 *s3, char **a)
{
  _cleanup_free_ char *km = NULL, *im = NULL;
  struct vmdr_s3_status st;
  int r;

  for (;;) {
    struct vmdr_s3_upload_page pg = { 0 };
    if ((r = vmdr_s3_list_multipart_uploads (s3, a[0], a[1], km, im, &pg, &st)) < 0)
      fail ("mpu-ls", a[0], a[1], r, &st);
    for (size_t i = 0; i < pg.n_uploads; i++)
      printf ("%s %s\n", pg.uploads[i].key, pg.uploads[i].upload_id);
    free (km);
    free (im);
    km = STEAL_PTR (pg.next_key_marker);
    im = STEAL_PTR (pg.next_upload_id_marker);
    bool more = pg.truncated;
    vmdr_s3_upload_page_clear (&pg);
    if (!more)
      return 0;
  }
}

/* Not the client: the backend's sweep, through the repository address. */
static int
cmd_sweep (const char *address, const char *seconds)
{
  struct vmdr_backend *b;
  uint64_t removed = 0;
  int r;

  if ((r = vmdr_backend_open (address, &b)) < 0) {
    fprintf (stderr, "%s: cannot open '%s': %s\n", prog, address,
             vmdr_backend_error () ? vmdr_backend_error () : strerror (-r));
    return 1;
  }
  r = b->ops->sweep_temp ? b->ops->sweep_temp (b, time (NULL) + (time_t) parse_u64 (seconds),
                                               &removed) : 0;
  vmdr_backend_close (b);
  if (r < 0) {
    fprintf (stderr, "%s: sweep: %s\n", prog, strerror (-r));
    return 1;
  }
  printf ("removed=%" PRIu64 "\n", removed);
  return 0;
}

/* The backend's get, for its edge cases (ranges, empty answers, caps). */
static int
cmd_bget (char **a)
{
  _cleanup_free_ void *data = NULL;
  struct vmdr_backend *b;
  size_t len = 0;
  int r;

  if ((r = vmdr_backend_open (a[0], &b)) < 0) {
    fprintf (stderr, "%s: cannot open '%s': %s\n", prog, a[0],
             vmdr_backend_error () ? vmdr_backend_error () : strerror (-r));
    return 1;
  }
  r = b->ops->get (b, a[1], parse_u64 (a[3]), parse_u64 (a[4]), parse_u64 (a[5]), &data, &len);
  vmdr_backend_close (b);
  if (r < 0) {
    printf ("%s\n", strerrorname_np (-r) ? strerrorname_np (-r) : "?");
    return 3;
  }
  if ((r = write_file (a[2], data, len)) < 0) {
    fprintf (stderr, "%s: cannot write '%s': %s\n", prog, a[2], strerror (-r));
    return 1;
  }
  return 0;
}

static int
run (struct vmdr_s3 *s3, const char *cmd, char **a, int n, size_t max)
{
  struct vmdr_s3_status st;
  uint64_t size;
  int r;

#define NEED(k) do { if (n != (k)) usage (stderr, 2); } while (0)
  if (strcmp (cmd, "mb") == 0) {
    NEED (1);
    if ((r = vmdr_s3_create_bucket (s3, a[0], &st)) < 0)
      fail ("mb", a[0], NULL, r, &st);
  }
  else if (strcmp (cmd, "rb") == 0) {
    NEED (1);
    if ((r = vmdr_s3_delete_bucket (s3, a[0], &st)) < 0)
      fail ("rb", a[0], NULL, r, &st);
  }
  else if (strcmp (cmd, "put") == 0) {
    NEED (3);
    return cmd_put (s3, a);
  }
  else if (strcmp (cmd, "get") == 0) {
    if (n < 3 || n > 5)
      usage (stderr, 2);
    return cmd_get (s3, a, n, max);
  }
  else if (strcmp (cmd, "head") == 0) {
    NEED (2);
    if ((r = vmdr_s3_head_object (s3, a[0], a[1], &size, &st)) < 0)
      fail ("head", a[0], a[1], r, &st);
    printf ("%" PRIu64 "\n", size);
  }
  else if (strcmp (cmd, "rm") == 0) {
    NEED (2);
    if ((r = vmdr_s3_delete_object (s3, a[0], a[1], &st)) < 0)
      fail ("rm", a[0], a[1], r, &st);
  }
  else if (strcmp (cmd, "ls") == 0) {
    NEED (3);
    return cmd_ls (s3, a);
  }
  else if (strcmp (cmd, "mpu-init") == 0) {
    char *id = NULL;
    NEED (2);
    if ((r = vmdr_s3_create_multipart (s3, a[0], a[1], &id, &st)) < 0)
      fail ("mpu-init", a[0], a[1], r, &st);
    printf ("%s\n", id);
    free (id);
  }
  else if (strcmp (cmd, "mpu-ls") == 0) {
    NEED (2);
    return cmd_mpu_ls (s3, a);
  }
  else
    usage (stderr, 2);
  return 0;
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "max", required_argument, NULL, 'm' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct vmdr_s3_config cfg = { 0 };
  struct vmdr_s3 *s3 = NULL;
  size_t max = 0;
  int c, r, rc;

  while ((c = getopt_long (argc, argv, "+h", opts, NULL)) != -1) {
    if (c == 'm')
      max = parse_u64 (optarg);
    else
      usage (c == 'h' ? stdout : stderr, c == 'h' ? 0 : 2);
  }
  if (optind >= argc)
    usage (stderr, 2);
  if (strcmp (argv[optind], "sweep") == 0) {
    if (argc - optind != 3)
      usage (stderr, 2);
    return cmd_sweep (argv[optind + 1], argv[optind + 2]);
  }
  if (strcmp (argv[optind], "bget") == 0) {
    if (argc - optind != 7)
      usage (stderr, 2);
    return cmd_bget (argv + optind + 1);
  }
  if ((r = vmdr_s3_config_from_env (&cfg)) < 0) {
    fprintf (stderr, "%s: bad S3 settings in the environment: %s\n", prog, strerror (-r));
    return 1;
  }
  r = vmdr_s3_open (&cfg, &s3);
  vmdr_s3_config_clear (&cfg);
  if (r < 0) {
    fprintf (stderr, "%s: cannot open the S3 connection: %s\n", prog, strerror (-r));
    return 1;
  }
  rc = run (s3, argv[optind], argv + optind + 1, argc - optind - 1, max);
  vmdr_s3_close (s3);
  return rc;
}
