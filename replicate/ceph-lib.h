/* librados and librbd, loaded at the first Ceph connection instead of at
 * every start: most runs of the tools that link the RBD code never touch
 * Ceph, and loading those libraries (libceph-common's static set-up
 * with them) cost each start 70 ms and 1,700 page faults.
 *
 * Included after everything else by the files that call Ceph: each
 * rados_ or rbd_ function they use is a macro for its pointer here, with
 * the library's own prototype.  Not for callers outside the RBD library. */
#ifndef VMDR_CEPH_LIB_H
#define VMDR_CEPH_LIB_H

#include <stddef.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#define VMDR_CEPH_RADOS_FUNCS(X)                                                  \
  X (rados_break_lock) X (rados_buffer_free) X (rados_cluster_fsid)               \
  X (rados_conf_get) X (rados_conf_read_file) X (rados_conf_set) X (rados_connect) \
  X (rados_create2) X (rados_create_read_op) X (rados_create_write_op)            \
  X (rados_ioctx_create) X (rados_ioctx_destroy) X (rados_list_lockers)           \
  X (rados_lock_exclusive) X (rados_mon_command) X (rados_omap_get_end)           \
  X (rados_omap_get_next2) X (rados_read) X (rados_read_op_omap_get_keys2)        \
  X (rados_read_op_operate) X (rados_release_read_op) X (rados_release_write_op)  \
  X (rados_shutdown) X (rados_stat) X (rados_unlock) X (rados_write_full)         \
  X (rados_write_op_omap_set) X (rados_write_op_operate)

#define VMDR_CEPH_RBD_FUNCS(X)                                                    \
  X (rbd_aio_create_completion) X (rbd_aio_get_return_value) X (rbd_aio_release)  \
  X (rbd_aio_wait_for_complete) X (rbd_aio_write) X (rbd_clone3) X (rbd_close)    \
  X (rbd_create4) X (rbd_diff_iterate2) X (rbd_flush) X (rbd_get_size)            \
  X (rbd_image_options_create) X (rbd_image_options_destroy)                      \
  X (rbd_image_options_set_uint64) X (rbd_lock_break) X (rbd_lock_get_owners)     \
  X (rbd_lock_get_owners_cleanup) X (rbd_metadata_get) X (rbd_metadata_remove)    \
  X (rbd_metadata_set) X (rbd_open) X (rbd_open_read_only) X (rbd_read)           \
  X (rbd_remove) X (rbd_resize2) X (rbd_snap_create) X (rbd_snap_exists)          \
  X (rbd_snap_is_protected) X (rbd_snap_list) X (rbd_snap_list_end)               \
  X (rbd_snap_protect) X (rbd_snap_remove) X (rbd_snap_rollback) X (rbd_snap_set) \
  X (rbd_write_zeroes)

struct vmdr_ceph_lib {
#define VMDR_CEPH_PTR(f) __typeof__ (f) *f;
  VMDR_CEPH_RADOS_FUNCS (VMDR_CEPH_PTR)
  VMDR_CEPH_RBD_FUNCS (VMDR_CEPH_PTR)
#undef VMDR_CEPH_PTR
};

/* Filled by vmdr_ceph_load; every pointer set once it returned 0. */
extern struct vmdr_ceph_lib vmdr_ceph;

/* Load librados and librbd, once per process (thread-safe): 0, or
 * -ELIBACC with the reason (dlerror's) in ERROR. */
int vmdr_ceph_load (char *error, size_t errlen);

#ifndef VMDR_CEPH_LIB_IMPL
#define rados_break_lock vmdr_ceph.rados_break_lock
#define rados_buffer_free vmdr_ceph.rados_buffer_free
#define rados_cluster_fsid vmdr_ceph.rados_cluster_fsid
#define rados_conf_get vmdr_ceph.rados_conf_get
#define rados_conf_read_file vmdr_ceph.rados_conf_read_file
#define rados_conf_set vmdr_ceph.rados_conf_set
#define rados_connect vmdr_ceph.rados_connect
#define rados_create2 vmdr_ceph.rados_create2
#define rados_create_read_op vmdr_ceph.rados_create_read_op
#define rados_create_write_op vmdr_ceph.rados_create_write_op
#define rados_ioctx_create vmdr_ceph.rados_ioctx_create
#define rados_ioctx_destroy vmdr_ceph.rados_ioctx_destroy
#define rados_list_lockers vmdr_ceph.rados_list_lockers
#define rados_lock_exclusive vmdr_ceph.rados_lock_exclusive
#define rados_mon_command vmdr_ceph.rados_mon_command
#define rados_omap_get_end vmdr_ceph.rados_omap_get_end
#define rados_omap_get_next2 vmdr_ceph.rados_omap_get_next2
#define rados_read vmdr_ceph.rados_read
#define rados_read_op_omap_get_keys2 vmdr_ceph.rados_read_op_omap_get_keys2
#define rados_read_op_operate vmdr_ceph.rados_read_op_operate
#define rados_release_read_op vmdr_ceph.rados_release_read_op
#define rados_release_write_op vmdr_ceph.rados_release_write_op
#define rados_shutdown vmdr_ceph.rados_shutdown
#define rados_stat vmdr_ceph.rados_stat
#define rados_unlock vmdr_ceph.rados_unlock
#define rados_write_full vmdr_ceph.rados_write_full
#define rados_write_op_omap_set vmdr_ceph.rados_write_op_omap_set
#define rados_write_op_operate vmdr_ceph.rados_write_op_operate
#define rbd_aio_create_completion vmdr_ceph.rbd_aio_create_completion
#define rbd_aio_get_return_value vmdr_ceph.rbd_aio_get_return_value
#define rbd_aio_release vmdr_ceph.rbd_aio_release
#define rbd_aio_wait_for_complete vmdr_ceph.rbd_aio_wait_for_complete
#define rbd_aio_write vmdr_ceph.rbd_aio_write
#define rbd_clone3 vmdr_ceph.rbd_clone3
#define rbd_close vmdr_ceph.rbd_close
#define rbd_create4 vmdr_ceph.rbd_create4
#define rbd_diff_iterate2 vmdr_ceph.rbd_diff_iterate2
#define rbd_flush vmdr_ceph.rbd_flush
#define rbd_get_size vmdr_ceph.rbd_get_size
#define rbd_image_options_create vmdr_ceph.rbd_image_options_create
#define rbd_image_options_destroy vmdr_ceph.rbd_image_options_destroy
#define rbd_image_options_set_uint64 vmdr_ceph.rbd_image_options_set_uint64
#define rbd_lock_break vmdr_ceph.rbd_lock_break
#define rbd_lock_get_owners vmdr_ceph.rbd_lock_get_owners
#define rbd_lock_get_owners_cleanup vmdr_ceph.rbd_lock_get_owners_cleanup
#define rbd_metadata_get vmdr_ceph.rbd_metadata_get
#define rbd_metadata_remove vmdr_ceph.rbd_metadata_remove
#define rbd_metadata_set vmdr_ceph.rbd_metadata_set
#define rbd_open vmdr_ceph.rbd_open
#define rbd_open_read_only vmdr_ceph.rbd_open_read_only
#define rbd_read vmdr_ceph.rbd_read
#define rbd_remove vmdr_ceph.rbd_remove
#define rbd_resize2 vmdr_ceph.rbd_resize2
#define rbd_snap_create vmdr_ceph.rbd_snap_create
#define rbd_snap_exists vmdr_ceph.rbd_snap_exists
#define rbd_snap_is_protected vmdr_ceph.rbd_snap_is_protected
#define rbd_snap_list vmdr_ceph.rbd_snap_list
#define rbd_snap_list_end vmdr_ceph.rbd_snap_list_end
#define rbd_snap_protect vmdr_ceph.rbd_snap_protect
#define rbd_snap_remove vmdr_ceph.rbd_snap_remove
#define rbd_snap_rollback vmdr_ceph.rbd_snap_rollback
#define rbd_snap_set vmdr_ceph.rbd_snap_set
#define rbd_write_zeroes vmdr_ceph.rbd_write_zeroes
#endif

#endif
