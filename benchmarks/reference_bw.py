"""Figure 1: reference dispatch / combine throughput against the memory-bandwidth floor, and peak memory.

For each configuration (DeepSeek-style: H 7168, K 8, 256 experts, bf16) the world-level reference
``aclnn_py.reference.moe_distribute_dispatch_v3`` (quant_mode 0 and 2) and ``moe_distribute_combine_v3``
run interleaved with copy floors of the rows they move (``ep * BS * K`` rows):

* **warm floor**: ``np.copyto`` of those bytes into a destination that is already resident;
* **per-rank warm floor** (context, not a target): the warm copy done as ``ep`` pieces, one per destination
  rank, which is how the reference must write its outputs (:func:`per_rank_warm`);
* **fresh floor**: the same copy into a newly allocated destination (the kernel faults in and zeroes
  the pages on first write), which is the least any function returning new arrays pays.

Ratios are medians of the same run. Peak memory: resident high-water mark of the first call, made with
the reference's buffer pool (:mod:`aclnn_py.reference.pool`) emptied first (``/proc/self/clear_refs`` +
``VmHWM``), against the resident bytes of its inputs plus its outputs; the outputs are the resident
growth over the call minus the scratch the call left in the pool, which is reported on its own, as is
what the pool holds after the timed calls (memory kept between calls).
"""
from __future__ import annotations

import dataclasses
import gc
from contextlib import contextmanager
from typing import Dict, Iterator, List

import numpy as np

from .common import (CopyFloor, Samples, fmt_ms, fmt_x, measure_memory, moe_inputs, rss_bytes, set_buffsize, table,
                     verdict)

H, K, EXPERTS = 7168, 8, 256
TARGET_DISPATCH = 2.0
TARGET_DISPATCH_Q2 = 3.0
TARGET_COMBINE = 3.0
TARGET_MEMORY = 1.25


def configs(quick: bool) -> List[dict]:
    sizes = [(16, 128)] if quick else [(16, 128), (16, 256), (32, 128), (32, 256)]
    return [dict(ep=ep, bs=bs) for ep, bs in sizes]


def _resident(arrays) -> int:
    return sum(a.nbytes for a in arrays if a is not None)


def per_rank_warm(floor: CopyFloor, ranks: int) -> None:
    """The warm floor's bytes copied as ``ranks`` separate pieces (one per destination rank, as the reference
    writes them): a single copy of hundreds of MB goes through glibc's non-temporal stores, pieces of a few
    tens of MB do not, and pay the cache's read-for-ownership of every destination line."""
    n, per = floor.src.shape[0], -(-floor.rows // ranks)
    for a in range(0, floor.rows, per):
        b = min(floor.rows, a + per)
        s0 = a % n if a % n + (b - a) <= n else 0
        np.copyto(floor.dst[a:b], floor.src[s0:s0 + b - a])


@contextmanager
def _measure(inputs_resident: int) -> Iterator[dict]:
    """:func:`measure_memory` of a call that starts with an empty pool (its own footprint, not memory that
    earlier calls left for reuse), with the pool's growth over the call taken out of the outputs
    (``m["pool"]``: scratch the call dropped into the pool; resident, but not an output)."""
    from aclnn_py.reference import pool
    gc.collect()
    pool.POOL.clear()
    kept0 = pool.POOL.kept_bytes()
    with measure_memory(inputs_resident) as m:
        yield m
    grew = max(0, pool.POOL.kept_bytes() - kept0)
    m["pool"] = grew
    if m["use"] is not None:
        m["use"] = dataclasses.replace(m["use"], outputs=max(0, m["use"].outputs - grew))


def run_config(ep: int, bs: int, repeats: int) -> Dict[str, object]:
    from aclnn_py import reference
    from aclnn_py.reference import pool
    mb = set_buffsize(h=H, bs=bs, ep=ep, experts=EXPERTS, k=K)
    rss0 = rss_bytes() or 0
    inp = moe_inputs(ep, bs, H, K, EXPERTS, seed=ep * 1000 + bs)
    in_bytes = _resident(inp["x"]) + _resident(inp["expert_ids"]) + _resident(inp["expert_scales"])
    attrs = dict(ep_world_size=ep, moe_expert_num=EXPERTS)
    rows = ep * bs * K

    def dispatch(qm: int):
        return reference.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], quant_mode=qm, **attrs)

    # first calls: peak memory (and the process's first touch of this much memory, kept out of the timings)
    mem, kept = {}, {}
    with _measure(_resident(inp["x"]) + _resident(inp["expert_ids"])) as m:
        d = dispatch(0)
    mem["dispatch"], kept["dispatch"] = m["use"], m["pool"]
    comb_args = ([o.expand_x for o in d], inp["expert_ids"], [o.assist_info_for_combine for o in d],
                 [o.ep_recv_counts for o in d], inp["expert_scales"])
    comb_kw = dict(tp_send_counts=[o.tp_recv_counts for o in d], **attrs)
    comb_in = (mem["dispatch"].outputs if mem["dispatch"] else 0) + _resident(inp["expert_ids"]) \
        + _resident(inp["expert_scales"])
    with _measure(comb_in) as m:
        c = reference.moe_distribute_combine_v3(*comb_args, **comb_kw)
    mem["combine"], kept["combine"] = m["use"], m["pool"]
    del c
    gc.collect()
    with _measure(_resident(inp["x"]) + _resident(inp["expert_ids"])) as m:
        q = dispatch(2)
    mem["dispatch_q2"], kept["dispatch_q2"] = m["use"], m["pool"]
    del q
    gc.collect()

    floor16 = CopyFloor(rows, H * 2)
    floor8 = CopyFloor(rows, H + 4)        # int8 row + its fp32 dynamic scale
    floor16.fresh()                        # untimed: the first touch of this much memory is slower still
    floor8.fresh()
    s = Samples()
    ops = (("dispatch", floor16, lambda: dispatch(0)), ("dispatch_q2", floor8, lambda: dispatch(2)),
           ("combine", floor16, lambda: reference.moe_distribute_combine_v3(*comb_args, **comb_kw)))
    for name, floor, op in ops:     # each op next to its own floors, so both see the same memory state
        del_ = op()                 # untimed warm-ups: a call that reaches a new memory high-water mark is slower
        del del_
        floor.fresh()
        for _ in range(repeats):
            s.time(name + ":floor_warm", floor.warm)
            s.time(name + ":floor_per_rank", lambda: per_rank_warm(floor, ep))
            s.time(name + ":floor_fresh", floor.fresh)
            out = s.time(name, op)
            del out
    floor16.release()
    floor8.release()
    del d, comb_args, comb_kw
    res = dict(ep=ep, bs=bs, hccl_buffsize_mb=mb, rows=rows, moved_mb=rows * H * 2 / 2**20,
               inputs_mb=in_bytes / 2**20, times={k: s.med(k) for k in s.data}, memory=mem,
               pool_kept_first_call_mb={k: v / 2**20 for k, v in kept.items()},
               pool_kept_after_mb=pool.POOL.kept_bytes() / 2**20, rss_start_mb=rss0 / 2**20)
    del inp
    gc.collect()
    return res


def run(quick: bool = False) -> Dict[str, object]:
    repeats = 3
    results = [run_config(c["ep"], c["bs"], repeats) for c in configs(quick)]
    return {"figure": "reference_bw", "repeats": repeats, "results": results}


def report(res: Dict[str, object]) -> str:
    rows, mem_rows = [], []
    worst = {"dispatch": 0.0, "dispatch_q2": 0.0, "combine": 0.0, "memory": 0.0}
    for r in res["results"]:
        t = r["times"]
        cfg = f"ep{r['ep']} BS{r['bs']}"
        for name, target in (("dispatch", TARGET_DISPATCH), ("dispatch_q2", TARGET_DISPATCH_Q2),
                             ("combine", TARGET_COMBINE)):
            fw, ff, fr = t[name + ":floor_warm"], t[name + ":floor_fresh"], t[name + ":floor_per_rank"]
            warm, fresh = t[name] / fw, t[name] / ff
            worst[name] = max(worst[name], warm)
            label = {"dispatch": "dispatch", "dispatch_q2": "dispatch quant_mode 2", "combine": "combine"}[name]
            rows.append([cfg, label, fmt_ms(t[name]), fmt_ms(fw), fmt_ms(fr), fmt_ms(ff), fmt_x(warm),
                         fmt_x(t[name] / fr), fmt_x(fresh),
                         f"<= {target:g}x: warm {verdict(warm, target)}, fresh {verdict(fresh, target)}"])
        for name in ("dispatch", "dispatch_q2", "combine"):
            m = r["memory"].get(name)
            if m is None:
                continue
            worst["memory"] = max(worst["memory"], m.ratio)
            mem_rows.append([cfg, name.replace("_q2", " quant_mode 2"), f"{m.inputs / 2**20:.0f}",
                             f"{m.outputs / 2**20:.0f}", f"{m.peak / 2**20:.0f}", fmt_x(m.ratio),
                             f"<= {TARGET_MEMORY:g}x: {verdict(m.ratio, TARGET_MEMORY)}",
                             f"{r['pool_kept_first_call_mb'][name]:.0f}"])
        mem_rows[-1][-1] += f" ({r['pool_kept_after_mb']:.0f} after the timed calls)"
    out = ["Figure 1 - reference vs the copy floor (median of %s, ms; floor = np.copyto of the moved rows: "
           "ep*BS*K rows of H bf16, or of H int8 + 4 B for quant_mode 2)" % res["repeats"],
           table(rows, ["config", "op", "reference", "warm floor", "per-rank warm", "fresh floor", "vs warm",
                        "vs per-rank", "vs fresh", "target"]),
           "",
           "Peak resident memory of the first call (MiB; inputs and outputs as resident bytes; pool: scratch the "
           "call left in the reference's buffer pool, resident but not counted as output)",
           table(mem_rows, ["config", "op", "inputs", "outputs", "peak", "peak/(in+out)", "target", "pool kept"])]
    return "\n".join(out)
