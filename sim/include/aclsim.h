/*
 * aclnn_py CANN simulator: test-only API, exported from libop_common.so. Not part of CANN; a real
 * toolkit has none of these symbols (probe aclsimIsSimulator with dlsym to tell the two apart).
 *
 * Last-call record (aclsimLastCall)
 * ---------------------------------
 * Every exported API function of the simulator's libraries (aclrt*, aclInit/aclFinalize, acl* meta API,
 * aclnn*, Hccl*) records its call, per thread, before doing anything else, as
 *
 *     <function> <param>=<value> <param>=<value> ...
 *
 * with the C parameter names in prototype order (output pointers included), one space between fields:
 *   - integers (any width, enums included) in decimal, exactly as received: int64 values above 2^32 and
 *     negative values appear intact (e.g. offset=5000000000, timeout=-1);
 *   - floats (32-bit) as the shortest %g that reads back as the same float (never longer than %.9g), a
 *     slash, and the IEEE-754 bits: normEps=1e-06/0x358637bd, 0.1f as 0.1/0x3dcccccd;
 *   - pointers as 0x<hex>; NULL pointers as NULL;
 *   - strings quoted with C escapes: group="g"; a NULL string as NULL;
 *   - int64 arrays as [a,b,c] (at most 16 elements, then ",...(n=N)"); NULL as NULL;
 *   - tensors as T(<dtype>,[d0,d1,...]) with the view shape, e.g. T(27,[4,8]); NULL as NULL; a pointer
 *     that is not a live aclTensor as T(invalid 0x...).
 * Examples:
 *   aclCreateTensor viewDims=[2,3] viewDimsNum=2 dataType=27 stride=[3,1] offset=5000000000 format=2 storageDims=[2,3] storageDimsNum=2 tensorData=0x7f..
 *   aclrtMemcpy dst=0x.. destMax=64 src=0x.. count=64 kind=1
 *   HcclCommInitRootInfo nRanks=8 rootInfo=0x.. rank=3 comm=0x..
 *   aclnnDistributeBarrierV2GetWorkspaceSize xRef=T(27,[4,8]) timeOut=NULL elasticInfo=T(3,[20]) group="g" worldSize=8 workspaceSize=0x.. executor=0x..
 *   aclnnDistributeBarrierV2 workspace=0x.. workspaceSize=16777216 executor=0x.. stream=0x..
 * Not recorded: the aclsim* functions themselves and aclGetRecentErrMsg (so a test can read the record of
 * a failing call after fetching its message). The record is thread-local: work run later on a stream
 * worker thread does not change the caller's record.
 */
#ifndef ACLNN_SIM_ACLSIM_H_
#define ACLNN_SIM_ACLSIM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ACLSIM_API
#define ACLSIM_API __attribute__((visibility("default")))
#endif

/* Kinds of tracked objects (same numbering as the simulator's internal SimObjKind). */
enum {
    ACLSIM_OBJ_BUFFER = 0,      /* aclrtMalloc */
    ACLSIM_OBJ_HOST_BUFFER = 1, /* aclrtMallocHost */
    ACLSIM_OBJ_TENSOR = 2,      /* aclCreateTensor */
    ACLSIM_OBJ_ARRAY = 3,       /* int/float/bool arrays, scalars, tensor and scalar lists */
    ACLSIM_OBJ_EXECUTOR = 4,    /* aclOpExecutor not yet consumed or destroyed */
    ACLSIM_OBJ_STREAM = 5,      /* aclrtCreateStream* (not the implicit default streams) */
    ACLSIM_OBJ_CONTEXT = 6,     /* aclrtCreateContext (not the default contexts) */
    ACLSIM_OBJ_EVENT = 7,
    ACLSIM_OBJ_COMM = 8,        /* HcclComm */
    ACLSIM_OBJ_KIND_COUNT = 9
};

/* Fills counts[0..min(n, KIND_COUNT)-1] with the number of live objects of each kind (counts may be
 * NULL); returns ACLSIM_OBJ_KIND_COUNT. */
ACLSIM_API int32_t aclsimLiveObjects(int64_t *counts, int32_t n);
/* Copies this thread's last-call record (NUL-terminated, truncated to cap-1 bytes) and returns its full
 * length; buf may be NULL with cap 0 to ask for the length. */
ACLSIM_API int32_t aclsimLastCall(char *buf, uint64_t cap);
/* "buffer", "host_buffer", "tensor", "array", "executor", "stream", "context", "event", "comm";
 * NULL for an unknown kind. */
ACLSIM_API const char *aclsimObjectKindName(int32_t kind);
/* Always 1. */
ACLSIM_API int32_t aclsimIsSimulator(void);

/* Abort the communication group of `comm` (an HcclComm): every exchange of the group that is waiting now
 * or starts later fails at once (the op reports an AI Core exception, 507015) with a message that includes
 * `reason` (the first reason, if the group is already aborted), until aclsimRecoverComm. (Without any abort, a
 * collective across processes fails at once, naming the rank, when a participant's process has exited.) aclnn_py's World calls it when a rank's Python function raised, so
 * the other ranks do not wait for a rank that will never launch. 0, or -1 if comm is not a live HcclComm.
 * A real CANN has no such hook. */
ACLSIM_API int32_t aclsimAbortComm(void *comm, const char *reason);
/* Clear the abort and restart every call sequence of the group. In one process (HcclCommInitAll, in-process
 * root info) the caller speaks for every rank: call it once no rank has a collective in flight. Across processes
 * (ACLNN_SIM_SHM_SESSION) each process recovers its own ranks, and the group restarts only when every rank whose
 * process is alive and still holds its comm has recovered from the current abort: until then the abort stays
 * in force, so a rank that has not yet seen its collectives fail still sees them fail. A group that is not
 * aborted needs no recovery across processes (failed calls are withdrawn). Returns -2 (message set) while an
 * exchange of this process is in flight, -1 if comm is not live, else 0. */
ACLSIM_API int32_t aclsimRecoverComm(void *comm);
/* State of the group of `comm`: 0 healthy, 1 aborted (aclsimAbortComm), -1 if comm is not live.
 * (A collective that fails -- times out, is cancelled or aborted -- withdraws the caller's arrival, so
 * the ranks' call sequences stay aligned and a late peer never pairs with an abandoned call.) */
ACLSIM_API int32_t aclsimCommState(void *comm);
/* Number of exchanges of the group of `comm` in progress right now, in live processes (-1 if comm is not live). */
ACLSIM_API int32_t aclsimCommInFlight(void *comm);
/* 1 if a live communicator of the group named `name` lives on `device`, else 0 (what an op's lookup by
 * group name would find). */
ACLSIM_API int32_t aclsimCommExists(const char *name, int32_t device);
/* How long communicator set-up (HcclCommInitRootInfo waiting for its peers) would wait now, in milliseconds:
 * HCCL_CONNECT_TIMEOUT as HCCL reads it (an integer number of seconds in [120, 7200], default 120), or the
 * simulator's ACLNN_SIM_CONNECT_TIMEOUT_MS when set; -1 (message set) when HCCL_CONNECT_TIMEOUT holds a value
 * HCCL refuses, which makes HcclGetRootInfo, HcclCommInitRootInfo(Config) and HcclCommInitAll fail with
 * HCCL_E_PARA. (Collectives use ACLNN_SIM_HANG_TIMEOUT_MS instead: where the hardware would hang.) */
ACLSIM_API int64_t aclsimConnectTimeoutMs(void);

#ifdef __cplusplus
}
#endif
#endif
