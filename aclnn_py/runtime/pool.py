"""Operator outputs in one allocation per call, reused on their stream once the caller drops them.

A call's fresh outputs (dispatch has seven) are laid out in one ``aclrtMalloc`` block with one
``aclTensor`` descriptor each (:class:`BlockLayout`, worked out once per call signature). The
:class:`DeviceTensor` s handed to the caller share a :class:`Lease` on the block; when the last of them is
freed or garbage-collected the block goes back to its stream's :class:`OutputPool` (or is released, outside
a pool), and the next call with the same layout on that stream takes it again: no allocation, no
descriptor, only the zero-fill (``aclrtMemsetAsync`` on the call's stream, ordered before the operator,
as a fresh zero-filled output would be). Calls on one stream run in order, so a block dropped by the
caller while its operator is still queued is only rewritten after it finished.

A pool keeps at most :data:`SPARES_PER_LAYOUT` idle blocks per layout and :data:`POOL_ENV` MiB in total
(default :data:`DEFAULT_POOL_MB`); ``Stream.release_cached()`` (or ``World.release_cached()``) frees the
idle ones, and destroying the stream frees them all. ``ACLNN_PY_POOL_MB=0`` turns reuse off: every call
allocates its outputs and its workspace, every drop releases, nothing is kept between calls.
"""
from __future__ import annotations

import ctypes
import math
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import abi
from .environ import getenv

ALIGN = 512                  # bytes: each output of a block starts on this boundary
SPARES_PER_LAYOUT = 2        # idle blocks a pool keeps per layout
POOL_ENV = "ACLNN_PY_POOL_MB"
DEFAULT_POOL_MB = 4096       # idle bytes a pool may keep, MiB


def pool_limit_bytes() -> int:
    """The idle bytes a pool may keep (``ACLNN_PY_POOL_MB``; 0 turns reuse off)."""
    raw = getenv(POOL_ENV, "").strip()
    try:
        mb = int(raw) if raw else DEFAULT_POOL_MB
    except ValueError:
        raise ValueError(f"{POOL_ENV} must be a whole number of MiB (0 turns output reuse off); got {raw!r}") from None
    return max(mb, 0) << 20


class Slot(NamedTuple):
    """One output inside a block: shape (elements), numpy dtype, aclDataType, byte offset and size."""

    shape: tuple
    dtype: np.dtype
    acl_dtype: int
    offset: int
    nbytes: int


class BlockLayout(NamedTuple):
    """Where each output of a call sits in its block (hashable: the pool's key)."""

    slots: Tuple[Slot, ...]
    nbytes: int

    @classmethod
    def of(cls, specs: Sequence[Tuple[tuple, Any, int]]) -> "BlockLayout":
        """The layout of outputs ``specs`` ((shape, numpy dtype, aclDataType) each), in that order."""
        slots, offset = [], 0
        for shape, dtype, acl_dtype in specs:
            dt = np.dtype(dtype)
            nbytes = math.prod(shape) * dt.itemsize
            slots.append(Slot(tuple(shape), dt, acl_dtype, offset, nbytes))
            offset += -(-max(nbytes, 1) // ALIGN) * ALIGN
        return cls(tuple(slots), max(offset, ALIGN))


class Block:
    """One allocation and its descriptors, made on the calling thread's current context."""

    __slots__ = ("lib", "layout", "ptr", "handles")

    def __init__(self, lib, layout: BlockLayout) -> None:
        from .tensor import descriptor
        self.lib, self.layout, self.handles = lib, layout, []
        p = ctypes.c_void_p()
        lib.aclrtMalloc(ctypes.byref(p), layout.nbytes, abi.ACL_MEM_MALLOC_HUGE_FIRST)
        self.ptr: Optional[int] = p.value
        try:
            for s in layout.slots:
                self.handles.append(descriptor(lib, s.shape, s.acl_dtype, self.ptr + s.offset))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Destroy the descriptors, then free the memory (idempotent); the first failure raises at the end."""
        handles, ptr, self.handles, self.ptr = self.handles, self.ptr, [], None
        try:
            for h in handles:
                self.lib.aclDestroyTensor(h)
        finally:
            if ptr is not None:
                self.lib.aclrtFree(ptr)


class Lease:
    """Shared by the tensors made from one block; when the last of them lets go, the block goes back to
    ``pool`` (or is released when there is none)."""

    __slots__ = ("pool", "block")

    def __init__(self, pool: Optional["OutputPool"], block: Block) -> None:
        self.pool, self.block = pool, block

    def __del__(self) -> None:
        try:
            if self.pool is not None and self.pool.give_back(self.block):
                return
        except Exception:
            pass
        try:
            self.block.release()
        except Exception:      # a finalizer: the caller has moved on, nobody can take the error
            pass


class OutputPool:
    """Idle output blocks of one stream, by layout (thread-safe: tensors may be dropped on any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: Dict[BlockLayout, List[Block]] = {}
        self._idle_bytes = 0
        self._limit = 0
        self.closed = False

    def take(self, lib, layout: BlockLayout) -> Block:
        """An idle block of ``layout``, else a new one (after releasing the idle ones if memory is short).
        Reads :data:`POOL_ENV` (ValueError when it is not a number)."""
        self._limit = pool_limit_bytes()
        with self._lock:
            idle = self._idle.get(layout)
            if idle:
                block = idle.pop()
                self._idle_bytes -= layout.nbytes
                return block
        try:
            return Block(lib, layout)
        except Exception:
            if not self.release_idle():
                raise
            return Block(lib, layout)

    def give_back(self, block: Block) -> bool:
        """Keep ``block`` for reuse; False when the pool is closed or full (the caller releases it)."""
        nbytes = block.layout.nbytes
        with self._lock:
            if self.closed or self._idle_bytes + nbytes > self._limit:
                return False
            idle = self._idle.setdefault(block.layout, [])
            if len(idle) >= SPARES_PER_LAYOUT:
                return False
            idle.append(block)
            self._idle_bytes += nbytes
            return True

    def release_idle(self) -> int:
        """Release every idle block (on a thread whose context owns them); returns how many."""
        with self._lock:
            blocks = [b for idle in self._idle.values() for b in idle]
            self._idle, self._idle_bytes = {}, 0
        failures = []
        for b in blocks:
            try:
                b.release()
            except Exception as e:
                failures.append(e)
        if failures:
            raise failures[0]
        return len(blocks)

    def close(self) -> None:
        """Release the idle blocks; blocks still leased are released when their tensors go."""
        with self._lock:
            self.closed = True
        self.release_idle()

    @property
    def idle_bytes(self) -> int:
        return self._idle_bytes


__all__ = ["BlockLayout", "Slot", "Block", "Lease", "OutputPool", "pool_limit_bytes", "POOL_ENV", "DEFAULT_POOL_MB",
           "ALIGN", "SPARES_PER_LAYOUT"]
