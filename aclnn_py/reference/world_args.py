"""The arguments of a world-level reference call, read through the operator's catalog entry.

A world-level function takes each per-rank tensor as a list indexed by global rank (``None`` for a rank
that does not run), the shared tensors (the elastic table) and the attributes once. These helpers turn
such a call into one rank's call (what its validator and the per-rank op see) and collect its lists.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..catalog import STR, OpDef
from ..errors import ACLNN_ERR_PARAM_NULLPTR
from ..validate import rules as R


@lru_cache(maxsize=None)
def per_rank_names(op: OpDef) -> Tuple[str, ...]:
    """The tensors a world-level call takes as per-rank lists, in C order."""
    return tuple(p.name for p in op.tensors if not p.shared)


def per_rank_lists(op: OpDef, args: Mapping[str, Any]) -> Dict[str, Optional[list]]:
    """Each per-rank argument as a list (entries unchanged: the per-rank validation checks them); a
    required one that is missing is 161001 naming it, a value that is not a sequence 161002."""
    out: Dict[str, Optional[list]] = {}
    for name in per_rank_names(op):
        value = args[name]
        if value is None:
            if op.param(name).required:
                R.fail(op.c_name, ACLNN_ERR_PARAM_NULLPTR, name,
                       "a sequence with one entry per global rank (required)", None)
            out[name] = None
        else:
            out[name] = R.sequence(op.c_name, name, value)
    return out


def rank_call(op: OpDef, args: Mapping[str, Any], lists: Mapping[str, Optional[list]], g: int,
              identity: Mapping[str, Any]) -> Dict[str, Any]:
    """Global rank ``g``'s own call: the entry ``g`` of each per-rank list, the shared values and attributes
    as given, and the rank's identity (``ep_rank_id`` / ``tp_rank_id``) from ``identity``."""
    call: Dict[str, Any] = {}
    for p in op.inputs:
        if p.name in lists:
            seq = lists[p.name]
            call[p.name] = seq[g] if seq is not None and g < len(seq) else None
        elif p.rank_local and p.kind != STR:
            call[p.name] = identity[p.name]
        else:
            call[p.name] = args[p.name]
    return call


def with_in_place(op: OpDef, fields: Mapping[str, Any], lists: Mapping[str, Optional[list]], g: int,
                  args: Mapping[str, Any]) -> Any:
    """Rank ``g``'s result from its output ``fields`` (name -> array) and the operator's in-place arguments
    (V4's ``performance_info``): the caller's values, which the reference leaves as they are (they record
    hardware wait times), or zeros of the shape the catalog gives. One output without a result type: that
    array."""
    values = dict(fields)
    for p in op.inputs:
        if p.in_place is not None:
            seq = lists.get(p.name)
            given = seq[g] if seq is not None else None
            spec = p.in_place(args)
            values[p.name] = np.array(given, spec.dtype, copy=True) if given is not None else np.zeros(spec.shape,
                                                                                                       spec.dtype)
    return op.result(**values) if op.result is not None else next(iter(values.values()))


__all__ = ["per_rank_names", "per_rank_lists", "rank_call", "with_in_place"]
