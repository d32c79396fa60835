"""The validation rules that depend on the CANN release (issue 11 item 2), per release, on both sides.

Each row of :data:`ROWS` is one call and what a release does with it, for the change (``aclnn_py.releases``) that
decides it: under the first release that has the change ("on"), the known release before it ("off") and a release
aclnn_py does not know ("unknown", 9.9.0: only what every known release rejects). The Python validators
(``aclnn_py.validate``) run the call under all three; the simulator runs the same call under "on" and "off"
(``ACLNN_SIM_CANN_VERSION``; aclInit refuses a release it does not know, so "unknown" is Python only) through its
GetWorkspaceSize, with the Python validation bypassed (:func:`sim_outcome`), and must give the same status naming
the same parameter. ``SIM_GAPS``: rows where the simulator departs from the sources (strict xfail on the simulator
side; the Python side follows the sources); each is in docs/decisions.md ("Validation per CANN release").
"""
from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import ml_dtypes
import numpy as np
import pytest

import aclnn_py
from aclnn_py import catalog, profiles, releases, validate
from aclnn_py.catalog import OpDef
from aclnn_py.errors import AclnnError
from aclnn_py.layout import MoeLayout, dispatch_output_specs

BF16 = np.dtype(ml_dtypes.bfloat16)
F32, I32, I64 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)
NULLPTR, INVALID, TILING, NO_KERNEL = 161001, 161002, 561002, 561003
UNKNOWN = "9.9.0"
_SINCE = {c.flag: c.since for c in releases.CHANGES}
KNOWN = sorted({releases.OLD_SNAPSHOT, *_SINCE.values()}, key=releases.version_number)


def releases_of(flag: str) -> Tuple[str, str]:
    """(on, off): the first release with ``flag`` and the known release before it."""
    on = _SINCE[flag]
    return on, KNOWN[KNOWN.index(on) - 1]


class T(NamedTuple):
    """Shape-and-dtype stand-in: the validators read no values from it; the simulator gets zeros."""

    shape: tuple
    dtype: Any
    format: Any = None


NZ = 29   # aclFormat FRACTAL_NZ


@dataclass
class Call:
    """One rank's call: every input and every output by keyword (an output of None is NULL), and HCCL_BUFFSIZE."""

    op: OpDef
    args: Dict[str, Any]
    outputs: Dict[str, Any]
    buffsize: Optional[str] = None

    def but(self, **changes: Any) -> "Call":
        """This call with some inputs or outputs replaced."""
        args, outs = dict(self.args), dict(self.outputs)
        for name, value in changes.items():
            (outs if name in outs else args)[name] = value
        return replace(self, args=args, outputs=outs)


# ---- calls -----------------------------------------------------------------------------------------------
def _ids(bs: int, k: int, m: int) -> np.ndarray:
    return np.array([[(t + j) % m for j in range(k)] for t in range(bs)], np.int32)


def dispatch(op: OpDef = catalog.DISPATCH_V3, *, ep: int = 4, rank: int = 1, m: int = 8, bs: int = 4, h: int = 1024,
             k: int = 2, tp: int = 0, r: int = 0, s: int = 1, gbs: int = 0, qm: int = 0, elastic: bool = False,
             **attrs: Any) -> Call:
    """A valid dispatch call (ep 4, rank 1, M 8, BS 4, H 1024, K 2 by default) with the outputs the layout gives."""
    lay = MoeLayout(ep, rank, m, bs, k, tp, s, r, gbs, elastic)
    args = {p.name: p.default for p in op.inputs if not p.is_tensor}
    args.update({p.name: None for p in op.tensors})
    args.update(x=np.zeros((bs, h), BF16), expert_ids=_ids(bs, k, m), group_ep="ep", ep_world_size=ep, ep_rank_id=rank,
                moe_expert_num=m, tp_world_size=tp, tp_rank_id=0, group_tp="tp" if tp == 2 else "",
                shared_expert_num=s, shared_expert_rank_num=r, global_bs=gbs, quant_mode=qm)
    if elastic:
        args["elastic_info"] = np.array([0, ep, r, m] + list(range(ep)) * 2, np.int32)
    args.update(attrs)
    outs = {n: T(spec.shape, spec.dtype) for n, spec in dispatch_output_specs(lay, h, BF16, qm).items()}
    if qm == 0:
        outs["dynamic_scales"] = None
    return Call(op, args, outs)


def tp2_dispatch(op: OpDef = catalog.DISPATCH_V3, **kw: Any) -> Call:
    return dispatch(op, m=4, tp=2, **kw).but(tp_rank_id=1)


def combine(op: OpDef = catalog.COMBINE_V3, *, ep: int = 4, rank: int = 0, m: int = 4, bs: int = 3, k: int = 2,
            h: int = 1024, tp: int = 0, r: int = 0, s: int = 1, q: int = 0, alpha: str = "1d",
            **attrs: Any) -> Call:
    """A valid CombineV3 / AddRmsNormV2 call (ep 4, rank 0, M 4, BS 3, K 2, H 1024 by default), shapes as torch_npu
    allocates them; ``q`` const experts with 1-D ((Q,)) or 2-D ((Q, H)) alphas."""
    lay = MoeLayout(ep, rank, m, bs, k, tp, s, r, 0)
    tpf, lnum = max(tp, 1), lay.moe_local_expert_num
    args = {p.name: p.default for p in op.inputs if not p.is_tensor}
    args.update({p.name: None for p in op.tensors})
    pool = list(range(m + q))
    ids = np.array([[pool[(t + j) % len(pool)] for j in range(k)] for t in range(bs)], np.int32)
    n_counts = ep if lay.is_shared_rank else ep * lnum
    args.update(expand_x=np.zeros((lay.a * tpf, h), BF16), expert_ids=ids,
                assist_info_for_combine=np.zeros(max(lay.a * 128, 1), np.int32),
                ep_send_counts=np.zeros(n_counts * tpf, np.int32), expert_scales=np.ones((bs, k), np.float32),
                tp_send_counts=np.zeros(tp, np.int32), group_ep="ep", group_tp="tp" if tp == 2 else "",
                ep_world_size=ep, ep_rank_id=rank, moe_expert_num=m, tp_world_size=tp, shared_expert_num=s,
                shared_expert_rank_num=r, const_expert_num=q)
    if q:
        a_shape = (q,) if alpha == "1d" else (q, h)
        args.update(ori_x=np.zeros((bs, h), BF16), const_expert_alpha_1=np.zeros(a_shape, BF16),
                    const_expert_alpha_2=np.zeros(a_shape, BF16), const_expert_v=np.zeros((q, h), BF16))
    if op.has("residual_x"):
        args.update(residual_x=np.zeros((bs, 1, h), BF16), gamma=np.ones(h, BF16))
        outs = {"y": T((bs, 1, h), BF16), "rstd": T((bs, 1, 1), F32), "x": T((bs, 1, h), BF16)}
    else:
        outs = {"x": T((bs, h), BF16)}
    args.update(attrs)
    return Call(op, args, outs)


def arn(**kw: Any) -> Call:
    return combine(catalog.ADD_RMS_NORM_V2, **kw)


def hierarchy_dispatch(op: OpDef = catalog.DISPATCH_V3, **kw: Any) -> Call:
    """A valid comm_alg='hierarchy' dispatch: ep 16, M 16, BS 4, K 2, expert scales, ep_recv_counts long enough
    for the layered template, a window above its 404 MiB base."""
    c = dispatch(op, ep=16, m=16, **kw).but(comm_alg="hierarchy", expert_scales=np.ones((4, 2), np.float32))
    gbs = c.args["global_bs"] or 4 * 16
    return replace(c.but(ep_recv_counts=T((16 + gbs * 2 * 2 * 16 // 8,), I32)), buffsize="1024")


def hierarchy_combine(op: OpDef = catalog.COMBINE_V3, **kw: Any) -> Call:
    c = combine(op, ep=16, m=16, **kw)
    n = (16 * 1 + 3 * 16 * 2 * 2 * 16 // 8) * max(kw.get("tp", 0), 1)
    return replace(c.but(comm_alg="hierarchy", expand_scales=np.zeros(c.args["expand_x"].shape[0], np.float32),
                         ep_send_counts=np.zeros(n, np.int32)), buffsize="1024")


def perf(ep: int = 4, *, dtype: Any = I64, shape: Optional[tuple] = None, fmt: Any = None) -> T:
    return T(shape or (ep,), dtype, fmt)


# ---- running a call ----------------------------------------------------------------------------------------
def python_outcome(call: Call, release: str) -> Optional[AclnnError]:
    """The Python validators' answer under ``release``: the AclnnError raised, or None."""
    fn = getattr(validate, call.op.py_name)
    env = {} if call.buffsize is None else {"HCCL_BUFFSIZE": call.buffsize}
    try:
        fn(**call.args, outputs=call.outputs, env=env, cann_version=release)
    except AclnnError as err:
        return err
    return None


class _Descriptor:
    """An aclTensor descriptor of another format over a DeviceTensor's memory (build_arguments reads .handle)."""

    def __init__(self, lib: Any, t: Any, fmt: int) -> None:
        from aclnn_py.runtime import abi
        from aclnn_py.runtime.tensor import row_major_strides
        dims = abi.int64_array(t.shape or (1,))
        strides = abi.int64_array(row_major_strides(t.shape) or (1,))
        self.lib, self.tensor = lib, t
        self.handle = lib.aclCreateTensor(dims, len(t.shape), t.acl_dtype, strides, 0, fmt, dims, len(t.shape), t.ptr)

    def free(self) -> None:
        self.lib.aclDestroyTensor(self.handle)


def _device(lib: Any, value: Any, made: list) -> Any:
    from aclnn_py.runtime.tensor import DeviceTensor
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        t = DeviceTensor.from_numpy(value)
    else:
        t = DeviceTensor.zeros(value.shape, value.dtype)
    made.append(t)
    fmt = getattr(value, "format", None)
    if fmt is None:
        return t
    d = _Descriptor(lib, t, fmt)
    made.append(d)
    return d


def sim_outcome(call: Call, release: str, monkeypatch: pytest.MonkeyPatch) -> Optional[AclnnError]:
    """The simulator's GetWorkspaceSize under ``release`` for the same call, with no Python validation: the
    AclnnError it returns, or None (the executor it made is destroyed unlaunched)."""
    from aclnn_py.runtime import abi
    from aclnn_py.runtime.device import initialised_library
    from aclnn_py.runtime.twophase import build_arguments
    monkeypatch.setenv("ACLNN_SIM_CANN_VERSION", release)
    if call.buffsize is None:
        monkeypatch.delenv("HCCL_BUFFSIZE", raising=False)
    else:
        monkeypatch.setenv("HCCL_BUFFSIZE", call.buffsize)
    lib = initialised_library()
    made: list = []
    with aclnn_py.Device(0):
        try:
            values = {p.c_name: _device(lib, (call.outputs if p.is_output else call.args).get(p.name), made)
                      if p.is_tensor else (call.outputs if p.is_output else call.args)[p.name] for p in call.op.params}
            ws, ex = ctypes.c_uint64(0), abi.aclOpExecutorPtr()
            try:
                lib.op(call.op.c_name).get_workspace_size(*build_arguments(call.op, values), ctypes.byref(ws),
                                                           ctypes.byref(ex))
            except AclnnError as err:
                return err
            lib.aclDestroyAclOpExecutor(ex)
            return None
        finally:
            for t in reversed(made):
                t.free()


def _camel(name: str) -> str:
    return re.sub(r"_(\w)", lambda mt: mt.group(1).upper(), name)


# how the simulator's messages name a parameter when it names a group of them or a derived quantity
SIM_ALIASES = {"zero_expert_num": ("zero/copy/const experts",), "moe_expert_num": ("localMoeExpertNum",),
               "HCCL_BUFFSIZE": ("HCCL_BUFFSIZE", "HCCL buffer")}


def names(err: AclnnError, op: OpDef, param: str, side: str) -> bool:
    """Whether ``err`` names ``param``: Python says ``parameter 'name'`` (the window rule: HCCL_BUFFSIZE); the
    simulator uses the C name (``expandXOut``), its camelCase stem, or an alias (:data:`SIM_ALIASES`)."""
    msg = err.message
    if side == "python":
        return f"parameter '{param}'" in msg or (param == "HCCL_BUFFSIZE" and msg.startswith("HCCL_BUFFSIZE"))
    words = set(SIM_ALIASES.get(param, ())) | {_camel(param)}
    if op.has(param):
        words.add(op.param(param).c_name)
    return any(w in msg for w in words)


# ---- the table ---------------------------------------------------------------------------------------------
Expect = Optional[Tuple[int, str]]       # (status, parameter) or None: accepted


@dataclass
class Row:
    """``call`` under the flag's "on" / "off" release and an unknown one: None (accepted) or (status, param)."""

    id: str
    flag: str
    call: Callable[[], Call]
    on: Expect
    off: Expect
    unknown: Expect
    gaps: Tuple[str, ...] = field(default=())   # sides ("on"/"off") where the simulator departs from the sources


def acc(flag: str, id: str, call: Callable[[], Call], on: Expect, off: Expect, unknown: Expect, **kw: Any) -> Row:
    return Row(f"{flag}:{id}", flag, call, on, off, unknown, **kw)


T_ = (TILING, "tp_world_size")
D3, C3, A2, D4, C4 = (catalog.DISPATCH_V3, catalog.COMBINE_V3, catalog.ADD_RMS_NORM_V2, catalog.DISPATCH_V4,
                      catalog.COMBINE_V4)
ROWS = [
    # ---- tp_removed (9.1.0) ------------------------------------------------------------------------------------
    acc("tp_removed", "dispatch tp=2", lambda: tp2_dispatch(), T_, None, None),
    acc("tp_removed", "dispatch tp=-1", lambda: dispatch(tp=0).but(tp_world_size=-1), T_, T_, T_, gaps=("on",)),
    acc("tp_removed", "dispatch tp=0 tp_rank 1", lambda: dispatch().but(tp_rank_id=1), None,
        (TILING, "tp_rank_id"), None),
    acc("tp_removed", "dispatch tp_recv_counts NULL", lambda: dispatch().but(tp_recv_counts=None), None,
        (NULLPTR, "tp_recv_counts"), None),
    acc("tp_removed", "dispatch tp_recv_counts (1,) without TP (the 9.1.0 demo)",
        lambda: dispatch().but(tp_recv_counts=T((1,), I32)), None, (TILING, "tp_recv_counts"), None),
    acc("tp_removed", "dispatch tp_recv_counts 2-D", lambda: dispatch().but(tp_recv_counts=T((1, 1), I32)),
        (TILING, "tp_recv_counts"), (TILING, "tp_recv_counts"), (TILING, "tp_recv_counts")),
    acc("tp_removed", "dispatch group_tp NULL", lambda: dispatch().but(group_tp=None), None, (NULLPTR, "group_tp"),
        None),
    acc("tp_removed", "dispatch tp=2 tp_rank 2", lambda: tp2_dispatch().but(tp_rank_id=2), T_,
        (TILING, "tp_rank_id"), (TILING, "tp_rank_id")),
    acc("tp_removed", "dispatch expand_x rows A - 1 without TP",
        lambda: dispatch().but(expand_x=T((31, 1024), BF16)), (TILING, "expand_x"), (TILING, "expand_x"),
        (TILING, "expand_x")),
    acc("tp_removed", "combine tp=2", lambda: combine(tp=2), T_, None, None),
    acc("tp_removed", "AddRmsNorm tp=2", lambda: arn(tp=2), T_, None, None),
    acc("tp_removed", "combine tp=-1", lambda: combine().but(tp_world_size=-1), T_, T_, T_),
    acc("tp_removed", "combine tp_rank 1", lambda: combine().but(tp_rank_id=1), (TILING, "tp_rank_id"),
        (TILING, "tp_rank_id"), (TILING, "tp_rank_id")),
    acc("tp_removed", "combine tp_send_counts NULL", lambda: combine().but(tp_send_counts=None), None,
        (TILING, "tp_send_counts"), None),
    acc("tp_removed", "combine tp_send_counts (1,) without TP", lambda: combine().but(tp_send_counts=T((1,), I32)),
        None, (TILING, "tp_send_counts"), None),
    acc("tp_removed", "combine group_tp NULL", lambda: combine().but(group_tp=None), None, (NULLPTR, "group_tp"),
        None),
    # ---- const_alpha_2d (8.5.0-beta.1) -------------------------------------------------------------------------
    acc("const_alpha_2d", "alphas (Q,)", lambda: combine(q=1), (TILING, "const_expert_alpha_1"), None, None),
    acc("const_alpha_2d", "alphas (Q, H)", lambda: combine(q=1, alpha="2d"), None, (TILING, "const_expert_alpha_1"),
        None),
    acc("const_alpha_2d", "alphas (Q, H) AddRmsNorm", lambda: arn(q=1, alpha="2d"), None,
        (TILING, "const_expert_alpha_1"), None),
    acc("const_alpha_2d", "alpha_2 (Q, H + 1)",
        lambda: combine(q=1, alpha="2d").but(const_expert_alpha_2=np.zeros((1, 1025), BF16)),
        (TILING, "const_expert_alpha_2"), (TILING, "const_expert_alpha_1"), (TILING, "const_expert_alpha_2")),
    # ---- l_ep_max_2048 (8.5.0-beta.1): ep 8, R 6, M 1024: L 512, L * ep 4096 ---------------------------------
    acc("l_ep_max_2048", "dispatch", lambda: dispatch(ep=8, rank=7, m=1024, bs=1, r=6, s=2),
        (TILING, "moe_expert_num"), None, None),
    acc("l_ep_max_2048", "combine", lambda: combine(ep=8, rank=7, m=1024, bs=1, r=6, s=2),
        (TILING, "moe_expert_num"), None, None),
    # ---- combine_elastic_length (8.5.0-beta.1): the rule holds everywhere, the message differs ------------------
    acc("combine_elastic_length", "length 11", lambda: combine().but(elastic_info=np.zeros(11, np.int32)),
        (TILING, "elastic_info"), (TILING, "elastic_info"), (TILING, "elastic_info")),
    # ---- window_from_comm (8.5.0-beta.1): no communicator here, so both read HCCL_BUFFSIZE -------------------
    acc("window_from_comm", "window too small", lambda: replace(dispatch(bs=512, h=8192), buffsize="163"),
        (TILING, "HCCL_BUFFSIZE"), (TILING, "HCCL_BUFFSIZE"), (TILING, "HCCL_BUFFSIZE")),
    # ---- fullmesh_v2_k12 (8.5.0-beta.1) ------------------------------------------------------------------------
    acc("fullmesh_v2_k12", "K 13", lambda: dispatch(m=16, k=13, comm_alg="fullmesh_v2"), (TILING, "expert_ids"),
        None, None),
    acc("fullmesh_v2_k12", "K 12", lambda: dispatch(m=16, k=12, comm_alg="fullmesh_v2"), None, None, None),
    # ---- fullmesh_v2_open (9.0.0) ------------------------------------------------------------------------------
    acc("fullmesh_v2_open", "mask", lambda: dispatch(comm_alg="fullmesh_v2", x_active_mask=np.ones(4, bool)), None,
        (TILING, "x_active_mask"), None),
    acc("fullmesh_v2_open", "elastic", lambda: dispatch(comm_alg="fullmesh_v2", elastic=True), None,
        (TILING, "elastic_info"), None),
    acc("fullmesh_v2_open", "copy expert", lambda: dispatch(comm_alg="fullmesh_v2", copy_expert_num=1), None,
        (TILING, "zero_expert_num"), None),
    acc("fullmesh_v2_open", "tp 2", lambda: tp2_dispatch(comm_alg="fullmesh_v2"), None, T_, None),
    acc("fullmesh_v2_open", "varying BS", lambda: dispatch(comm_alg="fullmesh_v2", gbs=20), None,
        (TILING, "comm_alg"), None),
    acc("fullmesh_v2_open", "BS 257", lambda: dispatch(comm_alg="fullmesh_v2", bs=257), (TILING, "x"), None, None),
    # ---- assist_128a (9.0.0) -----------------------------------------------------------------------------------
    acc("assist_128a", "3 * A", lambda: dispatch().but(assist_info_for_combine=T((96,), I32)),
        (TILING, "assist_info_for_combine"), None, None),
    acc("assist_128a", "3 * A - 1", lambda: dispatch().but(assist_info_for_combine=T((95,), I32)),
        (TILING, "assist_info_for_combine"), (TILING, "assist_info_for_combine"), (TILING, "assist_info_for_combine")),
    # ---- hierarchy (9.0.0) -------------------------------------------------------------------------------------
    acc("hierarchy", "dispatch", lambda: hierarchy_dispatch(), None, (TILING, "comm_alg"), None),
    acc("hierarchy", "dispatch ep 8", lambda: hierarchy_dispatch().but(ep_world_size=8, moe_expert_num=8),
        (TILING, "ep_world_size"), (TILING, "comm_alg"), (TILING, "ep_world_size")),
    acc("hierarchy", "dispatch elastic", lambda: hierarchy_dispatch(elastic=True),
        (TILING, "elastic_info"), (TILING, "comm_alg"), (TILING, "elastic_info")),
    acc("hierarchy", "dispatch shared ranks", lambda: hierarchy_dispatch(r=1, rank=2),
        (TILING, "shared_expert_rank_num"), (TILING, "comm_alg"), (TILING, "shared_expert_rank_num")),
    acc("hierarchy", "dispatch M 528", lambda: hierarchy_dispatch().but(moe_expert_num=528),
        (TILING, "moe_expert_num"), (TILING, "comm_alg"), (TILING, "moe_expert_num")),
    acc("hierarchy", "dispatch no expert_scales", lambda: hierarchy_dispatch().but(expert_scales=None),
        (TILING, "expert_scales"), (TILING, "comm_alg"), (TILING, "expert_scales")),
    acc("hierarchy", "dispatch expert_scales 1-D", lambda: hierarchy_dispatch().but(expert_scales=T((8,), F32)),
        (TILING, "expert_scales"), (TILING, "comm_alg"), (TILING, "expert_scales"), gaps=("on",)),
    acc("hierarchy", "dispatch 2-D mask", lambda: hierarchy_dispatch(x_active_mask=np.ones((4, 2), bool)),
        (TILING, "x_active_mask"), (TILING, "comm_alg"), (TILING, "x_active_mask")),
    acc("hierarchy", "dispatch zero expert", lambda: hierarchy_dispatch(zero_expert_num=1),
        (TILING, "zero_expert_num"), (TILING, "comm_alg"), (TILING, "zero_expert_num")),
    acc("hierarchy", "dispatch tp 1", lambda: hierarchy_dispatch(tp=1), None, (TILING, "comm_alg"), None),
    acc("hierarchy", "dispatch tp 2", lambda: hierarchy_dispatch(tp=2),
        T_, (TILING, "comm_alg"), T_, gaps=("on",)),
    acc("hierarchy", "dispatch H 1040", lambda: hierarchy_dispatch(h=1040), (TILING, "x"),
        (TILING, "comm_alg"), (TILING, "x")),
    acc("hierarchy", "dispatch ep_recv_counts short", lambda: hierarchy_dispatch().but(ep_recv_counts=T((16,), I32)),
        (TILING, "ep_recv_counts"), (TILING, "comm_alg"), (TILING, "ep_recv_counts")),
    acc("hierarchy", "dispatch window 404 MB", lambda: replace(hierarchy_dispatch(), buffsize="404"),
        (TILING, "HCCL_BUFFSIZE"), (TILING, "comm_alg"), (TILING, "HCCL_BUFFSIZE")),
    acc("hierarchy", "dispatch varying BS", lambda: hierarchy_dispatch(gbs=16 * 5),
        (TILING, "global_bs"), (TILING, "comm_alg"), (TILING, "global_bs")),
    acc("hierarchy", "combine", lambda: hierarchy_combine(), None, (TILING, "comm_alg"), None),
    acc("hierarchy", "combine tp 2", lambda: hierarchy_combine(tp=2), T_, (TILING, "comm_alg"), T_, gaps=("on",)),
    acc("hierarchy", "combine no expand_scales", lambda: hierarchy_combine().but(expand_scales=None),
        (TILING, "expand_scales"), (TILING, "comm_alg"), (TILING, "expand_scales")),
    acc("hierarchy", "combine BS 257", lambda: hierarchy_combine(bs=257), (TILING, "expert_ids"),
        (TILING, "comm_alg"), (TILING, "expert_ids")),
    acc("hierarchy", "combine ep_send_counts short", lambda: hierarchy_combine().but(ep_send_counts=np.zeros(16, I32)),
        (TILING, "ep_send_counts"), (TILING, "comm_alg"), (TILING, "ep_send_counts")),
    acc("hierarchy", "combine V4 performance_info", lambda: hierarchy_combine(C4, performance_info=perf(16)),
        (TILING, "performance_info"), (TILING, "comm_alg"), (TILING, "performance_info")),
    # ---- combine_checks_skipped (9.0.0): the documented rules stay; the message says the release skips them ----
    acc("combine_checks_skipped", "K over the experts",
        lambda: combine().but(expert_ids=np.zeros((3, 5), I32), expert_scales=np.ones((3, 5), np.float32)),
        (TILING, "expert_ids"), (TILING, "expert_ids"), (TILING, "expert_ids")),
    acc("combine_checks_skipped", "AddRmsNorm zero -2", lambda: arn(zero_expert_num=-2),
        (TILING, "zero_expert_num"), (TILING, "zero_expert_num"), (TILING, "zero_expert_num")),
    acc("combine_checks_skipped", "assist short", lambda: combine().but(assist_info_for_combine=np.zeros(10, I32)),
        (TILING, "assist_info_for_combine"), (TILING, "assist_info_for_combine"), (TILING, "assist_info_for_combine")),
    acc("combine_checks_skipped", "ori_x missing", lambda: combine(copy_expert_num=1, moe_expert_num=4),
        (TILING, "ori_x"), (TILING, "ori_x"), (TILING, "ori_x")),
    # ---- expert_scales_optional (9.1.0) ------------------------------------------------------------------------
    acc("expert_scales_optional", "combine expert_scales (0,)",
        lambda: combine().but(expert_scales=np.zeros(0, np.float32)), None, (TILING, "expert_scales"), None),
    acc("expert_scales_optional", "combine expert_scales (BS, 0)",
        lambda: combine().but(expert_scales=np.zeros((3, 0), np.float32)), None, (TILING, "expert_scales"), None),
    acc("expert_scales_optional", "AddRmsNorm expert_scales (0, K)",
        lambda: arn().but(expert_scales=np.zeros((0, 2), np.float32)), None, (TILING, "expert_scales"), None),
    acc("expert_scales_optional", "combine expert_scales NULL", lambda: combine().but(expert_scales=None),
        (NULLPTR, "expert_scales"), (NULLPTR, "expert_scales"), (NULLPTR, "expert_scales")),
    acc("expert_scales_optional", "combine expert_scales (BS, K + 1)",
        lambda: combine().but(expert_scales=np.ones((3, 3), np.float32)),
        (TILING, "expert_scales"), (TILING, "expert_scales"), (TILING, "expert_scales")),
    acc("expert_scales_optional", "dispatch expert_scales", lambda: dispatch(expert_scales=np.ones((4, 2), np.float32)),
        None, None, None),
    acc("expert_scales_optional", "dispatch expert_scales (BS, K + 1)",
        lambda: dispatch(expert_scales=np.ones((4, 3), np.float32)), (TILING, "expert_scales"), None, None),
    acc("expert_scales_optional", "dispatch expand_scales NULL",
        lambda: dispatch(expert_scales=np.ones((4, 2), np.float32)).but(expand_scales=None),
        (TILING, "expand_scales"), None, None),
    acc("expert_scales_optional", "dispatch expand_scales (A - 1,)",
        lambda: dispatch(expert_scales=np.ones((4, 2), np.float32)).but(expand_scales=T((31,), F32)),
        (TILING, "expand_scales"), None, None),
    acc("expert_scales_optional", "dispatch expand_scales int32", lambda: dispatch().but(expand_scales=T((32,), I32)),
        (INVALID, "expand_scales"), None, None),
    # ---- v4 (8.5.0-beta.1): performance_info -------------------------------------------------------------------
    acc("v4", "dispatch", lambda: dispatch(D4, performance_info=perf()), None, (NO_KERNEL, ""), None),
    acc("v4", "combine", lambda: combine(C4, performance_info=perf()), None, (NO_KERNEL, ""), None),
    acc("v4", "dispatch performance_info (ep + 1,)", lambda: dispatch(D4, performance_info=perf(5)),
        (TILING, "performance_info"), (NO_KERNEL, ""), (TILING, "performance_info")),
    acc("v4", "dispatch performance_info int32", lambda: dispatch(D4, performance_info=perf(dtype=I32)),
        (INVALID, "performance_info"), (NO_KERNEL, ""), (INVALID, "performance_info")),
    acc("v4", "dispatch performance_info 2-D", lambda: dispatch(D4, performance_info=perf(shape=(4, 1))),
        (TILING, "performance_info"), (NO_KERNEL, ""), (TILING, "performance_info")),
    acc("v4", "dispatch performance_info NZ", lambda: dispatch(D4, performance_info=perf(fmt=NZ)),
        (TILING, "performance_info"), (NO_KERNEL, ""), (TILING, "performance_info")),
    acc("v4", "combine performance_info (ep + 1,)", lambda: combine(C4, performance_info=perf(5)),
        (TILING, "performance_info"), (NO_KERNEL, ""), (TILING, "performance_info")),
    acc("v4", "combine performance_info NZ", lambda: combine(C4, performance_info=perf(fmt=NZ)),
        (TILING, "performance_info"), (NO_KERNEL, ""), (TILING, "performance_info")),
    acc("v4", "combine performance_info int32", lambda: combine(C4, performance_info=perf(dtype=I32)),
        (INVALID, "performance_info"), (NO_KERNEL, ""), (INVALID, "performance_info")),
]


def _check(err: Optional[AclnnError], expect: Expect, call: Call, side: str) -> None:
    if expect is None:
        assert err is None, f"{side}: expected acceptance, got {err}"
        return
    status, param = expect
    assert err is not None, f"{side}: expected {status} naming {param!r}, got acceptance"
    assert err.status == status, f"{side}: {err}"
    assert not param or names(err, call.op, param, side), f"{side}: does not name {param!r}: {err}"


_STATES = ("on", "off", "unknown")


@pytest.mark.parametrize("state", _STATES)
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_python_rule(row: Row, state: str) -> None:
    on, off = releases_of(row.flag)
    release = {"on": on, "off": off, "unknown": UNKNOWN}[state]
    call = row.call()
    _check(python_outcome(call, release), getattr(row, state), call, "python")


def _sim_params() -> list:
    return [pytest.param(row, state, id=f"{row.id}-{state}",
                         marks=(pytest.mark.xfail(strict=True, reason="simulator gap (docs/decisions.md)"),)
                         if state in row.gaps else ())
            for row in ROWS for state in ("on", "off")]


@pytest.mark.parametrize("row,state", _sim_params())
def test_simulator_agrees(row: Row, state: str, sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    release = releases_of(row.flag)[0 if state == "on" else 1]
    call = row.call()
    _check(sim_outcome(call, release, monkeypatch), getattr(row, state), call, "simulator")


def test_every_change_has_rows() -> None:
    """Every release-dependent rule has a row (v5 and performance_info_a3 change no rule: V5 is not bound, and
    performance_info_a3 only decides whether the kernel writes the tensor)."""
    assert {r.flag for r in ROWS} == set(releases.CHANGE_FLAGS) - {"v5", "performance_info_a3"}


# ---- what the messages say about the release --------------------------------------------------------------
ROW = {r.id: r for r in ROWS}
SKIP = "does not enforce it"
# (row, state, side, fragments the message has, fragments it has not); {on} / {off} stand for the releases
MESSAGES = [
    *[(rid, "on", side, [f"CANN {{on}} {SKIP}"], []) for rid in (
        "combine_checks_skipped:K over the experts", "combine_checks_skipped:assist short",
        "combine_checks_skipped:ori_x missing") for side in ("python", "simulator")],
    *[(rid, "off", side, [], [SKIP]) for rid in (
        "combine_checks_skipped:K over the experts", "combine_checks_skipped:assist short",
        "combine_checks_skipped:ori_x missing") for side in ("python", "simulator")],
    ("combine_checks_skipped:AddRmsNorm zero -2", "off", "python", ["rejects only -1", "CANN {off}"], []),
    ("combine_checks_skipped:AddRmsNorm zero -2", "off", "simulator", ["only rejects -1"], []),
    *[("combine_checks_skipped:AddRmsNorm zero -2", "on", side, [], ["-1"]) for side in ("python", "simulator")],
    ("combine_elastic_length:length 11", "off", "python", ["not enforced", "CANN {off}"], []),
    ("combine_elastic_length:length 11", "off", "simulator", ["skips this rule"], []),
    *[("combine_elastic_length:length 11", "on", side, [], ["not enforced", "skips"]) for side in ("python",
                                                                                                   "simulator")],
    ("window_from_comm:window too small", "on", "python", ["communicator's buffer", "CANN {on}"], []),
    ("window_from_comm:window too small", "off", "python", ["CANN {off} reads it when GetWorkspaceSize runs"],
     ["communicator's buffer"]),
    ("window_from_comm:window too small", "unknown", "python", ["8.5.0.alpha001 reads it", "communicator's buffer"],
     []),
    ("hierarchy:dispatch window 404 MB", "on", "python", ["comm_alg='hierarchy' reads it"], []),
    ("tp_removed:dispatch tp=2", "on", "python", ["CANN {on} has no TP"], []),
    ("tp_removed:combine tp=2", "on", "python", ["CANN {on} has no TP"], []),
    ("tp_removed:dispatch tp=-1", "on", "python", ["documented range"], []),
    ("l_ep_max_2048:dispatch", "on", "python", ["CANN {on}", "2048"], []),
    ("fullmesh_v2_k12:K 13", "on", "python", ["CANN {on}"], []),
    ("fullmesh_v2_open:mask", "off", "python", ["CANN {off}"], []),
    ("assist_128a:3 * A", "on", "python", ["CANN {on}", "128 * A"], []),
    ("hierarchy:dispatch", "off", "python", ["CANN {off}"], []),
    ("tp_removed:dispatch expand_x rows A - 1 without TP", "off", "python", ["documented shape", "CANN {off}"], []),
    ("v4:dispatch", "off", "python", ["not in CANN {off}", "8.5.0-beta.1"], []),
]


@pytest.mark.parametrize("rid,state,side,has,lacks", MESSAGES,
                         ids=[f"{m[0]}-{m[1]}-{m[2]}" for m in MESSAGES])
def test_message_names_the_release(rid: str, state: str, side: str, has: list, lacks: list,
                                   request: pytest.FixtureRequest) -> None:
    row = ROW[rid]
    on, off = releases_of(row.flag)
    release = {"on": on, "off": off, "unknown": UNKNOWN}[state]
    call = row.call()
    if side == "python":
        err = python_outcome(call, release)
    else:
        request.getfixturevalue("sim")
        err = sim_outcome(call, release, request.getfixturevalue("monkeypatch"))
    expect = getattr(row, state)
    if expect is None:
        assert err is None, str(err)
        return
    assert err is not None
    for fragment in has:
        assert fragment.format(on=on, off=off) in err.message, err.message
    for fragment in lacks:
        assert fragment.format(on=on, off=off) not in err.message, err.message


def test_unknown_release_profile_is_the_shared_one() -> None:
    """A release outside the known range (or one that does not parse) has every change unknown; the validators
    then apply only the looser rule of each pair (the ``unknown`` column of :data:`ROWS`)."""
    for text in (UNKNOWN, "8.3.RC1", "banana"):
        prof = profiles.profile_for(text)
        assert not prof.known and all(prof.has(f) is None for f in releases.CHANGE_FLAGS)
        assert "unknown to aclnn_py" in prof.name
