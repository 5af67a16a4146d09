#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "domain-xml.h"

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

int
vmdr_domain_info_parse (const char *xml, size_t len, struct vmdr_domain_info *out)
{
  struct vmdr_domain_info info = { 0 };
  xmlDoc *doc;
  int r;

  if (len > VMDR_DOMAIN_XML_MAX)
    return -EBADMSG;
  /* No network, no entities, no DTDs: the XML comes from a daemon, but a
   * parser that fetches or expands nothing is the one to trust. */
  doc = xmlReadMemory (xml, (int) len, "domain.xml", NULL,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == NULL)
    return -EBADMSG;
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
  for (size_t i = 0; i < info->ndisks; i++)
    free (info->disks[i].source);
  free (info->disks);
  memset (info, 0, sizeof *info);
}

bool
vmdr_disk_backed_up (const struct vmdr_domain_disk *d)
{
  return d->is_disk && !d->readonly && !d->shareable &&
         (d->source != NULL || strcmp (d->source_type, "network") == 0);
}
