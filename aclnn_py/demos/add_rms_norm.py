"""Port of the aclnnMoeDistributeCombineAddRmsNormV2 seed demo: DispatchV3 -> FFN -> CombineAddRmsNormV2.

The seed's configuration: 8 EP ranks (TP 1), BS 8, H 7168, top-3 over 8 MoE experts plus 7 zero,
8 copy and 10 constant experts, a shared-expert input, first on all ranks, then after an elastic
scale-down 8 -> 4 that removes ranks 2-5 (the seed's ``elasticInfo``: 4 ranks, 4 MoE experts).
Unlike the seed, data is random and tokens really are routed to special experts; every rank's
outputs are checked bit for bit against the numpy reference computed for the whole world.
"""
from __future__ import annotations

from typing import Optional

from .report import print_outcome
from .scenario import Scenario, run, variant, world_for

SEED = Scenario(name="CombineAddRmsNormV2 seed", ep_world_size=8, tp_world_size=1, bs=8, h=7168, k=3,
                moe_expert_num=8, shared_expert_num=0, shared_expert_rank_num=0, global_bs=64, zero_expert_num=7,
                copy_expert_num=8, const_expert_num=10, shared_expert_x=True, combine="add_rms_norm", seed=2024)
SCALED_DOWN = variant(SEED, name="CombineAddRmsNormV2 seed, elastic scale-down 8 -> 4 (ranks 2-5 removed)",
                      removed=(2, 3, 4, 5), seed=2025)


def run_demo(backend: Optional[str] = None) -> bool:
    ok = True
    with world_for(SEED, backend) as world:
        for sc in (SEED, SCALED_DOWN):
            ok &= print_outcome(run(sc, world), world)
    return ok
