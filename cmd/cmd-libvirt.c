#include <config.h>

#include <stddef.h>

#include <libvirt/virterror.h>

#include "cli.h"
#include "cmd-libvirt.h"

static void
quiet_libvirt (void *opaque, virErrorPtr e)
{
  (void) opaque;                /* errors are reported once, by us */
  (void) e;
}

virConnectPtr
cmd_libvirt_connect (const char *uri)
{
  virConnectPtr conn;

  virSetErrorFunc (NULL, quiet_libvirt);
  conn = virConnectOpen (uri);
  if (conn == NULL)
    cli_error ("cannot connect to libvirt%s%s%s: %s", uri ? " at '" : "",
               uri ? uri : "", uri ? "'" : "", virGetLastErrorMessage ());
  return conn;
}
