"""Figure 4: simulator throughput, DispatchV3 + CombineV3 rows per second at ep 16.

One World of 16 rank threads on the simulator; inputs uploaded once; per iteration every rank calls
dispatch (device tensors in) then combine on dispatch's outputs (the expert FFN left out), with a
barrier first. Per iteration the time is the slowest rank's; rows = ep * BS * K per op (each row
is H bf16). Figures are medians over the iterations.

Two ways to call: fresh outputs (every call allocates its outputs and zero-fills them) and ``out=``
preallocated outputs, which shows the simulator's own dispatch/combine throughput; the report gives their
ratio per size (same run) and the 1-minute load average (the machine is shared). Zero-filling costs the
simulator only the pages a kernel then writes (issue 14: ``aclrtMemset`` with 0 gives whole pages back,
sim/src/core_memory.c), so a fresh call costs the rows it moves, not the ``A`` rows of ``expand_x``.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List

import numpy as np

from .common import fmt_x, median, set_buffsize, table, use_simulator

EP, H, K, EXPERTS = 16, 7168, 8, 256


def run(quick: bool = False) -> Dict[str, Any]:
    use_simulator()
    import aclnn_py
    from aclnn_py.demos.common import distinct_ids, random_bf16, routing_weights
    from aclnn_py.runtime.tensor import DeviceTensor

    import aclnn_py.ops as prop
    sizes = [8] if quick else [8, 64]
    iters = 3 if quick else 5
    set_buffsize(h=H, bs=max(sizes), ep=EP, experts=EXPERTS, k=K)
    barrier = threading.Barrier(EP)
    results: List[Dict[str, Any]] = []

    def rank_fn(ctx, bs: int, preallocated: bool) -> List[tuple]:
        rng = np.random.default_rng(ctx.rank)
        x = DeviceTensor.from_numpy(random_bf16(rng, (bs, H)))
        ids = DeviceTensor.from_numpy(distinct_ids(rng, bs, K, np.arange(EXPERTS)))
        w = DeviceTensor.from_numpy(routing_weights(rng, bs, K))
        common = dict(group_ep=ctx.group("ep"), ep_world_size=EP, ep_rank_id=ctx.ep_rank, moe_expert_num=EXPERTS)
        mod, pre_d, pre_c, d_extra, c_extra = aclnn_py, None, None, {}, {}
        if preallocated:
            mod = prop
            pre_d = aclnn_py.moe_distribute_dispatch_v3(x, ids, **common)
            pre_c = DeviceTensor.zeros((bs, H), pre_d.expand_x.dtype)
            d_extra, c_extra = {"out": pre_d}, {"out": pre_c}
        out = []
        try:
            for i in range(iters + 1):            # the first iteration is a warm-up
                barrier.wait()
                t0 = time.perf_counter()
                d = mod.moe_distribute_dispatch_v3(x, ids, **common, **d_extra)
                t1 = time.perf_counter()
                c = mod.moe_distribute_combine_v3(d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts,
                                                  w, tp_send_counts=d.tp_recv_counts, **common, **c_extra)
                t2 = time.perf_counter()
                if not preallocated:
                    c.free()
                    for t in d:
                        t.free()
                if i:
                    out.append((t1 - t0, t2 - t1))
        finally:
            for t in (x, ids, w, pre_c, *(pre_d or ())):
                if t is not None:
                    t.free()
        return out

    load_before = os.getloadavg()[0]
    with aclnn_py.World.ep_tp(EP, backend="device") as world:
        for bs in sizes:
            for preallocated in ([False, True] if prop is not None else [False]):
                per_rank = world.run(rank_fn, bs, preallocated)
                t = np.array(per_rank)                      # (rank, iteration, op)
                slowest = t.max(axis=0)                     # (iteration, op)
                td, tc = median(list(slowest[:, 0])), median(list(slowest[:, 1]))
                rows = EP * bs * K
                results.append(dict(bs=bs, preallocated=preallocated,
                                    outputs="out= (preallocated)" if preallocated else "fresh, zero-filled",
                                    rows_per_op=rows, dispatch_s=td, combine_s=tc, rows_per_s=2 * rows / (td + tc),
                                    mb_per_s=2 * rows * H * 2 / (td + tc) / 2**20))
    return {"figure": "simulator", "ep": EP, "h": H, "k": K, "experts": EXPERTS, "iters": iters, "results": results,
            "load_average": [load_before, os.getloadavg()[0]]}


def fresh_over_preallocated(res: Dict[str, Any]) -> Dict[int, tuple]:
    """{bs: (dispatch, combine)}: fresh-output time over ``out=`` time, per batch size of one run."""
    by = {(r["bs"], r["preallocated"]): r for r in res["results"]}
    return {bs: (by[bs, False]["dispatch_s"] / by[bs, True]["dispatch_s"],
                 by[bs, False]["combine_s"] / by[bs, True]["combine_s"])
            for bs, pre in by if pre and (bs, False) in by}


def report(res: Dict[str, Any]) -> str:
    rows = [[f"ep{res['ep']} BS{r['bs']}", r["outputs"], str(r["rows_per_op"]), f"{r['dispatch_s'] * 1e3:.1f}",
             f"{r['combine_s'] * 1e3:.1f}", f"{r['rows_per_s'] / 1e3:.0f}k", f"{r['mb_per_s']:.0f}"]
            for r in res["results"]]
    return "\n".join([
        f"Figure 4 - simulator throughput (H {res['h']}, K {res['k']}, {res['experts']} experts, bf16; device tensors "
        f"in; slowest rank per iteration, median of {res['iters']})",
        table(rows, ["config", "outputs", "rows per op", "dispatch ms", "combine ms", "rows/s (dispatch+combine)",
                     "MiB/s moved"]),
        *[f"fresh / out= at ep{res['ep']} BS{bs}: dispatch {fmt_x(d)}, combine {fmt_x(c)}"
          for bs, (d, c) in fresh_over_preallocated(res).items()],
        "1-minute load average: {:.1f} before, {:.1f} after ({} CPUs)".format(*res["load_average"], os.cpu_count())])
