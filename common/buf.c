#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "buf.h"

#define PAGE 4096u
#define HUGE_PAGE (2u << 20)

void *
vmdr_buf_alloc (size_t len)
{
  size_t align = len >= HUGE_PAGE ? HUGE_PAGE : PAGE;
  void *p;

  if (len > SIZE_MAX - align)
    return NULL;
  if (posix_memalign (&p, align, len ? len : 1) != 0)
    return NULL;
  if (align == HUGE_PAGE)
    (void) madvise (p, len, MADV_HUGEPAGE);     /* a hint: fine if refused */
  return p;
}
