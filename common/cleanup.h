/* Scope-bound cleanup, after nbdkit's common/utils/cleanup.h and systemd.
 *
 * A local declared with one of these attributes is released when it goes out
 * of scope.  Hand ownership away by setting the local to NULL (or -1 for file
 * descriptors), most simply with STEAL_PTR / STEAL_FD.
 */
#ifndef VMDR_CLEANUP_H
#define VMDR_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

static inline void cleanup_free (void *p) { free (*(void **) p); }
static inline void
cleanup_close (int *fd)
{
  if (*fd >= 0) {
    int saved = errno;          /* close() must not clobber the error we return */
    close (*fd);
    errno = saved;
  }
}
static inline void
cleanup_fclose (FILE **f)
{
  if (*f) {
    int saved = errno;
    fclose (*f);
    errno = saved;
  }
}

#define _cleanup_free_   __attribute__((cleanup (cleanup_free)))
#define _cleanup_close_  __attribute__((cleanup (cleanup_close)))
#define _cleanup_fclose_ __attribute__((cleanup (cleanup_fclose)))

/* Take the value out of a cleanup-managed local, leaving it empty. */
#define STEAL_PTR(p) ({ __typeof__ (p) _tmp = (p); (p) = NULL; _tmp; })
#define STEAL_FD(fd) ({ int _tmp = (fd); (fd) = -1; _tmp; })

/* Declare a cleanup function for a type with a NULL-accepting destructor. */
#define DEFINE_CLEANUP_FUNC(type, func)                         \
  static inline void func##p (type *p) { if (*p) func (*p); }

#endif
