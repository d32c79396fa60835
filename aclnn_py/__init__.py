"""aclnn_py: call CANN aclnn MoE expert-parallel operators on Atlas A3 from Python.

Per-rank ops (``distribute_barrier_v2``, ...), the :class:`World` that runs one function per
rank, the bit-exact numpy ``reference`` of every op, and errors carrying CANN status codes.
Importing this package never requires CANN; libraries load on first device use.
"""
from . import layout, reference, validate
from .errors import AclError, AclnnError, AclnnPyError, CollectiveError, HcclError
from .ops import (distribute_barrier_v2, moe_distribute_combine_add_rms_norm_v2, moe_distribute_combine_v3,
                  moe_distribute_dispatch_v3)
from .results import CombineAddRmsNormOutputs, DispatchOutputs
from .consistency import InconsistentParametersError
from .launch import ProcessWorld, launch
from .world import RankContext, UnknownGroupError, World, current_rank

__version__ = "0.1.0"

__all__ = [
    "AclError", "AclnnError", "AclnnPyError", "CollectiveError", "HcclError", "InconsistentParametersError",
    "UnknownGroupError", "World", "RankContext", "ProcessWorld", "launch",
    "current_rank", "distribute_barrier_v2", "moe_distribute_dispatch_v3", "moe_distribute_combine_v3",
    "moe_distribute_combine_add_rms_norm_v2", "DispatchOutputs", "CombineAddRmsNormOutputs", "layout",
    "reference", "validate",
]
