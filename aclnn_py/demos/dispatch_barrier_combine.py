"""Port of the aclnnDistributeBarrierV2 seed demo: DispatchV3 -> BarrierV2 -> CombineV3 on 8 ranks.

The seed's configuration: 8 EP ranks (TP 1); rank 0 hosts the one shared expert and ranks 1-7 the 7
MoE experts; BS 8, H 7168, top-3; the barrier runs on its own communicator with dispatch's
expand_x as the dependency token. Data is random and every output is checked bit for bit against
the numpy reference.
"""
from __future__ import annotations

from typing import Optional

from .report import print_outcome
from .scenario import Scenario, run, world_for

SEED = Scenario(name="DistributeBarrierV2 seed (dispatch, barrier, combine)", ep_world_size=8, tp_world_size=1,
                bs=8, h=7168, k=3, moe_expert_num=7, shared_expert_num=1, shared_expert_rank_num=1, global_bs=64,
                barrier=True, combine="combine", seed=7)


def run_demo(backend: Optional[str] = None) -> bool:
    with world_for(SEED, backend) as world:
        return print_outcome(run(SEED, world), world)
