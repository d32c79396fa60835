"""Printing a scenario's per-rank results."""
from __future__ import annotations

import numpy as np

from .scenario import Outcome, is_root


def backend_label(world) -> str:
    if world.backend != "device":
        return "numpy reference backend"
    from aclnn_py.runtime.library import get_library
    return "aclnn_py simulator (not hardware)" if get_library().is_simulator else "device (CANN)"


def print_outcome(out: Outcome, world) -> bool:
    """One line per rank: rows received, a peek at the result, and bit-exactness vs the reference (printed by
    rank 0 only of a ProcessWorld: every process has every rank's checks)."""
    if not is_root(world):
        return out.ok
    sc = out.scenario
    print(f"{sc.name} on the {backend_label(world)}: ep={sc.ep_world_size} tp={sc.tp_world_size} BS={sc.bs} "
          f"H={sc.h} K={sc.k} M={sc.moe_expert_num}")
    for g, (got, checks) in enumerate(zip(out.got, out.checks)):
        if checks is None:
            print(f"  rank {g}: removed by elastic scale-down (did not call)")
            continue
        rows = int(np.asarray(got["dispatch.expert_token_nums"]).sum()) if sc.expert_token_nums_type == 1 else \
            int(np.asarray(got["dispatch.expert_token_nums"])[-1])
        peek = np.asarray(got.get("combine.x", got.get("peek.combine.x"))).reshape(-1)[:3].astype(np.float32)
        bad = [c for c in checks if not c["ok"]]
        verdict = "bit-exact vs reference" if not bad else "MISMATCH " + ", ".join(c["name"] for c in bad)
        extra = ""
        if "combine.rstd" in got:   # (Bs,1,1) fp32: always small enough to be kept
            r = np.asarray(got["combine.rstd"]).reshape(-1)
            extra = f", rstd in [{r.min():.4f}, {r.max():.4f}]"
        print(f"  rank {g}: received {rows:4d} rows{extra}, x[:3]={peek}  {verdict}  "
              f"(dispatch {got['time.dispatch'] * 1e3:.1f} ms, combine {got['time.combine'] * 1e3:.1f} ms)")
    print(f"  => {'OK' if out.ok else 'FAILED: ' + '; '.join(out.failures()[:5])}")
    return out.ok
