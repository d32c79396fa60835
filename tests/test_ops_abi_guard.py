"""The wrappers refuse to call an operator whose installed ABI differs from the one they bind."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import aclnn_py
from aclnn_py import catalog
from aclnn_py.catalog import snake
from aclnn_py.errors import AclnnError
from aclnn_py.ops import device_path


def check_installed_abi(name: str) -> None:
    device_path.implementation(catalog.OPS[name])


@pytest.fixture
def fresh_guard(sim, monkeypatch):
    monkeypatch.setattr(device_path, "_chosen", {})
    return sim


def test_real_headers_pass(fresh_guard, monkeypatch):
    monkeypatch.setenv("ACLNN_SIM_CANN_VERSION", "9.1.0")         # a release with every public version
    for op in catalog.PUBLIC:
        device_path.implementation(op)


def test_header_with_performance_info_is_refused(fresh_guard, monkeypatch, tmp_path):
    inc = tmp_path / "include" / "aclnnop"
    inc.mkdir(parents=True)
    (inc / "aclnn_moe_distribute_dispatch_v3.h").write_text(
        "aclnnStatus aclnnMoeDistributeDispatchV3GetWorkspaceSize(const aclTensor *x, /*...*/ "
        "const aclTensor *elasticInfoOptional, const aclTensor *performanceInfoOptional, /*...*/);\n")
    monkeypatch.setattr(fresh_guard, "install", dataclasses.replace(fresh_guard.install, home=tmp_path))
    with pytest.raises(AclnnError) as e:
        check_installed_abi("aclnnMoeDistributeDispatchV3")
    assert e.value.status == 561003 and "performanceInfoOptional" in str(e.value) and "33" in str(e.value)
    check_installed_abi("aclnnMoeDistributeCombineV3")  # its header is absent there: nothing to object to


def test_missing_v3_runs_on_v2_or_names_the_argument_v2_lacks(fresh_guard, monkeypatch):
    monkeypatch.setattr(fresh_guard, "exports", lambda name: name == "aclnnMoeDistributeDispatchV2")
    assert device_path.implementation(catalog.DISPATCH_V3, {"elastic_info": None}) is catalog.DISPATCH_V2
    with pytest.raises(AclnnError) as e:
        device_path.implementation(catalog.DISPATCH_V3, {"elastic_info": np.zeros(8, np.int32)})
    assert e.value.status == 161002 and "'elastic_info'" in str(e.value)
    assert "aclnnMoeDistributeDispatchV2" in str(e.value)
    monkeypatch.setattr(fresh_guard, "exports", lambda name: False)
    monkeypatch.setattr(device_path, "_chosen", {})          # what an install exports is cached per process
    with pytest.raises(AclnnError) as e:
        check_installed_abi("aclnnMoeDistributeDispatchV3")
    assert e.value.status == 561003 and "wrong argument list" not in str(e.value) and "no version" in str(e.value)


def test_refusal_happens_before_device_work(fresh_guard, monkeypatch, tmp_path):
    inc = tmp_path / "include" / "aclnnop"
    inc.mkdir(parents=True)
    (inc / "aclnn_moe_distribute_dispatch_v3.h").write_text("performanceInfoOptional")
    monkeypatch.setattr(fresh_guard, "install", dataclasses.replace(fresh_guard.install, home=tmp_path))
    x = np.zeros((2, 1024), aclnn_py.dtypes.bfloat16)
    ids = np.array([[0], [1]], np.int32)
    with aclnn_py.World.ep_tp(2, backend="device") as w:
        with pytest.raises(AclnnError):
            w.run(lambda ctx: aclnn_py.moe_distribute_dispatch_v3(
                x, ids, group_ep=ctx.group("ep"), ep_world_size=2, ep_rank_id=ctx.ep_rank, moe_expert_num=2))


@pytest.mark.parametrize("c,py,output", [
    ("xActiveMaskOptional", "x_active_mask", False), ("constExpertAlpha1Optional", "const_expert_alpha_1", False),
    ("expandXOut", "expand_x", True), ("epRecvCountsOut", "ep_recv_counts", True), ("xRef", "x_ref", False),
    ("normEps", "norm_eps", False), ("yOut", "y", True), ("timeOut", "time_out", False)])
def test_keywords_are_torch_npu_names(c, py, output):
    assert snake(c, output) == py


def test_every_c_parameter_has_a_distinct_keyword():
    for op in catalog.OPS.values():
        assert len({p.name for p in op.params}) == len(op.params), op.c_name
