"""``python -m aclnn_py smoke``: each MoE op on every visible device at real sizes, checked against the reference.

Runs a fixed set of scenarios (H 7168, BS up to 512, EP up to the device count, the features users
rely on) through the per-rank API, computes the same with the world-level numpy reference, and
prints one row per op and scenario: sizes and features, worst abs and ulp error, pass/fail, time.
On the simulator and the reference backend every output must match bit for bit; on hardware the
combine outputs may differ by ``ulp_tolerance`` ulps (the reduction order and vector sqrt are not
documented bit for bit).

A scenario that raises becomes FAIL rows carrying its error; the table and a summary line are always
printed, and the caller (the CLI) exits non-zero when any row failed.

Under a launcher (``mpiexec -n N``, ``srun``, ``torchrun --nproc-per-node N``) each process is one rank: the
EP size is the number of processes, rank 0 prints the table, and every process returns the same rows (a
rank's failure is named in them), so every process exits non-zero when a row failed.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import IO, List, Optional

from .demos.add_rms_norm import SCALED_DOWN
from .demos.report import backend_label
from .demos.scenario import Outcome, Scenario, run, variant, world_for
from .orchestration.launch import launched
from .profiles import Profile, active_profile
from .validate.limits import EP_MAX, M_MAX

REFERENCE_DEVICES = 16   # the reference backend simulates one A3 node's 16 NPUs
NODE_DEVICES = 16        # ranks as threads: one A3 node at most


class SmokeError(RuntimeError):
    """The smoke suite cannot start (too few devices, no backend)."""


def smoke_scenarios(n_devices: int, quick: bool = False, prof: Optional[Profile] = None) -> List[Scenario]:
    """The smoke set for ``n_devices`` ranks, 2 to 768 (the ops' EP range), on release ``prof`` (default: the one
    in force): EP ``n_devices`` (one scenario at most 4, the scale-down one 8); TP = 2 only where the release has
    TP, the 9.1.0 features (unweighted combine, expand_scales) where it has them. ``quick`` shrinks H and BS for
    CI. 2 experts per rank while that stays within the ops' 1024 MoE experts (EP <= 512), else 1.
    ``HCCL_BUFFSIZE`` must cover the largest scenario (``Scenario.hccl_buffsize_mb``: full size needs 144 MB at
    EP 16, 492 at EP 64; quick 11 at EP 64)."""
    if not 2 <= n_devices <= EP_MAX:
        raise SmokeError(f"the smoke set runs on 2 to {EP_MAX} ranks; got {n_devices}")
    prof = prof if prof is not None else active_profile()
    ep = n_devices
    per_rank = 2 if 2 * ep <= M_MAX else 1
    h = 1024 if quick else 7168
    bs = 16 if quick else 128
    out = [
        Scenario(name=f"dispatch+combine, {per_rank} experts/rank, K=8", ep_world_size=ep, tp_world_size=1, bs=bs,
                 h=h, k=8, moe_expert_num=per_rank * ep, combine="combine", seed=11),
        Scenario(name="quant_mode 2 + smooth scales, AddRmsNorm", ep_world_size=ep, tp_world_size=1, bs=bs, h=h, k=8,
                 moe_expert_num=per_rank * ep, quant_mode=2, smooth_scales=True, seed=12),
        Scenario(name=f"BS {64 if quick else 512}, 1 expert/rank", ep_world_size=min(ep, 4), tp_world_size=1,
                 bs=64 if quick else 512, h=h, k=min(ep, 4), moe_expert_num=min(ep, 4), combine="combine", seed=13),
        Scenario(name="comm_quant_mode 2 (int8 return), 1-D mask", ep_world_size=ep, tp_world_size=1, bs=bs, h=h, k=8,
                 moe_expert_num=per_rank * ep, comm_quant_mode=2, mask="1d", combine="combine", seed=15),
    ]
    if ep >= 4:
        out.append(Scenario(name="shared expert on 2 replica ranks, 2-D mask", ep_world_size=ep, tp_world_size=1,
                            bs=bs, h=h, k=min(8, ep - 2), moe_expert_num=ep - 2, shared_expert_num=1,
                            shared_expert_rank_num=2, mask="2d", combine="combine", seed=14))
        if not prof.on("tp_removed"):
            out.append(Scenario(name="TP=2", ep_world_size=ep // 2, tp_world_size=2, bs=bs, h=h, k=min(8, ep // 2),
                                moe_expert_num=ep // 2, combine="combine", seed=16))
    if prof.on("expert_scales_optional"):
        out.append(Scenario(name="expand_scales, unweighted combine (9.1.0)", ep_world_size=ep, tp_world_size=0,
                            bs=bs, h=h, k=min(8, per_rank * ep), moe_expert_num=per_rank * ep, dispatch_expert_scales=True,
                            empty_expert_scales=True, combine="combine", seed=17))
    if ep >= 8:
        out.append(SCALED_DOWN if not quick else variant(SCALED_DOWN, h=h))
    return out


@dataclass
class SmokeRow:
    """One op of one scenario: sizes, features, worst errors, verdict, time (seconds)."""

    scenario: str
    config: str
    features: str
    op: str
    max_abs: float
    max_ulp: int
    mismatches: int
    passed: bool
    seconds: float
    error: str = ""


def _ops(sc: Scenario) -> List[str]:
    return ["DispatchV3", "CombineAddRmsNormV2" if sc.combine == "add_rms_norm" else "CombineV3"]


def rows_for(out: Outcome, ulp_tolerance: int) -> List[SmokeRow]:
    """Dispatch must be exact; combine outputs may differ by ``ulp_tolerance`` ulps."""
    sc = out.scenario
    rows = []
    for op, prefix in zip(_ops(sc), ("dispatch.", "combine.")):
        tol = 0 if prefix == "dispatch." else ulp_tolerance
        checks = [c for rank in out.checks if rank for c in rank if c["name"].startswith(prefix)]
        passed = all(c["ok"] or ("why" not in c and c["max_ulp"] <= tol) for c in checks)
        key = "time." + prefix.rstrip(".")
        rows.append(SmokeRow(
            sc.name, sc.shape_label(), ", ".join(sc.features()), op,
            max((c.get("max_abs", 0.0) for c in checks), default=0.0),
            max((c.get("max_ulp", 0) for c in checks), default=0),
            sum(c.get("mismatch", 1) for c in checks), passed,
            max((g[key] for g in out.got if g is not None), default=0.0),
            "" if passed else "; ".join(out.failures()[:3])))
    return rows


def failed_rows(sc: Scenario, error: BaseException, seconds: float) -> List[SmokeRow]:
    """The rows of a scenario that raised: FAIL, carrying the error's first line."""
    text = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return [SmokeRow(sc.name, sc.shape_label(), ", ".join(sc.features()), op, 0.0, 0, 0, False, seconds, text)
            for op in _ops(sc)]


def smoke_devices(backend: str) -> int:
    """How many ranks the smoke set may use on ``backend`` (``device`` or ``reference``)."""
    if backend == "reference":
        return REFERENCE_DEVICES
    from .runtime.device import device_count
    return device_count()


def run_smoke(backend: Optional[str] = "device", quick: bool = False, ulp_tolerance: Optional[int] = None,
              print_table: bool = True, json_path: Optional[str] = None, n_devices: Optional[int] = None,
              stream: Optional[IO[str]] = None) -> List[SmokeRow]:
    """Run the smoke set; returns the table rows (every scenario has rows, failed or not).

    ``backend``: ``device``, ``reference`` or ``auto`` (``None``: ``ACLNN_PY_BACKEND``, else auto).
    ``ulp_tolerance``: allowed ulps on combine outputs (default 0 on the simulator and the reference,
    1 on hardware). ``json_path``: also write the rows and the run's metadata there. ``n_devices``:
    use at most this many ranks (default: every visible device, at most one node's 16; 16 on the reference
    backend). Under a launcher (:func:`~aclnn_py.launch.launched`) the ranks are the job's processes, and only
    rank 0 prints and writes ``json_path``. Raises :class:`SmokeError` when fewer than 2 ranks are available.
    """
    from .orchestration.backend import resolve_backend
    out = stream if stream is not None else sys.stdout
    job = launched()
    if job is not None:      # every device of this host that the job's processes here use
        backend = resolve_backend(backend, min_devices=max(job.local_size or job.size, 2))
        n, scope = job.size, f"{job.size} processes ({job.launcher}), one rank each"
    else:
        backend = resolve_backend(backend, min_devices=2)
        available = smoke_devices(backend)
        n = min(n_devices, available) if n_devices else available
        scope = f"{n} devices visible"
        n = min(n, NODE_DEVICES)
    if n < 2:
        raise SmokeError(f"the smoke suite needs at least 2 devices; the {backend} backend has {n}")
    scenarios = smoke_scenarios(n, quick, active_profile(load=backend == "device"))
    rows: List[SmokeRow] = []
    label = ""
    reports = print_table and (job is None or job.rank == 0)
    start = time.perf_counter()
    for i, sc in enumerate(scenarios, 1):
        if reports:
            print(f"[{i}/{len(scenarios)}] {time.perf_counter() - start:6.1f} s  {sc.name} "
                  f"({sc.shape_label()}; {', '.join(sc.features())}) ...", file=out, flush=True)
        t0 = time.perf_counter()
        try:
            with world_for(sc, backend) as world:
                label = label or backend_label(world)
                tol = ulp_tolerance if ulp_tolerance is not None else (
                    0 if "simulator" in label or "reference" in label else 1)
                new = rows_for(run(sc, world), tol)
        except Exception as e:   # a scenario that raises is a FAIL row, never the end of the table
            new = failed_rows(sc, e, time.perf_counter() - t0)
        rows += new
        if reports:
            verdict = "PASS" if all(r.passed for r in new) else "FAIL: " + (new[0].error or new[-1].error)
            print(f"      done in {time.perf_counter() - t0:.1f} s  {verdict}", file=out, flush=True)
    label = label or f"{backend} backend"
    if reports:
        print(format_table(rows, label, scope), file=out, flush=True)
    if json_path and (job is None or job.rank == 0):
        write_json(json_path, rows, label, n, quick, time.perf_counter() - start)
    return rows


def write_json(path: str, rows: List[SmokeRow], label: str, n: int, quick: bool, seconds: float) -> None:
    """The run as JSON: ``{"backend", "devices", "quick", "passed", "seconds", "rows": [...]}``."""
    doc = {"backend": label, "devices": n, "quick": quick, "passed": all(r.passed for r in rows),
           "seconds": round(seconds, 3), "rows": [asdict(r) for r in rows]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


def format_table(rows: List[SmokeRow], label: str, scope: object) -> str:
    """The table, one line per row (failed rows are followed by their error), and a summary line. ``scope``: the
    number of devices visible, or a text saying where the ranks ran."""
    where = f"{scope} devices visible" if isinstance(scope, int) else scope
    lines = [f"smoke suite on the {label}, {where}",
             f"{'scenario':44s} {'sizes':32s} {'op':20s} {'max abs':>9s} {'max ulp':>7s} {'diffs':>7s} "
             f"{'result':>6s} {'time ms':>9s}"]
    for i, r in enumerate(rows):
        lines.append(f"{r.scenario[:44]:44s} {r.config[:32]:32s} {r.op:20s} {r.max_abs:9.3g} {r.max_ulp:7d} "
                     f"{r.mismatches:7d} {'PASS' if r.passed else 'FAIL':>6s} {r.seconds * 1e3:9.1f}")
        if i + 1 == len(rows) or rows[i + 1].scenario != r.scenario:
            own = [x for x in rows if x.scenario == r.scenario]
            lines.append(f"    features: {r.features}")
            lines += [f"    error: {e}" for e in dict.fromkeys(x.error for x in own if x.error)]
    ok = all(r.passed for r in rows)
    lines.append(f"smoke: {'PASS' if ok else 'FAIL'} ({sum(r.passed for r in rows)}/{len(rows)} rows passed)")
    return "\n".join(lines)
