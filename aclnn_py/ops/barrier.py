"""``distribute_barrier_v2``: one rank's aclnnDistributeBarrierV2 call."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import reference, validate
from ..orchestration.precheck import check_across_ranks
from ..validate.rules import is_tensor
from ._call import Temporaries, active_backend, require_rank, resolve_stream

OP = "aclnnDistributeBarrierV2"


def _time_out_array(time_out: Any) -> Optional[np.ndarray]:
    """A validated ``time_out`` as the operator's int32 (1,) tensor (a tensor passes through)."""
    if time_out is None or is_tensor(time_out):
        return time_out
    return np.array([time_out], np.int32)


def distribute_barrier_v2(x_ref: Any, *, group: str, world_size: int, time_out: Any = None,
                          elastic_info: Any = None, stream: Any = None, sync: bool = True) -> Any:
    """Block until every (surviving) rank of ``group`` has called; returns ``x_ref`` unchanged.

    ``x_ref``: any tensor (numpy or DeviceTensor, 0-8 D), only a dependency token.
    ``group``: communicator name (1..127 bytes), used by nothing else. ``world_size``: 2..384.
    ``time_out``: microseconds (int or int32 array of shape (1,)); the call fails instead of
    waiting longer for a missing rank. ``elastic_info``: int32 (4 + 2*world_size,); when
    ``[0] == 1`` only ranks ``Table2[0:[1]]`` take part.
    """
    validate.distribute_barrier_v2(x_ref, group=group, world_size=world_size, time_out=time_out,
                                   elastic_info=elastic_info)
    time_out = _time_out_array(time_out)
    check_across_ranks(OP, dict(x_ref=x_ref, group=group, world_size=world_size, time_out=time_out,
                                elastic_info=elastic_info))
    if active_backend() == "reference":
        return _reference(x_ref, group, world_size, time_out, elastic_info)
    stream = resolve_stream(stream)
    with Temporaries(stream, sync) as tmp:
        values = {"xRef": tmp.device(x_ref), "timeOut": tmp.device(time_out, np.int32),
                  "elasticInfo": tmp.device(elastic_info, np.int32), "group": group, "worldSize": world_size}
        from ..runtime.twophase import run_two_phase
        run_two_phase(OP, values, stream, sync=sync)
    return x_ref


def _reference(x_ref, group, world_size, time_out, elastic_info):
    ctx = require_rank(OP)
    member = ctx.world.membership(group, ctx.rank)
    t_us = None if time_out is None else int(np.asarray(time_out).reshape(-1)[0])
    participants = reference.barrier.barrier_participants(world_size, elastic_info)
    timeout_s = ctx.world.timeout_s if t_us is None or t_us < 0 else t_us / 1e6

    def compute(payloads):
        out = reference.distribute_barrier_v2([payloads.get(r) for r in range(world_size)], world_size=world_size,
                                              time_out=t_us, elastic_info=elastic_info, group=group)
        return {r: out[r] for r in participants}

    return ctx.world.rendezvous.collective(OP, group, member.rank, participants, x_ref, compute, timeout_s,
                                           what_if_missing="time_out" if t_us is not None else "")
