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

size_t
vmdr_buf_round (size_t len)
{
  size_t unit = len >= (1u << 20) ? HUGE_PAGE : PAGE;

  return len > SIZE_MAX - unit ? len : (len + unit - 1) / unit * unit;
}
