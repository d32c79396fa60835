"""No leaks (issue 6): after thousands of calls, including failing ones and interrupted worlds, the
simulator reports zero live objects, no thread is left behind and the process RSS is flat."""
from __future__ import annotations

import dataclasses
import gc
import os
import signal
import threading
import time

import numpy as np
import pytest

import aclnn_py
from aclnn_py.demos.scenario import run, run_rank
from aclnn_py.errors import AclnnPyError
from aclnn_py.runtime.tensor import DeviceTensor

from conftest import live_objects
from hardening_support import BOUND_S, HANG_MS, HANG_S, SMALL, env, rss_kib, world

TRANSIENT = ("buffer", "tensor", "executor", "array", "host_buffer", "event")
ROUNDS = int(os.environ.get("ACLNN_PY_LEAK_ROUNDS", "24"))


def _threads() -> int:
    """OS threads of this process (the simulator's stream workers included)."""
    return len(os.listdir("/proc/self/task"))


def _transient(lib) -> dict:
    return {k: v for k, v in live_objects(lib).items() if k in TRANSIENT}


def _bad_ids_on_device(ctx):
    """Out-of-range ids in a device tensor: the host cannot see them, the kernel refuses them at run time."""
    d = SMALL.inputs()[ctx.rank]
    ids = DeviceTensor.from_numpy(np.full_like(d["expert_ids"], 7 if ctx.rank == 0 else 1))
    try:
        out = aclnn_py.moe_distribute_dispatch_v3(d["x"], ids, group_ep=ctx.group("ep"), ep_world_size=4,
                                                  ep_rank_id=ctx.ep_rank, moe_expert_num=4)
        for t in out:
            t.free()
    finally:
        ids.free()


def _invalid_calls(ctx, n: int) -> int:
    """``n`` calls that validation rejects (nothing may stay allocated); returns how many raised."""
    d = SMALL.inputs()[ctx.rank]
    raised = 0
    for i in range(n):
        kw = dict(group_ep=ctx.group("ep"), ep_world_size=4, ep_rank_id=ctx.ep_rank, moe_expert_num=4)
        bad = [dict(x=d["x"].astype(np.float32)), dict(moe_expert_num=3), dict(group_ep=""),
               dict(expert_ids=d["expert_ids"][:, :0])][i % 4]
        args = dict(x=d["x"], expert_ids=d["expert_ids"], **kw)
        args.update(bad)
        try:
            aclnn_py.moe_distribute_dispatch_v3(args.pop("x"), args.pop("expert_ids"), **args)
        except aclnn_py.AclnnError:
            raised += 1
    return raised


def _raise_mid_pipeline(ctx, inputs):
    """Rank 2 fails after dispatch: its peers are inside combine; dispatch outputs must still be freed."""
    if ctx.rank == 2:
        d = inputs[2]
        out = aclnn_py.moe_distribute_dispatch_v3(d["x"], d["expert_ids"], group_ep=ctx.group("ep"), ep_world_size=4,
                                                  ep_rank_id=2, moe_expert_num=4)
        for t in out:
            t.free()
        raise RuntimeError("rank 2 gave up before combine")
    return run_rank(ctx, SMALL, inputs)


def _one_round(w: aclnn_py.World, inputs) -> int:
    """One round of the mix; returns the number of op calls it made (all ranks)."""
    calls = 0
    for sc in (SMALL, dataclasses.replace(SMALL, removed=(3,)), dataclasses.replace(SMALL, barrier=True)):
        assert run(sc, w).ok
        calls += 2 * (4 - len(sc.removed)) + (4 if sc.barrier else 0)
    with pytest.raises(AclnnPyError):
        w.run(_bad_ids_on_device)          # kernel-side failure on every rank
    calls += 4
    with pytest.raises(RuntimeError):
        w.run(_raise_mid_pipeline, inputs)  # an interrupted run (abort, then recovery)
    calls += 8
    raised = w.run(_invalid_calls, 10)
    assert raised == [10] * 4
    calls += 40
    return calls


def test_thousands_of_calls_leave_nothing_behind_on_the_simulator(sim):
    """~2,000 calls (successful, rejected by validation, failing in the kernel, aborted by a peer) on a long-lived
    World plus World churn: transient objects never above what the output pools keep after the first round, back
    to zero once the pools are released, nothing alive after close, no stream worker thread left, RSS flat over
    the second half."""
    inputs = SMALL.inputs()
    threads0 = _threads()
    calls = 0
    rss = []
    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS):
        with world("device", timeout_s=HANG_S) as w:
            pooled = None
            for i in range(ROUNDS):
                calls += _one_round(w, inputs)
                now = _transient(sim)
                pooled = pooled or now
                assert all(now.get(k, 0) <= n for k, n in pooled.items()) and now.keys() <= pooled.keys(), \
                    f"round {i}: {now}, pools held {pooled} after round 0"
                if i % 8 == 7:
                    w.release_cached()
                    assert _transient(sim) == {}, f"round {i}, pools released: {_transient(sim)}"
                if i in (ROUNDS // 4, ROUNDS // 2, ROUNDS - 1):
                    gc.collect()
                    rss.append(rss_kib())
        for _ in range(6):                   # World churn, half of them interrupted by a failing rank
            with world("device", timeout_s=HANG_S) as w2:
                assert run(SMALL, w2).ok
                with pytest.raises(RuntimeError):
                    w2.run(_raise_mid_pipeline, inputs)
            calls += 16
    assert calls >= 1500, calls
    gc.collect()
    assert live_objects(sim) == {}
    deadline = time.monotonic() + 5
    while _threads() > threads0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _threads() <= threads0, f"{_threads() - threads0} threads left behind"
    growth = rss[-1] - rss[1]
    print(f"RSS over the second half: {rss} KiB, growth {growth} KiB after {calls} calls")
    assert growth < 3 * 1024, f"RSS grew by {growth} KiB over the second half ({rss} KiB) after {calls} calls"


def test_thousands_of_calls_flat_on_the_reference():
    """The same mix on the reference backend: the rendezvous keeps no slots, RSS flat."""
    inputs = SMALL.inputs()
    rss = []
    with world("reference", timeout_s=HANG_S) as w:
        for i in range(ROUNDS):
            assert run(SMALL, w).ok and run(dataclasses.replace(SMALL, removed=(3,)), w).ok
            with pytest.raises(RuntimeError):
                w.run(_raise_mid_pipeline, inputs)
            assert w.run(_invalid_calls, 20) == [20] * 4

            def caught(ctx):  # a failed collective whose error the rank function catches: no slot may linger
                if ctx.rank == 3:
                    return None
                try:
                    run_rank(ctx, SMALL, inputs)
                except AclnnPyError:
                    return "caught"
            assert w.run(caught)[:3] == ["caught"] * 3
            assert not w.rendezvous._slots, w.rendezvous._slots.keys()
            if i in (ROUNDS // 2, ROUNDS - 1):
                gc.collect()
                rss.append(rss_kib())
    assert rss[-1] - rss[0] < 3 * 1024, rss


def test_world_dropped_without_close_is_released(sim):
    """A World the user forgets to close (e.g. an exception between creation and ``with``) is released
    when it is garbage-collected: streams, contexts, communicators and their threads."""
    threads0 = _threads()
    w = world("device")
    assert run(SMALL, w).ok
    assert live_objects(sim)  # streams, contexts, comms
    del w
    gc.collect()
    assert live_objects(sim) == {}
    deadline = time.monotonic() + 5
    while _threads() > threads0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _threads() <= threads0


@pytest.mark.parametrize("backend_name", ["reference", "device"])
def test_interrupted_run_stops_every_rank(backend_name, request):
    """Ctrl-C while ranks wait in a collective: World.run aborts them, waits for them, re-raises the
    KeyboardInterrupt; the World is usable afterwards and closes cleanly."""
    if backend_name == "device":
        lib = request.getfixturevalue("sim")
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")
    inputs = SMALL.inputs()
    main = threading.main_thread().ident

    def fn(ctx):
        if ctx.rank == 3:  # never joins; interrupts the launcher instead (and stays away a while)
            time.sleep(0.2)
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(1.0)
            return None
        return run_rank(ctx, SMALL, inputs)

    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS, ACLNN_PY_PRECHECK="0"), world(backend_name, timeout_s=HANG_S) as w:
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            w.run(fn)
        assert time.monotonic() - t0 < BOUND_S
        assert sorted(w.last_errors) == [0, 1, 2], w.last_errors
        for e in w.last_errors.values():
            assert "interrupted by KeyboardInterrupt" in str(e), str(e)
        assert run(SMALL, w).ok
    if backend_name == "device":
        assert live_objects(lib) == {}
