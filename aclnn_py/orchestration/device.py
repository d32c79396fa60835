"""``aclnn_py.Device``: one device, its context and a stream, for device tensors outside a World."""
from __future__ import annotations

import operator
import weakref
from typing import List

from ..errors import ACLNN_ERR_PARAM_INVALID, AclnnError, BackendUnavailableError
from ..runtime.device import Context, Stream, close_owner, open_owner
from .backend import device_backend_problem, requested_backend


def _checked_index(index) -> int:
    try:
        value = operator.index(index)
    except TypeError:
        value = -1
    if value < 0:
        raise AclnnError(ACLNN_ERR_PARAM_INVALID, "aclnn_py.Device",
                         f"index must be a non-negative integer device id; got {index!r}")
    return value


class Device:
    """Device ``index`` with its own context and stream, for device tensors outside a :class:`~aclnn_py.World`.

    ``with aclnn_py.Device(0) as dev:`` sets the device and creates a context (current on the calling
    thread while the block runs) and a stream (``dev.stream``; pass it as ``stream=``); device tensors
    made in the block live on that device. On exit the stream is synchronized, every DeviceTensor created
    in the block that is still alive is freed, and the stream and context are destroyed, so nothing
    leaks. Works on real CANN and on the aclnn_py simulator; raises
    :class:`~aclnn_py.BackendUnavailableError` on the reference backend or when no CANN is found.
    """

    def __init__(self, index: int = 0) -> None:
        self.index = index = _checked_index(index)
        if requested_backend() == "reference":
            raise BackendUnavailableError(
                "aclnn_py.Device needs the device backend, but ACLNN_PY_BACKEND=reference selects the numpy "
                "reference, which has no devices; unset ACLNN_PY_BACKEND (or set it to auto or device)")
        problem = device_backend_problem(index + 1)
        if problem is not None:
            raise BackendUnavailableError(f"aclnn_py.Device({index}) needs CANN or the aclnn_py simulator with device "
                                          f"{index}, but {problem[0]}; {problem[1]}")
        self._owned: dict = {}      # id -> weak reference of the DeviceTensors made in this block
        self._context = Context(index)
        try:
            self._context.bind()
            self.stream = Stream()
        except BaseException:
            self._context.destroy()
            raise
        self.closed = False
        open_owner(self)

    def adopt(self, tensor) -> None:
        """Free ``tensor`` when this Device closes (DeviceTensors made inside the block register themselves)."""
        self._owned[id(tensor)] = weakref.ref(tensor)

    def synchronize(self) -> None:
        """Wait for the work queued on :attr:`stream`."""
        self.stream.synchronize()

    def close(self) -> None:
        """Synchronize, free the block's remaining tensors, destroy the stream and the context (idempotent).
        The first failure is raised after everything was released."""
        if self.closed:
            return
        self.closed = True
        failures: List[BaseException] = []
        steps = [self._context.bind, self.stream.synchronize, self._free_owned, self.stream.destroy,
                 self._context.destroy]
        for step in steps:
            try:
                step()
            except Exception as e:
                failures.append(e)
        enclosing = close_owner(self)
        if isinstance(enclosing, Device):      # the enclosing Device becomes current again
            enclosing._context.bind()
        if failures:
            raise failures[0]

    def _free_owned(self) -> None:
        owned, self._owned = self._owned, {}
        for ref in owned.values():
            t = ref()
            if t is not None:
                t.free()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Device({self.index}{', closed' if self.closed else ''})"
