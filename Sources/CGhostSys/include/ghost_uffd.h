#ifndef GHOST_UFFD_H
#define GHOST_UFFD_H
#include <stdint.h>

/// Write tracking with userfaultfd in asynchronous write-protect mode (Linux 6.7+).
/// The userfaultfd itself is created inside the job (an injected syscall) and
/// handed to ghost with pidfd_getfd; these work on ghost's duplicate.

#define GHOST_SYS_USERFAULTFD 323

/// UFFDIO_API asking for WP_ASYNC (+ WP_UNPOPULATED, WP_HUGETLBFS_SHMEM when offered).
/// Returns 0, or -1 with errno (EINVAL: the kernel has no async write-protect).
int ghost_uffd_api(int uffd);

/// UFFDIO_REGISTER_MODE_WP on [start, start+len). Returns 0 or -1 with errno.
int ghost_uffd_register_wp(int uffd, uint64_t start, uint64_t len);

/// Restore: filling fresh areas with UFFDIO_COPY, which installs pages
/// holding the copied bytes (process_vm_writev faults in zeroed pages first,
/// then copies: twice the memory traffic).
/// UFFDIO_API with no features (missing-page mode). Returns 0 or -1 with errno.
int ghost_uffd_api_missing(int uffd);
/// UFFDIO_REGISTER_MODE_MISSING / UFFDIO_UNREGISTER on [start, start+len). 0 or -1 with errno.
int ghost_uffd_register_missing(int uffd, uint64_t start, uint64_t len);
int ghost_uffd_unregister(int uffd, uint64_t start, uint64_t len);
/// UFFDIO_COPY of len bytes (page multiples) from src (this process) to dst.
/// Returns 0 or an errno (EEXIST: the page at dst + *copied is present);
/// *copied = bytes installed before it stopped.
int ghost_uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, uint64_t *copied);

/// PAGEMAP_SCAN categories and flags (Debian 12's headers predate them).
#define GHOST_PAGE_IS_WPALLOWED (1 << 0)
#define GHOST_PAGE_IS_WRITTEN   (1 << 1)
#define GHOST_PM_SCAN_WP_MATCHING   (1 << 0)
#define GHOST_PM_SCAN_CHECK_WPASYNC (1 << 1)

/// Pages of [start,end) written since they were last write-protected, and
/// write-protects them again in the same walk (PM_SCAN_WP_MATCHING |
/// PM_SCAN_CHECK_WPASYNC). Fills regions as (start,end,categories) triples;
/// returns their number or -1 with errno (EPERM: the area is not registered).
/// *walk_end = where the walk stopped (== end when complete).
long ghost_pagemap_scan_written(int pagemap, uint64_t start, uint64_t end,
                                uint64_t *regions, uint64_t max_regions, uint64_t *walk_end);

#endif
