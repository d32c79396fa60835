"""aclnn_py.Device: a device, context and stream outside a World; nothing leaks (the ``sim`` fixture checks
the simulator's live objects before and after every test)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import aclnn_py
from aclnn_py.runtime.device import Stream, current_device

from conftest import live_objects


def test_device_tensors_round_trip_and_are_released(sim):
    a = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    with aclnn_py.Device(1) as dev:
        assert dev.index == 1 and isinstance(dev.stream, Stream) and current_device() == 1
        t = aclnn_py.DeviceTensor.from_numpy(a)
        kept = aclnn_py.DeviceTensor.zeros((5,), np.int32)
        np.testing.assert_array_equal(t.numpy(), a)
        assert live_objects(sim)                      # the context, stream and tensors exist meanwhile
        t.free()
    assert kept.ptr is None and kept.handle is None   # freed by the Device on exit
    with pytest.raises(aclnn_py.AclnnError, match="freed"):
        kept.numpy()


def test_nested_devices_and_close_is_idempotent(sim):
    outer = aclnn_py.Device(0)
    try:
        with aclnn_py.Device(2):
            assert current_device() == 2
            inner_t = aclnn_py.DeviceTensor.zeros((3,), np.float32)
        assert current_device() == 0 and inner_t.ptr is None
        outer_t = aclnn_py.DeviceTensor.from_numpy(np.ones(3, np.float32))
    finally:
        outer.close()
        outer.close()
    assert outer_t.ptr is None


def test_device_on_the_reference_backend_is_a_clear_error(sim, monkeypatch):
    monkeypatch.setenv("ACLNN_PY_BACKEND", "reference")
    with pytest.raises(aclnn_py.BackendUnavailableError, match="ACLNN_PY_BACKEND=reference"):
        aclnn_py.Device(0)


def test_device_index_out_of_range_or_not_an_int(sim):
    with pytest.raises(aclnn_py.BackendUnavailableError, match=r"Device\(99\).*16 devices, 100 needed"):
        aclnn_py.Device(99)
    for bad in (-1, 1.5, "0"):
        with pytest.raises(aclnn_py.AclnnError, match="index must be a non-negative integer") as e:
            aclnn_py.Device(bad)
        assert e.value.status == 161002


def test_device_without_cann_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACLNN_PY_", "ASCEND_"))}
    env.update(ACLNN_PY_CANN_HOME=str(tmp_path / "nowhere"), ACLNN_PY_SIM_HOME=str(tmp_path / "nosim"))
    code = ("import aclnn_py\ntry:\n    aclnn_py.Device(0)\nexcept aclnn_py.BackendUnavailableError as e:\n"
            "    print('ERR', e)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ERR aclnn_py.Device(0) needs CANN or the aclnn_py simulator" in r.stdout
    assert "ACLNN_PY_CANN_HOME" in r.stdout and "does not exist" in r.stdout and "sim build" in r.stdout
