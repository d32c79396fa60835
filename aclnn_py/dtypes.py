"""numpy / ml_dtypes dtypes <-> aclDataType (acl_base_rt.h values)."""
from __future__ import annotations

import enum

import ml_dtypes
import numpy as np

bfloat16 = np.dtype(ml_dtypes.bfloat16)


class AclDataType(enum.IntEnum):
    ACL_DT_UNDEFINED = -1
    ACL_FLOAT = 0
    ACL_FLOAT16 = 1
    ACL_INT8 = 2
    ACL_INT32 = 3
    ACL_UINT8 = 4
    ACL_INT16 = 6
    ACL_UINT16 = 7
    ACL_UINT32 = 8
    ACL_INT64 = 9
    ACL_UINT64 = 10
    ACL_DOUBLE = 11
    ACL_BOOL = 12
    ACL_STRING = 13
    ACL_COMPLEX64 = 16
    ACL_COMPLEX128 = 17
    ACL_BF16 = 27


_TO_ACL = {
    np.dtype(np.float32): AclDataType.ACL_FLOAT,
    np.dtype(np.float16): AclDataType.ACL_FLOAT16,
    np.dtype(np.int8): AclDataType.ACL_INT8,
    np.dtype(np.int32): AclDataType.ACL_INT32,
    np.dtype(np.uint8): AclDataType.ACL_UINT8,
    np.dtype(np.int16): AclDataType.ACL_INT16,
    np.dtype(np.uint16): AclDataType.ACL_UINT16,
    np.dtype(np.uint32): AclDataType.ACL_UINT32,
    np.dtype(np.int64): AclDataType.ACL_INT64,
    np.dtype(np.uint64): AclDataType.ACL_UINT64,
    np.dtype(np.float64): AclDataType.ACL_DOUBLE,
    np.dtype(np.bool_): AclDataType.ACL_BOOL,
    np.dtype(np.complex64): AclDataType.ACL_COMPLEX64,
    np.dtype(np.complex128): AclDataType.ACL_COMPLEX128,
    bfloat16: AclDataType.ACL_BF16,
}
_FROM_ACL = {v: k for k, v in _TO_ACL.items()}


def to_acl(dtype) -> AclDataType:
    """aclDataType of a numpy dtype; ``TypeError`` naming the dtype when CANN has no equivalent."""
    dt = np.dtype(dtype)
    try:
        return _TO_ACL[dt]
    except KeyError:
        raise TypeError(f"dtype {dt} has no aclDataType equivalent; supported: "
                        + ", ".join(sorted(str(d) for d in _TO_ACL))) from None


def from_acl(value: int) -> np.dtype:
    """numpy dtype of an aclDataType value; ``TypeError`` for values numpy cannot hold."""
    try:
        return _FROM_ACL[AclDataType(value)]
    except (KeyError, ValueError):
        raise TypeError(f"aclDataType {value} has no numpy equivalent") from None


def acl_name(dtype) -> str:
    """Short CANN-style name (BF16, FLOAT16, INT32, ...) used in error messages."""
    try:
        return to_acl(dtype).name.replace("ACL_", "")
    except TypeError:
        return str(np.dtype(dtype))
