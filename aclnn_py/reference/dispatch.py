"""Bit-exact numpy reference of aclnnMoeDistributeDispatchV3 on Atlas A3, whole EP x TP world at once.

Semantics: ``../shared/spec/dispatch-v3.md`` §3-§10 (row order, triples, inclusive cumsums, shared
experts, masks, special experts, elastic scale-down, TP=2 all-gather, dynamic int8 quantisation).

How it is computed (per TP slice, i.e. per EP group):

1. every (source, token, k) pair routed to a MoE expert and every (source, active token, shared
   expert) becomes one *entry*, generated source-major in the source's flat (token, k) order;
2. one stable argsort by ``destination * L' + local expert`` puts the entries of every destination in
   the kernel's row order (local expert, source, flat index) -- the stable sort keeps source-major
   order inside a block; ``bincount`` gives the block counts and ``cumsum`` the offsets;
3. rows are gathered straight into each destination's ``expand_x`` with ``np.take(..., out=)``
   (quant mode 0: a bit copy of the x rows; quant mode 2: int8 rows from exact float32 math);
4. with TP=2 each rank appends its peer's rows after its own.

Elements the kernel never writes are 0 (outputs are zero-allocated with the layout's shapes).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional

import numpy as np

from .. import profiles
from ..catalog import OpDef
from ..elastic import parse_elastic_info
from ..errors import ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_PARAM_NULLPTR, AclnnError, param_error
from ..layout import dispatch_output_specs
from ..results import DispatchOutputs
from ..validate import dispatch as _validate
from ..validate import rules as R
from . import pool
from .numerics import canonical_nan, raw_bits, widen_into
from .routing import EpWorld, active_pairs, ep_world, reference_group_tp, refuse_unmodelled, release_semantics
from .world_args import per_rank_lists, rank_call, with_in_place

OP = _validate.OP
_QUANT_ROWS_BYTES = 1 << 20   # float32 working set per quantisation chunk (1 MiB: stays in L2)


# ---------------------------------------------------------------------------------------------
# Dynamic quantisation (quant_mode 2), dispatch-v3.md §6
# ---------------------------------------------------------------------------------------------

def dynamic_quant(rows: np.ndarray, smooth: Optional[np.ndarray] = None):
    """Per-row dynamic int8 quantisation exactly as the A3 kernel does it, in IEEE binary32.

    ``rows`` (n, H) bf16/fp16 (or float32), ``smooth`` (n, H) float32 or None. Returns
    ``(int8 (n, H), scale float32 (n,))`` with ``q = float32(127) / max|x*smooth|``,
    ``int8 = rint(x*smooth*q)`` (ties to even) and ``scale = float32(1) / q`` (not ``amax/127``).
    NaN policy (docs/decisions.md; the same in the simulator): the max propagates NaN, so a row holding a NaN
    has q NaN, int8 0 and a NaN scale (the canonical NaN); a row with an inf has amax inf, q 0, int8 0 and scale
    inf; a row whose q is not finite (NaN, amax 0, or 127/amax overflows) gives int8 0 (scale 1/q).
    """
    rows = np.asarray(rows)
    n, h = rows.shape
    out_q = np.empty((n, h), dtype=np.int8)
    out_s = np.empty(n, dtype=np.float32)
    _quant_into(rows, smooth, out_q, out_s, np.empty((n, h), dtype=np.float32))
    return out_q, out_s


def _quant_into(rows: np.ndarray, smooth: Optional[np.ndarray], out_q: np.ndarray, out_s: np.ndarray,
                scratch: np.ndarray) -> None:
    """:func:`dynamic_quant` of ``rows`` (n, H) written into ``out_q`` (n, H) int8 and ``out_s`` (n,).

    ``scratch``: float32 with at least n rows of H (the float32 working copy; sized to stay in cache).
    Same float32 operations, in the same order, as the documented formula; chunking is exact because
    every operation is elementwise or a per-row max/min.
    """
    n = rows.shape[0]
    xf = widen_into(rows, scratch[:n])         # exact widening (bf16/fp16 -> fp32)
    if smooth is not None:
        np.multiply(xf, smooth, out=xf)
    if xf.shape[1]:   # max |x| without an |x| temporary (exact); the outer abs turns -0.0 into +0.0
        # NaN-propagating max (the A3 ReduceMax semantics assumed in docs/decisions.md)
        amax = np.abs(np.maximum(np.maximum.reduce(xf, axis=1), -np.minimum.reduce(xf, axis=1)))
    else:
        amax = np.zeros(n, np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.float32(127.0) / amax
        np.multiply(xf, q[:, None], out=xf)
        np.rint(xf, out=xf)
        np.divide(np.float32(1.0), q, out=out_s)
    canonical_nan(out_s)
    bad = ~np.isfinite(q)   # NaN, amax 0 or so small that 127/amax overflows: the row is int8 0
    if bad.any():
        xf[bad] = 0
    if np.isinf(amax).any():   # inf * 0 (amax inf, q 0) is NaN: int8 0. Other rows hold no NaN here: |x*q| <= 127
        np.copyto(xf, 0, where=np.isnan(xf))
    with np.errstate(invalid="ignore"):
        np.copyto(out_q, xf, casting="unsafe")  # float32 -> int8, as astype(np.int8)


def _quant_rows_chunked(x: np.ndarray, row_idx: np.ndarray, smooth_src: Optional[np.ndarray],
                        smooth_idx: Optional[np.ndarray], out_q: np.ndarray, out_s: np.ndarray,
                        dst: np.ndarray) -> None:
    """Quantise ``x[row_idx]`` (smoothed by ``smooth_src[smooth_idx]``) into ``out_q[dst]``, in chunks."""
    h = x.shape[1]
    step = max(1, _QUANT_ROWS_BYTES // max(4 * h, 1))
    scratch = np.empty((min(step, row_idx.size), h), np.float32)
    q = np.empty((scratch.shape[0], h), np.int8)
    s = np.empty(scratch.shape[0], np.float32)
    for a in range(0, row_idx.size, step):
        ri = row_idx[a:a + step]
        sm = smooth_src[smooth_idx[a:a + step]] if smooth_src is not None else None
        m = ri.size
        _quant_into(x[ri], sm, q[:m], s[:m], scratch)
        out_q[dst[a:a + step]] = q[:m]
        out_s[dst[a:a + step]] = s[:m]


def _quant_all_rows(x_list: List[np.ndarray], row0: np.ndarray, h: int):
    """Quantise every token of every source once (no smoothing), straight into ``q_all`` / ``s_all`` slices."""
    total = int(row0[-1])
    q_all = pool.scratch((total, h), np.int8)
    s_all = np.empty(total, dtype=np.float32)
    step = max(1, _QUANT_ROWS_BYTES // max(4 * h, 1))
    scratch = np.empty((max(1, min(step, total)), h), np.float32)
    for n, x in enumerate(x_list):
        base, bs = int(row0[n]), x.shape[0]
        for a in range(0, bs, step):
            b = min(bs, a + step)
            _quant_into(x[a:b], None, q_all[base + a:base + b], s_all[base + a:base + b], scratch)
    return q_all, s_all


# ---------------------------------------------------------------------------------------------
# The world-level reference
# ---------------------------------------------------------------------------------------------

def _rank_error(err: AclnnError, g: int, e: int, t: int) -> AclnnError:
    return AclnnError(err.status, err.call, f"rank {g} (ep_rank_id={e}, tp_rank_id={t}): {err.message}")


def compute(op: OpDef, args: Mapping[str, Any], env: Any = None,
            cann_version: Any = None) -> List[Optional[DispatchOutputs]]:
    """DispatchV3 on every rank of an EP x TP world; entry ``g`` is the result of global rank ``g``.

    ``x[g]`` (BS_g, H) bf16/fp16, ``expert_ids[g]`` (BS_g, K) int32, with
    ``g = ep_rank * max(tp_world_size, 1) + tp_rank``; ``None`` for both marks a rank removed by
    elastic scale-down (its result is ``None``). ``scales`` / ``x_active_mask`` / ``expert_scales``:
    ``None`` or one entry per rank (``(S+M, H)`` float32 / ``(BS,)`` or ``(BS, K)`` bool / ignored on
    A3). ``elastic_info``: one int32 array ``(4 + 2*ep,)`` shared by all ranks. Group names are
    optional (the reference has no communicators; :func:`aclnn_py.reference.routing.reference_group_tp`).

    Each result is a :class:`DispatchOutputs` with the shapes of
    :func:`aclnn_py.layout.dispatch_output_specs`: ``expand_x`` (max(tp,1)*A, H) x dtype or int8,
    ``dynamic_scales`` (max(tp,1)*A,) float32, ``assist_info_for_combine`` int32 triples,
    ``expert_token_nums`` int64, ``ep_recv_counts`` int32 inclusive cumsum, ``tp_recv_counts``
    (tp,) int32, ``expand_scales`` (A,) float32 (never written on A3). Unwritten elements are 0.

    Every taking-part rank is validated first (:func:`aclnn_py.validate.moe_distribute_dispatch_v3`,
    same status codes as the device; the first one before the sequences' lengths are checked, so a broken
    documented rule is reported as such), then the rules that need all ranks (same H, K and x dtype
    everywhere; same BS when ``global_bs == 0``; ``None`` exactly for removed ranks). Sequences of the wrong
    length raise 561002 naming them.
    """
    prof = profiles.resolve(cann_version)
    ep = R.integer(OP, "ep_world_size", args["ep_world_size"])
    tp = R.integer(OP, "tp_world_size", args["tp_world_size"])
    tpf = max(tp, 1)
    world = ep * tpf
    lists = per_rank_lists(op, args)
    qm = R.integer(OP, "quant_mode", args["quant_mode"])
    call = dict(args, group_tp=reference_group_tp(args["group_tp"], tp))
    elastic_info = args["elastic_info"]

    # 1. per-rank validation: the first taking-part rank before the lists' lengths (documented rules first),
    #    then every other rank, then the cross-rank rules
    def validated(g: int) -> Any:
        e, t = divmod(g, tpf)
        try:
            return _validate.check(op, rank_call(op, call, lists, g, {"ep_rank_id": e, "tp_rank_id": t}),
                                   env=env, cann_version=prof)
        except AclnnError as err:
            raise _rank_error(err, g, e, t) from None

    lays: List[Any] = [None] * world
    first = R.first_present(lists["x"])
    if first is not None and all(seq is None or len(seq) > first for seq in lists.values()):
        lays[first] = validated(first)
    for name, seq in lists.items():
        if seq is not None:
            R.per_rank_length(OP, name, seq, world)
    xs, ids, scs, masks, escs = (lists[n] or [None] * world
                                 for n in ("x", "expert_ids", "scales", "x_active_mask", "expert_scales"))
    for g in range(world):
        if lays[g] is None and not (xs[g] is None and ids[g] is None):
            lays[g] = validated(g)
    _check_world(xs, ids, lays, elastic_info, ep=ep, tpf=tpf, global_bs=int(args["global_bs"]))
    refuse_unmodelled(OP, args)

    # 2. the outputs' shapes; each rank's arrays are made once its row count is known (_outputs)
    specs = [None if lays[g] is None else dispatch_output_specs(lays[g], xs[g].shape[1], xs[g].dtype, qm)
             for g in range(world)]
    outs: List[Optional[dict]] = [None] * world

    # 3. EP all-to-all inside each TP slice
    w = ep_world(ep, args["moe_expert_num"], args["shared_expert_num"], args["shared_expert_rank_num"], elastic_info)
    if not any(e is not None for e in escs) or not release_semantics(
            prof, "expert_scales_optional", OP, "expand_scales with expert_scales given (written from CANN 9.1.0)"):
        escs = None
    n_own = np.zeros(world, dtype=np.int64)
    for t in range(tpf):
        _dispatch_slice(w, t, tpf, xs, ids, scs, masks, escs, specs, outs, n_own, quant_mode=qm,
                        z=int(args["zero_expert_num"]) + int(args["copy_expert_num"]) + int(args["const_expert_num"]),
                        token_nums_type=int(args["expert_token_nums_type"]))
    for g in range(world):     # a taking-part rank no EP group routes to receives nothing
        if specs[g] is not None and outs[g] is None:
            outs[g] = _outputs(specs[g], {})

    # 4. TP all-gather inside each TP pair: self rows first, then the peer's
    if tp == 2:
        for e in range(ep):
            for t in (0, 1):
                me, peer = outs[e * 2 + t], outs[e * 2 + 1 - t]
                n_me, n_peer = int(n_own[e * 2 + t]), int(n_own[e * 2 + 1 - t])
                _check_capacity(me["expand_x"].shape[0], n_me + n_peer, e * 2 + t)
                me["expand_x"][n_me:n_me + n_peer] = peer["expand_x"][:n_peer]
                if qm == 2:
                    me["dynamic_scales"][n_me:n_me + n_peer] = peer["dynamic_scales"][:n_peer]
                me["ep_recv_counts"][w.ep_eff:2 * w.ep_eff] = peer["ep_recv_counts"][:w.ep_eff]
                me["tp_recv_counts"][t] = n_me
                me["tp_recv_counts"][1 - t] = n_peer
                me["expert_token_nums"][0] = n_me + n_peer

    return [None if o is None else with_in_place(op, o, lists, g, args) for g, o in enumerate(outs)]


def _check_world(xs, ids, lays, elastic_info, *, ep: int, tpf: int, global_bs: int) -> None:
    """Rules that need every rank: who takes part, and shapes that must agree across ranks."""
    world = len(xs)
    table = parse_elastic_info(elastic_info, ep)
    gone = set(table.removed()) if table is not None else set()
    for g in range(world):
        if lays[g] is None:
            removed = g // tpf in gone
            if not removed:
                raise param_error(OP, ACLNN_ERR_PARAM_NULLPTR, "x",
                                  f"an array for rank {g} (only ranks that elastic_info removes, "
                                  f"Table1[ep_rank] == -1, may be None)", None)
    parts = [g for g in range(world) if lays[g] is not None]
    if not parts:
        raise param_error(OP, ACLNN_ERR_PARAM_NULLPTR, "x", "an array for at least one rank", "every entry None")
    g0 = parts[0]
    h0, k0, bs0, dt0 = xs[g0].shape[1], ids[g0].shape[1], xs[g0].shape[0], np.dtype(xs[g0].dtype)
    for g in parts[1:]:
        checks = (
            ("x", xs[g].shape[1] == h0, f"the same H on every rank (rank {g0}: {h0})", f"rank {g}: {xs[g].shape[1]}"),
            ("expert_ids", ids[g].shape[1] == k0, f"the same K on every rank (rank {g0}: {k0})",
             f"rank {g}: {ids[g].shape[1]}"),
            ("x", np.dtype(xs[g].dtype) == dt0, f"the same dtype on every rank (rank {g0}: {dt0})",
             f"rank {g}: {np.dtype(xs[g].dtype)}"),
            ("x", global_bs != 0 or xs[g].shape[0] == bs0,
             f"the same BS on every rank when global_bs == 0 (rank {g0}: {bs0}; "
             f"set global_bs = max BS * ep_world_size for different batch sizes)", f"rank {g}: {xs[g].shape[0]}"),
        )
        for param, ok, rule, got in checks:
            if not ok:
                raise param_error(OP, ACLNN_ERR_INNER_TILING_ERROR, param, rule, got)


def _check_capacity(capacity: int, rows: int, g: int) -> None:
    if rows > capacity:  # cannot happen for validated inputs; a hardware overrun otherwise
        raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, OP,
                         f"rank {g} receives {rows} rows but expand_x holds {capacity}")


def _outputs(specs: Mapping[str, Any], written: Mapping[str, int]) -> dict:
    """One rank's output arrays with the shapes ``specs``: 0 except the first ``written[name]`` elements of each,
    which the caller then writes (every one of them); recycled memory when large (:mod:`.pool`)."""
    return {name: pool.array(spec.shape, spec.dtype, written.get(name, 0)) for name, spec in specs.items()}


def _dispatch_slice(w: EpWorld, t: int, tpf: int, xs, ids, scs, masks, escs, specs, outs, n_own: np.ndarray, *,
                    quant_mode: int, z: int, token_nums_type: int) -> None:
    """§3.1-§3.3 for the EP group of TP slice ``t``; makes the outputs ``outs[g]`` of its ranks (shapes
    ``specs[g]``) and fills their own-row part. ``escs``: the per-rank expert_scales when the release writes
    expand_scales (else None)."""
    ep2, r2, m2, l2 = w.ep_eff, w.r_eff, w.m_eff, w.l_eff
    gs = [int(w.to_orig[n]) * tpf + t for n in range(ep2)]   # global rank of each new EP id
    if any(specs[g] is None for g in gs):
        raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, OP, "elastic table routes to a rank that is None")
    k = int(ids[gs[0]].shape[1])
    bss = np.array([xs[g].shape[0] for g in gs], dtype=np.int64)
    row0 = np.concatenate(([0], np.cumsum(bss)))             # first row of each source in x_all
    total_rows = int(row0[-1])

    # --- sender side, all sources at once (flat pair index p over the concatenated expert_ids)
    ids_all = np.concatenate([np.asarray(ids[g]).reshape(-1) for g in gs]).astype(np.int64)
    pair_src = np.repeat(np.arange(ep2, dtype=np.int64), bss * k)
    pair_flat = np.arange(ids_all.size, dtype=np.int64) - np.repeat(row0[:-1] * k, bss * k)
    pair_ok = np.ones(ids_all.size, dtype=bool)
    tok_ok = np.ones(total_rows, dtype=bool)
    for n, g in enumerate(gs):
        pv, tv = active_pairs(int(bss[n]), k, masks[g])
        if pv is not None:
            pair_ok[row0[n] * k:row0[n + 1] * k] = pv
            tok_ok[row0[n]:row0[n + 1]] = tv
    if z > 0:
        pair_ok &= ids_all < m2          # special experts (and anything >= M') are not sent
    sel = np.flatnonzero(pair_ok)
    e_moe = ids_all[sel]
    d_moe = e_moe // l2 + r2
    j_moe = e_moe % l2
    src_moe = pair_src[sel]
    tok_moe = pair_flat[sel] // k
    parts = {
        "dest": [d_moe], "key": [d_moe * l2 + j_moe], "src": [src_moe], "tok": [tok_moe],
        "kslot": [pair_flat[sel] % k], "row": [row0[src_moe] + tok_moe], "si": [w.s + e_moe],
    }
    if r2 > 0 and w.s > 0:                # shared experts: every active token to one replica of each
        act = np.flatnonzero(tok_ok)
        src_act = np.repeat(np.arange(ep2, dtype=np.int64), bss)[act]
        tok_act = act - row0[src_act]
        for s in range(w.s):
            d_sh = src_act % w.rpse_eff + s * w.rpse_eff
            parts["dest"].append(d_sh)
            parts["key"].append(d_sh * l2)
            parts["src"].append(src_act)
            parts["tok"].append(tok_act)
            parts["kslot"].append(np.full(act.size, k + s, dtype=np.int64))
            parts["row"].append(act)
            parts["si"].append(np.full(act.size, s, dtype=np.int64))
    ent = {name: np.concatenate(v) for name, v in parts.items()}
    dest, src = ent["dest"], ent["src"]

    # --- receiver side: one stable sort gives every destination's rows in kernel order
    order = np.argsort(ent["key"], kind="stable")
    n_dest = np.bincount(dest, minlength=ep2)
    start = np.concatenate(([0], np.cumsum(n_dest)))
    triples = np.stack((src, ent["tok"], ent["kslot"]), axis=1).astype(np.int32)[order]
    is_moe = dest >= r2
    n_moe_ranks = ep2 - r2
    blk = ((dest[is_moe] - r2) * l2 + (ent["key"][is_moe] - dest[is_moe] * l2)) * ep2 + src[is_moe]
    cum_moe = np.cumsum(np.bincount(blk, minlength=n_moe_ranks * l2 * ep2)
                        .reshape(n_moe_ranks, l2 * ep2), axis=1)
    cum_sh = np.cumsum(np.bincount(dest[~is_moe] * ep2 + src[~is_moe], minlength=r2 * ep2)
                       .reshape(r2, ep2), axis=1)

    # --- row payloads: what np.take gathers from, indexed per sorted entry
    src_arr, src_idx, scale_of = _payload_source(quant_mode, xs, scs, gs, ent, order, row0)
    expand_scales = None if escs is None else _expand_scales(escs, gs, bss, k, sel, dest.size)[order]

    for d in range(ep2):
        g = gs[d]
        n = int(n_dest[d])
        _check_capacity(specs[g]["expand_x"].shape[0], n, g)
        writes_es = expand_scales is not None and escs[g] is not None
        o = outs[g] = _outputs(specs[g], {"expand_x": n * specs[g]["expand_x"].shape[1], "assist_info_for_combine": 3 * n,
                                          "dynamic_scales": n if scale_of is not None else 0,
                                          "expand_scales": n if writes_es else 0})
        a, b = int(start[d]), int(start[d]) + n
        idx = src_idx[a:b]
        np.take(src_arr, idx, axis=0, out=raw_bits(o["expand_x"][:n]), mode="clip")
        if scale_of is not None:
            o["dynamic_scales"][:n] = scale_of[idx]
        o["assist_info_for_combine"][:3 * n] = triples[a:b].reshape(-1)
        if writes_es:                                               # written where the receiver passed them
            o["expand_scales"][:n] = expand_scales[a:b]
        etn = o["expert_token_nums"]
        if d < r2:
            o["ep_recv_counts"][:ep2] = cum_sh[d]
            etn[0] = n
        else:
            cum = cum_moe[d - r2]
            o["ep_recv_counts"][:l2 * ep2] = cum
            if l2 == 1:
                etn[0] = n
            else:
                per_expert_cum = cum[ep2 - 1::ep2]
                etn[:l2] = per_expert_cum if token_nums_type == 0 else np.diff(per_expert_cum, prepend=0)
        n_own[g] = n


def _expand_scales(escs, gs, bss: np.ndarray, k: int, sel: np.ndarray, n_entries: int) -> np.ndarray:
    """Per entry (unsorted): the sender's expert_scales[token, k] of a MoE row, 0 when that sender passed none
    (the MoE entries come first, one per selected pair ``sel``); 0 for shared-expert rows, which the kernel
    leaves unwritten (CANN >= 9.1.0: expand_scales)."""
    flat = [np.asarray(escs[g], np.float32).reshape(-1) if escs[g] is not None else np.zeros(int(bs) * k, np.float32)
            for g, bs in zip(gs, bss)]
    out = np.zeros(n_entries, np.float32)
    out[:sel.size] = np.concatenate(flat)[sel]
    return out


def _payload_source(quant_mode: int, xs, scs, gs, ent, order, row0):
    """(array to gather rows from, gather index per sorted entry, per-row scale array or None)."""
    if quant_mode == 0:
        x0 = xs[gs[0]]
        x_all = pool.scratch((int(row0[-1]), x0.shape[1]), x0.dtype)
        np.concatenate([np.asarray(xs[g]) for g in gs], out=x_all)
        return raw_bits(x_all), ent["row"][order], None
    x_list = [np.asarray(xs[g]) for g in gs]
    if all(scs[g] is None for g in gs):
        # no smoothing: the int8 row depends on the token only -> quantise each token once
        q_all, s_all = _quant_all_rows(x_list, row0, x_list[0].shape[1])
        return q_all, ent["row"][order], s_all
    # smoothing: one quantisation per entry (token, smooth row), computed per source rank
    n_ent = ent["dest"].size
    h = x_list[0].shape[1]
    q_ent = pool.scratch((n_ent, h), np.int8)
    s_ent = np.empty(n_ent, dtype=np.float32)
    by_src = np.argsort(ent["src"], kind="stable")
    seg = np.concatenate(([0], np.cumsum(np.bincount(ent["src"], minlength=len(gs)))))
    for n, g in enumerate(gs):
        sel = by_src[seg[n]:seg[n + 1]]
        sm = None if scs[g] is None else np.asarray(scs[g], dtype=np.float32)
        _quant_rows_chunked(x_list[n], ent["tok"][sel], sm, None if sm is None else ent["si"][sel],
                            q_ent, s_ent, sel)
    return q_ent, order, s_ent
