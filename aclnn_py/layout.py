"""Derived quantities and output shapes of the MoE distribute ops (A3 tiling / infershape rules).

One place computes what every backend needs: the shared-expert normalisation, experts per rank,
the row capacity ``A``, rank maps, the elastic table, and the output shapes torch_npu allocates
(``../shared/spec/prior-art.md`` §1.3, ``dispatch-v3.md`` §2 and §4).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, NamedTuple, Optional

import numpy as np

from .elastic import ElasticInfo, make_elastic_info, parse_elastic_info


def normalised_shared_expert_num(shared_expert_num: int, shared_expert_rank_num: int) -> int:
    """The tiling's ``S``: ``shared_expert_num == 1`` with no shared ranks means no shared experts."""
    if shared_expert_rank_num == 0 and shared_expert_num == 1:
        return 0
    return shared_expert_num


def global_rank(ep_rank: int, tp_rank: int, tp_world_size: int) -> int:
    """Global rank index used throughout: ``ep_rank * max(tp, 1) + tp_rank``."""
    return ep_rank * max(tp_world_size, 1) + tp_rank


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


@lru_cache(maxsize=512)
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


@lru_cache(maxsize=512)
def combine_output_specs(bs: int, h: int, x_dtype) -> dict:
    """CombineV3's one output ``x`` (Bs, H)."""
    return {"x": TensorSpec((bs, h), np.dtype(x_dtype))}


@lru_cache(maxsize=512)
def add_rms_norm_output_specs(bs: int, h: int, x_dtype) -> dict:
    """CombineAddRmsNormV2's outputs in C order: y (Bs,1,H), rstd (Bs,1,1) fp32, x (Bs,1,H)."""
    return {
        "y": TensorSpec((bs, 1, h), np.dtype(x_dtype)),
        "rstd": TensorSpec((bs, 1, 1), np.dtype(np.float32)),
        "x": TensorSpec((bs, 1, h), np.dtype(x_dtype)),
    }


def dispatch_outputs(lay: MoeLayout, args: Mapping[str, Any]) -> dict:
    """DispatchV3's outputs for one validated call (``args``: its arguments by keyword)."""
    x = args["x"]
    return dispatch_output_specs(lay, int(x.shape[1]), x.dtype, args["quant_mode"])


def combine_outputs(lay: MoeLayout, args: Mapping[str, Any]) -> dict:
    """CombineV3's output for one validated call."""
    return combine_output_specs(int(args["expert_ids"].shape[0]), int(args["expand_x"].shape[1]),
                                args["expand_x"].dtype)


def add_rms_norm_outputs(lay: MoeLayout, args: Mapping[str, Any]) -> dict:
    """CombineAddRmsNormV2's outputs for one validated call."""
    return add_rms_norm_output_specs(int(args["expert_ids"].shape[0]), int(args["expand_x"].shape[1]),
                                     args["expand_x"].dtype)


def performance_info_spec(args: Mapping[str, Any]) -> "TensorSpec":
    """V4's ``performance_info``: (ep_world_size,) int64."""
    return TensorSpec((int(args["ep_world_size"]),), np.dtype(np.int64))


def dispatch_v4_outputs(lay: MoeLayout, args: Mapping[str, Any]) -> dict:
    """DispatchV4's outputs: DispatchV3's, then ``performance_info``."""
    return dict(dispatch_outputs(lay, args), performance_info=performance_info_spec(args))


def combine_v4_outputs(lay: MoeLayout, args: Mapping[str, Any]) -> dict:
    """CombineV4's outputs: ``x``, then ``performance_info``."""
    return dict(combine_outputs(lay, args), performance_info=performance_info_spec(args))


TP_SIZES = (0, 1, 2)    # the tp_world_size values any release accepts


def default_tp_send_counts(args: Mapping[str, Any]) -> Optional[np.ndarray]:
    """What combine passes as ``tp_send_counts`` when none is given: ``(tp,)`` int32 zeros (the A3 tiling
    before TP was removed requires one), or nothing when ``tp_world_size`` is not a valid size (the
    validator then names it)."""
    tp = args.get("tp_world_size")
    if isinstance(tp, (bool, np.bool_)):
        return None
    try:
        tp = operator.index(tp)
    except TypeError:
        return None
    return np.zeros((tp,), np.int32) if tp in TP_SIZES else None


def zeros_for(specs: dict) -> dict:
    """Zero-filled host arrays for a dict of :class:`TensorSpec`."""
    return {name: np.zeros(spec.shape, spec.dtype) for name, spec in specs.items()}


__all__ = ["MoeLayout", "TensorSpec", "normalised_shared_expert_num", "global_rank", "dispatch_output_specs",
           "combine_output_specs", "add_rms_norm_output_specs", "dispatch_outputs", "combine_outputs",
           "add_rms_norm_outputs", "dispatch_v4_outputs", "combine_v4_outputs", "performance_info_spec",
           "default_tp_send_counts", "zeros_for",
           "ElasticInfo", "parse_elastic_info", "make_elastic_info"]
