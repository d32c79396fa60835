"""CANN releases on the Python side (issue 11): which release is installed and where that was read, the profile
that follows, the operator version that runs (V4 preferred, V2 on a V2-only install), V4's performance_info,
and the reference computing what each release computes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import aclnn_py
from aclnn_py import profiles, reference
from aclnn_py.demos.common import distinct_ids, random_bf16, routing_weights
from aclnn_py.errors import AclnnError
from aclnn_py.releases import CHANGES, version_number
from aclnn_py.runtime import release as rel

from conftest import ROOT, live_objects

EP, BS, H, K, M = 2, 4, 1024, 2, 4


# ---- detection ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("files,want", [
    ({"share/info/ops_transformer/version.info": "Version=9.0.0\nversion_dir=cann\n"}, "9.0.0"),
    ({"share/info/runtime/version.info": "Version=8.5.0-beta.1\n"}, "8.5.0-beta.1"),
    ({"x86_64-linux/ascend_toolkit_install.info": "package_name=Ascend-cann-toolkit\nversion=8.3.RC1\n"}, "8.3.RC1"),
    ({"version.cfg": "runtime_running_version=[7.6.0.1.220:8.0.0]\n"}, "8.0.0"),
    ({"ops_transformer/version.info": "Version=8.5.0.alpha001\n"}, "8.5.0.alpha001"),
    ({"share/info/ops_transformer/version.info": "Version=9.1.0\n",
      "x86_64-linux/ascend_toolkit_install.info": "version=8.5.0\n"}, "9.1.0"),          # the most specific wins
])
def test_release_from_the_install_files(tmp_path, files, want):
    for name, text in files.items():
        f = tmp_path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    found = rel._read_files(tmp_path)
    assert found.release == want and found.source.endswith(list(files)[0].split("/")[-1])


def test_release_numbers_are_canns():
    assert version_number("8.5.0.alpha001") == 80499701 and version_number("8.5.0-beta.1") == 80499801
    assert version_number("9.0.0") == 90000000 and version_number("9.1.0") == 90100000
    assert version_number("not a release") is None


def test_profiles_follow_the_table():
    old, beta, v9, v91 = (profiles.profile_for(r) for r in ("8.5.0.alpha001", "8.5.0-beta.1", "9.0.0", "9.1.0"))
    assert all(old.off(c.flag) for c in CHANGES) and all(v91.on(c.flag) for c in CHANGES)
    assert beta.on("const_alpha_2d") and beta.off("tp_removed") and v9.on("assist_128a") and v9.off("tp_removed")
    for unknown in ("9.5.0", "8.3.RC1", "garbage"):
        p = profiles.profile_for(unknown)
        assert not p.known and all(p.has(c.flag) is None for c in CHANGES) and "unknown" in p.name


def test_override_and_simulator_release(sim, monkeypatch):
    monkeypatch.setenv("ACLNN_SIM_CANN_VERSION", "9.0.0")
    monkeypatch.delenv("ACLNN_PY_CANN_VERSION", raising=False)
    p = profiles.active_profile(load=True)
    assert p.release == "9.0.0" and p.source == 'aclsysGetVersionStr("ops_transformer")'
    monkeypatch.setenv("ACLNN_PY_CANN_VERSION", "9.1.0")
    assert profiles.active_profile().release == "9.1.0" and profiles.active_profile().source == "ACLNN_PY_CANN_VERSION"


def _cli_info(env: dict) -> str:
    r = subprocess.run([sys.executable, "-m", "aclnn_py", "info"], env=env, capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


def test_info_names_the_release_where_it_was_read_and_the_profile(cann_sim_home):
    env = {**os.environ, "ACLNN_PY_CANN_HOME": str(cann_sim_home), "ACLNN_SIM_CANN_VERSION": "9.1.0"}
    env.pop("ACLNN_PY_CANN_VERSION", None)
    out = _cli_info(env)
    assert 'CANN release: 9.1.0  (read from aclsysGetVersionStr("ops_transformer"))' in out
    assert "rules and reference: CANN 9.1.0" in out and "tp_removed" in out
    out = _cli_info({**env, "ACLNN_PY_CANN_VERSION": "9.7.0"})
    assert "CANN release: 9.7.0  (read from ACLNN_PY_CANN_VERSION)" in out
    assert "only the rules every known release shares" in out


# ---- operator versions -------------------------------------------------------------------------------------
def _inputs(rank):
    rng = np.random.default_rng(30 + rank)
    return random_bf16(rng, (BS, H)), distinct_ids(rng, BS, K, np.arange(M)), routing_weights(rng, BS, K)


def _v4_rank(ctx, prefill):
    x, ids, w = _inputs(ctx.rank)
    common = dict(group_ep=ctx.group("ep"), ep_world_size=EP, ep_rank_id=ctx.ep_rank, moe_expert_num=M)
    perf = None if prefill is None else np.full((EP,), prefill, np.int64)
    d4 = aclnn_py.moe_distribute_dispatch_v4(x, ids, performance_info=perf, **common)
    d3 = aclnn_py.moe_distribute_dispatch_v3(x, ids, **common)
    c4 = aclnn_py.moe_distribute_combine_v4(np.asarray(d4.expand_x), ids, d4.assist_info_for_combine,
                                            d4.ep_recv_counts, w, performance_info=perf, **common)
    out = {"same_as_v3": all(np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
                             for a, b in zip(d4[:7], d3)),
           "dispatch_perf": np.asarray(d4.performance_info), "combine_perf": np.asarray(c4.performance_info),
           "x": np.asarray(c4.x), "type": type(d4).__name__}
    for t in (*d4, *d3, *c4):
        t.free()
    return out


@pytest.mark.parametrize("prefill", [None, (3 << 32) + 2**31 - 16])     # a low word no wait exceeds
def test_v4_returns_performance_info_and_the_v3_results(sim, monkeypatch, prefill):
    monkeypatch.setenv("ACLNN_SIM_CANN_VERSION", "9.1.0")
    monkeypatch.setenv("ACLNN_PY_CANN_VERSION", "9.1.0")
    got = {}
    for backend in ("device", "reference"):
        with aclnn_py.World.ep_tp(EP, backend=backend) as w:
            got[backend] = w.run(_v4_rank, prefill)
    for g in range(EP):
        dev, ref = got["device"][g], got["reference"][g]
        assert dev["type"] == ref["type"] == "DispatchV4Outputs" and dev["same_as_v3"] and ref["same_as_v3"]
        np.testing.assert_array_equal(dev["x"].view(np.uint16), ref["x"].view(np.uint16))
        for key in ("dispatch_perf", "combine_perf"):
            assert dev[key].shape == ref[key].shape == (EP,) and dev[key].dtype == np.int64
            if prefill is None:
                assert (dev[key] >= 0).all() and (ref[key] == 0).all()        # waits in us; the reference: none
            else:   # atomic max per 32-bit word: the big prefilled value stays (low word and high word)
                np.testing.assert_array_equal(dev[key], np.full(EP, prefill))
                np.testing.assert_array_equal(ref[key], np.full(EP, prefill))
    assert {k: v for k, v in live_objects(sim).items() if k in ("buffer", "tensor", "executor")} == {}


def test_v3_runs_on_v4_where_the_release_has_it(sim, monkeypatch):
    from aclnn_py.ops import device_path
    from aclnn_py import catalog
    monkeypatch.setattr(device_path, "_chosen", {})
    assert device_path.implementation(catalog.DISPATCH_V3, {}, profiles.profile_for("9.1.0")) is catalog.DISPATCH_V4
    assert device_path.implementation(catalog.DISPATCH_V3, {}, profiles.profile_for("8.5.0.alpha001")) \
        is catalog.DISPATCH_V3
    with pytest.raises(AclnnError) as e:
        device_path.implementation(catalog.COMBINE_V4, {}, profiles.profile_for("8.5.0.alpha001"))
    assert e.value.status == 561003 and "8.5.0.alpha001" in str(e.value)


V2_SCRIPT = r'''
import json, numpy as np, aclnn_py
from aclnn_py.demos.scenario import Scenario, run
out = {}
sc = Scenario(ep_world_size=4, tp_world_size=1, bs=8, h=1024, k=2, moe_expert_num=8, combine="combine", seed=3)
arn = Scenario(ep_world_size=4, tp_world_size=1, bs=8, h=1024, k=2, moe_expert_num=8, seed=4)
with aclnn_py.World.ep_tp(4, backend="device") as w:
    out["plain"] = run(sc, w).ok and run(arn, w).ok
    try:
        run(Scenario(ep_world_size=4, tp_world_size=1, bs=8, h=1024, k=2, moe_expert_num=8, combine="combine",
                     removed=(1,)), w)
    except aclnn_py.AclnnError as e:
        out["elastic"] = [e.status, str(e)]
print(json.dumps(out))
'''


def test_an_install_with_only_v2_runs_v3_calls_on_v2(cann_sim_home):
    tree = cann_sim_home.parent / "cann-sim-v2only"
    if not (tree / "lib64" / "libopapi.so").is_file():
        pytest.skip("build.sh did not build the V2-only simulator tree")
    env = {**os.environ, "ACLNN_PY_CANN_HOME": str(tree)}
    env.pop("ACLNN_PY_CANN_VERSION", None)
    r = subprocess.run([sys.executable, "-c", V2_SCRIPT], env=env, capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["plain"] is True                          # dispatch and combine through V2, bit-exact vs reference
    status, text = out["elastic"]
    assert status == 161002 and "'elastic_info'" in text and "aclnnMoeDistributeDispatchV2" in text


# ---- the reference per release -----------------------------------------------------------------------------
def test_const_expert_semantics_follow_the_release():
    """The same inputs (2-D alphas are only valid from 8.5.0-beta.1) give the softmax semantics there, and an
    unknown release refuses to guess; with 1-D alphas the old release gives the scalar semantics."""
    from aclnn_py.demos.scenario import Scenario, run_reference
    base = dict(ep_world_size=2, tp_world_size=1, bs=6, h=1024, k=2, moe_expert_num=2, const_expert_num=2,
                combine="combine", seed=5)
    new = Scenario(**base, cann_version="8.5.0-beta.1")
    inputs = new.inputs()
    assert inputs[0]["const_expert_alpha_1"].shape == (2, 1024)
    want_new = run_reference(new, inputs)
    old = Scenario(**base, cann_version="8.5.0.alpha001")
    want_old = run_reference(old, old.inputs())
    assert old.inputs()[0]["const_expert_alpha_1"].shape == (2,)
    assert not np.array_equal(want_new[0]["combine.x"], want_old[0]["combine.x"])
    with pytest.raises(AclnnError) as e:
        run_reference(Scenario(**base, cann_version="9.9.0"), inputs)
    assert e.value.status == 561003 and "cann_version" in str(e.value)


def test_unweighted_combine_and_expand_scales_in_9_1(sim, monkeypatch):
    from aclnn_py.demos.scenario import Scenario, run
    monkeypatch.setenv("ACLNN_SIM_CANN_VERSION", "9.1.0")
    sc = Scenario(ep_world_size=4, tp_world_size=0, bs=6, h=1024, k=3, moe_expert_num=8, combine="combine",
                  dispatch_expert_scales=True, empty_expert_scales=True, cann_version="9.1.0", seed=8)
    with aclnn_py.World.ep_tp(4, backend="device") as w:
        out = run(sc, w)
    assert out.ok, out.failures()[:5]
    want = out.want[0]
    n = int(want["dispatch.ep_recv_counts"][-1])
    assert np.any(want["dispatch.expand_scales"][:n] != 0)          # written, from the senders' weights
