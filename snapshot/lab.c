#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "cleanup.h"
#include "domain-xml.h"
#include "lab.h"
#include "manifest.h"               /* vmdr_strv_free */

#define MAX_NAME 64
#define MAX_NETWORK_XML (1u << 20)

/* Keep the first failure: its reason in ERR, its code returned. */
struct status {
  int r;
  char *err;
  size_t errlen;
};

static int __attribute__((format (printf, 3, 4)))
fail (struct status *st, int r, const char *fmt, ...)
{
  va_list ap;

  if (st->r == 0) {
    st->r = r;
    if (st->err && st->errlen) {
      va_start (ap, fmt);
      vsnprintf (st->err, st->errlen, fmt, ap);
      va_end (ap);
    }
  }
  return r;
}

static const char *
virt_error (void)
{
  const char *m = virGetLastErrorMessage ();
  return m ? m : "unknown libvirt error";
}

static bool
name_ok (const char *name)
{
  size_t n = name ? strlen (name) : 0;

  if (n == 0 || n > MAX_NAME)
    return false;
  return strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* ---- the network ---------------------------------------------------------- */

struct net_info {
  bool ours;                    /* carries vmdr's mark */
  const char *leak;             /* what connects it to more than its guests; NULL: isolated */
};

static bool
element_ns (const xmlNode *n, const char *name, const char *href)
{
  return n->type == XML_ELEMENT_NODE && strcmp ((const char *) n->name, name) == 0 &&
         (href == NULL || (n->ns && n->ns->href && strcmp ((const char *) n->ns->href, href) == 0));
}

/* What of a network XML lets its guests out: anything that forwards or
 * routes, gives the host an address on it (the host is then reachable, and
 * libvirt runs DHCP and DNS there), or plugs it into another switch. */
static const char *
leak_of (const xmlNode *n)
{
  static const char *const leaks[] = { "forward", "ip", "route", "virtualport" };

  for (const xmlNode *c = n->children; c; c = c->next) {
    for (size_t i = 0; i < sizeof leaks / sizeof leaks[0]; i++)
      if (element_ns (c, leaks[i], NULL) && c->ns == NULL)
        return leaks[i];
    if (element_ns (c, "portgroup", NULL) && leak_of (c))
      return leak_of (c);
  }
  return NULL;
}

static int
net_parse (const char *xml, struct net_info *ni)
{
  size_t len = xml ? strlen (xml) : 0;
  xmlDoc *doc;
  xmlNode *root;
  int r = 0;

  if (len == 0 || len > MAX_NETWORK_XML)
    return -EBADMSG;
  doc = xmlReadMemory (xml, (int) len, "network.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == NULL)
    return -EBADMSG;
  root = xmlDocGetRootElement (doc);
  if (doc->intSubset || root == NULL || !element_ns (root, "network", NULL)) {
    r = -EBADMSG;
  } else {
    ni->ours = false;
    ni->leak = leak_of (root);
    for (xmlNode *md = root->children; md; md = md->next)
      if (element_ns (md, "metadata", NULL))
        for (xmlNode *c = md->children; c; c = c->next)
          if (element_ns (c, "lab", VMDR_XMLNS_LAB))
            ni->ours = true;
  }
  xmlFreeDoc (doc);
  return r;
}

/* Inspect NET as it runs and as it is defined (a change may wait for a
 * restart): isolated only if both are. */
static int
net_inspect (virNetworkPtr net, const char *name, struct net_info *ni, struct status *st)
{
  unsigned flags[] = { 0, VIR_NETWORK_XML_INACTIVE };
  struct net_info one;
  int r;

  ni->ours = false;
  ni->leak = NULL;
  for (size_t i = 0; i < 2; i++) {
    _cleanup_free_ char *xml = NULL;
    if (i == 1 && virNetworkIsPersistent (net) != 1)
      break;
    if ((xml = virNetworkGetXMLDesc (net, flags[i])) == NULL)
      return fail (st, -EIO, "cannot read the XML of network '%s': %s", name, virt_error ());
    if ((r = net_parse (xml, &one)) < 0)
      return fail (st, r, "cannot parse the XML of network '%s'", name);
    ni->ours |= one.ours;
    if (ni->leak == NULL)
      ni->leak = one.leak;
  }
  return 0;
}

static int
ensure (virConnectPtr conn, const char *name, struct status *st)
{
  virNetworkPtr net;
  struct net_info ni;
  bool created = false;
  int autostart = 0, r;

  if (!name_ok (name))
    return fail (st, -EINVAL, "invalid network name '%s'", name ? name : "");
  net = virNetworkLookupByName (conn, name);
  if (net == NULL && virGetLastErrorCode () != VIR_ERR_NO_NETWORK)
    return fail (st, -EIO, "cannot look up network '%s': %s", name, virt_error ());
  if (net == NULL) {
    /* No <bridge name>: libvirt picks a free virbrN.  NAME is plain (name_ok). */
    char xml[512];
    snprintf (xml, sizeof xml,
              "<network><name>%s</name><metadata><vmdr:lab xmlns:vmdr='%s'/></metadata></network>",
              name, VMDR_XMLNS_LAB);
    if ((net = virNetworkDefineXML (conn, xml)) != NULL)
      created = true;
    else if ((net = virNetworkLookupByName (conn, name)) == NULL)   /* another run made it? */
      return fail (st, -EIO, "cannot define network '%s': %s", name, virt_error ());
  }
  if ((r = net_inspect (net, name, &ni, st)) < 0)
    goto out;
  if (ni.leak) {
    r = fail (st, -EEXIST, "network '%s' exists and is not isolated (it has <%s>): vmdr does not change it",
              name, ni.leak);
    goto out;
  }
  if (virNetworkIsActive (net) != 1 && virNetworkCreate (net) < 0 && virNetworkIsActive (net) != 1) {
    r = fail (st, -EIO, "cannot start network '%s': %s", name, virt_error ());
    if (created)
      virNetworkUndefine (net);
    goto out;
  }
  if (ni.ours && virNetworkIsPersistent (net) == 1 &&
      virNetworkGetAutostart (net, &autostart) == 0 && !autostart &&
      virNetworkSetAutostart (net, 1) < 0)
    r = fail (st, -EIO, "cannot autostart network '%s': %s", name, virt_error ());
out:
  virNetworkFree (net);
  return r;
}

int
vmdr_lab_network_ensure (virConnectPtr conn, const char *name, char *err, size_t errlen)
{
  struct status st = { .err = err, .errlen = errlen };

  ensure (conn, name, &st);
  return st.r;
}

/* ---- the guests ----------------------------------------------------------- */

/* One definition of a domain: what vmdr recorded, and its disks. */
struct def {
  char *xml;
  bool vmdr, lab;
  char **images;
  size_t nimages;
  struct vmdr_domain_info info;
};

static void
def_clear (struct def *d)
{
  free (d->xml);
  vmdr_strv_free (d->images, d->nimages);
  vmdr_domain_info_clear (&d->info);
  memset (d, 0, sizeof *d);
}

/* D->xml read; a definition vmdr cannot read is not vmdr's. */
static int
def_load (virDomainPtr dom, unsigned flags, struct def *d)
{
  memset (d, 0, sizeof *d);
  if ((d->xml = virDomainGetXMLDesc (dom, flags)) == NULL)
    return -EIO;
  if (vmdr_domain_xml_restore_info (d->xml, strlen (d->xml), &d->lab, &d->images, &d->nimages,
                                    NULL, 0) == 0)
    d->vmdr = true;
  else
    d->lab = false;
  if (vmdr_domain_info_parse (d->xml, strlen (d->xml), &d->info) < 0)
    d->lab = false;             /* its disks unknown: leave it alone */
  return 0;
}

static bool
uses_image (const struct def *d, const char *path)
{
  for (size_t i = 0; d && i < d->info.ndisks; i++)
    if (d->info.disks[i].source && strcmp (d->info.disks[i].source, path) == 0)
      return true;
  return false;
}

/* The images LAB recorded that are its disks, unless KEEP (a definition
 * that is not a lab guest's, or NULL) uses them too. */
static void
delete_images (const struct def *lab, const struct def *keep, const char *dom, struct status *st)
{
  struct stat sb;

  for (size_t i = 0; i < lab->nimages; i++) {
    const char *p = lab->images[i];
    if (!uses_image (lab, p) || uses_image (keep, p))
      continue;
    if (lstat (p, &sb) < 0) {
      if (errno != ENOENT)
        fail (st, -errno, "cannot remove image '%s' of '%s': %s", p, dom, strerror (errno));
      continue;
    }
    if (!S_ISREG (sb.st_mode))
      continue;                 /* vmdr restores to files; anything else is not its */
    if (unlink (p) < 0 && errno != ENOENT)
      fail (st, -errno, "cannot remove image '%s' of '%s': %s", p, dom, strerror (errno));
  }
}

static void
remove_guest (virDomainPtr dom, size_t *removed, struct status *st)
{
  const unsigned undefine = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                            VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM |
                            VIR_DOMAIN_UNDEFINE_TPM;
  const char *name = virDomainGetName (dom);
  bool active = virDomainIsActive (dom) == 1, persistent = virDomainIsPersistent (dom) == 1;
  struct def live = { 0 }, cfg = { 0 };
  bool gone = false;

  /* Both definitions are read before anything changes. */
  if (def_load (dom, 0, &live) < 0 ||
      (active && persistent && def_load (dom, VIR_DOMAIN_XML_INACTIVE, &cfg) < 0)) {
    if (virGetLastErrorCode () != VIR_ERR_NO_DOMAIN)      /* vanished meanwhile: fine */
      fail (st, -EIO, "cannot read the XML of '%s': %s", name, virt_error ());
    goto out;
  }
  if (!active && persistent) {  /* the one XML is the definition */
    cfg = live;
    memset (&live, 0, sizeof live);
  }
  if (!live.lab && !cfg.lab)
    goto out;                   /* not a lab guest */
  if (active && virDomainDestroy (dom) < 0 && virDomainIsActive (dom) == 1) {
    fail (st, -EIO, "cannot stop lab guest '%s': %s", name, virt_error ());
    goto out;
  }
  gone = active;
  if (persistent && cfg.lab) {
    if (virDomainUndefineFlags (dom, undefine) < 0) {
      fail (st, -EIO, "cannot undefine lab guest '%s': %s", name, virt_error ());
      goto out;
    }
    gone = true;
  }
  if (live.lab)
    delete_images (&live, persistent && !cfg.lab ? &cfg : NULL, name, st);
  if (cfg.lab)
    delete_images (&cfg, NULL, name, st);
out:
  if (gone && removed)
    (*removed)++;
  def_clear (&live);
  def_clear (&cfg);
}

/* The first domain on CONN (lab guests are gone by now) using network NAME,
 * into WHO; "" if none. */
static int
network_user (virConnectPtr conn, const char *name, char *who, size_t size, struct status *st)
{
  virDomainPtr *doms = NULL;
  int n = virConnectListAllDomains (conn, &doms, 0);

  who[0] = '\0';
  if (n < 0)
    return fail (st, -EIO, "cannot list the domains: %s", virt_error ());
  for (int i = 0; i < n; i++) {
    for (unsigned f = 0; f < 2 && who[0] == '\0'; f++) {
      _cleanup_free_ char *xml = virDomainGetXMLDesc (doms[i], f ? VIR_DOMAIN_XML_INACTIVE : 0);
      if (xml && vmdr_domain_xml_uses_network (xml, strlen (xml), name) == 1)
        snprintf (who, size, "%s", virDomainGetName (doms[i]));
    }
    virDomainFree (doms[i]);
  }
  free (doms);
  return 0;
}

static int
remove_network (virConnectPtr conn, const char *name, struct status *st)
{
  virNetworkPtr net = virNetworkLookupByName (conn, name);
  struct net_info ni;
  char who[256];
  int r;

  if (net == NULL) {
    if (virGetLastErrorCode () == VIR_ERR_NO_NETWORK)
      return 0;
    return fail (st, -EIO, "cannot look up network '%s': %s", name, virt_error ());
  }
  if ((r = net_inspect (net, name, &ni, st)) < 0 || !ni.ours)
    goto out;                   /* not vmdr's: never removed */
  if ((r = network_user (conn, name, who, sizeof who, st)) < 0)
    goto out;
  if (who[0]) {
    r = fail (st, -EBUSY, "network '%s' is still used by '%s', which is not a lab guest: kept", name, who);
    goto out;
  }
  if (virNetworkIsActive (net) == 1 && virNetworkDestroy (net) < 0) {
    r = fail (st, -EIO, "cannot stop network '%s': %s", name, virt_error ());
    goto out;
  }
  if (virNetworkIsPersistent (net) == 1 && virNetworkUndefine (net) < 0)
    r = fail (st, -EIO, "cannot undefine network '%s': %s", name, virt_error ());
out:
  virNetworkFree (net);
  return r;
}

int
vmdr_lab_cleanup (virConnectPtr conn, const char *name, size_t *removed, char *err, size_t errlen)
{
  struct status st = { .err = err, .errlen = errlen };
  virDomainPtr *doms = NULL;
  int n;

  if (removed)
    *removed = 0;
  if (!name_ok (name))
    return fail (&st, -EINVAL, "invalid network name '%s'", name ? name : "");
  if ((n = virConnectListAllDomains (conn, &doms, 0)) < 0)
    return fail (&st, -EIO, "cannot list the domains: %s", virt_error ());
  for (int i = 0; i < n; i++) {
    remove_guest (doms[i], removed, &st);
    virDomainFree (doms[i]);
  }
  free (doms);
  if (st.r == 0)                /* a lab guest left behind may still use it */
    remove_network (conn, name, &st);
  return st.r;
}
