"""DistributeBarrierV2 on N ranks through World, then after an elastic scale-down."""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

import aclnn_py
from aclnn_py.layout import make_elastic_info

from .report import backend_label
from .scenario import is_root, world_of


def run_demo(backend: Optional[str] = None, ranks: int = 8, rounds: int = 3, removed: Sequence[int] = (2, 5),
        time_out_us: int = 10_000_000) -> bool:
    """Under a launcher, one rank per process (the times are gathered; rank 0 prints)."""
    with world_of(ranks, backend, {"barrier": [list(range(ranks))]}, what="the barrier demo") as world:
        say = print if is_root(world) else (lambda *a, **k: None)
        say(f"DistributeBarrierV2 on the {backend_label(world)}, {ranks} ranks, {rounds} rounds")

        def rank_fn(ctx, elastic_info=None):
            x_ref = np.full((4, 8), ctx.rank, np.float32)
            t0 = time.perf_counter()
            for _ in range(rounds):
                aclnn_py.distribute_barrier_v2(x_ref, group=ctx.group("barrier"), world_size=ranks,
                                               time_out=time_out_us, elastic_info=elastic_info)
            return (time.perf_counter() - t0) / rounds * 1e6

        for title, gone in (("all ranks", []), (f"elastic scale-down, ranks {list(removed)} removed", list(removed))):
            info = make_elastic_info(ranks, gone) if gone else None
            times = world.run(rank_fn, info, ranks=[r for r in range(ranks) if r not in gone])
            if isinstance(world, aclnn_py.ProcessWorld):
                times = [t[world_rank] for world_rank, t in enumerate(world.allgather(times))]
            say(f"-- {title}")
            for r in range(ranks):
                say(f"   rank {r}: " + ("removed (did not call)" if r in gone else f"passed, {times[r]:9.1f} us per barrier"))
    return True
