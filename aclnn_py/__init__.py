"""aclnn_py: call CANN aclnn MoE expert-parallel operators on Atlas A3 from Python.

Per-rank ops (``distribute_barrier_v2``, ...), the :class:`World` that runs one function per
rank, the bit-exact numpy ``reference`` of every op, and errors carrying CANN status codes.
Importing this package never requires CANN; libraries load on first device use.
"""
import sys as _sys
import types as _types

from . import layout, reference, validate
from .errors import (AclError, AclnnError, AclnnPyError, BackendFallbackWarning, BackendUnavailableError, CollectiveError,
                     HcclError, InvalidBackendError)
from .ops import (distribute_barrier_v2, moe_distribute_combine_add_rms_norm_v2, moe_distribute_combine_v3,
                  moe_distribute_combine_v4, moe_distribute_dispatch_v3, moe_distribute_dispatch_v4)
from .results import CombineAddRmsNormOutputs, CombineV4Outputs, DispatchOutputs, DispatchV4Outputs, Tensor
from .orchestration.precheck import InconsistentParametersError
from .orchestration.device import Device
from .runtime.tensor import DeviceTensor
from .orchestration.world import RankContext, UnknownGroupError, World, current_rank
from .orchestration.launch import ProcessWorld
from .orchestration import launch
from .version import __version__  # noqa: F401  (aclnn_py.__version__)


class _CallableModule(_types.ModuleType):
    """A module that can be called: ``aclnn_py.launch(fn, n)`` is ``aclnn_py.launch.launch(fn, n)``."""

    def __call__(self, *args, **kwargs):
        return self.launch(*args, **kwargs)


# ``aclnn_py.launch`` is the module (``aclnn_py.launch.launch``, ``aclnn_py.launch.ep_tp_groups``, ...) and,
# called, its launch() function: one object, so neither spelling shadows the other.
launch.__class__ = _CallableModule
_sys.modules[__name__ + ".launch"] = launch     # ``import aclnn_py.launch`` is the same module


__all__ = [
    "AclError", "AclnnError", "AclnnPyError", "CollectiveError", "HcclError", "InconsistentParametersError",
    "UnknownGroupError", "BackendFallbackWarning", "BackendUnavailableError", "InvalidBackendError",
    "World", "RankContext", "ProcessWorld", "launch", "Device", "DeviceTensor", "Tensor",
    "current_rank", "distribute_barrier_v2", "moe_distribute_dispatch_v3", "moe_distribute_dispatch_v4",
    "moe_distribute_combine_v3", "moe_distribute_combine_v4", "moe_distribute_combine_add_rms_norm_v2",
    "DispatchOutputs", "DispatchV4Outputs", "CombineAddRmsNormOutputs", "CombineV4Outputs", "layout",
    "reference", "validate",
]
