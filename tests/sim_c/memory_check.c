/*
 * Checks of the simulator's zero-fill (issue 14), built against build/cann-sim by tests/test_sim_memory.py:
 * aclrtMemset / aclrtMemsetAsync with value 0 over a large range give the range's whole pages back to the
 * kernel (they read as zeros and are no longer resident) and write only the partial pages at both ends;
 * other values and short ranges are written as before. Residency is read with mincore(2), before the memory
 * is read back (reading a dropped page maps the zero page, which counts as resident).
 *
 * Usage: memory_check <case>; prints "PASS <case>" and exits 0, or "FAIL <file>:<line>: <what>" and exits 1.
 * The case "shared" needs ACLNN_SIM_SHM_SESSION (multi-process mode, 2 devices) and starts this program again
 * as "peer <address> <bytes> <lo> <len> <inside> <outside>" in a second process, which checks what it reads.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acl/acl.h"
#include "aclsim.h"
#include "check_common.h"
#include "hccl/hccl.h"

#define LARGE ((size_t)(8u << 20) + 100) /* a buffer of its own mapping, not a whole number of pages */
#define LO ((size_t)123)                 /* the zeroed range starts and ends inside a page */
#define TAIL ((size_t)77)
#define ARENA_BASE ((uintptr_t)0x200000000000ull) /* sim/src/core_shm.c: device memory in multi-process mode */

static size_t g_page;

/* 1 if the page holding p is resident (mincore) */
static int resident(const void *p)
{
    unsigned char v = 0;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(g_page - 1);
    CHECK_EQ(mincore((void *)a, g_page, &v), 0);
    return v & 1;
}

/* Every byte of [p, p + n) is `value`. */
static void check_bytes(const void *p, size_t n, unsigned char value, int line)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != value) {
            printf("FAIL %s:%d: byte %zu of %zu is 0x%02x, expected 0x%02x\n", __FILE__, line, i, n, b[i], value);
            exit(1);
        }
    }
}
#define CHECK_BYTES(p, n, v) check_bytes((p), (n), (v), __LINE__)

/* No page lying wholly inside [p+lo, p+lo+len) is resident (the partial pages at the ends may be: the bytes
 * around the range, checked by the callers, show that they were written, not dropped). */
static void check_interior_dropped(const char *p, size_t lo, size_t len, int line)
{
    uintptr_t first = ((uintptr_t)(p + lo) + g_page - 1) & ~(uintptr_t)(g_page - 1);
    uintptr_t last = (uintptr_t)(p + lo + len) & ~(uintptr_t)(g_page - 1);
    CHECK(last > first);
    for (uintptr_t a = first; a < last; a += g_page) {
        if (resident((const void *)a)) {
            printf("FAIL %s:%d: page %zu of the zeroed range is still resident\n", __FILE__, line,
                   (size_t)(a - first) / g_page);
            exit(1);
        }
    }
}
#define CHECK_INTERIOR_DROPPED(p, lo, len) check_interior_dropped((p), (lo), (len), __LINE__)

/* Every page of [p, p + n) is resident. */
static void check_all_resident(const char *p, size_t n, int line)
{
    for (size_t off = 0; off < n; off += g_page) {
        if (!resident(p + off)) {
            printf("FAIL %s:%d: page at offset %zu is not resident (the range was dropped, not written)\n", __FILE__,
                   line, off);
            exit(1);
        }
    }
}
#define CHECK_ALL_RESIDENT(p, n) check_all_resident((p), (n), __LINE__)

/* [0, lo) and [lo + len, n) are `outside`, [lo, lo + len) is `inside`. */
static void check_range(const char *p, size_t n, size_t lo, size_t len, unsigned char inside, unsigned char outside)
{
    CHECK_BYTES(p, lo, outside);
    CHECK_BYTES(p + lo, len, inside);
    CHECK_BYTES(p + lo + len, n - lo - len, outside);
}

static size_t free_bytes(void)
{
    size_t free_b = 0, total = 0;
    CHECK_EQ(aclrtGetMemInfo(ACL_HBM_MEM, &free_b, &total), 0);
    return free_b;
}

/* Sync memset: 0 drops the interior pages, other values and short ranges write; accounting is unchanged. */
static void case_zero_fill(void)
{
    CHECK_EQ(aclrtSetDevice(0), 0);
    const size_t free0 = free_bytes();
    char *d = NULL, *small = NULL;
    CHECK_EQ(aclrtMalloc((void **)&d, LARGE, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK_EQ(free0 - free_bytes(), LARGE);
    CHECK_EQ(aclrtMemset(d, LARGE, 0xab, LARGE), 0);
    CHECK_ALL_RESIDENT(d, LARGE);

    const size_t len = LARGE - LO - TAIL;
    CHECK_EQ(aclrtMemset(d + LO, LARGE - LO, 0, len), 0);
    CHECK_INTERIOR_DROPPED(d, LO, len);
    CHECK_EQ(free0 - free_bytes(), LARGE); /* the buffer still counts in full */
    check_range(d, LARGE, LO, len, 0, 0xab);
    char back[256];
    CHECK_EQ(aclrtMemcpy(back, sizeof back, d + LO + (4u << 20), sizeof back, ACL_MEMCPY_DEVICE_TO_HOST), 0);
    CHECK_BYTES(back, sizeof back, 0);

    /* memset's byte is value's low 8 bits: 0x100 zeroes (and drops) too; a non-zero byte writes every page */
    CHECK_EQ(aclrtMemset(d, LARGE, 0xab, LARGE), 0);
    CHECK_EQ(aclrtMemset(d + LO, LARGE - LO, 0x100, len), 0);
    CHECK_INTERIOR_DROPPED(d, LO, len);
    check_range(d, LARGE, LO, len, 0, 0xab);
    CHECK_EQ(aclrtMemset(d + LO, LARGE - LO, 7, len), 0);
    CHECK_ALL_RESIDENT(d, LARGE);
    check_range(d, LARGE, LO, len, 7, 0xab);

    /* a short range inside the large buffer is written: its pages stay resident */
    const size_t short_len = 64u << 10;
    CHECK_EQ(aclrtMemset(d + g_page, LARGE - g_page, 0, short_len), 0);
    CHECK_ALL_RESIDENT(d + g_page, short_len);
    CHECK_BYTES(d + g_page, short_len, 0);
    CHECK_BYTES(d + g_page + short_len, 16, 7);

    /* a resident range of a few hundred KiB (a reused output block) is written, not dropped; one that is not
     * resident is dropped even when it is that short */
    const size_t mid_len = 512u << 10;
    CHECK_EQ(aclrtMemset(d, LARGE, 0x5a, 2 * mid_len), 0);
    CHECK_EQ(aclrtMemset(d + g_page, LARGE - g_page, 0, mid_len), 0);
    CHECK_ALL_RESIDENT(d + g_page, mid_len);
    check_range(d, 2 * mid_len, g_page, mid_len, 0, 0x5a);
    CHECK_EQ(aclrtMemset(d + g_page, LARGE - g_page, 0, 4 * mid_len), 0);    /* drops the pages */
    CHECK_INTERIOR_DROPPED(d, g_page, 4 * mid_len);
    CHECK_EQ(aclrtMemset(d + g_page, LARGE - g_page, 0, mid_len), 0);        /* not resident: dropped again */
    CHECK_INTERIOR_DROPPED(d, g_page, mid_len);
    CHECK_BYTES(d + g_page, mid_len, 0);

    /* a small buffer (heap memory) */
    CHECK_EQ(aclrtMalloc((void **)&small, 4096, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK_EQ(aclrtMemset(small, 4096, 0xcd, 4096), 0);
    CHECK_EQ(aclrtMemset(small + 1, 4095, 0, 4000), 0);
    check_range(small, 4096, 1, 4000, 0, 0xcd);

    CHECK_EQ(aclrtFree(d), 0);
    CHECK_EQ(aclrtFree(small), 0);
    CHECK_EQ(free_bytes(), free0);
    CHECK_EQ(aclrtResetDevice(0), 0);
    check_no_leaks();
}

/* aclrtMemsetAsync keeps stream order: device 0's stream is held by an HcclBarrier until device 1 joins it, so
 * nothing queued behind runs before that; then a copy queued before the memset is overwritten with zeros and
 * one queued after it is kept. */
static void case_zero_fill_async(void)
{
    HcclComm comms[2];
    int32_t devices[2] = {0, 1};
    CHECK_EQ(HcclCommInitAll(2, devices, comms), 0);
    aclrtStream s1 = NULL, s0 = NULL;
    CHECK_EQ(aclrtSetDevice(1), 0);
    CHECK_EQ(aclrtCreateStream(&s1), 0);
    CHECK_EQ(aclrtSetDevice(0), 0);
    CHECK_EQ(aclrtCreateStream(&s0), 0);

    const size_t len = LARGE - LO - TAIL, after_len = 3 * g_page;
    char *d = NULL, *before = malloc(LARGE), *after = malloc(after_len);
    CHECK(before && after);
    memset(before, 0x11, LARGE);
    memset(after, 0x22, after_len);
    CHECK_EQ(aclrtMalloc((void **)&d, LARGE, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK_EQ(aclrtMemset(d, LARGE, 0xab, LARGE), 0);

    CHECK_EQ(HcclBarrier(comms[0], s0), HCCL_SUCCESS); /* holds s0 */
    CHECK_EQ(aclrtMemcpyAsync(d, LARGE, before, LARGE, ACL_MEMCPY_HOST_TO_DEVICE, s0), 0);
    CHECK_EQ(aclrtMemsetAsync(d + LO, LARGE - LO, 0, len, s0), 0);
    CHECK_EQ(aclrtMemcpyAsync(d + (1u << 20), after_len, after, after_len, ACL_MEMCPY_HOST_TO_DEVICE, s0), 0);
    CHECK_EQ(aclrtSynchronizeStreamWithTimeout(s0, 0), ACL_ERROR_RT_STREAM_SYNC_TIMEOUT);
    (void)aclGetRecentErrMsg();
    CHECK_BYTES(d, LARGE, 0xab); /* nothing ran yet: the memset is queued, not done at the call */

    CHECK_EQ(aclrtSetDevice(1), 0);
    CHECK_EQ(HcclBarrier(comms[1], s1), HCCL_SUCCESS);
    CHECK_EQ(aclrtSynchronizeStream(s1), 0);
    CHECK_EQ(aclrtSetDevice(0), 0);
    CHECK_EQ(aclrtSynchronizeStream(s0), 0);

    CHECK_BYTES(d, LO, 0x11);
    CHECK_BYTES(d + LO, (1u << 20) - LO, 0);
    CHECK_BYTES(d + (1u << 20), after_len, 0x22);
    CHECK_BYTES(d + (1u << 20) + after_len, LO + len - (1u << 20) - after_len, 0);
    CHECK_BYTES(d + LO + len, TAIL, 0x11);

    /* the async form drops pages too */
    CHECK_EQ(aclrtMemsetAsync(d + LO, LARGE - LO, 0, len, s0), 0);
    CHECK_EQ(aclrtSynchronizeStream(s0), 0);
    CHECK_INTERIOR_DROPPED(d, LO, len);
    check_range(d, LARGE, LO, len, 0, 0x11);

    free(before);
    free(after);
    CHECK_EQ(aclrtFree(d), 0);
    CHECK_EQ(aclrtDestroyStream(s0), 0);
    CHECK_EQ(aclrtDestroyStream(s1), 0);
    CHECK_EQ(HcclCommDestroy(comms[0]), 0);
    CHECK_EQ(HcclCommDestroy(comms[1]), 0);
    CHECK_EQ(aclrtResetDevice(0), 0);
    CHECK_EQ(aclrtResetDevice(1), 0);
    check_no_leaks();
}

/* aclrtMallocHost memory is zeroed the same way; a count past the end of a host buffer is refused. */
static void case_zero_fill_host(void)
{
    CHECK_EQ(aclrtSetDevice(0), 0);
    char *h = NULL;
    CHECK_EQ(aclrtMallocHost((void **)&h, LARGE), 0);
    memset(h, 0xab, LARGE);
    const size_t len = LARGE - LO - TAIL;
    CHECK_EQ(aclrtMemset(h, LARGE, 0, LO + len), 0);
    CHECK_INTERIOR_DROPPED(h, 0, LO + len);
    check_range(h, LARGE, 0, LO + len, 0, 0xab);
    CHECK_EQ(aclrtMemset(h, LARGE + 1, 0, LARGE + 1), ACL_ERROR_RT_PARAM_INVALID);
    check_msg("aclrtMallocHost", __FILE__, __LINE__);
    CHECK_BYTES(h + LO + len, TAIL, 0xab);
    CHECK_EQ(aclrtFreeHost(h), 0);
    CHECK_EQ(aclrtResetDevice(0), 0);
    check_no_leaks();
}

/* Starts this program as the peer process and checks that it passed. */
static void run_peer(const char *self, const char *p, size_t lo, size_t len, int inside, int outside)
{
    char args[5][32];
    snprintf(args[0], sizeof args[0], "%" PRIuPTR, (uintptr_t)p);
    snprintf(args[1], sizeof args[1], "%zu", LARGE);
    snprintf(args[2], sizeof args[2], "%zu", lo);
    snprintf(args[3], sizeof args[3], "%zu", len);
    snprintf(args[4], sizeof args[4], "%d %d", inside, outside);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execl(self, self, "peer", args[0], args[1], args[2], args[3], args[4], (char *)NULL);
        _exit(127);
    }
    int st = 0;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
}

/* The peer: maps the session's device memory (by allocating on device 1) and reads the owner's buffer. */
static void case_peer(char **argv)
{
    uintptr_t addr = (uintptr_t)strtoull(argv[2], NULL, 10);
    size_t n = strtoull(argv[3], NULL, 10), lo = strtoull(argv[4], NULL, 10), len = strtoull(argv[5], NULL, 10);
    int inside = 0, outside = 0;
    CHECK_EQ(sscanf(argv[6], "%d %d", &inside, &outside), 2);
    CHECK_EQ(aclrtSetDevice(1), 0);
    void *mine = NULL;
    CHECK_EQ(aclrtMalloc(&mine, 64, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK((uintptr_t)mine >= ARENA_BASE); /* multi-process mode is on: the owner's memory is mapped here */
    check_range((const char *)addr, n, lo, len, (unsigned char)inside, (unsigned char)outside);
    CHECK_EQ(aclrtFree(mine), 0);
    CHECK_EQ(aclrtResetDevice(1), 0);
    check_no_leaks();
}

/* Multi-process mode: zeroing punches a hole in the shared file, so another process reads zeros too; a reused
 * arena block comes back zeroed the same way. */
static void case_shared(const char *self)
{
    const char *session = getenv("ACLNN_SIM_SHM_SESSION");
    CHECK(session && *session);
    CHECK_EQ(aclrtSetDevice(0), 0);
    char *d = NULL;
    CHECK_EQ(aclrtMalloc((void **)&d, LARGE, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK((uintptr_t)d >= ARENA_BASE);
    CHECK_EQ(aclrtMemset(d, LARGE, 0xab, LARGE), 0);
    CHECK_ALL_RESIDENT(d, LARGE);
    run_peer(self, d, 0, 0, 0, 0xab); /* the peer sees the owner's bytes */

    const size_t len = LARGE - LO - TAIL;
    CHECK_EQ(aclrtMemset(d + LO, LARGE - LO, 0, len), 0);
    CHECK_INTERIOR_DROPPED(d, LO, len);
    run_peer(self, d, LO, len, 0, 0xab);
    check_range(d, LARGE, LO, len, 0, 0xab);

    CHECK_EQ(aclrtMemset(d, LARGE, 0xab, LARGE), 0);
    CHECK_EQ(aclrtFree(d), 0);
    char *again = NULL;
    CHECK_EQ(aclrtMalloc((void **)&again, LARGE, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK(again == d); /* the block came back from the free list */
    CHECK_INTERIOR_DROPPED(again, 0, LARGE);
    run_peer(self, again, 0, LARGE, 0, 0);
    CHECK_EQ(aclrtFree(again), 0);
    CHECK_EQ(aclrtResetDevice(0), 0);
    check_no_leaks();
}

int main(int argc, char **argv)
{
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    if (argc == 7 && strcmp(argv[1], "peer") == 0) {
        case_peer(argv);
    } else if (argc == 2 && strcmp(argv[1], "zero_fill") == 0) {
        case_zero_fill();
    } else if (argc == 2 && strcmp(argv[1], "zero_fill_async") == 0) {
        case_zero_fill_async();
    } else if (argc == 2 && strcmp(argv[1], "zero_fill_host") == 0) {
        case_zero_fill_host();
    } else if (argc == 2 && strcmp(argv[1], "shared") == 0) {
        case_shared(argv[0]);
    } else {
        fprintf(stderr, "usage: %s zero_fill | zero_fill_async | zero_fill_host | shared\n", argv[0]);
        return 2;
    }
    printf("PASS %s\n", argv[1]);
    return 0;
}
