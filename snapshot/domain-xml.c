#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "domain-xml.h"
#include "manifest.h"               /* vmdr_strv_free */

#define MAX_DISKS 256

static xmlNode *
child (xmlNode *n, const char *name)
{
  for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && strcmp ((const char *) c->name, name) == 0)
      return c;
  return NULL;
}

/* Copy libxml2's string V (may be NULL: "") into BUF and free it.
 * -EBADMSG when it does not fit. */
static int
take_string (xmlChar *v, char *buf, size_t size)
{
  int r = 0;

  buf[0] = '\0';
  if (v) {
    if (strlen ((const char *) v) >= size)
      r = -EBADMSG;
    else
      strcpy (buf, (const char *) v);
    xmlFree (v);
  }
  return r;
}

/* Attribute NAME of N, or the text content of N, into BUF; "" if absent. */
static int
attr (xmlNode *n, const char *name, char *buf, size_t size)
{
  return take_string (n ? xmlGetProp (n, (const xmlChar *) name) : NULL, buf, size);
}

static int
text (xmlNode *n, char *buf, size_t size)
{
  return take_string (n ? xmlNodeGetContent (n) : NULL, buf, size);
}

/* <source protocol=... name=...> and <auth username=...>, which libvirt
 * puts under <disk> or (newer) under <source>. */
static int
parse_network (xmlNode *n, xmlNode *src, struct vmdr_domain_disk *d)
{
  char name[1024];
  xmlNode *auth = child (n, "auth");
  int r;

  if (auth == NULL)
    auth = child (src, "auth");
  if ((r = attr (src, "protocol", d->protocol, sizeof d->protocol)) < 0 ||
      (r = attr (src, "name", name, sizeof name)) < 0 ||
      (r = attr (auth, "username", d->auth_user, sizeof d->auth_user)) < 0)
    return r;
  if (name[0] && (d->name = strdup (name)) == NULL)
    return -ENOMEM;
  return 0;
}

static int
parse_disk (xmlNode *n, struct vmdr_domain_disk *d)
{
  char device[16], path[4096] = "";
  xmlNode *src = child (n, "source");
  int r;

  if ((r = attr (n, "device", device, sizeof device)) < 0 ||
      (r = attr (n, "type", d->source_type, sizeof d->source_type)) < 0 ||
      (r = attr (child (n, "target"), "dev", d->target, sizeof d->target)) < 0 ||
      (r = attr (child (n, "driver"), "type", d->format, sizeof d->format)) < 0)
    return r;
  if (d->target[0] == '\0')
    return -EBADMSG;
  d->is_disk = device[0] == '\0' || strcmp (device, "disk") == 0;
  d->readonly = child (n, "readonly") != NULL;
  d->shareable = child (n, "shareable") != NULL;
  if (strcmp (d->source_type, "file") == 0)
    r = attr (src, "file", path, sizeof path);
  else if (strcmp (d->source_type, "block") == 0)
    r = attr (src, "dev", path, sizeof path);
  else if (strcmp (d->source_type, "network") == 0)
    r = parse_network (n, src, d);
  if (r < 0)
    return r;
  if (path[0] && (d->source = strdup (path)) == NULL)
    return -ENOMEM;
  return 0;
}

static int
parse_root (xmlNode *root, struct vmdr_domain_info *out)
{
  xmlNode *devices = child (root, "devices");
  int r;

  if (root == NULL || strcmp ((const char *) root->name, "domain") != 0)
    return -EBADMSG;
  if ((r = text (child (root, "name"), out->name, sizeof out->name)) < 0 ||
      (r = text (child (root, "uuid"), out->uuid, sizeof out->uuid)) < 0)
    return r;
  if (out->name[0] == '\0')
    return -EBADMSG;
  out->disks = calloc (MAX_DISKS, sizeof *out->disks);
  if (out->disks == NULL)
    return -ENOMEM;
  for (xmlNode *c = devices ? devices->children : NULL; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || strcmp ((const char *) c->name, "disk") != 0)
      continue;
    if (out->ndisks == MAX_DISKS)
      return -EBADMSG;
    if ((r = parse_disk (c, &out->disks[out->ndisks++])) < 0)
      return r;
  }
  return 0;
}

/* Parse a bounded domain XML.  No network, no entities, no DTDs: the XML
 * comes from a daemon or a repository, but a parser that fetches or expands
 * nothing is the one to trust; a document with a DTD is refused outright, so
 * that no entity reference survives into what is written back.  EXTRA adds
 * parser options (XML_PARSE_NOBLANKS for documents that are re-indented). */
static int
read_doc (const char *xml, size_t len, int extra, xmlDoc **out)
{
  xmlDoc *doc;

  if (xml == NULL || len == 0 || len > VMDR_DOMAIN_XML_MAX)
    return -EBADMSG;
  doc = xmlReadMemory (xml, (int) len, "domain.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | extra);
  if (doc == NULL)
    return -EBADMSG;
  if (doc->intSubset || doc->extSubset) {
    xmlFreeDoc (doc);
    return -EBADMSG;
  }
  *out = doc;
  return 0;
}

int
vmdr_domain_info_parse (const char *xml, size_t len, struct vmdr_domain_info *out)
{
  struct vmdr_domain_info info = { 0 };
  xmlDoc *doc;
  int r;

  if ((r = read_doc (xml, len, 0, &doc)) < 0)
    return r;
  r = parse_root (xmlDocGetRootElement (doc), &info);
  xmlFreeDoc (doc);
  if (r < 0) {
    vmdr_domain_info_clear (&info);
    return r;
  }
  *out = info;
  return 0;
}

void
vmdr_domain_info_clear (struct vmdr_domain_info *info)
{
  if (info == NULL)
    return;
  for (size_t i = 0; i < info->ndisks; i++) {
    free (info->disks[i].source);
    free (info->disks[i].name);
  }
  free (info->disks);
  memset (info, 0, sizeof *info);
}

bool
vmdr_disk_backed_up (const struct vmdr_domain_disk *d)
{
  return d->is_disk && !d->readonly && !d->shareable &&
         (d->source != NULL || strcmp (d->source_type, "network") == 0);
}

bool
vmdr_disk_is_rbd (const struct vmdr_domain_disk *d)
{
  return strcmp (d->source_type, "network") == 0 && strcmp (d->protocol, "rbd") == 0;
}

int
vmdr_disk_rbd_name (const struct vmdr_domain_disk *d, char pool[128], char image[256])
{
  const char *slash = d->name ? strchr (d->name, '/') : NULL;

  if (!vmdr_disk_is_rbd (d) || slash == NULL || slash == d->name || slash[1] == '\0' ||
      strchr (slash + 1, '/') ||              /* POOL/NAMESPACE/IMAGE */
      (size_t) (slash - d->name) >= 128 || strlen (slash + 1) >= 256)
    return -EINVAL;
  snprintf (pool, 128, "%.*s", (int) (slash - d->name), d->name);
  snprintf (image, 256, "%s", slash + 1);
  return 0;
}

/* ---- rewriting for another host ------------------------------------------- */

#define QEMU_XMLNS "http://libvirt.org/schemas/domain/qemu/1.0"
#define MAX_PATH 4096

struct rw {
  const struct vmdr_xml_rewrite *o;
  struct vmdr_xml_warnings *w;
  bool seen[VMDR_XML_MAX_DISKS];        /* o->disks[i] found in the XML */
};

static bool
is (const xmlNode *n, const char *name)
{
  return n && n->type == XML_ELEMENT_NODE && strcmp ((const char *) n->name, name) == 0;
}

static bool
has_ns (const xmlNode *n, const char *href)
{
  return n->ns && n->ns->href && strcmp ((const char *) n->ns->href, href) == 0;
}

/* Attribute NAME of N into BUF, cut to fit ("" if absent): for messages and
 * comparisons, where a cut value is harmless. */
static const char *
peek (xmlNode *n, const char *name, char *buf, size_t size)
{
  xmlChar *v = n ? xmlGetProp (n, (const xmlChar *) name) : NULL;

  snprintf (buf, size, "%s", v ? (const char *) v : "");
  xmlFree (v);
  return buf;
}

static bool
prop_is (xmlNode *n, const char *name, const char *value)
{
  char buf[64];
  return strcmp (peek (n, name, buf, sizeof buf), value) == 0;
}

static void
drop (xmlNode *n)
{
  if (n) {
    xmlUnlinkNode (n);
    xmlFreeNode (n);
  }
}

static void
drop_children (xmlNode *n, const char *name)
{
  for (xmlNode *c = n ? n->children : NULL, *next; c; c = next) {
    next = c->next;
    if (is (c, name))
      drop (c);
  }
}

static void
unset (xmlNode *n, const char *name)
{
  if (n)
    xmlUnsetProp (n, (const xmlChar *) name);
}

static int
set (xmlNode *n, const char *name, const char *value)
{
  return xmlSetProp (n, (const xmlChar *) name, (const xmlChar *) value) ? 0 : -ENOMEM;
}

/* Replace the content of N with the text VALUE (escaped when written). */
static int
set_text (xmlNode *n, const char *value)
{
  while (n->children)
    drop (n->children);
  if (value == NULL || value[0] == '\0')
    return 0;
  xmlNodeAddContent (n, (const xmlChar *) value);
  return n->children ? 0 : -ENOMEM;
}

static void __attribute__((format (printf, 3, 0)))
vwarn (struct vmdr_xml_warnings *w, bool last, const char *fmt, va_list ap)
{
  if (w == NULL)
    return;
  if (w->n == VMDR_XML_MAX_WARNINGS && !last) {
    w->more++;
    return;
  }
  if (w->n == VMDR_XML_MAX_WARNINGS)
    w->more++;                  /* the reason takes the last slot */
  else
    w->n++;
  vsnprintf (w->w[w->n - 1], sizeof w->w[0], fmt, ap);
}

static void __attribute__((format (printf, 2, 3)))
warn (struct rw *rw, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vwarn (rw->w, false, fmt, ap);
  va_end (ap);
}

/* Strict mode: the reason is the last warning. */
static int __attribute__((format (printf, 2, 3)))
refuse (struct rw *rw, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vwarn (rw->w, true, fmt, ap);
  va_end (ap);
  return -ENOTSUP;
}

/* A device that cannot exist on another host (or in the isolated lab, WHY
 * says which): dropped, or with a memory state to resume (whose device set
 * must not change), an error. */
static int
drop_device_why (struct rw *rw, xmlNode *n, const char *what, const char *why)
{
  if (rw->o->strict)
    return refuse (rw, "%s is %s: a guest resumed from memory cannot lose it", what, why);
  warn (rw, "%s is %s: dropped", what, why);
  drop (n);
  return 0;
}

static int
drop_device (struct rw *rw, xmlNode *n, const char *what)
{
  return drop_device_why (rw, n, what, "host-specific");
}

/* Paths libvirt makes up for sockets (guest agent channels, VNC sockets):
 * on another host it makes new ones when the attribute is absent. */
static bool
generated_path (const char *p)
{
  static const char *const dirs[] = { "/var/lib/libvirt/", "/run/libvirt/", "/var/run/libvirt/" };

  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
    if (strncmp (p, dirs[i], strlen (dirs[i])) == 0)
      return true;
  return strstr (p, "/channel/target/domain-") != NULL;   /* session daemons */
}

/* ---- disks ---- */

static const struct vmdr_xml_disk_map *
find_map (struct rw *rw, const char *target)
{
  for (size_t i = 0; i < rw->o->ndisks; i++)
    if (strcmp (rw->o->disks[i].target, target) == 0) {
      rw->seen[i] = true;
      return &rw->o->disks[i];
    }
  return NULL;
}

/* Runtime indexes of the backing chain ('index' on <source>, <backingStore>). */
static void
strip_indexes (xmlNode *n)
{
  for (xmlNode *c = n->children; c; c = c->next) {
    if (is (c, "source") || is (c, "backingStore")) {
      unset (c, "index");
      strip_indexes (c);
    }
  }
}

/* <source protocol='rbd' name=...> with the monitors and the conf file,
 * and the cephx <auth> beside it. */
static int
rbd_source (xmlNode *d, const struct vmdr_xml_rbd_disk *r, xmlNode **out)
{
  xmlNode *ns = xmlNewNode (NULL, (const xmlChar *) "source"), *h, *a, *sec;
  char port[16];

  *out = ns;
  if (ns == NULL)
    return -ENOMEM;
  if (set (ns, "protocol", "rbd") < 0 || set (ns, "name", r->name) < 0)
    return -ENOMEM;
  for (size_t i = 0; i < r->nhosts; i++) {
    snprintf (port, sizeof port, "%u", r->hosts[i].port);
    if ((h = xmlNewChild (ns, NULL, (const xmlChar *) "host", NULL)) == NULL ||
        set (h, "name", r->hosts[i].name) < 0 || set (h, "port", port) < 0)
      return -ENOMEM;
  }
  if (r->config && ((h = xmlNewChild (ns, NULL, (const xmlChar *) "config", NULL)) == NULL ||
                    set (h, "file", r->config) < 0))
    return -ENOMEM;
  if (r->username == NULL)
    return 0;
  if ((a = xmlNewChild (d, NULL, (const xmlChar *) "auth", NULL)) == NULL ||
      set (a, "username", r->username) < 0 ||
      (sec = xmlNewChild (a, NULL, (const xmlChar *) "secret", NULL)) == NULL ||
      set (sec, "type", "ceph") < 0 || set (sec, "uuid", r->secret_uuid) < 0)
    return -ENOMEM;
  return 0;
}

static int
map_disk (struct rw *rw, xmlNode *d, const char *target, const struct vmdr_xml_disk_map *m)
{
  static const char *const gone[] = { "backingStore", "mirror", "auth", "encryption" };
  xmlNode *src = child (d, "source"), *drv = child (d, "driver"), *ns;
  bool encrypted = child (d, "encryption") || child (src, "encryption");

  for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
    drop_children (d, gone[i]);
  /* A new <source>: the old one's children (<host>, <auth>, <slices>,
   * <reservations>, <encryption>) belonged to the old storage. */
  if (m->rbd) {
    int r = rbd_source (d, m->rbd, &ns);
    if (r < 0) {
      xmlFreeNode (ns);
      return r;
    }
  } else if ((ns = xmlNewNode (NULL, (const xmlChar *) "source")) == NULL) {
    return -ENOMEM;
  } else if (set (ns, "file", m->path) < 0) {
    xmlFreeNode (ns);
    return -ENOMEM;
  }
  if (src) {
    xmlReplaceNode (src, ns);
    xmlFreeNode (src);
  } else if (child (d, "target")) {
    xmlAddPrevSibling (child (d, "target"), ns);
  } else {
    xmlAddChild (d, ns);
  }
  if (drv == NULL) {
    if ((drv = xmlNewNode (NULL, (const xmlChar *) "driver")) == NULL)
      return -ENOMEM;
    xmlAddPrevSibling (d->children, drv);
  }
  if (set (drv, "name", "qemu") < 0 || set (drv, "type", m->format) < 0 ||
      set (d, "type", m->rbd ? "network" : "file") < 0)
    return -ENOMEM;
  if (prop_is (d, "device", "lun")) {   /* SCSI passthrough needs a host device */
    unset (d, "sgio");
    unset (d, "rawio");
    if (set (d, "device", "disk") < 0)
      return -ENOMEM;
  }
  if (encrypted)
    warn (rw, "disk %s was encrypted on the source: the restored image is not, its encryption was dropped",
          target);
  return 0;
}

static int
rewrite_disk (struct rw *rw, xmlNode *d)
{
  char target[64], device[16], what[MAX_PATH];
  const struct vmdr_xml_disk_map *m;
  xmlNode *src;

  peek (child (d, "target"), "dev", target, sizeof target);
  peek (d, "device", device, sizeof device);
  if (device[0] == '\0')
    strcpy (device, "disk");
  if ((m = find_map (rw, target)) != NULL)
    return map_disk (rw, d, target, m);
  if (strcmp (device, "disk") == 0 || strcmp (device, "lun") == 0) {
    if (rw->o->strict)
      return refuse (rw, "disk %s was not restored: a guest resumed from memory needs every disk", target);
    warn (rw, "disk %s was not restored: dropped", target);
    drop (d);
    return 0;
  }
  /* A cdrom or floppy: the medium was a file of the old host. */
  strip_indexes (d);
  if ((src = child (d, "source")) == NULL)
    return 0;
  if (peek (src, "file", what, sizeof what)[0] == '\0' &&
      peek (src, "dev", what, sizeof what)[0] == '\0' &&
      peek (src, "volume", what, sizeof what)[0] == '\0' &&
      peek (src, "name", what, sizeof what)[0] == '\0')
    snprintf (what, sizeof what, "(no path)");
  drop_children (d, "source");
  drop_children (d, "backingStore");
  drop_children (d, "auth");
  if (set (d, "type", "file") < 0)
    return -ENOMEM;
  warn (rw, "%s %s held '%s' of the old host: ejected", device, target, what);
  return 0;
}

/* ---- network interfaces ---- */

static bool
generated_ifname (const char *dev)
{
  return strncmp (dev, "vnet", 4) == 0 || strncmp (dev, "macvtap", 7) == 0 ||
         strncmp (dev, "macvlan", 7) == 0;
}

/* In the test lab an interface keeps what the guest sees and nothing of
 * how the old host connected it. */
static bool
lab_keeps (const xmlNode *c)
{
  static const char *const keep[] = {
    "mac", "model", "address", "boot", "driver", "rom", "mtu", "link", "alias", "acpi", "coalesce",
  };
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
    if (is (c, keep[i]))
      return true;
  return false;
}

static int
rewrite_interface (struct rw *rw, xmlNode *n)
{
  char type[32], mac[64], dev[256], what[512];
  xmlNode *src = child (n, "source"), *t;
  bool passthrough;

  peek (n, "type", type, sizeof type);
  peek (child (n, "mac"), "address", mac, sizeof mac);
  peek (src, "dev", dev, sizeof dev);
  snprintf (what, sizeof what, "interface%s%s of type '%s'%s%s%s", mac[0] ? " " : "", mac, type,
            dev[0] ? " on '" : "", dev, dev[0] ? "'" : "");
  passthrough = strcmp (type, "hostdev") == 0;

  if (rw->o->network) {
    xmlNode *ns;

    if (passthrough && rw->o->strict)
      return refuse (rw, "%s is host-specific: a guest resumed from memory cannot lose it", what);
    for (xmlNode *c = n->children, *next; c; c = next) {
      next = c->next;
      if (c->type == XML_ELEMENT_NODE &&
          (!lab_keeps (c) || (passthrough && is (c, "driver")) ||
           (rw->o->new_identity && is (c, "mac"))))
        drop (c);
    }
    if (passthrough || strcmp (type, "vdpa") == 0) {
      if (child (n, "model") == NULL) {
        xmlNode *model = xmlNewChild (n, NULL, (const xmlChar *) "model", NULL);
        if (model == NULL || set (model, "type", "virtio") < 0)
          return -ENOMEM;
      }
      warn (rw, "%s is host-specific: now a virtio interface on network '%s'", what, rw->o->network);
    }
    unset (n, "managed");
    unset (n, "trustGuestRxFilters");
    if ((ns = xmlNewNode (NULL, (const xmlChar *) "source")) == NULL)
      return -ENOMEM;
    if (set (ns, "network", rw->o->network) < 0) {
      xmlFreeNode (ns);
      return -ENOMEM;
    }
    if (child (n, "mac"))
      xmlAddNextSibling (child (n, "mac"), ns);
    else if (n->children)
      xmlAddPrevSibling (n->children, ns);
    else
      xmlAddChild (n, ns);
    return set (n, "type", "network");
  }

  if (passthrough || strcmp (type, "direct") == 0 || strcmp (type, "vdpa") == 0)
    return drop_device (rw, n, what);
  if ((t = child (n, "target")) != NULL && generated_ifname (peek (t, "dev", dev, sizeof dev))) {
    unset (t, "dev");
    if (t->properties == NULL)
      drop (t);
  }
  drop_children (n, "actual");
  unset (src, "portid");
  if (strcmp (type, "network") == 0)
    unset (src, "bridge");      /* the bridge the old host's network had */
  if (rw->o->new_identity)
    drop_children (n, "mac");
  return 0;
}

/* ---- character devices: serial, console, parallel, channel ---- */

static int
rewrite_chardev (struct rw *rw, xmlNode *n)
{
  char type[32], path[MAX_PATH], what[300], name[256];
  xmlNode *tgt = child (n, "target"), *src = child (n, "source");
  bool channel = is (n, "channel");
  bool mirror = is (n, "console") && prop_is (tgt, "type", "serial");   /* shows a serial port */
  const char *kind = NULL;

  peek (n, "type", type, sizeof type);
  if (channel && peek (tgt, "name", name, sizeof name)[0] == '\0')
    peek (tgt, "type", name, sizeof name);      /* guestfwd has no name */
  if (channel)
    snprintf (what, sizeof what, "channel '%s'", name);
  else
    snprintf (what, sizeof what, "%s %s", (const char *) n->name, peek (tgt, "port", name, sizeof name));
  unset (n, "tty");
  if (channel)
    unset (tgt, "state");
  if (strcmp (type, "pty") == 0) {
    drop_children (n, "source");                /* the old host's /dev/pts/N */
    return 0;
  }
  if (strcmp (type, "unix") == 0) {
    /* libvirt makes a path up only for channels (the guest agent's). */
    for (xmlNode *c = channel ? n->children : NULL; c; c = c->next)
      if (is (c, "source") && generated_path (peek (c, "path", path, sizeof path)))
        unset (c, "path");
    return 0;
  }
  if (strcmp (type, "file") == 0)
    kind = "the file";
  else if (strcmp (type, "dev") == 0)
    kind = "the device";
  else if (strcmp (type, "pipe") == 0)
    kind = "the pipe";
  if (kind && !channel) {
    peek (src, "path", path, sizeof path);
    if (!mirror)
      warn (rw, "%s was %s '%s' of the old host: now a pty", what, kind, path);
  } else if (rw->o->network && (strcmp (type, "tcp") == 0 || strcmp (type, "udp") == 0)) {
    if (channel)
      return drop_device_why (rw, n, what, "a way out of the isolated test lab");
    if (!mirror)
      warn (rw, "%s reached the network over %s: now a pty in the isolated test lab", what, type);
  } else {
    return 0;
  }
  drop_children (n, "source");
  drop_children (n, "protocol");
  drop_children (n, "reconnect");
  return set (n, "type", "pty");
}

/* ---- graphics and host devices ---- */

static int
rewrite_graphics (xmlNode *n)
{
  char path[MAX_PATH];

  if (prop_is (n, "autoport", "yes")) {
    unset (n, "port");
    unset (n, "tlsPort");
    if (xmlHasProp (n, (const xmlChar *) "websocket") && set (n, "websocket", "-1") < 0)
      return -ENOMEM;
  }
  for (xmlNode *c = n->children; c; c = c->next)
    if (is (c, "listen") && generated_path (peek (c, "socket", path, sizeof path)))
      unset (c, "socket");
  return 0;
}

static unsigned long
hex (xmlNode *n, const char *name)
{
  char buf[32];
  return strtoul (peek (n, name, buf, sizeof buf), NULL, 16);
}

/* "hostdev pci 0000:03:00.0", "hostdev usb 046d:c52b", ... */
static void
describe_hostdev (xmlNode *n, char *buf, size_t size)
{
  char type[32], v[64], p[64];
  xmlNode *src = child (n, "source"), *a = child (src, "address");

  peek (n, "type", type, sizeof type);
  if (strcmp (type, "pci") == 0 && a)
    snprintf (buf, size, "hostdev pci %04lx:%02lx:%02lx.%lx", hex (a, "domain"), hex (a, "bus"),
              hex (a, "slot"), hex (a, "function"));
  else if (strcmp (type, "usb") == 0 && child (src, "vendor"))
    snprintf (buf, size, "hostdev usb %s:%s", peek (child (src, "vendor"), "id", v, sizeof v),
              peek (child (src, "product"), "id", p, sizeof p));
  else if (strcmp (type, "mdev") == 0 && a)
    snprintf (buf, size, "hostdev mdev %s", peek (a, "uuid", v, sizeof v));
  else
    snprintf (buf, size, "hostdev %s", type[0] ? type : peek (n, "mode", v, sizeof v));
}

/* Whether N is a device of the old host's hardware; WHAT describes it. */
static bool
host_device (xmlNode *n, char *what, size_t size)
{
  char a[64], b[200];   /* cut: for a message */

  if (is (n, "hostdev")) {
    describe_hostdev (n, what, size);
    return true;
  }
  if (is (n, "redirdev")) {
    snprintf (what, size, "redirdev %s of type '%s'", peek (n, "bus", a, sizeof a),
              peek (n, "type", b, sizeof b));
    return true;
  }
  if (is (n, "tpm") && prop_is (child (n, "backend"), "type", "passthrough")) {
    snprintf (what, size, "tpm passthrough of '%s'",
              peek (child (child (n, "backend"), "device"), "path", b, sizeof b));
    return true;
  }
  if (is (n, "input") && (prop_is (n, "type", "passthrough") || prop_is (n, "type", "evdev"))) {
    snprintf (what, size, "input %s of '%s'", peek (n, "type", a, sizeof a),
              peek (child (n, "source"), prop_is (n, "type", "evdev") ? "dev" : "evdev", b, sizeof b));
    return true;
  }
  if (is (n, "smartcard") && (prop_is (n, "mode", "host") || prop_is (n, "mode", "host-certificates"))) {
    snprintf (what, size, "smartcard in mode '%s'", peek (n, "mode", a, sizeof a));
    return true;
  }
  return false;
}

static int
rewrite_devices (struct rw *rw, xmlNode *devices)
{
  char what[512];
  int r = 0;

  for (xmlNode *c = devices ? devices->children : NULL, *next; c && r == 0; c = next) {
    next = c->next;
    if (is (c, "disk"))
      r = rewrite_disk (rw, c);
    else if (is (c, "interface"))
      r = rewrite_interface (rw, c);
    else if (is (c, "serial") || is (c, "console") || is (c, "parallel") || is (c, "channel"))
      r = rewrite_chardev (rw, c);
    else if (is (c, "graphics"))
      r = rewrite_graphics (c);
    else if (host_device (c, what, sizeof what))
      r = drop_device (rw, c, what);
  }
  return r;
}

/* Runtime aliases (user aliases start with "ua-" and stay). */
static void
strip_aliases (xmlNode *n)
{
  char name[8];

  for (xmlNode *c = n->children, *next; c; c = next) {
    next = c->next;
    if (is (c, "alias") && strncmp (peek (c, "name", name, sizeof name), "ua-", 3) != 0)
      drop (c);
    else if (c->type == XML_ELEMENT_NODE)
      strip_aliases (c);
  }
}

/* ---- the domain ---- */

static int
rewrite_identity (struct rw *rw, xmlNode *root, const char *oldname)
{
  const struct vmdr_xml_rewrite *o = rw->o;
  bool renamed = o->name && strcmp (o->name, oldname) != 0;
  xmlNode *os = child (root, "os"), *nv = child (os, "nvram"), *g;
  int r;

  if (o->strict && renamed)
    return refuse (rw, "a guest resumed from memory keeps its name: libvirt refuses '%s' for '%s'",
                   o->name, oldname);
  if (o->strict && o->new_identity)
    return refuse (rw, "a guest resumed from memory keeps its UUID and MAC addresses: "
                   "libvirt refuses new ones");
  if (renamed && (r = set_text (child (root, "name"), o->name)) < 0)
    return r;
  if (o->new_identity) {
    xmlNode *sys = child (child (root, "sysinfo"), "system");
    drop_children (root, "uuid");
    for (xmlNode *c = sys ? sys->children : NULL, *next; c; c = next) {
      next = c->next;
      if (is (c, "entry") && prop_is (c, "name", "uuid"))
        drop (c);           /* libvirt insists that it matches <uuid> */
    }
  }
  /* Restored from a backup the guest is in the past: a new VM generation ID
   * tells it so (Active Directory relies on it).  A resumed guest keeps it. */
  if (!o->strict && (g = child (root, "genid")) != NULL && g->children)
    set_text (g, NULL);
  /* The UEFI variable store is a file of the old host named after the old
   * guest; a renamed or new guest must not share it.  libvirt makes a new
   * one from the template. */
  if (nv && (renamed || o->new_identity) && nv->children) {
    xmlChar *p = xmlNodeGetContent (nv);
    warn (rw, "UEFI variables in '%s' were not restored: the guest starts with new ones",
          p ? (const char *) p : "");
    xmlFree (p);
    set_text (nv, NULL);
    drop_children (nv, "source");
  }
  return 0;
}

static int
rewrite_security (xmlNode *root)
{
  for (xmlNode *c = root->children, *next; c; c = next) {
    next = c->next;
    if (!is (c, "seclabel") || !prop_is (c, "type", "dynamic"))
      continue;
    if (child (c, "baselabel")) {       /* configured: keep, without the labels */
      drop_children (c, "label");
      drop_children (c, "imagelabel");
    } else {
      drop (c);                 /* the target host applies its own default */
    }
  }
  return 0;
}

/* qemu:commandline and friends: arbitrary QEMU arguments.  Kept on a normal
 * restore (the operator put them there), but they can give a guest a
 * network of its own, so never in the isolated test lab. */
static int
rewrite_passthrough (struct rw *rw, xmlNode *root)
{
  for (xmlNode *c = root->children, *next; c; c = next) {
    next = c->next;
    if (c->type == XML_ELEMENT_NODE && has_ns (c, QEMU_XMLNS) && rw->o->network) {
      char what[128];
      snprintf (what, sizeof what, "qemu:%s (QEMU arguments)", (const char *) c->name);
      if (rw->o->strict)
        return refuse (rw, "%s cannot go into the isolated test lab: a guest resumed from memory "
                       "cannot lose it", what);
      warn (rw, "%s could reach the network: dropped in the isolated test lab", what);
      drop (c);
    }
  }
  return 0;
}

static int
record (struct rw *rw, xmlNode *root, const char *oldname)
{
  const struct vmdr_xml_rewrite *o = rw->o;
  xmlNode *md = child (root, "metadata"), *e;
  xmlNs *ns;

  if (md == NULL && (md = xmlNewChild (root, NULL, (const xmlChar *) "metadata", NULL)) == NULL)
    return -ENOMEM;
  for (xmlNode *c = md->children, *next; c; c = next) {
    next = c->next;
    if (c->type == XML_ELEMENT_NODE && has_ns (c, VMDR_XMLNS_RESTORE))
      drop (c);
  }
  if ((e = xmlNewChild (md, NULL, (const xmlChar *) "restore", NULL)) == NULL ||
      (ns = xmlNewNs (e, (const xmlChar *) VMDR_XMLNS_RESTORE, (const xmlChar *) "vmdr")) == NULL)
    return -ENOMEM;
  xmlSetNs (e, ns);
  if ((o->snapshot_id && set (e, "snapshot", o->snapshot_id) < 0) ||
      set (e, "lab", o->lab ? "yes" : "no") < 0 || set (e, "domain", oldname) < 0)
    return -ENOMEM;
  for (size_t i = 0; i < o->ndisks; i++) {
    xmlNode *img = xmlNewChild (e, ns, (const xmlChar *) "image", NULL);
    if (img == NULL || set (img, "target", o->disks[i].target) < 0 ||
        (o->disks[i].rbd ? set (img, "rbd", o->disks[i].rbd->name)
                         : set (img, "path", o->disks[i].path)) < 0)
      return -ENOMEM;
  }
  return 0;
}

static bool
printable (const char *s, size_t max)
{
  size_t n = 0;

  for (; s[n]; n++)
    if ((unsigned char) s[n] < 0x20 || s[n] == 0x7f || n == max)
      return false;
  return n > 0;
}

static bool
rbd_ok (const struct vmdr_xml_disk_map *m)
{
  const struct vmdr_xml_rbd_disk *r = m->rbd;

  if (strcmp (m->format, "raw") != 0 || r->name == NULL || !printable (r->name, MAX_PATH - 1) ||
      strchr (r->name, '/') == NULL || r->nhosts > VMDR_XML_MAX_HOSTS ||
      (r->nhosts && r->hosts == NULL) ||
      (r->config && (!printable (r->config, MAX_PATH - 1) || r->config[0] != '/')) ||
      (r->username && (!printable (r->username, 255) || r->secret_uuid == NULL ||
                       !printable (r->secret_uuid, 36))))
    return false;
  for (size_t i = 0; i < r->nhosts; i++)
    if (r->hosts[i].name == NULL || !printable (r->hosts[i].name, 255) ||
        r->hosts[i].port == 0 || r->hosts[i].port > 65535)
      return false;
  return true;
}

/* Options a caller could get wrong: refused before anything is parsed. */
static bool
options_ok (const struct vmdr_xml_rewrite *o)
{
  if (o == NULL || o->ndisks > VMDR_XML_MAX_DISKS || (o->ndisks && o->disks == NULL))
    return false;
  if (o->name && (!printable (o->name, 255) || strchr (o->name, '/')))
    return false;
  if ((o->network && !printable (o->network, 255)) ||
      (o->snapshot_id && !printable (o->snapshot_id, 255)))
    return false;
  for (size_t i = 0; i < o->ndisks; i++) {
    const struct vmdr_xml_disk_map *m = &o->disks[i];
    if (m->target == NULL || m->format == NULL || !printable (m->target, 31) ||
        (m->rbd && !rbd_ok (m)) ||
        (!m->rbd && (m->path == NULL || !printable (m->path, MAX_PATH - 1) || m->path[0] != '/')) ||
        (strcmp (m->format, "raw") != 0 && strcmp (m->format, "qcow2") != 0))
      return false;
    for (size_t j = 0; j < i; j++)
      if (strcmp (o->disks[j].target, m->target) == 0)
        return false;
  }
  return true;
}

static int
rewrite_root (struct rw *rw, xmlNode *root)
{
  char oldname[256];
  int r;

  if (!is (root, "domain") || child (root, "name") == NULL)
    return -EBADMSG;
  if ((r = text (child (root, "name"), oldname, sizeof oldname)) < 0)
    return r;
  if (oldname[0] == '\0')
    return -EBADMSG;
  unset (root, "id");
  if ((r = rewrite_identity (rw, root, oldname)) < 0 ||
      (r = rewrite_security (root)) < 0 ||
      (r = rewrite_passthrough (rw, root)) < 0 ||
      (r = rewrite_devices (rw, child (root, "devices"))) < 0)
    return r;
  for (size_t i = 0; i < rw->o->ndisks; i++)
    if (!rw->seen[i])
      return -EINVAL;           /* an image for a disk the guest does not have */
  if (child (root, "devices"))
    strip_aliases (child (root, "devices"));
  return record (rw, root, oldname);
}

int
vmdr_domain_xml_rewrite (const char *xml, size_t len, const struct vmdr_xml_rewrite *o,
                         char **out, struct vmdr_xml_warnings *w)
{
  struct rw rw = { .o = o, .w = w };
  xmlBuffer *buf = NULL;
  xmlDoc *doc = NULL;
  char *s;
  int r;

  if (w)
    memset (w, 0, sizeof *w);
  if (!options_ok (o))
    return -EINVAL;
  if ((r = read_doc (xml, len, XML_PARSE_NOBLANKS, &doc)) < 0)
    return r;
  if ((r = rewrite_root (&rw, xmlDocGetRootElement (doc))) < 0)
    goto out;
  r = -ENOMEM;
  if ((buf = xmlBufferCreate ()) == NULL || xmlNodeDump (buf, doc, xmlDocGetRootElement (doc), 0, 1) < 0)
    goto out;
  if ((s = malloc (xmlBufferLength (buf) + 2)) == NULL)
    goto out;
  memcpy (s, xmlBufferContent (buf), xmlBufferLength (buf));
  strcpy (s + xmlBufferLength (buf), "\n");
  *out = s;
  r = 0;
out:
  xmlBufferFree (buf);
  xmlFreeDoc (doc);
  return r;
}

/* ---- reading the record back ---- */

static xmlNode *
restore_element (xmlNode *root)
{
  for (xmlNode *c = child (root, "metadata") ? child (root, "metadata")->children : NULL; c; c = c->next)
    if (is (c, "restore") && has_ns (c, VMDR_XMLNS_RESTORE))
      return c;
  return NULL;
}

static int
read_images (xmlNode *e, char ***images, size_t *nimages)
{
  char **v = calloc (VMDR_XML_MAX_DISKS, sizeof *v);
  char path[MAX_PATH];
  size_t n = 0;
  int r = 0;

  if (v == NULL)
    return -ENOMEM;
  for (xmlNode *c = e->children; c && r == 0; c = c->next) {
    if (!is (c, "image") || !has_ns (c, VMDR_XMLNS_RESTORE))
      continue;
    if (xmlHasProp (c, (const xmlChar *) "rbd") && !xmlHasProp (c, (const xmlChar *) "path"))
      continue;                 /* an RBD image: not a file */
    if (n == VMDR_XML_MAX_DISKS ||
        (r = attr (c, "path", path, sizeof path)) < 0 || path[0] != '/')
      r = r < 0 ? r : -EBADMSG;
    else if ((v[n++] = strdup (path)) == NULL)
      r = -ENOMEM;
  }
  if (r < 0) {
    vmdr_strv_free (v, n);
    return r;
  }
  *images = v;
  *nimages = n;
  return 0;
}

int
vmdr_domain_xml_restore_info (const char *xml, size_t len, bool *lab, char ***images,
                              size_t *nimages, char *snapshot, size_t snapsize)
{
  char lab_s[8], snap[256];
  char **v = NULL;
  size_t n = 0;
  xmlDoc *doc;
  xmlNode *root, *e;
  int r;

  if ((r = read_doc (xml, len, 0, &doc)) < 0)
    return r;
  root = xmlDocGetRootElement (doc);
  if (!is (root, "domain"))
    r = -EBADMSG;
  else if ((e = restore_element (root)) == NULL)
    r = -ENOENT;
  else if ((r = attr (e, "lab", lab_s, sizeof lab_s)) < 0 ||
           (r = attr (e, "snapshot", snap, sizeof snap)) < 0)
    ;
  else if (snapshot && strlen (snap) >= snapsize)
    r = -EBADMSG;
  else if (images)
    r = read_images (e, &v, &n);
  xmlFreeDoc (doc);
  if (r < 0)
    return r;
  if (lab)
    *lab = strcmp (lab_s, "yes") == 0;
  if (snapshot)
    strcpy (snapshot, snap);
  if (images) {
    *images = v;
    *nimages = n;
  }
  return 0;
}

int
vmdr_domain_xml_uses_network (const char *xml, size_t len, const char *network)
{
  char name[256];
  xmlNode *root, *devices;
  xmlDoc *doc;
  int r;

  if ((r = read_doc (xml, len, 0, &doc)) < 0)
    return r;
  root = xmlDocGetRootElement (doc);
  r = is (root, "domain") ? 0 : -EBADMSG;
  devices = r == 0 ? child (root, "devices") : NULL;
  for (xmlNode *c = devices ? devices->children : NULL; c && r == 0; c = c->next)
    if (is (c, "interface") && prop_is (c, "type", "network") &&
        strcmp (peek (child (c, "source"), "network", name, sizeof name), network) == 0)
      r = 1;
  xmlFreeDoc (doc);
  return r;
}
