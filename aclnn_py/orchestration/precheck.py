"""Cross-rank parameter pre-check: inconsistent calls fail on every rank, on the host, before any device work.

A collective operator whose ranks disagree (a different ``moe_expert_num``, ``elastic_info``, H, K,
BS with ``global_bs == 0``, a wrong ``ep_rank_id``...) hangs or
computes garbage on an NPU; one rank that raises before launching leaves the others inside the
device collective until the HCCL timeout. :func:`check_across_ranks` runs inside
:meth:`aclnn_py.World.run` just before an operator is launched: every rank of the operator's
component posts a small summary of its arguments to the World's host rendezvous, and

* if the summaries disagree (any attribute, ``elastic_info``, the dtype of the exchanged rows, H, K,
  BS when ``global_bs == 0``), every rank raises :class:`InconsistentParametersError` (an
  :class:`~aclnn_py.AclnnError` with status 561002 and a :class:`~aclnn_py.CollectiveError`), naming
  the parameter, the odd rank(s) and both values;
* if a rank raised earlier (e.g. its own validation failed), or its function returned without
  calling the operator, or it is not running, the others fail at once naming it, instead of
  entering a device collective that would never complete;
* if the ranks disagree on who takes part (``elastic_info``), the deadlock is detected and named.

It costs one host rendezvous per call (tens of microseconds with threads). Outside a World (a
rank launched by an external launcher, a standalone call), or with ``ACLNN_PY_PRECHECK=0``, it does
nothing, except :func:`check_group_sizes` (``ep_world_size`` / ``tp_world_size`` / the barrier's
``world_size`` against the rank count of the group the call names), which needs no other rank and runs
inside every World. Groups created outside the World are not checked either.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Mapping

import numpy as np

from ..catalog import OpDef
from ..errors import ACLNN_ERR_INNER_TILING_ERROR, AclnnError, CollectiveError
from ..hostview import host_values
from .rendezvous import Identity
from .topology import Plan
from ..runtime.environ import getenv

ENV = "ACLNN_PY_PRECHECK"


class InconsistentParametersError(AclnnError, CollectiveError):
    """Ranks of one collective call passed arguments that must agree but do not (status 561002)."""

    kind = "aclnnStatus"


def enabled() -> bool:
    return getenv(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def check_across_ranks(op: OpDef, args: Mapping[str, Any], plan: Plan, ctx) -> None:
    """Pre-check rank ``ctx``'s call of collective ``op`` (``args``: its arguments by keyword, after
    validation) against the other ranks of ``plan`` (:func:`aclnn_py.orchestration.topology.plan`).

    Raises :class:`InconsistentParametersError` (a parameter that must agree does not) or
    :class:`CollectiveError` (a peer failed, is missing, or disagrees on the participants); returns
    ``None`` when every rank agrees.
    """
    world = ctx.world

    def check(payloads: Dict[int, Dict[str, Any]]) -> Dict[int, None]:
        compare(op, payloads)
        return {g: None for g in payloads}

    world.rendezvous.collective(op.c_name, "precheck:" + plan.key, ctx.rank, plan.participants, summary(op, args),
                                check, world.timeout_s, "pre-check before the device call; a real device would hang",
                                global_ranks=Identity())


# ---- what must agree ---------------------------------------------------------------------------------
def summary(op: OpDef, args: Mapping[str, Any]) -> Dict[str, Any]:
    """What of one rank's call the other ranks must match, by key (see the catalog's agreement fields)."""
    out: Dict[str, Any] = {}
    for p in op.inputs:
        v = args.get(p.name)
        if p.rank_local:
            continue
        if not p.is_tensor:
            out[p.name] = v.item() if isinstance(v, (np.integer, np.floating)) else v
            continue
        if not _is_tensor(v):
            continue
        if p.compare_values:
            vals = host_values(v).reshape(-1)
            out[p.name] = ("values", str(np.dtype(v.dtype)), tuple(int(x) for x in vals))
        if p.agree_dtype:
            out[p.name] = ("tensor", str(np.dtype(v.dtype)), len(tuple(v.shape)))
        shape = tuple(int(d) for d in v.shape)
        for axis in p.agree_dims:
            if shape:
                out[f"{p.name}.shape" + ("" if axis is None else f"[{axis}]")] = shape if axis is None else shape[axis]
        if p.bs_axis is not None and not args.get("global_bs") and len(shape) > p.bs_axis:
            out[f"{p.name}.shape[{p.bs_axis}] (BS, with global_bs == 0)"] = shape[p.bs_axis]
    return out


def _is_tensor(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype")


def _describe(v: Any) -> str:
    if isinstance(v, tuple) and v and v[0] == "tensor":
        return f"a {v[2]}-D {v[1]} tensor"
    if isinstance(v, tuple) and v and v[0] == "values":
        vals = list(v[2])
        return f"{vals[:12]}{'...' if len(vals) > 12 else ''}"
    return "None (not given)" if v is None else repr(v)


def compare(op: OpDef, payloads: Dict[int, Dict[str, Any]]) -> None:
    """Raise :class:`InconsistentParametersError` naming the first key on which ``payloads`` (global rank ->
    :func:`summary`) differ, the odd ranks and both values; the value most ranks pass counts as intended."""
    ranks = sorted(payloads)
    keys = sorted({k for p in payloads.values() for k in p})
    for key in keys:
        vals = {g: payloads[g].get(key) for g in ranks}
        groups: Dict[str, List[int]] = {}
        for g in ranks:
            groups.setdefault(repr(vals[g]), []).append(g)
        if len(groups) == 1:
            continue
        counts = Counter({r: len(gs) for r, gs in groups.items()})
        top = max(groups, key=lambda r: (counts[r], -min(groups[r])))
        good = groups[top]
        odd = [g for g in ranks if g not in good]
        raise InconsistentParametersError(
            ACLNN_ERR_INNER_TILING_ERROR, op.c_name,
            f"parameter '{key.split('.')[0].split(' ')[0]}' differs across the ranks of this collective: "
            f"rank{'s' if len(odd) > 1 else ''} {odd} passed {key}={_describe(vals[odd[0]])} but "
            f"rank{'s' if len(good) > 1 else ''} {good} passed {_describe(vals[good[0]])}; every rank "
            "must pass the same value (a real device would hang or compute garbage)")


__all__ = ["check_across_ranks", "summary", "compare", "InconsistentParametersError", "enabled", "ENV"]
