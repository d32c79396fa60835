"""What ``import aclnn_py`` offers: README's spellings work, and importing never loads CANN."""
from __future__ import annotations

import subprocess
import sys

import aclnn_py
import aclnn_py.launch as launch_module


def test_launch_is_the_module_and_calls_its_function():
    from aclnn_py.launch import ep_tp_groups, launch
    assert aclnn_py.launch is launch_module and callable(aclnn_py.launch)
    assert aclnn_py.launch.launch is launch and aclnn_py.launch.ep_tp_groups is ep_tp_groups
    assert aclnn_py.launch.ep_tp_groups(2, 2)["tp"] == [[0, 1], [2, 3]]


def test_device_types_are_exported():
    from aclnn_py.orchestration.device import Device
    from aclnn_py.runtime.tensor import DeviceTensor
    assert aclnn_py.DeviceTensor is DeviceTensor and aclnn_py.Device is Device
    assert isinstance(aclnn_py.Tensor, type)
    assert set(aclnn_py.__all__) <= set(dir(aclnn_py))


def test_import_loads_no_library():
    code = ("import aclnn_py, aclnn_py.runtime.tensor, aclnn_py.runtime.device\n"
            "from aclnn_py.runtime import library\nprint(library.loaded_library())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "ACLNN_PY_CANN_HOME": "/nowhere"})
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr
