"""Ranks as separate processes: the per-rank code of :meth:`aclnn_py.World.run`, one process per rank.

:func:`launch` starts ``nprocs`` processes on this host; each builds a :class:`ProcessWorld` -- the same
:class:`~aclnn_py.RankContext` API as a threaded :class:`~aclnn_py.World` (``ctx.rank``,
``ctx.group(label)``, ``ctx.stream``...) for its one rank -- and calls ``fn(ctx, *args)``. The processes
meet through a :class:`FileStore` (a directory; on a cluster, a shared filesystem):

* the HCCL root info of every group (``HcclGetRootInfo`` on the group's rank 0, 4108 bytes, then
  ``HcclCommInitRootInfo`` everywhere), as multi-process CANN programs share it;
* the host rendezvous (:class:`StoreRendezvous`) of the reference backend and of the cross-rank
  pre-check, with the same failure semantics as the threaded one: a rank that raises aborts the
  others' waits, a rank whose function returned (or whose process died) is named at once.

On the simulator each launch is a shared-memory session (``ACLNN_SIM_SHM_SESSION``): device memory is
mapped at the same address in every process, and communicators live in shared memory, so the
collective kernels meet across processes as they do across threads.

A rank started by another launcher (mpiexec, srun, torchrun, or by hand with ``ACLNN_PY_RANK``,
``ACLNN_PY_WORLD_SIZE`` and ``ACLNN_PY_STORE``) joins with :meth:`ProcessWorld.from_env`: the launcher is
recognised (:mod:`~aclnn_py.orchestration.launchers`), the ranks meet through its channel
(:mod:`~aclnn_py.orchestration.stores`), and :mod:`~aclnn_py.orchestration.job` keeps the process's place in
the job (heartbeat, simulator session).
"""
from __future__ import annotations

import glob
import hashlib
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .job import Liveness
from .launchers import LaunchError, LaunchInfo, detect
from .rendezvous import Identity
from .stores import FileStore, Store
from ..errors import ACL_ERROR_RT_AICORE_EXCEPTION, CollectiveError
from .world import World, acting_as

STORE_ENV, RANK_ENV, SIZE_ENV = "ACLNN_PY_STORE", "ACLNN_PY_RANK", "ACLNN_PY_WORLD_SIZE"
SESSION_ENV = "ACLNN_SIM_SHM_SESSION"
CONNECT_TIMEOUT_ENV, SIM_CONNECT_TIMEOUT_ENV = "HCCL_CONNECT_TIMEOUT", "ACLNN_SIM_CONNECT_TIMEOUT_MS"
CONNECT_TIMEOUT_RANGE_S = (120, 7200)    # HCCL's range and default (120): hcomm externalinput.{h,cc}


def connect_timeout_s() -> float:
    """How long communicator set-up waits for the other ranks (seconds): ``HCCL_CONNECT_TIMEOUT`` as HCCL reads
    it (an integer in [120, 7200], default 120; HCCL itself refuses other values when it sets up a communicator),
    or the simulator's ``ACLNN_SIM_CONNECT_TIMEOUT_MS`` when set (tests)."""
    sim_ms = os.environ.get(SIM_CONNECT_TIMEOUT_ENV, "")
    if sim_ms.isdigit():
        return int(sim_ms) / 1000.0
    lo, hi = CONNECT_TIMEOUT_RANGE_S
    value = os.environ.get(CONNECT_TIMEOUT_ENV, "")
    return float(value) if value.isdigit() and lo <= int(value) <= hi else float(lo)


def _digest(obj: Any) -> str:
    return hashlib.sha1(repr(obj).encode()).hexdigest()[:16]


class _Every:
    """True at most once per ``seconds`` (the first call included): rate-limits the failure checks of a wait,
    which cost a store round trip each."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self._last = seconds, -float("inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True


CHECK_INTERVAL_S = 0.05


def _rank_name(p: int, members: Sequence[int]) -> str:
    return str(p) if members[p] == p else f"{p} (global rank {members[p]})"


def _aborted(op: str, why: str) -> CollectiveError:
    return CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op, f"aborted because another rank failed: {why}")


# ---- the host rendezvous across processes -------------------------------------------------------------------------
class StoreRendezvous:
    """:class:`aclnn_py.orchestration.rendezvous.Rendezvous` across processes: every participant posts its payload to the
    store; each process computes ``compute(payloads)`` itself (it is deterministic) and takes its result.

    One per :meth:`ProcessWorld.run` (``epoch``: ``run<n>``), so the failure signals of a run -- a rank that raised
    (:meth:`abort`), a rank that will not join (:meth:`depart`) -- end with it, as a threaded World's do. Waits also
    fail when the job was aborted or a participant's process is gone (``liveness``)."""

    def __init__(self, store: Store, members_of: Optional[Callable[[str], Optional[Sequence[int]]]] = None,
                 liveness: Optional[Liveness] = None, epoch: str = "run0"):
        self.store, self.epoch = store, epoch
        self.liveness = liveness if liveness is not None else Liveness(store, None)
        self._calls: Dict[tuple, int] = {}
        self._members_of = members_of

    # failure signals (visible to every process)
    def abort(self, error: BaseException) -> None:
        if self.store.try_get(f"{self.epoch}/abort") is None:
            self.store.set(f"{self.epoch}/abort", str(error).encode())

    def depart(self, global_rank: int, why: str) -> None:
        self.store.set(f"{self.epoch}/departed/{global_rank}", why.encode())

    def reset_departures(self, departed: Optional[Dict[int, str]] = None) -> None:
        for g, why in (departed or {}).items():
            self.depart(g, why)

    @property
    def aborted(self) -> Optional[str]:
        """Why this run (or the whole job) was aborted, or ``None``."""
        v = self.store.try_get(f"{self.epoch}/abort")
        return v.decode() if v is not None else self.liveness.job_abort()

    @property
    def needs_reset(self) -> bool:
        return False

    def collective(self, op: str, group: str, rank: int, participants: Sequence[int], payload: Any,
                   compute: Callable[[Dict[int, Any]], Dict[int, Any]], timeout_s: float,
                   what_if_missing: str = "", global_ranks: Optional[Sequence[int]] = None) -> Any:
        participants = tuple(sorted(set(participants)))
        if rank not in participants:
            raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op,
                                  f"rank {rank} of group '{group}' is not a participant {list(participants)}")
        members = global_ranks if global_ranks is not None else (
            (self._members_of(group) if self._members_of else None) or Identity())
        ckey = (group, participants)
        index = self._calls.get(ckey, 0)
        self._calls[ckey] = index + 1
        base = f"{self.epoch}/rdv/{_digest(group)}/{_digest(participants)}/{index}"
        keys = {f"{base}/{p}": p for p in participants}
        self.store.set(f"{base}/{rank}", pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        due = _Every(CHECK_INTERVAL_S)

        def check(missing_keys: Sequence[str]) -> Optional[CollectiveError]:
            if not due():
                return None
            # Who is gone first, then the abort: a rank that raised posts its abort before it departs or exits, so
            # in this order a departure or exit seen implies its abort is seen: the message names the exception.
            never = self._never_joins(op, group, members, [keys[k] for k in missing_keys])
            why = self.aborted
            return _aborted(op, why) if why is not None else never

        try:
            try:
                raw = self.store.wait_many(list(keys), timeout_s, check)
            except TimeoutError:
                missing = [q for q in participants if not self.store.exists(f"{base}/{q}")]
                raise CollectiveError(
                    ACL_ERROR_RT_AICORE_EXCEPTION, op,
                    f"ranks {missing} of group '{group}' never arrived within {timeout_s:g} s"
                    + (f" ({what_if_missing})" if what_if_missing else "")) from None
        except BaseException:
            self._calls[ckey] = index           # withdraw, as the threaded rendezvous does
            self.store.delete(f"{base}/{rank}")
            raise
        payloads = {keys[k]: pickle.loads(v) for k, v in raw.items()}
        if index > 0:   # everyone has posted `index`, so everyone has finished reading `index - 1`
            self.store.delete(f"{self.epoch}/rdv/{_digest(group)}/{_digest(participants)}/{index - 1}/{rank}")
        return compute(payloads)[rank]

    def _never_joins(self, op: str, group: str, members: Sequence[int],
                     missing: Sequence[int]) -> Optional[CollectiveError]:
        """The error when one of the ``missing`` participants will never come (it departed, or its process is
        gone), else ``None``."""
        departed = self.store.get_many([f"{self.epoch}/departed/{members[p]}" for p in missing])
        gone = {members[p]: departed[k].decode() for p in missing
                if (k := f"{self.epoch}/departed/{members[p]}") in departed}
        if not gone:
            found = self.liveness.gone([members[p] for p in missing])
            gone = {} if found is None else {found[0]: found[1]}
        for p in missing:
            if members[p] in gone:
                return CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op,
                                       f"rank [{_rank_name(p, members)}] of group '{group}' will never join this "
                                       f"collective: {gone[members[p]]}")
        return None


# ---- one rank's world ----------------------------------------------------------------------------------------------
class ProcessWorld(World):
    """The :class:`World` of one rank running in its own process (``rank`` of ``size``); the other ranks
    are processes that built their own ProcessWorld on the same store. ``run(fn)`` calls ``fn`` for
    this rank only and returns a list with its result at index ``rank``.

    ``run`` is a collective of the processes: each calls it the same number of times, with the same ``ranks``
    (a process whose rank is not in ``ranks`` does not call ``fn``; its peers' waits for it fail at once, as
    for a rank left out of a threaded ``World.run``). :meth:`allgather` and :meth:`scatter` exchange host data
    between the processes, outside ``run``.
    """

    def __init__(self, rank: int, size: int, store: Store, *, backend: Optional[str] = None,
                 devices: Optional[Sequence[int]] = None, groups: Optional[Mapping[str, Sequence[Sequence[int]]]] = None,
                 tp_world_size: int = 0, timeout_s: Optional[float] = None, session: str = "",
                 liveness: Optional[Liveness] = None, world_id: str = "",
                 launch_info: Optional[LaunchInfo] = None) -> None:
        from .backend import resolve_backend
        if not 0 <= rank < size:
            raise ValueError(f"rank must be in [0, {size}); got {rank}")
        self.rank, self.store = rank, store
        self.liveness = liveness if liveness is not None else Liveness(store, None)
        self.launch_info = launch_info
        self._init_state(size, devices, groups, tp_world_size, timeout_s)
        self.backend = resolve_backend(backend, min_devices=self.devices[rank] + 1)
        self.id = world_id or session or uuid.uuid4().hex[:12]
        self._runs = self._exchanges = 0
        self.rendezvous = StoreRendezvous(store, self._members_of, self.liveness)
        self._start(self._setup_device_mp)

    @classmethod
    def from_env(cls, *, device: Optional[int] = None, **kwargs) -> "ProcessWorld":
        """The World of this process's rank in a job started by a launcher: mpiexec / mpirun (Open MPI, MPICH),
        srun, torchrun, or by hand with ``ACLNN_PY_RANK``, ``ACLNN_PY_WORLD_SIZE`` and ``ACLNN_PY_STORE``
        (:func:`~aclnn_py.orchestration.launchers.detect`; ``world.launch_info`` says what was found). Without a
        launcher: rank 0 of a one-process world.

        The device is the one of the local rank (:func:`~aclnn_py.orchestration.launchers.device_for`), unless
        ``device`` is given; the other keyword arguments are those of :class:`World` (``groups``,
        ``tp_world_size``, ``backend``, ``timeout_s``). Every process must create its worlds in the same order.
        """
        from .job import Job
        job = Job.current()
        store, world_id = job.next_world()
        dev = job.device if device is None else device
        return cls(job.rank, job.size, store, devices=[dev] * job.size, session=job.session, world_id=world_id,
                   liveness=job.liveness, launch_info=job.info, **kwargs)

    def _setup_device_mp(self) -> None:
        try:
            self._setup_comms()
        except BaseException as e:
            if self.store.try_get("setup/abort") is None:
                self.store.set("setup/abort", f"rank {self.rank} failed to set up: {type(e).__name__}: {e}".encode())
            raise

    def _setup_comms(self) -> None:
        from ..runtime import hccl
        from ..runtime.device import Context, Stream
        me, dev = self.rank, self.devices[self.rank]
        ctx = Context(dev)
        self._contexts.append(ctx)
        self.ranks[me].device = dev
        self.ranks[me].stream = Stream()
        self._streams.append(self.ranks[me].stream)
        for label, member_lists in self.group_spec.items():       # the same order in every process
            for i, members in enumerate(member_lists):
                if me not in members:
                    continue
                grank = members.index(me)
                key = f"hccl/{label}/{i}"
                if grank == 0:
                    self.store.set(f"{key}/root", hccl.root_info())
                root = self._setup_wait(f"{key}/root", members[0],
                                        f"group {label!r} #{i}'s root info (rank {members[0]})")
                # Every member's process is alive and about to join: one that died before reaching this point
                # (the launcher then aborts the store) is named here, instead of after HCCL_CONNECT_TIMEOUT.
                self.store.set(f"{key}/joining/{grank}", str(os.getpid()).encode())
                for j, g in enumerate(members):
                    self._setup_wait(f"{key}/joining/{j}", g, f"rank {g} to set up group {label!r} #{i}")
                comm = hccl.init_root_info(len(members), root, grank)
                self._comms.append(comm)
                self._comm_names[comm] = name = hccl.comm_name(comm)
                if grank == 0:
                    self.store.set(f"{key}/name", name.encode())
        for label, member_lists in self.group_spec.items():
            for i, members in enumerate(member_lists):
                name = self._setup_wait(f"hccl/{label}/{i}/name", members[0], f"group {label!r} #{i}'s name").decode()
                self._register(label, i, members, [name] * len(members))

    def _setup_wait(self, key: str, rank: int, what: str) -> bytes:
        """A store value of communicator set-up that rank ``rank`` posts, waiting as HCCL does
        (``HCCL_CONNECT_TIMEOUT``); fails at once when another rank failed or its process is gone."""
        timeout = connect_timeout_s()
        try:
            return self._wait_for_ranks({key: rank}, "communicator set-up", timeout, abort_key="setup/abort")[key]
        except TimeoutError:
            raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, "communicator set-up",
                                  f"rank {self.rank} waited {timeout:g} s ({CONNECT_TIMEOUT_ENV}) for {what}; "
                                  "that rank's process never got there (is it running?)") from None

    def _wait_for_ranks(self, keys: Mapping[str, int], op: str, timeout_s: float,
                        abort_key: str = "") -> Dict[str, bytes]:
        """The values of ``keys`` (key -> the rank that posts it); fails as soon as the job (or ``abort_key``)
        is aborted or a rank that has yet to post is gone. Raises ``TimeoutError`` after ``timeout_s``."""
        due = _Every(CHECK_INTERVAL_S)

        def check(missing: Sequence[str]) -> Optional[CollectiveError]:
            if not due():
                return None
            found = self.liveness.gone(sorted({keys[k] for k in missing}))      # before the abort: see above
            own = self.store.try_get(abort_key) if abort_key else None
            why = own.decode() if own is not None else self.liveness.job_abort()
            if why is not None:
                return _aborted(op, why)
            return None if found is None else CollectiveError(
                ACL_ERROR_RT_AICORE_EXCEPTION, op, f"rank {self.rank} waited for rank {found[0]}: {found[1]}")

        return self.store.wait_many(list(keys), timeout_s, check)

    # -- host data between the processes ----------------------------------------------------------------------
    def allgather(self, obj: Any, timeout_s: Optional[float] = None) -> list:
        """Every process's ``obj`` (picklable), by rank: a host all-gather through the job's channel. Every
        process calls it (outside ``run``); fails naming a rank whose process is gone, or after ``timeout_s``
        (default: the World's)."""
        n = self._next_exchange()
        self.store.set(f"x{n}/{self.rank}", pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        raw = self._exchange_wait({f"x{n}/{r}": r for r in range(self.size)}, timeout_s)
        if n > 0:    # everyone has posted n, so everyone has read n - 1
            self.store.delete(f"x{n - 1}/{self.rank}")
        return [pickle.loads(raw[f"x{n}/{r}"]) for r in range(self.size)]

    def scatter(self, items: Optional[Sequence[Any]], root: int = 0, timeout_s: Optional[float] = None) -> Any:
        """Rank ``root`` passes one picklable item per rank (``items[r]`` for rank ``r``; the others pass
        ``None``); every process returns its own item. Waits as :meth:`allgather` does."""
        n = self._next_exchange()
        if self.rank == root:
            if items is None or len(items) != self.size:
                raise ValueError(f"scatter: rank {root} must pass {self.size} items; got "
                                 f"{None if items is None else len(items)}")
            for r, item in enumerate(items):
                if r != root:
                    self.store.set(f"x{n}/to{r}", pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
            return items[root]
        key = f"x{n}/to{self.rank}"
        raw = self._exchange_wait({key: root}, timeout_s)[key]
        self.store.delete(key)
        return pickle.loads(raw)

    def _next_exchange(self) -> int:
        n, self._exchanges = self._exchanges, self._exchanges + 1
        return n

    def _exchange_wait(self, keys: Mapping[str, int], timeout_s: Optional[float]) -> Dict[str, bytes]:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return self._wait_for_ranks(keys, "ProcessWorld host exchange", timeout)
        except TimeoutError:
            late = sorted({r for k, r in keys.items() if not self.store.exists(k)})
            raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, "ProcessWorld host exchange",
                                  f"ranks {late} did not arrive within {timeout:g} s") from None

    # -- running ----------------------------------------------------------------------------------------------
    def _run(self, fn: Callable[..., Any], args: tuple, ranks: Optional[Sequence[int]], kwargs: dict) -> list:
        ranks = list(range(self.size)) if ranks is None else list(ranks)
        if any(not 0 <= r < self.size for r in ranks) or len(set(ranks)) != len(ranks):
            raise ValueError(f"ranks must be distinct ranks in [0, {self.size}); got {ranks}")
        self.rendezvous = StoreRendezvous(self.store, self._members_of, self.liveness, f"run{self._runs}")
        self._runs += 1
        results: List[Any] = [None] * self.size
        self.last_errors = {}
        if self.rank not in ranks:
            self.rendezvous.depart(self.rank, f"rank {self.rank} is not running in this World.run (ranks={ranks})")
            return results
        ctx = self.ranks[self.rank]
        try:
            acting_as(ctx)
            if self._contexts:
                self._context_of(self.rank).bind()
            results[self.rank] = fn(ctx, *args, **kwargs)
            self.rendezvous.depart(self.rank, f"rank {self.rank}'s function returned without joining it")
        except BaseException as e:
            self.last_errors = {self.rank: e}
            reason = f"rank {self.rank} raised {type(e).__name__}: {e}"
            self.rendezvous.abort(RuntimeError(reason))
            # The abort lives in the communicators' shared state: recovering this rank does not clear it while
            # another rank has yet to see its collectives fail (the group restarts once every live rank recovered).
            self._abort_device(reason)
            self._recover_device([self.rank])
            raise
        finally:
            acting_as(None)
        if self._device_needs_recovery():      # another rank failed after this one's collectives: done with them
            self._recover_device([self.rank])
        return results

    def _context_of(self, rank: int):
        return self._contexts[0]

    def __repr__(self) -> str:
        return f"ProcessWorld(rank={self.rank}, size={self.size}, backend={self.backend!r})"


# ---- the launcher ----------------------------------------------------------------------------------------------------
PICKLE_REMEDY = ("define it with `def` at the top level of a module the rank processes can import (a .py file, not "
                 "an interactive session or a notebook cell), and pass that function")
RESULT_REMEDY = ("return picklable data instead: numpy arrays (DeviceTensor.numpy()), numbers, strings, or "
                 "lists / dicts / tuples of them")


def _callable_name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _why_not_importable(fn: Callable[..., Any]) -> Optional[str]:
    """Why the rank processes (started with 'spawn') could not import ``fn``, or ``None``."""
    qualname = getattr(fn, "__qualname__", "")
    if "<lambda>" in qualname:
        return "it is a lambda, which has no name the rank processes could import it by"
    if "<locals>" in qualname:
        return "it is defined inside another function, so the rank processes cannot import it by name"
    main = sys.modules.get("__main__")
    if getattr(fn, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        return ("it is defined in the __main__ module of an interactive session, which the rank processes cannot "
                "import")
    try:
        pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - reported with its cause
        return f"pickling it failed ({type(e).__name__}: {e})"
    return None


def _pickled_spec(fn: Callable[..., Any], args: tuple, kwargs: dict, spec: dict) -> bytes:
    """``spec`` (which holds ``fn``, ``args`` and ``kwargs``) pickled for the rank processes; raises
    :class:`LaunchError` naming the function or the argument they could not receive."""
    why = _why_not_importable(fn)
    if why is not None:
        raise LaunchError(f"launch: the rank function {_callable_name(fn)} cannot be sent to the rank processes: "
                          f"{why}; {PICKLE_REMEDY}")
    try:
        return pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - find which argument, then say so
        named = [(f"argument {i + 1}", a) for i, a in enumerate(args)] + \
            [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
        for where, value in named:
            try:
                pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # noqa: BLE001 - reported with its cause
                raise LaunchError(f"launch: {where} of {_callable_name(fn)} (a {type(value).__qualname__}) cannot be "
                                  f"pickled to send it to the rank processes ({type(e).__name__}: {e}); pass numpy "
                                  "arrays, numbers, strings, or lists / dicts of them") from None
        raise


def _sendable_result(rank: int, fn: Callable[..., Any], value: Any) -> Any:
    """``value`` if it can travel back to the launcher, else a LaunchError saying why."""
    try:
        pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as e:  # noqa: BLE001 - reported with its cause
        raise LaunchError(f"rank {rank}: the rank function {_callable_name(fn)} returned a "
                          f"{type(value).__module__}.{type(value).__qualname__} that cannot be pickled to send it to "
                          f"the launcher ({type(e).__name__}: {e}); {RESULT_REMEDY}") from None
    return value


def _sendable_error(rank: int, e: BaseException) -> BaseException:
    """``e`` if it survives a pickle round trip, else a RuntimeError carrying its text."""
    try:
        pickle.loads(pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL))
        return e
    except Exception:  # noqa: BLE001 - the text still travels
        return RuntimeError(f"rank {rank} raised {type(e).__name__} (which cannot be pickled): {e}")


def _child(rank: int, size: int, store_path: str, spec: bytes) -> None:
    store: Optional[FileStore] = None
    try:
        store = FileStore(store_path)
        s = pickle.loads(spec)
        if s.get("session"):
            os.environ[SESSION_ENV] = s["session"]
        os.environ.update({RANK_ENV: str(rank), SIZE_ENV: str(size), STORE_ENV: store_path})
        with ProcessWorld(rank, size, store, session=s.get("session", ""), **s["world"]) as w:
            store.set(f"ready/{rank}", str(w.backend).encode())
            value = _sendable_result(rank, s["fn"], w.run(s["fn"], *s["args"], **s["kwargs"])[rank])
        outcome = (True, value, time.time())
    except BaseException as e:  # noqa: BLE001 - handed back to the launcher
        outcome = (False, _sendable_error(rank, e), time.time(), traceback.format_exc())
        if store is not None and store.try_get("abort") is None:
            store.set("abort", f"rank {rank} raised {type(e).__name__}: {e}".encode())
    if store is not None:
        store.set(f"result/{rank}", pickle.dumps(outcome))


def _outcome(store: FileStore, rank: int) -> Optional[tuple]:
    """Rank ``rank``'s (ok, value or error, time, ...) from the store, or ``None`` if it has not posted one."""
    raw = store.try_get(f"result/{rank}")
    if raw is None:
        return None
    try:
        return pickle.loads(raw)
    except Exception as e:  # noqa: BLE001 - e.g. a class the launcher cannot import
        return (False, LaunchError(f"rank {rank}'s result cannot be unpickled in the launcher ({type(e).__name__}: "
                                   f"{e}); {RESULT_REMEDY}"), time.time(), "")


def launch(fn: Callable[..., Any], nprocs: int, *args: Any, backend: Optional[str] = None,
           groups: Optional[Mapping[str, Sequence[Sequence[int]]]] = None, tp_world_size: int = 0,
           devices: Optional[Sequence[int]] = None, timeout_s: float = 120.0, store_dir: Optional[str] = None,
           session: Optional[str] = None, **kwargs: Any) -> list:
    """Run ``fn(ctx, *args, **kwargs)`` once per rank, each rank in its own process; returns the results by rank.

    ``fn`` must be a function defined at module level in an importable module, and its arguments and result
    picklable: otherwise :class:`LaunchError` says which and why (for ``fn`` and its arguments before any
    process starts). Groups, devices and backend are as for :class:`World` (``ep_tp`` layouts:
    :func:`ep_tp_groups`). Communicator set-up waits up to ``HCCL_CONNECT_TIMEOUT`` for the other ranks
    (:func:`connect_timeout_s`), and fails at once when one of their processes died. If a rank raises, every
    other rank's collectives fail at once naming it; a rank whose process dies is named too. Then the
    first failure is raised, with ``.rank_errors`` (rank -> exception) attached. Every process ends within
    ``timeout_s`` of the first failure (stragglers are killed). ``session`` (default: random) names the
    simulator's shared memory (``/dev/shm/aclnn_sim_<session>_*``), removed at the end.
    """
    session = session or uuid.uuid4().hex[:16]
    spec = _pickled_spec(fn, args, kwargs, {
        "fn": fn, "args": args, "kwargs": kwargs, "session": session,
        "world": dict(backend=backend, groups=groups, tp_world_size=tp_world_size, devices=devices, timeout_s=timeout_s)})
    own_dir = store_dir is None
    path = store_dir or tempfile.mkdtemp(prefix="aclnn_py_store_")
    store = FileStore(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(r, nprocs, path, spec), name=f"aclnn_py-rank{r}", daemon=True)
             for r in range(nprocs)]
    try:
        for p in procs:
            p.start()
        outcomes: Dict[int, tuple] = {}
        first_failure: Optional[float] = None
        hard_deadline = time.monotonic() + 10 * 60 + timeout_s
        while len(outcomes) < nprocs:
            for r, p in enumerate(procs):
                if r in outcomes:
                    continue
                got = _outcome(store, r)
                if got is not None:
                    outcomes[r] = got
                elif p.exitcode is not None:
                    got = _outcome(store, r)
                    if got is not None:
                        outcomes[r] = got
                        continue
                    why = f"rank {r}'s process (pid {p.pid}) exited with code {p.exitcode} without a result"
                    outcomes[r] = (False, LaunchError(why), time.time(), "")
                    if store.try_get("abort") is None:
                        store.set("abort", why.encode())
                if r in outcomes and not outcomes[r][0] and first_failure is None:
                    first_failure = time.monotonic()
            now = time.monotonic()
            if (first_failure is not None and now - first_failure > timeout_s) or now > hard_deadline:
                for r, p in enumerate(procs):
                    if r not in outcomes:
                        p.kill()
                        outcomes[r] = (False, LaunchError(f"rank {r} did not finish within {timeout_s:g} s of the "
                                                          "first failure and was killed"), time.time(), "")
                break
            time.sleep(0.005)
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        if own_dir:
            shutil.rmtree(path, ignore_errors=True)
        for f in glob.glob(f"/dev/shm/aclnn_sim_{session}_*"):
            try:
                os.unlink(f)
            except OSError:
                pass
    failures = {r: o for r, o in outcomes.items() if not o[0]}
    if failures:
        errors = {r: o[1] for r, o in failures.items()}
        root = min(failures, key=lambda r: (isinstance(errors[r], CollectiveError) or "aborted" in str(errors[r]),
                                            failures[r][2]))
        err = errors[root]
        try:
            err.rank_errors = errors          # type: ignore[attr-defined]
            err.rank = root                   # type: ignore[attr-defined]
            if hasattr(err, "add_note"):
                err.add_note(f"(raised on rank {root} of {nprocs} processes)")
        except Exception:
            pass
        raise err
    return [outcomes[r][1] for r in range(nprocs)]


def launched() -> Optional[LaunchInfo]:
    """What :func:`~aclnn_py.orchestration.launchers.detect` finds when a launcher started this process as one rank
    of a job of several processes, else ``None`` (then the demos and the smoke suite run their ranks as threads)."""
    info = detect()
    return info if info is not None and info.size > 1 else None


def ep_tp_groups(ep_world_size: int, tp_world_size: int = 0) -> Dict[str, List[List[int]]]:
    """The groups of :meth:`World.ep_tp` (``ep``, ``ep_barrier``, ``tp``), for :func:`launch`."""
    tp = max(tp_world_size, 1)
    ep_groups = [[e * tp + t for e in range(ep_world_size)] for t in range(tp)]
    return {"ep": ep_groups, "ep_barrier": [list(g) for g in ep_groups],
            "tp": [[e * tp + t for t in range(tp)] for e in range(ep_world_size)]}


__all__ = ["launch", "launched", "ProcessWorld", "FileStore", "StoreRendezvous", "LaunchError", "ep_tp_groups",
           "connect_timeout_s"]
