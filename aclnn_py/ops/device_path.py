"""An operator call on the device backend (CANN or the simulator): upload, allocate, run both phases.

The arguments arrive validated, by keyword (:mod:`aclnn_py.ops.call`); the catalog entry says which are
tensors and what their C names are. Host inputs are uploaded into temporaries, outputs are allocated
zero-filled at the shapes the entry's ``output_specs`` gives (or taken from the caller's ``out=``), and
:func:`aclnn_py.runtime.twophase.run_two_phase` runs the operator the install exports
(:func:`implementation`). Every temporary is released on every path.
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
from ..runtime.device import Stream, acl_init
from ..runtime.tensor import DeviceTensor
from ..runtime.twophase import active_executor_reuse, reuse_key, run_two_phase


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

    def zeros(self, spec) -> DeviceTensor:
        t = DeviceTensor.zeros(spec.shape, spec.dtype)
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
@lru_cache(maxsize=None)
def _c_names(op: OpDef) -> Dict[str, str]:
    """keyword -> C parameter name of every parameter of ``op``."""
    return {p.name: p.c_name for p in op.params}


@lru_cache(maxsize=None)
def _tensor_names(op: OpDef) -> frozenset:
    return frozenset(p.name for p in op.inputs if p.is_tensor)


@lru_cache(maxsize=None)
def _scalar_dtypes(op: OpDef) -> Dict[str, str]:
    return {p.name: p.scalar_dtype for p in op.inputs if p.scalar_dtype}


def run_on_device(op: OpDef, args: Mapping[str, Any], specs: Mapping[str, Any], stream: Any, sync: bool,
                  out: Any = None, prof: Optional[Profile] = None) -> Dict[str, Any]:
    """Upload the tensor arguments, allocate zero-filled outputs (``specs``: name -> TensorSpec), run both
    phases of the version :func:`implementation` picks for release ``prof``; returns the output DeviceTensors
    by name (an in-place argument such as V4's ``performance_info`` among them: the caller's tensor, or a
    zeroed one).

    ``out``: the caller's preallocated outputs (a mapping or NamedTuple with those names, or one tensor for a
    single output) with exactly those shapes and dtypes; written in place and returned, with no allocation
    and no zero-fill (elements the kernel does not write keep their contents, as on hardware).
    """
    impl = implementation(op, args, prof)
    c_names, tensor_names, scalar_dtypes = _c_names(impl), _tensor_names(op), _scalar_dtypes(op)
    in_place = _in_place(op)
    stream = resolve_stream(stream)
    with Temporaries(stream, sync) as tmp:
        values: Dict[str, Any] = {}
        tensors = []
        for key, value in args.items():
            if key not in c_names:          # an argument the chosen version lacks, left at its default
                continue
            if key in tensor_names and value is not None:
                if type(value) is not DeviceTensor:
                    value = tmp.device(value, scalar_dtypes.get(key))
                tensors.append(value)
            values[c_names[key]] = value
        given = {n: values[c_names[n]] for n in in_place if values.get(c_names[n]) is not None}
        if out is not None:
            outs = caller_outputs(op, {n: s for n, s in specs.items() if n not in given}, out)
        else:
            outs = {n: tmp.zeros(s) for n, s in specs.items() if n not in given}
        outs.update(given)
        for name, t in outs.items():
            values[c_names[name]] = t
        reuse = None
        if out is not None and not tmp.items and active_executor_reuse() is not None:
            # every tensor is the caller's: the call may be replayed (see ReuseExecutors)
            reuse = reuse_key(impl.c_name, values)
        run_two_phase(impl.c_name, values, stream, sync=sync, reuse=reuse)
        return {name: tmp.keep(t) for name, t in outs.items()}


@lru_cache(maxsize=None)
def _in_place(op: OpDef) -> tuple:
    return tuple(p.name for p in op.inputs if p.in_place is not None)


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


__all__ = ["run_on_device", "implementation", "resolve_stream", "Temporaries", "caller_outputs"]
