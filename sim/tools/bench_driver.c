/*
 * bench_driver: host time of per-rank aclnn MoE calls made directly from C, the baseline that
 * benchmarks/binding.py subtracts from the Python wrapper's time (issue 5, figure 3).
 *
 * It makes the calls an aclnn C program makes (the official demos' pattern) into whatever CANN
 * install it is linked against (build.sh links it against the simulator in build/cann-sim):
 * aclInit, HcclCommInitAll over `ep` devices, then one thread per rank with its own context and
 * stream. Inputs are uploaded once. Each timed call is, per rank, in lockstep (a barrier before
 * every call; the collective itself makes the ranks wait for each other):
 *
 *   desc  outputs: aclrtMalloc + aclrtMemset(0) + aclCreateTensor for every output   (--outputs fresh)
 *         nothing: the outputs made before the loop are reused                        (--outputs prealloc)
 *   gws   {op}GetWorkspaceSize(...)
 *   exec  aclrtMalloc(workspace), {op}(...), aclrtSynchronizeStreamWithTimeout, aclrtFree(workspace)
 *
 * Fresh outputs are destroyed after the timed region (the Python wrapper hands them to the caller).
 * Output: one JSON object on stdout with the medians (microseconds) over the timed calls, per rank
 * and phase, and the median of the per-call maximum over ranks.
 *
 * Usage: bench_driver [--op dispatch|combine] [--outputs fresh|prealloc] [--iters N] [--warmup N]
 *                     [--ep N] [--bs N] [--h N] [--k N] [--experts N]
 *
 * build.sh also builds this file as bin/libbench_driver.so, whose bench_rank_loop() runs one rank's
 * calls from a thread of another process (the Python benchmark): there a rank driven from C and a
 * rank driven from Python meet in the same collective, which measures one rank's Python overhead
 * without the two ranks' Python sharing the GIL.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "hccl/hccl.h"

#define MAX_EP 16
#define SYNC_TIMEOUT_MS 300000

#define CHECK(expr)                                                                                   \
    do {                                                                                              \
        long long rc_ = (long long)(expr);                                                            \
        if (rc_ != 0) {                                                                               \
            fprintf(stderr, "bench_driver: %s failed with %lld: %s (line %d)\n", #expr, rc_,           \
                    aclGetRecentErrMsg() ? aclGetRecentErrMsg() : "", __LINE__);                       \
            exit(2);                                                                                  \
        }                                                                                             \
    } while (0)

typedef struct {
    void *ptr;
    aclTensor *t;
    size_t bytes;
} Tensor;

typedef struct {
    int op_combine, prealloc, iters, warmup, ep;
    int64_t bs, h, k, experts;
} Config;

typedef struct {
    int rank;
    int32_t device;
    HcclComm comm;
    char group[128];
    double *desc, *gws, *exec, *total; /* per timed call, microseconds */
} Rank;

static Config cfg = {0, 0, 2000, 200, 2, 8, 7168, 8, 256};
static pthread_barrier_t g_barrier;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static size_t dtype_size(aclDataType dt)
{
    switch (dt) {
    case ACL_INT8: return 1;
    case ACL_BF16: return 2;
    case ACL_INT64: return 8;
    default: return 4;
    }
}

/* Device tensor of `shape` (row-major ND); zero-filled when `zero`, else uploaded from `host` if given. */
static Tensor make_tensor(const int64_t *shape, int nd, aclDataType dt, const void *host, int zero)
{
    Tensor x = {0};
    int64_t n = 1, strides[8];
    for (int i = nd - 1; i >= 0; i--) {
        strides[i] = n;
        n *= shape[i] > 0 ? shape[i] : 1;
    }
    int64_t numel = 1;
    for (int i = 0; i < nd; i++) numel *= shape[i];
    x.bytes = (size_t)numel * dtype_size(dt);
    size_t alloc = x.bytes < 32 ? 32 : x.bytes; /* as aclnn_py's MIN_ALLOCATION */
    CHECK(aclrtMalloc(&x.ptr, alloc, ACL_MEM_MALLOC_HUGE_FIRST));
    if (zero) CHECK(aclrtMemset(x.ptr, alloc, 0, alloc));
    if (host && x.bytes) CHECK(aclrtMemcpy(x.ptr, x.bytes, host, x.bytes, ACL_MEMCPY_HOST_TO_DEVICE));
    int64_t one = 1;
    x.t = aclCreateTensor(nd ? shape : &one, (uint64_t)nd, dt, nd ? strides : &one, 0, ACL_FORMAT_ND,
                          nd ? shape : &one, (uint64_t)nd, x.ptr);
    if (!x.t) {
        fprintf(stderr, "bench_driver: aclCreateTensor failed: %s\n", aclGetRecentErrMsg());
        exit(2);
    }
    return x;
}

static void free_tensor(Tensor *x)
{
    if (x->t) CHECK(aclDestroyTensor(x->t));
    if (x->ptr) CHECK(aclrtFree(x->ptr));
    memset(x, 0, sizeof *x);
}

static uint64_t g_seed = 88172645463325252ull;
static uint64_t rnd(void)
{
    g_seed ^= g_seed << 13;
    g_seed ^= g_seed >> 7;
    g_seed ^= g_seed << 17;
    return g_seed;
}

/* The output shapes of aclnn_py.layout.dispatch_output_specs for this configuration (no shared experts, no TP). */
typedef struct {
    int64_t a, local, assist, ep_recv;
} Layout;

static Layout layout(void)
{
    Layout l;
    l.local = cfg.experts / cfg.ep;
    l.a = cfg.bs * cfg.ep * (l.local < cfg.k ? l.local : cfg.k);
    l.assist = cfg.bs * cfg.k > l.a * 128 ? cfg.bs * cfg.k : l.a * 128;
    l.ep_recv = cfg.ep * l.local;
    return l;
}

enum { EXPAND_X, DYN_SCALES, ASSIST, TOKEN_NUMS, EP_RECV, TP_RECV, EXPAND_SCALES, N_DISPATCH_OUT };

static void make_dispatch_outputs(Tensor *o)
{
    Layout l = layout();
    int64_t s_ex[2] = {l.a, cfg.h}, s_a[1] = {l.a}, s_as[1] = {l.assist}, s_tn[1] = {l.local},
            s_ep[1] = {l.ep_recv}, s_tp[1] = {0};
    o[EXPAND_X] = make_tensor(s_ex, 2, ACL_BF16, NULL, 1);
    o[DYN_SCALES] = make_tensor(s_a, 1, ACL_FLOAT, NULL, 1);
    o[ASSIST] = make_tensor(s_as, 1, ACL_INT32, NULL, 1);
    o[TOKEN_NUMS] = make_tensor(s_tn, 1, ACL_INT64, NULL, 1);
    o[EP_RECV] = make_tensor(s_ep, 1, ACL_INT32, NULL, 1);
    o[TP_RECV] = make_tensor(s_tp, 1, ACL_INT32, NULL, 1);
    o[EXPAND_SCALES] = make_tensor(s_a, 1, ACL_FLOAT, NULL, 1);
}

static aclnnStatus dispatch_gws(Rank *r, Tensor *x, Tensor *ids, Tensor *o, uint64_t *ws, aclOpExecutor **ex)
{
    return aclnnMoeDistributeDispatchV3GetWorkspaceSize(
        x->t, ids->t, NULL, NULL, NULL, NULL, r->group, cfg.ep, r->rank, cfg.experts, "", 0, 0, 0, 1, 0, 0, 0, 1, "",
        0, 0, 0, o[EXPAND_X].t, o[DYN_SCALES].t, o[ASSIST].t, o[TOKEN_NUMS].t, o[EP_RECV].t, o[TP_RECV].t,
        o[EXPAND_SCALES].t, ws, ex);
}

static aclnnStatus combine_gws(Rank *r, Tensor *d, Tensor *ids, Tensor *w, Tensor *out, uint64_t *ws,
                               aclOpExecutor **ex)
{
    return aclnnMoeDistributeCombineV3GetWorkspaceSize(
        d[EXPAND_X].t, ids->t, d[ASSIST].t, d[EP_RECV].t, w->t, d[TP_RECV].t, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, r->group, cfg.ep, r->rank, cfg.experts, "", 0, 0, 0, 1, 0, 0, 0, 0, 0, "", 0,
        0, 0, out->t, ws, ex);
}

/* aclrtMalloc(workspace) + phase 2 + synchronize + aclrtFree(workspace), as the official demos do. */
static void execute(int combine, uint64_t ws, aclOpExecutor *ex, aclrtStream stream)
{
    void *wsp = NULL;
    if (ws) CHECK(aclrtMalloc(&wsp, ws, ACL_MEM_MALLOC_HUGE_FIRST));
    if (combine)
        CHECK(aclnnMoeDistributeCombineV3(wsp, ws, ex, stream));
    else
        CHECK(aclnnMoeDistributeDispatchV3(wsp, ws, ex, stream));
    CHECK(aclrtSynchronizeStreamWithTimeout(stream, SYNC_TIMEOUT_MS));
    if (wsp) CHECK(aclrtFree(wsp));
}

static void *rank_main(void *arg)
{
    Rank *r = arg;
    aclrtContext ctx;
    aclrtStream stream;
    CHECK(aclrtSetDevice(r->device));
    CHECK(aclrtCreateContext(&ctx, r->device));
    CHECK(aclrtCreateStream(&stream));

    /* inputs (uploaded once) */
    size_t nx = (size_t)(cfg.bs * cfg.h);
    uint16_t *xh = malloc(nx * 2);
    int32_t *idh = malloc((size_t)(cfg.bs * cfg.k) * 4);
    float *wh = malloc((size_t)(cfg.bs * cfg.k) * 4);
    int32_t *perm = malloc((size_t)cfg.experts * 4);
    for (size_t i = 0; i < nx; i++) {
        float f = (float)((int64_t)(rnd() % 2001) - 1000) / 500.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        xh[i] = (uint16_t)(u >> 16);
    }
    for (int64_t t = 0; t < cfg.bs; t++) { /* k distinct experts per token */
        for (int64_t e = 0; e < cfg.experts; e++) perm[e] = (int32_t)e;
        for (int64_t j = 0; j < cfg.k; j++) {
            int64_t p = j + (int64_t)(rnd() % (uint64_t)(cfg.experts - j));
            int32_t tmp = perm[j];
            perm[j] = perm[p];
            perm[p] = tmp;
            idh[t * cfg.k + j] = perm[j];
            wh[t * cfg.k + j] = 1.0f / (float)cfg.k;
        }
    }
    int64_t s_x[2] = {cfg.bs, cfg.h}, s_ids[2] = {cfg.bs, cfg.k}, s_out[2] = {cfg.bs, cfg.h};
    Tensor x = make_tensor(s_x, 2, ACL_BF16, xh, 0);
    Tensor ids = make_tensor(s_ids, 2, ACL_INT32, idh, 0);
    Tensor w = make_tensor(s_ids, 2, ACL_FLOAT, wh, 0);
    free(xh);
    free(idh);
    free(wh);
    free(perm);

    Tensor d[N_DISPATCH_OUT], comb_out = {0};
    uint64_t ws = 0;
    aclOpExecutor *ex = NULL;
    if (cfg.op_combine || cfg.prealloc) make_dispatch_outputs(d);
    if (cfg.op_combine) { /* combine consumes one dispatch's outputs */
        pthread_barrier_wait(&g_barrier);
        CHECK(dispatch_gws(r, &x, &ids, d, &ws, &ex));
        execute(0, ws, ex, stream);
        if (cfg.prealloc) comb_out = make_tensor(s_out, 2, ACL_BF16, NULL, 1);
    }

    for (int it = 0; it < cfg.warmup + cfg.iters; it++) {
        Tensor fresh[N_DISPATCH_OUT];
        Tensor *o = cfg.prealloc ? d : fresh;
        Tensor *co = &comb_out, fresh_co;
        pthread_barrier_wait(&g_barrier);
        double t0 = now_us();
        if (!cfg.prealloc) {
            if (cfg.op_combine) {
                fresh_co = make_tensor(s_out, 2, ACL_BF16, NULL, 1);
                co = &fresh_co;
            } else {
                make_dispatch_outputs(fresh);
            }
        }
        double t1 = now_us();
        if (cfg.op_combine)
            CHECK(combine_gws(r, d, &ids, &w, co, &ws, &ex));
        else
            CHECK(dispatch_gws(r, &x, &ids, o, &ws, &ex));
        double t2 = now_us();
        execute(cfg.op_combine, ws, ex, stream);
        double t3 = now_us();
        if (it >= cfg.warmup) {
            int i = it - cfg.warmup;
            r->desc[i] = t1 - t0;
            r->gws[i] = t2 - t1;
            r->exec[i] = t3 - t2;
            r->total[i] = t3 - t0;
        }
        if (!cfg.prealloc) {
            if (cfg.op_combine)
                free_tensor(&fresh_co);
            else
                for (int j = 0; j < N_DISPATCH_OUT; j++) free_tensor(&fresh[j]);
        }
    }

    if (cfg.op_combine || cfg.prealloc)
        for (int j = 0; j < N_DISPATCH_OUT; j++) free_tensor(&d[j]);
    if (comb_out.t) free_tensor(&comb_out);
    free_tensor(&x);
    free_tensor(&ids);
    free_tensor(&w);
    CHECK(aclrtDestroyStream(stream));
    CHECK(aclrtDestroyContext(ctx));
    return NULL;
}

/*
 * One rank's calls, for a thread whose context the caller has bound (exported from libbench_driver.so).
 * tensors: dispatch: x, expertIds, then the 7 outputs in C order;
 *          combine:  expandX, expertIds, assistInfoForCombine, epSendCounts, expertScales, tpSendCounts, xOut.
 * fresh = 0: the given outputs are reused by every call. fresh = 1: each call makes its own outputs with the
 * given ones' shapes and dtypes (aclrtMalloc + aclrtMemset + aclCreateTensor, timed) and destroys them after
 * the timed region, as main() does. Each call then runs GetWorkspaceSize, aclrtMalloc(workspace), phase 2,
 * synchronize, aclrtFree. barrier: NULL, or one from bench_barrier_create() shared by the ranks, waited on
 * before every call (lockstep, untimed). times_us[i] gets the wall time of call i (may be NULL).
 * Returns 0, or the first failing status (aclGetRecentErrMsg() says why).
 */
__attribute__((visibility("default"))) void *bench_barrier_create(int n)
{
    pthread_barrier_t *b = malloc(sizeof *b);
    if (b && pthread_barrier_init(b, NULL, (unsigned)n) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

__attribute__((visibility("default"))) void bench_barrier_destroy(void *barrier)
{
    if (!barrier) return;
    pthread_barrier_destroy((pthread_barrier_t *)barrier);
    free(barrier);
}

__attribute__((visibility("default"))) int bench_rank_loop(int op_combine, int fresh, int iters, const char *group,
                                                           int64_t ep, int64_t rank, int64_t experts, void *stream,
                                                           void *const *tensors, void *barrier, double *times_us)
{
    aclTensor *t[9];
    const int n_t = op_combine ? 7 : 9, first_out = op_combine ? 6 : 2;
    int64_t shapes[9][8];
    int nds[9];
    aclDataType dts[9];
    for (int i = 0; i < n_t; i++) {
        t[i] = (aclTensor *)tensors[i];
        if (fresh && i >= first_out) {
            int64_t *dims = NULL;
            uint64_t nd = 0;
            CHECK(aclGetViewShape(t[i], &dims, &nd));
            CHECK(aclGetDataType(t[i], &dts[i]));
            nds[i] = (int)nd;
            for (uint64_t d = 0; d < nd && d < 8; d++) shapes[i][d] = dims[d];
            free(dims);
        }
    }
    for (int it = 0; it < iters; it++) {
        Tensor made[9];
        uint64_t ws = 0;
        aclOpExecutor *ex = NULL;
        if (barrier) pthread_barrier_wait((pthread_barrier_t *)barrier);
        double t0 = now_us();
        if (fresh)
            for (int i = first_out; i < n_t; i++) {
                made[i] = make_tensor(shapes[i], nds[i], dts[i], NULL, 1);
                t[i] = made[i].t;
            }
        aclnnStatus rc;
        if (op_combine)
            rc = aclnnMoeDistributeCombineV3GetWorkspaceSize(
                t[0], t[1], t[2], t[3], t[4], t[5], NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                group, ep, rank, experts, "", 0, 0, 0, 1, 0, 0, 0, 0, 0, "", 0, 0, 0, t[6], &ws, &ex);
        else
            rc = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
                t[0], t[1], NULL, NULL, NULL, NULL, group, ep, rank, experts, "", 0, 0, 0, 1, 0, 0, 0, 1, "", 0, 0, 0,
                t[2], t[3], t[4], t[5], t[6], t[7], t[8], &ws, &ex);
        if (rc) return rc;
        void *wsp = NULL;
        if (ws && (rc = aclrtMalloc(&wsp, ws, ACL_MEM_MALLOC_HUGE_FIRST))) return rc;
        rc = op_combine ? aclnnMoeDistributeCombineV3(wsp, ws, ex, stream) : aclnnMoeDistributeDispatchV3(wsp, ws, ex, stream);
        if (!rc) rc = aclrtSynchronizeStreamWithTimeout(stream, SYNC_TIMEOUT_MS);
        if (wsp) aclrtFree(wsp);
        if (rc) return rc;
        if (times_us) times_us[it] = now_us() - t0;
        if (fresh)
            for (int i = first_out; i < n_t; i++) free_tensor(&made[i]);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double *c = malloc(sizeof(double) * (size_t)n);
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_driver [--op dispatch|combine] [--outputs fresh|prealloc] [--iters N] "
                    "[--warmup N] [--ep N] [--bs N] [--h N] [--k N] [--experts N]\n");
    exit(1);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--op")) cfg.op_combine = !strcmp(v, "combine");
        else if (!strcmp(a, "--outputs")) cfg.prealloc = !strcmp(v, "prealloc");
        else if (!strcmp(a, "--iters")) cfg.iters = atoi(v);
        else if (!strcmp(a, "--warmup")) cfg.warmup = atoi(v);
        else if (!strcmp(a, "--ep")) cfg.ep = atoi(v);
        else if (!strcmp(a, "--bs")) cfg.bs = atoll(v);
        else if (!strcmp(a, "--h")) cfg.h = atoll(v);
        else if (!strcmp(a, "--k")) cfg.k = atoll(v);
        else if (!strcmp(a, "--experts")) cfg.experts = atoll(v);
        else usage();
        i++;
    }
    if (cfg.ep < 2 || cfg.ep > MAX_EP || cfg.iters < 1 || cfg.warmup < 0 || cfg.experts % cfg.ep || cfg.k > cfg.experts)
        usage();

    CHECK(aclInit(NULL));
    int32_t devs[MAX_EP];
    HcclComm comms[MAX_EP];
    for (int i = 0; i < cfg.ep; i++) devs[i] = i;
    CHECK(HcclCommInitAll((uint32_t)cfg.ep, devs, comms));
    pthread_barrier_init(&g_barrier, NULL, (unsigned)cfg.ep);
    Rank ranks[MAX_EP];
    pthread_t th[MAX_EP];
    for (int i = 0; i < cfg.ep; i++) {
        memset(&ranks[i], 0, sizeof ranks[i]);
        ranks[i].rank = i;
        ranks[i].device = devs[i];
        ranks[i].comm = comms[i];
        CHECK(HcclGetCommName(comms[i], ranks[i].group));
        ranks[i].desc = calloc((size_t)cfg.iters, sizeof(double));
        ranks[i].gws = calloc((size_t)cfg.iters, sizeof(double));
        ranks[i].exec = calloc((size_t)cfg.iters, sizeof(double));
        ranks[i].total = calloc((size_t)cfg.iters, sizeof(double));
        pthread_create(&th[i], NULL, rank_main, &ranks[i]);
    }
    for (int i = 0; i < cfg.ep; i++) pthread_join(th[i], NULL);

    double *worst = calloc((size_t)cfg.iters, sizeof(double));
    for (int it = 0; it < cfg.iters; it++)
        for (int i = 0; i < cfg.ep; i++)
            if (ranks[i].total[it] > worst[it]) worst[it] = ranks[i].total[it];
    printf("{\"op\": \"%s\", \"outputs\": \"%s\", \"ep\": %d, \"bs\": %lld, \"h\": %lld, \"k\": %lld, "
           "\"experts\": %lld, \"iters\": %d, \"call_us\": %.3f, \"ranks\": [",
           cfg.op_combine ? "combine" : "dispatch", cfg.prealloc ? "prealloc" : "fresh", cfg.ep, (long long)cfg.bs,
           (long long)cfg.h, (long long)cfg.k, (long long)cfg.experts, cfg.iters, median(worst, cfg.iters));
    for (int i = 0; i < cfg.ep; i++)
        printf("%s{\"desc_us\": %.3f, \"gws_us\": %.3f, \"exec_us\": %.3f, \"total_us\": %.3f}", i ? ", " : "",
               median(ranks[i].desc, cfg.iters), median(ranks[i].gws, cfg.iters), median(ranks[i].exec, cfg.iters),
               median(ranks[i].total, cfg.iters));
    printf("]}\n");

    for (int i = 0; i < cfg.ep; i++) {
        CHECK(HcclCommDestroy(comms[i]));
        free(ranks[i].desc);
        free(ranks[i].gws);
        free(ranks[i].exec);
        free(ranks[i].total);
    }
    free(worst);
    pthread_barrier_destroy(&g_barrier);
    CHECK(aclFinalize());
    return 0;
}
