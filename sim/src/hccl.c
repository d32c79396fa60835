/*
 * HCCL of the CANN simulator (libhccl.so): communicators connect threads of this process.
 * HcclCommInitAll creates a group directly; HcclGetRootInfo + HcclCommInitRootInfo rendezvous the
 * ranks (threads) that present the same root info. Groups are named "sim_hccl_group_<n>"; ops find
 * them by that name (HcclGetCommName), as the real MC2 ops do.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hccl/hccl.h"
#include "simcore.h"

#define P(x) ((const void *)(x))
#define ROOT_MAGIC "ACLNN_PY_SIMHCCL"

typedef struct {
    char magic[16];
    uint64_t pid;
    uint64_t counter;
    uint64_t nonce;
    uint32_t shared;        /* 1: written in multi-process mode; any process of `session` may join */
    char session[64];
} RootInfoHeader;

typedef struct Pending {
    RootInfoHeader key;
    uint32_t nranks;
    uint32_t joined;
    int *devices;       /* -1 = rank not joined yet */
    SimComm **comms;
    int done;
    HcclResult status;
    char msg[512];
    int users;          /* threads inside HcclCommInitRootInfo for this entry */
    struct Pending *next;
} Pending;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static pthread_once_t g_cv_once = PTHREAD_ONCE_INIT;
static Pending *g_pending;
static uint64_t g_root_counter;
static uint64_t g_group_counter;

static void init_cv(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cv, &ca);
    pthread_condattr_destroy(&ca);
}

static void next_group_name(char *buf, size_t cap)
{
    pthread_mutex_lock(&g_mu);
    uint64_t n = g_group_counter++;
    pthread_mutex_unlock(&g_mu);
    snprintf(buf, cap, "sim_hccl_group_%llu", (unsigned long long)n);
}

/* The rank arguments of a root-info init, and the device the calling thread has bound (-> *dev). */
static HcclResult check_rank_and_device(const char *api, uint32_t nRanks, uint32_t rank, int *dev)
{
    if (nRanks < 1 || nRanks > (uint32_t)sim_device_count() || rank >= nRanks) {
        sim_set_error("%s: nRanks=%u rank=%u (need 1 <= nRanks <= %d and rank < nRanks)", api, nRanks, rank,
                      sim_device_count());
        return HCCL_E_PARA;
    }
    *dev = sim_current_device();
    if (*dev < 0) {
        sim_set_error("%s: no device is bound to this thread (call aclrtSetDevice first)", api);
        return HCCL_E_PARA;
    }
    return HCCL_SUCCESS;
}

/* The set-up timeout (HCCL_CONNECT_TIMEOUT) into *us and its description into `what`; HCCL_E_PARA, message set,
 * when the variable holds a value HCCL refuses (then HCCL's communicator set-up calls fail before any work). */
static HcclResult connect_timeout(const char *api, int64_t *us, char *what, size_t cap)
{
    *us = sim_connect_timeout_us(what, cap);
    if (*us >= 0) return HCCL_SUCCESS;
    const char *m = sim_take_error();
    sim_set_error("%s: %s", api, m ? m : "HCCL_CONNECT_TIMEOUT is invalid");
    return HCCL_E_PARA;
}

/* connect_timeout for the calls that only check the variable (HCCL parses it in each of them). */
static HcclResult check_connect_timeout(const char *api)
{
    int64_t us;
    char what[96];
    return connect_timeout(api, &us, what, sizeof what);
}

static SimComm *get_comm(const char *api, HcclComm comm, HcclResult *rc)
{
    if (!comm) {
        sim_set_error("%s: comm is NULL", api);
        *rc = HCCL_E_PTR;
        return NULL;
    }
    if (!sim_comm_valid(comm)) {
        sim_set_error("%s: %p is not a live HcclComm (destroyed, or never created)", api, P(comm));
        *rc = HCCL_E_PARA;
        return NULL;
    }
    return comm;
}

/* get_comm, plus the check that the output pointer `out` (parameter `out_name`) is not NULL. */
static SimComm *get_comm_out(const char *api, HcclComm comm, const void *out, const char *out_name, HcclResult *rc)
{
    SimComm *c = get_comm(api, comm, rc);
    if (c && !out) {
        sim_set_error("%s: %s is NULL", api, out_name);
        *rc = HCCL_E_PTR;
        return NULL;
    }
    return c;
}

/* The HCCL buffer of a new communicator, in MB: the config's hcclBufferSize when set, else HCCL_BUFFSIZE now
 * (read when the communicator is created, as HCCL does). */
static uint64_t new_comm_buffer_mb(const HcclCommConfig *config)
{
    if (config && config->hcclBufferSize != HCCL_COMM_BUFFSIZE_CONFIG_NOT_SET) return config->hcclBufferSize;
    return sim_hccl_buffsize_env_mb();
}

HcclResult HcclCommInitAll(uint32_t ndev, int32_t *devices, HcclComm *comms)
{
    sim_record_call("HcclCommInitAll", "ndev=%u devices=%p comms=%p", ndev, P(devices), P(comms));
    if (!devices || !comms) {
        sim_set_error("HcclCommInitAll: %s is NULL", !devices ? "devices" : "comms");
        return HCCL_E_PTR;
    }
    if (ndev < 1 || ndev > (uint32_t)sim_device_count()) {
        sim_set_error("HcclCommInitAll: ndev=%u must be in 1..%d (the simulator's device count)", ndev,
                      sim_device_count());
        return HCCL_E_PARA;
    }
    HcclResult bad = check_connect_timeout("HcclCommInitAll");
    if (bad != HCCL_SUCCESS) return bad;
    int *devs = malloc(ndev * sizeof(int));
    SimComm **out = malloc(ndev * sizeof(SimComm *));
    if (!devs || !out) {
        free(devs);
        free(out);
        return HCCL_E_MEMORY;
    }
    for (uint32_t i = 0; i < ndev; i++) devs[i] = devices[i];
    char name[COMM_NAME_MAX_LENGTH];
    next_group_name(name, sizeof name);
    int rc = sim_comm_create_group(name, (int)ndev, devs, out);
    const uint64_t mb = new_comm_buffer_mb(NULL);
    if (rc == 0)
        for (uint32_t i = 0; i < ndev; i++) {
            sim_comm_set_buffer_mb(out[i], mb);
            comms[i] = out[i];
        }
    free(devs);
    free(out);
    return rc == 0 ? HCCL_SUCCESS : HCCL_E_PARA;
}

HcclResult HcclGetRootInfo(HcclRootInfo *rootInfo)
{
    sim_record_call("HcclGetRootInfo", "rootInfo=%p", P(rootInfo));
    if (!rootInfo) {
        sim_set_error("HcclGetRootInfo: rootInfo is NULL");
        return HCCL_E_PTR;
    }
    HcclResult bad = check_connect_timeout("HcclGetRootInfo");
    if (bad != HCCL_SUCCESS) return bad;
    RootInfoHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, ROOT_MAGIC, sizeof h.magic);
    h.pid = (uint64_t)getpid();
    pthread_mutex_lock(&g_mu);
    h.counter = ++g_root_counter;
    pthread_mutex_unlock(&g_mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ (h.counter << 32) ^
                 ((uint64_t)(uintptr_t)rootInfo);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    h.nonce = x;
    const char *session = sim_mp_session();
    if (session) {
        h.shared = 1;
        snprintf(h.session, sizeof h.session, "%s", session);
    }
    memset(rootInfo, 0, sizeof(*rootInfo));
    memcpy(rootInfo->internal, &h, sizeof h);
    snprintf(rootInfo->internal + sizeof h, 64, session ? "aclnn_py simulator root info (multi-process session)"
                                                        : "aclnn_py simulator root info (in-process only)");
    return HCCL_SUCCESS;
}

static void pending_release_locked(Pending *p)
{
    if (--p->users > 0) return;
    for (Pending **pp = &g_pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    free(p->devices);
    free(p->comms);
    free(p);
}

static HcclResult join_root_info(const char *api, uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank,
                                 HcclComm *comm)
{
    pthread_once(&g_cv_once, init_cv);
    if (!rootInfo || !comm) {
        sim_set_error("%s: %s is NULL", api, !rootInfo ? "rootInfo" : "comm");
        return HCCL_E_PTR;
    }
    RootInfoHeader key;
    memcpy(&key, rootInfo->internal, sizeof key);
    if (memcmp(key.magic, ROOT_MAGIC, sizeof key.magic) != 0) {
        sim_set_error("%s: rootInfo was not written by this simulator's HcclGetRootInfo", api);
        return HCCL_E_PARA;
    }
    int64_t timeout_us;
    char timeout_what[96];
    HcclResult bad_timeout = connect_timeout(api, &timeout_us, timeout_what, sizeof timeout_what);
    if (bad_timeout != HCCL_SUCCESS) return bad_timeout;
    if (key.shared) {
        const char *session = sim_mp_session();
        if (!session || strncmp(session, key.session, sizeof key.session) != 0) {
            const char *why = sim_mp_error();
            sim_set_error("%s: rootInfo belongs to multi-process session \"%.64s\" but this process is %s%s%s", api,
                          key.session, session ? "in another session" : "not in multi-process mode "
                          "(ACLNN_SIM_SHM_SESSION)", why ? ": " : "", why ? why : "");
            return HCCL_E_PARA;
        }
        int dev;
        HcclResult bad = check_rank_and_device(api, nRanks, rank, &dev);
        if (bad != HCCL_SUCCESS) return bad;
        char shm[128], name[COMM_NAME_MAX_LENGTH];
        snprintf(shm, sizeof shm, "/aclnn_sim_%.40s_g%016llx%08llx", session, (unsigned long long)key.nonce,
                 (unsigned long long)(key.counter & 0xffffffffull));
        snprintf(name, sizeof name, "sim_hccl_group_%016llx%08llx", (unsigned long long)key.nonce,
                 (unsigned long long)(key.counter & 0xffffffffull));
        SimComm *c = NULL;
        int rc = sim_comm_join_shared(shm, name, (int)nRanks, (int)rank, dev, timeout_us, timeout_what, &c);
        if (rc == 0) {
            *comm = c;
            return HCCL_SUCCESS;
        }
        return rc == -2 ? HCCL_E_TIMEOUT : rc == -3 ? HCCL_E_INTERNAL : HCCL_E_PARA;
    }
    if (key.pid != (uint64_t)getpid()) {
        sim_set_error("%s: rootInfo comes from process %llu; the simulator connects threads of one process only",
                      api, (unsigned long long)key.pid);
        return HCCL_E_NOT_SUPPORT;
    }
    int dev;
    HcclResult bad = check_rank_and_device(api, nRanks, rank, &dev);
    if (bad != HCCL_SUCCESS) return bad;

    pthread_mutex_lock(&g_mu);
    Pending *p = g_pending;
    while (p && !(memcmp(&p->key, &key, sizeof key) == 0 && !p->done)) p = p->next;
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (p) {
            p->devices = malloc(nRanks * sizeof(int));
            p->comms = calloc(nRanks, sizeof(SimComm *));
        }
        if (!p || !p->devices || !p->comms) {
            if (p) {
                free(p->devices);
                free(p->comms);
                free(p);
            }
            pthread_mutex_unlock(&g_mu);
            return HCCL_E_MEMORY;
        }
        p->key = key;
        p->nranks = nRanks;
        for (uint32_t i = 0; i < nRanks; i++) p->devices[i] = -1;
        p->next = g_pending;
        g_pending = p;
    }
    if (p->nranks != nRanks) {
        uint32_t want = p->nranks;
        pthread_mutex_unlock(&g_mu);
        sim_set_error("%s: nRanks=%u but other ranks of this root info passed nRanks=%u", api, nRanks, want);
        return HCCL_E_PARA;
    }
    if (p->devices[rank] >= 0) {
        pthread_mutex_unlock(&g_mu);
        sim_set_error("%s: rank %u has already joined this root info", api, rank);
        return HCCL_E_PARA;
    }
    p->devices[rank] = dev;
    p->joined++;
    p->users++;
    if (p->joined == p->nranks) {
        char name[COMM_NAME_MAX_LENGTH];
        snprintf(name, sizeof name, "sim_hccl_group_%llu", (unsigned long long)g_group_counter++);
        if (sim_comm_create_group(name, (int)nRanks, p->devices, p->comms) == 0) {
            p->status = HCCL_SUCCESS;
        } else {
            const char *m = sim_take_error();
            snprintf(p->msg, sizeof p->msg, "%s: %s", api, m ? m : "cannot create the communicator");
            p->status = HCCL_E_PARA;
        }
        p->done = 1;
        pthread_cond_broadcast(&g_cv);
    } else {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += (time_t)(timeout_us / 1000000);
        dl.tv_nsec += (long)(timeout_us % 1000000) * 1000;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        while (!p->done) {
            if (pthread_cond_timedwait(&g_cv, &g_mu, &dl) == ETIMEDOUT && !p->done) break;
        }
        if (!p->done) {
            char missing[256];
            size_t pos = 0;
            missing[0] = '\0';
            for (uint32_t i = 0; i < p->nranks && pos + 12 < sizeof missing; i++)
                if (p->devices[i] < 0)
                    pos += (size_t)snprintf(missing + pos, sizeof missing - pos, "%s%u", pos ? "," : "", i);
            p->devices[rank] = -1; /* withdraw, so a later call of this rank can join again */
            p->joined--;
            uint32_t joined = p->joined;
            pending_release_locked(p);
            pthread_mutex_unlock(&g_mu);
            sim_set_error("%s: rank %u waited %s for rank(s) %s of %u to join (%u others joined); they never did",
                          api, rank, timeout_what, missing, nRanks, joined);
            return HCCL_E_TIMEOUT;
        }
    }
    HcclResult status = p->status;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", p->msg);
    if (status == HCCL_SUCCESS) *comm = p->comms[rank];
    pending_release_locked(p);
    pthread_mutex_unlock(&g_mu);
    if (status != HCCL_SUCCESS) sim_set_error("%s", msg);
    return status;
}

static HcclResult init_root_info(const char *api, uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank,
                                 const HcclCommConfig *config, HcclComm *comm)
{
    const uint64_t mb = new_comm_buffer_mb(config);
    HcclResult rc = join_root_info(api, nRanks, rootInfo, rank, comm);
    if (rc == HCCL_SUCCESS) sim_comm_set_buffer_mb((SimComm *)*comm, mb);
    return rc;
}

HcclResult HcclCommInitRootInfo(uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank, HcclComm *comm)
{
    sim_record_call("HcclCommInitRootInfo", "nRanks=%u rootInfo=%p rank=%u comm=%p", nRanks, P(rootInfo), rank,
                    P(comm));
    return init_root_info("HcclCommInitRootInfo", nRanks, rootInfo, rank, NULL, comm);
}

HcclResult HcclCommInitRootInfoConfig(uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank,
                                      const HcclCommConfig *config, HcclComm *comm)
{
    sim_record_call("HcclCommInitRootInfoConfig", "nRanks=%u rootInfo=%p rank=%u config=%p comm=%p", nRanks,
                    P(rootInfo), rank, P(config), P(comm));
    return init_root_info("HcclCommInitRootInfoConfig", nRanks, rootInfo, rank, config, comm);
}

HcclResult HcclGetCommName(HcclComm comm, char *commName)
{
    sim_record_call("HcclGetCommName", "comm=%p commName=%p", P(comm), P(commName));
    HcclResult rc = HCCL_SUCCESS;
    SimComm *c = get_comm_out("HcclGetCommName", comm, commName, "commName", &rc);
    if (!c) return rc;
    snprintf(commName, COMM_NAME_MAX_LENGTH, "%s", sim_comm_name(c));
    return HCCL_SUCCESS;
}

HcclResult HcclGetRankId(HcclComm comm, uint32_t *rank)
{
    sim_record_call("HcclGetRankId", "comm=%p rank=%p", P(comm), P(rank));
    HcclResult rc = HCCL_SUCCESS;
    SimComm *c = get_comm_out("HcclGetRankId", comm, rank, "rank", &rc);
    if (!c) return rc;
    *rank = (uint32_t)sim_comm_rank(c);
    return HCCL_SUCCESS;
}

HcclResult HcclGetRankSize(HcclComm comm, uint32_t *rankSize)
{
    sim_record_call("HcclGetRankSize", "comm=%p rankSize=%p", P(comm), P(rankSize));
    HcclResult rc = HCCL_SUCCESS;
    SimComm *c = get_comm_out("HcclGetRankSize", comm, rankSize, "rankSize", &rc);
    if (!c) return rc;
    *rankSize = (uint32_t)sim_comm_size(c);
    return HCCL_SUCCESS;
}

HcclResult HcclCommDestroy(HcclComm comm)
{
    sim_record_call("HcclCommDestroy", "comm=%p", P(comm));
    HcclResult rc = HCCL_SUCCESS;
    SimComm *c = get_comm("HcclCommDestroy", comm, &rc);
    if (!c) return rc;
    if (sim_comm_destroy(c) != 0) {
        sim_set_error("HcclCommDestroy: %p is not a live HcclComm", P(comm));
        return HCCL_E_PARA;
    }
    return HCCL_SUCCESS;
}

typedef struct {
    char name[COMM_NAME_MAX_LENGTH];
    int device;
} BarrierTask;

static int barrier_task(void *arg, SimStream *s)
{
    BarrierTask *t = arg;
    SimComm *c = sim_comm_lookup(t->name, t->device);
    if (!c) {
        sim_set_error("HcclBarrier: communicator group \"%s\" has no live member on device %d any more", t->name,
                      t->device);
        return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    int rc = sim_comm_exchange(c, NULL, 0, NULL, NULL, sim_hang_timeout_us(), s);
    if (rc == 0) return 0;
    sim_comm_set_async_error(c, rc == SIM_ERR_TIMEOUT ? HCCL_E_TIMEOUT : HCCL_E_INTERNAL);
    const char *m = sim_take_error();
    sim_set_error("HcclBarrier failed: %s", m ? m : "rendezvous failed");
    return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
}

HcclResult HcclBarrier(HcclComm comm, aclrtStream stream)
{
    sim_record_call("HcclBarrier", "comm=%p stream=%p", P(comm), P(stream));
    HcclResult rc = HCCL_SUCCESS;
    SimComm *c = get_comm("HcclBarrier", comm, &rc);
    if (!c) return rc;
    SimStream *s = sim_stream_resolve(stream);
    if (!s) {
        sim_set_error("HcclBarrier: %s", stream ? "stream is not a live stream"
                                                : "NULL stream needs a device bound to this thread");
        return HCCL_E_PARA;
    }
    if (sim_stream_device(s) != sim_comm_device(c)) {
        sim_set_error("HcclBarrier: the stream is on device %d but the comm's rank lives on device %d",
                      sim_stream_device(s), sim_comm_device(c));
        return HCCL_E_PARA;
    }
    BarrierTask *t = malloc(sizeof(*t));
    if (!t) return HCCL_E_MEMORY;
    snprintf(t->name, sizeof t->name, "%s", sim_comm_name(c));
    t->device = sim_comm_device(c);
    return sim_stream_enqueue(s, barrier_task, t, free) == 0 ? HCCL_SUCCESS : HCCL_E_RUNTIME;
}

HcclResult HcclGetCommAsyncError(HcclComm comm, HcclResult *asyncError)
{
    sim_record_call("HcclGetCommAsyncError", "comm=%p asyncError=%p", P(comm), P(asyncError));
    HcclResult rc = HCCL_SUCCESS;
    SimComm *c = get_comm_out("HcclGetCommAsyncError", comm, asyncError, "asyncError", &rc);
    if (!c) return rc;
    *asyncError = (HcclResult)sim_comm_async_error(c);
    return HCCL_SUCCESS;
}

const char *HcclGetErrorString(HcclResult code)
{
    sim_record_call("HcclGetErrorString", "code=%d", (int)code);
    switch ((int)code) {
    case HCCL_SUCCESS: return "no error";
    case HCCL_E_PARA: return "parameter error";
    case HCCL_E_PTR: return "empty pointer";
    case HCCL_E_MEMORY: return "memory error";
    case HCCL_E_INTERNAL: return "internal error";
    case HCCL_E_NOT_SUPPORT: return "not support feature";
    case HCCL_E_NOT_FOUND: return "not found specific resource";
    case HCCL_E_UNAVAIL: return "resource unavailable";
    case HCCL_E_SYSCALL: return "call system interface error";
    case HCCL_E_TIMEOUT: return "timeout";
    case HCCL_E_OPEN_FILE_FAILURE: return "open file fail";
    case HCCL_E_TCP_CONNECT: return "tcp connect fail";
    case HCCL_E_ROCE_CONNECT: return "roce connect fail";
    case HCCL_E_TCP_TRANSFER: return "tcp transfer fail";
    case HCCL_E_ROCE_TRANSFER: return "roce transfer fail";
    case HCCL_E_RUNTIME: return "call runtime api fail";
    case HCCL_E_DRV: return "call driver api fail";
    case HCCL_E_PROFILING: return "call profiling api fail";
    case HCCL_E_CCE: return "call cce api fail";
    case HCCL_E_NETWORK: return "call network api fail";
    case HCCL_E_AGAIN: return "try again";
    case HCCL_E_REMOTE: return "error cqe";
    case HCCL_E_SUSPENDING: return "error communicator suspending";
    case HCCL_E_OPRETRY_FAIL: return "retry constraint";
    default: return "unknown error";
    }
}
