"""What every per-rank operator wrapper shares: backend choice, streams, temporary device tensors."""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

from ..orchestration.backend import resolve_backend
from ..errors import ACLNN_ERR_PARAM_INVALID, AclnnError
from ..orchestration.world import RankContext, current_rank


def active_backend() -> str:
    """The backend of the calling rank's World, else the process-wide choice."""
    ctx = current_rank()
    return ctx.backend if ctx is not None else resolve_backend()


def require_rank(op: str) -> RankContext:
    """Per-rank collective calls on the reference backend must run inside :meth:`World.run`."""
    ctx = current_rank()
    if ctx is None:
        raise AclnnError(ACLNN_ERR_PARAM_INVALID, op,
                         "on the reference backend a per-rank collective call must run inside "
                         "aclnn_py.World.run (one thread per rank); for whole-world calls use aclnn_py.reference")
    return ctx


def resolve_stream(stream: Any):
    """``stream`` if given, else the rank's stream inside a World, else the default stream."""
    Stream = _runtime().Stream
    if stream is not None:
        return stream if isinstance(stream, Stream) else Stream(int(stream), owned=False)
    ctx = current_rank()
    if ctx is not None and ctx.stream is not None:
        return ctx.stream
    return Stream.default()


def host(x: Any) -> Any:
    """A host view of an argument: numpy stays numpy, a DeviceTensor is downloaded, None stays None."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if hasattr(x, "numpy") and hasattr(x, "handle"):
        return x.numpy()
    return np.asarray(x)


class _Runtime:
    """The runtime classes, imported on first device use (importing aclnn_py never requires CANN)."""

    def __init__(self) -> None:
        from ..runtime.device import Stream
        from ..runtime.tensor import DeviceTensor
        from ..runtime.twophase import active_executor_reuse, run_two_phase
        self.Stream, self.DeviceTensor = Stream, DeviceTensor
        self.run_two_phase, self.active_executor_reuse = run_two_phase, active_executor_reuse


_rt: Optional[_Runtime] = None


def _runtime() -> _Runtime:
    global _rt
    if _rt is None:
        _rt = _Runtime()
    return _rt


class Temporaries:
    """Device copies made for one call; freed on exit, or deferred to the stream when ``sync=False``."""

    def __init__(self, stream, sync: bool) -> None:
        self.stream, self.sync = stream, sync
        self.items: List[Any] = []

    def device(self, x: Any, dtype=None):
        """``x`` as a DeviceTensor (uploaded if it is host data); ``None`` stays ``None``."""
        DeviceTensor = _runtime().DeviceTensor
        if x is None or isinstance(x, DeviceTensor):
            return x
        t = DeviceTensor.from_numpy(np.asarray(x, dtype=dtype))
        self.items.append(t)
        return t

    def zeros(self, spec) -> Any:
        t = _runtime().DeviceTensor.zeros(spec.shape, spec.dtype)
        self.items.append(t)
        return t

    def keep(self, t) -> Any:
        """Hand ``t`` to the caller: it is no longer released on exit."""
        self.items = [item for item in self.items if item is not t]   # by identity: == is elementwise
        return t

    def __enter__(self) -> "Temporaries":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        items, self.items = self.items, []
        if self.sync or exc_type is not None:
            for t in items:
                t.free()
        else:
            self.stream.defer(*items)
