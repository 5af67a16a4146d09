/* Repository locks (docs/repository-format.md section 9): an object created
 * only if absent, naming its holder.  A lock left by a dead process on this
 * host (its pid is gone, or the host rebooted since) is stale and is taken
 * over; the caller says so.
 */
#ifndef VMDR_LOCK_H
#define VMDR_LOCK_H

#include <stdbool.h>
#include <sys/types.h>

#include "repo.h"

struct vmdr_lock_holder {
  char host[256];
  pid_t pid;
  char started[32];
};

struct vmdr_lock;

/* Take lock NAME ("domain-web1", "gc").  0 and *out; -EBUSY when a live
 * holder has it (*holder, if not NULL, says who); *took_over (may be NULL)
 * is set when a stale lock was replaced, with *holder describing it. */
int vmdr_lock_acquire (struct vmdr_repo *repo, const char *name,
                       struct vmdr_lock **out, struct vmdr_lock_holder *holder,
                       bool *took_over);

/* Release and free.  NULL is fine.  0 or -errno (the lock object could not
 * be deleted; it then looks stale to the next run, which takes it over). */
int vmdr_lock_release (struct vmdr_lock *lock);

/* Whether any lock whose name starts with PREFIX is held (live or stale:
 * GC treats both as "a writer may be running" unless stale here).  0 = none,
 * 1 = held, or -errno. */
int vmdr_lock_any (struct vmdr_repo *repo, const char *prefix);

/* The lock name for writers of DOMAIN: "domain-ESCAPED". */
int vmdr_lock_name_domain (const char *domain, char *name, size_t size);

#endif
