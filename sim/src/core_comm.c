/*
 * Communicators of the CANN simulator. A group (HCCL communication domain) has a name and `size`
 * ranks, each rank a SimComm bound to one device. Ops find their comm by (group name, device), as the
 * real MC2 ops find theirs by name. sim_comm_exchange is the rendezvous every collective kernel uses:
 * an all-gather of one pointer per participant, matched by a per-rank call index.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simcore.h"

#define SIM_COMM_MAGIC 0x434F4D4Du
#define RING 4          /* payload slots kept per rank (a peer can be at most one call ahead) */
#define POLL_US 10000   /* waits re-check the stream's cancel flag this often */

typedef struct SimGroup SimGroup;

struct SimComm {
    uint32_t magic;
    SimGroup *g;
    int rank;
    int device;
    int destroyed;
    int async_error;
    int64_t calls;      /* exchanges made by this rank (guarded by g->mu) */
};

struct SimGroup {
    char name[128];
    int size;
    int live;           /* members not destroyed */
    int in_flight;      /* exchanges in progress */
    int unlinked;       /* removed from the registry (no live member) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t *posted;    /* posted[r] = index of r's latest exchange + 1 */
    void **slots;       /* slots[r * RING + idx % RING] = payload */
    SimComm *comms;
    SimGroup *next;
};

static pthread_mutex_t g_groups_mu = PTHREAD_MUTEX_INITIALIZER;
static SimGroup *g_groups;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void group_free(SimGroup *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    for (int i = 0; i < g->size; i++) g->comms[i].magic = 0;
    free(g->posted);
    free(g->slots);
    free(g->comms);
    free(g);
}

SIM_API int sim_comm_create_group(const char *name, int nranks, const int *devices, SimComm **comms_out)
{
    if (!name || !*name || strlen(name) >= sizeof(((SimGroup *)0)->name)) {
        sim_set_error("communicator group name must be 1..127 characters");
        return -1;
    }
    if (nranks < 1 || !devices || !comms_out) {
        sim_set_error("communicator group \"%s\": invalid rank count %d or NULL arrays", name, nranks);
        return -1;
    }
    for (int i = 0; i < nranks; i++) {
        if (devices[i] < 0 || devices[i] >= sim_device_count()) {
            sim_set_error("communicator group \"%s\": rank %d is on device %d, valid devices are 0..%d", name, i,
                          devices[i], sim_device_count() - 1);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (devices[j] == devices[i]) {
                sim_set_error("communicator group \"%s\": ranks %d and %d are both on device %d (one rank per device)",
                              name, j, i, devices[i]);
                return -1;
            }
        }
    }
    SimGroup *g = calloc(1, sizeof(*g));
    if (!g) return -1;
    g->posted = calloc((size_t)nranks, sizeof(*g->posted));
    g->slots = calloc((size_t)nranks * RING, sizeof(*g->slots));
    g->comms = calloc((size_t)nranks, sizeof(*g->comms));
    if (!g->posted || !g->slots || !g->comms) {
        free(g->posted);
        free(g->slots);
        free(g->comms);
        free(g);
        sim_set_error("communicator group \"%s\": out of memory", name);
        return -1;
    }
    snprintf(g->name, sizeof g->name, "%s", name);
    g->size = nranks;
    g->live = nranks;
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < nranks; i++) {
        SimComm *c = &g->comms[i];
        c->magic = SIM_COMM_MAGIC;
        c->g = g;
        c->rank = i;
        c->device = devices[i];
    }

    pthread_mutex_lock(&g_groups_mu);
    for (SimGroup *o = g_groups; o; o = o->next) {
        if (strcmp(o->name, name) == 0) {
            pthread_mutex_unlock(&g_groups_mu);
            sim_set_error("a communicator group named \"%s\" already exists", name);
            group_free(g);
            return -1;
        }
    }
    g->next = g_groups;
    g_groups = g;
    pthread_mutex_unlock(&g_groups_mu);

    for (int i = 0; i < nranks; i++) {
        sim_track_add_tagged(SIM_OBJ_COMM, &g->comms[i], sizeof(SimComm), devices[i]);
        comms_out[i] = &g->comms[i];
    }
    return 0;
}

SIM_API int sim_comm_valid(const SimComm *c)
{
    return c && sim_track_has(SIM_OBJ_COMM, c) && c->magic == SIM_COMM_MAGIC && !c->destroyed;
}

SIM_API int sim_comm_destroy(SimComm *c)
{
    if (sim_track_remove(SIM_OBJ_COMM, c) != 0) return -1;
    SimGroup *g = c->g;
    pthread_mutex_lock(&g_groups_mu);
    pthread_mutex_lock(&g->mu);
    c->destroyed = 1;
    int free_it = 0;
    if (--g->live == 0) {
        for (SimGroup **pp = &g_groups; *pp; pp = &(*pp)->next) {
            if (*pp == g) {
                *pp = g->next;
                break;
            }
        }
        g->unlinked = 1;
        free_it = g->in_flight == 0;
    } else {
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_unlock(&g_groups_mu);
    if (free_it) group_free(g);
    return 0;
}

SIM_API SimComm *sim_comm_lookup(const char *name, int device)
{
    if (!name) return NULL;
    SimComm *found = NULL;
    pthread_mutex_lock(&g_groups_mu);
    for (SimGroup *g = g_groups; g && !found; g = g->next) {
        if (strcmp(g->name, name) != 0) continue;
        pthread_mutex_lock(&g->mu);
        for (int i = 0; i < g->size; i++) {
            if (g->comms[i].device == device && !g->comms[i].destroyed) {
                found = &g->comms[i];
                break;
            }
        }
        pthread_mutex_unlock(&g->mu);
    }
    pthread_mutex_unlock(&g_groups_mu);
    return found;
}

SIM_API int sim_comm_rank(const SimComm *c) { return c ? c->rank : -1; }
SIM_API int sim_comm_size(const SimComm *c) { return c ? c->g->size : 0; }
SIM_API const char *sim_comm_name(const SimComm *c) { return c ? c->g->name : NULL; }
SIM_API int sim_comm_device(const SimComm *c) { return c ? c->device : -1; }
SIM_API void sim_comm_set_async_error(SimComm *c, int err)
{
    if (c) __atomic_store_n(&c->async_error, err, __ATOMIC_RELEASE);
}
SIM_API int sim_comm_async_error(const SimComm *c)
{
    return c ? __atomic_load_n(&c->async_error, __ATOMIC_ACQUIRE) : 0;
}

/* Writes the missing participants of call `idx` to out (up to cap); returns how many are missing. */
static int missing_locked(SimGroup *g, const int *participants, int n, int64_t idx, int *out, int cap)
{
    int miss = 0;
    for (int i = 0; i < n; i++) {
        int r = participants ? participants[i] : i;
        if (g->posted[r] <= idx) {
            if (out && miss < cap) out[miss] = r;
            miss++;
        }
    }
    return miss;
}

static void format_ranks(char *buf, size_t cap, const int *ranks, int n, int total)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && pos + 16 < cap; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%d", i ? "," : "", ranks[i]);
    if (total > n && pos + 16 < cap) snprintf(buf + pos, cap - pos, ",... (%d in all)", total);
}

SIM_API int sim_comm_exchange(SimComm *c, const int *participants, int n, void *payload, void **peers_out,
                              int64_t timeout_us, SimStream *s)
{
    if (!c || c->magic != SIM_COMM_MAGIC || c->destroyed) {
        sim_set_error("collective: the communicator is not valid (destroyed or never created)");
        return SIM_ERR_INVALID;
    }
    SimGroup *g = c->g;
    if (!participants) n = g->size;
    int self = 0;
    if (n < 1 || n > g->size) {
        sim_set_error("collective on group \"%s\": %d participants for a group of %d", g->name, n, g->size);
        return SIM_ERR_INVALID;
    }
    for (int i = 0; participants && i < n; i++) {
        if (participants[i] < 0 || participants[i] >= g->size || (i && participants[i] <= participants[i - 1])) {
            sim_set_error("collective on group \"%s\": participant list must hold ascending ranks in 0..%d "
                          "(entry %d is %d)", g->name, g->size - 1, i, participants[i]);
            return SIM_ERR_INVALID;
        }
        if (participants[i] == c->rank) self = 1;
    }
    if (!participants) self = 1;
    if (!self) {
        sim_set_error("collective on group \"%s\": the calling rank %d is not among the participants", g->name,
                      c->rank);
        return SIM_ERR_INVALID;
    }
    if (peers_out)
        for (int i = 0; i < g->size; i++) peers_out[i] = NULL;

    pthread_mutex_lock(&g->mu);
    g->in_flight++;
    int64_t idx = c->calls++;
    g->slots[(size_t)c->rank * RING + (size_t)(idx % RING)] = payload;
    g->posted[c->rank] = idx + 1;
    pthread_cond_broadcast(&g->cv);

    int64_t start = now_us();
    int rc;
    for (;;) {
        if (missing_locked(g, participants, n, idx, NULL, 0) == 0) {
            if (peers_out) {
                for (int i = 0; i < n; i++) {
                    int r = participants ? participants[i] : i;
                    peers_out[r] = g->slots[(size_t)r * RING + (size_t)(idx % RING)];
                }
            }
            rc = 0;
            break;
        }
        if (s && sim_stream_cancelled(s)) {
            rc = SIM_ERR_CANCELLED;
            break;
        }
        int64_t now = now_us();
        if (timeout_us >= 0 && now - start >= timeout_us) {
            rc = SIM_ERR_TIMEOUT;
            break;
        }
        int64_t wake = now + POLL_US;
        if (timeout_us >= 0 && start + timeout_us < wake) wake = start + timeout_us;
        struct timespec ts = {(time_t)(wake / 1000000), (long)(wake % 1000000) * 1000};
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    if (rc != 0) {
        int miss[64];
        int total = missing_locked(g, participants, n, idx, miss, 64);
        char list[512];
        format_ranks(list, sizeof list, miss, total < 64 ? total : 64, total);
        if (rc == SIM_ERR_TIMEOUT)
            sim_set_error("collective on group \"%s\" (rank %d, device %d, call #%lld): rank(s) %s did not arrive "
                          "within %lld us", g->name, c->rank, c->device, (long long)idx, list,
                          (long long)timeout_us);
        else
            sim_set_error("collective on group \"%s\" (rank %d, device %d, call #%lld) was cancelled (stream "
                          "destroyed or device reset) while waiting for rank(s) %s", g->name, c->rank, c->device,
                          (long long)idx, list);
    }
    int free_it = --g->in_flight == 0 && g->unlinked;
    pthread_mutex_unlock(&g->mu);
    if (free_it) group_free(g);
    return rc;
}

SIM_API int sim_comm_missing(SimComm *c, const int *participants, int n, int *missing_out, int cap)
{
    if (!c || c->magic != SIM_COMM_MAGIC) return 0;
    SimGroup *g = c->g;
    if (!participants) n = g->size;
    for (int i = 0; participants && i < n; i++)
        if (participants[i] < 0 || participants[i] >= g->size) return 0;
    pthread_mutex_lock(&g->mu);
    int64_t idx = c->calls > 0 ? c->calls - 1 : 0;
    int miss = missing_locked(g, participants, n, idx, missing_out, cap);
    pthread_mutex_unlock(&g->mu);
    return miss;
}
