"""The two-phase aclnn call shared by every operator wrapper.

``{op}GetWorkspaceSize(params..., &ws, &executor)``, the workspace (:meth:`Stream.workspace`: an owned
stream keeps it between calls, any other stream gets a new one released after its next synchronize),
``{op}(ws_ptr, ws, executor, stream)``, then synchronize.

Hot path: the argument template of each operator (C parameter order, kinds, names) is built once. Two
opt-in caches, per thread: :class:`WorkspaceCache` keeps one workspace per stream across calls, streams
this package does not own included; :class:`ReuseExecutors` relaunches the executor of an identical call
(``aclSetAclOpExecutorRepeatable``) instead of running ``GetWorkspaceSize`` again.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Dict, Mapping, Optional, Tuple

from .. import catalog
from . import abi
from .device import Stream, initialised_library
from .tensor import DeviceBuffer

_TENSOR, _STR, _F32 = catalog.TENSOR, catalog.STR, catalog.F32


class _Template:
    """An operator's phase-1 parameter list, prepared once: the valid names, and a builder compiled for
    its parameter order and kinds (one expression per parameter, no per-call branching on kinds)."""

    __slots__ = ("params", "names", "build")

    def __init__(self, spec: catalog.OpDef) -> None:
        self.params: Tuple[Tuple[str, str], ...] = tuple((p.c_name, p.kind) for p in spec.params)
        self.names = frozenset(name for name, _ in self.params)
        exprs = []
        for i, (name, kind) in enumerate(self.params):
            v = f"g({name!r})"
            if kind == _TENSOR:
                exprs.append(f"(None if (v{i} := {v}) is None else v{i}.handle)")
            elif kind == _STR:
                exprs.append(f"(None if (v{i} := {v}) is None else v{i}.encode('utf-8'))")
            elif kind == _F32:
                exprs.append(f"float({v} or 0.0)")
            else:
                exprs.append(f"int({v} or 0)")
        src = "def build(values):\n    g = values.get\n    return [" + ", ".join(exprs) + "]\n"
        scope: Dict[str, Any] = {}
        exec(compile(src, f"<aclnn_py argument builder of {spec.c_name}>", "exec"), scope)
        self.build = scope["build"]


_templates: Dict[catalog.OpDef, _Template] = {}


def _template(spec: catalog.OpDef) -> _Template:
    t = _templates.get(spec)
    if t is None:
        t = _templates[spec] = _Template(spec)
    return t


def build_arguments(spec: catalog.OpDef, values: Mapping[str, Any]) -> list:
    """Positional C arguments of phase 1 from ``{C parameter name: value}``.

    Tensors are :class:`DeviceTensor` or ``None`` (NULL); strings are ``str`` or ``None``;
    int64/float parameters are Python numbers (absent ones are 0, as reserved parameters must be). Unknown names are an error (typo guard).
    """
    t = _template(spec)
    if not t.names.issuperset(values):
        unknown = set(values) - t.names
        raise TypeError(f"{spec.c_name}: unknown C parameters {sorted(unknown)}")
    return t.build(values)


# ---- opt-in workspace reuse ---------------------------------------------------------------------------
_local = threading.local()


class _ThreadScoped:
    """An opt-in cache active in the calling thread inside its ``with`` block (blocks nest); released on exit."""

    _slot = ""

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._outer = getattr(_local, self._slot, None)
        setattr(_local, self._slot, self)
        return self

    def __exit__(self, *exc) -> None:
        setattr(_local, self._slot, self._outer)
        self.release()


class WorkspaceCache(_ThreadScoped):
    """Opt-in: inside ``with WorkspaceCache():`` operator calls of this thread reuse one workspace per stream.

    Without it every call allocates its workspace (``aclrtMalloc``) and releases it after the stream's
    next synchronize, as the official demos do. Calls on one stream run in order, so a workspace that is
    large enough can serve the next call on the same stream; it grows when a call needs more. On exit
    the workspaces are released (deferred to their stream's next synchronize if work may still be
    queued, i.e. after a ``sync=False`` call). Not shared between threads: each rank thread opens its own.
    """

    _slot = "workspaces"

    def __init__(self) -> None:
        self._by_stream: Dict[Any, list] = {}   # stream handle -> [DeviceBuffer, Stream, pending]
        self._outer: Optional["WorkspaceCache"] = None

    def get(self, stream: Stream, nbytes: int, sync: bool) -> DeviceBuffer:
        entry = self._by_stream.get(stream.handle)
        if entry is not None and entry[0].nbytes >= nbytes and entry[0].ptr is not None:
            entry[2] = entry[2] or not sync
            return entry[0]
        buf = DeviceBuffer(nbytes)
        if entry is not None:             # the old one may still be in use by queued work
            stream.defer(entry[0])
        self._by_stream[stream.handle] = [buf, stream, not sync]
        return buf

    def release(self) -> None:
        entries, self._by_stream = list(self._by_stream.values()), {}
        for buf, stream, pending in entries:
            if pending:
                stream.defer(buf)
            else:
                buf.free()



def active_workspace_cache() -> Optional[WorkspaceCache]:
    return getattr(_local, "workspaces", None)


# ---- opt-in executor reuse ----------------------------------------------------------------------------
class _Reused:
    __slots__ = ("executor", "ws", "workspace", "stream", "pending")

    def __init__(self, executor: int, ws: int, workspace: Optional[DeviceBuffer], stream: Stream) -> None:
        self.executor, self.ws, self.workspace, self.stream, self.pending = executor, ws, workspace, stream, False


class ReuseExecutors(_ThreadScoped):
    """Opt-in: inside ``with ReuseExecutors():`` a call repeated with the very same device tensors (same
    objects, buffers and descriptors), outputs passed with ``out=``, the same attributes and the same stream
    reuses the executor of its first ``GetWorkspaceSize`` (made repeatable with
    ``aclSetAclOpExecutorRepeatable``) and that call's workspace: no ``GetWorkspaceSize``, no allocation.

    Why opt-in: CANN documents repeatable executors as unsupported for operators that copy host<->device
    or device<->device internally, and says nothing for the MC2 (communication) operators; whether a
    repeated launch of a MoE dispatch/combine executor is valid on a real NPU is not established. The
    simulator supports it. Validation still runs (memoised) on every call; a call with any host array
    (uploaded into a temporary) or without ``out=`` is never reused. Executors are destroyed (after their
    stream finished) when the block exits or when more than ``max_entries`` are held. One per thread.
    """

    _slot = "executors"

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._entries: Dict[tuple, _Reused] = {}
        self._outer: Optional["ReuseExecutors"] = None
        self._not_repeatable: set = set()

    def _drop(self, entry: _Reused) -> None:
        lib = initialised_library()
        try:
            if entry.pending:
                entry.stream.synchronize()
        finally:
            try:
                lib.aclDestroyAclOpExecutor(entry.executor)
            finally:
                if entry.workspace is not None:
                    entry.workspace.free()

    def release(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        errors = []
        for e in entries:
            try:
                self._drop(e)
            except Exception as err:  # keep releasing the others
                errors.append(err)
        if errors:
            raise errors[0]



def active_executor_reuse() -> Optional[ReuseExecutors]:
    return getattr(_local, "executors", None)


def reuse_key(op_name: str, values: Mapping[str, Any]) -> tuple:
    """The identity of a call for :class:`ReuseExecutors`: every name and value (tensors by object, held by
    the cache so they cannot be recycled) and each tensor's descriptor and buffer address (a freed or
    re-made tensor differs)."""
    tensors = [v for v in values.values() if hasattr(v, "handle") and hasattr(v, "ptr")]
    return (op_name, tuple(values), tuple(values.values()), tuple([(t.handle, t.ptr) for t in tensors]))


# ---- the call -------------------------------------------------------------------------------------------
def launch(op, args: list, stream: Stream, *, sync: bool = True, reuse: Optional[tuple] = None,
           hold: bool = False) -> None:
    """Both phases of bound operator ``op`` (:meth:`CannLibrary.op`) with its phase-1 arguments ``args`` in C
    order, on ``stream``; then synchronize unless ``sync`` is False. The workspace comes from the stream
    (:meth:`Stream.workspace`) or an active :class:`WorkspaceCache`.

    ``reuse``: a :func:`reuse_key` when the caller allows executor reuse for this call (see
    :class:`ReuseExecutors`; ignored outside such a block). ``hold``: call both phases holding the GIL
    (only where :meth:`Stream.may_hold_gil` allows it): ranks that are threads of one process then hand the
    GIL over once per call, at the synchronize, instead of at every C call.
    """
    reuser = getattr(_local, "executors", None) if reuse is not None else None
    if reuser is not None:
        if stream.handle is None or op.spec.c_name in reuser._not_repeatable:
            reuser = None
        else:
            entry = reuser._entries.get((reuse, stream.handle))
            if entry is not None:
                _launch_reused(reuser, (reuse, stream.handle), entry, op, stream, sync)
                return
    get_workspace_size, execute = op.held if hold else (op.get_workspace_size, op.execute)
    ws = ctypes.c_uint64(0)
    executor = abi.aclOpExecutorPtr()
    get_workspace_size(*args, ctypes.byref(ws), ctypes.byref(executor))
    if reuser is not None and _keep_repeatable(reuser, reuse, op, executor, ws.value, stream):
        key = (reuse, stream.handle)
        _launch_reused(reuser, key, reuser._entries[key], op, stream, sync)
        return
    cache = getattr(_local, "workspaces", None)
    launched = False
    try:
        workspace = None
        if ws.value > 0:
            if cache is not None and stream.handle is not None:
                workspace = cache.get(stream, ws.value, sync)
            else:
                workspace = stream.workspace(ws.value)
        launched = True  # phase 2 takes ownership of the executor, even when it fails
        execute(workspace.ptr if workspace is not None else None, ws.value, executor, stream.handle)
    except BaseException:
        if not launched:
            _discard_executor(initialised_library(), executor)
        if sync:
            try:
                stream.synchronize()
            except Exception:
                pass
        raise
    if sync:
        stream.synchronize()


def _keep_repeatable(reuser: "ReuseExecutors", reuse: tuple, op, executor, ws: int, stream: Stream) -> bool:
    """Make the executor of a first call repeatable and keep it (with its own workspace) in ``reuser``;
    False when the install refuses (the call then runs the normal way)."""
    lib = initialised_library()
    try:
        lib.aclSetAclOpExecutorRepeatable(executor)
    except Exception:
        reuser._not_repeatable.add(op.spec.c_name)
        return False
    try:
        entry = _Reused(executor.value, ws, DeviceBuffer(ws) if ws > 0 else None, stream)
    except BaseException:
        _discard_executor(lib, executor)
        raise
    if len(reuser._entries) >= reuser.max_entries:
        reuser._drop(reuser._entries.pop(next(iter(reuser._entries))))
    reuser._entries[(reuse, stream.handle)] = entry
    return True


def _launch_reused(reuser: ReuseExecutors, key: tuple, entry: _Reused, op, stream: Stream, sync: bool) -> None:
    """Phase 2 of a repeatable executor (it stays alive: a failure drops it from the cache)."""
    try:
        op.execute(entry.workspace.ptr if entry.workspace is not None else None, entry.ws, entry.executor,
                   stream.handle)
        entry.pending = not sync
        if sync:
            stream.synchronize()
    except BaseException:
        reuser._entries.pop(key, None)
        try:
            reuser._drop(entry)
        except Exception:
            pass
        raise


def _discard_executor(lib, executor) -> None:
    try:
        lib.aclDestroyAclOpExecutor(executor)
    except Exception:
        pass


__all__ = ["build_arguments", "launch", "reuse_key", "WorkspaceCache", "active_workspace_cache",
           "ReuseExecutors", "active_executor_reuse"]
