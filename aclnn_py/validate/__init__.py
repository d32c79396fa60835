"""The documented parameter rules of each operator, shared by every backend.

Each function takes one rank's arguments (arrays: anything with ``.shape`` and ``.dtype``), with the
operator's signature (its catalog entry's parameters, :mod:`aclnn_py.catalog`), and raises
:class:`aclnn_py.AclnnError` with the CANN status (161001 / 161002 / 561002) at the first rule broken,
in the order CANN evaluates them. Nothing is computed before they pass.
"""
from typing import Any, Callable

from .. import catalog
from . import barrier, combine, dispatch
from .buffsize import check_hccl_buffsize, required_hccl_buffsize_mb, required_hccl_buffsize_mb_for_call

_EXTRA = (("outputs", None), ("env", None), ("cann_version", None))


def _validator(op: catalog.OpDef, check: Callable[..., Any], extra: tuple = _EXTRA) -> Callable[..., Any]:
    doc = (f"Check one rank's {op.c_name} call; raise :class:`aclnn_py.AclnnError` at the first broken rule.\n\n"
           f"Parameters (as the per-rank op takes them):\n{catalog.parameter_doc(op)}\n"
           "    outputs: the caller's output tensors by name (checked when given)\n"
           "    env: the environment HCCL_BUFFSIZE is read from (default os.environ)\n"
           "    cann_version: the CANN release whose rules apply (default: the release in force, "
           "aclnn_py.profiles.active_profile)\n"
           + ("    check_values: also the rules that read host arrays' values (default True)\n"
              if len(extra) > len(_EXTRA) else "") + "\n"
           "Returns the rank's aclnn_py.layout.MoeLayout (None for the barrier).")
    return catalog.make_function(op, op.py_name, check, doc, extra=extra, module=__name__)


moe_distribute_dispatch_v3 = _validator(catalog.DISPATCH_V3, dispatch.check)
moe_distribute_combine_v3 = _validator(catalog.COMBINE_V3, combine.check, _EXTRA + (("check_values", True),))
moe_distribute_combine_add_rms_norm_v2 = _validator(catalog.ADD_RMS_NORM_V2, combine.check,
                                                    _EXTRA + (("check_values", True),))
distribute_barrier_v2 = _validator(catalog.BARRIER_V2, barrier.check)
# V4 (performance_info): the same rules, from CANN 8.5.0-beta.1 (validate.versions.require_v4)
moe_distribute_dispatch_v4 = _validator(catalog.DISPATCH_V4, dispatch.check)
moe_distribute_combine_v4 = _validator(catalog.COMBINE_V4, combine.check, _EXTRA + (("check_values", True),))

__all__ = [
    "distribute_barrier_v2", "moe_distribute_dispatch_v3", "moe_distribute_combine_v3",
    "moe_distribute_combine_add_rms_norm_v2", "moe_distribute_dispatch_v4", "moe_distribute_combine_v4",
    "required_hccl_buffsize_mb", "required_hccl_buffsize_mb_for_call", "check_hccl_buffsize",
]
