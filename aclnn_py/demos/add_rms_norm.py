"""Port of the aclnnMoeDistributeCombineAddRmsNormV2 seed demo: DispatchV3 -> FFN -> CombineAddRmsNormV2.

The seed's configuration: 8 EP ranks (TP 1), BS 8, H 7168, top-3 over 8 MoE experts plus 7 zero,
8 copy and 10 constant experts, a shared-expert input, and an elastic scale-down 8 -> 4 that
removes ranks 2-5 (the seed's ``elasticInfo``). Unlike the seed, tokens really are routed to
special experts and the data is random, and every rank's outputs are checked bit for bit against
the numpy reference computed for the whole world.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

import aclnn_py
from aclnn_py import reference
from aclnn_py.layout import make_elastic_info

from .common import check_rank, distinct_ids, ffn_stand_in, random_bf16, report, routing_weights


@dataclass(frozen=True)
class Config:
    ep_world_size: int = 8
    bs: int = 8
    h: int = 7168
    k: int = 3
    moe_expert_num: int = 8
    zero_expert_num: int = 7
    copy_expert_num: int = 8
    const_expert_num: int = 10
    removed: Sequence[int] = (2, 3, 4, 5)
    norm_eps: float = 1e-6
    seed: int = 2024


def make_inputs(cfg: Config, moe_ids_below: int) -> List[Dict[str, np.ndarray]]:
    """Per-rank inputs; MoE ids are < ``moe_ids_below`` (M, or M' after scale-down)."""
    rng = np.random.default_rng(cfg.seed)
    special_lo = cfg.moe_expert_num
    special_hi = special_lo + cfg.zero_expert_num + cfg.copy_expert_num + cfg.const_expert_num
    candidates = np.concatenate([np.arange(moe_ids_below), np.arange(special_lo, special_hi)])
    q = cfg.const_expert_num
    alpha_1, alpha_2 = random_bf16(rng, (q,), 0.5), random_bf16(rng, (q,), 0.5)
    const_v = random_bf16(rng, (q, cfg.h))
    gamma = random_bf16(rng, (cfg.h,), 0.2)
    out = []
    for _ in range(cfg.ep_world_size):
        x = random_bf16(rng, (cfg.bs, cfg.h))
        out.append(dict(x=x, expert_ids=distinct_ids(rng, cfg.bs, cfg.k, candidates),
                        expert_scales=routing_weights(rng, cfg.bs, cfg.k),
                        residual_x=random_bf16(rng, (cfg.bs, 1, cfg.h)),
                        shared_expert_x=random_bf16(rng, (cfg.bs, 1, cfg.h), 0.1), ori_x=x, gamma=gamma,
                        const_expert_alpha_1=alpha_1, const_expert_alpha_2=alpha_2, const_expert_v=const_v))
    return out


def attributes(cfg: Config) -> dict:
    return dict(ep_world_size=cfg.ep_world_size, moe_expert_num=cfg.moe_expert_num, shared_expert_num=0,
                shared_expert_rank_num=0, global_bs=cfg.bs * cfg.ep_world_size, zero_expert_num=cfg.zero_expert_num,
                copy_expert_num=cfg.copy_expert_num, const_expert_num=cfg.const_expert_num)


COMBINE_INPUTS = ("shared_expert_x", "ori_x", "const_expert_alpha_1", "const_expert_alpha_2", "const_expert_v")


def rank_pipeline(ctx, cfg: Config, inputs: List[dict], elastic_info: Optional[np.ndarray]) -> Dict[str, np.ndarray]:
    """One rank: dispatch, the FFN stand-in on the received rows, CombineAddRmsNormV2."""
    inp = inputs[ctx.rank]
    attrs = attributes(cfg)
    common = dict(group_ep=ctx.group("ep"), ep_rank_id=ctx.ep_rank, group_tp=ctx.group("tp"), tp_world_size=1,
                  tp_rank_id=0, elastic_info=elastic_info, **attrs)
    d = aclnn_py.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], **common)
    try:
        expert_out = ffn_stand_in(d.expand_x.numpy())
        y = aclnn_py.moe_distribute_combine_add_rms_norm_v2(
            expert_out, inp["expert_ids"], d.assist_info_for_combine, d.ep_recv_counts, inp["expert_scales"],
            inp["residual_x"], inp["gamma"], tp_send_counts=d.tp_recv_counts, norm_eps=cfg.norm_eps,
            **{k: inp[k] for k in COMBINE_INPUTS}, **common)
        try:
            return {"rows": int(d.ep_recv_counts.numpy()[-1]) if elastic_info is None else _rows(d, elastic_info),
                    "y": y.y.numpy(), "rstd": y.rstd.numpy(), "x": y.x.numpy()}
        finally:
            for t in y:
                t.free()
    finally:
        for t in d:
            t.free()


def _rows(d, elastic_info) -> int:
    n_new = int(elastic_info[1])
    return int(d.ep_recv_counts.numpy()[n_new - 1])


def world_reference(cfg: Config, inputs: List[dict], elastic_info: Optional[np.ndarray]) -> List[Optional[dict]]:
    """The same pipeline computed by the numpy reference for the whole world at once."""
    live = [r not in cfg.removed for r in range(cfg.ep_world_size)] if elastic_info is not None else [True] * len(inputs)
    per = lambda key: [inp[key] if ok else None for inp, ok in zip(inputs, live)]  # noqa: E731
    attrs = attributes(cfg)
    d = reference.moe_distribute_dispatch_v3(per("x"), per("expert_ids"), elastic_info=elastic_info,
                                             tp_world_size=1, **attrs)
    expert_out = [ffn_stand_in(o.expand_x) if o is not None else None for o in d]
    c = reference.moe_distribute_combine_add_rms_norm_v2(
        expert_out, per("expert_ids"), [o.assist_info_for_combine if o is not None else None for o in d],
        [o.ep_recv_counts if o is not None else None for o in d], per("expert_scales"), per("residual_x"),
        per("gamma"), tp_send_counts=[o.tp_recv_counts if o is not None else None for o in d],
        elastic_info=elastic_info, tp_world_size=1, norm_eps=cfg.norm_eps,
        **{k: per(k) for k in COMBINE_INPUTS}, **attrs)
    return [None if o is None else {"y": o.y, "rstd": o.rstd, "x": o.x} for o in c]


def run(backend: Optional[str] = None, cfg: Config = Config()) -> bool:
    """Both scenarios of the seed (all ranks; scale-down 8 -> 4). Returns True when all match."""
    ok = True
    with aclnn_py.World.ep_tp(cfg.ep_world_size, 1, backend=backend) as world:
        print(f"CombineAddRmsNormV2 seed pipeline on the {world.backend} backend"
              f"{' (aclnn_py simulator)' if _is_sim(world) else ''}: ep={cfg.ep_world_size}, BS={cfg.bs}, "
              f"H={cfg.h}, K={cfg.k}, M={cfg.moe_expert_num}, zero/copy/const="
              f"{cfg.zero_expert_num}/{cfg.copy_expert_num}/{cfg.const_expert_num}")
        scenarios = [("all 8 ranks", None, cfg.moe_expert_num),
                     (f"elastic scale-down, ranks {list(cfg.removed)} removed",
                      make_elastic_info(cfg.ep_world_size, cfg.removed, moe_expert_num=cfg.moe_expert_num
                                        * (cfg.ep_world_size - len(cfg.removed)) // cfg.ep_world_size),
                      cfg.moe_expert_num * (cfg.ep_world_size - len(cfg.removed)) // cfg.ep_world_size)]
        for title, info, moe_below in scenarios:
            inputs = make_inputs(cfg, moe_below)
            survivors = [r for r in range(cfg.ep_world_size) if info is None or r not in cfg.removed]
            got = world.run(rank_pipeline, cfg, inputs, info, ranks=survivors)
            want = world_reference(cfg, inputs, info)
            rows = []
            for r in range(cfg.ep_world_size):
                if got[r] is None:
                    rows.append(None)
                    continue
                row = check_rank(got[r], want[r])
                rstd = got[r]["rstd"].reshape(-1)
                row["summary"] = (f"received {got[r]['rows']:3d} rows, rstd in [{rstd.min():.4f}, {rstd.max():.4f}], "
                                  f"y[0,0,:3]={got[r]['y'][0, 0, :3].astype(np.float32)}")
                rows.append(row)
            ok &= report(f"-- {title}", rows)
    return ok


def _is_sim(world) -> bool:
    if world.backend != "device":
        return False
    from aclnn_py.runtime.library import get_library
    return get_library().is_simulator
