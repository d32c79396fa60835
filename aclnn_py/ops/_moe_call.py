"""Machinery shared by the three MoE wrappers: names, ABI checks, device and reference execution."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from ..errors import ACLNN_ERR_INNER_FIND_KERNEL_ERROR, ACLNN_ERR_INNER_TILING_ERROR, AclnnError, CollectiveError
from ..layout import parse_elastic_info
from ..runtime import abi
from ._call import Temporaries, host, require_rank, resolve_stream

# The header each operator is declared in, relative to $home/include (spec/abi.md §2.4 hazard).
HEADERS = {
    "aclnnMoeDistributeDispatchV3": "aclnnop/aclnn_moe_distribute_dispatch_v3.h",
    "aclnnMoeDistributeCombineV3": "aclnnop/aclnn_moe_distribute_combine_v3.h",
    "aclnnMoeDistributeCombineAddRmsNormV2": "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h",
}


def snake(c_name: str) -> str:
    """torch_npu's keyword for a C parameter: ``xActiveMaskOptional`` -> ``x_active_mask``,
    ``constExpertAlpha1Optional`` -> ``const_expert_alpha_1``, ``expandXOut`` -> ``expand_x``."""
    base = re.sub(r"(Optional|Out)$", "", c_name)
    return re.sub(r"(?<=[a-z0-9])([A-Z])|(?<=[a-zA-Z])([0-9])", lambda m: "_" + m.group(0).lower(), base).lower()


@lru_cache(maxsize=None)
def keyword_map(op_name: str) -> Dict[str, str]:
    """snake_case keyword -> C parameter name for every parameter of ``op_name``."""
    return {snake(c): c for c, _ in abi.OPS[op_name].params}


class HostTensor(np.ndarray):
    """A reference-backend result: a numpy array with the DeviceTensor methods (``numpy``, ``free``)."""

    def numpy(self) -> np.ndarray:
        return np.asarray(self).copy()

    def free(self) -> None:
        pass

    @property
    def handle(self):  # lets reference results be passed back in like device tensors
        return None


def as_host_tensor(a: np.ndarray) -> HostTensor:
    return np.asarray(a).view(HostTensor)


_checked: Dict[str, bool] = {}


def check_installed_abi(op_name: str) -> None:
    """Refuse to call ``op_name`` when the install does not have the ABI aclnn_py binds."""
    if _checked.get(op_name):
        return
    from ..runtime.device import acl_init
    lib = acl_init()
    family = next(f for f, names in abi.OP_FAMILIES.items() if op_name in names)
    available = [n for n in abi.OP_FAMILIES[family] if _exports(lib, n)]
    if op_name not in available:
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op_name,
                         f"not exported by the CANN at {lib.install.home}; it has {available or 'no version'} "
                         f"of {family}. aclnn_py binds {op_name} only, to avoid calling with a wrong argument list")
    header = lib.install.home / "include" / HEADERS.get(op_name, "")
    if op_name in HEADERS and header.is_file() and "performanceInfoOptional" in header.read_text(errors="replace"):
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op_name,
                         f"{header} declares performanceInfoOptional, i.e. a {abi.OPS[op_name].arg_count + 1}-argument "
                         f"{op_name} (a development-snapshot ABI); aclnn_py binds the released "
                         f"{abi.OPS[op_name].arg_count}-argument form and refuses to call it")
    _checked[op_name] = True


def _exports(lib, name: str) -> bool:
    try:
        lib.op(name)
        return True
    except AclnnError:
        return False


def run_on_device(op_name: str, kwargs: Mapping[str, Any], outputs: Mapping[str, Any], stream: Any,
                  sync: bool) -> Dict[str, Any]:
    """Upload inputs, allocate zero-filled outputs, run both phases; returns the output DeviceTensors."""
    from ..runtime.twophase import run_two_phase
    check_installed_abi(op_name)
    kmap = keyword_map(op_name)
    stream = resolve_stream(stream)
    with Temporaries(stream, sync) as tmp:
        values: Dict[str, Any] = {}
        for key, value in kwargs.items():
            c = kmap[key]
            values[c] = tmp.device(value) if dict(abi.OPS[op_name].params)[c] == abi.TENSOR else value
        outs = {name: tmp.zeros(spec) for name, spec in outputs.items()}
        values.update({kmap[name]: t for name, t in outs.items()})
        run_two_phase(op_name, values, stream, sync=sync)
        return {name: tmp.keep(t) for name, t in outs.items()}


# ---- reference backend ------------------------------------------------------------------------
def component(ctx, group_ep: str, group_tp: str, tp_world_size: int) -> List[int]:
    """Global ranks whose data this rank's call depends on: its EP group, and with TP = 2 the EP
    groups of every TP peer of its members."""
    world = ctx.world
    ep = world.membership(group_ep, ctx.rank)
    ranks = set(ep.members)
    if tp_world_size == 2:
        tp_label = world.membership(group_tp, ctx.rank).label
        for m in list(ranks):
            for peer in world.ranks[m].groups[tp_label].members:
                ranks.update(world.ranks[peer].groups[ep.label].members)
    return sorted(ranks)


def removed_positions(elastic_info: Any, ep_world_size: int) -> List[int]:
    info = parse_elastic_info(host(elastic_info), ep_world_size)
    if info is None or not info.enabled:
        return []
    return [r for r in range(ep_world_size) if info.to_new[r] == -1]


RANK_KEYS = ("ep_rank_id", "tp_rank_id", "group_ep", "group_tp")


def run_on_reference(op: str, kwargs: Dict[str, Any], tensor_keys: List[str],
                     world_fn: Callable[..., list], wrap: Callable[[Any], Any]) -> Any:
    """Meet the other ranks of the EP x TP component and compute the world-level reference once.

    ``tensor_keys``: per-rank tensor keywords (passed to ``world_fn`` as lists by position
    ``ep_rank_id * max(tp,1) + tp_rank_id``); every other keyword must agree across ranks.
    """
    ctx = require_rank(op)
    tp = kwargs.get("tp_world_size", 0)
    ep_size = kwargs["ep_world_size"]
    ranks = component(ctx, kwargs["group_ep"], kwargs.get("group_tp", ""), tp)
    tpf = max(tp, 1)
    gone = set(removed_positions(kwargs.get("elastic_info"), ep_size))
    participants = [g for g in ranks if (g // tpf) not in gone] if gone else ranks
    key = f"{op}:{','.join(map(str, ranks))}"
    payload = {k: (host(v) if k in tensor_keys or k == "elastic_info" else v) for k, v in kwargs.items()}

    def compute(payloads: Dict[int, Dict[str, Any]]) -> Dict[int, Any]:
        first_rank = min(payloads)
        first = payloads[first_rank]
        shared = {k: v for k, v in first.items() if k not in tensor_keys and k not in RANK_KEYS}
        for g, p in payloads.items():
            for k, v in shared.items():
                if not _same(p.get(k), v):
                    raise CollectiveError(ACLNN_ERR_INNER_TILING_ERROR, op,
                                          f"rank {g} passed {k}={_short(p.get(k))} but rank {first_rank} passed "
                                          f"{_short(v)}; every rank must pass the same value")
        n = ep_size * tpf
        by_pos: Dict[int, int] = {}
        for g, p in payloads.items():
            pos = p["ep_rank_id"] * tpf + p.get("tp_rank_id", 0)
            if pos in by_pos or not 0 <= pos < n:
                raise CollectiveError(ACLNN_ERR_INNER_TILING_ERROR, op,
                                      f"rank {g} claims ep_rank_id={p['ep_rank_id']}, tp_rank_id={p.get('tp_rank_id', 0)}"
                                      + (f", as does rank {by_pos[pos]}" if pos in by_pos else ", out of range"))
            by_pos[pos] = g
        lists = {}
        for k in tensor_keys:
            entries = [payloads[by_pos[i]].get(k) if i in by_pos else None for i in range(n)]
            lists[k] = None if all(e is None for e in entries) else entries
        extra = {k: v for k, v in shared.items() if v is not None}
        extra["group_ep"] = first["group_ep"]
        if "group_tp" in first:
            extra["group_tp"] = first["group_tp"]
        out = world_fn(**lists, **extra)
        return {g: out[pos] for pos, g in by_pos.items()}

    result = ctx.world.rendezvous.collective(op, key, ctx.rank, participants, payload, compute, ctx.world.timeout_s,
                                             "a real device would hang")
    return wrap(result)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{list(v.reshape(-1)[:8])}"
    return repr(v)

