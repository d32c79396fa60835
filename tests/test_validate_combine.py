"""Validation of CombineV3 / CombineAddRmsNormV2 (spec combine-addrmsnorm-barrier.md §1.6, §8.1).

Table-driven: every rule on both sides of its bound, asserting the status code and that the message
names the parameter. ``None`` as expected status means the call must pass.
"""
from __future__ import annotations

from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest

from aclnn_py.errors import AclnnError
from aclnn_py.layout import MoeLayout
from aclnn_py import validate
from aclnn_py.validate import combine as V

BF16 = np.dtype(ml_dtypes.bfloat16)
I32, F32 = np.int32, np.float32
INT32_MAX = 2**31 - 1
NULLPTR, INVALID, TILING = 161001, 161002, 561002


def elastic_table(ep: int, r: int, lnum: int, removed: int, flag: int = 1) -> np.ndarray:
    keep = [e for e in range(ep) if e != removed]
    t1 = np.full(ep, -1)
    t1[keep] = np.arange(ep - 1)
    t2 = np.full(ep, -1)
    t2[:ep - 1] = keep
    return np.concatenate(([flag, ep - 1, r, lnum * (ep - 1 - r)], t1, t2)).astype(I32)


def make(arn=False, ep=4, rank=0, m=4, bs=3, k=2, h=1024, tp=0, tp_rank=0, r=0, s=1, gbs=0, elastic=None,
         mask=None, z=0, c=0, q=0, dtype=BF16) -> dict:
    """A valid call for one rank (shapes exactly as torch_npu allocates them)."""
    lay = MoeLayout(ep, rank, m, bs, k, tp, s, r, gbs, elastic=elastic is not None)
    a, tpf, lnum = lay.a, max(tp, 1), lay.moe_local_expert_num
    n_counts = max(ep, ep * lnum) if elastic is not None else (ep if lay.is_shared_rank else ep * lnum)
    pool = list(range(m)) + list(range(m, m + z + c + q))
    ids = np.array([[pool[(t + j) % len(pool)] for j in range(k)] for t in range(bs)], I32)
    kw = dict(expand_x=np.zeros((a * tpf, h), dtype), expert_ids=ids,
              assist_info_for_combine=np.zeros(max(a * 128, 1), I32),
              ep_send_counts=np.zeros(n_counts * (2 if tp == 2 else 1), I32),
              expert_scales=np.ones((bs, k), F32), tp_send_counts=np.zeros(tp, I32),
              group_ep="ep", group_tp="tp" if tp == 2 else "", ep_world_size=ep, ep_rank_id=rank,
              moe_expert_num=m, tp_world_size=tp, tp_rank_id=tp_rank, shared_expert_num=s,
              shared_expert_rank_num=r, global_bs=gbs, zero_expert_num=z, copy_expert_num=c,
              const_expert_num=q, x_active_mask=mask, elastic_info=elastic, env={})
    if c or q:
        kw["ori_x"] = np.zeros((bs, h), dtype)
    if q:
        kw.update(const_expert_alpha_1=np.zeros(q, dtype), const_expert_alpha_2=np.zeros(q, dtype),
                  const_expert_v=np.zeros((q, h), dtype))
    if arn:
        kw.update(residual_x=np.zeros((bs, 1, h), BF16), gamma=np.zeros(h, BF16),
                  outputs=(np.zeros((bs, 1, h), BF16), np.zeros((bs, 1, 1), F32), np.zeros((bs, 1, h), BF16)))
    else:
        kw["outputs"] = np.zeros((bs, h), dtype)
    return kw


def call(arn: bool, kw: dict):
    kw = dict(kw)
    pos = [kw.pop(n) for n in ("expand_x", "expert_ids", "assist_info_for_combine", "ep_send_counts",
                               "expert_scales")]
    if arn:
        pos += [kw.pop("residual_x"), kw.pop("gamma")]
        return validate.moe_distribute_combine_add_rms_norm_v2(*pos, **kw)
    return validate.moe_distribute_combine_v3(*pos, **kw)


def nz(arr):
    """A tensor-like object in FRACTAL_NZ format (only .shape/.dtype/.format are looked at)."""
    return SimpleNamespace(shape=arr.shape, dtype=arr.dtype, format=29)


def setk(**changes):
    return lambda kw: kw.update(changes)


def out_x(shape, dtype=BF16):
    return setk(outputs=np.zeros(shape, dtype))


def arn_out(i, arr):
    def f(kw):
        o = list(kw["outputs"])
        o[i] = arr
        kw["outputs"] = tuple(o)
    return f


# (case id, make() overrides, mutation of the call kwargs, expected status or None, parameter named)
COMMON = [
    # rule 1: required tensors
    ("r1-expand_x-null", {}, setk(expand_x=None), NULLPTR, "expand_x"),
    ("r1-expert_ids-null", {}, setk(expert_ids=None), NULLPTR, "expert_ids"),
    ("r1-assist-null", {}, setk(assist_info_for_combine=None), NULLPTR, "assist_info_for_combine"),
    ("r1-ep_send_counts-null", {}, setk(ep_send_counts=None), NULLPTR, "ep_send_counts"),
    ("r1-expert_scales-null", {}, setk(expert_scales=None), NULLPTR, "expert_scales"),
    ("r1-no-outputs-ok", {}, setk(outputs=None), None, ""),
    # rules 2-4: group names
    ("r2-group_ep-none", {}, setk(group_ep=None), NULLPTR, "group_ep"),
    ("r2-group_ep-empty", {}, setk(group_ep=""), NULLPTR, "group_ep"),
    ("r2-group_ep-one-char", {}, setk(group_ep="g"), None, ""),
    ("r3-group_ep-127", {}, setk(group_ep="g" * 127), None, ""),
    ("r3-group_ep-128", {}, setk(group_ep="g" * 128), INVALID, "group_ep"),
    ("r4-group_tp-none", {}, setk(group_tp=None), NULLPTR, "group_tp"),
    ("r4-group_tp-127", {}, setk(group_tp="t" * 127), None, ""),
    ("r4-group_tp-128", {}, setk(group_tp="t" * 128), INVALID, "group_tp"),
    # inner wrapper: op-definition dtypes (161002)
    ("def-expand_x-f32", {}, setk(expand_x=np.zeros((12, 1024), F32)), INVALID, "expand_x"),
    ("def-expert_ids-i64", {}, lambda kw: kw.update(expert_ids=kw["expert_ids"].astype(np.int64)), INVALID,
     "expert_ids"),
    ("def-assist-i64", {}, setk(assist_info_for_combine=np.zeros(1536, np.int64)), INVALID, "assist_info_for_combine"),
    ("def-ep_send_counts-i64", {}, setk(ep_send_counts=np.zeros(4, np.int64)), INVALID, "ep_send_counts"),
    ("def-expert_scales-f16", {}, setk(expert_scales=np.ones((3, 2), np.float16)), INVALID, "expert_scales"),
    ("def-tp_send_counts-i64", {}, setk(tp_send_counts=np.zeros(0, np.int64)), INVALID, "tp_send_counts"),
    ("def-mask-i8", {}, setk(x_active_mask=np.ones(3, np.int8)), INVALID, "x_active_mask"),
    ("def-group_list-i32", {}, setk(group_list=np.zeros(2, I32)), INVALID, "group_list"),
    ("def-expand_scales-f16", {}, setk(expand_scales=np.zeros(12, np.float16)), INVALID, "expand_scales"),
    ("def-elastic-i64", {}, setk(elastic_info=np.zeros(12, np.int64)), INVALID, "elastic_info"),
    ("expand_scales-ignored", {}, setk(expand_scales=np.zeros(12, F32)), None, ""),
    # rules 7-8: special expert counts
    ("r7-sum-at-int32-max", {}, setk(zero_expert_num=INT32_MAX - 4), None, ""),
    ("r7-sum-over-int32-max", {}, setk(zero_expert_num=INT32_MAX - 3), TILING, "moe_expert_num"),
    ("r8-zero-minus-1", {}, setk(zero_expert_num=-1), TILING, "zero_expert_num"),
    ("r8-copy-minus-1", {}, setk(copy_expert_num=-1), TILING, "copy_expert_num"),
    ("r8-const-minus-1", {}, setk(const_expert_num=-1), TILING, "const_expert_num"),
    ("r8-zero-0", {}, setk(zero_expert_num=0), None, ""),
    ("r8-zero-minus-2", {}, setk(zero_expert_num=-2), TILING, "zero_expert_num"),
    # rule 9: ep_world_size
    ("r9-ep-1", {}, setk(ep_world_size=1), TILING, "ep_world_size"),
    ("r9-ep-2", dict(ep=2, m=2), None, None, ""),
    ("r9-ep-768", dict(ep=768, m=768), None, None, ""),
    ("r9-ep-769", dict(ep=768, m=768), setk(ep_world_size=769), TILING, "ep_world_size"),
    # rule 10: tp_world_size
    ("r10-tp-minus-1", {}, setk(tp_world_size=-1), TILING, "tp_world_size"),
    ("r10-tp-3", {}, setk(tp_world_size=3), TILING, "tp_world_size"),
    ("r10-tp-1", dict(tp=1), None, None, ""),
    ("r10-tp-2", dict(tp=2), None, None, ""),
    # rule 11: ep_rank_id
    ("r11-rank-minus-1", {}, setk(ep_rank_id=-1), TILING, "ep_rank_id"),
    ("r11-rank-ep", {}, setk(ep_rank_id=4), TILING, "ep_rank_id"),
    ("r11-rank-ep-1", dict(rank=3), None, None, ""),
    # rule 12: TP specifics
    ("r12-tp2-rank1", dict(tp=2, tp_rank=1), None, None, ""),
    ("r12-tp2-rank2", dict(tp=2), setk(tp_rank_id=2), TILING, "tp_rank_id"),
    ("r12-tp2-rank-minus-1", dict(tp=2), setk(tp_rank_id=-1), TILING, "tp_rank_id"),
    ("r12-tp2-group_tp-empty", dict(tp=2), setk(group_tp=""), TILING, "group_tp"),
    ("r12-tp2-quant2", dict(tp=2), setk(comm_quant_mode=2), TILING, "comm_quant_mode"),
    ("r12-tp1-rank1", dict(tp=1), setk(tp_rank_id=1), TILING, "tp_rank_id"),
    ("r12-tp0-rank1", {}, setk(tp_rank_id=1), TILING, "tp_rank_id"),
    # rule 13
    ("r13-shard-1", {}, setk(expert_shard_type=1), TILING, "expert_shard_type"),
    # rule 14
    ("r14-shared-num-minus-1", {}, setk(shared_expert_num=-1), TILING, "shared_expert_num"),
    ("r14-shared-num-5", {}, setk(shared_expert_num=5), TILING, "shared_expert_num"),
    ("r14-shared-num-4", dict(ep=8, r=4, s=4, m=4), None, None, ""),
    ("r14-shared-rank-minus-1", {}, setk(shared_expert_rank_num=-1), TILING, "shared_expert_rank_num"),
    ("r14-shared-rank-ep", {}, setk(shared_expert_rank_num=4), TILING, "shared_expert_rank_num"),
    ("r14-shared-rank-ep-1", dict(r=3, m=1, k=1), None, None, ""),
    ("r14-moe-0", {}, setk(moe_expert_num=0), TILING, "moe_expert_num"),
    ("r14-moe-1", dict(ep=2, r=1, m=1, k=1), None, None, ""),
    ("r14-moe-1024", dict(m=1024), None, None, ""),
    ("r14-moe-1025", dict(m=1024), setk(moe_expert_num=1025), TILING, "moe_expert_num"),
    ("r14-quant-1", {}, setk(comm_quant_mode=1), TILING, "comm_quant_mode"),
    ("r14-quant-2", {}, setk(comm_quant_mode=2), None, ""),
    ("r14-quant-3", {}, setk(comm_quant_mode=3), TILING, "comm_quant_mode"),
    # rule 15: dimensions
    ("r15-expand_x-3d", {}, setk(expand_x=np.zeros((12, 1, 1024), BF16)), TILING, "expand_x"),
    ("r15-expert_ids-1d", {}, setk(expert_ids=np.zeros(6, I32)), TILING, "expert_ids"),
    ("r15-assist-2d", {}, setk(assist_info_for_combine=np.zeros((1536, 1), I32)), TILING, "assist_info_for_combine"),
    ("r15-ep_send_counts-2d", {}, setk(ep_send_counts=np.zeros((4, 1), I32)), TILING, "ep_send_counts"),
    ("r15-expert_scales-1d", {}, setk(expert_scales=np.ones(6, F32)), TILING, "expert_scales"),
    ("r15-ori_x-1d", dict(c=1), setk(ori_x=np.zeros(1024, BF16)), TILING, "ori_x"),
    ("r15-alpha1-2d", dict(q=1), setk(const_expert_alpha_1=np.zeros((1, 1), BF16)), TILING, "const_expert_alpha_1"),
    ("r15-alpha2-2d", dict(q=1), setk(const_expert_alpha_2=np.zeros((1, 1), BF16)), TILING, "const_expert_alpha_2"),
    ("r15-v-1d", dict(q=1), setk(const_expert_v=np.zeros(1024, BF16)), TILING, "const_expert_v"),
    ("r15-tp_send_counts-null", {}, setk(tp_send_counts=None), TILING, "tp_send_counts"),
    ("r15-tp_send_counts-2d", {}, setk(tp_send_counts=np.zeros((0, 1), I32)), TILING, "tp_send_counts"),
    ("r15-mask-3d", {}, setk(x_active_mask=np.ones((3, 2, 1), bool)), TILING, "x_active_mask"),
    ("r15-mask-2d-ok", dict(mask=np.ones((3, 2), bool)), None, None, ""),
    ("r15-elastic-2d", {}, setk(elastic_info=np.zeros((12, 1), I32)), TILING, "elastic_info"),
    # rule 16
    ("r16-activation_scale", {}, setk(activation_scale=np.zeros(3, F32)), TILING, "activation_scale"),
    ("r16-weight_scale", {}, setk(weight_scale=np.zeros(3, F32)), TILING, "weight_scale"),
    ("r16-group_list", {}, setk(group_list=np.zeros(3, np.int64)), TILING, "group_list"),
    # rule 17
    ("r17-shared_x-with-shared-ranks", dict(r=1, m=3), setk(shared_expert_x=np.zeros((3, 1024), BF16)), TILING,
     "shared_expert_x"),
    ("r17-shared_x-4d", {}, setk(shared_expert_x=np.zeros((3, 1, 1, 1024), BF16)), TILING, "shared_expert_x"),
    ("r17-shared_x-2d-ok", {}, setk(shared_expert_x=np.zeros((3, 1024), BF16)), None, ""),
    # rule 18: dtypes checked by the tiling
    ("r18-ori_x-dtype", dict(c=1), setk(ori_x=np.zeros((3, 1024), np.float16)), None, "ori_x"),
    ("r18-shared_x-dtype", {}, setk(shared_expert_x=np.zeros((3, 1024), np.float16)), None, "shared_expert_x"),
    ("r18-alpha1-dtype", dict(q=1), setk(const_expert_alpha_1=np.zeros(1, np.float16)), None,
     "const_expert_alpha_1"),
    ("r18-v-dtype", dict(q=1), setk(const_expert_v=np.zeros((1, 1024), np.float16)), None, "const_expert_v"),
    # rule 19: FRACTAL_NZ
    ("r19-expand_x-nz", {}, lambda kw: kw.update(expand_x=nz(kw["expand_x"])), TILING, "expand_x"),
    ("r19-expert_scales-nz", {}, lambda kw: kw.update(expert_scales=nz(kw["expert_scales"])), TILING,
     "expert_scales"),
    ("r19-format-nd-ok", {}, lambda kw: kw.update(expand_x=SimpleNamespace(shape=(12, 1024), dtype=BF16,
                                                                          format=2)), None, ""),
    # rule 20: shared experts
    ("r20-S0-R1", dict(r=1, m=3), setk(shared_expert_num=0), TILING, "shared_expert_rank_num"),
    ("r20-S2-R0", {}, setk(shared_expert_num=2), TILING, "shared_expert_num"),
    ("r20-S1-R0-normalised-ok", dict(s=1, r=0), None, None, ""),
    ("r20-S0-R0-ok", dict(s=0, r=0), None, None, ""),
    ("r20-R3-S2", dict(ep=5, r=2, s=2, m=3), setk(shared_expert_rank_num=3, moe_expert_num=2), TILING,
     "shared_expert_rank_num"),
    ("r20-R2-S2-ok", dict(ep=5, r=2, s=2, m=3), None, None, ""),
    # rule 21
    ("r21-m-not-divisible", {}, setk(moe_expert_num=5), TILING, "moe_expert_num"),
    ("r21-m-divisible", dict(m=8), None, None, ""),
    # rule 22
    ("r22-tp2-L2", dict(tp=2, m=8), None, TILING, "moe_expert_num"),
    ("r22-tp2-elastic", dict(tp=2), setk(elastic_info=elastic_table(4, 0, 1, 3)), TILING, "elastic_info"),
    # rule 23
    ("r23-bs-0", dict(bs=1), lambda kw: kw.update(expert_ids=np.zeros((0, 2), I32),
                                                  expert_scales=np.zeros((0, 2), F32)), TILING, "expert_ids"),
    ("r23-bs-512", dict(bs=512, m=8), None, None, ""),
    ("r23-bs-513", dict(bs=513, m=8, gbs=4 * 513), None, TILING, "expert_ids"),
    # rule 24
    ("r24-gbs-equal", dict(gbs=12), None, None, ""),
    ("r24-gbs-larger", dict(gbs=16), None, None, ""),
    ("r24-gbs-too-small", dict(gbs=12), setk(global_bs=8), TILING, "global_bs"),
    ("r24-gbs-not-multiple", dict(gbs=12), setk(global_bs=13), TILING, "global_bs"),
    ("r24-gbs-negative", {}, setk(global_bs=-4), TILING, "global_bs"),
    ("r24-gbs-larger-with-mask", dict(gbs=16, mask=np.ones(3, bool)), None, TILING, "x_active_mask"),
    ("r24-gbs-equal-with-mask", dict(gbs=12, mask=np.ones(3, bool)), None, None, ""),
    # rule 25
    ("r25-copy-without-ori", dict(c=1), setk(ori_x=None), TILING, "ori_x"),
    ("r25-const-without-alpha1", dict(q=1), setk(const_expert_alpha_1=None), TILING, "const_expert_alpha_1"),
    ("r25-const-without-v", dict(q=1), setk(const_expert_v=None), TILING, "const_expert_v"),
    ("r25-const-without-ori", dict(q=1), setk(ori_x=None), TILING, "ori_x"),
    # rule 26
    ("r26-k-16", dict(m=16, k=16), None, None, ""),
    ("r26-k-17", dict(m=20, k=17), None, TILING, "expert_ids"),
    ("r26-k-over-experts", dict(m=4, k=4), lambda kw: kw.update(expert_ids=np.zeros((3, 5), I32),
                                                                expert_scales=np.ones((3, 5), F32)), TILING,
     "expert_ids"),
    ("r26-k-with-special", dict(m=4, k=5, z=1), None, None, ""),
    # rule 28: expand_x rows (only binding with TP)
    ("r28-rows-tp1-ok", dict(tp=1), None, None, ""),
    ("r28-rows-tp1-short", dict(tp=1), setk(expand_x=np.zeros((11, 1024), BF16)), TILING, "expand_x"),
    ("r28-rows-tp2-short", dict(tp=2), setk(expand_x=np.zeros((23, 1024), BF16)), TILING, "expand_x"),
    ("r28-rows-tp0-documented", {}, setk(expand_x=np.zeros((11, 1024), BF16)), TILING, "expand_x"),
    ("r28-rows-tp0-ok", {}, setk(expand_x=np.zeros((12, 1024), BF16)), None, ""),
    # rule 29: H
    ("r29-h-1023", dict(h=1023), None, TILING, "H"),
    ("r29-h-1024", dict(h=1024), None, None, ""),
    ("r29-h-8192", dict(h=8192), None, None, ""),
    ("r29-h-8193", dict(h=8193), None, TILING, "H"),
    ("r29-h-unaligned-ok", dict(h=1031), None, None, ""),
    # rule 30
    ("r30-assist-short", {}, setk(assist_info_for_combine=np.zeros(1535, I32)), TILING, "assist_info_for_combine"),
    # rule 31 (tp >= 1) and the not-enforced variant for tp = 0
    ("r31-counts-short-tp1", dict(tp=1), setk(ep_send_counts=np.zeros(3, I32)), TILING, "ep_send_counts"),
    ("r31-counts-short-tp2", dict(tp=2), setk(ep_send_counts=np.zeros(7, I32)), TILING, "ep_send_counts"),
    ("r31-counts-shared-rank", dict(ep=4, r=1, m=3, k=1), setk(ep_send_counts=np.zeros(4, I32)), None, ""),
    ("r31-counts-short-tp0", {}, setk(ep_send_counts=np.zeros(3, I32)), TILING, "ep_send_counts"),
    # rule 32
    ("r32-tp_counts-len", dict(tp=1), setk(tp_send_counts=np.zeros(2, I32)), TILING, "tp_send_counts"),
    ("r32-tp_counts-len-tp0", {}, setk(tp_send_counts=np.zeros(1, I32)), TILING, "tp_send_counts"),
    # rule 33
    ("r33-scales-shape", {}, setk(expert_scales=np.ones((3, 3), F32)), TILING, "expert_scales"),
    ("r33-mask-dim0", {}, setk(x_active_mask=np.ones(4, bool)), TILING, "x_active_mask"),
    ("r33-mask-dim1", {}, setk(x_active_mask=np.ones((3, 3), bool)), TILING, "x_active_mask"),
    # rule 34
    ("r34-shared_x-3d-ok", {}, setk(shared_expert_x=np.zeros((3, 1, 1024), BF16)), None, ""),
    ("r34-shared_x-3d-bad", {}, setk(shared_expert_x=np.zeros((2, 2, 1024), BF16)), TILING, "shared_expert_x"),
    ("r34-shared_x-2d-bad-h", {}, setk(shared_expert_x=np.zeros((3, 1000), BF16)), TILING, "shared_expert_x"),
    # rule 36
    ("r36-ori_x-shape", dict(c=1), setk(ori_x=np.zeros((2, 1024), BF16)), TILING, "ori_x"),
    ("r36-alpha1-len", dict(q=1), setk(const_expert_alpha_1=np.zeros(2, BF16)), TILING, "const_expert_alpha_1"),
    ("r36-alpha2-len", dict(q=1), setk(const_expert_alpha_2=np.zeros(2, BF16)), TILING, "const_expert_alpha_2"),
    ("r36-v-shape", dict(q=1), setk(const_expert_v=np.zeros((1, 1000), BF16)), TILING, "const_expert_v"),
    ("r36-alpha-given-without-const", {}, setk(const_expert_alpha_1=np.zeros(1, BF16)), TILING,
     "const_expert_alpha_1"),
    # rule 37: HCCL_BUFFSIZE
    # maxBs 16, H 8192, ep 16, L 16, K 1 needs 2*(16*16896*16*16 + 16*16384*1) B = 133 MB (rounded up)
    ("r37-buffsize-too-small", dict(ep=16, m=256, bs=16, k=1, h=8192), setk(env={"HCCL_BUFFSIZE": "132"}),
     TILING, "HCCL_BUFFSIZE"),
    ("r37-buffsize-enough", dict(ep=16, m=256, bs=16, k=1, h=8192), setk(env={"HCCL_BUFFSIZE": "133"}), None, ""),
    ("r37-buffsize-default-200", dict(ep=16, m=256, bs=16, k=1, h=8192), None, None, ""),
    # documented rules the kernel does not enforce
    ("doc-groupEp-eq-groupTp", dict(tp=2), setk(group_tp="ep"), TILING, "group_tp"),
    ("doc-id-out-of-range", {}, lambda kw: kw["expert_ids"].__setitem__((1, 0), 4), TILING, "expert_ids"),
    ("doc-id-negative", {}, lambda kw: kw["expert_ids"].__setitem__((1, 0), -1), TILING, "expert_ids"),
    ("doc-id-special-ok", dict(z=1), lambda kw: kw["expert_ids"].__setitem__((1, 1), 4), None, ""),
    ("doc-id-duplicate", {}, lambda kw: kw["expert_ids"].__setitem__((2, 1), int(kw["expert_ids"][2, 0])), TILING,
     "expert_ids"),
    ("doc-id-masked-out-ignored", dict(mask=np.array([[True, True], [True, False], [True, True]])),
     lambda kw: kw["expert_ids"].__setitem__((1, 1), 99), None, ""),
    ("doc-mask-1d-true-first-ok", dict(mask=np.array([True, True, False])), None, None, ""),
    ("doc-mask-1d-not-true-first", dict(mask=np.array([True, False, True])), None, TILING, "x_active_mask"),
    ("doc-values-skipped-on-request", {}, lambda kw: (kw["expert_ids"].__setitem__((1, 0), 4),
                                                      kw.update(check_values=False)), None, ""),
    # elastic
    ("elastic-ok", dict(elastic=elastic_table(4, 0, 1, 3), m=4), lambda kw: kw["expert_ids"].__setitem__(
        slice(None), np.array([[0, 1], [1, 2], [2, 0]])), None, ""),
    ("elastic-flag-off-ok", dict(elastic=elastic_table(4, 0, 1, 3, flag=0)), None, None, ""),
    ("elastic-removed-rank-calls", dict(elastic=elastic_table(4, 0, 1, 3), rank=3), lambda kw: kw[
        "expert_ids"].__setitem__(slice(None), 0), TILING, "ep_rank_id"),
    ("elastic-L-changes", dict(elastic=elastic_table(4, 0, 1, 3)), lambda kw: kw["elastic_info"].__setitem__(3, 6),
     TILING, "elastic_info"),
    ("elastic-table-inconsistent", dict(elastic=elastic_table(4, 0, 1, 3)), lambda kw: kw[
        "elastic_info"].__setitem__(4 + 4, 2), TILING, "elastic_info"),
    ("elastic-id-in-removed-range", dict(elastic=elastic_table(4, 0, 1, 3)), None, TILING, "expert_ids"),
    ("elastic-special-id-from-original-m", dict(elastic=elastic_table(4, 0, 1, 3), z=1), lambda kw: kw[
        "expert_ids"].__setitem__(slice(None), np.array([[0, 4], [1, 2], [2, 0]])), None, ""),
]

COMBINE_ONLY = [
    ("r1-x-out-null", {}, setk(outputs={"x": None}), NULLPTR, "x"),
    ("def-x-out-f32", {}, out_x((3, 1024), F32), INVALID, "x"),
    ("r15-x-out-3d", {}, out_x((3, 1, 1024)), TILING, "x"),
    ("r18-expand_x-int32", {}, setk(expand_x=np.zeros((12, 1024), I32)), TILING, "expand_x"),
    ("r18-expand_x-fp16-ok", dict(dtype=np.float16), None, None, ""),
    ("r18-x-out-dtype", {}, out_x((3, 1024), np.float16), TILING, "x"),
    ("r19-x-out-nz", {}, lambda kw: kw.update(outputs=nz(kw["outputs"])), TILING, "x"),
    ("r27-elastic-length-bug", {}, setk(elastic_info=np.zeros(11, I32)), TILING, "elastic_info"),
    ("r27-elastic-length-ok", {}, setk(elastic_info=np.zeros(12, I32)), None, ""),
    ("r35-x-out-shape", {}, out_x((3, 1000)), TILING, "x"),
    ("r35-x-out-bs", {}, out_x((2, 1024)), TILING, "x"),
]

ARN_ONLY = [
    ("arn-residual-null", {}, setk(residual_x=None), NULLPTR, "residual_x"),
    ("arn-gamma-null", {}, setk(gamma=None), NULLPTR, "gamma"),
    ("arn-y-null", {}, arn_out(0, None), NULLPTR, "y"),
    ("arn-rstd-null", {}, arn_out(1, None), NULLPTR, "rstd"),
    ("arn-x-null", {}, arn_out(2, None), NULLPTR, "x"),
    ("arn-expand_x-fp16", dict(dtype=np.float16), None, INVALID, "expand_x"),
    ("arn-residual-f16", {}, setk(residual_x=np.zeros((3, 1, 1024), np.float16)), INVALID, "residual_x"),
    ("arn-gamma-f32", {}, setk(gamma=np.zeros(1024, F32)), INVALID, "gamma"),
    ("arn-rstd-bf16", {}, arn_out(1, np.zeros((3, 1, 1), BF16)), INVALID, "rstd"),
    ("arn-residual-2d", {}, setk(residual_x=np.zeros((3, 1024), BF16)), TILING, "residual_x"),
    ("arn-gamma-2d", {}, setk(gamma=np.zeros((1, 1024), BF16)), TILING, "gamma"),
    ("arn-y-2d", {}, arn_out(0, np.zeros((3, 1024), BF16)), TILING, "y"),
    ("arn-rstd-2d", {}, arn_out(1, np.zeros((3, 1), F32)), TILING, "rstd"),
    ("arn-x-2d", {}, arn_out(2, np.zeros((3, 1024), BF16)), TILING, "x"),
    ("arn-residual-shape", {}, setk(residual_x=np.zeros((3, 2, 1024), BF16)), TILING, "residual_x"),
    ("arn-gamma-shape", {}, setk(gamma=np.zeros(1025, BF16)), TILING, "gamma"),
    ("arn-y-shape", {}, arn_out(0, np.zeros((3, 1, 1025), BF16)), TILING, "y"),
    ("arn-rstd-shape", {}, arn_out(1, np.zeros((3, 1, 2), F32)), TILING, "rstd"),
    ("arn-x-shape", {}, arn_out(2, np.zeros((2, 1, 1024), BF16)), TILING, "x"),
    ("arn-residual-nz", {}, lambda kw: kw.update(residual_x=nz(kw["residual_x"])), TILING, "residual_x"),
    ("arn-y-nz", {}, lambda kw: arn_out(0, nz(kw["outputs"][0]))(kw), TILING, "y"),
    ("arn-r27-elastic-length", {}, setk(elastic_info=np.zeros(11, I32)), TILING, "elastic_info"),
    ("arn-zero-minus-2-documented", {}, setk(zero_expert_num=-2), TILING, "zero_expert_num"),
    ("arn-outputs-mapping", {}, lambda kw: kw.update(outputs=dict(zip(("y", "rstd", "x"), kw["outputs"]))), None,
     ""),
]

# rule 18 "same dtype as expand_x" cases: a mismatching fp16 tensor is 561002 in CombineV3 (fp16 is in
# the op definition) but 161002 in AddRmsNorm (bf16 only). Fill in the codes per operator.
_R18 = {"r18-ori_x-dtype", "r18-shared_x-dtype", "r18-alpha1-dtype", "r18-v-dtype"}


def _cases(arn: bool):
    for case in COMMON + (ARN_ONLY if arn else COMBINE_ONLY):
        cid, over, mut, status, param = case
        if cid in _R18:
            status = INVALID if arn else TILING
        yield pytest.param(over, mut, status, param, id=cid)


def run_case(arn, over, mut, status, param):
    kw = make(arn=arn, **over)
    if mut is not None:
        mut(kw)
    if status is None:
        lay = call(arn, kw)
        assert isinstance(lay, MoeLayout)
        return None
    with pytest.raises(AclnnError) as ei:
        call(arn, kw)
    err = ei.value
    assert err.status == status, str(err)
    assert param in err.message, str(err)
    assert err.call == (V.OP_ARN if arn else V.OP_COMBINE)
    return err


@pytest.mark.parametrize("over,mut,status,param", list(_cases(False)))
def test_combine_v3_rule(over, mut, status, param):
    run_case(False, over, mut, status, param)


@pytest.mark.parametrize("over,mut,status,param", list(_cases(True)))
def test_add_rms_norm_v2_rule(over, mut, status, param):
    run_case(True, over, mut, status, param)


class TestMessages:
    def test_rule_value_and_parameter_in_message(self):
        err = run_case(False, {}, setk(ep_world_size=1), TILING, "ep_world_size")
        assert "2 <= ep_world_size <= 768" in err.message and "got 1" in err.message

    def test_elastic_length_bug_is_flagged_for_combine_only(self):
        e1 = run_case(False, {}, setk(elastic_info=np.zeros(11, I32)), TILING, "elastic_info")
        e2 = run_case(True, {}, setk(elastic_info=np.zeros(11, I32)), TILING, "elastic_info")
        assert V.NOT_ENFORCED in e1.message and V.NOT_ENFORCED not in e2.message

    def test_negative_special_counts(self):
        e1 = run_case(False, {}, setk(zero_expert_num=-2), TILING, "zero_expert_num")
        e2 = run_case(True, {}, setk(zero_expert_num=-2), TILING, "zero_expert_num")
        e3 = run_case(True, {}, setk(zero_expert_num=-1), TILING, "zero_expert_num")
        assert V.NOT_ENFORCED not in e1.message and V.NOT_ENFORCED in e2.message
        assert V.NOT_ENFORCED not in e3.message

    @pytest.mark.parametrize("mut,param", [
        (setk(group_tp="ep"), "group_tp"),
        (lambda kw: kw["expert_ids"].__setitem__((1, 0), 4), "expert_ids"),
    ])
    def test_not_enforced_rules_say_so(self, mut, param):
        over = dict(tp=2) if param == "group_tp" else {}
        err = run_case(False, over, mut, TILING, param)
        assert V.NOT_ENFORCED in err.message

    def test_order_op_api_before_tiling(self):
        # a NULL tensor (161001) is reported before an out-of-range attribute (561002)
        run_case(False, {}, setk(expert_scales=None, ep_world_size=1), NULLPTR, "expert_scales")
        # a 161002 dtype is reported before tiling rules
        run_case(False, {}, setk(expert_scales=np.ones((3, 2), np.float16), ep_world_size=1), INVALID,
                 "expert_scales")
        # attribute rules come before tensor-dimension rules
        run_case(False, {}, setk(ep_world_size=1, expand_x=np.zeros(3, BF16)), TILING, "ep_world_size")

    def test_errors_pickle(self):
        import pickle
        err = run_case(False, {}, setk(ep_world_size=1), TILING, "ep_world_size")
        back = pickle.loads(pickle.dumps(err))
        assert back.status == err.status and back.message == err.message

    def test_lists_are_converted_like_numpy(self):
        kw = make()
        kw["expert_scales"] = kw["expert_scales"].tolist()     # becomes float64: not in the op definition
        with pytest.raises(AclnnError) as ei:
            call(False, kw)
        assert ei.value.status == INVALID and "expert_scales" in ei.value.message


class TestCheckWorld:
    def world(self, n=4):
        return [np.zeros((12, 1024), BF16) for _ in range(n)], [np.zeros((3, 2), I32) for _ in range(n)]

    def test_ok(self):
        x, ids = self.world()
        assert V.check_world(V.OP_COMBINE, expand_x=x, expert_ids=ids, per_rank={}, ep_world_size=4,
                             tp_world_size=0, global_bs=0, elastic_info=None) == [0, 1, 2, 3]

    @pytest.mark.parametrize("mutate,fragment", [
        (lambda x, ids: x.pop(), "one entry per global rank"),
        (lambda x, ids: x.__setitem__(1, None), "rank 1 present"),
        (lambda x, ids: x.__setitem__(2, np.zeros((12, 2048), BF16)), "rank 2"),
        (lambda x, ids: x.__setitem__(2, np.zeros((12, 1024), np.float16)), "same H and dtype"),
        (lambda x, ids: ids.__setitem__(3, np.zeros((3, 3), I32)), "same K"),
        (lambda x, ids: ids.__setitem__(3, np.zeros((2, 2), I32)), "same Bs"),
    ])
    def test_inconsistent(self, mutate, fragment):
        x, ids = self.world()
        mutate(x, ids)
        with pytest.raises(AclnnError) as ei:
            V.check_world(V.OP_COMBINE, expand_x=x, expert_ids=ids, per_rank={}, ep_world_size=4, tp_world_size=0,
                          global_bs=0, elastic_info=None)
        assert ei.value.status == TILING and fragment in ei.value.message

    def test_bs_may_differ_with_global_bs(self):
        x, ids = self.world()
        ids[3] = np.zeros((2, 2), I32)
        V.check_world(V.OP_COMBINE, expand_x=x, expert_ids=ids, per_rank={}, ep_world_size=4, tp_world_size=0,
                      global_bs=12, elastic_info=None)

    def test_elastic_removed_rank_must_be_none(self):
        x, ids = self.world()
        info = elastic_table(4, 0, 1, 2)
        with pytest.raises(AclnnError) as ei:
            V.check_world(V.OP_COMBINE, expand_x=x, expert_ids=ids, per_rank={}, ep_world_size=4, tp_world_size=0,
                          global_bs=0, elastic_info=info)
        assert "rank 2" in ei.value.message
        x[2] = ids[2] = None
        assert V.check_world(V.OP_COMBINE, expand_x=x, expert_ids=ids, per_rank={}, ep_world_size=4,
                             tp_world_size=0, global_bs=0, elastic_info=info) == [0, 1, 3]

    def test_missing_required_entry(self):
        x, ids = self.world()
        sc = [np.ones((3, 2), F32)] * 3 + [None]
        with pytest.raises(AclnnError) as ei:
            V.check_world(V.OP_COMBINE, expand_x=x, expert_ids=ids, per_rank={"expert_scales": sc},
                          ep_world_size=4, tp_world_size=0, global_bs=0, elastic_info=None)
        assert ei.value.status == NULLPTR and "expert_scales" in ei.value.message
