#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <criterion/criterion.h>

#include "prune.h"

/* Snapshots of one domain, oldest first. */
static char *ids[] = {
  "d/20241231T230000.000Z",   /* 0: 2024, ISO week 2025-01 */
  "d/20250101T100000.000Z",   /* 1 */
  "d/20250101T103000.000Z",   /* 2: same hour as 1 */
  "d/20250102T090000.000Z",   /* 3 */
  "d/20250102T220000.000Z",   /* 4 */
  "d/20250203T080000.000Z",   /* 5: February, week 06 */
  "d/20250203T081500.000Z",   /* 6 */
  "d/20250203T083000.000Z",   /* 7: newest */
};
#define N (sizeof ids / sizeof ids[0])

static const char *
kept (const struct vmdr_keep *k)
{
  static char out[N + 1];
  bool keep[N];

  cr_assert_eq (vmdr_retention_select (ids, N, k, keep), 0);
  for (size_t i = 0; i < N; i++)
    out[i] = keep[i] ? 'K' : '.';
  out[N] = '\0';
  return out;
}

Test (retention, rules)
{
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .last = 2 }), "......KK");
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .last = 100 }), "KKKKKKKK");
  /* hourly: newest of each hour: 7 (08h), 4, 3, 2 (10h; 1 shares it) */
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .hourly = 4 }), "..KKK..K");
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .daily = 3 }), "..K.K..K");
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .daily = 10 }), "K.K.K..K");
  /* ISO weeks: 2025-06 (7), 2025-01 (4; 0 is in week 2025-01 too) */
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .weekly = 5 }), "....K..K");
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .monthly = 5 }), "K...K..K");
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .yearly = 5 }), "K......K");
  /* rules add up */
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .last = 1, .yearly = 2 }), "K......K");
  cr_assert_str_eq (kept (&(struct vmdr_keep) { .last = 2, .monthly = 1 }), "......KK");
}

Test (retention, refuses)
{
  bool keep[N];
  char *bad[] = { "d/2025" };

  cr_assert_eq (vmdr_retention_select (ids, N, &(struct vmdr_keep) { 0 }, keep), -EINVAL,
                "no rule would delete everything");
  cr_assert_eq (vmdr_retention_select (bad, 1, &(struct vmdr_keep) { .daily = 1 }, keep), -EINVAL);
  cr_assert_eq (vmdr_retention_select (ids, 0, &(struct vmdr_keep) { .daily = 1 }, keep), 0);
}
