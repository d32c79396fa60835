"""Hot-path caching of the binding (issue 5): compiled argument builders, memoised validation, output
specs, ``out=`` preallocated outputs, and the opt-in WorkspaceCache / ReuseExecutors. Every cache must
give the results of the uncached path, re-run every rule when anything they read changes, and leave
nothing alive (the ``sim`` fixture checks the simulator's live objects)."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

import aclnn_py
from aclnn_py import layout, reference, validate
from aclnn_py.demos.common import distinct_ids, random_bf16, routing_weights
from aclnn_py.dtypes import bfloat16
from aclnn_py.errors import AclnnError
from aclnn_py import catalog
from aclnn_py.ops import device_path, memo, reference_path
from aclnn_py.results import DispatchOutputs

EP, BS, H, K, M = 2, 4, 1024, 2, 4
DISPATCH = "aclnnMoeDistributeDispatchV3"


def _validated(validator, kwargs, outputs=None, cann_version=None):
    """The memoised validation's result for one call (what the call path reads of its memo entry)."""
    return memo.entry(validator, kwargs, outputs, cann_version).layout


# ---- argument builders --------------------------------------------------------------------------------
def _naive_arguments(spec, values):
    """The original one-branch-per-parameter builder (the behaviour the compiled one must keep)."""
    out = []
    for p in spec.params:
        v = values.get(p.c_name)
        if p.kind == catalog.TENSOR:
            out.append(None if v is None else v.handle)
        elif p.kind == catalog.STR:
            out.append(None if v is None else v.encode("utf-8"))
        elif p.kind == catalog.F32:
            out.append(float(v or 0.0))
        else:
            out.append(int(v or 0))
    return out


class _FakeTensor:
    def __init__(self, handle):
        self.handle = handle


@pytest.mark.parametrize("op", sorted(catalog.OPS))
def test_compiled_argument_builder_matches_the_naive_one(op):
    from aclnn_py.runtime.twophase import build_arguments
    spec = catalog.OPS[op]
    rng = np.random.default_rng(len(op))
    for trial in range(20):
        values = {}
        for i, p in enumerate(spec.params):
            name, kind = p.c_name, p.kind
            if rng.random() < 0.3:
                continue                                   # absent -> NULL / 0
            if kind == catalog.TENSOR:
                values[name] = None if rng.random() < 0.3 else _FakeTensor(int(rng.integers(1, 2**40)))
            elif kind == catalog.STR:
                values[name] = None if rng.random() < 0.3 else f"grp{trial}_{i}\u00e9"
            elif kind == catalog.F32:
                values[name] = float(rng.random())
            else:
                values[name] = int(rng.integers(-5, 2**40))
        assert build_arguments(spec, values) == _naive_arguments(spec, values)
    with pytest.raises(TypeError, match="unknown C parameters"):
        build_arguments(spec, {"noSuchParameter": 1})


# ---- memoised validation ------------------------------------------------------------------------------
class _Counting:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **kw):
        self.calls += 1
        return self.fn(*a, **kw)


class _Meta:
    """A device-tensor stand-in: shape and dtype only (value rules skip it)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


def _dispatch_kwargs(**over):
    rng = np.random.default_rng(0)
    kw = dict(x=_Meta((BS, H), bfloat16), expert_ids=distinct_ids(rng, BS, K, np.arange(M)),
              group_ep="g", ep_world_size=EP, ep_rank_id=0, moe_expert_num=M, scales=None, x_active_mask=None,
              expert_scales=None, elastic_info=None, group_tp="", tp_world_size=0, tp_rank_id=0,
              expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0, quant_mode=0, global_bs=0,
              expert_token_nums_type=1, comm_alg="", zero_expert_num=0, copy_expert_num=0, const_expert_num=0)
    kw.update(over)
    return kw


@pytest.fixture
def fresh_memo(monkeypatch):
    monkeypatch.setattr(memo, "_memo", {})
    monkeypatch.delenv("HCCL_BUFFSIZE", raising=False)


def test_validate_call_memoises_and_returns_the_validators_result(fresh_memo):
    v = _Counting(validate.moe_distribute_dispatch_v3)
    kw = _dispatch_kwargs()
    first = _validated(v, kw)
    assert first == validate.moe_distribute_dispatch_v3(**kw)
    for _ in range(3):
        assert _validated(v, dict(kw)) == first
    assert v.calls == 1


@pytest.mark.parametrize("change", [
    dict(ep_rank_id=1), dict(moe_expert_num=2), dict(quant_mode=2), dict(global_bs=16),
    dict(x=_Meta((BS, H + 512), bfloat16)), dict(x=_Meta((BS, H), np.float16)),
    dict(expert_ids=np.array([[0, 1], [2, 3], [0, 2], [1, 3]], np.int32)),
    dict(x_active_mask=np.array([True, True, False, False])), dict(comm_alg="fullmesh_v1"),
])
def test_any_change_re_runs_validation(fresh_memo, change):
    v = _Counting(validate.moe_distribute_dispatch_v3)
    _validated(v, _dispatch_kwargs())
    try:
        _validated(v, _dispatch_kwargs(**change))
    except AclnnError:
        pass                                             # some changes are invalid: the rules ran again
    assert v.calls == 2


def test_environment_change_re_runs_validation(fresh_memo, monkeypatch):
    v = _Counting(validate.moe_distribute_dispatch_v3)
    _validated(v, _dispatch_kwargs())
    monkeypatch.setenv("HCCL_BUFFSIZE", "lots")            # the same call, now with an invalid window size
    with pytest.raises(AclnnError) as e:
        _validated(v, _dispatch_kwargs())
    assert e.value.status == 561002
    monkeypatch.setenv("HCCL_BUFFSIZE", "300")
    _validated(v, _dispatch_kwargs())
    assert v.calls == 3


def test_failures_are_never_memoised(fresh_memo):
    v = _Counting(validate.moe_distribute_dispatch_v3)
    bad = _dispatch_kwargs(expert_ids=np.array([[0, 0], [1, 2], [0, 3], [1, 3]], np.int32))  # duplicate id
    for _ in range(3):
        with pytest.raises(AclnnError) as e:
            _validated(v, bad)
        assert e.value.status == 561002
    assert v.calls == 3


def test_types_are_part_of_the_key(fresh_memo):
    v = _Counting(validate.moe_distribute_dispatch_v3)
    _validated(v, _dispatch_kwargs())
    with pytest.raises(TypeError):                         # 2.0 is not an integer, although 2.0 == 2
        _validated(v, _dispatch_kwargs(ep_world_size=2.0))
    assert v.calls == 2


def test_large_host_arrays_and_lists_bypass_the_memo(fresh_memo):
    v = _Counting(validate.moe_distribute_dispatch_v3)
    big = _dispatch_kwargs(x=random_bf16(np.random.default_rng(1), (BS, H)))     # 8 KiB of host data
    lst = _dispatch_kwargs(expert_ids=[[0, 1], [2, 3], [0, 2], [1, 3]])
    for kw in (big, big, lst, lst):
        try:
            _validated(v, kw)
        except AclnnError as e:                           # the dispatch rules want arrays; they still ran
            assert e.status == 161002 and "expert_ids" in str(e)
    assert v.calls == 4


def test_validation_reads_no_environment_but_hccl_buffsize():
    """The memo key holds HCCL_BUFFSIZE only: a rule reading another variable must be added to it."""
    root = Path(validate.__file__).parent
    names = set()
    for f in root.glob("*.py"):
        src = f.read_text()
        names.update(re.findall(r"environ\.get\(\s*[\"']([A-Z_]+)", src))
        names.update(re.findall(r"getenv\(\s*[\"']([A-Z_]+)", src))
        names.update(re.findall(r"ENV_NAME\s*=\s*[\"']([A-Z_]+)", src))
    assert names <= {"HCCL_BUFFSIZE"}, names


def test_output_specs_are_memoised():
    lay = layout.MoeLayout(ep_world_size=EP, ep_rank_id=0, moe_expert_num=M, bs=BS, k=K)
    a = layout.dispatch_output_specs(lay, H, np.dtype(bfloat16), 0)
    assert layout.dispatch_output_specs(lay, H, np.dtype(bfloat16), 0) is a
    x = _Meta((BS, H), bfloat16)
    assert catalog.DISPATCH_V3.output_specs(lay, {"x": x, "quant_mode": 0}) is a


# ---- the device path on the simulator --------------------------------------------------------------------
def _inputs(rank):
    rng = np.random.default_rng(10 + rank)
    return (random_bf16(rng, (BS, H)), distinct_ids(rng, BS, K, np.arange(M)), routing_weights(rng, BS, K))


def _dispatch(ctx, x, ids, *, out=None):
    """The dispatch device path as the op runs it, with memoised validation and optional out=."""
    kw = _dispatch_kwargs(x=x, expert_ids=ids, group_ep=ctx.group("ep"), ep_rank_id=ctx.ep_rank)
    lay = _validated(validate.moe_distribute_dispatch_v3, kw, outputs=out)
    specs = catalog.DISPATCH_V3.output_specs(lay, kw)
    plan = device_path.DevicePlan(catalog.DISPATCH_V3, kw, specs, None)
    return DispatchOutputs(**device_path.run_on_device(catalog.DISPATCH_V3, kw, plan, None, True, out=out))


def _reference(xs, idss):
    return reference.moe_distribute_dispatch_v3(xs, idss, ep_world_size=EP, moe_expert_num=M)


def _host(t):
    return t.numpy() if hasattr(t, "handle") and t.handle is not None else np.asarray(t)


def _rows(d):
    """The written part of a dispatch result (out= buffers keep older rows beyond it): rows and triples."""
    n = int(_host(d.ep_recv_counts)[-1])
    return _host(d.expand_x)[:n].view(np.uint16), _host(d.assist_info_for_combine)[:3 * n]


def test_out_writes_in_place_and_matches_the_reference(sim):
    from aclnn_py.runtime.tensor import DeviceTensor

    def rank_fn(ctx):
        x, ids, _ = _inputs(ctx.rank)
        xd, idd = DeviceTensor.from_numpy(x), DeviceTensor.from_numpy(ids)
        fresh = _dispatch(ctx, xd, idd)
        try:
            got = _dispatch(ctx, xd, idd, out=fresh)              # the same buffers again, in place
            assert all(a is b for a, b in zip(got, fresh))
            return {name: getattr(got, name).numpy() for name in DispatchOutputs._fields}
        finally:
            for t in (*fresh, xd, idd):
                t.free()

    with aclnn_py.World.ep_tp(EP, backend="device") as world:
        got = world.run(rank_fn)
    want = _reference([_inputs(r)[0] for r in range(EP)], [_inputs(r)[1] for r in range(EP)])
    for g in range(EP):
        for name in DispatchOutputs._fields:
            np.testing.assert_array_equal(np.asarray(got[g][name]).view(np.uint8),
                                          np.ascontiguousarray(getattr(want[g], name)).view(np.uint8))


def test_out_must_match_the_call(sim):
    from aclnn_py.runtime.device import acl_init, set_device
    from aclnn_py.runtime.tensor import DeviceTensor
    specs = {"x": layout.TensorSpec((BS, H), np.dtype(bfloat16))}
    acl_init()
    set_device(0)
    with DeviceTensor.zeros((BS, H + 1), bfloat16) as wrong:
        with pytest.raises(AclnnError) as e:
            device_path.caller_outputs(catalog.COMBINE_V3, specs, wrong)
        assert e.value.status == 561002
    with pytest.raises(AclnnError, match="must be a live DeviceTensor"):
        device_path.caller_outputs(catalog.COMBINE_V3, specs, np.zeros((BS, H), bfloat16))
    t = DeviceTensor.zeros((BS, H), bfloat16)
    t.free()
    with pytest.raises(AclnnError, match="must be a live DeviceTensor"):      # freed
        device_path.caller_outputs(catalog.COMBINE_V3, specs, {"x": t})


def _count_gws(monkeypatch, op_name):
    from aclnn_py.runtime.library import get_library
    op = get_library().op(op_name)
    box = {"n": 0}

    def counted(real):
        def counting(*a):
            box["n"] += 1
            return real(*a)
        return counting

    # both bindings: the one releasing the GIL and the one holding it (see Stream.may_hold_gil)
    monkeypatch.setattr(op, "get_workspace_size", counted(op.get_workspace_size))
    monkeypatch.setattr(op, "held", (counted(op.held[0]), op.held[1]))
    return box


def test_workspace_cache_and_executor_reuse_give_the_same_results(sim, monkeypatch):
    """Repeated calls with new input contents each time, in place: right results, one GetWorkspaceSize per
    rank under ReuseExecutors, one workspace per stream, and nothing alive after the blocks."""
    from aclnn_py.runtime.tensor import DeviceTensor
    from aclnn_py.runtime.twophase import ReuseExecutors, WorkspaceCache
    gws = _count_gws(monkeypatch, DISPATCH)
    steps = 4
    mallocs: dict = {}
    real_malloc = sim.aclrtMalloc

    def counting_malloc(*a):
        mallocs[threading.get_ident()] = mallocs.get(threading.get_ident(), 0) + 1
        return real_malloc(*a)

    monkeypatch.setattr(sim, "aclrtMalloc", counting_malloc, raising=False)

    def step_inputs(rank, s):
        rng = np.random.default_rng(100 * s + rank)
        return random_bf16(rng, (BS, H)), distinct_ids(rng, BS, K, np.arange(M))

    def rank_fn(ctx):
        x0, ids0 = step_inputs(ctx.rank, 0)
        xd, idd = DeviceTensor.from_numpy(x0), DeviceTensor.from_numpy(ids0)
        out = _dispatch(ctx, xd, idd)
        seen = []
        try:
            with WorkspaceCache(), ReuseExecutors():
                for s in range(steps):
                    x, ids = step_inputs(ctx.rank, s)
                    xd.copy_from(x)
                    idd.copy_from(ids)
                    _dispatch(ctx, xd, idd, out=out)
                    seen.append(_rows(out))
                    if s == 1:
                        before = mallocs.get(threading.get_ident(), 0)
                    if s == steps - 1:                                  # no allocation per call
                        assert mallocs.get(threading.get_ident(), 0) == before
            return seen
        finally:
            for t in (*out, xd, idd):
                t.free()

    with aclnn_py.World.ep_tp(EP, backend="device") as world:
        got = world.run(rank_fn)
    assert gws["n"] == EP * 2          # the first fresh call, then one per rank for all repeated calls
    assert mallocs                     # the allocation counter saw the calls
    for s in range(steps):
        want = _reference([step_inputs(r, s)[0] for r in range(EP)], [step_inputs(r, s)[1] for r in range(EP)])
        for g in range(EP):
            rows, triples = _rows(want[g])
            np.testing.assert_array_equal(got[g][s][0], rows)
            np.testing.assert_array_equal(got[g][s][1], triples)


def test_executor_reuse_misses_when_a_tensor_changes(sim, monkeypatch):
    """A freed and re-made tensor (even at the same address) or a host array never replays an executor."""
    from aclnn_py.runtime.tensor import DeviceTensor
    from aclnn_py.runtime.twophase import ReuseExecutors
    gws = _count_gws(monkeypatch, DISPATCH)

    def rank_fn(ctx):
        x, ids, _ = _inputs(ctx.rank)
        xd, idd = DeviceTensor.from_numpy(x), DeviceTensor.from_numpy(ids)
        out = _dispatch(ctx, xd, idd)
        try:
            with ReuseExecutors():
                _dispatch(ctx, xd, idd, out=out)        # miss: new executor
                _dispatch(ctx, xd, idd, out=out)        # hit
                xd.free()
                xd = DeviceTensor.from_numpy(x)
                _dispatch(ctx, xd, idd, out=out)        # miss: another tensor
                _dispatch(ctx, x, idd, out=out)         # host x: uploaded, never reused
                _dispatch(ctx, x, idd, out=out)
        finally:
            for t in (*out, xd, idd):
                t.free()

    with aclnn_py.World.ep_tp(EP, backend="device") as world:
        world.run(rank_fn)
    assert gws["n"] == EP * 5


def test_fill_outputs_on_the_reference_backend():
    res = DispatchOutputs(*[np.full(3, i, np.int32) for i in range(7)])
    out = DispatchOutputs(*[np.zeros(3, np.int32) for _ in range(7)])
    assert reference_path.fill_outputs(out, res) is out
    assert [int(o[0]) for o in out] == list(range(7))
