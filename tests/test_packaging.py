"""Packaging: the sdist and the wheel carry the simulator's sources and build script, and a pip user in a
fresh venv outside the checkout can build the simulator and run the demo on it."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import aclnn_py

from conftest import ROOT

OFFLINE_SIGNS = ("No matching distribution found", "Could not find a version that satisfies",
                 "Failed to establish a new connection", "Network is unreachable", "Temporary failure in name")
SIM_FILES = sorted(str(p.relative_to(ROOT / "sim")) for p in (ROOT / "sim").rglob("*")
                   if p.is_file() and p.suffix in (".c", ".h"))


def _pip_env() -> dict:
    """This environment (pip's index and cache settings included) without anything aclnn_py reads."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ACLNN_PY_", "ASCEND_", "ACLNN_SIM", "PYTHON", "VIRTUAL_ENV"))}


def _skip_if_offline(r: subprocess.CompletedProcess, what: str) -> None:
    if r.returncode != 0 and any(s in r.stdout + r.stderr for s in OFFLINE_SIGNS):
        pytest.skip(f"{what}: no network and no cached wheels for the build/runtime dependencies "
                    f"(setuptools, numpy, ml_dtypes)")


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict:
    """The sdist, and the wheel built from it (``python -m build``), in a temporary directory."""
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], env=_pip_env(),
                       capture_output=True, text=True, timeout=900)
    _skip_if_offline(r, "python -m build")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {"sdist": next(out.glob("*.tar.gz")), "wheel": next(out.glob("*.whl"))}


def test_declared_packages_are_the_package_directories():
    try:
        import tomllib
    except ImportError:
        pytest.skip("tomllib needs Python 3.11")
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "aclnn_py").rglob("*")
               if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))} | {"aclnn_py"}
    assert declared == on_disk | {"aclnn_py._sim"}


def test_wheel_carries_the_simulator_and_the_license(dists):
    with zipfile.ZipFile(dists["wheel"]) as z:
        names = set(z.namelist())
        shipped = z.read("aclnn_py/_sim/build.sh").decode()
        metadata = z.read("aclnn_py-0.1.0.dist-info/METADATA").decode()
        license_text = z.read("aclnn_py-0.1.0.dist-info/licenses/LICENSE").decode()
    missing = [f for f in SIM_FILES if f"aclnn_py/_sim/{f}" not in names]
    assert SIM_FILES and missing == []
    assert shipped == (ROOT / "build.sh").read_text()
    assert "License-Expression: Apache-2.0" in metadata and "Apache License" in license_text
    for field in ("Author:", "Keywords:", "Project-URL:", "Classifier:"):
        assert field in metadata, field


def test_sdist_carries_the_simulator_and_the_build_logic(dists):
    with tarfile.open(dists["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    wanted = {f"sim/{f}" for f in SIM_FILES} | {"build.sh", "setup.py", "pyproject.toml", "LICENSE", "README.md"}
    assert sorted(wanted - names) == []


@pytest.mark.slow
def test_pip_install_then_sim_build_then_demo(dists, tmp_path):
    """A pip user's path, outside the checkout, with a clean environment: install the sdist into a fresh
    venv, `aclnn-py sim build` (into the user cache), then `python -m aclnn_py demo` on that simulator."""
    start = time.monotonic()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py, script = venv / "bin" / "python", venv / "bin" / "aclnn-py"
    r = subprocess.run([str(py), "-m", "pip", "install", str(dists["sdist"])], env=_pip_env(), cwd=tmp_path,
                       capture_output=True, text=True, timeout=1200)
    _skip_if_offline(r, "pip install <sdist>")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(cache),
           "LANG": "C.UTF-8"}

    def run(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run(list(args), env=env, cwd=work, capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0 and "Traceback" not in r.stderr, f"{args}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    where = run(str(py), "-c", "import aclnn_py; print(aclnn_py.__file__)").stdout
    assert str(venv) in where and str(ROOT) not in where
    run(str(script), "sim", "build", "--quiet")
    tree = cache / "aclnn_py" / f"cann-sim-{aclnn_py.__version__}"
    assert (tree / "lib64" / "libopapi.so").is_file()
    assert run(str(script), "sim", "path").stdout.strip() == str(tree)
    info = run(str(py), "-m", "aclnn_py", "info").stdout
    assert f"CANN home: {tree}" in info and "aclnn_py simulator in the user cache" in info
    assert "aclnn_py CANN simulator (emulation on host memory, not hardware)" in info
    demo = run(str(py), "-m", "aclnn_py", "demo")
    assert "demo: OK" in demo.stdout and "aclnn_py simulator (not hardware)" in demo.stdout
    assert "warning" not in demo.stderr
    print(f"pip install + sim build + demo: {time.monotonic() - start:.0f} s")
