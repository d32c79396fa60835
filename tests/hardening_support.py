"""Helpers shared by tests/test_hardening_*.py (issue 6: bad input, leaks, hangs, buffers, processes)."""
from __future__ import annotations

import contextlib
import os
import pickle
import re
import time
from pathlib import Path
from typing import Dict, Iterator, Tuple

import aclnn_py
from aclnn_py.demos.scenario import Scenario

# A small valid MoE configuration: 4 EP ranks, one expert each, H at its minimum.
SMALL = Scenario(name="small", ep_world_size=4, bs=4, h=1024, k=2, moe_expert_num=4, combine="combine")

# Time bounds of the failure tests: a bound checks that a failure is noticed without waiting for a timeout, so
# the timeout a regression would wait for (HANG_MS, set as ACLNN_SIM_HANG_TIMEOUT_MS and as the World's
# timeout_s) is far above the bound, and the bound far above what a loaded 2-core machine needs. Bounds start when
# every rank is up (a World is set up before Timer starts; processes: hardening_support.timeline) or at the event.
HANG_MS = "60000"
HANG_S = int(HANG_MS) / 1000
BOUND_S = 15.0


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    """Set environment variables (read by the simulator at each call) for the block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.monotonic() - self.t0


def names_missing(text: str, rank: int) -> bool:
    """``text`` says the collective gave up waiting for ``rank`` ("rank(s) 1,3 did not arrive ...": on a loaded
    machine a timeout may also name ranks that were merely late)."""
    missing = re.search(r"rank\(s\) ([\d,]+) did not arrive", text)
    return bool(missing) and str(rank) in missing.group(1).split(",")


def world(backend: str, ep: int = 4, tp: int = 0, timeout_s: float = 30.0) -> aclnn_py.World:
    return aclnn_py.World.ep_tp(ep, tp, backend=backend, timeout_s=timeout_s)


def rss_kib() -> int:
    """Resident set size of this process (KiB), from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- per-rank functions for aclnn_py.launch (module level, so the rank processes can import them) ----------
def mp_pipeline(ctx, sc, inputs, fail: str = "", fail_rank: int = -1, precheck: bool = True):
    """One rank's dispatch -> combine (the Scenario pipeline), optionally failing on ``fail_rank``; ``precheck``
    False turns the cross-rank pre-check off in this rank's process."""
    import os as _os
    from aclnn_py.demos.scenario import run_rank
    if not precheck:
        _os.environ["ACLNN_PY_PRECHECK"] = "0"
    if ctx.rank == fail_rank:
        if fail == "raise":
            raise ValueError(f"boom on rank {ctx.rank}")
        if fail == "crash":
            _os._exit(3)
        if fail == "return":
            return None
    out = run_rank(ctx, sc, inputs)
    return {k: v for k, v in out.items() if not k.startswith("time.")} | {"pid": _os.getpid(), "backend": ctx.backend}


def mp_probe(ctx):
    """The simulator's multi-process state in this rank's process (device backend)."""
    import ctypes
    import os as _os
    from aclnn_py.runtime.device import acl_init
    lib = acl_init()
    d = ctypes.CDLL(str(lib.install.op_common))
    d.sim_mp_enabled.restype = ctypes.c_int
    d.sim_mp_error.restype = ctypes.c_char_p
    return d.sim_mp_enabled(), d.sim_mp_error(), _os.environ.get("ACLNN_SIM_SHM_SESSION"), ctx.group("world")


def mp_rank(ctx, *args):
    """Does nothing but return the rank (for launches that test set-up and transport)."""
    return ctx.rank


def mp_unpicklable_result(ctx):
    """Returns something that cannot travel back to the launcher (a lock)."""
    import threading
    return {"rank": ctx.rank, "lock": threading.Lock()}


def _end_process_in(rank: int, code: int, sleep_s: float, stamps: str):
    import multiprocessing
    if multiprocessing.current_process().name == f"aclnn_py-rank{rank}":
        stamp(stamps, f"{rank}.gone")
        time.sleep(sleep_s)
        os._exit(code)
    return None


class EndProcessOnArrival:
    """An argument of ``launch`` that, when rank ``rank``'s process unpickles it (before it sets anything up),
    sleeps ``sleep_s`` and then ends that process with exit code ``code``; stamps ``<rank>.gone`` first."""

    def __init__(self, rank: int, stamps: str, code: int = 5, sleep_s: float = 0.0) -> None:
        self.args = (rank, code, sleep_s, stamps)

    def __reduce__(self):
        return (_end_process_in, self.args)


# ---- timing multi-process runs: wall-clock times reported by the ranks themselves (one host) ---------------------
def stamp(stamps: str, name: str, text: str = "") -> None:
    """Record ``time.time()`` (and ``text``) as ``name`` in the directory ``stamps``."""
    tmp = os.path.join(stamps, f".{name}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(f"{time.time()!r}\n{text}")
    os.replace(tmp, os.path.join(stamps, name))


def read_stamps(stamps: str) -> Dict[str, Tuple[float, str]]:
    out = {}
    for f in Path(stamps).iterdir():
        if not f.name.startswith("."):
            when, _, text = f.read_text().partition("\n")
            out[f.name] = (float(when), text)
    return out


def timeline(store_dir: str) -> Tuple[Dict[int, float], Dict[int, float]]:
    """For a ``launch(..., store_dir=store_dir)``: when each rank had its World set up (it then writes
    ``ready/<rank>``: every rank is up at ``max(up.values())``) and when it finished (its result, written after its
    function, its recovery and its clean-up), by rank, in wall-clock seconds."""
    def files(key: str) -> list:
        d = Path(store_dir, key)
        return [f for f in d.iterdir() if f.name.isdigit()] if d.is_dir() else []

    up = {int(f.name): f.stat().st_mtime for f in files("ready")}
    end = {int(f.name): pickle.loads(f.read_bytes())[2] for f in files("result")}
    return up, end


def mp_dies_in_collective(ctx, sc, inputs, stamps: str):
    """Rank 1 launches dispatch and kills its own process (SIGKILL) once ranks 0-2 all wait inside the device
    collective; rank 3 holds back until ranks 0 and 2 have failed (at most 30 s), then calls dispatch too.
    Stamps in ``stamps``: ``1.kill``, ``3.arrive``, and per failing rank ``<r>.fail`` (with the message) and
    ``<r>.recovered`` (after the World's recovery of this rank; its text: the seconds it took)."""
    import signal
    import aclnn_py
    from aclnn_py.demos.scenario import run_rank
    if ctx.rank == 1:
        inp = inputs[1]
        aclnn_py.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], group_ep=ctx.group("ep"),
                                            ep_rank_id=ctx.ep_rank, sync=False, **sc.attributes())
        hooks = ctx.world.sim_hooks()
        comm = next(c for c, name in ctx.world._comm_names.items() if name == ctx.group("ep"))
        while hooks.in_flight(comm) < 3:
            time.sleep(0.001)
        stamp(stamps, "1.kill")
        os.kill(os.getpid(), signal.SIGKILL)
    if ctx.rank == 3:
        deadline = time.monotonic() + 30
        while not all(os.path.exists(os.path.join(stamps, f"{r}.fail")) for r in (0, 2)) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        stamp(stamps, "3.arrive")
    try:
        return run_rank(ctx, sc, inputs)
    except BaseException as e:
        stamp(stamps, f"{ctx.rank}.fail", str(e))
        t0 = time.monotonic()
        ctx.world._recover_device([ctx.rank])
        stamp(stamps, f"{ctx.rank}.recovered", repr(time.monotonic() - t0))
        raise
