/* cmd/metrics.c: the text it renders, the atomic write, reading back. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "metrics.h"

static char *
render (struct metrics *m)
{
  char *text = NULL;
  size_t len = 0;

  cr_assert_eq (metrics_render (m, &text, &len), 0);
  cr_assert_eq (strlen (text), len);
  return text;
}

static char dir[64];

static void
mkscratch (void)
{
  strcpy (dir, "/tmp/vmdr-metrics.XXXXXX");
  cr_assert_not_null (mkdtemp (dir));
}

static void
rmscratch (void)
{
  char cmd[128];

  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq (system (cmd), 0);
}

static void
put_file (const char *path, const char *text)
{
  FILE *f = fopen (path, "w");

  cr_assert_not_null (f);
  fputs (text, f);
  fclose (f);
}

Test (metrics, render_escapes_and_groups)
{
  struct metrics *m;
  const char *const a[] = { "domain", "we\"b\\1\nx", "repo", "/srv/r", NULL };
  const char *const b[] = { "domain", "db", "repo", "/srv/r", NULL };

  cr_assert_eq (metrics_new (&m), 0);
  cr_assert_eq (metrics_set (m, "vmdr_x_bytes", "Bytes\\of \"it\"\nnext", a, 1048576), 0);
  cr_assert_eq (metrics_set (m, "vmdr_y", NULL, NULL, 0.25), 0);
  cr_assert_eq (metrics_set (m, "vmdr_x_bytes", "another help", b, 3), 0);
  cr_assert_eq (metrics_set (m, "vmdr_x_bytes", NULL, a, 2), 0);    /* replaces */
  cr_assert_eq (metrics_add (m, "vmdr_y", NULL, NULL, 0.5), 0);
  cr_assert_eq (metrics_add (m, "vmdr_z", "z", b, 1), 0);
  cr_assert_eq (metrics_add (m, "vmdr_z", NULL, b, 1), 0);
  char *text = render (m);
  cr_assert_str_eq (text,
    "# HELP vmdr_x_bytes Bytes\\\\of \"it\"\\nnext\n"
    "# TYPE vmdr_x_bytes gauge\n"
    "vmdr_x_bytes{domain=\"we\\\"b\\\\1\\nx\",repo=\"/srv/r\"} 2\n"
    "vmdr_x_bytes{domain=\"db\",repo=\"/srv/r\"} 3\n"
    "# TYPE vmdr_y gauge\n"
    "vmdr_y 0.75\n"
    "# HELP vmdr_z z\n"
    "# TYPE vmdr_z gauge\n"
    "vmdr_z{domain=\"db\",repo=\"/srv/r\"} 2\n");
  free (text);
  double v = 0;
  cr_assert_eq (metrics_get (m, "vmdr_x_bytes", b, &v), 0);
  cr_assert_eq (v, 3);
  cr_assert_eq (metrics_get (m, "vmdr_x_bytes", NULL, &v), -ENOENT);
  cr_assert_eq (metrics_get (m, "vmdr_nope", b, &v), -ENOENT);
  metrics_free (m);
}

Test (metrics, values)
{
  struct metrics *m;
  const char *const l[] = { "k", "v", NULL };

  cr_assert_eq (metrics_new (&m), 0);
  metrics_set (m, "a", NULL, l, 1795838223.436);
  metrics_set (m, "b", NULL, l, NAN);
  metrics_set (m, "c", NULL, l, INFINITY);
  metrics_set (m, "d", NULL, l, -INFINITY);
  metrics_set (m, "e", NULL, l, 18446744073709551616.0);    /* 2^64 */
  metrics_set (m, "f", NULL, l, -3);
  metrics_set (m, "g", NULL, l, 0.1);
  char *text = render (m);
  cr_assert_str_eq (text,
    "# TYPE a gauge\na{k=\"v\"} 1795838223.436\n"
    "# TYPE b gauge\nb{k=\"v\"} NaN\n"
    "# TYPE c gauge\nc{k=\"v\"} +Inf\n"
    "# TYPE d gauge\nd{k=\"v\"} -Inf\n"
    "# TYPE e gauge\ne{k=\"v\"} 1.8446744073709552e+19\n"
    "# TYPE f gauge\nf{k=\"v\"} -3\n"
    "# TYPE g gauge\ng{k=\"v\"} 0.1\n");
  free (text);
  metrics_free (m);
}

Test (metrics, utf8_kept_and_replaced)
{
  struct metrics *m;
  const char *const l[] = { "d", "caf\xc3\xa9 \xff \xed\xa0\x80 \xf0\x9f\x98\x80", NULL };

  cr_assert_eq (metrics_new (&m), 0);
  cr_assert_eq (metrics_set (m, "a", NULL, l, 1), 0);
  char *text = render (m);
  cr_assert_str_eq (text, "# TYPE a gauge\n"
                    "a{d=\"caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                    "\xf0\x9f\x98\x80\"} 1\n");
  free (text);
  metrics_free (m);
}

Test (metrics, bad_names_stick)
{
  static const char *const bad[][5] = {
    { "1a", NULL }, { "a", "__x", "v", NULL }, { "a", "x-y", "v", NULL },
    { "a", "x", NULL }, { "a", "x", "1", "x", "2" }, { "", NULL }, { "a b", NULL },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct metrics *m;
    char *text = NULL;
    size_t len;
    cr_assert_eq (metrics_new (&m), 0);
    cr_assert_eq (metrics_set (m, bad[i][0], NULL, bad[i][1] ? &bad[i][1] : NULL, 1), -EINVAL,
                  "case %zu", i);
    /* Remembered: later calls and the render fail with it. */
    cr_assert_eq (metrics_set (m, "ok", NULL, NULL, 1), -EINVAL);
    cr_assert_eq (metrics_render (m, &text, &len), -EINVAL);
    cr_assert_null (text);
    metrics_free (m);
  }
  char big[METRICS_LABEL_VALUE_MAX + 2];
  memset (big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  struct metrics *m;
  cr_assert_eq (metrics_new (&m), 0);
  cr_assert_eq (metrics_set (m, "a", NULL, (const char *const[]) { "v", big, NULL }, 1), -EINVAL);
  metrics_free (m);
  /* No set: every call is a no-op. */
  cr_assert_eq (metrics_set (NULL, "1 bad", NULL, NULL, 1), 0);
  cr_assert_eq (metrics_set_attempt (NULL, NULL, "x", NULL, 0, 1, 1), 0);
}

Test (metrics, write_is_atomic_and_reads_back)
{
  struct metrics *m, *back;
  const char *const l[] = { "domain", "a\"b\\c\nd", "repo", "r", NULL };
  char path[128];
  struct stat st;
  double v;

  mkscratch ();
  snprintf (path, sizeof path, "%s/vmdr.prom", dir);
  put_file (path, "old\n");
  cr_assert_eq (metrics_new (&m), 0);
  metrics_set (m, "vmdr_t_seconds", "help", l, 1795838223.436);
  metrics_set (m, "vmdr_u", NULL, NULL, 12345678901234.0);
  umask (077);
  cr_assert_eq (metrics_write (m, path), 0);
  cr_assert_eq (stat (path, &st), 0);
  cr_assert_eq (st.st_mode & 0777, 0644, "readable by node_exporter");
  DIR *d = opendir (dir);
  struct dirent *e;
  size_t files = 0;
  while ((e = readdir (d)) != NULL)
    files += strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0;
  closedir (d);
  cr_assert_eq (files, 1, "no temporary file left");

  cr_assert_eq (metrics_read (path, &back), 0);
  cr_assert_eq (metrics_get (back, "vmdr_t_seconds", l, &v), 0);
  cr_assert_eq (v, 1795838223.436);
  cr_assert_eq (metrics_get (back, "vmdr_u", NULL, &v), 0);
  cr_assert_eq (v, 12345678901234.0);
  char *b = render (back);
  cr_assert (strstr (b, "vmdr_t_seconds{domain=\"a\\\"b\\\\c\\nd\",repo=\"r\"} 1795838223.436\n"),
             "%s", b);
  free (b);
  metrics_free (back);

  /* A directory that is not there: the error, nothing written. */
  snprintf (path, sizeof path, "%s/no/such.prom", dir);
  cr_assert_eq (metrics_write (m, path), -ENOENT);
  snprintf (path, sizeof path, "%s/", dir);
  cr_assert_eq (metrics_write (m, path), -EINVAL);
  metrics_free (m);
  rmscratch ();
}

Test (metrics, read_refuses)
{
  static const char *const bad[] = {
    "a 1",                      /* no line feed: half a file */
    "a{x=\"1} 1\n", "a{x=\"\\q\"} 1\n", "a{__x=\"1\"} 1\n", "a{x=\"1\",x=\"2\"} 1\n",
    "a\n", "a 1 2 3\n", "a inf\n", "1a 1\n", "a{x=1} 1\n", "a 0x10\n", "a 1 12a\n",
  };
  static const char *const good =
    "# HELP a text\n# TYPE a gauge\n\n# any comment\n"
    "a{x=\"1\",} 1 1700000000000\na{ y = \"2\" } -Inf\nb NaN\nc +1.5e3\n";
  struct metrics *m;
  char path[128];
  double v;

  mkscratch ();
  snprintf (path, sizeof path, "%s/m.prom", dir);
  cr_assert_eq (metrics_read (path, &m), -ENOENT);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    put_file (path, bad[i]);
    cr_assert_eq (metrics_read (path, &m), -EBADMSG, "'%s'", bad[i]);
  }
  put_file (path, good);
  cr_assert_eq (metrics_read (path, &m), 0);
  cr_assert_eq (metrics_get (m, "a", (const char *const[]) { "x", "1", NULL }, &v), 0);
  cr_assert_eq (v, 1);
  cr_assert_eq (metrics_get (m, "a", (const char *const[]) { "y", "2", NULL }, &v), 0);
  cr_assert (isinf (v) && v < 0);
  cr_assert_eq (metrics_get (m, "c", NULL, &v), 0);
  cr_assert_eq (v, 1500);
  metrics_free (m);
  put_file (path, "");
  cr_assert_eq (metrics_read (path, &m), 0, "an empty file is an empty set");
  metrics_free (m);
  cr_assert_eq (truncate (path, METRICS_READ_MAX + 1), 0);
  cr_assert_eq (metrics_read (path, &m), -EFBIG);
  cr_assert_eq (metrics_read (dir, &m), -EINVAL);
  rmscratch ();
}

Test (metrics, attempt_carries_last_success_over)
{
  struct metrics *prev, *m;
  const char *const l[] = { "domain", "web", "repo", "r", NULL };
  const char *const other[] = { "domain", "db", "repo", "r", NULL };
  double v;

  cr_assert_eq (metrics_new (&prev), 0);
  cr_assert_eq (metrics_set_attempt (prev, NULL, "snapshot", l, 0, 1000, 5), 0);
  cr_assert_eq (metrics_get (prev, "vmdr_snapshot_last_success_timestamp_seconds", l, &v), 0);
  cr_assert_eq (v, 1000);

  cr_assert_eq (metrics_new (&m), 0);
  cr_assert_eq (metrics_set_attempt (m, prev, "snapshot", l, 1, 2000, 7), 0);
  cr_assert_eq (metrics_set_attempt (m, prev, "snapshot", other, 4, 2000, 0), 0);
  cr_assert_eq (metrics_get (m, "vmdr_snapshot_last_success_timestamp_seconds", l, &v), 0);
  cr_assert_eq (v, 1000, "a failed attempt keeps the last success");
  cr_assert_eq (metrics_get (m, "vmdr_snapshot_last_success_timestamp_seconds", other, &v), 0);
  cr_assert_eq (v, 0, "never succeeded: 0");
  cr_assert_eq (metrics_get (m, "vmdr_snapshot_last_attempt_timestamp_seconds", l, &v), 0);
  cr_assert_eq (v, 2000);
  cr_assert_eq (metrics_get (m, "vmdr_snapshot_last_result", l, &v), 0);
  cr_assert_eq (v, 1);
  cr_assert_eq (metrics_get (m, "vmdr_snapshot_duration_seconds", l, &v), 0);
  cr_assert_eq (v, 7);
  metrics_free (m);

  cr_assert_eq (metrics_new (&m), 0);
  cr_assert_eq (metrics_set_attempt (m, prev, "snapshot", l, 3, 3000, 1), 0);
  cr_assert_eq (metrics_get (m, "vmdr_snapshot_last_success_timestamp_seconds", l, &v), 0);
  cr_assert_eq (v, 3000, "done with warnings is a success");
  metrics_free (m);
  metrics_free (prev);
}

Test (metrics, address_label)
{
  static const char *const cases[][2] = {
    { "/srv/vmdr", "/srv/vmdr" },
    { "rel/dir?x", "rel/dir?x" },                 /* a plain path is a path */
    { "file:///srv/vmdr", "file:///srv/vmdr" },
    { "s3://bucket/prefix", "s3://bucket/prefix" },
    { "s3://AKIA:secret@bucket/prefix?x=1#f", "s3://bucket/prefix" },
    { "rbd://pool/pfx?conf=/etc/ceph/ceph.conf&id=vmdr", "rbd://pool/pfx" },
    { "https://u:p@host:9000?q", "https://host:9000" },
  };
  char buf[64];

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    cr_assert_str_eq (metrics_address_label (cases[i][0], buf, sizeof buf), cases[i][1]);
  cr_assert_str_eq (metrics_address_label ("/a/long/path", buf, 5), "/a/l");
}
