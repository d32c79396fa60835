/*
 * Internal contract shared by the CANN simulator's libraries.
 *
 * Implemented in libop_common.so (sim/src/core_*.c); every other simulator library links to it.
 * Public CANN headers live in sim/include; this header is never installed.
 *
 * Model: "devices" are host memory, so every rank of every group lives in this process and a
 * collective kernel can read its peers' buffers directly. Streams are FIFO queues, each with a
 * worker thread. Executors carry a copy of the descriptors they were built from, so callers may
 * destroy their aclTensor objects right after the second-phase call (torch_npu does).
 */
#ifndef ACLNN_SIM_CORE_H
#define ACLNN_SIM_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_API __attribute__((visibility("default")))
#define SIM_MAX_DIMS 8

/* ---- object tracking: every live object is registered here -------------------------------- */
typedef enum {
    SIM_OBJ_BUFFER = 0,      /* aclrtMalloc */
    SIM_OBJ_HOST_BUFFER,     /* aclrtMallocHost */
    SIM_OBJ_TENSOR,          /* aclCreateTensor */
    SIM_OBJ_ARRAY,           /* aclCreateIntArray and friends, scalars, tensor lists */
    SIM_OBJ_EXECUTOR,        /* aclOpExecutor */
    SIM_OBJ_STREAM,
    SIM_OBJ_CONTEXT,         /* explicit contexts only (aclrtCreateContext) */
    SIM_OBJ_EVENT,
    SIM_OBJ_COMM,            /* HcclComm */
    SIM_OBJ_KIND_COUNT
} SimObjKind;

SIM_API void sim_track_add(SimObjKind kind, const void *obj, size_t bytes);
/* Returns 0 when obj was live (and removes it), -1 otherwise. */
SIM_API int sim_track_remove(SimObjKind kind, const void *obj);
SIM_API int sim_track_has(SimObjKind kind, const void *obj);
/* For an aclrtMalloc buffer: 1 if [ptr, ptr+bytes) lies inside one live buffer. */
SIM_API int sim_buffer_covers(const void *ptr, size_t bytes);

/* ---- thread-local state --------------------------------------------------------------------- */
/* Recent error message, read (and cleared) by aclGetRecentErrMsg. printf-style. */
SIM_API void sim_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
SIM_API const char *sim_take_error(void);
/* The last foreign call of this thread, for ABI tests: "name arg=value arg=value ...".
 * Integers in decimal, floats as %.9g plus bits (e.g. normEps=1e-06/0x358637bd), strings
 * quoted, NULL pointers as NULL, tensors as T(dtype,[d0,d1,...]). */
SIM_API void sim_record_call(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Current device of the calling thread (-1 if none set). */
SIM_API int sim_current_device(void);
SIM_API void sim_set_current_device(int device);
SIM_API int sim_device_count(void);  /* ACLNN_SIM_DEVICE_COUNT, default 16 */

/* ---- tensors ---------------------------------------------------------------------------------- */
struct aclTensor {
    uint32_t magic;                  /* SIM_TENSOR_MAGIC while live */
    int32_t dtype;                   /* aclDataType */
    int32_t format;                  /* aclFormat */
    uint64_t ndim;
    int64_t dims[SIM_MAX_DIMS];
    int64_t strides[SIM_MAX_DIMS];   /* elements */
    int64_t offset;                  /* elements */
    uint64_t storage_ndim;
    int64_t storage_dims[SIM_MAX_DIMS];
    void *data;                      /* tensorData: storage base */
};
#define SIM_TENSOR_MAGIC 0x54534E52u
SIM_API size_t sim_dtype_size(int32_t dtype);        /* 0 for unknown */
SIM_API int64_t sim_tensor_numel(const struct aclTensor *t);
/* Address of element 0 of the view: data + offset*itemsize. */
SIM_API void *sim_tensor_ptr(const struct aclTensor *t);
SIM_API int sim_tensor_is_contiguous(const struct aclTensor *t);

/* ---- streams ---------------------------------------------------------------------------------- */
typedef struct SimStream SimStream;
/* A task returns 0 or an aclError; a failing task records its message with sim_set_error in the
 * worker thread; the stream keeps the first error and its message until the next synchronize
 * reports them. */
typedef int (*SimTaskFn)(void *arg, SimStream *stream);
/* stream == NULL means the default stream of the calling thread's current device. */
SIM_API SimStream *sim_stream_resolve(void *stream);
SIM_API int sim_stream_enqueue(SimStream *s, SimTaskFn fn, void *arg, void (*free_arg)(void *));
SIM_API int sim_stream_device(const SimStream *s);
/* Non-zero once the stream is being destroyed or its device reset: long waits must give up. */
SIM_API int sim_stream_cancelled(const SimStream *s);

/* ---- communicators ---------------------------------------------------------------------------- */
typedef struct SimComm SimComm;
/* The communicator of group `name` whose member sits on `device` (NULL if none). */
SIM_API SimComm *sim_comm_lookup(const char *name, int device);
SIM_API int sim_comm_rank(const SimComm *c);
SIM_API int sim_comm_size(const SimComm *c);
SIM_API const char *sim_comm_name(const SimComm *c);

/* All-gather of one pointer among `participants` (comm ranks, ascending, must include the caller),
 * `n` of them: blocks until every participant has called with the same call index, then writes
 * each participant's payload to peers_out[its comm rank] (other entries NULL).
 * Returns 0, SIM_ERR_TIMEOUT after timeout_us microseconds (timeout_us < 0: wait until the stream
 * is cancelled), or SIM_ERR_CANCELLED. Every call advances the caller's call index on that comm,
 * so a kernel runs: exchange inputs -> compute own outputs -> exchange NULL (nobody returns while
 * a peer may still read its buffers). */
#define SIM_ERR_TIMEOUT (-2)
#define SIM_ERR_CANCELLED (-3)
SIM_API int sim_comm_exchange(SimComm *c, const int *participants, int n, void *payload,
                              void **peers_out, int64_t timeout_us, SimStream *s);
/* Which comm ranks have arrived for the caller's current call index (for error messages):
 * writes up to `cap` ranks, returns how many are missing. */
SIM_API int sim_comm_missing(SimComm *c, const int *participants, int n, int *missing_out, int cap);

/* ---- executors -------------------------------------------------------------------------------- */
typedef struct aclOpExecutor aclOpExecutor;
struct aclOpExecutor {
    uint32_t magic;                  /* SIM_EXECUTOR_MAGIC while live */
    int repeatable;                  /* set by aclSetAclOpExecutorRepeatable */
    const char *op_name;
    uint64_t workspace_size;
    /* Runs on the stream worker; returns 0 or an aclError (after sim_set_error). */
    int (*run)(aclOpExecutor *ex, SimStream *s, void *workspace);
    void (*free_state)(void *state);
    void *state;                     /* op-specific copy of the arguments */
};
#define SIM_EXECUTOR_MAGIC 0x45584543u
SIM_API aclOpExecutor *sim_executor_new(const char *op_name, uint64_t workspace_size,
                                        int (*run)(aclOpExecutor *, SimStream *, void *),
                                        void (*free_state)(void *), void *state);
/* Second-phase entry shared by every op: checks the executor and workspace, enqueues the run on
 * the stream, and frees the executor after it ran unless it is repeatable. Returns an aclnnStatus. */
SIM_API int32_t sim_executor_launch(const char *api, aclOpExecutor *ex, void *workspace,
                                    uint64_t workspace_size, void *stream);
SIM_API void sim_executor_free(aclOpExecutor *ex);

/* Collective timeout for kernels whose real counterpart would hang: ACLNN_SIM_HANG_TIMEOUT_MS
 * (default 120000); expiry is reported like an AI Core exception. */
SIM_API int64_t sim_hang_timeout_us(void);

/* ==== Additions (core helper) — everything below extends the contract; nothing above changed ==== */

/* Tracking with a tag (aclrtMalloc stores the device) and lookups. sim_track_add(k,o,b) == tag -1. */
SIM_API void sim_track_add_tagged(SimObjKind kind, const void *obj, size_t bytes, int tag);
/* 0 if live (fills *bytes / *tag when non-NULL), -1 otherwise. */
SIM_API int sim_track_info(SimObjKind kind, const void *obj, size_t *bytes, int *tag);
SIM_API int64_t sim_track_count(SimObjKind kind);
/* Sum of the bytes of live objects of `kind` whose tag is `tag` (tag < 0: all). */
SIM_API uint64_t sim_track_bytes(SimObjKind kind, int tag);

/* Formatting helpers for sim_record_call (see sim/include/aclsim.h for the record format). Each returns
 * a thread-local buffer from a ring of 64, so up to 64 results may be used in one call. */
SIM_API const char *sim_fmt_tensor(const struct aclTensor *t);     /* T(27,[4,8]) or NULL */
SIM_API const char *sim_fmt_str(const char *s);                    /* "quoted" or NULL */
SIM_API const char *sim_fmt_f32(float v);  /* shortest round-trip %g (<= %.9g) + bits: 1e-06/0x358637bd */
SIM_API const char *sim_fmt_i64s(const int64_t *v, uint64_t n);    /* [1,2,3] or NULL */
/* A live aclTensor (tracked and carrying SIM_TENSOR_MAGIC); safe on garbage pointers. */
SIM_API int sim_tensor_valid(const struct aclTensor *t);

/* Streams (used by the runtime library). A created stream is tracked as SIM_OBJ_STREAM; the implicit
 * per-device default streams are not tracked. */
SIM_API SimStream *sim_stream_create(int device);
/* Cancels pending work (long waits give up), drains the queue, joins the worker and frees. */
SIM_API void sim_stream_destroy(SimStream *s);
/* Waits for the queue to drain: timeout_ms < 0 forever, 0 polls. Returns SIM_ACL_ERROR_RT_STREAM_SYNC_TIMEOUT
 * if work is still pending, else the first task error since the last synchronize (its message is moved
 * to the caller's sim_take_error), else 0. */
SIM_API int sim_stream_synchronize(SimStream *s, int64_t timeout_ms);
/* All streams (default included) of `device`, like sim_stream_synchronize; returns the first error. */
SIM_API int sim_device_synchronize(int device, int64_t timeout_ms);
/* Device reset: cancels and drains every stream of `device`, clears their errors, frees the default stream. */
SIM_API void sim_device_reset(int device);

/* Communicators (used by the HCCL library). Creates group `name` with comm rank i on devices[i];
 * comms_out[i] get the per-rank handles (tracked as SIM_OBJ_COMM). Returns 0, or -1 if a live group
 * already has that name or the arguments are invalid (message set). */
SIM_API int sim_comm_create_group(const char *name, int nranks, const int *devices, SimComm **comms_out);
/* Destroys one rank's comm; the group goes away with its last member. 0, or -1 if c is not live. */
SIM_API int sim_comm_destroy(SimComm *c);
SIM_API int sim_comm_valid(const SimComm *c);    /* tracked and live */
SIM_API int sim_comm_device(const SimComm *c);
SIM_API void sim_comm_set_async_error(SimComm *c, int err);
SIM_API int sim_comm_async_error(const SimComm *c);
/* sim_comm_exchange: participants == NULL means every rank of the group (n is then ignored).
 * A bad participant list returns SIM_ERR_INVALID (message set). On SIM_ERR_TIMEOUT the message names the
 * missing ranks. sim_comm_missing looks at the caller's most recent exchange (index 0 if none). */
#define SIM_ERR_INVALID (-4)
/* The group was aborted (aclsimAbortComm), or across processes a participant's process has exited (only the
 * calls that include it fail) / two ranks wait in calls with different participant sets that
 * each other has not joined (they disagree on elastic_info). Messages name the ranks; see core_comm.c. The
 * call index is kept per participant set (per rank), so an elastic call on a subset leaves the sequence of
 * the full group (and of every other subset) untouched. */
#define SIM_ERR_ABORTED (-5)
#define SIM_ERR_MISMATCH (-6)

/* Executors (used by the nnopbase library). sim_executor_launch records the call as
 * "<api> workspace=.. workspaceSize=.. executor=.. stream=..", rejects a NULL executor (161001), one that
 * is not live or already consumed (161002), a missing/too small/non-device workspace (161001/161002) and
 * a bad stream (361001). A non-repeatable executor is consumed by every launch attempt that got past the
 * executor check (freed after its run, or at once when the launch fails). */
SIM_API int32_t sim_executor_set_repeatable(aclOpExecutor *ex);   /* 0 or 561103 */
/* aclDestroyAclOpExecutor: 0, or 561103 for NULL / not live; a queued run keeps it alive until done. */
SIM_API int32_t sim_executor_destroy(aclOpExecutor *ex);

/* Multi-process mode (core_shm.c): on when ACLNN_SIM_SHM_SESSION names a session. Device memory is then a
 * shared mapping at the same address in every process of the session; sim_arena_alloc allocates from device
 * d's (NULL when the mode is off or the memory is exhausted, message set), sim_arena_free returns 0 for arena
 * memory (freed) and -1 for any other pointer. libopapi's malloc/calloc/realloc/free are wrapped to use the
 * arena of the calling thread's device in this mode, because the kernels exchange pointers to them. */
SIM_API int sim_mp_enabled(void);
SIM_API const char *sim_mp_session(void);   /* NULL when off */
SIM_API const char *sim_mp_error(void);     /* why the mode could not start (NULL if it did or was not asked) */
SIM_API void *sim_arena_alloc(int device, size_t bytes);
SIM_API int sim_arena_free(void *p);
SIM_API int sim_arena_owns(const void *p);
/* Joins rank `rank` (on `device`) of the process-shared group whose state is shm segment `shm_name`
 * (created by the first rank to arrive), waiting up to timeout_us for all nranks (timeout_what says where
 * that came from, for the message); *comm_out gets the rank's comm (tracked). 0, -1 on a bad argument or
 * system error, -2 on timeout, -3 when a rank that had joined died before the rest arrived (message set). */
SIM_API int sim_comm_join_shared(const char *shm_name, const char *group_name, int nranks, int rank, int device,
                                 int64_t timeout_us, const char *timeout_what, SimComm **comm_out);

/* Communicator set-up timeout (HcclCommInitRootInfo waiting for its peers), with HCCL_CONNECT_TIMEOUT's meaning:
 * an integer number of seconds in [120, 7200], default 120; HCCL refuses anything else (EI0001) and so does this:
 * -1 with the message set. ACLNN_SIM_CONNECT_TIMEOUT_MS (milliseconds >= 0, simulator only) overrides it, for
 * tests. `what` (cap bytes) gets a description of the value and its source for messages. */
SIM_API int64_t sim_connect_timeout_us(char *what, size_t cap);

/* ==== Additions (issue 11: the simulator per CANN release) ==== */
/* The HCCL buffer of a communicator, in MB: HcclCommConfig.hcclBufferSize when the creating call gave one, else
 * HCCL_BUFFSIZE as it was when the communicator was created (what HcclGetHcclBuffer reports, halved, since CANN
 * 8.5.0-beta.1: docs/decisions.md). Set by the HCCL library per rank; 0 when unknown. */
SIM_API void sim_comm_set_buffer_mb(SimComm *c, uint64_t mb);
SIM_API uint64_t sim_comm_buffer_mb(const SimComm *c);
/* HCCL_BUFFSIZE now, in MB, as the A3 tiling parses it (std::stoi, then uint16; default 200 when unset or not
 * a number). */
SIM_API uint64_t sim_hccl_buffsize_env_mb(void);
/* Make a live executor's launches fail: the second-phase call consumes it like a launch would and returns
 * `status` with the message (for configurations the simulator accepts but cannot emulate). */
SIM_API void sim_executor_refuse(aclOpExecutor *ex, int32_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define SIM_ACLNN_ERR_INNER_FIND_KERNEL_ERROR 561003

/* ==== Additions (issue 14: the cost of a call follows the data moved) ==== */
/* aclrtMalloc (single-process mode) and aclrtMallocHost buffers from SIM_MMAP_THRESHOLD bytes up (the 32 bytes of
 * padding included) are anonymous mappings of their own, zero until written; smaller ones come from the heap and
 * are memset. 128 KiB is glibc's default mmap threshold: above it malloc maps fresh pages too, and the memset
 * then paid a page fault for every page of a buffer whatever the kernel later wrote. */
#define SIM_MMAP_THRESHOLD ((size_t)128 << 10)
/* Zero [ptr, ptr + bytes) of simulator memory (anonymous private memory or the multi-process arena, not a file
 * mapping), at the cost of the partial pages at both ends only: the whole pages in between are given back to the
 * kernel and read as zeros again (core_memory.c). Ranges shorter than SIM_MMAP_THRESHOLD are written, and so are
 * ranges shorter than SIM_ZERO_WRITE_RESIDENT_MAX whose pages are all resident (a reused output block, aclnn_py's
 * pool): writing a few hundred KiB costs less than giving the pages back (a TLB shoot-down) and faulting in
 * again those the kernel then writes. */
#define SIM_ZERO_WRITE_RESIDENT_MAX ((size_t)1 << 20)
SIM_API void sim_zero_fill(void *ptr, size_t bytes);
/* Map the pages of [ptr, ptr + bytes) writable in one go before writing the whole range (a page fault per page
 * otherwise); contents are unchanged. No-op below SIM_MMAP_THRESHOLD bytes. */
SIM_API void sim_prefault(void *ptr, size_t bytes);

/* aclnnStatus / aclError values used across the simulator */
#define SIM_ACLNN_ERR_PARAM_NULLPTR 161001
#define SIM_ACLNN_ERR_PARAM_INVALID 161002
#define SIM_ACLNN_ERR_RUNTIME_ERROR 361001
#define SIM_ACLNN_ERR_INNER_TILING_ERROR 561002
#define SIM_ACLNN_ERR_INNER_NULLPTR 561103
#define SIM_ACL_ERROR_RT_PARAM_INVALID 107000
#define SIM_ACL_ERROR_RT_AICORE_EXCEPTION 507015
#define SIM_ACL_ERROR_RT_STREAM_SYNC_TIMEOUT 507046

#ifdef __cplusplus
}
#endif
#endif
