"""Small checking helpers every validation table is written with.

Each raises :class:`aclnn_py.errors.AclnnError` through :func:`aclnn_py.errors.param_error`, so
every message names the operator, the parameter, the rule and the offending value.
"""
from __future__ import annotations

import operator
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from .. import catalog
from ..dtypes import acl_name
from ..errors import (ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_PARAM_INVALID,
                      ACLNN_ERR_PARAM_NULLPTR, AclnnError, param_error)

NULLPTR = ACLNN_ERR_PARAM_NULLPTR
INVALID = ACLNN_ERR_PARAM_INVALID
TILING = ACLNN_ERR_INNER_TILING_ERROR
GROUP_NAME_MAX = 128


INT64_MIN, INT64_MAX = -2**63, 2**63 - 1


class ArgumentTypeError(AclnnError, TypeError):
    """A parameter of the wrong Python type (161002; 161001 for ``None`` where a value is required).

    Still a :class:`TypeError`, so ``except TypeError`` keeps working; its status is the one CANN's op API
    layer gives a parameter it cannot take.
    """


def name_length(name: str) -> int:
    """Bytes of a group name as C sees it (UTF-8)."""
    return len(name.encode("utf-8"))


def fail(op: str, status: int, param: str, rule: str, value: Any) -> None:
    raise param_error(op, status, param, rule, value)


def require(cond: bool, op: str, status: int, param: str, rule: str, value: Any) -> None:
    """Raise when ``cond`` is false. ``rule`` and ``value`` are evaluated by the caller: pass only what is
    already computed; a message that reads arrays belongs in an ``if not cond: fail(...)`` branch."""
    if not cond:
        fail(op, status, param, rule, value)


def not_none(op: str, param: str, value: Any, status: int = NULLPTR) -> None:
    if value is None:
        fail(op, status, param, "not None (required)", None)


def in_range(op: str, param: str, value: int, lo: int, hi: int, status: int = TILING) -> None:
    """lo <= value <= hi (inclusive)."""
    if not lo <= value <= hi:
        fail(op, status, param, f"{lo} <= {param} <= {hi}", value)


def one_of(op: str, param: str, value: Any, allowed: Iterable, status: int = TILING) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        fail(op, status, param, f"{param} in {allowed!r}", value)


def ndim(op: str, param: str, t: Any, dims: Iterable[int], status: int = TILING) -> None:
    nd = len(t.shape)
    if nd not in dims:
        dims = tuple(dims)
        fail(op, status, param, f"{'/'.join(map(str, dims))}-D", f"{nd}-D tensor of shape {tuple(t.shape)}")


def dtype_in(op: str, param: str, t: Any, dtypes: Iterable, status: int = TILING) -> None:
    dtypes = tuple(dtypes)
    if np.dtype(t.dtype) in dtypes:
        return
    names = tuple(acl_name(d) for d in dtypes)
    got = acl_name(t.dtype)
    if got not in names:
        fail(op, status, param, f"dtype in {names}", got)


def shared_experts(op: str, s: int, r: int, s_given: Any, rules: tuple, status: int = TILING) -> None:
    """Shared experts: ``s`` (shared_expert_num after the (1, 0) -> 0 normalisation) and ``r``
    (shared_expert_rank_num) are both 0 or both > 0, and ``s`` divides ``r``.

    ``rules``: the three rules as the operator's messages state them (the third may use ``{s}``);
    ``s_given``: the shared_expert_num value the second message reports.
    """
    require(not (s == 0 and r > 0), op, status, "shared_expert_rank_num", rules[0], r)
    require(not (s > 0 and r == 0), op, status, "shared_expert_num", rules[1], s_given)
    if s > 0 and r % s != 0:
        fail(op, status, "shared_expert_rank_num", rules[2].format(s=s), r)


def shape_eq(op: str, param: str, t: Any, shape: tuple, status: int = TILING, note: str = "") -> None:
    """``t.shape == shape``; ``note`` follows the rule in the message."""
    if tuple(t.shape) != tuple(shape):
        fail(op, status, param, f"shape == {tuple(shape)}{note}", tuple(t.shape))


# ---- Python types (checked before any rule; CANN could not even be called with these) ------------------
def _type_error(op: str, param: str, want: str, value: Any) -> ArgumentTypeError:
    status = NULLPTR if value is None else INVALID
    return ArgumentTypeError(status, op, f"parameter '{param}' must be {want}; got {type(value).__name__} "
                                         f"{_short_repr(value)}")


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def integer(op: str, param: str, value: Any, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    """``value`` as a Python int (a Python or numpy integer, not a bool) within the C type's range
    ``[lo, hi]`` (default int64_t); :class:`ArgumentTypeError` naming the parameter otherwise."""
    if isinstance(value, (bool, np.bool_)):
        raise _type_error(op, param, "an integer (not a bool)", value)
    try:
        v = operator.index(value)
    except TypeError:
        raise _type_error(op, param, "an integer", value) from None
    if not lo <= v <= hi:
        raise ArgumentTypeError(INVALID, op, f"parameter '{param}' must fit the C parameter type "
                                             f"([{lo}, {hi}]); got {v}")
    return v


def real(op: str, param: str, value: Any) -> float:
    """``value`` as a Python float (a Python or numpy real number, not a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _type_error(op, param, "a real number", value)
    return float(value)


def string(op: str, param: str, value: Any, *, optional: bool = False) -> Optional[str]:
    """``value`` if it is a str (or ``None`` when ``optional``); the NULL checks of the rules handle ``None``."""
    if value is None or isinstance(value, str):
        return value
    raise _type_error(op, param, "a str" + (" or None" if optional else ""), value)


def is_tensor(value: Any) -> bool:
    """A tensor argument: a numpy array, a DeviceTensor, or anything with a shape tuple and a numpy dtype
    (a numpy scalar such as ``np.int32(5)`` is a scalar, not a tensor)."""
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, np.generic):
        return False
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if not isinstance(shape, tuple) or dtype is None:
        return False
    try:
        np.dtype(dtype)
    except TypeError:
        return False
    return all(isinstance(d, (int, np.integer)) for d in shape)


def tensor(op: str, param: str, value: Any) -> None:
    """A tensor parameter is ``None`` or a tensor; lists, tuples and scalars are refused (convert them with
    ``numpy.asarray(value, dtype)`` first: the dtype is part of the operator's contract)."""
    if value is not None and not is_tensor(value):
        raise _type_error(op, param, "a tensor (numpy.ndarray or DeviceTensor) or None", value)


def tensors(op: str, values: Mapping[str, Any]) -> None:
    """:func:`tensor` for every ``name: value`` in parameter order."""
    for name, value in values.items():
        tensor(op, name, value)



def typed_args(op: "catalog.OpDef", args: Mapping[str, Any]) -> dict:
    """Every argument of a call of ``op`` checked for its Python type, in C order (the catalog says which
    are tensors, integers, strings or reals): tensors are ``None`` or tensors, integers become ``int``,
    strings stay ``str`` (or ``None`` where the catalog allows NULL, and for the rules to report
    required ones), reals become ``float``; a tensor the catalog lets callers give as a scalar
    (``scalar_dtype``) may be an integer. Returns the arguments with those values; raises
    :class:`ArgumentTypeError` naming the first parameter of the wrong type."""
    name = op.c_name
    out = dict(args)
    for p in op.inputs:
        v = args[p.name]
        if p.is_tensor and p.scalar_dtype and v is not None and not is_tensor(v):
            out[p.name] = integer(name, p.name, v)      # a scalar given for a (1,) tensor (the barrier's time_out)
        elif p.is_tensor:
            tensor(name, p.name, v)
    for p in op.inputs:
        v = args[p.name]
        if p.kind == catalog.I64:
            out[p.name] = integer(name, p.name, v)
        elif p.kind == catalog.STR:
            out[p.name] = string(name, p.name, v, optional=p.nullable)
        elif p.kind == catalog.F32:
            out[p.name] = real(name, p.name, v)
    return out


# ---- whole-world (reference) arguments: one entry per global rank --------------------------------------
def sequence(op: str, param: str, seq: Any) -> list:
    """A per-rank argument of the world-level reference as a list (161002 naming it if it is not a sequence)."""
    if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__") or not hasattr(seq, "__getitem__"):
        raise _type_error(op, param, "a sequence with one entry (array or None) per global rank", seq)
    return list(seq)


def per_rank_length(op: str, param: str, seq: list, world: int,
                    size: str = "ep_world_size * max(tp_world_size, 1)") -> None:
    """A per-rank sequence has one entry per global rank (561002 naming it); ``size`` says where ``world``
    comes from."""
    if len(seq) != world:
        fail(op, TILING, param, f"one entry per global rank ({size} = {world})", f"{len(seq)} entries")


def first_present(seq: list) -> Optional[int]:
    """Index of the first entry that is not None (a rank that takes part), or None."""
    return next((g for g, v in enumerate(seq) if v is not None), None)


ACL_FORMAT_FRACTAL_NZ = 29
_NZ_FORMATS = frozenset((29, 50, 51, 52, 53, 54))   # aclFormat FRACTAL_NZ and its C0 variants


def is_nz(t: Any) -> bool:
    """Whether tensor ``t`` declares a FRACTAL_NZ format (``acl_format`` or ``format``: an aclFormat
    number or a name containing ``NZ``); numpy arrays and tensors without one are ND."""
    fmt = getattr(t, "acl_format", None)
    if fmt is None and not isinstance(t, np.ndarray):
        fmt = getattr(t, "format", None)
    if isinstance(fmt, str):
        return "NZ" in fmt.upper()
    return isinstance(fmt, (int, np.integer)) and int(fmt) in _NZ_FORMATS


def not_nz(op: str, param: str, t: Any, rule: str = "format ND (not FRACTAL_NZ)", status: int = TILING) -> None:
    require(not is_nz(t), op, status, param, rule, "FRACTAL_NZ")

