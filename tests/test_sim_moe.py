"""C-level tests of the simulator's MoE operators (DispatchV3, CombineV3, CombineAddRmsNormV2).

* ``moe_kernels_test.c`` compiles the pure compute (sim/src/op_moe_kernels.c) on its own and checks the
  worked examples of ../shared/spec bit for bit (no simulator runtime involved).
* ``moe_e2e_test.c`` links against the built simulator tree and runs the operators through the public
  CANN API with one thread per rank: dispatch -> FFN -> combine / AddRmsNorm, TP, shared/special
  experts, masks, elastic scale-down, quantisation, the seeds' configurations, validation status codes,
  call records, error propagation and object accounting.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CDIR = ROOT / "tests" / "sim_c"
SRC = ROOT / "sim" / "src"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _run(cmd: list[str], env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def _check(proc: subprocess.CompletedProcess, name: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} failed (rc {proc.returncode}):\n{out[-6000:]}"
    assert " 0 failures" in proc.stdout, out[-6000:]


def test_moe_kernels_worked_examples(tmp_path: Path) -> None:
    exe = tmp_path / "moe_kernels_test"
    cc = _run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", f"-I{SRC}",
               f"-I{CDIR}", str(CDIR / "moe_kernels_test.c"), str(SRC / "op_moe_kernels.c"), "-lm", "-o", str(exe)])
    assert cc.returncode == 0, cc.stderr
    _check(_run([str(exe)]), "moe_kernels_test")


@pytest.fixture(scope="module")
def e2e_exe(cann_sim_home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    exe = tmp_path_factory.mktemp("moe_e2e") / "moe_e2e_test"
    lib = cann_sim_home / "lib64"
    cc = _run(["gcc", "-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", f"-I{cann_sim_home / 'include'}",
               f"-I{CDIR}", str(CDIR / "moe_e2e_test.c"), f"-L{lib}", f"-Wl,-rpath,{lib}", "-lopapi", "-lnnopbase",
               "-lascendcl", "-lhccl", "-lop_common", "-lpthread", "-o", str(exe)])
    assert cc.returncode == 0, cc.stderr
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}"
    env["ACLNN_SIM_DEVICE_COUNT"] = "8"
    for var in ("HCCL_BUFFSIZE", "ACLNN_SIM_HANG_TIMEOUT_MS"):
        env.pop(var, None)
    return exe, env


# scenario letters of moe_e2e_test.c (A..J); each group runs in its own process
@pytest.mark.parametrize("scenarios", [
    pytest.param("A", id="combine_addrmsnorm_cs10"),
    pytest.param("B", id="tp2"),
    pytest.param("CD", id="shared_quant_special"),
    pytest.param("EFGK", id="elastic_int8_mask2d_globalbs"),
    pytest.param("H", id="seed_configs"),
    pytest.param("IJ", id="validation_errors"),
])
def test_moe_e2e(e2e_exe: tuple[Path, dict], scenarios: str) -> None:
    exe, env = e2e_exe
    _check(_run([str(exe), scenarios], env=env), f"moe_e2e_test {scenarios}")
