#include <config.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define VMDR_CEPH_LIB_IMPL
#include "ceph-lib.h"

/* The sonames of the ABI the headers describe (stable since Ceph 0.94). */
#define RADOS_SONAME "librados.so.2"
#define RBD_SONAME "librbd.so.1"

struct vmdr_ceph_lib vmdr_ceph;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[256];    /* empty once loaded */

/* The address of NAME in H, or NULL with load_error set. */
static void *
symbol (void *h, const char *soname, const char *name)
{
  void *p = dlsym (h, name);

  if (p == NULL && load_error[0] == '\0')
    snprintf (load_error, sizeof load_error, "%s has no %s", soname, name);
  return p;
}

/* Kept loaded for the rest of the process: librados's threads may
 * outlive any one connection. */
static void
load (void)
{
  void *rados = dlopen (RADOS_SONAME, RTLD_NOW | RTLD_LOCAL);
  void *rbd = rados ? dlopen (RBD_SONAME, RTLD_NOW | RTLD_LOCAL) : NULL;

  if (rbd == NULL) {
    const char *why = dlerror ();
    snprintf (load_error, sizeof load_error, "cannot load the Ceph libraries: %s",
              why ? why : "unknown error");
    return;
  }
#define VMDR_CEPH_GET(h, soname, f) vmdr_ceph.f = (__typeof__ (vmdr_ceph.f)) symbol (h, soname, #f);
#define VMDR_CEPH_RADOS(f) VMDR_CEPH_GET (rados, RADOS_SONAME, f)
#define VMDR_CEPH_RBD(f) VMDR_CEPH_GET (rbd, RBD_SONAME, f)
  VMDR_CEPH_RADOS_FUNCS (VMDR_CEPH_RADOS)
  VMDR_CEPH_RBD_FUNCS (VMDR_CEPH_RBD)
}

int
vmdr_ceph_load (char *error, size_t errlen)
{
  pthread_once (&once, load);
  if (load_error[0] == '\0')
    return 0;
  snprintf (error, errlen, "%s", load_error);
  return -ELIBACC;
}
