"""One MoE configuration run end to end: per-rank on a World, and world-level on the reference.

A :class:`Scenario` makes every rank's inputs, runs DispatchV3 -> (BarrierV2) -> FFN stand-in ->
CombineV3 or CombineAddRmsNormV2 per rank through the public API, computes the same pipeline with
:mod:`aclnn_py.reference`, and compares every output element for element. The demos, the smoke
suite and the differential tests are all scenarios.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import aclnn_py
from aclnn_py import profiles, reference
from aclnn_py.dtypes import bfloat16
from aclnn_py.layout import make_elastic_info, normalised_shared_expert_num
from aclnn_py.orchestration.launch import LaunchError, ProcessWorld, ep_tp_groups, launched
from aclnn_py.profiles import Profile

from .common import compare, distinct_ids, random_bf16, routing_weights, written_rows

DISPATCH_FIELDS = ("expand_x", "dynamic_scales", "assist_info_for_combine", "expert_token_nums", "ep_recv_counts",
                   "tp_recv_counts", "expand_scales")
SPECIAL_INPUTS = ("ori_x", "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v")


@dataclass(frozen=True)
class Scenario:
    """A configuration of the MoE pipeline (attribute names as the ops spell them)."""

    name: str = "scenario"
    ep_world_size: int = 8
    tp_world_size: int = 0
    bs: int = 8
    h: int = 7168
    k: int = 3
    moe_expert_num: int = 8
    shared_expert_num: int = 1
    shared_expert_rank_num: int = 0
    quant_mode: int = 0
    smooth_scales: bool = False
    global_bs: int = 0
    vary_bs: bool = False            # BS differs per rank (needs global_bs > 0, no mask)
    expert_token_nums_type: int = 1
    zero_expert_num: int = 0
    copy_expert_num: int = 0
    const_expert_num: int = 0
    mask: str = "none"               # "none", "1d" (prefix of Trues), "2d"
    removed: Sequence[int] = ()      # EP ranks removed by elastic scale-down
    elastic_flag_only: bool = False  # elastic_info present with [0] == 0 (shapes change, routing does not)
    shared_expert_x: bool = False
    combine: str = "add_rms_norm"    # or "combine"
    comm_quant_mode: int = 0
    barrier: bool = False
    dtype: Any = bfloat16
    norm_eps: float = 1e-6
    special_values: bool = False     # NaN of both signs and +-inf in a few token rows (and residual_x)
    dispatch_expert_scales: bool = False   # dispatch gets expert_scales (CANN >= 9.1.0 writes expand_scales)
    empty_expert_scales: bool = False      # combine gets an empty expert_scales: unweighted sum (CANN >= 9.1.0)
    cann_version: Optional[str] = None     # the release whose inputs (alpha shapes) and reference apply
    seed: int = 0

    # -- derived -------------------------------------------------------------------------------
    @property
    def tpf(self) -> int:
        return max(self.tp_world_size, 1)

    @property
    def world_size(self) -> int:
        return self.ep_world_size * self.tpf

    @property
    def elastic(self) -> bool:
        return bool(self.removed) or self.elastic_flag_only

    @property
    def moe_ids_below(self) -> int:
        """MoE ids must be < M' under scale-down (new ids), else < M."""
        if not self.removed:
            return self.moe_expert_num
        L = self.moe_expert_num // (self.ep_world_size - self.shared_expert_rank_num)
        return L * (self.ep_world_size - len(self.removed) - self.shared_expert_rank_num)

    def elastic_info(self) -> Optional[np.ndarray]:
        if not self.elastic:
            return None
        info = make_elastic_info(self.ep_world_size, list(self.removed), shared_rank_num=self.shared_expert_rank_num,
                                 moe_expert_num=self.moe_ids_below)
        if self.elastic_flag_only:
            info[0] = 0
        return info

    def attributes(self) -> Dict[str, Any]:
        return dict(ep_world_size=self.ep_world_size, moe_expert_num=self.moe_expert_num,
                    tp_world_size=self.tp_world_size, shared_expert_num=self.shared_expert_num,
                    shared_expert_rank_num=self.shared_expert_rank_num, global_bs=self.global_bs,
                    zero_expert_num=self.zero_expert_num, copy_expert_num=self.copy_expert_num,
                    const_expert_num=self.const_expert_num)

    def hccl_buffsize_mb(self) -> int:
        """The smallest ``HCCL_BUFFSIZE`` (MB) this configuration's calls accept."""
        from aclnn_py.validate import required_hccl_buffsize_mb
        return required_hccl_buffsize_mb(h=self.h, k=self.k, bs=self.bs, global_bs=self.global_bs,
                                         shared_expert_num=self.shared_expert_num,
                                         **{k: v for k, v in self.attributes().items()
                                            if k in ("ep_world_size", "moe_expert_num", "shared_expert_rank_num")})

    def profile(self) -> Profile:
        """The release this configuration is for (``cann_version``, else the one in force)."""
        return profiles.resolve(self.cann_version)

    def combine_expert_scales(self, inp: Dict[str, np.ndarray]) -> np.ndarray:
        """What combine gets as expert_scales: the routing weights, or an empty tensor (unweighted)."""
        return np.zeros((0,), np.float32) if self.empty_expert_scales else inp["expert_scales"]

    def shape_label(self) -> str:
        """``EP16 TP1 BS128 H7168 K8 M32``: the sizes that define the run."""
        bs = f"BS<={self.global_bs // self.ep_world_size}" if self.vary_bs else f"BS{self.bs}"
        return (f"EP{self.ep_world_size} TP{self.tp_world_size} {bs} H{self.h} K{self.k} "
                f"M{self.moe_expert_num}")

    def features(self) -> List[str]:
        """The features this configuration switches on, in words (empty for plain routing)."""
        f = []
        if self.quant_mode:
            f.append("quant2+smooth" if self.smooth_scales else "quant2")
        if self.comm_quant_mode:
            f.append("comm_quant2")
        if self.mask != "none":
            f.append(f"mask{self.mask}")
        if self.shared_expert_rank_num:
            f.append(f"shared{self.shared_expert_num}x{self.shared_expert_rank_num}ranks")
        if self.zero_expert_num or self.copy_expert_num or self.const_expert_num:
            f.append(f"zero{self.zero_expert_num}/copy{self.copy_expert_num}/const{self.const_expert_num}")
        if self.removed:
            f.append(f"elastic-{len(self.removed)}")
        elif self.elastic_flag_only:
            f.append("elastic-table")
        if self.vary_bs:
            f.append(f"vary_bs(global {self.global_bs})")
        elif self.global_bs:
            f.append(f"global_bs{self.global_bs}")
        if self.shared_expert_x:
            f.append("shared_expert_x")
        if self.expert_token_nums_type == 0:
            f.append("cumsum_counts")
        if self.barrier:
            f.append("barrier")
        if self.special_values:
            f.append("NaN/inf rows")
        if self.dispatch_expert_scales:
            f.append("expand_scales")
        if self.empty_expert_scales:
            f.append("unweighted")
        if self.cann_version:
            f.append(f"CANN {self.cann_version}")
        if np.dtype(self.dtype) == np.float16:
            f.append("fp16")
        f.append("AddRmsNorm" if self.combine == "add_rms_norm" else "CombineV3")
        return f

    def live(self, g: int) -> bool:
        return (g // self.tpf) not in self.removed

    # -- inputs ----------------------------------------------------------------------------------
    def inputs(self) -> List[Optional[Dict[str, np.ndarray]]]:
        """Per global rank inputs (``None`` for removed ranks)."""
        rng = np.random.default_rng(self.seed)
        n_special = self.zero_expert_num + self.copy_expert_num + self.const_expert_num
        candidates = np.concatenate([np.arange(self.moe_ids_below),
                                     np.arange(self.moe_expert_num, self.moe_expert_num + n_special)])
        s = normalised_shared_expert_num(self.shared_expert_num, self.shared_expert_rank_num)
        max_bs = self.global_bs // self.ep_world_size if self.global_bs else self.bs
        q = self.const_expert_num
        alpha = (q, self.h) if self.profile().on("const_alpha_2d") else (q,)
        shared = dict(gamma=random_bf16(rng, (self.h,), 0.3).astype(self.dtype),
                      const_expert_alpha_1=random_bf16(rng, alpha, 0.5).astype(self.dtype),
                      const_expert_alpha_2=random_bf16(rng, alpha, 0.5).astype(self.dtype),
                      const_expert_v=random_bf16(rng, (q, self.h)).astype(self.dtype))
        out: List[Optional[Dict[str, np.ndarray]]] = []
        for g in range(self.world_size):
            bs = int(rng.integers(1, max_bs + 1)) if self.vary_bs else self.bs
            x = random_bf16(rng, (bs, self.h)).astype(self.dtype)
            d = dict(x=x, ori_x=x, expert_ids=distinct_ids(rng, bs, self.k, candidates),
                     expert_scales=routing_weights(rng, bs, self.k),
                     residual_x=random_bf16(rng, (bs, 1, self.h)).astype(self.dtype), **shared)
            if self.quant_mode == 2 and self.smooth_scales:
                d["scales"] = (rng.random((s + self.moe_expert_num, self.h), dtype=np.float32) + np.float32(0.5))
            if self.mask == "1d":
                d["x_active_mask"] = np.arange(bs) < int(rng.integers(0, bs + 1))
            elif self.mask == "2d":
                d["x_active_mask"] = rng.random((bs, self.k)) < 0.7
            if self.shared_expert_x:
                d["shared_expert_x"] = random_bf16(rng, (bs, 1, self.h) if self.combine == "add_rms_norm"
                                                   else (bs, self.h), 0.1).astype(self.dtype)
            if self.special_values:
                plant_special_values(rng, d)
            out.append(d if self.live(g) else None)
        return out


def plant_special_values(rng: np.random.Generator, inp: Dict[str, np.ndarray]) -> None:
    """Put +NaN, -NaN, +inf and -inf into four token rows of ``x`` (in place, at random columns), and at
    the +NaN's position a -NaN into ``residual_x``, so NaNs of both signs meet in AddRmsNorm."""
    x = inp["x"]
    bs, h = x.shape
    tokens = rng.permutation(bs)[:4]
    cols = rng.integers(0, h, size=4)
    nan = np.float32(np.nan)
    for t, c, v in zip(tokens, cols, (nan, -nan, np.float32(np.inf), np.float32(-np.inf))):
        x[t, c] = v
    inp["residual_x"][tokens[0], 0, cols[0]] = -nan


def ffn_stand_in(expand_x: np.ndarray, dynamic_scales: np.ndarray, dtype) -> np.ndarray:
    """Per-row 'expert': dequantise int8 rows with their scale if needed, then ``1.5 * row`` in ``dtype``.

    Rows past the last written one stay 0 (``1.5 * 0``) without being computed: at production sizes
    expand_x holds A rows of capacity of which a fraction is received.
    """
    x = np.asarray(expand_x)
    out = np.zeros(x.shape, dtype)
    n = written_rows(x)
    rows = x[:n].astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):   # NaN/inf rows and scales are part of the tests
        if x.dtype == np.int8:
            rows *= np.asarray(dynamic_scales, np.float32)[:n, None]
        rows *= np.float32(1.5)
    out[:n] = rows.astype(dtype)
    return out


def combine_kwargs(sc: Scenario, inp: Dict[str, np.ndarray]) -> Dict[str, Any]:
    kw: Dict[str, Any] = {}
    if sc.copy_expert_num or sc.const_expert_num:
        kw["ori_x"] = inp["ori_x"]
    if sc.const_expert_num:
        kw.update({k: inp[k] for k in SPECIAL_INPUTS[1:]})
    if "x_active_mask" in inp:
        kw["x_active_mask"] = inp["x_active_mask"]
    if "shared_expert_x" in inp:
        kw["shared_expert_x"] = inp["shared_expert_x"]
    if sc.comm_quant_mode:
        kw["comm_quant_mode"] = sc.comm_quant_mode
    return kw


class RankResults(dict):
    """One rank's host results and timings (seconds), keyed ``dispatch.<field>``, ``combine.<field>``,
    ``time.<op>``.

    Given the reference's outputs for this rank (``want``), each output is compared when it arrives and
    only its check (``.checks``) and the arrays of at most :attr:`KEEP_BYTES` are kept, so a
    production-size world never holds every rank's device outputs at once.
    """

    KEEP_BYTES = 1 << 16

    def __init__(self, want: Optional[Dict[str, np.ndarray]] = None) -> None:
        super().__init__()
        self.want = want
        self.checks: List[dict] = []

    def put(self, key: str, value: np.ndarray) -> None:
        if self.want is not None:
            self.checks.append(compare(key, value, self.want[key]))
            if value.nbytes > self.KEEP_BYTES:
                self["peek." + key] = value.reshape(-1)[:8].copy()
                return
        self[key] = value

    REPORTED = ("dispatch.expert_token_nums", "combine.rstd", "time.dispatch", "time.combine")

    def compact(self) -> "RankResults":
        """What the reports need (:data:`REPORTED`, the checks and 8 values of ``combine.x``), to send to the
        other processes of a :class:`~aclnn_py.ProcessWorld`."""
        out = RankResults()
        out.checks = list(self.checks)
        out.update({k: self[k] for k in self.REPORTED if k in self})
        x = self.get("combine.x", self.get("peek.combine.x"))
        if x is not None:
            out["peek.combine.x"] = np.asarray(x).reshape(-1)[:8].copy()
        return out


def run_rank(ctx, sc: Scenario, inputs: List[Optional[dict]],
             want: Optional[List[Optional[Dict[str, np.ndarray]]]] = None) -> RankResults:
    """One rank's pipeline through the public per-rank API; returns host copies and timings (s).

    ``want``: the world reference (:func:`run_reference`); when given, outputs are checked against it
    on the fly (see :class:`RankResults`).
    """
    inp = inputs[ctx.rank]
    elastic_info = sc.elastic_info()
    common = dict(group_ep=ctx.group("ep"), ep_rank_id=ctx.ep_rank, group_tp=ctx.group("tp"),
                  tp_rank_id=ctx.tp_rank, elastic_info=elastic_info, **sc.attributes())
    out = RankResults(None if want is None else want[ctx.rank])
    t0 = time.perf_counter()
    d = aclnn_py.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], scales=inp.get("scales"),
                                            x_active_mask=inp.get("x_active_mask"), quant_mode=sc.quant_mode,
                                            expert_scales=inp["expert_scales"] if sc.dispatch_expert_scales else None,
                                            expert_token_nums_type=sc.expert_token_nums_type, **common)
    out["time.dispatch"] = time.perf_counter() - t0
    try:
        if sc.barrier:
            aclnn_py.distribute_barrier_v2(d.expand_x, group=ctx.group("ep_barrier"), world_size=sc.ep_world_size,
                                           elastic_info=elastic_info if sc.removed else None, time_out=30_000_000)
        host = {name: getattr(d, name).numpy() for name in DISPATCH_FIELDS}
        for name, value in host.items():
            out.put("dispatch." + name, value)
        expert_out = ffn_stand_in(host["expand_x"], host["dynamic_scales"], sc.dtype)
        del host
        args = (expert_out, inp["expert_ids"], d.assist_info_for_combine, d.ep_recv_counts,
                sc.combine_expert_scales(inp))
        t0 = time.perf_counter()
        if sc.combine == "add_rms_norm":
            c = aclnn_py.moe_distribute_combine_add_rms_norm_v2(
                *args, inp["residual_x"], inp["gamma"], tp_send_counts=d.tp_recv_counts, norm_eps=sc.norm_eps,
                **combine_kwargs(sc, inp), **common)
            out["time.combine"] = time.perf_counter() - t0
            for name, t in zip(("y", "rstd", "x"), c):
                out.put("combine." + name, t.numpy())
                t.free()
        else:
            x = aclnn_py.moe_distribute_combine_v3(*args, tp_send_counts=d.tp_recv_counts,
                                                   **combine_kwargs(sc, inp), **common)
            out["time.combine"] = time.perf_counter() - t0
            out.put("combine.x", x.numpy())
            x.free()
    finally:
        for t in d:
            t.free()
    return out


def run_reference(sc: Scenario, inputs: List[Optional[dict]]) -> List[Optional[Dict[str, np.ndarray]]]:
    """The same pipeline for the whole world with :mod:`aclnn_py.reference`."""
    def per(key: str) -> Optional[list]:
        vals = [None if i is None else i.get(key) for i in inputs]
        return None if all(v is None for v in vals) else vals

    attrs = dict(sc.attributes(), group_ep="ep", group_tp="tp", cann_version=sc.cann_version)
    elastic_info = sc.elastic_info()
    d = reference.moe_distribute_dispatch_v3(per("x"), per("expert_ids"), scales=per("scales"),
                                             x_active_mask=per("x_active_mask"), elastic_info=elastic_info,
                                             expert_scales=per("expert_scales") if sc.dispatch_expert_scales else None,
                                             quant_mode=sc.quant_mode, expert_token_nums_type=sc.expert_token_nums_type,
                                             **attrs)
    field_of = lambda name: [None if o is None else getattr(o, name) for o in d]  # noqa: E731
    expert_out = [None if o is None else ffn_stand_in(o.expand_x, o.dynamic_scales, sc.dtype) for o in d]
    first_live = next(i for i in inputs if i is not None)
    combine_kw = {k: (v if k == "comm_quant_mode" else per(k)) for k, v in combine_kwargs(sc, first_live).items()}
    args = (expert_out, per("expert_ids"), field_of("assist_info_for_combine"), field_of("ep_recv_counts"),
            [None if i is None else sc.combine_expert_scales(i) for i in inputs])
    if sc.combine == "add_rms_norm":
        c = reference.moe_distribute_combine_add_rms_norm_v2(
            *args, per("residual_x"), per("gamma"), tp_send_counts=field_of("tp_recv_counts"),
            elastic_info=elastic_info, norm_eps=sc.norm_eps, **combine_kw, **attrs)
        comb = [None if o is None else {"combine.y": o.y, "combine.rstd": o.rstd, "combine.x": o.x} for o in c]
    else:
        c = reference.moe_distribute_combine_v3(*args, tp_send_counts=field_of("tp_recv_counts"),
                                                elastic_info=elastic_info, **combine_kw, **attrs)
        comb = [None if o is None else {"combine.x": o} for o in c]
    out: List[Optional[Dict[str, np.ndarray]]] = []
    for o, cb in zip(d, comb):
        if o is None:
            out.append(None)
            continue
        row = {"dispatch." + name: getattr(o, name) for name in DISPATCH_FIELDS}
        row.update(cb)
        out.append(row)
    return out


@dataclass
class Outcome:
    """Per-rank comparison of a scenario's device (or per-rank reference) run with the reference."""

    scenario: Scenario
    got: List[Optional[Dict[str, Any]]]
    want: List[Optional[Dict[str, np.ndarray]]]
    checks: List[Optional[List[dict]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c is None or all(x["ok"] for x in c) for c in self.checks)

    def failures(self) -> List[str]:
        bad = []
        for g, c in enumerate(self.checks):
            for x in c or []:
                if not x["ok"]:
                    bad.append(f"rank {g} {x['name']}: {x.get('why') or str(x['mismatch']) + ' elements differ'}")
        return bad


def run(sc: Scenario, world) -> Outcome:
    """Run ``sc`` on ``world`` (from :meth:`World.ep_tp`, or a :class:`~aclnn_py.ProcessWorld`: see
    :func:`run_in_processes`) and compare with the reference.

    The reference is computed first and each rank checks its outputs as they arrive, so only the
    checks (and small arrays) of the device run are kept.
    """
    if isinstance(world, ProcessWorld):
        return run_in_processes(sc, world)
    inputs = sc.inputs()
    survivors = [g for g in range(sc.world_size) if sc.live(g)]
    want = run_reference(sc, inputs)
    got = world.run(run_rank, sc, inputs, want, ranks=survivors)
    out = Outcome(sc, got, want)
    out.checks = [None if want[g] is None else got[g].checks for g in range(sc.world_size)]
    return out


class RankFailures(RuntimeError):
    """Ranks of a :class:`~aclnn_py.ProcessWorld` failed a scenario; ``.errors`` maps rank -> error text (the
    same on every process)."""

    def __init__(self, errors: Dict[int, str], size: int) -> None:
        self.errors = errors
        causes = {r: e for r, e in errors.items() if "another rank failed" not in e} or errors
        text = "; ".join(f"rank {r}: {e}" for r, e in sorted(causes.items()))
        followers = sorted(set(errors) - set(causes))
        if followers:
            text += f"; ranks {followers} failed because of it"
        super().__init__(f"{len(errors)} of {size} ranks failed: {text}")


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"


def run_in_processes(sc: Scenario, world: ProcessWorld) -> Outcome:
    """:func:`run` with one rank per process: rank 0 computes the reference and hands each rank its part
    (:meth:`~aclnn_py.ProcessWorld.scatter`); each rank runs its pipeline and checks its outputs; the checks and
    the small arrays of the report are gathered on every process (:meth:`~aclnn_py.ProcessWorld.allgather`).
    Processes whose rank is outside the scenario sit it out. When any rank failed, every process raises the
    same :class:`RankFailures`, naming each failed rank."""
    inputs = sc.inputs()
    survivors = [g for g in range(sc.world_size) if sc.live(g)]
    want: List[Optional[Dict[str, np.ndarray]]] = [None] * sc.world_size
    parts = None
    if world.rank == 0:
        try:
            want = run_reference(sc, inputs)
            parts = [("ok", want[g] if g < sc.world_size else None) for g in range(world.size)]
        except Exception as e:  # every rank must hear of it
            parts = [("error", f"the reference failed: {_first_line(e)}")] * world.size
    status, mine = world.scatter(parts)
    error, got = (mine if status == "error" else None), None
    if error is None:
        if world.rank != 0 and world.rank < sc.world_size:
            want[world.rank] = mine
        try:
            got = world.run(run_rank, sc, inputs, want, ranks=survivors)[world.rank]
        except Exception as e:  # reported by every process below
            error = _first_line(e)
    shared = world.allgather((None if got is None else got.compact(), error))
    errors = {r: e for r, (_, e) in enumerate(shared) if e is not None}
    if errors:
        raise RankFailures(errors, world.size)
    out = Outcome(sc, [g for g, _ in shared[:sc.world_size]], want)
    out.checks = [out.got[g].checks if sc.live(g) else None for g in range(sc.world_size)]
    return out


def is_root(world) -> bool:
    """Whether this process reports for ``world``: always for a threaded World, rank 0's for a ProcessWorld."""
    return getattr(world, "rank", 0) == 0


def world_for(sc: Scenario, backend: Optional[str] = None) -> "aclnn_py.World":
    """The World of ``sc``'s ranks: threads, or -- in a job of several processes started by a launcher
    (:func:`~aclnn_py.launch.launched`) -- this process's rank of a :class:`~aclnn_py.ProcessWorld` (the
    processes beyond ``sc.world_size`` sit the scenario out)."""
    return world_of(sc.world_size, backend, ep_tp_groups(sc.ep_world_size, sc.tp_world_size), sc.tp_world_size,
                    sc.name)


def world_of(size: int, backend: Optional[str], groups: Dict[str, List[List[int]]], tp_world_size: int = 0,
             what: str = "this demo") -> "aclnn_py.World":
    """A World of ``size`` ranks with ``groups``: threads, or this process's rank when launched (see
    :func:`world_for`); raises :class:`~aclnn_py.launch.LaunchError` when the job has fewer processes."""
    info = launched()
    if info is None:
        return aclnn_py.World(size, backend=backend, groups=groups, tp_world_size=tp_world_size)
    if size > info.size:
        raise LaunchError(f"{what} needs {size} ranks, but this {info.launcher} job has {info.size} processes (one "
                          f"rank each): start at least {size}")
    return ProcessWorld.from_env(groups=groups, tp_world_size=tp_world_size, backend=backend)


def variant(sc: Scenario, **changes) -> Scenario:
    return replace(sc, **changes)
