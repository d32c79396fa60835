"""Validation rules of aclnnMoeDistributeDispatchV3 (../shared/spec/dispatch-v3.md §13) and HCCL_BUFFSIZE.

Table-driven: every rule has a case just inside its bound (must pass) and one outside (must raise
AclnnError with the rule's status and a message naming the parameter).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import ml_dtypes
import numpy as np
import pytest

from aclnn_py.errors import AclnnError
from aclnn_py.layout import MoeLayout, dispatch_output_specs
from aclnn_py.validate import buffsize
from aclnn_py.validate import moe_distribute_dispatch_v3 as validate

BF16 = np.dtype(ml_dtypes.bfloat16)
F16, F32, I8, I32, I64 = (np.dtype(t) for t in (np.float16, np.float32, np.int8, np.int32, np.int64))
FP8 = np.dtype(ml_dtypes.float8_e5m2)
E8M0 = np.dtype(ml_dtypes.float8_e8m0fnu)
NULL, PARAM, TILING = 161001, 161002, 561002


class T(NamedTuple):
    """Shape-and-dtype stand-in (a device tensor, say): value rules skip it."""

    shape: tuple
    dtype: Any
    acl_format: Any = None


# Base call: ep 4, rank 1, M 8 (L 2), BS 4, H 1024, K 2, host arrays with distinct in-range ids.
def ids_array(bs=4, k=2, m=8, start=0):
    return np.array([[(start + t + j) % m for j in range(k)] for t in range(bs)], np.int32)


def base(**over):
    kw = dict(x=T((4, 1024), BF16), expert_ids=ids_array(), group_ep="ep", ep_world_size=4, ep_rank_id=1,
              moe_expert_num=8, env={})
    kw.update(over)
    return kw


def outs(kw, **replace):
    """The layout's output buffers for a call (as stand-ins), with some replaced."""
    x, ids = kw["x"], kw["expert_ids"]
    lay = MoeLayout(kw["ep_world_size"], kw["ep_rank_id"], kw["moe_expert_num"], x.shape[0], ids.shape[1],
                    kw.get("tp_world_size", 0), kw.get("shared_expert_num", 1),
                    kw.get("shared_expert_rank_num", 0), kw.get("global_bs", 0),
                    kw.get("elastic_info") is not None)
    specs = dispatch_output_specs(lay, x.shape[1], x.dtype, kw.get("quant_mode", 0))
    d = {n: T(s.shape, s.dtype) for n, s in specs.items()}
    d.update(replace)
    return d


def with_outs(replace: dict, **over):
    kw = base(**over)
    kw["outputs"] = outs(kw, **replace)
    return kw


def tp2(**over):
    """A valid TP=2 call (L = 1)."""
    kw = dict(moe_expert_num=4, expert_ids=ids_array(m=4), tp_world_size=2, tp_rank_id=1, group_tp="tp")
    kw.update(over)
    return base(**kw)


def ident_elastic(ep=4, m=8, r=0, flag=1, **patch):
    info = np.array([flag, ep, r, m] + list(range(ep)) * 2, np.int32)
    for i, v in patch.items():
        info[int(i[1:])] = v
    return info


ELASTIC_ONE_REMOVED = np.array([1, 3, 0, 6, 0, 1, -1, 2, 0, 1, 3, -1], np.int32)   # M' = 6, L' = 2
LONG = "g" * 128


class Case(NamedTuple):
    rule: str
    status: int
    param: str
    ok: Callable[[], dict]
    bad: Callable[[], dict]


CASES = [
    # ---- op_api (161001) -------------------------------------------------------------------
    Case("api1 x", NULL, "x", lambda: base(), lambda: base(x=None)),
    Case("api1 expert_ids", NULL, "expert_ids", lambda: base(), lambda: base(expert_ids=None)),
    *[Case(f"api1 {n}", NULL, n, lambda: with_outs({}), lambda n=n: with_outs({n: None}))
      for n in ("expand_x", "assist_info_for_combine", "expert_token_nums", "tp_recv_counts", "ep_recv_counts")],
    Case("api2 group_ep empty", NULL, "group_ep", lambda: base(group_ep="e"), lambda: base(group_ep="")),
    Case("api2 group_ep None", NULL, "group_ep", lambda: base(), lambda: base(group_ep=None)),
    Case("api3 dynamic_scales", NULL, "dynamic_scales", lambda: with_outs({}, quant_mode=2),
         lambda: with_outs({"dynamic_scales": None}, quant_mode=2)),
    Case("api3 dynamic_scales not needed", NULL, "dynamic_scales",
         lambda: with_outs({"dynamic_scales": None}, quant_mode=0),
         lambda: with_outs({"dynamic_scales": None}, quant_mode=2)),
    Case("api4 group_ep length", NULL, "group_ep", lambda: base(group_ep=LONG[:127]),
         lambda: base(group_ep=LONG)),
    Case("api5 group_tp length", NULL, "group_tp", lambda: base(group_tp=LONG[:127]),
         lambda: base(group_tp=LONG)),
    Case("api5 group_tp None", NULL, "group_tp", lambda: base(group_tp=""), lambda: base(group_tp=None)),
    # ---- generated layer: dtypes outside the op definition (161002) --------------------------
    Case("def x", PARAM, "x", lambda: base(x=T((4, 1024), F16)), lambda: base(x=T((4, 1024), F32))),
    Case("def expert_ids", PARAM, "expert_ids", lambda: base(), lambda: base(expert_ids=ids_array().astype(I64))),
    Case("def scales", PARAM, "scales", lambda: base(quant_mode=2, scales=T((8, 1024), F32)),
         lambda: base(quant_mode=2, scales=T((8, 1024), np.float64))),
    Case("def x_active_mask", PARAM, "x_active_mask", lambda: base(x_active_mask=T((4,), np.bool_)),
         lambda: base(x_active_mask=T((4,), I8))),
    Case("def expert_scales", PARAM, "expert_scales", lambda: base(expert_scales=T((4, 2), F32)),
         lambda: base(expert_scales=T((4, 2), F16))),
    Case("def elastic_info", PARAM, "elastic_info", lambda: base(elastic_info=T((12,), I32)),
         lambda: base(elastic_info=T((12,), I64))),
    *[Case(f"def {n}", PARAM, n, lambda: with_outs({}, quant_mode=2),
           lambda n=n, dt=dt: with_outs({n: T((64,) if n != "expand_x" else (64, 1024), dt)}, quant_mode=2))
      for n, dt in (("expand_x", F32), ("dynamic_scales", np.float64), ("assist_info_for_combine", I64),
                    ("expert_token_nums", I32), ("ep_recv_counts", I64), ("tp_recv_counts", I64),
                    ("expand_scales", F16))],
    # ---- tiling (561002) ---------------------------------------------------------------------
    Case("t2 ep low", TILING, "ep_world_size",
         lambda: base(ep_world_size=2, ep_rank_id=1, moe_expert_num=2, expert_ids=ids_array(m=2)),
         lambda: base(ep_world_size=1, ep_rank_id=0, moe_expert_num=2, expert_ids=ids_array(m=2))),
    Case("t2 ep high", TILING, "ep_world_size",
         lambda: base(ep_world_size=768, moe_expert_num=768, expert_ids=ids_array(m=768)),
         lambda: base(ep_world_size=769, moe_expert_num=769, expert_ids=ids_array(m=769))),
    Case("t3 tp high", TILING, "tp_world_size", lambda: tp2(), lambda: tp2(tp_world_size=3)),
    Case("t3 tp low", TILING, "tp_world_size", lambda: base(tp_world_size=0), lambda: base(tp_world_size=-1)),
    Case("t4 ep_rank high", TILING, "ep_rank_id", lambda: base(ep_rank_id=3), lambda: base(ep_rank_id=4)),
    Case("t4 ep_rank low", TILING, "ep_rank_id", lambda: base(ep_rank_id=0), lambda: base(ep_rank_id=-1)),
    Case("t5 tp_rank with tp", TILING, "tp_rank_id", lambda: tp2(tp_rank_id=1), lambda: tp2(tp_rank_id=2)),
    Case("t5 group_tp with tp", TILING, "group_tp", lambda: tp2(group_tp="t"), lambda: tp2(group_tp="")),
    Case("t5 tp_rank without tp", TILING, "tp_rank_id", lambda: base(tp_world_size=1, tp_rank_id=0),
         lambda: base(tp_world_size=1, tp_rank_id=1)),
    Case("t6 expert_shard_type", TILING, "expert_shard_type", lambda: base(expert_shard_type=0),
         lambda: base(expert_shard_type=1)),
    Case("t7 shared_expert_num high", TILING, "shared_expert_num",
         lambda: base(shared_expert_num=4, shared_expert_rank_num=4, ep_world_size=8, ep_rank_id=5),
         lambda: base(shared_expert_num=5, shared_expert_rank_num=5, ep_world_size=8)),
    Case("t7 shared_expert_num low", TILING, "shared_expert_num", lambda: base(shared_expert_num=0),
         lambda: base(shared_expert_num=-1)),
    Case("t8 shared_expert_rank_num high", TILING, "shared_expert_rank_num",
         lambda: base(shared_expert_rank_num=3, moe_expert_num=2, expert_ids=ids_array(m=2)),
         lambda: base(shared_expert_rank_num=4, moe_expert_num=2, expert_ids=ids_array(m=2))),
    Case("t8 shared_expert_rank_num low", TILING, "shared_expert_rank_num", lambda: base(),
         lambda: base(shared_expert_rank_num=-1)),
    Case("t9 moe_expert_num high", TILING, "moe_expert_num",
         lambda: base(moe_expert_num=1024, expert_ids=ids_array(m=1024)),
         lambda: base(moe_expert_num=1025, expert_ids=ids_array(m=1025))),
    Case("t9 moe_expert_num low", TILING, "moe_expert_num",
         lambda: base(ep_world_size=2, moe_expert_num=2, expert_ids=ids_array(m=2)),
         lambda: base(moe_expert_num=0)),
    Case("t10 quant_mode high", TILING, "quant_mode", lambda: base(quant_mode=2), lambda: base(quant_mode=3)),
    Case("t10 quant_mode low", TILING, "quant_mode", lambda: base(quant_mode=0), lambda: base(quant_mode=-1)),
    Case("t11 expert_token_nums_type", TILING, "expert_token_nums_type", lambda: base(expert_token_nums_type=0),
         lambda: base(expert_token_nums_type=2)),
    *[Case(f"t12 {n}", TILING, n, lambda n=n: base(**{n: 0}), lambda n=n: base(**{n: -1}))
      for n in ("zero_expert_num", "copy_expert_num", "const_expert_num")],
    Case("t12 INT32_MAX", TILING, "zero_expert_num", lambda: base(zero_expert_num=2 ** 31 - 1 - 8),
         lambda: base(zero_expert_num=2 ** 31 - 8)),
    Case("t13 comm_alg", TILING, "comm_alg", lambda: base(comm_alg="fullmesh_v2"),
         lambda: base(comm_alg="fullmesh")),
    Case("t13 comm_alg v1", TILING, "comm_alg", lambda: base(comm_alg="fullmesh_v1"),
         lambda: base(comm_alg="hierarchy")),
    Case("t13 comm_alg None means ''", TILING, "comm_alg", lambda: base(comm_alg=None),
         lambda: base(comm_alg="FULLMESH_V1")),
    Case("t14 static quant", TILING, "quant_mode", lambda: base(quant_mode=2, scales=T((8, 1024), F32)),
         lambda: base(quant_mode=1, scales=T((8, 1024), F32))),
    Case("t15 scales with quant 0", TILING, "scales", lambda: base(quant_mode=2, scales=T((8, 1024), F32)),
         lambda: base(quant_mode=0, scales=T((8, 1024), F32))),
    # 16 dims
    Case("t16 x dims", TILING, "x", lambda: base(), lambda: base(x=T((4, 1024, 1), BF16))),
    Case("t16 expert_ids dims", TILING, "expert_ids", lambda: base(), lambda: base(expert_ids=T((8,), I32))),
    Case("t16 scales dims", TILING, "scales", lambda: base(quant_mode=2, scales=T((8, 1024), F32)),
         lambda: base(quant_mode=2, scales=T((8 * 1024,), F32))),
    Case("t16 mask dims", TILING, "x_active_mask", lambda: base(x_active_mask=T((4, 2), np.bool_)),
         lambda: base(x_active_mask=T((4, 2, 1), np.bool_))),
    Case("t16 mask dim0", TILING, "x_active_mask", lambda: base(x_active_mask=T((4,), np.bool_)),
         lambda: base(x_active_mask=T((3,), np.bool_))),
    Case("t16 mask dim1", TILING, "x_active_mask", lambda: base(x_active_mask=T((4, 2), np.bool_)),
         lambda: base(x_active_mask=T((4, 3), np.bool_))),
    Case("t16 elastic dims", TILING, "elastic_info", lambda: base(elastic_info=ident_elastic()),
         lambda: base(elastic_info=T((12, 1), I32))),
    Case("t16 expand_x dims", TILING, "expand_x", lambda: with_outs({}),
         lambda: with_outs({"expand_x": T((64 * 1024,), BF16)})),
    Case("t16 dynamic_scales dims", TILING, "dynamic_scales", lambda: with_outs({"dynamic_scales": T((1, 1), F32)}),
         lambda: with_outs({"dynamic_scales": T((64, 1), F32)}, quant_mode=2)),
    *[Case(f"t16 {n} dims", TILING, n, lambda: with_outs({}),
           lambda n=n, dt=dt: with_outs({n: T((64, 1), dt)}))
      for n, dt in (("assist_info_for_combine", I32), ("expert_token_nums", I64), ("ep_recv_counts", I32),
                    ("tp_recv_counts", I32))],
    # 17 dtypes the op definition lists but the A3 tiling rejects
    Case("t17 x fp8", TILING, "x", lambda: base(x=T((4, 1024), F16)), lambda: base(x=T((4, 1024), FP8))),
    Case("t17 scales e8m0", TILING, "scales", lambda: base(quant_mode=2, scales=T((8, 1024), F32)),
         lambda: base(quant_mode=2, scales=T((8, 1024), E8M0))),
    Case("t17 expand_x int8 without quant", TILING, "expand_x", lambda: with_outs({}),
         lambda: with_outs({"expand_x": T((64, 1024), I8)})),
    Case("t17 expand_x bf16 with quant", TILING, "expand_x", lambda: with_outs({}, quant_mode=2),
         lambda: with_outs({"expand_x": T((64, 1024), BF16)}, quant_mode=2)),
    Case("t17 expand_x other float", TILING, "expand_x", lambda: with_outs({"expand_x": T((64, 1024), BF16)}),
         lambda: with_outs({"expand_x": T((64, 1024), F16)})),
    Case("t17 dynamic_scales e8m0", TILING, "dynamic_scales", lambda: with_outs({"dynamic_scales": T((64,), E8M0)}),
         lambda: with_outs({"dynamic_scales": T((64,), E8M0)}, quant_mode=2)),
    # 18 format
    Case("t18 FRACTAL_NZ", TILING, "x", lambda: base(x=T((4, 1024), BF16, 2)),
         lambda: base(x=T((4, 1024), BF16, 29))),
    Case("t18 FRACTAL_NZ output", TILING, "ep_recv_counts", lambda: with_outs({}),
         lambda: with_outs({"ep_recv_counts": T((8,), I32, "FRACTAL_NZ")})),
    # 19 shared attrs
    Case("t19 S0 R>0", TILING, "shared_expert_rank_num",
         lambda: base(shared_expert_num=1, shared_expert_rank_num=1, ep_rank_id=1, moe_expert_num=6,
                      expert_ids=ids_array(m=6)),
         lambda: base(shared_expert_num=0, shared_expert_rank_num=1, moe_expert_num=6)),
    Case("t19 S>0 R0", TILING, "shared_expert_num", lambda: base(shared_expert_num=1, shared_expert_rank_num=0),
         lambda: base(shared_expert_num=2, shared_expert_rank_num=0)),
    Case("t19 R%S", TILING, "shared_expert_rank_num",
         lambda: base(shared_expert_num=2, shared_expert_rank_num=2, ep_rank_id=3, moe_expert_num=8),
         lambda: base(shared_expert_num=2, shared_expert_rank_num=3, moe_expert_num=8)),
    # 20 fullmesh_v2 combinations
    Case("t20 v2 elastic", TILING, "elastic_info", lambda: base(comm_alg="fullmesh_v1", elastic_info=ident_elastic()),
         lambda: base(comm_alg="fullmesh_v2", elastic_info=ident_elastic())),
    Case("t20 v2 special", TILING, "zero_expert_num", lambda: base(comm_alg="fullmesh_v1", copy_expert_num=1),
         lambda: base(comm_alg="fullmesh_v2", copy_expert_num=1)),
    Case("t20 v2 mask", TILING, "x_active_mask",
         lambda: base(comm_alg="fullmesh_v1", x_active_mask=np.ones(4, bool)),
         lambda: base(comm_alg="fullmesh_v2", x_active_mask=np.ones(4, bool))),
    Case("t20 v2 tp", TILING, "tp_world_size", lambda: tp2(comm_alg="fullmesh_v1"), lambda: tp2(comm_alg="fullmesh_v2")),
    # 21-26 CheckAttrs
    Case("t21 divisible", TILING, "moe_expert_num", lambda: base(moe_expert_num=12, expert_ids=ids_array(m=12)),
         lambda: base(moe_expert_num=10, expert_ids=ids_array(m=10))),
    Case("t21 L>0 (M < ep - R)", TILING, "moe_expert_num",
         lambda: base(moe_expert_num=4, expert_ids=ids_array(m=4)),
         lambda: base(moe_expert_num=3, expert_ids=ids_array(m=3))),
    Case("t22 tp with L>1", TILING, "moe_expert_num", lambda: tp2(), lambda: tp2(moe_expert_num=8)),
    Case("t23 tp with elastic", TILING, "elastic_info", lambda: tp2(),
         lambda: tp2(elastic_info=ident_elastic(m=4))),
    Case("t24 BS high", TILING, "x", lambda: base(x=T((512, 1024), BF16), expert_ids=ids_array(bs=512)),
         lambda: base(x=T((513, 1024), BF16), expert_ids=ids_array(bs=513))),
    Case("t24 BS low", TILING, "x", lambda: base(x=T((1, 1024), BF16), expert_ids=ids_array(bs=1)),
         lambda: base(x=T((0, 1024), BF16), expert_ids=T((0, 2), I32))),
    Case("t25 global_bs below", TILING, "global_bs", lambda: base(global_bs=16), lambda: base(global_bs=12)),
    Case("t25 global_bs multiple", TILING, "global_bs", lambda: base(global_bs=20), lambda: base(global_bs=18)),
    Case("t25 global_bs negative", TILING, "global_bs", lambda: base(global_bs=0), lambda: base(global_bs=-4)),
    Case("t26 varying BS with mask", TILING, "x_active_mask",
         lambda: base(global_bs=16, x_active_mask=np.ones(4, bool)),
         lambda: base(global_bs=20, x_active_mask=np.ones(4, bool))),
    Case("t26 varying BS with fullmesh_v2", TILING, "comm_alg", lambda: base(global_bs=16, comm_alg="fullmesh_v2"),
         lambda: base(global_bs=20, comm_alg="fullmesh_v2")),
    # 27-30 input shapes
    Case("t27 H high", TILING, "x", lambda: base(x=T((4, 8192), BF16)), lambda: base(x=T((4, 8193), BF16))),
    Case("t27 H low", TILING, "x", lambda: base(x=T((4, 1024), BF16)), lambda: base(x=T((4, 1023), BF16))),
    Case("t28 ids dim0", TILING, "expert_ids", lambda: base(), lambda: base(expert_ids=ids_array(bs=5))),
    Case("t28 K high", TILING, "expert_ids",
         lambda: base(moe_expert_num=16, expert_ids=ids_array(k=16, m=16)),
         lambda: base(moe_expert_num=20, expert_ids=ids_array(k=17, m=20))),
    Case("t28 K low", TILING, "expert_ids", lambda: base(expert_ids=ids_array(k=1)),
         lambda: base(expert_ids=ids_array(k=0))),
    Case("t28 K > M + Z", TILING, "expert_ids", lambda: base(zero_expert_num=1, expert_ids=ids_array(k=9, m=9)),
         lambda: base(expert_ids=T((4, 9), I32))),
    Case("t29 scales dim0", TILING, "scales", lambda: base(quant_mode=2, scales=T((8, 1024), F32)),
         lambda: base(quant_mode=2, scales=T((9, 1024), F32))),
    Case("t29 scales dim0 with S", TILING, "scales",
         lambda: base(quant_mode=2, shared_expert_rank_num=2, ep_rank_id=2, moe_expert_num=8,
                      scales=T((9, 1024), F32)),
         lambda: base(quant_mode=2, shared_expert_rank_num=2, moe_expert_num=8, scales=T((8, 1024), F32))),
    Case("t29 scales dim1", TILING, "scales", lambda: base(quant_mode=2, scales=T((8, 1024), F32)),
         lambda: base(quant_mode=2, scales=T((8, 1025), F32))),
    Case("t30 elastic length", TILING, "elastic_info", lambda: base(elastic_info=T((12,), I32)),
         lambda: base(elastic_info=T((11,), I32))),
    # 31-36 output shapes (A = 16 * 2 = 32 here; 64 with tp = 2 factor where noted)
    Case("t31 expand_x rows tp=0 (documented A)", TILING, "expand_x",
         lambda: with_outs({"expand_x": T((32, 1024), BF16)}), lambda: with_outs({"expand_x": T((31, 1024), BF16)})),
    Case("t31 expand_x dim1", TILING, "expand_x", lambda: with_outs({"expand_x": T((32, 1024), BF16)}),
         lambda: with_outs({"expand_x": T((32, 1000), BF16)})),
    Case("t31 expand_x rows tp=2", TILING, "expand_x",
         lambda: tp2() | {"outputs": outs(tp2(), expand_x=T((32, 1024), BF16))},
         lambda: tp2() | {"outputs": outs(tp2(), expand_x=T((31, 1024), BF16))}),
    Case("t32 dynamic_scales rows tp=2", TILING, "dynamic_scales",
         lambda: tp2(quant_mode=2) | {"outputs": outs(tp2(quant_mode=2), dynamic_scales=T((32,), F32))},
         lambda: tp2(quant_mode=2) | {"outputs": outs(tp2(quant_mode=2), dynamic_scales=T((31,), F32))}),
    Case("t33 assist 3A", TILING, "assist_info_for_combine",
         lambda: with_outs({"assist_info_for_combine": T((96,), I32)}),
         lambda: with_outs({"assist_info_for_combine": T((95,), I32)})),
    Case("t34 expert_token_nums MoE", TILING, "expert_token_nums",
         lambda: with_outs({"expert_token_nums": T((2,), I64)}),
         lambda: with_outs({"expert_token_nums": T((3,), I64)})),
    Case("t34 expert_token_nums shared", TILING, "expert_token_nums",
         lambda: with_outs({"expert_token_nums": T((1,), I64)}, shared_expert_rank_num=2, ep_rank_id=0,
                           moe_expert_num=8),
         lambda: with_outs({"expert_token_nums": T((4,), I64)}, shared_expert_rank_num=2, ep_rank_id=0,
                           moe_expert_num=8)),
    Case("t34 expert_token_nums elastic", TILING, "expert_token_nums",
         lambda: with_outs({"expert_token_nums": T((4,), I64)}, shared_expert_rank_num=2, ep_rank_id=0,
                           moe_expert_num=8, elastic_info=T((12,), I32)),
         lambda: with_outs({"expert_token_nums": T((1,), I64)}, shared_expert_rank_num=2, ep_rank_id=0,
                           moe_expert_num=8, elastic_info=T((12,), I32))),
    Case("t35 ep_recv_counts", TILING, "ep_recv_counts", lambda: with_outs({"ep_recv_counts": T((8,), I32)}),
         lambda: with_outs({"ep_recv_counts": T((7,), I32)})),
    Case("t35 ep_recv_counts tp=2", TILING, "ep_recv_counts",
         lambda: tp2() | {"outputs": outs(tp2(), ep_recv_counts=T((8,), I32))},
         lambda: tp2() | {"outputs": outs(tp2(), ep_recv_counts=T((7,), I32))}),
    Case("t36 tp_recv_counts", TILING, "tp_recv_counts", lambda: with_outs({"tp_recv_counts": T((0,), I32)}),
         lambda: with_outs({"tp_recv_counts": T((1,), I32)})),
    # 37 HCCL_BUFFSIZE: H 8192, BS 512, ep 4, L 2, K 2 needs 2*(512*16896*8 + 512*16384*2) B = 164 MB
    Case("t37 HCCL_BUFFSIZE", TILING, "HCCL_BUFFSIZE",
         lambda: base(x=T((512, 8192), BF16), expert_ids=ids_array(bs=512), env={"HCCL_BUFFSIZE": "164"}),
         lambda: base(x=T((512, 8192), BF16), expert_ids=ids_array(bs=512), env={"HCCL_BUFFSIZE": "163"})),
    Case("t37 HCCL_BUFFSIZE default", TILING, "HCCL_BUFFSIZE",
         lambda: base(x=T((512, 8192), BF16), expert_ids=ids_array(bs=512)),
         lambda: base(x=T((512, 8192), BF16), expert_ids=ids_array(bs=512, k=8, m=8))),
    Case("t37 HCCL_BUFFSIZE invalid", TILING, "HCCL_BUFFSIZE", lambda: base(env={"HCCL_BUFFSIZE": " 65535 "}),
         lambda: base(env={"HCCL_BUFFSIZE": "64MB"})),
    # ---- documented, not enforced by CANN (561002) ---------------------------------------------
    Case("doc group_ep != group_tp", TILING, "group_tp", lambda: tp2(group_tp="tp"), lambda: tp2(group_tp="ep")),
    Case("doc ids range high", TILING, "expert_ids", lambda: base(expert_ids=np.array([[7, 0]] * 4, np.int32)),
         lambda: base(expert_ids=np.array([[8, 0]] * 4, np.int32))),
    Case("doc ids range low", TILING, "expert_ids", lambda: base(expert_ids=np.array([[0, 1]] * 4, np.int32)),
         lambda: base(expert_ids=np.array([[-1, 1]] * 4, np.int32))),
    Case("doc ids special range", TILING, "expert_ids",
         lambda: base(zero_expert_num=1, const_expert_num=1, expert_ids=np.array([[9, 0]] * 4, np.int32)),
         lambda: base(zero_expert_num=1, const_expert_num=1, expert_ids=np.array([[10, 0]] * 4, np.int32))),
    Case("doc ids masked out are not checked", TILING, "expert_ids",
         lambda: base(x_active_mask=np.array([1, 1, 1, 0], bool), expert_ids=np.array([[0, 1]] * 3 + [[99, 99]], np.int32)),
         lambda: base(x_active_mask=np.array([1, 1, 1, 1], bool), expert_ids=np.array([[0, 1]] * 3 + [[99, 1]], np.int32))),
    Case("doc ids elastic M'", TILING, "expert_ids",
         lambda: base(elastic_info=ELASTIC_ONE_REMOVED, expert_ids=np.array([[5, 0]] * 4, np.int32)),
         lambda: base(elastic_info=ELASTIC_ONE_REMOVED, expert_ids=np.array([[6, 0]] * 4, np.int32))),
    Case("doc ids elastic special", TILING, "expert_ids",
         lambda: base(elastic_info=ELASTIC_ONE_REMOVED, zero_expert_num=1, expert_ids=np.array([[8, 0]] * 4, np.int32)),
         lambda: base(elastic_info=ELASTIC_ONE_REMOVED, zero_expert_num=1, expert_ids=np.array([[7, 0]] * 4, np.int32))),
    Case("doc distinct ids", TILING, "expert_ids", lambda: base(expert_ids=np.array([[3, 2]] * 4, np.int32)),
         lambda: base(expert_ids=np.array([[3, 2]] * 3 + [[2, 2]], np.int32))),
    Case("doc distinct ids 2-D mask", TILING, "expert_ids",
         lambda: base(x_active_mask=np.array([[1, 1]] * 3 + [[1, 0]], bool),
                      expert_ids=np.array([[3, 2]] * 3 + [[2, 2]], np.int32)),
         lambda: base(x_active_mask=np.array([[1, 1]] * 4, bool),
                      expert_ids=np.array([[3, 2]] * 3 + [[2, 2]], np.int32))),
    Case("doc 1-D mask order", TILING, "x_active_mask", lambda: base(x_active_mask=np.array([1, 1, 0, 0], bool)),
         lambda: base(x_active_mask=np.array([1, 0, 1, 0], bool))),
    Case("doc elastic flag 0 ignores the table", TILING, "elastic_info",
         lambda: base(elastic_info=ident_elastic(flag=0, i1=9)), lambda: base(elastic_info=ident_elastic(i1=9))),
    Case("doc elastic new ep", TILING, "elastic_info", lambda: base(elastic_info=ELASTIC_ONE_REMOVED),
         lambda: base(elastic_info=ident_elastic(i1=0))),
    Case("doc elastic new R", TILING, "elastic_info", lambda: base(elastic_info=ident_elastic()),
         lambda: base(elastic_info=ident_elastic(i2=1))),
    Case("doc elastic new R vs S", TILING, "elastic_info",
         lambda: base(shared_expert_rank_num=2, ep_rank_id=2, elastic_info=ident_elastic(r=2)),
         lambda: base(shared_expert_rank_num=2, ep_rank_id=2, elastic_info=ident_elastic(r=2, i2=0, i3=8))),
    Case("doc elastic new M", TILING, "elastic_info", lambda: base(elastic_info=ident_elastic()),
         lambda: base(elastic_info=ident_elastic(i3=12))),
    Case("doc elastic L' == L", TILING, "elastic_info", lambda: base(elastic_info=ident_elastic()),
         lambda: base(elastic_info=ident_elastic(i3=4))),
    Case("doc elastic Table1", TILING, "elastic_info", lambda: base(elastic_info=ident_elastic()),
         lambda: base(elastic_info=ident_elastic(i5=0))),
    Case("doc elastic Table2", TILING, "elastic_info", lambda: base(elastic_info=ident_elastic()),
         lambda: base(elastic_info=ident_elastic(i9=2))),
    Case("doc elastic removed rank calls", TILING, "ep_rank_id",
         lambda: base(ep_rank_id=3, elastic_info=ELASTIC_ONE_REMOVED),
         lambda: base(ep_rank_id=2, elastic_info=ELASTIC_ONE_REMOVED)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_rule_passes_inside_its_bound(case):
    validate(**case.ok())


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_rule_fails_outside_its_bound(case):
    with pytest.raises(AclnnError) as ei:
        validate(**case.bad())
    err = ei.value
    assert err.status == case.status, str(err)
    if case.param == "HCCL_BUFFSIZE":
        assert "HCCL_BUFFSIZE" in err.message, str(err)
    else:
        assert err.message.startswith(f"parameter '{case.param}' must satisfy"), str(err)
    assert err.call == "aclnnMoeDistributeDispatchV3"
    if case.rule.startswith("doc"):
        assert "not enforced by the CANN kernel" in err.message


def test_messages_name_rule_and_value():
    with pytest.raises(AclnnError) as ei:
        validate(**base(ep_world_size=769))
    assert "parameter 'ep_world_size'" in str(ei.value) and "769" in str(ei.value) and "768" in str(ei.value)


def test_cann_order_first_broken_rule_wins():
    # quant_mode 1 with scales: rule 10 passes, rule 14 (static quant) fires before 15 and the dims
    with pytest.raises(AclnnError, match="quant_mode"):
        validate(**base(quant_mode=1, x=T((4, 1024, 3), BF16)))
    # op_api before tiling: a NULL output beats an invalid ep_world_size
    with pytest.raises(AclnnError) as ei:
        validate(**with_outs({"expand_x": None}) | {"ep_world_size": 1})
    assert ei.value.status == NULL


def test_returns_layout():
    lay = validate(**base())
    assert lay.a == 32 and lay.local_expert_num == 2 and lay.moe_local_expert_num == 2


def test_non_integer_attribute_is_a_type_error():
    with pytest.raises(TypeError, match="ep_world_size") as e:     # also an AclnnError with the op API's status
        validate(**base(ep_world_size=4.0))
    assert e.value.status == 161002


def test_error_pickles():
    import pickle
    with pytest.raises(AclnnError) as ei:
        validate(**base(ep_rank_id=9))
    e2 = pickle.loads(pickle.dumps(ei.value))
    assert e2.status == 561002 and e2.message == ei.value.message


# ----------------------------------------------------------------------------------------------
# HCCL_BUFFSIZE helper
# ----------------------------------------------------------------------------------------------
WORKED = dict(h=7168, max_bs=32, ep_world_size=16, local_expert_num=16, k=8, shared_expert_num=0)


def test_required_buffsize_worked_number():
    assert buffsize.required_hccl_buffsize_mb(**WORKED) == 239
    assert buffsize.required_hccl_buffsize_mb(**WORKED, comm_alg="fullmesh_v1") == 239
    assert buffsize.required_hccl_buffsize_mb(**WORKED, comm_alg="fullmesh_v2") == 247
    assert buffsize.required_hccl_buffsize_bytes(**WORKED) == 239 * 2 ** 20   # exactly on the boundary


@pytest.mark.parametrize("alg,need", [("", 239), ("fullmesh_v2", 247)])
def test_check_buffsize_boundary_and_message(alg, need):
    assert buffsize.check_hccl_buffsize("op", **WORKED, comm_alg=alg, env={"HCCL_BUFFSIZE": str(need)}) == need
    with pytest.raises(AclnnError) as ei:
        buffsize.check_hccl_buffsize("op", **WORKED, comm_alg=alg, env={"HCCL_BUFFSIZE": str(need - 1)})
    msg = ei.value.message
    assert ei.value.status == 561002 and f"{need} MB" in msg and f"export HCCL_BUFFSIZE={need}" in msg
    with pytest.raises(AclnnError, match="unset: the default"):
        buffsize.check_hccl_buffsize("op", **WORKED, comm_alg=alg, env={})


@pytest.mark.parametrize("raw", ["abc", "12.5", "0", "-1", "65536", ""])
def test_invalid_buffsize_env(raw):
    with pytest.raises(AclnnError) as ei:
        buffsize.check_hccl_buffsize("op", **WORKED, env={"HCCL_BUFFSIZE": raw})
    assert ei.value.status == 561002 and "HCCL_BUFFSIZE" in ei.value.message and "239" in ei.value.message


def test_buffsize_reads_os_environ(monkeypatch):
    monkeypatch.setenv("HCCL_BUFFSIZE", "300")
    assert buffsize.check_hccl_buffsize("op", **WORKED) == 300
    monkeypatch.delenv("HCCL_BUFFSIZE")
    assert buffsize.hccl_buffsize_mb("op") == 200


def test_buffsize_small_hidden_sizes():
    # H 1024: dispatch token Align512(2048 + 44) = 2560 B, combine token 2048 B
    need = 2 * (4 * 2560 * 4 * 2 + 4 * 2048 * (2 + 1))
    assert buffsize.required_hccl_buffsize_bytes(h=1024, max_bs=4, ep_world_size=4, local_expert_num=2, k=2,
                                                 shared_expert_rank_num=1,
                                                 shared_expert_num=1) == need


def test_required_buffsize_takes_the_operators_keywords():
    """The operators' own names and defaults: shared_expert_num=1 on no shared rank is no shared expert, BS or
    global_bs instead of max_bs, moe_expert_num instead of local_expert_num; and a call's own arguments."""
    op_words = dict(h=7168, bs=32, ep_world_size=16, moe_expert_num=256, k=8)
    assert buffsize.required_hccl_buffsize_mb(**op_words) == 239                     # shared_expert_num=1 -> S=0
    assert buffsize.required_hccl_buffsize_mb(**dict(op_words, bs=None, global_bs=512)) == 239
    with_shared = dict(op_words, moe_expert_num=224, shared_expert_num=1, shared_expert_rank_num=2)
    assert buffsize.required_hccl_buffsize_mb(**with_shared) == buffsize.required_hccl_buffsize_mb(
        h=7168, max_bs=32, ep_world_size=16, local_expert_num=16, k=8, shared_expert_num=1, shared_expert_rank_num=2)
    assert buffsize.required_hccl_buffsize_mb(**with_shared) > buffsize.required_hccl_buffsize_mb(**op_words)
    call = dict(x=np.zeros((32, 7168), np.float16), expert_ids=np.zeros((32, 8), np.int32), group_ep="g",
                ep_world_size=16, ep_rank_id=3, moe_expert_num=256, quant_mode=0)
    assert buffsize.required_hccl_buffsize_mb_for_call(**call) == 239
    combine_call = dict(expand_x=np.zeros((4096, 7168), np.float16), expert_ids=np.zeros((32, 8), np.int32),
                        ep_world_size=16, moe_expert_num=256, global_bs=0)
    assert buffsize.required_hccl_buffsize_mb_for_call(**combine_call) == 239
    for bad, name in ((dict(op_words, bs=None), "max_bs"), (dict(op_words, moe_expert_num=None), "local_expert_num"),
                      (dict(op_words, moe_expert_num=8), "moe_expert_num"), (dict(op_words, global_bs=8), "global_bs")):
        with pytest.raises(AclnnError) as e:
            buffsize.required_hccl_buffsize_mb(**bad)
        assert f"'{name}'" in str(e.value)
