"""Bit-exact numpy reference of the MoE distribute operators, whole EP x TP world in one process.

Every tensor argument is a sequence indexed by global rank ``g = ep_rank * max(tp, 1) + tp_rank``;
``None`` marks a rank removed by elastic scale-down. See ``../shared/DESIGN.md`` §2.1.
"""
from ..results import CombineAddRmsNormOutputs, DispatchOutputs
from .barrier import distribute_barrier_v2
from .combine import moe_distribute_combine_add_rms_norm_v2, moe_distribute_combine_v3
from .dispatch import moe_distribute_dispatch_v3

__all__ = [
    "DispatchOutputs", "CombineAddRmsNormOutputs", "distribute_barrier_v2",
    "moe_distribute_dispatch_v3", "moe_distribute_combine_v3", "moe_distribute_combine_add_rms_norm_v2",
]
