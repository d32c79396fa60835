"""The seed demos (python -m aclnn_py demo, samples/*.py) on the reference backend and the simulator."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aclnn_py.__main__ import main

from conftest import ROOT, SIM_HOME


@pytest.mark.parametrize("which", ["pipeline", "dispatch-barrier-combine", "barrier"])
def test_demo_on_reference(which, capsys):
    assert main(["demo", "--which", which, "--backend", "reference"]) == 0
    out = capsys.readouterr().out
    assert "numpy reference backend" in out and "demo: OK" in out
    if which == "pipeline":
        assert out.count("bit-exact vs reference") == 8 + 4          # 8 ranks, then 4 after scale-down
        assert out.count("removed by elastic scale-down") == 4


@pytest.mark.parametrize("which", ["pipeline", "dispatch-barrier-combine"])
def test_demo_on_simulator(sim, which, capsys):
    assert main(["demo", "--which", which, "--backend", "device"]) == 0
    out = capsys.readouterr().out
    assert "aclnn_py simulator (not hardware)" in out and "MISMATCH" not in out and "demo: OK" in out


@pytest.mark.parametrize("script", ["moe_pipeline.py", "dispatch_barrier_combine.py", "barrier.py"])
@pytest.mark.parametrize("backend", ["reference", "device"])
def test_sample_scripts(cann_sim_home, script, backend):
    env = {**os.environ, "ACLNN_PY_CANN_HOME": str(SIM_HOME)}
    r = subprocess.run([sys.executable, str(ROOT / "samples" / script), "--backend", backend], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "FAILED" not in r.stdout and "MISMATCH" not in r.stdout
