"""Named results of the MoE operators (same field order as torch_npu's tuples), and :class:`Tensor`, the one
interface every op result satisfies on both backends."""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Protocol, Tuple, runtime_checkable


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
