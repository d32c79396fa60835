"""No silent fallback: 'auto' choosing the reference warns once per reason, saying why; a requested device
that cannot run is an error; a bad backend name is an InvalidBackendError; info tells the truth."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import aclnn_py
from aclnn_py.orchestration import backend
from aclnn_py.info import info_lines

from cli_support import no_cann_env


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Forget which fallback reasons were already reported, and record every warning."""
    monkeypatch.setattr(backend, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def test_world_larger_than_the_simulator_warns_once(sim, fresh_warnings):
    for _ in range(2):
        with aclnn_py.World(17) as w:
            assert w.backend == "reference"
    fallbacks = [w for w in fresh_warnings if issubclass(w.category, aclnn_py.BackendFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in fresh_warnings]
    text = str(fallbacks[0].message)
    assert "the runtime reports 16 devices, 17 needed" in text and "ACLNN_PY_BACKEND=reference" in text
    assert fallbacks[0].filename == __file__            # attributed to the caller, not to aclnn_py


def test_explicit_choices_do_not_warn(sim, fresh_warnings):
    with aclnn_py.World(2, backend="reference") as w:
        assert w.backend == "reference"
    with aclnn_py.World(2) as w:
        assert w.backend == "device"
    assert not [w for w in fresh_warnings if issubclass(w.category, aclnn_py.BackendFallbackWarning)]


def test_requested_device_that_cannot_run_is_an_error(sim):
    with pytest.raises(aclnn_py.BackendUnavailableError, match="17 needed"):
        aclnn_py.World(17, backend="device")


@pytest.mark.parametrize("name", ["bogus", "", 3])
def test_bad_backend_names(name, monkeypatch):
    if name == "":
        monkeypatch.setenv("ACLNN_PY_BACKEND", "nope")
        with pytest.raises(aclnn_py.InvalidBackendError, match="ACLNN_PY_BACKEND .*'nope'"):
            backend.requested_backend()
        return
    with pytest.raises(ValueError, match=f"backend argument must be one of auto, device, reference; got {name!r}"):
        aclnn_py.World(2, backend=name)


def test_no_cann_warns_with_the_variable_that_points_nowhere(tmp_path):
    code = ("import aclnn_py\nfor _ in range(2):\n    with aclnn_py.World(2) as w:\n        print(w.backend)\n")
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], env=no_cann_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["reference", "reference"], r.stderr
    assert r.stderr.count("BackendFallbackWarning") == 1, r.stderr
    assert f"ACLNN_PY_CANN_HOME: {tmp_path / 'no-cann'} does not exist" in r.stderr
    assert "sim build" in r.stderr


def test_info_says_what_auto_picks(sim, monkeypatch):
    monkeypatch.delenv("ACLNN_PY_BACKEND", raising=False)
    text = "\n".join(info_lines())
    assert "aclnn_py CANN simulator (emulation on host memory, not hardware)" in text
    assert "auto picks: device (the aclnn_py simulator, 16 devices) for a World of up to 16 ranks" in text
    monkeypatch.setenv("ACLNN_PY_BACKEND", "Device ")
    assert "in use: device (requested)" in "\n".join(info_lines())


def test_a_variable_pointing_nowhere_is_reported_when_another_root_is_used(tmp_path, cann_sim_home):
    from cli_support import clean_env
    env = clean_env(ACLNN_PY_CANN_HOME=str(tmp_path / "typo"), ASCEND_HOME_PATH=str(cann_sim_home))
    code = "import aclnn_py\nwith aclnn_py.World(2) as w:\n    print(w.backend)\n"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["device"], r.stderr
    assert r.stderr.count("BackendFallbackWarning") == 1
    assert (f"ACLNN_PY_CANN_HOME: {tmp_path / 'typo'} does not exist -- aclnn_py uses {cann_sim_home} "
            f"(found via ASCEND_HOME_PATH) instead") in r.stderr
