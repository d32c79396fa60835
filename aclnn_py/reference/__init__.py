"""Bit-exact numpy reference of the MoE distribute operators, whole EP x TP world in one process.

Every per-rank tensor argument is a sequence indexed by global rank ``g = ep_rank * max(tp, 1) + tp_rank``
(the barrier: by group rank); ``None`` marks a rank removed by elastic scale-down. The functions take the
operators' parameters (their catalog entries, :mod:`aclnn_py.catalog`) without the calling rank's identity
(``ep_rank_id``, ``tp_rank_id``: the list position) and with optional group names. See
``../shared/DESIGN.md`` §2.1.
"""
from typing import Any, Callable

from .. import catalog
from ..results import CombineAddRmsNormOutputs, DispatchOutputs
from . import barrier, combine, dispatch


def _world_function(op: catalog.OpDef, compute: Callable[..., Any]) -> Callable[..., Any]:
    doc = (f"{op.c_name} on every rank of the world at once; entry g of the result is rank g's "
           f"(None for a rank that does not run).\n\n{compute.__doc__ or ''}\n\n"
           f"Parameters:\n{catalog.parameter_doc(op, world=True)}\n"
           "    env: the environment HCCL_BUFFSIZE is read from (default os.environ)\n"
           "    cann_version: the CANN release whose rules and results apply (default: the release in force, "
           "aclnn_py.profiles.active_profile)\n\n"
           f"Each rank's result: {op.returns}.")
    return catalog.make_function(op, op.py_name, compute, doc, world=True,
                                 extra=(("env", None), ("cann_version", None)),
                                 module=__name__)


moe_distribute_dispatch_v3 = _world_function(catalog.DISPATCH_V3, dispatch.compute)
moe_distribute_dispatch_v4 = _world_function(catalog.DISPATCH_V4, dispatch.compute)
moe_distribute_combine_v3 = _world_function(catalog.COMBINE_V3, combine.compute)
moe_distribute_combine_v4 = _world_function(catalog.COMBINE_V4, combine.compute)
moe_distribute_combine_add_rms_norm_v2 = _world_function(catalog.ADD_RMS_NORM_V2, combine.compute)
distribute_barrier_v2 = _world_function(catalog.BARRIER_V2, barrier.compute)

__all__ = [
    "DispatchOutputs", "CombineAddRmsNormOutputs", "distribute_barrier_v2",
    "moe_distribute_dispatch_v3", "moe_distribute_dispatch_v4", "moe_distribute_combine_v3",
    "moe_distribute_combine_v4", "moe_distribute_combine_add_rms_norm_v2",
]
