"""Port of the aclnnDistributeBarrierV2 seed demo: DispatchV3 -> BarrierV2 -> CombineV3 on 8 ranks.

The seed's configuration: 8 EP ranks (TP 1), rank 0 hosts the one shared expert, ranks 1-7 host
the 7 MoE experts; BS 8, H 7168, top-3; the barrier runs on its own communicator with dispatch's
expand_x as the dependency token. Data is random and every rank's combine output is checked bit
for bit against the numpy reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

import aclnn_py
from aclnn_py import reference

from .add_rms_norm import _is_sim
from .common import check_rank, distinct_ids, ffn_stand_in, random_bf16, report, routing_weights


@dataclass(frozen=True)
class Config:
    ep_world_size: int = 8
    bs: int = 8
    h: int = 7168
    k: int = 3
    moe_expert_num: int = 7
    shared_expert_num: int = 1
    shared_expert_rank_num: int = 1
    barrier_time_out_us: int = 10_000_000
    seed: int = 7


def attributes(cfg: Config) -> dict:
    return dict(ep_world_size=cfg.ep_world_size, moe_expert_num=cfg.moe_expert_num,
                shared_expert_num=cfg.shared_expert_num, shared_expert_rank_num=cfg.shared_expert_rank_num,
                global_bs=cfg.bs * cfg.ep_world_size)


def make_inputs(cfg: Config) -> List[Dict[str, np.ndarray]]:
    rng = np.random.default_rng(cfg.seed)
    ids = np.arange(cfg.moe_expert_num)
    return [dict(x=random_bf16(rng, (cfg.bs, cfg.h)), expert_ids=distinct_ids(rng, cfg.bs, cfg.k, ids),
                 expert_scales=routing_weights(rng, cfg.bs, cfg.k)) for _ in range(cfg.ep_world_size)]


def rank_pipeline(ctx, cfg: Config, inputs: List[dict]) -> Dict[str, np.ndarray]:
    inp = inputs[ctx.rank]
    common = dict(group_ep=ctx.group("ep"), ep_rank_id=ctx.ep_rank, group_tp=ctx.group("tp"), tp_world_size=1,
                  tp_rank_id=0, **attributes(cfg))
    d = aclnn_py.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], expert_scales=inp["expert_scales"], **common)
    try:
        aclnn_py.distribute_barrier_v2(d.expand_x, group=ctx.group("ep_barrier"), world_size=cfg.ep_world_size,
                                       time_out=cfg.barrier_time_out_us)
        expert_out = ffn_stand_in(d.expand_x.numpy())
        x = aclnn_py.moe_distribute_combine_v3(expert_out, inp["expert_ids"], d.assist_info_for_combine,
                                               d.ep_recv_counts, inp["expert_scales"], tp_send_counts=d.tp_recv_counts,
                                               **common)
        try:
            return {"rows": int(d.expert_token_nums.numpy().sum()), "x": x.numpy()}
        finally:
            x.free()
    finally:
        for t in d:
            t.free()


def world_reference(cfg: Config, inputs: List[dict]) -> List[dict]:
    per = lambda key: [inp[key] for inp in inputs]  # noqa: E731
    attrs = attributes(cfg)
    d = reference.moe_distribute_dispatch_v3(per("x"), per("expert_ids"), tp_world_size=1, **attrs)
    x = reference.moe_distribute_combine_v3(
        [ffn_stand_in(o.expand_x) for o in d], per("expert_ids"), [o.assist_info_for_combine for o in d],
        [o.ep_recv_counts for o in d], per("expert_scales"), tp_send_counts=[o.tp_recv_counts for o in d],
        tp_world_size=1, **attrs)
    return [{"x": xi} for xi in x]


def run(backend: Optional[str] = None, cfg: Config = Config()) -> bool:
    with aclnn_py.World.ep_tp(cfg.ep_world_size, 1, backend=backend) as world:
        print(f"DispatchV3 + BarrierV2 + CombineV3 seed pipeline on the {world.backend} backend"
              f"{' (aclnn_py simulator)' if _is_sim(world) else ''}: ep={cfg.ep_world_size}, BS={cfg.bs}, "
              f"H={cfg.h}, K={cfg.k}, M={cfg.moe_expert_num}, shared experts {cfg.shared_expert_num} on "
              f"{cfg.shared_expert_rank_num} rank(s)")
        inputs = make_inputs(cfg)
        got = world.run(rank_pipeline, cfg, inputs)
        want = world_reference(cfg, inputs)
        rows = []
        for r in range(cfg.ep_world_size):
            row = check_rank(got[r], want[r])
            kind = "shared" if r < cfg.shared_expert_rank_num else "MoE   "
            row["summary"] = f"{kind} rank, received {got[r]['rows']:3d} rows, x[0,:3]={got[r]['x'][0, :3].astype(np.float32)}"
            rows.append(row)
        return report("-- all ranks", rows)
