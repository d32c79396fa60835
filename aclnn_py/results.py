"""Named results of the MoE operators (same field order as torch_npu's tuples)."""
from __future__ import annotations

from typing import Any, NamedTuple


class DispatchOutputs(NamedTuple):
    """DispatchV3 outputs; shapes in :func:`aclnn_py.layout.dispatch_output_specs`."""

    expand_x: Any
    dynamic_scales: Any
    assist_info_for_combine: Any
    expert_token_nums: Any
    ep_recv_counts: Any
    tp_recv_counts: Any
    expand_scales: Any


class CombineAddRmsNormOutputs(NamedTuple):
    """CombineAddRmsNormV2 outputs: y (Bs,1,H) bf16, rstd (Bs,1,1) fp32, x (Bs,1,H) bf16."""

    y: Any
    rstd: Any
    x: Any
