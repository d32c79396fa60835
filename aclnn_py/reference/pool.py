"""Recycled memory for the reference's large arrays (outputs and scratch), so a call writes into resident pages.

On Linux the first write to a fresh page costs a fault and the kernel's zeroing, 2-3x a copy into resident
memory; a reference call that returns new capacity-sized arrays pays that for every byte it writes. This pool
keeps the memory of arrays the caller has dropped and hands it to the next call:

* every array of at least :data:`MIN_BYTES` lives in its own private anonymous mapping (``mmap``), exposed as a
  plain writable ``numpy.ndarray`` (``np.frombuffer``); a finalizer on that array's base notices when the last
  array or view using the memory is gone and returns the mapping to the pool -- memory a live array can still
  reach is never handed out again;
* the caller says how many leading elements it overwrites (:func:`array`'s ``overwrite``); a recycled mapping
  has the rest cleared -- at most one page by ``memset``, the remainder by ``madvise(MADV_DONTNEED)``, which
  drops those pages so they read as zero again, whatever the previous user wrote there. So the result is
  exactly what ``np.zeros`` followed by the caller's writes gives, and the pages kept resident are only the
  ones the call writes;
* free mappings are kept up to :data:`ENV` megabytes of resident memory (their written extents), least
  recently returned dropped first; ``ACLNN_PY_REFERENCE_POOL_MB=0`` turns the pool off (plain ``np.zeros``).

Thread-safe: World threads call the reference concurrently, and finalizers run in whichever thread drops the
last reference (possibly inside a garbage collection while this module holds its lock, so a returned mapping
is queued and collected by the next pool operation that can take the lock).
"""
from __future__ import annotations

import collections
import mmap
import os
import sys
import threading
import weakref
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

#: Environment variable: megabytes of dropped arrays' memory the pool keeps for reuse (0: no pool).
ENV = "ACLNN_PY_REFERENCE_POOL_MB"
DEFAULT_MB = 2048
#: Arrays smaller than this come from numpy (the C heap is resident already; a mapping would cost more).
MIN_BYTES = 1 << 20
_PAGE = mmap.PAGESIZE
_SUPPORTED = sys.platform.startswith("linux") and hasattr(mmap, "MADV_DONTNEED") and hasattr(mmap, "MAP_PRIVATE")


def limit_bytes() -> int:
    """The pool's limit from :data:`ENV` (megabytes; unset: :data:`DEFAULT_MB`; not a number >= 0: 0, no pool)."""
    raw = os.environ.get(ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        return 0
    return int(mb * (1 << 20)) if mb > 0 else 0


def size_class(nbytes: int) -> int:
    """The mapping size serving a request of ``nbytes``: rounded up to an eighth of its power of two (at most
    12.5 % of address space more; untouched pages cost no memory), so nearby sizes share mappings."""
    step = max(_PAGE, 1 << max(0, nbytes.bit_length() - 4))
    return -(-nbytes // step) * step


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


class _Mapping:
    """One private anonymous mapping and how much of it, from offset 0, the last user's call wrote."""

    __slots__ = ("mem", "size", "kept")

    def __init__(self, size: int) -> None:
        self.mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        if hasattr(mmap, "MADV_HUGEPAGE"):      # as numpy does for its large arrays
            try:
                self.mem.madvise(mmap.MADV_HUGEPAGE)
            except OSError:                     # a kernel without transparent huge pages
                pass
        self.size = size
        self.kept = 0

    def clear_from(self, start: int) -> None:
        """Make bytes ``[start, size)`` read as zero: the partial page by memset, whole pages dropped."""
        page_end = min(self.size, _round_up(start, _PAGE))
        if page_end < self.size:
            try:
                self.mem.madvise(mmap.MADV_DONTNEED, page_end, self.size - page_end)
            except OSError:                     # not expected on Linux; clearing by hand is slower, as correct
                page_end = self.size
        if start < page_end:
            np.frombuffer(self.mem, np.uint8, count=page_end - start, offset=start).fill(0)


class BufferPool:
    """Free mappings by size class, bounded by the resident bytes they hold (see the module doc)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._free: Dict[int, List[Tuple[int, _Mapping]]] = {}   # size class -> [(return stamp, mapping)]
        self._returned: Deque[_Mapping] = collections.deque()     # returned, not yet filed (lock was busy)
        self._stamp = 0
        self.kept = 0          # resident bytes of the free mappings (their written extents)

    def array(self, shape, dtype, overwrite: int) -> np.ndarray:
        """A C-contiguous ``(shape, dtype)`` array whose elements from flat index ``overwrite`` on are 0; the first
        ``overwrite`` elements are unspecified and the caller must write every one of them."""
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dt.itemsize
        limit = limit_bytes()
        if not _SUPPORTED or limit == 0 or nbytes < MIN_BYTES:
            return np.zeros(shape, dt)
        written = min(nbytes, max(0, int(overwrite)) * dt.itemsize)
        m = self._take(size_class(nbytes))
        if m is None:
            try:
                m = _Mapping(size_class(nbytes))      # new pages read as zero
            except OSError:                           # no mapping to be had: numpy's own allocation, or its MemoryError
                return np.zeros(shape, dt)
        else:
            m.clear_from(written)
        m.kept = _round_up(written, _PAGE)
        flat = np.frombuffer(m.mem, np.uint8, count=nbytes)
        fin = weakref.finalize(flat, self._give_back, m)
        fin.atexit = False
        return flat.view(dt).reshape(shape)

    def _take(self, cls: int) -> Optional[_Mapping]:
        with self._lock:
            self._file_returned()
            free = self._free.get(cls)
            if not free:
                return None
            _, m = free.pop()                          # the most recently returned: likeliest still cached
            self.kept -= m.kept
            return m

    def _give_back(self, m: _Mapping) -> None:
        """Finalizer of a pooled array's base: the mapping is unreachable from Python arrays now."""
        self._returned.append(m)
        if self._lock.acquire(blocking=False):
            try:
                self._file_returned()
            finally:
                self._lock.release()

    def _file_returned(self) -> None:
        """(lock held) File the queued mappings and drop the least recently returned ones beyond the limit."""
        limit = limit_bytes()
        while self._returned:
            m = self._returned.popleft()
            self._stamp += 1
            self._free.setdefault(m.size, []).append((self._stamp, m))
            self.kept += m.kept
        while self.kept > limit:
            cls = min((lst[0][0], c) for c, lst in self._free.items() if lst)[1]
            _, m = self._free[cls].pop(0)
            self.kept -= m.kept                        # unmapped when the last reference goes
            if not self._free[cls]:
                del self._free[cls]

    def kept_bytes(self) -> int:
        """Resident bytes the free mappings hold (their written extents): what the pool costs between calls."""
        with self._lock:
            self._file_returned()
            return self.kept

    def free_mappings(self) -> int:
        """How many mappings are waiting for reuse (for tests and the benchmark)."""
        with self._lock:
            self._file_returned()
            return sum(len(lst) for lst in self._free.values())

    def clear(self) -> None:
        """Drop every free mapping (their memory goes back to the system)."""
        with self._lock:
            self._file_returned()
            self._free.clear()
            self.kept = 0


POOL = BufferPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=POOL._reset)    # a lock held by another thread at fork time


def array(shape, dtype, overwrite: int) -> np.ndarray:
    """:meth:`BufferPool.array` of the process-wide pool."""
    return POOL.array(shape, dtype, overwrite)


def zeros(shape, dtype) -> np.ndarray:
    """Like ``np.zeros`` (pooled memory when large)."""
    return POOL.array(shape, dtype, 0)


def scratch(shape, dtype) -> np.ndarray:
    """An array the caller overwrites entirely before reading (pooled memory when large)."""
    return POOL.array(shape, dtype, int(np.prod(shape, dtype=np.int64)))


__all__ = ["ENV", "DEFAULT_MB", "MIN_BYTES", "BufferPool", "POOL", "array", "zeros", "scratch", "limit_bytes",
           "size_class"]
