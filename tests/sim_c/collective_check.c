/*
 * Checks of the CANN simulator's HCCL and aclnnDistributeBarrierV2, built against build/cann-sim by
 * tests/test_sim_core.py. Usage: collective_check <case> [arg]; prints "PASS <case>" and exits 0, or
 * "FAIL <file>:<line>: <what>" and exits 1. Ranks are threads, rank r on device r (as in the demos).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_distribute_barrier_v2.h"
#include "aclsim.h"
#include "check_common.h"
#include "hccl/hccl.h"

#define CHECK_MSG(word) check_msg(word, __FILE__, __LINE__)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A device tensor with host contents `host` (n elements of `dt`, 1-D) or a (4, 8) bf16 xRef when host is NULL. */
static aclTensor *make_tensor(const void *host, int64_t n, aclDataType dt, size_t item, void **dev)
{
    int64_t shape2[2] = {4, 8}, shape1[1] = {n};
    int64_t *shape = host ? shape1 : shape2;
    uint64_t nd = host ? 1 : 2;
    size_t bytes = host ? (size_t)n * item : 64;
    if (aclrtMalloc(dev, bytes ? bytes : 1, ACL_MEM_MALLOC_HUGE_FIRST) != 0) return NULL;
    if (host && aclrtMemcpy(*dev, bytes, host, bytes, ACL_MEMCPY_HOST_TO_DEVICE) != 0) return NULL;
    return aclCreateTensor(shape, nd, host ? dt : ACL_BF16, NULL, 0, ACL_FORMAT_ND, shape, nd, *dev);
}

/* A 2-rank group on devices 0 and 1 whose rank 0 the calling thread drives: on device 0, with a new
 * stream, an xRef tensor and room for one barrier call (workspace, its size, the executor). */
typedef struct {
    HcclComm comms[2];
    aclrtStream s;
    char group[128];
    void *xd;
    aclTensor *x;
    void *wsp;
    uint64_t ws;
    aclOpExecutor *ex;
} Pair;

static void pair_open(Pair *p)
{
    int32_t devices[2] = {0, 1};
    CHECK_EQ(HcclCommInitAll(2, devices, p->comms), 0);
    CHECK_EQ(aclrtSetDevice(0), 0);
    p->s = NULL;
    CHECK_EQ(aclrtCreateStream(&p->s), 0);
    CHECK_EQ(HcclGetCommName(p->comms[0], p->group), 0);
    p->xd = NULL;
    p->x = make_tensor(NULL, 0, ACL_BF16, 2, &p->xd);
    p->wsp = NULL;
    p->ws = 0;
    p->ex = NULL;
}

/* ---- one rank of a barrier scenario -------------------------------------------------------------- */
typedef struct {
    int rank;
    HcclComm comm;
    int skip;            /* this rank never calls the barrier */
    int delay_ms;        /* sleep before the first call */
    int64_t time_out_us; /* < 0: no timeOut tensor */
    const int32_t *elastic; /* host elasticInfo (NULL: none) */
    int64_t world_size;
    int iterations;
    int use_v1;
    /* results */
    int rc;              /* first non-zero status (or 0) */
    int rc_step;         /* 0 GetWorkspaceSize, 1 launch, 2 synchronize */
    double first_ms;     /* duration of the first call + synchronize */
    char msg[2048];
} RankJob;

static void *rank_main(void *p)
{
    RankJob *j = p;
    j->rc = -1;
    if (aclrtSetDevice(j->rank) != 0) return NULL;
    aclrtStream s = NULL;
    if (aclrtCreateStream(&s) != 0) return NULL;
    char group[128] = {0};
    if (HcclGetCommName(j->comm, group) != 0) return NULL;
    void *xd = NULL, *td = NULL, *ed = NULL;
    aclTensor *x = make_tensor(NULL, 0, ACL_BF16, 2, &xd), *to = NULL, *el = NULL;
    if (j->time_out_us >= 0) {
        int32_t v = (int32_t)(uint32_t)j->time_out_us;
        to = make_tensor(&v, 1, ACL_INT32, 4, &td);
    }
    if (j->elastic) el = make_tensor(j->elastic, 4 + 2 * j->world_size, ACL_INT32, 4, &ed);
    j->rc = 0;
    if (!j->skip) {
        if (j->delay_ms) usleep((useconds_t)j->delay_ms * 1000);
        for (int it = 0; it < j->iterations && j->rc == 0; it++) {
            double t0 = now_ms();
            uint64_t ws = 0;
            aclOpExecutor *ex = NULL;
            void *wsp = NULL;
            int rc = j->use_v1 ? aclnnDistributeBarrierGetWorkspaceSize(x, group, j->world_size, &ws, &ex)
                               : aclnnDistributeBarrierV2GetWorkspaceSize(x, to, el, group, j->world_size, &ws, &ex);
            j->rc_step = 0;
            if (rc == 0 && ws > 0) rc = aclrtMalloc(&wsp, ws, ACL_MEM_MALLOC_HUGE_FIRST);
            if (rc == 0) {
                j->rc_step = 1;
                rc = j->use_v1 ? aclnnDistributeBarrier(wsp, ws, ex, s) : aclnnDistributeBarrierV2(wsp, ws, ex, s);
            }
            if (rc == 0) {
                j->rc_step = 2;
                rc = aclrtSynchronizeStreamWithTimeout(s, 20000);
            }
            if (it == 0) j->first_ms = now_ms() - t0;
            if (rc) {
                const char *m = aclGetRecentErrMsg();
                snprintf(j->msg, sizeof j->msg, "%s", m ? m : "");
            }
            j->rc = rc;
            if (wsp) aclrtFree(wsp);
        }
    }
    aclDestroyTensor(x);
    aclDestroyTensor(to);
    aclDestroyTensor(el);
    aclrtFree(xd);
    if (td) aclrtFree(td);
    if (ed) aclrtFree(ed);
    aclrtDestroyStream(s);
    HcclCommDestroy(j->comm);
    aclrtResetDevice(j->rank);
    return NULL;
}

/* Runs n rank threads over a fresh HcclCommInitAll group; jobs[i] must be prepared except rank/comm. */
static void run_ranks(RankJob *jobs, int n)
{
    int32_t devices[64];
    HcclComm comms[64];
    for (int i = 0; i < n; i++) devices[i] = i;
    CHECK_EQ(HcclCommInitAll((uint32_t)n, devices, comms), HCCL_SUCCESS);
    pthread_t th[64];
    for (int i = 0; i < n; i++) {
        jobs[i].rank = i;
        jobs[i].comm = comms[i];
        if (!jobs[i].world_size) jobs[i].world_size = n;
        if (!jobs[i].iterations) jobs[i].iterations = 1;
        CHECK_EQ(pthread_create(&th[i], NULL, rank_main, &jobs[i]), 0);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
}

static RankJob *new_jobs(int n, int64_t time_out_us)
{
    RankJob *jobs = calloc((size_t)n, sizeof(RankJob));
    for (int i = 0; i < n; i++) jobs[i].time_out_us = time_out_us;
    return jobs;
}

/* ---- cases ----------------------------------------------------------------------------------------- */

static void case_barrier(int n)
{
    RankJob *jobs = new_jobs(n, -1);
    for (int i = 0; i < n; i++) jobs[i].iterations = 5;
    jobs[n - 1].delay_ms = 150; /* everyone else must wait for the late rank */
    run_ranks(jobs, n);
    for (int i = 0; i < n; i++) {
        if (jobs[i].rc != 0) printf("rank %d: rc=%d step=%d msg=%s\n", i, jobs[i].rc, jobs[i].rc_step, jobs[i].msg);
        CHECK_EQ(jobs[i].rc, 0);
        if (i != n - 1) CHECK(jobs[i].first_ms >= 100.0);
    }
    free(jobs);
    check_no_leaks();
}

static void case_v1(void)
{
    RankJob *jobs = new_jobs(4, -1);
    for (int i = 0; i < 4; i++) {
        jobs[i].use_v1 = 1;
        jobs[i].iterations = 3;
    }
    jobs[0].delay_ms = 120;
    run_ranks(jobs, 4);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(jobs[i].rc, 0);
        if (i) CHECK(jobs[i].first_ms >= 80.0);
    }
    free(jobs);
    check_no_leaks();
}

/* elasticInfo for worldSize ws with `removed` ranks scaled down: [1, ws', 0, 0, Table1(ws), Table2(ws)] */
static int32_t *make_elastic(int ws, const int *removed, int nremoved)
{
    int32_t *info = calloc((size_t)(4 + 2 * ws), sizeof(int32_t));
    int k = 0;
    info[0] = 1;
    for (int r = 0; r < ws; r++) {
        int gone = 0;
        for (int i = 0; i < nremoved; i++) gone |= removed[i] == r;
        info[4 + r] = gone ? -1 : k;
        if (!gone) info[4 + ws + k++] = r;
    }
    info[1] = k;
    for (int i = k; i < ws; i++) info[4 + ws + i] = -1;
    return info;
}

static void case_elastic(void)
{
    const int removed[2] = {2, 5};
    int32_t *info = make_elastic(8, removed, 2);
    RankJob *jobs = new_jobs(8, -1);
    for (int i = 0; i < 8; i++) {
        jobs[i].elastic = info;
        jobs[i].iterations = 3;
    }
    jobs[2].skip = jobs[5].skip = 1;
    jobs[7].delay_ms = 150;
    run_ranks(jobs, 8);
    for (int i = 0; i < 8; i++) {
        if (jobs[i].rc) printf("rank %d: %s\n", i, jobs[i].msg);
        CHECK_EQ(jobs[i].rc, 0);
        if (!jobs[i].skip && i != 7) CHECK(jobs[i].first_ms >= 100.0);
    }
    free(jobs);

    /* a scaled-down rank that still calls fails clearly; the survivors are unaffected */
    const int removed3[1] = {3};
    int32_t *info4 = make_elastic(4, removed3, 1);
    jobs = new_jobs(4, -1);
    for (int i = 0; i < 4; i++) jobs[i].elastic = info4;
    run_ranks(jobs, 4);
    for (int i = 0; i < 3; i++) CHECK_EQ(jobs[i].rc, 0);
    CHECK_EQ(jobs[3].rc, ACL_ERROR_RT_AICORE_EXCEPTION);
    CHECK(strstr(jobs[3].msg, "scaled down") != NULL);

    /* elasticInfo[0] != 1 means no scale-down: all ranks take part */
    info4[0] = 0;
    free(jobs);
    jobs = new_jobs(4, -1);
    for (int i = 0; i < 4; i++) jobs[i].elastic = info4;
    run_ranks(jobs, 4);
    for (int i = 0; i < 4; i++) CHECK_EQ(jobs[i].rc, 0);
    free(jobs);
    free(info);
    free(info4);
    check_no_leaks();
}

static void case_timeout(void)
{
    RankJob *jobs = new_jobs(4, 200000); /* 200 ms */
    jobs[3].skip = 1;
    run_ranks(jobs, 4);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(jobs[i].rc, ACL_ERROR_RT_AICORE_EXCEPTION);
        CHECK_EQ(jobs[i].rc_step, 2);
        CHECK(jobs[i].first_ms >= 180.0 && jobs[i].first_ms < 5000.0);
        CHECK(strstr(jobs[i].msg, "missing rank(s): [3]") != NULL);
        CHECK(strstr(jobs[i].msg, "timeOut=200000") != NULL);
    }
    free(jobs);
    check_no_leaks();
}

static void case_timeout0(void)
{
    RankJob *jobs = new_jobs(2, 0);
    run_ranks(jobs, 2);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(jobs[i].rc, ACL_ERROR_RT_AICORE_EXCEPTION);
        CHECK(jobs[i].first_ms < 1000.0);
        CHECK(strstr(jobs[i].msg, "timeOut=0") != NULL);
    }
    free(jobs);
    /* a time-out that is long enough succeeds; a negative int32 is a huge uint32, i.e. no time-out */
    jobs = new_jobs(3, 5000000);
    jobs[2].time_out_us = -1 & 0xffffffffLL;
    jobs[1].delay_ms = 50;
    run_ranks(jobs, 3);
    for (int i = 0; i < 3; i++) CHECK_EQ(jobs[i].rc, 0);
    free(jobs);
    check_no_leaks();
}

static void case_hang(void)
{
    setenv("ACLNN_SIM_HANG_TIMEOUT_MS", "300", 1);
    RankJob *jobs = new_jobs(3, -1);
    jobs[2].skip = 1;
    run_ranks(jobs, 3);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(jobs[i].rc, ACL_ERROR_RT_AICORE_EXCEPTION);
        CHECK(jobs[i].first_ms >= 280.0);
        CHECK(strstr(jobs[i].msg, "ACLNN_SIM_HANG_TIMEOUT_MS") != NULL);
        CHECK(strstr(jobs[i].msg, "[2]") != NULL);
    }
    free(jobs);
    check_no_leaks();
}

/* SynchronizeStreamWithTimeout reports 507046 while the barrier waits; destroying the stream cancels it. */
static void case_sync_timeout(void)
{
    Pair p;
    pair_open(&p);
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(p.x, NULL, NULL, p.group, 2, &p.ws, &p.ex), 0);
    CHECK_EQ(p.ws, 16 << 20);
    CHECK_EQ(aclrtMalloc(&p.wsp, p.ws, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK_EQ(aclnnDistributeBarrierV2(p.wsp, p.ws, p.ex, p.s), 0);
    CHECK_EQ(aclDestroyTensor(p.x), 0); /* descriptors may go right after the launch */
    double t0 = now_ms();
    CHECK_EQ(aclrtSynchronizeStreamWithTimeout(p.s, 200), ACL_ERROR_RT_STREAM_SYNC_TIMEOUT);
    double dt = now_ms() - t0;
    CHECK(dt >= 180.0 && dt < 3000.0);
    CHECK_MSG("timed out");
    CHECK_EQ(aclrtSynchronizeStreamWithTimeout(p.s, 0), ACL_ERROR_RT_STREAM_SYNC_TIMEOUT);
    (void)aclGetRecentErrMsg();
    t0 = now_ms();
    CHECK_EQ(aclrtDestroyStream(p.s), 0); /* cancels the waiting barrier */
    CHECK(now_ms() - t0 < 3000.0);

    /* HcclBarrier: same story, and aclrtResetDevice cancels the default stream's wait */
    CHECK_EQ(aclrtSetDevice(0), 0);
    CHECK_EQ(HcclBarrier(p.comms[0], NULL), HCCL_SUCCESS);
    CHECK_EQ(aclrtSynchronizeStreamWithTimeout(NULL, 100), ACL_ERROR_RT_STREAM_SYNC_TIMEOUT);
    (void)aclGetRecentErrMsg();
    t0 = now_ms();
    CHECK_EQ(aclrtResetDevice(0), 0);
    CHECK_EQ(aclrtResetDevice(0), 0);
    CHECK(now_ms() - t0 < 3000.0);
    HcclResult ae = HCCL_SUCCESS;
    CHECK_EQ(HcclGetCommAsyncError(p.comms[0], &ae), 0);
    CHECK_EQ(ae, HCCL_E_INTERNAL); /* the cancelled barrier */
    CHECK_EQ(aclrtFree(p.wsp), 0); /* buffers outlive a device reset */
    aclrtFree(p.xd);
    CHECK_EQ(HcclCommDestroy(p.comms[0]), 0);
    CHECK_EQ(HcclCommDestroy(p.comms[1]), 0);
    check_no_leaks();
}

/* GetWorkspaceSize validation, one rule at a time (../shared/spec/combine-addrmsnorm-barrier.md §9). */
static void expect_gws(int line, const aclTensor *x, const aclTensor *to, const aclTensor *el, const char *group,
                       int64_t ws, int want, const char *word)
{
    uint64_t wsize = 0;
    aclOpExecutor *ex = NULL;
    int rc = aclnnDistributeBarrierV2GetWorkspaceSize(x, to, el, group, ws, &wsize, &ex);
    if (rc != want) {
        const char *m = aclGetRecentErrMsg();
        printf("FAIL %s:%d: status %d, expected %d (%s)\n", __FILE__, line, rc, want, m ? m : "no message");
        exit(1);
    }
    if (want == 0) {
        CHECK(ex != NULL && wsize == (16u << 20));
        CHECK_EQ(aclDestroyAclOpExecutor(ex), 0);
    } else {
        check_msg(word, __FILE__, line);
    }
}
#define EXPECT_GWS(x, to, el, group, ws, want, word) expect_gws(__LINE__, x, to, el, group, ws, want, word)

static void case_validate(void)
{
    CHECK_EQ(aclrtSetDevice(0), 0);
    void *mem[16];
    int nm = 0;
    aclTensor *x = make_tensor(NULL, 0, ACL_BF16, 2, &mem[nm++]);
    int32_t one = 1000;
    aclTensor *to = make_tensor(&one, 1, ACL_INT32, 4, &mem[nm++]);
    int32_t info[20] = {0};
    aclTensor *el = make_tensor(info, 20, ACL_INT32, 4, &mem[nm++]); /* 4 + 2*8 */
    const char *g = "grp";

    EXPECT_GWS(x, NULL, NULL, g, 8, 0, "");
    EXPECT_GWS(x, to, el, g, 8, 0, "");
    char expect[512];
    uint64_t wsize;
    aclOpExecutor *ex;
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(x, NULL, el, "g", 8, &wsize, &ex), 0);
    snprintf(expect, sizeof expect, "aclnnDistributeBarrierV2GetWorkspaceSize xRef=T(27,[4,8]) timeOut=NULL "
             "elasticInfo=T(3,[20]) group=\"g\" worldSize=8 workspaceSize=%p executor=%p", (void *)&wsize, (void *)&ex);
    char got[1024];
    aclsimLastCall(got, sizeof got);
    if (strcmp(got, expect) != 0) {
        printf("FAIL last call\n  got:      %s\n  expected: %s\n", got, expect);
        exit(1);
    }
    CHECK_EQ(aclDestroyAclOpExecutor(ex), 0);
    CHECK_EQ(aclDestroyAclOpExecutor(ex), ACLNN_ERR_INNER_NULLPTR);
    (void)aclGetRecentErrMsg();

    /* 161001: NULL xRef / group / outputs */
    EXPECT_GWS(NULL, NULL, NULL, g, 8, ACLNN_ERR_PARAM_NULLPTR, "xRef");
    EXPECT_GWS(x, NULL, NULL, NULL, 8, ACLNN_ERR_PARAM_NULLPTR, "group");
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(x, NULL, NULL, g, 8, NULL, &ex), ACLNN_ERR_PARAM_NULLPTR);
    CHECK_MSG("workspaceSize");
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(x, NULL, NULL, g, 8, &wsize, NULL), ACLNN_ERR_PARAM_NULLPTR);
    CHECK_MSG("executor");
    CHECK_EQ(aclnnDistributeBarrierGetWorkspaceSize(NULL, g, 8, &wsize, &ex), ACLNN_ERR_PARAM_NULLPTR);
    CHECK_MSG("xRef");

    /* 161002: group length, dtypes */
    char longname[200];
    memset(longname, 'a', sizeof longname);
    longname[128] = '\0';
    EXPECT_GWS(x, NULL, NULL, "", 8, ACLNN_ERR_PARAM_INVALID, "group length");
    EXPECT_GWS(x, NULL, NULL, longname, 8, ACLNN_ERR_PARAM_INVALID, "[1,127]");
    longname[127] = '\0';
    EXPECT_GWS(x, NULL, NULL, longname, 8, 0, "");
    int64_t s3[3] = {2, 3, 4};
    aclTensor *xd = aclCreateTensor(s3, 3, ACL_DOUBLE, NULL, 0, ACL_FORMAT_ND, s3, 3, mem[0]);
    aclTensor *xs = aclCreateTensor(s3, 3, ACL_STRING, NULL, 0, ACL_FORMAT_ND, s3, 3, mem[0]);
    aclTensor *x0 = aclCreateTensor(NULL, 0, ACL_UINT64, NULL, 0, ACL_FORMAT_ND, NULL, 0, mem[0]);
    EXPECT_GWS(xd, NULL, NULL, g, 8, ACLNN_ERR_PARAM_INVALID, "xRef dtype 11");
    EXPECT_GWS(xs, NULL, NULL, g, 8, ACLNN_ERR_PARAM_INVALID, "xRef dtype");
    EXPECT_GWS(x0, NULL, NULL, g, 8, 0, ""); /* 0-D is fine */
    int64_t s1[1] = {1}, s11[2] = {1, 1}, s2[1] = {2}, s21[1] = {21};
    aclTensor *to64 = aclCreateTensor(s1, 1, ACL_INT64, NULL, 0, ACL_FORMAT_ND, s1, 1, mem[1]);
    aclTensor *elf = aclCreateTensor(s21, 1, ACL_FLOAT, NULL, 0, ACL_FORMAT_ND, s21, 1, mem[2]);
    EXPECT_GWS(x, to64, NULL, g, 8, ACLNN_ERR_PARAM_INVALID, "timeOut dtype");
    EXPECT_GWS(x, NULL, elf, g, 8, ACLNN_ERR_PARAM_INVALID, "elasticInfo dtype");

    /* 561002: worldSize range, timeOut / elasticInfo shapes */
    EXPECT_GWS(x, NULL, NULL, g, 1, ACLNN_ERR_INNER_TILING_ERROR, "worldSize=1");
    EXPECT_GWS(x, NULL, NULL, g, 385, ACLNN_ERR_INNER_TILING_ERROR, "[2,384]");
    EXPECT_GWS(x, NULL, NULL, g, 384, 0, "");
    EXPECT_GWS(x, NULL, NULL, g, 2, 0, "");
    EXPECT_GWS(x, NULL, NULL, g, (1LL << 32) + 8, ACLNN_ERR_INNER_TILING_ERROR, "worldSize=4294967304");
    EXPECT_GWS(x, NULL, NULL, g, -8, ACLNN_ERR_INNER_TILING_ERROR, "worldSize=-8");
    aclTensor *to2 = aclCreateTensor(s2, 1, ACL_INT32, NULL, 0, ACL_FORMAT_ND, s2, 1, mem[1]);
    aclTensor *to11 = aclCreateTensor(s11, 2, ACL_INT32, NULL, 0, ACL_FORMAT_ND, s11, 2, mem[1]);
    aclTensor *toNz = aclCreateTensor(s1, 1, ACL_INT32, NULL, 0, ACL_FORMAT_FRACTAL_NZ, s1, 1, mem[1]);
    EXPECT_GWS(x, to2, NULL, g, 8, ACLNN_ERR_INNER_TILING_ERROR, "timeOut");
    EXPECT_GWS(x, to11, NULL, g, 8, ACLNN_ERR_INNER_TILING_ERROR, "[1,1]");
    EXPECT_GWS(x, toNz, NULL, g, 8, ACLNN_ERR_INNER_TILING_ERROR, "FRACTAL_NZ");
    aclTensor *el21 = aclCreateTensor(s21, 1, ACL_INT32, NULL, 0, ACL_FORMAT_ND, s21, 1, mem[2]);
    EXPECT_GWS(x, NULL, el21, g, 8, ACLNN_ERR_INNER_TILING_ERROR, "4 + 2*worldSize");
    EXPECT_GWS(x, NULL, el, g, 7, ACLNN_ERR_INNER_TILING_ERROR, "elasticInfo");
    /* NULL-pointer rules come before dtype rules, dtype rules before tiling rules */
    EXPECT_GWS(xd, NULL, NULL, NULL, 1, ACLNN_ERR_PARAM_NULLPTR, "group");
    EXPECT_GWS(xd, NULL, NULL, g, 1, ACLNN_ERR_PARAM_INVALID, "xRef dtype");

    aclTensor *all[] = {x, to, el, xd, xs, x0, to64, elf, to2, to11, toNz, el21};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) CHECK_EQ(aclDestroyTensor(all[i]), 0);
    for (int i = 0; i < nm; i++) CHECK_EQ(aclrtFree(mem[i]), 0);
    CHECK_EQ(aclrtResetDevice(0), 0);
    check_no_leaks();
}

/* Second-phase misuse and run-time failures. */
static void case_launch(void)
{
    Pair p;
    pair_open(&p);
    char host_ws[64];

    CHECK_EQ(aclnnDistributeBarrierV2(NULL, 0, NULL, p.s), ACLNN_ERR_PARAM_NULLPTR);
    CHECK_MSG("executor is NULL");
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(p.x, NULL, NULL, p.group, 2, &p.ws, &p.ex), 0);
    CHECK_EQ(aclrtMalloc(&p.wsp, p.ws, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK_EQ(aclnnDistributeBarrierV2(NULL, p.ws, p.ex, p.s), ACLNN_ERR_PARAM_NULLPTR); /* consumes ex */
    CHECK_MSG("workspace is NULL");
    CHECK_EQ(aclnnDistributeBarrierV2(p.wsp, p.ws, p.ex, p.s), ACLNN_ERR_PARAM_INVALID);  /* already consumed */
    CHECK_MSG("not a live executor");
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(p.x, NULL, NULL, p.group, 2, &p.ws, &p.ex), 0);
    CHECK_EQ(aclnnDistributeBarrierV2(p.wsp, p.ws - 1, p.ex, p.s), ACLNN_ERR_PARAM_INVALID);
    CHECK_MSG("smaller");
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(p.x, NULL, NULL, p.group, 2, &p.ws, &p.ex), 0);
    CHECK_EQ(aclnnDistributeBarrierV2(host_ws, p.ws, p.ex, p.s), ACLNN_ERR_PARAM_INVALID);
    CHECK_MSG("device buffer");
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(p.x, NULL, NULL, p.group, 2, &p.ws, &p.ex), 0);
    CHECK_EQ(aclnnDistributeBarrierV2(p.wsp, p.ws, p.ex, (aclrtStream)host_ws), ACLNN_ERR_RUNTIME_ERROR);
    CHECK_MSG("not a live stream");

    /* run-time failures surface at synchronize as 507015 with a message */
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(p.x, NULL, NULL, "no_such_group", 2, &p.ws, &p.ex), 0);
    CHECK_EQ(aclnnDistributeBarrierV2(p.wsp, p.ws, p.ex, p.s), 0);
    CHECK_EQ(aclrtSynchronizeStream(p.s), ACL_ERROR_RT_AICORE_EXCEPTION);
    CHECK_MSG("no_such_group");
    CHECK_EQ(aclrtSynchronizeStream(p.s), 0); /* the error was reported once */
    /* a worldSize that is not the communicator's rank count is refused before launch (documented rule) */
    CHECK_EQ(aclnnDistributeBarrierV2GetWorkspaceSize(p.x, NULL, NULL, p.group, 4, &p.ws, &p.ex),
             ACLNN_ERR_INNER_TILING_ERROR);
    CHECK_MSG("worldSize = 4 but the barrier communicator");

    int64_t counts[ACLSIM_OBJ_KIND_COUNT];
    aclsimLiveObjects(counts, ACLSIM_OBJ_KIND_COUNT);
    CHECK_EQ(counts[ACLSIM_OBJ_EXECUTOR], 0); /* every consumed executor was released */
    CHECK_EQ(aclDestroyTensor(p.x), 0);
    CHECK_EQ(aclrtFree(p.xd), 0);
    CHECK_EQ(aclrtFree(p.wsp), 0);
    CHECK_EQ(aclrtDestroyStream(p.s), 0);
    CHECK_EQ(HcclCommDestroy(p.comms[0]), 0);
    CHECK_EQ(HcclCommDestroy(p.comms[1]), 0);
    CHECK_EQ(aclrtResetDevice(0), 0);
    check_no_leaks();
}

/* A repeatable executor runs several times and is freed by aclDestroyAclOpExecutor. */
typedef struct {
    int rank;
    HcclComm comm;
    int rc;
} RepJob;

static void *rep_main(void *p)
{
    RepJob *j = p;
    j->rc = -1;
    aclrtContext ctx = NULL;
    if (aclrtCreateContext(&ctx, j->rank) != 0) return NULL;
    aclrtStream s = NULL;
    aclrtCreateStream(&s);
    char group[128];
    HcclGetCommName(j->comm, group);
    void *xd = NULL, *wsp = NULL;
    aclTensor *x = make_tensor(NULL, 0, ACL_BF16, 2, &xd);
    uint64_t ws = 0;
    aclOpExecutor *ex = NULL;
    int rc = aclnnDistributeBarrierV2GetWorkspaceSize(x, NULL, NULL, group, 2, &ws, &ex);
    if (rc == 0) rc = aclSetAclOpExecutorRepeatable(ex);
    aclDestroyTensor(x);
    if (rc == 0) rc = aclrtMalloc(&wsp, ws, ACL_MEM_MALLOC_HUGE_FIRST);
    for (int i = 0; i < 4 && rc == 0; i++) rc = aclnnDistributeBarrierV2(wsp, ws, ex, s);
    if (rc == 0) rc = aclrtSynchronizeStream(s);
    if (rc == 0) rc = aclDestroyAclOpExecutor(ex);
    if (rc == 0) rc = aclDestroyAclOpExecutor(ex) == ACLNN_ERR_INNER_NULLPTR ? 0 : 1;
    (void)aclGetRecentErrMsg();
    aclrtFree(wsp);
    aclrtFree(xd);
    aclrtDestroyStream(s);
    aclrtDestroyContext(ctx);
    HcclCommDestroy(j->comm);
    j->rc = rc;
    return NULL;
}

static void case_repeatable(void)
{
    int32_t devices[2] = {3, 2}; /* comm rank 0 on device 3, rank 1 on device 2 */
    HcclComm comms[2];
    CHECK_EQ(HcclCommInitAll(2, devices, comms), 0);
    RepJob jobs[2] = {{3, comms[0], -1}, {2, comms[1], -1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) CHECK_EQ(pthread_create(&th[i], NULL, rep_main, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK_EQ(jobs[0].rc, 0);
    CHECK_EQ(jobs[1].rc, 0);
    check_no_leaks();
}

/* HcclGetRootInfo + HcclCommInitRootInfo across threads. */
typedef struct {
    int rank, nranks;
    const HcclRootInfo *root;
    HcclComm comm;
    int rc;
    uint32_t got_rank, got_size;
    char name[128];
} RootJob;

/* Rank j->rank joins on device 4 + rank; j->rc gets the status. */
static int root_join(RootJob *j)
{
    aclrtSetDevice(4 + j->rank);
    j->rc = HcclCommInitRootInfo((uint32_t)j->nranks, j->root, (uint32_t)j->rank, &j->comm);
    return j->rc;
}

static void *root_main(void *p)
{
    RootJob *j = p;
    if (root_join(j)) return NULL;
    HcclGetRankId(j->comm, &j->got_rank);
    HcclGetRankSize(j->comm, &j->got_size);
    HcclGetCommName(j->comm, j->name);
    aclrtStream s = NULL;
    aclrtCreateStream(&s);
    for (int i = 0; i < 3 && j->rc == 0; i++) j->rc = HcclBarrier(j->comm, s);
    if (j->rc == 0) j->rc = aclrtSynchronizeStream(s);
    void *xd = NULL, *wsp = NULL;
    aclTensor *x = make_tensor(NULL, 0, ACL_BF16, 2, &xd);
    uint64_t ws = 0;
    aclOpExecutor *ex = NULL;
    if (j->rc == 0) j->rc = aclnnDistributeBarrierV2GetWorkspaceSize(x, NULL, NULL, j->name, j->nranks, &ws, &ex);
    if (j->rc == 0) j->rc = aclrtMalloc(&wsp, ws, ACL_MEM_MALLOC_HUGE_FIRST);
    if (j->rc == 0) j->rc = aclnnDistributeBarrierV2(wsp, ws, ex, s);
    if (j->rc == 0) j->rc = aclrtSynchronizeStream(s);
    aclDestroyTensor(x);
    aclrtFree(xd);
    if (wsp) aclrtFree(wsp);
    aclrtDestroyStream(s);
    HcclCommDestroy(j->comm);
    aclrtResetDevice(4 + j->rank);
    return NULL;
}

static void case_rootinfo(void)
{
    HcclRootInfo root, root2;
    CHECK_EQ(sizeof(HcclRootInfo), 4108);
    CHECK_EQ(sizeof(HcclCommConfig), 312);
    CHECK_EQ(HcclGetRootInfo(&root), 0);
    CHECK_EQ(HcclGetRootInfo(&root2), 0);
    CHECK(memcmp(&root, &root2, sizeof root) != 0);
    enum { N = 4 };
    RootJob jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].rank = N - 1 - i; /* join in reverse order */
        jobs[i].nranks = N;
        jobs[i].root = &root;
        CHECK_EQ(pthread_create(&th[i], NULL, root_main, &jobs[i]), 0);
        usleep(20000);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(jobs[i].rc, 0);
        CHECK_EQ(jobs[i].got_rank, jobs[i].rank);
        CHECK_EQ(jobs[i].got_size, N);
        CHECK(strcmp(jobs[i].name, jobs[0].name) == 0);
        CHECK(strncmp(jobs[i].name, "sim_hccl_group_", 15) == 0);
    }
    check_no_leaks();

    /* argument errors */
    HcclComm c = NULL;
    CHECK_EQ(aclrtSetDevice(0), 0);
    CHECK_EQ(HcclCommInitRootInfo(2, &root2, 2, &c), HCCL_E_PARA);
    CHECK_MSG("rank < nRanks");
    CHECK_EQ(HcclCommInitRootInfo(2, NULL, 0, &c), HCCL_E_PTR);
    (void)aclGetRecentErrMsg();
    HcclRootInfo junk;
    memset(&junk, 7, sizeof junk);
    CHECK_EQ(HcclCommInitRootInfo(2, &junk, 0, &c), HCCL_E_PARA);
    CHECK_MSG("HcclGetRootInfo");
    /* a 1-rank communicator needs nobody else; with a config it is the same */
    HcclCommConfig cfg;
    HcclCommConfigInit(&cfg);
    CHECK_EQ(HcclCommInitRootInfoConfig(1, &root2, 0, &cfg, &c), 0);
    uint32_t sz = 0;
    CHECK_EQ(HcclGetRankSize(c, &sz), 0);
    CHECK_EQ(sz, 1);
    CHECK_EQ(HcclCommDestroy(c), 0);
    /* a rank whose peers never come gives up after the set-up timeout (HCCL_CONNECT_TIMEOUT; shortened here with
     * the simulator's ACLNN_SIM_CONNECT_TIMEOUT_MS), not after the hang timeout of collectives */
    setenv("ACLNN_SIM_HANG_TIMEOUT_MS", "20", 1);
    setenv("ACLNN_SIM_CONNECT_TIMEOUT_MS", "200", 1);
    double t0 = now_ms();
    CHECK_EQ(HcclCommInitRootInfo(2, &root, 1, &c), HCCL_E_TIMEOUT);
    CHECK(now_ms() - t0 >= 180.0);
    CHECK_MSG("rank(s) 0");
    CHECK_EQ(HcclCommInitRootInfo(2, &root, 1, &c), HCCL_E_TIMEOUT);
    CHECK_MSG("ACLNN_SIM_CONNECT_TIMEOUT_MS");
    unsetenv("ACLNN_SIM_CONNECT_TIMEOUT_MS");
    unsetenv("ACLNN_SIM_HANG_TIMEOUT_MS");
    CHECK_EQ(aclrtResetDevice(0), 0);
    check_no_leaks();
}

/* The simulator's rendezvous, exported by libop_common.so for its op libraries (declared in sim/src/simcore.h,
 * which is not installed): driven directly here, as a collective kernel drives it. */
extern int sim_comm_exchange(void *comm, const int *participants, int n, void *payload, void **peers_out,
                             int64_t timeout_us, void *stream);

/* The readers case: what each rank publishes (a kernel's stack frame, reused once it returns), each rank's comm,
 * the status of its two exchanges, and what rank 1 read from rank 0's payload. */
static char g_payload[2][64];
static HcclComm g_reader_comm[2];
static int g_reader_rc[2][2];
static char g_seen[64];

static void *reader_main(void *arg)
{
    const int rank = (int)(intptr_t)arg;
    void *peers[2] = {NULL, NULL};
    memset(g_payload[rank], 'A' + rank, sizeof g_payload[rank]);
    g_reader_rc[rank][0] = sim_comm_exchange(g_reader_comm[rank], NULL, 0, g_payload[rank], peers, 5000000, NULL);
    if (rank == 0) { /* fails its next call at once (aborted), then its frame is reused */
        aclsimAbortComm(g_reader_comm[0], "aborted between the two exchanges");
        g_reader_rc[0][1] = sim_comm_exchange(g_reader_comm[0], NULL, 0, NULL, peers, 5000000, NULL);
        memset(g_payload[0], 'X', sizeof g_payload[0]);
    } else { /* still computing from rank 0's payload */
        usleep(200000);
        if (peers[0]) memcpy(g_seen, peers[0], sizeof g_seen);
        g_reader_rc[1][1] = sim_comm_exchange(g_reader_comm[1], NULL, 0, NULL, peers, 5000000, NULL);
    }
    return NULL;
}

/* A rank whose call fails right after a call in which it published a payload does not return (and let its caller
 * reuse that memory) while a peer may still be reading the payload: the peer reads what was published. */
static void case_readers(void)
{
    int32_t devices[2] = {0, 1};
    CHECK_EQ(HcclCommInitAll(2, devices, g_reader_comm), 0);
    pthread_t th[2];
    for (intptr_t i = 0; i < 2; i++) CHECK_EQ(pthread_create(&th[i], NULL, reader_main, (void *)i), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(g_reader_rc[i][0], 0);
        CHECK_EQ(g_reader_rc[i][1], -5); /* SIM_ERR_ABORTED */
    }
    char want[64];
    memset(want, 'A', sizeof want);
    CHECK(memcmp(g_seen, want, sizeof want) == 0);
    CHECK_EQ(aclsimRecoverComm(g_reader_comm[0]), 0);
    CHECK_EQ(aclsimCommState(g_reader_comm[0]), 0);
    CHECK_EQ(HcclCommDestroy(g_reader_comm[0]), 0);
    CHECK_EQ(HcclCommDestroy(g_reader_comm[1]), 0);
    check_no_leaks();
}

static void *late_join_main(void *p)
{
    root_join(p);
    return NULL;
}

/* Communicator set-up waits as HCCL_CONNECT_TIMEOUT says (seconds in [120, 7200], default 120), which has nothing
 * to do with the hang timeout of collectives; HCCL refuses other values in every set-up call (HCCL_E_PARA). */
static void case_connect_timeout(void)
{
    unsetenv("HCCL_CONNECT_TIMEOUT");
    unsetenv("ACLNN_SIM_CONNECT_TIMEOUT_MS");
    CHECK_EQ(aclsimConnectTimeoutMs(), 120000);
    setenv("HCCL_CONNECT_TIMEOUT", "200", 1);
    CHECK_EQ(aclsimConnectTimeoutMs(), 200000);
    setenv("HCCL_CONNECT_TIMEOUT", "7200", 1);
    CHECK_EQ(aclsimConnectTimeoutMs(), 7200000);
    setenv("ACLNN_SIM_CONNECT_TIMEOUT_MS", "300", 1); /* the simulator's own knob wins */
    CHECK_EQ(aclsimConnectTimeoutMs(), 300);
    unsetenv("ACLNN_SIM_CONNECT_TIMEOUT_MS");

    /* a rank that joins 300 ms after its peer still meets it, although collectives would give up after 20 ms */
    setenv("ACLNN_SIM_HANG_TIMEOUT_MS", "20", 1);
    unsetenv("HCCL_CONNECT_TIMEOUT");
    HcclRootInfo root;
    CHECK_EQ(HcclGetRootInfo(&root), 0);
    RootJob early = {.rank = 0, .nranks = 2, .root = &root};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, late_join_main, &early), 0);
    usleep(300000);
    RootJob late = {.rank = 1, .nranks = 2, .root = &root};
    late_join_main(&late);
    pthread_join(th, NULL);
    CHECK_EQ(early.rc, HCCL_SUCCESS);
    CHECK_EQ(late.rc, HCCL_SUCCESS);
    CHECK_EQ(HcclCommDestroy(early.comm), 0);
    CHECK_EQ(HcclCommDestroy(late.comm), 0);
    unsetenv("ACLNN_SIM_HANG_TIMEOUT_MS");

    static const char *const bad[] = {"60", "119", "7201", "abc", "120.5", "-130", " 200", "", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!bad[i][0]) continue; /* empty: unset, the default */
        setenv("HCCL_CONNECT_TIMEOUT", bad[i], 1);
        CHECK_EQ(aclsimConnectTimeoutMs(), -1);
        CHECK_MSG("[120, 7200]");
        HcclRootInfo r2;
        CHECK_EQ(HcclGetRootInfo(&r2), HCCL_E_PARA);
        CHECK_MSG("HCCL_CONNECT_TIMEOUT");
        HcclComm c = NULL;
        CHECK_EQ(HcclCommInitRootInfo(2, &root, 1, &c), HCCL_E_PARA);
        CHECK_MSG("HCCL_CONNECT_TIMEOUT");
        int32_t one[1] = {6};
        CHECK_EQ(HcclCommInitAll(1, one, &c), HCCL_E_PARA);
        CHECK_MSG("[120, 7200]");
    }
    setenv("HCCL_CONNECT_TIMEOUT", "120", 1);
    HcclRootInfo r3;
    CHECK_EQ(HcclGetRootInfo(&r3), 0);
    unsetenv("HCCL_CONNECT_TIMEOUT");
    CHECK_EQ(aclrtResetDevice(4), 0);
    CHECK_EQ(aclrtResetDevice(5), 0);
    check_no_leaks();
}

static void case_hccl_misc(void)
{
    int32_t one[1] = {5};
    HcclComm c[3];
    CHECK_EQ(HcclCommInitAll(1, one, c), 0); /* TP world size 1, as in the demos */
    char name[128] = {0};
    CHECK_EQ(HcclGetCommName(c[0], name), 0);
    CHECK(strncmp(name, "sim_hccl_group_", 15) == 0);
    uint32_t r = 9, n = 0;
    CHECK_EQ(HcclGetRankId(c[0], &r), 0);
    CHECK_EQ(HcclGetRankSize(c[0], &n), 0);
    CHECK(r == 0 && n == 1);
    CHECK_EQ(HcclGetRankId(c[0], NULL), HCCL_E_PTR);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(HcclGetCommName(c[0], NULL), HCCL_E_PTR);
    (void)aclGetRecentErrMsg();
    HcclResult ae = HCCL_E_PARA;
    CHECK_EQ(HcclGetCommAsyncError(c[0], &ae), 0);
    CHECK_EQ(ae, HCCL_SUCCESS);
    CHECK_EQ(HcclCommDestroy(c[0]), 0);
    CHECK_EQ(HcclCommDestroy(c[0]), HCCL_E_PARA);
    CHECK_MSG("not a live HcclComm");
    CHECK_EQ(HcclGetCommName(c[0], name), HCCL_E_PARA);
    (void)aclGetRecentErrMsg();

    int32_t dup[3] = {1, 2, 1}, bad[2] = {0, 99};
    CHECK_EQ(HcclCommInitAll(3, dup, c), HCCL_E_PARA);
    CHECK_MSG("both on device 1");
    CHECK_EQ(HcclCommInitAll(2, bad, c), HCCL_E_PARA);
    CHECK_MSG("device 99");
    CHECK_EQ(HcclCommInitAll(0, bad, c), HCCL_E_PARA);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(HcclCommInitAll(2, NULL, c), HCCL_E_PTR);
    (void)aclGetRecentErrMsg();

    /* two groups on the same devices get different names, and each is found by its own name */
    int32_t d2[2] = {0, 1};
    HcclComm a[2], b[2];
    char na[128], nb[128];
    CHECK_EQ(HcclCommInitAll(2, d2, a), 0);
    CHECK_EQ(HcclCommInitAll(2, d2, b), 0);
    CHECK_EQ(HcclGetCommName(a[1], na), 0);
    CHECK_EQ(HcclGetCommName(b[1], nb), 0);
    CHECK(strcmp(na, nb) != 0);
    char expect[256];
    snprintf(expect, sizeof expect, "HcclGetCommName comm=%p commName=%p", b[1], (void *)nb);
    char got[256];
    aclsimLastCall(got, sizeof got);
    CHECK(strcmp(got, expect) == 0);
    CHECK(strcmp(HcclGetErrorString(HCCL_E_PARA), "parameter error") == 0);
    CHECK(strcmp(HcclGetErrorString((HcclResult)12345), "unknown error") == 0);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(HcclCommDestroy(a[i]), 0);
        CHECK_EQ(HcclCommDestroy(b[i]), 0);
    }
    check_no_leaks();
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <case> [ranks]\n", argv[0]);
        return 2;
    }
    const char *c = argv[1];
    if (strcmp(c, "barrier") == 0 && argc == 3) case_barrier(atoi(argv[2]));
    else if (strcmp(c, "v1") == 0) case_v1();
    else if (strcmp(c, "elastic") == 0) case_elastic();
    else if (strcmp(c, "timeout") == 0) case_timeout();
    else if (strcmp(c, "timeout0") == 0) case_timeout0();
    else if (strcmp(c, "hang") == 0) case_hang();
    else if (strcmp(c, "sync_timeout") == 0) case_sync_timeout();
    else if (strcmp(c, "validate") == 0) case_validate();
    else if (strcmp(c, "launch") == 0) case_launch();
    else if (strcmp(c, "repeatable") == 0) case_repeatable();
    else if (strcmp(c, "rootinfo") == 0) case_rootinfo();
    else if (strcmp(c, "connect_timeout") == 0) case_connect_timeout();
    else if (strcmp(c, "readers") == 0) case_readers();
    else if (strcmp(c, "hccl_misc") == 0) case_hccl_misc();
    else {
        fprintf(stderr, "unknown case %s\n", c);
        return 2;
    }
    printf("PASS %s%s%s\n", c, argc == 3 ? " " : "", argc == 3 ? argv[2] : "");
    return 0;
}
