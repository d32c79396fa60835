"""ACL runtime state: process init, devices, contexts and streams."""
from __future__ import annotations

import atexit
import ctypes
import operator
import os
import threading
import weakref
from typing import List, Optional

from ..backend import BackendUnavailableError, device_backend_problem, requested_backend
from ..errors import ACL_ERROR_REPEAT_INITIALIZE, ACLNN_ERR_PARAM_INVALID, AclError, AclnnError
from . import abi
from .library import CannLibrary, get_library

_init_lock = threading.Lock()
_initialised = False


def acl_init() -> CannLibrary:
    """``aclInit(NULL)`` once per process (an earlier init by torch_npu is accepted); returns the library."""
    global _initialised
    lib = get_library()
    with _init_lock:
        if not _initialised:
            try:
                lib.aclInit(None)
                atexit.register(_finalize)
            except AclError as e:
                if e.status != ACL_ERROR_REPEAT_INITIALIZE:
                    raise
            _initialised = True
    return lib


def _finalize() -> None:
    try:
        get_library().aclFinalize()
    except Exception:  # process exit: nothing useful left to report
        pass


def device_count() -> int:
    """Number of devices the runtime reports."""
    lib = acl_init()
    n = ctypes.c_uint32()
    lib.aclrtGetDeviceCount(ctypes.byref(n))
    return n.value


def set_device(device_id: int) -> None:
    """Bind ``device_id`` (and its default context) to the calling thread."""
    acl_init().aclrtSetDevice(device_id)


def current_device() -> Optional[int]:
    """The calling thread's device, or ``None`` if it has none."""
    lib = acl_init()
    d = ctypes.c_int32()
    try:
        lib.aclrtGetDevice(ctypes.byref(d))
    except AclError:
        return None
    return d.value


def sync_timeout_ms() -> int:
    """Stream synchronize timeout (ms) from ``ACLNN_PY_SYNC_TIMEOUT_MS``; default 300000, -1 = forever."""
    return int(os.environ.get("ACLNN_PY_SYNC_TIMEOUT_MS", "300000"))


class Stream:
    """An ``aclrtStream`` plus the temporaries that must outlive the work queued on it.

    ``Stream.default()`` wraps the NULL (default) stream of the calling thread's device.
    """

    def __init__(self, handle: Optional[int] = None, *, owned: bool = True) -> None:
        self._lib = acl_init()
        if handle is None and owned:
            h = abi.aclrtStream()
            self._lib.aclrtCreateStream(ctypes.byref(h))
            handle = h.value
        self.handle = handle
        self._owned = owned and handle is not None
        self._pending: List[object] = []

    @classmethod
    def default(cls) -> "Stream":
        return cls(None, owned=False)

    @property
    def as_parameter(self) -> Optional[int]:
        return self.handle

    def defer(self, *objects) -> None:
        """Keep ``objects`` alive until the next :meth:`synchronize`, then ``free()`` them."""
        self._pending.extend(o for o in objects if o is not None)

    def synchronize(self, timeout_ms: Optional[int] = None) -> None:
        """Wait for the queued work; raises :class:`AclError` (e.g. 507046 on timeout)."""
        t = sync_timeout_ms() if timeout_ms is None else timeout_ms
        try:
            self._lib.aclrtSynchronizeStreamWithTimeout(self.handle, t)
        finally:
            self._release_pending()

    def _release_pending(self) -> None:
        pending, self._pending = self._pending, []
        for obj in pending:
            obj.free()

    def destroy(self) -> None:
        """Release pending temporaries and destroy the stream (idempotent)."""
        self._release_pending()
        if self._owned and self.handle is not None:
            handle, self.handle = self.handle, None
            self._lib.aclrtDestroyStream(handle)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()


class Context:
    """An explicit ``aclrtContext`` on one device, bindable to any thread."""

    def __init__(self, device_id: int) -> None:
        self._lib = acl_init()
        self.device_id = device_id
        self._lib.aclrtSetDevice(device_id)
        h = abi.aclrtContext()
        self._lib.aclrtCreateContext(ctypes.byref(h), device_id)
        self.handle = h.value

    def bind(self) -> None:
        """Make this the calling thread's current context (and device)."""
        self._lib.aclrtSetCurrentContext(self.handle)

    def destroy(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            self._lib.aclrtDestroyContext(handle)
            self._lib.aclrtResetDevice(self.device_id)


# ---- aclnn_py.Device: one device, context and stream outside a World --------------------------------------
_local = threading.local()
_open_devices = 0          # Devices not yet closed, in any thread (lets the per-tensor hot path skip the lookup)
_open_lock = threading.Lock()


def _device_stack() -> list:
    stack = getattr(_local, "devices", None)
    if stack is None:
        stack = _local.devices = []
    return stack


def adopt_by_current_device(tensor) -> None:
    """Register ``tensor`` with the calling thread's innermost open :class:`Device` (freed when it closes)."""
    if _open_devices:
        stack = _device_stack()
        if stack:
            stack[-1]._adopt(tensor)


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
        global _open_devices
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
        self._stack = _device_stack()
        self._stack.append(self)
        self.closed = False
        with _open_lock:
            _open_devices += 1

    def _adopt(self, tensor) -> None:
        self._owned[id(tensor)] = weakref.ref(tensor)

    def synchronize(self) -> None:
        """Wait for the work queued on :attr:`stream`."""
        self.stream.synchronize()

    def close(self) -> None:
        """Synchronize, free the block's remaining tensors, destroy the stream and the context (idempotent).
        The first failure is raised after everything was released."""
        global _open_devices
        if self.closed:
            return
        self.closed = True
        with _open_lock:
            _open_devices -= 1
        failures: List[BaseException] = []
        steps = [self._context.bind, self.stream.synchronize, self._free_owned, self.stream.destroy,
                 self._context.destroy]
        for step in steps:
            try:
                step()
            except Exception as e:
                failures.append(e)
        if self in self._stack:
            self._stack.remove(self)
        if self._stack:                       # the enclosing Device becomes current again
            self._stack[-1]._context.bind()
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
