"""Thread safety (issue 6): independent worlds in one process at once give correct results; a World refuses
to be run (or closed) from two threads at once instead of mixing their collectives."""
from __future__ import annotations

import dataclasses
import threading

import pytest

import aclnn_py
from aclnn_py.demos.scenario import Scenario, run

from conftest import live_objects

A = Scenario(name="A", ep_world_size=4, bs=4, h=1024, k=2, moe_expert_num=8, combine="add_rms_norm", seed=1)
B = Scenario(name="B", ep_world_size=2, tp_world_size=2, bs=3, h=2048, k=1, moe_expert_num=2, combine="combine",
             quant_mode=2, seed=2)
C = dataclasses.replace(A, name="C", removed=(2,), moe_expert_num=4, combine="combine", mask="2d", seed=3)


def _concurrently(jobs):
    """Run each (world, [scenarios]) job in its own thread, all at once; returns {name: [ok, ...]} and errors."""
    results, errors = {}, []
    barrier = threading.Barrier(len(jobs))

    def body(w, scenarios):
        try:
            barrier.wait()
            for _ in range(3):
                for sc in scenarios:
                    out = run(sc, w)
                    results.setdefault(sc.name, []).append(out.ok or out.failures()[:3])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=body, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a world hung"
    return results, errors


@pytest.mark.parametrize("same_devices", [False, True], ids=["own_devices", "shared_devices"])
def test_two_worlds_at_once(backend, same_devices):
    """Two Worlds (4 ranks each, on their own or on the same simulated devices) run different MoE pipelines
    at the same time, three times each; both match the reference bit for bit."""
    devs_b = [0, 1, 2, 3] if same_devices else [4, 5, 6, 7]
    with aclnn_py.World.ep_tp(4, backend=backend, timeout_s=30) as w1, \
            aclnn_py.World.ep_tp(2, 2, backend=backend, devices=devs_b, timeout_s=30) as w2:
        results, errors = _concurrently([(w1, [A, C]), (w2, [B])])
    assert not errors, errors
    assert results == {"A": [True] * 3, "C": [True] * 3, "B": [True] * 3}, results


def test_reference_and_device_worlds_at_once(sim):
    with aclnn_py.World.ep_tp(4, backend="reference") as w1, aclnn_py.World.ep_tp(4, backend="device") as w2:
        results, errors = _concurrently([(w1, [A]), (w2, [dataclasses.replace(A, name="A2")])])
    assert not errors, errors
    assert results == {"A": [True] * 3, "A2": [True] * 3}, results
    assert live_objects(sim) == {}


def test_one_world_refuses_concurrent_runs(backend):
    """A second World.run on the same World while one is running (another thread, or from inside a rank
    function) fails at once: the two runs' collectives would otherwise pair with each other."""
    started, release = threading.Event(), threading.Event()

    def slow(ctx):
        started.set()
        release.wait(10)

    with aclnn_py.World.ep_tp(2, backend=backend) as w:
        t = threading.Thread(target=w.run, args=(slow,))
        t.start()
        assert started.wait(10)
        with pytest.raises(RuntimeError, match="already running"):
            w.run(lambda ctx: None)
        with pytest.raises(RuntimeError, match="while World.run is running"):
            w.close()
        release.set()
        t.join(10)
        with pytest.raises(RuntimeError, match="already running"):
            w.run(lambda ctx: w.run(lambda c: None) if ctx.rank == 0 else None)
        assert run(dataclasses.replace(A, ep_world_size=2, moe_expert_num=4), w).ok   # still usable
