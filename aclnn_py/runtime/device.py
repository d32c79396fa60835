"""ACL runtime state: process init, devices, contexts and streams."""
from __future__ import annotations

import atexit
import ctypes
import threading
import weakref
from typing import Optional

from ..errors import ACL_ERROR_REPEAT_INITIALIZE, AclError
from . import abi
from .library import CannLibrary, get_library, loaded_library
from .pool import OutputPool, pool_limit_bytes
from .environ import getenv

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


_lib_ready: Optional[CannLibrary] = None   # the library once aclInit has run


def initialised_library() -> CannLibrary:
    """:func:`acl_init` without its lock once the runtime is initialised (the per-tensor hot path)."""
    global _lib_ready
    lib = _lib_ready
    if lib is None or lib is not loaded_library():
        lib = _lib_ready = acl_init()
    return lib


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


HOLD_GIL_ENV = "ACLNN_PY_HOLD_GIL"     # 0: every C call releases the GIL (see Stream.may_hold_gil)


def sync_timeout_ms() -> int:
    """Stream synchronize timeout (ms) from ``ACLNN_PY_SYNC_TIMEOUT_MS``; default 300000, -1 = forever."""
    return int(getenv("ACLNN_PY_SYNC_TIMEOUT_MS", "300000"))


def _quietly(fn, *args) -> None:
    """Run a release step from a finalizer: the owner is gone, nobody can take an error any more."""
    try:
        fn(*args)
    except Exception:
        pass


class _StreamHeld:
    """What a :class:`Stream` releases: the temporaries queued work still uses, its cached workspace and idle
    output blocks, then the stream itself."""

    __slots__ = ("lib", "handle", "owned", "pending", "pool", "workspace", "settled", "queued")

    def __init__(self, lib, handle: Optional[int], owned: bool) -> None:
        self.lib, self.handle, self.owned, self.pending = lib, handle, owned, []
        self.pool: Optional[OutputPool] = OutputPool() if owned else None
        self.workspace = None
        self.settled: Optional[set] = set() if owned else None
        self.queued = False

    def release_pending(self) -> None:
        pending, self.pending = self.pending, []
        for obj in pending:
            obj.free()

    def _free_workspace(self) -> None:
        workspace, self.workspace = self.workspace, None
        if workspace is not None:
            workspace.free()

    def release_cached(self) -> None:
        try:
            self._free_workspace()
        finally:
            if self.pool is not None:
                self.pool.release_idle()

    def release(self) -> None:
        try:
            self.release_pending()
            self._free_workspace()
        finally:
            try:
                if self.pool is not None:
                    self.pool.close()
            finally:
                handle, self.handle = self.handle, None
                if self.owned and handle is not None:
                    self.lib.aclrtDestroyStream(handle)

    def release_quietly(self) -> None:
        _quietly(self.release)


class Stream:
    """An ``aclrtStream`` plus the temporaries that must outlive the work queued on it.

    ``Stream.default()`` wraps the NULL (default) stream of the calling thread's device. An owned
    stream is destroyed by :meth:`destroy`, or by its finalizer when it is garbage-collected.

    An owned stream keeps what its operator calls can reuse, since its work runs in order: the
    workspace of the last call (grown when a call needs more) and the output blocks the caller has
    dropped (:mod:`aclnn_py.runtime.pool`). :meth:`release_cached` frees them; :meth:`destroy` does too.
    """

    def __init__(self, handle: Optional[int] = None, *, owned: bool = True) -> None:
        self._lib = acl_init()
        if handle is None and owned:
            h = abi.aclrtStream()
            self._lib.aclrtCreateStream(ctypes.byref(h))
            handle = h.value
        self.handle = handle
        self._held = _StreamHeld(self._lib, handle, owned and handle is not None)
        self._finalizer = weakref.finalize(self, self._held.release_quietly)
        self._finalizer.atexit = False

    @classmethod
    def default(cls) -> "Stream":
        return cls(None, owned=False)

    def defer(self, *objects) -> None:
        """Keep ``objects`` alive until the next :meth:`synchronize`, then ``free()`` them."""
        self._held.pending.extend(o for o in objects if o is not None)

    @property
    def pool(self) -> Optional[OutputPool]:
        """The stream's idle output blocks (``None``: a stream this object does not own keeps none)."""
        return self._held.pool

    def workspace(self, nbytes: int):
        """A device buffer of at least ``nbytes`` for the next operator on this stream: the stream's cached
        one when large enough, else a new one (the old one is released after the next synchronize: queued
        work may still use it). A stream this object does not own, or any stream with ``ACLNN_PY_POOL_MB=0``,
        caches nothing: each call gets a new buffer, released after the next synchronize."""
        from .tensor import DeviceBuffer
        held = self._held
        if held.pool is None or not pool_limit_bytes():
            buf = DeviceBuffer(nbytes)
            self.defer(buf)
            return buf
        ws = held.workspace
        if ws is not None and ws.nbytes >= nbytes:
            return ws
        buf = DeviceBuffer(nbytes)
        if ws is not None:
            self.defer(ws)
        held.workspace = buf
        return buf

    def release_cached(self) -> None:
        """Free the cached workspace and the idle output blocks (call with the stream's context current,
        once its work is done; e.g. after :meth:`synchronize`)."""
        self._held.release_cached()

    def may_hold_gil(self, key) -> bool:
        """Whether a call of signature ``key`` may run its quick C functions (queueing, ``GetWorkspaceSize``,
        phase 2) holding the GIL on this stream: the stream is owned, no call left work queued on it
        unsynchronised (a full task queue would block), a call of that signature has completed on it
        before (the first one may set up communicator resources with the peers) and
        ``ACLNN_PY_HOLD_GIL`` is not 0."""
        held = self._held
        return (held.settled is not None and not held.queued and key in held.settled
                and getenv(HOLD_GIL_ENV, "1").strip() != "0")

    def completed(self, key, synchronised: bool) -> None:
        """Record that a call of signature ``key`` returned (``synchronised``: its work finished)."""
        held = self._held
        if held.settled is not None:
            if synchronised:
                held.settled.add(key)
            else:
                held.queued = True

    def synchronize(self, timeout_ms: Optional[int] = None) -> None:
        """Wait for the queued work; raises :class:`AclError` (e.g. 507046 on timeout)."""
        t = sync_timeout_ms() if timeout_ms is None else timeout_ms
        try:
            self._lib.aclrtSynchronizeStreamWithTimeout(self.handle, t)
            self._held.queued = False
        finally:
            self._held.release_pending()

    def destroy(self) -> None:
        """Release pending temporaries and destroy the stream (idempotent)."""
        if self._finalizer.detach() is not None:
            self.handle = None
            self._held.release()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()


class _ContextHeld:
    __slots__ = ("lib", "handle", "device_id")

    def __init__(self, lib, handle: int, device_id: int) -> None:
        self.lib, self.handle, self.device_id = lib, handle, device_id

    def release(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            self.lib.aclrtDestroyContext(handle)
            self.lib.aclrtResetDevice(self.device_id)

    def release_quietly(self) -> None:
        _quietly(self.release)


class Context:
    """An explicit ``aclrtContext`` on one device, bindable to any thread; destroyed by :meth:`destroy`, or
    by its finalizer when it is garbage-collected."""

    def __init__(self, device_id: int) -> None:
        self._lib = acl_init()
        self.device_id = device_id
        self._lib.aclrtSetDevice(device_id)
        h = abi.aclrtContext()
        self._lib.aclrtCreateContext(ctypes.byref(h), device_id)
        self.handle = h.value
        self._held = _ContextHeld(self._lib, h.value, device_id)
        self._finalizer = weakref.finalize(self, self._held.release_quietly)
        self._finalizer.atexit = False

    def bind(self) -> None:
        """Make this the calling thread's current context (and device)."""
        self._lib.aclrtSetCurrentContext(self.handle)

    def destroy(self) -> None:
        """Destroy the context and reset the device (idempotent)."""
        if self._finalizer.detach() is not None:
            self.handle = None
            self._held.release()


# ---- owners of the tensors made while they are open (aclnn_py.Device) -----------------------------------------
_local = threading.local()
_open_owners = 0          # owners open in any thread (lets the per-tensor hot path skip the lookup)
_open_lock = threading.Lock()


def _owner_stack() -> list:
    stack = getattr(_local, "owners", None)
    if stack is None:
        stack = _local.owners = []
    return stack


def open_owner(owner) -> None:
    """Make ``owner`` (anything with an ``adopt(tensor)`` method) the calling thread's innermost owner of the
    device tensors it creates from now on."""
    global _open_owners
    _owner_stack().append(owner)
    with _open_lock:
        _open_owners += 1


def close_owner(owner) -> Optional[object]:
    """Stop ``owner`` adopting tensors; returns the calling thread's innermost owner left open (or None)."""
    global _open_owners
    stack = _owner_stack()
    if owner in stack:
        stack.remove(owner)
        with _open_lock:
            _open_owners -= 1
    return stack[-1] if stack else None


def adopt_by_current_device(tensor) -> None:
    """Register ``tensor`` with the calling thread's innermost open owner (it frees the tensor when it closes)."""
    if _open_owners:
        stack = _owner_stack()
        if stack:
            stack[-1].adopt(tensor)
