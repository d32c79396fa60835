"""Device tensors: an ``aclrtMalloc`` buffer plus its ``aclTensor`` descriptor (ND, row-major)."""
from __future__ import annotations

import ctypes
import math
from typing import Optional, Sequence

import numpy as np

from ..dtypes import to_acl
from . import abi
from .device import acl_init

MIN_ALLOCATION = 32  # aclrtMalloc of 0 bytes is not portable; empty tensors get a small buffer


class DeviceBuffer:
    """Raw device memory (e.g. an operator workspace)."""

    def __init__(self, nbytes: int) -> None:
        self._lib = acl_init()
        self.nbytes = int(nbytes)
        p = ctypes.c_void_p()
        self._lib.aclrtMalloc(ctypes.byref(p), max(self.nbytes, MIN_ALLOCATION), abi.ACL_MEM_MALLOC_HUGE_FIRST)
        self.ptr: Optional[int] = p.value

    def free(self) -> None:
        """Release the memory (idempotent)."""
        if self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            self._lib.aclrtFree(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.free()

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:
            pass


def c_order(array) -> np.ndarray:
    """``array`` as a C-contiguous ndarray (0-d stays 0-d, unlike ``np.ascontiguousarray``)."""
    host = np.asarray(array)
    return host if host.flags.c_contiguous else host.copy(order="C")


def row_major_strides(shape: Sequence[int]) -> list:
    """Element strides of a C-contiguous tensor."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(int(d), 1)
    return strides[::-1]


class DeviceTensor(DeviceBuffer):
    """A device tensor owning its buffer and descriptor. Shapes in elements, dtype numpy/ml_dtypes.

    Create with :meth:`zeros` or :meth:`from_numpy`; read back with :meth:`numpy`; release with
    :meth:`free` or a ``with`` block. Use on the device (thread context) it was created on.
    """

    def __init__(self, shape: Sequence[int], dtype, *, zero: bool = True) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.acl_dtype = int(to_acl(self.dtype))
        self.handle: Optional[int] = None
        super().__init__(math.prod(self.shape) * self.dtype.itemsize)
        try:
            alloc = max(self.nbytes, MIN_ALLOCATION)
            if zero:
                self._lib.aclrtMemset(self.ptr, alloc, 0, alloc)
            dims = abi.int64_array(self.shape or (1,))
            strides = abi.int64_array(row_major_strides(self.shape) or (1,))
            self.handle = self._lib.aclCreateTensor(dims, len(self.shape), self.acl_dtype, strides, 0,
                                                    abi.ACL_FORMAT_ND, dims, len(self.shape), self.ptr)
        except BaseException:
            DeviceBuffer.free(self)
            raise

    @classmethod
    def zeros(cls, shape: Sequence[int], dtype) -> "DeviceTensor":
        return cls(shape, dtype, zero=True)

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> "DeviceTensor":
        """Upload ``array`` (any strides; copied to C order first)."""
        host = c_order(array)
        t = cls(host.shape, host.dtype, zero=False)
        try:
            t.copy_from(host)
        except BaseException:
            t.free()
            raise
        return t

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def copy_from(self, array: np.ndarray) -> None:
        """Overwrite the tensor with ``array`` (same shape and dtype)."""
        host = c_order(np.asarray(array, dtype=self.dtype))
        if host.shape != self.shape:
            raise ValueError(f"copy_from: shape {host.shape} != tensor shape {self.shape}")
        if self.nbytes:
            self._lib.aclrtMemcpy(self.ptr, self.nbytes, host.ctypes.data, self.nbytes,
                                  abi.ACL_MEMCPY_HOST_TO_DEVICE)

    def numpy(self) -> np.ndarray:
        """A host copy of the tensor."""
        out = np.empty(self.shape, self.dtype)
        if self.nbytes:
            self._lib.aclrtMemcpy(out.ctypes.data, self.nbytes, self.ptr, self.nbytes,
                                  abi.ACL_MEMCPY_DEVICE_TO_HOST)
        return out

    def free(self) -> None:
        """Destroy the descriptor and release the buffer (idempotent)."""
        if self.handle is not None:
            handle, self.handle = self.handle, None
            try:
                self._lib.aclDestroyTensor(handle)
            finally:
                DeviceBuffer.free(self)
        else:
            DeviceBuffer.free(self)

    def __repr__(self) -> str:
        state = "freed" if self.ptr is None else f"ptr=0x{self.ptr:x}"
        return f"DeviceTensor(shape={self.shape}, dtype={self.dtype}, {state})"
