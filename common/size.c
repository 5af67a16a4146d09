#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "size.h"

static int
suffix_shift (const char *p, unsigned *shift)
{
  static const char units[] = "KMGTPE";
  const char *u;

  if (*p == '\0') {
    *shift = 0;
    return 0;
  }
  u = strchr (units, toupper ((unsigned char) *p));
  if (u == NULL || *p == '\0')
    return -EINVAL;
  *shift = 10 * (unsigned) (u - units + 1);
  p++;
  if (strcmp (p, "") == 0 || strcmp (p, "B") == 0 || strcmp (p, "iB") == 0)
    return 0;
  return -EINVAL;
}

int
vmdr_parse_size (const char *s, uint64_t max, uint64_t *out)
{
  unsigned long long v;
  unsigned shift;
  char *end;

  /* strtoull accepts leading blanks and a minus sign: refuse both. */
  if (s == NULL || !isdigit ((unsigned char) *s))
    return -EINVAL;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno == ERANGE)
    return -ERANGE;
  if (suffix_shift (end, &shift) < 0)
    return -EINVAL;
  if (shift > 0 && v > (UINT64_MAX >> shift))
    return -ERANGE;
  v <<= shift;
  if (v > max)
    return -ERANGE;
  *out = v;
  return 0;
}
