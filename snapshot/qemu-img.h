/* qemu-img as a child: where a qcow2 image keeps the disk's bytes.
 *
 * A restore into qcow2 lets qemu-img make the image with every cluster's
 * metadata preallocated (-o preallocation=metadata), marks the disk's
 * holes as zero clusters through qemu-nbd, and asks `qemu-img map` where
 * each data cluster lies in the file.  The restored bytes then go there
 * directly, as into a raw image: QEMU writes every byte of qcow2 metadata,
 * vmdr only fills the data clusters QEMU placed.
 */
#ifndef VMDR_QEMU_IMG_H
#define VMDR_QEMU_IMG_H

#include <stddef.h>
#include <stdint.h>

#include "disk-io.h"

/* Run ARGV (argv[0] looked up in PATH) with standard output and error on
 * /dev/null.  0 if it exited 0, -ENOENT if it could not run, else -EIO. */
int vmdr_run_quiet (const char *const *argv);

/* Most extents vmdr_qemu_img_layout accepts: a 64 TiB image of 512 MiB
 * L2 slices, or a smaller one fragmented by its holes. */
#define VMDR_LAYOUT_MAX (1u << 20)

/* The data extents of the qcow2 image FILE of SIZE bytes, from
 * `qemu-img map --output=json`: in *OUT (malloc'd, sorted, *N of them)
 * each range of the disk whose data is in FILE itself, with its offset
 * there.  Ranges without data (holes, zero clusters) are left out.
 * -ENOTSUP when any data range is not plainly in FILE (compressed, in a
 * backing file, or without an offset), -EBADMSG for output it does not
 * understand, -E2BIG beyond VMDR_LAYOUT_MAX, -EIO if qemu-img failed. */
int vmdr_qemu_img_layout (const char *file, uint64_t size,
                          struct vmdr_out_extent **out, size_t *n);

#endif
