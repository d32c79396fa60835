/*
 * Streams of the CANN simulator: each stream is a FIFO of tasks run in order by one worker thread.
 * The first task error (and its message) is kept until the next synchronize. Destroying a stream or
 * resetting its device raises a cancel flag that long waits (collectives) poll, so they give up.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simcore.h"

#define SIM_STREAM_MAGIC 0x5354524Du
#define SIM_MAX_DEVICES 1024
#define WORKER_STACK ((size_t)8 << 20)

typedef struct SimTask {
    SimTaskFn fn;
    void *arg;
    void (*free_arg)(void *);
    struct SimTask *next;
} SimTask;

struct SimStream {
    uint32_t magic;
    int device;
    int is_default;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;   /* worker waits for tasks */
    pthread_cond_t cv_idle;   /* synchronizers wait for pending == 0 */
    SimTask *head, *tail;
    int64_t pending;          /* queued + running */
    int stop;
    int cancel;               /* > 0 while destroy/reset is draining the queue */
    int first_error;
    char *first_msg;
    int refs;
    pthread_t worker;
    void *stack_mem;          /* multi-process mode: the worker's stack, in shared device memory */
    struct SimStream *reg_prev, *reg_next;
};

static pthread_mutex_t g_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static SimStream *g_reg_head;
static SimStream *g_default[SIM_MAX_DEVICES];

static void deadline_after_ms(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void stream_release(SimStream *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_idle);
    free(s->first_msg);
    s->magic = 0;
    free(s);
}

static void *worker_main(void *p)
{
    SimStream *s = p;
    sim_set_current_device(s->device);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stop) pthread_cond_wait(&s->cv_work, &s->mu);
        if (!s->head) break; /* stop requested and queue drained */
        SimTask *t = s->head;
        s->head = t->next;
        if (!s->head) s->tail = NULL;
        pthread_mutex_unlock(&s->mu);

        sim_take_error(); /* start each task with a clean message slot */
        int rc = t->fn(t->arg, s);
        const char *msg = rc ? sim_take_error() : (sim_take_error(), NULL);
        char *copy = NULL;
        if (rc) {
            char dflt[128];
            if (!msg) {
                snprintf(dflt, sizeof dflt, "a task on the stream of device %d failed with code %d", s->device, rc);
                msg = dflt;
            }
            copy = strdup(msg);
        }
        if (t->free_arg) t->free_arg(t->arg);
        free(t);

        pthread_mutex_lock(&s->mu);
        if (rc && !s->first_error) {
            s->first_error = rc;
            s->first_msg = copy;
            copy = NULL;
        }
        free(copy);
        if (--s->pending == 0) pthread_cond_broadcast(&s->cv_idle);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static SimStream *stream_new(int device, int is_default)
{
    SimStream *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->magic = SIM_STREAM_MAGIC;
    s->device = device;
    s->is_default = is_default;
    s->refs = 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv_idle, &ca);
    pthread_condattr_destroy(&ca);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (sim_mp_enabled()) {
        /* kernels publish pointers to their stack frames (sim_comm_exchange payloads): in multi-process
         * mode the stack must be readable by the peers, so it lives in this device's shared memory */
        char *mem = sim_arena_alloc(device, WORKER_STACK + 4096);
        if (mem) {
            s->stack_mem = mem;
            char *aligned = (char *)(((uintptr_t)mem + 4095) & ~(uintptr_t)4095);
            pthread_attr_setstack(&attr, aligned, WORKER_STACK);
        }
    }
    int rc = pthread_create(&s->worker, &attr, worker_main, s);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        sim_set_error("cannot start a stream worker thread for device %d", device);
        if (s->stack_mem) sim_arena_free(s->stack_mem);
        s->stack_mem = NULL;
        stream_release(s);
        return NULL;
    }
    return s;
}

static void reg_link_locked(SimStream *s)
{
    s->reg_prev = NULL;
    s->reg_next = g_reg_head;
    if (g_reg_head) g_reg_head->reg_prev = s;
    g_reg_head = s;
}

static void reg_unlink_locked(SimStream *s)
{
    if (s->reg_prev) s->reg_prev->reg_next = s->reg_next;
    else if (g_reg_head == s) g_reg_head = s->reg_next;
    if (s->reg_next) s->reg_next->reg_prev = s->reg_prev;
    s->reg_prev = s->reg_next = NULL;
}

SIM_API SimStream *sim_stream_create(int device)
{
    if (device < 0 || device >= sim_device_count()) {
        sim_set_error("cannot create a stream: device %d is not valid (the simulator has %d devices)", device,
                      sim_device_count());
        return NULL;
    }
    SimStream *s = stream_new(device, 0);
    if (!s) return NULL;
    pthread_mutex_lock(&g_reg_mu);
    reg_link_locked(s);
    pthread_mutex_unlock(&g_reg_mu);
    sim_track_add_tagged(SIM_OBJ_STREAM, s, sizeof(*s), device);
    return s;
}

SIM_API SimStream *sim_stream_resolve(void *stream)
{
    if (stream) {
        SimStream *s = stream;
        if (!sim_track_has(SIM_OBJ_STREAM, s) || s->magic != SIM_STREAM_MAGIC) return NULL;
        return s;
    }
    int dev = sim_current_device();
    if (dev < 0 || dev >= sim_device_count() || dev >= SIM_MAX_DEVICES) return NULL;
    pthread_mutex_lock(&g_reg_mu);
    SimStream *s = g_default[dev];
    if (!s) {
        s = stream_new(dev, 1);
        if (s) {
            reg_link_locked(s);
            g_default[dev] = s;
        }
    }
    pthread_mutex_unlock(&g_reg_mu);
    return s;
}

SIM_API int sim_stream_enqueue(SimStream *s, SimTaskFn fn, void *arg, void (*free_arg)(void *))
{
    if (!s || s->magic != SIM_STREAM_MAGIC || !fn) {
        sim_set_error("sim_stream_enqueue: invalid stream or task");
        if (free_arg) free_arg(arg);
        return SIM_ACL_ERROR_RT_PARAM_INVALID;
    }
    SimTask *t = malloc(sizeof(*t));
    if (!t) {
        if (free_arg) free_arg(arg);
        return 207001; /* ACL_ERROR_RT_MEMORY_ALLOCATION */
    }
    t->fn = fn;
    t->arg = arg;
    t->free_arg = free_arg;
    t->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        free(t);
        if (free_arg) free_arg(arg);
        sim_set_error("the stream is being destroyed; no new work can be queued");
        return SIM_ACL_ERROR_RT_PARAM_INVALID;
    }
    if (s->tail) s->tail->next = t;
    else s->head = t;
    s->tail = t;
    s->pending++;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

SIM_API int sim_stream_device(const SimStream *s)
{
    return s ? s->device : -1;
}

SIM_API int sim_stream_cancelled(const SimStream *s)
{
    return s ? __atomic_load_n(&s->cancel, __ATOMIC_ACQUIRE) > 0 : 0;
}

/* Waits for pending == 0 with s->mu held; returns 0 or ETIMEDOUT. */
static int wait_idle_locked(SimStream *s, int64_t timeout_ms)
{
    if (timeout_ms < 0) {
        while (s->pending > 0) pthread_cond_wait(&s->cv_idle, &s->mu);
        return 0;
    }
    struct timespec dl;
    deadline_after_ms(&dl, timeout_ms);
    while (s->pending > 0) {
        if (timeout_ms == 0) return ETIMEDOUT;
        int rc = pthread_cond_timedwait(&s->cv_idle, &s->mu, &dl);
        if (rc == ETIMEDOUT && s->pending > 0) return ETIMEDOUT;
    }
    return 0;
}

SIM_API int sim_stream_synchronize(SimStream *s, int64_t timeout_ms)
{
    if (!s || s->magic != SIM_STREAM_MAGIC) {
        sim_set_error("synchronize: invalid stream");
        return SIM_ACL_ERROR_RT_PARAM_INVALID;
    }
    pthread_mutex_lock(&s->mu);
    if (wait_idle_locked(s, timeout_ms) != 0) {
        int64_t pending = s->pending;
        pthread_mutex_unlock(&s->mu);
        sim_set_error("stream synchronize timed out after %lld ms with %lld task(s) still pending on device %d",
                      (long long)timeout_ms, (long long)pending, s->device);
        return SIM_ACL_ERROR_RT_STREAM_SYNC_TIMEOUT;
    }
    int rc = s->first_error;
    char *msg = s->first_msg;
    s->first_error = 0;
    s->first_msg = NULL;
    pthread_mutex_unlock(&s->mu);
    if (rc) sim_set_error("%s", msg ? msg : "stream task failed");
    free(msg);
    return rc;
}

SIM_API void sim_stream_destroy(SimStream *s)
{
    if (!s || s->magic != SIM_STREAM_MAGIC) return;
    sim_track_remove(SIM_OBJ_STREAM, s);
    pthread_mutex_lock(&g_reg_mu);
    reg_unlink_locked(s);
    if (s->is_default && s->device >= 0 && s->device < SIM_MAX_DEVICES && g_default[s->device] == s)
        g_default[s->device] = NULL;
    pthread_mutex_unlock(&g_reg_mu);

    pthread_mutex_lock(&s->mu);
    __atomic_add_fetch(&s->cancel, 1, __ATOMIC_ACQ_REL);
    s->stop = 1;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->worker, NULL);
    if (s->stack_mem) sim_arena_free(s->stack_mem);
    s->stack_mem = NULL;
    stream_release(s);
}

/* Takes a reference on every registered stream of `device` (device < 0: all). */
static SimStream **collect_streams(int device, size_t *count)
{
    pthread_mutex_lock(&g_reg_mu);
    size_t n = 0;
    for (SimStream *s = g_reg_head; s; s = s->reg_next)
        if (device < 0 || s->device == device) n++;
    SimStream **v = n ? malloc(n * sizeof(*v)) : NULL;
    size_t i = 0;
    if (v) {
        for (SimStream *s = g_reg_head; s; s = s->reg_next) {
            if (device < 0 || s->device == device) {
                __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
                v[i++] = s;
            }
        }
    }
    pthread_mutex_unlock(&g_reg_mu);
    *count = i;
    return v;
}

SIM_API int sim_device_synchronize(int device, int64_t timeout_ms)
{
    size_t n = 0;
    SimStream **v = collect_streams(device, &n);
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = sim_stream_synchronize(v[i], timeout_ms);
        if (rc && !first) first = rc;
        stream_release(v[i]);
    }
    free(v);
    return first;
}

SIM_API void sim_device_reset(int device)
{
    size_t n = 0;
    SimStream **v = collect_streams(device, &n);
    for (size_t i = 0; i < n; i++) __atomic_add_fetch(&v[i]->cancel, 1, __ATOMIC_ACQ_REL);
    for (size_t i = 0; i < n; i++) {
        SimStream *s = v[i];
        pthread_mutex_lock(&s->mu);
        wait_idle_locked(s, -1);
        s->first_error = 0;
        free(s->first_msg);
        s->first_msg = NULL;
        __atomic_sub_fetch(&s->cancel, 1, __ATOMIC_ACQ_REL);
        pthread_mutex_unlock(&s->mu);
        stream_release(s);
    }
    free(v);
    SimStream *d = NULL;
    if (device >= 0 && device < SIM_MAX_DEVICES) {
        pthread_mutex_lock(&g_reg_mu);
        d = g_default[device];
        g_default[device] = NULL;
        pthread_mutex_unlock(&g_reg_mu);
    }
    if (d) sim_stream_destroy(d);
}
