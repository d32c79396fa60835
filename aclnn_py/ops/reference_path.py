"""An operator call on the reference backend: the ranks meet, and the world-level reference runs once.

Every rank of the call's component (:func:`aclnn_py.orchestration.topology.plan`) posts its summary (what
must agree, :func:`aclnn_py.orchestration.precheck.summary`), its position and its per-rank tensors to
the World's rendezvous; the last to arrive checks the summaries (the pre-check, in the same exchange),
builds the per-rank lists the world-level function of :mod:`aclnn_py.reference` takes, runs it and
hands each rank its own entry, wrapped like a device result (:class:`aclnn_py.results.HostTensor`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from .. import reference
from ..catalog import STR, OpDef
from ..errors import ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_PARAM_INVALID, AclnnError, CollectiveError
from ..hostview import host_values
from ..orchestration import precheck, topology
from ..orchestration.rendezvous import Identity
from ..orchestration.world import RankContext, current_rank
from ..results import as_host_tensor


def require_rank(op: OpDef) -> RankContext:
    """Per-rank collective calls on the reference backend must run inside :meth:`World.run`."""
    ctx = current_rank()
    if ctx is None:
        raise AclnnError(ACLNN_ERR_PARAM_INVALID, op.c_name,
                         "on the reference backend a per-rank collective call must run inside "
                         "aclnn_py.World.run (one thread per rank); for whole-world calls use aclnn_py.reference")
    return ctx


def run_on_reference(op: OpDef, args: Mapping[str, Any], cann_version: str) -> Any:
    """This rank's result of ``op`` (``args``: its validated arguments by keyword), from the world reference of
    release ``cann_version``."""
    ctx = require_rank(op)
    plan = topology.plan(op, args, ctx)
    if plan is None:   # validation rejects a rank the elastic table removes; nothing else gets here
        raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op.c_name, "this rank takes no part in the call")
    per_rank, shared = _split(op)
    payload = {"summary": precheck.summary(op, args), "position": plan.position,
               "per_rank": {name: host_values(args[name]) for name in per_rank},
               "shared": {name: host_values(args[name]) if op.param(name).is_tensor else args[name]
                          for name in shared}}

    def compute(payloads: Dict[int, Dict[str, Any]]) -> Dict[int, Any]:
        precheck.compare(op, {g: p["summary"] for g, p in payloads.items()})
        by_pos: Dict[int, int] = {}
        for g, p in payloads.items():
            pos = p["position"]
            if pos in by_pos or not 0 <= pos < plan.size:
                raise CollectiveError(ACLNN_ERR_INNER_TILING_ERROR, op.c_name,
                                      f"rank {g} has position {pos} in the call"
                                      + (f", as does rank {by_pos[pos]}" if pos in by_pos else ", out of range"))
            by_pos[pos] = g
        lists = {}
        for name in per_rank:
            entries = [payloads[by_pos[i]]["per_rank"][name] if i in by_pos else None for i in range(plan.size)]
            lists[name] = None if all(e is None for e in entries) else entries
        values = {k: v for k, v in payloads[min(payloads)]["shared"].items() if v is not None}
        out = getattr(reference, op.py_name)(**lists, **values, cann_version=cann_version)
        return {g: out[pos] for pos, g in by_pos.items()}

    time_out = _time_out_us(op, args)
    timeout_s = ctx.world.timeout_s if time_out is None else time_out / 1e6
    result = ctx.world.rendezvous.collective(op.c_name, plan.key, ctx.rank, plan.participants, payload, compute,
                                             timeout_s, "time_out" if time_out is not None else
                                             "a real device would hang", global_ranks=Identity())
    return wrap_result(op, args, result)


@lru_cache(maxsize=None)
def _split(op: OpDef) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The names the world reference takes as per-rank lists, and those it takes once: attributes, group
    names, shared tensors (the calling rank's identity, ``ep_rank_id``/``tp_rank_id``, is its position)."""
    per_rank = tuple(p.name for p in op.tensors if not p.shared)
    shared = tuple(p.name for p in op.inputs
                   if p.name not in per_rank and not (p.rank_local and p.kind != STR))
    return per_rank, shared


def _time_out_us(op: OpDef, args: Mapping[str, Any]) -> Any:
    """The call's own time-out in microseconds (the barrier's ``time_out``), or ``None``."""
    if not op.has("time_out") or args.get("time_out") is None:
        return None
    return int(np.asarray(host_values(args["time_out"])).reshape(-1)[0])


def wrap_result(op: OpDef, args: Mapping[str, Any], result: Any) -> Any:
    """A reference result shaped like the device backend's: the NamedTuple of :class:`HostTensor`, the one
    output, or (an operator without outputs) its first input, unchanged."""
    if not op.outputs:
        return args[op.inputs[0].name]
    if op.result is not None:
        return op.result(*map(as_host_tensor, result))
    return as_host_tensor(result)


def fill_outputs(out: Any, result: Any) -> Any:
    """Copy a reference-backend ``result`` into the caller's ``out`` (host arrays or device tensors) and
    return ``out``, so ``out=`` works the same on both backends."""
    pairs: List[Any] = list(zip(out, result)) if hasattr(out, "_fields") else [(out, result)]
    for dst, src in pairs:
        if hasattr(dst, "copy_from"):
            dst.copy_from(np.asarray(src))
        else:
            np.copyto(dst, src)
    return out


__all__ = ["run_on_reference", "require_rank", "wrap_result", "fill_outputs"]
