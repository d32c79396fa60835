/*
 * Zero-filling device memory at the cost of the bytes the caller will touch (issue 14).
 *
 * A fresh aclnn output is zero-filled at its full capacity (elements a kernel does not write read as 0), while
 * the kernel writes only the rows it moves: dispatch's expandXOut holds A = BS*ep*min(L,K) rows of which a
 * rank receives about BS*K. Writing those zeros through host memory made a call cost its capacity. Here the
 * whole pages of a large range go back to the kernel instead, which maps zero pages on their next touch, and
 * only the partial pages at both ends are written:
 *   - private anonymous memory (aclrtMalloc's mmap, aclrtMallocHost): madvise(MADV_DONTNEED), after which
 *     the range reads as zeros;
 *   - the multi-process arenas (core_shm.c: MAP_SHARED on a tmpfs file): MADV_DONTNEED would only drop this
 *     process's view and the old bytes would come back from the file, so madvise(MADV_REMOVE), which punches a
 *     hole in the file (like fallocate(PUNCH_HOLE | KEEP_SIZE) on its fd): every process mapping it reads zeros.
 * When the kernel refuses (e.g. locked pages, a filesystem without hole punching), the range is written. A range
 * under SIM_ZERO_WRITE_RESIDENT_MAX whose pages are all resident (an output block reused by aclnn_py's pool) is
 * written too: that costs less than the shoot-down of giving its pages back and the faults of writing them again.
 *
 * The other half: a kernel writing many rows into fresh memory would take one page fault per page (about
 * 1.5 us each in a VM, more than the copy itself); sim_prefault maps a range's pages in one system call first.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "simcore.h"

static uintptr_t page_size(void)
{
    long v = sysconf(_SC_PAGESIZE); /* glibc reads it from the auxiliary vector: no system call */
    return v > 0 ? (uintptr_t)v : 4096;
}

static int all_resident(uintptr_t lo, uintptr_t hi, uintptr_t page);

SIM_API void sim_zero_fill(void *ptr, size_t bytes)
{
    const uintptr_t start = (uintptr_t)ptr, end = start + bytes, page = page_size();
    const uintptr_t lo = (start + page - 1) & ~(page - 1), hi = end & ~(page - 1);
    if (bytes < SIM_MMAP_THRESHOLD || hi <= lo || (bytes < SIM_ZERO_WRITE_RESIDENT_MAX && all_resident(lo, hi, page))) {
        memset(ptr, 0, bytes);
        return;
    }
    const int advice = sim_arena_owns(ptr) ? MADV_REMOVE : MADV_DONTNEED;
    if (madvise((void *)lo, hi - lo, advice) != 0) {
        memset(ptr, 0, bytes);
        return;
    }
    memset(ptr, 0, lo - start);
    memset((void *)hi, 0, end - hi);
}

/* 1 if every page of [lo, hi) (page-aligned) is resident */
static int all_resident(uintptr_t lo, uintptr_t hi, uintptr_t page)
{
    unsigned char vec[1024];
    for (uintptr_t a = lo; a < hi;) {
        size_t n = (size_t)((hi - a) / page);
        if (n > sizeof vec) n = sizeof vec;
        if (mincore((void *)a, n * page, vec) != 0) return 0;
        for (size_t i = 0; i < n; i++)
            if (!(vec[i] & 1)) return 0;
        a += n * page;
    }
    return 1;
}

SIM_API void sim_prefault(void *ptr, size_t bytes)
{
    if (bytes < SIM_MMAP_THRESHOLD) return;
    const uintptr_t start = (uintptr_t)ptr, page = page_size();
    const uintptr_t lo = start & ~(page - 1), hi = (start + bytes + page - 1) & ~(page - 1);
    /* populating costs about half a copy even when every page is there already (a preallocated output): ask first */
    if (all_resident(lo, hi, page)) return;
    /* Linux >= 5.14; elsewhere (EINVAL) the writes fault the pages in as before. Contents never change. */
    (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
}
