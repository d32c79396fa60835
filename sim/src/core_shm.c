/*
 * Multi-process mode of the CANN simulator: device memory shared between processes.
 *
 * Off unless ACLNN_SIM_SHM_SESSION names a session (aclnn_py's launcher sets it for every rank process);
 * then each simulated device's memory is a sparse file /dev/shm/aclnn_sim_<session>_d<device>, mapped at
 * the same fixed address in every process of the session (ARENA_BASE + device * span, MAP_FIXED_NOREPLACE,
 * MAP_NORESERVE), so a device pointer is valid in every process, as on an NPU pod where peers read each
 * other's HCCL windows. Only the process that owns a device (the first to allocate on it) allocates and
 * frees in its arena; peers only read. Besides aclrtMalloc, the operators' own host allocations (libopapi
 * is linked with --wrap=malloc etc.) and the stream workers' stacks come from the arena of the calling
 * thread's device, because the kernels exchange pointers to them with their peers.
 *
 * Single-process mode (the default) is untouched: every wrapper falls through to libc after one branch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "simcore.h"

#define ARENA_BASE ((uintptr_t)0x200000000000ull)   /* 32 TiB: far from the heap, libraries and stacks */
#define ARENA_MAGIC 0x41524E41u
#define HDR 64                                       /* block header; keeps 64-byte alignment */
#define NCLASS 48

typedef struct {            /* at the start of every arena (shared) */
    uint32_t magic;
    int32_t owner_pid;      /* the process that allocates here */
    uint64_t bump;          /* offset of the first never-used byte */
} ArenaHdr;

typedef struct {            /* header of every block (shared memory, written by the owner only) */
    uint64_t size_class;
    uint64_t user_bytes;
    uint64_t magic;
} BlockHdr;

typedef struct {            /* process-local allocator state of one arena */
    pthread_mutex_t mu;
    void *free_list[NCLASS];
} Arena;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_mp;                 /* multi-process mode is on and the arenas are mapped */
static char g_session[64];
static size_t g_span;
static int g_ndev;
static Arena *g_arenas;
static char g_init_error[512];

static size_t span_bytes(void)
{
    const char *v = getenv("ACLNN_SIM_SHM_DEVICE_MB");
    long long mb = v && *v ? strtoll(v, NULL, 10) : 4096;
    if (mb < 64) mb = 64;
    return (size_t)mb << 20;
}

static void init_once(void)
{
    const char *s = getenv("ACLNN_SIM_SHM_SESSION");
    if (!s || !*s) return;
    snprintf(g_session, sizeof g_session, "%s", s);
    g_span = span_bytes();
    g_ndev = sim_device_count();
    g_arenas = calloc((size_t)g_ndev, sizeof(Arena));
    if (!g_arenas) return;
    for (int d = 0; d < g_ndev; d++) {
        char name[128];
        snprintf(name, sizeof name, "/aclnn_sim_%s_d%d", g_session, d);
        int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
        if (fd < 0) {
            snprintf(g_init_error, sizeof g_init_error, "shm_open(%s): %s", name, strerror(errno));
            return;
        }
        struct stat sb;
        if (fstat(fd, &sb) == 0 && (size_t)sb.st_size < g_span && ftruncate(fd, (off_t)g_span) != 0) {
            snprintf(g_init_error, sizeof g_init_error, "ftruncate(%s): %s", name, strerror(errno));
            close(fd);
            return;
        }
        void *want = (void *)(ARENA_BASE + (uintptr_t)d * g_span);
        void *p = mmap(want, g_span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE | MAP_NORESERVE, fd, 0);
        close(fd);
        if (p == MAP_FAILED || p != want) {
            snprintf(g_init_error, sizeof g_init_error, "cannot map the memory of device %d at %p: %s", d, want,
                     p == MAP_FAILED ? strerror(errno) : "the kernel chose another address");
            if (p != MAP_FAILED) munmap(p, g_span);
            return;
        }
        pthread_mutex_init(&g_arenas[d].mu, NULL);
    }
    g_mp = 1;
}

SIM_API int sim_mp_enabled(void)
{
    pthread_once(&g_once, init_once);
    return g_mp;
}

SIM_API const char *sim_mp_session(void)
{
    pthread_once(&g_once, init_once);
    return g_mp ? g_session : NULL;
}

SIM_API const char *sim_mp_error(void)
{
    pthread_once(&g_once, init_once);
    return g_init_error[0] ? g_init_error : NULL;
}

static int arena_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    if (!g_mp || a < ARENA_BASE) return -1;
    uintptr_t d = (a - ARENA_BASE) / g_span;
    return d < (uintptr_t)g_ndev ? (int)d : -1;
}

SIM_API int sim_arena_owns(const void *p)
{
    return sim_mp_enabled() && arena_of(p) >= 0;
}

static int class_of(size_t bytes)
{
    int c = 6; /* 64 bytes */
    while (c < NCLASS && ((size_t)1 << c) < bytes) c++;
    return c;
}

/* Claim device `d` for this process (first allocation), or report the live owner. */
static int claim(ArenaHdr *h, int d)
{
    int32_t me = (int32_t)getpid();
    for (;;) {
        int32_t owner = __atomic_load_n(&h->owner_pid, __ATOMIC_ACQUIRE);
        if (owner == me) return 0;
        if (owner != 0 && kill(owner, 0) == 0) {
            sim_set_error("device %d is in use by process %d (multi-process simulator: one process per device)", d,
                          (int)owner);
            return -1;
        }
        if (__atomic_compare_exchange_n(&h->owner_pid, &owner, me, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            if (h->magic != ARENA_MAGIC || owner != 0) { /* fresh, or taken over from an exited process */
                h->magic = ARENA_MAGIC;
                h->bump = HDR;
            }
            return 0;
        }
    }
}

SIM_API void *sim_arena_alloc(int d, size_t bytes)
{
    if (!sim_mp_enabled() || d < 0 || d >= g_ndev) return NULL;
    int c = class_of(bytes + HDR);
    if (c >= NCLASS) return NULL;
    size_t block = (size_t)1 << c;
    char *base = (char *)(ARENA_BASE + (uintptr_t)d * g_span);
    ArenaHdr *h = (ArenaHdr *)base;
    Arena *a = &g_arenas[d];
    pthread_mutex_lock(&a->mu);
    if (claim(h, d) != 0) {
        pthread_mutex_unlock(&a->mu);
        return NULL;
    }
    char *blk = a->free_list[c];
    int reused = blk != NULL;
    if (blk) {
        a->free_list[c] = *(void **)(blk + HDR);
    } else {
        uint64_t off = (h->bump + 63) & ~(uint64_t)63;
        if (off + block > g_span) {
            pthread_mutex_unlock(&a->mu);
            sim_set_error("device %d: its %zu MB of shared memory are exhausted (ACLNN_SIM_SHM_DEVICE_MB)", d,
                          g_span >> 20);
            return NULL;
        }
        blk = base + off;
        h->bump = off + block;
    }
    pthread_mutex_unlock(&a->mu);
    BlockHdr *b = (BlockHdr *)blk;
    b->size_class = (uint64_t)c;
    b->user_bytes = bytes;
    b->magic = ARENA_MAGIC;
    if (reused) sim_zero_fill(blk + HDR, bytes); /* fresh pages of the sparse file are zero already */
    return blk + HDR;
}

/* 0 when p was arena memory (now free), -1 when it is not arena memory. */
SIM_API int sim_arena_free(void *p)
{
    int d = arena_of(p);
    if (d < 0) return -1;
    char *blk = (char *)p - HDR;
    BlockHdr *b = (BlockHdr *)blk;
    if (b->magic != ARENA_MAGIC || b->size_class >= NCLASS) return 0; /* not a block start: ignore */
    b->magic = 0;
    Arena *a = &g_arenas[d];
    pthread_mutex_lock(&a->mu);
    *(void **)(blk + HDR) = a->free_list[b->size_class];
    a->free_list[b->size_class] = blk;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

static size_t arena_user_bytes(const void *p)
{
    return ((const BlockHdr *)((const char *)p - HDR))->user_bytes;
}

/* ---- the operators' host allocations (libopapi.so is linked with --wrap=malloc,free,calloc,realloc) ---- */
static int wrap_device(void)
{
    return sim_mp_enabled() ? sim_current_device() : -1;
}

SIM_API void *__wrap_malloc(size_t n)
{
    int d = wrap_device();
    if (d >= 0) {
        void *p = sim_arena_alloc(d, n ? n : 1);
        if (p) return p;
    }
    return malloc(n);
}

SIM_API void *__wrap_calloc(size_t n, size_t sz)
{
    int d = wrap_device();
    if (d >= 0 && (sz == 0 || n <= SIZE_MAX / sz)) {
        size_t bytes = n * sz;
        void *p = sim_arena_alloc(d, bytes ? bytes : 1);
        if (p) {
            memset(p, 0, bytes);
            return p;
        }
    }
    return calloc(n, sz);
}

SIM_API void __wrap_free(void *p)
{
    if (!p) return;
    if (sim_arena_free(p) == 0) return;
    free(p);
}

SIM_API void *__wrap_realloc(void *p, size_t n)
{
    if (!p) return __wrap_malloc(n);
    if (arena_of(p) < 0) return realloc(p, n);
    void *q = __wrap_malloc(n);
    if (!q) return NULL;
    size_t old = arena_user_bytes(p);
    memcpy(q, p, old < n ? old : n);
    __wrap_free(p);
    return q;
}
