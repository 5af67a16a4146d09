/* Restoring a snapshot's disks into image files, and its memory image.
 *
 * Each output is written under a temporary name in the directory of its
 * final name and renamed into place only once it is complete and durable:
 * a failed or killed restore never leaves a partial image under the name a
 * user asked for, and a file that exists is replaced only when asked.  A
 * killed restore's temporary files are removed by the next restore to the
 * same names (each is locked while its writer lives).
 */
#ifndef VMDR_RESTORE_H
#define VMDR_RESTORE_H

#include <stdbool.h>

#include "snapshot.h"

struct vmdr_restore_opts {
  unsigned threads;             /* 1 .. VMDR_MAX_THREADS */
  bool force;                   /* replace an existing file */
  const char *scratch_dir;      /* qemu-nbd's socket; NULL: $TMPDIR or /tmp */
  vmdr_progress_fn progress;    /* may be NULL */
  void *popaque;
};

/* Why a restore failed: the repository's data (damage: where.chunk says
 * whether one chunk is to blame, else the index), or the output. */
struct vmdr_restore_failure {
  bool damage;
  struct vmdr_restore_error where;
};

/* Is FORMAT one vmdr restores to ("raw", "qcow2")? */
bool vmdr_restore_format_valid (const char *format);

/* Write disk D to PATH as FORMAT: sparse (zero chunks stay holes, or
 * unallocated qcow2 clusters), every chunk verified against its digest.
 * qcow2: qemu-img makes the image and places its clusters, the holes are
 * marked through a writable qemu-nbd, and the data goes straight into the
 * clusters (or all of it through qemu-nbd when qemu-img's map of the new
 * image is not plain, see qemu-img.h).  0, -EEXIST (PATH exists and not
 * o->force), -EINVAL, the repository's damage errors (-EBADMSG, -EILSEQ,
 * -ENOENT with f->damage), or the output's -errno. */
int vmdr_restore_disk_file (struct vmdr_repo *repo, const struct vmdr_manifest_disk *d,
                            const char *path, const char *format,
                            const struct vmdr_restore_opts *o,
                            struct vmdr_disk_read_stats *st,
                            struct vmdr_restore_failure *f);

/* Write the memory image MEM to PATH (for libvirt, a save image), the
 * same way.  Errors as above. */
int vmdr_restore_memory_file (struct vmdr_repo *repo,
                              const struct vmdr_manifest_memory *mem,
                              const char *path, const struct vmdr_restore_opts *o,
                              struct vmdr_restore_failure *f);

/* ---- a whole snapshot ---------------------------------------------------- */

struct vmdr_restore_files_opts {
  const char *dir;              /* where the images go */
  const char *name;             /* file name prefix; NULL: the domain's name */
  const char *format;           /* NULL: each disk's own format (raw if unknown) */
  const char *const *disks;     /* targets; NULL: every disk of the snapshot */
  size_t ndisks;
  bool memory;                  /* the memory image too, as NAME.save */
  struct vmdr_restore_opts io;
};

struct vmdr_restored_disk {
  char target[32];
  char format[16];
  char *path;                   /* DIR/NAME-TARGET.FORMAT */
  uint64_t virtual_size, bytes; /* bytes: data written (holes not counted) */
};

struct vmdr_restore_result {
  struct vmdr_restored_disk *disks;
  size_t ndisks;
  char *memory_path;            /* DIR/NAME.save, or NULL */
  uint64_t bytes;
  uint64_t archive_bytes;       /* vmdr_restore_snapshot_archive: the tar stream's */
  size_t stale_removed;         /* temporary files of killed restores removed */
  char error[768];              /* on failure: one line saying what and where */
};

/* Restore M's disks (and memory) into O->dir.  Every output name is checked
 * before anything is written; on any failure every output this call made
 * is removed again.  0, -ENOENT (no such disk, or no memory image),
 * -EEXIST, damage, or another -errno; res->error says which.  Clear *res
 * with vmdr_restore_result_clear in any case. */
int vmdr_restore_snapshot_files (struct vmdr_repo *repo, const struct vmdr_manifest *m,
                                 const struct vmdr_restore_files_opts *o,
                                 struct vmdr_restore_result *res);
void vmdr_restore_result_clear (struct vmdr_restore_result *res);

/* Restore M's disks (and memory) as one POSIX pax tar archive instead
 * (image-archive.h), written to the file PATH or, when PATH is NULL, to
 * FD (a pipe, standard output; not closed).  Its entries, in this order:
 *   NAME.xml           the domain XML as the snapshot recorded it (its
 *                      name, UUID and disk paths unchanged), if it has one
 *   NAME-TARGET.raw    each disk (O->disks, or all), sparse, in the
 *                      snapshot's order
 *   NAME.save          the memory image, sparse (O->memory)
 * O as for vmdr_restore_snapshot_files, but O->dir is not used and the
 * images are raw (O->format NULL or "raw", else -EINVAL).  PATH is written
 * under a temporary name beside it and renamed into place once complete
 * and durable; it replaces a file only with O->io.force, and on failure
 * nothing is left.  On success res->disks[].path and res->memory_path are
 * entry names.  Errors as vmdr_restore_snapshot_files (-EEXIST: PATH). */
int vmdr_restore_snapshot_archive (struct vmdr_repo *repo, const struct vmdr_manifest *m,
                                   const struct vmdr_restore_files_opts *o,
                                   const char *path, int fd,
                                   struct vmdr_restore_result *res);

#endif
