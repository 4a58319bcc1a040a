// userfaultfd: write tracking (UFFDIO_API / UFFDIO_REGISTER and PAGEMAP_SCAN
// with write-protect) and restore (UFFDIO_COPY), which Swift cannot call (variadic ioctl, structs the
// system headers here do not have).
#include "ghost_uffd.h"
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>

#define F_WP_HUGETLBFS_SHMEM (1ULL << 12)
#define F_WP_UNPOPULATED     (1ULL << 13)
#define F_WP_ASYNC           (1ULL << 15)

int ghost_uffd_api(int uffd) {
    struct uffdio_api api = { .api = UFFD_API, .features = F_WP_ASYNC | F_WP_UNPOPULATED | F_WP_HUGETLBFS_SHMEM };
    if (ioctl(uffd, UFFDIO_API, &api) == 0) return 0;
    // An older kernel refuses unknown features as a whole: try the one we need.
    struct uffdio_api api2 = { .api = UFFD_API, .features = F_WP_ASYNC };
    if (ioctl(uffd, UFFDIO_API, &api2) == 0) return 0;
    return -1;
}

int ghost_uffd_register_wp(int uffd, uint64_t start, uint64_t len) {
    struct uffdio_register reg = { .range = { .start = start, .len = len }, .mode = UFFDIO_REGISTER_MODE_WP };
    return ioctl(uffd, UFFDIO_REGISTER, &reg);
}

int ghost_uffd_api_missing(int uffd) {
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    return ioctl(uffd, UFFDIO_API, &api);
}

int ghost_uffd_register_missing(int uffd, uint64_t start, uint64_t len) {
    struct uffdio_register reg = { .range = { .start = start, .len = len }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    return ioctl(uffd, UFFDIO_REGISTER, &reg);
}

int ghost_uffd_unregister(int uffd, uint64_t start, uint64_t len) {
    struct uffdio_range range = { .start = start, .len = len };
    return ioctl(uffd, UFFDIO_UNREGISTER, &range);
}

int ghost_uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, uint64_t *copied) {
    struct uffdio_copy c = { .dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len, .mode = 0, .copy = 0 };
    int r = ioctl(uffd, UFFDIO_COPY, &c);
    int e = r == 0 ? 0 : errno;
    *copied = c.copy > 0 ? (uint64_t)c.copy : 0;
    if (r == 0 && *copied < len) e = EAGAIN;   // a short copy without an error: go on from there
    return e;
}

struct ghost_pm_scan_arg2 {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define GHOST_PAGEMAP_SCAN2 _IOWR('f', 16, struct ghost_pm_scan_arg2)

long ghost_pagemap_scan_written(int pagemap, uint64_t start, uint64_t end,
                                uint64_t *regions, uint64_t max_regions, uint64_t *walk_end) {
    struct ghost_pm_scan_arg2 arg;
    memset(&arg, 0, sizeof arg);
    arg.size = sizeof arg;
    arg.flags = GHOST_PM_SCAN_WP_MATCHING | GHOST_PM_SCAN_CHECK_WPASYNC;
    arg.start = start;
    arg.end = end;
    arg.vec = (uint64_t)(uintptr_t)regions;
    arg.vec_len = max_regions;
    arg.category_mask = GHOST_PAGE_IS_WRITTEN;
    arg.return_mask = GHOST_PAGE_IS_WRITTEN;
    long n = ioctl(pagemap, GHOST_PAGEMAP_SCAN2, &arg);
    *walk_end = arg.walk_end;
    return n;
}
