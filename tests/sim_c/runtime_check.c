/*
 * Checks of the CANN simulator's runtime, meta API and tracking, built against build/cann-sim by
 * tests/test_sim_core.py. Usage: runtime_check <case>; prints "PASS <case>" and exits 0, or prints
 * "FAIL <file>:<line>: <what>" and exits 1.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "aclsim.h"
#include "check_common.h"
#include "hccl/hccl.h"

static char g_call[16384];

static const char *last_call(void)
{
    aclsimLastCall(g_call, sizeof g_call);
    return g_call;
}

#define CHECK_CALL(expected)                                                        \
    do {                                                                            \
        const char *got_ = last_call();                                             \
        if (strcmp(got_, (expected)) != 0) {                                        \
            printf("FAIL %s:%d: last call\n  got:      %s\n  expected: %s\n", __FILE__, __LINE__, got_, (expected)); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

/* The message of the last failure must exist, mention `word`, and be cleared by reading it. */
static void check_msg_cleared(const char *word, int line)
{
    check_msg(word, __FILE__, line);
    if (aclGetRecentErrMsg() != NULL) {
        printf("FAIL %s:%d: aclGetRecentErrMsg did not clear the message\n", __FILE__, line);
        exit(1);
    }
}
#define CHECK_MSG(word) check_msg_cleared(word, __LINE__)

/* ---------------------------------------------------------------------------------------------- */

static void case_basics(void)
{
    CHECK_EQ(aclsimIsSimulator(), 1);
    CHECK_EQ(aclFinalize(), ACL_ERROR_UNINITIALIZE);
    CHECK_MSG("aclInit");
    CHECK_EQ(aclInit(NULL), ACL_SUCCESS);
    CHECK_CALL("aclInit configPath=NULL");
    CHECK_EQ(aclInit(NULL), ACL_ERROR_REPEAT_INITIALIZE);
    CHECK_MSG("already");
    CHECK_EQ(aclInit("/nonexistent/acl.json"), ACL_ERROR_INVALID_FILE);
    CHECK_CALL("aclInit configPath=\"/nonexistent/acl.json\"");
    CHECK_MSG("acl.json");
    CHECK(aclGetRecentErrMsg() == NULL);

    uint32_t n = 0;
    CHECK_EQ(aclrtGetDeviceCount(&n), 0);
    const char *env = getenv("ACLNN_SIM_DEVICE_COUNT");
    CHECK_EQ(n, env ? atoi(env) : 16);
    int32_t dev = -5;
    CHECK_EQ(aclrtGetDevice(&dev), ACL_ERROR_RT_CONTEXT_NULL);
    CHECK_MSG("aclrtGetDevice");
    CHECK_EQ(aclrtSetDevice((int32_t)n), ACL_ERROR_RT_INVALID_DEVICEID);
    CHECK_MSG("out of range");
    CHECK_EQ(aclrtSetDevice(-1), ACL_ERROR_RT_INVALID_DEVICEID);
    CHECK_CALL("aclrtSetDevice deviceId=-1");
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtSetDevice(3), 0);
    CHECK_EQ(aclrtGetDevice(&dev), 0);
    CHECK_EQ(dev, 3);

    const char *soc = aclrtGetSocName();
    CHECK(soc && strstr(soc, "Ascend910_93") && strstr(soc, "simulator"));
    int32_t ma = 0, mi = 0, pa = 0;
    CHECK_EQ(aclrtGetVersion(&ma, &mi, &pa), 0);
    CHECK_EQ(ma, 1);
    CHECK_EQ(aclDataTypeSize(ACL_BF16), 2);
    CHECK_EQ(aclDataTypeSize(ACL_INT64), 8);
    CHECK_EQ(aclDataTypeSize(ACL_STRING), 0);
    CHECK_EQ(aclnnInit(NULL), 0);

    /* contexts */
    aclrtContext ctx = NULL, cur = NULL, def3 = NULL;
    CHECK_EQ(aclrtGetCurrentContext(&def3), 0);
    CHECK(def3 != NULL);
    CHECK_EQ(aclrtDestroyContext(def3), ACL_ERROR_RT_PARAM_INVALID); /* default context */
    CHECK_MSG("default context");
    CHECK_EQ(aclrtCreateContext(&ctx, 5), 0);
    CHECK_EQ(aclrtGetDevice(&dev), 0);
    CHECK_EQ(dev, 5);
    CHECK_EQ(aclrtGetCurrentContext(&cur), 0);
    CHECK(cur == ctx);
    CHECK_EQ(aclrtSetDevice(2), 0);
    CHECK_EQ(aclrtGetCurrentContext(&cur), 0);
    CHECK(cur != ctx);
    CHECK_EQ(aclrtSetCurrentContext(ctx), 0);
    CHECK_EQ(aclrtGetDevice(&dev), 0);
    CHECK_EQ(dev, 5);
    CHECK_EQ(aclrtSetCurrentContext(def3), 0);
    CHECK_EQ(aclrtGetDevice(&dev), 0);
    CHECK_EQ(dev, 3);
    CHECK_EQ(aclrtCreateContext(&ctx, 99), ACL_ERROR_RT_INVALID_DEVICEID);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtDestroyContext(ctx), 0);
    CHECK_EQ(aclrtDestroyContext(ctx), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("not a live context");
    CHECK_EQ(aclrtSetCurrentContext(ctx), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();

    /* the default stream of the current device works without creating one */
    void *buf = NULL;
    CHECK_EQ(aclrtMalloc(&buf, 64, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK_EQ(aclrtMemsetAsync(buf, 64, 0x5a, 64, NULL), 0);
    CHECK_EQ(aclrtSynchronizeStream(NULL), 0);
    CHECK_EQ(((unsigned char *)buf)[63], 0x5a);
    CHECK_EQ(aclrtSynchronizeDevice(), 0);
    CHECK_EQ(aclrtFree(buf), 0);

    CHECK_EQ(aclrtResetDevice(2), 0);
    CHECK_EQ(aclrtResetDevice(3), 0);
    CHECK_EQ(aclrtResetDevice(5), 0);
    CHECK_EQ(aclnnFinalize(), 0);
    CHECK_EQ(aclFinalize(), 0);
    CHECK_EQ(aclFinalize(), ACL_ERROR_REPEAT_FINALIZE);
    CHECK_MSG("finalised");
    check_no_leaks();
}

static void case_memory(void)
{
    void *d = NULL, *d2 = NULL, *h = NULL;
    CHECK_EQ(aclrtMalloc(&d, 256, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_RT_CONTEXT_NULL); /* no device yet */
    CHECK_MSG("aclrtSetDevice");
    CHECK_EQ(aclrtSetDevice(1), 0);
    size_t free0 = 0, total = 0, free1 = 0;
    CHECK_EQ(aclrtGetMemInfo(ACL_HBM_MEM, &free0, &total), 0);
    CHECK(total > 0 && free0 <= total);
    CHECK_EQ(aclrtMalloc(&d, 0, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtMalloc(NULL, 16, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtMalloc(&d, 256, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK_EQ(((uintptr_t)d) % 32, 0);
    CHECK_EQ(aclrtMalloc(&d2, 3 << 20, ACL_MEM_MALLOC_NORMAL_ONLY), 0); /* large path */
    CHECK_EQ(aclrtGetMemInfo(ACL_HBM_MEM, &free1, &total), 0);
    CHECK_EQ(free0 - free1, 256 + (3 << 20));
    CHECK_EQ(aclrtMallocHost(&h, 256), 0);

    unsigned char src[256], back[512];
    for (int i = 0; i < 256; i++) src[i] = (unsigned char)(i * 7 + 1);
    CHECK_EQ(aclrtMemcpy(d, 256, src, 256, ACL_MEMCPY_HOST_TO_DEVICE), 0);
    CHECK_EQ(aclrtMemcpy((char *)d2 + (2 << 20), 256, d, 256, ACL_MEMCPY_DEVICE_TO_DEVICE), 0);
    memset(back, 0, sizeof back);
    CHECK_EQ(aclrtMemcpy(back, sizeof back, (char *)d2 + (2 << 20), 256, ACL_MEMCPY_DEVICE_TO_HOST), 0);
    CHECK(memcmp(src, back, 256) == 0);
    CHECK_EQ(aclrtMemset(d, 256, 0xab, 100), 0);
    CHECK_EQ(aclrtMemcpy(back, 256, d, 256, ACL_MEMCPY_DEVICE_TO_HOST), 0);
    CHECK_EQ(back[99], 0xab);
    CHECK_EQ(back[100], src[100]);
    CHECK_EQ(aclrtMemcpy(h, 256, d, 256, ACL_MEMCPY_DEFAULT), 0);
    CHECK_EQ(((unsigned char *)h)[0], 0xab);

    /* validation */
    CHECK_EQ(aclrtMemcpy(d, 16, src, 17, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("destMax");
    CHECK_EQ(aclrtMemcpy(NULL, 16, src, 16, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("dst");
    CHECK_EQ(aclrtMemcpy(d, 16, NULL, 16, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("src");
    CHECK_EQ(aclrtMemcpy(d, 16, src, 16, (aclrtMemcpyKind)7), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("kind");
    CHECK_EQ(aclrtMemcpy(back, 16, src, 16, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("not inside");
    CHECK_EQ(aclrtMemcpy(back, 512, d, 257, ACL_MEMCPY_DEVICE_TO_HOST), ACL_ERROR_RT_PARAM_INVALID); /* overruns d */
    CHECK_MSG("not inside");
    CHECK_EQ(aclrtMemset(d, 10, 0, 11), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("maxCount");
    CHECK_EQ(aclrtMemcpy(back, 0, src, 0, ACL_MEMCPY_HOST_TO_HOST), 0);

    /* async on a stream */
    aclrtStream s = NULL;
    CHECK_EQ(aclrtCreateStream(&s), 0);
    memset(back, 0, sizeof back);
    CHECK_EQ(aclrtMemcpyAsync(d, 256, src, 256, ACL_MEMCPY_HOST_TO_DEVICE, s), 0);
    CHECK_EQ(aclrtMemsetAsync(d, 256, 1, 8, s), 0);
    CHECK_EQ(aclrtMemcpyAsync(back, 256, d, 256, ACL_MEMCPY_DEVICE_TO_HOST, s), 0);
    CHECK_EQ(aclrtSynchronizeStream(s), 0);
    CHECK_EQ(back[7], 1);
    CHECK_EQ(back[8], src[8]);
    CHECK_EQ(aclrtMemcpyAsync(d, 1, src, 2, ACL_MEMCPY_HOST_TO_DEVICE, s), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("destMax");

    /* frees: double and unknown pointers are errors, not crashes */
    CHECK_EQ(aclrtFree(d), 0);
    CHECK_EQ(aclrtFree(d), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("not a live aclrtMalloc pointer");
    CHECK_EQ(aclrtFree(src), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtFree(NULL), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtFreeHost(d2), ACL_ERROR_RT_PARAM_INVALID); /* device pointer to FreeHost */
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtFree(d2), 0);
    CHECK_EQ(aclrtFreeHost(h), 0);
    CHECK_EQ(aclrtFreeHost(h), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtDestroyStream(s), 0);
    CHECK_EQ(aclrtDestroyStream(s), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("not a live stream");
    CHECK_EQ(aclrtSynchronizeStream(s), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtResetDevice(1), 0);
    check_no_leaks();
}

static void case_stream_order(void)
{
    CHECK_EQ(aclrtSetDevice(0), 0);
    enum { N = 2000 };
    aclrtStream s = NULL, s2 = NULL;
    CHECK_EQ(aclrtCreateStreamWithConfig(&s, 0, 0), 0);
    CHECK_EQ(aclrtCreateStream(&s2), 0);
    void *slot = NULL, *out = NULL;
    CHECK_EQ(aclrtMalloc(&slot, 64, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    CHECK_EQ(aclrtMalloc(&out, N * 64, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    /* each step overwrites one slot and snapshots it: only in-order execution gives out[i] == i % 251 */
    for (int i = 0; i < N; i++) {
        CHECK_EQ(aclrtMemsetAsync(slot, 64, i % 251, 64, s), 0);
        CHECK_EQ(aclrtMemcpyAsync((char *)out + i * 64, 64, slot, 64, ACL_MEMCPY_DEVICE_TO_DEVICE, s), 0);
    }
    CHECK_EQ(aclrtSynchronizeStreamWithTimeout(s, 10000), 0);
    for (int i = 0; i < N; i++) CHECK_EQ(((unsigned char *)out)[i * 64 + 63], i % 251);

    /* events: s2 waits for the work recorded on s */
    aclrtEvent ev = NULL;
    CHECK_EQ(aclrtCreateEvent(&ev), 0);
    CHECK_EQ(aclrtSynchronizeEvent(ev), 0); /* never recorded: returns at once */
    for (int i = 0; i < 200; i++) CHECK_EQ(aclrtMemsetAsync(out, N * 64, i, N * 64, s), 0);
    CHECK_EQ(aclrtRecordEvent(ev, s), 0);
    CHECK_EQ(aclrtStreamWaitEvent(s2, ev), 0);
    CHECK_EQ(aclrtMemcpyAsync(slot, 64, (char *)out + 4096, 64, ACL_MEMCPY_DEVICE_TO_DEVICE, s2), 0);
    CHECK_EQ(aclrtSynchronizeStream(s2), 0);
    CHECK_EQ(((unsigned char *)slot)[0], 199);
    CHECK_EQ(aclrtSynchronizeEvent(ev), 0);
    CHECK_EQ(aclrtDestroyEvent(ev), 0);
    CHECK_EQ(aclrtDestroyEvent(ev), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtRecordEvent(ev, s), ACL_ERROR_RT_PARAM_INVALID);
    (void)aclGetRecentErrMsg();

    CHECK_EQ(aclrtSynchronizeStreamWithTimeout(s, -2), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_MSG("timeout");
    CHECK_EQ(aclrtSynchronizeStream(s), 0); /* the event completes just before its stream goes idle */
    CHECK_EQ(aclrtSynchronizeStreamWithTimeout(s, 0), 0); /* idle: polling succeeds */
    CHECK_EQ(aclrtFree(slot), 0);
    CHECK_EQ(aclrtFree(out), 0);
    CHECK_EQ(aclrtDestroyStream(s), 0);
    CHECK_EQ(aclrtDestroyStream(s2), 0);
    CHECK_EQ(aclrtResetDevice(0), 0);
    check_no_leaks();
}

static void case_tensors(void)
{
    int64_t shape[2] = {2, 3}, strides[2] = {3, 1};
    int dummy;
    char expect[1024];
    aclTensor *t = aclCreateTensor(shape, 2, ACL_BF16, strides, 5000000000LL, ACL_FORMAT_ND, shape, 2, &dummy);
    CHECK(t != NULL);
    snprintf(expect, sizeof expect,
             "aclCreateTensor viewDims=[2,3] viewDimsNum=2 dataType=27 stride=[3,1] offset=5000000000 format=2 "
             "storageDims=[2,3] storageDimsNum=2 tensorData=%p", (void *)&dummy);
    CHECK_CALL(expect);

    int64_t *dims = NULL, *st = NULL, off = 0;
    uint64_t nd = 0, ns = 0;
    CHECK_EQ(aclGetViewShape(t, &dims, &nd), 0);
    CHECK(nd == 2 && dims[0] == 2 && dims[1] == 3);
    free(dims);
    CHECK_EQ(aclGetViewStrides(t, &st, &ns), 0);
    CHECK(ns == 2 && st[0] == 3 && st[1] == 1);
    free(st);
    CHECK_EQ(aclGetStorageShape(t, &dims, &nd), 0);
    CHECK(nd == 2 && dims[1] == 3);
    free(dims);
    CHECK_EQ(aclGetViewOffset(t, &off), 0);
    CHECK_EQ(off, 5000000000LL);
    aclDataType dt;
    aclFormat fmt;
    CHECK_EQ(aclGetDataType(t, &dt), 0);
    CHECK_EQ(dt, ACL_BF16);
    CHECK_EQ(aclGetFormat(t, &fmt), 0);
    CHECK_EQ(fmt, ACL_FORMAT_ND);
    CHECK_EQ(aclGetViewShape(t, NULL, &nd), ACLNN_ERR_PARAM_NULLPTR);
    (void)aclGetRecentErrMsg();
    void *raw = NULL;
    CHECK_EQ(aclSetRawTensorAddr(t, shape), 0);
    CHECK_EQ(aclGetRawTensorAddr(t, &raw), 0);
    CHECK(raw == shape);
    CHECK_EQ(aclInitTensor(t, shape, 1, ACL_INT32, NULL, 0, ACL_FORMAT_ND, shape, 1, &dummy), 0);
    CHECK_EQ(aclGetViewStrides(t, &st, &ns), 0);
    CHECK(ns == 1 && st[0] == 1);
    free(st);

    /* creation rules */
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(aclCreateTensor(nine, 9, ACL_FLOAT, NULL, 0, ACL_FORMAT_ND, nine, 9, &dummy) == NULL);
    CHECK_MSG("at most 8");
    CHECK(aclCreateTensor(NULL, 2, ACL_FLOAT, NULL, 0, ACL_FORMAT_ND, shape, 2, &dummy) == NULL);
    CHECK_MSG("viewDims");
    CHECK(aclCreateTensor(shape, 2, ACL_FLOAT, NULL, 0, ACL_FORMAT_ND, NULL, 2, &dummy) == NULL);
    CHECK_MSG("storageDims");
    aclTensor *scalar = aclCreateTensor(NULL, 0, ACL_FLOAT, NULL, 0, ACL_FORMAT_ND, NULL, 0, NULL);
    CHECK(scalar != NULL);
    CHECK_CALL("aclCreateTensor viewDims=NULL viewDimsNum=0 dataType=0 stride=NULL offset=0 format=2 "
               "storageDims=NULL storageDimsNum=0 tensorData=NULL");

    /* destroy: double and unknown are errors, never crashes */
    CHECK_EQ(aclDestroyTensor(t), 0);
    CHECK_EQ(aclDestroyTensor(t), ACLNN_ERR_PARAM_NULLPTR);
    CHECK_MSG("not a live aclTensor");
    CHECK_EQ(aclDestroyTensor((const aclTensor *)&dummy), ACLNN_ERR_PARAM_NULLPTR);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclDestroyTensor(NULL), 0);
    CHECK_EQ(aclDestroyTensor(scalar), 0);

    /* arrays, scalars, lists */
    int64_t vals[3] = {1, -2, 1LL << 40};
    aclIntArray *ia = aclCreateIntArray(vals, 3);
    CHECK(ia != NULL);
    CHECK_CALL("aclCreateIntArray value=[1,-2,1099511627776] size=3");
    float fv[2] = {1.5f, 2.5f};
    aclFloatArray *fa = aclCreateFloatArray(fv, 2);
    bool bv[2] = {true, false};
    aclBoolArray *ba = aclCreateBoolArray(bv, 2);
    float one = 1.0f;
    aclScalar *sc = aclCreateScalar(&one, ACL_FLOAT);
    CHECK(fa && ba && sc);
    CHECK_EQ(aclDestroyFloatArray((const aclFloatArray *)ia), ACLNN_ERR_PARAM_NULLPTR); /* wrong kind */
    CHECK_MSG("aclFloatArray");
    CHECK_EQ(aclDestroyIntArray(ia), 0);
    CHECK_EQ(aclDestroyIntArray(ia), ACLNN_ERR_PARAM_NULLPTR);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclDestroyFloatArray(fa), 0);
    CHECK_EQ(aclDestroyBoolArray(ba), 0);
    CHECK_EQ(aclDestroyScalar(sc), 0);
    CHECK(aclCreateIntArray(NULL, 2) == NULL);
    (void)aclGetRecentErrMsg();

    aclTensor *items[2];
    items[0] = aclCreateTensor(shape, 2, ACL_FLOAT, NULL, 0, ACL_FORMAT_ND, shape, 2, &dummy);
    items[1] = aclCreateTensor(shape, 2, ACL_FLOAT, NULL, 0, ACL_FORMAT_ND, shape, 2, &dummy);
    aclTensorList *tl = aclCreateTensorList((const aclTensor *const *)items, 2);
    CHECK(tl != NULL);
    int64_t counts[ACLSIM_OBJ_KIND_COUNT];
    aclsimLiveObjects(counts, ACLSIM_OBJ_KIND_COUNT);
    CHECK_EQ(counts[ACLSIM_OBJ_TENSOR], 2);
    CHECK_EQ(counts[ACLSIM_OBJ_ARRAY], 1);
    CHECK_EQ(aclDestroyTensorList(tl), 0); /* also destroys the tensors */
    aclScalar *s1 = aclCreateScalar(&one, ACL_FLOAT);
    aclScalarList *sl = aclCreateScalarList((const aclScalar *const *)&s1, 1);
    CHECK_EQ(aclDestroyScalarList(sl), 0);

    /* executor API on bad handles */
    CHECK_EQ(aclDestroyAclOpExecutor(NULL), ACLNN_ERR_INNER_NULLPTR);
    CHECK_MSG("NULL");
    CHECK_EQ(aclSetAclOpExecutorRepeatable(NULL), ACLNN_ERR_INNER_NULLPTR);
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclDestroyAclOpExecutor((aclOpExecutor *)&dummy), ACLNN_ERR_INNER_NULLPTR);
    CHECK_MSG("not a live executor");
    check_no_leaks();
}

static void case_last_call(void)
{
    char small[8];
    void *d = NULL;
    CHECK_EQ(aclrtSetDevice(0), 0);
    CHECK_EQ(aclrtMalloc(&d, 64, ACL_MEM_MALLOC_HUGE_ONLY), 0);
    char expect[512];
    snprintf(expect, sizeof expect, "aclrtMalloc devPtr=%p size=64 policy=1", (void *)&d);
    CHECK_CALL(expect);
    unsigned char src[64] = {0};
    CHECK_EQ(aclrtMemcpy(d, 64, src, 64, ACL_MEMCPY_HOST_TO_DEVICE), 0);
    snprintf(expect, sizeof expect, "aclrtMemcpy dst=%p destMax=64 src=%p count=64 kind=1", d, (void *)src);
    CHECK_CALL(expect);
    /* size_t above 2^32 arrives intact (the call fails validation after recording) */
    CHECK_EQ(aclrtMemcpy(d, 6000000000ULL, src, 5000000001ULL, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_RT_PARAM_INVALID);
    snprintf(expect, sizeof expect, "aclrtMemcpy dst=%p destMax=6000000000 src=%p count=5000000001 kind=1", d,
             (void *)src);
    CHECK_CALL(expect);
    (void)aclGetRecentErrMsg();
    CHECK_CALL(expect); /* aclGetRecentErrMsg does not overwrite the record */
    CHECK_EQ(aclrtMemset(d, 64, -1, 64), 0);
    snprintf(expect, sizeof expect, "aclrtMemset devPtr=%p maxCount=64 value=-1 count=64", d);
    CHECK_CALL(expect);
    CHECK_EQ(aclrtSynchronizeStreamWithTimeout(NULL, -1), 0);
    CHECK_CALL("aclrtSynchronizeStreamWithTimeout stream=NULL timeout=-1");
    CHECK_EQ(aclrtFree(d), 0);

    /* truncation: the return value is the full length */
    int32_t full = aclsimLastCall(NULL, 0);
    CHECK_EQ(full, (int32_t)strlen(last_call()));
    CHECK_EQ(aclsimLastCall(small, sizeof small), full);
    CHECK_EQ(strlen(small), 7);
    CHECK(strncmp(small, "aclrtFr", 7) == 0);

    int64_t big = 5000000000LL;
    aclIntArray *a = aclCreateIntArray(&big, 1);
    CHECK_CALL("aclCreateIntArray value=[5000000000] size=1");
    CHECK_EQ(aclDestroyIntArray(a), 0);
    snprintf(expect, sizeof expect, "aclDestroyIntArray array=%p", (void *)a);
    CHECK_CALL(expect);
    CHECK(strcmp(HcclGetErrorString(HCCL_E_TIMEOUT), "timeout") == 0);
    CHECK_CALL("HcclGetErrorString code=9");
    CHECK_EQ(HcclCommDestroy(NULL), HCCL_E_PTR);
    CHECK_CALL("HcclCommDestroy comm=NULL");
    (void)aclGetRecentErrMsg();
    CHECK_EQ(aclrtCreateStreamWithConfig(NULL, 4000000000U, 7), ACL_ERROR_RT_PARAM_INVALID);
    CHECK_CALL("aclrtCreateStreamWithConfig stream=NULL priority=4000000000 flag=7");
    (void)aclGetRecentErrMsg();

    /* records are per thread */
    CHECK_EQ(aclrtResetDevice(0), 0);
    check_no_leaks();
}

static void case_tracking(void)
{
    CHECK(strcmp(aclsimObjectKindName(ACLSIM_OBJ_TENSOR), "tensor") == 0);
    CHECK(strcmp(aclsimObjectKindName(ACLSIM_OBJ_COMM), "comm") == 0);
    CHECK(aclsimObjectKindName(ACLSIM_OBJ_KIND_COUNT) == NULL);
    CHECK(aclsimObjectKindName(-1) == NULL);
    CHECK_EQ(aclsimLiveObjects(NULL, 0), ACLSIM_OBJ_KIND_COUNT);

    /* thousands of live objects stay fast and are all accounted for */
    enum { NT = 20000, NB = 3000 };
    static aclTensor *ts[NT];
    static void *bufs[NB];
    int64_t shape[1] = {4};
    CHECK_EQ(aclrtSetDevice(7), 0);
    for (int i = 0; i < NT; i++) {
        ts[i] = aclCreateTensor(shape, 1, ACL_INT32, NULL, 0, ACL_FORMAT_ND, shape, 1, NULL);
        CHECK(ts[i] != NULL);
    }
    for (int i = 0; i < NB; i++) CHECK_EQ(aclrtMalloc(&bufs[i], 128 + (size_t)i, ACL_MEM_MALLOC_HUGE_FIRST), 0);
    int64_t counts[ACLSIM_OBJ_KIND_COUNT];
    aclsimLiveObjects(counts, ACLSIM_OBJ_KIND_COUNT);
    CHECK_EQ(counts[ACLSIM_OBJ_TENSOR], NT);
    CHECK_EQ(counts[ACLSIM_OBJ_BUFFER], NB);
    unsigned char tmp[256] = {0};
    for (int i = 0; i < NB; i++) {
        /* every buffer is found by range, and its end is enforced */
        CHECK_EQ(aclrtMemcpy((char *)bufs[i] + 100, 28 + (size_t)i, tmp, 28 + (size_t)(i % 200), ACL_MEMCPY_HOST_TO_DEVICE), 0);
        if (i % 100 == 0) {
            CHECK_EQ(aclrtMemcpy((char *)bufs[i] + 100, 64 + (size_t)i, tmp, 29 + (size_t)i, ACL_MEMCPY_HOST_TO_DEVICE),
                     ACL_ERROR_RT_PARAM_INVALID);
            (void)aclGetRecentErrMsg();
        }
    }
    for (int i = 0; i < NT; i += 2) CHECK_EQ(aclDestroyTensor(ts[i]), 0);
    for (int i = 0; i < NT; i += 2) CHECK_EQ(aclDestroyTensor(ts[i]), ACLNN_ERR_PARAM_NULLPTR);
    (void)aclGetRecentErrMsg();
    for (int i = 1; i < NT; i += 2) CHECK_EQ(aclDestroyTensor(ts[i]), 0);
    for (int i = NB - 1; i >= 0; i--) CHECK_EQ(aclrtFree(bufs[i]), 0);

    /* a leak shows up in the counts */
    aclTensor *leak = aclCreateTensor(shape, 1, ACL_INT32, NULL, 0, ACL_FORMAT_ND, shape, 1, NULL);
    aclsimLiveObjects(counts, ACLSIM_OBJ_KIND_COUNT);
    CHECK_EQ(counts[ACLSIM_OBJ_TENSOR], 1);
    CHECK_EQ(aclDestroyTensor(leak), 0);
    CHECK_EQ(aclrtResetDevice(7), 0);
    check_no_leaks();
}

/* Error messages and last-call records are per thread. */
static void *thread_msgs(void *arg)
{
    (void)arg;
    if (aclGetRecentErrMsg() != NULL) return (void *)1;
    if (aclsimLastCall(NULL, 0) != 0) return (void *)2;
    aclrtFree(NULL);
    const char *m = aclGetRecentErrMsg();
    return m && strstr(m, "aclrtFree") ? NULL : (void *)3;
}

static void case_threads(void)
{
    CHECK_EQ(aclrtFree(NULL), ACL_ERROR_RT_PARAM_INVALID); /* leaves a message in this thread */
    pthread_t th;
    void *ret = (void *)9;
    CHECK_EQ(pthread_create(&th, NULL, thread_msgs, NULL), 0);
    pthread_join(th, &ret);
    CHECK(ret == NULL);
    CHECK_CALL("aclrtFree devPtr=NULL");
    /* messages stack, latest first */
    CHECK_EQ(aclrtFreeHost(NULL), ACL_ERROR_RT_PARAM_INVALID);
    const char *m = aclGetRecentErrMsg();
    CHECK(m != NULL);
    const char *a = strstr(m, "aclrtFreeHost"), *b = strstr(m, "aclrtFree:");
    CHECK(a && b && a < b);
    CHECK(aclGetRecentErrMsg() == NULL);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {
        {"basics", case_basics},         {"memory", case_memory}, {"stream_order", case_stream_order},
        {"tensors", case_tensors},       {"last_call", case_last_call}, {"tracking", case_tracking},
        {"threads", case_threads},
    };
    if (argc != 2) {
        fprintf(stderr, "usage: %s <case>\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            cases[i].fn();
            printf("PASS %s\n", argv[1]);
            return 0;
        }
    }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
