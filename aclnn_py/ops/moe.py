"""Per-rank MoE operators: DispatchV3, CombineV3, CombineAddRmsNormV2 (DESIGN §2.2).

Each takes one rank's arguments (numpy arrays or DeviceTensors; keywords are torch_npu's names),
validates them with the rules the op documents, then runs on the rank's backend: the device
(CANN or the simulator) with outputs allocated and zero-filled at the shapes torch_npu uses, or
the numpy reference, meeting the other ranks of its World. Results are NamedTuples of tensors
with ``.numpy()``; the caller owns them (``free()`` or ``with``).

``out=`` (optional) takes preallocated outputs (the same NamedTuple, or the one tensor of CombineV3)
to write in place: no allocation and no zero-fill on the device (elements the kernel does not write
keep their contents), which is what a steady-state decode loop wants. Validation is memoised on
everything its rules read (:func:`aclnn_py.ops._moe_call.validate_call`), so repeated calls with the
same shapes and attributes skip it, and any change re-runs every rule.
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .. import layout, reference, validate
from ..results import CombineAddRmsNormOutputs, DispatchOutputs
from ._call import active_backend
from ._moe_call import as_host_tensor, fill_outputs, output_specs, run_on_device, run_on_reference, validate_call

DISPATCH = "aclnnMoeDistributeDispatchV3"
COMBINE = "aclnnMoeDistributeCombineV3"
ADD_RMS_NORM = "aclnnMoeDistributeCombineAddRmsNormV2"

DISPATCH_TENSORS = ["x", "expert_ids", "scales", "x_active_mask", "expert_scales"]
COMBINE_TENSORS = ["expand_x", "expert_ids", "assist_info_for_combine", "ep_send_counts", "expert_scales",
                   "tp_send_counts", "x_active_mask", "expand_scales", "shared_expert_x", "ori_x",
                   "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v"]
ADD_RMS_NORM_TENSORS = COMBINE_TENSORS + ["residual_x", "gamma"]


def _dims(t: Any) -> tuple:
    return tuple(t.shape)


def moe_distribute_dispatch_v3(
        x: Any, expert_ids: Any, *, group_ep: str, ep_world_size: int, ep_rank_id: int, moe_expert_num: int,
        scales: Any = None, x_active_mask: Any = None, expert_scales: Any = None, elastic_info: Any = None,
        group_tp: str = "", tp_world_size: int = 0, tp_rank_id: int = 0, expert_shard_type: int = 0,
        shared_expert_num: int = 1, shared_expert_rank_num: int = 0, quant_mode: int = 0, global_bs: int = 0,
        expert_token_nums_type: int = 1, comm_alg: str = "", zero_expert_num: int = 0, copy_expert_num: int = 0,
        const_expert_num: int = 0, stream: Any = None, sync: bool = True, out: Any = None) -> DispatchOutputs:
    """Send each token to its top-k experts' ranks (and shared experts); one rank's call.

    x: (Bs, H) bf16/fp16; expert_ids: (Bs, K) int32; scales: (S+M, H) fp32 (quant_mode 2);
    x_active_mask: (Bs,) or (Bs, K) bool; elastic_info: int32 (4 + 2*ep). Returns
    :class:`DispatchOutputs`: expand_x (max(tp,1)*A, H) (int8 when quantised), dynamic_scales
    (max(tp,1)*A,) fp32, assist_info_for_combine (max(Bs*K, 128*A),) int32, expert_token_nums
    (local experts,) int64, ep_recv_counts int32, tp_recv_counts (tp,) int32, expand_scales (A,) fp32.
    """
    kwargs = dict(x=x, expert_ids=expert_ids, group_ep=group_ep, ep_world_size=ep_world_size, ep_rank_id=ep_rank_id,
                  moe_expert_num=moe_expert_num, scales=scales, x_active_mask=x_active_mask,
                  expert_scales=expert_scales, elastic_info=elastic_info, group_tp=group_tp,
                  tp_world_size=tp_world_size, tp_rank_id=tp_rank_id, expert_shard_type=expert_shard_type,
                  shared_expert_num=shared_expert_num, shared_expert_rank_num=shared_expert_rank_num,
                  quant_mode=quant_mode, global_bs=global_bs, expert_token_nums_type=expert_token_nums_type,
                  comm_alg=comm_alg, zero_expert_num=zero_expert_num, copy_expert_num=copy_expert_num,
                  const_expert_num=const_expert_num)
    lay = validate_call(validate.moe_distribute_dispatch_v3, kwargs, outputs=out)
    if active_backend() == "reference":
        res = run_on_reference(DISPATCH, kwargs, DISPATCH_TENSORS, reference.moe_distribute_dispatch_v3,
                               lambda o: DispatchOutputs(*map(as_host_tensor, o)))
        return res if out is None else fill_outputs(out, res)
    specs = output_specs(layout.dispatch_output_specs, lay, _dims(x)[1], x.dtype, quant_mode)
    outs = run_on_device(DISPATCH, kwargs, specs, stream, sync, out=out)
    return DispatchOutputs(**outs)


def moe_distribute_combine_v3(
        expand_x: Any, expert_ids: Any, assist_info_for_combine: Any, ep_send_counts: Any, expert_scales: Any, *,
        group_ep: str, ep_world_size: int, ep_rank_id: int, moe_expert_num: int, tp_send_counts: Any = None,
        x_active_mask: Any = None, expand_scales: Any = None, shared_expert_x: Any = None, elastic_info: Any = None,
        ori_x: Any = None, const_expert_alpha_1: Any = None, const_expert_alpha_2: Any = None,
        const_expert_v: Any = None, group_tp: str = "", tp_world_size: int = 0, tp_rank_id: int = 0,
        expert_shard_type: int = 0, shared_expert_num: int = 1, shared_expert_rank_num: int = 0,
        global_bs: int = 0, comm_quant_mode: int = 0, comm_alg: str = "", zero_expert_num: int = 0,
        copy_expert_num: int = 0, const_expert_num: int = 0, stream: Any = None, sync: bool = True,
        out: Any = None) -> Any:
    """Return each expert row to its token's rank and sum it there (fp32, ascending k); one rank's call.

    The first four tensors are dispatch's expand_x (after the FFN), expert_ids (Bs, K) int32,
    assist_info_for_combine and ep_recv_counts, passed through; expert_scales: (Bs, K) fp32.
    ``tp_send_counts`` defaults to a (tp,) int32 zero tensor (the A3 tiling requires one).
    Returns x: (Bs, H), dtype of expand_x. Rows of tokens a mask excludes are left 0.
    """
    tp_send_counts = _default_tp_send_counts(tp_send_counts, tp_world_size)
    kwargs = dict(
        expand_x=expand_x, expert_ids=expert_ids, assist_info_for_combine=assist_info_for_combine,
        ep_send_counts=ep_send_counts, expert_scales=expert_scales, group_ep=group_ep, ep_world_size=ep_world_size,
        ep_rank_id=ep_rank_id, moe_expert_num=moe_expert_num, tp_send_counts=tp_send_counts,
        x_active_mask=x_active_mask, expand_scales=expand_scales, shared_expert_x=shared_expert_x,
        elastic_info=elastic_info, ori_x=ori_x, const_expert_alpha_1=const_expert_alpha_1,
        const_expert_alpha_2=const_expert_alpha_2, const_expert_v=const_expert_v, group_tp=group_tp,
        tp_world_size=tp_world_size, tp_rank_id=tp_rank_id, expert_shard_type=expert_shard_type,
        shared_expert_num=shared_expert_num, shared_expert_rank_num=shared_expert_rank_num, global_bs=global_bs,
        comm_quant_mode=comm_quant_mode, comm_alg=comm_alg, zero_expert_num=zero_expert_num,
        copy_expert_num=copy_expert_num, const_expert_num=const_expert_num)
    validate_call(validate.moe_distribute_combine_v3, kwargs, outputs=out)
    if active_backend() == "reference":
        res = run_on_reference(COMBINE, kwargs, COMBINE_TENSORS, reference.moe_distribute_combine_v3,
                               as_host_tensor)
        return res if out is None else fill_outputs(out, res)
    specs = output_specs(layout.combine_output_specs, _dims(expert_ids)[0], _dims(expand_x)[1], expand_x.dtype)
    return run_on_device(COMBINE, kwargs, specs, stream, sync, out=out)["x"]


def moe_distribute_combine_add_rms_norm_v2(
        expand_x: Any, expert_ids: Any, assist_info_for_combine: Any, ep_send_counts: Any, expert_scales: Any,
        residual_x: Any, gamma: Any, *, group_ep: str, ep_world_size: int, ep_rank_id: int, moe_expert_num: int,
        tp_send_counts: Any = None, x_active_mask: Any = None, expand_scales: Any = None,
        shared_expert_x: Any = None, elastic_info: Any = None, ori_x: Any = None,
        const_expert_alpha_1: Any = None, const_expert_alpha_2: Any = None, const_expert_v: Any = None,
        group_tp: str = "", tp_world_size: int = 0, tp_rank_id: int = 0, expert_shard_type: int = 0,
        shared_expert_num: int = 1, shared_expert_rank_num: int = 0, global_bs: int = 0, comm_quant_mode: int = 0,
        comm_alg: str = "", norm_eps: float = 1e-6, zero_expert_num: int = 0, copy_expert_num: int = 0,
        const_expert_num: int = 0, stream: Any = None, sync: bool = True,
        out: Any = None) -> CombineAddRmsNormOutputs:
    """CombineV3, then ``x = combined + residual_x`` and ``y = RMSNorm(x) * gamma``; one rank's call.

    residual_x: (Bs, 1, H) bf16; gamma: (H,) bf16; norm_eps is passed to C as float32.
    Returns :class:`CombineAddRmsNormOutputs`: y (Bs,1,H) bf16, rstd (Bs,1,1) fp32, x (Bs,1,H) bf16.
    """
    tp_send_counts = _default_tp_send_counts(tp_send_counts, tp_world_size)
    kwargs = dict(
        expand_x=expand_x, expert_ids=expert_ids, assist_info_for_combine=assist_info_for_combine,
        ep_send_counts=ep_send_counts, expert_scales=expert_scales, residual_x=residual_x, gamma=gamma,
        group_ep=group_ep, ep_world_size=ep_world_size, ep_rank_id=ep_rank_id, moe_expert_num=moe_expert_num,
        tp_send_counts=tp_send_counts, x_active_mask=x_active_mask, expand_scales=expand_scales,
        shared_expert_x=shared_expert_x, elastic_info=elastic_info, ori_x=ori_x,
        const_expert_alpha_1=const_expert_alpha_1, const_expert_alpha_2=const_expert_alpha_2,
        const_expert_v=const_expert_v, group_tp=group_tp, tp_world_size=tp_world_size, tp_rank_id=tp_rank_id,
        expert_shard_type=expert_shard_type, shared_expert_num=shared_expert_num,
        shared_expert_rank_num=shared_expert_rank_num, global_bs=global_bs, comm_quant_mode=comm_quant_mode,
        comm_alg=comm_alg, norm_eps=norm_eps, zero_expert_num=zero_expert_num, copy_expert_num=copy_expert_num,
        const_expert_num=const_expert_num)
    validate_call(validate.moe_distribute_combine_add_rms_norm_v2, kwargs, outputs=out)
    if active_backend() == "reference":
        res = run_on_reference(ADD_RMS_NORM, kwargs, ADD_RMS_NORM_TENSORS,
                               reference.moe_distribute_combine_add_rms_norm_v2,
                               lambda o: CombineAddRmsNormOutputs(*map(as_host_tensor, o)))
        return res if out is None else fill_outputs(out, res)
    specs = output_specs(layout.add_rms_norm_output_specs, _dims(expert_ids)[0], _dims(expand_x)[1],
                         expand_x.dtype)
    return CombineAddRmsNormOutputs(**run_on_device(ADD_RMS_NORM, kwargs, specs, stream, sync, out=out))


def _default_tp_send_counts(tp_send_counts: Any, tp_world_size: Any) -> Any:
    """The (tp,) int32 zeros the A3 tiling needs when none is given; nothing for a ``tp_world_size`` that is not
    a small non-negative integer (the validator then names it)."""
    if tp_send_counts is not None or isinstance(tp_world_size, bool):
        return tp_send_counts
    try:
        tp = operator.index(tp_world_size)
    except TypeError:
        return None
    return np.zeros((tp,), np.int32) if 0 <= tp <= validate.combine.TP_MAX else None
