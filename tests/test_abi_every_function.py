"""Every foreign declaration of the runtime, nnopbase and HCCL tables, called through the bound ctypes
function against the simulator, with values that expose a wrong width or sign (int64 above 2^32,
uint32 with the top bit set, negative int32, size_t above 2^32). Runs in a subprocess so that
aclInit/aclFinalize and device resets cannot disturb other tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from aclnn_py.runtime import abi

SCRIPT = r'''
import ctypes, json
from ctypes import byref, c_uint32, c_int32, c_void_p, c_size_t, c_int64
from aclnn_py.errors import AclnnPyError
from aclnn_py.runtime import abi
from aclnn_py.runtime.library import get_library

lib = get_library()
records = {}

def last():
    buf = ctypes.create_string_buffer(1 << 14)
    lib.aclsimLastCall(buf, len(buf))
    return buf.value.decode()

def call(name, *args):
    fn = getattr(lib, name)
    try:
        result = fn(*args)
    except AclnnPyError as e:
        result = f"error {e.status}"
    records[name] = last()
    return result

call("aclInit", None)
n = c_uint32(); call("aclrtGetDeviceCount", byref(n))
call("aclrtSetDevice", 3)
d = c_int32(); call("aclrtGetDevice", byref(d))
ctx = c_void_p(); call("aclrtCreateContext", byref(ctx), 3)
call("aclrtSetCurrentContext", ctx)
cur = c_void_p(); call("aclrtGetCurrentContext", byref(cur))
s = c_void_p(); call("aclrtCreateStream", byref(s))
s2 = c_void_p(); call("aclrtCreateStreamWithConfig", byref(s2), 0xFFFFFFFE, 0x80000001)
p = c_void_p(); call("aclrtMalloc", byref(p), 4096, 2)
h = c_void_p(); call("aclrtMallocHost", byref(h), 64)
call("aclrtMemcpy", p, 4096, h, 64, 1)
call("aclrtMemcpyAsync", p, 4096, h, 64, 1, s)
call("aclrtMemset", p, 4096, -3, 100)
call("aclrtMemsetAsync", p, 4096, 255, 10, s)
call("aclrtSynchronizeStream", s)
call("aclrtSynchronizeStreamWithTimeout", s, -1)
call("aclrtSynchronizeDevice")
free_b, total_b = c_size_t(), c_size_t(); call("aclrtGetMemInfo", 1, byref(free_b), byref(total_b))
call("aclrtGetSocName")
v = [c_int32() for _ in range(3)]; call("aclrtGetVersion", *[byref(x) for x in v])
rel = ctypes.create_string_buffer(128); call("aclsysGetVersionStr", b"ops_transformer", rel)
relnum = c_int32(); call("aclsysGetVersionNum", b"runtime", byref(relnum))
e = c_void_p(); call("aclrtCreateEvent", byref(e))
call("aclrtRecordEvent", e, s)
call("aclrtSynchronizeEvent", e)
call("aclrtStreamWaitEvent", s, e)
call("aclrtDestroyEvent", e)
size = call("aclDataTypeSize", 27)
dims = abi.int64_array([2, 3]); strides = abi.int64_array([3, 1])
t = call("aclCreateTensor", dims, 2, 27, strides, 5_000_000_000, 2, dims, 2, p)
call("aclDestroyTensor", t)
arr = call("aclCreateIntArray", abi.int64_array([1 << 40, -2]), 2)
call("aclDestroyIntArray", arr)
call("aclSetAclOpExecutorRepeatable", None)
call("aclDestroyAclOpExecutor", None)
call("aclnnInit", None)
call("aclnnFinalize")
root = abi.HcclRootInfo(); call("HcclGetRootInfo", byref(root))
comm = c_void_p(); call("HcclCommInitRootInfo", 1, byref(root), 0, byref(comm))
name = ctypes.create_string_buffer(128); call("HcclGetCommName", comm, name)
rank = c_uint32(); call("HcclGetRankId", comm, byref(rank))
size_r = c_uint32(); call("HcclGetRankSize", comm, byref(size_r))
call("HcclBarrier", comm, s)
call("HcclCommDestroy", comm)
devs = (c_int32 * 2)(3, 5); comms = (c_void_p * 2)(); call("HcclCommInitAll", 2, devs, comms)
for c in comms: lib.HcclCommDestroy(c)
msg = call("HcclGetErrorString", 9)
call("aclrtFreeHost", h)
call("aclrtFree", p)
call("aclrtDestroyStream", s2)
call("aclrtDestroyStream", s)
call("aclrtDestroyContext", ctx)
call("aclrtResetDevice", 3)
call("aclFinalize")
print(json.dumps({"records": records, "size": size, "name": name.value.decode(), "rank": rank.value,
                  "ranks": size_r.value, "hccl9": msg.decode() if msg else None}))
'''

# (function, expected "param=value" fields of its record)
EXPECTED = {
    "aclInit": ["configPath=NULL"], "aclrtSetDevice": ["deviceId=3"], "aclrtCreateContext": ["deviceId=3"],
    "aclrtCreateStreamWithConfig": ["priority=4294967294", "flag=2147483649"],
    "aclrtMalloc": ["size=4096", "policy=2"], "aclrtMallocHost": ["size=64"],
    "aclrtMemcpy": ["destMax=4096", "count=64", "kind=1"], "aclrtMemcpyAsync": ["destMax=4096", "count=64", "kind=1"],
    "aclrtMemset": ["maxCount=4096", "value=-3", "count=100"], "aclrtMemsetAsync": ["value=255", "count=10"],
    "aclrtSynchronizeStreamWithTimeout": ["timeout=-1"], "aclrtGetMemInfo": ["attr=1"], "aclDataTypeSize": ["dataType=27"],
    "aclCreateTensor": ["viewDims=[2,3]", "viewDimsNum=2", "dataType=27", "stride=[3,1]", "offset=5000000000",
                        "format=2", "storageDims=[2,3]", "storageDimsNum=2"],
    "aclCreateIntArray": ["value=[1099511627776,-2]", "size=2"],
    "aclSetAclOpExecutorRepeatable": ["executor=NULL"], "aclDestroyAclOpExecutor": ["executor=NULL"],
    "aclnnInit": ["configPath=NULL"], "HcclCommInitRootInfo": ["nRanks=1", "rank=0"], "HcclCommInitAll": ["ndev=2"],
    "HcclGetErrorString": ["code=9"], "aclsysGetVersionStr": ["pkgName=\"ops_transformer\""],
    "aclsysGetVersionNum": ["pkgName=\"runtime\""],
}
NOT_RECORDED = {"aclGetRecentErrMsg"}  # reading the message must not overwrite the failing call's record


def test_every_declared_function_records_its_arguments(cann_sim_home):
    env = {**os.environ, "ACLNN_PY_CANN_HOME": str(cann_sim_home)}
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    records = out["records"]
    declared = {f.name for f in abi.ACL_RUNTIME + abi.NNOPBASE + abi.HCCL} - NOT_RECORDED
    assert set(records) == declared, f"not exercised: {declared - set(records)}"
    for name, record in records.items():
        assert record.split(" ")[0] == name, (name, record)
    for name, fields in EXPECTED.items():
        got = records[name].split(" ")[1:]
        for f in fields:
            assert f in got, (name, f, records[name])
    assert out["size"] == 2 and out["rank"] == 0 and out["ranks"] == 1 and out["name"]
    assert out["hccl9"]
