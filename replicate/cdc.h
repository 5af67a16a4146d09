/* Content-defined chunking of byte streams (docs/repository-format.md
 * section 7.2): FastCDC's gear hash with normalised chunking, plus a cut
 * where a run of zero bytes ends.
 *
 * Where a stream is cut depends only on its bytes, so a changed or moved
 * page moves the cuts near it and nowhere else, and two captures of the
 * same guest's memory share most chunks.  The cut rule and the gear table
 * are part of the repository format: changing either moves every chunk
 * boundary and ends deduplication against older snapshots.
 *
 * The chunker is fed buffers of any size and says where chunks end; the
 * cuts are the same however the stream is split into buffers.  It keeps no
 * stream bytes: the caller holds the bytes of the chunk being cut.
 *
 * Not thread-safe: one struct vmdr_cdc per stream.  No allocation.
 */
#ifndef VMDR_CDC_H
#define VMDR_CDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The hash is a 64-bit register shifted one bit a byte: a cut depends on
 * the last 64 bytes and the chunk's length only. */
#define VMDR_CDC_WINDOW 64

/* Bounds on the parameters beyond the repository config's: the window
 * fits below the minimum, a chunk fits in one blob. */
#define VMDR_CDC_MIN_MIN VMDR_CDC_WINDOW
#define VMDR_CDC_MAX_MAX (16u << 20)

/* Normalisation level: up to the average length the mask has log2 (avg) +
 * this many bits, beyond it log2 (avg) - this many. */
#define VMDR_CDC_NORMAL_LEVEL 1

/* The gear table: entry I (0 .. 255) is output I + 1 of splitmix64 seeded
 * with this ("VMDRCDC1" read as a big-endian number). */
#define VMDR_CDC_GEAR_SEED UINT64_C (0x564d445243444331)

struct vmdr_cdc {
  uint32_t min, avg, max;       /* chunk lengths, as in the config */
  uint64_t mask_s, mask_l;      /* strict (length <= avg), loose (above) */
  uint32_t pos;                 /* bytes of the current chunk taken */
  uint64_t h;                   /* hash of the window ending at the last */
};

/* Start cutting chunks of MIN <= length <= MAX bytes, AVG on average.  AVG
 * must be a power of two and VMDR_CDC_MIN_MIN <= MIN <= AVG <= MAX <=
 * VMDR_CDC_MAX_MAX (every valid repository config qualifies).
 * 0 or -EINVAL (C untouched). */
int vmdr_cdc_init (struct vmdr_cdc *c, uint32_t min, uint32_t avg, uint32_t max);

/* Forget the chunk being cut: the next byte fed starts a new chunk. */
void vmdr_cdc_reset (struct vmdr_cdc *c);

/* Scan LEN bytes at BUF, the continuation of the stream.  Returns how many
 * of them belong to the current chunk.  When *cut is true the chunk ends
 * after those bytes and the chunker is at the start of the next one: feed
 * the rest of BUF again.  The count may then be 0: the chunk ended with
 * the previous buffer, which only the first byte of this one could tell
 * (a run of zero bytes ends there).  When *cut is false all LEN bytes were
 * taken and the chunk goes on.  At the end of the stream whatever the
 * caller holds is the last chunk, which may be shorter than MIN. */
size_t vmdr_cdc_feed (struct vmdr_cdc *c, const void *buf, size_t len, bool *cut);

/* Entry I (0 .. 255) of the gear table.  For tests and tools. */
uint64_t vmdr_cdc_gear (unsigned i);

#endif
