"""Running aclnn_py's command line as a person types it: a subprocess with a chosen environment."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from conftest import SIM_HOME


def clean_env(**overrides: str) -> Dict[str, str]:
    """This environment without any CANN / aclnn_py variable, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACLNN_PY_", "ASCEND_", "ACLNN_SIM"))}
    env.update(overrides)
    return env


def sim_env(**overrides: str) -> Dict[str, str]:
    """An environment that uses the checkout's simulator."""
    return clean_env(ACLNN_PY_CANN_HOME=str(SIM_HOME), **overrides)


def no_cann_env(tmp: Path, **overrides: str) -> Dict[str, str]:
    """An environment where discovery finds nothing: ACLNN_PY_CANN_HOME points nowhere, and so does the
    simulator tree (ACLNN_PY_SIM_HOME replaces the checkout's build/cann-sim and the user cache)."""
    return clean_env(**{"ACLNN_PY_CANN_HOME": str(tmp / "no-cann"), "ACLNN_PY_SIM_HOME": str(tmp / "no-sim"),
                        **overrides})


def console_script() -> Optional[str]:
    """The installed ``aclnn-py`` script (beside this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("aclnn-py")
    return str(beside) if beside.exists() else shutil.which("aclnn-py")


def run_cli(args: List[str], env: Dict[str, str], script: bool = False, cwd=None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m aclnn_py ARGS`` (or ``aclnn-py ARGS`` with ``script``)."""
    cmd = [console_script()] if script else [sys.executable, "-m", "aclnn_py"]
    return subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def stderr_lines(r: subprocess.CompletedProcess) -> List[str]:
    return [line for line in r.stderr.splitlines() if line.strip()]
