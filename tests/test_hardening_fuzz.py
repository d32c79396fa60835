"""Bad input never crashes and never hangs (issue 6): a property-based suite (hypothesis).

Every op (DispatchV3, CombineV3, CombineAddRmsNormV2, DistributeBarrierV2) is driven through both
backends (the simulator and the reference) with random configurations, random tensors and one random
corruption: wrong dtypes, shapes and ranks (ndim), NaN/inf, empty batches, out-of-range and duplicate
expert ids, unordered 1-D masks, group names of 0/127/128 bytes and non-ASCII ones, wrong Python
types, and parameters that differ across ranks. Each case runs the per-rank op on every rank of a
World and must end, within a bounded time, in

* success on every rank, with outputs equal bit for bit on both backends (so no partially written
  output is ever returned as success), or
* on the corrupted rank an AclnnError (or ValueError / TypeError for a wrong Python type) with the
  status the corruption calls for and a message naming the parameter, and on every other rank an
  error naming that rank (nobody waits for a rank that will not launch);

and the simulator must be left with no live buffer, tensor or executor. Device-tensor inputs (whose
values the host cannot check) must end in the kernel's error instead, never in a crash.
The number of cases tried per op is printed at the end of the module.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aclnn_py
from aclnn_py import reference
from aclnn_py.orchestration.precheck import InconsistentParametersError
from aclnn_py.demos import scenario
from aclnn_py.demos.scenario import Scenario, ffn_stand_in
from aclnn_py.dtypes import bfloat16
from aclnn_py.errors import AclError, AclnnError, AclnnPyError, CollectiveError

from conftest import live_objects
from hardening_support import env

EXAMPLES = int(os.environ.get("ACLNN_PY_FUZZ_EXAMPLES", "250"))
CASE_TIMEOUT_S = 12.0         # a case taking longer than this waited for a timeout (TINY's): a hang
TRIED: Counter = Counter()     # cases per op, printed at the end
OUTCOMES: Counter = Counter()

TINY = dict(ACLNN_SIM_HANG_TIMEOUT_MS="20000", ACLNN_SIM_DEADLOCK_GRACE_MS="300")
OPS = {
    "dispatch": aclnn_py.moe_distribute_dispatch_v3,
    "combine": aclnn_py.moe_distribute_combine_v3,
    "arn": aclnn_py.moe_distribute_combine_add_rms_norm_v2,
    "barrier": aclnn_py.distribute_barrier_v2,
}
POSITIONAL = {
    "dispatch": ("x", "expert_ids"),
    "combine": ("expand_x", "expert_ids", "assist_info_for_combine", "ep_send_counts", "expert_scales"),
    "arn": ("expand_x", "expert_ids", "assist_info_for_combine", "ep_send_counts", "expert_scales", "residual_x",
            "gamma"),
    "barrier": ("x_ref",),
}
GROUP_EP, GROUP_TP, GROUP = "<group_ep>", "<group_tp>", "<group>"   # replaced by the rank's real names


@dataclasses.dataclass
class Expect:
    """What the corrupted rank(s) must raise."""

    params: Tuple[str, ...]                 # the message names one of these
    statuses: Tuple[int, ...] = (561002,)
    kinds: Tuple[type, ...] = (AclnnError,)
    ranks: Optional[Tuple[int, ...]] = None  # corrupted ranks (None: every running rank)


@dataclasses.dataclass
class Case:
    op: str
    ep: int
    tp: int
    kwargs: List[Optional[Dict[str, Any]]]   # per global rank; None: the rank does not run
    expect: Optional[Expect]
    what: str
    device_tensors: Tuple[str, ...] = ()      # uploaded as DeviceTensor on the device backend


# ---- worlds ------------------------------------------------------------------------------------------------
_worlds: Dict[tuple, aclnn_py.World] = {}
_lock = threading.Lock()


def world_for(backend: str, ep: int, tp: int) -> aclnn_py.World:
    key = (backend, ep, tp)
    with _lock:
        if key not in _worlds:
            _worlds[key] = aclnn_py.World.ep_tp(ep, tp, backend=backend, timeout_s=20)
        return _worlds[key]


@pytest.fixture(scope="module", autouse=True)
def _module(sim_library, request):
    yield
    for w in _worlds.values():
        w.close()
    _worlds.clear()
    total = sum(TRIED.values())
    line = (f"hypothesis bad-input suite: {total} cases tried on both backends "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(TRIED.items()))}); outcomes "
            f"{dict(sorted(OUTCOMES.items()))}")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print("\n" + line)
    else:
        print(line)


# ---- running one case on one backend -----------------------------------------------------------------------
def _materialise(case: Case, ctx, kw: Dict[str, Any], backend: str, made: list) -> Dict[str, Any]:
    from aclnn_py.runtime.tensor import DeviceTensor
    out = {}
    for k, v in kw.items():
        if isinstance(v, str) and v in (GROUP_EP, GROUP_TP, GROUP):
            v = ctx.group({GROUP_EP: "ep", GROUP_TP: "tp", GROUP: "ep_barrier"}[v])
        elif backend == "device" and k in case.device_tensors and isinstance(v, np.ndarray):
            v = DeviceTensor.from_numpy(v)
            made.append(v)
        out[k] = v
    return out


def _to_host(result: Any) -> Any:
    if isinstance(result, tuple):
        return tuple(_to_host(r) for r in result)
    if hasattr(result, "numpy") and hasattr(result, "free"):
        a = result.numpy()
        result.free()
        return a
    return np.asarray(result)


def run_case(case: Case, backend: str):
    """('ok', {rank: outputs}) or ('err', root rank, {rank: error}); asserts it did not hang."""
    w = world_for(backend, case.ep, case.tp)
    ranks = [g for g, kw in enumerate(case.kwargs) if kw is not None]

    def fn(ctx):
        made: list = []
        try:
            kw = _materialise(case, ctx, case.kwargs[ctx.rank], backend, made)
            args = [kw.pop(k) for k in POSITIONAL[case.op]]
            out = OPS[case.op](*args, **kw)
            return _to_host(out) if case.op != "barrier" else None
        finally:
            for t in made:
                t.free()

    t0 = time.monotonic()
    try:
        results = w.run(fn, ranks=ranks)
        outcome = ("ok", {g: results[g] for g in ranks})
    except BaseException as e:  # noqa: BLE001 - classified below
        root = next(g for g, err in w.last_errors.items() if err is e)
        outcome = ("err", root, dict(w.last_errors))
    elapsed = time.monotonic() - t0
    assert elapsed < CASE_TIMEOUT_S, f"{case.what} on {backend}: took {elapsed:.1f} s (a hang)"
    return outcome


def _names_param(err: BaseException, params: Tuple[str, ...]) -> bool:
    text = str(err)
    for p in params:
        camel = p.split("_")[0] + "".join(s.title() for s in p.split("_")[1:])
        if f"'{p}'" in text or p in text or camel in text:
            return True
    return False


def check_outcome(case: Case, backend: str, outcome) -> None:
    where = f"{case.what} on {backend}"
    if outcome[0] == "ok":
        assert case.expect is None, f"{where}: succeeded but must raise {case.expect}"
        return
    _, root, errors = outcome
    err = errors[root]
    assert case.expect is not None, f"{where}: unexpected failure on rank {root}: {err!r}"
    ex = case.expect
    running = tuple(g for g, kw in enumerate(case.kwargs) if kw is not None)
    corrupted = ex.ranks if ex.ranks is not None else running
    if backend == "device" and case.device_tensors:
        # values on the device are checked by the kernel: every rank's collective fails at sync (AI Core
        # exception, 507015), in no particular order; some rank's message names the parameter
        assert sorted(errors) == list(running), f"{where}: not every rank failed: {errors}"
        for g, e in errors.items():
            assert isinstance(e, (AclError, AclnnError, CollectiveError)), f"{where}: rank {g} raised {e!r}"
            assert e.status in ex.statuses + (507015,), f"{where}: rank {g}: {e}"
        assert any(_names_param(e, ex.params) for e in errors.values()), f"{where}: no message names {ex.params}"
        return
    kinds = ex.kinds
    assert isinstance(err, kinds), f"{where}: rank {root} raised {err!r}, want one of {kinds}"
    if isinstance(err, AclnnPyError):
        statuses = ex.statuses + ((507015,) if isinstance(err, AclError) else ())
        assert err.status in statuses, f"{where}: status {err.status} not in {statuses}: {err}"
    assert _names_param(err, ex.params), f"{where}: message does not name {ex.params}: {err}"
    if not isinstance(err, InconsistentParametersError):
        assert root in corrupted, f"{where}: the first failure is on rank {root}, not a corrupted rank {corrupted}"
    for g, e in errors.items():
        if g in corrupted or isinstance(e, InconsistentParametersError):
            continue
        # a victim: it must say which rank failed, and fail with a collective / runtime status
        assert isinstance(e, (CollectiveError, AclError)), f"{where}: victim rank {g} raised {e!r}"
        assert e.status == 507015, f"{where}: victim rank {g}: {e}"
        assert any(f"rank {c}" in str(e) for c in corrupted), f"{where}: victim rank {g} names no failed rank: {e}"


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def same_outputs(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_outputs(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(_bits(a), _bits(b))


TRANSIENT = ("buffer", "tensor", "executor", "array")


def run_both(case: Case) -> None:
    TRIED[case.op] += 1
    with env(**TINY):
        before = {k: v for k, v in live_objects(_lib()).items() if k in TRANSIENT}
        ref = run_case(case, "reference")
        check_outcome(case, "reference", ref)
        dev = run_case(case, "device")
        check_outcome(case, "device", dev)
        world_for("device", case.ep, case.tp).release_cached()      # what its streams keep for reuse
        after = {k: v for k, v in live_objects(_lib()).items() if k in TRANSIENT}
    assert after == before, f"{case.what}: simulator objects leaked: {before} -> {after}"
    OUTCOMES[ref[0]] += 1
    assert ref[0] == dev[0], f"{case.what}: reference {ref[0]}, simulator {dev[0]}: {ref} / {dev}"
    if ref[0] == "ok":
        for g in ref[1]:
            assert same_outputs(ref[1][g], dev[1][g]), f"{case.what}: rank {g} outputs differ between backends"
    elif not case.device_tensors:
        r_err, d_err = ref[2][ref[1]], dev[2][dev[1]]
        assert type(r_err) is type(d_err) and getattr(r_err, "status", None) == getattr(d_err, "status", None), \
            f"{case.what}: reference raised {r_err!r}, simulator {d_err!r}"


def _lib():
    from aclnn_py.runtime.library import get_library
    return get_library()


# ---- valid configurations ------------------------------------------------------------------------------------
@st.composite
def scenarios(draw, combine: str = "combine") -> Scenario:
    ep, tp = draw(st.sampled_from([(2, 0), (3, 0), (4, 0), (2, 2)]))
    shared = [(1, 0), (0, 0)] + ([(1, 1)] if ep >= 3 and tp == 0 else [])
    s, r = draw(st.sampled_from(shared))
    L = 1 if tp == 2 else draw(st.integers(1, 2))
    m = L * (ep - r)
    zcc = (0, 0, 0) if tp == 2 else draw(st.sampled_from([(0, 0, 0), (0, 0, 0), (1, 0, 0), (0, 1, 1)]))
    removed: tuple = ()
    if tp == 0 and ep - r >= 3 and draw(st.booleans()):
        removed = (draw(st.integers(r, ep - 1)),)
    m_ids = L * (ep - len(removed) - r)
    k = draw(st.integers(1, min(4, m_ids + sum(zcc))))
    bs = draw(st.integers(1, 5))
    mask = draw(st.sampled_from(["none", "1d", "2d"]))
    global_bs = draw(st.sampled_from([0, ep * bs, ep * (bs + 1)])) if mask == "none" else 0
    dtype = bfloat16 if combine == "add_rms_norm" else draw(st.sampled_from([bfloat16, np.float16]))
    return Scenario(name="fuzz", ep_world_size=ep, tp_world_size=tp, bs=bs, h=1024, k=k, moe_expert_num=m,
                    shared_expert_num=s, shared_expert_rank_num=r, quant_mode=draw(st.sampled_from([0, 2])),
                    smooth_scales=draw(st.booleans()), global_bs=global_bs, vary_bs=global_bs > ep * bs,
                    zero_expert_num=zcc[0], copy_expert_num=zcc[1], const_expert_num=zcc[2], mask=mask,
                    removed=removed, combine=combine, dtype=dtype, seed=draw(st.integers(0, 2**16)))


def dispatch_kwargs(sc: Scenario) -> List[Optional[Dict[str, Any]]]:
    out: List[Optional[Dict[str, Any]]] = []
    info = sc.elastic_info()
    for g, inp in enumerate(sc.inputs()):
        if inp is None:
            out.append(None)
            continue
        kw = dict(x=inp["x"], expert_ids=inp["expert_ids"], group_ep=GROUP_EP, group_tp=GROUP_TP,
                  ep_world_size=sc.ep_world_size, ep_rank_id=g // sc.tpf, tp_world_size=sc.tp_world_size,
                  tp_rank_id=g % sc.tpf, moe_expert_num=sc.moe_expert_num, elastic_info=info,
                  shared_expert_num=sc.shared_expert_num, shared_expert_rank_num=sc.shared_expert_rank_num,
                  quant_mode=sc.quant_mode, global_bs=sc.global_bs, zero_expert_num=sc.zero_expert_num,
                  copy_expert_num=sc.copy_expert_num, const_expert_num=sc.const_expert_num)
        if "scales" in inp:
            kw["scales"] = inp["scales"]
        if "x_active_mask" in inp:
            kw["x_active_mask"] = inp["x_active_mask"]
        out.append(kw)
    return out


def combine_kwargs(sc: Scenario) -> List[Optional[Dict[str, Any]]]:
    """Per-rank combine arguments made from a reference dispatch of the scenario's inputs."""
    inputs = sc.inputs()
    per = lambda key: [None if i is None else i.get(key) for i in inputs]  # noqa: E731
    info = sc.elastic_info()
    d = reference.moe_distribute_dispatch_v3(
        per("x"), per("expert_ids"), scales=per("scales") if sc.quant_mode == 2 and sc.smooth_scales else None,
        x_active_mask=per("x_active_mask") if sc.mask != "none" else None, elastic_info=info,
        quant_mode=sc.quant_mode, group_ep="ep", group_tp="tp", **sc.attributes())
    out: List[Optional[Dict[str, Any]]] = []
    for g, (inp, o) in enumerate(zip(inputs, d)):
        if inp is None:
            out.append(None)
            continue
        kw = dict(expand_x=ffn_stand_in(o.expand_x, o.dynamic_scales, sc.dtype), expert_ids=inp["expert_ids"],
                  assist_info_for_combine=o.assist_info_for_combine, ep_send_counts=o.ep_recv_counts,
                  expert_scales=inp["expert_scales"], tp_send_counts=o.tp_recv_counts, group_ep=GROUP_EP,
                  group_tp=GROUP_TP, ep_world_size=sc.ep_world_size, ep_rank_id=g // sc.tpf,
                  tp_world_size=sc.tp_world_size, tp_rank_id=g % sc.tpf, elastic_info=info, **{
                      k: v for k, v in sc.attributes().items() if k not in ("ep_world_size", "tp_world_size")})
        kw.update(scenario.combine_kwargs(sc, inp))
        if sc.combine == "add_rms_norm":
            kw.update(residual_x=inp["residual_x"], gamma=inp["gamma"])
        out.append(kw)
    return out


# ---- corruptions ---------------------------------------------------------------------------------------------
INVALID, NULLPTR, TILING = 161002, 161001, 561002
Mutator = Callable[[Any, Case, int], Optional[Expect]]


def _one_rank(draw, case: Case) -> int:
    return draw(st.sampled_from([g for g, kw in enumerate(case.kwargs) if kw is not None]))


def _each(case: Case, fn: Callable[[Dict[str, Any]], None]) -> None:
    for kw in case.kwargs:
        if kw is not None:
            fn(kw)


def mut_dtype(draw, case: Case):
    g = _one_rank(draw, case)
    kw = case.kwargs[g]
    name = draw(st.sampled_from([k for k in POSITIONAL[case.op] if isinstance(kw.get(k), np.ndarray)]
                                + (["x_active_mask"] if isinstance(kw.get("x_active_mask"), np.ndarray) else [])
                                + (["elastic_info"] if kw.get("elastic_info") is not None else [])))
    cur = np.asarray(kw[name]).dtype
    pool = (np.float32, np.int64, np.float64, np.int8, np.complex64, np.uint8)
    if case.op == "barrier" and name == "x_ref":
        pool = (np.float64, np.complex64)   # x_ref takes any of the 12 common dtypes
    bad = draw(st.sampled_from([d for d in pool if np.dtype(d) != cur]))
    kw[name] = np.asarray(kw[name]).astype(bad)
    # the op definition's dtype lists: 161002; the tiling's narrower lists: 561002
    return Expect((name,), (INVALID, TILING), ranks=(g,))


def mut_ndim(draw, case: Case):
    g = _one_rank(draw, case)
    kw = case.kwargs[g]
    name = draw(st.sampled_from([k for k in POSITIONAL[case.op] if isinstance(kw.get(k), np.ndarray)]))
    a = kw[name]
    kw[name] = a[None] if draw(st.booleans()) or a.ndim == 1 else a.reshape(-1)
    if case.op == "barrier":
        kw[name] = np.zeros((1,) * 9, a.dtype)  # 9-D: beyond the 8 dimensions any aclTensor may have
        return Expect(("x_ref",), (INVALID,), ranks=(g,))
    return Expect((name, "expert_ids", "x", "expand_x", "x_active_mask", "expert_scales", "residual_x"),
                  (TILING, INVALID), ranks=(g,))


def mut_empty_batch(draw, case: Case):
    """BS = 0 on every rank (an empty batch): every per-token tensor loses its rows."""
    def cut(kw):
        for k in ("x", "expert_ids", "expert_scales", "x_active_mask", "residual_x", "ori_x", "shared_expert_x"):
            if isinstance(kw.get(k), np.ndarray):
                kw[k] = kw[k][:0]
        if kw.get("global_bs"):
            kw["global_bs"] = 0
    _each(case, cut)
    return Expect(("x", "expert_ids"), (TILING,))


def mut_nan_inf(draw, case: Case):
    """NaN / inf in the activations: valid input, must compute (and match bit for bit)."""
    name = {"dispatch": "x", "combine": "expand_x", "arn": "expand_x", "barrier": "x_ref"}[case.op]
    g = _one_rank(draw, case)
    a = case.kwargs[g][name].copy()
    if a.size == 0 or a.dtype.kind not in "fV" and a.dtype != bfloat16:
        return None
    nan_ok = "nan_quant" not in KNOWN_GAPS or case.kwargs[g].get("quant_mode", 0) != 2
    flat = a.reshape(-1)
    idx = draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=4))
    values = [np.nan, np.inf, -np.inf] if nan_ok else [np.inf, -np.inf]
    for i, v in zip(idx, draw(st.lists(st.sampled_from(values), min_size=len(idx), max_size=len(idx)))):
        flat[i] = v
    case.kwargs[g][name] = a
    return None


def _active_pair(kw) -> Tuple[int, int]:
    mask = kw.get("x_active_mask")
    if mask is not None:
        if mask.ndim == 1:
            mask[0] = True
        else:
            mask[0, 0] = True
    return 0, 0


def mut_id_range(draw, case: Case):
    g = _one_rank(draw, case)
    kw = case.kwargs[g]
    ids = kw["expert_ids"].copy()
    if "x_active_mask" in kw and kw["x_active_mask"] is not None:
        kw["x_active_mask"] = kw["x_active_mask"].copy()
    t, j = _active_pair(kw)
    total = kw["moe_expert_num"] + kw.get("zero_expert_num", 0) + kw.get("copy_expert_num", 0) \
        + kw.get("const_expert_num", 0)
    ids[t, j] = draw(st.sampled_from([-1, -2**31, total, total + 7, 2**31 - 1]))
    kw["expert_ids"] = ids
    special = total > kw["moe_expert_num"] and ids[t, j] >= 0
    if case.op == "dispatch" and draw(st.booleans()) and not (special and "sim_special_ids" in KNOWN_GAPS):
        case.device_tensors = ("expert_ids",)   # the host cannot see the values: the kernel must refuse them
    return Expect(("expert_ids",), (TILING,), ranks=(g,))


def mut_duplicate_ids(draw, case: Case):
    g = _one_rank(draw, case)
    kw = case.kwargs[g]
    if kw["expert_ids"].shape[1] < 2:
        return mut_id_range(draw, case)
    ids = kw["expert_ids"].copy()
    if "x_active_mask" in kw and kw["x_active_mask"] is not None:
        mask = kw["x_active_mask"] = kw["x_active_mask"].copy()
        if mask.ndim == 1:
            mask[0] = True
        else:
            mask[0, :2] = True
    ids[0, 1] = ids[0, 0]
    kw["expert_ids"] = ids
    return Expect(("expert_ids",), (TILING,), ranks=(g,))


def mut_unordered_mask(draw, case: Case):
    g = _one_rank(draw, case)
    kw = case.kwargs[g]
    bs = kw["expert_ids"].shape[0]
    if bs < 2 or len({k["expert_ids"].shape[0] for k in case.kwargs if k is not None}) > 1:
        return mut_duplicate_ids(draw, case)   # a mask needs BS >= 2 and the same BS everywhere
    mask = np.ones(bs, bool)
    mask[draw(st.integers(0, bs - 2))] = False   # a False before a True
    kw["x_active_mask"] = mask
    _each(case, lambda k: k.__setitem__("global_bs", 0))
    if any(k.get("x_active_mask") is None for k in case.kwargs if k is not None and k is not kw):
        # the others get an all-True 1-D mask, so only this rank's order is wrong
        for k in case.kwargs:
            if k is not None and k is not kw:
                k["x_active_mask"] = np.ones(k["expert_ids"].shape[0], bool)
    return Expect(("x_active_mask",), (TILING,), ranks=(g,))


def mut_group_name(draw, case: Case):
    key = {"barrier": "group"}.get(case.op, "group_ep")
    name, statuses = draw(st.sampled_from([
        ("", (NULLPTR,) if case.op != "barrier" else (INVALID,)),   # the barrier's op_api only logs it
        ("g" * 127, (INVALID,)),                  # well formed, but no such communicator
        ("g" * 128, (NULLPTR, INVALID)),          # one byte too long (HCCL_GROUP_NAME_MAX)
        ("组通信域", (INVALID,)),                   # non-ASCII, unknown
        ("é" * 64, (NULLPTR, INVALID)),           # 64 characters but 128 bytes in UTF-8
        ("é" * 63 + "g", (INVALID,)),             # 127 bytes
    ]))
    _each(case, lambda kw: kw.__setitem__(key, name))
    return Expect((key,), statuses)


def mut_attribute(draw, case: Case):
    """An attribute out of its range, on every rank (consistent, so validation is what fails)."""
    kw0 = next(k for k in case.kwargs if k is not None)
    if case.op == "barrier":
        name, value = draw(st.sampled_from([("world_size", 1), ("world_size", 385), ("world_size", -3)]))
    else:
        choices = [("ep_world_size", 1), ("ep_world_size", 769), ("moe_expert_num", 0), ("moe_expert_num", 1025),
                   ("tp_world_size", 3), ("expert_shard_type", 1), ("shared_expert_num", 5),
                   ("zero_expert_num", -5), ("global_bs", kw0["ep_world_size"] * 8 + 1)]   # not a multiple of ep
        if case.op == "dispatch":
            choices += [("quant_mode", 1), ("quant_mode", 3), ("comm_alg", "bogus"), ("expert_token_nums_type", 2)]
        else:
            choices += [("comm_quant_mode", 1)]
        name, value = draw(st.sampled_from(choices))
        if name == "moe_expert_num" and value == 0 and kw0["moe_expert_num"] == 0:
            return None
    _each(case, lambda kw: kw.__setitem__(name, value))
    params = (name, "ep_rank_id", "moe_expert_num", "x", "expert_ids", "shared_expert_rank_num", "scales",
              "tp_rank_id", "group_tp", "world_size")
    return Expect(params, (TILING, INVALID))


def mut_python_type(draw, case: Case):
    """An integer attribute given as a float or a string: TypeError/ValueError/AclnnError naming it."""
    name = "world_size" if case.op == "barrier" else draw(st.sampled_from(["moe_expert_num", "ep_world_size"]))
    bad = draw(st.sampled_from(["abc", 2.5, None, [4]]))
    _each(case, lambda kw: kw.__setitem__(name, bad))
    return Expect((name,), (TILING, INVALID, NULLPTR), kinds=(AclnnError, TypeError, ValueError))


def mut_inconsistent(draw, case: Case):
    """One rank passes a different (locally valid) value: every rank must fail, naming it."""
    g = _one_rank(draw, case)
    kw = case.kwargs[g]
    if case.op == "barrier":
        return mut_attribute(draw, case)
    options = []
    if case.op == "dispatch":
        if 2 * kw["moe_expert_num"] <= 1024 and case.tp == 0 and kw.get("elastic_info") is None \
                and kw.get("scales") is None:
            options.append(("moe_expert_num", 2 * kw["moe_expert_num"]))
        options.append(("expert_token_nums_type", 1 - kw.get("expert_token_nums_type", 1)))
    elif case.tp == 0:
        options.append(("comm_quant_mode", 2 - kw.get("comm_quant_mode", 0)))
    if case.op == "arn":
        options.append(("norm_eps", 1e-3))
    if kw.get("global_bs", 0) and case.op == "dispatch":   # combine's expand_x rows depend on it
        options.append(("global_bs", kw["global_bs"] + kw["ep_world_size"]))
    if kw.get("x_active_mask") is not None and case.op == "dispatch":
        options.append(("x_active_mask", None))   # present on the others, absent here: legal (acts locally)
    if not options:
        return None
    name, value = draw(st.sampled_from(options))
    kw[name] = value
    if name == "x_active_mask":
        return None
    others = tuple(x for x, k in enumerate(case.kwargs) if k is not None)
    return Expect((name,), (TILING,), kinds=(InconsistentParametersError,), ranks=others)


MUTATIONS = {
    "none": lambda draw, case: None, "dtype": mut_dtype, "ndim": mut_ndim, "empty_batch": mut_empty_batch,
    "nan_inf": mut_nan_inf, "id_range": mut_id_range, "duplicate_ids": mut_duplicate_ids,
    "unordered_mask": mut_unordered_mask, "group_name": mut_group_name, "attribute": mut_attribute,
    "python_type": mut_python_type, "inconsistent": mut_inconsistent,
}
MOE_ONLY = {"id_range", "duplicate_ids", "unordered_mask", "empty_batch"}
# (op, corruption) the suite found and that are not fixed yet: each has a strict xfail test below.
KNOWN_GAPS: set = set()


@st.composite
def cases(draw, op: str) -> Case:
    if op == "barrier":
        ep = draw(st.sampled_from([2, 3, 4]))
        removed = draw(st.sampled_from([(), (), (1,)])) if ep >= 3 else ()
        from aclnn_py.layout import make_elastic_info
        info = make_elastic_info(ep, list(removed)) if removed else None
        dt = draw(st.sampled_from([np.float32, bfloat16, np.int8, np.bool_, np.int64, np.uint16]))
        shape = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=3)))
        kwargs = [None if g in removed else dict(x_ref=np.zeros(shape, dt), group=GROUP, world_size=ep,
                                                  elastic_info=info,
                                                  time_out=draw(st.sampled_from([None, 5_000_000])))
                  for g in range(ep)]
        case = Case(op, ep, 0, kwargs, None, "")
    else:
        sc = draw(scenarios("add_rms_norm" if op == "arn" else "combine"))
        kwargs = dispatch_kwargs(sc) if op == "dispatch" else combine_kwargs(sc)
        case = Case(op, sc.ep_world_size, sc.tp_world_size, kwargs, None, "")
    names = [n for n in MUTATIONS if (op != "barrier" or n not in MOE_ONLY) and (op, n) not in KNOWN_GAPS]
    kind = draw(st.sampled_from(names))
    case.expect = MUTATIONS[kind](draw, case)
    case.what = f"{op}[{kind}] ep={case.ep} tp={case.tp}"
    return case


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.mark.parametrize("op", ["dispatch", "combine", "arn", "barrier"])
def test_bad_input_ends_in_result_or_named_error(op):
    @SETTINGS
    @given(cases(op))
    def prop(case):
        run_both(case)
    prop()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ACLNN_PY_SLOW"), reason="long exploration: set ACLNN_PY_SLOW=1")
@pytest.mark.parametrize("op", ["dispatch", "combine", "arn", "barrier"])
def test_bad_input_many_cases(op):
    """Random (not derandomised) exploration, 10x the default number of cases per op."""
    @settings(SETTINGS, max_examples=EXAMPLES * 10, derandomize=False)
    @given(cases(op))
    def prop(case):
        run_both(case)
    prop()


# ---- gaps the suite found that are outside this change: strict xfails, so fixing one flips it to XPASS -------
# When one of these starts passing, remove its entry from KNOWN_GAPS above so the property covers it again.
def _combine_args(ctx, **over):
    kw = combine_kwargs(Scenario(ep_world_size=2, bs=2, h=1024, k=1, moe_expert_num=2, combine="combine"))[ctx.rank]
    names = {GROUP_EP: ctx.group("ep"), GROUP_TP: ctx.group("tp")}
    kw = {k: names.get(v, v) if isinstance(v, str) else v for k, v in kw.items()}
    kw.update(over)
    args = [kw.pop(k) for k in POSITIONAL["combine"]]
    return aclnn_py.moe_distribute_combine_v3(*args, **kw)


@pytest.mark.parametrize("op", ["combine", "barrier"])
def test_attribute_of_wrong_python_type_is_named(op):
    with aclnn_py.World.ep_tp(2, backend="reference") as w:
        if op == "combine":
            fn = lambda ctx: _combine_args(ctx, moe_expert_num="abc")  # noqa: E731
            name = "moe_expert_num"
        else:
            fn = lambda ctx: aclnn_py.distribute_barrier_v2(np.zeros(2, np.float32), group=ctx.group("ep_barrier"),  # noqa: E731
                                                            world_size="abc")
            name = "world_size"
        with pytest.raises((AclnnError, TypeError, ValueError)) as e:
            w.run(fn)
    assert name in str(e.value), str(e.value)


def test_known_gap_nan_with_dynamic_quant_agrees(sim_library):
    sc = Scenario(ep_world_size=2, bs=1, h=1024, k=1, moe_expert_num=2, quant_mode=2, combine="combine")
    case = Case("dispatch", 2, 0, dispatch_kwargs(sc), None, "dispatch[nan, quant_mode=2]")
    case.kwargs[0]["x"] = case.kwargs[0]["x"].copy()
    case.kwargs[0]["x"][0, 0] = np.nan
    run_both(case)


def test_known_gap_simulator_refuses_out_of_range_special_id(cann_sim_home):
    import subprocess
    import sys
    code = """
import os, numpy as np, aclnn_py
from aclnn_py.runtime.tensor import DeviceTensor
def fn(ctx):
    ids = DeviceTensor.from_numpy(np.array([[3 if ctx.rank == 0 else 1]], np.int32))
    try:
        out = aclnn_py.moe_distribute_dispatch_v3(np.ones((1, 1024), aclnn_py.dtypes.bfloat16), ids,
            group_ep=ctx.group("ep"), ep_world_size=2, ep_rank_id=ctx.ep_rank, moe_expert_num=2, zero_expert_num=1)
        for t in out: t.free()
    finally:
        ids.free()
with aclnn_py.World.ep_tp(2, backend="device") as w:
    try:
        w.run(fn)
        print("ACCEPTED")
    except aclnn_py.AclnnPyError as e:
        print("REFUSED", e)
"""
    env_ = dict(os.environ, ACLNN_PY_CANN_HOME=str(cann_sim_home), ACLNN_SIM_HANG_TIMEOUT_MS="5000")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env_)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "REFUSED" in r.stdout and "expert" in r.stdout.lower(), r.stdout
