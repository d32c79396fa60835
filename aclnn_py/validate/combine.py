"""aclnnMoeDistributeCombineV3 / aclnnMoeDistributeCombineAddRmsNormV2 parameter rules (A3).

Source: ``../shared/spec/combine-addrmsnorm-barrier.md`` §1.6 and §8.1, re-read against
``hicann/ops-transformer`` @ c29bc106 (``mc2/moe_distribute_combine_v2/op_host/op_tiling/*_tiling.cpp``,
``mc2/moe_distribute_combine_add_rms_norm/op_host/op_tiling/*_tiling.cpp`` and the op_api ``.cpp``).
Checks run in the order CANN evaluates them:

1. op_api layer (``CheckParams``): NULL tensors / group names -> 161001, name lengths -> 161002;
2. the generated ``aclnnInner...`` wrapper [inferred]: required tensors NULL -> 161001, dtypes outside
   the op definition (``*_def.cpp``) -> 161002;
3. tiling (``GetAttrAndSetTilingData``, ``CheckTensorDim``, ``CheckTensorDataType``, ``CheckTensorFormat``,
   ``CheckAttrs``, ``CheckTensorShape``, window size): every failure 561002;
4. documented rules the CANN code does not enforce (561002, message says so): groupEp != groupTp with
   TP, the CombineV3 elastic-length bug, AddRmsNorm negative special-expert counts, expert ids in range
   and distinct, 1-D mask True-first, elastic table consistency, ``ep_send_counts`` long enough.

The rules that differ between CANN releases read the call's profile (:mod:`aclnn_py.validate.versions`).
Every message names the parameter, the rule (with its §8.1 number) and the value. Value-dependent
checks (group 4, ids / masks / tables) run only on numpy arrays (``check_values=True``); device
tensors are checked by shape and dtype only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .. import profiles
from ..catalog import OpDef
from ..dtypes import acl_name, bfloat16
from ..layout import MoeLayout, normalised_shared_expert_num, parse_elastic_info
from . import rules as R
from . import versions
from .limits import BS_MAX, H_MAX, H_MIN, INT32_MAX, K_MAX, M_MAX, NOT_ENFORCED, SHARED_MAX
from .barrier import elastic_table

OP_COMBINE = "aclnnMoeDistributeCombineV3"
OP_ARN = "aclnnMoeDistributeCombineAddRmsNormV2"

ASSIST_PER_A = 128

_F16, _F32, _I32, _I64, _BOOL = np.float16, np.float32, np.int32, np.int64, np.bool_

# Op-definition dtype lists (moe_distribute_combine_v2_def.cpp / ..._add_rms_norm_def.cpp): outside
# these the generated wrapper rejects the call with 161002 [inferred, spec §8 item 2].
_DEF_COMBINE = {
    "expand_x": (bfloat16, _F16, _I32), "expert_ids": (_I32,), "assist_info_for_combine": (_I32,),
    "ep_send_counts": (_I32,), "expert_scales": (_F32,), "tp_send_counts": (_I32,),
    "x_active_mask": (_BOOL,), "activation_scale": (_F32,), "weight_scale": (_F32,), "group_list": (_I64,),
    "expand_scales": (_F32,), "shared_expert_x": (bfloat16, _F16, _I32), "elastic_info": (_I32,),
    "ori_x": (bfloat16, _F16, _I32), "const_expert_alpha_1": (bfloat16, _F16, _I32),
    "const_expert_alpha_2": (bfloat16, _F16, _I32), "const_expert_v": (bfloat16, _F16, _I32),
    "x": (bfloat16, _F16), "performance_info": (_I64,),
}
_DEF_ARN = dict(_DEF_COMBINE, expand_x=(bfloat16,), shared_expert_x=(bfloat16,), ori_x=(bfloat16,),
                const_expert_alpha_1=(bfloat16,), const_expert_alpha_2=(bfloat16,), const_expert_v=(bfloat16,),
                residual_x=(bfloat16,), gamma=(bfloat16,), y=(bfloat16,), rstd=(_F32,), x=(bfloat16,))


def _unpack_outputs(op: str, outputs: Any, arn: bool) -> dict:
    """``outputs``: None, a mapping by name, a NamedTuple/sequence in C order, or (combine) one tensor."""
    names = ("y", "rstd", "x") if arn else ("x",)
    if outputs is None:
        out = {}
    elif isinstance(outputs, Mapping):
        out = {n: outputs.get(n) for n in names}
    elif not arn and R.is_tensor(outputs):
        out = {"x": outputs}
    elif isinstance(outputs, (tuple, list)) and len(outputs) == len(names):
        out = dict(zip(names, outputs))
    else:
        raise R.ArgumentTypeError(R.INVALID, op, f"outputs must be a mapping or a sequence of {names}; got "
                                                 f"{type(outputs).__name__}")
    R.tensors(op, out)
    return out


@dataclass
class _Call:
    """One rank's call while its rules run: the typed arguments ``t`` (tensors and attributes by name), the
    caller's outputs, the profile and what the rules derive from them."""

    op: str
    arn: bool
    prof: profiles.Profile
    t: dict
    outs: dict
    hier: bool
    skip: str            # the note of a rule the release's combine tiling skips (versions.skipped)
    absent_scales: bool  # expert_scales with a dim 0 on a release where that means "no scales"

    @property
    def ints(self) -> tuple:
        t = self.t
        return (int(t["ep_world_size"]), int(t["tp_world_size"]), int(t["moe_expert_num"]), int(t["zero_expert_num"]),
                int(t["copy_expert_num"]), int(t["const_expert_num"]))

    def given(self, name: str) -> bool:
        return self.t.get(name) is not None


def _scales_absent(prof: profiles.Profile, scales: Any) -> bool:
    """CANN 9.1.0 (``expert_scales_optional``; also an unknown release): an expert_scales tensor with a dim 0
    means "no expert scales" (nCT:118-130, 1817-1819), i.e. an unweighted sum."""
    return not prof.off("expert_scales_optional") and scales is not None and 0 in tuple(scales.shape)


def _check(op: str, arn: bool, a: Mapping[str, Any], outputs: Any, env: Mapping[str, str], prof: profiles.Profile,
           check_values: bool) -> MoeLayout:
    t = dict(a, group_tp=versions.group_tp(prof, a["group_tp"]))
    comm_alg = t["comm_alg"]
    c = _Call(op, arn, prof, t, _unpack_outputs(op, outputs, arn), versions.is_hierarchy(prof, comm_alg),
              versions.skipped(prof), _scales_absent(prof, t["expert_scales"]))
    _check_api(c, outputs is not None)
    _check_attrs(c)
    _check_dims(c)
    _check_dtypes(c)
    _check_formats(c)
    lay = _check_attr_rules(c)
    _check_shapes(c, lay)
    ep, tp, m, z, cp, q = c.ints
    versions.check_window(op, prof, hier=c.hier, bs=lay.bs, max_bs=lay.max_bs, m=m, lnum=lay.moe_local_expert_num,
                          h=int(t["expand_x"].shape[1]), k=lay.k, s=lay.s, ep=ep, comm_alg="", env=env)
    # ---- 4. documented rules the CANN code does not enforce ---------------------------------------
    if tp == 2:
        R.require(t["group_ep"] != t["group_tp"], op, R.TILING, "group_tp",
                  f"!= group_ep when tp_world_size == 2 ({NOT_ENFORCED})", t["group_tp"])
    if check_values:
        _check_values(op, t, lay, m, z, cp, q)
    return lay


def _check_api(c: _Call, has_out: bool) -> None:
    """1. op_api layer (CheckNotNull / CheckParams, rules 1-4) and 2. the generated inner wrapper [inferred]:
    required tensors, op-definition dtypes."""
    op, t, outs, req = c.op, c.t, c.outs, R.require
    for name in ("expand_x", "expert_ids", "assist_info_for_combine", "ep_send_counts", "expert_scales"):
        R.not_none(op, name, t[name])
    if has_out:
        R.not_none(op, "x", outs.get("x"))
    group_ep, group_tp = t["group_ep"], t["group_tp"]
    req(group_ep is not None and group_ep != "", op, R.NULLPTR, "group_ep", "[rule 2] a non-empty group name",
        group_ep)
    req(R.name_length(group_ep) < R.GROUP_NAME_MAX, op, R.INVALID, "group_ep", "[rule 3] length < 128 bytes",
        f"{R.name_length(group_ep)} bytes")
    req(group_tp is not None, op, R.NULLPTR, "group_tp",
        f"[rule 4] a string ({c.prof.name}'s op_api calls strnlen on it with no NULL check; pass '' without TP)",
        None)
    req(R.name_length(group_tp) < R.GROUP_NAME_MAX, op, R.INVALID, "group_tp", "[rule 4] length < 128 bytes",
        f"{R.name_length(group_tp)} bytes")
    # Rule 5 (AddRmsNorm rejected on 910B) does not apply: this package targets A3 (ascend910_93).
    if c.arn:
        R.not_none(op, "residual_x", t["residual_x"])
        R.not_none(op, "gamma", t["gamma"])
        if has_out:
            R.not_none(op, "y", outs.get("y"))
            R.not_none(op, "rstd", outs.get("rstd"))
    for name, allowed in (_DEF_ARN if c.arn else _DEF_COMBINE).items():
        obj = outs.get(name) if name in ("x", "y", "rstd") else t.get(name)
        if obj is not None:
            R.dtype_in(op, name, obj, allowed, R.INVALID)


def _check_special_counts(c: _Call) -> None:
    """Rule 8: zero / copy / const expert counts >= 0. The AddRmsNorm tiling before CANN 9.0.0 rejects only -1
    (other negative values pass as huge uint32 counts, oAT:222-224); the combine tiling every negative one."""
    op, prof = c.op, c.prof
    for name in ("zero_expert_num", "copy_expert_num", "const_expert_num"):
        v = c.t[name]
        note = ""
        if c.arn and v != -1 and prof.off("combine_checks_skipped"):
            note = (f" ({NOT_ENFORCED}: the {prof.name} AddRmsNorm tiling rejects only -1 and lets other negative "
                    "values through as huge uint32 counts)")
        R.require(v >= 0, op, R.TILING, name, f"[rule 8] {name} >= 0{note}", v)


def _check_attrs(c: _Call) -> None:
    """3a. tiling GetAttrAndSetTilingData (rules 6-14)."""
    op, t, req, TL = c.op, c.t, R.require, R.TILING
    ep, _, m, z, cp, q = c.ints
    group_ep = t["group_ep"]
    req(1 <= R.name_length(group_ep) <= 127, op, TL, "group_ep", "[rule 6] length in [1, 127]", group_ep)
    total = m + z + cp + q
    if c.arn:       # the AddRmsNorm tiling checks the counts first, then their sum
        _check_special_counts(c)
    req(total <= INT32_MAX, op, TL, "moe_expert_num", "[rule 7] moe_expert_num + zero + copy + const <= INT32_MAX",
        total)
    if not c.arn:
        _check_special_counts(c)
    versions.check_world(op, c.prof, t, hier=c.hier, combine=True)
    req(t["expert_shard_type"] == 0, op, TL, "expert_shard_type", "[rule 13] expert_shard_type == 0",
        t["expert_shard_type"])
    R.in_range(op, "shared_expert_num", t["shared_expert_num"], 0, SHARED_MAX, TL)
    r = t["shared_expert_rank_num"]
    req(0 <= r < ep, op, TL, "shared_expert_rank_num", f"[rule 14] 0 <= shared_expert_rank_num < ep_world_size ({ep})",
        r)
    R.in_range(op, "moe_expert_num", m, 1, M_MAX, TL)
    versions.check_hierarchy_experts(op, c.hier, m, r)
    R.one_of(op, "comm_quant_mode", t["comm_quant_mode"], (0, 2), TL)


def _alpha_ndims(prof: profiles.Profile) -> tuple:
    """const_expert_alpha_1/2 dimensions: (Q,) before CANN 8.5.0-beta.1, (Q, H) from it (``const_alpha_2d``)."""
    has = prof.has("const_alpha_2d")
    return (2,) if has else (1,) if has is False else (1, 2)


def _reads_tp_send_counts(prof: profiles.Profile) -> bool:
    """Whether the release's combine tiling reads tp_send_counts (not from CANN 9.1.0, ``tp_removed``)."""
    return prof.off("tp_removed")


def _check_dims(c: _Call) -> None:
    """3b. CheckTensorDim (rules 15-17)."""
    op, t, req, TL = c.op, c.t, R.require, R.TILING
    dims_req = [("expand_x", 2), ("expert_ids", 2), ("assist_info_for_combine", 1), ("ep_send_counts", 1)]
    if not c.absent_scales:
        dims_req.append(("expert_scales", 2))
    if c.arn:
        dims_req += [("residual_x", 3), ("gamma", 1)]
    for name, nd in dims_req:
        R.ndim(op, name, t[name], (nd,), TL)
    if c.hier:      # the layered template reads the dispatch's expand_scales (nCT:498-509)
        req(c.given("expand_scales"), op, TL, "expand_scales", "given with comm_alg='hierarchy'", None)
        R.ndim(op, "expand_scales", t["expand_scales"], (1,), TL)
    alpha = _alpha_ndims(c.prof)
    for name, nds in (("ori_x", (2,)), ("const_expert_alpha_1", alpha), ("const_expert_alpha_2", alpha),
                      ("const_expert_v", (2,))):
        if c.given(name):
            R.ndim(op, name, t[name], nds, TL)
    if _reads_tp_send_counts(c.prof):
        req(c.given("tp_send_counts"), op, TL, "tp_send_counts",
            f"[rule 15] present on A3 ({c.prof.name}'s tiling requires it although the docs call it optional; pass "
            "the dispatch tp_recv_counts, shape (tp_world_size,))", None)
        R.ndim(op, "tp_send_counts", t["tp_send_counts"], (1,), TL)
    if c.given("x_active_mask"):
        R.ndim(op, "x_active_mask", t["x_active_mask"], (1, 2), TL)
    if c.given("elastic_info"):
        R.ndim(op, "elastic_info", t["elastic_info"], (1,), TL)
    for name in ("activation_scale", "weight_scale", "group_list"):
        req(t[name] is None, op, TL, name, "[rule 16] None (not supported on A3)",
            f"tensor of shape {tuple(t[name].shape)}" if t[name] is not None else None)
    if c.given("shared_expert_x"):
        req(t["shared_expert_rank_num"] == 0, op, TL, "shared_expert_x",
            "[rule 17] None unless shared_expert_rank_num == 0", f"given with shared_expert_rank_num="
            f"{t['shared_expert_rank_num']}")
        R.ndim(op, "shared_expert_x", t["shared_expert_x"], (2, 3), TL)
    for name, obj in c.outs.items():
        R.ndim(op, name, obj, (3,) if c.arn else (2,), TL)


def _check_dtypes(c: _Call) -> None:
    """3c. CheckTensorDataType (rule 18)."""
    op, t, outs, TL = c.op, c.t, c.outs, R.TILING
    ex = t["expand_x"]
    R.dtype_in(op, "expand_x", ex, (bfloat16,) if c.arn else (bfloat16, _F16), TL)

    def same(name: str, obj: Any) -> None:
        if np.dtype(obj.dtype) != np.dtype(ex.dtype):
            R.fail(op, TL, name, f"[rule 18] dtype == expand_x dtype ({acl_name(ex.dtype)})", acl_name(obj.dtype))

    for name in ("ori_x", "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v"):
        if c.given(name):
            same(name, t[name])
    for name in ("expert_ids", "assist_info_for_combine", "ep_send_counts"):
        R.dtype_in(op, name, t[name], (_I32,), TL)
    if c.arn:
        R.dtype_in(op, "residual_x", t["residual_x"], (bfloat16,), TL)
        R.dtype_in(op, "gamma", t["gamma"], (bfloat16,), TL)
    if _reads_tp_send_counts(c.prof):
        R.dtype_in(op, "tp_send_counts", t["tp_send_counts"], (_I32,), TL)
    for name, dt in (("x_active_mask", _BOOL), ("elastic_info", _I32)):
        if c.given(name):
            R.dtype_in(op, name, t[name], (dt,), TL)
    if c.given("shared_expert_x"):
        same("shared_expert_x", t["shared_expert_x"])
    if not c.absent_scales:
        R.dtype_in(op, "expert_scales", t["expert_scales"], (_F32,), TL)
    if outs:
        if c.arn:
            same("y", outs["y"])
            R.dtype_in(op, "rstd", outs["rstd"], (_F32,), TL)
        same("x", outs["x"])


# the inputs whose format check CANN >= 9.0.0's combine tiling skips (CheckTensorFormat returns GRAPH_FAILED,
# nCT:926-935)
_FORMAT_SKIPPED = frozenset(("ori_x", "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v", "expand_x",
                             "expert_ids", "assist_info_for_combine", "ep_send_counts", "expert_scales"))


def _check_formats(c: _Call) -> None:
    """3d. CheckTensorFormat (rule 19): ND, not FRACTAL_NZ."""
    names = ["ori_x", "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v", "expand_x", "expert_ids",
             "assist_info_for_combine", "ep_send_counts", "tp_send_counts", "expert_scales"]
    if c.arn:
        names += ["residual_x", "gamma"]
    names += ["x_active_mask", "elastic_info", "shared_expert_x", "expand_scales", "performance_info"]
    if not _reads_tp_send_counts(c.prof):
        names.remove("tp_send_counts")
    for name in names:
        if c.given(name):
            note = c.skip if name in _FORMAT_SKIPPED else ""
            R.not_nz(c.op, name, c.t[name], f"[rule 19] format ND (not FRACTAL_NZ){note}")
    for name, obj in c.outs.items():
        R.not_nz(c.op, name, obj, "[rule 19] format ND (not FRACTAL_NZ)")


def _check_attr_rules(c: _Call) -> MoeLayout:
    """3e. CheckAttrs (rules 20-25). Returns the rank's layout."""
    op, t, req, TL, prof = c.op, c.t, R.require, R.TILING, c.prof
    ep, tp, m, z, cp, q = c.ints
    r_num = int(t["shared_expert_rank_num"])
    s_norm = normalised_shared_expert_num(int(t["shared_expert_num"]), r_num)
    R.shared_experts(op, s_norm, r_num, t["shared_expert_num"],
                     ("[rule 20] 0 when shared_expert_num is 0",
                      "[rule 20] 0 (or the default 1) when shared_expert_rank_num is 0",
                      "[rule 20] divisible by shared_expert_num ({s})"))
    if c.hier:
        versions.check_hierarchy_bans(op, t, z=z + cp + q)
    req(m % (ep - r_num) == 0, op, TL, "moe_expert_num",
        f"[rule 21] divisible by ep_world_size - shared_expert_rank_num ({ep - r_num})", m)
    big_l = m // (ep - r_num)
    req(big_l > 0, op, TL, "moe_expert_num", "[rule 21] at least one expert per MoE rank", m)
    versions.check_local_experts(op, prof, big_l, ep)
    req(not (big_l > 1 and tp > 1), op, TL, "moe_expert_num",
        f"[rule 22] one expert per MoE rank when tp_world_size == 2 (got {big_l} per rank)", m)
    req(not (tp > 1 and c.given("elastic_info")), op, TL, "elastic_info", "[rule 22] None when tp_world_size == 2",
        "given")
    bs = int(t["expert_ids"].shape[0])
    bs_max = versions.HIER_BS_MAX if c.hier else BS_MAX
    req(1 <= bs <= bs_max, op, TL, "expert_ids", f"[rule 23] 1 <= Bs = expert_ids.shape[0] <= {bs_max}", bs)
    gbs = int(t["global_bs"])
    req(gbs == 0 or (gbs >= ep * bs and gbs % ep == 0), op, TL, "global_bs",
        f"[rule 24] 0, or a multiple of ep_world_size ({ep}) >= ep_world_size * Bs ({ep * bs})", gbs)
    req(not (gbs > ep * bs and c.given("x_active_mask")), op, TL, "x_active_mask",
        f"[rule 24] None when global_bs ({gbs}) > ep_world_size * Bs ({ep * bs}) (BS differs between ranks)",
        "given")
    req(not (cp > 0 and not c.given("ori_x")), op, TL, "ori_x", f"[rule 25] given when copy_expert_num > 0{c.skip}",
        None)
    if q > 0:
        for name in ("ori_x", "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v"):
            req(c.given(name), op, TL, name, f"[rule 25] given when const_expert_num > 0{c.skip}", None)
    return MoeLayout(ep, int(t["ep_rank_id"]), m, bs, int(t["expert_ids"].shape[1]), tp, int(t["shared_expert_num"]),
                     r_num, gbs, elastic=c.given("elastic_info"))


def _check_shapes(c: _Call, lay: MoeLayout) -> None:
    """3f. CheckTensorShape (rules 26-36)."""
    op, t, outs, req, TL, prof, skip = c.op, c.t, c.outs, R.require, R.TILING, c.prof, c.skip
    ep, tp, m, z, cp, q = c.ints
    bs, k, a = lay.bs, lay.k, lay.a
    kmax = min(K_MAX, m + z + cp + q)
    req(1 <= k <= kmax, op, TL, "expert_ids",
        f"[rule 26] 1 <= K = expert_ids.shape[1] <= min(16, moe+zero+copy+const) = {kmax}{skip}", k)
    if c.given("elastic_info"):
        n_el = int(t["elastic_info"].shape[0])
        rule = f"[rule 27] length == 4 + 2 * ep_world_size = {4 + 2 * ep}"
        if not c.arn and prof.off("combine_elastic_length"):
            rule += (f" ({NOT_ENFORCED}: the {prof.name} CombineV3 tiling returns GRAPH_FAILED from a bool function, "
                     "which reads as success and skips the remaining shape checks)")
        req(n_el == 4 + 2 * ep, op, TL, "elastic_info", rule, n_el)
    versions.check_perf_info(op, t.get("performance_info"), ep)
    ex = t["expand_x"]
    rows, h = (int(d) for d in ex.shape)
    factor, note = versions.rows_factor(prof, tp)      # max(tp_world_size, 1): the combine has no A-only bound
    req(rows >= a * factor, op, TL, "expand_x",
        f"[rule 28] expand_x.shape[0] >= A * max(tp_world_size, 1) = {a} * {factor}{'' if skip else note}{skip}", rows)
    if c.hier:
        req(h % versions.HIER_H_ALIGN == 0 and 0 < h <= versions.HIER_H_MAX, op, TL, "expand_x.shape[1] (H)",
            f"a multiple of {versions.HIER_H_ALIGN} in [{versions.HIER_H_ALIGN}, {versions.HIER_H_MAX}] with "
            f"comm_alg='hierarchy'{skip}", h)
    else:
        req(H_MIN <= h <= H_MAX, op, TL, "expand_x.shape[1] (H)", f"{H_MIN} <= H <= {H_MAX}{skip}", h)
    n_assist = int(t["assist_info_for_combine"].shape[0])
    req(n_assist >= a * ASSIST_PER_A, op, TL, "assist_info_for_combine",
        f"[rule 30] length >= 128 * A = {a * ASSIST_PER_A}{skip}", n_assist)
    _check_send_counts(c, lay, note)
    if _reads_tp_send_counts(prof):
        n_tp = int(t["tp_send_counts"].shape[0])
        req(n_tp == tp, op, TL, "tp_send_counts", f"[rule 32] length == tp_world_size ({tp}){skip}", n_tp)
    if not c.absent_scales:
        either = "" if prof.off("expert_scales_optional") else " or a shape with a dim 0 (no expert scales)"
        R.shape_eq(op, "expert_scales", t["expert_scales"], (bs, k), TL, note=either + skip)
    if c.arn:
        R.shape_eq(op, "residual_x", t["residual_x"], (bs, 1, h), TL)
        R.shape_eq(op, "gamma", t["gamma"], (h,), TL)
    if c.given("x_active_mask"):
        mshape = tuple(int(d) for d in t["x_active_mask"].shape)
        req(mshape[0] == bs, op, TL, "x_active_mask", f"[rule 33] shape[0] == Bs ({bs})", mshape)
        req(len(mshape) == 1 or mshape[1] == k, op, TL, "x_active_mask", f"[rule 33] shape[1] == K ({k})", mshape)
    if c.given("shared_expert_x"):
        sshape = tuple(int(d) for d in t["shared_expert_x"].shape)
        if len(sshape) == 2:
            req(sshape == (bs, h), op, TL, "shared_expert_x", f"[rule 34] shape == (Bs, H) = {(bs, h)}{skip}", sshape)
        else:
            req(sshape[0] * sshape[1] == bs and sshape[2] == h, op, TL, "shared_expert_x",
                f"[rule 34] shape (d0, d1, H) with d0*d1 == Bs ({bs}) and H == {h}{skip}", sshape)
    if outs:
        if c.arn:
            R.shape_eq(op, "y", outs["y"], (bs, 1, h), TL)
            R.shape_eq(op, "rstd", outs["rstd"], (bs, 1, 1), TL)
            R.shape_eq(op, "x", outs["x"], (bs, 1, h), TL)
        else:
            R.shape_eq(op, "x", outs["x"], (bs, h), TL)
    if c.given("ori_x"):
        R.shape_eq(op, "ori_x", t["ori_x"], (bs, h), TL, note=skip)
    for name in ("const_expert_alpha_1", "const_expert_alpha_2"):
        if c.given(name):
            alpha = t[name]
            R.shape_eq(op, name, alpha, (q,) if len(alpha.shape) == 1 else (q, h), TL, note=skip)
    if c.given("const_expert_v"):
        R.shape_eq(op, "const_expert_v", t["const_expert_v"], (q, h), TL, note=skip)


def _check_send_counts(c: _Call, lay: MoeLayout, note: str) -> None:
    """Rule 31: ep_send_counts (dispatch's ep_recv_counts) holds a count per (rank, local expert), times
    max(tp_world_size, 1) (the tilings multiply by tp_world_size, which vanishes without TP: documented
    shape); comm_alg='hierarchy' adds the layered template's token counts and offsets."""
    ep, tp = lay.ep_world_size, lay.tp_world_size
    big_l, k = lay.moe_local_expert_num, lay.k
    if c.hier:
        n_counts, what = ep * big_l + lay.global_bs_eff * 2 * k * ep // 8, \
            "ep_world_size * L + global_bs * 2 * K * ep_world_size / 8 with comm_alg='hierarchy'"
    else:
        n_counts = ep if lay.is_shared_rank else ep * big_l
        if c.given("elastic_info"):
            n_counts = max(ep, ep * big_l)
        what = "ep_world_size * local experts * max(tp_world_size, 1)"
    n_ep = int(c.t["ep_send_counts"].shape[0])
    factor = max(tp, 1)
    R.require(n_ep >= n_counts * factor, c.op, R.TILING, "ep_send_counts",
              f"[rule 31] length >= {n_counts * factor} ({what}){'' if c.skip else note}{c.skip}", n_ep)


def _check_values(op: str, t: dict, lay: MoeLayout, m: int, z: int, c: int, q: int) -> None:
    """Value rules (numpy inputs only): elastic table, expert ids, 1-D mask order."""
    TL = R.TILING
    info = t["elastic_info"]
    m_new = m
    if isinstance(info, np.ndarray):
        ep = lay.ep_world_size
        el = parse_elastic_info(info, ep)
        if el.enabled:
            elastic_table(op, info, ep)
            n, r_new = el.ep_world_size, el.shared_rank_num
            R.require(0 <= r_new < n, op, TL, "elastic_info", f"0 <= elastic_info[2] (shared ranks) < "
                      f"elastic_info[1] ({n}) ({NOT_ENFORCED})", r_new)
            moe_ranks = n - r_new
            l_new = el.moe_expert_num // moe_ranks
            R.require(el.moe_expert_num % moe_ranks == 0 and l_new == lay.moe_local_expert_num, op, TL,
                      "elastic_info", f"elastic_info[3] / (elastic_info[1] - elastic_info[2]) == L "
                      f"({lay.moe_local_expert_num} experts per MoE rank) ({NOT_ENFORCED})",
                      f"{el.moe_expert_num} / {moe_ranks}")
            me = int(el.to_new[lay.ep_rank_id])
            R.require(0 <= me < n, op, TL, "ep_rank_id", "a rank kept by the elastic table (Table1[ep_rank_id] "
                      f"!= -1); removed ranks must not call the op ({NOT_ENFORCED})", lay.ep_rank_id)
            m_new = el.moe_expert_num
    ids = t["expert_ids"]
    mask = t["x_active_mask"]
    if not isinstance(ids, np.ndarray):
        return
    ids = ids.astype(np.int64)
    active = np.ones(ids.shape, bool)
    if isinstance(mask, np.ndarray):
        mk = mask.astype(bool)
        if mk.ndim == 1:
            n_true = int(mk.sum())
            bad = np.flatnonzero(mk != (np.arange(mk.shape[0]) < n_true))
            if bad.size:
                R.fail(op, TL, "x_active_mask", f"1-D mask with every True before any False ({NOT_ENFORCED}: the "
                       "kernel uses the first count(True) tokens)", mk.astype(int).tolist() if mk.size <= 32
                       else f"first False at token {int(bad[0])}, {n_true} True in total")
            active &= mk[:, None]
        else:
            active &= mk
    total = m + z + c + q
    if m_new != m:
        ok = ((ids >= 0) & (ids < m_new)) | ((ids >= m) & (ids < total))
        rule = (f"expert ids in [0, {m_new}) (MoE ids after scale-down) or in [{m}, {total}) (special experts, "
                f"numbered from the original moe_expert_num) ({NOT_ENFORCED})")
    else:
        ok = (ids >= 0) & (ids < total)
        rule = f"expert ids in [0, moe+zero+copy+const = {total}) ({NOT_ENFORCED})"
    bad = np.argwhere(active & ~ok)
    if bad.size:
        tt, kk = (int(v) for v in bad[0])
        R.fail(op, TL, "expert_ids", rule, f"expert_ids[{tt}, {kk}] = {int(ids[tt, kk])}")
    if ids.shape[1] > 1:
        srt = np.sort(np.where(active, ids, -1 - np.arange(ids.shape[1])[None, :]), axis=1)
        dup = np.flatnonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1))
        if dup.size:
            tt = int(dup[0])
            R.fail(op, TL, "expert_ids", f"distinct expert ids within a token ({NOT_ENFORCED})",
                   f"expert_ids[{tt}] = {ids[tt].tolist()}")


def check(op_def: OpDef, args: Mapping[str, Any], outputs: Any = None, env: Optional[Mapping[str, str]] = None,
          cann_version: Any = None, check_values: bool = True) -> MoeLayout:
    """Check one rank's CombineV3 (V4: ``performance_info``) or CombineAddRmsNormV2 call (``args``: every parameter
    by keyword); raise :class:`AclnnError` at the first rule broken. Returns the rank's :class:`MoeLayout`.

    ``outputs`` (optional): CombineV3's ``x`` (Bs, H), or AddRmsNorm's ``(y, rstd, x)`` in C order (a
    sequence, NamedTuple or mapping), checked when given. ``env``: environment for ``HCCL_BUFFSIZE``
    (default ``os.environ``). ``cann_version``: the release whose rules apply (:func:`aclnn_py.profiles.resolve`;
    :mod:`aclnn_py.validate.versions`). ``check_values``: also the rules that read host arrays' values. The
    reserved parameters (``out_dtype``, ``group_list_type``...) and ``norm_eps`` are type-checked only:
    the A3 tiling does not read them.
    """
    arn = op_def.has("residual_x")
    op = op_def.c_name
    prof = profiles.resolve(cann_version)
    versions.require_v4(op_def, prof)
    typed = R.typed_args(op_def, args)
    lay = _check(op, arn, typed, outputs, env if env is not None else os.environ, prof, check_values)
    comm_alg = typed["comm_alg"]
    algs = versions.comm_algs(prof)
    if comm_alg not in (None,) + algs:
        R.fail(op, R.TILING, "comm_alg", f"None or one of {algs!r}, the values DispatchV3 accepts in {prof.name} "
               f"(every rank passes DispatchV3's comm_alg; the A3 combine tiling does not read it, {NOT_ENFORCED})",
               comm_alg)
    return lay


def participating_ranks(op: str, *, expand_x: Sequence, expert_ids: Sequence, per_rank: Mapping[str, Any],
                        ep_world_size: int, tp_world_size: int, elastic_info: Any) -> list:
    """Global ranks that run the op: every rank, or those the enabled elastic table keeps.

    Checks that every per-rank sequence has one entry per global rank, that ``None`` marks exactly the
    removed ranks, and that required tensors are present on the others (561002 / 161001 naming the rank).
    """
    TL = R.TILING
    tpf = max(int(tp_world_size), 1)
    world = int(ep_world_size) * tpf
    seqs = dict(per_rank, expand_x=expand_x, expert_ids=expert_ids)
    for name, seq in seqs.items():
        if seq is not None:
            R.per_rank_length(op, name, R.sequence(op, name, seq), world)
    el = None
    if elastic_info is not None and np.asarray(elastic_info).size >= 4 + 2 * ep_world_size:
        el = parse_elastic_info(np.asarray(elastic_info), ep_world_size)
    if el is not None and el.enabled:
        want = [0 <= int(el.to_new[g // tpf]) < el.ep_world_size for g in range(world)]
    else:
        want = [True] * world
    if not any(want):
        R.fail(op, TL, "elastic_info", "at least one rank kept by the elastic table", np.asarray(elastic_info).tolist())
    for g in range(world):
        present = expand_x[g] is not None
        if present != want[g]:
            R.fail(op, TL, "expand_x", f"rank {g} present iff it is kept by the elastic table (None marks a removed "
                   "rank)", "an array" if present else "None")
        if not present:
            continue
        for name in ("expert_ids", "expert_scales", "assist_info_for_combine", "ep_send_counts", "residual_x",
                     "gamma"):
            seq = seqs.get(name, ())
            if name in seqs and (seq is None or seq[g] is None):
                R.fail(op, R.NULLPTR, name, f"an array on rank {g}", None)
    return [g for g in range(world) if want[g]]


def check_world(op: str, *, expand_x: Sequence, expert_ids: Sequence, per_rank: Mapping[str, Any],
                ep_world_size: int, tp_world_size: int, global_bs: int, elastic_info: Any) -> list:
    """Cross-rank consistency of a whole-world call (561002 naming the rank; not checked by CANN).

    ``expand_x`` / ``expert_ids`` are per-global-rank sequences; ``per_rank`` maps the names of the other
    per-rank arguments to their sequences (or None). Besides :func:`participating_ranks`: the same H,
    dtype and K on every rank, and the same Bs when ``global_bs == 0``. Returns the participating ranks.
    """
    TL = R.TILING
    ranks = participating_ranks(op, expand_x=expand_x, expert_ids=expert_ids, per_rank=per_rank,
                                ep_world_size=ep_world_size, tp_world_size=tp_world_size, elastic_info=elastic_info)
    g0 = ranks[0]
    x0, ids0 = expand_x[g0], expert_ids[g0]
    for g in ranks:
        x, ids = expand_x[g], expert_ids[g]
        if x.shape[1:] != x0.shape[1:] or x.dtype != x0.dtype:
            R.fail(op, TL, "expand_x", f"the same H and dtype on every rank (rank {g0}: {x0.shape[1:]} "
                   f"{acl_name(x0.dtype)})", f"rank {g}: {x.shape[1:]} {acl_name(x.dtype)}")
        if ids.shape[1:] != ids0.shape[1:]:
            R.fail(op, TL, "expert_ids", f"the same K on every rank (rank {g0}: {ids0.shape[1:]})",
                   f"rank {g}: {ids.shape[1:]}")
        if int(global_bs) == 0 and ids.shape[0] != ids0.shape[0]:
            R.fail(op, TL, "expert_ids", f"the same Bs on every rank when global_bs == 0 (rank {g0}: {ids0.shape[0]})",
                   f"rank {g}: {ids.shape[0]}")
    return ranks


__all__ = ["check", "check_world", "participating_ranks", "OP_COMBINE", "OP_ARN", "NOT_ENFORCED"]
