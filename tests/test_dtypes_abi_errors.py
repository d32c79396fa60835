"""dtype mapping both ways, the C-ABI table, and the error classes."""
from __future__ import annotations

import ctypes
import pickle

import numpy as np
import pytest

from aclnn_py import dtypes
from aclnn_py.errors import AclError, AclnnError, CollectiveError, HcclError
from aclnn_py import catalog
from aclnn_py.runtime import abi

EXPECTED = {
    "float32": 0, "float16": 1, "int8": 2, "int32": 3, "uint8": 4, "int16": 6, "uint16": 7, "uint32": 8,
    "int64": 9, "uint64": 10, "float64": 11, "bool": 12, "bfloat16": 27, "complex64": 16, "complex128": 17,
}


@pytest.mark.parametrize("name,value", sorted(EXPECTED.items()))
def test_dtype_round_trip(name, value):
    dt = dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)
    assert int(dtypes.to_acl(dt)) == value
    assert dtypes.from_acl(value) == dt


def test_dtype_errors_name_the_dtype():
    with pytest.raises(TypeError, match="<U3"):
        dtypes.to_acl(np.dtype("<U3"))
    with pytest.raises(TypeError, match="aclDataType 29"):
        dtypes.from_acl(29)  # ACL_INT4: no numpy equivalent


def test_operator_argument_counts():
    counts = {name: spec.arg_count for name, spec in catalog.OPS.items()}
    assert counts["aclnnMoeDistributeDispatchV3"] == 32
    assert counts["aclnnMoeDistributeCombineV3"] == 38
    assert counts["aclnnMoeDistributeCombineAddRmsNormV2"] == 43
    assert counts["aclnnDistributeBarrierV2"] == 7
    assert counts["aclnnMoeDistributeDispatchV4"] == 33 and counts["aclnnMoeDistributeCombineV4"] == 39


def test_operator_argument_types():
    arn = abi.phase1(catalog.ADD_RMS_NORM_V2)
    names = [p.c_name for p in catalog.ADD_RMS_NORM_V2.params]
    assert arn.argtypes[names.index("normEps")] is ctypes.c_float
    assert arn.argtypes[names.index("epWorldSize")] is ctypes.c_int64
    assert arn.argtypes[names.index("groupTp")] is ctypes.c_char_p
    assert names[-3:] == ["yOut", "rstdOut", "xOut"]
    assert arn.argtypes[-2]._type_ is ctypes.c_uint64
    d4 = [p.c_name for p in catalog.DISPATCH_V4.params]
    assert d4.index("performanceInfoOptional") == d4.index("elasticInfoOptional") + 1
    assert abi.phase2(catalog.DISPATCH_V3).argtypes == (
        ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)


def test_runtime_prototypes_have_exact_widths():
    table = {f.name: f for f in abi.ACL_RUNTIME + abi.NNOPBASE + abi.HCCL}
    assert table["aclCreateTensor"].argtypes[4] is ctypes.c_int64          # offset
    assert table["aclCreateTensor"].argtypes[1] is ctypes.c_uint64         # viewDimsNum
    assert table["aclCreateTensor"].restype is ctypes.c_void_p
    assert table["aclrtSynchronizeStreamWithTimeout"].argtypes[1] is ctypes.c_int32
    assert table["HcclCommInitRootInfo"].argtypes[0] is ctypes.c_uint32
    assert ctypes.sizeof(abi.HcclRootInfo) == 4108
    for f in table.values():
        assert f.restype is not None


@pytest.mark.parametrize("cls", [AclnnError, AclError, HcclError, CollectiveError])
def test_errors_pickle_and_carry_status(cls):
    e = cls(161002, "aclnnX", "parameter 'x' must be 2-D")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is cls and e2.status == 161002 and e2.call == "aclnnX" and str(e2) == str(e)
    assert "161002" in str(e)


# ---- DeviceTensor constructor arguments: 161002 naming the argument, before any device work -------------------
@pytest.mark.parametrize("shape", [(2.5,), (-1,), ("a",), 3, None, (2, None)], ids=repr)
def test_device_tensor_bad_shape_names_shape(shape):
    from aclnn_py import DeviceTensor
    with pytest.raises(AclnnError, match=r"shape must be a sequence of non-negative integers") as e:
        DeviceTensor.zeros(shape, np.float32)
    assert e.value.status == 161002


@pytest.mark.parametrize("dtype", [object, "foo", np.dtype("<U3"), np.dtype([("a", "i4")])], ids=repr)
def test_device_tensor_bad_dtype_names_dtype(dtype):
    from aclnn_py import DeviceTensor
    with pytest.raises(AclnnError, match=r"dtype") as e:
        DeviceTensor.zeros((2,), dtype)
    assert e.value.status == 161002


def test_device_tensor_from_an_object_array_names_dtype():
    from aclnn_py import DeviceTensor
    with pytest.raises(AclnnError, match=r"dtype object") as e:
        DeviceTensor.from_numpy(np.array([1, "a", None], dtype=object))
    assert e.value.status == 161002
