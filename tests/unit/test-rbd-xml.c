/* The domain XML rewrite onto RBD network disks (a failover from the warm
 * replica): source, monitors, conf file and cephx auth; what the vmdr
 * metadata records; and the options refused. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "domain-xml.h"
#include "manifest.h"

static const char XML[] =
  "<domain type='kvm' id='3'>\n"
  "  <name>web1</name>\n"
  "  <uuid>33aebc9d-32ea-4fd1-914d-75924c598b5f</uuid>\n"
  "  <memory unit='KiB'>65536</memory>\n"
  "  <os><type arch='x86_64'>hvm</type></os>\n"
  "  <devices>\n"
  "    <disk type='file' device='disk'>\n"
  "      <driver name='qemu' type='qcow2'/>\n"
  "      <source file='/var/lib/libvirt/images/web1.qcow2' index='2'/>\n"
  "      <backingStore/>\n"
  "      <target dev='vda' bus='virtio'/>\n"
  "    </disk>\n"
  "    <disk type='network' device='disk'>\n"
  "      <driver name='qemu' type='raw'/>\n"
  "      <auth username='old'><secret type='ceph' uuid='11111111-2222-3333-4444-555555555555'/></auth>\n"
  "      <source protocol='rbd' name='prod/web1-data'><host name='10.0.0.1' port='6789'/></source>\n"
  "      <target dev='vdb' bus='virtio'/>\n"
  "    </disk>\n"
  "  </devices>\n"
  "</domain>\n";

static const struct vmdr_xml_host hosts[] = { { "10.1.0.1", 6789 }, { "::1", 3300 } };

/* XPath EXPR on DOC as a string ("" if nothing). */
static char *
xp (xmlDoc *doc, const char *expr)
{
  xmlXPathContext *ctx = xmlXPathNewContext (doc);
  xmlXPathObject *o = xmlXPathEvalExpression ((const xmlChar *) expr, ctx);
  xmlChar *s = xmlXPathCastToString (o);
  char *r = strdup ((const char *) s);

  xmlFree (s);
  xmlXPathFreeObject (o);
  xmlXPathFreeContext (ctx);
  return r;
}

static void
expect (xmlDoc *doc, const char *expr, const char *want)
{
  char *got = xp (doc, expr);

  cr_expect_str_eq (got, want, "%s", expr);
  free (got);
}

Test (rbd_xml, disks_become_network_disks)
{
  struct vmdr_xml_rbd_disk a = { "dr/web1-vda.failover", hosts, 2, NULL, "admin",
                                 "8d4ac4b1-5b8b-4e34-8c55-0c3e56f1e1e1" };
  struct vmdr_xml_rbd_disk b = { "dr/web1-vdb.failover", NULL, 0, "/etc/ceph/dr.conf", NULL, NULL };
  struct vmdr_xml_disk_map map[] = { { "vda", NULL, "raw", &a }, { "vdb", NULL, "raw", &b } };
  struct vmdr_xml_rewrite o = { .disks = map, .ndisks = 2, .snapshot_id = "web1/20261128T010000.000Z" };
  struct vmdr_xml_warnings w;
  char *out = NULL, **images = NULL, snap[128];
  size_t nimages = 9;
  bool lab = true;
  xmlDoc *doc;

  cr_assert_eq (vmdr_domain_xml_rewrite (XML, sizeof XML - 1, &o, &out, &w), 0);
  doc = xmlReadMemory (out, (int) strlen (out), "x.xml", NULL, XML_PARSE_NONET);
  cr_assert_not_null (doc);
  expect (doc, "string(//disk[target/@dev='vda']/@type)", "network");
  expect (doc, "string(//disk[target/@dev='vda']/driver/@type)", "raw");
  expect (doc, "string(//disk[target/@dev='vda']/source/@protocol)", "rbd");
  expect (doc, "string(//disk[target/@dev='vda']/source/@name)", "dr/web1-vda.failover");
  expect (doc, "string(//disk[target/@dev='vda']/source/@file)", "");
  expect (doc, "count(//disk[target/@dev='vda']/source/host)", "2");
  expect (doc, "string(//disk[target/@dev='vda']/source/host[2]/@name)", "::1");
  expect (doc, "string(//disk[target/@dev='vda']/source/host[2]/@port)", "3300");
  expect (doc, "count(//disk[target/@dev='vda']/source/config)", "0");
  expect (doc, "count(//disk[target/@dev='vda']/backingStore)", "0");
  expect (doc, "string(//disk[target/@dev='vda']/auth/@username)", "admin");
  expect (doc, "string(//disk[target/@dev='vda']/auth/secret/@type)", "ceph");
  expect (doc, "string(//disk[target/@dev='vda']/auth/secret/@uuid)",
          "8d4ac4b1-5b8b-4e34-8c55-0c3e56f1e1e1");
  /* The old network disk loses its old monitors and credentials. */
  expect (doc, "string(//disk[target/@dev='vdb']/source/@name)", "dr/web1-vdb.failover");
  expect (doc, "count(//disk[target/@dev='vdb']/source/host)", "0");
  expect (doc, "string(//disk[target/@dev='vdb']/source/config/@file)", "/etc/ceph/dr.conf");
  expect (doc, "count(//disk[target/@dev='vdb']/auth)", "0");
  xmlFreeDoc (doc);
  /* RBD images are recorded, but are no files to remove. */
  cr_assert (strstr (out, "rbd=\"dr/web1-vda.failover\"") != NULL, "%s", out);
  cr_assert_eq (vmdr_domain_xml_restore_info (out, strlen (out), &lab, &images, &nimages,
                                              snap, sizeof snap), 0);
  cr_expect_eq (nimages, 0);
  cr_expect_not (lab);
  cr_expect_str_eq (snap, "web1/20261128T010000.000Z");
  vmdr_strv_free (images, nimages);
  free (out);
}

Test (rbd_xml, bad_options_refused)
{
  struct vmdr_xml_host bad_port[] = { { "10.0.0.1", 0 } };
  struct vmdr_xml_rbd_disk cases[] = {
    { "no-pool-part", NULL, 0, NULL, NULL, NULL },
    { "p/i", bad_port, 1, NULL, NULL, NULL },
    { "p/i", NULL, 0, "relative.conf", NULL, NULL },
    { "p/i", NULL, 0, NULL, "admin", NULL },       /* a user without a secret */
    { NULL, NULL, 0, NULL, NULL, NULL },
  };
  char *out = NULL;

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct vmdr_xml_disk_map map = { "vda", NULL, "raw", &cases[i] };
    struct vmdr_xml_rewrite o = { .disks = &map, .ndisks = 1 };
    cr_expect_eq (vmdr_domain_xml_rewrite (XML, sizeof XML - 1, &o, &out, NULL), -EINVAL,
                  "case %zu", i);
  }
  struct vmdr_xml_rbd_disk ok = { "p/i", NULL, 0, NULL, NULL, NULL };
  struct vmdr_xml_disk_map qcow = { "vda", NULL, "qcow2", &ok };
  struct vmdr_xml_rewrite o = { .disks = &qcow, .ndisks = 1 };
  cr_expect_eq (vmdr_domain_xml_rewrite (XML, sizeof XML - 1, &o, &out, NULL), -EINVAL,
                "RBD disks are raw");
  cr_assert_null (out);
}
