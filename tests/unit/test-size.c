#include <config.h>

#include <errno.h>
#include <stdint.h>

#include <criterion/criterion.h>

#include "size.h"

Test (size, plain_and_suffixes)
{
  static const struct { const char *s; uint64_t v; } ok[] = {
    { "0", 0 }, { "4096", 4096 }, { "64K", 65536 }, { "64k", 65536 },
    { "64KiB", 65536 }, { "4M", 4u << 20 }, { "4MB", 4u << 20 },
    { "1G", 1ull << 30 }, { "2T", 2ull << 40 }, { "1E", 1ull << 60 },
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint64_t v = 1;
    cr_assert_eq (vmdr_parse_size (ok[i].s, UINT64_MAX, &v), 0, "%s", ok[i].s);
    cr_assert_eq (v, ok[i].v, "%s", ok[i].s);
  }
}

Test (size, rejects)
{
  static const char *bad[] = {
    "", "-1", " 1", "1 ", "K", "1X", "1KX", "1Kib", "1.5M", "0x10", "+5",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 7;
    cr_assert_eq (vmdr_parse_size (bad[i], UINT64_MAX, &v), -EINVAL, "'%s'", bad[i]);
    cr_assert_eq (v, 7, "output untouched for '%s'", bad[i]);
  }
  cr_assert_eq (vmdr_parse_size (NULL, 1, &(uint64_t) { 0 }), -EINVAL);
}

Test (size, bounds)
{
  uint64_t v = 7;

  cr_assert_eq (vmdr_parse_size ("4M", 4u << 20, &v), 0);
  cr_assert_eq (vmdr_parse_size ("5M", 4u << 20, &v), -ERANGE);
  cr_assert_eq (vmdr_parse_size ("16E", UINT64_MAX, &v), -ERANGE);
  cr_assert_eq (vmdr_parse_size ("99999999999999999999", UINT64_MAX, &v), -ERANGE);
  cr_assert_eq (vmdr_parse_size ("18446744073709551615", UINT64_MAX, &v), 0);
  cr_assert_eq (v, UINT64_MAX);
}
