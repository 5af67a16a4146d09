#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "domain-xml.h"
#include "manifest.h"

/* The live XML of a running domain on libvirt 9.0 / QEMU 7.2
 * (virsh dumpxml of a guest of the test harness's private libvirtd),
 * trimmed.  Added by hand in libvirt's live form: the <hostdev>, the second
 * (direct) interface, the filterref and bandwidth of the first. */
static const char LIVE[] =
  "<domain type='kvm' id='5'>\n"
  "  <name>web1</name>\n"
  "  <uuid>33aebc9d-32ea-4fd1-914d-75924c598b5f</uuid>\n"
  "  <memory unit='KiB'>65536</memory>\n"
  "  <currentMemory unit='KiB'>65536</currentMemory>\n"
  "  <vcpu placement='static'>1</vcpu>\n"
  "  <resource><partition>/machine</partition></resource>\n"
  "  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>\n"
  "  <clock offset='utc'/>\n"
  "  <on_poweroff>destroy</on_poweroff>\n"
  "  <devices>\n"
  "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
  "    <disk type='file' device='disk'>\n"
  "      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\n"
  "      <source file='/var/lib/libvirt/images/web1.qcow2' index='3'/>\n"
  "      <backingStore type='file' index='4'>\n"
  "        <format type='qcow2'/>\n"
  "        <source file='/var/lib/libvirt/images/base.qcow2'/>\n"
  "        <backingStore/>\n"
  "      </backingStore>\n"
  "      <target dev='vda' bus='virtio'/>\n"
  "      <serial>web1-root</serial>\n"
  "      <alias name='ua-root'/>\n"
  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>\n"
  "    </disk>\n"
  "    <disk type='file' device='disk'>\n"
  "      <driver name='qemu' type='raw'/>\n"
  "      <source file='/var/lib/libvirt/images/web1-data.raw' index='2'/>\n"
  "      <backingStore/>\n"
  "      <target dev='vdb' bus='virtio'/>\n"
  "      <alias name='virtio-disk1'/>\n"
  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>\n"
  "    </disk>\n"
  "    <disk type='file' device='cdrom'>\n"
  "      <driver name='qemu' type='raw'/>\n"
  "      <source file='/srv/iso/debian-12.iso' index='1'/>\n"
  "      <backingStore/>\n"
  "      <target dev='sda' bus='sata'/>\n"
  "      <readonly/>\n"
  "      <alias name='sata0-0-0'/>\n"
  "      <address type='drive' controller='0' bus='0' target='0' unit='0'/>\n"
  "    </disk>\n"
  "    <controller type='sata' index='0'>\n"
  "      <alias name='sata0'/>\n"
  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>\n"
  "    </controller>\n"
  "    <controller type='virtio-serial' index='0'>\n"
  "      <alias name='virtio-serial0'/>\n"
  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>\n"
  "    </controller>\n"
  "    <interface type='network'>\n"
  "      <mac address='52:54:00:03:92:e0'/>\n"
  "      <source network='default' portid='1be02111-6bc4-4511-b8df-8f4d23d3512d' bridge='virbr0'/>\n"
  "      <bandwidth><inbound average='1000'/></bandwidth>\n"
  "      <target dev='vnet4'/>\n"
  "      <model type='virtio'/>\n"
  "      <filterref filter='clean-traffic'/>\n"
  "      <boot order='2'/>\n"
  "      <alias name='net0'/>\n"
  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>\n"
  "    </interface>\n"
  "    <interface type='direct'>\n"
  "      <mac address='52:54:00:aa:bb:cc'/>\n"
  "      <source dev='eno1' mode='bridge'/>\n"
  "      <target dev='macvtap0'/>\n"
  "      <model type='virtio'/>\n"
  "      <alias name='net1'/>\n"
  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x09' function='0x0'/>\n"
  "    </interface>\n"
  "    <serial type='pty'>\n"
  "      <source path='/dev/pts/0'/>\n"
  "      <target type='isa-serial' port='0'><model name='isa-serial'/></target>\n"
  "      <alias name='serial0'/>\n"
  "    </serial>\n"
  "    <console type='pty' tty='/dev/pts/0'>\n"
  "      <source path='/dev/pts/0'/>\n"
  "      <target type='serial' port='0'/>\n"
  "      <alias name='serial0'/>\n"
  "    </console>\n"
  "    <channel type='unix'>\n"
  "      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-5-web1/org.qemu.guest_agent.0'/>\n"
  "      <target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/>\n"
  "      <alias name='channel0'/>\n"
  "      <address type='virtio-serial' controller='0' bus='0' port='1'/>\n"
  "    </channel>\n"
  "    <graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.1'>\n"
  "      <listen type='address' address='127.0.0.1'/>\n"
  "    </graphics>\n"
  "    <hostdev mode='subsystem' type='pci' managed='yes'>\n"
  "      <driver name='vfio'/>\n"
  "      <source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source>\n"
  "      <alias name='hostdev0'/>\n"
  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x0a' function='0x0'/>\n"
  "    </hostdev>\n"
  "    <memballoon model='virtio'>\n"
  "      <alias name='balloon0'/>\n"
  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x08' function='0x0'/>\n"
  "    </memballoon>\n"
  "  </devices>\n"
  "  <seclabel type='dynamic' model='dac' relabel='yes'>\n"
  "    <label>+0:+0</label>\n"
  "    <imagelabel>+0:+0</imagelabel>\n"
  "  </seclabel>\n"
  "</domain>\n";

static const struct vmdr_xml_disk_map VDA[] = {
  { "vda", "/srv/restore/web1-vda.raw", "raw" },
};
static const struct vmdr_xml_disk_map BOTH[] = {
  { "vda", "/srv/restore/web1-vda.qcow2", "qcow2" },
  { "vdb", "/srv/restore/web1-vdb.raw", "raw" },
};

/* ---- helpers: the output, read back with XPath ---- */

static xmlDoc *
parse (const char *xml)
{
  xmlDoc *doc = xmlReadMemory (xml, (int) strlen (xml), "out.xml", NULL, XML_PARSE_NONET);
  cr_assert_not_null (doc, "the output is XML:\n%s", xml);
  return doc;
}

static xmlXPathObject *
eval (xmlDoc *doc, const char *expr)
{
  xmlXPathContext *ctx = xmlXPathNewContext (doc);
  xmlXPathObject *o;

  xmlXPathRegisterNs (ctx, (const xmlChar *) "vmdr", (const xmlChar *) VMDR_XMLNS_RESTORE);
  o = xmlXPathEvalExpression ((const xmlChar *) expr, ctx);
  xmlXPathFreeContext (ctx);
  cr_assert_not_null (o, "xpath %s", expr);
  return o;
}

/* count(EXPR) in XML */
static int __attribute__((format (printf, 2, 3)))
count (const char *xml, const char *fmt, ...)
{
  char expr[512];
  va_list ap;
  xmlDoc *doc = parse (xml);
  xmlXPathObject *o;
  int n;

  va_start (ap, fmt);
  vsnprintf (expr, sizeof expr, fmt, ap);
  va_end (ap);
  o = eval (doc, expr);
  n = o->nodesetval ? o->nodesetval->nodeNr : 0;
  xmlXPathFreeObject (o);
  xmlFreeDoc (doc);
  return n;
}

/* string(EXPR) in XML, in a static buffer */
static const char *
str (const char *xml, const char *expr)
{
  static char buf[1024];
  char full[600];
  xmlDoc *doc = parse (xml);
  xmlXPathObject *o;

  snprintf (full, sizeof full, "string(%s)", expr);
  o = eval (doc, full);
  snprintf (buf, sizeof buf, "%s", o->stringval ? (const char *) o->stringval : "");
  xmlXPathFreeObject (o);
  xmlFreeDoc (doc);
  return buf;
}

static bool
warned (const struct vmdr_xml_warnings *w, const char *text)
{
  for (size_t i = 0; i < w->n; i++)
    if (strstr (w->w[i], text))
      return true;
  return false;
}

static char *
rewrite_ok (const char *xml, const struct vmdr_xml_rewrite *o, struct vmdr_xml_warnings *w)
{
  char *out = NULL;
  int r = vmdr_domain_xml_rewrite (xml, strlen (xml), o, &out, w);

  cr_assert_eq (r, 0, "rewrite: %s (last warning: %s)", strerror (-r), w && w->n ? w->w[w->n - 1] : "");
  cr_assert_not_null (out);
  return out;
}

/* ---- runtime state ---- */

Test (domain_xml, runtime_state_goes)
{
  struct vmdr_xml_rewrite o = { .disks = BOTH, .ndisks = 2 };
  struct vmdr_xml_warnings w;
  char *out = rewrite_ok (LIVE, &o, &w);

  cr_expect_eq (count (out, "/domain[@id]"), 0, "domain id");
  cr_expect_eq (count (out, "//seclabel"), 0, "dynamic seclabel");
  cr_expect_eq (count (out, "//label | //imagelabel"), 0);
  cr_expect_eq (count (out, "//alias[not(starts-with(@name, 'ua-'))]"), 0, "runtime aliases");
  cr_expect_eq (count (out, "//disk/alias[@name='ua-root']"), 1, "user alias kept");
  cr_expect_eq (count (out, "//interface/target | //interface/actual"), 0, "vnetN");
  cr_expect_eq (count (out, "//interface/source[@portid or @bridge]"), 0, "portid, bridge");
  cr_expect_str_eq (str (out, "//interface/source/@network"), "default");
  cr_expect_eq (count (out, "//@tty"), 0, "tty");
  cr_expect_eq (count (out, "//serial/source | //console/source"), 0, "pty paths");
  cr_expect_eq (count (out, "//channel/source[@path]"), 0, "generated channel path");
  cr_expect_eq (count (out, "//channel/source[@mode='bind']"), 1, "the channel stays");
  cr_expect_eq (count (out, "//channel/target[@state]"), 0);
  cr_expect_eq (count (out, "//channel/target[@name='org.qemu.guest_agent.0']"), 1);
  cr_expect_eq (count (out, "//graphics[@port]"), 0, "autoport: no port");
  cr_expect_eq (count (out, "//graphics[@autoport='yes']/listen[@address='127.0.0.1']"), 1);
  cr_expect_eq (count (out, "//@index[parent::source or parent::backingStore]"), 0, "indexes");
  cr_expect_eq (count (out, "//controller[@index='0']"), 2, "controller indexes are not runtime");
  cr_expect_str_eq (str (out, "/domain/uuid"), "33aebc9d-32ea-4fd1-914d-75924c598b5f");
  cr_expect_str_eq (str (out, "/domain/name"), "web1");
  cr_expect_str_eq (str (out, "//interface/mac/@address"), "52:54:00:03:92:e0", "identity kept");
  free (out);
}

Test (domain_xml, user_choices_stay)
{
  static const char xml[] =
    "<domain type='kvm'><name>a</name><devices>"
    "<disk type='file' device='disk'><source file='/a'/><target dev='vda'/></disk>"
    "<interface type='ethernet'><target dev='tap-a' managed='no'/><model type='virtio'/></interface>"
    "<graphics type='vnc' port='5907' autoport='no'/>"
    "<graphics type='spice' port='5901' tlsPort='5902' websocket='5700' autoport='yes'/>"
    "<channel type='unix'><source mode='bind' path='/srv/agent.sock'/>"
    "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
    "</devices><seclabel type='static' model='selinux' relabel='no'><label>system_u:x</label></seclabel>"
    "</domain>";
  struct vmdr_xml_rewrite o = { .disks = VDA, .ndisks = 1 };
  char *out = rewrite_ok (xml, &o, NULL);

  cr_expect_str_eq (str (out, "//interface/target/@dev"), "tap-a", "a chosen tap name");
  cr_expect_str_eq (str (out, "//graphics[@type='vnc']/@port"), "5907", "a fixed port");
  cr_expect_eq (count (out, "//graphics[@type='spice'][@port or @tlsPort]"), 0);
  cr_expect_str_eq (str (out, "//graphics[@type='spice']/@websocket"), "-1", "websocket: automatic");
  cr_expect_str_eq (str (out, "//channel/source/@path"), "/srv/agent.sock", "a chosen socket");
  cr_expect_str_eq (str (out, "/domain/seclabel/label"), "system_u:x", "a static label");
  free (out);
}

/* ---- disks ---- */

Test (domain_xml, disks_point_at_the_restored_images)
{
  struct vmdr_xml_rewrite o = { .disks = VDA, .ndisks = 1 };
  struct vmdr_xml_warnings w;
  char *out = rewrite_ok (LIVE, &o, &w);
  const char *vda = "//disk[target/@dev='vda']";
  char e[256];

  snprintf (e, sizeof e, "%s[@type='file'][@device='disk']/source[@file='/srv/restore/web1-vda.raw']", vda);
  cr_expect_eq (count (out, "%s", e), 1, "vda on its image");
  cr_expect_eq (count (out, "%s/source", vda), 1, "one source");
  cr_expect_eq (count (out, "%s/source/@*", vda), 1, "only the file");
  cr_expect_eq (count (out, "%s/driver[@name='qemu'][@type='raw'][@cache='none'][@discard='unmap']", vda), 1,
                "format from the map, other driver attributes kept");
  cr_expect_eq (count (out, "%s/backingStore", vda), 0, "no backing chain");
  cr_expect_eq (count (out, "%s/target[@bus='virtio']", vda), 1);
  cr_expect_str_eq (str (out, "//disk[target/@dev='vda']/serial"), "web1-root");
  cr_expect_eq (count (out, "%s/address[@slot='0x06']", vda), 1, "guest address kept");
  cr_expect_eq (count (out, "//disk[target/@dev='vdb']"), 0, "vdb not restored");
  cr_expect (warned (&w, "disk vdb was not restored: dropped"));
  free (out);
}

Test (domain_xml, network_and_block_disks_become_files)
{
  static const char xml[] =
    "<domain type='kvm'><name>a</name><devices>"
    "<disk type='network' device='disk'><driver name='qemu' type='raw' cache='writeback'/>"
    "<auth username='admin'><secret type='ceph' uuid='e5a2b5e2-0000-4000-8000-000000000001'/></auth>"
    "<source protocol='rbd' name='pool/img' index='1'><host name='10.0.0.1' port='6789'/></source>"
    "<target dev='vda' bus='virtio'/></disk>"
    "<disk type='block' device='disk'><source dev='/dev/vg/lv'/>"
    "<encryption format='luks'><secret type='passphrase' uuid='e5a2b5e2-0000-4000-8000-000000000002'/></encryption>"
    "<target dev='vdb' bus='virtio'/></disk>"
    "</devices></domain>";
  struct vmdr_xml_rewrite o = { .disks = BOTH, .ndisks = 2 };
  struct vmdr_xml_warnings w;
  char *out = rewrite_ok (xml, &o, &w);

  cr_expect_eq (count (out, "//disk[@type!='file']"), 0);
  cr_expect_eq (count (out, "//host | //auth | //secret | //encryption"), 0, "nothing of the old storage");
  cr_expect_eq (count (out, "//disk[target/@dev='vda']/driver[@type='qcow2'][@cache='writeback']"), 1);
  cr_expect_str_eq (str (out, "//disk[target/@dev='vdb']/source/@file"), "/srv/restore/web1-vdb.raw");
  cr_expect_eq (count (out, "//disk[target/@dev='vdb']/driver[@name='qemu'][@type='raw']"), 1,
                "a driver where there was none");
  cr_expect (warned (&w, "disk vdb was encrypted"));
  free (out);
}

Test (domain_xml, cdrom_ejected)
{
  struct vmdr_xml_rewrite o = { .disks = BOTH, .ndisks = 2 };
  struct vmdr_xml_warnings w;
  char *out = rewrite_ok (LIVE, &o, &w);

  cr_expect_eq (count (out, "//disk[@device='cdrom'][target/@dev='sda'][readonly]"), 1, "the drive stays");
  cr_expect_eq (count (out, "//disk[@device='cdrom']/source | //disk[@device='cdrom']/backingStore"), 0,
                "no medium");
  cr_expect (warned (&w, "cdrom sda held '/srv/iso/debian-12.iso'"));
  free (out);
}

/* ---- host devices ---- */

Test (domain_xml, host_devices_dropped_with_a_warning)
{
  static const char xml[] =
    "<domain type='kvm'><name>a</name><devices>"
    "<redirdev bus='usb' type='spicevmc'/>"
    "<hostdev mode='subsystem' type='usb'><source><vendor id='0x046d'/><product id='0xc52b'/></source></hostdev>"
    "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>"
    "<interface type='hostdev'><mac address='52:54:00:00:00:01'/>"
    "<source><address type='pci' domain='0x0000' bus='0x04' slot='0x10' function='0x1'/></source></interface>"
    "<serial type='file'><source path='/var/log/a-serial.log'/><target port='0'/></serial>"
    "<console type='file'><source path='/var/log/a-serial.log'/><target type='serial' port='0'/></console>"
    "<parallel type='dev'><source path='/dev/parport0'/><target port='0'/></parallel>"
    "</devices></domain>";
  struct vmdr_xml_rewrite o = { 0 };
  struct vmdr_xml_warnings w;
  char *out = rewrite_ok (LIVE, &(struct vmdr_xml_rewrite) { .disks = BOTH, .ndisks = 2 }, &w);

  cr_expect_eq (count (out, "//hostdev"), 0);
  cr_expect (warned (&w, "hostdev pci 0000:03:00.0 is host-specific: dropped"), "%s", w.w[0]);
  cr_expect_eq (count (out, "//interface[@type='direct']"), 0);
  cr_expect (warned (&w, "interface 52:54:00:aa:bb:cc of type 'direct' on 'eno1' is host-specific: dropped"));
  cr_expect_eq (count (out, "//interface"), 1, "the network interface stays");
  free (out);

  out = rewrite_ok (xml, &o, &w);
  cr_expect_eq (count (out, "//redirdev | //hostdev | //tpm | //interface"), 0);
  cr_expect (warned (&w, "redirdev usb of type 'spicevmc'"));
  cr_expect (warned (&w, "hostdev usb 0x046d:0xc52b"));
  cr_expect (warned (&w, "tpm passthrough of '/dev/tpm0'"));
  cr_expect (warned (&w, "interface 52:54:00:00:00:01 of type 'hostdev'"));
  cr_expect_eq (count (out, "//serial[@type='pty'][not(source)]/target[@port='0']"), 1, "serial: a pty");
  cr_expect_eq (count (out, "//console[@type='pty'][not(source)]"), 1);
  cr_expect_eq (count (out, "//parallel[@type='pty'][not(source)]"), 1);
  cr_expect (warned (&w, "serial 0 was the file '/var/log/a-serial.log' of the old host: now a pty"));
  cr_expect (warned (&w, "parallel 0 was the device '/dev/parport0'"));
  cr_expect_eq (w.n, 6, "the console that shows serial 0 is not a second warning");
  free (out);
}

/* ---- identity ---- */

Test (domain_xml, new_identity_and_name)
{
  static const char xml[] =
    "<domain type='kvm'><name>a</name><uuid>33aebc9d-32ea-4fd1-914d-75924c598b5f</uuid>"
    "<genid>43dc0cf8-809b-4adb-9bea-a9abb5f3d90d</genid>"
    "<sysinfo type='smbios'><system><entry name='manufacturer'>ACME</entry>"
    "<entry name='uuid'>33aebc9d-32ea-4fd1-914d-75924c598b5f</entry></system></sysinfo>"
    "<os><type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
    "<nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/a_VARS.fd</nvram></os>"
    "<devices><interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/></interface>"
    "<interface type='network'><mac address='52:54:00:00:00:02'/><source network='default'/></interface>"
    "</devices></domain>";
  struct vmdr_xml_rewrite o = { .name = "a-lab", .new_identity = true };
  struct vmdr_xml_warnings w;
  char *out = rewrite_ok (xml, &o, &w);

  cr_expect_str_eq (str (out, "/domain/name"), "a-lab");
  cr_expect_eq (count (out, "/domain/uuid"), 0);
  cr_expect_eq (count (out, "//interface/mac"), 0);
  cr_expect_eq (count (out, "//interface"), 2);
  cr_expect_str_eq (str (out, "//interface[@type='bridge']/source/@bridge"), "br0", "a bridge stays");
  cr_expect_eq (count (out, "//sysinfo/system/entry"), 1, "the SMBIOS uuid goes, the rest stays");
  cr_expect_str_eq (str (out, "/domain/genid"), "", "a new generation ID");
  cr_expect_eq (count (out, "/domain/genid"), 1);
  cr_expect_str_eq (str (out, "//os/nvram"), "", "not the old guest's variable store");
  cr_expect_str_eq (str (out, "//os/nvram/@template"), "/usr/share/OVMF/OVMF_VARS.fd");
  cr_expect (warned (&w, "UEFI variables in '/var/lib/libvirt/qemu/nvram/a_VARS.fd' were not restored"));
  free (out);

  o = (struct vmdr_xml_rewrite) { .name = "a" };     /* the same name, the same identity */
  out = rewrite_ok (xml, &o, &w);
  cr_expect_eq (count (out, "/domain/uuid | //interface/mac | //sysinfo/system/entry[@name='uuid']"), 4);
  cr_expect_str_eq (str (out, "//os/nvram"), "/var/lib/libvirt/qemu/nvram/a_VARS.fd");
  cr_expect_eq (w.n, 0);
  free (out);
}

Test (domain_xml, name_is_escaped_not_parsed)
{
  struct vmdr_xml_rewrite o = { .name = "a&b <c>", .disks = VDA, .ndisks = 1 };
  char *out = rewrite_ok (LIVE, &o, NULL);
  struct vmdr_domain_info info;

  cr_assert_eq (vmdr_domain_info_parse (out, strlen (out), &info), 0);
  cr_expect_str_eq (info.name, "a&b <c>");
  cr_expect_eq (info.ndisks, 2, "vda and the cdrom");
  cr_expect_str_eq (info.disks[0].source, "/srv/restore/web1-vda.raw");
  cr_expect_str_eq (info.disks[0].format, "raw");
  cr_expect_null (info.disks[1].source);
  vmdr_domain_info_clear (&info);
  free (out);
}

/* An RBD disk's pool, image and cephx user, for vmdr-snapshot to read it
 * through librbd; names vmdr cannot map are refused, not guessed. */
Test (domain_xml, rbd_disks_parsed)
{
  static const char xml[] =
    "<domain type='kvm'><name>a</name><devices>"
    "<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
    "<auth username='backup'><secret type='ceph' uuid='e5a2b5e2-0000-4000-8000-000000000001'/></auth>"
    "<source protocol='rbd' name='vms/web1-vda'/><target dev='vda'/></disk>"
    "<disk type='network' device='disk'><source protocol='rbd' name='vms/ns/img'>"
    "<auth username='other'/></source><target dev='vdb'/></disk>"
    "<disk type='network' device='disk'><source protocol='nbd' name='export'/><target dev='vdc'/></disk>"
    "<disk type='network' device='disk'><source protocol='rbd' name='noslash'/><target dev='vdd'/></disk>"
    "</devices></domain>";
  struct vmdr_domain_info info;
  char pool[128], image[256];

  cr_assert_eq (vmdr_domain_info_parse (xml, strlen (xml), &info), 0);
  cr_assert_eq (info.ndisks, 4);
  cr_expect (vmdr_disk_is_rbd (&info.disks[0]));
  cr_expect_eq (vmdr_disk_rbd_name (&info.disks[0], pool, image), 0);
  cr_expect_str_eq (pool, "vms");
  cr_expect_str_eq (image, "web1-vda");
  cr_expect_str_eq (info.disks[0].auth_user, "backup");
  cr_expect_str_eq (info.disks[1].auth_user, "other", "<auth> under <source> too");
  cr_expect_eq (vmdr_disk_rbd_name (&info.disks[1], pool, image), -EINVAL, "a namespace");
  cr_expect_not (vmdr_disk_is_rbd (&info.disks[2]));
  cr_expect_eq (vmdr_disk_rbd_name (&info.disks[2], pool, image), -EINVAL);
  cr_expect_eq (vmdr_disk_rbd_name (&info.disks[3], pool, image), -EINVAL, "no pool");
  vmdr_domain_info_clear (&info);
}

/* ---- the test lab ---- */

Test (domain_xml, lab_network)
{
  static const char xml[] =
    "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>a</name><devices>"
    "<interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/>"
    "<virtualport type='openvswitch'/><vlan><tag id='42'/></vlan><model type='e1000'/>"
    "<boot order='1'/><address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>"
    "<interface type='user'><mac address='52:54:00:00:00:02'/><model type='virtio'/>"
    "<ip address='10.0.2.15' family='ipv4'/></interface>"
    "<interface type='hostdev' managed='yes'><mac address='52:54:00:00:00:03'/><driver name='vfio'/>"
    "<source><address type='pci' domain='0x0000' bus='0x04' slot='0x10' function='0x1'/></source></interface>"
    "<serial type='tcp'><source mode='connect' host='logs.example.com' service='514'/>"
    "<protocol type='raw'/><target port='0'/></serial>"
    "<channel type='tcp'><source mode='connect' host='10.0.0.1' service='4600'/>"
    "<target type='guestfwd' address='10.0.2.1' port='4600'/></channel>"
    "</devices><qemu:commandline><qemu:arg value='-netdev'/><qemu:arg value='user,id=x'/></qemu:commandline>"
    "</domain>";
  struct vmdr_xml_rewrite o = { .network = "vmdr-lab", .lab = true };
  struct vmdr_xml_warnings w;
  char *out = rewrite_ok (xml, &o, &w);

  cr_expect_eq (count (out, "//interface"), 3);
  cr_expect_eq (count (out, "//interface[@type='network']/source[@network='vmdr-lab']"), 3, "all on the lab");
  cr_expect_eq (count (out, "//interface/source/@*"), 3, "only the network");
  cr_expect_eq (count (out, "//virtualport | //vlan | //interface/ip | //bandwidth | //filterref"), 0);
  cr_expect_eq (count (out, "//interface[mac/@address='52:54:00:00:00:01']/model[@type='e1000']"), 1);
  cr_expect_eq (count (out, "//interface[mac/@address='52:54:00:00:00:01']/boot[@order='1']"), 1);
  cr_expect_eq (count (out, "//interface[mac/@address='52:54:00:00:00:01']/address[@slot='0x03']"), 1);
  cr_expect_eq (count (out, "//interface[mac/@address='52:54:00:00:00:03'][not(@managed)][not(driver)]"
                       "/model[@type='virtio']"), 1, "passthrough NIC: a virtio NIC");
  cr_expect (warned (&w, "of type 'hostdev' is host-specific: now a virtio interface on network 'vmdr-lab'"));
  cr_expect_eq (count (out, "//serial[@type='pty'][not(source)][not(protocol)]"), 1);
  cr_expect (warned (&w, "serial 0 reached the network over tcp"));
  cr_expect_eq (count (out, "//channel"), 0);
  cr_expect (warned (&w, "channel 'guestfwd' is a way out of the isolated test lab: dropped"));
  cr_expect_eq (count (out, "/domain/*[local-name()='commandline']"), 0, "no QEMU arguments");
  cr_expect (warned (&w, "qemu:commandline"));
  free (out);

  /* The live fixture: the network interface and the direct one, on the lab. */
  o = (struct vmdr_xml_rewrite) { .network = "vmdr-lab", .new_identity = true, .disks = VDA, .ndisks = 1 };
  out = rewrite_ok (LIVE, &o, &w);
  cr_expect_eq (count (out, "//interface[@type='network'][source/@network='vmdr-lab'][not(mac)]"), 2);
  cr_expect_eq (count (out, "//interface[boot/@order='2'][model/@type='virtio'][address/@slot='0x03']"), 1);
  cr_expect_eq (count (out, "//bandwidth | //filterref | //interface/target"), 0);
  free (out);
}

/* ---- metadata ---- */

Test (domain_xml, metadata_records_the_restore)
{
  static const char xml[] =
    "<domain type='kvm'><name>a</name>"
    "<metadata><app:x xmlns:app='https://example.com/app'>keep</app:x>"
    "<vmdr:restore xmlns:vmdr='" VMDR_XMLNS_RESTORE "' snapshot='old' lab='no'>"
    "<vmdr:image path='/old.raw'/></vmdr:restore></metadata>"
    "<devices><disk type='file' device='disk'><source file='/a'/><target dev='vda'/></disk>"
    "<disk type='file' device='disk'><source file='/b'/><target dev='vdb'/></disk></devices></domain>";
  struct vmdr_xml_rewrite o = { .disks = BOTH, .ndisks = 2, .snapshot_id = "web1-20240501T120000Z",
                                .lab = true };
  char snap[64], **images = NULL;
  size_t n = 0;
  bool lab = false;
  char *out = rewrite_ok (xml, &o, NULL);

  cr_expect_eq (count (out, "//vmdr:restore"), 1, "replaced, not added");
  cr_expect_str_eq (str (out, "//vmdr:restore/@snapshot"), "web1-20240501T120000Z");
  cr_expect_str_eq (str (out, "//vmdr:restore/@lab"), "yes");
  cr_expect_str_eq (str (out, "//vmdr:restore/@domain"), "a");
  cr_expect_eq (count (out, "//vmdr:restore/vmdr:image"), 2);
  cr_expect_str_eq (str (out, "//vmdr:image[@target='vdb']/@path"), "/srv/restore/web1-vdb.raw");
  cr_expect_str_eq (str (out, "//*[local-name()='x']"), "keep", "other applications' metadata stays");

  cr_assert_eq (vmdr_domain_xml_restore_info (out, strlen (out), &lab, &images, &n, snap, sizeof snap), 0);
  cr_expect (lab);
  cr_expect_str_eq (snap, "web1-20240501T120000Z");
  cr_assert_eq (n, 2);
  cr_expect_str_eq (images[0], "/srv/restore/web1-vda.qcow2");
  cr_expect_str_eq (images[1], "/srv/restore/web1-vdb.raw");
  vmdr_strv_free (images, n);
  cr_expect_eq (vmdr_domain_xml_restore_info (out, strlen (out), &lab, NULL, NULL, snap, 8), -EBADMSG,
                "a snapshot id that does not fit");
  free (out);

  o = (struct vmdr_xml_rewrite) { 0 };
  out = rewrite_ok (LIVE, &o, NULL);
  lab = true;
  cr_assert_eq (vmdr_domain_xml_restore_info (out, strlen (out), &lab, NULL, NULL, NULL, 0), 0);
  cr_expect_not (lab);
  cr_expect_eq (count (out, "//vmdr:restore[not(@snapshot)][not(vmdr:image)]"), 1);
  free (out);
}

Test (domain_xml, restore_info_refuses)
{
  static const char relative[] =
    "<domain><name>a</name><metadata><vmdr:restore xmlns:vmdr='" VMDR_XMLNS_RESTORE "' lab='yes'>"
    "<vmdr:image path='../../etc/passwd'/></vmdr:restore></metadata></domain>";
  static const char other_ns[] =
    "<domain><name>a</name><metadata><vmdr:restore xmlns:vmdr='https://example.com/not-vmdr' lab='yes'/>"
    "</metadata></domain>";
  char **images = (char **) 1;
  size_t n = 7;
  bool lab = false;

  cr_expect_eq (vmdr_domain_xml_restore_info (LIVE, strlen (LIVE), &lab, &images, &n, NULL, 0), -ENOENT);
  cr_expect_eq (vmdr_domain_xml_restore_info (other_ns, strlen (other_ns), &lab, &images, &n, NULL, 0),
                -ENOENT, "only vmdr's namespace counts");
  cr_expect_eq (vmdr_domain_xml_restore_info (relative, strlen (relative), &lab, &images, &n, NULL, 0),
                -EBADMSG, "a relative image path");
  cr_expect_eq (vmdr_domain_xml_restore_info ("<network/>", 10, &lab, &images, &n, NULL, 0), -EBADMSG);
  cr_expect_eq (vmdr_domain_xml_restore_info ("<domain", 7, &lab, &images, &n, NULL, 0), -EBADMSG);
  cr_expect (images == (char **) 1 && n == 7 && !lab, "outputs untouched");
}

Test (domain_xml, uses_network)
{
  cr_expect_eq (vmdr_domain_xml_uses_network (LIVE, strlen (LIVE), "default"), 1);
  cr_expect_eq (vmdr_domain_xml_uses_network (LIVE, strlen (LIVE), "vmdr-lab"), 0);
  cr_expect_eq (vmdr_domain_xml_uses_network ("<x/>", 4, "default"), -EBADMSG);
}

/* ---- strict: a memory state to resume ---- */

Test (domain_xml, strict)
{
  struct vmdr_xml_rewrite o = { .disks = BOTH, .ndisks = 2, .strict = true };
  struct vmdr_xml_warnings w;
  char *out = (char *) 1;

  cr_expect_eq (vmdr_domain_xml_rewrite (LIVE, strlen (LIVE), &o, &out, &w), -ENOTSUP, "the direct NIC");
  cr_expect_str_eq (w.w[w.n - 1], "interface 52:54:00:aa:bb:cc of type 'direct' on 'eno1' is host-specific: "
                    "a guest resumed from memory cannot lose it");
  cr_expect_eq (out, (char *) 1, "untouched");

  static const char plain[] =
    "<domain type='kvm'><name>a</name><uuid>33aebc9d-32ea-4fd1-914d-75924c598b5f</uuid>"
    "<genid>43dc0cf8-809b-4adb-9bea-a9abb5f3d90d</genid><devices>"
    "<disk type='file' device='disk'><source file='/a'/><target dev='vda'/></disk>"
    "<disk type='file' device='disk'><source file='/b'/><target dev='vdb'/></disk>"
    "<disk type='file' device='cdrom'><source file='/iso'/><target dev='sda'/></disk>"
    "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>"
    "</devices></domain>";
  o.ndisks = 1;
  cr_expect_eq (vmdr_domain_xml_rewrite (plain, strlen (plain), &o, &out, &w), -ENOTSUP);
  cr_expect_str_eq (w.w[w.n - 1], "disk vdb was not restored: a guest resumed from memory needs every disk");
  o.ndisks = 2;
  o.new_identity = true;
  cr_expect_eq (vmdr_domain_xml_rewrite (plain, strlen (plain), &o, &out, &w), -ENOTSUP);
  cr_expect (strstr (w.w[w.n - 1], "keeps its UUID and MAC addresses"));
  o.new_identity = false;
  o.name = "b";
  cr_expect_eq (vmdr_domain_xml_rewrite (plain, strlen (plain), &o, &out, &w), -ENOTSUP);
  cr_expect (strstr (w.w[w.n - 1], "keeps its name"));
  o.name = "a";                 /* the same name is no rename */
  o.network = "vmdr-lab";       /* a resume into the lab keeps its NICs, on another network */
  out = rewrite_ok (plain, &o, &w);
  cr_expect_str_eq (str (out, "/domain/genid"), "43dc0cf8-809b-4adb-9bea-a9abb5f3d90d", "a resume keeps it");
  cr_expect_str_eq (str (out, "//interface/mac/@address"), "52:54:00:00:00:01");
  cr_expect_str_eq (str (out, "//interface/source/@network"), "vmdr-lab");
  cr_expect_eq (count (out, "//disk[@device='cdrom'][not(source)]"), 1, "an ejected cdrom is fine");
  cr_expect_eq (w.n, 1);
  free (out);
}

/* ---- bad input, bad options, bounds ---- */

Test (domain_xml, bad_input)
{
  static const char *bad[] = {
    "", "not xml", "<domain", "<network><name>a</name></network>", "<domain type='kvm'/>",
    "<domain><name></name></domain>",
    "<!DOCTYPE domain [<!ENTITY a 'web1'>]><domain><name>&a;</name></domain>",
    "<!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
    "<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'><!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'>"
    "<!ENTITY e '&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;'><!ENTITY f '&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;'>]>"
    "<domain><name>&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;</name></domain>",
    "<!DOCTYPE domain SYSTEM 'http://example.com/x.dtd'><domain><name>a</name></domain>",
  };
  struct vmdr_xml_rewrite o = { 0 };
  struct vmdr_xml_warnings w;
  char *out = (char *) 1;

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect_eq (vmdr_domain_xml_rewrite (bad[i], strlen (bad[i]), &o, &out, &w), -EBADMSG, "%s", bad[i]);
  cr_expect_eq (vmdr_domain_xml_rewrite (NULL, 0, &o, &out, &w), -EBADMSG);
  cr_expect_eq (vmdr_domain_xml_rewrite (LIVE, VMDR_DOMAIN_XML_MAX + 1, &o, &out, &w), -EBADMSG, "too big");
  cr_expect_eq (vmdr_domain_xml_rewrite (LIVE, 40, &o, &out, &w), -EBADMSG, "cut short");
  cr_expect_eq (out, (char *) 1);
}

Test (domain_xml, bad_options)
{
  static const struct { struct vmdr_xml_disk_map m[2]; size_t n; const char *why; } bad[] = {
    { { { "vda", "relative.raw", "raw" } }, 1, "a relative path" },
    { { { "vda", "/a.raw", "vmdk" } }, 1, "a format vmdr does not write" },
    { { { "vdz", "/a.raw", "raw" } }, 1, "a disk the domain does not have" },
    { { { "vda", "/a.raw", "raw" }, { "vda", "/b.raw", "raw" } }, 2, "the same disk twice" },
    { { { NULL, "/a.raw", "raw" } }, 1, "no target" },
    { { { "vda", "/a\n.raw", "raw" } }, 1, "a control character" },
  };
  char *out = (char *) 1;

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct vmdr_xml_rewrite o = { .disks = bad[i].m, .ndisks = bad[i].n };
    cr_expect_eq (vmdr_domain_xml_rewrite (LIVE, strlen (LIVE), &o, &out, NULL), -EINVAL, "%s", bad[i].why);
  }
  cr_expect_eq (vmdr_domain_xml_rewrite (LIVE, strlen (LIVE),
                                         &(struct vmdr_xml_rewrite) { .name = "a/b" }, &out, NULL), -EINVAL);
  cr_expect_eq (vmdr_domain_xml_rewrite (LIVE, strlen (LIVE),
                                         &(struct vmdr_xml_rewrite) { .name = "" }, &out, NULL), -EINVAL);
  cr_expect_eq (vmdr_domain_xml_rewrite (LIVE, strlen (LIVE), NULL, &out, NULL), -EINVAL);
  cr_expect_eq (out, (char *) 1);
}

Test (domain_xml, warnings_are_bounded)
{
  char xml[8192] = "<domain><name>a</name><devices>";
  struct vmdr_xml_rewrite o = { 0 };
  struct vmdr_xml_warnings w;
  char *out;

  for (int i = 0; i < 20; i++)
    snprintf (xml + strlen (xml), sizeof xml - strlen (xml),
              "<disk type='file' device='disk'><source file='/d%d'/><target dev='vd%c'/></disk>", i, 'a' + i);
  strcat (xml, "</devices></domain>");
  out = rewrite_ok (xml, &o, &w);
  cr_expect_eq (w.n, VMDR_XML_MAX_WARNINGS);
  cr_expect_eq (w.more, 4);
  cr_expect_str_eq (w.w[0], "disk vda was not restored: dropped");
  cr_expect_eq (count (out, "//disk"), 0);
  free (out);

  /* Strict: the reason is the last warning even when the list is full. */
  strcpy (xml, "<domain><name>a</name><devices>");
  for (int i = 0; i < 20; i++)
    snprintf (xml + strlen (xml), sizeof xml - strlen (xml),
              "<serial type='file'><source path='/log%d'/><target port='%d'/></serial>", i, i);
  strcat (xml, "<hostdev mode='subsystem' type='pci'/></devices></domain>");
  o.strict = true;
  cr_expect_eq (vmdr_domain_xml_rewrite (xml, strlen (xml), &o, &out, &w), -ENOTSUP);
  cr_expect_eq (w.n, VMDR_XML_MAX_WARNINGS);
  cr_expect_eq (w.more, 5);
  cr_expect_str_eq (w.w[0], "serial 0 was the file '/log0' of the old host: now a pty");
  cr_expect (strstr (w.w[w.n - 1], "hostdev pci"), "%s", w.w[w.n - 1]);
}
