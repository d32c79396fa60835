"""The C ABI, declared once: every foreign function aclnn_py calls, with its exact C types.

Modelled on vLLM's ``pynccl_wrapper.py``: one :class:`Function` per C function, its prototype as
the comment above it, and a status kind that tells :mod:`.library` how to check the result. The
operators' prototypes are their :mod:`aclnn_py.catalog` entries (:func:`phase1`, :func:`phase2`).
Facts: ``../shared/spec/abi.md`` §1-§2.
"""
from __future__ import annotations

import ctypes
from ctypes import (POINTER, Structure, c_char, c_char_p, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint32, c_uint64, c_void_p)
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from .. import catalog

# C typedefs
aclError = c_int
aclnnStatus = c_int32
HcclResult = c_int
aclrtStream = c_void_p
aclrtContext = c_void_p
aclrtEvent = c_void_p
aclTensorPtr = c_void_p
aclOpExecutorPtr = c_void_p
HcclComm = c_void_p

HCCL_ROOT_INFO_BYTES = 4108
COMM_NAME_MAX_LENGTH = 128


class HcclRootInfo(Structure):
    """``typedef struct HcclRootInfoDef { char internal[4108]; } HcclRootInfo;`` (passed by pointer)."""

    _fields_ = [("internal", c_char * HCCL_ROOT_INFO_BYTES)]


# aclrtMemcpyKind
ACL_MEMCPY_HOST_TO_HOST = 0
ACL_MEMCPY_HOST_TO_DEVICE = 1
ACL_MEMCPY_DEVICE_TO_HOST = 2
ACL_MEMCPY_DEVICE_TO_DEVICE = 3
# aclrtMemMallocPolicy
ACL_MEM_MALLOC_HUGE_FIRST = 0
# aclFormat
ACL_FORMAT_ND = 2


@dataclass(frozen=True)
class Function:
    """One C function: name, return type, argument types, and how its result is checked.

    ``status``: ``"acl"`` (aclError), ``"aclnn"`` (aclnnStatus), ``"hccl"`` (HcclResult),
    ``"pointer"`` (NULL means failure) or ``None`` (nothing to check).

    ``quick``: the function only queues work or does host bookkeeping and never waits for the device or
    for another rank, so it may also be bound holding the GIL (``CannLibrary.held``): ranks that are
    threads of one process then skip a GIL hand-off per call (see :func:`aclnn_py.runtime.twophase.launch`).
    """

    name: str
    restype: object
    argtypes: Tuple
    status: Optional[str]
    quick: bool = False


def _f(name, restype, argtypes, status, quick=False):
    return Function(name, restype, tuple(argtypes), status, quick)


P = POINTER

# ---- ACL runtime: libascendcl.so (acl/acl_rt.h, acl/acl_base_rt.h) ------------------------------
ACL_RUNTIME = [
    # aclError aclInit(const char *configPath);
    _f("aclInit", aclError, [c_char_p], "acl"),
    # aclError aclFinalize();
    _f("aclFinalize", aclError, [], "acl"),
    # aclError aclrtSetDevice(int32_t deviceId);
    _f("aclrtSetDevice", aclError, [c_int32], "acl"),
    # aclError aclrtResetDevice(int32_t deviceId);
    _f("aclrtResetDevice", aclError, [c_int32], "acl"),
    # aclError aclrtGetDevice(int32_t *deviceId);
    _f("aclrtGetDevice", aclError, [P(c_int32)], "acl"),
    # aclError aclrtGetDeviceCount(uint32_t *count);
    _f("aclrtGetDeviceCount", aclError, [P(c_uint32)], "acl"),
    # aclError aclrtCreateContext(aclrtContext *context, int32_t deviceId);
    _f("aclrtCreateContext", aclError, [P(aclrtContext), c_int32], "acl"),
    # aclError aclrtDestroyContext(aclrtContext context);
    _f("aclrtDestroyContext", aclError, [aclrtContext], "acl"),
    # aclError aclrtSetCurrentContext(aclrtContext context);
    _f("aclrtSetCurrentContext", aclError, [aclrtContext], "acl"),
    # aclError aclrtGetCurrentContext(aclrtContext *context);
    _f("aclrtGetCurrentContext", aclError, [P(aclrtContext)], "acl"),
    # aclError aclrtCreateStream(aclrtStream *stream);
    _f("aclrtCreateStream", aclError, [P(aclrtStream)], "acl"),
    # aclError aclrtCreateStreamWithConfig(aclrtStream *stream, uint32_t priority, uint32_t flag);
    _f("aclrtCreateStreamWithConfig", aclError, [P(aclrtStream), c_uint32, c_uint32], "acl"),
    # aclError aclrtDestroyStream(aclrtStream stream);
    _f("aclrtDestroyStream", aclError, [aclrtStream], "acl"),
    # aclError aclrtSynchronizeStream(aclrtStream stream);
    _f("aclrtSynchronizeStream", aclError, [aclrtStream], "acl"),
    # aclError aclrtSynchronizeStreamWithTimeout(aclrtStream stream, int32_t timeout);  /* ms */
    _f("aclrtSynchronizeStreamWithTimeout", aclError, [aclrtStream, c_int32], "acl"),
    # aclError aclrtSynchronizeDevice(void);
    _f("aclrtSynchronizeDevice", aclError, [], "acl"),
    # aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy policy);
    _f("aclrtMalloc", aclError, [P(c_void_p), c_size_t, c_int], "acl"),
    # aclError aclrtFree(void *devPtr);
    _f("aclrtFree", aclError, [c_void_p], "acl"),
    # aclError aclrtMallocHost(void **hostPtr, size_t size);
    _f("aclrtMallocHost", aclError, [P(c_void_p), c_size_t], "acl"),
    # aclError aclrtFreeHost(void *hostPtr);
    _f("aclrtFreeHost", aclError, [c_void_p], "acl"),
    # aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count, aclrtMemcpyKind kind);
    _f("aclrtMemcpy", aclError, [c_void_p, c_size_t, c_void_p, c_size_t, c_int], "acl"),
    # aclError aclrtMemcpyAsync(void *dst, size_t destMax, const void *src, size_t count,
    #                           aclrtMemcpyKind kind, aclrtStream stream);
    _f("aclrtMemcpyAsync", aclError, [c_void_p, c_size_t, c_void_p, c_size_t, c_int, aclrtStream], "acl"),
    # aclError aclrtMemset(void *devPtr, size_t maxCount, int32_t value, size_t count);
    _f("aclrtMemset", aclError, [c_void_p, c_size_t, c_int32, c_size_t], "acl"),
    # aclError aclrtMemsetAsync(void *devPtr, size_t maxCount, int32_t value, size_t count, aclrtStream stream);
    _f("aclrtMemsetAsync", aclError, [c_void_p, c_size_t, c_int32, c_size_t, aclrtStream], "acl", quick=True),
    # aclError aclrtGetMemInfo(aclrtMemAttr attr, size_t *free, size_t *total);
    _f("aclrtGetMemInfo", aclError, [c_int, P(c_size_t), P(c_size_t)], "acl"),
    # const char *aclGetRecentErrMsg();
    _f("aclGetRecentErrMsg", c_char_p, [], None),
    # const char *aclrtGetSocName();
    _f("aclrtGetSocName", c_char_p, [], None),
    # aclError aclrtGetVersion(int32_t *majorVersion, int32_t *minorVersion, int32_t *patchVersion);
    _f("aclrtGetVersion", aclError, [P(c_int32), P(c_int32), P(c_int32)], "acl"),
    # aclError aclrtCreateEvent(aclrtEvent *event);
    _f("aclrtCreateEvent", aclError, [P(aclrtEvent)], "acl"),
    # aclError aclrtRecordEvent(aclrtEvent event, aclrtStream stream);
    _f("aclrtRecordEvent", aclError, [aclrtEvent, aclrtStream], "acl"),
    # aclError aclrtSynchronizeEvent(aclrtEvent event);
    _f("aclrtSynchronizeEvent", aclError, [aclrtEvent], "acl"),
    # aclError aclrtDestroyEvent(aclrtEvent event);
    _f("aclrtDestroyEvent", aclError, [aclrtEvent], "acl"),
    # aclError aclrtStreamWaitEvent(aclrtStream stream, aclrtEvent event);
    _f("aclrtStreamWaitEvent", aclError, [aclrtStream, aclrtEvent], "acl"),
    # aclError aclsysGetVersionStr(char *pkgName, char *versionStr);   /* CANN >= 8.5; buffer of 128 */
    _f("aclsysGetVersionStr", aclError, [c_char_p, c_char_p], "acl"),
    # aclError aclsysGetVersionNum(char *pkgName, int32_t *versionNum);
    _f("aclsysGetVersionNum", aclError, [c_char_p, P(c_int32)], "acl"),
    # size_t aclDataTypeSize(aclDataType dataType);
    _f("aclDataTypeSize", c_size_t, [c_int], None),
]

# ---- aclnn meta API: libnnopbase.so (aclnn/acl_meta.h, aclnn/aclnn_base.h) ---------------------
NNOPBASE = [
    # aclTensor *aclCreateTensor(const int64_t *viewDims, uint64_t viewDimsNum, aclDataType dataType,
    #     const int64_t *stride, int64_t offset, aclFormat format, const int64_t *storageDims,
    #     uint64_t storageDimsNum, void *tensorData);
    _f("aclCreateTensor", aclTensorPtr,
       [P(c_int64), c_uint64, c_int, P(c_int64), c_int64, c_int, P(c_int64), c_uint64, c_void_p], "pointer"),
    # aclnnStatus aclDestroyTensor(const aclTensor *tensor);
    _f("aclDestroyTensor", aclnnStatus, [aclTensorPtr], "aclnn"),
    # aclIntArray *aclCreateIntArray(const int64_t *value, uint64_t size);
    _f("aclCreateIntArray", c_void_p, [P(c_int64), c_uint64], "pointer"),
    # aclnnStatus aclDestroyIntArray(const aclIntArray *array);
    _f("aclDestroyIntArray", aclnnStatus, [c_void_p], "aclnn"),
    # aclnnStatus aclSetAclOpExecutorRepeatable(aclOpExecutor *executor);
    _f("aclSetAclOpExecutorRepeatable", aclnnStatus, [aclOpExecutorPtr], "aclnn"),
    # aclnnStatus aclDestroyAclOpExecutor(aclOpExecutor *executor);
    _f("aclDestroyAclOpExecutor", aclnnStatus, [aclOpExecutorPtr], "aclnn"),
    # aclnnStatus aclnnInit(const char *configPath);
    _f("aclnnInit", aclnnStatus, [c_char_p], "aclnn"),
    # aclnnStatus aclnnFinalize();
    _f("aclnnFinalize", aclnnStatus, [], "aclnn"),
]

# ---- HCCL: libhccl.so (hccl/hccl.h, hccl/hccl_types.h) -----------------------------------------
HCCL = [
    # HcclResult HcclGetRootInfo(HcclRootInfo *rootInfo);
    _f("HcclGetRootInfo", HcclResult, [P(HcclRootInfo)], "hccl"),
    # HcclResult HcclCommInitRootInfo(uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank, HcclComm *comm);
    _f("HcclCommInitRootInfo", HcclResult, [c_uint32, P(HcclRootInfo), c_uint32, P(HcclComm)], "hccl"),
    # HcclResult HcclCommInitAll(uint32_t ndev, int32_t *devices, HcclComm *comms);
    _f("HcclCommInitAll", HcclResult, [c_uint32, P(c_int32), P(HcclComm)], "hccl"),
    # HcclResult HcclGetCommName(HcclComm comm, char *commName);  /* buffer of 128 */
    _f("HcclGetCommName", HcclResult, [HcclComm, c_char_p], "hccl"),
    # HcclResult HcclGetRankId(HcclComm comm, uint32_t *rank);
    _f("HcclGetRankId", HcclResult, [HcclComm, P(c_uint32)], "hccl"),
    # HcclResult HcclGetRankSize(HcclComm comm, uint32_t *rankSize);
    _f("HcclGetRankSize", HcclResult, [HcclComm, P(c_uint32)], "hccl"),
    # HcclResult HcclCommDestroy(HcclComm comm);
    _f("HcclCommDestroy", HcclResult, [HcclComm], "hccl"),
    # const char *HcclGetErrorString(HcclResult code);
    _f("HcclGetErrorString", c_char_p, [HcclResult], None),
    # HcclResult HcclBarrier(HcclComm comm, aclrtStream stream);
    _f("HcclBarrier", HcclResult, [HcclComm, aclrtStream], "hccl"),
]

# ---- simulator test API (aclsim.h; present only in the simulator's libop_common.so) -----------
SIMULATOR = [
    # int32_t aclsimLiveObjects(int64_t *counts, int32_t n);
    _f("aclsimLiveObjects", c_int32, [P(c_int64), c_int32], None),
    # int32_t aclsimLastCall(char *buf, uint64_t cap);
    _f("aclsimLastCall", c_int32, [c_char_p, c_uint64], None),
    # const char *aclsimObjectKindName(int32_t kind);
    _f("aclsimObjectKindName", c_char_p, [c_int32], None),
    # int32_t aclsimIsSimulator(void);
    _f("aclsimIsSimulator", c_int32, [], None),
    # int32_t aclsimAbortComm(void *comm, const char *reason);
    _f("aclsimAbortComm", c_int32, [HcclComm, c_char_p], None),
    # int32_t aclsimRecoverComm(void *comm);
    _f("aclsimRecoverComm", c_int32, [HcclComm], None),
    # int32_t aclsimCommInFlight(void *comm);
    _f("aclsimCommInFlight", c_int32, [HcclComm], None),
    # int32_t aclsimCommState(void *comm);
    _f("aclsimCommState", c_int32, [HcclComm], None),
    # int32_t aclsimCommExists(const char *name, int32_t device);
    _f("aclsimCommExists", c_int32, [c_char_p, c_int32], None),
    # int64_t aclsimConnectTimeoutMs(void);
    _f("aclsimConnectTimeoutMs", c_int64, [], None),
]

# ---- operators: both phases of every catalog entry ----------------------------------------------------
_CTYPE = {catalog.TENSOR: aclTensorPtr, catalog.STR: c_char_p, catalog.I64: c_int64, catalog.F32: c_float}
# ..., uint64_t *workspaceSize, aclOpExecutor **executor);
PHASE1_TAIL = (P(c_uint64), P(aclOpExecutorPtr))
# aclnnStatus aclnnXxx(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor, aclrtStream stream);
PHASE2_ARGTYPES = (c_void_p, c_uint64, aclOpExecutorPtr, aclrtStream)


def phase1(op: catalog.OpDef) -> Function:
    """``aclnnStatus {op}GetWorkspaceSize(<op.params>, uint64_t *workspaceSize, aclOpExecutor **executor)``
    (the prototype is the catalog entry's parameter list)."""
    return Function(op.c_name + "GetWorkspaceSize", aclnnStatus,
                    tuple(_CTYPE[p.kind] for p in op.params) + PHASE1_TAIL, "aclnn")


def phase2(op: catalog.OpDef) -> Function:
    """``aclnnStatus {op}(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor, aclrtStream stream)``."""
    return Function(op.c_name, aclnnStatus, PHASE2_ARGTYPES, "aclnn")


def int64_array(values: Sequence[int]):
    """A ctypes ``int64_t[]`` holding ``values`` (shape and stride vectors)."""
    return (c_int64 * len(values))(*values)


__all__ = [n for n in dir() if not n.startswith("_")] + ["ctypes"]
