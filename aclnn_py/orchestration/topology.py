"""Who takes part in one collective call: the one answer the pre-check and the reference backend share.

For a rank's call of an operator inside a World, :func:`plan` names the global ranks whose data the call
depends on (its *component*: the EP group, and with TP = 2 the EP groups of every TP peer; for the
barrier, its group), the ones that actually run it (the elastic table removes some), this rank's position
in the world-level reference's per-rank lists, and the key the ranks meet under. It also enforces what one
rank can check against its World alone: the group names are its communicators', the size attributes
are the groups' sizes, and ``ep_rank_id`` / ``tp_rank_id`` are its ranks in them (561002 naming both).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from ..catalog import OpDef
from ..elastic import parse_elastic_info
from ..errors import ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_PARAM_INVALID, AclnnError
from ..hostview import host_values


@dataclass(frozen=True)
class Plan:
    """One call's ranks. ``component``/``participants``: global ranks; ``position``: this rank's index in
    the world-level reference's per-rank lists, of ``size`` entries."""

    key: str
    component: Tuple[int, ...]
    participants: Tuple[int, ...]
    position: int
    size: int


# (size parameter, group parameter, role); the TP group is checked only with tp_world_size == 2
_SIZED_GROUPS = (("world_size", "group", "the barrier's"), ("ep_world_size", "group_ep", "EP"),
                 ("tp_world_size", "group_tp", "TP"))


def check_group_sizes(op: OpDef, args: Mapping[str, Any], ctx) -> None:
    """``ep_world_size`` (and ``tp_world_size`` when it is 2, the barrier's ``world_size``) equal the rank count
    of the group the call names: AclnnError 561002 naming both, before anything is launched.

    A documented rule no CANN tiling checks (the device would hang or fault); it needs no other rank, so it runs
    whenever the rank runs inside a World, with the pre-check on or off. Groups the World does not know are left
    to the pre-check and the device.
    """
    for size_param, group_param, role in _SIZED_GROUPS:
        if size_param not in args or group_param not in args:
            continue
        size = args[size_param]
        if size_param == "tp_world_size" and size != 2:
            continue
        try:
            member = ctx.world.membership(args[group_param], ctx.rank)
        except KeyError:
            continue
        if size != member.size:
            raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op.c_name,
                             f"parameter '{size_param}' must equal the number of ranks of the {role} group "
                             f"{group_param}={args[group_param]!r}: {member.size} ranks (global ranks "
                             f"{member.members}); got {size!r}")


def plan(op: OpDef, args: Mapping[str, Any], ctx) -> Optional[Plan]:
    """The ranks of this call of ``op`` by rank ``ctx`` (a :class:`~aclnn_py.RankContext`), or ``None`` when
    they cannot be known on the host (a communicator made outside the World) or this rank is one the
    elastic table removes (validation reports that)."""
    check_group_sizes(op, args, ctx)
    if op.topology == "group":
        return _group_plan(op, args, ctx)
    return _moe_plan(op, args, ctx)


def _group_plan(op: OpDef, args: Mapping[str, Any], ctx) -> Optional[Plan]:
    member = _membership(op, "group", args, ctx)
    if member is None:
        return None
    table = parse_elastic_info(host_values(args.get("elastic_info")), member.size)
    ranks = table.barrier_participants() if table is not None else list(range(member.size))
    participants = tuple(member.members[r] for r in ranks if 0 <= r < member.size)
    if ctx.rank not in participants:
        return None
    return Plan(f"{op.c_name}:{args['group']}", tuple(member.members), participants, member.rank, member.size)


def _moe_plan(op: OpDef, args: Mapping[str, Any], ctx) -> Optional[Plan]:
    world = ctx.world
    ep = _membership(op, "group_ep", args, ctx)
    if ep is None:
        return None
    tp = args.get("tp_world_size") or 0
    _check_rank_id(op, "ep_rank_id", args, ep, ctx)
    ranks = set(ep.members)
    tp_rank = 0
    if tp == 2:
        tpm = _membership(op, "group_tp", args, ctx)
        if tpm is None:
            return None
        _check_rank_id(op, "tp_rank_id", args, tpm, ctx)
        tp_rank = tpm.rank
        for m in list(ranks):
            peers = world.ranks[m].groups.get(tpm.label)
            for p in (peers.members if peers else []):
                peer_ep = world.ranks[p].groups.get(ep.label)
                ranks.update(peer_ep.members if peer_ep else [p])
    component = tuple(sorted(ranks))
    table = parse_elastic_info(host_values(args.get("elastic_info")), ep.size)
    gone = {ep.members[r] for r in table.removed()} if table is not None else set()   # no elastic with TP
    tpf = max(tp, 1)
    participants = tuple(g for g in component if g not in gone)
    if ctx.rank not in participants:
        return None
    return Plan(f"{op.c_name}:{','.join(map(str, component))}", component, participants,
                ep.rank * tpf + tp_rank, ep.size * tpf)


def _membership(op: OpDef, param: str, args: Mapping[str, Any], ctx):
    name = args.get(param)
    try:
        return ctx.world.membership(name, ctx.rank)
    except KeyError:
        return _unknown_group(op, param, name, ctx)


def _check_rank_id(op: OpDef, param: str, args: Mapping[str, Any], member, ctx) -> None:
    group = "group_ep" if param == "ep_rank_id" else "group_tp"
    if args.get(param) != member.rank:
        raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op.c_name,
                         f"parameter '{param}' must be this rank's rank in {group} {args.get(group)!r} "
                         f"({member.rank}; global rank {ctx.rank}); got {args.get(param)!r}")


def _unknown_group(op: OpDef, param: str, name: Any, ctx) -> None:
    """A group name the World does not know: an error where no communicator can have it (the reference
    backend; the simulator when none of that name lives on the rank's device), else unchecked (a
    communicator created outside the World, e.g. with HcclCommInitRootInfo)."""
    known = {label: g.name for label, g in sorted(ctx.groups.items())}
    if ctx.backend != "reference":
        hooks = ctx.world.sim_hooks()
        if hooks is None or hooks.comm_exists(str(name), int(ctx.device)):
            return None
    raise AclnnError(ACLNN_ERR_PARAM_INVALID, op.c_name,
                     f"parameter '{param}' must name a communicator of this rank (global rank {ctx.rank}); "
                     f"got {name!r}, its groups are {known} (pass ctx.group(label))")


__all__ = ["Plan", "plan", "check_group_sizes"]
