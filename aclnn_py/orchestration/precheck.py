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

import os
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..errors import ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_PARAM_INVALID, AclnnError, CollectiveError
from .rendezvous import Identity
from .world import current_rank

ENV = "ACLNN_PY_PRECHECK"

# Per-rank identity and group names: compared differently (or not at all).
_RANK_KEYS = {"ep_rank_id", "tp_rank_id", "group_ep", "group_tp", "group", "stream", "sync"}
# Tensors whose contents (not only presence/dtype/shape) must agree.
_VALUE_TENSORS = {"elastic_info"}
# Tensors that are per-rank tokens (barrier's x_ref) or per-rank settings (time_out): not compared.
_UNCOMPARED = {"x_ref", "time_out"}
# Tensors whose dtype (and rank) must agree: the rows exchanged between ranks.
_DTYPE_TENSORS = {"x", "expand_x"}
# (tensor, axis) whose extent must agree on every rank; None = the whole shape.
_SHARED_DIMS = {
    "aclnnMoeDistributeDispatchV3": [("x", 1), ("expert_ids", 1), ("scales", None)],
    "aclnnMoeDistributeCombineV3": [("expand_x", 1), ("expert_ids", 1), ("tp_send_counts", None),
                                    ("shared_expert_x", -1), ("const_expert_alpha_1", None),
                                    ("const_expert_alpha_2", None), ("const_expert_v", None)],
}
_SHARED_DIMS["aclnnMoeDistributeCombineAddRmsNormV2"] = _SHARED_DIMS["aclnnMoeDistributeCombineV3"] + [
    ("residual_x", -1), ("gamma", None)]
# (tensor, axis) that is BS: must agree when global_bs == 0 (same BS on every rank).
_BS_DIMS = {"aclnnMoeDistributeDispatchV3": ("x", 0), "aclnnMoeDistributeCombineV3": ("expert_ids", 0),
            "aclnnMoeDistributeCombineAddRmsNormV2": ("expert_ids", 0)}


class InconsistentParametersError(AclnnError, CollectiveError):
    """Ranks of one collective call passed arguments that must agree but do not (status 561002)."""

    kind = "aclnnStatus"


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def check_across_ranks(op: str, kwargs: Mapping[str, Any]) -> None:
    """Pre-check one rank's call of collective ``op`` against the other ranks of its World.

    ``kwargs``: the operator's keyword arguments as the wrapper received them (snake_case; tensors
    as numpy arrays or device tensors). Call it after the rank's own validation passed and before
    anything is launched. Raises :class:`InconsistentParametersError`, :class:`AclnnError` (561002,
    a rank id that does not match the communicator) or :class:`CollectiveError` (a peer failed, is
    missing, or disagrees on the participants); returns ``None`` when every rank agrees.
    """
    ctx = current_rank()
    if ctx is None:
        return
    check_group_sizes(op, kwargs, ctx)
    if not enabled():
        return
    world = ctx.world
    plan = _plan(op, kwargs, ctx)
    if plan is None:
        return
    key, participants = plan
    summary = _summary(op, kwargs)
    summary["@rank"] = ctx.rank

    def compare(payloads: Dict[int, Dict[str, Any]]) -> Dict[int, None]:
        _compare(op, payloads)
        return {g: None for g in payloads}

    world.rendezvous.collective(op, key, ctx.rank, participants, summary, compare, world.timeout_s,
                                "pre-check before the device call; a real device would hang",
                                global_ranks=Identity())


# ---- the sizes the call states against the groups it names ------------------------------------------------
# (size parameter, group parameter, role); the TP group is checked only with tp_world_size == 2
_SIZED_GROUPS = (("world_size", "group", "the barrier's"), ("ep_world_size", "group_ep", "EP"),
                 ("tp_world_size", "group_tp", "TP"))


def check_group_sizes(op: str, kwargs: Mapping[str, Any], ctx) -> None:
    """``ep_world_size`` (and ``tp_world_size`` when it is 2, the barrier's ``world_size``) equal the rank count
    of the group the call names: AclnnError 561002 naming both, before anything is launched.

    A documented rule no CANN tiling checks (the device would hang or fault); it needs no other rank, so it runs
    whenever the rank runs inside a World, with the pre-check on or off. Groups the World does not know are left
    to :func:`check_across_ranks` and the device.
    """
    for size_param, group_param, role in _SIZED_GROUPS:
        if size_param not in kwargs or group_param not in kwargs:
            continue
        size = kwargs[size_param]
        if size_param == "tp_world_size" and size != 2:
            continue
        try:
            member = ctx.world.membership(kwargs[group_param], ctx.rank)
        except KeyError:
            continue
        if size != member.size:
            raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op,
                             f"parameter '{size_param}' must equal the number of ranks of the {role} group "
                             f"{group_param}={kwargs[group_param]!r}: {member.size} ranks (global ranks "
                             f"{member.members}); got {size!r}")


# ---- which ranks must agree --------------------------------------------------------------------------
def _plan(op: str, kwargs: Mapping[str, Any], ctx) -> Optional[Tuple[str, List[int]]]:
    """(rendezvous key, global ranks taking part) for this call, or None when it cannot be checked."""
    world = ctx.world
    if "group" in kwargs:  # DistributeBarrierV2
        try:
            member = world.membership(kwargs["group"], ctx.rank)
        except KeyError:
            return _unknown_group(op, "group", kwargs["group"], ctx)
        info = _values(kwargs.get("elastic_info"))
        group_ranks = list(range(member.size))
        if info is not None and info.size >= 2 and int(info[0]) == 1:
            n = int(info[1])
            group_ranks = sorted({int(r) for r in info[4 + member.size:4 + member.size + n]})
        participants = [member.members[r] for r in group_ranks if 0 <= r < member.size]
        if ctx.rank not in participants:
            return None  # a rank the table removed: the op itself reports it
        return f"precheck:{op}:{kwargs['group']}", participants

    group_ep = kwargs.get("group_ep")
    try:
        ep = world.membership(group_ep, ctx.rank)
    except KeyError:
        return _unknown_group(op, "group_ep", group_ep, ctx)
    tp = int(kwargs.get("tp_world_size") or 0)
    ep_rank_id = kwargs.get("ep_rank_id")
    if ep_rank_id != ep.rank:
        raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op,
                         f"parameter 'ep_rank_id' must be this rank's rank in group_ep {group_ep!r} ({ep.rank}; "
                         f"global rank {ctx.rank}); got {ep_rank_id!r}")
    ranks = set(ep.members)
    tp_member = None
    if tp == 2:
        try:
            tp_member = world.membership(kwargs.get("group_tp"), ctx.rank)
        except KeyError:
            return _unknown_group(op, "group_tp", kwargs.get("group_tp"), ctx)
        if kwargs.get("tp_rank_id") != tp_member.rank:
            raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op,
                             f"parameter 'tp_rank_id' must be this rank's rank in group_tp {kwargs.get('group_tp')!r} "
                             f"({tp_member.rank}; global rank {ctx.rank}); got {kwargs.get('tp_rank_id')!r}")
        for m in list(ranks):
            peers = world.ranks[m].groups.get(tp_member.label)
            for p in (peers.members if peers else []):
                peer_ep = world.ranks[p].groups.get(ep.label)
                ranks.update(peer_ep.members if peer_ep else [p])
    component = sorted(ranks)
    participants = component
    info = _values(kwargs.get("elastic_info"))
    ep_size = len(ep.members)
    if info is not None and info.size >= 4 + ep_size and int(info[0]) != 0:
        table1 = info[4:4 + ep_size]
        removed = {ep.members[i] for i in range(ep_size) if int(table1[i]) == -1}
        participants = [g for g in component if g not in removed]
        if ctx.rank not in participants:
            return None  # validation reports a removed rank that calls
    return f"precheck:{op}:{','.join(map(str, component))}", participants


def _unknown_group(op: str, param: str, name: Any, ctx) -> None:
    """A group name the World does not know: an error where no communicator can have it (the reference
    backend; the simulator when none of that name lives on the rank's device), else unchecked (a
    communicator created outside the World, e.g. with HcclCommInitRootInfo)."""
    known = {label: g.name for label, g in sorted(ctx.groups.items())}
    if ctx.backend != "reference":
        from ..runtime.device import acl_init
        from ..runtime.simhooks import sim_hooks
        hooks = sim_hooks(acl_init())
        if hooks is None or hooks.comm_exists(str(name), int(ctx.device)):
            return None
    raise AclnnError(ACLNN_ERR_PARAM_INVALID, op,
                     f"parameter '{param}' must name a communicator of this rank (global rank {ctx.rank}); "
                     f"got {name!r}, its groups are {known} (pass ctx.group(label))")


# ---- what must agree ---------------------------------------------------------------------------------
def _values(t: Any) -> Optional[np.ndarray]:
    if t is None:
        return None
    if isinstance(t, np.ndarray):
        return t.reshape(-1)
    if hasattr(t, "numpy") and hasattr(t, "handle"):
        return np.asarray(t.numpy()).reshape(-1)
    return np.asarray(t).reshape(-1)


def _is_tensor(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype")


def _summary(op: str, kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in kwargs.items():
        if k in _RANK_KEYS or k in _UNCOMPARED:
            continue
        if k in _VALUE_TENSORS:
            vals = _values(v)
            out[k] = None if vals is None else ("values", str(np.dtype(v.dtype)) if _is_tensor(v) else "",
                                                tuple(int(x) for x in vals))
        elif _is_tensor(v):
            # per-token optional inputs (masks, scales, shared-expert rows...) act on the rank's own tokens:
            # their presence may differ; the activations' dtype may not (rows travel between ranks)
            if k in _DTYPE_TENSORS:
                out[k] = ("tensor", str(np.dtype(v.dtype)), len(tuple(v.shape)))
        elif v is None or isinstance(v, (bool, int, float, str, np.integer, np.floating)):
            out[k] = v.item() if isinstance(v, (np.integer, np.floating)) else v
        else:
            out[k] = repr(v)
    for name, axis in _SHARED_DIMS.get(op, []):
        v = kwargs.get(name)
        if _is_tensor(v) and len(tuple(v.shape)):
            shape = tuple(int(d) for d in v.shape)
            out[f"{name}.shape" + ("" if axis is None else f"[{axis}]")] = shape if axis is None else shape[axis]
    bs = _BS_DIMS.get(op)
    if bs is not None and not kwargs.get("global_bs"):
        v = kwargs.get(bs[0])
        if _is_tensor(v) and len(tuple(v.shape)) > bs[1]:
            out[f"{bs[0]}.shape[{bs[1]}] (BS, with global_bs == 0)"] = int(v.shape[bs[1]])
    return out


def _describe(key: str, v: Any) -> str:
    if isinstance(v, tuple) and v and v[0] == "tensor":
        return f"a {v[2]}-D {v[1]} tensor"
    if isinstance(v, tuple) and v and v[0] == "values":
        vals = list(v[2])
        return f"{vals[:12]}{'...' if len(vals) > 12 else ''}"
    return "None (not given)" if v is None else repr(v)


def _param_name(key: str) -> str:
    return key.split(".")[0].split(" ")[0]


def _compare(op: str, payloads: Dict[int, Dict[str, Any]]) -> None:
    ranks = sorted(payloads)
    keys = sorted({k for p in payloads.values() for k in p if k != "@rank"})
    for key in keys:
        vals = {g: payloads[g].get(key) for g in ranks}
        groups: Dict[str, List[int]] = {}
        for g in ranks:
            groups.setdefault(repr(vals[g]), []).append(g)
        if len(groups) == 1:
            continue
        # the value most ranks pass is taken as intended; the others are named
        counts = Counter({r: len(gs) for r, gs in groups.items()})
        top = max(groups, key=lambda r: (counts[r], -min(groups[r])))
        good = groups[top]
        odd = [g for g in ranks if g not in good]
        first_odd = odd[0]
        raise InconsistentParametersError(
            ACLNN_ERR_INNER_TILING_ERROR, op,
            f"parameter '{_param_name(key)}' differs across the ranks of this collective: "
            f"rank{'s' if len(odd) > 1 else ''} {odd} passed {key}={_describe(key, vals[first_odd])} but "
            f"rank{'s' if len(good) > 1 else ''} {good} passed {_describe(key, vals[good[0]])}; every rank "
            "must pass the same value (a real device would hang or compute garbage)")
    # ep_rank_id / tp_rank_id were checked against the communicator locally; the group layout makes
    # them distinct, so nothing else to compare here.


__all__ = ["check_across_ranks", "check_group_sizes", "InconsistentParametersError", "enabled", "ENV"]
