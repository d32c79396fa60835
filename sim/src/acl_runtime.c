/*
 * ACL runtime of the CANN simulator (libascendcl.so, also installed as libacl_rt.so).
 * Devices are host memory; contexts bind a thread to a device; streams and their workers live in
 * libop_common (core_stream.c). Every exported function records its call first (see aclsim.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "acl/acl.h"
#include "sim_release.h"
#include "simcore.h"

/* The release this tree's files and version API report when ACLNN_SIM_CANN_VERSION is unset (build.sh: the
 * default release; the V2-only tree says 8.3.RC1, which predates aclsysGetVersionStr/Num). */
#ifndef SIM_TREE_RELEASE
#define SIM_TREE_RELEASE SIM_DEFAULT_RELEASE
#endif

#define SIM_CONTEXT_MAGIC 0x43545854u
#define SIM_EVENT_MAGIC 0x45564E54u
#define SIM_MAX_DEVICES 1024
#define DEVICE_HBM_BYTES ((size_t)64 << 30) /* A3: 64 GiB per device */

#define P(x) ((const void *)(x))

typedef struct SimContext {
    uint32_t magic;
    int device;
    int is_default;
} SimContext;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_init_state; /* 0 never initialised, 1 initialised, 2 finalised */
static int g_device_refs[SIM_MAX_DEVICES];
static SimContext *g_default_ctx[SIM_MAX_DEVICES];
static __thread SimContext *t_ctx;

static int valid_device(int32_t id)
{
    return id >= 0 && id < sim_device_count() && id < SIM_MAX_DEVICES;
}

static SimContext *default_context(int dev)
{
    pthread_mutex_lock(&g_mu);
    SimContext *c = g_default_ctx[dev];
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (c) {
            c->magic = SIM_CONTEXT_MAGIC;
            c->device = dev;
            c->is_default = 1;
            g_default_ctx[dev] = c;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return c;
}

static int is_default_context(const void *p)
{
    int yes = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < SIM_MAX_DEVICES && !yes; i++) yes = g_default_ctx[i] && (const void *)g_default_ctx[i] == p;
    pthread_mutex_unlock(&g_mu);
    return yes;
}

static void bind_context(SimContext *c)
{
    t_ctx = c;
    sim_set_current_device(c ? c->device : -1);
}

static aclError need_device(const char *api)
{
    if (sim_current_device() < 0) {
        sim_set_error("%s: no device is bound to this thread (call aclrtSetDevice or aclrtSetCurrentContext first)",
                      api);
        return ACL_ERROR_RT_CONTEXT_NULL;
    }
    return ACL_SUCCESS;
}

/* ---- init / version ------------------------------------------------------------------------------ */

aclError aclInit(const char *configPath)
{
    sim_record_call("aclInit", "configPath=%s", sim_fmt_str(configPath));
    if (configPath && *configPath && access(configPath, R_OK) != 0) {
        sim_set_error("aclInit: cannot read config file %s", configPath);
        return ACL_ERROR_INVALID_FILE;
    }
    SimRelease rel;
    if (sim_release_current("aclInit", &rel) != 0) return ACL_ERROR_INVALID_PARAM;
    pthread_mutex_lock(&g_mu);
    int st = g_init_state;
    if (st != 1) g_init_state = 1;
    pthread_mutex_unlock(&g_mu);
    if (st == 1) {
        sim_set_error("aclInit: already initialised (call aclFinalize first)");
        return ACL_ERROR_REPEAT_INITIALIZE;
    }
    return ACL_SUCCESS;
}

aclError aclFinalize(void)
{
    sim_record_call("aclFinalize", NULL);
    pthread_mutex_lock(&g_mu);
    int st = g_init_state;
    if (st == 1) g_init_state = 2;
    int devs[SIM_MAX_DEVICES];
    int nd = 0;
    if (st == 1) {
        for (int i = 0; i < SIM_MAX_DEVICES; i++) {
            if (g_device_refs[i] > 0) {
                g_device_refs[i] = 0;
                devs[nd++] = i;
            }
        }
    }
    pthread_mutex_unlock(&g_mu);
    if (st == 0) {
        sim_set_error("aclFinalize: aclInit was not called");
        return ACL_ERROR_UNINITIALIZE;
    }
    if (st == 2) {
        sim_set_error("aclFinalize: already finalised");
        return ACL_ERROR_REPEAT_FINALIZE;
    }
    /* like CANN, finalize releases the devices the process still holds */
    for (int i = 0; i < nd; i++) sim_device_reset(devs[i]);
    if (t_ctx && t_ctx->is_default) bind_context(NULL);
    return ACL_SUCCESS;
}

aclError aclrtGetVersion(int32_t *majorVersion, int32_t *minorVersion, int32_t *patchVersion)
{
    sim_record_call("aclrtGetVersion", "majorVersion=%p minorVersion=%p patchVersion=%p", P(majorVersion),
                    P(minorVersion), P(patchVersion));
    if (!majorVersion || !minorVersion || !patchVersion) {
        sim_set_error("aclrtGetVersion: NULL output pointer");
        return ACL_ERROR_INVALID_PARAM;
    }
    *majorVersion = ACL_MAJOR_VERSION;
    *minorVersion = ACL_MINOR_VERSION;
    *patchVersion = ACL_PATCH_VERSION;
    return ACL_SUCCESS;
}

const char *aclGetRecentErrMsg(void)
{
    return sim_take_error();
}

const char *aclrtGetSocName(void)
{
    sim_record_call("aclrtGetSocName", NULL);
    return "Ascend910_93 (aclnn_py simulator)";
}

size_t aclDataTypeSize(aclDataType dataType)
{
    sim_record_call("aclDataTypeSize", "dataType=%d", (int)dataType);
    return sim_dtype_size((int32_t)dataType);
}

/* ---- devices and contexts ------------------------------------------------------------------------ */

/* ---- the CANN release (CANN >= 8.5 reads ${ASCEND_HOME_PATH}/share/info/<pkg>/version.info; the simulator
 * reports the release it emulates, docs/decisions.md "Simulator per release") ------------------------------ */
/* The release text reported to a caller: ACLNN_SIM_CANN_VERSION when set, else the tree's release.
 * 0, or ACL_ERROR_INVALID_PARAM with the message set. */
static aclError reported_release(const char *api, char *out, size_t cap)
{
    SimRelease rel;
    if (sim_release_current(api, &rel) != 0) return ACL_ERROR_INVALID_PARAM;
    snprintf(out, cap, "%s", rel.from_env ? rel.text : SIM_TREE_RELEASE);
    return ACL_SUCCESS;
}

/* aclsysGetCANNVersion: the version split on '.' after "X.Y.Z-beta.1" -> "X.Y.Z.beta1", padded with "0" */
static void fill_package_version(const char *text, aclCANNPackageVersion *v)
{
    memset(v, 0, sizeof *v);
    char conv[ACL_PKG_VERSION_MAX_SIZE];
    const char *dash = strchr(text, '-');
    if (dash) {
        size_t n = 0, cap = sizeof conv - 1;
        for (const char *c = text; c < dash && n < cap; c++) conv[n++] = *c;
        if (n < cap) conv[n++] = '.';
        for (const char *c = dash + 1; *c && n < cap; c++)
            if (*c != '.') conv[n++] = *c;
        conv[n] = '\0';
    } else {
        snprintf(conv, sizeof conv, "%s", text);
    }
    snprintf(v->version, sizeof v->version, "%s", conv);
    char *parts[4] = {v->majorVersion, v->minorVersion, v->releaseVersion, v->patchVersion};
    const char *c = conv;
    for (int i = 0; i < 4; i++) {
        size_t len = c ? strcspn(c, ".") : 0;
        if (!c) snprintf(parts[i], ACL_PKG_VERSION_PARTS_MAX_SIZE, "0");
        else snprintf(parts[i], ACL_PKG_VERSION_PARTS_MAX_SIZE, "%.*s", (int)len, c);
        c = c && c[len] == '.' ? c + len + 1 : NULL;
    }
}

aclError aclsysGetCANNVersion(aclCANNPackageName name, aclCANNPackageVersion *version)
{
    sim_record_call("aclsysGetCANNVersion", "name=%d version=%p", (int)name, P(version));
    if (!version) {
        sim_set_error("aclsysGetCANNVersion: version is NULL");
        return ACL_ERROR_INVALID_PARAM;
    }
    if ((int)name == ACL_PKG_NAME_DRIVER) {
        sim_set_error("aclsysGetCANNVersion: the aclnn_py simulator has no NPU driver (ACL_PKG_NAME_DRIVER)");
        return ACL_ERROR_INVALID_FILE;
    }
    if ((int)name < ACL_PKG_NAME_CANN || (int)name > ACL_PKG_NAME_DRIVER) {
        sim_set_error("aclsysGetCANNVersion: package name %d is not an aclCANNPackageName (0..7)", (int)name);
        return ACL_ERROR_INVALID_PARAM;
    }
    char text[ACL_PKG_VERSION_MAX_SIZE];
    aclError rc = reported_release("aclsysGetCANNVersion", text, sizeof text);
    if (rc == ACL_SUCCESS) fill_package_version(text, version);
    return rc;
}

#ifndef SIM_V2_ONLY
/* The packages under share/info of the simulator's tree (build.sh), as CANN names them; like CANN, a name with
 * '-' and '_' swapped is accepted too. */
static int known_package(const char *name)
{
    static const char *const pkgs[] = {"runtime", "opbase", "hccl", "ops_math", "ops_transformer"};
    char alt[64];
    snprintf(alt, sizeof alt, "%s", name);
    for (char *c = alt; *c; c++) *c = *c == '-' ? '_' : *c;
    for (size_t i = 0; i < sizeof pkgs / sizeof pkgs[0]; i++)
        if (strcmp(alt, pkgs[i]) == 0) return 1;
    return 0;
}

/* the checks aclsysGetVersionStr and aclsysGetVersionNum share; fills text */
static aclError package_release(const char *api, const char *pkgName, const void *out, char *text, size_t cap)
{
    if (!pkgName || !out) {
        sim_set_error("%s: %s is NULL", api, !pkgName ? "pkgName" : "the output pointer");
        return ACL_ERROR_INVALID_PARAM;
    }
    if (!known_package(pkgName)) {
        sim_set_error("%s: no package \"%s\" (no share/info/%s/version.info); the simulator's packages are runtime, "
                      "opbase, hccl, ops_math and ops_transformer", api, pkgName, pkgName);
        return ACL_ERROR_INVALID_FILE;
    }
    return reported_release(api, text, cap);
}

aclError aclsysGetVersionStr(char *pkgName, char *versionStr)
{
    sim_record_call("aclsysGetVersionStr", "pkgName=%s versionStr=%p", sim_fmt_str(pkgName), P(versionStr));
    char text[ACL_PKG_VERSION_MAX_SIZE];
    aclError rc = package_release("aclsysGetVersionStr", pkgName, versionStr, text, sizeof text);
    if (rc == ACL_SUCCESS) snprintf(versionStr, ACL_PKG_VERSION_MAX_SIZE, "%s", text);
    return rc;
}

aclError aclsysGetVersionNum(char *pkgName, int32_t *versionNum)
{
    sim_record_call("aclsysGetVersionNum", "pkgName=%s versionNum=%p", sim_fmt_str(pkgName), P(versionNum));
    char text[ACL_PKG_VERSION_MAX_SIZE];
    aclError rc = package_release("aclsysGetVersionNum", pkgName, versionNum, text, sizeof text);
    if (rc != ACL_SUCCESS) return rc;
    int32_t num = 0;
    int has_patch = 0;
    /* CANN's parser needs major.minor.patch ("8.3.RC1" fails with "Missing patch version") */
    if (sim_release_parse(text, &num, &has_patch) != 0 || !has_patch) {
        sim_set_error("aclsysGetVersionNum: cannot convert the version \"%s\" of %s to a number", text, pkgName);
        return ACL_ERROR_INTERNAL_ERROR;
    }
    *versionNum = num;
    return ACL_SUCCESS;
}
#endif

aclError aclrtSetDevice(int32_t deviceId)
{
    sim_record_call("aclrtSetDevice", "deviceId=%d", (int)deviceId);
    if (!valid_device(deviceId)) {
        sim_set_error("aclrtSetDevice: deviceId=%d is out of range (the simulator has %d devices; set "
                      "ACLNN_SIM_DEVICE_COUNT for more)", (int)deviceId, sim_device_count());
        return ACL_ERROR_RT_INVALID_DEVICEID;
    }
    SimContext *c = default_context(deviceId);
    if (!c) return ACL_ERROR_BAD_ALLOC;
    pthread_mutex_lock(&g_mu);
    g_device_refs[deviceId]++;
    pthread_mutex_unlock(&g_mu);
    bind_context(c);
    return ACL_SUCCESS;
}

aclError aclrtResetDevice(int32_t deviceId)
{
    sim_record_call("aclrtResetDevice", "deviceId=%d", (int)deviceId);
    if (!valid_device(deviceId)) {
        sim_set_error("aclrtResetDevice: deviceId=%d is out of range (0..%d)", (int)deviceId, sim_device_count() - 1);
        return ACL_ERROR_RT_INVALID_DEVICEID;
    }
    pthread_mutex_lock(&g_mu);
    int reset = 0;
    if (g_device_refs[deviceId] > 0) reset = --g_device_refs[deviceId] == 0;
    pthread_mutex_unlock(&g_mu);
    if (reset) sim_device_reset(deviceId);
    if (t_ctx && t_ctx->is_default && t_ctx->device == deviceId) bind_context(NULL);
    return ACL_SUCCESS;
}

aclError aclrtGetDevice(int32_t *deviceId)
{
    sim_record_call("aclrtGetDevice", "deviceId=%p", P(deviceId));
    if (!deviceId) {
        sim_set_error("aclrtGetDevice: deviceId is NULL");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    int dev = sim_current_device();
    if (dev < 0) {
        sim_set_error("aclrtGetDevice: no device is bound to this thread");
        return ACL_ERROR_RT_CONTEXT_NULL;
    }
    *deviceId = dev;
    return ACL_SUCCESS;
}

aclError aclrtGetDeviceCount(uint32_t *count)
{
    sim_record_call("aclrtGetDeviceCount", "count=%p", P(count));
    if (!count) {
        sim_set_error("aclrtGetDeviceCount: count is NULL");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    *count = (uint32_t)sim_device_count();
    return ACL_SUCCESS;
}

aclError aclrtCreateContext(aclrtContext *context, int32_t deviceId)
{
    sim_record_call("aclrtCreateContext", "context=%p deviceId=%d", P(context), (int)deviceId);
    if (!context) {
        sim_set_error("aclrtCreateContext: context is NULL");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (!valid_device(deviceId)) {
        sim_set_error("aclrtCreateContext: deviceId=%d is out of range (0..%d)", (int)deviceId, sim_device_count() - 1);
        return ACL_ERROR_RT_INVALID_DEVICEID;
    }
    SimContext *c = calloc(1, sizeof(*c));
    if (!c) return ACL_ERROR_RT_MEMORY_ALLOCATION;
    c->magic = SIM_CONTEXT_MAGIC;
    c->device = deviceId;
    sim_track_add_tagged(SIM_OBJ_CONTEXT, c, sizeof(*c), deviceId);
    bind_context(c);
    *context = c;
    return ACL_SUCCESS;
}

aclError aclrtDestroyContext(aclrtContext context)
{
    sim_record_call("aclrtDestroyContext", "context=%p", P(context));
    if (!context) {
        sim_set_error("aclrtDestroyContext: context is NULL");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (is_default_context(context)) {
        sim_set_error("aclrtDestroyContext: %p is a device's default context (released by aclrtResetDevice)",
                      context);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (sim_track_remove(SIM_OBJ_CONTEXT, context) != 0) {
        sim_set_error("aclrtDestroyContext: %p is not a live context (destroyed twice?)", context);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    SimContext *c = context;
    if (t_ctx == c) t_ctx = NULL; /* the thread keeps its device */
    c->magic = 0;
    free(c);
    return ACL_SUCCESS;
}

aclError aclrtSetCurrentContext(aclrtContext context)
{
    sim_record_call("aclrtSetCurrentContext", "context=%p", P(context));
    if (!context || !(sim_track_has(SIM_OBJ_CONTEXT, context) || is_default_context(context))) {
        sim_set_error("aclrtSetCurrentContext: %p is not a live context", context);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    bind_context(context);
    return ACL_SUCCESS;
}

aclError aclrtGetCurrentContext(aclrtContext *context)
{
    sim_record_call("aclrtGetCurrentContext", "context=%p", P(context));
    if (!context) {
        sim_set_error("aclrtGetCurrentContext: context is NULL");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (!t_ctx) {
        *context = NULL;
        sim_set_error("aclrtGetCurrentContext: no context is bound to this thread");
        return ACL_ERROR_RT_CONTEXT_NULL;
    }
    *context = t_ctx;
    return ACL_SUCCESS;
}

/* ---- streams ------------------------------------------------------------------------------------- */

static aclError create_stream(const char *api, aclrtStream *stream)
{
    if (!stream) {
        sim_set_error("%s: stream is NULL", api);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    aclError rc = need_device(api);
    if (rc) return rc;
    SimStream *s = sim_stream_create(sim_current_device());
    if (!s) return ACL_ERROR_RT_INTERNAL_ERROR;
    *stream = s;
    return ACL_SUCCESS;
}

aclError aclrtCreateStream(aclrtStream *stream)
{
    sim_record_call("aclrtCreateStream", "stream=%p", P(stream));
    return create_stream("aclrtCreateStream", stream);
}

aclError aclrtCreateStreamWithConfig(aclrtStream *stream, uint32_t priority, uint32_t flag)
{
    sim_record_call("aclrtCreateStreamWithConfig", "stream=%p priority=%u flag=%u", P(stream), priority, flag);
    return create_stream("aclrtCreateStreamWithConfig", stream);
}

/* Resolves a user stream handle (NULL = default stream of the current device). */
static SimStream *get_stream(const char *api, aclrtStream stream, aclError *rc)
{
    SimStream *s = sim_stream_resolve(stream);
    if (!s) {
        if (stream) {
            sim_set_error("%s: stream %p is not a live stream", api, stream);
            *rc = ACL_ERROR_RT_PARAM_INVALID;
        } else {
            sim_set_error("%s: the default stream needs a device bound to this thread (aclrtSetDevice)", api);
            *rc = ACL_ERROR_RT_CONTEXT_NULL;
        }
    }
    return s;
}

aclError aclrtDestroyStream(aclrtStream stream)
{
    sim_record_call("aclrtDestroyStream", "stream=%p", P(stream));
    if (!stream || !sim_track_has(SIM_OBJ_STREAM, stream)) {
        sim_set_error("aclrtDestroyStream: %p is not a live stream (destroyed twice?)", stream);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    sim_stream_destroy(stream);
    return ACL_SUCCESS;
}

aclError aclrtSynchronizeStream(aclrtStream stream)
{
    sim_record_call("aclrtSynchronizeStream", "stream=%p", P(stream));
    aclError rc = 0;
    SimStream *s = get_stream("aclrtSynchronizeStream", stream, &rc);
    if (!s) return rc;
    return sim_stream_synchronize(s, -1);
}

aclError aclrtSynchronizeStreamWithTimeout(aclrtStream stream, int32_t timeout)
{
    sim_record_call("aclrtSynchronizeStreamWithTimeout", "stream=%p timeout=%d", P(stream), (int)timeout);
    if (timeout < -1) {
        sim_set_error("aclrtSynchronizeStreamWithTimeout: timeout=%d (use -1 to wait forever, or >= 0 ms)",
                      (int)timeout);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    aclError rc = 0;
    SimStream *s = get_stream("aclrtSynchronizeStreamWithTimeout", stream, &rc);
    if (!s) return rc;
    return sim_stream_synchronize(s, timeout);
}

aclError aclrtSynchronizeDevice(void)
{
    sim_record_call("aclrtSynchronizeDevice", NULL);
    aclError rc = need_device("aclrtSynchronizeDevice");
    if (rc) return rc;
    return sim_device_synchronize(sim_current_device(), -1);
}

/* ---- memory -------------------------------------------------------------------------------------- */

static void *sim_alloc(size_t size)
{
    size_t padded = size + 32; /* CANN pads device allocations by 32 bytes */
    if (padded < size) return NULL;
    if (padded >= SIM_MMAP_THRESHOLD) {
        void *p = mmap(NULL, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, padded) != 0) return NULL;
    memset(p, 0, padded);
    return p;
}

static void sim_dealloc(void *p, size_t size)
{
    if (size + 32 >= SIM_MMAP_THRESHOLD) munmap(p, size + 32);
    else free(p);
}

aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy policy)
{
    sim_record_call("aclrtMalloc", "devPtr=%p size=%zu policy=%d", P(devPtr), size, (int)policy);
    if (!devPtr) {
        sim_set_error("aclrtMalloc: devPtr is NULL");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (size == 0) {
        sim_set_error("aclrtMalloc: size is 0");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    aclError rc = need_device("aclrtMalloc");
    if (rc) return rc;
    int dev = sim_current_device();
    if (size > DEVICE_HBM_BYTES || sim_track_bytes(SIM_OBJ_BUFFER, dev) + size > DEVICE_HBM_BYTES) {
        sim_set_error("aclrtMalloc: %zu bytes do not fit in the %zu bytes of simulated device %d", size,
                      (size_t)DEVICE_HBM_BYTES, dev);
        return ACL_ERROR_RT_MEMORY_ALLOCATION;
    }
    void *p;
    if (sim_mp_enabled()) { /* multi-process mode: device memory every process of the session can read */
        p = sim_arena_alloc(dev, size + 32);
        if (!p) return ACL_ERROR_RT_MEMORY_ALLOCATION;
    } else {
        p = sim_alloc(size);
    }
    if (!p) {
        sim_set_error("aclrtMalloc: host allocation of %zu bytes failed", size);
        return ACL_ERROR_RT_MEMORY_ALLOCATION;
    }
    sim_track_add_tagged(SIM_OBJ_BUFFER, p, size, dev);
    *devPtr = p;
    return ACL_SUCCESS;
}

aclError aclrtFree(void *devPtr)
{
    sim_record_call("aclrtFree", "devPtr=%p", devPtr);
    size_t size = 0;
    if (!devPtr || sim_track_info(SIM_OBJ_BUFFER, devPtr, &size, NULL) != 0 ||
        sim_track_remove(SIM_OBJ_BUFFER, devPtr) != 0) {
        sim_set_error("aclrtFree: %p is not a live aclrtMalloc pointer (freed twice, or not from aclrtMalloc)",
                      devPtr);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (sim_arena_free(devPtr) != 0) sim_dealloc(devPtr, size);
    return ACL_SUCCESS;
}

aclError aclrtMallocHost(void **hostPtr, size_t size)
{
    sim_record_call("aclrtMallocHost", "hostPtr=%p size=%zu", P(hostPtr), size);
    if (!hostPtr || size == 0) {
        sim_set_error("aclrtMallocHost: hostPtr is NULL or size is 0");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    void *p = sim_alloc(size);
    if (!p) {
        sim_set_error("aclrtMallocHost: allocation of %zu bytes failed", size);
        return ACL_ERROR_RT_MEMORY_ALLOCATION;
    }
    sim_track_add(SIM_OBJ_HOST_BUFFER, p, size);
    *hostPtr = p;
    return ACL_SUCCESS;
}

aclError aclrtFreeHost(void *hostPtr)
{
    sim_record_call("aclrtFreeHost", "hostPtr=%p", hostPtr);
    size_t size = 0;
    if (!hostPtr || sim_track_info(SIM_OBJ_HOST_BUFFER, hostPtr, &size, NULL) != 0 ||
        sim_track_remove(SIM_OBJ_HOST_BUFFER, hostPtr) != 0) {
        sim_set_error("aclrtFreeHost: %p is not a live aclrtMallocHost pointer", hostPtr);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    sim_dealloc(hostPtr, size);
    return ACL_SUCCESS;
}

static const char *kind_name(int kind)
{
    static const char *const names[] = {"HOST_TO_HOST", "HOST_TO_DEVICE", "DEVICE_TO_HOST", "DEVICE_TO_DEVICE",
                                        "DEFAULT"};
    return kind >= 0 && kind <= 4 ? names[kind] : "?";
}

static aclError check_memcpy(const char *api, void *dst, size_t destMax, const void *src, size_t count, int kind)
{
    if (!dst || !src) {
        sim_set_error("%s: %s is NULL", api, !dst ? "dst" : "src");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (count > destMax) {
        sim_set_error("%s: count=%zu exceeds destMax=%zu", api, count, destMax);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (kind < ACL_MEMCPY_HOST_TO_HOST || kind > ACL_MEMCPY_DEFAULT) {
        sim_set_error("%s: kind=%d is not supported (0..4)", api, kind);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (count == 0) return ACL_SUCCESS;
    int dst_dev = kind == ACL_MEMCPY_HOST_TO_DEVICE || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
    int src_dev = kind == ACL_MEMCPY_DEVICE_TO_HOST || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
    if (dst_dev && !sim_buffer_covers(dst, count)) {
        sim_set_error("%s: kind=%s but dst %p (+%zu bytes) is not inside one aclrtMalloc device buffer", api,
                      kind_name(kind), dst, count);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (src_dev && !sim_buffer_covers(src, count)) {
        sim_set_error("%s: kind=%s but src %p (+%zu bytes) is not inside one aclrtMalloc device buffer", api,
                      kind_name(kind), src, count);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    return ACL_SUCCESS;
}

aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count, aclrtMemcpyKind kind)
{
    sim_record_call("aclrtMemcpy", "dst=%p destMax=%zu src=%p count=%zu kind=%d", dst, destMax, src, count,
                    (int)kind);
    aclError rc = check_memcpy("aclrtMemcpy", dst, destMax, src, count, (int)kind);
    if (rc || count == 0) return rc;
    memmove(dst, src, count);
    return ACL_SUCCESS;
}

typedef struct {
    void *dst;
    const void *src;
    size_t count;
    int value;
    int is_set;
} MemTask;

/* aclrtMemset's fill (memset's byte: the low 8 bits of value); zeros cost only the partial pages of the range */
static void fill(void *dst, int32_t value, size_t count)
{
    if ((unsigned char)value == 0) sim_zero_fill(dst, count);
    else memset(dst, value, count);
}

static int mem_task(void *arg, SimStream *s)
{
    (void)s;
    MemTask *t = arg;
    if (t->is_set) fill(t->dst, t->value, t->count);
    else memmove(t->dst, t->src, t->count);
    return 0;
}

static aclError enqueue_mem(const char *api, aclrtStream stream, MemTask *proto)
{
    aclError rc = 0;
    SimStream *s = get_stream(api, stream, &rc);
    if (!s) return rc;
    if (proto->count == 0) return ACL_SUCCESS;
    MemTask *t = malloc(sizeof(*t));
    if (!t) return ACL_ERROR_RT_MEMORY_ALLOCATION;
    *t = *proto;
    return sim_stream_enqueue(s, mem_task, t, free);
}

aclError aclrtMemcpyAsync(void *dst, size_t destMax, const void *src, size_t count, aclrtMemcpyKind kind,
                          aclrtStream stream)
{
    sim_record_call("aclrtMemcpyAsync", "dst=%p destMax=%zu src=%p count=%zu kind=%d stream=%p", dst, destMax, src,
                    count, (int)kind, P(stream));
    aclError rc = check_memcpy("aclrtMemcpyAsync", dst, destMax, src, count, (int)kind);
    if (rc) return rc;
    MemTask t = {dst, src, count, 0, 0};
    return enqueue_mem("aclrtMemcpyAsync", stream, &t);
}

static aclError check_memset(const char *api, void *devPtr, size_t maxCount, size_t count)
{
    if (!devPtr) {
        sim_set_error("%s: devPtr is NULL", api);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if (count > maxCount) {
        sim_set_error("%s: count=%zu exceeds maxCount=%zu", api, count, maxCount);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    size_t host_bytes = 0;
    if (count && !sim_buffer_covers(devPtr, count) &&
        (sim_track_info(SIM_OBJ_HOST_BUFFER, devPtr, &host_bytes, NULL) != 0 || count > host_bytes)) {
        sim_set_error("%s: devPtr %p (+%zu bytes) is not inside one aclrtMalloc or aclrtMallocHost buffer", api,
                      devPtr, count);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    return ACL_SUCCESS;
}

aclError aclrtMemset(void *devPtr, size_t maxCount, int32_t value, size_t count)
{
    sim_record_call("aclrtMemset", "devPtr=%p maxCount=%zu value=%d count=%zu", devPtr, maxCount, (int)value,
                    count);
    aclError rc = check_memset("aclrtMemset", devPtr, maxCount, count);
    if (rc) return rc;
    fill(devPtr, value, count);
    return ACL_SUCCESS;
}

aclError aclrtMemsetAsync(void *devPtr, size_t maxCount, int32_t value, size_t count, aclrtStream stream)
{
    sim_record_call("aclrtMemsetAsync", "devPtr=%p maxCount=%zu value=%d count=%zu stream=%p", devPtr, maxCount,
                    (int)value, count, P(stream));
    aclError rc = check_memset("aclrtMemsetAsync", devPtr, maxCount, count);
    if (rc) return rc;
    MemTask t = {devPtr, NULL, count, value, 1};
    return enqueue_mem("aclrtMemsetAsync", stream, &t);
}

aclError aclrtGetMemInfo(aclrtMemAttr attr, size_t *free_bytes, size_t *total)
{
    sim_record_call("aclrtGetMemInfo", "attr=%d free=%p total=%p", (int)attr, P(free_bytes), P(total));
    if (!free_bytes || !total) {
        sim_set_error("aclrtGetMemInfo: NULL output pointer");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    if ((int)attr < ACL_DDR_MEM || (int)attr > ACL_HBM_MEM_P2P_HUGE1G) {
        sim_set_error("aclrtGetMemInfo: attr=%d is not a valid aclrtMemAttr", (int)attr);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    aclError rc = need_device("aclrtGetMemInfo");
    if (rc) return rc;
    uint64_t used = sim_track_bytes(SIM_OBJ_BUFFER, sim_current_device());
    *total = DEVICE_HBM_BYTES;
    *free_bytes = used >= DEVICE_HBM_BYTES ? 0 : DEVICE_HBM_BYTES - (size_t)used;
    return ACL_SUCCESS;
}

/* ---- events -------------------------------------------------------------------------------------- */

typedef struct SimEvent {
    uint32_t magic;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t recorded;   /* records issued */
    int64_t completed;  /* highest record whose marker ran */
    int refs;           /* owner + queued markers/waits */
} SimEvent;

typedef struct {
    SimEvent *ev;
    int64_t gen;
} EventTask;

static void event_release(SimEvent *e)
{
    pthread_mutex_lock(&e->mu);
    int last = --e->refs == 0;
    pthread_mutex_unlock(&e->mu);
    if (!last) return;
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    e->magic = 0;
    free(e);
}

static void event_task_free(void *arg)
{
    EventTask *t = arg;
    event_release(t->ev);
    free(t);
}

static int event_marker(void *arg, SimStream *s)
{
    (void)s;
    EventTask *t = arg;
    pthread_mutex_lock(&t->ev->mu);
    if (t->gen > t->ev->completed) t->ev->completed = t->gen;
    pthread_cond_broadcast(&t->ev->cv);
    pthread_mutex_unlock(&t->ev->mu);
    return 0;
}

static int event_wait_task(void *arg, SimStream *s)
{
    EventTask *t = arg;
    SimEvent *e = t->ev;
    int rc = 0;
    pthread_mutex_lock(&e->mu);
    while (e->completed < t->gen) {
        if (sim_stream_cancelled(s)) {
            rc = ACL_ERROR_RT_EVENT_SYNC_TIMEOUT;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc) sim_set_error("aclrtStreamWaitEvent: the wait was cancelled (stream destroyed or device reset)");
    return rc;
}

static SimEvent *get_event(const char *api, aclrtEvent event)
{
    if (!event || !sim_track_has(SIM_OBJ_EVENT, event)) {
        sim_set_error("%s: %p is not a live event", api, event);
        return NULL;
    }
    return event;
}

aclError aclrtCreateEvent(aclrtEvent *event)
{
    sim_record_call("aclrtCreateEvent", "event=%p", P(event));
    if (!event) {
        sim_set_error("aclrtCreateEvent: event is NULL");
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    SimEvent *e = calloc(1, sizeof(*e));
    if (!e) return ACL_ERROR_RT_MEMORY_ALLOCATION;
    e->magic = SIM_EVENT_MAGIC;
    e->refs = 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    sim_track_add(SIM_OBJ_EVENT, e, sizeof(*e));
    *event = e;
    return ACL_SUCCESS;
}

aclError aclrtDestroyEvent(aclrtEvent event)
{
    sim_record_call("aclrtDestroyEvent", "event=%p", P(event));
    if (!event || sim_track_remove(SIM_OBJ_EVENT, event) != 0) {
        sim_set_error("aclrtDestroyEvent: %p is not a live event (destroyed twice?)", event);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    event_release(event);
    return ACL_SUCCESS;
}

static aclError enqueue_event_task(const char *api, SimEvent *e, aclrtStream stream, int wait)
{
    aclError rc = 0;
    SimStream *s = get_stream(api, stream, &rc);
    if (!s) return rc;
    EventTask *t = malloc(sizeof(*t));
    if (!t) return ACL_ERROR_RT_MEMORY_ALLOCATION;
    pthread_mutex_lock(&e->mu);
    if (!wait) e->recorded++;
    t->gen = e->recorded;
    t->ev = e;
    e->refs++;
    pthread_mutex_unlock(&e->mu);
    return sim_stream_enqueue(s, wait ? event_wait_task : event_marker, t, event_task_free);
}

aclError aclrtRecordEvent(aclrtEvent event, aclrtStream stream)
{
    sim_record_call("aclrtRecordEvent", "event=%p stream=%p", P(event), P(stream));
    SimEvent *e = get_event("aclrtRecordEvent", event);
    if (!e) return ACL_ERROR_RT_PARAM_INVALID;
    return enqueue_event_task("aclrtRecordEvent", e, stream, 0);
}

aclError aclrtStreamWaitEvent(aclrtStream stream, aclrtEvent event)
{
    sim_record_call("aclrtStreamWaitEvent", "stream=%p event=%p", P(stream), P(event));
    SimEvent *e = get_event("aclrtStreamWaitEvent", event);
    if (!e) return ACL_ERROR_RT_PARAM_INVALID;
    return enqueue_event_task("aclrtStreamWaitEvent", e, stream, 1);
}

aclError aclrtSynchronizeEvent(aclrtEvent event)
{
    sim_record_call("aclrtSynchronizeEvent", "event=%p", P(event));
    SimEvent *e = get_event("aclrtSynchronizeEvent", event);
    if (!e) return ACL_ERROR_RT_PARAM_INVALID;
    pthread_mutex_lock(&e->mu);
    int64_t target = e->recorded;
    while (e->completed < target) pthread_cond_wait(&e->cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
    return ACL_SUCCESS;
}
