"""The elastic scale-down table (``elastic_info``), decoded in one place.

An int32 array of ``4 + 2*ep``: ``[0]`` switches the scale-down on, ``[1]`` the ranks left (``ep'``),
``[2]`` the shared-expert ranks among them, ``[3]`` the MoE experts after scale-down (``M'``), then
Table1 (``ep`` entries: original rank -> new rank, or -1 when removed) and Table2 (``ep`` entries: new
rank -> original rank). The MoE operators treat any non-zero ``[0]`` as "on"; the barrier's kernel
only ``[0] == 1``. Validation of a table lives in :mod:`aclnn_py.validate`; this module only reads it.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import numpy as np


class ElasticInfo(NamedTuple):
    """A decoded ``elastic_info`` (no validation)."""

    enabled: bool          # [0] != 0: the MoE operators scale down
    ep_world_size: int     # [1]: ranks after scale-down
    shared_rank_num: int   # [2]
    moe_expert_num: int    # [3]
    to_new: np.ndarray     # Table1[orig] = new rank or -1
    to_orig: np.ndarray    # Table2[new] = orig rank
    flag: int              # [0] as given

    def removed(self) -> List[int]:
        """Original ranks the MoE operators leave out (Table1 == -1), when the table is on."""
        if not self.enabled:
            return []
        return [r for r in range(len(self.to_new)) if int(self.to_new[r]) == -1]

    def kept(self) -> List[int]:
        """Original ranks that take part in a MoE operator call, in original order."""
        gone = set(self.removed())
        return [r for r in range(len(self.to_new)) if r not in gone]

    def barrier_participants(self) -> List[int]:
        """Group ranks that take part in the barrier: ``Table2[0:[1]]`` when ``[0] == 1``, else all."""
        if self.flag != 1:
            return list(range(len(self.to_new)))
        return sorted(int(r) for r in self.to_orig[:self.ep_world_size])


def parse_elastic_info(info: Optional[np.ndarray], ep_world_size: int) -> Optional[ElasticInfo]:
    """Split an elastic table of an ``ep_world_size`` group into its fields (``None`` stays ``None``).

    A table shorter than ``4 + 2*ep_world_size`` (which validation rejects) reads as missing entries -1."""
    if info is None:
        return None
    a = np.asarray(info).astype(np.int64).reshape(-1)
    n = 4 + 2 * ep_world_size
    if a.size < n:
        a = np.concatenate([a, np.full(n - a.size, -1, np.int64)])
    return ElasticInfo(bool(a[0] != 0), int(a[1]), int(a[2]), int(a[3]), a[4:4 + ep_world_size].copy(),
                       a[4 + ep_world_size:n].copy(), int(a[0]))


def make_elastic_info(ep_world_size: int, removed: Sequence[int], *, shared_rank_num: int = 0,
                      moe_expert_num: int = 0) -> np.ndarray:
    """``elastic_info`` (int32, ``4 + 2*ep``) for a scale-down that removes ``removed`` ranks.

    Surviving ranks keep their order: new rank ``i`` is the ``i``-th survivor. ``shared_rank_num``
    and ``moe_expert_num`` are the values after scale-down (fields [2] and [3]; the barrier
    ignores them). Unused Table2 entries are -1, as in the official example.
    """
    survivors = [r for r in range(ep_world_size) if r not in set(removed)]
    to_new = np.full(ep_world_size, -1, np.int64)
    to_new[survivors] = np.arange(len(survivors))
    to_orig = np.full(ep_world_size, -1, np.int64)
    to_orig[:len(survivors)] = survivors
    head = [1, len(survivors), shared_rank_num, moe_expert_num]
    return np.concatenate([head, to_new, to_orig]).astype(np.int32)


__all__ = ["ElasticInfo", "parse_elastic_info", "make_elastic_info"]
