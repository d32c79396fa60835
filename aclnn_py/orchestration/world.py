"""``World``: run one Python function per rank, concurrently, with devices, streams and groups set up.

The Python form of the official demos' ``HcclCommInitAll`` + one-thread-per-device pattern. On the
``device`` backend every rank gets a context on its device, a stream and one HCCL communicator per
group it belongs to; on the ``reference`` backend the same per-rank code runs and collective ops
meet in a :class:`~aclnn_py.orchestration.rendezvous.Rendezvous` that computes the numpy reference once.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .backend import resolve_backend
from .rendezvous import Rendezvous
from ..errors import ACLNN_ERR_PARAM_INVALID, AclnnError

_current = threading.local()
_world_ids = itertools.count()


def acting_as(ctx: Optional["RankContext"]) -> None:
    """Make the calling thread run as rank ``ctx`` (``None``: as no rank); :func:`current_rank` returns it."""
    _current.rank = ctx


def current_rank() -> Optional["RankContext"]:
    """The :class:`RankContext` of the calling thread inside :meth:`World.run`, else ``None``."""
    return getattr(_current, "rank", None)


@dataclass
class GroupMembership:
    """One rank's view of one group: the name to pass as ``group_ep``/``group`` and its rank in it."""

    label: str
    name: str
    rank: int
    members: List[int]

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class RankContext:
    """What a rank function receives: its rank, device, stream and groups."""

    world: "World"
    rank: int
    device: Optional[int] = None
    stream: Any = None
    groups: Dict[str, GroupMembership] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.world.backend

    @property
    def world_size(self) -> int:
        return self.world.size

    @property
    def ep_rank(self) -> int:
        return self.rank // max(self.world.tp_world_size, 1)

    @property
    def tp_rank(self) -> int:
        return self.rank % max(self.world.tp_world_size, 1)

    def group(self, label: str) -> str:
        """The communicator name of group ``label`` for this rank (pass it as ``group_ep`` etc.)."""
        try:
            return self.groups[label].name
        except KeyError:
            raise KeyError(f"rank {self.rank} is in no group labelled {label!r}; "
                           f"its groups: {sorted(self.groups)}") from None


class _Worker:
    """A rank's thread, kept for the World's lifetime (no thread churn between runs). Holds no reference
    to the World between jobs, so an unreferenced World can still be collected."""

    def __init__(self, rank: int) -> None:
        self._cv = threading.Condition()
        self._job: Optional[Callable[[], None]] = None
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name=f"aclnn_py-rank{rank}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._stop:
                    self._cv.wait()
                if self._job is None:
                    return
                job, self._job = self._job, None
            try:
                job()
            finally:
                del job
                with self._cv:
                    self._cv.notify_all()

    def submit(self, job: Callable[[], None]) -> None:
        with self._cv:
            self._job = job
            self._cv.notify_all()

    def stop(self) -> None:
        """Let the thread exit once its current job (if any) is done."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()


def _stop_workers(workers: Dict[int, "_Worker"], timeout_s: float = 5.0) -> None:
    items = list(workers.values())
    workers.clear()
    for w in items:
        w.stop()
    for w in items:
        if w.thread is not threading.current_thread():
            w.thread.join(timeout_s)


def _release_stream_cache(ctx: RankContext) -> None:
    if ctx.stream is not None:
        ctx.stream.synchronize()
        ctx.stream.release_cached()


class UnknownGroupError(AclnnError, KeyError):
    """A group name that is not one of the rank's communicators in its World (161002; also a KeyError)."""

    def __str__(self) -> str:
        return self._text()


class World:
    """``size`` ranks (global rank ``g = ep_rank * max(tp, 1) + tp_rank``) and their groups.

    ``groups`` maps a label to a list of member lists (global ranks); default: one group
    ``"world"`` of all ranks. Use as a context manager; :meth:`close` releases every stream,
    context and communicator.
    """

    def __init__(self, size: int, *, backend: Optional[str] = None, devices: Optional[Sequence[int]] = None,
                 groups: Optional[Mapping[str, Sequence[Sequence[int]]]] = None, tp_world_size: int = 0,
                 timeout_s: Optional[float] = None) -> None:
        if size < 1:
            raise ValueError(f"World size must be >= 1; got {size}")
        self._init_state(size, devices, groups, tp_world_size, timeout_s)
        self.backend = resolve_backend(backend, min_devices=size)
        self.id = next(_world_ids)
        self.rendezvous = Rendezvous(self._members_of)
        self._start(self._setup_device)

    def _init_state(self, size: int, devices: Optional[Sequence[int]],
                    groups: Optional[Mapping[str, Sequence[Sequence[int]]]], tp_world_size: int,
                    timeout_s: Optional[float]) -> None:
        """Everything a World holds before its backend is set up (shared with ProcessWorld)."""
        self.size = size
        self.tp_world_size = tp_world_size
        self.timeout_s = float(timeout_s if timeout_s is not None else os.environ.get("ACLNN_PY_COLLECTIVE_TIMEOUT_S", 120))
        self.devices = list(devices) if devices is not None else list(range(size))
        self.group_spec = {k: [list(m) for m in v] for k, v in (groups or {"world": [list(range(size))]}).items()}
        self._check_groups()
        self.last_errors: Dict[int, BaseException] = {}
        self.ranks: List[RankContext] = [RankContext(self, r) for r in range(size)]
        self._by_name: Dict[str, GroupMembership] = {}
        self._contexts: list = []
        self._comms: list = []
        self._comm_names: Dict[int, str] = {}
        self._streams: list = []
        self._running = threading.Lock()
        self._workers: Dict[int, _Worker] = {}
        self._closed = False
        self._finalizer = weakref.finalize(self, World._release,
                                           {"comms": self._comms, "streams": self._streams, "contexts": self._contexts,
                                            "workers": self._workers})

    def _start(self, setup_device: Callable[[], None]) -> None:
        """Set up the backend's devices/streams/communicators or reference groups; on failure release all."""
        try:
            if self.backend == "device":
                setup_device()
            else:
                self._setup_reference()
        except BaseException:
            self.close()
            raise

    @classmethod
    def ep_tp(cls, ep_world_size: int, tp_world_size: int = 0, **kwargs) -> "World":
        """A world of ``ep * max(tp, 1)`` ranks with groups ``ep`` and ``ep_barrier`` (one per TP slice)
        and ``tp`` (one per EP rank), laid out as the official demos do."""
        tp = max(tp_world_size, 1)
        ep_groups = [[e * tp + t for e in range(ep_world_size)] for t in range(tp)]
        groups = {"ep": ep_groups, "ep_barrier": [list(g) for g in ep_groups],
                  "tp": [[e * tp + t for t in range(tp)] for e in range(ep_world_size)]}
        groups.update(kwargs.pop("groups", {}) or {})
        return cls(ep_world_size * tp, groups=groups, tp_world_size=tp_world_size, **kwargs)

    def _check_groups(self) -> None:
        for label, member_lists in self.group_spec.items():
            for members in member_lists:
                if not members or len(set(members)) != len(members) or not all(0 <= m < self.size for m in members):
                    raise ValueError(f"group {label!r}: members must be distinct ranks in [0, {self.size}); "
                                     f"got {members}")

    # -- setup --------------------------------------------------------------------------------
    def _register(self, label: str, index: int, members: List[int], names: Sequence[str]) -> None:
        for grank, (g, name) in enumerate(zip(members, names)):
            m = GroupMembership(label, name, grank, members)
            self.ranks[g].groups[label] = m
            self._by_name[f"{name}@{g}"] = m

    def _setup_reference(self) -> None:
        for label, member_lists in self.group_spec.items():
            for i, members in enumerate(member_lists):
                name = f"ref_w{self.id}_{label}_{i}"
                self._register(label, i, members, [name] * len(members))

    def _setup_device(self) -> None:
        from ..runtime import hccl
        from ..runtime.device import Context, Stream
        for r in range(self.size):
            ctx = Context(self.devices[r])
            self._contexts.append(ctx)
            self.ranks[r].device = self.devices[r]
            self.ranks[r].stream = Stream()
            self._streams.append(self.ranks[r].stream)
        for label, member_lists in self.group_spec.items():
            for i, members in enumerate(member_lists):
                comms = hccl.init_all([self.devices[m] for m in members])
                self._comms.extend(comms)
                names = [hccl.comm_name(c) for c in comms]
                self._comm_names.update(zip(comms, names))
                self._register(label, i, members, names)

    # -- lookup ---------------------------------------------------------------------------------
    def membership(self, name: str, rank: int) -> GroupMembership:
        """Rank ``rank``'s membership of the group called ``name``."""
        m = self._by_name.get(f"{name}@{rank}") if isinstance(name, str) else None
        if m is None:
            mine = {label: g.name for label, g in sorted(self.ranks[rank].groups.items())} \
                if isinstance(rank, int) and 0 <= rank < self.size else {}
            raise UnknownGroupError(ACLNN_ERR_PARAM_INVALID, "aclnn_py.World",
                                    f"rank {rank} is not a member of a group named {name!r}; its groups: {mine} "
                                    "(pass ctx.group(label))")
        return m

    def _members_of(self, name: str) -> Optional[List[int]]:
        """Global ranks of the group called ``name`` in group-rank order (``None`` if no such group)."""
        for label, member_lists in self.group_spec.items():
            for members in member_lists:
                m = self._by_name.get(f"{name}@{members[0]}")
                if m is not None and m.members == members:
                    return members
        return None

    # -- running --------------------------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any, ranks: Optional[Sequence[int]] = None, **kwargs: Any) -> list:
        """Call ``fn(rank_ctx, *args, **kwargs)`` on each rank in ``ranks`` (default all), one thread each.

        Returns the results indexed by global rank (``None`` for ranks that did not run).

        Failure behaviour: when a rank raises, every collective the other ranks wait in (or start
        later in this run) fails at once with an error naming the failed rank: the host rendezvous
        is aborted, and on the simulator the world's communicators too (``aclsimAbortComm``). A real
        device cannot be cancelled: ranks already inside a device collective stay there until the
        HCCL execution timeout or the stream sync timeout (``ACLNN_PY_SYNC_TIMEOUT_MS``). A host-side
        wait that needs a rank whose function has returned, or that is not in ``ranks``, fails at
        once too. After every thread has finished, the error of the rank that failed first is raised;
        ``world.last_errors`` holds every rank's error. An interrupt of the launching thread (Ctrl-C)
        aborts every rank the same way and is re-raised once they stopped (waiting at most
        ``timeout_s``). One run at a time per World: a concurrent ``run`` raises ``RuntimeError``.
        """
        if self._closed:
            raise RuntimeError("World is closed")
        if not self._running.acquire(blocking=False):
            raise RuntimeError("World.run is already running (in another thread, or called from a rank function): "
                               "a World runs one function at a time; use a second World for concurrent work")
        try:
            return self._run(fn, args, ranks, kwargs)
        finally:
            self._running.release()

    def _run(self, fn: Callable[..., Any], args: tuple, ranks: Optional[Sequence[int]], kwargs: dict) -> list:
        ranks = list(range(self.size)) if ranks is None else list(ranks)
        bad = [r for r in ranks if not 0 <= r < self.size]
        if bad or len(set(ranks)) != len(ranks):
            raise ValueError(f"ranks must be distinct ranks in [0, {self.size}); got {ranks}")
        results: List[Any] = [None] * self.size
        errors: Dict[int, BaseException] = {}
        order: List[int] = []
        lock = threading.Lock()
        not_running = {g: f"rank {g} is not running in this World.run (ranks={ranks})"
                       for g in range(self.size) if g not in ranks}
        self.rendezvous.reset_departures(not_running)

        def body(r: int) -> None:
            ctx = self.ranks[r]
            acting_as(ctx)
            try:
                if self._contexts:
                    self._contexts[r].bind()
                results[r] = fn(ctx, *args, **kwargs)
                self.rendezvous.depart(r, f"rank {r}'s function returned without joining it")
            except BaseException as e:
                with lock:
                    errors[r] = e
                    order.append(r)
                    first = len(order) == 1
                reason = f"rank {r} raised {type(e).__name__}: {e}"
                self.rendezvous.abort(RuntimeError(reason))
                if first:
                    self._abort_device(reason)
            finally:
                acting_as(None)

        pending = set(ranks)
        done = threading.Condition()

        def job(r: int) -> Callable[[], None]:
            def run_rank() -> None:
                try:
                    body(r)
                finally:
                    with done:
                        pending.discard(r)
                        done.notify_all()
            return run_rank

        for r in ranks:
            self._worker(r).submit(job(r))
        try:
            with done:
                while pending:
                    done.wait()
        except BaseException as e:  # e.g. KeyboardInterrupt in the launching thread: stop the ranks, then re-raise
            reason = f"World.run was interrupted by {type(e).__name__} in the launching thread"
            self.rendezvous.abort(RuntimeError(reason))
            self._abort_device(reason)
            deadline = time.monotonic() + max(self.timeout_s, 10.0)
            with done:
                while pending and time.monotonic() < deadline:
                    done.wait(max(deadline - time.monotonic(), 0.0))
                stuck = set(pending)
            for r in stuck:     # abandon a rank thread that does not stop: the next run gets a new one
                w = self._workers.pop(r, None)
                if w is not None:
                    w.stop()
            self.last_errors = dict(errors)
            self.rendezvous = Rendezvous(self._members_of)
            if not stuck:
                self._recover_device(ranks)
            raise
        self.last_errors = dict(errors)
        if errors or self.rendezvous.needs_reset:
            self.rendezvous = Rendezvous(self._members_of)
        if errors or self._device_needs_recovery():
            self._recover_device(ranks)
        if errors:
            raise errors[order[0]]
        return results

    # -- failure handling on the device backend ---------------------------------------------------
    def _abort_device(self, reason: str) -> None:
        """Simulator only: make every collective of this world's communicators fail now, naming ``reason``."""
        hooks = self.sim_hooks()
        if hooks is None:
            return
        for comm in self._one_comm_per_group():  # the abort is group-wide
            hooks.abort_comm(comm, f"aclnn_py.World: {reason}")

    def _one_comm_per_group(self) -> List[int]:
        seen, out = set(), []
        for comm in self._comms:
            name = self._comm_names.get(comm)
            if name not in seen:
                seen.add(name)
                out.append(comm)
        return out

    def _recover_device(self, ranks: Sequence[int]) -> None:
        """After an aborted run: let queued work fail and drain, then make the communicators usable again."""
        hooks = self.sim_hooks()
        if hooks is None:
            return
        for r in ranks:
            stream = self.ranks[r].stream
            if stream is None:
                continue
            try:
                self._context_of(r).bind()
                stream.synchronize(timeout_ms=max(int(self.timeout_s * 1000), 1000))
            except Exception:  # the run already failed; this only drains what the abort cancelled
                pass
        for comm in self._one_comm_per_group():
            deadline = time.monotonic() + 10.0
            while hooks.recover_comm(comm) == -2 and time.monotonic() < deadline:
                time.sleep(0.005)

    def _context_of(self, rank: int):
        return self._contexts[rank]

    def _worker(self, rank: int) -> "_Worker":
        w = self._workers.get(rank)
        if w is None or not w.thread.is_alive():
            w = self._workers[rank] = _Worker(rank)
        return w

    def _device_needs_recovery(self) -> bool:
        """Simulator: a group of this world is still aborted (e.g. a rank function caught the error)."""
        hooks = self.sim_hooks()
        return hooks is not None and any(hooks.comm_state(c) > 0 for c in self._comms)

    def sim_hooks(self):
        """The simulator's failure hooks when this World runs on the simulator, else ``None``."""
        if not self._contexts:
            return None
        from ..runtime.device import acl_init
        from ..runtime.simhooks import sim_hooks
        return sim_hooks(acl_init())

    # -- teardown -------------------------------------------------------------------------------
    def release_cached(self) -> None:
        """Free what the ranks' streams keep for reuse: their operator workspaces and the output blocks their
        callers have dropped (:mod:`aclnn_py.runtime.pool`). Runs on every rank's thread (in a launched job:
        this process's rank), so call it between runs, like :meth:`close`; inside a rank function use
        ``ctx.stream.release_cached()``. Nothing to do on the reference backend or once closed."""
        if self.backend == "device" and not self._closed:
            self.run(_release_stream_cache)

    def close(self) -> None:
        """Destroy communicators, streams and contexts (idempotent). Not a collective: call after run().

        A World that is garbage-collected without ``close()`` is closed by a finalizer."""
        if self._closed:
            return
        if not self._running.acquire(blocking=False):
            raise RuntimeError("World.close() while World.run is running in another thread: let it finish first")
        try:
            self._closed = True
            failures = self._finalizer()
        finally:
            self._running.release()
        self._comms, self._contexts = [], []
        if failures:
            raise failures[0]

    @staticmethod
    def _release(res: Dict[str, list]) -> list:
        """Release what ``res`` holds (communicators, then streams in their contexts, then contexts)."""
        failures: list = []
        _stop_workers(res.get("workers", {}))
        comms, streams, contexts = res["comms"], res["streams"], res["contexts"]
        if not contexts:
            return failures
        from ..runtime import hccl
        for comm in comms:
            try:
                hccl.destroy(comm)
            except Exception as e:
                failures.append(e)
        for ctx, stream in zip(contexts, streams):
            try:
                ctx.bind()
                if stream is not None:
                    stream.destroy()
            except Exception as e:
                failures.append(e)
        for ctx in contexts:
            try:
                ctx.destroy()
            except Exception as e:
                failures.append(e)
        comms.clear()
        streams.clear()
        contexts.clear()
        return failures

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"World(size={self.size}, backend={self.backend!r}, groups={sorted(self.group_spec)})"
