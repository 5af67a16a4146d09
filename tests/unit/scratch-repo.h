/* For unit tests: a scratch directory per test, and a repository in it. */
#ifndef VMDR_TEST_SCRATCH_REPO_H
#define VMDR_TEST_SCRATCH_REPO_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <criterion/criterion.h>

#include "repo.h"

static char dir[64];

static void
setup (void)
{
  snprintf (dir, sizeof dir, "/tmp/vmdr-unit.XXXXXX");
  cr_assert_not_null (mkdtemp (dir));
}

static void
teardown (void)
{
  char cmd[128];
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq (system (cmd), 0);
}

/* The defaults, with the changes a test wants made by TUNE (may be NULL). */
static struct vmdr_repo *
scratch_repo (void (*tune) (struct vmdr_repo_config *c))
{
  struct vmdr_repo_config c;
  struct vmdr_repo *r;
  char path[128];

  snprintf (path, sizeof path, "%s/repo", dir);
  mkdir (path, 0755);
  cr_assert_eq (vmdr_repo_config_default (&c), 0);
  if (tune)
    tune (&c);
  cr_assert_eq (vmdr_repo_init (path, &c), 0);
  cr_assert_eq (vmdr_repo_open (path, &r), 0);
  cr_assert_eq (vmdr_repo_load_index (r, NULL), 0);
  return r;
}

#endif
