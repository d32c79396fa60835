"""The documented parameter rules of each operator, shared by every backend.

Each function takes one rank's arguments (arrays: anything with ``.shape`` and ``.dtype``) and
raises :class:`aclnn_py.AclnnError` with the CANN status (161001 / 161002 / 561002) at the first
rule broken, in the order CANN evaluates them. Nothing is computed before they pass.
"""
from .barrier import distribute_barrier_v2
from .buffsize import required_hccl_buffsize_mb, check_hccl_buffsize
from .combine import moe_distribute_combine_v3, moe_distribute_combine_add_rms_norm_v2
from .dispatch import moe_distribute_dispatch_v3

__all__ = [
    "distribute_barrier_v2", "moe_distribute_dispatch_v3", "moe_distribute_combine_v3",
    "moe_distribute_combine_add_rms_norm_v2", "required_hccl_buffsize_mb", "check_hccl_buffsize",
]
