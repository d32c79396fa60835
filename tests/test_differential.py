"""Differential tests: the device path on the simulator against the numpy reference, element for
element, over a generated matrix of configurations covering every feature (shared experts and
replicas, L > 1, TP = 2, 1-D/2-D masks, special experts, elastic scale-down, quant modes, comm
quant, varying BS, both combine ops, fp16/bf16, the barrier)."""
from __future__ import annotations

import numpy as np
import pytest

from aclnn_py.demos.scenario import Scenario, run
from aclnn_py.dtypes import bfloat16

from conftest import assert_scenario_matches

H = 1024  # the smallest H the ops accept


def _scenario(i: int) -> Scenario:
    """Configuration ``i`` of the matrix: features drawn at random, then made valid."""
    rng = np.random.default_rng(1000 + i)
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    tp = pick([0, 1, 1, 2]) if i % 5 else 2
    ep = pick([2, 3, 4, 8]) if tp != 2 else pick([2, 3, 4, 8])
    shared = pick([(1, 0), (0, 0), (1, 1), (1, 2), (2, 2)])
    s, r = shared
    if r >= ep:
        s, r = 1, 0
    L = 1 if tp == 2 else pick([1, 1, 2, 3])
    m = L * (ep - r)
    zero, copy, const = (pick([0, 1, 2]), pick([0, 1, 2]), pick([0, 1, 2])) if rng.random() < 0.4 else (0, 0, 0)
    elastic = tp <= 1 and ep - r >= 2 and rng.random() < 0.25
    removed = ()
    if elastic:
        n_rm = int(rng.integers(1, ep - r))
        removed = tuple(sorted(rng.choice(np.arange(r, ep), size=n_rm, replace=False).tolist()))
    moe_ids = L * (ep - len(removed) - r)
    k = int(rng.integers(1, min(8, moe_ids + zero + copy + const) + 1))
    bs = int(rng.integers(1, 9))
    vary = rng.random() < 0.2
    mask = "none" if vary else pick(["none", "none", "1d", "2d"])
    global_bs = 0
    if vary:
        global_bs = ep * (bs + int(rng.integers(0, 3)))
    elif rng.random() < 0.2:
        global_bs = ep * bs
    combine = pick(["combine", "add_rms_norm"])
    dtype = bfloat16 if combine == "add_rms_norm" or rng.random() < 0.6 else np.float16
    return Scenario(
        name=f"cfg{i}", ep_world_size=ep, tp_world_size=tp, bs=bs, h=H, k=k, moe_expert_num=m, shared_expert_num=s,
        shared_expert_rank_num=r, quant_mode=pick([0, 0, 2]), smooth_scales=bool(rng.random() < 0.5),
        global_bs=global_bs, vary_bs=vary, expert_token_nums_type=pick([0, 1]), zero_expert_num=zero,
        copy_expert_num=copy, const_expert_num=const, mask=mask, removed=removed,
        elastic_flag_only=bool(not removed and tp <= 1 and rng.random() < 0.1),
        shared_expert_x=bool(r == 0 and rng.random() < 0.3), combine=combine,
        comm_quant_mode=2 if tp <= 1 and rng.random() < 0.25 else 0, barrier=bool(rng.random() < 0.15),
        dtype=dtype, seed=i)


MATRIX = [_scenario(i) for i in range(230)]


def test_matrix_covers_every_feature():
    seen = {
        "tp2": any(s.tp_world_size == 2 for s in MATRIX), "shared": any(s.shared_expert_rank_num for s in MATRIX),
        "replicas": any(s.shared_expert_rank_num > s.shared_expert_num > 0 for s in MATRIX),
        "L>1": any(s.moe_expert_num > s.ep_world_size - s.shared_expert_rank_num for s in MATRIX),
        "mask1d": any(s.mask == "1d" for s in MATRIX), "mask2d": any(s.mask == "2d" for s in MATRIX),
        "zero": any(s.zero_expert_num for s in MATRIX), "copy": any(s.copy_expert_num for s in MATRIX),
        "const": any(s.const_expert_num for s in MATRIX), "elastic": any(s.removed for s in MATRIX),
        "elastic_flag0": any(s.elastic_flag_only for s in MATRIX), "quant2": any(s.quant_mode == 2 for s in MATRIX),
        "smooth": any(s.quant_mode == 2 and s.smooth_scales for s in MATRIX),
        "comm_quant": any(s.comm_quant_mode for s in MATRIX), "vary_bs": any(s.vary_bs for s in MATRIX),
        "cumsum": any(s.expert_token_nums_type == 0 for s in MATRIX),
        "arn": any(s.combine == "add_rms_norm" for s in MATRIX), "fp16": any(s.dtype == np.float16 for s in MATRIX),
        "shared_x": any(s.shared_expert_x for s in MATRIX), "barrier": any(s.barrier for s in MATRIX),
        "elastic+special": any(s.removed and s.zero_expert_num + s.copy_expert_num + s.const_expert_num
                               for s in MATRIX),
        "tp2+quant": any(s.tp_world_size == 2 and s.quant_mode for s in MATRIX),
    }
    assert all(seen.values()), [k for k, v in seen.items() if not v]
    assert len(MATRIX) >= 200


@pytest.mark.parametrize("sc", MATRIX, ids=[s.name for s in MATRIX])
def test_simulator_matches_reference(sim_worlds, sim_library, sc):
    world = sim_worlds(sc.ep_world_size, sc.tp_world_size)
    assert_scenario_matches(run(sc, world), sim_library, world)
