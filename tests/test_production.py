"""Production sizes: the simulator against the numpy reference, bit for bit, at the sizes users run.

H 7168 (and 4096), BS up to 512, EP up to 16, K 8, 1..4 experts per rank, with every feature switched on
somewhere: 1-D and 2-D masks at BS > 32, quant_mode 2 with and without smooth scales, comm_quant_mode 2,
shared experts on replica ranks, TP = 2, elastic scale-down, zero/copy/const experts, varying BS with
global_bs, fp16 and bf16, and rows holding NaN of both signs and +-inf. Each configuration runs the whole
pipeline (dispatch -> FFN stand-in -> combine or AddRmsNorm) on a World of the simulator; every output of
every rank is compared with the world-level reference. Sized for CI: about a minute on 2 cores, under
4 GiB resident (the largest configuration holds EP x A x H expand rows several times).
"""
from __future__ import annotations

import numpy as np
import pytest

import aclnn_py
from aclnn_py.demos.scenario import Scenario, run
from aclnn_py.dtypes import bfloat16

from conftest import assert_scenario_matches

H = 7168


def _sc(name: str, **kw) -> Scenario:
    base = dict(name=name, h=H, k=8, tp_world_size=1, combine="combine", dtype=bfloat16)
    base.update(kw)
    return Scenario(**base)


PRODUCTION = [
    _sc("ep16-L2-bs128-quant-smooth-mask1d-arn", ep_world_size=16, bs=128, moe_expert_num=32, quant_mode=2,
        smooth_scales=True, mask="1d", combine="add_rms_norm", seed=101),
    _sc("ep16-L1-bs96-quant-mask2d-commquant", ep_world_size=16, bs=96, moe_expert_num=16, quant_mode=2,
        mask="2d", comm_quant_mode=2, seed=102),
    _sc("ep16-shared1x2-L2-bs64-cumsum-arn", ep_world_size=16, bs=64, moe_expert_num=28, shared_expert_num=1,
        shared_expert_rank_num=2, expert_token_nums_type=0, combine="add_rms_norm", seed=103),
    _sc("ep8-tp2-bs128-quant-smooth-arn", ep_world_size=8, tp_world_size=2, bs=128, moe_expert_num=8,
        quant_mode=2, smooth_scales=True, combine="add_rms_norm", seed=104),
    _sc("ep8-tp2-bs64-mask2d-shared1x1", ep_world_size=8, tp_world_size=2, bs=64, moe_expert_num=7,
        shared_expert_num=1, shared_expert_rank_num=1, k=7, mask="2d", seed=105),
    _sc("ep16-elastic-4-L2-special-fp16", ep_world_size=16, bs=64, moe_expert_num=32, removed=(3, 7, 8, 12),
        zero_expert_num=2, copy_expert_num=2, const_expert_num=2, dtype=np.float16, global_bs=16 * 64,
        seed=106),
    _sc("ep16-elastic-2-arn-shared-x", ep_world_size=16, bs=32, moe_expert_num=16, removed=(5, 10),
        shared_expert_x=True, combine="add_rms_norm", seed=107),
    _sc("ep16-L4-vary-bs-global256-fp16", ep_world_size=16, bs=256, moe_expert_num=64, vary_bs=True,
        global_bs=16 * 256, dtype=np.float16, seed=108),
    _sc("ep4-L4-bs512-quant-mask1d-arn", ep_world_size=4, bs=512, moe_expert_num=16, quant_mode=2,
        mask="1d", combine="add_rms_norm", seed=109),
    _sc("ep8-L1-bs512-commquant-mask2d", ep_world_size=8, bs=512, moe_expert_num=8, comm_quant_mode=2,
        mask="2d", seed=110),
    _sc("ep16-L3-h4096-shared1x1-mask2d-commquant-arn", ep_world_size=16, bs=128, h=4096, moe_expert_num=45,
        shared_expert_num=1, shared_expert_rank_num=1, mask="2d", comm_quant_mode=2, combine="add_rms_norm",
        seed=111),
    _sc("ep16-L1-bs128-zero-copy-const-arn", ep_world_size=16, bs=128, moe_expert_num=16, zero_expert_num=2,
        copy_expert_num=2, const_expert_num=2, shared_expert_x=True, combine="add_rms_norm", seed=112),
    _sc("ep16-L2-bs64-nan-inf-quant-commquant", ep_world_size=16, bs=64, moe_expert_num=32, quant_mode=2,
        smooth_scales=True, comm_quant_mode=2, special_values=True, seed=113),
    _sc("ep16-L2-bs64-nan-inf-arn", ep_world_size=16, bs=64, moe_expert_num=32, special_values=True,
        combine="add_rms_norm", seed=114),
    _sc("ep8-L2-bs48-nan-inf-fp16-mask1d", ep_world_size=8, bs=48, moe_expert_num=16, special_values=True,
        mask="1d", dtype=np.float16, seed=115),
    # CANN 9.1.0: (Q, H) const-expert projections, unweighted combine, expand_scales written; no TP
    _sc("cann9.1-ep16-L2-bs128-const2d-unweighted-expand-scales-arn", ep_world_size=16, tp_world_size=0, bs=128,
        moe_expert_num=32, zero_expert_num=2, copy_expert_num=2, const_expert_num=2, dispatch_expert_scales=True,
        empty_expert_scales=True, combine="add_rms_norm", cann_version="9.1.0", seed=116),
    _sc("cann9.1-ep16-L4-bs256-quant-mask2d-const2d", ep_world_size=16, tp_world_size=0, bs=256, moe_expert_num=64,
        const_expert_num=3, quant_mode=2, mask="2d", dispatch_expert_scales=True, cann_version="9.1.0", seed=117),
    _sc("cann8.5beta-ep16-elastic-const2d-commquant", ep_world_size=16, bs=64, moe_expert_num=32, removed=(2, 9),
        const_expert_num=2, comm_quant_mode=2, cann_version="8.5.0-beta.1", seed=118),
]


def test_production_matrix_covers_every_feature():
    m = PRODUCTION
    seen = {
        "H7168": any(s.h == 7168 for s in m), "H4096": any(s.h == 4096 for s in m),
        "BS512": any(s.bs == 512 for s in m), "EP16": any(s.ep_world_size == 16 for s in m),
        "K8": all(s.k >= 7 for s in m),
        "experts/rank 1..4": {s.moe_expert_num // (s.ep_world_size - s.shared_expert_rank_num) for s in m}
        >= {1, 2, 3, 4},
        "mask1d BS>32": any(s.mask == "1d" and s.bs > 32 for s in m),
        "mask2d BS>32": any(s.mask == "2d" and s.bs > 32 for s in m),
        "quant2 smooth": any(s.quant_mode == 2 and s.smooth_scales for s in m),
        "quant2 plain": any(s.quant_mode == 2 and not s.smooth_scales for s in m),
        "comm_quant2": any(s.comm_quant_mode == 2 for s in m),
        "shared replicas": any(s.shared_expert_rank_num > s.shared_expert_num > 0 for s in m),
        "TP2": any(s.tp_world_size == 2 for s in m), "elastic": any(s.removed for s in m),
        "zero/copy/const": any(s.zero_expert_num and s.copy_expert_num and s.const_expert_num for s in m),
        "vary_bs": any(s.vary_bs and s.global_bs for s in m),
        "fp16": any(s.dtype == np.float16 for s in m), "bf16": any(s.dtype == bfloat16 for s in m),
        "NaN/inf": any(s.special_values for s in m),
        "NaN/inf quant": any(s.special_values and s.quant_mode == 2 for s in m),
        "NaN/inf arn": any(s.special_values and s.combine == "add_rms_norm" for s in m),
        "both combines": {s.combine for s in m} == {"combine", "add_rms_norm"},
        "CANN 9.1.0": any(s.cann_version == "9.1.0" and s.empty_expert_scales and s.const_expert_num for s in m),
    }
    assert all(seen.values()), [k for k, v in seen.items() if not v]


@pytest.mark.parametrize("sc", PRODUCTION, ids=[s.name for s in PRODUCTION])
def test_production_size_simulator_matches_reference(sim, monkeypatch, sc):
    monkeypatch.setenv("HCCL_BUFFSIZE", str(max(200, sc.hccl_buffsize_mb())))
    if sc.cann_version:
        monkeypatch.setenv("ACLNN_SIM_CANN_VERSION", sc.cann_version)
    with aclnn_py.World.ep_tp(sc.ep_world_size, sc.tp_world_size, backend="device") as world:
        out = run(sc, world)
    assert_scenario_matches(out, sim)
