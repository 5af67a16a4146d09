#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/virterror.h>

#include "backup-job.h"
#include "cleanup.h"

const char *
vmdr_virt_error (void)
{
  const char *m = virGetLastErrorMessage ();
  return m ? m : "unknown libvirt error";
}

/* XML text from a bounded buffer: every value here is a name vmdr made or a
 * path from the domain XML, which we escape anyway. */
struct xbuf {
  char *p;
  size_t len, cap;
  int err;
};

static void __attribute__((format (printf, 2, 3)))
xadd (struct xbuf *b, const char *fmt, ...)
{
  va_list ap;
  int n;

  if (b->err)
    return;
  for (;;) {
    va_start (ap, fmt);
    n = vsnprintf (b->p + b->len, b->cap - b->len, fmt, ap);
    va_end (ap);
    if (n < 0) {
      b->err = -EINVAL;
      return;
    }
    if ((size_t) n < b->cap - b->len) {
      b->len += (size_t) n;
      return;
    }
    size_t cap = (b->cap + (size_t) n + 1) * 2;
    char *q = cap <= (16u << 20) ? realloc (b->p, cap) : NULL;
    if (q == NULL) {            /* b->p stays valid: the caller frees it */
      b->err = -ENOMEM;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
}

/* Names and paths in attributes: escape what XML needs. */
static void
xattr (struct xbuf *b, const char *s)
{
  for (; *s; s++) {
    switch (*s) {
    case '&': xadd (b, "&amp;"); break;
    case '<': xadd (b, "&lt;"); break;
    case '>': xadd (b, "&gt;"); break;
    case '\'': xadd (b, "&apos;"); break;
    case '"': xadd (b, "&quot;"); break;
    default: xadd (b, "%c", *s);
    }
  }
}

static bool
has_bitmap (const struct vmdr_domain_disk *d)
{
  return strcmp (d->format, "qcow2") == 0;
}

static void
backup_xml (struct xbuf *b, const struct vmdr_backup_spec *s)
{
  const struct vmdr_domain_info *dom = s->domain;

  xadd (b, "<domainbackup mode='pull'><server transport='unix' socket='");
  xattr (b, s->socket);
  xadd (b, "'/><disks>");
  for (size_t i = 0; i < dom->ndisks; i++) {
    const struct vmdr_domain_disk *d = &dom->disks[i];
    xadd (b, "<disk name='");
    xattr (b, d->target);
    if (!s->selected[i]) {
      xadd (b, "' backup='no'/>");
      continue;
    }
    xadd (b, "' backup='yes' type='file'");
    if (s->incremental_from && s->incremental[i]) {
      xadd (b, " backupmode='incremental' incremental='");
      xattr (b, s->incremental_from);
      xadd (b, "'");
    }
    else
      xadd (b, " backupmode='full'");
    xadd (b, "><scratch file='");
    xattr (b, s->scratch_dir);
    xadd (b, "/vmdr-scratch-");
    xattr (b, d->target);
    xadd (b, ".qcow2'/></disk>");
  }
  xadd (b, "</disks></domainbackup>");
}

static void
checkpoint_xml (struct xbuf *b, const struct vmdr_backup_spec *s)
{
  const struct vmdr_domain_info *dom = s->domain;

  xadd (b, "<domaincheckpoint><name>");
  xattr (b, s->checkpoint);
  xadd (b, "</name><disks>");
  for (size_t i = 0; i < dom->ndisks; i++) {
    xadd (b, "<disk name='");
    xattr (b, dom->disks[i].target);
    xadd (b, "' checkpoint='%s'/>",
          s->selected[i] && has_bitmap (&dom->disks[i]) ? "bitmap" : "no");
  }
  xadd (b, "</disks></domaincheckpoint>");
}

static int
virt_errno (void)
{
  virErrorPtr e = virGetLastError ();

  if (e == NULL)
    return -EIO;
  switch (e->code) {
  case VIR_ERR_OPERATION_INVALID: return -EBUSY;  /* e.g. a job already runs */
  case VIR_ERR_NO_DOMAIN_CHECKPOINT: return -ENOENT;
  case VIR_ERR_CHECKPOINT_INCONSISTENT: return -ESTALE;
  case VIR_ERR_INVALID_ARG:
  case VIR_ERR_XML_ERROR: return -EINVAL;
  default: return -EIO;
  }
}

int
vmdr_backup_begin (virDomainPtr dom, const struct vmdr_backup_spec *s)
{
  struct xbuf bx = { 0 }, cx = { 0 };
  bool any_bitmap = false;
  int r = 0;

  backup_xml (&bx, s);
  for (size_t i = 0; i < s->domain->ndisks; i++)
    any_bitmap |= s->selected[i] && has_bitmap (&s->domain->disks[i]);
  if (s->checkpoint && any_bitmap)
    checkpoint_xml (&cx, s);
  if (bx.err || cx.err)
    r = bx.err ? bx.err : cx.err;
  else if (virDomainBackupBegin (dom, bx.p, cx.p, 0) < 0)
    r = virt_errno ();
  free (bx.p);
  free (cx.p);
  return r;
}

int
vmdr_backup_end (virDomainPtr dom)
{
  return virDomainAbortJob (dom) < 0 ? virt_errno () : 0;
}

int
vmdr_backup_running (virDomainPtr dom)
{
  _cleanup_free_ char *xml = virDomainBackupGetXMLDesc (dom, 0);

  if (xml)
    return 1;
  /* "no domain backup job present" is VIR_ERR_NO_DOMAIN_BACKUP */
  virErrorPtr e = virGetLastError ();
  return e && e->code == VIR_ERR_NO_DOMAIN_BACKUP ? 0 : -EIO;
}

int
vmdr_checkpoint_exists (virDomainPtr dom, const char *name)
{
  virDomainCheckpointPtr cp = virDomainCheckpointLookupByName (dom, name, 0);

  if (cp) {
    virDomainCheckpointFree (cp);
    return 1;
  }
  return virt_errno () == -ENOENT ? 0 : -EIO;
}

int
vmdr_checkpoint_xml (virDomainPtr dom, const char *name, char **xml)
{
  virDomainCheckpointPtr cp = virDomainCheckpointLookupByName (dom, name, 0);
  char *x;

  if (cp == NULL)
    return virt_errno ();
  /* SIZE needs a running domain; never NO_DOMAIN: REDEFINE wants it whole. */
  x = virDomainCheckpointGetXMLDesc (cp, VIR_DOMAIN_CHECKPOINT_XML_SIZE);
  if (x == NULL)
    x = virDomainCheckpointGetXMLDesc (cp, 0);
  virDomainCheckpointFree (cp);
  if (x == NULL)
    return virt_errno ();
  *xml = x;
  return 0;
}

/* XML without the element OPEN ... CLOSE (its first occurrence). */
static char *
without (const char *xml, const char *open, const char *close)
{
  const char *p = strstr (xml, open), *e = p ? strstr (p, close) : NULL;
  char *out;

  if (e == NULL)
    return strdup (xml);
  e += strlen (close);
  if (asprintf (&out, "%.*s%s", (int) (p - xml), xml, e) < 0)
    return NULL;
  return out;
}

int
vmdr_checkpoint_redefine (virDomainPtr dom, const char *xml)
{
  /* The recorded parent was deleted once this checkpoint was committed;
   * the recorded domain may have another UUID now (a transient domain
   * created again): what VALIDATE checks is the disks' bitmaps. */
  _cleanup_free_ char *x = without (xml, "<parent>", "</parent>");
  _cleanup_free_ char *y = x ? without (x, "<domain ", "</domain>") : NULL;
  const unsigned flags = VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE |
                         VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE;
  virDomainCheckpointPtr cp;

  if (y == NULL)
    return -ENOMEM;
  cp = virDomainCheckpointCreateXML (dom, x, flags);
  if (cp == NULL)
    cp = virDomainCheckpointCreateXML (dom, y, flags);
  if (cp == NULL) {
    int r = virt_errno ();
    return r == -EIO || r == -EINVAL ? -ESTALE : r;
  }
  virDomainCheckpointFree (cp);
  return 0;
}

int
vmdr_checkpoints_prune (virDomainPtr dom, const char *keep, size_t *deleted)
{
  virDomainCheckpointPtr *cps = NULL;
  int n, r = 0;

  if (deleted)
    *deleted = 0;
  n = virDomainListAllCheckpoints (dom, &cps, 0);
  if (n < 0)
    return virt_errno ();
  for (int i = 0; i < n; i++) {
    const char *name = virDomainCheckpointGetName (cps[i]);
    if (r == 0 && name && strncmp (name, VMDR_CHECKPOINT_PREFIX, strlen (VMDR_CHECKPOINT_PREFIX)) == 0 &&
        (keep == NULL || strcmp (name, keep) != 0)) {
      /* A checkpoint whose bitmap is broken cannot be merged away: drop
       * its metadata, the bitmap is gone anyway. */
      if (virDomainCheckpointDelete (cps[i], 0) < 0 &&
          virDomainCheckpointDelete (cps[i], VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) < 0)
        r = virt_errno ();
      else if (deleted)
        (*deleted)++;
    }
    virDomainCheckpointFree (cps[i]);
  }
  free (cps);
  return r;
}
