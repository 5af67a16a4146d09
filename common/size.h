#ifndef VMDR_SIZE_H
#define VMDR_SIZE_H

#include <stdint.h>

/* Parse a byte count such as "4096", "64K", "4M", "1G" or "2T" (binary
 * multiples; a trailing "iB" or "B" is accepted: "64KiB").
 *
 * Returns 0 and stores the value in *out, or -EINVAL for anything that is not
 * a plain non-negative number with an optional suffix, -ERANGE when the value
 * exceeds max.  *out is untouched on error. */
int vmdr_parse_size (const char *s, uint64_t max, uint64_t *out);

#endif
