"""Issue 13: ranks started by hand (or by any launcher aclnn_py does not know) with ``ACLNN_PY_RANK``,
``ACLNN_PY_WORLD_SIZE`` and ``ACLNN_PY_STORE``: the file channel, and the heartbeat that names a rank whose process
vanished when no launcher ends the job (as srun does by default: the other tasks keep running). Time bounds start
when every rank is up or at the death."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hardening_support import BOUND_S, SMALL
from launcher_support import (JOB, LAUNCH_TIMEOUT_S, all_up, launcher_env, outputs, remove, session_files,
                              stamped)
from test_hardening_multiprocess import _check

HEARTBEAT_S = 5      # the failure tests' heartbeat timeout (default 30 s); far above a loaded box's scheduling delays


def start(mode: str, out, backend: str = "device", fail_rank: int = -1, n: int = 4, **env: str) -> list:
    """``n`` processes of tests/launched_job.py, each told its rank (and ``env``); returns their exit codes."""
    store = out / "store"
    procs = [subprocess.Popen([sys.executable, JOB, mode, str(out), str(fail_rank)],
                              env=launcher_env(backend, ACLNN_PY_RANK=str(r), ACLNN_PY_WORLD_SIZE=str(n),
                                               ACLNN_PY_LOCAL_RANK=str(r), ACLNN_PY_STORE=str(store), **env),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(n)]
    try:
        return [p.wait(LAUNCH_TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


@pytest.mark.parametrize("backend", ["reference", "device"])
def test_dispatch_combine_by_hand_is_bit_exact(backend, cann_sim_home, tmp_path):
    assert start("pipeline", tmp_path, backend) == [0, 0, 0, 0]
    _check(SMALL, SMALL.inputs(), outputs(tmp_path, 4))
    st = stamped(tmp_path)
    assert st["3.up"][1] == "aclnn_py: rank 3 of 4, local rank 3, channel file"
    assert not session_files(tmp_path), "the first process of the host removes the simulator's shared memory"


@pytest.mark.parametrize("how, why", [
    ("kill", "rank 2's process stopped responding: its heartbeat has not moved for"),
    ("exit", "rank 2's process stopped responding: its heartbeat has not moved for"),
    ("leave", "rank 2's process has exited"),
])
def test_a_vanished_rank_is_named_on_every_rank(how, why, cann_sim_home, tmp_path):
    """Rank 2's process is killed, ends without clean-up (os._exit), or ends normally without running, while the
    others wait for it in the pre-check; nothing ends the job for them. Every other rank fails naming rank 2:
    from its heartbeat within ACLNN_PY_HEARTBEAT_TIMEOUT_S (5 s here) of the death, or at once when the process
    said it exited."""
    try:
        codes = start(how, tmp_path, fail_rank=2, ACLNN_PY_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_S))
        st = stamped(tmp_path)
        gone = st["2.dying"][0] if how != "leave" else all_up(st, 4)
        for g in (0, 1, 3):
            when, text = st[f"{g}.end"]
            assert why in text and "will never join this collective" in text, text
            assert when - gone < HEARTBEAT_S + BOUND_S, f"rank {g} ended {when - gone:.1f} s after rank 2 was gone"
            assert codes[g] == 1
    finally:
        remove(session_files(tmp_path))
