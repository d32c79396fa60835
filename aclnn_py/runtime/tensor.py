"""Device tensors: an ``aclrtMalloc`` buffer plus its ``aclTensor`` descriptor (ND, row-major)."""
from __future__ import annotations

import ctypes
import math
from typing import Optional, Sequence

import numpy as np

from ..dtypes import to_acl
from . import abi
from . import library as _library
from .device import acl_init

MIN_ALLOCATION = 32  # aclrtMalloc of 0 bytes is not portable; empty tensors get a small buffer

_lib_ready = None   # the CannLibrary once aclInit has run (the library is process-wide and never unloaded)


def _acl():
    """:func:`acl_init` without its lock once the runtime is initialised (the per-tensor hot path)."""
    global _lib_ready
    lib = _lib_ready
    if lib is None or lib is not _library._library:
        lib = _lib_ready = acl_init()
    return lib


class DeviceBuffer:
    """Raw device memory (e.g. an operator workspace)."""

    def __init__(self, nbytes: int) -> None:
        self._lib = lib = _acl()
        self.nbytes = int(nbytes)
        p = ctypes.c_void_p()
        lib.aclrtMalloc(ctypes.byref(p), max(self.nbytes, MIN_ALLOCATION), abi.ACL_MEM_MALLOC_HUGE_FIRST)
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


_descriptor_arrays: dict = {}


def _dims_and_strides(shape: tuple):
    """``(int64_t dims[], int64_t strides[])`` of a row-major shape, made once per shape (read-only to C)."""
    arrays = _descriptor_arrays.get(shape)
    if arrays is None:
        arrays = (abi.int64_array(shape or (1,)), abi.int64_array(row_major_strides(shape) or (1,)))
        if len(_descriptor_arrays) < 4096:
            _descriptor_arrays[shape] = arrays
    return arrays


_ACL_DTYPES: dict = {}   # numpy dtype -> aclDataType value


class DeviceTensor(DeviceBuffer):
    """A device tensor owning its buffer and descriptor. Shapes in elements, dtype numpy/ml_dtypes.

    Create with :meth:`zeros` or :meth:`from_numpy`; read back with :meth:`numpy`; release with
    :meth:`free` or a ``with`` block. Use on the device (thread context) it was created on.
    """

    def __init__(self, shape: Sequence[int], dtype, *, zero: bool = True) -> None:
        self.shape = shape = tuple(int(d) for d in shape)
        self.dtype = dt = np.dtype(dtype)
        acl_dtype = _ACL_DTYPES.get(dt)
        if acl_dtype is None:
            acl_dtype = _ACL_DTYPES.setdefault(dt, int(to_acl(dt)))
        self.acl_dtype = acl_dtype
        self.handle: Optional[int] = None
        super().__init__(math.prod(shape) * dt.itemsize)
        try:
            lib = self._lib
            if zero:
                alloc = max(self.nbytes, MIN_ALLOCATION)
                lib.aclrtMemset(self.ptr, alloc, 0, alloc)
            dims, strides = _dims_and_strides(shape)
            self.handle = lib.aclCreateTensor(dims, len(shape), acl_dtype, strides, 0, abi.ACL_FORMAT_ND,
                                                     dims, len(shape), self.ptr)
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
