"""Multi-process worlds (issue 6): ranks as separate processes, root info shared through a file store, the
same per-rank code as the threaded World; dispatch/combine on 4 processes on the simulator (device memory
and communicators in shared memory) and on the reference backend; failures named across processes."""
from __future__ import annotations

import dataclasses
import glob
import uuid

import pytest

from aclnn_py.demos.common import compare
from aclnn_py.demos.scenario import run_reference
from aclnn_py.errors import AclnnPyError
from aclnn_py.launch import LaunchError, launch, ep_tp_groups

from hardening_support import SMALL, Timer, env, mp_pipeline

ARN = dataclasses.replace(SMALL, combine="add_rms_norm", removed=(2,), barrier=True, seed=5)


@pytest.fixture(params=["reference", "device"])
def mp_backend(request, cann_sim_home, monkeypatch):
    if request.param == "device":
        monkeypatch.setenv("ACLNN_PY_CANN_HOME", str(cann_sim_home))
    return request.param


def _check(sc, inputs, got):
    want = run_reference(sc, inputs)
    for g in range(sc.world_size):
        if want[g] is None:
            assert got[g] is None
            continue
        bad = [k for k in want[g] if not compare(k, got[g][k], want[g][k])["ok"]]
        assert not bad, f"rank {g}: {bad}"


def _leftovers(session: str) -> list:
    return glob.glob(f"/dev/shm/aclnn_sim_{session}_*")


def test_dispatch_combine_on_four_processes(mp_backend):
    """4 processes, one rank each: DispatchV3 -> CombineV3, then an elastic DistributeBarrierV2 + AddRmsNorm run;
    every output equals the reference bit for bit, and the ranks really are different processes."""
    session = f"t{uuid.uuid4().hex[:12]}"
    for sc in (SMALL, ARN):
        inputs = sc.inputs()
        got = launch(mp_pipeline, 4, sc, inputs, fail="return" if sc.removed else "",
                     fail_rank=sc.removed[0] if sc.removed else -1, backend=mp_backend,
                     groups=ep_tp_groups(4), timeout_s=20, session=session)
        live = [g for g in range(4) if g not in sc.removed]
        assert len({got[g]["pid"] for g in live}) == len(live)
        assert all(got[g]["backend"] == mp_backend for g in live)
        _check(sc, inputs, got)
    assert not _leftovers(session), "shared memory left behind"


@pytest.mark.parametrize("fail", ["raise", "crash"])
def test_failing_process_is_named_on_every_rank(mp_backend, fail):
    """Rank 2 raises (or its process dies) before launching: every other process fails at once, naming it."""
    inputs, session = SMALL.inputs(), f"t{uuid.uuid4().hex[:12]}"
    with env(ACLNN_SIM_HANG_TIMEOUT_MS="15000"), Timer() as t, pytest.raises((ValueError, LaunchError)) as e:
        launch(mp_pipeline, 4, SMALL, inputs, fail=fail, fail_rank=2, backend=mp_backend, groups=ep_tp_groups(4),
               timeout_s=15, session=session)
    assert t.elapsed < 10, f"took {t.elapsed:.1f} s"
    errors = e.value.rank_errors
    assert e.value.rank == 2 and sorted(errors) == [0, 1, 2, 3], errors
    want = "boom on rank 2" if fail == "raise" else "rank 2"
    for r in (0, 1, 3):
        assert isinstance(errors[r], AclnnPyError), repr(errors[r])
        assert want in str(errors[r]), str(errors[r])
    assert not _leftovers(session)


def test_missing_process_bounded_without_precheck(cann_sim_home, monkeypatch):
    """Rank 3's function returns without calling dispatch and no host pre-check runs: the simulator's
    collective in the other processes gives up after ACLNN_SIM_HANG_TIMEOUT_MS naming rank 3."""
    monkeypatch.setenv("ACLNN_PY_CANN_HOME", str(cann_sim_home))
    inputs = SMALL.inputs()
    with env(ACLNN_SIM_HANG_TIMEOUT_MS="1500", ACLNN_PY_PRECHECK="0"), Timer() as t, \
            pytest.raises(AclnnPyError) as e:
        launch(mp_pipeline, 4, SMALL, inputs, fail="return", fail_rank=3, precheck=False, backend="device",
               groups=ep_tp_groups(4), timeout_s=15)
    assert t.elapsed < 10
    for r in (0, 1, 2):
        assert "3" in str(e.value.rank_errors[r]), str(e.value.rank_errors[r])


def test_dead_process_detected_by_the_simulator(cann_sim_home, monkeypatch):
    """Rank 1's process dies while the others wait inside the device collective (no host pre-check): the
    simulator sees the process is gone and fails the collective naming it, long before the hang timeout."""
    monkeypatch.setenv("ACLNN_PY_CANN_HOME", str(cann_sim_home))
    inputs = SMALL.inputs()
    with env(ACLNN_SIM_HANG_TIMEOUT_MS="20000", ACLNN_PY_PRECHECK="0"), Timer() as t, \
            pytest.raises(LaunchError) as e:
        launch(mp_pipeline, 4, SMALL, inputs, fail="crash", fail_rank=1, precheck=False, backend="device",
               groups=ep_tp_groups(4), timeout_s=20)
    assert t.elapsed < 10, f"took {t.elapsed:.1f} s"
    for r in (0, 2, 3):
        err = str(e.value.rank_errors[r])
        assert "rank 1" in err and ("has exited" in err or "exited with code" in err), err
