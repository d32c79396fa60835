"""Device tensors: an ``aclrtMalloc`` buffer plus its ``aclTensor`` descriptor (ND, row-major).

A :class:`DeviceTensor` speaks numpy's protocols by copying to the host: ``np.asarray(t)``,
arithmetic and ufuncs (``t * 2``, ``np.exp(t)``), indexing and the non-mutating ndarray methods
(``t.astype``, ``t.sum``, ...) compute on a host copy and return numpy arrays; in-place forms
(``t *= 2``, ``np.add(a, b, out=t)``, ``t[0] = 1``) write the result back to the device. Together
with the reference backend's results it satisfies :class:`aclnn_py.Tensor`.
"""
from __future__ import annotations

import ctypes
import math
import operator
import weakref
from typing import Any, Optional, Sequence

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from ..dtypes import to_acl
from ..errors import ACLNN_ERR_PARAM_INVALID, ACLNN_ERR_PARAM_NULLPTR, AclnnError
from ..results import HOST_METHODS
from . import abi
from .device import adopt_by_current_device, initialised_library

MIN_ALLOCATION = 32  # aclrtMalloc of 0 bytes is not portable; empty tensors get a small buffer

class _Held:
    """What a :class:`DeviceBuffer` (or tensor) releases: its descriptor, if any, then its memory."""

    __slots__ = ("lib", "ptr", "handle")

    def __init__(self, lib, ptr: Optional[int]) -> None:
        self.lib, self.ptr, self.handle = lib, ptr, None

    def release(self) -> None:
        handle, ptr, self.handle, self.ptr = self.handle, self.ptr, None, None
        try:
            if handle is not None:
                self.lib.aclDestroyTensor(handle)
        finally:
            if ptr is not None:
                self.lib.aclrtFree(ptr)


def _release_unreferenced(held: _Held) -> None:
    """The finalizer of a buffer nobody freed: release it, silently (the program has moved on)."""
    try:
        held.release()
    except Exception:
        pass


class DeviceBuffer:
    """Raw device memory (e.g. an operator workspace). ``free()`` or ``with`` releases it; one that is
    garbage-collected unreleased is released by its finalizer."""

    def __init__(self, nbytes: int) -> None:
        self._lib = lib = initialised_library()
        self.nbytes = int(nbytes)
        p = ctypes.c_void_p()
        lib.aclrtMalloc(ctypes.byref(p), max(self.nbytes, MIN_ALLOCATION), abi.ACL_MEM_MALLOC_HUGE_FIRST)
        self.ptr: Optional[int] = p.value
        self._held = _Held(lib, p.value)
        self._finalizer = weakref.finalize(self, _release_unreferenced, self._held)
        self._finalizer.atexit = False        # at exit the process's device memory goes with the runtime

    def free(self) -> None:
        """Release the memory (and a tensor's descriptor); idempotent. Failures raise."""
        if self._finalizer.detach() is not None:
            self.ptr = None
            self.__dict__["handle"] = None
            if self._held is not None:       # None: a share of an output block (see _Share)
                self._held.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.free()


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


def descriptor(lib, shape: tuple, acl_dtype: int, ptr: int) -> int:
    """A new ND row-major ``aclTensor`` of ``shape`` and ``acl_dtype`` over device memory at ``ptr``."""
    dims, strides = _dims_and_strides(shape)
    return lib.aclCreateTensor(dims, len(shape), acl_dtype, strides, 0, abi.ACL_FORMAT_ND, dims, len(shape), ptr)


class _Share:
    """A tensor's hold on the :class:`~aclnn_py.runtime.pool.Lease` of the output block it lives in: in the
    place of a finalizer, ``detach()`` lets go of it once (the block is reused or released when the last
    tensor of the block lets go, or is collected)."""

    __slots__ = ("lease",)

    def __init__(self, lease) -> None:
        self.lease = lease

    def detach(self):
        lease, self.lease = self.lease, None
        return lease


_ACL_DTYPES: dict = {}   # numpy dtype -> aclDataType value


def _invalid(param: str, rule: str, value: Any) -> AclnnError:
    return AclnnError(ACLNN_ERR_PARAM_INVALID, "DeviceTensor", f"{param} must be {rule}; got {value!r}")


def checked_shape(shape: Any) -> tuple:
    """``shape`` as a tuple of non-negative ints; 161002 naming ``shape`` otherwise (e.g. ``(2.5,)``)."""
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise _invalid("shape", "a sequence of non-negative integers", shape) from None
    if any(d < 0 for d in dims):
        raise _invalid("shape", "a sequence of non-negative integers", shape)
    return dims


def checked_dtype(dtype: Any) -> tuple:
    """(numpy dtype, aclDataType value) of ``dtype``; 161002 naming ``dtype`` when CANN has no such type."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise _invalid("dtype", "a numpy / ml_dtypes dtype", dtype) from None
    acl_dtype = _ACL_DTYPES.get(dt)
    if acl_dtype is None:
        try:
            acl_dtype = _ACL_DTYPES.setdefault(dt, int(to_acl(dt)))
        except TypeError as e:
            raise AclnnError(ACLNN_ERR_PARAM_INVALID, "DeviceTensor", f"dtype: {e}") from None
    return dt, acl_dtype


def _host(x: Any) -> Any:
    return x.numpy() if isinstance(x, DeviceTensor) else x


class DeviceTensor(NDArrayOperatorsMixin, DeviceBuffer):
    """A device tensor owning its buffer and descriptor. Shapes in elements, dtype numpy/ml_dtypes.

    Create with :meth:`zeros` or :meth:`from_numpy` (on a World rank's device, or inside
    ``with aclnn_py.Device(i):``); read back with :meth:`numpy` or ``np.asarray``; release with
    :meth:`free` or a ``with`` block. Use on the device (thread context) it was created on.
    numpy interoperation works on host copies (module docstring); ``==`` is elementwise like numpy's,
    while hashing stays by identity.
    """

    __hash__ = object.__hash__     # the mixin's elementwise __eq__ would make it unhashable

    def __init__(self, shape: Sequence[int], dtype, *, zero: bool = True) -> None:
        shape = checked_shape(shape)
        dt, acl_dtype = checked_dtype(dtype)
        self.shape, self.dtype, self.acl_dtype = shape, dt, acl_dtype
        self.handle: Optional[int] = None
        super().__init__(math.prod(shape) * dt.itemsize)
        try:
            lib = self._lib
            if zero:
                alloc = max(self.nbytes, MIN_ALLOCATION)
                lib.aclrtMemset(self.ptr, alloc, 0, alloc)
            self.handle = self._held.handle = descriptor(lib, shape, acl_dtype, self.ptr)
        except BaseException:
            self.free()
            raise
        adopt_by_current_device(self)

    @classmethod
    def _in_block(cls, lib, lease, slot, handle: int) -> "DeviceTensor":
        """The output ``slot`` of ``lease``'s block, with its descriptor ``handle`` (see
        :mod:`aclnn_py.runtime.pool`); made without a finalizer, on the operator hot path."""
        t = cls.__new__(cls)
        t.__dict__.update(shape=slot.shape, dtype=slot.dtype, acl_dtype=slot.acl_dtype, handle=handle,
                          _lib=lib, nbytes=slot.nbytes, ptr=lease.block.ptr + slot.offset, _held=None,
                          _finalizer=_Share(lease))
        adopt_by_current_device(t)
        return t

    @classmethod
    def zeros(cls, shape: Sequence[int], dtype) -> "DeviceTensor":
        """A zero-filled tensor of ``shape`` (non-negative ints) and ``dtype`` (one CANN supports)."""
        return cls(shape, dtype, zero=True)

    @classmethod
    def from_numpy(cls, array: Any) -> "DeviceTensor":
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

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    def _require_live(self, what: str) -> None:
        if self.ptr is None:
            raise AclnnError(ACLNN_ERR_PARAM_NULLPTR, f"DeviceTensor.{what}",
                             f"{self!r} was freed (free(), or the end of its with / Device block); it holds no data")

    def copy_from(self, array: Any) -> None:
        """Overwrite the tensor with ``array`` (same shape; converted to the tensor's dtype)."""
        self._require_live("copy_from")
        host = c_order(np.asarray(array, dtype=self.dtype))
        if host.shape != self.shape:
            raise AclnnError(ACLNN_ERR_PARAM_INVALID, "DeviceTensor.copy_from",
                             f"array must have the tensor's shape {self.shape}; got shape {host.shape}")
        if self.nbytes:
            self._lib.aclrtMemcpy(self.ptr, self.nbytes, host.ctypes.data, self.nbytes,
                                         abi.ACL_MEMCPY_HOST_TO_DEVICE)

    def numpy(self) -> np.ndarray:
        """A host copy of the tensor (a new, writable numpy array)."""
        self._require_live("numpy")
        out = np.empty(self.shape, self.dtype)
        if self.nbytes:
            self._lib.aclrtMemcpy(out.ctypes.data, self.nbytes, self.ptr, self.nbytes,
                                         abi.ACL_MEMCPY_DEVICE_TO_HOST)
        return out

    # -- numpy protocols (host copies) ------------------------------------------------------------
    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("a DeviceTensor is in device memory: np.asarray / np.array always copy it to the host "
                             "(copy=False cannot be honoured)")
        host = self.numpy()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __array_ufunc__(self, ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """Compute on host copies; results are numpy arrays, except that DeviceTensors given as ``out=`` (or
        the first argument of ``ufunc.at``) are written back and returned."""
        outs = kwargs.get("out") or ()
        if outs:
            kwargs["out"] = tuple(_host(o) for o in outs)
        host_inputs = [_host(x) for x in inputs]
        result = getattr(ufunc, method)(*host_inputs, **kwargs)
        written = list(zip(outs, kwargs.get("out", ())))
        if method == "at" and isinstance(inputs[0], DeviceTensor):
            written.append((inputs[0], host_inputs[0]))
        for target, host in written:
            if isinstance(target, DeviceTensor):
                target.copy_from(host)
        if outs:
            return outs[0] if len(outs) == 1 else tuple(outs)
        return result

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object (a 0-d DeviceTensor)")
        return self.shape[0]

    def __iter__(self):
        return iter(self.numpy())

    def __getitem__(self, key: Any) -> Any:
        return self.numpy()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        host = self.numpy()
        host[key] = value
        self.copy_from(host)

    def __getattr__(self, name: str) -> Any:
        # only reached for names the class does not define: ndarray's data-reading methods, on a host copy
        if name in HOST_METHODS:
            return getattr(self.numpy(), name)
        raise AttributeError(f"'DeviceTensor' object has no attribute {name!r}")

    def __repr__(self) -> str:
        state = "freed" if self.__dict__.get("ptr") is None else f"ptr=0x{self.ptr:x}"
        return f"DeviceTensor(shape={self.__dict__.get('shape')}, dtype={self.__dict__.get('dtype')}, {state})"
