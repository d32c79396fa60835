"""ACL runtime state: process init, devices, contexts and streams."""
from __future__ import annotations

import atexit
import ctypes
import os
import threading
from typing import List, Optional

from ..errors import ACL_ERROR_REPEAT_INITIALIZE, AclError
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
