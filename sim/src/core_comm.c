/*
 * Communicators of the CANN simulator. A group (HCCL communication domain) has a name and `size`
 * ranks, each rank a SimComm bound to one device. Ops find their comm by (group name, device), as the
 * real MC2 ops find theirs by name. sim_comm_exchange is the rendezvous every collective kernel uses:
 * an all-gather of one pointer per participant, matched by a call index that each rank keeps per
 * participant set (so elastic calls on a subset never shift the full group's sequence).
 *
 * A group's state is one block (GroupState plus arrays at offsets, no pointers inside): calloc'd for the
 * groups of one process (HcclCommInitAll, in-process root info), or a process-shared memory segment with a
 * process-shared robust mutex for the groups of a multi-process session (HcclCommInitRootInfo when
 * ACLNN_SIM_SHM_SESSION is set; see core_shm.c). Each process keeps a local SimGroup wrapper with the SimComm
 * objects of its own ranks. Waiters sleep on a futex word that every state change bumps, not on a
 * process-shared condition variable: glibc's condvar keeps per-waiter bookkeeping that a killed waiter leaves
 * behind, after which every survivor's broadcast blocks for ever.
 *
 * Failure handling: an exchange ends early, with a message, when its stream is cancelled, when the
 * group is aborted (aclsimAbortComm, e.g. by aclnn_py.World when a rank's Python function raised),
 * when a participant's process has exited (checked for every participant, arrived or not), or when two
 * ranks are provably deadlocked on different
 * participant sets (each blocked in a set the other has not joined: they disagree on elastic_info). A
 * failed call dies for every participant waiting in it and is withdrawn, so the call sequences stay
 * aligned and nobody pairs with an abandoned call. A rank whose failed call follows one in which it
 * published a payload waits, before returning, until its peers have stopped reading that payload.
 *
 * Recovery (aclsimRecoverComm) restarts the call sequences and clears an abort. In one process the caller
 * speaks for every rank; across processes each process recovers its own ranks, and the group restarts when
 * the last live rank has recovered, so an abort stays visible to every rank until all have seen their run
 * fail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "simcore.h"
#include "aclsim.h"

#define SIM_COMM_MAGIC 0x434F4D4Du
#define GROUP_MAGIC 0x47525053u
#define RING 4          /* payload slots kept per rank (a peer can be at most one call ahead) */
#define POLL_US 10000   /* waits re-check cancel / abort / deadlock / liveness state this often */
#define MSG_CAP 1024
#define MISS_CAP 64
#define MAX_SEQS 16     /* distinct participant sets tracked per group (quiescent ones are recycled) */

typedef struct SimGroup SimGroup;

struct SimComm {
    uint32_t magic;
    SimGroup *g;
    int rank;
    int device;
    int destroyed;
    int async_error;
    uint64_t buffer_mb;  /* HCCL buffer of this rank's communicator (sim_comm_set_buffer_mb), 0 unknown */
    /* this rank's most recent exchange, for sim_comm_missing after a failure (guarded by the group lock);
     * valid while the group's sequences have not restarted since (last_restart) */
    int last_seq;
    uint64_t last_restart;
    int last_nmiss;
    int last_miss[MISS_CAP];
};

/* One participant set's call sequence. Followed in the block by members int32[size], calls int64[size]
 * (exchanges each rank made with this set), posted int64[size] (index of the rank's latest call + 1),
 * entered int64[size] (highest call index the rank ever entered + 1; withdrawal does not lower it),
 * exposed int64[size] (idx + 1 when the rank's call idx completed with a payload that peers may still be
 * reading, else 0) and slots void*[size*RING] (payloads). A call that fails dies for every rank waiting in
 * it: gen is bumped and the first failure kept, so the others fail the same way and report the same
 * missing ranks. */
typedef struct {
    int32_t n;          /* participants; 0: slot unused */
    int32_t busy;       /* exchanges in progress on this set */
    uint64_t lru;
    uint64_t gen;
    int32_t dead_rc;
    int32_t dead_rank;  /* the rank whose wait failed first */
    int32_t dead_nmiss;
    int32_t dead_miss[MISS_CAP];
    char dead_why[MSG_CAP];
} SeqHdr;

typedef struct {
    uint32_t magic;
    uint32_t ready;
    pthread_mutex_t mu;
    uint32_t wake;      /* futex word: bumped (and woken) by every change a waiter may be waiting for */
    char name[128];
    int32_t size;
    int32_t live;       /* comms not destroyed (all processes) */
    int32_t joined;     /* ranks joined (multi-process set-up) */
    int32_t aborted;    /* every current and future exchange fails until the group restarts */
    int32_t shared;
    uint32_t abort_epoch; /* bumped by every abort; recovered[r] == abort_epoch: rank r has recovered from it */
    uint64_t restarts;  /* bumped whenever the call sequences restart */
    uint64_t tick;
    uint64_t fail_gen;  /* bumped to fail every exchange blocked right now (deadlock detected) */
    uint64_t bytes;
    /* per rank: int32 waiters, wait_seq, devices, pids, inflight, recovered, left; int64 wait_idx */
    uint64_t off_waiters, off_wait_seq, off_wait_idx, off_devices, off_pids, off_inflight, off_recovered, off_left;
    uint64_t off_seqs;
    uint64_t seq_stride, seq_m, seq_c, seq_p, seq_e, seq_x, seq_s;
    char abort_msg[MSG_CAP];
    char fail_msg[MSG_CAP];
} GroupState;

struct SimGroup {       /* process-local */
    GroupState *st;
    size_t map_bytes;   /* > 0: st is a mapping of shm segment shm_name */
    char shm_name[128];
    int size;
    int local_live;     /* local comms not destroyed */
    int local_in_flight;
    int unlinked;
    int *pidfds;        /* shared groups: a pidfd per other rank's process (-1: none; kill() is asked then) */
    SimComm *comms;     /* [size]; live (magic set) only for this process's ranks */
    SimGroup *next;
};

#define AT(st, off, T) ((T *)((char *)(st) + (off)))
#define WAITERS(st) AT(st, (st)->off_waiters, int32_t)
#define WAIT_SEQ(st) AT(st, (st)->off_wait_seq, int32_t)
#define WAIT_IDX(st) AT(st, (st)->off_wait_idx, int64_t)
#define PIDS(st) AT(st, (st)->off_pids, int32_t)
#define DEVICES(st) AT(st, (st)->off_devices, int32_t)
#define INFLIGHT(st) AT(st, (st)->off_inflight, int32_t)
#define RECOVERED(st) AT(st, (st)->off_recovered, uint32_t)
#define LEFT(st) AT(st, (st)->off_left, int32_t)
#define SEQ(st, i) AT(st, (st)->off_seqs + (uint64_t)(i) * (st)->seq_stride, SeqHdr)
#define MEMBERS(st, q) AT(q, (st)->seq_m, int32_t)
#define CALLS(st, q) AT(q, (st)->seq_c, int64_t)
#define POSTED(st, q) AT(q, (st)->seq_p, int64_t)
#define ENTERED(st, q) AT(q, (st)->seq_e, int64_t)
#define EXPOSED(st, q) AT(q, (st)->seq_x, int64_t)
#define SLOTS(st, q) AT(q, (st)->seq_s, void *)

static pthread_mutex_t g_groups_mu = PTHREAD_MUTEX_INITIALIZER;
static SimGroup *g_groups;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t al(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* Lays out the block of a group of `size` ranks in st (offsets, stride, total bytes). */
static void layout(GroupState *st, int size)
{
    uint64_t n = (uint64_t)size, i32 = al(4 * n, 8);
    st->size = size;
    st->seq_m = al(sizeof(SeqHdr), 8);
    st->seq_c = st->seq_m + i32;
    st->seq_p = st->seq_c + 8 * n;
    st->seq_e = st->seq_p + 8 * n;
    st->seq_x = st->seq_e + 8 * n;
    st->seq_s = st->seq_x + 8 * n;
    st->seq_stride = al(st->seq_s + sizeof(void *) * n * RING, 64);
    st->off_waiters = al(sizeof(GroupState), 64);
    st->off_wait_seq = st->off_waiters + i32;
    st->off_wait_idx = st->off_wait_seq + i32;
    st->off_devices = st->off_wait_idx + 8 * n;
    st->off_pids = st->off_devices + i32;
    st->off_inflight = st->off_pids + i32;
    st->off_recovered = st->off_inflight + i32;
    st->off_left = st->off_recovered + i32;
    st->off_seqs = al(st->off_left + i32, 64);
    st->bytes = st->off_seqs + st->seq_stride * MAX_SEQS;
}

static size_t block_bytes(int size)
{
    GroupState tmp;
    layout(&tmp, size);
    return (size_t)tmp.bytes;
}

static void init_mutex(GroupState *st, int shared)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    if (shared) {
        pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    }
    pthread_mutex_init(&st->mu, &ma);
    pthread_mutexattr_destroy(&ma);
}

static long futex_call(uint32_t *word, int op, uint32_t val, const struct timespec *rel)
{
    return syscall(SYS_futex, word, op, val, rel, NULL, 0);
}

/* Wakes every waiter of the group (call with the lock held, after changing what they wait for). */
static void gwake(GroupState *st)
{
    __atomic_add_fetch(&st->wake, 1, __ATOMIC_RELEASE);
    futex_call(&st->wake, st->shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

static void glock(GroupState *st);

/* Sleeps up to `us` microseconds or until gwake; called and returns with the lock held. */
static void gwait(GroupState *st, int64_t us)
{
    uint32_t seen = __atomic_load_n(&st->wake, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&st->mu);
    if (us < 1) us = 1;
    struct timespec rel = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    futex_call(&st->wake, st->shared ? FUTEX_WAIT : FUTEX_WAIT_PRIVATE, seen, &rel);
    glock(st);
}

/* Aborts the group (the first reason is kept): every waiting and later exchange fails with `reason`. */
static void abort_locked(GroupState *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void abort_locked(GroupState *st, const char *fmt, ...)
{
    if (!st->aborted) {
        st->aborted = 1;
        st->abort_epoch++;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->abort_msg, sizeof st->abort_msg, fmt, ap);
        va_end(ap);
    }
    gwake(st);
}

static int pid_gone(int32_t pid)
{
    return pid > 0 && pid != (int32_t)getpid() && kill(pid, 0) != 0 && errno == ESRCH;
}

/* Shared groups: rank r's process has exited (r's pidfd is readable, or without one: kill() says so). */
static int rank_dead(SimGroup *g, int r)
{
    GroupState *st = g->st;
    int32_t pid = PIDS(st)[r];
    if (!st->shared || pid <= 0 || pid == (int32_t)getpid()) return 0;
    if (g->pidfds && g->pidfds[r] >= 0) {
        struct pollfd p = {.fd = g->pidfds[r], .events = POLLIN};
        return poll(&p, 1, 0) > 0;
    }
    return pid_gone(pid);
}

/* The robust lock's owner died (holding it): the state it was changing may be half-written, so the group is
 * aborted, naming the ranks whose processes are gone. */
static void owner_died(GroupState *st)
{
    pthread_mutex_consistent(&st->mu);
    char who[256];
    size_t pos = 0;
    who[0] = '\0';
    for (int r = 0; r < st->size && pos + 40 < sizeof who; r++)
        if (pid_gone(PIDS(st)[r]))
            pos += (size_t)snprintf(who + pos, sizeof who - pos, "%srank %d (pid %d)", pos ? ", " : "", r,
                                    (int)PIDS(st)[r]);
    abort_locked(st, "the process of %s died while holding the lock of group \"%s\"", pos ? who : "a rank", st->name);
}

static void glock(GroupState *st)
{
    if (pthread_mutex_lock(&st->mu) == EOWNERDEAD) owner_died(st);
}

static void group_free(SimGroup *g)
{
    for (int i = 0; i < g->size; i++) g->comms[i].magic = 0;
    for (int i = 0; g->pidfds && i < g->size; i++)
        if (g->pidfds[i] >= 0) close(g->pidfds[i]);
    if (g->map_bytes) {
        munmap(g->st, g->map_bytes);
    } else {
        pthread_mutex_destroy(&g->st->mu);
        free(g->st);
    }
    free(g->pidfds);
    free(g->comms);
    free(g);
}

static SimGroup *wrapper_new(GroupState *st, int size)
{
    SimGroup *g = calloc(1, sizeof(*g));
    SimComm *comms = calloc((size_t)size, sizeof(SimComm));
    if (!g || !comms) {
        free(g);
        free(comms);
        return NULL;
    }
    g->st = st;
    g->size = size;
    g->comms = comms;
    return g;
}

static void comm_init(SimGroup *g, int rank, int device)
{
    SimComm *c = &g->comms[rank];
    c->magic = SIM_COMM_MAGIC;
    c->g = g;
    c->rank = rank;
    c->device = device;
    c->last_seq = -1;
    g->local_live++;
}

static int check_name(const char *name)
{
    if (!name || !*name || strlen(name) >= sizeof(((GroupState *)0)->name)) {
        sim_set_error("communicator group name must be 1..127 characters");
        return -1;
    }
    return 0;
}

static int registry_add(SimGroup *g, int unique)
{
    pthread_mutex_lock(&g_groups_mu);
    if (unique) {
        for (SimGroup *o = g_groups; o; o = o->next) {
            if (strcmp(o->st->name, g->st->name) == 0) {
                pthread_mutex_unlock(&g_groups_mu);
                sim_set_error("a communicator group named \"%s\" already exists", g->st->name);
                return -1;
            }
        }
    }
    g->next = g_groups;
    g_groups = g;
    pthread_mutex_unlock(&g_groups_mu);
    return 0;
}

SIM_API int sim_comm_create_group(const char *name, int nranks, const int *devices, SimComm **comms_out)
{
    if (check_name(name)) return -1;
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
    size_t bytes = block_bytes(nranks);
    GroupState *st = calloc(1, bytes);
    SimGroup *g = st ? wrapper_new(st, nranks) : NULL;
    if (!g) {
        free(st);
        sim_set_error("communicator group \"%s\": out of memory", name);
        return -1;
    }
    layout(st, nranks);
    st->magic = GROUP_MAGIC;
    snprintf(st->name, sizeof st->name, "%s", name);
    st->live = nranks;
    st->joined = nranks;
    for (int i = 0; i < nranks; i++) {
        DEVICES(st)[i] = devices[i];
        PIDS(st)[i] = (int32_t)getpid();
        WAIT_SEQ(st)[i] = -1;
    }
    init_mutex(st, 0);
    st->ready = 1;
    for (int i = 0; i < nranks; i++) comm_init(g, i, devices[i]);
    if (registry_add(g, 1) != 0) {
        group_free(g);
        return -1;
    }
    for (int i = 0; i < nranks; i++) {
        sim_track_add_tagged(SIM_OBJ_COMM, &g->comms[i], sizeof(SimComm), devices[i]);
        comms_out[i] = &g->comms[i];
    }
    return 0;
}

/* ---- multi-process groups ------------------------------------------------------------------------ */

/* A pidfd for every other rank's process (all joined, so all were alive a moment ago): readable once that
 * process exits, and immune to the pid being reused. Without pidfds (old kernels) rank_dead asks kill(). */
static void open_pidfds(SimGroup *g)
{
    g->pidfds = malloc(sizeof(int) * (size_t)g->size);
    for (int r = 0; g->pidfds && r < g->size; r++) {
        int32_t pid = PIDS(g->st)[r];
        g->pidfds[r] = pid > 0 && pid != (int32_t)getpid() ? (int)syscall(SYS_pidfd_open, (pid_t)pid, 0) : -1;
    }
}

SIM_API int sim_comm_join_shared(const char *shm_name, const char *group_name, int nranks, int rank, int device,
                                 int64_t timeout_us, const char *timeout_what, SimComm **comm_out)
{
    if (check_name(group_name)) return -1;
    if (!shm_name || nranks < 1 || rank < 0 || rank >= nranks || !comm_out) {
        sim_set_error("HcclCommInitRootInfo: invalid shared group arguments (nRanks=%d rank=%d)", nranks, rank);
        return -1;
    }
    size_t bytes = block_bytes(nranks);
    int creator = 1;
    int fd = shm_open(shm_name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 && errno == EEXIST) {
        creator = 0;
        fd = shm_open(shm_name, O_RDWR, 0600);
    }
    if (fd < 0) {
        sim_set_error("HcclCommInitRootInfo: shm_open(%s): %s", shm_name, strerror(errno));
        return -1;
    }
    if (creator && ftruncate(fd, (off_t)bytes) != 0) {
        sim_set_error("HcclCommInitRootInfo: ftruncate(%s): %s", shm_name, strerror(errno));
        close(fd);
        shm_unlink(shm_name);
        return -1;
    }
    int64_t start = now_us();
    if (!creator) { /* wait until the creator has sized it */
        struct stat sb;
        while (fstat(fd, &sb) == 0 && (size_t)sb.st_size < bytes && now_us() - start < timeout_us) usleep(1000);
        if ((size_t)sb.st_size != bytes) {
            close(fd);
            sim_set_error("HcclCommInitRootInfo: the group of this root info has %lld bytes of state, a group of "
                          "nRanks=%d needs %zu: do all ranks pass the same nRanks?", (long long)sb.st_size, nranks,
                          bytes);
            return -1;
        }
    }
    GroupState *st = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (st == MAP_FAILED) {
        sim_set_error("HcclCommInitRootInfo: mmap(%s): %s", shm_name, strerror(errno));
        return -1;
    }
    if (creator) {
        layout(st, nranks);
        snprintf(st->name, sizeof st->name, "%s", group_name);
        st->shared = 1;
        for (int i = 0; i < nranks; i++) {
            DEVICES(st)[i] = -1;
            WAIT_SEQ(st)[i] = -1;
        }
        init_mutex(st, 1);
        st->magic = GROUP_MAGIC;
        __atomic_store_n(&st->ready, 1, __ATOMIC_RELEASE);
    } else {
        while (!__atomic_load_n(&st->ready, __ATOMIC_ACQUIRE) && now_us() - start < timeout_us) usleep(1000);
        if (!st->ready || st->size != nranks) {
            munmap(st, bytes);
            sim_set_error("HcclCommInitRootInfo: the shared group state never became ready, or nRanks differs");
            return -1;
        }
    }
    glock(st);
    if (DEVICES(st)[rank] >= 0) {
        pthread_mutex_unlock(&st->mu);
        munmap(st, bytes);
        sim_set_error("HcclCommInitRootInfo: rank %d has already joined this root info", rank);
        return -1;
    }
    DEVICES(st)[rank] = device;
    PIDS(st)[rank] = (int32_t)getpid();
    st->joined++;
    st->live++;
    gwake(st);
    while (st->joined < st->size) {
        int dead = -1;
        for (int i = 0; i < st->size && dead < 0; i++)
            if (DEVICES(st)[i] >= 0 && pid_gone(PIDS(st)[i])) dead = i;
        int64_t waited = now_us() - start;
        if (dead >= 0 || waited >= timeout_us) {
            char missing[256];
            size_t pos = 0;
            missing[0] = '\0';
            for (int i = 0; i < st->size && pos + 12 < sizeof missing; i++)
                if (DEVICES(st)[i] < 0) pos += (size_t)snprintf(missing + pos, sizeof missing - pos, "%s%d", pos ? "," : "", i);
            int32_t dead_pid = dead >= 0 ? PIDS(st)[dead] : 0;
            DEVICES(st)[rank] = -1; /* withdraw */
            st->joined--;
            st->live--;
            int last = st->live == 0;
            pthread_mutex_unlock(&st->mu);
            munmap(st, bytes);
            if (last) shm_unlink(shm_name);
            if (dead >= 0) {
                sim_set_error("HcclCommInitRootInfo: rank %d's process (pid %d) exited while the communicator of %d "
                              "ranks was being set up (rank %d was waiting for rank(s) %s)", dead, (int)dead_pid,
                              nranks, rank, missing);
                return -3;
            }
            sim_set_error("HcclCommInitRootInfo: rank %d waited %s for rank(s) %s of %d to join; they never did",
                          rank, timeout_what, missing, nranks);
            return -2;
        }
        gwait(st, POLL_US);
    }
    for (int i = 0; i < st->size; i++) {
        for (int j = 0; j < i; j++) {
            if (DEVICES(st)[i] == DEVICES(st)[j]) {
                pthread_mutex_unlock(&st->mu);
                munmap(st, bytes);
                sim_set_error("HcclCommInitRootInfo: ranks %d and %d are both on device %d (one rank per device)", j,
                              i, DEVICES(st)[i]);
                return -1;
            }
        }
    }
    pthread_mutex_unlock(&st->mu);
    SimGroup *g = wrapper_new(st, nranks);
    if (!g) {
        munmap(st, bytes);
        return -1;
    }
    g->map_bytes = bytes;
    snprintf(g->shm_name, sizeof g->shm_name, "%s", shm_name);
    open_pidfds(g);
    comm_init(g, rank, device);
    registry_add(g, 0);
    sim_track_add_tagged(SIM_OBJ_COMM, &g->comms[rank], sizeof(SimComm), device);
    *comm_out = &g->comms[rank];
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
    GroupState *st = g->st;
    pthread_mutex_lock(&g_groups_mu);
    glock(st);
    c->destroyed = 1;
    LEFT(st)[c->rank] = 1;
    st->live--;
    int unlink_shm = g->map_bytes && st->live == 0;
    int free_it = 0;
    if (--g->local_live == 0) {
        for (SimGroup **pp = &g_groups; *pp; pp = &(*pp)->next) {
            if (*pp == g) {
                *pp = g->next;
                break;
            }
        }
        g->unlinked = 1;
        free_it = g->local_in_flight == 0;
    }
    gwake(st);
    pthread_mutex_unlock(&st->mu);
    pthread_mutex_unlock(&g_groups_mu);
    if (unlink_shm) shm_unlink(g->shm_name);
    if (free_it) group_free(g);
    return 0;
}

SIM_API SimComm *sim_comm_lookup(const char *name, int device)
{
    if (!name) return NULL;
    SimComm *found = NULL;
    pthread_mutex_lock(&g_groups_mu);
    for (SimGroup *g = g_groups; g && !found; g = g->next) {
        if (strcmp(g->st->name, name) != 0) continue;
        for (int i = 0; i < g->size; i++) {
            SimComm *c = &g->comms[i];
            if (c->magic == SIM_COMM_MAGIC && c->device == device && !c->destroyed) {
                found = c;
                break;
            }
        }
    }
    pthread_mutex_unlock(&g_groups_mu);
    return found;
}

SIM_API int sim_comm_rank(const SimComm *c) { return c ? c->rank : -1; }
SIM_API int sim_comm_size(const SimComm *c) { return c ? c->g->size : 0; }
SIM_API const char *sim_comm_name(const SimComm *c) { return c ? c->g->st->name : NULL; }
SIM_API int sim_comm_device(const SimComm *c) { return c ? c->device : -1; }
SIM_API void sim_comm_set_buffer_mb(SimComm *c, uint64_t mb)
{
    if (c) c->buffer_mb = mb;
}
SIM_API uint64_t sim_comm_buffer_mb(const SimComm *c) { return c ? c->buffer_mb : 0; }
SIM_API void sim_comm_set_async_error(SimComm *c, int err)
{
    if (c) __atomic_store_n(&c->async_error, err, __ATOMIC_RELEASE);
}
SIM_API int sim_comm_async_error(const SimComm *c)
{
    return c ? __atomic_load_n(&c->async_error, __ATOMIC_ACQUIRE) : 0;
}

/* ---- participant sets ----------------------------------------------------------------------------- */

static int seq_quiescent(GroupState *st, int i)
{
    SeqHdr *q = SEQ(st, i);
    if (q->busy) return 0;
    for (int r = 0; r < st->size; r++)
        if (WAITERS(st)[r] && WAIT_SEQ(st)[r] == i) return 0;
    int64_t c0 = CALLS(st, q)[MEMBERS(st, q)[0]];
    for (int k = 1; k < q->n; k++)
        if (CALLS(st, q)[MEMBERS(st, q)[k]] != c0) return 0;
    return 1;
}

/* Index of the sequence of a participant set (NULL or all n == size ranks = the whole group), created on
 * first use (recycling the least recently used quiescent set when all slots are taken); -1 if none is free.
 * The list was validated: ascending, distinct, in range. */
static int seq_find(GroupState *st, const int *participants, int n, int create)
{
    int full = !participants || n == st->size;
    if (full) n = st->size;
    int free_slot = -1;
    for (int i = 0; i < MAX_SEQS; i++) {
        SeqHdr *q = SEQ(st, i);
        if (q->n == 0) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (q->n != n) continue;
        int32_t *m = MEMBERS(st, q);
        int same = 1;
        for (int k = 0; k < n && same; k++) same = m[k] == (full ? k : participants[k]);
        if (same) {
            q->lru = ++st->tick;
            return i;
        }
    }
    if (!create) return -1;
    if (free_slot < 0) {
        uint64_t best = UINT64_MAX;
        for (int i = 0; i < MAX_SEQS; i++) {
            if (SEQ(st, i)->lru < best && seq_quiescent(st, i)) {
                best = SEQ(st, i)->lru;
                free_slot = i;
            }
        }
        if (free_slot < 0) return -1;
    }
    SeqHdr *q = SEQ(st, free_slot);
    memset(q, 0, (size_t)st->seq_stride);
    q->n = n;
    q->lru = ++st->tick;
    for (int k = 0; k < n; k++) MEMBERS(st, q)[k] = full ? k : participants[k];
    return free_slot;
}

static int seq_has(GroupState *st, SeqHdr *q, int rank)
{
    int32_t *m = MEMBERS(st, q);
    int lo = 0, hi = q->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (m[mid] == rank) return 1;
        if (m[mid] < rank) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* Writes the missing participants of call `idx` of `q` to out (up to cap); returns how many are missing. */
static int missing_locked(GroupState *st, SeqHdr *q, int64_t idx, int *out, int cap)
{
    int miss = 0;
    int32_t *m = MEMBERS(st, q);
    int64_t *posted = POSTED(st, q);
    for (int i = 0; i < q->n; i++) {
        int r = m[i];
        if (posted[r] <= idx) {
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

static void format_set(char *buf, size_t cap, GroupState *st, SeqHdr *q)
{
    if (q->n == st->size) {
        snprintf(buf, cap, "all %d ranks", st->size);
        return;
    }
    int32_t *m = MEMBERS(st, q);
    size_t pos = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < q->n && pos + 24 < cap; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%d", i ? "," : "", m[i]);
    if (pos + 24 >= cap && pos < cap) pos += (size_t)snprintf(buf + pos, cap - pos, ",...");
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
}

static int64_t deadlock_grace_us(void)
{
    const char *v = getenv("ACLNN_SIM_DEADLOCK_GRACE_MS");
    if (v && *v) {
        char *end = NULL;
        long long ms = strtoll(v, &end, 10);
        if (end && *end == '\0' && ms >= 0) return (int64_t)ms * 1000;
    }
    return 1000 * 1000;
}

/* Rank `me`, blocked in call `idx` of set `pi`: is some missing participant x blocked (alone) in a call of
 * another set that `me` belongs to but has not joined? Then neither can proceed. Writes the explanation. */
static int deadlock_locked(GroupState *st, int pi, int64_t idx, int me, char *msg, size_t cap)
{
    if (WAITERS(st)[me] != 1) return 0;
    SeqHdr *p = SEQ(st, pi);
    int32_t *m = MEMBERS(st, p);
    for (int i = 0; i < p->n; i++) {
        int x = m[i];
        if (x == me || POSTED(st, p)[x] > idx) continue;
        int qi = WAIT_SEQ(st)[x];
        if (WAITERS(st)[x] != 1 || qi < 0 || qi == pi) continue;
        SeqHdr *q = SEQ(st, qi);
        if (!seq_has(st, q, me)) continue;
        int64_t j = WAIT_IDX(st)[x];
        if (POSTED(st, q)[me] > j) continue; /* me already joined x's call */
        char ps[256], qs[256];
        format_set(ps, sizeof ps, st, p);
        format_set(qs, sizeof qs, st, q);
        snprintf(msg, cap,
                 "ranks disagree on the participants of a collective on group \"%s\": rank %d waits in a call with "
                 "participants %s (call #%lld of that set) for rank %d, while rank %d waits in a call with "
                 "participants %s (call #%lld) for rank %d; neither can proceed (a real device would hang). Every "
                 "rank must pass the same elastic_info / world_size", st->name, me, ps, (long long)idx, x, x, qs,
                 (long long)j, me);
        return 1;
    }
    return 0;
}

/* Shared groups: a participant of call idx of q whose process has exited (-1 if none), with the reason in `why`.
 * Every participant counts, arrived or not: one that posted and then died will never post its next call, and
 * its peers must not wait for the last live rank to find that out. The dead rank's post is withdrawn for it, so
 * no later call pairs with what it left behind. Only this call fails: calls whose participants are all alive
 * (an elastic subset without the dead rank) go on working. */
static int dead_member_locked(SimGroup *g, SeqHdr *q, int64_t idx, char *why, size_t cap)
{
    GroupState *st = g->st;
    int32_t *m = MEMBERS(st, q);
    for (int i = 0; i < q->n; i++) {
        int r = m[i];
        if (!rank_dead(g, r)) continue;
        snprintf(why, cap, "rank %d's process (pid %d) has exited (it crashed, was killed or ended) without completing "
                 "this collective, so it never will", r, (int)PIDS(st)[r]);
        if (POSTED(st, q)[r] == idx + 1) {
            CALLS(st, q)[r] = idx;
            POSTED(st, q)[r] = idx;
            SLOTS(st, q)[(size_t)r * RING + (size_t)(idx % RING)] = NULL;
        }
        return r;
    }
    return -1;
}

/* A participant of set qi other than `me` that may still be reading what `me` published in call idx - 1: it
 * has not entered call idx, is not blocked in an exchange other than that call (it may be just leaving it),
 * still has its comm and is alive. */
static int reader_left_locked(SimGroup *g, int qi, int64_t idx, int me)
{
    GroupState *st = g->st;
    SeqHdr *q = SEQ(st, qi);
    int32_t *m = MEMBERS(st, q);
    for (int i = 0; i < q->n; i++) {
        int r = m[i];
        if (r == me || ENTERED(st, q)[r] > idx || LEFT(st)[r] || rank_dead(g, r)) continue;
        int elsewhere = WAITERS(st)[r] > 0 && !(WAIT_SEQ(st)[r] == qi && WAIT_IDX(st)[r] == idx - 1);
        if (!elsewhere) return 1;
    }
    return 0;
}

/* After call idx failed: when this rank's call idx - 1 completed with a payload, its peers compute from that
 * payload (and the buffers it points to) until they enter call idx. Returning now would let the caller free or
 * reuse that memory under them, and they would read (and report) garbage; so wait, up to timeout_us (< 0: until
 * the stream is cancelled), until none can still be reading. */
static void wait_for_readers_locked(SimGroup *g, int qi, int64_t idx, int me, int64_t timeout_us, SimStream *s)
{
    if (idx == 0 || EXPOSED(g->st, SEQ(g->st, qi))[me] != idx) return;
    int64_t start = now_us();
    while (reader_left_locked(g, qi, idx, me) && !(s && sim_stream_cancelled(s)) &&
           (timeout_us < 0 || now_us() - start < timeout_us))
        gwait(g->st, POLL_US);
}

static int validate_participants(SimComm *c, const int *participants, int *n)
{
    GroupState *st = c->g->st;
    if (!participants) *n = st->size;
    if (*n < 1 || *n > st->size) {
        sim_set_error("collective on group \"%s\": %d participants for a group of %d", st->name, *n, st->size);
        return SIM_ERR_INVALID;
    }
    int self = !participants;
    for (int i = 0; participants && i < *n; i++) {
        if (participants[i] < 0 || participants[i] >= st->size || (i && participants[i] <= participants[i - 1])) {
            sim_set_error("collective on group \"%s\": participant list must hold ascending ranks in 0..%d "
                          "(entry %d is %d)", st->name, st->size - 1, i, participants[i]);
            return SIM_ERR_INVALID;
        }
        if (participants[i] == c->rank) self = 1;
    }
    if (!self) {
        sim_set_error("collective on group \"%s\": the calling rank %d is not among the participants", st->name,
                      c->rank);
        return SIM_ERR_INVALID;
    }
    return 0;
}

/* Waits (lock held) until call idx of set qi is complete (0) or fails: SIM_ERR_ABORTED (the group was aborted,
 * or a participant's process has exited), SIM_ERR_MISMATCH (a deadlock between participant sets),
 * SIM_ERR_CANCELLED, SIM_ERR_TIMEOUT, or the failure of another participant's wait in the same call
 * (*follower = 1: its code). `why` gets the reason where there is one. */
static int wait_call_locked(SimGroup *g, int qi, int64_t idx, int me, uint64_t gen, uint64_t qgen, int64_t timeout_us,
                            SimStream *s, char *why, size_t cap, int *follower)
{
    GroupState *st = g->st;
    SeqHdr *q = SEQ(st, qi);
    int64_t start = now_us(), stuck_since = -1, grace = -2, next_live = start;
    for (;;) {
        if (missing_locked(st, q, idx, NULL, 0) == 0) return 0;
        if (st->aborted) {
            snprintf(why, cap, "%s", st->abort_msg);
            return SIM_ERR_ABORTED;
        }
        if (q->gen != qgen) { /* another participant's wait for this call failed: the call is dead */
            snprintf(why, cap, "%s", q->dead_why);
            *follower = 1;
            return q->dead_rc;
        }
        if (st->fail_gen != gen) {
            snprintf(why, cap, "%s", st->fail_msg);
            return SIM_ERR_MISMATCH;
        }
        if (s && sim_stream_cancelled(s)) return SIM_ERR_CANCELLED;
        int64_t now = now_us();
        if (now >= next_live) {
            next_live = now + POLL_US;
            if (dead_member_locked(g, q, idx, why, cap) >= 0) return SIM_ERR_ABORTED;
        }
        char dl[MSG_CAP];
        if (deadlock_locked(st, qi, idx, me, dl, sizeof dl)) {
            if (grace == -2) grace = deadlock_grace_us();
            if (stuck_since < 0) stuck_since = now;
            if (now - stuck_since >= grace) {
                snprintf(why, cap, "%s", dl);
                snprintf(st->fail_msg, sizeof st->fail_msg, "%s", dl);
                st->fail_gen++;
                gwake(st);
                return SIM_ERR_MISMATCH;
            }
        } else {
            stuck_since = -1;
        }
        if (timeout_us >= 0 && now - start >= timeout_us) return SIM_ERR_TIMEOUT;
        int64_t sleep_us = POLL_US;
        if (timeout_us >= 0 && start + timeout_us - now < sleep_us) sleep_us = start + timeout_us - now;
        gwait(st, sleep_us);
    }
}

/* The first failure of a call: its reason, kept in q for the participants still waiting in it (they fail the
 * same way and report the same missing ranks); then they are woken. */
static void record_failure_locked(GroupState *st, SeqHdr *q, int me, int rc, char *why, size_t cap, const int *miss,
                                  int total, int64_t timeout_us)
{
    char list[512];
    format_ranks(list, sizeof list, miss, total < MISS_CAP ? total : MISS_CAP, total);
    if (rc == SIM_ERR_TIMEOUT)
        snprintf(why, cap, "rank(s) %s did not arrive within %lld us", list, (long long)timeout_us);
    else if (rc == SIM_ERR_CANCELLED)
        snprintf(why, cap, "the wait of rank %d was cancelled (its stream was destroyed or its device reset) while "
                 "rank(s) %s had not arrived", me, list);
    snprintf(q->dead_why, sizeof q->dead_why, "%s", why);
    q->dead_rc = rc;
    q->dead_rank = me;
    q->dead_nmiss = total;
    memcpy(q->dead_miss, miss, sizeof q->dead_miss);
    q->gen++;
    gwake(st);
}

static void set_failure_message(const SimComm *c, int64_t idx, int rc, int follower, const char *why)
{
    const char *verb = rc == SIM_ERR_ABORTED ? " was aborted" : rc == SIM_ERR_CANCELLED && !follower ? " was cancelled"
                       : rc == SIM_ERR_CANCELLED ? " failed" : "";
    sim_set_error("collective on group \"%s\" (rank %d, device %d, call #%lld)%s: %s", c->g->st->name, c->rank,
                  c->device, (long long)idx, verb, why);
}

SIM_API int sim_comm_exchange(SimComm *c, const int *participants, int n, void *payload, void **peers_out,
                              int64_t timeout_us, SimStream *s)
{
    if (!c || c->magic != SIM_COMM_MAGIC || c->destroyed) {
        sim_set_error("collective: the communicator is not valid (destroyed or never created)");
        return SIM_ERR_INVALID;
    }
    SimGroup *g = c->g;
    GroupState *st = g->st;
    int rc = validate_participants(c, participants, &n);
    if (rc) return rc;
    if (peers_out)
        for (int i = 0; i < st->size; i++) peers_out[i] = NULL;

    const int me = c->rank;
    glock(st);
    int qi = seq_find(st, participants, n, 1);
    if (qi < 0) {
        pthread_mutex_unlock(&st->mu);
        sim_set_error("collective on group \"%s\": more than %d different participant sets are in use at once",
                      st->name, MAX_SEQS);
        return SIM_ERR_INVALID;
    }
    SeqHdr *q = SEQ(st, qi);
    int64_t *calls = CALLS(st, q), *posted = POSTED(st, q);
    void **slots = SLOTS(st, q);
    g->local_in_flight++;
    INFLIGHT(st)[me]++;
    q->busy++;
    int64_t idx = calls[me];
    if (ENTERED(st, q)[me] <= idx) ENTERED(st, q)[me] = idx + 1; /* this rank stopped reading call idx - 1 */
    char why[MSG_CAP];
    why[0] = '\0';
    if (st->aborted) { /* fails at once, without joining the call */
        snprintf(why, sizeof why, "%s", st->abort_msg);
        gwake(st);
        wait_for_readers_locked(g, qi, idx, me, timeout_us, s);
        EXPOSED(st, q)[me] = 0;
        sim_set_error("collective on group \"%s\" (rank %d, device %d) was aborted: %s", st->name, me, c->device, why);
        rc = SIM_ERR_ABORTED;
        goto out;
    }
    calls[me]++;
    slots[(size_t)me * RING + (size_t)(idx % RING)] = payload;
    posted[me] = idx + 1;
    WAITERS(st)[me]++;
    WAIT_SEQ(st)[me] = WAITERS(st)[me] == 1 ? qi : -1;
    WAIT_IDX(st)[me] = idx;
    uint64_t gen = st->fail_gen, qgen = q->gen;
    gwake(st);

    int follower = 0;
    rc = wait_call_locked(g, qi, idx, me, gen, qgen, timeout_us, s, why, sizeof why, &follower);
    if (--WAITERS(st)[me] == 0 || WAIT_SEQ(st)[me] == qi) WAIT_SEQ(st)[me] = -1;
    c->last_seq = qi;
    c->last_restart = st->restarts;
    int miss[MISS_CAP];
    memset(miss, 0, sizeof miss);
    int total = 0;
    if (follower) { /* report what the first failure saw (the others may have withdrawn since) */
        total = q->dead_nmiss;
        memcpy(miss, q->dead_miss, sizeof miss);
    } else if (rc != 0) {
        total = missing_locked(st, q, idx, miss, MISS_CAP);
    }
    c->last_nmiss = total;
    memcpy(c->last_miss, miss, sizeof c->last_miss);
    if (rc == 0) {
        int32_t *members = MEMBERS(st, q);
        for (int i = 0; peers_out && i < q->n; i++)
            peers_out[members[i]] = slots[(size_t)members[i] * RING + (size_t)(idx % RING)];
        EXPOSED(st, q)[me] = payload ? idx + 1 : 0;
    } else {
        if (!follower) record_failure_locked(st, q, me, rc, why, sizeof why, miss, total, timeout_us);
        /* Withdraw the post: nobody completed this call (a rank fails only while a participant is missing,
         * and a complete call stays complete), so a peer that arrives later pairs with this rank's next
         * call -- the call sequences stay aligned -- and never reads a payload this rank abandons. */
        if (calls[me] == idx + 1) {
            calls[me] = idx;
            posted[me] = idx;
            slots[(size_t)me * RING + (size_t)(idx % RING)] = NULL;
        }
        if (rc != SIM_ERR_TIMEOUT) wait_for_readers_locked(g, qi, idx, me, timeout_us, s);
        EXPOSED(st, q)[me] = 0;
        set_failure_message(c, idx, rc, follower, why);
    }
out:
    q->busy--;
    INFLIGHT(st)[me]--;
    int free_it = --g->local_in_flight == 0 && g->unlinked;
    gwake(st);
    pthread_mutex_unlock(&st->mu);
    if (free_it) group_free(g);
    return rc;
}

SIM_API int sim_comm_missing(SimComm *c, const int *participants, int n, int *missing_out, int cap)
{
    if (!c || c->magic != SIM_COMM_MAGIC) return 0;
    GroupState *st = c->g->st;
    if (!participants) n = st->size;
    if (n < 1 || n > st->size) return 0;
    for (int i = 0; participants && i < n; i++)
        if (participants[i] < 0 || participants[i] >= st->size || (i && participants[i] <= participants[i - 1]))
            return 0;
    glock(st);
    int qi = seq_find(st, participants, n, 0);
    int miss = 0;
    if (qi >= 0 && c->last_seq == qi && c->last_restart == st->restarts) {
        /* the missing ranks when the caller's latest call with this set ended */
        miss = c->last_nmiss;
        for (int i = 0; missing_out && i < miss && i < cap && i < MISS_CAP; i++) missing_out[i] = c->last_miss[i];
    } else if (qi >= 0) {
        SeqHdr *q = SEQ(st, qi);
        int64_t calls = CALLS(st, q)[c->rank];
        miss = missing_locked(st, q, calls > 0 ? calls - 1 : 0, missing_out, cap);
    } else {
        for (int i = 0; i < n; i++) { /* no call with this set yet: everybody but the caller is missing */
            int r = participants ? participants[i] : i;
            if (r == c->rank) continue;
            if (missing_out && miss < cap) missing_out[miss] = r;
            miss++;
        }
    }
    pthread_mutex_unlock(&st->mu);
    return miss;
}

/* ---- test and launcher hooks (aclsim.h) ------------------------------------------------------------ */

ACLSIM_API int32_t aclsimAbortComm(void *comm, const char *reason)
{
    SimComm *c = comm;
    if (!sim_comm_valid(c)) return -1;
    GroupState *st = c->g->st;
    glock(st);
    abort_locked(st, "%s", reason && *reason ? reason : "aborted by aclsimAbortComm");
    pthread_mutex_unlock(&st->mu);
    return 0;
}

/* Restarts every call sequence and clears an abort (lock held, nothing in flight). */
static void restart_locked(GroupState *st)
{
    st->aborted = 0;
    st->abort_msg[0] = '\0';
    st->restarts++;
    memset(SEQ(st, 0), 0, (size_t)(st->seq_stride * MAX_SEQS));
    for (int i = 0; i < st->size; i++) {
        WAIT_SEQ(st)[i] = -1;
        WAITERS(st)[i] = 0;
        INFLIGHT(st)[i] = 0; /* only dead processes can leave a count behind */
    }
    gwake(st);
}

/* Shared groups: every rank that is alive and still has its comm has recovered from the current abort and
 * has no exchange in flight (the ranks of dead processes are left out: they will never recover). */
static int all_recovered_locked(SimGroup *g)
{
    GroupState *st = g->st;
    for (int r = 0; r < st->size; r++) {
        if (LEFT(st)[r] || rank_dead(g, r)) continue;
        if (RECOVERED(st)[r] != st->abort_epoch || INFLIGHT(st)[r] > 0) return 0;
    }
    return 1;
}

ACLSIM_API int32_t aclsimRecoverComm(void *comm)
{
    SimComm *c = comm;
    if (!sim_comm_valid(c)) return -1;
    SimGroup *g = c->g;
    GroupState *st = g->st;
    glock(st);
    if (g->local_in_flight > 0) {
        int busy = g->local_in_flight;
        pthread_mutex_unlock(&st->mu);
        sim_set_error("aclsimRecoverComm: %d exchange(s) of group \"%s\" in this process are still in progress", busy,
                      st->name);
        return -2;
    }
    if (!st->shared) {
        restart_locked(st);
    } else if (st->aborted) {
        for (int r = 0; r < g->size; r++)
            if (g->comms[r].magic == SIM_COMM_MAGIC && !g->comms[r].destroyed) RECOVERED(st)[r] = st->abort_epoch;
        if (all_recovered_locked(g)) restart_locked(st);
    }
    pthread_mutex_unlock(&st->mu);
    return 0;
}

ACLSIM_API int32_t aclsimCommInFlight(void *comm)
{
    SimComm *c = comm;
    if (!sim_comm_valid(c)) return -1;
    GroupState *st = c->g->st;
    glock(st);
    int busy = 0;
    for (int r = 0; r < st->size; r++)
        if (!rank_dead(c->g, r)) busy += INFLIGHT(st)[r];
    pthread_mutex_unlock(&st->mu);
    return busy;
}

ACLSIM_API int32_t aclsimCommExists(const char *name, int32_t device)
{
    return sim_comm_lookup(name, device) != NULL;
}

ACLSIM_API int32_t aclsimCommState(void *comm)
{
    SimComm *c = comm;
    if (!sim_comm_valid(c)) return -1;
    GroupState *st = c->g->st;
    glock(st);
    int s = st->aborted ? 1 : 0;
    pthread_mutex_unlock(&st->mu);
    return s;
}
