/* repo-image: the tests' way to put raw images into a repository as a
 * snapshot and to get a disk back, through the library entry points (until
 * vmdr-snapshot and vmdr-restore exist).
 *
 *   repo-image put REPO DOMAIN TARGET=IMAGE... [memory=FILE] [xml=FILE] [-j N]
 *                                                        prints the snapshot id
 *   repo-image get REPO SNAPSHOT TARGET OUTPUT [-j N]   sparse raw output;
 *                                                        TARGET "memory": the
 *                                                        memory image
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot.h"

static int
die (const char *what, int r)
{
  fprintf (stderr, "repo-image: %s: %s\n", what, strerror (-r));
  return 1;
}

static int
put (struct vmdr_repo *repo, const char *domain, char **specs, int n, unsigned j)
{
  struct vmdr_image_disk disks[VMDR_MAX_DISKS];
  struct vmdr_snapshot_opts o = { .threads = j };
  struct vmdr_manifest m;
  char *xml = NULL;
  size_t nd = 0, len = 0;
  int r;

  if (n < 1 || n > VMDR_MAX_DISKS)
    return die ("disks", -EINVAL);
  for (int i = 0; i < n; i++) {
    char *eq = strchr (specs[i], '=');
    if (eq == NULL)
      return die (specs[i], -EINVAL);
    *eq = '\0';
    if (strcmp (specs[i], "memory") == 0)
      o.memory = eq + 1;
    else if (strcmp (specs[i], "xml") == 0) {     /* the domain XML */
      FILE *f = fopen (eq + 1, "re");
      if (f == NULL)
        return die (eq + 1, -errno);
      free (xml);
      xml = NULL;
      r = getdelim (&xml, &len, '\0', f) < 0 ? -EIO : 0;
      fclose (f);
      if (r < 0)
        return die (eq + 1, r);
      o.domain_xml = xml;
    }
    else
      disks[nd++] = (struct vmdr_image_disk) { .target = specs[i], .path = eq + 1 };
  }
  r = vmdr_snapshot_write_images (repo, domain, disks, nd, &o, &m, NULL);
  free (xml);
  if (r < 0)
    return die ("put", r);
  printf ("%s\n", m.id);
  vmdr_manifest_clear (&m);
  return 0;
}

static int
get_memory (struct vmdr_repo *repo, struct vmdr_manifest *m, const char *out, unsigned j)
{
  struct vmdr_stream_tree t;
  struct vmdr_restore_error err;
  int fd, r;

  if (!m->memory.present)
    return die ("memory", -ENOENT);
  vmdr_manifest_memory_tree (&m->memory, &t);
  fd = open (out, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0)
    return die (out, -errno);
  r = vmdr_stream_restore (repo, &t, fd, j, NULL, &err);
  close (fd);
  vmdr_manifest_clear (m);
  if (r < 0) {
    unlink (out);
    return die ("memory", r);
  }
  return 0;
}

static int
get (struct vmdr_repo *repo, const char *sel, const char *target, const char *out,
     unsigned j)
{
  struct vmdr_manifest m;
  struct vmdr_restore_error err;
  struct vmdr_disk_tree t;
  char id[VMDR_SNAPSHOT_ID_MAX];
  int fd, r;

  if ((r = vmdr_snapshot_resolve (repo, sel, id)) < 0 ||
      (r = vmdr_manifest_get (repo, id, &m)) < 0)
    return die (sel, r);
  if (strcmp (target, "memory") == 0)
    return get_memory (repo, &m, out, j);
  for (size_t i = 0; i < m.ndisks; i++) {
    if (strcmp (m.disks[i].target, target) != 0)
      continue;
    vmdr_manifest_disk_tree (&m.disks[i], &t);
    fd = open (out, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
      return die (out, -errno);
    if (ftruncate (fd, (off_t) t.virtual_size) < 0)
      return die (out, -errno);
    r = vmdr_disk_restore (repo, &t, fd, j, NULL, NULL, NULL, &err);
    close (fd);
    if (r < 0) {
      fprintf (stderr, "repo-image: damaged chunk at offset %llu\n",
               (unsigned long long) err.offset);
      unlink (out);
      return die ("restore", r);
    }
    vmdr_manifest_clear (&m);
    return 0;
  }
  return die (target, -ENOENT);
}

int
main (int argc, char **argv)
{
  struct vmdr_repo *repo;
  unsigned j = 2;
  int r;

  if (argc >= 3 && strcmp (argv[argc - 2], "-j") == 0) {
    j = (unsigned) atoi (argv[argc - 1]);
    argc -= 2;
  }
  if (argc < 5 || (strcmp (argv[1], "get") == 0 && argc != 6)) {
    fprintf (stderr, "usage: repo-image put REPO DOMAIN TARGET=IMAGE... | get REPO SNAPSHOT TARGET OUT [-j N]\n");
    return 2;
  }
  if ((r = vmdr_repo_open (argv[2], &repo)) < 0 || (r = vmdr_repo_load_index (repo, NULL)) < 0)
    return die (argv[2], r);
  if (strcmp (argv[1], "put") == 0)
    r = put (repo, argv[3], argv + 4, argc - 4, j);
  else
    r = get (repo, argv[3], argv[4], argv[5], j);
  vmdr_repo_close (repo);
  return r;
}
