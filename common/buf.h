#ifndef VMDR_BUF_H
#define VMDR_BUF_H

#include <stddef.h>

/* A large I/O buffer of LEN bytes, freed with free(): page-aligned, so
 * that it can be read into or written from with O_DIRECT, and, from 2 MiB
 * up, 2 MiB-aligned and advised into transparent huge pages.  Big buffers
 * are filled by direct reads (which pin every page) and scanned by zstd's
 * match finder (which jumps across its whole window): with 4 KiB pages
 * both spend their time in page faults and TLB misses.  NULL when out of
 * memory. */
void *vmdr_buf_alloc (size_t len);

/* LEN rounded up to whole huge pages from 1 MiB up (a part page would be
 * faulted in 4 KiB at a time), else to whole pages; LEN when that would
 * overflow. */
size_t vmdr_buf_round (size_t len);

#endif
