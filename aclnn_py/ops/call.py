"""One operator call, whatever the operator: defaults, host views, validation, then the rank's backend.

The per-rank functions of :mod:`aclnn_py.ops` are generated from the catalog and all end here, with the
operator's entry and the call's arguments by keyword. The steps:

1. computed defaults (``default_factory``: combine's zero ``tp_send_counts``);
2. the host view of each small control tensor (``host_values``: the elastic table, the barrier's
   time-out), downloaded once if it lives on the device; validation, the topology, the pre-check and
   the reference all read that view;
3. validation (:mod:`aclnn_py.validate`, memoised: :mod:`aclnn_py.ops.memo`);
4. scalars given for tensors (``scalar_dtype``) become ``(1,)`` tensors;
5. the reference backend (:mod:`.reference_path`), or on the device the cross-rank pre-check (inside a
   World) and :mod:`.device_path`.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Dict, Mapping, Tuple

import numpy as np

from .. import validate
from ..validate.rules import is_tensor
from ..catalog import OpDef
from ..hostview import host_values
from ..profiles import active_profile
from ..orchestration import precheck, topology
from ..orchestration.backend import resolve_backend
from ..orchestration.world import current_rank
from .device_path import DevicePlan, run_on_device
from .memo import entry as memo_entry
from .reference_path import fill_outputs, run_on_reference


@lru_cache(maxsize=None)
def _plan(op: OpDef) -> Tuple[Callable[..., Any], Tuple[Any, ...], Tuple[str, ...], Tuple[Tuple[str, str], ...]]:
    """What the call needs of ``op``'s entry, worked out once: its validator, the parameters with computed
    defaults, those read on the host, and those that may be scalars."""
    return (getattr(validate, op.py_name), tuple(p for p in op.inputs if p.default_factory is not None),
            tuple(p.name for p in op.inputs if p.host_values),
            tuple((p.name, p.scalar_dtype) for p in op.inputs if p.scalar_dtype))


def call_op(op: OpDef, args: Dict[str, Any], stream: Any = None, sync: bool = True, out: Any = None) -> Any:
    """Run one rank's call of ``op`` (``args``: every input parameter by keyword) and return its result as the
    per-rank function documents it. ``stream``/``sync``/``out``: see :mod:`aclnn_py.ops`."""
    validator, factories, host_names, scalars = _plan(op)
    for p in factories:
        if args[p.name] is None:
            args[p.name] = p.default_factory(args)
    view = dict(args)
    for name in host_names:
        view[name] = host_values(args[name])
    ctx = current_rank()
    backend = ctx.backend if ctx is not None else resolve_backend()
    prof = active_profile(load=backend == "device")
    release = prof.release
    entry = memo_entry(validator, view, out, release)
    for name, dtype in scalars:
        for d in (args, view):
            if d[name] is not None and not is_tensor(d[name]):
                d[name] = np.array([d[name]], dtype)
    if backend == "reference":
        result = run_on_reference(op, view, release)
        return result if out is None else fill_outputs(out, result)
    if ctx is not None and precheck.enabled():
        plan = topology.plan(op, view, ctx)
        if plan is not None:
            precheck.check_across_ranks(op, view, plan, ctx)
    device_plan = entry.plan
    if device_plan is None:
        specs = op.output_specs(entry.layout, view) if op.output_specs is not None else {}
        device_plan = entry.plan = DevicePlan(op, args, specs, prof)
    outs = run_on_device(op, args, device_plan, stream, sync, out)
    return result_of(op, args, outs)


def result_of(op: OpDef, args: Mapping[str, Any], outs: Mapping[str, Any]) -> Any:
    """The call's result from its output tensors: the NamedTuple, the one output, or (an operator without
    outputs) its first input, unchanged."""
    if not op.outputs:
        return args[op.inputs[0].name]
    if op.result is not None:
        return op.result(**outs)
    return next(iter(outs.values()))


__all__ = ["call_op", "result_of"]
