"""Issue 13 under a real ``torchrun`` (the CPU torch wheel; skipped without torch): the ranks meet through
torch.distributed's TCPStore. Time bounds start when every rank is up (tests/launched_job.py stamps it)."""
from __future__ import annotations

import importlib.util
import re
import socket
import sys

import pytest

from hardening_support import BOUND_S, SMALL
from launcher_support import (JOB, all_up, launcher_env, outputs, remove, run, session_files, stamped, tool,
                              torchrun_command)
from test_hardening_multiprocess import _check

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None or tool("torchrun") is None,
                                reason="torch is not installed (CI installs the CPU wheel: pip install torch==2.13.0)")


def test_smoke_quick_under_torchrun(cann_sim_home, tmp_path):
    """`torchrun --standalone --nproc-per-node 4 -m aclnn_py smoke --quick`: one table, every process exits 0."""
    r = run(torchrun_command(4, "-m", "aclnn_py", "smoke", "--quick"), launcher_env("device"), cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("smoke suite on the aclnn_py simulator (not hardware), 4 processes (torchrun), one rank "
                          "each") == 1, r.stdout
    assert "smoke: PASS (12/12 rows passed)" in r.stdout


def test_dispatch_combine_under_torchrun_is_bit_exact(cann_sim_home, tmp_path):
    r = run(torchrun_command(4, JOB, "pipeline", str(tmp_path)), launcher_env("device"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _check(SMALL, SMALL.inputs(), outputs(tmp_path, 4))
    st = stamped(tmp_path)
    assert all(st[f"{g}.up"][1].startswith(f"torchrun: rank {g} of 4, local rank {g} of 4, job ") for g in range(4))
    assert all(st[f"{g}.up"][1].endswith("channel tcp") for g in range(4))
    assert not session_files(tmp_path), "the first process of the host removes the simulator's shared memory"


def test_a_rank_that_raises_fails_every_rank_naming_it(cann_sim_home, tmp_path):
    r = run(torchrun_command(4, JOB, "raise", str(tmp_path), "2"), launcher_env("device"))
    assert r.returncode != 0
    st = stamped(tmp_path)
    up = all_up(st, 4)
    for g in (0, 1, 3):
        when, text = st[f"{g}.end"]
        assert "rank 2 raised ValueError: boom on rank 2" in text, text
        assert when - up < BOUND_S, f"rank {g} ended {when - up:.1f} s after every rank was up"


def test_a_rank_that_dies_ends_the_job(cann_sim_home, tmp_path):
    """Rank 2's process is killed while the others wait for it: torchrun's agent ends the other workers at once
    and names rank 2 in its failure report."""
    try:
        r = run(torchrun_command(4, JOB, "kill", str(tmp_path), "2"), launcher_env("device"))
        assert r.returncode != 0
        st = stamped(tmp_path)
        assert r.ended - st["2.dying"][0] < BOUND_S, f"torchrun ended {r.ended - st['2.dying'][0]:.1f} s after"
        assert re.search(r"rank\s*:\s*2 \(local_rank: 2\)\s+exitcode\s*:\s*-9", r.stdout + r.stderr), r.stderr[-3000:]
        assert all(st.get(f"{g}.end", (0, ""))[1] != "ok" for g in (0, 1, 3))
    finally:
        remove(session_files(tmp_path))


def test_tcp_store_protocol():
    """The TCPStore channel itself (a real torch.distributed.TCPStore on loopback): server and client."""
    from aclnn_py.orchestration.stores import TorchStore
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = TorchStore("127.0.0.1", port, 0, 2, 30, agent_store=False)
    client = TorchStore("127.0.0.1", port, 1, 2, 30, agent_store=False)
    assert server.hosts_server and not client.hosts_server
    client.set("a", b"\x00\x01")
    assert server.get_many(["a", "b"]) == {"a": b"\x00\x01"}
    server.delete("a")
    assert client.try_get("a") is None and client.wait_many([], 1) == {}
    client.close()
    server.close()
    assert sys.modules.get("torch") is not None
