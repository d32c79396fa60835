"""Shared fixtures: paths, the built simulator tree."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SIM_HOME = ROOT / "build" / "cann-sim"


def ensure_sim_built() -> Path:
    """Build the simulator with build.sh once (CI has already built it; this is for local runs)."""
    if not (SIM_HOME / "lib64" / "libopapi.so").exists():
        subprocess.run(["bash", str(ROOT / "build.sh")], check=True, cwd=ROOT)
    return SIM_HOME


@pytest.fixture(scope="session")
def cann_sim_home() -> Path:
    """Path of the simulator's CANN-shaped install tree (build/cann-sim)."""
    return ensure_sim_built()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (specs and seeds) is not beside the checkout")
    return SHARED
