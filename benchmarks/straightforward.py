"""Figure 2: the reference against a straightforward implementation (per-token loops, as golden scripts do).

``dispatch_loops`` / ``combine_loops`` are written the way the public golden models are (a loop over
source ranks, tokens and k; per-row numpy on the H axis), for the plain configuration: no shared
experts, no masks, no TP, no special experts, no elastic scale-down. The benchmark first checks they
agree with :mod:`aclnn_py.reference` bit for bit, then times both in the same run.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from .common import Samples, fmt_ms, moe_inputs, set_buffsize, table

H, K, EXPERTS, EP = 7168, 8, 256, 8
F32 = np.float32


def _quant_row(row: np.ndarray):
    """One row's dynamic int8 quantisation (dispatch-v3.md §6), in float32 one operation at a time."""
    xf = row.astype(F32)
    amax = F32(np.max(np.abs(xf))) if xf.size else F32(0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = F32(127.0) / amax
        scale = F32(1.0) / q
        if not np.isfinite(q):
            return np.zeros(row.shape, np.int8), scale
        return np.rint(xf * q).astype(np.int8), scale


def dispatch_loops(xs: Sequence[np.ndarray], ids: Sequence[np.ndarray], *, ep: int, experts: int,
                   quant_mode: int = 0) -> List[dict]:
    """DispatchV3 for every rank with per-token loops. Returns per rank the seven outputs as a dict."""
    bs, k = ids[0].shape
    h = xs[0].shape[1]
    local = experts // ep
    a = bs * ep * min(local, k)
    # every (source, token, k) goes to the rank owning its expert; buckets are (dest, local expert)
    buckets: Dict[tuple, list] = {}
    for src in range(ep):
        for t in range(bs):
            for kk in range(k):
                dest, j = divmod(int(ids[src][t, kk]), local)
                buckets.setdefault((dest, j), []).append((src, t, kk))
    outs = []
    for dest in range(ep):
        expand_x = np.zeros((a, h), np.int8 if quant_mode == 2 else xs[0].dtype)
        dynamic_scales = np.zeros(a, F32)
        assist = np.zeros(max(bs * k, a * 128), np.int32)
        counts = np.zeros(ep * local, np.int64)
        row = 0
        for j in range(local):
            for src, t, kk in buckets.get((dest, j), []):   # appended source-major, then (t, k): kernel order
                if quant_mode == 2:
                    expand_x[row], dynamic_scales[row] = _quant_row(xs[src][t])
                else:
                    expand_x[row] = xs[src][t]
                assist[3 * row:3 * row + 3] = (src, t, kk)
                counts[j * ep + src] += 1
                row += 1
        ep_recv = np.cumsum(counts).astype(np.int32)
        token_nums = counts.reshape(local, ep).sum(axis=1).astype(np.int64)
        outs.append(dict(expand_x=expand_x, dynamic_scales=dynamic_scales, assist_info_for_combine=assist,
                         expert_token_nums=token_nums, ep_recv_counts=ep_recv,
                         tp_recv_counts=np.zeros(0, np.int32), expand_scales=np.zeros(a, F32)))
    return outs


def combine_loops(expand_x: Sequence[np.ndarray], assist: Sequence[np.ndarray], ep_recv: Sequence[np.ndarray],
                  weights: Sequence[np.ndarray], *, ep: int) -> List[np.ndarray]:
    """CombineV3 for every rank: per token, fp32 ``acc = acc + row * w`` in ascending k, then round."""
    bs, k = weights[0].shape
    h = expand_x[0].shape[1]
    received: List[dict] = [dict() for _ in range(ep)]
    for r in range(ep):                       # every expert row goes back to its token's rank
        for i in range(int(ep_recv[r][-1])):
            src, t, kk = (int(v) for v in assist[r][3 * i:3 * i + 3])
            received[src][(t, kk)] = expand_x[r][i]
    outs = []
    for d in range(ep):
        out = np.zeros((bs, h), expand_x[0].dtype)
        for t in range(bs):
            acc = np.zeros(h, F32)
            for kk in range(k):
                acc = acc + received[d][(t, kk)].astype(F32) * weights[d][t, kk]
            out[t] = acc.astype(out.dtype)
        outs.append(out)
    return outs


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def check_agree(ref_d, loop_d, ref_c=None, loop_c=None) -> None:
    """Raise AssertionError unless every output is identical bit for bit."""
    for g, (r, l) in enumerate(zip(ref_d, loop_d)):
        for name, want in l.items():
            got = getattr(r, name)
            if got.shape != want.shape or not np.array_equal(_bits(got), _bits(want)):
                raise AssertionError(f"dispatch rank {g} {name}: the straightforward implementation disagrees")
    for g, (r, l) in enumerate(zip(ref_c or [], loop_c or [])):
        if not np.array_equal(_bits(r), _bits(l)):
            raise AssertionError(f"combine rank {g}: the straightforward implementation disagrees")


def run(quick: bool = False) -> Dict[str, object]:
    bs = 32 if quick else 128
    repeats = 2 if quick else 3
    results = [_run_h(h, bs, repeats) for h in (H, 1024)]
    return {"figure": "straightforward", "ep": EP, "bs": bs, "k": K, "experts": EXPERTS, "repeats": repeats,
            "agree": True, "results": results}


def _run_h(h: int, bs: int, repeats: int) -> Dict[str, object]:
    from aclnn_py import reference
    set_buffsize(h=h, bs=bs, ep=EP, experts=EXPERTS, k=K)
    inp = moe_inputs(EP, bs, h, K, EXPERTS, seed=8)
    xs, ids, w = inp["x"], inp["expert_ids"], inp["expert_scales"]
    attrs = dict(ep_world_size=EP, moe_expert_num=EXPERTS)

    def ref_dispatch(qm):
        return reference.moe_distribute_dispatch_v3(xs, ids, quant_mode=qm, **attrs)

    def ref_combine(d):
        return reference.moe_distribute_combine_v3([o.expand_x for o in d], ids,
                                                   [o.assist_info_for_combine for o in d],
                                                   [o.ep_recv_counts for o in d], w,
                                                   tp_send_counts=[o.tp_recv_counts for o in d], **attrs)

    def loop_combine(d):
        return combine_loops([o.expand_x for o in d], [o.assist_info_for_combine for o in d],
                             [o.ep_recv_counts for o in d], w, ep=EP)

    # agreement first (bit for bit), on the very inputs that are timed
    d_ref = ref_dispatch(0)
    check_agree(d_ref, dispatch_loops(xs, ids, ep=EP, experts=EXPERTS), ref_combine(d_ref), loop_combine(d_ref))
    check_agree(ref_dispatch(2), dispatch_loops(xs, ids, ep=EP, experts=EXPERTS, quant_mode=2))

    s = Samples()
    for _ in range(repeats):
        del_ = s.time("ref_dispatch", lambda: ref_dispatch(0))
        del del_
        del_ = s.time("loop_dispatch", lambda: dispatch_loops(xs, ids, ep=EP, experts=EXPERTS))
        del del_
        del_ = s.time("ref_dispatch_q2", lambda: ref_dispatch(2))
        del del_
        del_ = s.time("loop_dispatch_q2", lambda: dispatch_loops(xs, ids, ep=EP, experts=EXPERTS, quant_mode=2))
        del del_
        s.time("ref_combine", lambda: ref_combine(d_ref))
        s.time("loop_combine", lambda: loop_combine(d_ref))
    return {"h": h, "times": {k_: s.med(k_) for k_ in s.data}}


def report(res: Dict[str, object]) -> str:
    rows = []
    for r in res["results"]:
        t = r["times"]
        for name, label in (("dispatch", "dispatch"), ("dispatch_q2", "dispatch quant_mode 2"),
                            ("combine", "combine")):
            rows.append([f"H {r['h']}", label, fmt_ms(t["loop_" + name]), fmt_ms(t["ref_" + name]),
                         f"{t['loop_' + name] / t['ref_' + name]:.1f}x"])
    return "\n".join([
        f"Figure 2 - reference vs a straightforward per-token implementation (ep {res['ep']}, BS {res['bs']}, "
        f"K {res['k']}, {res['experts']} experts, bf16; median of {res['repeats']}, ms; outputs checked to agree "
        f"bit for bit first)",
        table(rows, ["H", "op", "per-token loops", "reference", "speed-up"])])
