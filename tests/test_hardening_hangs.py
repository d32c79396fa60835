"""No silent hangs (issue 6): a collective where one rank never arrives, raises, or passes different
parameters fails on every rank within a bounded time, naming the rank, on both backends.

Also the exchange-index drift after elastic scale-down (an elastic op, then a full-group op on the
same World) and recovery: a World stays usable after a failed run.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import aclnn_py
from aclnn_py.orchestration.precheck import InconsistentParametersError
from aclnn_py.demos.scenario import run, run_rank
from aclnn_py.errors import AclnnPyError
from aclnn_py.layout import make_elastic_info

from hardening_support import BOUND_S, HANG_MS, HANG_S, SMALL, Timer, env, names_missing, world

ELASTIC = dataclasses.replace(SMALL, removed=(3,))


def _errors_name(w: aclnn_py.World, ranks, *needles: str) -> None:
    """Every rank in ``ranks`` failed, and each message names what it must."""
    assert sorted(w.last_errors) == sorted(ranks), w.last_errors
    for r, e in w.last_errors.items():
        assert isinstance(e, AclnnPyError), (r, repr(e))
        for n in needles:
            assert n in str(e), (r, str(e))


# ---- known problem 1: per-participant-set call index ------------------------------------------------
def test_elastic_then_full_group_on_one_world(backend):
    """Elastic dispatch/combine (rank 3 removed), then full-group ones, alternating, on the same World.
    With one call index per rank the removed rank falls behind and the next full call deadlocks."""
    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS), world(backend, timeout_s=HANG_S) as w, Timer() as t:
        for sc in (ELASTIC, SMALL, ELASTIC, ELASTIC, SMALL):
            out = run(sc, w)
            assert out.ok, out.failures()[:5]
    assert t.elapsed < BOUND_S, f"took {t.elapsed:.1f} s: a collective waited for its timeout"


def test_elastic_barrier_then_full_barrier(backend):
    info = make_elastic_info(4, [1])

    def barrier(ctx, elastic_info):
        return aclnn_py.distribute_barrier_v2(np.zeros((2, 2), np.float32), group=ctx.group("ep_barrier"),
                                              world_size=4, elastic_info=elastic_info)

    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS), world(backend, timeout_s=HANG_S) as w, Timer() as t:
        w.run(barrier, info, ranks=[0, 2, 3])
        w.run(barrier, None)
        w.run(barrier, info, ranks=[0, 2, 3])
        w.run(barrier, None)
    assert t.elapsed < BOUND_S, f"took {t.elapsed:.1f} s"


# ---- known problem 2: a rank that raises before launching -------------------------------------------
@pytest.mark.parametrize("precheck", ["0", "1"], ids=["no_precheck", "precheck"])
def test_rank_raising_before_launch_fails_every_rank_fast(backend, precheck, monkeypatch):
    """Rank 2 raises in Python before dispatch; the others are (or are about to be) inside the
    collective. Without the abort they would wait for the hang timeout (HANG_MS)."""
    inputs = SMALL.inputs()

    def fn(ctx):
        if ctx.rank == 2:
            raise ValueError("boom on rank 2")
        return run_rank(ctx, SMALL, inputs)

    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS, ACLNN_PY_PRECHECK=precheck), world(backend, timeout_s=HANG_S) as w:
        with Timer() as t, pytest.raises(ValueError, match="boom on rank 2"):
            w.run(fn)
        assert t.elapsed < BOUND_S, f"other ranks waited {t.elapsed:.1f} s"
        assert sorted(w.last_errors) == [0, 1, 2, 3]
        for r in (0, 1, 3):
            assert isinstance(w.last_errors[r], AclnnPyError), repr(w.last_errors[r])
            assert "raised ValueError: boom on rank 2" in str(w.last_errors[r])
        assert run(SMALL, w).ok  # the World recovered


@pytest.mark.parametrize("precheck", ["0", "1"], ids=["no_precheck", "precheck"])
def test_validation_error_on_one_rank_fails_every_rank_fast(backend, precheck, monkeypatch):
    """Rank 1 alone passes a float32 x (161002 naming 'x'); the others must not hang."""
    inputs = SMALL.inputs()
    inputs[1] = dict(inputs[1], x=inputs[1]["x"].astype(np.float32))
    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS, ACLNN_PY_PRECHECK=precheck), world(backend, timeout_s=HANG_S) as w:
        with Timer() as t, pytest.raises(aclnn_py.AclnnError) as e:
            w.run(run_rank, SMALL, inputs)
        assert t.elapsed < BOUND_S, f"other ranks waited {t.elapsed:.1f} s"
        assert e.value.status == 161002 and "'x'" in str(e.value)
        assert sorted(w.last_errors) == [0, 1, 2, 3]
        for r in (0, 2, 3):
            assert "rank 1 raised AclnnError" in str(w.last_errors[r]), str(w.last_errors[r])
        assert run(SMALL, w).ok


# ---- a rank that never arrives ------------------------------------------------------------------------
def test_missing_rank_bounded_without_precheck(backend):
    """Rank 3 does not run at all and no host pre-check runs: the device collective gives up after
    ACLNN_SIM_HANG_TIMEOUT_MS (the hardware: HCCL_EXEC_TIMEOUT / the sync timeout) naming rank 3;
    the reference backend knows at once that rank 3 is not running."""
    inputs = SMALL.inputs()
    with world(backend, timeout_s=3) as w:
        with env(ACLNN_SIM_HANG_TIMEOUT_MS="3000", ACLNN_PY_PRECHECK="0"), Timer() as t, pytest.raises(AclnnPyError):
            w.run(run_rank, SMALL, inputs, ranks=[0, 1, 2])
        assert t.elapsed < 3 + BOUND_S
        assert sorted(w.last_errors) == [0, 1, 2]
        for e in w.last_errors.values():
            text = str(e)
            assert names_missing(text, 3) or "rank 3 is not running" in text, text
        w.timeout_s = HANG_S          # the World recovered: a run that succeeds must not race a short timeout
        with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS):
            assert run(SMALL, w).ok


@pytest.mark.parametrize("how", ["not_running", "returns_early"])
def test_missing_rank_named_at_once_with_precheck(backend, how, monkeypatch):
    """With the host pre-check the missing rank is known before anything is launched, on both backends."""
    inputs = SMALL.inputs()

    def fn(ctx):
        if ctx.rank == 3:
            return "skipped dispatch"
        return run_rank(ctx, SMALL, inputs)

    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS), world(backend, timeout_s=HANG_S) as w:
        with Timer() as t, pytest.raises(AclnnPyError) as e:
            if how == "not_running":
                w.run(run_rank, SMALL, inputs, ranks=[0, 1, 2])
            else:
                w.run(fn)
        assert t.elapsed < BOUND_S, f"took {t.elapsed:.1f} s"
        want = "rank 3 is not running" if how == "not_running" else "rank 3's function returned without joining"
        assert want in str(e.value)
        assert sorted(w.last_errors) == [0, 1, 2]
        for err in w.last_errors.values():
            assert "rank" in str(err) and "3" in str(err)
        assert run(SMALL, w).ok


# ---- inconsistent parameters ----------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["moe_expert_num", "h", "bs", "quant_mode", "dtype"])
def test_inconsistent_parameter_named_on_every_rank(backend, change, monkeypatch):
    """Rank 1 passes a value the others do not: every rank raises 561002 naming the parameter and rank 1,
    before any device work (so the same error on the simulator, the reference and an NPU)."""
    inputs = SMALL.inputs()
    odd = dataclasses.replace(SMALL)
    if change == "moe_expert_num":
        odd = dataclasses.replace(SMALL, moe_expert_num=8)
    elif change == "quant_mode":
        odd = dataclasses.replace(SMALL, quant_mode=2)
    elif change == "h":
        inputs[1] = dict(inputs[1], x=np.zeros((SMALL.bs, 2048), inputs[1]["x"].dtype))
    elif change == "bs":
        inputs[1] = dict(inputs[1], x=inputs[1]["x"][:2], expert_ids=inputs[1]["expert_ids"][:2])
    elif change == "dtype":
        inputs[1] = dict(inputs[1], x=inputs[1]["x"].astype(np.float16))
    param = {"h": "x", "bs": "x", "dtype": "x"}.get(change, change)

    def fn(ctx):
        return run_rank(ctx, odd if ctx.rank == 1 else SMALL, inputs)

    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS), world(backend, timeout_s=HANG_S) as w:
        with Timer() as t, pytest.raises(InconsistentParametersError) as e:
            w.run(fn)
        assert t.elapsed < BOUND_S
        assert e.value.status == 561002 and isinstance(e.value, aclnn_py.AclnnError)
        for err in w.last_errors.values():
            assert isinstance(err, InconsistentParametersError), repr(err)
            assert f"parameter '{param}'" in str(err) and "rank [1]" in str(err), str(err)
        assert run(SMALL, w).ok


def test_wrong_ep_rank_id_named(backend, monkeypatch):
    """Two ranks claiming the same ep_rank_id (a real device would mix their windows up)."""
    inputs = SMALL.inputs()

    def fn(ctx):
        d = inputs[ctx.rank]
        return aclnn_py.moe_distribute_dispatch_v3(d["x"], d["expert_ids"], group_ep=ctx.group("ep"), ep_world_size=4,
                                                   ep_rank_id=0 if ctx.rank == 2 else ctx.ep_rank, moe_expert_num=4)

    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS), world(backend, timeout_s=HANG_S) as w, Timer() as t, \
            pytest.raises(aclnn_py.AclnnError) as e:
        w.run(fn)
    assert t.elapsed < BOUND_S
    assert e.value.status == 561002 and "'ep_rank_id'" in str(e.value) and "global rank 2" in str(e.value)


@pytest.mark.parametrize("precheck", ["0", "1"], ids=["no_precheck", "precheck"])
def test_disagreeing_elastic_info_is_a_named_deadlock(backend, precheck, monkeypatch):
    """Ranks 0 and 2 remove rank 3, rank 1 does not: each waits for the other in a different participant
    set. The simulator detects the cycle (after ACLNN_SIM_DEADLOCK_GRACE_MS), the host rendezvous at once."""
    inputs = ELASTIC.inputs()

    def fn(ctx):
        sc = dataclasses.replace(ELASTIC, removed=()) if ctx.rank == 1 else ELASTIC
        return run_rank(ctx, sc, inputs)

    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS, ACLNN_SIM_DEADLOCK_GRACE_MS="300", ACLNN_PY_PRECHECK=precheck), \
            world(backend, timeout_s=HANG_S) as w:
        with Timer() as t, pytest.raises(AclnnPyError):
            w.run(fn, ranks=[0, 1, 2])
        assert t.elapsed < BOUND_S, f"took {t.elapsed:.1f} s"
        assert sorted(w.last_errors) == [0, 1, 2]
        text = " | ".join(str(e) for e in w.last_errors.values())
        assert ("ranks disagree on the participants" in text or "rank 3 is not running" in text), text
        assert run(ELASTIC, w).ok and run(SMALL, w).ok


def test_errors_pickle_with_rank_names():
    import pickle
    e = InconsistentParametersError(561002, "op", "parameter 'x' differs: rank [1]")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is InconsistentParametersError and e2.status == 561002 and "rank [1]" in str(e2)


@pytest.mark.parametrize("precheck", ["0", "1"], ids=["no_precheck", "precheck"])
def test_disagreeing_elastic_info_all_ranks_running(backend, precheck, monkeypatch):
    """Ranks 0 and 1 remove rank 3, ranks 2 and 3 do not; all four run, so only the deadlock itself
    (0 waits in [0,1,2] for 2, which waits in [0,1,2,3] for 0) can end the wait."""
    inputs = ELASTIC.inputs()
    inputs[3] = SMALL.inputs()[3]

    def fn(ctx):
        return run_rank(ctx, ELASTIC if ctx.rank < 2 else SMALL, inputs)

    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS, ACLNN_SIM_DEADLOCK_GRACE_MS="300", ACLNN_PY_PRECHECK=precheck), \
            world(backend, timeout_s=HANG_S) as w:
        with Timer() as t, pytest.raises(AclnnPyError):
            w.run(fn)
        assert t.elapsed < BOUND_S, f"took {t.elapsed:.1f} s"
        assert sorted(w.last_errors) == [0, 1, 2, 3]
        for e in w.last_errors.values():
            assert "ranks disagree on the participants" in str(e) or "raised" in str(e), str(e)
        assert any("ranks disagree on the participants" in str(e) for e in w.last_errors.values())
        assert run(ELASTIC, w).ok and run(SMALL, w).ok


def test_caught_collective_error_keeps_call_sequences_aligned(backend):
    """Rank 3 skips a collective and the others catch the failure and carry on: the failed call is withdrawn
    everywhere, so the next collectives pair the right calls (no stale peer payloads, no drift)."""
    inputs = SMALL.inputs()

    def caught(ctx):
        if ctx.rank == 3:
            return None
        try:
            run_rank(ctx, SMALL, inputs)
        except AclnnPyError as e:
            return str(e)
        return "no error"

    with world(backend, timeout_s=0.4) as w:
        with env(ACLNN_SIM_HANG_TIMEOUT_MS="400", ACLNN_PY_PRECHECK="0"):
            got = w.run(caught)
        assert got[3] is None and all("3" in g for g in got[:3]), got
        w.timeout_s = HANG_S          # runs that succeed must not race a short timeout on a loaded machine
        with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS):
            for sc in (SMALL, ELASTIC, SMALL):
                out = run(sc, w)
                assert out.ok, out.failures()[:5]
