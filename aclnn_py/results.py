"""Named results of the MoE operators (same field order as torch_npu's tuples), and :class:`Tensor`, the one
interface every op result satisfies on both backends."""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Protocol, Tuple, runtime_checkable

import numpy as np


@runtime_checkable
class Tensor(Protocol):
    """What an operator returns per output tensor, on either backend.

    The device backend returns :class:`aclnn_py.DeviceTensor` (device memory), the reference backend a
    ``numpy.ndarray`` subclass (host memory); per-rank code that uses only this interface runs unchanged
    on both and gets the same values:

    * ``shape`` (tuple of ints), ``dtype`` (numpy / ml_dtypes dtype), ``ndim``, ``size``, ``nbytes``, ``len(t)``;
    * ``t.numpy()`` -- a new host ``numpy.ndarray``; ``np.asarray(t)`` / ``np.asarray(t, dtype)`` -- the same data;
    * arithmetic, comparisons, numpy ufuncs and functions (``t * 2``, ``np.exp(t)``, ``np.concatenate``),
      indexing (``t[0]``, ``t[:n]``) and ndarray's data-reading methods (``t.astype``, ``t.sum()``,
      ``t.reshape``, ``t.tolist()``) -- return plain host ``numpy.ndarray`` s (on the device backend
      computed from a host copy);
    * in place: ``t[i] = v``, ``t *= 2``, ``np.add(a, b, out=t)`` change the tensor itself (on the device
      backend: a host round trip, then an upload);
    * ``t.free()`` releases device memory (a no-op for host results); ``with t:`` frees at the end;
    * it can be passed back to the ops (as an input, or in ``out=``).
    """

    @property
    def shape(self) -> Tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def ndim(self) -> int: ...

    @property
    def size(self) -> int: ...

    def numpy(self) -> Any: ...

    def free(self) -> None: ...

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __getitem__(self, key: Any) -> Any: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...


class DispatchOutputs(NamedTuple):
    """DispatchV3 outputs (each a :class:`Tensor`); shapes in :func:`aclnn_py.layout.dispatch_output_specs`."""

    expand_x: Any
    dynamic_scales: Any
    assist_info_for_combine: Any
    expert_token_nums: Any
    ep_recv_counts: Any
    tp_recv_counts: Any
    expand_scales: Any


class CombineAddRmsNormOutputs(NamedTuple):
    """CombineAddRmsNormV2 outputs (each a :class:`Tensor`): y (Bs,1,H) bf16, rstd (Bs,1,1) fp32, x (Bs,1,H) bf16."""

    y: Any
    rstd: Any
    x: Any


DispatchV4Outputs = NamedTuple("DispatchV4Outputs", [(name, Any) for name in DispatchOutputs._fields]
                               + [("performance_info", Any)])
DispatchV4Outputs.__doc__ = """DispatchV4 outputs: DispatchV3's seven, then ``performance_info`` (ep,) int64 -- per EP
peer, the longest this rank waited for that peer's data, in microseconds (low 32 bits; merged with the tensor's
old values by max). Wait times are hardware measurements: the reference backend reports the tensor unchanged."""


class CombineV4Outputs(NamedTuple):
    """CombineV4 outputs: ``x`` (Bs, H) as CombineV3's, and ``performance_info`` (ep,) int64 (see
    :class:`DispatchV4Outputs`)."""

    x: Any
    performance_info: Any


# ---- reference-backend results ------------------------------------------------------------------------------
# ndarray's data-reading methods, which a DeviceTensor serves from a host copy (and a HostTensor as plain data)
HOST_METHODS = frozenset((
    "T", "all", "any", "argmax", "argmin", "argsort", "astype", "clip", "copy", "cumprod", "cumsum", "diagonal",
    "dot", "flatten", "imag", "item", "max", "mean", "min", "nonzero", "prod", "ravel", "real", "repeat",
    "reshape", "round", "searchsorted", "squeeze", "std", "sum", "swapaxes", "take", "tobytes", "tolist",
    "trace", "transpose", "var", "view"))


def _base(a: np.ndarray) -> np.ndarray:
    """``a`` as a plain ndarray view (ndarray's own view: HostTensor.view returns plain data too)."""
    return np.ndarray.view(a, np.ndarray)


class HostTensor(np.ndarray):
    """A reference-backend result: a numpy array with the DeviceTensor methods, satisfying
    :class:`aclnn_py.Tensor` like a device result does.

    As with a DeviceTensor, what you compute from it -- arithmetic, ufuncs, indexing -- is a plain
    ``numpy.ndarray`` (host data, no ``.numpy()`` / ``.free()``), so per-rank code behaves the same on
    both backends. ``free()`` and the ``with`` block are no-ops (numpy memory is garbage-collected).
    """

    def numpy(self) -> np.ndarray:
        """A host copy (a new, writable plain ndarray)."""
        return np.array(_base(self), copy=True)

    def free(self) -> None:
        """Nothing to release (kept for the :class:`aclnn_py.Tensor` interface)."""

    def __enter__(self) -> "HostTensor":
        return self

    def __exit__(self, *exc) -> None:
        self.free()

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # results of ufuncs and arithmetic are plain host arrays (or scalars), as on the device backend
        array = _base(array)
        return array[()] if return_scalar else array

    def __getitem__(self, key):
        return _base(self)[key]

    @property
    def handle(self):  # lets reference results be passed back in like device tensors
        return None


def _plain(name: str) -> Any:
    """ndarray's ``name`` (a method or a property), giving a plain ndarray instead of a HostTensor."""
    attr = getattr(np.ndarray, name)
    if callable(attr):
        def method(self, *args, **kwargs):
            return attr(_base(self), *args, **kwargs)
        method.__name__ = name
        method.__doc__ = f"ndarray.{name}, returning plain host data (as on a DeviceTensor)."
        return method
    return property(lambda self: attr.__get__(_base(self)), doc=f"ndarray.{name} (plain host data)")


for _name in HOST_METHODS:          # the data-reading methods DeviceTensor serves from a host copy
    setattr(HostTensor, _name, _plain(_name))
del _name


def as_host_tensor(a: np.ndarray) -> HostTensor:
    """``a`` viewed as a :class:`HostTensor` (no copy)."""
    return np.asarray(a).view(HostTensor)
