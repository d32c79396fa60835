"""Rank maps and sender-side selection shared by the MoE distribute references.

``dispatch-v3.md`` §2 (derived quantities), §3.1 (what a sender emits), §8 (masks), §9 (special
experts) and §10 (elastic scale-down). Everything here works on one EP group; the TP dimension is
handled by the callers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

import numpy as np

from ..errors import ACLNN_ERR_INNER_FIND_KERNEL_ERROR, AclnnError
from ..layout import normalised_shared_expert_num, parse_elastic_info
from ..profiles import ENV_NAME, Profile


@dataclass(frozen=True)
class EpWorld:
    """The EP group as the kernel routes it: elastic ("primed") values when scale-down is on.

    ``to_new[orig]`` is the new rank id (``-1`` if removed), ``to_orig[new]`` the original rank.
    Without scale-down both are the identity and the primed values equal the attributes.
    """

    ep: int            # original ep_world_size (shapes, slot capacity)
    ep_eff: int        # ep'
    r_eff: int         # R' (shared-expert ranks)
    m_eff: int         # M' (MoE experts routed)
    l_eff: int         # L' = M' / (ep' - R')
    s: int             # S, normalised shared-expert count
    rpse_eff: int      # R' / S (0 without shared experts)
    to_new: np.ndarray
    to_orig: np.ndarray
    scaled_down: bool

    def is_shared_rank(self, new_rank: int) -> bool:
        return new_rank < self.r_eff


def ep_world(ep_world_size: int, moe_expert_num: int, shared_expert_num: int, shared_expert_rank_num: int,
             elastic_info: Optional[np.ndarray] = None) -> EpWorld:
    """Effective routing world of one EP group (expects validated attributes and table)."""
    ep = int(ep_world_size)
    s = normalised_shared_expert_num(int(shared_expert_num), int(shared_expert_rank_num))
    info = parse_elastic_info(elastic_info, ep) if elastic_info is not None else None
    if info is not None and info.enabled:
        ep2, r2, m2 = info.ep_world_size, info.shared_rank_num, info.moe_expert_num
        to_new = info.to_new.astype(np.int64)
        to_orig = info.to_orig[:ep2].astype(np.int64)
        scaled = True
    else:
        ep2, r2, m2 = ep, int(shared_expert_rank_num), int(moe_expert_num)
        to_new = np.arange(ep, dtype=np.int64)
        to_orig = to_new.copy()
        scaled = False
    return EpWorld(ep=ep, ep_eff=ep2, r_eff=r2, m_eff=m2, l_eff=m2 // (ep2 - r2), s=s,
                   rpse_eff=(r2 // s if s > 0 else 0), to_new=to_new, to_orig=to_orig, scaled_down=scaled)


REFERENCE_GROUP_TP = "tp"


def reference_group_tp(group_tp: Optional[str], tp_world_size: int) -> Optional[str]:
    """The TP group name the world-level reference validates a rank with.

    The reference has no communicators (DESIGN §2.1 takes no group names): ``None`` or ``""`` stands for its
    own TP group, ``"tp"``, when ``tp_world_size == 2`` and for "no TP group" otherwise. A name the caller gives
    (the per-rank backend passes the rank's real group) is kept.
    """
    if group_tp is None or group_tp == "":
        return REFERENCE_GROUP_TP if tp_world_size == 2 else ""
    return group_tp


def active_pairs(bs: int, k: int, mask: Optional[np.ndarray]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The (token, k) pairs a sender routes, and its active tokens, before special-expert dropping.

    Returns ``(pairs, tokens)``: bool arrays of shape ``(bs*k,)`` (flat order ``t*k + kk``) and
    ``(bs,)``; ``None`` means "all". A 1-D mask activates the first ``count(True)`` tokens (the
    kernel only sums it); a 2-D mask selects pairs, and a token is active when any of its pairs is.
    """
    if mask is None:
        return None, None
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 1:
        n = int(np.count_nonzero(mask))
        tokens = np.arange(bs) < n
        return np.repeat(tokens, k), tokens
    return mask.reshape(-1).copy(), mask.any(axis=1)


def release_semantics(prof: Profile, flag: str, op: str, what: str) -> bool:
    """Whether the release of ``prof`` computes ``what`` the way change ``flag`` introduced; for a release
    aclnn_py does not know, the known releases compute it differently, so the reference refuses (561003,
    naming the choice) rather than guess."""
    state = prof.has(flag)
    if state is None:
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op,
                         f"{what}: the result depends on the CANN release, and {prof.name}; pass cann_version= "
                         f"(or set {ENV_NAME}) to the release whose results you want")
    return state


def refuse_unmodelled(op: str, args: Mapping[str, Any]) -> None:
    """``comm_alg='hierarchy'`` (CANN >= 9.0.0 on A3): its data layout and results are not established from the
    sources, so neither the reference nor the simulator computes it (561003, as the simulator reports)."""
    if args.get("comm_alg") == "hierarchy":
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op,
                         "comm_alg='hierarchy' is accepted by CANN >= 9.0.0 but its results are not modelled by the "
                         "aclnn_py reference (nor emulated by the simulator); run it on an NPU")
