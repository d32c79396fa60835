"""Parameter rules of aclnnMoeDistributeDispatchV3 for one rank (``dispatch-v3.md`` §13).

Order and codes follow CANN: the op_api checks (161001), the generated layer's dtype lists (161002,
[inferred] in the spec), the A3 tiling rules 1-37 (561002) in evaluation order (the rules that differ between
CANN releases read the call's profile: :mod:`aclnn_py.validate.versions`), and finally the rules
the documentation states but no CANN code checks (561002, message says so): distinct group names
with TP, a consistent elastic table, expert ids in range and distinct within a row, 1-D masks with
every True before any False. Value rules read values only from host ``numpy.ndarray`` arguments.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import ml_dtypes
import numpy as np

from .. import profiles
from ..catalog import OpDef
from ..dtypes import bfloat16
from ..elastic import parse_elastic_info
from ..layout import MoeLayout, dispatch_output_specs, normalised_shared_expert_num
from . import versions
from .limits import BS_MAX, H_MAX, H_MIN, INT32_MAX, K_MAX, M_MAX, NOT_ENFORCED, SHARED_MAX
from .rules import (GROUP_NAME_MAX, INVALID, NULLPTR, TILING, ArgumentTypeError, dtype_in, fail, in_range, is_nz,
                    name_length, ndim, one_of, require, shape_eq, shared_experts, tensors, typed_args)

OP = "aclnnMoeDistributeDispatchV3"


_F32, _I32, _I64, _I8, _BOOL = (np.dtype(t) for t in (np.float32, np.int32, np.int64, np.int8, np.bool_))
_F16 = np.dtype(np.float16)
_FP8 = (np.dtype(ml_dtypes.float8_e5m2), np.dtype(ml_dtypes.float8_e4m3fn))
_E8M0 = (np.dtype(ml_dtypes.float8_e8m0fnu),) if hasattr(ml_dtypes, "float8_e8m0fnu") else ()

# dtypes the op definition lists per argument (DEF); anything else is rejected before tiling.
_DEF_DTYPES = {
    "x": (bfloat16, _F16) + _FP8,
    "expert_ids": (_I32,),
    "scales": (_F32,) + _E8M0,
    "x_active_mask": (_BOOL,),
    "expert_scales": (_F32,),
    "elastic_info": (_I32,),
    "expand_x": (bfloat16, _I8, _F16) + _FP8,
    "dynamic_scales": (_F32,) + _E8M0,
    "assist_info_for_combine": (_I32,),
    "expert_token_nums": (_I64,),
    "ep_recv_counts": (_I32,),
    "tp_recv_counts": (_I32,),
    "expand_scales": (_F32, _I32),
    "performance_info": (_I64,),
}
# CANN 9.1.0 (expert_scales_optional): expandScales is written, FLOAT only
_DEF_DTYPES_9_1 = dict(_DEF_DTYPES, expand_scales=(_F32,))


def _host(t: Any) -> Optional[np.ndarray]:
    """Values of a host array (value rules skip device tensors)."""
    return t if isinstance(t, np.ndarray) else None


def check(op_def: OpDef, args: Mapping[str, Any], outputs: Optional[Mapping[str, Any]] = None,
          env: Optional[Mapping[str, str]] = None, cann_version: Any = None) -> MoeLayout:
    """Check one rank's DispatchV3 (or V4: ``performance_info``) call (``args``: every parameter by keyword); raise
    :class:`aclnn_py.AclnnError` at the first broken rule. Returns this rank's :class:`MoeLayout`.

    Arrays are anything with ``.shape`` and ``.dtype``. ``outputs`` maps output names to the caller's
    buffers; ``None`` means they are allocated with :func:`aclnn_py.layout.dispatch_output_specs` (valid,
    except with comm_alg='hierarchy', whose ep_recv_counts needs more entries than the layout gives). ``env``
    (default ``os.environ``) supplies ``HCCL_BUFFSIZE``. ``cann_version``: the release whose rules apply
    (:func:`aclnn_py.profiles.resolve`; :mod:`aclnn_py.validate.versions`).
    """
    op = op_def.c_name
    prof = profiles.resolve(cann_version)
    versions.require_v4(op_def, prof)
    a = typed_args(op_def, args)
    a["group_tp"] = versions.group_tp(prof, a["group_tp"])
    x, expert_ids, scales = a["x"], a["expert_ids"], a["scales"]
    x_active_mask, elastic_info, expert_scales = a["x_active_mask"], a["elastic_info"], a["expert_scales"]
    perf = a.get("performance_info")
    group_ep, group_tp = a["group_ep"], a["group_tp"]
    ep, ep_rank, m = a["ep_world_size"], a["ep_rank_id"], a["moe_expert_num"]
    tp, shard = a["tp_world_size"], a["expert_shard_type"]
    s_attr, r, qm, gbs = a["shared_expert_num"], a["shared_expert_rank_num"], a["quant_mode"], a["global_bs"]
    etn_type = a["expert_token_nums_type"]
    zero, copy, const = a["zero_expert_num"], a["copy_expert_num"], a["const_expert_num"]
    comm_alg = "" if a["comm_alg"] is None else a["comm_alg"]
    hier = versions.is_hierarchy(prof, comm_alg)
    has_elastic = elastic_info is not None
    tp_recv_required = prof.off("tp_removed")     # CANN 9.1.0's op_api lets tpRecvCountsOut be NULL

    given = outputs is not None
    if given and not isinstance(outputs, Mapping):
        raise ArgumentTypeError(INVALID, op, f"outputs must map output names to tensors; got {type(outputs).__name__}")
    outs: dict = dict(outputs) if given else {}
    output_names = [p.name for p in op_def.outputs]
    tensors(op, {name: outs[name] for name in output_names if name in outs})

    # ---- op_api layer (CheckNotNull / CheckParams): 161001 ------------------------------------
    for name, t in (("x", x), ("expert_ids", expert_ids)):
        require(t is not None, op, NULLPTR, name, "not None (required input)", None)
    if given:
        for name in ("expand_x", "assist_info_for_combine", "expert_token_nums", "ep_recv_counts") + (
                ("tp_recv_counts",) if tp_recv_required else ()):
            require(outs.get(name) is not None, op, NULLPTR, name, "not None (required output)", None)
    require(group_ep is not None and group_ep != "", op, NULLPTR, "group_ep",
            "a non-empty HCCL group name", group_ep)
    if given and qm == 2:
        require(outs.get("dynamic_scales") is not None, op, NULLPTR, "dynamic_scales",
                "not None when quant_mode == 2", None)
    require(name_length(group_ep) < GROUP_NAME_MAX, op, NULLPTR, "group_ep",
            f"length < {GROUP_NAME_MAX} bytes", f"{name_length(group_ep)} bytes")
    require(group_tp is not None, op, NULLPTR, "group_tp",
            f"a string ('' when there is no TP; {prof.name} reads NULL with strnlen, undefined behaviour)", None)
    require(name_length(group_tp) < GROUP_NAME_MAX, op, NULLPTR, "group_tp",
            f"length < {GROUP_NAME_MAX} bytes", f"{name_length(group_tp)} bytes")

    # ---- generated layer: dtypes outside the op definition's lists: 161002 [inferred] ----------
    defs = _DEF_DTYPES if not prof.on("expert_scales_optional") else _DEF_DTYPES_9_1
    for p in op_def.tensors:
        if a[p.name] is not None:
            dtype_in(op, p.name, a[p.name], defs[p.name], status=INVALID)
    for name in output_names:
        if outs.get(name) is not None:
            dtype_in(op, name, outs[name], defs[name], status=INVALID)

    # ---- tiling, A3 (561002), evaluation order of dispatch-v3.md §13.2 --------------------------
    # 1-5 CheckAndSetGroupInfo
    require(1 <= name_length(group_ep) < GROUP_NAME_MAX, op, TILING, "group_ep",
            f"length in [1, {GROUP_NAME_MAX - 1}] bytes", f"{name_length(group_ep)} bytes")
    versions.check_world(op, prof, a, hier=hier, combine=False)
    # 6-11 CheckAndSetExpertInfo
    one_of(op, "expert_shard_type", shard, (0,))
    in_range(op, "shared_expert_num", s_attr, 0, SHARED_MAX)
    in_range(op, "shared_expert_rank_num", r, 0, ep - 1)
    in_range(op, "moe_expert_num", m, 1, M_MAX)
    versions.check_hierarchy_experts(op, hier, m, r)
    in_range(op, "quant_mode", qm, 0, 2)
    one_of(op, "expert_token_nums_type", etn_type, (0, 1))
    # 12-13 CheckAndSetSpecialExpertInfo
    for name, v in (("zero_expert_num", zero), ("copy_expert_num", copy), ("const_expert_num", const)):
        require(v >= 0, op, TILING, name, f"{name} >= 0", v)
    z = zero + copy + const
    require(m + z <= INT32_MAX, op, TILING, "zero_expert_num",
            "moe_expert_num + zero_expert_num + copy_expert_num + const_expert_num <= INT32_MAX", m + z)
    algs = versions.comm_algs(prof)
    require(comm_alg in algs, op, TILING, "comm_alg", f"comm_alg in {algs!r} ({prof.name})", comm_alg)
    fullmesh_v2 = comm_alg == "fullmesh_v2"
    # 14-15 GetParamsAndSetTilingData
    require(qm != 1, op, TILING, "quant_mode", "quant_mode != 1 (static quant is not supported)", qm)
    if scales is not None and qm == 0:
        fail(op, TILING, "scales", "None when quant_mode == 0", f"tensor of shape {tuple(scales.shape)}")
    # 16 CheckTensorDim
    ndim(op, "x", x, (2,))
    if hier:       # the layered template reads the routing weights (nDT:224-238)
        require(expert_scales is not None, op, TILING, "expert_scales", "given with comm_alg='hierarchy'", None)
        ndim(op, "expert_scales", expert_scales, (2,))
    ndim(op, "expert_ids", expert_ids, (2,))
    if scales is not None:
        ndim(op, "scales", scales, (2,))
    bs, h = (int(d) for d in x.shape)
    k = int(expert_ids.shape[1])
    if x_active_mask is not None:
        ndim(op, "x_active_mask", x_active_mask, (1, 2))
        require(int(x_active_mask.shape[0]) == bs, op, TILING, "x_active_mask",
                f"dim0 == BS (x.shape[0] = {bs})", tuple(x_active_mask.shape))
        if len(x_active_mask.shape) == 2:
            require(int(x_active_mask.shape[1]) == k, op, TILING, "x_active_mask",
                    f"dim1 == K (expert_ids.shape[1] = {k})", tuple(x_active_mask.shape))
    if has_elastic:
        ndim(op, "elastic_info", elastic_info, (1,))
    if perf is not None:
        ndim(op, "performance_info", perf, (1,))
    lay = MoeLayout(ep_world_size=ep, ep_rank_id=ep_rank, moe_expert_num=m, bs=bs, k=k,
                    tp_world_size=tp, shared_expert_num=s_attr, shared_expert_rank_num=r,
                    global_bs=gbs, elastic=has_elastic)
    if not given:  # stand-ins with the shapes and dtypes the layout allocates
        outs = dispatch_output_specs(lay, h, x.dtype, qm)
    trc = outs.get("tp_recv_counts")
    ndim(op, "expand_x", outs["expand_x"], (2,))
    if qm == 2:
        ndim(op, "dynamic_scales", outs["dynamic_scales"], (1,))
    for name in ("assist_info_for_combine", "expert_token_nums", "ep_recv_counts"):
        ndim(op, name, outs[name], (1,))
    if trc is not None:
        ndim(op, "tp_recv_counts", trc, (1,))
    # 17 CheckTensorDataType
    dtype_in(op, "x", x, (bfloat16, _F16))
    dtype_in(op, "expert_ids", expert_ids, (_I32,))
    if scales is not None:
        dtype_in(op, "scales", scales, (_F32,))
    if x_active_mask is not None:
        dtype_in(op, "x_active_mask", x_active_mask, (_BOOL,))
    if has_elastic:
        dtype_in(op, "elastic_info", elastic_info, (_I32,))
    dtype_in(op, "expand_x", outs["expand_x"], (_I8,) if qm != 0 else (np.dtype(x.dtype),))
    if qm == 2:
        dtype_in(op, "dynamic_scales", outs["dynamic_scales"], (_F32,))
    dtype_in(op, "assist_info_for_combine", outs["assist_info_for_combine"], (_I32,))
    dtype_in(op, "expert_token_nums", outs["expert_token_nums"], (_I64,))
    dtype_in(op, "ep_recv_counts", outs["ep_recv_counts"], (_I32,))
    if trc is not None:
        dtype_in(op, "tp_recv_counts", trc, (_I32,))
    # 18 CheckTensorFormat
    checked = [("x", x), ("expert_ids", expert_ids), ("scales", scales), ("x_active_mask", x_active_mask),
               ("elastic_info", elastic_info), ("performance_info", perf), ("expand_x", outs["expand_x"])]
    if qm == 2:
        checked.append(("dynamic_scales", outs["dynamic_scales"]))
    checked += [(n, outs.get(n)) for n in ("assist_info_for_combine", "expert_token_nums", "ep_recv_counts",
                                           "tp_recv_counts")]
    for name, t in checked:
        if t is not None:
            require(not is_nz(t), op, TILING, name, "not in FRACTAL_NZ format", "FRACTAL_NZ")
    # 19 CheckSharedAttrs (after the (1, 0) -> 0 normalisation)
    s = normalised_shared_expert_num(s_attr, r)
    shared_experts(op, s, r, s, ("shared_expert_rank_num == 0 when shared_expert_num == 0",
                                 "shared_expert_num == 0 (or the default 1) when shared_expert_rank_num == 0",
                                 "shared_expert_rank_num % shared_expert_num ({s}) == 0"))
    # 20 CheckCommAlgAttrs
    if fullmesh_v2:
        versions.check_fullmesh_v2(op, prof, a, bs=bs, k=k, z=z)
    if hier:
        versions.check_hierarchy_bans(op, a, z=z)
    # 21-26 CheckAttrs
    require(m % (ep - r) == 0, op, TILING, "moe_expert_num",
            f"moe_expert_num % (ep_world_size - shared_expert_rank_num) == 0 (divisor {ep - r})", m)
    lnum = m // (ep - r)
    require(lnum > 0, op, TILING, "moe_expert_num",
            f"moe_expert_num >= ep_world_size - shared_expert_rank_num = {ep - r} (>= 1 expert per MoE rank)", m)
    versions.check_local_experts(op, prof, lnum, ep)
    require(not (tp > 1 and lnum > 1), op, TILING, "moe_expert_num",
            "one MoE expert per rank when tp_world_size > 1", f"{lnum} experts per rank")
    require(not (tp > 1 and has_elastic), op, TILING, "elastic_info",
            "None when tp_world_size > 1", "given")
    bs_max = versions.HIER_BS_MAX if hier else BS_MAX
    require(1 <= bs <= bs_max, op, TILING, "x", f"1 <= BS (x.shape[0]) <= {bs_max}", bs)
    require(gbs == 0 or (gbs >= bs * ep and gbs % ep == 0), op, TILING, "global_bs",
            f"global_bs == 0 or (global_bs >= BS * ep_world_size = {bs * ep} and global_bs % {ep} == 0)", gbs)
    if gbs > bs * ep:
        require(x_active_mask is None, op, TILING, "x_active_mask",
                "None when global_bs > BS * ep_world_size (different BS per rank)", "given")
        require(not (fullmesh_v2 and prof.off("fullmesh_v2_open")), op, TILING, "comm_alg",
                f"not 'fullmesh_v2' when global_bs > BS * ep_world_size ({prof.name})", comm_alg)
    # 27-36 CheckTensorShape
    if hier:
        require(h % versions.HIER_H_ALIGN == 0 and 0 < h <= versions.HIER_H_MAX, op, TILING, "x",
                f"H (x.shape[1]) a multiple of {versions.HIER_H_ALIGN} in [{versions.HIER_H_ALIGN}, "
                f"{versions.HIER_H_MAX}] with comm_alg='hierarchy'", h)
    else:
        require(H_MIN <= h <= H_MAX, op, TILING, "x", f"{H_MIN} <= H (x.shape[1]) <= {H_MAX}", h)
    require(int(expert_ids.shape[0]) == bs, op, TILING, "expert_ids",
            f"dim0 == BS (x.shape[0] = {bs})", tuple(expert_ids.shape))
    kmax = min(K_MAX, m + z)
    require(1 <= k <= kmax, op, TILING, "expert_ids",
            f"1 <= K (expert_ids.shape[1]) <= min(16, moe_expert_num + zero + copy + const) = {kmax}", k)
    if hier:
        shape_eq(op, "expert_scales", expert_scales, (bs, k))
    if scales is not None:
        require(int(scales.shape[0]) == s + m, op, TILING, "scales",
                f"dim0 == shared_expert_num + moe_expert_num = {s + m}", tuple(scales.shape))
        require(int(scales.shape[1]) == h, op, TILING, "scales", f"dim1 == H = {h}", tuple(scales.shape))
    if has_elastic:
        require(int(elastic_info.shape[0]) == 4 + 2 * ep, op, TILING, "elastic_info",
                f"dim0 == 4 + 2 * ep_world_size = {4 + 2 * ep}", tuple(elastic_info.shape))
    if perf is not None:
        versions.check_perf_info(op, perf, ep)
    a_rows = lay.a
    factor, note = versions.rows_factor(prof, tp)
    ex = outs["expand_x"]
    require(int(ex.shape[0]) >= factor * a_rows, op, TILING, "expand_x",
            f"dim0 >= {'max(tp_world_size, 1) * ' if factor > 1 else ''}A = {factor * a_rows}{note}", tuple(ex.shape))
    require(int(ex.shape[1]) == h, op, TILING, "expand_x", f"dim1 == H = {h}", tuple(ex.shape))
    if qm != 0:
        ds = outs["dynamic_scales"]
        require(int(ds.shape[0]) >= factor * a_rows, op, TILING, "dynamic_scales",
                f"dim0 >= {'max(tp_world_size, 1) * ' if factor > 1 else ''}A = {factor * a_rows}{note}",
                tuple(ds.shape))
    ai = outs["assist_info_for_combine"]
    per_a = versions.ASSIST_PER_A if prof.on("assist_128a") else versions.ASSIST_PER_A_OLD
    require(int(ai.shape[0]) >= per_a * a_rows, op, TILING, "assist_info_for_combine",
            f"dim0 >= {per_a} * A = {per_a * a_rows}" + (f" ({prof.name})" if per_a > 3 else ""), tuple(ai.shape))
    etn = outs["expert_token_nums"]
    require(int(etn.shape[0]) == lay.local_expert_num, op, TILING, "expert_token_nums",
            f"dim0 == {lay.local_expert_num} (local expert num)", tuple(etn.shape))
    erc = outs["ep_recv_counts"]
    n_erc = _hierarchy_counts(lay, ep, lnum, k) if hier else lay.ep_recv_counts_len
    require(int(erc.shape[0]) >= n_erc, op, TILING, "ep_recv_counts", f"dim0 >= {n_erc}", tuple(erc.shape))
    if tp_recv_required:
        require(int(trc.shape[0]) == tp, op, TILING, "tp_recv_counts", f"dim0 == tp_world_size = {tp}",
                tuple(trc.shape))
    if expert_scales is not None and prof.on("expert_scales_optional"):
        _check_expert_scales(op, prof, expert_scales, outs.get("expand_scales"), bs=bs, k=k, a=a_rows)
    # 37 CheckWinSize
    versions.check_window(op, prof, hier=hier, bs=bs, max_bs=lay.max_bs, m=m, lnum=lnum, h=h, k=k, s=s, ep=ep,
                          comm_alg=comm_alg, env=env)

    # ---- documented, not enforced by CANN (§13.3) ----------------------------------------------
    if tp == 2:
        require(group_ep != group_tp, op, TILING, "group_tp",
                f"group_tp != group_ep when tp_world_size == 2 ({NOT_ENFORCED})", group_tp)
    _check_values(op, a, lay, m=m, z=z, s=s, lnum=lnum)
    return lay


def _hierarchy_counts(lay: MoeLayout, ep: int, lnum: int, k: int) -> int:
    """ep_recv_counts entries with comm_alg='hierarchy': ep * L plus the token counts and offsets of the layered
    template (globalBs * 2 * K * ep / 8, nDT:1364-1376)."""
    return ep * lnum + lay.global_bs_eff * 2 * k * ep // 8


def _check_expert_scales(op: str, prof: profiles.Profile, es: Any, xs: Any, *, bs: int, k: int, a: int) -> None:
    """CANN 9.1.0 with expert_scales (nDT:1788-1846): (BS, K) float32 ND, and expand_scales, which the kernel
    then writes, a 1-D float32 ND output of at least A entries."""
    ndim(op, "expert_scales", es, (2,))
    dtype_in(op, "expert_scales", es, (_F32,))
    require(not is_nz(es), op, TILING, "expert_scales", "not in FRACTAL_NZ format", "FRACTAL_NZ")
    shape_eq(op, "expert_scales", es, (bs, k))
    require(xs is not None, op, TILING, "expand_scales",
            f"an output when expert_scales is given ({prof.name} writes one expert scale per received row)", None)
    ndim(op, "expand_scales", xs, (1,))
    dtype_in(op, "expand_scales", xs, (_F32,))
    require(not is_nz(xs), op, TILING, "expand_scales", "not in FRACTAL_NZ format", "FRACTAL_NZ")
    require(int(xs.shape[0]) >= a, op, TILING, "expand_scales", f"dim0 >= A = {a}", tuple(xs.shape))


def _check_values(op: str, a: Mapping[str, Any], lay: MoeLayout, *, m: int, z: int, s: int, lnum: int) -> None:
    """The documented rules that read host arrays' values (§13.3): elastic table, 1-D mask order, expert ids in
    range and distinct within a row."""
    bs, k = lay.bs, lay.k
    m_eff = m
    info = _host(a["elastic_info"])
    if info is not None:
        m_eff = _check_elastic_table(info.astype(np.int64), ep=lay.ep_world_size, ep_rank=lay.ep_rank_id, m=m, s=s,
                                     lnum=lnum)
    ids = _host(a["expert_ids"])
    mask = _host(a["x_active_mask"])
    active = None  # (BS, K) pairs the kernel routes; None = all
    if mask is not None:
        if mask.ndim == 1:
            n = int(np.count_nonzero(mask))
            if not mask[:n].all():
                fail(op, TILING, "x_active_mask", f"every True before any False in a 1-D mask ({NOT_ENFORCED})",
                     f"first False at token {int(np.argmin(mask))}, {n} True in total")
            active = np.broadcast_to(mask[:, None], (bs, k))
        else:
            active = mask
    if ids is not None and ids.size:
        ids64 = ids.astype(np.int64)
        ok = (ids64 >= 0) & (ids64 < m_eff)
        if z > 0:
            ok |= (ids64 >= m) & (ids64 < m + z)
        if active is not None:
            ok |= ~active
        if not ok.all():
            t_bad, k_bad = (int(v) for v in np.argwhere(~ok)[0])
            if z > 0:
                rng = f"[0, {m_eff}) or the special experts [{m}, {m + z})"
            else:
                rng = f"[0, {m_eff})"
            fail(op, TILING, "expert_ids", f"ids in {rng} ({NOT_ENFORCED})",
                 f"expert_ids[{t_bad}, {k_bad}] = {int(ids64[t_bad, k_bad])}")
        if k > 1:
            sentinel = -1 - np.arange(k, dtype=np.int64)  # distinct, never a valid id
            vals = ids64 if active is None else np.where(active, ids64, sentinel)
            srt = np.sort(vals, axis=1)
            dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
            if dup.any():
                t_bad = int(np.flatnonzero(dup)[0])
                fail(op, TILING, "expert_ids", f"distinct ids within a token's row ({NOT_ENFORCED})",
                     f"expert_ids[{t_bad}] = {ids64[t_bad].tolist()}")


def _check_elastic_table(info: np.ndarray, *, ep: int, ep_rank: int, m: int, s: int, lnum: int) -> int:
    """Internal consistency of an elastic table that is switched on; returns the routing M'."""
    op = OP
    table = parse_elastic_info(info, ep)
    if not table.enabled:
        return m
    where = f"({NOT_ENFORCED})"
    ep2, r2, m2 = table.ep_world_size, table.shared_rank_num, table.moe_expert_num
    t1, t2 = table.to_new, table.to_orig
    require(1 <= ep2 <= ep, op, TILING, "elastic_info", f"1 <= elastic_info[1] (new ep) <= {ep} {where}", ep2)
    require(0 <= r2 < ep2, op, TILING, "elastic_info",
            f"0 <= elastic_info[2] (new shared rank num) < new ep = {ep2} {where}", r2)
    if s == 0:
        require(r2 == 0, op, TILING, "elastic_info",
                f"elastic_info[2] (new shared rank num) == 0 without shared experts {where}", r2)
    else:
        require(r2 > 0 and r2 % s == 0, op, TILING, "elastic_info",
                f"elastic_info[2] (new shared rank num) > 0 and a multiple of shared_expert_num = {s} {where}",
                r2)
    require(0 < m2 <= m, op, TILING, "elastic_info",
            f"0 < elastic_info[3] (new moe expert num) <= moe_expert_num = {m} {where}", m2)
    require(m2 % (ep2 - r2) == 0 and m2 // (ep2 - r2) == lnum, op, TILING, "elastic_info",
            f"elastic_info[3] / (new ep - new shared rank num) == {lnum} experts per MoE rank, as before {where}",
            f"{m2} / {ep2 - r2}")
    kept = t1[t1 != -1]
    if not (((t1 == -1) | ((t1 >= 0) & (t1 < ep2))).all() and kept.size == ep2 and np.unique(kept).size == ep2):
        fail(op, TILING, "elastic_info", f"Table1 (elastic_info[4:{4 + ep}]) maps the kept ranks one-to-one onto "
             f"[0, {ep2}) and the rest to -1 {where}", t1.tolist())
    orig = np.flatnonzero(t1 != -1)
    if not (t2[t1[orig]] == orig).all():
        fail(op, TILING, "elastic_info", f"Table2 (elastic_info[{4 + ep}:]) is the inverse of Table1 on the new "
             f"ranks {where}", t2.tolist())
    require(int(t1[ep_rank]) != -1, op, TILING, "ep_rank_id",
            f"a rank kept by the elastic table (Table1[ep_rank_id] != -1); removed ranks must not call the op "
            f"{where}", ep_rank)
    return m2
