"""Regression tests for issue 9's "found when the package was tried as a new user would" list (items 1-5, 7, 8).

Each test reproduces a symptom the issue reports and checks the decided behaviour, on both backends where the
symptom concerns both: the numpy reference behind a World (per-rank API), the simulator behind a World, and
the world-level reference (``aclnn_py.reference``). Decisions and their sources: docs/decisions.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import aclnn_py
from aclnn_py import reference, validate
from aclnn_py.orchestration import topology
from aclnn_py.demos.common import random_bf16
from aclnn_py.demos.scenario import Scenario, run, world_for
from aclnn_py.dtypes import bfloat16
from aclnn_py.errors import AclnnError, AclnnPyError

H = 1024
NULLPTR, INVALID, TILING, HANG = 161001, 161002, 561002, 507015


def names(err: BaseException, param: str) -> bool:
    """The error names ``param`` (snake_case, or the C camelCase the simulator's messages use)."""
    camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), param)
    return f"'{param}'" in str(err) or param in str(err) or camel in str(err)


@pytest.fixture
def worlds(request):
    """World.ep_tp(ep, tp) on a backend, made on demand and closed after the test."""
    made: List[aclnn_py.World] = []

    def make(backend: str, ep: int = 2, tp: int = 0, **kw) -> aclnn_py.World:
        if backend == "device":
            request.getfixturevalue("sim_library")
        w = aclnn_py.World.ep_tp(ep, tp, backend=backend, timeout_s=30, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


# ---------------------------------------------------------------------------------------------------------------
# 1. a valid 1-D x_active_mask of more than 32 tokens (IndexError in validate/combine.py, a message built eagerly)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrefixMask(Scenario):
    """A 1-D mask whose first two thirds are True (a padded serving batch)."""

    def inputs(self):
        inp = super().inputs()
        for d in inp:
            if d is not None:
                d["x_active_mask"] = np.arange(d["x"].shape[0]) < (2 * d["x"].shape[0]) // 3
        return inp


@pytest.mark.parametrize("combine", ["combine", "add_rms_norm"])
@pytest.mark.parametrize("bs", [33, 64, 512])
@pytest.mark.parametrize("backend", ["reference", "device"])
def test_1d_mask_longer_than_32_tokens_runs(worlds, backend, bs, combine):
    sc = PrefixMask(name=f"mask{bs}", ep_world_size=2, bs=bs, h=H, k=2, moe_expert_num=2, mask="1d", combine=combine,
                    seed=bs)
    out = run(sc, worlds(backend))        # per-rank on the backend, compared bit for bit with the world-level reference
    assert out.ok, out.failures()[:5]
    for g in range(2):
        key = "combine.x"
        unmasked = np.asarray(out.want[g][key]).reshape(bs, H)[(2 * bs) // 3:]
        assert_array_equal(unmasked.view(np.uint16), np.zeros_like(unmasked.view(np.uint16)))


@pytest.mark.parametrize("op", ["combine", "add_rms_norm", "dispatch"])
def test_unordered_1d_mask_longer_than_32_tokens_names_the_mask(op):
    bs = 40
    mask = np.arange(bs) < 30
    mask[3] = False
    with pytest.raises(AclnnError) as e:
        _validate(op, bs, mask)
    assert e.value.status == TILING and names(e.value, "x_active_mask") and "first False at token 3" in str(e.value)
    _validate(op, bs, np.arange(bs) < 30)        # the same length, valid: accepted


def _validate(op: str, bs: int, mask: np.ndarray) -> Any:
    ids = np.tile(np.array([[0, 1]], np.int32), (bs, 1))
    common = dict(group_ep="ep", ep_world_size=2, ep_rank_id=0, moe_expert_num=2, x_active_mask=mask)
    if op == "dispatch":
        return validate.moe_distribute_dispatch_v3(np.zeros((bs, H), bfloat16), ids, **common)
    a = 2 * bs * 2
    args = (np.zeros((a, H), bfloat16), ids, np.zeros(128 * a, np.int32), np.zeros(2, np.int32),
            np.zeros((bs, 2), np.float32))
    if op == "combine":
        return validate.moe_distribute_combine_v3(*args, tp_send_counts=np.zeros(0, np.int32), **common)
    return validate.moe_distribute_combine_add_rms_norm_v2(*args, np.zeros((bs, 1, H), bfloat16),
                                                           np.zeros(H, bfloat16), tp_send_counts=np.zeros(0, np.int32),
                                                           **common)


# ---------------------------------------------------------------------------------------------------------------
# 2. and 4. NaN / inf: comm_quant_mode 2, quant_mode 2, and NaNs of different sign meeting in AddRmsNorm
# ---------------------------------------------------------------------------------------------------------------
NEG_NAN = np.float32(np.copysign(np.float32(np.nan), np.float32(-1.0)))


@dataclass(frozen=True)
class Poisoned(Scenario):
    """Rows with NaN / inf: (global rank, token, column, value) in x (the experts' input, and ori_x), and in
    residual_x (AddRmsNorm)."""

    x_cells: Tuple = ()
    residual_cells: Tuple = ()

    def inputs(self):
        inp = super().inputs()
        for key, cells in (("x", self.x_cells), ("residual_x", self.residual_cells)):
            for g, t, c, v in cells:
                a = inp[g][key].copy()
                a.reshape(a.shape[0], -1)[t, c] = v
                inp[g][key] = a
                if key == "x":
                    inp[g]["ori_x"] = a
        return inp


POISON = {
    "nan": ((0, 0, 3, np.nan), (1, 1, 700, np.nan)),
    "neg_nan": ((0, 0, 3, NEG_NAN),),
    "inf": ((0, 0, 3, np.inf), (1, 2, 9, -np.inf)),
    "nan_and_inf": ((0, 0, 3, np.inf), (0, 0, 4, np.nan), (1, 3, 1023, NEG_NAN)),
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")     # the demo's comparison subtracts NaN / inf
@pytest.mark.parametrize("poison", sorted(POISON))
@pytest.mark.parametrize("case", ["comm_quant_combine", "comm_quant_arn", "quant_mode2", "quant_mode2_smooth",
                                  "quant_mode2_fp16"])
def test_nan_inf_rows_simulator_matches_reference(worlds, case, poison):
    kw: Dict[str, Any] = dict(combine="add_rms_norm" if case == "comm_quant_arn" else "combine")
    if case.startswith("comm_quant"):
        kw["comm_quant_mode"] = 2
    else:
        kw.update(quant_mode=2, smooth_scales=case.endswith("smooth"),
                  dtype=np.float16 if case.endswith("fp16") else bfloat16)
    sc = Poisoned(name=f"{case}-{poison}", ep_world_size=2, bs=4, h=H, k=2, moe_expert_num=2, seed=7,
                  x_cells=POISON[poison], **kw)
    out = run(sc, worlds("device"))
    assert out.ok, out.failures()[:5]


def test_comm_quant_nan_or_inf_turns_its_group_of_8_into_nan():
    """The decided semantics (BlockReduceMax propagates NaN; inf / inf and 0 * inf are NaN) on the reference."""
    from aclnn_py.reference.numerics import int8_comm_roundtrip
    rows = (np.arange(2 * 24, dtype=np.float32).reshape(2, 24) / 7).astype(bfloat16)
    clean = int8_comm_roundtrip(rows)
    rows[0, 9], rows[1, 17] = np.nan, np.inf     # group 1 of row 0, group 2 of row 1
    got = int8_comm_roundtrip(rows).view(np.uint16)
    want = clean.view(np.uint16).copy()
    want[0, 8:16] = want[1, 16:24] = 0x7FC0
    assert_array_equal(got, want)


def test_dispatch_quant_row_with_nan_or_inf():
    """quant_mode 2: NaN propagates through the row maximum (int8 0, canonical NaN scale); inf gives int8 0 and
    scale inf; other rows are untouched."""
    from aclnn_py.reference.dispatch import dynamic_quant
    x = np.tile(np.array([[2.0, -1.0, 0.5, 0.375]], np.float32), (3, 1))
    x[0, 2], x[1, 1] = NEG_NAN, np.inf
    q, s = dynamic_quant(x.astype(bfloat16))
    assert_array_equal(q[:2], np.zeros((2, 4), np.int8))
    assert_array_equal(s.view(np.uint32), np.array([0x7FC00000, 0x7F800000, 0x3C810204], np.uint32))
    assert_array_equal(q[2], np.array([127, -64, 32, 24], np.int8))


@pytest.mark.parametrize("acc_nan, residual_nan", [(np.nan, NEG_NAN), (NEG_NAN, np.nan), (NEG_NAN, NEG_NAN)])
def test_nans_of_different_sign_in_add_rms_norm(worlds, acc_nan, residual_nan):
    """The combined row and residual_x both NaN at one element: x, y and rstd are the canonical NaN on both
    backends (the simulator gave 0x7fc0 and the reference 0xffc0 before)."""
    sc = Poisoned(name="nan-signs", ep_world_size=2, bs=2, h=H, k=2, moe_expert_num=2, combine="add_rms_norm",
                  seed=1, x_cells=tuple((g, t, 5, acc_nan) for g in range(2) for t in range(2)),
                  residual_cells=tuple((g, t, 5, residual_nan) for g in range(2) for t in range(2)))
    out = run(sc, worlds("device"))
    assert out.ok, out.failures()[:5]
    for g in range(2):
        want = out.want[g]
        assert_array_equal(want["combine.x"].view(np.uint16)[:, 0, 5], np.full(2, 0x7FC0, np.uint16))
        assert_array_equal(want["combine.y"].view(np.uint16)[:, 0, :], np.full((2, H), 0x7FC0, np.uint16))
        assert_array_equal(want["combine.rstd"].view(np.uint32).reshape(-1), np.full(2, 0x7FC00000, np.uint32))


# ---------------------------------------------------------------------------------------------------------------
# 3. combine's x_active_mask selects other (token, k) pairs than dispatch's: the kernel waits forever (507015)
# ---------------------------------------------------------------------------------------------------------------
BS3 = 4
MASK2D = np.tile(np.array([[True, False]]), (BS3, 1))
MASKS = {"none-then-2d": (None, MASK2D), "none-then-1d": (None, np.arange(BS3) < 2),
         "2d-then-none": (MASK2D, None)}


def _dispatch_then_combine(ctx, dispatch_mask, combine_mask):
    rng = np.random.default_rng(ctx.rank)
    x = random_bf16(rng, (BS3, H))
    ids = np.tile(np.array([[0, 1]], np.int32), (BS3, 1))
    common = dict(group_ep=ctx.group("ep"), ep_world_size=2, ep_rank_id=ctx.ep_rank, moe_expert_num=2)
    d = aclnn_py.moe_distribute_dispatch_v3(x, ids, x_active_mask=dispatch_mask, **common)
    try:
        c = aclnn_py.moe_distribute_combine_v3(d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts,
                                               np.full((BS3, 2), 0.5, np.float32), tp_send_counts=d.tp_recv_counts,
                                               x_active_mask=combine_mask, **common)
        c.free()
    finally:
        for t in d:
            t.free()


@pytest.mark.parametrize("masks", sorted(MASKS))
@pytest.mark.parametrize("backend", ["reference", "device"])
def test_combine_mask_must_be_dispatch_mask(worlds, backend, masks, monkeypatch):
    monkeypatch.setenv("ACLNN_SIM_HANG_TIMEOUT_MS", "10000")
    w = worlds(backend)
    with pytest.raises(AclnnPyError):
        w.run(_dispatch_then_combine, *MASKS[masks])
    errors = list(w.last_errors.values())
    assert errors and all(e.status == HANG for e in errors), errors
    param = "assist_info_for_combine" if masks == "2d-then-none" else "x_active_mask"
    assert any(names(e, param) for e in errors), errors


def test_combine_mask_error_in_the_world_level_reference():
    x = [random_bf16(np.random.default_rng(g), (BS3, H)) for g in range(2)]
    ids = [np.tile(np.array([[0, 1]], np.int32), (BS3, 1))] * 2
    d = reference.moe_distribute_dispatch_v3(x, ids, ep_world_size=2, moe_expert_num=2)
    with pytest.raises(AclnnPyError) as e:
        reference.moe_distribute_combine_v3([o.expand_x for o in d], ids, [o.assist_info_for_combine for o in d],
                                            [o.ep_recv_counts for o in d], [np.full((BS3, 2), 0.5, np.float32)] * 2,
                                            tp_send_counts=[o.tp_recv_counts for o in d], x_active_mask=[MASK2D] * 2,
                                            ep_world_size=2, moe_expert_num=2)
    assert e.value.status == HANG and names(e.value, "x_active_mask") and "token 0 slot 1" in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# 5. ep_world_size / tp_world_size / world_size other than the communicator's rank count: refused before launch
# ---------------------------------------------------------------------------------------------------------------
def _dispatch(ctx, ep, tp=0, group_tp=None):
    x = random_bf16(np.random.default_rng(ctx.rank), (2, H))
    d = aclnn_py.moe_distribute_dispatch_v3(x, np.array([[0], [1]], np.int32), group_ep=ctx.group("ep"),
                                            ep_world_size=ep, ep_rank_id=ctx.ep_rank, moe_expert_num=ep,
                                            tp_world_size=tp, tp_rank_id=ctx.tp_rank,
                                            group_tp=ctx.group(group_tp) if group_tp else "")
    for t in d:
        t.free()


@pytest.mark.parametrize("precheck", ["1", "0"])
@pytest.mark.parametrize("backend", ["reference", "device"])
def test_ep_world_size_other_than_the_group(worlds, backend, precheck, monkeypatch):
    monkeypatch.setenv("ACLNN_PY_PRECHECK", precheck)
    with pytest.raises(AclnnError) as e:
        worlds(backend).run(_dispatch, 4)
    assert e.value.status == TILING and names(e.value, "ep_world_size") and "2 ranks" in str(e.value)


@pytest.mark.parametrize("backend", ["reference", "device"])
def test_tp_world_size_other_than_the_tp_group(worlds, backend):
    w = worlds(backend, 2, 2, groups={"tp4": [[0, 1, 2, 3]]})
    with pytest.raises(AclnnError) as e:
        w.run(_dispatch, 2, 2, "tp4")
    assert e.value.status == TILING and names(e.value, "tp_world_size") and "4 ranks" in str(e.value)


@pytest.mark.parametrize("backend", ["reference", "device"])
def test_barrier_world_size_other_than_the_group_without_precheck(worlds, backend, monkeypatch):
    monkeypatch.setenv("ACLNN_PY_PRECHECK", "0")

    def fn(ctx):
        aclnn_py.distribute_barrier_v2(np.zeros(1, np.int32), group=ctx.group("ep"), world_size=3)

    with pytest.raises(AclnnError) as e:
        worlds(backend).run(fn)
    assert e.value.status == TILING and names(e.value, "world_size") and "2 ranks" in str(e.value)


@pytest.mark.parametrize("op", ["dispatch", "barrier"])
def test_simulator_get_workspace_size_checks_the_communicator(worlds, op, monkeypatch):
    """Without the Python check (a C caller of the simulator), GetWorkspaceSize refuses the call itself."""
    monkeypatch.setattr(topology, "check_group_sizes", lambda *a, **k: None)
    monkeypatch.setenv("ACLNN_PY_PRECHECK", "0")

    def barrier(ctx):
        aclnn_py.distribute_barrier_v2(np.zeros(1, np.int32), group=ctx.group("ep"), world_size=3)

    with pytest.raises(AclnnError) as e:
        worlds("device").run(barrier if op == "barrier" else _dispatch, *(() if op == "barrier" else (4,)))
    param = "worldSize" if op == "barrier" else "epWorldSize"
    assert e.value.status == TILING and "GetWorkspaceSize" in str(e.value)
    assert f"{param} = {3 if op == 'barrier' else 4} but" in str(e.value) and "has 2 ranks" in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# 7. the world-level reference: no group names needed, documented rules before the lists' structure
# ---------------------------------------------------------------------------------------------------------------
def _world_inputs(world: int, bs: int = 2, k: int = 1) -> Dict[str, list]:
    rng = np.random.default_rng(3)
    return dict(x=[random_bf16(rng, (bs, H)) for _ in range(world)],
                expert_ids=[np.tile(np.arange(k, dtype=np.int32), (bs, 1)) for _ in range(world)])


def _world_pipeline(ep: int, tp: int, combine: str, **attrs) -> list:
    world = ep * max(tp, 1)
    inp = _world_inputs(world)
    d = reference.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], ep_world_size=ep, moe_expert_num=ep,
                                             tp_world_size=tp, **attrs)
    args = ([o.expand_x for o in d], inp["expert_ids"], [o.assist_info_for_combine for o in d],
            [o.ep_recv_counts for o in d], [np.ones((2, 1), np.float32)] * world)
    kw = dict(tp_send_counts=[o.tp_recv_counts for o in d], ep_world_size=ep, moe_expert_num=ep, tp_world_size=tp,
              **attrs)
    if combine == "combine":
        return reference.moe_distribute_combine_v3(*args, **kw)
    return reference.moe_distribute_combine_add_rms_norm_v2(*args, [np.zeros((2, 1, H), bfloat16)] * world,
                                                            [np.ones(H, bfloat16)] * world, **kw)


@pytest.mark.parametrize("combine", ["combine", "add_rms_norm"])
def test_world_level_reference_tp2_needs_no_group_names(combine):
    out = _world_pipeline(2, 2, combine)
    assert len(out) == 4 and all(o is not None for o in out)


@pytest.mark.parametrize("op", ["dispatch", "combine", "add_rms_norm"])
def test_world_level_reference_tp3_names_tp_world_size(op):
    """Lists sized for tp_world_size 2: the documented rule (tp_world_size <= 2) is reported, not the lengths."""
    inp = _world_inputs(4)
    with pytest.raises(AclnnError) as e:
        if op == "dispatch":
            reference.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], ep_world_size=2, moe_expert_num=2,
                                                 tp_world_size=3)
        else:
            d = reference.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], ep_world_size=2, moe_expert_num=2,
                                                     tp_world_size=2)
            args = ([o.expand_x for o in d], inp["expert_ids"], [o.assist_info_for_combine for o in d],
                    [o.ep_recv_counts for o in d], [np.ones((2, 1), np.float32)] * 4)
            kw = dict(tp_send_counts=[o.tp_recv_counts for o in d], ep_world_size=2, moe_expert_num=2, tp_world_size=3)
            if op == "combine":
                reference.moe_distribute_combine_v3(*args, **kw)
            else:
                reference.moe_distribute_combine_add_rms_norm_v2(*args, [np.zeros((2, 1, H), bfloat16)] * 4,
                                                                 [np.ones(H, bfloat16)] * 4, **kw)
    assert e.value.status == TILING and names(e.value, "tp_world_size") and "got 3" in str(e.value)


@pytest.mark.parametrize("bad, param, status", [
    (lambda kw: kw["x"].pop(), "x", TILING),
    (lambda kw: kw.__setitem__("scales", [None]), "scales", TILING),
    (lambda kw: kw.__setitem__("x", 5), "x", INVALID),
    (lambda kw: kw["x"].__setitem__(0, kw["x"][0].tolist()), "x", INVALID),
    (lambda kw: kw.__setitem__("expert_ids", None), "expert_ids", NULLPTR),
])
def test_world_level_reference_list_problems_name_the_parameter(bad, param, status):
    kw: Dict[str, Any] = _world_inputs(2)
    bad(kw)
    with pytest.raises(AclnnError) as e:
        reference.moe_distribute_dispatch_v3(kw.pop("x"), kw.pop("expert_ids"), ep_world_size=2, moe_expert_num=2,
                                             **kw)
    assert e.value.status == status and names(e.value, param), e.value


def test_world_level_barrier_rules_before_lengths():
    with pytest.raises(AclnnError) as e:       # world_size out of range, and x_ref of another length
        reference.distribute_barrier_v2([np.zeros(1, np.float32)] * 3, world_size=1)
    assert e.value.status == TILING and names(e.value, "world_size")
    with pytest.raises(AclnnError) as e:
        reference.distribute_barrier_v2([np.zeros(1, np.float32)] * 3, world_size=2)
    assert e.value.status == TILING and names(e.value, "x_ref") and "3 entries" in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# 8. garbage arguments: every parameter of every op, on both backends -> AclnnError with the documented status,
#    naming the parameter (never an internal TypeError / AttributeError / OverflowError / ValueError)
# ---------------------------------------------------------------------------------------------------------------
BS8 = 2
A8 = 2 * BS8 * 1                               # global_bs_eff * min(L, K) rows of expand_x


def _base_args(ctx) -> Dict[str, Tuple[Callable, Dict[str, Any]]]:
    """A valid call of every op for rank ``ctx`` of a 2-rank EP world: (op function, keyword arguments)."""
    ids = np.array([[0], [1]], np.int32)
    common = dict(group_ep=ctx.group("ep"), ep_world_size=2, ep_rank_id=ctx.ep_rank, moe_expert_num=2)
    combine = dict(expand_x=np.zeros((A8, H), bfloat16), expert_ids=ids,
                   assist_info_for_combine=np.zeros(128 * A8, np.int32), ep_send_counts=np.zeros(2, np.int32),
                   expert_scales=np.ones((BS8, 1), np.float32), **common)
    return {
        "dispatch": (aclnn_py.moe_distribute_dispatch_v3, dict(x=np.zeros((BS8, H), bfloat16), expert_ids=ids,
                                                               **common)),
        "combine": (aclnn_py.moe_distribute_combine_v3, combine),
        "add_rms_norm": (aclnn_py.moe_distribute_combine_add_rms_norm_v2,
                         dict(combine, residual_x=np.zeros((BS8, 1, H), bfloat16), gamma=np.ones(H, bfloat16))),
        "barrier": (aclnn_py.distribute_barrier_v2, dict(x_ref=np.zeros(4, np.float32), group=ctx.group("ep"),
                                                         world_size=2)),
    }


_MOE_INTS = ("ep_world_size", "ep_rank_id", "moe_expert_num", "tp_world_size", "tp_rank_id", "expert_shard_type",
             "shared_expert_num", "shared_expert_rank_num", "global_bs", "zero_expert_num", "copy_expert_num",
             "const_expert_num")
PARAMS = {
    "dispatch": dict(tensors=("x", "expert_ids", "scales", "x_active_mask", "expert_scales", "elastic_info"),
                     ints=_MOE_INTS + ("quant_mode", "expert_token_nums_type"), strings=("group_ep", "group_tp")),
    "combine": dict(tensors=("expand_x", "expert_ids", "assist_info_for_combine", "ep_send_counts", "expert_scales",
                             "tp_send_counts", "x_active_mask", "expand_scales", "shared_expert_x", "elastic_info",
                             "ori_x", "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v"),
                    ints=_MOE_INTS + ("comm_quant_mode",), strings=("group_ep", "group_tp")),
    "barrier": dict(tensors=("x_ref", "elastic_info"), ints=("world_size",), strings=("group",)),
}
PARAMS["add_rms_norm"] = dict(PARAMS["combine"], tensors=PARAMS["combine"]["tensors"] + ("residual_x", "gamma"))

BAD_TENSORS = (([[1.0, 2.0]], INVALID), ((1, 2), INVALID), (3, INVALID), ("abc", INVALID), (object(), INVALID))
BAD_INTS = ((True, INVALID), (1.5, INVALID), (None, NULLPTR), ("3", INVALID), (np.float64(2.0), INVALID),
            (2**70, INVALID), (-2**70, INVALID), ([2], INVALID))
BAD_STRINGS = ((5, INVALID), (b"ep", INVALID), (None, NULLPTR))
EXTRA = {  # parameter-specific garbage: (param, value, status)
    "dispatch": (("comm_alg", "bogus", TILING), ("comm_alg", 5, INVALID)),
    "combine": (("comm_alg", "bogus", TILING), ("comm_alg", 5, INVALID)),
    "add_rms_norm": (("comm_alg", "bogus", TILING), ("comm_alg", b"", INVALID), ("norm_eps", "1e-6", INVALID),
                     ("norm_eps", None, NULLPTR), ("norm_eps", True, INVALID)),
    "barrier": (("time_out", -5, TILING), ("time_out", 1.5, INVALID), ("time_out", "100", INVALID),
                ("time_out", 3_000_000_000, TILING), ("time_out", True, INVALID), ("time_out", 2**70, INVALID),
                ("time_out", np.array([-5], np.int32), TILING), ("time_out", [100], INVALID)),
}


def _cases(op: str) -> List[Tuple[str, Any, int]]:
    p = PARAMS[op]
    return ([(n, v, s) for n in p["tensors"] for v, s in BAD_TENSORS] + [(n, v, s) for n in p["ints"] for v, s in BAD_INTS]
            + [(n, v, s) for n in p["strings"] for v, s in BAD_STRINGS] + list(EXTRA[op]))


def _garbage_outcomes(ctx, op: str) -> List[Tuple[str, Any, int, BaseException]]:
    """Run every garbage case of ``op`` on this rank; the call must fail in validation, before any collective."""
    fn, base = _base_args(ctx)[op]
    out = []
    for name, value, status in _cases(op):
        kw = dict(base, **{name: value})
        pos = [kw.pop(n) for n in ("x_ref",) if op == "barrier"]
        try:
            fn(*pos, **kw)
            got: BaseException = AssertionError("accepted")
        except Exception as e:   # noqa: BLE001 - the test inspects whatever escapes
            got = e
        out.append((name, value, status, got))
    return out


@pytest.mark.parametrize("op", sorted(PARAMS))
@pytest.mark.parametrize("backend", ["reference", "device"])
def test_every_parameter_given_garbage(worlds, backend, op):
    outcomes = worlds(backend).run(_garbage_outcomes, op, ranks=[0])[0]
    bad = [f"{name}={value!r}: want {status}, got {type(e).__name__}: {str(e)[:160]}"
           for name, value, status, e in outcomes
           if not (isinstance(e, AclnnError) and e.status == status and names(e, name))]
    assert not bad, "\n".join(bad)
    assert len(outcomes) == len(_cases(op))


@pytest.mark.parametrize("backend", ["reference", "device"])
def test_numpy_integer_attributes_are_accepted(worlds, backend):
    def fn(ctx):
        x = random_bf16(np.random.default_rng(ctx.rank), (BS8, H))
        ids = np.array([[0], [1]], np.int32)
        common = dict(group_ep=ctx.group("ep"), ep_world_size=np.int64(2), ep_rank_id=np.int32(ctx.ep_rank),
                      moe_expert_num=np.uint8(2), tp_world_size=np.int16(0), global_bs=np.int64(0))
        d = aclnn_py.moe_distribute_dispatch_v3(x, ids, quant_mode=np.int64(0), **common)
        c = aclnn_py.moe_distribute_combine_v3(d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts,
                                               np.ones((BS8, 1), np.float32), tp_send_counts=d.tp_recv_counts,
                                               comm_quant_mode=np.int64(0), **common)
        aclnn_py.distribute_barrier_v2(c, group=ctx.group("ep"), world_size=np.int64(2), time_out=np.int32(10**7))
        got = c.numpy()
        c.free()
        for t in d:
            t.free()
        return got

    out = worlds(backend).run(fn)
    for g in range(2):       # one expert per rank, weight 1: each token comes back as it was sent
        assert_array_equal(out[g].view(np.uint16), random_bf16(np.random.default_rng(g), (BS8, H)).view(np.uint16))


@pytest.mark.parametrize("name, value, status", [
    ("h", 0, TILING), ("max_bs", -1, TILING), ("ep_world_size", 1, TILING), ("local_expert_num", 0, TILING),
    ("k", 17, TILING), ("shared_expert_num", 5, TILING), ("comm_alg", "bogus", TILING), ("h", 7168.0, INVALID),
    ("k", True, INVALID), ("comm_alg", 1, INVALID), ("max_bs", None, NULLPTR), ("ep_world_size", "16", INVALID),
])
def test_required_hccl_buffsize_checks_every_argument(name, value, status):
    args = dict(h=7168, max_bs=32, ep_world_size=16, local_expert_num=16, k=8, shared_expert_num=0)
    assert validate.required_hccl_buffsize_mb(**args) == 239
    with pytest.raises(AclnnError) as e:
        validate.required_hccl_buffsize_mb(**dict(args, **{name: value}))
    assert e.value.status == status and names(e.value, name)
