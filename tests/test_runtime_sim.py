"""The ctypes layer against the simulator: arguments arrive with the right values and widths,
device tensors round-trip every dtype, and nothing leaks (the ``sim`` fixture checks)."""
from __future__ import annotations

import ctypes
import struct

import numpy as np
import pytest

from aclnn_py import catalog, dtypes
from aclnn_py.errors import AclError, AclnnError
from aclnn_py.runtime import abi
from aclnn_py.runtime.device import Stream, acl_init, set_device
from aclnn_py.runtime.tensor import DeviceBuffer, DeviceTensor


def last_call(lib) -> tuple:
    buf = ctypes.create_string_buffer(1 << 16)
    lib.aclsimLastCall(buf, len(buf))
    name, *rest = buf.value.decode().split(" ")
    return name, dict(item.split("=", 1) for item in rest)


@pytest.fixture
def dev(sim):
    acl_init()
    set_device(0)
    return sim


def test_create_tensor_int64_offset_and_uint64_counts(dev):
    dims = abi.int64_array([2, 3])
    strides = abi.int64_array([3, 1])
    with DeviceBuffer(64) as buf:
        ptr = buf.ptr
        h = dev.aclCreateTensor(dims, 2, 27, strides, 5_000_000_000, abi.ACL_FORMAT_ND, dims, 2, ptr)
        name, f = last_call(dev)
        dev.aclDestroyTensor(h)
    assert name == "aclCreateTensor"
    assert f["offset"] == "5000000000" and f["viewDims"] == "[2,3]" and f["viewDimsNum"] == "2"
    assert f["dataType"] == "27" and f["stride"] == "[3,1]" and f["format"] == "2"
    assert int(f["tensorData"], 16) == ptr


def test_size_t_and_int32_arguments(dev):
    with DeviceBuffer(64) as buf:
        host = np.arange(16, dtype=np.int32)
        dev.aclrtMemcpy(buf.ptr, 64, host.ctypes.data, 64, abi.ACL_MEMCPY_HOST_TO_DEVICE)
        name, f = last_call(dev)
        assert (name, f["destMax"], f["count"], f["kind"]) == ("aclrtMemcpy", "64", "64", "1")
        dev.aclrtMemset(buf.ptr, 64, -7, 8)
        name, f = last_call(dev)
        assert (f["value"], f["maxCount"], f["count"]) == ("-7", "64", "8")
    big = 1 << 40
    p = ctypes.c_void_p()
    with pytest.raises(AclError):
        dev.aclrtMalloc(ctypes.byref(p), big, 0)
    name, f = last_call(dev)
    assert name == "aclrtMalloc" and f["size"] == str(big)


def test_uint32_and_timeout_arguments(dev):
    h = abi.aclrtStream()
    dev.aclrtCreateStreamWithConfig(ctypes.byref(h), 0xFFFFFFFF, 0x80000001)
    name, f = last_call(dev)
    try:
        assert (f["priority"], f["flag"]) == ("4294967295", "2147483649")
        dev.aclrtSynchronizeStreamWithTimeout(h, -1)
        assert last_call(dev)[1]["timeout"] == "-1"
    finally:
        dev.aclrtDestroyStream(h)


def _op_values(spec: catalog.OpDef) -> dict:
    values = {}
    for i, (name, kind) in enumerate((p.c_name, p.kind) for p in spec.params):
        if kind == catalog.I64:
            values[name] = (1 << 33) + i           # above 2^32: a c_int would truncate it
        elif kind == catalog.STR:
            values[name] = f"grp{i}"
        elif kind == catalog.F32:
            values[name] = 1e-6                    # not representable; must arrive as float32 bits
        else:
            values[name] = None
    return values


@pytest.mark.parametrize("op_name", ["aclnnDistributeBarrierV2", "aclnnMoeDistributeDispatchV3",
                                     "aclnnMoeDistributeCombineV3", "aclnnMoeDistributeCombineAddRmsNormV2"])
def test_operator_parameters_arrive_intact(dev, op_name):
    from aclnn_py.runtime.twophase import build_arguments
    op = dev.op(op_name)
    values = _op_values(op.spec)
    ws, ex = ctypes.c_uint64(), abi.aclOpExecutorPtr()
    with pytest.raises(AclnnError) as e:          # NULL required tensors: rejected after recording
        op.get_workspace_size(*build_arguments(op.spec, values), ctypes.byref(ws), ctypes.byref(ex))
    assert e.value.status == 161001
    name, f = last_call(dev)
    assert name == op_name + "GetWorkspaceSize"
    assert list(f)[:len(op.spec.params)] == [p.c_name for p in op.spec.params]
    for p, kind in ((p.c_name, p.kind) for p in op.spec.params):
        if kind == catalog.I64:
            assert f[p] == str(values[p]), p
        elif kind == catalog.STR:
            assert f[p] == f'"{values[p]}"', p
        elif kind == catalog.F32:
            bits = struct.unpack("<I", struct.pack("<f", 1e-6))[0]
            assert f[p].endswith(f"/0x{bits:08x}"), f[p]
        else:
            assert f[p] == "NULL", p


ALL_DTYPES = [np.float32, np.float16, np.int8, np.int32, np.uint8, np.int16, np.uint16, np.uint32, np.int64,
              np.uint64, np.float64, np.bool_, np.complex64, np.complex128, dtypes.bfloat16]


def _sample(dtype, shape):
    rng = np.random.default_rng(1)
    dt = np.dtype(dtype)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
    if dt == np.bool_:
        raw = raw & 1
    return raw.view(dt).reshape(shape)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_device_tensor_round_trip_every_dtype(dev, dtype):
    a = _sample(dtype, (3, 5, 7))
    with DeviceTensor.from_numpy(a) as t:
        assert t.shape == a.shape and t.dtype == a.dtype
        assert t.acl_dtype == int(dtypes.to_acl(a.dtype))
        back = t.numpy()
    assert back.tobytes() == a.tobytes()


@pytest.mark.parametrize("view", ["transpose", "stride", "negative", "sliced"])
def test_device_tensor_non_contiguous_input(dev, view):
    a = _sample(dtypes.bfloat16, (6, 8))
    v = {"transpose": a.T, "stride": a[:, ::3], "negative": a[::-1], "sliced": a[1:4, 2:7]}[view]
    assert not v.flags.c_contiguous
    with DeviceTensor.from_numpy(v) as t:
        assert t.shape == v.shape
        assert t.numpy().tobytes() == np.ascontiguousarray(v).tobytes()


@pytest.mark.parametrize("shape", [(), (0,), (4, 0, 2)])
def test_device_tensor_scalar_and_empty(dev, shape):
    a = _sample(np.int32, shape)
    with DeviceTensor.from_numpy(a) as t:
        assert t.numpy().shape == shape
    z = DeviceTensor.zeros(shape, np.float16)
    assert z.numpy().shape == shape
    z.free()
    z.free()  # idempotent


def test_zeros_are_zero_and_free_releases(dev):
    t = DeviceTensor.zeros((128,), np.float32)
    assert not t.numpy().any()
    t.free()
    assert t.ptr is None and t.handle is None and "freed" in repr(t)


def test_errors_carry_status_and_message(dev):
    with pytest.raises(AclError) as e:
        dev.aclrtFree(12345)
    assert e.value.status != 0 and e.value.call == "aclrtFree"


def test_stream_defer_releases_on_synchronize(dev):
    with Stream() as s:
        t = DeviceTensor.zeros((4,), np.int8)
        s.defer(t)
        s.synchronize()
        assert t.ptr is None


def test_info_reports_simulator_and_ops(sim, capsys):
    from aclnn_py.__main__ import main
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "simulator" in out and "not hardware" in out
    assert "DistributeBarrier" in out and "BarrierV2" in out
