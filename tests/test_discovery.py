"""Library discovery: every environment variable and default root, operator library order."""
from __future__ import annotations

from pathlib import Path

import pytest

from aclnn_py.runtime import discovery


def make_root(root: Path, *, runtime="libascendcl.so", ops=("libopapi.so",), arch_dir=False) -> Path:
    lib = root / ("x86_64-linux/lib64" if arch_dir else "lib64")
    lib.mkdir(parents=True)
    for name in (runtime, "libnnopbase.so", "libhccl.so", *ops):
        (lib / name).write_bytes(b"")
    return root


@pytest.mark.parametrize("var", discovery.HOME_VARIABLES)
def test_each_variable_is_used(tmp_path, var):
    home = make_root(tmp_path / var)
    found = discovery.find_cann({var: str(home)}, roots=(), simulator_roots=())
    assert found.home == home and found.source == var
    assert found.runtime == home / "lib64" / "libascendcl.so"
    assert found.nnopbase.name == "libnnopbase.so" and found.hccl.name == "libhccl.so"


def test_variable_precedence_and_skips(tmp_path):
    first, second = make_root(tmp_path / "a"), make_root(tmp_path / "b")
    env = {"ACLNN_PY_CANN_HOME": str(tmp_path / "missing"), "ASCEND_HOME_PATH": str(first),
           "ASCEND_TOOLKIT_HOME": str(second)}
    found = discovery.find_cann(env, roots=(), simulator_roots=())
    assert found.source == "ASCEND_HOME_PATH"
    assert found.skipped == [("ACLNN_PY_CANN_HOME", f"{tmp_path / 'missing'} does not exist")]


@pytest.mark.parametrize("index", range(len(discovery.DEFAULT_ROOTS)))
def test_each_default_root(tmp_path, index):
    roots = [str(tmp_path / f"root{i}") for i in range(len(discovery.DEFAULT_ROOTS))]
    make_root(Path(roots[index]))
    found = discovery.find_cann({}, roots=roots, simulator_roots=())
    assert found.home == Path(roots[index]) and found.source == f"default root {roots[index]}"


def test_default_roots_are_the_documented_ones():
    assert discovery.DEFAULT_ROOTS == ("/usr/local/Ascend/cann", "/usr/local/Ascend/latest",
                                       "/usr/local/Ascend/ascend-toolkit/latest")


def test_root_without_runtime_is_skipped(tmp_path):
    (tmp_path / "empty" / "lib64").mkdir(parents=True)
    assert discovery.find_cann({"ASCEND_HOME_PATH": str(tmp_path / "empty")}, roots=(), simulator_roots=()) is None


def test_acl_rt_and_arch_lib64(tmp_path):
    home = make_root(tmp_path / "h", runtime="libacl_rt.so", arch_dir=True)
    found = discovery.find_cann({"ASCEND_HOME_PATH": str(home)}, roots=(), simulator_roots=())
    assert found.runtime == home / "x86_64-linux" / "lib64" / "libacl_rt.so"


def test_operator_library_order(tmp_path):
    home = make_root(tmp_path / "h", ops=("libopapi.so", "libopapi_transformer.so", "libopapi_math.so"))
    custom = tmp_path / "custom"
    (custom / "op_api" / "lib").mkdir(parents=True)
    (custom / "op_api" / "lib" / "libcust_opapi.so").write_bytes(b"")
    opp = tmp_path / "opp"
    for vendor in ("vb", "va"):
        d = opp / "vendors" / vendor / "op_api" / "lib"
        d.mkdir(parents=True)
        (d / "libcust_opapi.so").write_bytes(b"")
    (opp / "vendors" / "config.ini").write_text("load_priority=vb,va\n")
    env = {"ASCEND_HOME_PATH": str(home), "ASCEND_CUSTOM_OPP_PATH": f"{custom}:{tmp_path / 'nothing'}",
           "ASCEND_OPP_PATH": str(opp)}
    found = discovery.find_cann(env, roots=(), simulator_roots=())
    rel = [str(p.relative_to(tmp_path)) for p in found.op_libraries]
    assert rel == ["custom/op_api/lib/libcust_opapi.so", "opp/vendors/vb/op_api/lib/libcust_opapi.so",
                   "opp/vendors/va/op_api/lib/libcust_opapi.so", "h/lib64/libopapi_math.so",
                   "h/lib64/libopapi_transformer.so", "h/lib64/libopapi.so"]


def test_simulator_marker(tmp_path):
    home = make_root(tmp_path / "sim")
    (home / discovery.SIMULATOR_MARKER).write_text("simulator\n")
    assert discovery.find_cann({"ACLNN_PY_CANN_HOME": str(home)}, roots=(), simulator_roots=()).is_simulator


def test_describe_search_lists_everything(tmp_path):
    text = discovery.describe_search({"ASCEND_HOME_PATH": "/x"}, roots=("/r1",), simulator_roots=())
    assert "ASCEND_HOME_PATH: /x" in text and "/r1" in text


# ---- the aclnn_py simulator trees, searched after the documented roots ---------------------------------------
def test_simulator_trees_come_after_the_documented_roots(tmp_path):
    from aclnn_py import simbuild
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache), "ASCEND_HOME_PATH": "/x"}
    sources = [s for s, _ in discovery.candidate_roots(env, roots=("/r1",))]
    assert sources[:2] == ["ASCEND_HOME_PATH", "default root /r1"]
    trees = simbuild.simulator_trees(env)
    assert sources[2:] == [s for s, _ in trees]
    assert trees[-1] == ("aclnn_py simulator in the user cache", cache / "aclnn_py" / "cann-sim-0.1.0")
    if simbuild.checkout_root() is not None:        # imported from this checkout: its build/cann-sim first
        assert trees[0][1] == simbuild.checkout_root() / "build" / "cann-sim"
    home_default = simbuild.cache_tree({"HOME": str(tmp_path)})
    assert home_default == tmp_path / ".cache" / "aclnn_py" / "cann-sim-0.1.0"


def test_sim_home_variable_replaces_the_simulator_trees(tmp_path):
    tree = make_root(tmp_path / "mysim")
    (tree / discovery.SIMULATOR_MARKER).write_text("simulator\n")
    found = discovery.find_cann({"ACLNN_PY_SIM_HOME": str(tree)}, roots=())
    assert found.home == tree and found.source == "ACLNN_PY_SIM_HOME" and found.is_simulator
    found, skipped = discovery.search({"ACLNN_PY_SIM_HOME": str(tmp_path / "none")}, roots=())
    assert found is None and skipped == [("ACLNN_PY_SIM_HOME", f"{tmp_path / 'none'} does not exist")]


def test_a_cache_tree_is_found_when_nothing_else_is(tmp_path):
    tree = make_root(tmp_path / "cache" / "aclnn_py" / "cann-sim-0.1.0")
    found = discovery.find_cann({"XDG_CACHE_HOME": str(tmp_path / "cache")}, roots=(),
                                simulator_roots=[("aclnn_py simulator in the user cache", tree)])
    assert found.home == tree and found.source == "aclnn_py simulator in the user cache"


def test_rejected_roots_name_only_what_a_variable_pointed_to(tmp_path):
    env = {"ACLNN_PY_CANN_HOME": str(tmp_path / "gone")}
    assert discovery.rejected_roots(env, roots=("/r1",), simulator_roots=()) == \
        [("ACLNN_PY_CANN_HOME", f"{tmp_path / 'gone'} does not exist")]
