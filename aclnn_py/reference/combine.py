"""Bit-exact numpy reference of aclnnMoeDistributeCombineV3 and aclnnMoeDistributeCombineAddRmsNormV2 (A3).

Simulates the whole EP x TP world in one process, the way the A3 kernel works
(``../shared/spec/combine-addrmsnorm-barrier.md`` §3-§7, kernel ``moe_distribute_combine_v2.h`` /
``moe_distribute_combine_add_rms_norm.h`` of ``hicann/ops-transformer``):

* each rank reads its row count from ``ep_send_counts`` (shared rank ``[ep'-1]``, MoE rank ``[ep'*L'-1]``)
  and, with TP, the peer count from ``tp_send_counts``; it does **not** recompute routing — every row goes
  where its ``assist_info_for_combine`` triple ``(src_rank, token, k_slot)`` says, so device outputs of
  dispatch can be fed in unchanged;
* Step B (TP = 2): own row ``i`` becomes ``rne_X(f32(peer row) + f32(own row))``;
* Step C (EP): rows land in the owner's window slot ``(token, k_slot)`` (elastic: rank via Table2), after
  an int8 round trip when ``comm_quant_mode == 2``;
* Step D: per token, fp32 accumulation in ascending k of ``fp32(row * w)`` (MoE), nothing (zero expert),
  ``fp32(oriX * w)`` (copy), ``fp32(fp32(fp32(oriX*a1) + fp32(V*a2)) * w)`` (const), then shared-expert
  slots and ``shared_expert_x`` unweighted, one final RNE;
* AddRmsNorm: ``xs = acc + residual`` (unrounded), ``x = rne(xs)``, ``rstd = 1/sqrt(ReduceSumA3(xs*xs*(1/H))
  + eps)``, ``y = rne(rne(xs * rstd) * gamma)``.

Vectorised over tokens and H; Python loops run over ranks and over the K + S slots only. Tokens the kernel
does not process (masks) keep output rows of 0 (the device path zero-fills its buffers too). Inputs that
would make the device hang or race (missing, duplicated or unexpected rows) raise ``AclnnError`` 561002
naming the rank, as do cross-rank inconsistencies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional

import numpy as np

from .. import profiles
from ..catalog import OpDef
from ..elastic import parse_elastic_info
from ..errors import ACL_ERROR_RT_AICORE_EXCEPTION, AclnnError, CollectiveError
from ..layout import MoeLayout, add_rms_norm_output_specs, combine_output_specs, zeros_for
from ..results import CombineAddRmsNormOutputs
from ..validate import combine as V
from ..validate import rules as R
from . import pool
from .numerics import (FP32, canonical_nan, int8_comm_roundtrip, raw_bits, reduce_sum_a3, rne_bf16, rne_into, rne_to,
                       tp_add, widen, widen_into)
from .const_experts import const_expert_rows_softmax
from .routing import reference_group_tp, refuse_unmodelled, release_semantics
from .world_args import per_rank_lists, rank_call, with_in_place

_U32 = 0xFFFFFFFF
_BLOCK = 16          # tokens per accumulation block (16 * H fp32 rows stay in L2)
_FILL_BYTES = 1 << 20   # rows per gather of the window fill (stays in L2)


def _entry(seq: Any, g: int) -> Any:
    """Entry ``g`` of an optional per-rank sequence, as given (None when the sequence is None)."""
    return None if seq is None else seq[g]


def _at(seq: Any, g: int) -> Any:
    """Entry ``g`` of an optional per-rank sequence as a numpy array (None when the sequence or the entry is None)."""
    v = _entry(seq, g)
    return None if v is None else np.asarray(v)


@dataclass
class _Rank:
    g: int                      # global rank
    e: int                      # EP rank (original id)
    j: int                      # TP rank
    lay: MoeLayout
    bs: int
    ids: np.ndarray             # (Bs, K) int64
    scales: np.ndarray          # (Bs, K) float32
    mask: Optional[np.ndarray]  # (Bs,) or (Bs, K) bool
    self_cnt: int = 0
    peer_cnt: int = 0
    rows: Optional[np.ndarray] = None   # effective rows it sends over EP, (self_cnt, H) XType


class _World:
    """Validated inputs, row counts and the EP routing of one combine call."""

    def __init__(self, op_def: OpDef, a: dict, env: Any, prof: profiles.Profile) -> None:
        op = self.op = op_def.c_name
        self.prof = prof
        self.op_def = op_def
        self.arn = op_def.has("residual_x")
        self.env = env
        ep, tp = R.integer(op, "ep_world_size", a["ep_world_size"]), R.integer(op, "tp_world_size", a["tp_world_size"])
        self.ep, self.tp, self.tpf = ep, tp, max(tp, 1)
        self.world = ep * self.tpf
        self.lists = lists = per_rank_lists(op_def, a)
        self.a = a = dict(a, **lists)
        self.elastic_info = a["elastic_info"]
        self.call = dict(a, group_tp=reference_group_tp(a["group_tp"], tp))
        self.rank: dict = {}
        first = R.first_present(lists["expand_x"])
        given = [seq for seq in lists.values() if seq is not None]
        if first is not None and all(len(seq) > first for seq in given):
            self._validate_rank(first)       # the documented rules before the lists' structure
        per_rank = {n: seq for n, seq in lists.items() if n not in ("expand_x", "expert_ids")}
        self.ranks = V.participating_ranks(op, expand_x=lists["expand_x"], expert_ids=lists["expert_ids"],
                                           per_rank=per_rank, ep_world_size=ep, tp_world_size=tp,
                                           elastic_info=self.elastic_info)
        for g in self.ranks:
            if g != first:
                self._validate_rank(g)
        if self.elastic_info is not None:
            self.elastic_info = np.asarray(self.elastic_info)
        self.x = {g: np.asarray(lists["expand_x"][g]) for g in self.ranks}
        V.check_world(op, expand_x=lists["expand_x"], expert_ids=lists["expert_ids"], per_rank=per_rank,
                      ep_world_size=ep, tp_world_size=tp, global_bs=a["global_bs"], elastic_info=self.elastic_info)
        refuse_unmodelled(op, a)
        g0 = self.ranks[0]
        self.k = self.rank[g0].ids.shape[1]
        self.h = self.x[g0].shape[1]
        self.xdt = self.x[g0].dtype
        self.s = self.rank[g0].lay.s
        self.m = int(a["moe_expert_num"])
        self._effective_world()
        self._row_counts()
        self._send_rows()
        self._route()

    def _validate_rank(self, g: int) -> None:
        """Validate global rank ``g``'s call (the per-rank rules and codes of the device path)."""
        e, j = divmod(g, self.tpf)
        call = rank_call(self.op_def, self.call, self.lists, g, {"ep_rank_id": e, "tp_rank_id": j})
        try:
            lay = V.check(self.op_def, call, env=self.env, cann_version=self.prof)
        except AclnnError as err:
            raise AclnnError(err.status, err.call, f"rank {g} (ep_rank_id={e}, tp_rank_id={j}): {err.message}") from None
        ids = np.asarray(call["expert_ids"]).astype(np.int64)
        mask = call["x_active_mask"]
        scales = np.asarray(call["expert_scales"], FP32)
        if scales.size == 0:        # an empty expert_scales (CANN >= 9.1.0; validation checked the release): unweighted
            scales = np.ones(ids.shape, FP32)
        self.rank[g] = _Rank(g, e, j, lay, ids.shape[0], ids, scales,
                             None if mask is None else np.asarray(mask).astype(bool))

    # -- elastic "effective" world (kernel InitElasticInfo) ------------------------------------------
    def _effective_world(self) -> None:
        lay = self.rank[self.ranks[0]].lay
        el = parse_elastic_info(self.elastic_info, self.ep) if self.elastic_info is not None else None
        self.scaled = el is not None and el.enabled
        if self.scaled:
            self.ep_eff, self.r_eff = el.ep_world_size, el.shared_rank_num
            self.l_eff = el.moe_expert_num // (self.ep_eff - self.r_eff)
            self.to_new, self.to_orig = el.to_new, el.to_orig
        else:
            self.ep_eff, self.r_eff, self.l_eff = self.ep, lay.r, lay.moe_local_expert_num

    def _fail(self, param: str, rule: str, value: Any) -> None:
        R.fail(self.op, R.TILING, param, f"{rule} (cross-rank consistency, {V.NOT_ENFORCED})", value)

    # -- Step A: row counts ---------------------------------------------------------------------------
    def _row_counts(self) -> None:
        for g in self.ranks:
            rk = self.rank[g]
            me = int(self.to_new[rk.e]) if self.scaled else rk.e
            idx = self.ep_eff - 1 if me < self.r_eff else self.ep_eff * self.l_eff - 1
            counts = np.asarray(self.a["ep_send_counts"][g]).reshape(-1)
            rk.self_cnt = int(counts[idx])
            if self.tp == 2:
                rk.peer_cnt = int(np.asarray(self.a["tp_send_counts"][g]).reshape(-1)[1 - rk.j])
            n_rows = self.x[g].shape[0]
            if not (0 <= rk.self_cnt and 0 <= rk.peer_cnt and rk.self_cnt + rk.peer_cnt <= n_rows):
                self._fail("ep_send_counts", f"rank {g}: 0 <= ep_send_counts[{idx}] (+ tp_send_counts[{1 - rk.j}] "
                           f"with TP) <= expand_x rows ({n_rows})", (rk.self_cnt, rk.peer_cnt))
            n_assist = np.asarray(self.a["assist_info_for_combine"][g]).shape[0]
            if 3 * rk.self_cnt > n_assist:
                self._fail("assist_info_for_combine", f"rank {g}: at least 3 * ep_send_counts[{idx}] entries",
                           n_assist)
        if self.tp == 2:
            for g in self.ranks:
                rk, peer = self.rank[g], self.rank[g ^ 1]
                if rk.peer_cnt != peer.self_cnt:
                    self._fail("tp_send_counts", f"rank {g}: tp_send_counts[{1 - rk.j}] equals the row count of "
                               f"its TP peer (rank {peer.g}: {peer.self_cnt})", rk.peer_cnt)

    # -- Steps B and C (sender side): TP add, int8 round trip ------------------------------------------
    def _send_rows(self) -> None:
        quant = int(self.a["comm_quant_mode"]) == 2
        with np.errstate(all="ignore"):
            for g in self.ranks:
                rk = self.rank[g]
                own = self.x[g][:rk.self_cnt]
                if self.tp == 2:
                    peer = self.rank[g ^ 1]
                    incoming = self.x[peer.g][peer.self_cnt:peer.self_cnt + peer.peer_cnt]
                    own = tp_add(own, incoming)
                if quant:
                    own = int8_comm_roundtrip(own)
                rk.rows = own

    # -- Step C: routing by the triples -------------------------------------------------------------------
    def _route(self) -> None:
        ks = self.k + self.s
        parts = []
        for g in self.ranks:
            rk = self.rank[g]
            n = rk.self_cnt
            tri = np.asarray(self.a["assist_info_for_combine"][g]).reshape(-1)[:3 * n].astype(np.int64)
            tri = tri.reshape(n, 3)
            src, tok, kslot = tri[:, 0], tri[:, 1], tri[:, 2]
            bad = np.flatnonzero((src < 0) | (src >= self.ep_eff))
            if bad.size:
                i = int(bad[0])
                self._fail("assist_info_for_combine", f"rank {g} row {i}: source rank in [0, {self.ep_eff})",
                           tri[i].tolist())
            dest_e = self.to_orig[src] if self.scaled else src
            dest_g = dest_e * self.tpf + rk.j
            parts.append((np.full(n, g, np.int64), np.arange(n, dtype=np.int64), dest_g, tok, kslot))
        if parts:
            src_g, row, dest_g, tok, kslot = (np.concatenate(p) for p in zip(*parts))
        else:
            src_g = row = dest_g = tok = kslot = np.zeros(0, np.int64)
        order = np.argsort(dest_g, kind="stable")
        src_g, row, dest_g, tok, kslot = src_g[order], row[order], dest_g[order], tok[order], kslot[order]
        starts = np.searchsorted(dest_g, np.arange(self.world + 1))
        self.incoming = {}
        present = set(self.ranks)
        for d in range(self.world):
            lo, hi = int(starts[d]), int(starts[d + 1])
            if hi == lo:
                self.incoming[d] = (src_g[lo:hi], row[lo:hi], np.zeros(0, np.int64)) if d in present else None
                continue
            if d not in present:
                self._fail("assist_info_for_combine", f"rank {int(src_g[lo])} row {int(row[lo])}: destination "
                           f"rank {d} takes part in the call", "a removed or missing rank")
            bs = self.rank[d].bs
            t_, k_ = tok[lo:hi], kslot[lo:hi]
            bad = np.flatnonzero((t_ < 0) | (t_ >= bs) | (k_ < 0) | (k_ >= ks))
            if bad.size:
                i = lo + int(bad[0])
                self._fail("assist_info_for_combine", f"rank {int(src_g[i])} row {int(row[i])}: token in [0, {bs}) "
                           f"and k slot in [0, {ks}) of destination rank {d}", (int(tok[i]), int(kslot[i])))
            self.incoming[d] = (src_g[lo:hi], row[lo:hi], k_ * bs + t_)

    # -- Step D --------------------------------------------------------------------------------------
    def processed(self, rk: _Rank) -> np.ndarray:
        """Tokens the kernel processes (and writes): all, the first count(True) (1-D mask), or any-True (2-D)."""
        if rk.mask is None:
            return np.ones(rk.bs, bool)
        if rk.mask.ndim == 1:
            return np.arange(rk.bs) < int(rk.mask.sum())
        return rk.mask.any(axis=1)

    def classify(self, rk: _Rank):
        """Per (t, k) of an active entry, the kernel's uint32 if-chain classes: (moe, copy, const, const index)."""
        a = self.a
        z, c, q = int(a["zero_expert_num"]), int(a["copy_expert_num"]), int(a["const_expert_num"])
        idu = rk.ids & _U32
        t1, t2, t3, t4 = self.m, (self.m + z) & _U32, (self.m + z + c) & _U32, (self.m + z + c + q) & _U32
        act = self.processed(rk)[:, None] & (rk.mask if (rk.mask is not None and rk.mask.ndim == 2) else True)
        moe = idu < t1
        rest = ~moe & ~(idu < t2)
        copy = rest & (idu < t3)
        const = rest & ~copy & (idu < t4)
        return act & moe, act & copy, act & const, (idu - t3) & _U32

    def accumulate(self, d: int, win: np.ndarray, acc: np.ndarray) -> np.ndarray:
        """The fp32 combine sum of rank ``d`` written into ``acc`` (Bs, H) float32; returns which tokens the kernel
        processes, (Bs,) bool. ``win``: scratch of expand_x's dtype, at least (K + S) * Bs rows of H."""
        rk = self.rank[d]
        bs, k, s, h = rk.bs, self.k, self.s, self.h
        ks = k + s
        proc = self.processed(rk)
        moe, copy, const, cidx = self.classify(rk)
        expected = np.zeros((ks, bs), bool)
        expected[:k] = moe.T
        expected[k:] = proc[None, :]
        src_g, row, slot = self.incoming[d]
        got = np.bincount(slot, minlength=ks * bs).reshape(ks, bs)
        self._check_slots(d, rk, expected, got, src_g, row, slot)
        win = win[:ks * bs]
        self._fill(win, src_g, row, slot, got.reshape(-1) == 0)
        win = win.reshape(ks, bs, h)
        weight = np.where(moe, rk.scales, np.float32(0)).astype(FP32)
        special = self._special_terms(d, rk, copy, const, cidx)
        sx = _at(self.a["shared_expert_x"], d)
        sx = None if sx is None else sx.reshape(bs, h)
        tmp = np.empty((min(bs, _BLOCK), h), FP32)
        with np.errstate(all="ignore"):
            for b0 in range(0, bs, _BLOCK):           # token blocks keep acc/tmp in cache; one widening per row
                b1 = min(bs, b0 + _BLOCK)
                a_blk, t_blk = acc[b0:b1], tmp[:b1 - b0]
                a_blk.fill(0)                          # the kernel's acc starts at +0
                for kk in range(k):                    # ascending k: acc = fp32(acc + fp32(row * w))
                    np.multiply(widen_into(win[kk, b0:b1], t_blk), weight[b0:b1, kk:kk + 1], out=t_blk)
                    sp = special.get((kk, b0))
                    if sp is not None:
                        t_blk[sp[0]] = sp[1]
                    np.add(a_blk, t_blk, out=a_blk)
                for kk in range(k, ks):                # shared-expert rows, unweighted
                    np.add(a_blk, widen_into(win[kk, b0:b1], t_blk), out=a_blk)
                if sx is not None:                     # shared_expert_x, unweighted
                    np.add(a_blk, widen_into(sx[b0:b1], t_blk), out=a_blk)
        return proc

    def _check_slots(self, d: int, rk: _Rank, expected: np.ndarray, got: np.ndarray, src_g: np.ndarray,
                     row: np.ndarray, slot: np.ndarray) -> None:
        """Each slot rank ``d`` waits for receives one row, and no other slot receives any (CS §3.4: the kernel
        waits for a flag count per token, so a missing or an extra row is a hang). Raised as the device reports
        a hang: :class:`CollectiveError` 507015; same order and parameter as the simulator."""
        bs = rk.bs
        for cond, what in ((got > 1, "receives more than one row"), (~expected & (got > 0), None),
                           (expected & (got == 0), "receives no row (assist_info_for_combine, ep_send_counts and "
                                                   "x_active_mask must be those of the matching DispatchV3)")):
            bad = np.argwhere(cond)
            if not bad.size:
                continue
            kk, tt = (int(v) for v in bad[0])
            param = "assist_info_for_combine"
            if what is None:
                what = "received a row it does not wait for"
                if rk.mask is not None and self._waits_unmasked(rk, tt, kk):
                    param, what = "x_active_mask", ("received a row that its x_active_mask excludes; pass combine "
                                                    "the x_active_mask given to DispatchV3")
            senders = [(int(src_g[i]), int(row[i])) for i in np.flatnonzero(slot == kk * bs + tt)[:4]]
            raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, self.op,
                                  f"parameter '{param}': EP rank {rk.e} (global rank {d}) token {tt} slot {kk} {what} "
                                  f"(the device would wait forever for its flag count; rows (sender rank, row): "
                                  f"{senders})")

    def _waits_unmasked(self, rk: _Rank, t: int, kslot: int) -> bool:
        """Would slot ``kslot`` of token ``t`` wait for a row if the rank had passed no x_active_mask?"""
        return kslot >= self.k or int(rk.ids[t, kslot]) & _U32 < self.m

    def _fill(self, win: np.ndarray, src_g: np.ndarray, row: np.ndarray, slot: np.ndarray,
              missing: np.ndarray) -> None:
        """Write each received row into its window slot ``k_slot * Bs + token`` of ``win`` and 0 into the
        ``missing`` (bool per slot) ones. Rows arrive grouped by sender: each sender's rows are gathered in
        cache-sized pieces and scattered from there (two copies, but few calls)."""
        win[missing] = 0
        dst = raw_bits(win)
        step = max(1, _FILL_BYTES // max(1, dst.strides[0]))
        brk = (np.flatnonzero(np.diff(src_g) != 0) + 1).tolist()
        for lo, hi in zip([0] + brk, brk + [slot.size]):
            if hi > lo:
                src = raw_bits(self.rank[int(src_g[lo])].rows)
                for a in range(lo, hi, step):
                    b = min(hi, a + step)
                    dst[slot[a:b]] = src[row[a:b]]

    def _special_terms(self, d: int, rk: _Rank, copy: np.ndarray, const: np.ndarray, cidx: np.ndarray) -> dict:
        """Copy / constant expert terms ``fp32(row * w)`` keyed by (k, token block start): (local rows, values)."""
        if not (copy.any() or const.any()):
            return {}
        out: dict = {}
        with np.errstate(all="ignore"):
            ori = widen(_at(self.a["ori_x"], d))
            tc, kc = np.nonzero(copy)
            vals_c = ori[tc]
            tq, kq = np.nonzero(const)
            vals_q = np.empty((0, self.h), FP32)
            if tq.size:
                ci = cidx[tq, kq]
                alpha_1, alpha_2 = _at(self.a["const_expert_alpha_1"], d), _at(self.a["const_expert_alpha_2"], d)
                vv = _at(self.a["const_expert_v"], d)
                if self.const_softmax():
                    vals_q = const_expert_rows_softmax(ori[tq], alpha_1, alpha_2, vv, ci)
                else:
                    a1, a2 = widen(alpha_1)[ci][:, None], widen(alpha_2)[ci][:, None]
                    vals_q = np.add(np.multiply(ori[tq], a1, dtype=FP32), np.multiply(widen(vv)[ci], a2, dtype=FP32),
                                    dtype=FP32)
            t_all = np.concatenate((tc, tq))
            k_all = np.concatenate((kc, kq))
            vals = np.concatenate((vals_c, vals_q))
            terms = np.multiply(vals, rk.scales[t_all, k_all][:, None], dtype=FP32)
        blk = t_all // _BLOCK * _BLOCK
        for key in set(zip(k_all.tolist(), blk.tolist())):
            sel = np.flatnonzero((k_all == key[0]) & (blk == key[1]))
            out[key] = (t_all[sel] - key[1], terms[sel])
        return out

    def const_softmax(self) -> bool:
        """Whether constant experts use the (Q, H) projections and a softmax (CANN >= 8.5.0-beta.1) or scalar
        alphas; an unknown release cannot say (the results differ)."""
        return release_semantics(self.prof, "const_alpha_2d", self.op, "constant experts (const_expert_num > 0 "
                                 "routed)")

    def run(self, finish: Callable[[_Rank, np.ndarray, np.ndarray], Any]) -> list:
        """``finish(rank, acc, processed)`` of every taking-part rank (``acc``: its fp32 sums, scratch memory
        that ``finish`` may overwrite and must not keep), by global rank."""
        out: List[Any] = [None] * self.world
        bs_max = max(self.rank[g].bs for g in self.ranks)
        win = pool.scratch(((self.k + self.s) * bs_max, self.h), self.xdt)
        acc_buf = pool.scratch((bs_max, self.h), FP32)
        for d in self.ranks:
            acc = acc_buf[:self.rank[d].bs]
            proc = self.accumulate(d, win, acc)
            out[d] = finish(self.rank[d], acc, proc)
        return out


def add_rms_norm_rows(acc: np.ndarray, residual: np.ndarray, gamma: np.ndarray, norm_eps: float, *,
                      overwrite: bool = False) -> tuple:
    """The AddRmsNorm tail of the kernel for rows of fp32 combine sums ``acc`` (n, H) (spec §4).

    ``residual`` (n, H) and ``gamma`` (H,) bf16. Returns ``(y (n, H) bf16, rstd (n,) fp32, x (n, H) bf16)``:
    ``xs = fp32(acc + residual)`` (acc not rounded first), ``x = rne(xs)``, ``ms = ReduceSumA3(fp32(fp32(xs*xs)
    * fp32(1/H)))``, ``rstd = fp32(1 / sqrt(fp32(ms + fp32(eps))))``, ``y = rne(fp32(rne(fp32(xs*rstd)) * gamma))``.
    ``overwrite=True`` lets the function use ``acc`` (float32) as scratch space.
    """
    acc = np.asarray(acc, FP32)
    xs = acc if overwrite else acc.copy()
    inv_h = np.float32(1.0) / np.float32(acc.shape[-1])
    eps = np.float32(norm_eps)
    with np.errstate(all="ignore"):
        np.add(xs, residual, out=xs, dtype=FP32)
        x = rne_bf16(xs)
        scratch = np.multiply(xs, xs, dtype=FP32)
        np.multiply(scratch, inv_h, out=scratch)
        rstd = canonical_nan(np.array(np.divide(np.float32(1.0), np.sqrt(np.add(reduce_sum_a3(scratch), eps,
                                                                                  dtype=FP32)), dtype=FP32)))
        np.multiply(xs, rstd[..., None], out=scratch)
        np.multiply(rne_bf16(scratch), gamma, out=scratch, dtype=FP32)
        y = rne_bf16(scratch)
    return y, np.asarray(rstd, FP32), x

def compute(op: OpDef, args: Mapping[str, Any], env: Any = None, cann_version: Any = None) -> list:
    """CombineV3 or CombineAddRmsNormV2 over the whole world; entry ``g`` is global rank ``g``'s result
    (``None`` for a removed rank): CombineV3's ``x`` (Bs, H) of expand_x's dtype, or AddRmsNorm's
    ``(y, rstd, x)``: y (Bs,1,H) bf16, rstd (Bs,1,1) fp32, x (Bs,1,H) bf16.

    Tensor arguments are sequences indexed by global rank ``g = ep_rank * max(tp, 1) + tp_rank`` (as
    returned by the reference dispatch); optional per-rank ones may be None. ``elastic_info`` is one int32
    array shared by all ranks. Every rank is validated first (same rules and codes as the device path;
    ``env`` supplies ``HCCL_BUFFSIZE``). Rows of tokens the kernel does not process are 0. AddRmsNorm's
    ``norm_eps`` is rounded to fp32 (the C parameter is a float).
    """
    world = _World(op, dict(args), env, profiles.resolve(cann_version))
    if not world.arn:
        def finish(rk: _Rank, acc: np.ndarray, proc: np.ndarray) -> Any:
            spec = combine_output_specs(rk.bs, world.h, world.xdt)["x"]
            if proc.all():
                x = rne_into(acc, pool.array(spec.shape, spec.dtype, acc.size))
            else:
                x = pool.zeros(spec.shape, spec.dtype)
                x[proc] = rne_to(acc[proc], world.xdt)
            return with_in_place(op, {"x": x}, world.lists, rk.g, args)
        return world.run(finish)
    residual_x, gamma, norm_eps = world.lists["residual_x"], world.lists["gamma"], args["norm_eps"]

    def finish_arn(rk: _Rank, acc: np.ndarray, proc: np.ndarray) -> CombineAddRmsNormOutputs:
        bs, h = rk.bs, world.h
        res = np.asarray(residual_x[rk.g]).reshape(bs, h)
        gam = np.asarray(gamma[rk.g])
        if proc.all():
            y, rstd, x = add_rms_norm_rows(acc, res, gam, norm_eps, overwrite=True)
            return CombineAddRmsNormOutputs(y.reshape(bs, 1, h), rstd.reshape(bs, 1, 1), x.reshape(bs, 1, h))
        o = zeros_for(add_rms_norm_output_specs(bs, h, world.xdt))
        y, rstd, x = add_rms_norm_rows(acc[proc], res[proc], gam, norm_eps, overwrite=True)
        o["y"][proc, 0], o["rstd"][proc, 0, 0], o["x"][proc, 0] = y, rstd, x
        return CombineAddRmsNormOutputs(o["y"], o["rstd"], o["x"])

    return world.run(finish_arn)


__all__ = ["compute", "add_rms_norm_rows"]
