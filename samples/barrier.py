"""DistributeBarrierV2 on 8 ranks through aclnn_py.World, then again after an elastic scale-down.

Runs on the device backend (a CANN install or the aclnn_py simulator) when one is found, else on
the numpy reference backend; ``--backend`` or ``ACLNN_PY_BACKEND`` overrides.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import aclnn_py
from aclnn_py.layout import make_elastic_info


def run(ranks: int, rounds: int, backend: str | None, time_out_us: int) -> int:
    with aclnn_py.World(ranks, backend=backend, groups={"barrier": [list(range(ranks))]}) as world:
        print(f"{world.backend} backend, {ranks} ranks, {rounds} barrier rounds"
              + (" (aclnn_py simulator)" if world.backend == "device" and _is_sim() else ""))

        def rank_fn(ctx, elastic_info=None):
            x_ref = np.full((4, 8), ctx.rank, np.float32)
            t0 = time.perf_counter()
            for _ in range(rounds):
                out = aclnn_py.distribute_barrier_v2(x_ref, group=ctx.group("barrier"), world_size=ranks,
                                                     time_out=time_out_us, elastic_info=elastic_info)
                assert out is x_ref
            return (time.perf_counter() - t0) / rounds * 1e6

        for title, removed in (("all ranks", []), ("elastic scale-down, ranks 2 and 5 removed", [2, 5])):
            info = make_elastic_info(ranks, removed) if removed else None
            survivors = [r for r in range(ranks) if r not in removed]
            times = world.run(rank_fn, ranks=survivors, elastic_info=info)
            print(f"-- {title}")
            for r in range(ranks):
                state = "removed (did not call)" if r in removed else f"passed, {times[r]:9.1f} us per barrier"
                print(f"   rank {r}: {state}")
    print("barrier sample: OK")
    return 0


def _is_sim() -> bool:
    from aclnn_py.runtime.library import get_library
    return get_library().is_simulator


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ranks", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", choices=["auto", "device", "reference"], default=None)
    p.add_argument("--time-out-us", type=int, default=10_000_000)
    a = p.parse_args()
    return run(a.ranks, a.rounds, a.backend, a.time_out_us)


if __name__ == "__main__":
    raise SystemExit(main())
