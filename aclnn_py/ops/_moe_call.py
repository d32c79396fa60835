"""Machinery shared by the three MoE wrappers: names, ABI checks, device and reference execution."""
from __future__ import annotations

import os
import re
from collections import abc
from functools import lru_cache
from typing import Any, Callable, Dict, List, Mapping, Tuple

import numpy as np

from ..orchestration.precheck import check_across_ranks
from ..errors import ACLNN_ERR_INNER_FIND_KERNEL_ERROR, ACLNN_ERR_INNER_TILING_ERROR, AclnnError, CollectiveError
from ..layout import parse_elastic_info
from ..runtime import abi
from ..runtime.tensor import HOST_METHODS
from ..validate.buffsize import ENV_NAME
from ._call import Temporaries, _runtime, host, require_rank, resolve_stream

# The header each operator is declared in, relative to $home/include (spec/abi.md §2.4 hazard).
HEADERS = {
    "aclnnMoeDistributeDispatchV3": "aclnnop/aclnn_moe_distribute_dispatch_v3.h",
    "aclnnMoeDistributeCombineV3": "aclnnop/aclnn_moe_distribute_combine_v3.h",
    "aclnnMoeDistributeCombineAddRmsNormV2": "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h",
}


def snake(c_name: str) -> str:
    """torch_npu's keyword for a C parameter: ``xActiveMaskOptional`` -> ``x_active_mask``,
    ``constExpertAlpha1Optional`` -> ``const_expert_alpha_1``, ``expandXOut`` -> ``expand_x``."""
    base = re.sub(r"(Optional|Out)$", "", c_name)
    return re.sub(r"(?<=[a-z0-9])([A-Z])|(?<=[a-zA-Z])([0-9])", lambda m: "_" + m.group(0).lower(), base).lower()


@lru_cache(maxsize=None)
def keyword_map(op_name: str) -> Dict[str, str]:
    """snake_case keyword -> C parameter name for every parameter of ``op_name``."""
    return {snake(c): c for c, _ in abi.OPS[op_name].params}


def _base(a: np.ndarray) -> np.ndarray:
    """``a`` as a plain ndarray view (ndarray's own view: HostTensor.view returns plain data too)."""
    return np.ndarray.view(a, np.ndarray)


class HostTensor(np.ndarray):
    """A reference-backend result: a numpy array with the DeviceTensor methods, satisfying
    :class:`aclnn_py.Tensor` like a device result does.

    As with a DeviceTensor, what you compute from it -- arithmetic, ufuncs, indexing -- is a plain
    ``numpy.ndarray`` (host data, no ``.numpy()`` / ``.free()``), so per-rank code behaves the same on
    both backends. ``free()`` and the ``with`` block are no-ops (numpy memory is garbage-collected).
    """

    def numpy(self) -> np.ndarray:
        """A host copy (a new, writable plain ndarray)."""
        return np.array(_base(self), copy=True)

    def free(self) -> None:
        """Nothing to release (kept for the :class:`aclnn_py.Tensor` interface)."""

    def __enter__(self) -> "HostTensor":
        return self

    def __exit__(self, *exc) -> None:
        self.free()

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # results of ufuncs and arithmetic are plain host arrays (or scalars), as on the device backend
        array = _base(array)
        return array[()] if return_scalar else array

    def __getitem__(self, key):
        return _base(self)[key]

    @property
    def handle(self):  # lets reference results be passed back in like device tensors
        return None


def _plain(name: str) -> Any:
    """ndarray's ``name`` (a method or a property), giving a plain ndarray instead of a HostTensor."""
    attr = getattr(np.ndarray, name)
    if callable(attr):
        def method(self, *args, **kwargs):
            return attr(_base(self), *args, **kwargs)
        method.__name__ = name
        method.__doc__ = f"ndarray.{name}, returning plain host data (as on a DeviceTensor)."
        return method
    return property(lambda self: attr.__get__(_base(self)), doc=f"ndarray.{name} (plain host data)")


for _name in HOST_METHODS:          # the data-reading methods DeviceTensor serves from a host copy
    setattr(HostTensor, _name, _plain(_name))
del _name


def as_host_tensor(a: np.ndarray) -> HostTensor:
    return np.asarray(a).view(HostTensor)


_checked: Dict[str, bool] = {}


def check_installed_abi(op_name: str) -> None:
    """Refuse to call ``op_name`` when the install does not have the ABI aclnn_py binds."""
    if _checked.get(op_name):
        return
    from ..runtime.device import acl_init
    lib = acl_init()
    family = next(f for f, names in abi.OP_FAMILIES.items() if op_name in names)
    available = [n for n in abi.OP_FAMILIES[family] if _exports(lib, n)]
    if op_name not in available:
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op_name,
                         f"not exported by the CANN at {lib.install.home}; it has {available or 'no version'} "
                         f"of {family}. aclnn_py binds {op_name} only, to avoid calling with a wrong argument list")
    header = lib.install.home / "include" / HEADERS.get(op_name, "")
    if op_name in HEADERS and header.is_file() and "performanceInfoOptional" in header.read_text(errors="replace"):
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op_name,
                         f"{header} declares performanceInfoOptional, i.e. a {abi.OPS[op_name].arg_count + 1}-argument "
                         f"{op_name} (a development-snapshot ABI); aclnn_py binds the released "
                         f"{abi.OPS[op_name].arg_count}-argument form and refuses to call it")
    _checked[op_name] = True


def _exports(lib, name: str) -> bool:
    try:
        lib.op(name)
        return True
    except AclnnError:
        return False


@lru_cache(maxsize=None)
def _device_plan(op_name: str) -> Dict[str, Tuple[str, bool]]:
    """snake_case keyword -> (C parameter name, is a tensor) for ``op_name``, built once."""
    kinds = dict(abi.OPS[op_name].params)
    return {snake(c): (c, kind == abi.TENSOR) for c, kind in kinds.items()}


def run_on_device(op_name: str, kwargs: Mapping[str, Any], outputs: Mapping[str, Any], stream: Any,
                  sync: bool, *, out: Any = None) -> Dict[str, Any]:
    """Upload inputs, allocate zero-filled outputs, run both phases; returns the output DeviceTensors.

    ``outputs``: ``{name: TensorSpec}`` of the operator's outputs. ``out`` (optional): the caller's
    preallocated output DeviceTensors (a mapping or NamedTuple with those names, or one tensor for a
    single output) with exactly those shapes and dtypes; they are written in place and returned, with
    no allocation and no zero-fill (elements the kernel does not write keep their contents, as with
    preallocated tensors on hardware).
    """
    check_across_ranks(op_name, kwargs)
    if not _checked.get(op_name):
        check_installed_abi(op_name)
    rt = _runtime()
    device_tensor = rt.DeviceTensor
    plan = _device_plan(op_name)
    stream = resolve_stream(stream)
    with Temporaries(stream, sync) as tmp:
        values: Dict[str, Any] = {}
        tensors = []
        for key, value in kwargs.items():
            c, is_tensor = plan[key]
            if is_tensor and value is not None:
                if type(value) is not device_tensor:
                    value = tmp.device(value)
                tensors.append(value)
            values[c] = value
        if out is None:
            outs = {name: tmp.zeros(spec) for name, spec in outputs.items()}
        else:
            outs = caller_outputs(op_name, outputs, out)
        for name, t in outs.items():
            values[plan[name][0]] = t
        reuse = None
        if out is not None and not tmp.items and rt.active_executor_reuse() is not None:
            # every tensor is the caller's: the call may be replayed (see ReuseExecutors)
            tensors.extend(outs.values())
            reuse = (op_name, tuple(values), tuple(values.values()), tuple([(t.handle, t.ptr) for t in tensors]))
        rt.run_two_phase(op_name, values, stream, sync=sync, reuse=reuse)
        return {name: tmp.keep(t) for name, t in outs.items()} if out is None else outs


def caller_outputs(op_name: str, outputs: Mapping[str, Any], out: Any) -> Dict[str, Any]:
    """``out`` as ``{name: DeviceTensor}`` after checking it matches ``outputs`` (shapes and dtypes)."""
    device_tensor = _runtime().DeviceTensor
    if hasattr(out, "_fields"):
        def get(name, _out=out):
            return getattr(_out, name, None)
    elif isinstance(out, dict) or isinstance(out, abc.Mapping):
        get = out.get
    elif len(outputs) == 1:
        def get(name, _out=out):
            return _out
    else:
        raise TypeError(f"{op_name}: out= must be a mapping or NamedTuple of {', '.join(outputs)}")
    res = {}
    for name, spec in outputs.items():
        t = get(name)
        if not isinstance(t, device_tensor) or t.handle is None:
            raise TypeError(f"{op_name}: out['{name}'] must be a live DeviceTensor of shape {tuple(spec.shape)} "
                            f"and dtype {spec.dtype}; got {t!r}")
        if t.shape != spec.shape or t.dtype != spec.dtype:
            raise AclnnError(ACLNN_ERR_INNER_TILING_ERROR, op_name,
                             f"out['{name}'] has shape {t.shape} and dtype {t.dtype}; this call writes "
                             f"shape {tuple(spec.shape)} dtype {spec.dtype}")
        res[name] = t
    return res


# ---- memoised validation ----------------------------------------------------------------------------
_MEMO_MAX = 1024           # entries; the memo is cleared when full
_MEMO_VALUE_BYTES = 4096   # host arrays up to this size are keyed by value; larger ones are never memoised
_memo: Dict[tuple, Any] = {}


class _Uncacheable(Exception):
    pass


_PLAIN = frozenset((str, int, type(None)))


def _arg_key(v: Any) -> Any:
    """What validation can read of one argument: the value of a scalar/str, the shape, dtype and format of
    a tensor, and the contents of a (small) host array."""
    t = type(v)
    if t in _PLAIN:                       # str / int / None keep their type in the key through the value
        return v
    if t is _runtime().DeviceTensor:
        d = v.__dict__                    # a format set on the instance is part of what the rules read
        return (t, v.shape, v.acl_dtype, d.get("format"), d.get("acl_format"))
    if isinstance(v, (bool, float, bytes, np.generic)) or (isinstance(v, (int, str)) and t not in _PLAIN):
        return (t, v)                     # True/1/1.0 compare equal: the type tells them apart
    if isinstance(v, np.ndarray):
        if v.nbytes > _MEMO_VALUE_BYTES or v.dtype.hasobject:
            raise _Uncacheable
        return (t, v.shape, v.dtype, v.tobytes())
    shape, dtype = getattr(v, "shape", None), getattr(v, "dtype", None)
    if shape is None or dtype is None:
        raise _Uncacheable       # lists and other array-likes: validated every time
    return (t, tuple(shape), np.dtype(dtype), getattr(v, "format", None), getattr(v, "acl_format", None))


def validate_call(validator: Callable[..., Any], kwargs: Mapping[str, Any], **extra: Any) -> Any:
    """``validator(**kwargs, **extra)``, memoised on everything the rules read.

    The validators in :mod:`aclnn_py.validate` are pure functions of the attribute values, the shape /
    dtype / format of every tensor, the contents of host ``numpy`` arrays and ``HCCL_BUFFSIZE``; the key
    holds all of these (and the validator itself), so any change re-runs every rule. A call that fails
    is never memoised (it raises again, with the same status, every time). Device tensors are keyed by
    metadata only, exactly as the rules check them. Host arrays larger than 4 KiB, lists and unknown
    array-likes make the call bypass the memo.
    """
    outputs = extra.get("outputs")
    if outputs is not None and hasattr(outputs, "_asdict"):   # a results NamedTuple -> {name: tensor}
        extra["outputs"] = outputs._asdict()
    try:
        key = (validator, os.environ.get(ENV_NAME), tuple(kwargs), tuple([_arg_key(v) for v in kwargs.values()]),
               tuple(extra), tuple([_arg_key_out(v) for v in extra.values()]))
    except _Uncacheable:
        return validator(**kwargs, **extra)
    try:
        return _memo[key]
    except KeyError:
        pass
    result = validator(**kwargs, **extra)
    if len(_memo) >= _MEMO_MAX:
        _memo.clear()
    _memo[key] = result
    return result


def _arg_key_out(v: Any) -> Any:
    if type(v) is dict or isinstance(v, abc.Mapping):
        return tuple((k, _arg_key(t)) for k, t in v.items())
    return _arg_key(v)


@lru_cache(maxsize=512)
def output_specs(specs_fn: Callable[..., dict], *args: Any) -> dict:
    """``specs_fn(*args)`` (a :mod:`aclnn_py.layout` ``*_output_specs`` function), memoised: the same
    layout, H and dtypes always give the same shapes. The dict is shared: read it, never modify it."""
    return specs_fn(*args)


def fill_outputs(out: Any, result: Any) -> Any:
    """Copy a reference-backend ``result`` into the caller's ``out`` (host arrays or device tensors) and
    return ``out``, so ``out=`` works the same on both backends."""
    from ..runtime.tensor import DeviceTensor
    pairs = (zip(out, result) if hasattr(out, "_fields") else [(out, result)])
    for dst, src in pairs:
        if isinstance(dst, DeviceTensor):
            dst.copy_from(np.asarray(src))
        else:
            np.copyto(dst, src)
    return out


# ---- reference backend ------------------------------------------------------------------------
def component(ctx, group_ep: str, group_tp: str, tp_world_size: int) -> List[int]:
    """Global ranks whose data this rank's call depends on: its EP group, and with TP = 2 the EP
    groups of every TP peer of its members."""
    world = ctx.world
    ep = world.membership(group_ep, ctx.rank)
    ranks = set(ep.members)
    if tp_world_size == 2:
        tp_label = world.membership(group_tp, ctx.rank).label
        for m in list(ranks):
            for peer in world.ranks[m].groups[tp_label].members:
                ranks.update(world.ranks[peer].groups[ep.label].members)
    return sorted(ranks)


def removed_positions(elastic_info: Any, ep_world_size: int) -> List[int]:
    info = parse_elastic_info(host(elastic_info), ep_world_size)
    if info is None or not info.enabled:
        return []
    return [r for r in range(ep_world_size) if info.to_new[r] == -1]


RANK_KEYS = ("ep_rank_id", "tp_rank_id", "group_ep", "group_tp")


def run_on_reference(op: str, kwargs: Dict[str, Any], tensor_keys: List[str],
                     world_fn: Callable[..., list], wrap: Callable[[Any], Any]) -> Any:
    """Meet the other ranks of the EP x TP component and compute the world-level reference once.

    ``tensor_keys``: per-rank tensor keywords (passed to ``world_fn`` as lists by position
    ``ep_rank_id * max(tp,1) + tp_rank_id``); every other keyword must agree across ranks.
    """
    check_across_ranks(op, kwargs)
    ctx = require_rank(op)
    tp = kwargs.get("tp_world_size", 0)
    ep_size = kwargs["ep_world_size"]
    ranks = component(ctx, kwargs["group_ep"], kwargs.get("group_tp", ""), tp)
    tpf = max(tp, 1)
    gone = set(removed_positions(kwargs.get("elastic_info"), ep_size))
    participants = [g for g in ranks if (g // tpf) not in gone] if gone else ranks
    key = f"{op}:{','.join(map(str, ranks))}"
    payload = {k: (host(v) if k in tensor_keys or k == "elastic_info" else v) for k, v in kwargs.items()}

    def compute(payloads: Dict[int, Dict[str, Any]]) -> Dict[int, Any]:
        first_rank = min(payloads)
        first = payloads[first_rank]
        shared = {k: v for k, v in first.items() if k not in tensor_keys and k not in RANK_KEYS}
        for g, p in payloads.items():
            for k, v in shared.items():
                if not _same(p.get(k), v):
                    raise CollectiveError(ACLNN_ERR_INNER_TILING_ERROR, op,
                                          f"rank {g} passed {k}={_short(p.get(k))} but rank {first_rank} passed "
                                          f"{_short(v)}; every rank must pass the same value")
        n = ep_size * tpf
        by_pos: Dict[int, int] = {}
        for g, p in payloads.items():
            pos = p["ep_rank_id"] * tpf + p.get("tp_rank_id", 0)
            if pos in by_pos or not 0 <= pos < n:
                raise CollectiveError(ACLNN_ERR_INNER_TILING_ERROR, op,
                                      f"rank {g} claims ep_rank_id={p['ep_rank_id']}, tp_rank_id={p.get('tp_rank_id', 0)}"
                                      + (f", as does rank {by_pos[pos]}" if pos in by_pos else ", out of range"))
            by_pos[pos] = g
        lists = {}
        for k in tensor_keys:
            entries = [payloads[by_pos[i]].get(k) if i in by_pos else None for i in range(n)]
            lists[k] = None if all(e is None for e in entries) else entries
        extra = {k: v for k, v in shared.items() if v is not None}
        extra["group_ep"] = first["group_ep"]
        if "group_tp" in first:
            extra["group_tp"] = first["group_tp"]
        out = world_fn(**lists, **extra)
        return {g: out[pos] for pos, g in by_pos.items()}

    result = ctx.world.rendezvous.collective(op, key, ctx.rank, participants, payload, compute, ctx.world.timeout_s,
                                             "a real device would hang")
    return wrap(result)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{list(v.reshape(-1)[:8])}"
    return repr(v)

