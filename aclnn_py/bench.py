"""``python -m aclnn_py bench``: DispatchV3 / CombineV3 latency and logical bandwidth on a pod (or the simulator).

What runs. EP ranks (default: every visible device; under mpiexec / srun / torchrun one rank per process, as
``smoke`` does), each with BS tokens of hidden size H routed to K distinct experts drawn at random
(:func:`aclnn_py.demos.common.distinct_ids`). Experts: DeepSeek-V3's 256 routed experts spread evenly over
the EP ranks (256 / EP per rank) when EP divides 256, else the smallest multiple of EP above 256 (one expert
per rank from EP 256 up); no shared expert. Inputs are device tensors uploaded once. Three operations, each
timed separately:

* ``DispatchV3 bf16``: quant_mode 0, bf16 tokens;
* ``DispatchV3 int8``: quant_mode 2, dynamic per-token quantisation (no smooth scales): int8 rows and one fp32
  scale per row;
* ``CombineV3 bf16``: the bf16 rows of one untimed bf16 dispatch sent back and summed with the routing weights.

Each call is the default one (fresh outputs, allocated and zero-filled by the call, synchronised before it
returns); ``out=True`` (``--out``) times calls writing preallocated outputs instead.

What is timed. Per operation: ``warmup`` untimed iterations, then ``iters`` timed ones. Every iteration starts
with a host barrier of the EP ranks (the World's rendezvous), then each rank times its one call with
``time.perf_counter`` from entry to return, so the time includes the binding's host work, the two-phase
aclnn call and the stream synchronisation (DeepEP's figures are kernel times from a profiler). Per iteration
the slowest rank's time counts, as DeepEP's benchmarks report; the table gives the median and the 99th
percentile (numpy's linear interpolation: with fewer than 100 iterations it lies between the two largest) in
microseconds.

What is counted. Logical bandwidth as DeepEP's low-latency test counts it (deepseek-ai/DeepEP
``tests/test_low_latency.py``, under ``tests/legacy/`` in newer trees, ``# Calculate bandwidth``: for each of
the rank's tokens, its selected experts -- ``topk_idx != -1`` -- times the bytes of one token, summed, divided
by the rank's time): **per
rank**, ``bytes = selected (token, expert) pairs of the rank x bytes per pair``, with ``BS x K`` pairs per rank
here (every token selects K distinct experts, no mask), bytes per pair ``2H`` for bf16 rows (dispatch and
combine) and ``H + 4`` for int8 rows (the row and its fp32 scale); GB/s = bytes / median latency / 1e9. The
world moves EP times as much. DeepEP counts an FP8 row as ``H + H/128*4 + 16`` (per-128-channel scales and a
16-byte header) and DeepEP-Ascend published its INT8 dispatch figures with that count (7408 B per row at
H 7168, 3.3 % above the 7172 counted here), so compare latencies with the anchors, not GB/s.

Anchors (on hardware only): DeepEP-Ascend's low-latency kernels on an A3 SuperPoD (sgl-project/sgl-kernel-npu
README, "Low-Latency Kernels with Pure HCCS": 128 tokens per rank, H 7168, top-8, INT8 dispatch, BF16 combine),
printed beside ``DispatchV3 int8`` and ``CombineV3 bf16``: :data:`ANCHORS`.

On the simulator every figure is labelled: it measures the host emulation, not an NPU.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

DEEPSEEK_ROUTED_EXPERTS = 256
ANCHOR_SIZES = dict(bs=128, h=7168, k=8)                   # the sizes DeepEP-Ascend published figures for
FULL = dict(**ANCHOR_SIZES, iters=50, warmup=5)            # the pod configuration
QUICK = dict(bs=16, h=7168, k=8, iters=10, warmup=2)       # CI-sized: well under a minute on the simulator
QUICK_EP = 4
SCALE_BYTES = 4                                            # the fp32 per-token scale of an int8 row
GB = 1e9
SIMULATOR_LABEL = "simulator (not hardware): figures measure the host emulation, not an NPU"

# DeepEP-Ascend's published figures (ANCHOR_SOURCE): op -> EP -> (latency us, bandwidth GB/s as published,
# counted DeepEP's way).
ANCHORS: Dict[str, Dict[int, Tuple[float, float]]] = {
    "DispatchV3 int8": {8: (132.0, 58.0), 16: (139.0, 55.0), 32: (153.0, 49.0)},
    "CombineV3 bf16": {8: (126.0, 116.0), 16: (135.0, 109.0), 32: (151.0, 97.0)},
}
ANCHOR_SOURCE = ("DeepEP-Ascend low-latency kernels on an A3 SuperPoD (sgl-project/sgl-kernel-npu README): "
                 f"{ANCHOR_SIZES['bs']} tokens, H {ANCHOR_SIZES['h']}, top-{ANCHOR_SIZES['k']}, INT8 dispatch, "
                 "BF16 combine")


class BenchError(RuntimeError):
    """The benchmark cannot run here (fewer than 2 ranks, matplotlib missing for ``--plot``)."""


class BenchOptionError(BenchError):
    """A bench option (or its combination with this machine) is invalid: a usage error."""


@dataclass(frozen=True)
class BenchOp:
    """One timed operation: its name in the table, DispatchV3's quant_mode (None: CombineV3), its row dtype."""

    name: str
    quant_mode: Optional[int]
    row: str                    # "bf16" or "int8"

    def bytes_per_pair(self, h: int) -> int:
        """Bytes DeepEP counts for one selected (token, expert) pair: a bf16 row, or an int8 row and its scale."""
        return 2 * h if self.row == "bf16" else h + SCALE_BYTES


OPS = (BenchOp("DispatchV3 bf16", 0, "bf16"), BenchOp("DispatchV3 int8", 2, "int8"),
       BenchOp("CombineV3 bf16", None, "bf16"))


@dataclass(frozen=True)
class BenchConfig:
    """Sizes and iteration counts of one run (tokens ``bs`` per rank, hidden ``h``, top-``k``)."""

    ep: int
    bs: int
    h: int
    k: int
    experts: int
    iters: int
    warmup: int
    out: bool = False
    quick: bool = False
    seed: int = 1000

    @property
    def local_experts(self) -> int:
        return self.experts // self.ep

    @property
    def pairs_per_rank(self) -> int:
        """Selected (token, expert) pairs each rank sends: every token selects K distinct experts."""
        return self.bs * self.k

    def sizes(self) -> str:
        """``EP 4, BS 16 tokens per rank, H 7168, K 8, 256 routed experts (64 per rank)``."""
        return (f"EP {self.ep}, BS {self.bs} tokens per rank, H {self.h}, K {self.k}, {self.experts} routed experts "
                f"({self.local_experts} per rank)")

    def describe(self) -> str:
        outputs = "out= preallocated outputs" if self.out else "fresh outputs per call (the default call)"
        return (f"{self.sizes()}, {outputs}; {self.iters} timed iteration{'' if self.iters == 1 else 's'} "
                f"after {self.warmup} warm-up{'' if self.warmup == 1 else 's'}"
                f"{' (--quick)' if self.quick else ''}")


def default_experts(ep: int) -> int:
    """DeepSeek-V3's 256 routed experts spread over ``ep`` ranks, else the smallest multiple of ``ep`` above."""
    return -(-DEEPSEEK_ROUTED_EXPERTS // ep) * ep


# ---- options ---------------------------------------------------------------------------------------------
def make_config(ep: int, quick: bool = False, bs: Optional[int] = None, h: Optional[int] = None,
                k: Optional[int] = None, experts: Optional[int] = None, iters: Optional[int] = None,
                warmup: Optional[int] = None, out: bool = False) -> BenchConfig:
    """The run's configuration: the options given, else the ``--quick`` or full-size defaults; raises
    :class:`BenchOptionError` for values bench cannot use (the operators' own rules are checked by
    :func:`check_operator_rules`)."""
    from .validate.limits import EP_MAX, EP_MIN
    _require(EP_MIN <= ep <= EP_MAX, "--ep", f"in [{EP_MIN}, {EP_MAX}] (the ops' EP range)", ep)
    base = QUICK if quick else FULL
    given = dict(bs=bs, h=h, k=k, iters=iters, warmup=warmup)
    sizes = {name: base[name] if value is None else value for name, value in given.items()}
    cfg = BenchConfig(ep=ep, experts=default_experts(ep) if experts is None else experts, out=out, quick=quick,
                      **sizes)
    _check_sizes(cfg)
    return cfg


def _require(ok: bool, option: str, rule: str, value: Any) -> None:
    if not ok:
        raise BenchOptionError(f"{option} must be {rule}; got {value}")


def _check_sizes(cfg: BenchConfig) -> None:
    for option, value in (("--bs", cfg.bs), ("--hidden", cfg.h), ("--topk", cfg.k), ("--iters", cfg.iters)):
        _require(value >= 1, option, ">= 1", value)
    _require(cfg.warmup >= 0, "--warmup", ">= 0", cfg.warmup)
    _require(cfg.experts >= cfg.ep and cfg.experts % cfg.ep == 0, "--experts",
             f"a multiple of the EP size {cfg.ep} (the same number of experts on every rank)", cfg.experts)
    _require(cfg.k <= cfg.experts, "--topk", f"<= the {cfg.experts} experts (K distinct experts per token)", cfg.k)


def check_operator_rules(cfg: BenchConfig) -> None:
    """Run the operators' documented rules (HCCL_BUFFSIZE included) on rank 0's first calls, on the host,
    before any device work: a configuration the ops refuse is a usage error naming their rule."""
    from . import validate
    from .errors import AclnnPyError
    x, ids, _ = rank_inputs(np.random.default_rng(cfg.seed), cfg)
    for op in OPS[:2]:
        try:
            validate.moe_distribute_dispatch_v3(x, ids, group_ep="bench", ep_world_size=cfg.ep, ep_rank_id=0,
                                                moe_expert_num=cfg.experts, quant_mode=op.quant_mode)
        except AclnnPyError as e:
            raise BenchOptionError(f"{cfg.sizes()}: {op.name} refuses it: "
                                   f"{str(e).splitlines()[0]}") from None


# ---- one rank ----------------------------------------------------------------------------------------------
def rank_inputs(rng: np.random.Generator, cfg: BenchConfig) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One rank's host inputs: x (BS, H) bf16, expert_ids (BS, K) int32 (K distinct experts per token),
    routing weights (BS, K) fp32."""
    from .demos.common import distinct_ids, random_bf16, routing_weights
    return (random_bf16(rng, (cfg.bs, cfg.h)), distinct_ids(rng, cfg.bs, cfg.k, np.arange(cfg.experts)),
            routing_weights(rng, cfg.bs, cfg.k))


def host_barrier(ctx, n: int) -> None:
    """Ranks ``0..n-1`` of the World all arrive before any leaves (the World's host rendezvous; threads or
    processes)."""
    ctx.world.rendezvous.collective("bench barrier", "bench", ctx.rank, list(range(n)), None,
                                    lambda payloads: dict.fromkeys(payloads), ctx.world.timeout_s)


def time_calls(ctx, call: Callable[[], Any], cfg: BenchConfig, fresh: bool) -> List[float]:
    """Seconds of each timed call of this rank (after ``cfg.warmup`` untimed ones), a host barrier before each;
    fresh outputs are freed after the clock stops."""
    seconds = []
    for i in range(cfg.warmup + cfg.iters):
        host_barrier(ctx, cfg.ep)
        t0 = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - t0
        if fresh:
            for t in tensors(result):
                t.free()
        if i >= cfg.warmup:
            seconds.append(elapsed)
    return seconds


def op_calls(x, ids, weights, feed, common: Dict[str, Any]) -> Dict[str, Callable[..., Any]]:
    """The call each of :data:`OPS` times, by name, on one rank's device inputs (``feed``: the outputs of a bf16
    dispatch, combine's inputs); each takes ``out=`` preallocated outputs."""
    import aclnn_py

    def dispatch(quant_mode: int) -> Callable[..., Any]:
        return lambda **out: aclnn_py.moe_distribute_dispatch_v3(x, ids, quant_mode=quant_mode, **common, **out)

    def combine(**out: Any) -> Any:
        return aclnn_py.moe_distribute_combine_v3(feed.expand_x, ids, feed.assist_info_for_combine,
                                                  feed.ep_recv_counts, weights, tp_send_counts=feed.tp_recv_counts,
                                                  **common, **out)
    return {op.name: combine if op.quant_mode is None else dispatch(op.quant_mode) for op in OPS}


def tensors(result: Any) -> tuple:
    """A call's output tensors (a NamedTuple of them, or one)."""
    return tuple(result) if isinstance(result, tuple) else (result,)


def preallocating(calls: Dict[str, Callable[..., Any]], held: List[Any]) -> Dict[str, Callable[[], Any]]:
    """``calls`` writing into outputs made once by a first call each (added to ``held``, freed by the caller)."""
    out = {}
    for name, call in calls.items():
        outputs = call()
        held.extend(tensors(outputs))
        out[name] = functools.partial(call, out=outputs)
    return out


def rank_bench(ctx, cfg: BenchConfig) -> Dict[str, List[float]]:
    """One rank's timings, seconds per timed iteration, by op name (:data:`OPS`)."""
    import aclnn_py
    from .runtime.tensor import DeviceTensor
    inputs = rank_inputs(np.random.default_rng(cfg.seed + ctx.rank), cfg)
    held: List[Any] = []
    try:
        for a in inputs:
            held.append(DeviceTensor.from_numpy(a))
        x, ids, weights = held
        common = dict(group_ep=ctx.group("ep"), ep_world_size=cfg.ep, ep_rank_id=ctx.ep_rank,
                      moe_expert_num=cfg.experts)
        feed = aclnn_py.moe_distribute_dispatch_v3(x, ids, **common)
        held.extend(feed)
        calls = op_calls(x, ids, weights, feed, common)
        if cfg.out:
            calls = preallocating(calls, held)
        return {name: time_calls(ctx, call, cfg, fresh=not cfg.out) for name, call in calls.items()}
    finally:
        for t in held:
            t.free()


# ---- results -------------------------------------------------------------------------------------------------
@dataclass
class OpResult:
    """One operation's figures: latencies in us (slowest rank per iteration), DeepEP's per-rank byte count and
    bandwidth, the published anchor when on hardware."""

    op: str
    quant_mode: Optional[int]
    median_us: float
    p99_us: float
    min_us: float
    max_us: float
    pairs_per_rank: int
    bytes_per_pair: int
    bytes_per_rank: int
    bytes_world: int
    gbps_per_rank: float
    anchor: Optional[Dict[str, Any]] = None
    samples_us: List[float] = field(default_factory=list)


def slowest_rank(per_rank: Sequence[Dict[str, List[float]]], name: str) -> np.ndarray:
    """Seconds per iteration of op ``name``: the slowest rank's."""
    return np.max(np.array([r[name] for r in per_rank], dtype=np.float64), axis=0)


def summarise(op: BenchOp, seconds: np.ndarray, cfg: BenchConfig, hardware: bool) -> OpResult:
    """The figures of ``op`` from the slowest rank's seconds per iteration."""
    us = seconds * 1e6
    median = float(np.median(us))
    per_pair = op.bytes_per_pair(cfg.h)
    per_rank = cfg.pairs_per_rank * per_pair
    return OpResult(op=op.name, quant_mode=op.quant_mode, median_us=median, p99_us=float(np.percentile(us, 99)),
                    min_us=float(us.min()), max_us=float(us.max()), pairs_per_rank=cfg.pairs_per_rank,
                    bytes_per_pair=per_pair, bytes_per_rank=per_rank, bytes_world=per_rank * cfg.ep,
                    gbps_per_rank=per_rank / (median * 1e-6) / GB,
                    anchor=anchor_for(op.name, cfg.ep) if hardware else None, samples_us=[float(v) for v in us])


def anchor_for(op: str, ep: int) -> Optional[Dict[str, Any]]:
    """The published anchor of ``op`` at ``ep``, else at the nearest EP published (``exact`` False); None when
    none was published for ``op``."""
    table = ANCHORS.get(op)
    if not table:
        return None
    nearest = min(table, key=lambda e: (abs(e - ep), e))
    latency, gbps = table[nearest]
    return {"ep": nearest, "latency_us": latency, "gbps": gbps, "exact": nearest == ep}


def anchor_text(anchor: Optional[Dict[str, Any]]) -> str:
    if anchor is None:
        return "-"
    which = "anchor for EP" if anchor["exact"] else "nearest anchor: EP"
    return f"{anchor['latency_us']:.0f} us ({which} {anchor['ep']})"


# ---- the report ----------------------------------------------------------------------------------------------
@dataclass
class BenchReport:
    """A run: its configuration, where it ran, and one :class:`OpResult` per operation."""

    config: BenchConfig
    backend: str                 # the backend label (the simulator's says it is not hardware)
    hardware: bool
    ranks: str                   # how the ranks ran (threads of one process, or processes of a launcher)
    cann_release: str
    precheck: bool
    results: List[OpResult]
    seconds: float = 0.0

    def to_json(self) -> Dict[str, Any]:
        from .version import __version__
        return {"command": "bench", "aclnn_py": __version__, "backend": self.backend, "hardware": self.hardware,
                "cann_release": self.cann_release, "ranks": self.ranks, "precheck": self.precheck,
                "seconds": round(self.seconds, 3), "config": asdict(self.config),
                "counting": {"bandwidth": "per rank: selected (token, expert) pairs of the rank x bytes per pair / "
                                          "median latency (DeepEP tests/test_low_latency.py)",
                             "bytes_per_pair": {"bf16": "2*H", "int8": f"H + {SCALE_BYTES} (fp32 scale)"},
                             "gb": GB, "latency": "host wall time of one call, slowest rank per iteration"},
                "anchors": {"source": ANCHOR_SOURCE, "shown": self.hardware,
                            "table": {op: {str(ep): {"latency_us": v[0], "gbps": v[1]} for ep, v in by_ep.items()}
                                      for op, by_ep in ANCHORS.items()}},
                "results": [asdict(r) for r in self.results]}


def where_label(report: BenchReport) -> str:
    """Where the run ran, as the table's first line says it (the simulator's label says what its figures measure)."""
    return f"the {report.backend}" if report.hardware else f"the aclnn_py {SIMULATOR_LABEL}"


def format_table(report: BenchReport) -> str:
    """The table: one row per operation, then what was measured and counted."""
    cfg = report.config
    lines = [f"bench: DispatchV3 / CombineV3 on {where_label(report)}",
             f"  {cfg.describe()}",
             f"  ranks: {report.ranks}; CANN {report.cann_release}; cross-rank pre-check "
             f"{'on (ACLNN_PY_PRECHECK=0 turns it off)' if report.precheck else 'off'}",
             f"{'op':16s} {'median us':>10s} {'p99 us':>10s} {'GB/s per rank':>14s} {'bytes per rank':>15s}  "
             f"{'A3 anchor (DeepEP-Ascend)' if report.hardware else ''}".rstrip()]
    for r in report.results:
        anchor = f"  {anchor_text(r.anchor)}" if report.hardware else ""
        lines.append(f"{r.op:16s} {r.median_us:10.1f} {r.p99_us:10.1f} {r.gbps_per_rank:14.3g} "
                     f"{r.bytes_per_rank:15d}{anchor}")
    lines += [f"latency: host wall time of one call (entry to return, synchronised), slowest of the {cfg.ep} ranks "
              f"per iteration; median and p99 over {cfg.iters} iterations",
              f"bandwidth (DeepEP's count, per rank): {cfg.bs} tokens x {cfg.k} experts = {cfg.pairs_per_rank} pairs "
              f"x bytes per pair (bf16 2H = {2 * cfg.h}, int8 H + {SCALE_BYTES} = {cfg.h + SCALE_BYTES}) / median; "
              f"the world moves {cfg.ep}x that"]
    if report.hardware:
        same = all(getattr(cfg, key) == value for key, value in ANCHOR_SIZES.items())
        caveat = "" if same else " (not this run's sizes)"
        lines.append(f"anchors: {ANCHOR_SOURCE}{caveat}; their GB/s count an INT8 row as H + H/128*4 + 16 bytes")
    else:
        lines.append("anchors (A3 hardware) are shown on hardware only: these figures are not an NPU's")
    return "\n".join(lines)


def write_json(path: str, report: BenchReport) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report.to_json(), fh, indent=2)
        fh.write("\n")


def pyplot():
    """matplotlib's pyplot on the Agg backend; :class:`BenchError` naming the extra when it is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise BenchError(f"--plot needs matplotlib ({e}): pip install 'aclnn_py[plot]'") from None
    return plt


def write_plot(path: str, report: BenchReport) -> None:
    """A PNG: median latency per operation (bars, p99 as whiskers), the A3 anchors beside them on hardware."""
    plt = pyplot()
    names = [r.op for r in report.results]
    med = np.array([r.median_us for r in report.results])
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = np.arange(len(names))
    width = 0.38 if report.hardware else 0.6
    ax.bar(xs, med, width, yerr=[np.zeros_like(med), [r.p99_us - r.median_us for r in report.results]],
           capsize=4, label="median (whisker: p99)")
    if report.hardware:
        anchors = [r.anchor["latency_us"] if r.anchor else np.nan for r in report.results]
        bars = ax.bar(xs + width, anchors, width, label="A3 anchor (DeepEP-Ascend), at the EP shown")
        ax.bar_label(bars, [f"EP {r.anchor['ep']}" if r.anchor else "" for r in report.results], fontsize=8)
    ax.set_xticks(xs + (width / 2 if report.hardware else 0), names)
    ax.set_ylabel("latency (us)")
    cfg = report.config
    ax.set_title(f"{cfg.sizes()}\non {where_label(report)}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


# ---- the run ---------------------------------------------------------------------------------------------------
def device_backend(requested: Optional[str], min_devices: int) -> None:
    """Refuse the reference backend (a usage error) and a missing device (a failure), before any device work."""
    from .errors import BackendUnavailableError
    from .orchestration.backend import choose_backend, requested_backend
    if requested_backend(requested) == "reference":
        raise BenchOptionError("bench measures the device backend (CANN or the aclnn_py simulator); the numpy "
                               "reference backend has no latency to measure -- use --backend device or auto")
    choice = choose_backend(requested, min_devices)
    if choice.name != "device":
        raise BackendUnavailableError(f"bench needs a device (CANN or the aclnn_py simulator): {choice.why}; "
                                      f"{choice.remedy}")


def choose_ep(ep: Optional[int], default: int, available: int, what: str) -> int:
    """The EP size: ``ep`` when given (at most ``available``), else ``default``. ``what`` says where
    ``available`` comes from (``16 devices are visible``)."""
    if ep is None:
        if default < 2:
            raise BenchError(f"bench needs at least 2 ranks, but {what}")
        return default
    if ep > available:
        raise BenchOptionError(f"--ep must be <= {available} ({what}); got {ep}")
    return ep


def configure(ep: Optional[int], quick: bool, backend: Optional[str],
              sizes: Dict[str, Any]) -> Tuple[BenchConfig, str]:
    """The run's configuration and how its ranks run: under a launcher one per process (EP: the processes),
    else threads of this process (EP: the visible devices, 4 with ``quick``); the backend checked first."""
    from .orchestration.launch import launched
    job = launched()
    if job is not None:
        device_backend(backend, max(job.local_size or job.size, 2))
        what = f"this {job.launcher} job has {job.size} processes"
        cfg = make_config(choose_ep(ep, job.size, job.size, what), quick, **sizes)
        return cfg, (f"{job.size} processes ({job.launcher}), one rank each" if cfg.ep == job.size else
                     f"the first {cfg.ep} of {job.size} processes ({job.launcher}), one rank each (the others sit out)")
    from .runtime.device import device_count
    device_backend(backend, 1)
    n = device_count()
    what = f"{n} device{'s are' if n != 1 else ' is'} visible"
    cfg = make_config(choose_ep(ep, min(QUICK_EP, n) if quick else n, n, what), quick, **sizes)
    return cfg, f"{cfg.ep} threads of one process ({what}; their Python work shares one GIL)"


def measure(world, cfg: BenchConfig) -> List[Dict[str, List[float]]]:
    """Every EP rank's timings (on every process of a launched job; processes beyond EP sit it out)."""
    from .orchestration.launch import ProcessWorld
    got = world.run(rank_bench, cfg, ranks=list(range(cfg.ep)))
    if isinstance(world, ProcessWorld):
        got = world.allgather(got[world.rank])
    return got[:cfg.ep]


def run_bench(ep: Optional[int] = None, quick: bool = False, backend: Optional[str] = None,
              json_path: Optional[str] = None, plot_path: Optional[str] = None, print_table: bool = True,
              **sizes: Any) -> BenchReport:
    """Measure (see the module docstring); print the table and write ``json_path`` / ``plot_path`` (rank 0 of a
    launched job only). ``sizes``: ``bs``, ``h``, ``k``, ``experts``, ``iters``, ``warmup``, ``out`` of
    :func:`make_config`. Raises :class:`BenchOptionError` for bad options and :class:`BenchError` (or
    :class:`~aclnn_py.errors.BackendUnavailableError`) when it cannot run here, before any device work."""
    from .demos.report import backend_label
    from .demos.scenario import is_root, world_of
    from .orchestration import precheck
    from .orchestration.launch import ep_tp_groups
    from .profiles import active_profile
    from .runtime.library import get_library
    if plot_path:
        pyplot()                            # a missing extra fails now, not after the measurement
    cfg, ranks = configure(ep, quick, backend, sizes)
    check_operator_rules(cfg)
    start = time.perf_counter()
    with world_of(cfg.ep, "device", ep_tp_groups(cfg.ep), 0, "bench") as world:
        label = backend_label(world)
        per_rank = measure(world, cfg)
        root = is_root(world)
    hardware = not get_library().is_simulator
    results = [summarise(op, slowest_rank(per_rank, op.name), cfg, hardware) for op in OPS]
    report = BenchReport(cfg, label, hardware, ranks, active_profile(load=True).release, precheck.enabled(),
                         results, time.perf_counter() - start)
    if root:
        publish(report, print_table, json_path, plot_path)
    return report


def publish(report: BenchReport, print_table: bool, json_path: Optional[str], plot_path: Optional[str]) -> None:
    if print_table:
        print(format_table(report), flush=True)
    if json_path:
        write_json(json_path, report)
    if plot_path:
        write_plot(plot_path, report)

