/*
 * Helpers of the MoE end-to-end C tests: a world of simulated devices (one context + stream each),
 * communicators, device tensors, and one-call wrappers of the three MoE operators that copy every
 * output back to the host. Header-only (static functions); include once per test program.
 */
#ifndef MOE_E2E_COMMON_H
#define MOE_E2E_COMMON_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/acl.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_combine_v4.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v4.h"
#include "aclsim.h"
#include "hccl/hccl.h"

static int g_checks, g_fail;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
#define CHECK(cond, ...)                                        \
    do {                                                        \
        int ok_ = (cond) ? 1 : 0;                               \
        pthread_mutex_lock(&g_mu);                              \
        g_checks++;                                             \
        if (!ok_) {                                             \
            g_fail++;                                           \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);         \
            printf(__VA_ARGS__);                                \
            printf("\n");                                       \
            fflush(stdout);                                     \
        }                                                       \
        pthread_mutex_unlock(&g_mu);                            \
    } while (0)

/* ---- numbers ---------------------------------------------------------------------------------- */
static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint16_t bf(float f) { /* RNE, finite inputs only */
    uint32_t u = f2u(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float fb(uint16_t h) { return u2f((uint32_t)h << 16); }

/* ---- world -------------------------------------------------------------------------------------- */
#define MAXDEV 8
static aclrtContext g_ctx[MAXDEV];
static aclrtStream g_stream[MAXDEV];

static void world_open(int n) {
    CHECK(aclInit(NULL) == 0, "aclInit");
    for (int d = 0; d < n; d++) {
        CHECK(aclrtSetDevice(d) == 0, "aclrtSetDevice %d", d);
        CHECK(aclrtCreateContext(&g_ctx[d], d) == 0, "aclrtCreateContext %d", d);
        CHECK(aclrtCreateStream(&g_stream[d]) == 0, "aclrtCreateStream %d", d);
    }
}

static void world_close(int n) {
    for (int d = 0; d < n; d++) {
        CHECK(aclrtSetCurrentContext(g_ctx[d]) == 0, "set ctx");
        CHECK(aclrtDestroyStream(g_stream[d]) == 0, "destroy stream");
        CHECK(aclrtDestroyContext(g_ctx[d]) == 0, "destroy ctx");
        CHECK(aclrtResetDevice(d) == 0, "reset device");
    }
    aclFinalize();
}

typedef struct {
    char name[128];
    HcclComm comm[MAXDEV]; /* by comm rank */
    int n;
} Group;

static void group_make(Group *g, int n, const int *devs) {
    memset(g, 0, sizeof *g);
    g->n = n;
    CHECK(HcclCommInitAll((uint32_t)n, (int32_t *)devs, g->comm) == 0, "HcclCommInitAll");
    CHECK(HcclGetCommName(g->comm[0], g->name) == 0, "HcclGetCommName");
}

static void group_free(Group *g) {
    for (int i = 0; i < g->n; i++) CHECK(HcclCommDestroy(g->comm[i]) == 0, "HcclCommDestroy");
}

/* run fn(rank, arg) on one thread per rank in ranks[0..n), each bound to device devs[i] */
typedef void (*RankFn)(int idx, void *arg);
typedef struct {
    int idx, dev;
    RankFn fn;
    void *arg;
} ThreadArg;
static void *thread_main(void *p) {
    ThreadArg *t = (ThreadArg *)p;
    CHECK(aclrtSetCurrentContext(g_ctx[t->dev]) == 0, "aclrtSetCurrentContext");
    t->fn(t->idx, t->arg);
    return NULL;
}
static void run_ranks(int n, const int *devs, RankFn fn, void *arg) {
    pthread_t th[MAXDEV];
    ThreadArg ta[MAXDEV];
    for (int i = 0; i < n; i++) {
        ta[i] = (ThreadArg){i, devs[i], fn, arg};
        pthread_create(&th[i], NULL, thread_main, &ta[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
}

/* ---- device tensors ---------------------------------------------------------------------------- */
typedef struct {
    void *dev;
    aclTensor *t;
    size_t bytes;
} DT;

static size_t dt_size(aclDataType dt) {
    switch (dt) {
    case ACL_FLOAT: case ACL_INT32: return 4;
    case ACL_INT64: return 8;
    case ACL_BF16: case ACL_FLOAT16: return 2;
    default: return 1;
    }
}

/* host == NULL: fill with byte `fill` (the "untouched" sentinel) */
static DT dt_new(const void *host, aclDataType dtype, int nd, const int64_t *shape, int fill) {
    DT d = {0};
    int64_t n = 1, strides[8];
    for (int i = nd - 1; i >= 0; i--) {
        strides[i] = n;
        n *= shape[i];
    }
    d.bytes = (size_t)n * dt_size(dtype);
    size_t alloc = d.bytes ? d.bytes : 1;
    CHECK(aclrtMalloc(&d.dev, alloc, ACL_MEM_MALLOC_HUGE_FIRST) == 0, "aclrtMalloc");
    if (host && d.bytes) CHECK(aclrtMemcpy(d.dev, alloc, host, d.bytes, ACL_MEMCPY_HOST_TO_DEVICE) == 0, "H2D");
    else CHECK(aclrtMemset(d.dev, alloc, fill, alloc) == 0, "memset");
    d.t = aclCreateTensor(shape, (uint64_t)nd, dtype, strides, 0, ACL_FORMAT_ND, shape, (uint64_t)nd, d.dev);
    CHECK(d.t != NULL, "aclCreateTensor");
    return d;
}
static DT dt_1d(const void *host, aclDataType dtype, int64_t n0, int fill) { return dt_new(host, dtype, 1, &n0, fill); }
static DT dt_2d(const void *host, aclDataType dtype, int64_t n0, int64_t n1, int fill) {
    int64_t s[2] = {n0, n1};
    return dt_new(host, dtype, 2, s, fill);
}
static DT dt_3d(const void *host, aclDataType dtype, int64_t n0, int64_t n1, int64_t n2, int fill) {
    int64_t s[3] = {n0, n1, n2};
    return dt_new(host, dtype, 3, s, fill);
}
static void *dt_read(DT *d) {
    void *h = malloc(d->bytes ? d->bytes : 1);
    if (d->bytes) CHECK(aclrtMemcpy(h, d->bytes, d->dev, d->bytes, ACL_MEMCPY_DEVICE_TO_HOST) == 0, "D2H");
    return h;
}
static void dt_free(DT *d) {
    if (d->t) CHECK(aclDestroyTensor(d->t) == 0, "aclDestroyTensor");
    if (d->dev) CHECK(aclrtFree(d->dev) == 0, "aclrtFree");
    memset(d, 0, sizeof *d);
}

#define SENTINEL 0x5A
static int untouched(const void *p, size_t bytes) {
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = 0; i < bytes; i++)
        if (c[i] != SENTINEL) return 0;
    return 1;
}

/* the int64 (ep,) performanceInfo in d, copied back over host (NULL: nothing) */
static void read_perf(DT *d, int64_t *host, int64_t ep) {
    if (!host) return;
    int64_t *p = (int64_t *)dt_read(d);
    memcpy(host, p, sizeof(int64_t) * (size_t)ep);
    free(p);
}

/* one check per object kind: nothing is left alive (call after world_close) */
static void check_no_live_objects(void) {
    int64_t live[ACLSIM_OBJ_KIND_COUNT];
    aclsimLiveObjects(live, ACLSIM_OBJ_KIND_COUNT);
    for (int i = 0; i < ACLSIM_OBJ_KIND_COUNT; i++)
        CHECK(live[i] == 0, "leak: %lld live %s objects", (long long)live[i], aclsimObjectKindName(i));
}

/* free(p) and clear p */
#define FREE_NULL(p) (free(p), (p) = NULL)

/* the outcome of a one-call wrapper */
typedef struct {
    int gws, run;   /* GetWorkspaceSize status; run + synchronize status, -1 when GetWorkspaceSize failed */
    char msg[1024]; /* aclGetRecentErrMsg of the failing phase */
    int gws_only;   /* set by the caller: destroy the executor instead of launching it */
} CallStatus;

/* run a prepared executor on this thread's device stream and synchronise; returns the run status */
static int launch(aclnnStatus (*fn)(void *, uint64_t, aclOpExecutor *, aclrtStream), uint64_t ws,
                  aclOpExecutor *ex, int dev, char *msg, size_t msglen) {
    void *wsp = NULL;
    if (ws) CHECK(aclrtMalloc(&wsp, ws, ACL_MEM_MALLOC_HUGE_FIRST) == 0, "workspace malloc");
    int rc = fn(wsp, ws, ex, g_stream[dev]);
    if (rc == 0) rc = aclrtSynchronizeStreamWithTimeout(g_stream[dev], 60000);
    if (rc && msg) {
        const char *m = aclGetRecentErrMsg();
        snprintf(msg, msglen, "%s", m ? m : "");
    }
    if (wsp) aclrtFree(wsp);
    return rc;
}

/* after GetWorkspaceSize returned st->gws: launch the executor, or keep the GetWorkspaceSize error */
static void call_finish(CallStatus *st, aclnnStatus (*fn)(void *, uint64_t, aclOpExecutor *, aclrtStream), uint64_t ws,
                        aclOpExecutor *ex, int dev) {
    st->run = -1;
    if (st->gws == 0 && st->gws_only) {
        CHECK(aclDestroyAclOpExecutor(ex) == 0, "aclDestroyAclOpExecutor");
    } else if (st->gws == 0) {
        st->run = launch(fn, ws, ex, dev, st->msg, sizeof st->msg);
    } else {
        const char *m = aclGetRecentErrMsg();
        snprintf(st->msg, sizeof st->msg, "%s", m ? m : "");
    }
}

/* ---- DispatchV3 --------------------------------------------------------------------------------- */
typedef struct {
    /* inputs */
    int64_t bs, h, k;
    aclDataType xdt;
    const uint16_t *x;
    const int32_t *ids;
    const float *scales;
    int64_t scales_rows;
    const uint8_t *mask;
    int mask_nd;
    const float *expert_scales;
    const int32_t *elastic;
    int64_t elastic_len;
    const char *group_ep, *group_tp, *comm_alg;
    int64_t ep, rank, M, tp, tp_rank, S, R, quant, gbs, tn_type, zero, copy, cnst;
    int64_t ex_rows, assist_len, tn_len, er_len, tp_len, dyn_len;
    int dev;
    int version;           /* 0 or 3: DispatchV3; 4: DispatchV4 (with perf); 2: DispatchV2 */
    int64_t *perf;         /* V4: performanceInfo (ep int64) in, then out; NULL passes NULL */
    int no_tp_recv;        /* pass a NULL tpRecvCountsOut */
    /* outputs (malloc'd host copies) */
    void *expand_x;
    float *dyn, *xs;       /* xs: expandScalesOut */
    int32_t *assist, *er, *tr;
    int64_t *tn;
    CallStatus st;
} DCall;

static void dcall_free(DCall *c) {
    FREE_NULL(c->expand_x);
    FREE_NULL(c->dyn);
    FREE_NULL(c->assist);
    FREE_NULL(c->er);
    FREE_NULL(c->tr);
    FREE_NULL(c->tn);
    FREE_NULL(c->xs);
}

static void do_dispatch(DCall *c) {
    const aclDataType exdt = c->quant ? ACL_INT8 : c->xdt;
    DT x = dt_2d(c->x, c->xdt, c->bs, c->h, 0), ids = dt_2d(c->ids, ACL_INT32, c->bs, c->k, 0);
    DT sc = {0}, mk = {0}, es = {0}, el = {0};
    if (c->scales) sc = dt_2d(c->scales, ACL_FLOAT, c->scales_rows, c->h, 0);
    if (c->mask) mk = c->mask_nd == 1 ? dt_1d(c->mask, ACL_BOOL, c->bs, 0) : dt_2d(c->mask, ACL_BOOL, c->bs, c->k, 0);
    if (c->expert_scales) es = dt_2d(c->expert_scales, ACL_FLOAT, c->bs, c->k, 0);
    if (c->elastic) el = dt_1d(c->elastic, ACL_INT32, c->elastic_len, 0);
    DT ex = dt_2d(NULL, exdt, c->ex_rows, c->h, SENTINEL);
    DT dyn = dt_1d(NULL, ACL_FLOAT, c->dyn_len ? c->dyn_len : c->ex_rows, SENTINEL);
    DT as = dt_1d(NULL, ACL_INT32, c->assist_len, SENTINEL);
    DT tn = dt_1d(NULL, ACL_INT64, c->tn_len, SENTINEL);
    DT er = dt_1d(NULL, ACL_INT32, c->er_len, SENTINEL);
    DT tr = c->no_tp_recv ? (DT){0} : dt_1d(NULL, ACL_INT32, c->tp_len, SENTINEL);
    DT xs = dt_1d(NULL, ACL_FLOAT, c->ex_rows, SENTINEL);
    DT pf = c->perf ? dt_1d(c->perf, ACL_INT64, c->ep, 0) : (DT){0};
    uint64_t ws = 0;
    aclOpExecutor *exe = NULL;
    if (c->version == 4) {
        c->st.gws = aclnnMoeDistributeDispatchV4GetWorkspaceSize(
            x.t, ids.t, sc.t, mk.t, es.t, el.t, pf.t, c->group_ep, c->ep, c->rank, c->M, c->group_tp, c->tp, c->tp_rank,
            0, c->S, c->R, c->quant, c->gbs, c->tn_type, c->comm_alg, c->zero, c->copy, c->cnst, ex.t, dyn.t, as.t, tn.t,
            er.t, tr.t, xs.t, &ws, &exe);
        call_finish(&c->st, aclnnMoeDistributeDispatchV4, ws, exe, c->dev);
    } else if (c->version == 2) {
        c->st.gws = aclnnMoeDistributeDispatchV2GetWorkspaceSize(
            x.t, ids.t, sc.t, mk.t, es.t, c->group_ep, c->ep, c->rank, c->M, c->group_tp, c->tp, c->tp_rank, 0, c->S,
            c->R, c->quant, c->gbs, c->tn_type, c->comm_alg, ex.t, dyn.t, as.t, tn.t, er.t, tr.t, xs.t, &ws, &exe);
        call_finish(&c->st, aclnnMoeDistributeDispatchV2, ws, exe, c->dev);
    } else {
        c->st.gws = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
            x.t, ids.t, sc.t, mk.t, es.t, el.t, c->group_ep, c->ep, c->rank, c->M, c->group_tp, c->tp, c->tp_rank, 0,
            c->S, c->R, c->quant, c->gbs, c->tn_type, c->comm_alg, c->zero, c->copy, c->cnst, ex.t, dyn.t, as.t, tn.t,
            er.t, tr.t, xs.t, &ws, &exe);
        call_finish(&c->st, aclnnMoeDistributeDispatchV3, ws, exe, c->dev);
    }
    read_perf(&pf, c->perf, c->ep);
    c->xs = (float *)dt_read(&xs);
    c->expand_x = dt_read(&ex);
    c->dyn = (float *)dt_read(&dyn);
    c->assist = (int32_t *)dt_read(&as);
    c->tn = (int64_t *)dt_read(&tn);
    c->er = (int32_t *)dt_read(&er);
    c->tr = (int32_t *)dt_read(&tr);
    DT *all[] = {&x, &ids, &sc, &mk, &es, &el, &ex, &dyn, &as, &tn, &er, &tr, &xs, &pf};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dt_free(all[i]);
}

/* ---- CombineV3 / CombineAddRmsNormV2 -------------------------------------------------------------- */
typedef struct {
    int arn;
    aclDataType xdt;
    int64_t bs, h, k;
    const uint16_t *expand_x;
    int64_t ex_rows;
    const int32_t *ids;
    const float *w;
    const int32_t *assist;
    int64_t assist_len;
    const int32_t *ep_send;
    int64_t es_len;
    const int32_t *tp_send; /* NULL: pass a NULL tensor */
    int64_t ts_len;
    const uint8_t *mask;
    int mask_nd;
    const uint16_t *shared_x; /* (bs, h) */
    int shared_x_3d;
    const int32_t *elastic;
    int64_t elastic_len;
    const uint16_t *ori_x, *a1, *a2, *v;
    const uint16_t *residual, *gamma;
    float eps;
    const char *group_ep, *group_tp;
    int64_t ep, rank, M, tp, tp_rank, S, R, gbs, cqm, zero, copy, cnst;
    int dev;
    int version;           /* 0: CombineV3 / CombineAddRmsNormV2; 4: CombineV4; 2: CombineV2 / AddRmsNorm V1 */
    int alpha_2d;          /* constExpertAlpha1/2 are (cnst, h) instead of (cnst,) */
    int no_scales;         /* expertScales is a (bs, 0) tensor (no expert scales, CANN 9.1.0) */
    int64_t *perf;         /* V4: performanceInfo (ep int64) in, then out */
    /* outputs */
    uint16_t *x_out, *y_out;
    float *rstd;
    CallStatus st;
} CCall;

static void ccall_free(CCall *c) {
    FREE_NULL(c->x_out);
    FREE_NULL(c->y_out);
    FREE_NULL(c->rstd);
}

static void do_combine(CCall *c) {
    DT ex = dt_2d(c->expand_x, c->xdt, c->ex_rows, c->h, 0), ids = dt_2d(c->ids, ACL_INT32, c->bs, c->k, 0);
    DT as = dt_1d(c->assist, ACL_INT32, c->assist_len, 0), es = dt_1d(c->ep_send, ACL_INT32, c->es_len, 0);
    DT w = dt_2d(c->w, ACL_FLOAT, c->bs, c->no_scales ? 0 : c->k, 0);
    DT pf = c->perf ? dt_1d(c->perf, ACL_INT64, c->ep, 0) : (DT){0};
    DT ts = {0}, mk = {0}, sx = {0}, el = {0}, ox = {0}, a1 = {0}, a2 = {0}, v = {0}, res = {0}, gam = {0};
    if (c->tp_send) ts = dt_1d(c->tp_send, ACL_INT32, c->ts_len, 0);
    if (c->mask) mk = c->mask_nd == 1 ? dt_1d(c->mask, ACL_BOOL, c->bs, 0) : dt_2d(c->mask, ACL_BOOL, c->bs, c->k, 0);
    if (c->shared_x)
        sx = c->shared_x_3d ? dt_3d(c->shared_x, c->xdt, c->bs, 1, c->h, 0) : dt_2d(c->shared_x, c->xdt, c->bs, c->h, 0);
    if (c->elastic) el = dt_1d(c->elastic, ACL_INT32, c->elastic_len, 0);
    if (c->ori_x) ox = dt_2d(c->ori_x, c->xdt, c->bs, c->h, 0);
    if (c->a1) a1 = c->alpha_2d ? dt_2d(c->a1, c->xdt, c->cnst, c->h, 0) : dt_1d(c->a1, c->xdt, c->cnst, 0);
    if (c->a2) a2 = c->alpha_2d ? dt_2d(c->a2, c->xdt, c->cnst, c->h, 0) : dt_1d(c->a2, c->xdt, c->cnst, 0);
    if (c->v) v = dt_2d(c->v, c->xdt, c->cnst, c->h, 0);
    DT xo, yo = {0}, rs = {0};
    uint64_t ws = 0;
    aclOpExecutor *exe = NULL;
    if (c->arn) {
        res = dt_3d(c->residual, ACL_BF16, c->bs, 1, c->h, 0);
        gam = dt_1d(c->gamma, ACL_BF16, c->h, 0);
        xo = dt_3d(NULL, c->xdt, c->bs, 1, c->h, SENTINEL);
        yo = dt_3d(NULL, c->xdt, c->bs, 1, c->h, SENTINEL);
        rs = dt_3d(NULL, ACL_FLOAT, c->bs, 1, 1, SENTINEL);
        if (c->version == 2)
            c->st.gws = aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
                ex.t, ids.t, as.t, es.t, w.t, res.t, gam.t, ts.t, mk.t, NULL, NULL, NULL, NULL, sx.t, c->group_ep, c->ep,
                c->rank, c->M, c->group_tp, c->tp, c->tp_rank, 0, c->S, c->R, c->gbs, 0, c->cqm, 0, NULL, c->eps, yo.t,
                rs.t, xo.t, &ws, &exe);
        else
            c->st.gws = aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
                ex.t, ids.t, as.t, es.t, w.t, res.t, gam.t, ts.t, mk.t, NULL, NULL, NULL, NULL, sx.t, el.t, ox.t, a1.t,
                a2.t, v.t, c->group_ep, c->ep, c->rank, c->M, c->group_tp, c->tp, c->tp_rank, 0, c->S, c->R, c->gbs, 0,
                c->cqm, 0, NULL, c->eps, c->zero, c->copy, c->cnst, yo.t, rs.t, xo.t, &ws, &exe);
    } else if (c->version == 4) {
        xo = dt_2d(NULL, c->xdt, c->bs, c->h, SENTINEL);
        c->st.gws = aclnnMoeDistributeCombineV4GetWorkspaceSize(
            ex.t, ids.t, as.t, es.t, w.t, ts.t, mk.t, NULL, NULL, NULL, NULL, sx.t, el.t, ox.t, a1.t, a2.t, v.t, pf.t,
            c->group_ep, c->ep, c->rank, c->M, c->group_tp, c->tp, c->tp_rank, 0, c->S, c->R, c->gbs, 0, c->cqm, 0, NULL,
            c->zero, c->copy, c->cnst, xo.t, &ws, &exe);
    } else if (c->version == 2) {
        xo = dt_2d(NULL, c->xdt, c->bs, c->h, SENTINEL);
        c->st.gws = aclnnMoeDistributeCombineV2GetWorkspaceSize(
            ex.t, ids.t, as.t, es.t, w.t, ts.t, mk.t, NULL, NULL, NULL, NULL, sx.t, c->group_ep, c->ep, c->rank, c->M,
            c->group_tp, c->tp, c->tp_rank, 0, c->S, c->R, c->gbs, 0, c->cqm, 0, NULL, xo.t, &ws, &exe);
    } else {
        xo = dt_2d(NULL, c->xdt, c->bs, c->h, SENTINEL);
        c->st.gws = aclnnMoeDistributeCombineV3GetWorkspaceSize(
            ex.t, ids.t, as.t, es.t, w.t, ts.t, mk.t, NULL, NULL, NULL, NULL, sx.t, el.t, ox.t, a1.t, a2.t, v.t,
            c->group_ep, c->ep, c->rank, c->M, c->group_tp, c->tp, c->tp_rank, 0, c->S, c->R, c->gbs, 0, c->cqm, 0, NULL,
            c->zero, c->copy, c->cnst, xo.t, &ws, &exe);
    }
    aclnnStatus (*run)(void *, uint64_t, aclOpExecutor *, aclrtStream) =
        c->arn ? (c->version == 2 ? aclnnMoeDistributeCombineAddRmsNorm : aclnnMoeDistributeCombineAddRmsNormV2)
               : (c->version == 4 ? aclnnMoeDistributeCombineV4
                                  : c->version == 2 ? aclnnMoeDistributeCombineV2 : aclnnMoeDistributeCombineV3);
    call_finish(&c->st, run, ws, exe, c->dev);
    read_perf(&pf, c->perf, c->ep);
    c->x_out = (uint16_t *)dt_read(&xo);
    if (c->arn) {
        c->y_out = (uint16_t *)dt_read(&yo);
        c->rstd = (float *)dt_read(&rs);
    }
    DT *all[] = {&ex, &ids, &as, &es, &w, &ts, &mk, &sx, &el, &ox, &a1, &a2, &v, &res, &gam, &xo, &yo, &rs, &pf};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dt_free(all[i]);
}

/* ---- building calls ---------------------------------------------------------------------------- */
/* A combine of what dispatch d received (in place in d->expand_x): d's world, shapes, ids, mask,
 * elasticInfo and special experts, weights w and tpSendCounts tp_send (tpWorldSize = ts_len entries). */
static void ccall_from(CCall *c, const DCall *d, const float *w, const int32_t *tp_send, int64_t ts_len) {
    memset(c, 0, sizeof *c);
    c->xdt = d->xdt;
    c->bs = d->bs;
    c->h = d->h;
    c->k = d->k;
    c->expand_x = (const uint16_t *)d->expand_x;
    c->ex_rows = d->ex_rows;
    c->ids = d->ids;
    c->w = w;
    c->assist = d->assist;
    c->assist_len = d->assist_len;
    c->ep_send = d->er;
    c->es_len = d->er_len;
    c->tp_send = tp_send;
    c->ts_len = ts_len;
    c->tp = ts_len;
    c->mask = d->mask;
    c->mask_nd = d->mask_nd;
    c->elastic = d->elastic;
    c->elastic_len = d->elastic_len;
    c->group_ep = d->group_ep;
    c->group_tp = d->group_tp;
    c->ep = d->ep;
    c->rank = d->rank;
    c->M = d->M;
    c->tp_rank = d->tp_rank;
    c->S = d->S;
    c->R = d->R;
    c->gbs = d->gbs;
    c->zero = d->zero;
    c->copy = d->copy;
    c->cnst = d->cnst;
    c->dev = d->dev;
}

/* the inputs of the copy / const experts: oriX, constExpertAlpha1, constExpertAlpha2, constExpertV */
static void ccall_special(CCall *c, const uint16_t *ori_x, const uint16_t *a1, const uint16_t *a2, const uint16_t *v) {
    c->ori_x = ori_x;
    c->a1 = a1;
    c->a2 = a2;
    c->v = v;
}

/* the inputs of the AddRmsNorm tail: residualX, gamma, normEps 1e-6 */
static void ccall_norm(CCall *c, const uint16_t *residual, const uint16_t *gamma) {
    c->residual = residual;
    c->gamma = gamma;
    c->eps = 1e-6f;
}

/* one check: both phases of a call passed */
static int call_ok(const char *what, int64_t rank, const CallStatus *st) {
    CHECK(st->gws == 0 && st->run == 0, "%s r%lld: status gws %d run %d: %s", what, (long long)rank, st->gws, st->run,
          st->msg);
    return st->gws == 0 && st->run == 0;
}

/* do_combine, and one check that both phases passed */
static int combine_ok(CCall *c, const char *what) {
    do_combine(c);
    return call_ok(what, c->rank, &c->st);
}

#endif
