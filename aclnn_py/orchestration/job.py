"""This process's place in a job started by a launcher (mpiexec, srun, torchrun, or by hand).

:meth:`Job.current` builds it once per process, from :func:`~aclnn_py.orchestration.launchers.detect`: the
launcher's coordinates, the device of this rank, the channel's :class:`~aclnn_py.orchestration.stores.Store`,
a heartbeat, and the simulator's shared-memory session. Every :meth:`ProcessWorld.from_env
<aclnn_py.ProcessWorld.from_env>` of the process uses it (each world in its own namespace of the store).

Liveness: each process raises a counter (``beat/<rank>``) every second from a thread, and posts
``exited/<rank>`` when it ends normally (at interpreter exit, or :meth:`Job.close`). A wait for another
rank fails, naming that rank, when its process has exited or its counter has not moved for
``ACLNN_PY_HEARTBEAT_TIMEOUT_S`` seconds (default 30: it died, or is stopped). Launchers usually act first:
mpiexec and torchrun end the whole job when one process dies.
"""
from __future__ import annotations

import atexit
import glob
import hashlib
import os
import sys
import threading
import time
import uuid
from typing import Dict, Optional, Sequence, Tuple

from .launchers import LaunchError, LaunchInfo, detect, device_for
from .stores import FileStore, MemoryStore, MpiStore, PrefixStore, Store, TorchStore

HEARTBEAT_ENV = "ACLNN_PY_HEARTBEAT_TIMEOUT_S"
DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0
SESSION_ENV = "ACLNN_SIM_SHM_SESSION"
EXIT_WAIT_S = 10.0        # at exit, how long a process waits for the others of its job to exit too
STORE_ENV = "ACLNN_PY_STORE"


def heartbeat_timeout_s() -> float:
    """``ACLNN_PY_HEARTBEAT_TIMEOUT_S`` (seconds, > 0), else 30."""
    raw = os.environ.get(HEARTBEAT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_HEARTBEAT_TIMEOUT_S
    return value if value > 0 else DEFAULT_HEARTBEAT_TIMEOUT_S


class Liveness:
    """Whether the processes of a job are still there, from what they post to the job's store.

    ``stale_after_s=None``: heartbeats are not looked at (a parent launcher watches the processes)."""

    def __init__(self, store: Store, stale_after_s: Optional[float]) -> None:
        self.store = store
        self.stale_after_s = stale_after_s
        self._seen: Dict[int, Tuple[bytes, float]] = {}     # rank -> (last counter, when this process saw it change)
        self._lock = threading.Lock()

    def job_abort(self) -> Optional[str]:
        """Why the job was aborted (a process died under :func:`aclnn_py.launch.launch`), or ``None``."""
        v = self.store.try_get("abort")
        return None if v is None else v.decode()

    def gone(self, ranks: Sequence[int]) -> Optional[Tuple[int, str]]:
        """``(rank, why)`` for the first of ``ranks`` whose process has exited or stopped beating, else ``None``."""
        found = self.status(ranks)
        return next(((r, found[r]) for r in ranks if r in found), None)

    def status(self, ranks: Sequence[int]) -> Dict[int, str]:
        """Why each of ``ranks`` that is gone is gone (its process exited, or stopped beating); one store read."""
        keys = [f"exited/{r}" for r in ranks] + ([f"beat/{r}" for r in ranks] if self.stale_after_s else [])
        got = self.store.get_many(keys) if keys else {}
        out = {r: got[f"exited/{r}"].decode() for r in ranks if f"exited/{r}" in got}
        now = time.monotonic()
        with self._lock:
            for r in ranks:
                beat = got.get(f"beat/{r}")
                if r in out or beat is None:
                    continue
                last = self._seen.get(r)
                if last is None or last[0] != beat:
                    self._seen[r] = (beat, now)
                elif now - last[1] > self.stale_after_s:
                    out[r] = (f"rank {r}'s process stopped responding: its heartbeat has not moved for "
                              f"{now - last[1]:.0f} s ({HEARTBEAT_ENV}={self.stale_after_s:g}); it died or is stopped")
        return out


class Heartbeat:
    """A daemon thread raising ``beat/<rank>`` every ``interval_s`` seconds until stopped."""

    def __init__(self, store: Store, rank: int, interval_s: float) -> None:
        self._store, self._key, self._interval = store, f"beat/{rank}", interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="aclnn_py-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                self._store.set(self._key, str(n).encode())
            except Exception:  # noqa: BLE001 - the store is gone: the job is ending
                return
            n += 1
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def open_store(info: LaunchInfo, connect_timeout_s: float) -> Store:
    """The :class:`Store` of ``info``'s channel (see :mod:`aclnn_py.orchestration.stores`)."""
    if info.channel == "memory":
        return MemoryStore()
    if info.channel == "file":
        path = os.environ.get(STORE_ENV, "")
        if not path:
            raise LaunchError(f"{info.launcher} launcher, channel file: set {STORE_ENV} to a directory every rank can "
                              "reach (one host: any directory; several hosts: a shared filesystem)")
        return FileStore(path)
    if info.channel == "tcp":
        return _torch_store(info, connect_timeout_s)
    store = MpiStore(reply_timeout_s=max(connect_timeout_s, 120.0))
    if (store.rank, store.size) != (info.rank, info.size):
        store.close()
        raise LaunchError(f"{info.launcher} launcher says rank {info.rank} of {info.size}, but MPI says rank "
                          f"{store.rank} of {store.size}: MPI does not see the launcher's processes (under srun, "
                          "use --mpi=pmix; or set ACLNN_PY_STORE to a shared directory to meet through files)")
    return store


def _torch_store(info: LaunchInfo, connect_timeout_s: float) -> Store:
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    if not addr or not port.isdigit():
        raise LaunchError(f"{info.launcher} launcher, channel tcp: MASTER_ADDR and MASTER_PORT must name the "
                          f"TCPStore (got {addr!r}, {port!r})")
    try:
        import torch.distributed  # noqa: F401
    except ImportError as e:
        raise LaunchError(f"the tcp channel (torchrun) needs torch.distributed ({e}); install torch, or set "
                          "ACLNN_PY_STORE to a shared directory to meet through files") from None
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "") == "True"
    base = TorchStore(addr, int(port), info.rank, info.size, connect_timeout_s, agent_store=agent)
    return _Owned(PrefixStore(base, f"aclnn_py/{info.job_id or 'job'}/"), base)


class _Owned(PrefixStore):
    """A namespace of a store this job opened (closing it closes the store)."""

    def __init__(self, view: PrefixStore, owner: Store) -> None:
        super().__init__(view.base, view.prefix)
        self.hosts_server = getattr(owner, "hosts_server", False)

    def close(self) -> None:
        self.base.close()


class Job:
    """This process's rank in a launched job, its channel, heartbeat and simulator session (one per process)."""

    _current: Optional["Job"] = None
    _lock = threading.Lock()

    def __init__(self, info: LaunchInfo, store: Store) -> None:
        from .launch import connect_timeout_s
        self.info, self.store = info, store
        self.rank, self.size = info.rank, info.size
        self.device = device_for(info)
        self.liveness = Liveness(store, heartbeat_timeout_s())
        self._heartbeat = Heartbeat(store, info.rank, min(1.0, heartbeat_timeout_s() / 5)) if info.size > 1 else None
        self._worlds = 0
        self._closed = False
        self._connect_timeout_s = connect_timeout_s()
        self.tag, self.session, self._own_session = self._agree_on_names()

    @classmethod
    def current(cls) -> "Job":
        """This process's job, created on first use from the launcher's environment (no launcher: a job of one
        process); closed at interpreter exit."""
        with cls._lock:
            if cls._current is None or cls._current._closed:
                from .launch import connect_timeout_s
                info = detect() or LaunchInfo("none", 0, 1, 0, 1, "", "memory")
                cls._current = Job(info, open_store(info, connect_timeout_s()))
                atexit.register(cls._current.close)
            return cls._current

    def _agree_on_names(self) -> Tuple[str, str, bool]:
        """(a name every process of the job shares, the simulator session, whether this job chose it).

        From the launcher's job id when it has one, else rank 0 draws one and posts it. The session is set in
        the environment before the simulator is loaded (``ACLNN_SIM_SHM_SESSION``), unless already set."""
        if self.info.job_id:
            tag = hashlib.sha1(f"{self.info.launcher}:{self.info.job_id}".encode()).hexdigest()[:16]
        elif self.rank == 0:
            tag = uuid.uuid4().hex[:16]
            self.store.set("job/tag", tag.encode())
        else:
            tag = self.store.wait("job/tag", self._connect_timeout_s, self._check_rank0).decode()
        if self.size == 1 or os.environ.get(SESSION_ENV):
            return tag, os.environ.get(SESSION_ENV, ""), False
        session = f"j{tag}"
        os.environ[SESSION_ENV] = session
        return tag, session, True

    def _check_rank0(self) -> Optional[LaunchError]:
        gone = self.liveness.gone([0])
        return None if gone is None else LaunchError(f"rank {self.rank} waited for rank 0 to name the job: {gone[1]}")

    def next_world(self) -> Tuple[Store, str]:
        """The namespace and the id of the next ProcessWorld of this process (every process creates its worlds
        in the same order, so the n-th world of each process meets the others' n-th)."""
        n, self._worlds = self._worlds, self._worlds + 1
        return PrefixStore(self.store, f"w{n}/"), f"{self.tag}_{n}"

    def close(self) -> None:
        """Post ``exited/<rank>`` and wait for every other process to be done: the process holding the channel
        (and, with a simulator session it chose, the first process of each host) as long as the set-up timeout,
        the others :data:`EXIT_WAIT_S` at most (torchrun and mpiexec end every process of the job when the first
        one exits after a failure: the others would be stopped before they report it); then stop (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.store.set(f"exited/{self.rank}", f"rank {self.rank}'s process has exited".encode())
            if getattr(self.store, "hosts_server", False) or self._cleans_session():
                self._wait_for_the_others(self._connect_timeout_s, live_ones_too=True)
            else:
                self._wait_for_the_others(EXIT_WAIT_S, live_ones_too=False)
            if self._cleans_session():
                for f in glob.glob(f"/dev/shm/aclnn_sim_{self.session}_*"):
                    _unlink(f)
        except Exception as e:  # noqa: BLE001 - at exit: say it, do not raise
            print(f"aclnn_py: rank {self.rank}: closing the job's channel: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            if self._heartbeat is not None:
                self._heartbeat.stop()
            self.store.close()

    def _cleans_session(self) -> bool:
        """This job chose the simulator session and this is the first process of its host."""
        local = self.info.local_rank if self.info.local_rank is not None else self.rank
        return self._own_session and local == 0

    def _wait_for_the_others(self, timeout_s: float, live_ones_too: bool) -> None:
        """Until every other process has exited or stopped beating, for ``timeout_s`` at most; then, with
        ``live_ones_too``, still for those that beat."""
        others = [r for r in range(self.size) if r != self.rank]
        deadline = time.monotonic() + timeout_s
        while others:
            done = self.liveness.status(others)
            others = [r for r in others if r not in done]
            if others and time.monotonic() > deadline:
                if not live_ones_too:
                    return
                beating = self.store.get_many([f"beat/{r}" for r in others])
                others = [r for r in others if f"beat/{r}" in beating]
            time.sleep(0.05)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


__all__ = ["Job", "Liveness", "Heartbeat", "open_store", "heartbeat_timeout_s"]
