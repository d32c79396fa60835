"""Reference of aclnnDistributeBarrierV2: validation, then the synchronisation itself (no numeric effect)."""
from __future__ import annotations

from typing import Any, List, Mapping

from ..catalog import OpDef
from ..elastic import parse_elastic_info
from ..errors import ACL_ERROR_RT_AICORE_EXCEPTION, AclnnError, CollectiveError
from ..validate import barrier as V
from ..validate import rules as R
from .world_args import per_rank_lists, rank_call


def barrier_participants(world_size: int, elastic_info: Any = None) -> List[int]:
    """Group ranks that take part: all, or ``Table2[0:info[1]]`` when ``elastic_info[0] == 1``."""
    table = parse_elastic_info(elastic_info, world_size)
    return table.barrier_participants() if table is not None else list(range(world_size))


def compute(op: OpDef, args: Mapping[str, Any], env: Any = None, cann_version: Any = None) -> list:
    """Barrier over the ranks of one group (``x_ref`` indexed by group rank); returns each ``x_ref`` unchanged.

    ``None`` entries are ranks that did not call. A participating rank that did not call is the
    device's time-out (or hang): raised as :class:`CollectiveError` naming the missing ranks.
    """
    name = op.c_name
    lists = per_rank_lists(op, args)
    x_ref = lists["x_ref"]
    world_size = R.integer(name, "world_size", args["world_size"])

    def check(r: int) -> None:
        try:
            V.check(op, rank_call(op, args, lists, r, {}))
        except AclnnError as err:
            raise AclnnError(err.status, err.call, f"rank {r}: {err.message}") from None

    first = R.first_present(x_ref)
    if first is not None:
        check(first)                  # the documented rules (world_size, time_out, ...) before the list's length
    R.per_rank_length(name, "x_ref", x_ref, world_size, "world_size")
    expected = barrier_participants(world_size, args["elastic_info"])
    for r in expected:
        if x_ref[r] is not None and r != first:
            check(r)
    missing = [r for r in expected if x_ref[r] is None]
    if missing:
        time_out = V.time_out_us(args["time_out"])
        limit = f"time_out={time_out} us" if time_out is not None else "no time_out (the device would hang)"
        raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, name,
                              f"ranks {missing} of group '{args['group']}' never arrived ({limit})")
    extra = [r for r in range(world_size) if r not in expected and x_ref[r] is not None]
    if extra:
        raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, name,
                              f"ranks {extra} were removed by elastic_info but called the barrier")
    return [x_ref[r] if r in expected else None for r in range(world_size)]


__all__ = ["compute", "barrier_participants"]
