/*
 * aclOpExecutor of the CANN simulator: created by an op's GetWorkspaceSize (sim_executor_new), run on a
 * stream by the second-phase call (sim_executor_launch). A normal executor is single use and freed after
 * its run; a repeatable one (aclSetAclOpExecutorRepeatable) lives until aclDestroyAclOpExecutor.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simcore.h"

typedef struct {
    aclOpExecutor pub;   /* first member: aclOpExecutor* and SimExecPriv* convert both ways */
    int inflight;        /* queued or running launches */
    int consumed;        /* a non-repeatable executor that was launched */
    int destroy_pending; /* aclDestroyAclOpExecutor while runs were queued */
    int32_t refuse;      /* sim_executor_refuse: the status every launch returns */
    char refuse_msg[512];
} SimExecPriv;

typedef struct {
    aclOpExecutor *ex;
    void *workspace;
} ExecTask;

static pthread_mutex_t g_ex_mu = PTHREAD_MUTEX_INITIALIZER;

static int ex_live(const aclOpExecutor *ex)
{
    return ex && sim_track_has(SIM_OBJ_EXECUTOR, ex) && ex->magic == SIM_EXECUTOR_MAGIC;
}

SIM_API aclOpExecutor *sim_executor_new(const char *op_name, uint64_t workspace_size,
                                        int (*run)(aclOpExecutor *, SimStream *, void *),
                                        void (*free_state)(void *), void *state)
{
    SimExecPriv *p = calloc(1, sizeof(*p));
    if (!p) {
        sim_set_error("%s: out of memory creating the executor", op_name ? op_name : "aclnn");
        if (free_state && state) free_state(state);
        return NULL;
    }
    p->pub.magic = SIM_EXECUTOR_MAGIC;
    p->pub.op_name = op_name;
    p->pub.workspace_size = workspace_size;
    p->pub.run = run;
    p->pub.free_state = free_state;
    p->pub.state = state;
    sim_track_add(SIM_OBJ_EXECUTOR, p, sizeof(*p));
    return &p->pub;
}

SIM_API void sim_executor_free(aclOpExecutor *ex)
{
    if (!ex || sim_track_remove(SIM_OBJ_EXECUTOR, ex) != 0) return;
    if (ex->free_state && ex->state) ex->free_state(ex->state);
    ex->state = NULL;
    ex->magic = 0;
    free((SimExecPriv *)ex);
}

static int exec_task(void *arg, SimStream *s)
{
    ExecTask *t = arg;
    aclOpExecutor *ex = t->ex;
    int rc = 0;
    if (ex->run) rc = ex->run(ex, s, t->workspace);
    SimExecPriv *p = (SimExecPriv *)ex;
    pthread_mutex_lock(&g_ex_mu);
    p->inflight--;
    int free_it = p->inflight == 0 && (p->consumed || p->destroy_pending);
    pthread_mutex_unlock(&g_ex_mu);
    if (free_it) sim_executor_free(ex);
    return rc;
}

SIM_API int32_t sim_executor_launch(const char *api, aclOpExecutor *ex, void *workspace, uint64_t workspace_size,
                                    void *stream)
{
    if (!api) api = "aclnn";
    sim_record_call(api, "workspace=%p workspaceSize=%llu executor=%p stream=%p", workspace,
                    (unsigned long long)workspace_size, (void *)ex, stream);
    if (!ex) {
        sim_set_error("%s: executor is NULL (pass the executor returned by %sGetWorkspaceSize)", api, api);
        return SIM_ACLNN_ERR_PARAM_NULLPTR;
    }
    SimExecPriv *p = (SimExecPriv *)ex;
    pthread_mutex_lock(&g_ex_mu);
    int live = ex_live(ex);
    int bad = !live || p->consumed || p->destroy_pending;
    if (!bad && !ex->repeatable) p->consumed = 1; /* single use from here on, whatever happens */
    pthread_mutex_unlock(&g_ex_mu);
    if (bad) {
        sim_set_error("%s: executor %p is not a live executor (already used, destroyed, or never created); a "
                      "non-repeatable executor runs once", api, (void *)ex);
        return SIM_ACLNN_ERR_PARAM_INVALID;
    }

    int32_t rc = 0;
    SimStream *s = NULL;
    if (ex->workspace_size > 0 && !workspace) {
        sim_set_error("%s: workspace is NULL but the op needs %llu bytes (workspaceSize from GetWorkspaceSize)",
                      api, (unsigned long long)ex->workspace_size);
        rc = SIM_ACLNN_ERR_PARAM_NULLPTR;
    } else if (workspace_size < ex->workspace_size) {
        sim_set_error("%s: workspaceSize=%llu is smaller than the %llu bytes GetWorkspaceSize asked for", api,
                      (unsigned long long)workspace_size, (unsigned long long)ex->workspace_size);
        rc = SIM_ACLNN_ERR_PARAM_INVALID;
    } else if (ex->workspace_size > 0 && !sim_buffer_covers(workspace, ex->workspace_size)) {
        sim_set_error("%s: workspace %p (+%llu bytes) is not inside one aclrtMalloc device buffer", api, workspace,
                      (unsigned long long)ex->workspace_size);
        rc = SIM_ACLNN_ERR_PARAM_INVALID;
    } else if (p->refuse) {
        sim_set_error("%s: %s", api, p->refuse_msg);
        rc = p->refuse;
    } else if (!(s = sim_stream_resolve(stream))) {
        if (stream)
            sim_set_error("%s: stream %p is not a live stream", api, stream);
        else
            sim_set_error("%s: NULL stream means the default stream of the current device, but this thread has no "
                          "device (call aclrtSetDevice or aclrtSetCurrentContext first)", api);
        rc = SIM_ACLNN_ERR_RUNTIME_ERROR;
    }
    if (rc == 0) {
        ExecTask *t = malloc(sizeof(*t));
        if (!t) {
            rc = SIM_ACLNN_ERR_RUNTIME_ERROR;
        } else {
            t->ex = ex;
            t->workspace = workspace;
            pthread_mutex_lock(&g_ex_mu);
            p->inflight++;
            pthread_mutex_unlock(&g_ex_mu);
            if (sim_stream_enqueue(s, exec_task, t, free) != 0) {
                pthread_mutex_lock(&g_ex_mu);
                p->inflight--;
                pthread_mutex_unlock(&g_ex_mu);
                rc = SIM_ACLNN_ERR_RUNTIME_ERROR;
            } else {
                return 0;
            }
        }
    }
    /* failed launch: a consumed (non-repeatable) executor is released now */
    pthread_mutex_lock(&g_ex_mu);
    int free_it = p->consumed && p->inflight == 0;
    pthread_mutex_unlock(&g_ex_mu);
    if (free_it) sim_executor_free(ex);
    return rc;
}

SIM_API void sim_executor_refuse(aclOpExecutor *ex, int32_t status, const char *fmt, ...)
{
    SimExecPriv *p = (SimExecPriv *)ex;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->refuse_msg, sizeof p->refuse_msg, fmt, ap);
    va_end(ap);
    p->refuse = status;
}

SIM_API int32_t sim_executor_set_repeatable(aclOpExecutor *ex)
{
    if (!ex) {
        sim_set_error("aclSetAclOpExecutorRepeatable: executor is NULL");
        return SIM_ACLNN_ERR_INNER_NULLPTR;
    }
    pthread_mutex_lock(&g_ex_mu);
    SimExecPriv *p = (SimExecPriv *)ex;
    int ok = ex_live(ex) && !p->consumed && !p->destroy_pending;
    if (ok) ex->repeatable = 1;
    pthread_mutex_unlock(&g_ex_mu);
    if (!ok) {
        sim_set_error("aclSetAclOpExecutorRepeatable: %p is not a live, unused executor (call it right after "
                      "GetWorkspaceSize)", (void *)ex);
        return SIM_ACLNN_ERR_INNER_NULLPTR;
    }
    return 0;
}

SIM_API int32_t sim_executor_destroy(aclOpExecutor *ex)
{
    if (!ex) {
        sim_set_error("aclDestroyAclOpExecutor: executor is NULL");
        return SIM_ACLNN_ERR_INNER_NULLPTR;
    }
    pthread_mutex_lock(&g_ex_mu);
    SimExecPriv *p = (SimExecPriv *)ex;
    int live = ex_live(ex) && !p->destroy_pending && !p->consumed;
    int free_now = 0;
    if (live) {
        if (p->inflight > 0) p->destroy_pending = 1;
        else free_now = 1;
    }
    pthread_mutex_unlock(&g_ex_mu);
    if (!live) {
        sim_set_error("aclDestroyAclOpExecutor: %p is not a live executor (destroyed twice, or a non-repeatable "
                      "executor that its aclnnXxx call already released)", (void *)ex);
        return SIM_ACLNN_ERR_INNER_NULLPTR;
    }
    if (free_now) sim_executor_free(ex);
    return 0;
}
