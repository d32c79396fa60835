"""``python -m aclnn_py smoke``: each MoE op on every visible device at real sizes, checked against the reference.

Runs a fixed set of scenarios (H 7168, BS up to 512, EP up to the device count, the features users
rely on) through the per-rank API on the device backend, computes the same with the numpy
reference, and prints one row per op and scenario: worst abs and ulp error, pass/fail, time.
On the simulator every output must match bit for bit; on hardware the combine outputs may differ
by ``ulp_tolerance`` ulps (the reduction order and vector sqrt are not documented bit for bit).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional

from .demos.add_rms_norm import SCALED_DOWN
from .demos.report import backend_label
from .demos.scenario import Outcome, Scenario, run, world_for


def smoke_scenarios(n_devices: int, quick: bool = False) -> List[Scenario]:
    """The smoke set for ``n_devices`` (needs >= 2). ``quick`` shrinks H and BS for CI."""
    ep = min(n_devices, 16)
    h = 1024 if quick else 7168
    bs = 16 if quick else 128
    out = [
        Scenario(name="dispatch+combine, 2 experts/rank, K=8", ep_world_size=ep, tp_world_size=1, bs=bs, h=h, k=8,
                 moe_expert_num=2 * ep, combine="combine", seed=11),
        Scenario(name="quant_mode 2 + smooth scales, AddRmsNorm", ep_world_size=ep, tp_world_size=1, bs=bs, h=h, k=8,
                 moe_expert_num=2 * ep, quant_mode=2, smooth_scales=True, seed=12),
        Scenario(name=f"BS {64 if quick else 512}, 1 expert/rank", ep_world_size=min(ep, 4), tp_world_size=1,
                 bs=64 if quick else 512, h=h, k=min(ep, 4), moe_expert_num=min(ep, 4), combine="combine", seed=13),
        Scenario(name="comm_quant_mode 2 (int8 return), 1-D mask", ep_world_size=ep, tp_world_size=1, bs=bs, h=h, k=8,
                 moe_expert_num=2 * ep, comm_quant_mode=2, mask="1d", combine="combine", seed=15),
    ]
    if ep >= 4:
        out.append(Scenario(name="shared expert on 2 replica ranks, 2-D mask", ep_world_size=ep, tp_world_size=1,
                            bs=bs, h=h, k=min(8, ep - 2), moe_expert_num=ep - 2, shared_expert_num=1,
                            shared_expert_rank_num=2, mask="2d", combine="combine", seed=14))
        out.append(Scenario(name="TP=2", ep_world_size=ep // 2, tp_world_size=2, bs=bs, h=h, k=min(8, ep // 2),
                            moe_expert_num=ep // 2, combine="combine", seed=16))
    if ep >= 8:
        out.append(SCALED_DOWN if not quick else Scenario(**{**SCALED_DOWN.__dict__, "h": h}))
    return out


@dataclass
class SmokeRow:
    scenario: str
    op: str
    max_abs: float
    max_ulp: int
    mismatches: int
    passed: bool
    seconds: float


def rows_for(out: Outcome, ulp_tolerance: int) -> List[SmokeRow]:
    """Dispatch must be exact; combine outputs may differ by ``ulp_tolerance`` ulps."""
    rows = []
    for op, prefix, tol in (("DispatchV3", "dispatch.", 0),
                            ("CombineAddRmsNormV2" if out.scenario.combine == "add_rms_norm" else "CombineV3",
                             "combine.", ulp_tolerance)):
        checks = [c for rank in out.checks if rank for c in rank if c["name"].startswith(prefix)]
        worst_ulp = max((c.get("max_ulp", 0) for c in checks), default=0)
        mism = sum(c.get("mismatch", 1) for c in checks)
        passed = all(c["ok"] or ("max_ulp" in c and c["max_ulp"] <= tol and "why" not in c) for c in checks)
        if prefix == "dispatch.":
            passed = all(c["ok"] for c in checks)
        key = "time." + prefix.rstrip(".")
        secs = max((g[key] for g in out.got if g is not None), default=0.0)
        rows.append(SmokeRow(out.scenario.name, op, max((c.get("max_abs", 0.0) for c in checks), default=0.0),
                             worst_ulp, mism, passed, secs))
    return rows


def run_smoke(backend: Optional[str] = "device", quick: bool = False, ulp_tolerance: Optional[int] = None,
              print_table: bool = True) -> List[SmokeRow]:
    """Run the smoke set on every visible device; returns the table rows."""
    from .runtime.device import device_count
    n = device_count() if backend != "reference" else 8
    if n < 2:
        raise RuntimeError(f"the smoke suite needs at least 2 devices; the runtime reports {n}")
    rows: List[SmokeRow] = []
    label = None
    for sc in smoke_scenarios(n, quick):
        t0 = time.perf_counter()
        with world_for(sc, backend) as world:
            label = label or backend_label(world)
            tol = ulp_tolerance if ulp_tolerance is not None else (0 if "simulator" in label or "reference" in label else 1)
            rows += rows_for(run(sc, world), tol)
        if print_table:
            print(f"  ran '{sc.name}' in {time.perf_counter() - t0:.1f} s", flush=True)
    if print_table:
        print(format_table(rows, label or "", n))
    return rows


def format_table(rows: List[SmokeRow], label: str, n: int) -> str:
    lines = [f"smoke suite on the {label}, {n} devices visible",
             f"{'scenario':46s} {'op':22s} {'max abs':>10s} {'max ulp':>8s} {'diffs':>7s} {'result':>6s} {'time ms':>9s}"]
    for r in rows:
        lines.append(f"{r.scenario[:46]:46s} {r.op:22s} {r.max_abs:10.3g} {r.max_ulp:8d} {r.mismatches:7d} "
                     f"{'PASS' if r.passed else 'FAIL':>6s} {r.seconds * 1e3:9.1f}")
    ok = all(r.passed for r in rows)
    lines.append(f"smoke: {'PASS' if ok else 'FAIL'} ({sum(r.passed for r in rows)}/{len(rows)})")
    return "\n".join(lines)
