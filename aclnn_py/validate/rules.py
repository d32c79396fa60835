"""Small checking helpers every validation table is written with.

Each raises :class:`aclnn_py.errors.AclnnError` through :func:`aclnn_py.errors.param_error`, so
every message names the operator, the parameter, the rule and the offending value.
"""
from __future__ import annotations

import operator
from typing import Any, Iterable, Optional

import numpy as np

from ..dtypes import acl_name
from ..errors import (ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_PARAM_INVALID,
                      ACLNN_ERR_PARAM_NULLPTR, param_error)

NULLPTR = ACLNN_ERR_PARAM_NULLPTR
INVALID = ACLNN_ERR_PARAM_INVALID
TILING = ACLNN_ERR_INNER_TILING_ERROR
GROUP_NAME_MAX = 128


def fail(op: str, status: int, param: str, rule: str, value: Any) -> None:
    raise param_error(op, status, param, rule, value)


def require(cond: bool, op: str, status: int, param: str, rule: str, value: Any) -> None:
    if not cond:
        fail(op, status, param, rule, value)


def not_none(op: str, param: str, value: Any, status: int = NULLPTR) -> None:
    require(value is not None, op, status, param, "not None (required)", None)


def in_range(op: str, param: str, value: int, lo: int, hi: int, status: int = TILING) -> None:
    """lo <= value <= hi (inclusive)."""
    require(lo <= value <= hi, op, status, param, f"{lo} <= {param} <= {hi}", value)


def one_of(op: str, param: str, value: Any, allowed: Iterable, status: int = TILING) -> None:
    allowed = tuple(allowed)
    require(value in allowed, op, status, param, f"{param} in {allowed!r}", value)


def ndim(op: str, param: str, t: Any, dims: Iterable[int], status: int = TILING) -> None:
    dims = tuple(dims)
    nd = len(t.shape)
    require(nd in dims, op, status, param, f"{'/'.join(map(str, dims))}-D",
            f"{nd}-D tensor of shape {tuple(t.shape)}")


def dtype_in(op: str, param: str, t: Any, dtypes: Iterable, status: int = TILING) -> None:
    names = tuple(acl_name(d) for d in dtypes)
    got = acl_name(t.dtype)
    require(got in names, op, status, param, f"dtype in {names}", got)


def group_name(op: str, param: str, name: Optional[str], status_len: int = NULLPTR) -> None:
    """Group names are C strings of 1..127 bytes (HCCL_GROUP_NAME_MAX = 128 with the NUL)."""
    require(name is not None and name != "", op, NULLPTR, param, "a non-empty group name", name)
    n = len(name.encode("utf-8"))
    require(n < GROUP_NAME_MAX, op, status_len, param,
            f"length < {GROUP_NAME_MAX} bytes", f"{n} bytes")


def shared_experts(op: str, s: int, r: int, s_given: Any, rules: tuple, status: int = TILING) -> None:
    """Shared experts: ``s`` (shared_expert_num after the (1, 0) -> 0 normalisation) and ``r``
    (shared_expert_rank_num) are both 0 or both > 0, and ``s`` divides ``r``.

    ``rules``: the three rules as the operator's messages state them (the third may use ``{s}``);
    ``s_given``: the shared_expert_num value the second message reports.
    """
    require(not (s == 0 and r > 0), op, status, "shared_expert_rank_num", rules[0], r)
    require(not (s > 0 and r == 0), op, status, "shared_expert_num", rules[1], s_given)
    if s > 0:
        require(r % s == 0, op, status, "shared_expert_rank_num", rules[2].format(s=s), r)


def shape_eq(op: str, param: str, t: Any, shape: tuple, status: int = TILING) -> None:
    require(tuple(t.shape) == tuple(shape), op, status, param, f"shape == {tuple(shape)}", tuple(t.shape))


def integer(op: str, param: str, value: Any) -> int:
    """``value`` as a Python int; ``TypeError`` naming the operator and parameter for anything else
    (a float, a string, a list), before any rule compares it."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: parameter '{param}' must be an integer; got {type(value).__name__} {value!r}") from None


def as_int(x: Any) -> int:
    return int(np.asarray(x).reshape(-1)[0]) if hasattr(x, "shape") else int(x)
