"""Derived quantities and output shapes of the MoE distribute ops (A3 tiling / infershape rules).

One place computes what every backend needs: the shared-expert normalisation, experts per rank,
the row capacity ``A``, rank maps, the elastic table, and the output shapes torch_npu allocates
(``../shared/spec/prior-art.md`` §1.3, ``dispatch-v3.md`` §2 and §4).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np


def normalised_shared_expert_num(shared_expert_num: int, shared_expert_rank_num: int) -> int:
    """The tiling's ``S``: ``shared_expert_num == 1`` with no shared ranks means no shared experts."""
    if shared_expert_rank_num == 0 and shared_expert_num == 1:
        return 0
    return shared_expert_num


def global_rank(ep_rank: int, tp_rank: int, tp_world_size: int) -> int:
    """Global rank index used throughout: ``ep_rank * max(tp, 1) + tp_rank``."""
    return ep_rank * max(tp_world_size, 1) + tp_rank


class ElasticInfo(NamedTuple):
    """Parsed ``elastic_info`` (int32, length ``4 + 2*ep``)."""

    enabled: bool          # [0] != 0
    ep_world_size: int     # [1]: ranks after scale-down
    shared_rank_num: int   # [2]
    moe_expert_num: int    # [3]
    to_new: np.ndarray     # Table1[orig] = new rank or -1
    to_orig: np.ndarray    # Table2[new] = orig rank


def parse_elastic_info(info: Optional[np.ndarray], ep_world_size: int) -> Optional[ElasticInfo]:
    """Split an elastic table into its fields (no validation; see :mod:`aclnn_py.validate`)."""
    if info is None:
        return None
    a = np.asarray(info).astype(np.int64).reshape(-1)
    return ElasticInfo(bool(a[0] != 0), int(a[1]), int(a[2]), int(a[3]),
                       a[4:4 + ep_world_size].copy(), a[4 + ep_world_size:4 + 2 * ep_world_size].copy())


@dataclass(frozen=True)
class MoeLayout:
    """Attribute-derived quantities for one EP rank (original attribute values, not elastic ones).

    ``bs`` is this rank's batch size and ``k`` its top-k. Shapes use these values; routing under
    elastic scale-down uses the values in :class:`ElasticInfo` instead.
    """

    ep_world_size: int
    ep_rank_id: int
    moe_expert_num: int
    bs: int
    k: int
    tp_world_size: int = 0
    shared_expert_num: int = 1
    shared_expert_rank_num: int = 0
    global_bs: int = 0
    elastic: bool = False

    @property
    def s(self) -> int:
        """Normalised shared-expert count ``S``."""
        return normalised_shared_expert_num(self.shared_expert_num, self.shared_expert_rank_num)

    @property
    def r(self) -> int:
        """Shared-expert rank count ``R``."""
        return self.shared_expert_rank_num

    @property
    def global_bs_eff(self) -> int:
        return self.global_bs if self.global_bs != 0 else self.bs * self.ep_world_size

    @property
    def max_bs(self) -> int:
        return self.global_bs_eff // self.ep_world_size

    @property
    def moe_local_expert_num(self) -> int:
        """``L``: MoE experts on each MoE rank (0 if the split is impossible)."""
        moe_ranks = self.ep_world_size - self.r
        return self.moe_expert_num // moe_ranks if moe_ranks > 0 else 0

    @property
    def ranks_per_shared_expert(self) -> int:
        return self.r // self.s if self.s > 0 else 0

    @property
    def is_shared_rank(self) -> bool:
        return self.ep_rank_id < self.r

    @property
    def shared_a(self) -> int:
        rpse = self.ranks_per_shared_expert
        if rpse <= 0:
            return 0
        return self.max_bs * (-(-self.ep_world_size // rpse))

    @property
    def moe_a(self) -> int:
        return self.global_bs_eff * min(self.moe_local_expert_num, self.k)

    @property
    def a(self) -> int:
        """Rows per TP slot of ``expand_x`` (the docs' ``A``)."""
        if self.elastic:
            return max(self.shared_a, self.moe_a)
        return self.shared_a if self.is_shared_rank else self.moe_a

    @property
    def local_expert_num(self) -> int:
        """Length of ``expert_token_nums``: 1 on shared ranks, ``L`` on MoE ranks, ``max(L,1)`` with elastic."""
        if self.elastic:
            return max(self.moe_local_expert_num, 1)
        return 1 if self.is_shared_rank else self.moe_local_expert_num

    @property
    def tp_factor(self) -> int:
        return max(self.tp_world_size, 1)

    @property
    def ep_recv_counts_len(self) -> int:
        return self.ep_world_size * self.local_expert_num * (2 if self.tp_world_size == 2 else 1)


class TensorSpec(NamedTuple):
    shape: tuple
    dtype: np.dtype


def dispatch_output_specs(lay: MoeLayout, h: int, x_dtype, quant_mode: int) -> dict:
    """Shapes and dtypes of DispatchV3's seven outputs, in C argument order."""
    a, tpf = lay.a, lay.tp_factor
    return {
        "expand_x": TensorSpec((tpf * a, h), np.dtype(np.int8) if quant_mode != 0 else np.dtype(x_dtype)),
        "dynamic_scales": TensorSpec((tpf * a,), np.dtype(np.float32)),
        "assist_info_for_combine": TensorSpec((max(lay.bs * lay.k, a * 128),), np.dtype(np.int32)),
        "expert_token_nums": TensorSpec((lay.local_expert_num,), np.dtype(np.int64)),
        "ep_recv_counts": TensorSpec((lay.ep_recv_counts_len,), np.dtype(np.int32)),
        "tp_recv_counts": TensorSpec((lay.tp_world_size,), np.dtype(np.int32)),
        "expand_scales": TensorSpec((a,), np.dtype(np.float32)),
    }


def combine_output_specs(bs: int, h: int, x_dtype) -> dict:
    """CombineV3's one output ``x`` (Bs, H)."""
    return {"x": TensorSpec((bs, h), np.dtype(x_dtype))}


def add_rms_norm_output_specs(bs: int, h: int, x_dtype) -> dict:
    """CombineAddRmsNormV2's outputs in C order: y (Bs,1,H), rstd (Bs,1,1) fp32, x (Bs,1,H)."""
    return {
        "y": TensorSpec((bs, 1, h), np.dtype(x_dtype)),
        "rstd": TensorSpec((bs, 1, 1), np.dtype(np.float32)),
        "x": TensorSpec((bs, 1, h), np.dtype(x_dtype)),
    }


def zeros_for(specs: dict) -> dict:
    """Zero-filled host arrays for a dict of :class:`TensorSpec`."""
    return {name: np.zeros(spec.shape, spec.dtype) for name, spec in specs.items()}


def ranks_in_order(values: Sequence) -> list:
    """Indices of the entries that are not ``None`` (ranks that take part)."""
    return [i for i, v in enumerate(values) if v is not None]


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
