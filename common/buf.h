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

#endif
