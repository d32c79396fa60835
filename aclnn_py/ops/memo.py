"""Memoised validation: a repeated call with the same shapes and attributes skips every rule.

The validators in :mod:`aclnn_py.validate` are pure functions of the attribute values, the shape /
dtype / format of every tensor, the contents of host ``numpy`` arrays and ``HCCL_BUFFSIZE``; the key
holds all of these (and the validator itself), so any change re-runs every rule. A call that fails is
never memoised (it raises again, with the same status, every time). Device tensors are keyed by
metadata only, exactly as the rules check them. Host arrays larger than 4 KiB, lists and unknown
array-likes make the call bypass the memo.
"""
from __future__ import annotations

from collections import abc
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np

from ..validate.buffsize import ENV_NAME
from ..runtime.environ import getenv

MEMO_MAX = 1024           # entries; the memo is cleared when full
MEMO_VALUE_BYTES = 4096   # host arrays up to this size are keyed by value; larger ones are never memoised
_memo: Dict[tuple, Any] = {}


class Uncacheable(Exception):
    """An argument validation cannot be keyed on (a large host array, a list, an unknown array-like)."""


_PLAIN = frozenset((str, int, type(None)))


def arg_key(v: Any) -> Any:
    """What validation can read of one argument: the value of a scalar/str, the shape, dtype and format of
    a tensor, and the contents of a (small) host array. Raises :class:`Uncacheable`."""
    t = type(v)
    if t in _PLAIN:                       # str / int / None keep their type in the key through the value
        return v
    if hasattr(v, "handle") and hasattr(v, "acl_dtype"):        # a DeviceTensor
        d = v.__dict__                    # a format set on the instance is part of what the rules read
        return (t, v.shape, v.acl_dtype, d.get("format"), d.get("acl_format"))
    if isinstance(v, (bool, float, bytes, np.generic)) or (isinstance(v, (int, str)) and t not in _PLAIN):
        return (t, v)                     # True/1/1.0 compare equal: the type tells them apart
    if isinstance(v, np.ndarray):
        if v.nbytes > MEMO_VALUE_BYTES or v.dtype.hasobject:
            raise Uncacheable
        return (t, v.shape, v.dtype, v.tobytes(), getattr(v, "acl_format", None))
    if type(v) is dict or isinstance(v, abc.Mapping):
        return tuple((k, arg_key(x)) for k, x in v.items())
    shape, dtype = getattr(v, "shape", None), getattr(v, "dtype", None)
    if shape is None or dtype is None:
        raise Uncacheable       # lists and other array-likes: validated every time
    return (t, tuple(shape), np.dtype(dtype), getattr(v, "format", None), getattr(v, "acl_format", None))


class Entry:
    """A validated call signature: the validator's result (``layout``) and what the device path worked out
    for it once (``plan``, set by :mod:`aclnn_py.ops.device_path`)."""

    __slots__ = ("layout", "plan")

    def __init__(self, layout: Any) -> None:
        self.layout, self.plan = layout, None


def entry(validator: Callable[..., Any], args: Mapping[str, Any], outputs: Any = None,
          cann_version: Optional[str] = None) -> Entry:
    """``validator(**args, outputs=outputs, cann_version=cann_version)`` as an :class:`Entry`, memoised on
    everything the rules read (module docstring), the release's rules included; a call that cannot be keyed
    gets a new entry each time.

    ``outputs``: the caller's ``out=`` (a results NamedTuple is passed on as ``{name: tensor}``).
    """
    if outputs is not None and hasattr(outputs, "_asdict"):
        outputs = outputs._asdict()
    try:
        key = (validator, getenv(ENV_NAME), cann_version, tuple(args),
               tuple([arg_key(v) for v in args.values()]), arg_key(outputs))
    except Uncacheable:
        return Entry(validator(**args, outputs=outputs, cann_version=cann_version))
    try:
        return _memo[key]
    except KeyError:
        pass
    found = Entry(validator(**args, outputs=outputs, cann_version=cann_version))
    if len(_memo) >= MEMO_MAX:
        _memo.clear()
    _memo[key] = found
    return found


def clear() -> None:
    """Forget every memoised validation."""
    _memo.clear()


__all__ = ["entry", "Entry", "arg_key", "clear", "Uncacheable", "MEMO_MAX", "MEMO_VALUE_BYTES"]
