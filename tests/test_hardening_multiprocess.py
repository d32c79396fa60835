"""Multi-process worlds (issue 6, issue 9 item 6): ranks as separate processes, root info shared through a file store,
the same per-rank code as the threaded World; dispatch/combine on 4 processes on the simulator (device memory and
communicators in shared memory) and on the reference backend; failures named across processes, as fast as with
threads.

Time bounds start when every rank is up (each rank's World was set up: ``timeline``) or at the event itself
(stamped by the rank that caused it), never at process start-up (see ``hardening_support.BOUND_S``).
"""
from __future__ import annotations

import dataclasses
import glob
import re
import sys
import types
import uuid

import pytest

from aclnn_py.demos.common import compare
from aclnn_py.demos.scenario import run_reference
from aclnn_py.errors import AclnnPyError, HcclError
from aclnn_py.launch import LaunchError, connect_timeout_s, ep_tp_groups, launch

from hardening_support import (BOUND_S, HANG_MS, SMALL, EndProcessOnArrival, env, mp_dies_in_collective, mp_pipeline,
                               mp_rank, mp_unpicklable_result, names_missing, read_stamps, timeline)

ARN = dataclasses.replace(SMALL, combine="add_rms_norm", removed=(2,), barrier=True, seed=5)


@pytest.fixture(params=["reference", "device"])
def mp_backend(request, cann_sim_home, monkeypatch):
    if request.param == "device":
        monkeypatch.setenv("ACLNN_PY_CANN_HOME", str(cann_sim_home))
    return request.param


@pytest.fixture
def on_sim(cann_sim_home, monkeypatch):
    monkeypatch.setenv("ACLNN_PY_CANN_HOME", str(cann_sim_home))


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


def _ended_after_all_up(store_dir: str, ranks) -> dict:
    """Seconds from the moment every rank was up to the end of each rank in ``ranks``."""
    up, end = timeline(store_dir)
    return {r: end[r] - max(up.values()) for r in ranks}


def _no_foreign_ranks(text: str, world_size: int = 4) -> None:
    """Every rank a message names exists: no value read from a dead process's memory."""
    named = [int(n) for n in re.findall(r"rank\D{0,3}(\d+)", text)]
    assert all(0 <= n < world_size for n in named), text
    assert "differs between" not in text, text


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
def test_failing_process_is_named_on_every_rank(mp_backend, fail, tmp_path):
    """Rank 2 raises (or its process dies) before launching: every other process fails at once, naming it."""
    inputs, session, store = SMALL.inputs(), f"t{uuid.uuid4().hex[:12]}", str(tmp_path / "store")
    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS), pytest.raises((ValueError, LaunchError)) as e:
        launch(mp_pipeline, 4, SMALL, inputs, fail=fail, fail_rank=2, backend=mp_backend, groups=ep_tp_groups(4),
               timeout_s=90, session=session, store_dir=store)
    errors = e.value.rank_errors
    assert e.value.rank == 2 and sorted(errors) == [0, 1, 2, 3], errors
    want = "boom on rank 2" if fail == "raise" else "rank 2"
    for r in (0, 1, 3):
        assert isinstance(errors[r], AclnnPyError), repr(errors[r])
        assert want in str(errors[r]), str(errors[r])
    for r, took in _ended_after_all_up(store, (0, 1, 3)).items():
        assert took < BOUND_S, f"rank {r} ended {took:.1f} s after every rank was up"
    assert not _leftovers(session)


def test_rank_raising_without_precheck_fails_every_process_at_once(on_sim, tmp_path):
    """Issue 9 item 6: rank 1 raises before launching and no host pre-check runs. The others' collectives must
    fail at once naming it (the raising process used to clear the group's abort in its own recovery, before the
    others had entered the collective, so they waited for the whole hang timeout)."""
    store = str(tmp_path / "store")
    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS, ACLNN_PY_PRECHECK="0"), \
            pytest.raises(ValueError, match="boom on rank 1") as e:
        launch(mp_pipeline, 4, SMALL, SMALL.inputs(), fail="raise", fail_rank=1, precheck=False, backend="device",
               groups=ep_tp_groups(4), timeout_s=90, store_dir=store)
    for r in (0, 2, 3):
        err = e.value.rank_errors[r]
        assert isinstance(err, AclnnPyError) and "rank 1 raised ValueError: boom on rank 1" in str(err), str(err)
    for r, took in _ended_after_all_up(store, (0, 2, 3)).items():
        assert took < BOUND_S, f"rank {r} ended {took:.1f} s after every rank was up"


def test_missing_process_bounded_without_precheck(on_sim, tmp_path):
    """Rank 3's function returns without calling dispatch and no host pre-check runs: the simulator's
    collective in the other processes fails naming rank 3, after ACLNN_SIM_HANG_TIMEOUT_MS at the latest (at once
    if rank 3's process has already exited). Communicator set-up waits as HCCL_CONNECT_TIMEOUT says, not for the
    hang timeout: four processes may take longer than the 3 s to start (it used to fail every time)."""
    store = str(tmp_path / "store")
    with env(ACLNN_SIM_HANG_TIMEOUT_MS="3000", ACLNN_PY_PRECHECK="0"), pytest.raises(AclnnPyError) as e:
        launch(mp_pipeline, 4, SMALL, SMALL.inputs(), fail="return", fail_rank=3, precheck=False, backend="device",
               groups=ep_tp_groups(4), timeout_s=60, store_dir=store)
    for r in (0, 1, 2):
        text = str(e.value.rank_errors[r])
        assert "rank 3's process" in text or names_missing(text, 3), text
    for r, took in _ended_after_all_up(store, (0, 1, 2)).items():
        assert took < 3 + BOUND_S, f"rank {r} ended {took:.1f} s after every rank was up"


def test_dead_process_detected_by_the_simulator(on_sim, tmp_path):
    """Rank 1's process dies before launching while the others wait inside the device collective (no host
    pre-check): the simulator sees the process is gone and fails the collective naming it, long before the hang
    timeout."""
    store = str(tmp_path / "store")
    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS, ACLNN_PY_PRECHECK="0"), pytest.raises(LaunchError) as e:
        launch(mp_pipeline, 4, SMALL, SMALL.inputs(), fail="crash", fail_rank=1, precheck=False, backend="device",
               groups=ep_tp_groups(4), timeout_s=90, store_dir=store)
    for r in (0, 2, 3):
        err = str(e.value.rank_errors[r])
        assert "rank 1" in err and ("has exited" in err or "exited with code" in err), err
        _no_foreign_ranks(err)
    for r, took in _ended_after_all_up(store, (0, 2, 3)).items():
        assert took < BOUND_S, f"rank {r} ended {took:.1f} s after every rank was up"


def test_process_dying_inside_a_collective_is_named_at_once(on_sim, tmp_path):
    """Issue 9 item 6: rank 1's process is killed while it waits inside dispatch with ranks 0 and 2; rank 3 has not
    arrived. Ranks 0 and 2 must fail at once naming rank 1 (they used to notice only when the last live rank
    arrived, and a killed waiter could wedge the group's shared state for good), no message may carry a value read
    from a dead or departing process, and recovering afterwards is quick (it used to take 10 s)."""
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS, ACLNN_PY_PRECHECK="0"), pytest.raises(LaunchError) as e:
        launch(mp_dies_in_collective, 4, SMALL, SMALL.inputs(), str(stamps), backend="device",
               groups=ep_tp_groups(4), timeout_s=90)
    assert e.value.rank == 1 and "exited with code -9" in str(e.value), str(e.value)
    st = read_stamps(str(stamps))
    killed, arrived = st["1.kill"][0], st["3.arrive"][0]
    for r in (0, 2):  # before rank 3 came (it waits for exactly that, up to 30 s)
        failed = st[f"{r}.fail"][0]
        assert failed < arrived and failed - killed < BOUND_S, (r, failed - killed, arrived - killed)
    pid = re.search(r"pid (\d+)", str(e.value)).group(1)
    for r in (0, 2, 3):
        text = str(e.value.rank_errors[r])
        assert f"rank 1's process (pid {pid}) has exited" in text, text
        _no_foreign_ranks(text)
        assert float(st[f"{r}.recovered"][1]) < 5.0, (r, st[f"{r}.recovered"])


def test_peer_dead_before_set_up_is_named_at_once(on_sim, tmp_path):
    """Rank 2's process dies before it reaches communicator set-up: the others, waiting to set up the groups, fail
    at once naming it, not after HCCL_CONNECT_TIMEOUT (120 s)."""
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    store = str(tmp_path / "store")
    with pytest.raises(LaunchError) as e:
        launch(mp_rank, 4, EndProcessOnArrival(2, str(stamps)), backend="device", groups=ep_tp_groups(4),
               timeout_s=90, store_dir=store)
    assert e.value.rank == 2 and "exited with code 5" in str(e.value)
    gone = read_stamps(str(stamps))["2.gone"][0]
    _, end = timeline(store)
    for r in (0, 1, 3):
        assert "rank 2" in str(e.value.rank_errors[r]), str(e.value.rank_errors[r])
        assert end[r] - gone < BOUND_S, f"rank {r} ended {end[r] - gone:.1f} s after rank 2's process died"


def test_set_up_gives_up_after_the_connect_timeout(on_sim, tmp_path):
    """Rank 2's process is alive but never reaches set-up: the others give up after the communicator set-up
    timeout (HCCL_CONNECT_TIMEOUT; shortened here with the simulator's ACLNN_SIM_CONNECT_TIMEOUT_MS), naming it,
    however short the hang timeout of collectives is."""
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    with env(ACLNN_SIM_CONNECT_TIMEOUT_MS="2000", ACLNN_SIM_HANG_TIMEOUT_MS="100"), \
            pytest.raises((AclnnPyError, LaunchError)) as e:
        launch(mp_rank, 4, EndProcessOnArrival(2, str(stamps), sleep_s=60), backend="device",
               groups=ep_tp_groups(4), timeout_s=3)
    assert "rank 2 did not finish" in str(e.value.rank_errors[2])     # killed by the launcher in the end
    for r in (0, 1, 3):
        text = str(e.value.rank_errors[r])
        assert "waited 2 s (HCCL_CONNECT_TIMEOUT)" in text and "rank 2" in text, text


@pytest.mark.parametrize("value", [None, "120", "200", "7200", "0119", "60", "7201", "abc", "1e3", "-200"])
def test_connect_timeout_follows_hccl_connect_timeout(sim, value, monkeypatch):
    """HCCL_CONNECT_TIMEOUT as HCCL reads it (hcomm externalinput.cc ParseLinkConnTimeOut): integer seconds in
    [120, 7200], default 120; anything else makes communicator set-up fail (HCCL_E_PARA). The launcher's own
    set-up waits use the same value (falling back to the default where HCCL refuses to start anyway)."""
    import ctypes
    from aclnn_py.runtime import abi
    from aclnn_py.runtime.simhooks import sim_hooks
    monkeypatch.delenv("ACLNN_SIM_CONNECT_TIMEOUT_MS", raising=False)
    if value is None:
        monkeypatch.delenv("HCCL_CONNECT_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("HCCL_CONNECT_TIMEOUT", value)
    valid = value is None or (value.isdigit() and 120 <= int(value) <= 7200)
    want_s = int(value) if value is not None and valid else 120
    assert connect_timeout_s() == want_s
    assert sim_hooks(sim).connect_timeout_ms() == (want_s * 1000 if valid else -1)
    if not valid:
        with pytest.raises(HcclError) as e:
            sim.HcclGetRootInfo(ctypes.byref(abi.HcclRootInfo()))
        assert e.value.status == 1 and "HCCL_CONNECT_TIMEOUT" in str(e.value) and "[120, 7200]" in str(e.value)


# ---- what the rank processes cannot receive or send back (issue 10 item 9) ---------------------------------------
def _nested():
    def rank_fn(ctx):
        return ctx.rank
    return rank_fn


@pytest.mark.parametrize("kind", ["lambda", "nested", "interactive", "argument"])
def test_unsendable_function_or_argument_is_named_before_spawning(kind, monkeypatch):
    """The rank processes import the function by module and name: a lambda, a nested function or one defined in an
    interactive session's __main__ cannot get there. launch says which and why, with the remedy, before any
    process starts (no PicklingError / AttributeError traceback from a child)."""
    import multiprocessing
    import threading
    fn, args, want = mp_rank, (), ""
    if kind == "lambda":
        fn, want = (lambda ctx: ctx.rank), "is a lambda"
    elif kind == "nested":
        fn, want = _nested(), "defined inside another function"
    elif kind == "interactive":
        main = types.ModuleType("__main__")          # no __file__: what python -i / a notebook has
        exec("def rank_fn(ctx):\n    return ctx.rank\n", main.__dict__)
        monkeypatch.setitem(sys.modules, "__main__", main)
        fn, want = main.rank_fn, "interactive session"
    else:
        args, want = (threading.Lock(),), "argument 1 of"
    before = len(multiprocessing.active_children())
    with pytest.raises(LaunchError) as e:
        launch(fn, 2, *args, backend="reference")
    text = str(e.value)
    assert want in text and ("top level of a module" in text or "pass numpy arrays" in text), text
    assert len(multiprocessing.active_children()) == before


def test_unpicklable_result_is_named(tmp_path):
    """A rank function's result that cannot be pickled becomes a LaunchError naming the rank, the function and the
    type, with the remedy, raised in the launcher."""
    with pytest.raises(LaunchError) as e:
        launch(mp_unpicklable_result, 2, backend="reference", timeout_s=30)
    for r in (0, 1):
        text = str(e.value.rank_errors[r])
        assert f"rank {r}: the rank function hardening_support.mp_unpicklable_result returned a builtins.dict" in text
        assert "cannot be pickled" in text and "numpy arrays" in text, text
