"""Helpers shared by tests/test_hardening_*.py (issue 6: bad input, leaks, hangs, buffers, processes)."""
from __future__ import annotations

import contextlib
import inspect
import os
import time
from typing import Iterator

import aclnn_py
from aclnn_py.consistency import check_across_ranks
from aclnn_py.demos.scenario import Scenario

# A small valid MoE configuration: 4 EP ranks, one expert each, H at its minimum.
SMALL = Scenario(name="small", ep_world_size=4, bs=4, h=1024, k=2, moe_expert_num=4, combine="combine")


def precheck_wired() -> bool:
    """True once the ops call :func:`aclnn_py.consistency.check_across_ranks` themselves."""
    from aclnn_py.ops import _moe_call, barrier
    return ("check_across_ranks" in inspect.getsource(_moe_call)
            and "check_across_ranks" in inspect.getsource(barrier))


def wire_precheck(monkeypatch) -> None:
    """Until the lead adds the one-line calls, put the pre-check where they will go (test-only shim):
    first thing in ``run_on_device`` / ``run_on_reference`` and right after the barrier's validation."""
    if precheck_wired():
        return
    import aclnn_py.ops.barrier as barrier
    import aclnn_py.ops.moe as moe
    on_device, on_reference = moe.run_on_device, moe.run_on_reference

    def run_on_device(op_name, kwargs, *args, **kw):
        check_across_ranks(op_name, kwargs)
        return on_device(op_name, kwargs, *args, **kw)

    def run_on_reference(op, kwargs, *args, **kw):
        check_across_ranks(op, kwargs)
        return on_reference(op, kwargs, *args, **kw)

    validate = barrier.validate

    class _Validate:
        def __getattr__(self, name):
            return getattr(validate, name)

        def distribute_barrier_v2(self, x_ref, **kw):
            validate.distribute_barrier_v2(x_ref, **kw)
            check_across_ranks(barrier.OP, dict(x_ref=x_ref, **kw))

    monkeypatch.setattr(moe, "run_on_device", run_on_device)
    monkeypatch.setattr(moe, "run_on_reference", run_on_reference)
    monkeypatch.setattr(barrier, "validate", _Validate())


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
    """One rank's dispatch -> combine (the Scenario pipeline), optionally failing on ``fail_rank``."""
    import os as _os
    import pytest as _pytest
    from aclnn_py.demos.scenario import run_rank
    if precheck:
        wire_precheck(_pytest.MonkeyPatch())   # this process's copy of the ops (until the lead wires it)
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
