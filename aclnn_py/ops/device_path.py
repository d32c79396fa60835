"""An operator call on the device backend (CANN or the simulator): upload, allocate, run both phases.

The arguments arrive validated, by keyword (:mod:`aclnn_py.ops.call`); the catalog entry says which are
tensors and what their C names are. Host inputs are uploaded into temporaries, outputs come zero-filled
from the stream's pool at the shapes the entry's ``output_specs`` gives (or are the caller's ``out=``), and
:func:`aclnn_py.runtime.twophase.launch` runs the operator version the install exports
(:func:`implementation`), with the argument vector worked out once per call signature (:class:`DevicePlan`).
Every temporary is released on every path.
"""
from __future__ import annotations

from collections import abc
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ..catalog import REQUIRED, OpDef, Param, family_of
from ..errors import ACLNN_ERR_INNER_FIND_KERNEL_ERROR, ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_PARAM_INVALID, AclnnError
from ..profiles import Profile, active_profile
from ..orchestration.world import current_rank
from ..runtime.device import Stream, acl_init, initialised_library
from ..runtime.pool import Block, BlockLayout, Lease
from ..runtime.tensor import DeviceTensor, checked_dtype
from ..runtime.twophase import active_executor_reuse, build_arguments, launch, reuse_key


def resolve_stream(stream: Any) -> Stream:
    """``stream`` if given (a :class:`Stream` or a raw ``aclrtStream``), else the rank's stream inside a World,
    else the default stream."""
    if stream is not None:
        return stream if isinstance(stream, Stream) else Stream(int(stream), owned=False)
    ctx = current_rank()
    if ctx is not None and ctx.stream is not None:
        return ctx.stream
    return Stream.default()


class Temporaries:
    """Device copies made for one call; freed on exit, or deferred to the stream when ``sync=False``."""

    def __init__(self, stream: Stream, sync: bool) -> None:
        self.stream, self.sync = stream, sync
        self.items: List[Any] = []

    def device(self, x: Any, dtype: Any = None) -> Any:
        """``x`` as a DeviceTensor (uploaded if it is host data); ``None`` stays ``None``."""
        if x is None or isinstance(x, DeviceTensor):
            return x
        t = DeviceTensor.from_numpy(np.asarray(x, dtype=dtype))
        self.items.append(t)
        return t

    def keep(self, t: Any) -> Any:
        """Hand ``t`` to the caller: it is no longer released on exit."""
        self.items = [item for item in self.items if item is not t]   # by identity: == is elementwise
        return t

    def __enter__(self) -> "Temporaries":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        items, self.items = self.items, []
        if self.sync or exc_type is not None:
            for t in items:
                t.free()
        else:
            self.stream.defer(*items)


# ---- which operator version runs --------------------------------------------------------------------------
_chosen: Dict[tuple, OpDef] = {}


def implementation(op: OpDef, args: Optional[Mapping[str, Any]] = None, prof: Optional[Profile] = None) -> OpDef:
    """The operator version to call for ``op``'s Python API on the loaded install, as torch_npu chooses it: the
    newest version of the family that the install exports (and that the release has: a simulator emulating an
    older release exports V4 but refuses it) and that takes every argument the call gives. A V3 call runs on
    V4 with no ``performance_info``, or on V2 when only V2 is exported and the call leaves V2's missing
    arguments (``elastic_info``, the special-expert counts...) at their defaults; anything else is refused
    before any device work: 561003 when no version fits, 161002 naming the argument the available
    version lacks. A V3 header declaring ``performanceInfoOptional`` (a development snapshot) is refused too.
    """
    prof = prof if prof is not None else active_profile(load=True)
    given = tuple(sorted(p.name for p in op.inputs if args is not None and _given(p, args)))
    key = (op.c_name, prof.release, given)
    chosen = _chosen.get(key)
    if chosen is not None:
        return chosen
    lib = acl_init()
    exported = [v for v in family_of(op) if lib.exports(v.c_name)]
    usable = [v for v in exported if not (v.version == 4 and prof.off("v4"))]
    fits = [v for v in usable if _serves(v, op) and all(v.has(name) for name in given)]
    if not fits:
        _refuse(op, exported, usable, given, lib, prof)
    chosen = fits[0]
    _check_header(chosen, lib)
    _chosen[key] = chosen
    return chosen


def _serves(v: OpDef, op: OpDef) -> bool:
    """Whether version ``v`` can run a call of ``op``'s API: an older version (missing arguments left at their
    defaults), or V4 for a V3 call (``performance_info`` NULL); never one without the API's in-place outputs."""
    newer_ok = op.version == 3 and v.version == 4
    return (v.version <= op.version or newer_ok) and all(v.has(p.name) for p in op.inputs if p.in_place is not None)


def _given(p: Param, args: Mapping[str, Any]) -> bool:
    """Whether the call sets parameter ``p`` (a tensor given, an attribute other than its default)."""
    if p.name not in args:
        return False
    v = args[p.name]
    if p.is_tensor:
        return v is not None
    return p.default is REQUIRED or v != p.default


def _refuse(op: OpDef, exported: list, usable: list, given: tuple, lib, prof: Optional[Profile]) -> None:
    names = [v.c_name for v in exported] or "no version"
    where = f"the CANN at {lib.install.home} exports {names} of {op.family}"
    lacking = [(v, [n for n in given if not v.has(n)]) for v in usable if v.version < op.version]
    if lacking and lacking[0][1]:
        v, missing = lacking[0]
        raise AclnnError(ACLNN_ERR_PARAM_INVALID, op.c_name,
                         f"parameter '{missing[0]}' is an argument of {op.c_name}, but {where}, and "
                         f"{v.c_name} has no {', '.join(missing)}: leave {'it' if len(missing) == 1 else 'them'} at "
                         f"the default, or use a CANN with {op.c_name}")
    newer = f" (V4 came after the release in force, {prof.name})" if len(usable) < len(exported) else ""
    raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op.c_name,
                     f"not available: {where}{newer}; aclnn_py never calls a version with a different argument "
                     "list than the one it was asked for")


def _check_header(op: OpDef, lib) -> None:
    header = lib.install.home / "include" / op.header
    if header.is_file() and "performanceInfoOptional" in header.read_text(errors="replace") \
            and not op.has("performance_info"):
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op.c_name,
                         f"{header} declares performanceInfoOptional, i.e. a {op.arg_count + 1}-argument "
                         f"{op.c_name} (a development-snapshot ABI); aclnn_py binds the released "
                         f"{op.arg_count}-argument form and refuses to call it")


# ---- the call ----------------------------------------------------------------------------------------------
class DevicePlan:
    """What a validated call signature needs on the device, worked out once (kept on its
    :class:`aclnn_py.ops.memo.Entry`): the operator version, its phase-1 argument list with every attribute
    in place, where each tensor goes in it, and the layout of the outputs' block.

    ``inputs``: (position, keyword, scalar dtype) of each tensor parameter; ``fresh``: name -> TensorSpec of
    each output the call allocates (or takes from ``out=``); ``outputs``: (position, name) of those, in
    ``layout`` order; ``results``: every output name in result order (an
    in-place argument the caller gave among them); ``signature``: the operator, the outputs' layout and the
    attributes (what :meth:`~aclnn_py.runtime.device.Stream.may_hold_gil` is asked about).
    """

    __slots__ = ("impl", "fresh", "template", "inputs", "outputs", "layout", "results", "given", "signature")

    def __init__(self, op: OpDef, args: Mapping[str, Any], specs: Mapping[str, Any], prof: Optional[Profile]) -> None:
        self.impl = impl = implementation(op, args, prof)
        position = {p.c_name: i for i, p in enumerate(impl.params)}
        c_names = {p.name: p.c_name for p in impl.params}
        constants: Dict[str, Any] = {}
        inputs = []
        for p in op.inputs:
            if p.name not in c_names:           # an argument the chosen version lacks, left at its default
                continue
            if p.is_tensor:
                inputs.append((position[c_names[p.name]], p.name, p.scalar_dtype))
            else:
                constants[c_names[p.name]] = args[p.name]
        self.inputs = tuple(inputs)
        self.template = build_arguments(impl, constants)
        self.given = tuple(p.name for p in op.inputs if p.in_place is not None and args.get(p.name) is not None)
        self.fresh = {n: s for n, s in specs.items() if n not in self.given}
        self.outputs = tuple((position[c_names[n]], n) for n in self.fresh)
        self.layout = BlockLayout.of([(tuple(s.shape), s.dtype, checked_dtype(s.dtype)[1])
                                      for s in self.fresh.values()])
        self.results = tuple(specs)
        # the same for every call with these shapes and attributes, even when the call cannot be memoised
        self.signature = (impl.c_name, self.layout, tuple(sorted(constants.items(), key=lambda kv: kv[0])))


def run_on_device(op: OpDef, args: Mapping[str, Any], plan: DevicePlan, stream: Any, sync: bool,
                  out: Any = None) -> Dict[str, Any]:
    """Upload the tensor arguments, allocate zero-filled outputs (at ``plan.fresh``: name -> TensorSpec), run
    both phases of the version ``plan`` chose; returns the output DeviceTensors by name (an in-place argument
    such as V4's ``performance_info`` among them: the caller's tensor, or a zeroed one).

    Fresh outputs share one block from the stream's pool (:mod:`aclnn_py.runtime.pool`), zero-filled on the
    stream before the operator runs. ``out``: the caller's preallocated outputs (a mapping or NamedTuple
    with those names, or one tensor for a single output) with exactly those shapes and dtypes; written in
    place and returned, with no allocation and no zero-fill (elements the kernel does not write keep their
    contents, as on hardware).
    """
    stream = resolve_stream(stream)
    lib = initialised_library()
    with Temporaries(stream, sync) as tmp:
        c_args = plan.template.copy()
        on_device: Dict[str, DeviceTensor] = {}
        for i, name, dtype in plan.inputs:
            value = args[name]
            if value is not None:
                if type(value) is not DeviceTensor:
                    value = tmp.device(value, dtype)
                on_device[name] = value
                c_args[i] = value.handle
        hold = sync and stream.may_hold_gil(plan.signature)
        if out is None:
            outs = _fresh_outputs(lib, plan, stream, hold)
        else:
            outs = caller_outputs(op, plan.fresh, out)
        for (i, _), t in zip(plan.outputs, outs.values()):
            c_args[i] = t.handle
        reuse = None
        if out is not None and not tmp.items and active_executor_reuse() is not None:
            # every tensor is the caller's: the call may be replayed (see ReuseExecutors)
            reuse = reuse_key(plan.impl.c_name, _by_c_name(plan, c_args, args, outs))
        try:
            launch(lib.op(plan.impl.c_name), c_args, stream, sync=sync, reuse=reuse, hold=hold)
        except BaseException:
            if out is None:       # the caller never sees them, and the traceback must not hold their block
                for _, name in plan.outputs:
                    outs[name].free()
            raise
        stream.completed(plan.signature, sync)
        for name in plan.given:
            outs[name] = tmp.keep(on_device[name])
        return {name: outs[name] for name in plan.results}


def _fresh_outputs(lib, plan: DevicePlan, stream: Stream, hold: bool) -> Dict[str, DeviceTensor]:
    """The plan's outputs in one block from the stream's pool, zero-filled on the stream (``hold``: queue
    the fill holding the GIL)."""
    layout = plan.layout
    if not layout.slots:
        return {}
    pool = stream.pool
    block = pool.take(lib, layout) if pool is not None else Block(lib, layout)
    lease = Lease(pool, block)
    (lib.held.aclrtMemsetAsync if hold else lib.aclrtMemsetAsync)(block.ptr, layout.nbytes, 0, layout.nbytes,
                                                                   stream.handle)
    make = DeviceTensor._in_block
    return {name: make(lib, lease, slot, h)
            for (_, name), slot, h in zip(plan.outputs, layout.slots, block.handles)}


def _by_c_name(plan: DevicePlan, c_args: list, args: Mapping[str, Any], outs: Mapping[str, Any]) -> Dict[str, Any]:
    """The call's arguments by C name, tensors as the caller's objects (for :func:`reuse_key`)."""
    values = dict(zip((p.c_name for p in plan.impl.params), c_args))
    c_names = {p.name: p.c_name for p in plan.impl.params}
    for _, name, _ in plan.inputs:
        values[c_names[name]] = args[name]
    for _, name in plan.outputs:
        values[c_names[name]] = outs[name]
    return values


def caller_outputs(op: OpDef, specs: Mapping[str, Any], out: Any) -> Dict[str, Any]:
    """``out`` as ``{name: DeviceTensor}`` after checking it matches ``specs`` (shapes and dtypes)."""
    if hasattr(out, "_fields"):
        def get(name: str, _out: Any = out) -> Optional[Any]:
            return getattr(_out, name, None)
    elif isinstance(out, abc.Mapping):
        get = out.get
    elif len(specs) == 1:
        def get(name: str, _out: Any = out) -> Optional[Any]:
            return _out
    else:
        raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op.c_name,
                         f"out= must be a mapping or NamedTuple of {', '.join(specs)}; got {type(out).__name__}")
    res = {}
    for name, spec in specs.items():
        t = get(name)
        if not isinstance(t, DeviceTensor) or t.handle is None:
            raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op.c_name,
                             f"out['{name}'] must be a live DeviceTensor of shape {tuple(spec.shape)} and dtype "
                             f"{spec.dtype}; got {t!r}")
        if t.shape != spec.shape or t.dtype != spec.dtype:
            raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op.c_name,
                             f"out['{name}'] has shape {t.shape} and dtype {t.dtype}; this call writes "
                             f"shape {tuple(spec.shape)} dtype {spec.dtype}")
        res[name] = t
    return res


__all__ = ["run_on_device", "DevicePlan", "implementation", "resolve_stream", "Temporaries", "caller_outputs"]
