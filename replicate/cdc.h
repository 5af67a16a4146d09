/* Content-defined chunking of byte streams (docs/repository-format.md
 * section 7.2): FastCDC's gear hash with normalised chunking.
 *
 * Where a stream is cut depends only on its bytes, so an insertion or a
 * moved page shifts the cuts near it and nowhere else, and two captures of
 * the same guest's memory share most chunks.  The cut rule and the gear
 * table are part of the repository format: changing either changes every
 * chunk boundary and ends deduplication against older snapshots.
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

/* The hash looks at the last 64 bytes (a 64-bit register shifted one bit a
 * byte), so a cut depends on those bytes and the chunk's length only. */
#define VMDR_CDC_WINDOW 64

/* Bounds on the parameters, beyond what the repository config checks:
 * the window must fit below the minimum, and a chunk in one blob. */
#define VMDR_CDC_MIN_MIN VMDR_CDC_WINDOW
#define VMDR_CDC_MAX_MAX (16u << 20)

/* Normalisation level: below the average size the mask has this many bits
 * more than log2 (avg), above it this many fewer. */
#define VMDR_CDC_NORMAL_LEVEL 2

struct vmdr_cdc {
  uint32_t min, avg, max;       /* chunk lengths, as in the config */
  uint64_t mask_s, mask_l;      /* strict (length <= avg), loose (above) */
  uint32_t pos;                 /* bytes of the current chunk seen */
  uint64_t h;                   /* gear hash of those bytes */
};

/* Start cutting with chunk lengths MIN <= length <= MAX, about AVG on
 * average.  AVG must be a power of two, VMDR_CDC_MIN_MIN <= MIN <= AVG <=
 * MAX <= VMDR_CDC_MAX_MAX, and log2 (AVG) > VMDR_CDC_NORMAL_LEVEL.
 * 0 or -EINVAL (C untouched). */
int vmdr_cdc_init (struct vmdr_cdc *c, uint32_t min, uint32_t avg, uint32_t max);

/* Forget the chunk being cut: the next byte fed starts a new chunk. */
void vmdr_cdc_reset (struct vmdr_cdc *c);

/* Scan LEN bytes at BUF, the continuation of the stream.  Returns how many
 * of them belong to the current chunk: when *cut is true the chunk ends
 * after that many bytes (and the chunker is already at the next chunk;
 * feed the rest of BUF again), otherwise all LEN bytes were taken and the
 * chunk goes on.  A chunk never exceeds MAX bytes; at the end of the stream
 * whatever the caller holds is the last chunk (it may be shorter than
 * MIN).  LEN 0 returns 0 with *cut false. */
size_t vmdr_cdc_feed (struct vmdr_cdc *c, const void *buf, size_t len, bool *cut);

/* The format's gear table: entry I (0 .. 255) is output I + 1 of
 * splitmix64 seeded with VMDR_CDC_GEAR_SEED.  For tests and tools. */
#define VMDR_CDC_GEAR_SEED UINT64_C (0x564d445243444331)   /* "VMDRCDC1" */
uint64_t vmdr_cdc_gear (unsigned i);

#endif
