"""Shared fixtures: paths, the built simulator tree."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SIM_HOME = ROOT / "build" / "cann-sim"

# A collective whose peer never comes fails after this long in the simulator (the hardware would hang).
os.environ.setdefault("ACLNN_SIM_HANG_TIMEOUT_MS", "20000")


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


@pytest.fixture(scope="session")
def sim_library(cann_sim_home):
    """The simulator loaded as this process's CANN (skips if another CANN was loaded first)."""
    from aclnn_py.runtime import library
    if library.loaded_library() is None:
        os.environ["ACLNN_PY_CANN_HOME"] = str(cann_sim_home)
    lib = library.get_library()
    if not lib.is_simulator:
        pytest.skip("a real CANN install is loaded in this process; simulator tests do not apply")
    return lib


def live_objects(lib) -> dict:
    """Live simulator objects by kind name (only non-zero kinds)."""
    import ctypes
    counts = (ctypes.c_int64 * 32)()
    n = lib.aclsimLiveObjects(counts, 32)
    return {lib.aclsimObjectKindName(i).decode(): counts[i] for i in range(n) if counts[i]}


@pytest.fixture
def sim(sim_library):
    """The simulator library; after the test, no simulator object may be left alive."""
    before = live_objects(sim_library)
    yield sim_library
    after = live_objects(sim_library)
    assert after == before == {}, f"live simulator objects before {before}, after {after}"


@pytest.fixture(params=["reference", "device"])
def backend(request):
    """Run a test on both backends (device = the simulator here)."""
    if request.param == "device":
        request.getfixturevalue("sim")
    return request.param


def real_npu_reason() -> str:
    """Empty when a real CANN install with devices is present, else why not (without loading it here)."""
    import subprocess
    import sys
    from aclnn_py.runtime.discovery import find_cann
    env = {k: v for k, v in os.environ.items() if k != "ACLNN_PY_CANN_HOME" or not v.startswith(str(SIM_HOME))}
    install = find_cann(env)
    if install is None:
        return "no CANN install found"
    if install.is_simulator or Path(install.home).resolve() == SIM_HOME.resolve():
        return "only the aclnn_py simulator is present"
    probe = ("from aclnn_py.runtime.library import get_library; from aclnn_py.runtime.device import device_count;"
             "lib = get_library(); print(int(lib.is_simulator), device_count())")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                       env={**env, "ACLNN_PY_CANN_HOME": str(install.home)})
    if r.returncode != 0:
        return f"CANN at {install.home} does not load: {r.stderr.strip().splitlines()[-1:]}"
    is_sim, n = r.stdout.split()
    if is_sim == "1" or int(n) < 2:
        return f"CANN at {install.home} reports {n} devices (simulator={is_sim})"
    return ""


def pytest_collection_modifyitems(config, items):
    npu_items = [i for i in items if "npu" in i.keywords]
    if not npu_items:
        return
    why = real_npu_reason()
    if why:
        for item in npu_items:
            item.add_marker(pytest.mark.skip(reason=f"needs a real Ascend NPU: {why}"))


@pytest.fixture(scope="module")
def sim_worlds(sim_library):
    """``get(ep, tp)``: a device World of the simulator per (ep, tp), made once per module and closed after it."""
    import aclnn_py
    cache: dict = {}

    def get(ep: int, tp: int):
        if (ep, tp) not in cache:
            cache[ep, tp] = aclnn_py.World.ep_tp(ep, tp, backend="device")
        return cache[ep, tp]

    yield get
    for w in cache.values():
        w.close()


def assert_scenario_matches(out, sim_library, world=None) -> None:
    """A scenario's device run equals the reference everywhere, and left no transient simulator object once
    ``world`` (still open, if given) released what its streams keep for reuse."""
    assert out.ok, f"{out.scenario}\n" + "\n".join(out.failures()[:10])
    if world is not None:
        world.release_cached()
    transient = {k: v for k, v in live_objects(sim_library).items() if k in ("buffer", "tensor", "executor")}
    assert transient == {}, f"leaked after the scenario: {transient}"
