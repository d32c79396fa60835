"""The operator catalog is the one declaration of each operator: the C prototypes, the Python signatures of the
per-rank ops, the validators and the world references, the pre-check's agreement rules and `info` all come
from it, and a wrapper derived from an entry runs on the simulator."""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import aclnn_py
from aclnn_py import catalog, reference, validate
from aclnn_py.dtypes import bfloat16
from aclnn_py.ops.call import call_op
from aclnn_py.orchestration import precheck
from aclnn_py.runtime import abi

from conftest import live_objects


def _prototype_params(header: str, function: str) -> list:
    """Parameter names of ``function``'s prototype in a C header."""
    m = re.search(re.escape(function) + r"\s*\((.*?)\)\s*;", header, re.S)
    assert m, f"{function} not declared"
    text = re.sub(r"/\*.*?\*/|//[^\n]*", "", m.group(1), flags=re.S)
    return [re.findall(r"(\w+)\s*$", arg.strip())[0] for arg in text.split(",")]


@pytest.mark.parametrize("op", list(catalog.OPS.values()), ids=list(catalog.OPS))
def test_entry_is_the_installed_headers_prototype(op, cann_sim_home):
    path = cann_sim_home / "include" / op.header
    if not path.is_file():
        pytest.skip(f"the simulator does not install {op.header}")
    names = _prototype_params(path.read_text(), op.c_name + "GetWorkspaceSize")
    assert names == [p.c_name for p in op.params] + ["workspaceSize", "executor"]
    assert len(abi.phase1(op).argtypes) == len(names) == op.arg_count


@pytest.mark.parametrize("op", catalog.PUBLIC, ids=[o.c_name for o in catalog.PUBLIC])
def test_python_signatures_come_from_the_entry(op):
    inputs = [p.name for p in op.inputs]
    per_rank = list(inspect.signature(getattr(aclnn_py, op.py_name)).parameters)
    assert per_rank == inputs + ["stream", "sync"] + (["out"] if op.outputs else [])
    assert list(inspect.signature(getattr(validate, op.py_name)).parameters)[:len(inputs)] == inputs
    world = [p.name for p in op.inputs if not (p.rank_local and p.kind != catalog.STR)]
    assert list(inspect.signature(getattr(reference, op.py_name)).parameters) == world + ["env", "cann_version"]
    positional = [n for n, p in inspect.signature(getattr(aclnn_py, op.py_name)).parameters.items()
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == inputs[:op.positional]
    assert all(p.doc for p in op.inputs), [p.name for p in op.inputs if not p.doc]


def test_versions_derive_from_one_entry():
    d3, d4, d2 = catalog.DISPATCH_V3, catalog.DISPATCH_V4, catalog.DISPATCH_V2
    assert [p.c_name for p in d4.params if not d3.has(p.name)] == ["performanceInfoOptional"]
    assert {p.name for p in d3.params} - {p.name for p in d2.params} == {
        "elastic_info", "zero_expert_num", "copy_expert_num", "const_expert_num"}
    assert d4.param("x") is d3.param("x")                      # the very same declaration
    assert catalog.FAMILIES["MoeDistributeDispatch"] == (d4, d3, d2)


def test_precheck_compares_what_the_entry_says():
    x = np.zeros((4, 1024), bfloat16)
    args = dict(x=x, expert_ids=np.zeros((4, 2), np.int32), scales=None, x_active_mask=None,
                expert_scales=np.zeros((4, 2), np.float32), elastic_info=np.arange(8, dtype=np.int32),
                group_ep="g", ep_world_size=2, ep_rank_id=1, moe_expert_num=4, group_tp="", tp_world_size=0,
                tp_rank_id=0, expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0, quant_mode=0,
                global_bs=0, expert_token_nums_type=1, comm_alg="", zero_expert_num=0, copy_expert_num=0,
                const_expert_num=0)
    s = precheck.summary(catalog.DISPATCH_V3, args)
    assert "ep_rank_id" not in s and "group_ep" not in s and "expert_scales" not in s      # rank-local / per-rank
    assert s["x"] == ("tensor", str(np.dtype(bfloat16)), 2) and s["x.shape[1]"] == 1024
    assert s["expert_ids.shape[1]"] == 2 and s["x.shape[0] (BS, with global_bs == 0)"] == 4
    assert s["elastic_info"][2] == tuple(range(8)) and s["moe_expert_num"] == 4
    assert "x.shape[0] (BS, with global_bs == 0)" not in precheck.summary(catalog.DISPATCH_V3,
                                                                           dict(args, global_bs=8))


def test_a_wrapper_derived_from_an_entry_runs_on_the_simulator(sim):
    """What adding an operator version takes on the Python side: its entry, then a function made from it."""
    barrier = catalog.make_function(catalog.BARRIER_V2, "my_barrier", call_op, "a barrier",
                                    extra=(("stream", None), ("sync", True)))
    assert list(inspect.signature(barrier).parameters)[:2] == ["x_ref", "time_out"]

    def rank_fn(ctx):
        x = np.full((2,), ctx.rank, np.int32)
        got = barrier(x, group=ctx.group("ep"), world_size=2, time_out=10_000_000)
        return got is x

    with aclnn_py.World.ep_tp(2, backend="device") as w:
        assert w.run(rank_fn) == [True, True]
    assert {k: v for k, v in live_objects(sim).items() if k in ("buffer", "tensor", "executor")} == {}


def test_info_lists_every_family_from_the_catalog(sim):
    from aclnn_py.info import info_lines
    text = "\n".join(info_lines())
    for family, versions in catalog.FAMILIES.items():
        assert family in text
    assert "MoeDistributeDispatchV3" in text
