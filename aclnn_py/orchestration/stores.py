"""Where the processes of a job meet: byte values under ``/``-separated keys, one store per job.

The ranks post and read the HCCL root info of every group, the host rendezvous (pre-check, reference
backend), failure signals and heartbeats through a :class:`Store`. Each launcher has its channel, and
aclnn_py speaks no network protocol of its own:

* ``file`` -- :class:`FileStore`: files in a directory (one host, or a shared filesystem);
  :func:`aclnn_py.launch.launch` and the ``ACLNN_PY_*`` variables use it.
* ``tcp`` -- :class:`TorchStore`: ``torch.distributed.TCPStore`` at ``MASTER_ADDR:MASTER_PORT``, as
  torchrun sets it up (the agent's store when ``TORCHELASTIC_USE_AGENT_STORE=True``, else rank 0 hosts it).
* ``mpi`` -- :class:`MpiStore`: rank 0's process holds the keys and answers point-to-point MPI messages
  (mpi4py, the ``aclnn_py[mpi]`` extra).

Waiting is polling with growing sleeps (:meth:`Store.wait_many`), with a ``check`` callback that says when to
give up (a failed or vanished rank); no store call blocks without a bound.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from .launchers import LaunchError

# Called with the keys still missing; returns why they never will appear (or None). The wait raises that only if
# the keys are still missing at the next read: a rank that posts and then exits is not taken for one that never
# posted.
Check = Callable[[Sequence[str]], Optional[BaseException]]


class Store:
    """Byte values under string keys, shared by every process of a job (subclasses: one per channel)."""

    max_poll_s = 0.02          # longest sleep between two polls of a wait

    def set(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    def get_many(self, keys: Sequence[str]) -> Dict[str, bytes]:
        """The values of those of ``keys`` that exist (one round trip on remote stores)."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (idempotent)."""

    def try_get(self, key: str) -> Optional[bytes]:
        return self.get_many([key]).get(key)

    def exists(self, key: str) -> bool:
        return self.try_get(key) is not None

    def wait_many(self, keys: Sequence[str], timeout_s: float, check: Optional[Check] = None) -> Dict[str, bytes]:
        """Every value of ``keys`` once all exist. Between polls ``check(missing keys)`` may return an exception:
        it is raised if the keys are still missing at the next read (so a value posted before its poster
        vanished is still taken). Raises ``TimeoutError`` after ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        got: Dict[str, bytes] = {}
        delay = 0.0005
        verdict: Optional[BaseException] = None
        while True:
            missing = [k for k in keys if k not in got]
            got.update(self.get_many(missing))
            missing = [k for k in missing if k not in got]
            if not missing:
                return got
            if verdict is not None:
                raise verdict
            verdict = check(missing) if check is not None else None
            if verdict is not None:
                continue                      # read once more, then raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"store keys {missing!r} did not appear within {timeout_s:g} s")
            time.sleep(delay)
            delay = min(delay * 2, self.max_poll_s)

    def wait(self, key: str, timeout_s: float, check: Optional[Callable[[], Optional[BaseException]]] = None) -> bytes:
        """The value of ``key`` once it exists; ``check()`` as for :meth:`wait_many`."""
        return self.wait_many([key], timeout_s, None if check is None else (lambda missing: check()))[key]


class FileStore(Store):
    """Keys are files under ``path`` (written atomically: a temporary file, then a rename)."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)

    def _file(self, key: str) -> str:
        return os.path.join(self.path, *key.split("/"))

    def set(self, key: str, value: bytes) -> None:
        f = self._file(key)
        os.makedirs(os.path.dirname(f), exist_ok=True)
        tmp = f"{f}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(value)
        os.replace(tmp, f)

    def get_many(self, keys: Sequence[str]) -> Dict[str, bytes]:
        out = {}
        for key in keys:
            try:
                with open(self._file(key), "rb") as fh:
                    out[key] = fh.read()
            except FileNotFoundError:
                pass
        return out

    def exists(self, key: str) -> bool:
        return os.path.exists(self._file(key))

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._file(key))
        except FileNotFoundError:
            pass


class MemoryStore(Store):
    """A dict: the store of a one-process job (no launcher)."""

    def __init__(self) -> None:
        self._data: Dict[str, bytes] = {}
        self._lock = threading.Lock()

    def set(self, key: str, value: bytes) -> None:
        with self._lock:
            self._data[key] = bytes(value)

    def get_many(self, keys: Sequence[str]) -> Dict[str, bytes]:
        with self._lock:
            return {k: self._data[k] for k in keys if k in self._data}

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def apply(self, op: str, args: tuple):
        """One request of :class:`MpiStore`'s protocol (``set``, ``get`` or ``del``) on this dict."""
        if op == "set":
            return self.set(*args)
        if op == "get":
            return self.get_many(*args)
        if op == "del":
            return self.delete(*args)
        raise ValueError(f"unknown store request {op!r}")


class PrefixStore(Store):
    """The keys of ``base`` that start with ``prefix`` (a namespace: one per ProcessWorld of a job)."""

    def __init__(self, base: Store, prefix: str) -> None:
        self.base, self.prefix = base, prefix
        self.max_poll_s = base.max_poll_s

    def set(self, key: str, value: bytes) -> None:
        self.base.set(self.prefix + key, value)

    def get_many(self, keys: Sequence[str]) -> Dict[str, bytes]:
        got = self.base.get_many([self.prefix + k for k in keys])
        return {k[len(self.prefix):]: v for k, v in got.items()}

    def delete(self, key: str) -> None:
        self.base.delete(self.prefix + key)


class TorchStore(Store):
    """``torch.distributed.TCPStore`` (the store torchrun's ``env://`` rendezvous uses).

    ``agent_store``: the torchrun agent hosts the server (``TORCHELASTIC_USE_AGENT_STORE=True``); otherwise
    rank 0 hosts it (then rank 0 must outlive the others' use of it: :class:`~aclnn_py.orchestration.job.Job`
    waits for them).
    """

    max_poll_s = 0.05

    def __init__(self, host: str, port: int, rank: int, size: int, timeout_s: float, agent_store: bool) -> None:
        from datetime import timedelta
        from torch.distributed import TCPStore
        self.hosts_server = not agent_store and rank == 0
        self._store = TCPStore(host, port, size, is_master=self.hosts_server, timeout=timedelta(seconds=timeout_s),
                               wait_for_workers=False, multi_tenant=True)

    def set(self, key: str, value: bytes) -> None:
        self._store.set(key, value)

    def get_many(self, keys: Sequence[str]) -> Dict[str, bytes]:
        if not keys:
            return {}
        present = list(keys) if self._store.check(list(keys)) else [k for k in keys if self._store.check([k])]
        return dict(zip(present, self._store.multi_get(present))) if present else {}

    def delete(self, key: str) -> None:
        self._store.delete_key(key)

    def close(self) -> None:
        self._store = None


class _Request:
    """A request of one of this process's threads, until :class:`MpiStore`'s thread hands back the reply."""

    def __init__(self, seq: int, op: str, args: tuple) -> None:
        self.seq, self.op, self.args = seq, op, args
        self.done = threading.Event()
        self.ok, self.value = False, None

    def deliver(self, ok: bool, value) -> None:
        self.ok, self.value = ok, value
        self.done.set()


class MpiStore(Store):
    """The keys live in rank 0's process; the other processes reach them with MPI point-to-point messages.

    One thread per process (``aclnn_py-mpi``) makes every MPI call of the store, on a duplicate of
    ``MPI_COMM_WORLD`` (created once, collectively, when the job starts): no MPI call from two threads at once
    (``MPI_THREAD_SERIALIZED`` is enough; a program that calls MPI itself, concurrently, needs
    ``MPI_THREAD_MULTIPLE``, which mpi4py asks for by default), and no collective call afterwards, so a rank
    that fails cannot leave the others stuck in one. On rank 0 the thread answers every process's requests
    from a dict (rank 0's own threads use the dict directly); elsewhere it forwards this process's requests
    and hands back the replies. It never makes a blocking MPI call: it probes and tests with short sleeps in
    between (Open MPI spins inside blocking calls, which would take a core from the ranks on a busy host).
    A request without a reply within ``reply_timeout_s`` (rank 0's process died or hangs) raises
    :class:`LaunchError` naming rank 0.
    """

    TAG_REQUEST, TAG_REPLY = 0xACA1, 0xACA2
    max_poll_s = 0.02

    def __init__(self, reply_timeout_s: float = 120.0) -> None:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise LaunchError(f"the mpi channel needs mpi4py ({e}): pip install 'aclnn_py[mpi]' (mpi4py, built for "
                              "the MPI library mpiexec belongs to)") from None
        if MPI.Query_thread() < MPI.THREAD_SERIALIZED:
            raise LaunchError("the mpi channel makes MPI calls from its own thread, but MPI was initialised with "
                              f"thread level {MPI.Query_thread()} (< MPI_THREAD_SERIALIZED); let mpi4py initialise "
                              "MPI (it asks for MPI_THREAD_MULTIPLE) or call MPI.Init_thread() yourself")
        self._mpi = MPI
        self._comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        self.hosts_server = self.rank == 0
        self.reply_timeout_s = reply_timeout_s
        self._data = MemoryStore()
        self._queue: "queue.Queue[Optional[_Request]]" = queue.Queue()
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._failure: Optional[str] = None
        self._thread = threading.Thread(target=self._loop, name="aclnn_py-mpi", daemon=True)
        self._thread.start()

    # -- the Store API ----------------------------------------------------------------------------------------
    def set(self, key: str, value: bytes) -> None:
        self._call("set", key, bytes(value))

    def get_many(self, keys: Sequence[str]) -> Dict[str, bytes]:
        return self._call("get", list(keys)) if keys else {}

    def delete(self, key: str) -> None:
        self._call("del", key)

    def close(self) -> None:
        """Stop the thread once its replies went out (rank 0: call it after every other process is done)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._queue.put(None)
        self._thread.join(30)

    def _call(self, op: str, *args):
        if self.hosts_server:
            return self._data.apply(op, args)
        if self._failure is not None or self._stop.is_set():
            raise LaunchError(f"aclnn_py's MPI store is unusable: {self._failure or 'it was closed'}")
        req = _Request(next(self._seq), op, args)
        self._queue.put(req)
        if not req.done.wait(self.reply_timeout_s):
            raise LaunchError(f"rank 0's process, which holds aclnn_py's store for this MPI job, did not answer within "
                              f"{self.reply_timeout_s:g} s: it died or hangs")
        if not req.ok:
            raise LaunchError(f"aclnn_py's MPI store: {req.value}")
        return req.value

    # -- the thread -------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            (self._serve if self.hosts_server else self._forward)()
        except BaseException as e:  # noqa: BLE001 - every waiting caller gets it
            self._failure = f"its MPI thread failed: {type(e).__name__}: {e}"

    def _serve(self) -> None:
        """Rank 0: answer requests until closed, then let the last replies go out."""
        comm, status = self._comm, self._mpi.Status()
        sends: List = []
        delay = 0.0
        while not (self._stop.is_set() and not sends):
            moved = False
            while comm.iprobe(source=self._mpi.ANY_SOURCE, tag=self.TAG_REQUEST, status=status):
                source = status.Get_source()
                seq, op, args = comm.recv(source=source, tag=self.TAG_REQUEST)
                try:
                    reply = (seq, True, self._data.apply(op, args))
                except Exception as e:  # noqa: BLE001 - goes back to the requester
                    reply = (seq, False, f"{type(e).__name__}: {e}")
                sends.append(comm.isend(reply, dest=source, tag=self.TAG_REPLY))
                moved = True
            sends = [s for s in sends if not s.Test()]
            delay = _pause(moved, delay)

    def _forward(self) -> None:
        """Ranks > 0: send this process's requests to rank 0, hand back the replies."""
        comm = self._comm
        pending: Dict[int, _Request] = {}
        sends: List = []
        delay = 0.0
        closing = False
        while not (closing and not pending and not sends):
            moved = False
            for req in _drain(self._queue, block=not (pending or sends or closing)):
                if req is None:
                    closing = True
                    continue
                sends.append(comm.isend((req.seq, req.op, req.args), dest=0, tag=self.TAG_REQUEST))
                pending[req.seq] = req
                moved = True
            while comm.iprobe(source=0, tag=self.TAG_REPLY):
                seq, ok, value = comm.recv(source=0, tag=self.TAG_REPLY)
                pending.pop(seq).deliver(ok, value)
                moved = True
            sends = [s for s in sends if not s.Test()]
            delay = _pause(moved, delay)


def _drain(q: "queue.Queue", block: bool) -> List:
    """Everything queued now; with ``block``, wait up to 0.1 s for the first item."""
    items = []
    try:
        items.append(q.get(timeout=0.1) if block else q.get_nowait())
        while True:
            items.append(q.get_nowait())
    except queue.Empty:
        pass
    return items


def _pause(moved: bool, delay: float) -> float:
    """Sleep between two polls of the MPI thread: none after progress, then growing from 50 us to 2 ms."""
    if moved:
        return 0.0
    delay = min(max(delay * 2, 50e-6), 2e-3)
    time.sleep(delay)
    return delay


__all__ = ["Store", "FileStore", "MemoryStore", "PrefixStore", "TorchStore", "MpiStore"]
