/* lab-tool: the tests' window on the test-lab and domain-XML libraries
 * (until vmdr-restore drives them).
 *
 *   lab-tool ensure URI [NETWORK]      vmdr_lab_network_ensure
 *   lab-tool cleanup URI [NETWORK]     vmdr_lab_cleanup; prints "removed N"
 *   lab-tool rewrite [--name N] [--new-identity] [--network NET] [--strict]
 *                    [--lab] [--snapshot ID] [--disk TARGET=FORMAT:PATH]...
 *                                      domain XML on stdin, rewritten on
 *                                      stdout, one "warning: ..." per line
 *                                      on stderr
 *   lab-tool info                      domain XML on stdin: "lab yes|no",
 *                                      "snapshot ID", "image PATH" lines
 *
 * Exit 0, or 1 with the reason on stderr.
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domain-xml.h"
#include "lab.h"
#include "manifest.h"

static int __attribute__((format (printf, 2, 3)))
die (int r, const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "lab-tool: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  if (r)
    fprintf (stderr, ": %s", strerror (-r));
  fputc ('\n', stderr);
  return 1;
}

static void
quiet (void *opaque, virErrorPtr e)
{
  (void) opaque;
  (void) e;
}

static char *
read_stdin (size_t *len)
{
  size_t cap = VMDR_DOMAIN_XML_MAX + 2;
  char *buf = malloc (cap);

  if (buf == NULL)
    return NULL;
  *len = fread (buf, 1, cap - 1, stdin);
  buf[*len] = '\0';
  return buf;
}

static int
with_conn (int argc, char **argv, bool cleanup)
{
  const char *net = argc > 3 ? argv[3] : VMDR_LAB_NETWORK;
  virConnectPtr conn;
  char err[512] = "";
  size_t removed = 0;
  int r;

  if (argc < 3)
    return die (0, "%s: a URI is needed", argv[1]);
  virSetErrorFunc (NULL, quiet);
  if ((conn = virConnectOpen (argv[2])) == NULL)
    return die (0, "cannot connect to '%s'", argv[2]);
  if (cleanup)
    r = vmdr_lab_cleanup (conn, net, &removed, err, sizeof err);
  else
    r = vmdr_lab_network_ensure (conn, net, err, sizeof err);
  virConnectClose (conn);
  if (cleanup)
    printf ("removed %zu\n", removed);
  if (r < 0)
    return die (0, "%s", err);
  return 0;
}

static int
rewrite (int argc, char **argv)
{
  struct vmdr_xml_disk_map disks[VMDR_XML_MAX_DISKS];
  struct vmdr_xml_rewrite o = { .disks = disks };
  struct vmdr_xml_warnings w;
  char *xml, *out;
  size_t len;
  int r;

  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp (a, "--new-identity") == 0)
      o.new_identity = true;
    else if (strcmp (a, "--strict") == 0)
      o.strict = true;
    else if (strcmp (a, "--lab") == 0)
      o.lab = true;
    else if (v && strcmp (a, "--name") == 0)
      o.name = argv[++i];
    else if (v && strcmp (a, "--network") == 0)
      o.network = argv[++i];
    else if (v && strcmp (a, "--snapshot") == 0)
      o.snapshot_id = argv[++i];
    else if (v && strcmp (a, "--disk") == 0 && o.ndisks < VMDR_XML_MAX_DISKS) {
      char *spec = argv[++i], *eq = strchr (spec, '='), *colon = eq ? strchr (eq, ':') : NULL;
      if (colon == NULL)
        return die (0, "bad --disk '%s' (TARGET=FORMAT:PATH)", spec);
      *eq = *colon = '\0';
      disks[o.ndisks++] = (struct vmdr_xml_disk_map) { spec, colon + 1, eq + 1 };
    } else
      return die (0, "bad option '%s'", a);
  }
  if ((xml = read_stdin (&len)) == NULL)
    return die (0, "%s", "out of memory");
  r = vmdr_domain_xml_rewrite (xml, len, &o, &out, &w);
  free (xml);
  for (size_t i = 0; i < w.n; i++)
    fprintf (stderr, "warning: %s\n", w.w[i]);
  if (w.more)
    fprintf (stderr, "warning: %zu more\n", w.more);
  if (r < 0)
    return die (r, "%s", "cannot rewrite the domain XML");
  fputs (out, stdout);
  free (out);
  return 0;
}

static int
info (void)
{
  char snap[256], **images, *xml;
  size_t len, n;
  bool lab;
  int r;

  if ((xml = read_stdin (&len)) == NULL)
    return die (0, "%s", "out of memory");
  r = vmdr_domain_xml_restore_info (xml, len, &lab, &images, &n, snap, sizeof snap);
  free (xml);
  if (r < 0)
    return die (r, "%s", "no restore metadata");
  printf ("lab %s\nsnapshot %s\n", lab ? "yes" : "no", snap);
  for (size_t i = 0; i < n; i++)
    printf ("image %s\n", images[i]);
  vmdr_strv_free (images, n);
  return 0;
}

int
main (int argc, char **argv)
{
  const char *cmd = argc > 1 ? argv[1] : "";

  if (strcmp (cmd, "ensure") == 0 || strcmp (cmd, "cleanup") == 0)
    return with_conn (argc, argv, strcmp (cmd, "cleanup") == 0);
  if (strcmp (cmd, "rewrite") == 0)
    return rewrite (argc, argv);
  if (strcmp (cmd, "info") == 0)
    return info ();
  fprintf (stderr, "usage: lab-tool ensure|cleanup URI [NETWORK] | rewrite [OPTIONS] | info\n");
  return 2;
}
