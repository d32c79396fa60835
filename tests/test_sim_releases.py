"""The simulator per CANN release (issue 11 items 4 and 5): ACLNN_SIM_CANN_VERSION, the version files and API, the
rules and kernels of every change in aclnn_py/releases.py, the V4 and V2/V1 entry points, the V2-only tree.

* tests/sim_c/moe_release_test.c runs every release-dependent rule and kernel under the release its process
  emulates; it runs here under the default release and three later ones, so each change is seen on both sides.
* The version files and aclsys* API are checked through ctypes in a subprocess (the simulator reads
  ACLNN_SIM_CANN_VERSION at aclInit and per call; a subprocess keeps this test's aclInit apart from aclnn_py's).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aclnn_py import releases

ROOT = Path(__file__).resolve().parents[1]
CDIR = ROOT / "tests" / "sim_c"
SRC = ROOT / "sim" / "src"
V2ONLY = ROOT / "build" / "cann-sim-v2only"
DEFAULT = releases.OLD_SNAPSHOT
# the default and the first release of each group of changes (releases.py): every change is off in one, on in another
RELEASES = [None, "8.5.0-beta.1", "9.0.0", "9.1.0"]

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _env(home: Path, release: str | None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLNN_SIM_") and k != "HCCL_BUFFSIZE"}
    lib = str(home / "lib64")
    env.update(ASCEND_HOME_PATH=str(home), LD_LIBRARY_PATH=os.pathsep.join(filter(None, (lib, env.get("LD_LIBRARY_PATH")))))
    if release:
        env["ACLNN_SIM_CANN_VERSION"] = release
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def release_test(cann_sim_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moe_release")
    (out / "sim_releases.h").write_text(releases.c_header())
    exe = out / "moe_release_test"
    lib = cann_sim_home / "lib64"
    cc = subprocess.run(["gcc", "-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off",
                         f"-I{cann_sim_home / 'include'}", f"-I{out}", f"-I{SRC}", f"-I{CDIR}",
                         str(CDIR / "moe_release_test.c"), str(SRC / "op_moe_kernels.c"), f"-L{lib}", f"-Wl,-rpath,{lib}",
                         "-lopapi", "-lnnopbase", "-lascendcl", "-lhccl", "-lop_common", "-lpthread", "-lm", "-o",
                         str(exe)], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    return exe


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r or "default")
def test_rules_and_kernels_follow_the_release(release_test: Path, cann_sim_home: Path, release: str | None) -> None:
    res = subprocess.run([str(release_test), "rules", "window", "const", "const4", "scales", "perf", "v2"],
                         capture_output=True, text=True, timeout=300, env=_env(cann_sim_home, release))
    out = res.stdout + res.stderr
    assert res.returncode == 0 and " 0 failures" in res.stdout, out[-6000:]
    assert f"emulating CANN {release or DEFAULT} ({releases.version_number(release or DEFAULT)})" in res.stdout


PROBE = textwrap.dedent("""
    import ctypes, json, sys
    home, calls = sys.argv[1], json.loads(sys.argv[2])
    acl = ctypes.CDLL(home + "/lib64/libascendcl.so")
    acl.aclGetRecentErrMsg.restype = ctypes.c_char_p
    out = {}
    for call in calls:
        if call == "init":
            out[call] = [acl.aclInit(None), (acl.aclGetRecentErrMsg() or b"").decode()]
        elif call == "symbols":
            out[call] = [hasattr(acl, n) for n in ("aclsysGetVersionStr", "aclsysGetVersionNum", "aclsysGetCANNVersion")]
        elif call.startswith("str:"):
            buf = ctypes.create_string_buffer(128)
            pkg = call[4:].encode() or None
            out[call] = [acl.aclsysGetVersionStr(pkg, buf), buf.value.decode()]
        elif call.startswith("num:"):
            num = ctypes.c_int32(0)
            out[call] = [acl.aclsysGetVersionNum(call[4:].encode(), ctypes.byref(num)), num.value]
        elif call.startswith("cann:"):
            buf = ctypes.create_string_buffer(512)
            rc = acl.aclsysGetCANNVersion(int(call[5:]), buf)
            parts = [buf.raw[o:o + n].split(b"\\0")[0].decode() for o, n in ((0, 128), (128, 64), (192, 64), (256, 64), (320, 64))]
            out[call] = [rc] + parts
    print(json.dumps(out))
""")


def _probe(home: Path, release: str | None, calls: list) -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE, str(home), json.dumps(calls)], capture_output=True, text=True,
                         timeout=60, env=_env(home, release))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("release", [None, "8.5.0-beta.1", "9.0.0", "9.1.0"], ids=lambda r: r or "default")
def test_version_api_reports_the_emulated_release(cann_sim_home: Path, release: str | None) -> None:
    text = release or DEFAULT
    got = _probe(cann_sim_home, release, ["init", "str:runtime", "str:ops_transformer", "str:ops-transformer",
                                          "num:runtime", "num:ops_transformer", "cann:0", "cann:7", "str:nope",
                                          "str:"])
    assert got["init"][0] == 0
    for pkg in ("runtime", "ops_transformer", "ops-transformer"):
        assert got[f"str:{pkg}"] == [0, text]
    assert got["num:runtime"] == got["num:ops_transformer"] == [0, releases.version_number(text)]
    # aclsysGetCANNVersion: "X.Y.Z-beta.1" is written "X.Y.Z.beta1", then split on '.' (CANN's acl.cpp)
    conv = text if "-" not in text else text.split("-")[0] + "." + text.split("-", 1)[1].replace(".", "")
    parts = (conv.split(".") + ["0", "0", "0"])[:4]
    assert got["cann:0"] == [0, conv, *parts]
    assert got["cann:7"][0] == 100003            # ACL_PKG_NAME_DRIVER: no driver (ACL_ERROR_INVALID_FILE)
    assert got["str:nope"][0] == 100003          # no share/info/nope (ACL_ERROR_INVALID_FILE)
    assert got["str:"][0] == 100000              # NULL package name (ACL_ERROR_INVALID_PARAM)


@pytest.mark.parametrize("bad", ["7.0.0", "9.2.0", "8.3.RC1", "banana", "8.5.x"])
def test_aclinit_refuses_a_release_it_does_not_know(cann_sim_home: Path, bad: str) -> None:
    rc, msg = _probe(cann_sim_home, bad, ["init"])["init"]
    assert rc == 100000, msg                     # ACL_ERROR_INVALID_PARAM
    assert "ACLNN_SIM_CANN_VERSION" in msg and bad in msg and DEFAULT in msg, msg


def test_version_files_of_the_tree(cann_sim_home: Path) -> None:
    for pkg in ("runtime", "ops_transformer"):
        lines = (cann_sim_home / "share" / "info" / pkg / "version.info").read_text().splitlines()
        assert lines[0] == f"Version={DEFAULT}"
    info = (cann_sim_home / f"{platform.machine()}-linux" / "ascend_toolkit_install.info").read_text().splitlines()
    assert f"version={DEFAULT}" in info
    assert (cann_sim_home / "set_env.sh").is_file()
    for lib in ("libopapi_transformer.so", "libopapi_math.so", "libhccl_fwk.so"):
        assert (cann_sim_home / "lib64" / lib).is_file(), lib


OPS = {v: [f"aclnn{op}{s}" for op in ops for s in ("", "GetWorkspaceSize")] for v, ops in {
    "v2": ["MoeDistributeDispatchV2", "MoeDistributeCombineV2", "MoeDistributeCombineAddRmsNorm",
           "DistributeBarrier"],
    "v3": ["MoeDistributeDispatchV3", "MoeDistributeCombineV3", "MoeDistributeCombineAddRmsNormV2",
           "DistributeBarrierV2", "MoeDistributeDispatchV4", "MoeDistributeCombineV4"]}.items()}


def _exports(lib: Path, names: list) -> dict:
    code = "import ctypes, json, sys; l = ctypes.CDLL(sys.argv[1]); print(json.dumps({n: hasattr(l, n) for n in sys.argv[2:]}))"
    res = subprocess.run([sys.executable, "-c", code, str(lib), *names], capture_output=True, text=True, timeout=60,
                         env=_env(lib.parent.parent, None))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_transformer_library_exports_every_version(cann_sim_home: Path) -> None:
    for lib in ("libopapi.so", "libopapi_transformer.so"):
        assert all(_exports(cann_sim_home / "lib64" / lib, OPS["v2"] + OPS["v3"]).values()), lib


@pytest.mark.skipif(not (V2OUT := V2ONLY / "lib64" / "libopapi.so").is_file(), reason="build.sh built no V2-only tree")
def test_v2_only_tree() -> None:
    """build/cann-sim-v2only: libopapi.so has the V2/V1 operators only, the files say CANN 8.3.RC1 (before
    share/info and aclsysGetVersionStr/Num), aclsysGetCANNVersion reports it."""
    got = _exports(V2ONLY / "lib64" / "libopapi.so", OPS["v2"] + OPS["v3"])
    assert all(got[n] for n in OPS["v2"]) and not any(got[n] for n in OPS["v3"]), got
    info = (V2ONLY / f"{platform.machine()}-linux" / "ascend_toolkit_install.info").read_text().splitlines()
    assert "version=8.3.RC1" in info and not (V2ONLY / "share" / "info").exists()
    assert not (V2ONLY / "include" / "aclnnop" / "aclnn_moe_distribute_dispatch_v3.h").exists()
    assert (V2ONLY / "include" / "aclnnop" / "aclnn_moe_distribute_dispatch_v2.h").is_file()
    probe = _probe(V2ONLY, None, ["init", "symbols", "cann:0"])
    assert probe["init"][0] == 0 and probe["symbols"] == [False, False, True]
    assert probe["cann:0"] == [0, "8.3.RC1", "8", "3", "RC1", "0"]
