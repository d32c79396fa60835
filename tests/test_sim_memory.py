"""The simulator's zero-fill follows the data moved (issue 14): aclrtMemset / aclrtMemsetAsync with value 0 give the
whole pages of a large range back to the kernel (private memory: MADV_DONTNEED; the multi-process arenas: a hole
punched in the shared file) and write only the partial pages at both ends. Checked in C (tests/sim_c/memory_check.c):
contents, residency (mincore), stream order, a peer process's view, device-memory accounting and live objects.
"""
from __future__ import annotations

import glob
import uuid
from pathlib import Path

import pytest

from test_sim_core import compile_check, run_case


@pytest.fixture(scope="module")
def memory_check(cann_sim_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_check(cann_sim_home, "memory_check", tmp_path_factory.mktemp("sim_c"))


@pytest.mark.parametrize("case", ["zero_fill", "zero_fill_async", "zero_fill_host"])
def test_zero_fill(memory_check: Path, cann_sim_home: Path, case: str) -> None:
    run_case(memory_check, cann_sim_home, [case])


def test_zero_fill_is_seen_by_a_peer_process(memory_check: Path, cann_sim_home: Path) -> None:
    session = f"memtest{uuid.uuid4().hex[:12]}"
    try:
        run_case(memory_check, cann_sim_home, ["shared"], ACLNN_SIM_SHM_SESSION=session, ACLNN_SIM_DEVICE_COUNT="2",
                 ACLNN_SIM_SHM_DEVICE_MB="64")
    finally:
        for f in glob.glob(f"/dev/shm/aclnn_sim_{session}_*"):
            Path(f).unlink()
