"""Reference of aclnnDistributeBarrierV2: validation, then the synchronisation itself (no numeric effect)."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from .. import validate
from ..errors import ACL_ERROR_RT_AICORE_EXCEPTION, CollectiveError
from ..validate import rules as R
from ..validate.barrier import OP


def barrier_participants(world_size: int, elastic_info: Any = None) -> List[int]:
    """Group ranks that take part: all, or ``Table2[0:info[1]]`` when ``elastic_info[0] == 1``."""
    if elastic_info is not None:
        a = np.asarray(elastic_info).astype(np.int64).reshape(-1)
        if a[0] == 1:  # the barrier requires exactly 1 (other ops accept any non-zero value)
            return sorted(int(r) for r in a[4 + world_size:4 + world_size + int(a[1])])
    return list(range(world_size))


def distribute_barrier_v2(x_ref: Sequence[Any], *, world_size: int, time_out: Optional[int] = None,
                          elastic_info: Any = None, group: str = "barrier") -> list:
    """Barrier over the ranks of one group (indexed by group rank). Returns each ``x_ref`` unchanged.

    ``None`` entries are ranks that did not call. A participating rank that did not call is the
    device's time-out (or hang): raised as :class:`CollectiveError` naming the missing ranks.
    """
    x_ref = R.sequence(OP, "x_ref", x_ref)
    world_size = R.integer(OP, "world_size", world_size)

    def check(r: int) -> None:
        validate.distribute_barrier_v2(x_ref[r], group=group, world_size=world_size, time_out=time_out,
                                       elastic_info=elastic_info)

    first = R.first_present(x_ref)
    if first is not None:
        check(first)                  # the documented rules (world_size, time_out, ...) before the list's length
    R.per_rank_length(OP, "x_ref", x_ref, world_size, "world_size")
    expected = barrier_participants(world_size, elastic_info)
    for r in expected:
        if x_ref[r] is not None and r != first:
            check(r)
    missing = [r for r in expected if x_ref[r] is None]
    if missing:
        limit = f"time_out={time_out} us" if time_out is not None else "no time_out (the device would hang)"
        raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, "aclnnDistributeBarrierV2",
                              f"ranks {missing} of group '{group}' never arrived ({limit})")
    extra = [r for r in range(world_size) if r not in expected and x_ref[r] is not None]
    if extra:
        raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, "aclnnDistributeBarrierV2",
                              f"ranks {extra} were removed by elastic_info but called the barrier")
    return [x_ref[r] if r in expected else None for r in range(world_size)]


__all__ = ["distribute_barrier_v2", "barrier_participants"]
