/*
 * aclnnDistributeBarrierV2 / aclnnDistributeBarrier (V1) of the CANN simulator (part of libopapi.so).
 *
 * Semantics (../shared/spec/combine-addrmsnorm-barrier.md §9): an all-rank synchronisation on the HCCL
 * group `group`; xRef is only a dependency token (never read or written). Validation follows the op API
 * (161001/161002) and tiling (561002) rules; the group-length rule, which the real op_api only logs, is
 * enforced here with 161002.
 *
 * Run time (on the stream worker): the group is looked up by name with the stream's device; the kernel
 * reads timeOut (int32 read as uint32 microseconds) and elasticInfo from device memory, as the real kernel
 * does. Without elasticInfo[0] == 1 all worldSize ranks take part; with it, only ranks Table2[0..info[1]-1].
 * The wait fails when elapsed >= timeOut (so 0 fails at once); without timeOut it waits up to
 * sim_hang_timeout_us() (the real kernel would hang). Failures surface at stream sync as 507015.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aclnnop/aclnn_distribute_barrier_v2.h"
#include "op_moe_common.h" /* moe_check_comm_size */
#include "simcore.h"

/* Like the other MC2 ops, the op asks for the 16 MiB system workspace; the simulator does not touch it. */
#define BARRIER_WORKSPACE_BYTES ((uint64_t)16 << 20)
#define GROUP_NAME_MAX 128

typedef struct {
    char group[GROUP_NAME_MAX];
    int64_t world_size;
    const int32_t *time_out;      /* device pointer or NULL */
    const int32_t *elastic_info;  /* device pointer (4 + 2*worldSize int32) or NULL */
    const char *api;
} BarrierState;

static int xref_dtype_ok(int32_t dt)
{
    switch (dt) {
    case 27: case 1: case 0: case 12:        /* BF16, FLOAT16, FLOAT, BOOL */
    case 2: case 6: case 3: case 9:          /* INT8, INT16, INT32, INT64 */
    case 4: case 7: case 8: case 10:         /* UINT8, UINT16, UINT32, UINT64 */
        return 1;
    default:
        return 0;
    }
}

static void fmt_dims(char *buf, size_t cap, const struct aclTensor *t)
{
    size_t pos = (size_t)snprintf(buf, cap, "[");
    for (uint64_t i = 0; i < t->ndim && pos < cap; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
}

/* 1-D, int32, not FRACTAL_NZ, dim0 == want (tiling rule, 561002). */
static int32_t check_1d_int32(const char *api, const char *name, const struct aclTensor *t, int64_t want,
                              const char *want_text)
{
    char dims[160];
    fmt_dims(dims, sizeof dims, t);
    if (t->ndim != 1 || t->dims[0] != want) {
        sim_set_error("%s: %s must be 1-D with shape (%s,) = (%lld,), got shape %s (tiling check, "
                      "ACLNN_ERR_INNER_TILING_ERROR)", api, name, want_text, (long long)want, dims);
        return SIM_ACLNN_ERR_INNER_TILING_ERROR;
    }
    if (t->format == 29 /* ACL_FORMAT_FRACTAL_NZ */) {
        sim_set_error("%s: %s must not be in FRACTAL_NZ format (format=%d)", api, name, (int)t->format);
        return SIM_ACLNN_ERR_INNER_TILING_ERROR;
    }
    return 0;
}

static void free_state(void *p) { free(p); }

static int barrier_run(aclOpExecutor *ex, SimStream *s, void *workspace)
{
    (void)workspace;
    BarrierState *st = ex->state;
    int dev = sim_stream_device(s);
    SimComm *c = sim_comm_lookup(st->group, dev);
    if (!c) {
        sim_set_error("%s: no communicator of group \"%s\" lives on device %d (the stream's device); pass the name "
                      "HcclGetCommName returned for this rank's comm", st->api, st->group, dev);
        return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    int size = sim_comm_size(c), rank = sim_comm_rank(c);
    if (st->world_size != size) {
        sim_set_error("%s: worldSize=%lld but group \"%s\" has %d ranks", st->api, (long long)st->world_size,
                      st->group, size);
        return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    }

    int *parts = NULL;
    int nparts = size;
    if (st->elastic_info && st->elastic_info[0] == 1) {
        const int32_t *info = st->elastic_info;
        int32_t new_ws = info[1];
        if (new_ws < 1 || new_ws > size) {
            sim_set_error("%s: elasticInfo[1]=%d (ranks after scale-down) must be in 1..%d", st->api, (int)new_ws,
                          size);
            return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
        }
        const int32_t *table2 = info + 4 + size;
        parts = malloc((size_t)new_ws * sizeof(int));
        char *seen = calloc((size_t)size, 1);
        if (!parts || !seen) {
            free(parts);
            free(seen);
            return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
        }
        int self = 0;
        for (int i = 0; i < new_ws; i++) {
            int r = table2[i];
            if (r < 0 || r >= size || seen[r]) {
                sim_set_error("%s: elasticInfo Table2[%d]=%d is not a distinct rank of 0..%d", st->api, i, r, size - 1);
                free(parts);
                free(seen);
                return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
            }
            seen[r] = 1;
            if (r == rank) self = 1;
        }
        free(seen);
        if (!self) {
            sim_set_error("%s: rank %d of group \"%s\" is not in elasticInfo Table2[0..%d] (it was scaled down and "
                          "must not call the barrier)", st->api, rank, st->group, (int)new_ws - 1);
            free(parts);
            return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
        }
        /* the exchange wants ascending comm ranks */
        int k = 0;
        for (int r = 0; r < size; r++)
            for (int i = 0; i < new_ws; i++)
                if (table2[i] == r) parts[k++] = r;
        nparts = new_ws;
    }

    int64_t timeout_us = st->time_out ? (int64_t)(uint32_t)st->time_out[0] : sim_hang_timeout_us();
    int rc = sim_comm_exchange(c, parts, nparts, NULL, NULL, timeout_us, s);
    if (rc == 0 && st->time_out && timeout_us == 0) rc = SIM_ERR_TIMEOUT; /* elapsed >= 0 on the first poll */
    int result = 0;
    if (rc != 0) {
        int miss[64];
        int nmiss = sim_comm_missing(c, parts, nparts, miss, 64);
        char list[400];
        size_t pos = 0;
        list[0] = '\0';
        for (int i = 0; i < nmiss && i < 64 && pos + 16 < sizeof list; i++)
            pos += (size_t)snprintf(list + pos, sizeof list - pos, "%s%d", i ? "," : "", miss[i]);
        const char *m = sim_take_error();
        if (rc == SIM_ERR_TIMEOUT && st->time_out && timeout_us == 0)
            sim_set_error("%s: group \"%s\" rank %d: timeOut=0 us: the kernel checks elapsed < timeOut on its first "
                          "poll, so a zero time-out always aborts (reported as an AI Core exception); missing "
                          "rank(s) at that moment: [%s]", st->api, st->group, rank, list);
        else if (rc == SIM_ERR_TIMEOUT && st->time_out)
            sim_set_error("%s: group \"%s\" rank %d: timeOut=%lld us expired; missing rank(s): [%s] (the kernel "
                          "aborts when elapsed >= timeOut, reported as an AI Core exception)%s%s", st->api,
                          st->group, rank, (long long)timeout_us, list, m ? "; " : "", m ? m : "");
        else if (rc == SIM_ERR_TIMEOUT)
            sim_set_error("%s: group \"%s\" rank %d: ranks [%s] never arrived; the real kernel would hang, the "
                          "simulator gave up after ACLNN_SIM_HANG_TIMEOUT_MS=%lld ms%s%s", st->api, st->group, rank,
                          list, (long long)(timeout_us / 1000), m ? "; " : "", m ? m : "");
        else
            sim_set_error("%s: group \"%s\" rank %d: %s", st->api, st->group, rank, m ? m : "barrier failed");
        result = SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    free(parts);
    return result;
}

/* api: the first-phase function (for messages); op: the op name the executor and run-time messages use. */
static aclnnStatus barrier_prepare(const char *api, const char *op, const aclTensor *xRef, const aclTensor *timeOut,
                                   const aclTensor *elasticInfo, const char *group, int64_t worldSize,
                                   uint64_t *workspaceSize, aclOpExecutor **executor)
{
    /* op API layer: NULL checks (161001) */
    if (!xRef) {
        sim_set_error("%s: xRef is NULL (required, ACLNN_ERR_PARAM_NULLPTR)", api);
        return SIM_ACLNN_ERR_PARAM_NULLPTR;
    }
    if (!group) {
        sim_set_error("%s: group is NULL (required, ACLNN_ERR_PARAM_NULLPTR)", api);
        return SIM_ACLNN_ERR_PARAM_NULLPTR;
    }
    if (!workspaceSize || !executor) {
        sim_set_error("%s: %s is NULL", api, !workspaceSize ? "workspaceSize" : "executor");
        return SIM_ACLNN_ERR_PARAM_NULLPTR;
    }
    size_t glen = strnlen(group, GROUP_NAME_MAX);
    if (glen == 0 || glen >= GROUP_NAME_MAX) {
        sim_set_error("%s: group length must be in [1,127], got %s (the real op API only logs this and fails later; "
                      "the simulator rejects it)", api, glen == 0 ? "0 (empty string)" : ">= 128");
        return SIM_ACLNN_ERR_PARAM_INVALID;
    }
    const struct aclTensor *tensors[3] = {xRef, timeOut, elasticInfo};
    const char *names[3] = {"xRef", "timeOut", "elasticInfo"};
    for (int i = 0; i < 3; i++) {
        if (tensors[i] && !sim_tensor_valid(tensors[i])) {
            sim_set_error("%s: %s=%p is not a live aclTensor", api, names[i], (const void *)tensors[i]);
            return SIM_ACLNN_ERR_PARAM_NULLPTR;
        }
    }
    /* generated wrapper: dtypes and dims (161002) */
    if (!xref_dtype_ok(xRef->dtype)) {
        sim_set_error("%s: xRef dtype %d is not supported (BF16, FLOAT16, FLOAT, BOOL, INT8/16/32/64, "
                      "UINT8/16/32/64)", api, (int)xRef->dtype);
        return SIM_ACLNN_ERR_PARAM_INVALID;
    }
    if (xRef->ndim > 8) {
        sim_set_error("%s: xRef has %llu dims (0-8 supported)", api, (unsigned long long)xRef->ndim);
        return SIM_ACLNN_ERR_PARAM_INVALID;
    }
    if (timeOut && timeOut->dtype != 3) {
        sim_set_error("%s: timeOut dtype must be INT32 (3), got %d", api, (int)timeOut->dtype);
        return SIM_ACLNN_ERR_PARAM_INVALID;
    }
    if (elasticInfo && elasticInfo->dtype != 3) {
        sim_set_error("%s: elasticInfo dtype must be INT32 (3), got %d", api, (int)elasticInfo->dtype);
        return SIM_ACLNN_ERR_PARAM_INVALID;
    }
    /* tiling (561002) */
    if (worldSize < 2 || worldSize > 384) {
        sim_set_error("%s: worldSize=%lld is out of range [2,384] (tiling check)", api, (long long)worldSize);
        return SIM_ACLNN_ERR_INNER_TILING_ERROR;
    }
    int32_t rc;
    if (timeOut && (rc = check_1d_int32(api, "timeOut", timeOut, 1, "1")) != 0) return rc;
    if (elasticInfo && (rc = check_1d_int32(api, "elasticInfo", elasticInfo, 4 + 2 * worldSize,
                                            "4 + 2*worldSize")) != 0)
        return rc;
    if ((timeOut && !timeOut->data) || (elasticInfo && !elasticInfo->data)) {
        sim_set_error("%s: %s has no device data (tensorData is NULL)", api,
                      timeOut && !timeOut->data ? "timeOut" : "elasticInfo");
        return SIM_ACLNN_ERR_PARAM_NULLPTR;
    }

    if ((rc = moe_check_comm_size(api, group, "worldSize", worldSize, "barrier")) != 0) return rc;

    BarrierState *st = calloc(1, sizeof(*st));
    if (!st) return SIM_ACLNN_ERR_RUNTIME_ERROR;
    snprintf(st->group, sizeof st->group, "%s", group);
    st->world_size = worldSize;
    st->time_out = timeOut ? sim_tensor_ptr(timeOut) : NULL;
    st->elastic_info = elasticInfo ? sim_tensor_ptr(elasticInfo) : NULL;
    st->api = op;
    aclOpExecutor *ex = sim_executor_new(st->api, BARRIER_WORKSPACE_BYTES, barrier_run, free_state, st);
    if (!ex) return SIM_ACLNN_ERR_RUNTIME_ERROR;
    *workspaceSize = BARRIER_WORKSPACE_BYTES;
    *executor = ex;
    return 0;
}

#ifndef SIM_V2_ONLY
aclnnStatus aclnnDistributeBarrierV2GetWorkspaceSize(const aclTensor *xRef, const aclTensor *timeOut,
                                                     const aclTensor *elasticInfo, const char *group,
                                                     int64_t worldSize, uint64_t *workspaceSize,
                                                     aclOpExecutor **executor)
{
    sim_record_call("aclnnDistributeBarrierV2GetWorkspaceSize",
                    "xRef=%s timeOut=%s elasticInfo=%s group=%s worldSize=%lld workspaceSize=%p executor=%p",
                    sim_fmt_tensor(xRef), sim_fmt_tensor(timeOut), sim_fmt_tensor(elasticInfo), sim_fmt_str(group),
                    (long long)worldSize, (void *)workspaceSize, (void *)executor);
    return barrier_prepare("aclnnDistributeBarrierV2GetWorkspaceSize", "aclnnDistributeBarrierV2", xRef, timeOut,
                           elasticInfo, group, worldSize, workspaceSize, executor);
}

aclnnStatus aclnnDistributeBarrierV2(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                     aclrtStream stream)
{
    return sim_executor_launch("aclnnDistributeBarrierV2", executor, workspace, workspaceSize, stream);
}

#endif

aclnnStatus aclnnDistributeBarrierGetWorkspaceSize(aclTensor *xRef, const char *group, int64_t worldSize,
                                                   uint64_t *workspaceSize, aclOpExecutor **executor)
{
    sim_record_call("aclnnDistributeBarrierGetWorkspaceSize",
                    "xRef=%s group=%s worldSize=%lld workspaceSize=%p executor=%p", sim_fmt_tensor(xRef),
                    sim_fmt_str(group), (long long)worldSize, (void *)workspaceSize, (void *)executor);
    return barrier_prepare("aclnnDistributeBarrierGetWorkspaceSize", "aclnnDistributeBarrier", xRef, NULL, NULL,
                           group, worldSize, workspaceSize, executor);
}

aclnnStatus aclnnDistributeBarrier(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                   aclrtStream stream)
{
    return sim_executor_launch("aclnnDistributeBarrier", executor, workspace, workspaceSize, stream);
}
