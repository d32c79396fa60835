"""Figure 3: host time the Python binding adds to one per-rank op call, against C, on the simulator.

ep = 2 ranks, the same shapes, inputs already on the device, and per call the sequence an aclnn C
program runs (outputs: ``aclrtMalloc`` + ``aclrtMemset`` + ``aclCreateTensor`` each, or made once;
``GetWorkspaceSize``; ``aclrtMalloc`` workspace; execute; synchronize; ``aclrtFree``). The C side is
``sim/tools/bench_driver.c`` (``build.sh`` builds ``build/cann-sim/bin/bench_driver`` and
``bin/libbench_driver.so``). Two settings:

1. **Lockstep, both ranks in Python** (the issue's method): one thread per rank, a barrier before every
   call; per call the slower rank's time; against both ranks in C doing the same (``bench_rank_loop`` with
   a pthread barrier, in the same process, interleaved); the standalone C driver process is shown too.
   The two rank threads share one GIL, so in lockstep their Python work runs one after the other: the
   overhead per call is about the *sum* of both ranks' Python time (plus GIL hand-offs).
2. **One rank in Python, its peer in C** (same process, the peer runs ``bench_rank_loop`` from
   ``libbench_driver.so`` without the GIL): rank 0's time per call, against both ranks in C in the same
   process. This is the overhead one Python rank adds, as with one process per rank (torchrun-style).

Python variants: the public wrappers with fresh outputs (memoised validation), with ``out=``
preallocated outputs, and
``out=`` with the opt-in :class:`aclnn_py.runtime.twophase.WorkspaceCache`, and with it the opt-in
:class:`~aclnn_py.runtime.twophase.ReuseExecutors`, which relaunches a repeatable executor instead of
calling ``GetWorkspaceSize`` again; the C side always calls it). Fresh-output variants are
compared with C making fresh outputs, ``out=`` variants with C reusing its outputs. Series are run in
interleaved blocks, and every figure is a median over calls, so machine noise hits all alike.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from .common import SIM_HOME, median, table, use_simulator

EP, BS, H, K, EXPERTS = 2, 8, 1024, 8, 16
EP_WIDE = 8                  # setting 3d: the threaded World of one A3 host's ranks, in lockstep
TARGETS_US = {"fresh": 25.0, "prealloc": 5.0, "wide": 50.0}   # issue 14: default call, out=, 8-rank lockstep
DRIVER = SIM_HOME / "bin" / "bench_driver"
DRIVER_LIB = SIM_HOME / "bin" / "libbench_driver.so"

VARIANTS = {
    "pub": "public wrapper, fresh outputs",
    "out": "out= preallocated outputs",
    "outws": "out= and WorkspaceCache",
    "reuse": "out=, WorkspaceCache and ReuseExecutors",
}
FRESH = {"pub": True, "out": False, "outws": False, "reuse": False}


# ---- C ----------------------------------------------------------------------------------------------
def c_driver(op: str, outputs: str, iters: int, warmup: int) -> Dict[str, Any]:
    """The standalone C driver (lockstep with pthreads): its JSON summary."""
    if not DRIVER.exists():
        raise SystemExit(f"{DRIVER} is missing; run ./build.sh (it builds sim/tools/*.c)")
    cmd = [str(DRIVER), "--op", op, "--outputs", outputs, "--iters", str(iters), "--warmup", str(warmup),
           "--ep", str(EP), "--bs", str(BS), "--h", str(H), "--k", str(K), "--experts", str(EXPERTS)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"bench_driver failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)


def _driver_lib():
    """libbench_driver.so: bench_rank_loop (one rank's calls from C, without the GIL) and its barrier."""
    if not DRIVER_LIB.exists():
        raise SystemExit(f"{DRIVER_LIB} is missing; run ./build.sh (it builds sim/tools/*.c)")
    lib = ctypes.CDLL(str(DRIVER_LIB))
    # int bench_rank_loop(int op_combine, int fresh, int iters, const char *group, int64_t ep, int64_t rank,
    #                     int64_t experts, void *stream, void *const *tensors, void *barrier, double *times_us);
    lib.bench_rank_loop.restype = ctypes.c_int
    lib.bench_rank_loop.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int64,
                                    ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                    ctypes.c_void_p, ctypes.POINTER(ctypes.c_double)]
    # void *bench_barrier_create(int n); void bench_barrier_destroy(void *barrier);
    lib.bench_barrier_create.restype = ctypes.c_void_p
    lib.bench_barrier_create.argtypes = [ctypes.c_int]
    lib.bench_barrier_destroy.restype = None
    lib.bench_barrier_destroy.argtypes = [ctypes.c_void_p]
    return lib


# ---- phase instrumentation ------------------------------------------------------------------------------
class _Marks(threading.local):
    v0 = v1 = g0 = g1 = float("nan")


def _timed(marks: _Marks, prefix: str, fn: Callable) -> Callable:
    def wrapper(*a, **kw):
        setattr(marks, prefix + "0", time.perf_counter())
        try:
            return fn(*a, **kw)
        finally:
            setattr(marks, prefix + "1", time.perf_counter())
    return wrapper


class _Instrument:
    """Time validation (or the memoised validation) and GetWorkspaceSize of both ops."""

    def __init__(self, marks: _Marks, proposed: Any) -> None:
        self.marks, self.proposed, self.undo = marks, proposed, []

    def __enter__(self) -> "_Instrument":
        from aclnn_py import validate
        from aclnn_py.runtime.library import get_library
        lib = get_library()
        for name in ("moe_distribute_dispatch_v3", "moe_distribute_combine_v3"):
            self._patch(validate, name, "v")
        for op in ("aclnnMoeDistributeDispatchV3", "aclnnMoeDistributeCombineV3"):
            bound = lib.op(op)
            self._patch(bound, "get_workspace_size", "g")
            held = bound.held           # the binding holding the GIL, used once a signature has run
            bound.held = (_timed(self.marks, "g", held[0]), held[1])
            self.undo.append((bound, "held", held))
        if self.proposed is not None:
            from aclnn_py.ops import call
            self._patch(call, "memo_entry", "v")
        return self

    def _patch(self, obj: Any, name: str, prefix: str) -> None:
        old = getattr(obj, name)
        setattr(obj, name, _timed(self.marks, prefix, old))
        self.undo.append((obj, name, old))

    def __exit__(self, *exc) -> None:
        for obj, name, old in reversed(self.undo):
            setattr(obj, name, old)


# ---- the in-process runs ----------------------------------------------------------------------------------
ALL_SETTINGS = ("cc", "cclock", "mix", "lock")


def _in_process(ep: int, settings: Tuple[str, ...], variants: Tuple[str, ...], iters: int, warmup: int, blocks: int,
                phase_iters: int) -> Dict[str, Any]:
    """The in-process series at ``ep`` ranks: settings "lock" (every rank in Python, lockstep), "cclock"
    (every rank in C, lockstep), "mix" (rank 0 in Python, the others in C), "cc" (every rank in C); with
    ``phase_iters`` a second, instrumented pass times rank 0's phases in setting "mix"."""
    import aclnn_py
    from aclnn_py.demos.common import distinct_ids, random_bf16, routing_weights
    from aclnn_py.runtime.tensor import DeviceTensor
    from aclnn_py.runtime.twophase import ReuseExecutors, WorkspaceCache
    import aclnn_py.ops as prop
    prop_why = "the ops have out= and memoised validation"
    drv = _driver_lib()
    c_barrier = drv.bench_barrier_create(ep)
    series: List[Tuple[str, str, str]] = []
    for op in ("dispatch", "combine"):
        series += [(s, op, o) for s in ("cc", "cclock") if s in settings for o in ("fresh", "prealloc")]
        series += [(s, op, v) for s in ("mix", "lock") if s in settings for v in variants]
    per_block = max(1, iters // blocks)
    samples: Dict[Tuple[str, str, str], List[float]] = {s: [] for s in series}
    lock_rows: Dict[Tuple[str, str, str], List[np.ndarray]] = {}
    columns: Dict[int, Any] = {}
    phases: Dict[Tuple[str, str], List[dict]] = {}
    marks = _Marks()
    barrier = threading.Barrier(ep)
    state: Dict[str, Any] = {"instrument": False}

    def rank_fn(ctx) -> None:
        rng = np.random.default_rng(100 + ctx.rank)
        x = DeviceTensor.from_numpy(random_bf16(rng, (BS, H)))
        ids = DeviceTensor.from_numpy(distinct_ids(rng, BS, K, np.arange(EXPERTS)))
        w = DeviceTensor.from_numpy(routing_weights(rng, BS, K))
        group = ctx.group("ep")
        common = dict(group_ep=group, ep_world_size=ep, ep_rank_id=ctx.ep_rank, moe_expert_num=EXPERTS)
        barrier.wait()
        d = aclnn_py.moe_distribute_dispatch_v3(x, ids, **common)          # combine's inputs
        pre_d = aclnn_py.moe_distribute_dispatch_v3(x, ids, **common)      # preallocated dispatch outputs
        pre_c = DeviceTensor.zeros((BS, H), d.expand_x.dtype)              # preallocated combine output
        handles = {
            "dispatch": (ctypes.c_void_p * 9)(x.handle, ids.handle, *(t.handle for t in pre_d)),
            "combine": (ctypes.c_void_p * 7)(d.expand_x.handle, ids.handle, d.assist_info_for_combine.handle,
                                             d.ep_recv_counts.handle, w.handle, d.tp_recv_counts.handle, pre_c.handle),
        }
        caches: list = []

        def python_call(op: str, variant: str):
            mod = prop
            extra = {} if FRESH[variant] else {"out": pre_d if op == "dispatch" else pre_c}
            if op == "dispatch":
                return mod.moe_distribute_dispatch_v3(x, ids, **common, **extra)
            return mod.moe_distribute_combine_v3(d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts, w,
                                                 tp_send_counts=d.tp_recv_counts, **common, **extra)

        def c_loop(op: str, fresh: bool, n: int, lockstep: bool = False) -> List[float]:
            times = (ctypes.c_double * max(n, 1))()
            rc = drv.bench_rank_loop(int(op == "combine"), int(fresh), n, group.encode(), ep, ctx.ep_rank, EXPERTS,
                                     ctx.stream.handle, handles[op], c_barrier if lockstep else None, times)
            if rc != 0:
                raise RuntimeError(f"bench_rank_loop failed with {rc}")
            return [t * 1e-6 for t in times[:n]]

        def py_loop(op: str, variant: str, n: int, lockstep: bool) -> List[float]:
            out = []
            for _ in range(n):
                if lockstep:
                    barrier.wait()
                t0 = time.perf_counter()
                res = python_call(op, variant)
                t1 = time.perf_counter()
                out.append(t1 - t0)
                if state["instrument"] and ctx.rank == 0:
                    phases.setdefault((op, variant), []).append(dict(
                        validation=marks.v1 - marks.v0, host=(marks.g0 - t0) - (marks.v1 - marks.v0),
                        gws=marks.g1 - marks.g0, execute=t1 - marks.g1))
                del res                     # a caller dropping its results (fresh outputs go back to the pool)
            return out

        def run_series(key: Tuple[str, str, str], n: int, keep: bool) -> None:
            setting, op, variant = key
            if variant in ("outws", "reuse"):
                caches.append(WorkspaceCache().__enter__())
            if variant == "reuse":
                caches.append(ReuseExecutors().__enter__())
            try:
                if setting in ("cc", "cclock"):
                    t = c_loop(op, variant == "fresh", n, setting == "cclock")
                elif setting == "mix":
                    t = py_loop(op, variant, n, False) if ctx.rank == 0 else c_loop(op, FRESH[variant], n)
                else:
                    t = py_loop(op, variant, n, True)
            finally:
                while caches:
                    caches.pop().__exit__(None, None, None)
            if keep:
                if setting in ("lock", "cclock"):
                    columns[ctx.rank] = np.asarray(t)
                    barrier.wait()
                    if ctx.rank == 0:
                        lock_rows.setdefault(key, []).append(np.stack([columns[r] for r in range(ep)], axis=1))
                elif ctx.rank == 0:
                    samples[key].extend(t)
            barrier.wait()

        try:
            if state["instrument"]:
                for op in ("dispatch", "combine"):
                    for variant in ("pub", "out"):
                        run_series(("mix", op, variant), phase_iters, False)
            else:
                for key in series:                     # warm-up
                    run_series(key, warmup, False)
                for _ in range(blocks):
                    for key in series:
                        run_series(key, per_block, True)
        finally:
            for t in (*d, *pre_d, pre_c, x, ids, w):
                t.free()

    try:
        with aclnn_py.World.ep_tp(ep, backend="device") as world:
            world.run(rank_fn)
            if phase_iters:
                state["instrument"] = True
                with _Instrument(marks, prop):
                    world.run(rank_fn)
    finally:
        drv.bench_barrier_destroy(c_barrier)
    res: Dict[str, Any] = {"proposed": prop_why, "phases": {}, **{s: {} for s in settings}}
    for (setting, op, variant), t in samples.items():
        if setting in ("cc", "mix") and t:
            res[setting][f"{op}: {variant}"] = median(t) * 1e6
    for (setting, op, variant), rows in lock_rows.items():
        res[setting][f"{op}: {variant}"] = median(list(np.concatenate(rows).max(axis=1))) * 1e6
    for (op, variant), recs in phases.items():
        res["phases"][f"{op}: {variant}"] = {p: median([r[p] for r in recs]) * 1e6 for p in recs[0]}
    return res


def run(quick: bool = False) -> Dict[str, Any]:
    use_simulator()
    iters, warmup, blocks = (300, 30, 3) if quick else (2000, 100, 20)
    iters_wide = iters // 2
    phase_iters = 150 if quick else 400
    c = {f"{op}: {o}": c_driver(op, o, iters, warmup) for op in ("dispatch", "combine") for o in ("fresh", "prealloc")}
    # The cross-rank pre-check is a host rendezvous of the World's Python ranks; setting 3b runs the peer
    # in C, which never joins it, so this figure measures the binding with the pre-check off.
    saved = os.environ.get("ACLNN_PY_PRECHECK")
    os.environ["ACLNN_PY_PRECHECK"] = "0"
    try:
        py = _in_process(EP, ALL_SETTINGS, tuple(VARIANTS), iters, warmup, blocks, phase_iters)
        wide = _in_process(EP_WIDE, ("cclock", "lock"), ("pub", "out"), iters_wide, warmup, blocks, 0)
    finally:
        if saved is None:
            os.environ.pop("ACLNN_PY_PRECHECK")
        else:
            os.environ["ACLNN_PY_PRECHECK"] = saved
    import inspect
    from aclnn_py.ops import call
    return {"figure": "binding", "ep": EP, "ep_wide": EP_WIDE, "bs": BS, "h": H, "k": K, "experts": EXPERTS,
            "iters": iters, "iters_wide": iters_wide, "blocks": blocks, "c_driver": c, **py,
            "wide": {"lock": wide["lock"], "cclock": wide["cclock"]},
            "precheck_wired": "check_across_ranks" in inspect.getsource(call),
            "precheck_env": "0 (off for this figure)"}


def report(res: Dict[str, Any]) -> str:
    def verdict(over: float, target: float) -> str:
        return f"<= {target:g}: {'met' if over <= target else 'NOT met'}"

    def kind(variant: str) -> str:
        return "fresh" if FRESH[variant] else "prealloc"

    def lockstep_rows(lock: Dict[str, float], cclock: Dict[str, float], driver: bool) -> List[list]:
        rows = []
        for key, py in lock.items():
            op, variant = key.split(": ")
            c = cclock[f"{op}: {kind(variant)}"]
            drv = [f"{res['c_driver'][f'{op}: {kind(variant)}']['call_us']:.0f}"] if driver else []
            rows.append([op, VARIANTS[variant], f"{py:.0f}", f"{c:.0f} ({kind(variant)})", *drv, f"{py - c:+.0f}",
                         verdict(py - c, TARGETS_US["wide"])])
        return rows

    mix_rows, phase_rows = [], []
    for key, py in res["mix"].items():
        op, variant = key.split(": ")
        c = res["cc"][f"{op}: {kind(variant)}"]
        mix_rows.append([op, VARIANTS[variant], f"{py:.0f}", f"{c:.0f} ({kind(variant)})", f"{py - c:+.0f}",
                         verdict(py - c, TARGETS_US[kind(variant)])])
    for key, ph in res["phases"].items():
        op, variant = key.split(": ")
        phase_rows.append([op, "Python: " + VARIANTS[variant], f"{ph['validation']:.1f}", f"{ph['host']:.1f}",
                           f"{ph['gws']:.1f}", f"{ph['execute']:.1f}"])
        c = res["c_driver"][f"{op}: {kind(variant)}"]["ranks"][0]
        phase_rows.append([op, f"C driver ({kind(variant)} outputs, lockstep)", "-",
                           f"{c['desc_us']:.1f}", f"{c['gws_us']:.1f}", f"{c['exec_us']:.1f}"])
    head = (f"Figure 3 - host time of one per-rank call on the simulator (ep {res['ep']}, BS {res['bs']}, H {res['h']}, "
            f"K {res['k']}, {res['experts']} experts; microseconds, medians over {res['iters']} calls in "
            f"{res['blocks']} interleaved blocks). Cross-rank pre-check wired "
            f"into the ops: {res['precheck_wired']}; ACLNN_PY_PRECHECK={res['precheck_env']}.")
    wide = res.get("wide")
    return "\n".join([
        head, "",
        "3a. Lockstep, both ranks in Python (one process, shared GIL) vs both ranks in C (bench_rank_loop with a "
        "barrier, same process, interleaved); slower rank per call. 'C driver' = the standalone bench_driver "
        "process (pthreads), run before, for reference",
        table(lockstep_rows(res["lock"], res["cclock"], True),
              ["op", "Python path", "Python", "C", "C driver", "overhead", "target"]), "",
        "3b. Rank 0 in Python, the other rank in C (libbench_driver.so, no GIL) vs both ranks in C, same process; "
        "rank 0",
        table(mix_rows, ["op", "Python path", "Python", "C", "overhead", "target"]), "",
        "3c. Phase split of rank 0 in setting 3b (medians; 'host work' = entry, backend, layout, uploads, outputs, "
        "arguments; 'execute' = workspace, phase 2, synchronize, release)",
        table(phase_rows, ["op", "path", "validation", "host work", "GetWorkspaceSize", "execute + sync"]),
        *(["", f"3d. Lockstep with {res['ep_wide']} ranks: all in Python (a threaded World, one GIL) vs all in C; "
               f"slowest rank per call, medians over {res['iters_wide']} calls",
           table(lockstep_rows(wide["lock"], wide["cclock"], False),
                 ["op", "Python path", "Python", "C", "overhead", "target"])] if wide else [])])
