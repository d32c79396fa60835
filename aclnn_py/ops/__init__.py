"""Per-rank operator functions (DESIGN §2.2), made from the operator catalog.

Each takes one rank's arguments -- numpy arrays or DeviceTensors, the keywords torch_npu uses, the
operator defaults -- validates them with the rules the operator documents, then runs on the rank's
backend: the device (CANN or the simulator) with outputs allocated and zero-filled at the shapes
torch_npu uses, or the numpy reference, meeting the other ranks of its World. Results are
:class:`aclnn_py.Tensor` s (or NamedTuples of them); the caller owns them (``free()`` or ``with``).

``stream=``: run on another stream (a :class:`aclnn_py.runtime.device.Stream` or a raw ``aclrtStream``;
default: the rank's stream). ``sync=False``: return once the work is queued (inputs uploaded for the call
are released after the stream's next synchronize). ``out=``: preallocated outputs (the same NamedTuple,
or the one tensor) written in place: no allocation and no zero-fill on the device (elements the kernel
does not write keep their contents), which is what a steady-state decode loop wants. Validation is
memoised on everything its rules read (:mod:`aclnn_py.ops.memo`).
"""
from typing import Any, Callable

from .. import catalog
from .call import call_op

_EXTRA_DOC = ("    stream: the stream to run on (default: the rank's stream, else the default stream)\n"
              "    sync: wait for the result (default True); False returns once the work is queued\n")
_OUT_DOC = "    out: preallocated outputs to write in place (the result type, or a mapping by name)\n"


def _per_rank_function(op: catalog.OpDef) -> Callable[..., Any]:
    extra: tuple = (("stream", None), ("sync", True))
    if op.outputs:
        extra += (("out", None),)
    doc = (f"{op.summary}\n\n{op.c_name} (:mod:`aclnn_py.catalog`). Parameters (keywords as torch_npu "
           f"spells them; defaults are the operator's):\n{catalog.parameter_doc(op)}\n{_EXTRA_DOC}"
           f"{_OUT_DOC if op.outputs else ''}\nReturns {op.returns}.")
    return catalog.make_function(op, op.py_name, call_op, doc, extra=extra, module=__name__)


moe_distribute_dispatch_v3 = _per_rank_function(catalog.DISPATCH_V3)
moe_distribute_dispatch_v4 = _per_rank_function(catalog.DISPATCH_V4)
moe_distribute_combine_v3 = _per_rank_function(catalog.COMBINE_V3)
moe_distribute_combine_v4 = _per_rank_function(catalog.COMBINE_V4)
moe_distribute_combine_add_rms_norm_v2 = _per_rank_function(catalog.ADD_RMS_NORM_V2)
distribute_barrier_v2 = _per_rank_function(catalog.BARRIER_V2)

__all__ = ["distribute_barrier_v2", "moe_distribute_dispatch_v3", "moe_distribute_dispatch_v4",
           "moe_distribute_combine_v3", "moe_distribute_combine_v4", "moe_distribute_combine_add_rms_norm_v2"]
