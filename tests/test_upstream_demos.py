"""The official demo programs of both ops-transformer snapshots compile unmodified with their docs' build recipe and
run to their success messages on the simulator, each under the release it documents.

* NEW (libochao-huawei/ops-transformer 5778144, CANN 9.1.0): the A3 ```Cpp block of each MC2 MoE page, built with
  the CMake recipe of ``docs/zh/context/compile_and_run_sample.md`` (its CMakeLists example with the demo's file
  name, plus the MC2 link block), run with ``ACLNN_SIM_CANN_VERSION=9.1.0``.
* OLD (hicann/ops-transformer c29bc10, 8.5.0.alpha001): the ```Cpp block of each page, built with the docs' g++
  line (the Dispatch page's, for pages without one), run under the simulator's default release.

The demos' code is read from the snapshots at test time (never stored here): from the git directory or checkout
named by ACLNN_PY_OPS_TRANSFORMER_NEW / ACLNN_PY_OPS_TRANSFORMER_OLD, else the fetch tool's mirror under
/work/.mirror; the tests skip, saying so, when a snapshot is not there.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from test_seed_demos_compile import _blocks, _build_script  # the same ```lang block extraction as the seeds

MIRROR = Path("/work/.mirror")
SNAPSHOTS = {
    "new": ("ACLNN_PY_OPS_TRANSFORMER_NEW", "libochao-huawei+ops-transformer", "5778144076de"),
    "old": ("ACLNN_PY_OPS_TRANSFORMER_OLD", "hicann+ops-transformer", "c29bc1069d32"),
}
PAGES = {
    "new": ["mc2/moe_distribute_dispatch_v2/docs/aclnnMoeDistributeDispatchV3.md",
            "mc2/moe_distribute_combine_v2/docs/aclnnMoeDistributeCombineV3.md",
            "mc2/moe_distribute_dispatch_v2/docs/aclnnMoeDistributeDispatchV4.md",
            "mc2/moe_distribute_combine_v2/docs/aclnnMoeDistributeCombineV4.md",
            "mc2/moe_distribute_combine_add_rms_norm/docs/aclnnMoeDistributeCombineAddRmsNormV2.md",
            "mc2/distribute_barrier/docs/aclnnDistributeBarrierV2.md"],
    "old": ["mc2/moe_distribute_dispatch_v2/docs/aclnnMoeDistributeDispatchV3.md",
            "mc2/moe_distribute_combine_v2/docs/aclnnMoeDistributeCombineV3.md",
            "mc2/moe_distribute_combine_add_rms_norm/docs/aclnnMoeDistributeCombineAddRmsNormV2.md",
            "mc2/distribute_barrier/docs/aclnnDistributeBarrierV2.md"],
}
RECIPE_PAGE = "docs/zh/context/compile_and_run_sample.md"   # NEW: the CMake recipe
OLD_BUILD_PAGE = PAGES["old"][0]                             # OLD: the g++ line of pages that have none
RELEASE = {"new": "9.1.0", "old": None}                      # None: the simulator's default release


def _git_dir(path: Path) -> Optional[Path]:
    """The git directory of a bare repository or a checkout, or None."""
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    return path / ".git" if (path / ".git").exists() else None


class Snapshot:
    """One ops-transformer snapshot: reads files at its commit."""

    def __init__(self, which: str) -> None:
        var, mirror, self.commit = SNAPSHOTS[which]
        where = os.environ.get(var)
        candidates = [Path(where)] if where else [MIRROR / mirror / "repo", MIRROR / mirror]
        self.git = next((g for g in map(_git_dir, candidates) if g is not None), None)
        self.why = None
        if shutil.which("git") is None:
            self.why = "git is not installed"
        elif self.git is None:
            self.why = (f"the {which} ops-transformer snapshot is not here: set {var} to a git directory or checkout "
                        f"of it, or fetch it into {MIRROR / mirror}")
        elif self._git("cat-file", "-e", f"{self.commit}^{{commit}}").returncode != 0:
            self.why = f"{self.git} does not hold commit {self.commit} of the {which} snapshot"

    def _git(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", f"--git-dir={self.git}", *args], capture_output=True, text=True)

    def read(self, path: str) -> str:
        res = self._git("show", f"{self.commit}:{path}")
        assert res.returncode == 0, f"{path} at {self.commit}: {res.stderr}"
        return res.stdout


def _a3_demo(md: str) -> str:
    """The page's A3 demo: its one ```Cpp block that is not an A2 program (A2 demos use opdev/fp16_t.h and the
    *_A2 world sizes)."""
    code = [b for b in _blocks(md, "Cpp") if "fp16_t" not in b and "_A2" not in b]
    assert len(code) == 1, f"expected one A3 ```Cpp block, found {len(code)}"
    return code[0]


def _expected_devices(code: str) -> set:
    """The devices that must report success: EP_WORLD_SIZE * TP_WORLD_SIZE of them, restricted to the demo's
    availableRank set when it scales down."""
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", code, flags=re.S)
    size = lambda name: int(m.group(1)) if (m := re.search(name + r"\s*=\s*(\d+)", code)) else 1  # noqa: E731
    devices = set(range(size("EP_WORLD_SIZE") * max(size("TP_WORLD_SIZE"), 1)))
    m = re.search(r"availableRank\s*\{([^}]*)\}", code)
    return devices & {int(v) for v in re.findall(r"-?\d+", m.group(1))} if m else devices


def _cmake_lists(recipe: str, source: str) -> str:
    """The docs' CMakeLists example for `source`, with the MC2 link block the docs add for MC2 operators."""
    blocks = _blocks(recipe, "bash")
    example = next(b for b in blocks if "add_executable(opapi_test" in b)
    mc2 = next(b for b in blocks if "find_package(Threads REQUIRED)" in b)
    name = re.search(r"add_executable\(opapi_test\s+(\S+)\)", example).group(1)
    return example.replace(name, source) + "\n" + mc2


def _sim_shell(home: Path, script: str, env: Dict[str, str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    """Runs `script` after sourcing the simulator's set_env.sh, as the docs say."""
    return subprocess.run(["bash", "-c", f"source {shlex.quote(str(home / 'set_env.sh'))} && {script}"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _clean_env(release: Optional[str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACLNN_SIM_", "HCCL_BUFFSIZE"))}
    if release:
        env["ACLNN_SIM_CANN_VERSION"] = release
    return env


def _build(which: str, snap: Snapshot, page: str, home: Path, work: Path) -> Path:
    code = _a3_demo(snap.read(page))
    if which == "new":
        (work / "demo.cpp").write_text(code, encoding="utf-8")
        (work / "CMakeLists.txt").write_text(_cmake_lists(snap.read(RECIPE_PAGE), "demo.cpp"), encoding="utf-8")
        (work / "build").mkdir()
        res = _sim_shell(home, "cmake ../ -DCMAKE_CXX_COMPILER=g++ -DCMAKE_SKIP_RPATH=TRUE && make", _clean_env(None),
                         work / "build", 600)
        exe = work / "build" / "bin" / "opapi_test"
    else:
        script = _build_script(snap.read(page)) or _build_script(snap.read(OLD_BUILD_PAGE))
        assert script, "no OLD page has a g++ build line"
        src = re.search(r'g\+\+\s+"?([\w.]+\.cpp)"?', script).group(1)
        (work / src).write_text(code, encoding="utf-8")
        script = re.sub(r"^cann_path=.*$", f"cann_path={shlex.quote(str(home))}", script, flags=re.M)
        (work / "build.sh").write_text(script, encoding="utf-8")
        res = _sim_shell(home, "bash build.sh", _clean_env(None), work, 600)
        exe = work / re.search(r"-o\s+(\S+)", script).group(1)
    assert res.returncode == 0 and exe.is_file(), f"{page} did not build:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return exe


def _successes(out: str) -> set:
    return {int(d) for d in re.findall(r"device_(\d+) .*?execute successfully", out)}


def _unique_pages(which: str, snap: Snapshot) -> List[str]:
    """The pages whose demo programs differ (Dispatch and Combine pages of a version share one program)."""
    seen, pages = set(), []
    for page in PAGES[which]:
        digest = hashlib.sha256(_a3_demo(snap.read(page)).encode()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            pages.append(page)
    return pages


@pytest.fixture(scope="module", params=["new", "old"])
def demos(request, cann_sim_home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(which, {page: (executable, expected devices)}), each distinct demo built once."""
    which = request.param
    snap = Snapshot(which)
    if snap.why:
        pytest.skip(snap.why)
    if which == "new" and shutil.which("cmake") is None:
        pytest.skip("the NEW demos build with CMake, which is not installed (pip install cmake provides one)")
    built = {}
    for page in _unique_pages(which, snap):
        work = tmp_path_factory.mktemp(Path(page).stem)
        built[page] = (_build(which, snap, page, cann_sim_home, work), _expected_devices(_a3_demo(snap.read(page))))
    return which, built


def _run(exe: Path, home: Path, release: Optional[str]) -> subprocess.CompletedProcess:
    return _sim_shell(home, shlex.quote(str(exe)), _clean_env(release), exe.parent, 300)


def test_demos_run_to_success_under_their_release(demos: tuple, cann_sim_home: Path) -> None:
    which, built = demos
    failures = []
    for page, (exe, expected) in built.items():
        res = _run(exe, cann_sim_home, RELEASE[which])
        got = _successes(res.stdout)
        if res.returncode != 0 or got != expected or "aclFinalize success" not in res.stdout:
            failures.append(f"{page}: exit {res.returncode}, successes on devices {sorted(got)}, expected "
                            f"{sorted(expected)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("demos", ["new"], indirect=True)
def test_new_demos_need_their_release(demos: tuple, cann_sim_home: Path) -> None:
    """The NEW DispatchV3 demo passes tpRecvCounts (1,) with tpWorldSize 0, which the default (OLD) release rejects
    (tiling: dim0 == tpWorldSize); its V4 demo needs a release with V4."""
    _, built = demos
    for page in (PAGES["new"][0], PAGES["new"][2]):
        res = _run(built[page][0], cann_sim_home, None)
        assert _successes(res.stdout) == set(), f"{page} succeeded under the default release:\n{res.stdout}"
        assert "561002" in res.stdout or "561003" in res.stdout, res.stdout
