/*
 * Object tracking for the CANN simulator: every live object (buffers, tensors, arrays, executors,
 * streams, contexts, events, communicators) is registered here, so handles can be validated and
 * leaks counted. A chained hash table keyed by (kind, address) plus a sorted array of device buffers
 * for range queries (sim_buffer_covers). One mutex protects both.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "simcore.h"
#include "aclsim.h"

typedef struct TrackNode {
    const void *obj;
    size_t bytes;
    int kind;
    int tag;
    struct TrackNode *next;
} TrackNode;

typedef struct {
    uintptr_t start;
    size_t bytes;
} BufRange;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static TrackNode **g_buckets;
static size_t g_nbuckets;
static size_t g_nodes;
static int64_t g_counts[SIM_OBJ_KIND_COUNT];
static BufRange *g_bufs;
static size_t g_nbufs, g_capbufs;

static size_t hash_key(const void *obj, int kind, size_t nb)
{
    uint64_t x = (uint64_t)(uintptr_t)obj ^ ((uint64_t)kind * 0x9E3779B97F4A7C15ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)(x & (nb - 1));
}

static int grow_locked(void)
{
    size_t nb = g_nbuckets ? g_nbuckets * 2 : 1024;
    TrackNode **nbk = calloc(nb, sizeof(*nbk));
    if (!nbk) return -1;
    for (size_t i = 0; i < g_nbuckets; i++) {
        TrackNode *n = g_buckets[i];
        while (n) {
            TrackNode *next = n->next;
            size_t h = hash_key(n->obj, n->kind, nb);
            n->next = nbk[h];
            nbk[h] = n;
            n = next;
        }
    }
    free(g_buckets);
    g_buckets = nbk;
    g_nbuckets = nb;
    return 0;
}

static TrackNode **find_locked(int kind, const void *obj)
{
    if (!g_nbuckets) return NULL;
    TrackNode **pp = &g_buckets[hash_key(obj, kind, g_nbuckets)];
    while (*pp) {
        if ((*pp)->obj == obj && (*pp)->kind == kind) return pp;
        pp = &(*pp)->next;
    }
    return NULL;
}

/* Index of the first range with start > p. */
static size_t buf_upper_locked(uintptr_t p)
{
    size_t lo = 0, hi = g_nbufs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g_bufs[mid].start <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void buf_insert_locked(const void *obj, size_t bytes)
{
    if (g_nbufs == g_capbufs) {
        size_t nc = g_capbufs ? g_capbufs * 2 : 256;
        BufRange *nb = realloc(g_bufs, nc * sizeof(*nb));
        if (!nb) return;
        g_bufs = nb;
        g_capbufs = nc;
    }
    uintptr_t p = (uintptr_t)obj;
    size_t i = buf_upper_locked(p);
    memmove(&g_bufs[i + 1], &g_bufs[i], (g_nbufs - i) * sizeof(*g_bufs));
    g_bufs[i].start = p;
    g_bufs[i].bytes = bytes;
    g_nbufs++;
}

static void buf_remove_locked(const void *obj)
{
    uintptr_t p = (uintptr_t)obj;
    size_t i = buf_upper_locked(p);
    if (i == 0 || g_bufs[i - 1].start != p) return;
    i--;
    memmove(&g_bufs[i], &g_bufs[i + 1], (g_nbufs - i - 1) * sizeof(*g_bufs));
    g_nbufs--;
}

SIM_API void sim_track_add_tagged(SimObjKind kind, const void *obj, size_t bytes, int tag)
{
    if (!obj || (int)kind < 0 || kind >= SIM_OBJ_KIND_COUNT) return;
    pthread_mutex_lock(&g_mu);
    TrackNode **pp = find_locked(kind, obj);
    if (pp) { /* re-registration of a live object: update it */
        if (kind == SIM_OBJ_BUFFER) buf_remove_locked(obj);
        (*pp)->bytes = bytes;
        (*pp)->tag = tag;
        if (kind == SIM_OBJ_BUFFER) buf_insert_locked(obj, bytes);
        pthread_mutex_unlock(&g_mu);
        return;
    }
    if (g_nodes + 1 > g_nbuckets * 2 && grow_locked() != 0 && !g_nbuckets) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    TrackNode *n = malloc(sizeof(*n));
    if (n) {
        n->obj = obj;
        n->bytes = bytes;
        n->kind = kind;
        n->tag = tag;
        size_t h = hash_key(obj, kind, g_nbuckets);
        n->next = g_buckets[h];
        g_buckets[h] = n;
        g_nodes++;
        g_counts[kind]++;
        if (kind == SIM_OBJ_BUFFER) buf_insert_locked(obj, bytes);
    }
    pthread_mutex_unlock(&g_mu);
}

SIM_API void sim_track_add(SimObjKind kind, const void *obj, size_t bytes)
{
    sim_track_add_tagged(kind, obj, bytes, -1);
}

SIM_API int sim_track_remove(SimObjKind kind, const void *obj)
{
    if (!obj || (int)kind < 0 || kind >= SIM_OBJ_KIND_COUNT) return -1;
    pthread_mutex_lock(&g_mu);
    TrackNode **pp = find_locked(kind, obj);
    if (!pp) {
        pthread_mutex_unlock(&g_mu);
        return -1;
    }
    TrackNode *n = *pp;
    *pp = n->next;
    g_nodes--;
    g_counts[kind]--;
    if (kind == SIM_OBJ_BUFFER) buf_remove_locked(obj);
    pthread_mutex_unlock(&g_mu);
    free(n);
    return 0;
}

SIM_API int sim_track_info(SimObjKind kind, const void *obj, size_t *bytes, int *tag)
{
    if (!obj || (int)kind < 0 || kind >= SIM_OBJ_KIND_COUNT) return -1;
    pthread_mutex_lock(&g_mu);
    TrackNode **pp = find_locked(kind, obj);
    if (pp) {
        if (bytes) *bytes = (*pp)->bytes;
        if (tag) *tag = (*pp)->tag;
    }
    pthread_mutex_unlock(&g_mu);
    return pp ? 0 : -1;
}

SIM_API int sim_track_has(SimObjKind kind, const void *obj)
{
    return sim_track_info(kind, obj, NULL, NULL) == 0;
}

SIM_API int64_t sim_track_count(SimObjKind kind)
{
    if ((int)kind < 0 || kind >= SIM_OBJ_KIND_COUNT) return 0;
    pthread_mutex_lock(&g_mu);
    int64_t c = g_counts[kind];
    pthread_mutex_unlock(&g_mu);
    return c;
}

SIM_API uint64_t sim_track_bytes(SimObjKind kind, int tag)
{
    uint64_t total = 0;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_nbuckets; i++)
        for (TrackNode *n = g_buckets[i]; n; n = n->next)
            if (n->kind == (int)kind && (tag < 0 || n->tag == tag)) total += n->bytes;
    pthread_mutex_unlock(&g_mu);
    return total;
}

SIM_API int sim_buffer_covers(const void *ptr, size_t bytes)
{
    if (!ptr) return 0;
    uintptr_t p = (uintptr_t)ptr;
    if (p + bytes < p) return 0;
    int ok = 0;
    pthread_mutex_lock(&g_mu);
    size_t i = buf_upper_locked(p);
    if (i > 0) {
        const BufRange *r = &g_bufs[i - 1];
        ok = p >= r->start && p + bytes <= r->start + r->bytes;
    }
    pthread_mutex_unlock(&g_mu);
    return ok;
}

/* ---- test-only API ---------------------------------------------------------------------------- */

ACLSIM_API int32_t aclsimLiveObjects(int64_t *counts, int32_t n)
{
    if (counts && n > 0) {
        pthread_mutex_lock(&g_mu);
        for (int32_t i = 0; i < n && i < SIM_OBJ_KIND_COUNT; i++) counts[i] = g_counts[i];
        pthread_mutex_unlock(&g_mu);
    }
    return SIM_OBJ_KIND_COUNT;
}

ACLSIM_API const char *aclsimObjectKindName(int32_t kind)
{
    static const char *const names[SIM_OBJ_KIND_COUNT] = {
        "buffer", "host_buffer", "tensor", "array", "executor", "stream", "context", "event", "comm",
    };
    if (kind < 0 || kind >= SIM_OBJ_KIND_COUNT) return NULL;
    return names[kind];
}

ACLSIM_API int32_t aclsimIsSimulator(void)
{
    return 1;
}

_Static_assert((int)ACLSIM_OBJ_KIND_COUNT == (int)SIM_OBJ_KIND_COUNT, "aclsim.h kinds must mirror SimObjKind");
_Static_assert((int)ACLSIM_OBJ_COMM == (int)SIM_OBJ_COMM && (int)ACLSIM_OBJ_EXECUTOR == (int)SIM_OBJ_EXECUTOR, "kind numbering");
