"""The rules that differ between CANN releases, read from the call's rule profile.

Every helper takes ``prof`` (:class:`aclnn_py.profiles.Profile`). For a change of :mod:`aclnn_py.releases`,
``prof.has(flag)`` is True (the release has it: the rule of libochao-huawei/ops-transformer 5778144),
False (the rule of hicann/ops-transformer c29bc10) or None (a release aclnn_py does not know: only what every
known release rejects, i.e. the looser rule of the pair; the installed kernel decides the rest). A message
names the release (``prof.name``) when the rule it states depends on it. The simulator applies the same
rules (``sim/src/op_moe_*.c``; ``docs/decisions.md``, "Simulator per CANN release" and "Validation per CANN
release").
"""
from __future__ import annotations

from typing import Any, Optional

from .. import profiles
from ..catalog import OpDef
from ..errors import ACLNN_ERR_INNER_FIND_KERNEL_ERROR, AclnnError
from . import buffsize
from . import rules as R
from .limits import EP_MAX, EP_MIN

HIERARCHY = "hierarchy"
HIER_EP_MAX, HIER_EP_MULTIPLE, HIER_M_MAX, HIER_BS_MAX, HIER_H_MAX, HIER_H_ALIGN = 256, 16, 512, 256, 7168, 32
FULLMESH_V2_BS_MAX, FULLMESH_V2_K_MAX = 256, 12
L_EP_MAX = 2048
ASSIST_PER_A_OLD, ASSIST_PER_A = 3, 128
_SKIPPED_WHY = "its combine tiling's shape check returns GRAPH_FAILED from a bool function, which reads as success"


def skipped(prof: profiles.Profile) -> str:
    """The note of a combine rule the release's combine tiling skips (``combine_checks_skipped``), or ''."""
    if not prof.on("combine_checks_skipped"):
        return ""
    return f" (documented rule; {prof.name} does not enforce it: {_SKIPPED_WHY})"


def require_v4(op_def: OpDef, prof: profiles.Profile) -> None:
    """A V4 entry (``performance_info``) on a release without the V4 operators: 561003, as CANN reports a
    missing kernel (the simulator's GetWorkspaceSize does the same)."""
    if op_def.has("performance_info") and prof.off("v4"):
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, op_def.c_name,
                         f"not in {prof.name}: the V4 operators (performance_info) first shipped in CANN "
                         f"8.5.0-beta.1; call the V3 operator, or run on a later release")


def group_tp(prof: profiles.Profile, value: Optional[str]) -> Optional[str]:
    """``group_tp`` as the op_api reads it: from CANN 9.1.0 (``tp_removed``) a NULL reads as ""."""
    return "" if value is None and not prof.off("tp_removed") else value


def is_hierarchy(prof: profiles.Profile, comm_alg: Optional[str]) -> bool:
    """``comm_alg="hierarchy"`` on a release that accepts it (from CANN 9.0.0, or an unknown release)."""
    return comm_alg == HIERARCHY and not prof.off("hierarchy")


def comm_algs(prof: profiles.Profile) -> tuple:
    """The ``comm_alg`` values the release's A3 dispatch accepts ("" stands for None)."""
    return buffsize.COMM_ALGS + (() if prof.off("hierarchy") else (HIERARCHY,))


# ---- ranks and TP ----------------------------------------------------------------------------------------
def check_world(op: str, prof: profiles.Profile, a: dict, *, hier: bool, combine: bool) -> None:
    """ep_world_size, ep_rank_id and the TP attributes (``a``: the typed arguments, ``group_tp`` as read).

    ``tp_removed`` on: tp_world_size in [0, 1] (dispatch's tiling rejects only >= 2; the documented range is
    enforced), combine's tp_rank_id 0, dispatch's unchecked. Off: [0, 2], tp_rank_id in [0, tp) with TP and 0
    without, a TP group name with TP. Unknown: [0, 2] and the TP rules with TP (CANN 9.1.0 rejects TP
    altogether); without TP, tp_rank_id 0 in combine only (dispatch 9.1.0 does not check it).
    ``comm_alg="hierarchy"`` (9.0.0) allows no TP.
    """
    ep, ep_rank, tp, tp_rank = a["ep_world_size"], a["ep_rank_id"], a["tp_world_size"], a["tp_rank_id"]
    R.in_range(op, "ep_world_size", ep, EP_MIN, HIER_EP_MAX if hier else EP_MAX)
    if hier:
        R.require(ep % HIER_EP_MULTIPLE == 0, op, R.TILING, "ep_world_size",
                  f"a multiple of {HIER_EP_MULTIPLE} with comm_alg='hierarchy'", ep)
    R.require(0 <= ep_rank < ep, op, R.TILING, "ep_rank_id", f"0 <= ep_rank_id < ep_world_size ({ep})", ep_rank)
    removed = prof.has("tp_removed")
    if removed:
        R.require(tp < 2, op, R.TILING, "tp_world_size",
                  f"tp_world_size <= 1 ({prof.name} has no TP: tp_world_size 2 was removed in CANN 9.1.0)", tp)
        R.require(tp >= 0, op, R.TILING, "tp_world_size", "0 <= tp_world_size <= 1" + (
            "" if combine else f" (documented range; the {prof.name} dispatch tiling rejects only values >= 2)"), tp)
    else:
        tp_max = 1 if hier else 2
        R.require(0 <= tp <= tp_max, op, R.TILING, "tp_world_size",
                  f"0 <= tp_world_size <= {tp_max}" + (" with comm_alg='hierarchy'" if hier else "")
                  + ("" if removed is False else " (CANN 9.1.0 accepts at most 1)"), tp)
    if tp > 1:
        R.require(0 <= tp_rank < tp, op, R.TILING, "tp_rank_id", f"0 <= tp_rank_id < tp_world_size ({tp})", tp_rank)
        n = R.name_length(a["group_tp"])
        R.require(1 <= n < R.GROUP_NAME_MAX, op, R.TILING, "group_tp",
                  f"a TP group name of 1..{R.GROUP_NAME_MAX - 1} bytes when tp_world_size == 2", f"{n} bytes")
        if combine:
            R.require(a["comm_quant_mode"] == 0, op, R.TILING, "comm_quant_mode",
                      "comm_quant_mode == 0 when tp_world_size == 2", a["comm_quant_mode"])
    elif combine or removed is False:
        why = f" ({prof.name} has no TP)" if removed else " when tp_world_size <= 1"
        R.require(tp_rank == 0, op, R.TILING, "tp_rank_id", f"tp_rank_id == 0{why}", tp_rank)


def check_hierarchy_experts(op: str, hier: bool, m: int, r: int) -> None:
    """comm_alg='hierarchy': moe_expert_num <= 512 and no shared-expert ranks (9.0.0, nDT:794-813)."""
    if hier:
        R.require(m <= HIER_M_MAX, op, R.TILING, "moe_expert_num",
                  f"moe_expert_num <= {HIER_M_MAX} with comm_alg='hierarchy'", m)
        R.require(r == 0, op, R.TILING, "shared_expert_rank_num", "0 with comm_alg='hierarchy'", r)


def check_hierarchy_bans(op: str, a: dict, *, z: int) -> None:
    """comm_alg='hierarchy' takes no elastic table, special experts, 2-D mask or performance_info (nDT:933-945,
    nCT:1451-1482)."""
    mask = a["x_active_mask"]
    R.require(a["elastic_info"] is None, op, R.TILING, "elastic_info", "None with comm_alg='hierarchy'", "given")
    R.require(z == 0, op, R.TILING, "zero_expert_num",
              "zero + copy + const expert nums == 0 with comm_alg='hierarchy'", z)
    R.require(mask is None or len(mask.shape) != 2, op, R.TILING, "x_active_mask",
              "1-D or None with comm_alg='hierarchy'", "a 2-D mask")
    R.require(a.get("performance_info") is None, op, R.TILING, "performance_info",
              "None with comm_alg='hierarchy'", "given")


# ---- expert counts ---------------------------------------------------------------------------------------
def check_local_experts(op: str, prof: profiles.Profile, lnum: int, ep: int) -> None:
    """From CANN 8.5.0-beta.1 (``l_ep_max_2048``): experts per MoE rank * ep_world_size <= 2048."""
    if prof.on("l_ep_max_2048"):
        R.require(lnum * ep <= L_EP_MAX, op, R.TILING, "moe_expert_num",
                  f"localMoeExpertNum (moe_expert_num / (ep_world_size - shared_expert_rank_num) = {lnum}) * "
                  f"ep_world_size <= {L_EP_MAX} ({prof.name})", lnum * ep)


# ---- fullmesh_v2 -----------------------------------------------------------------------------------------
def check_fullmesh_v2(op: str, prof: profiles.Profile, a: dict, *, bs: int, k: int, z: int) -> None:
    """comm_alg='fullmesh_v2': before CANN 9.0.0 (``fullmesh_v2_open`` off) no elastic table, special experts,
    mask or TP; from 9.0.0 BS <= 256; from 8.5.0-beta.1 (``fullmesh_v2_k12``) K <= 12. Unknown: neither."""
    if prof.off("fullmesh_v2_open"):
        R.require(a["elastic_info"] is None, op, R.TILING, "elastic_info", "None when comm_alg == 'fullmesh_v2' "
                  f"({prof.name})", "given")
        R.require(z == 0, op, R.TILING, "zero_expert_num",
                  f"zero + copy + const expert nums == 0 when comm_alg == 'fullmesh_v2' ({prof.name})", z)
        R.require(a["x_active_mask"] is None, op, R.TILING, "x_active_mask",
                  f"None when comm_alg == 'fullmesh_v2' ({prof.name})", "given")
        R.require(a["tp_world_size"] != 2, op, R.TILING, "tp_world_size",
                  f"tp_world_size != 2 when comm_alg == 'fullmesh_v2' ({prof.name})", a["tp_world_size"])
    if prof.on("fullmesh_v2_open"):
        R.require(1 <= bs <= FULLMESH_V2_BS_MAX, op, R.TILING, "x",
                  f"1 <= BS (x.shape[0]) <= {FULLMESH_V2_BS_MAX} with comm_alg='fullmesh_v2' ({prof.name})", bs)
    if prof.on("fullmesh_v2_k12"):
        R.require(k <= FULLMESH_V2_K_MAX, op, R.TILING, "expert_ids",
                  f"K (expert_ids.shape[1]) <= {FULLMESH_V2_K_MAX} with comm_alg='fullmesh_v2' ({prof.name})", k)


# ---- shapes whose bound moved ----------------------------------------------------------------------------
def rows_factor(prof: profiles.Profile, tp: int) -> tuple:
    """(factor, note) of the rows a received-rows tensor needs: ``factor * A``. CANN 9.1.0 (``tp_removed``):
    A; earlier: max(tp, 1) * A, documented (the tilings compare with tp * A, 0 without TP)."""
    if prof.on("tp_removed"):
        return 1, ""
    if tp == 0:
        where = f"the {prof.name} tiling" if prof.known else "the tiling of CANN releases before 9.1.0"
        return 1, f" (documented shape; {where} compares with tp_world_size * A = 0)"
    return max(tp, 1), ""


def check_perf_info(op: str, t: Any, ep: int) -> None:
    """performance_info (V4): (ep_world_size,) int64 ND (nDT:366-378, 553, 1234; nCT:1339-1349)."""
    if t is not None:
        R.ndim(op, "performance_info", t, (1,))
        R.not_nz(op, "performance_info", t)
        R.require(int(t.shape[0]) == ep, op, R.TILING, "performance_info",
                  f"shape == (ep_world_size,) = ({ep},)", tuple(t.shape))


# ---- the HCCL window -------------------------------------------------------------------------------------
def window_source(prof: profiles.Profile, hier: bool) -> str:
    """Which window the release's tiling compares with (``window_from_comm``), for the message."""
    if hier:
        return f"{buffsize.ENV_NAME} (comm_alg='hierarchy' reads it when GetWorkspaceSize runs)"
    has = prof.has("window_from_comm")
    if has:
        return (f"the HCCL buffer of the group_ep communicator ({buffsize.ENV_NAME}, or HcclCommConfig.hcclBufferSize, "
                f"when the communicator was created: {prof.name} reads the communicator's buffer)")
    if has is False:
        return f"{buffsize.ENV_NAME} ({prof.name} reads it when GetWorkspaceSize runs)"
    return (f"{buffsize.ENV_NAME} (CANN 8.5.0.alpha001 reads it when GetWorkspaceSize runs; from 8.5.0-beta.1 the "
            "window is the communicator's buffer, sized by it when the communicator was created)")


def check_window(op: str, prof: profiles.Profile, *, hier: bool, bs: int, max_bs: int, m: int, lnum: int, h: int,
                 k: int, s: int, ep: int, comm_alg: str, env: Any) -> None:
    """The HCCL window size rule (561002); ``comm_alg='hierarchy'`` has its own formula and needs the same BS
    on every rank (nDW:65-89)."""
    source = window_source(prof, hier)
    if hier:
        R.require(bs == max_bs, op, R.TILING, "global_bs",
                  f"global_bs / ep_world_size == BS ({bs}) with comm_alg='hierarchy' (the same BS on every rank)",
                  max_bs * ep)
        buffsize.check_hierarchy_window(op, m=m, max_bs=max_bs, h=h, k=k, env=env, source=source)
        return
    buffsize.check_hccl_buffsize(op, h=h, max_bs=max_bs, ep_world_size=ep, local_expert_num=lnum, k=k,
                                 shared_expert_num=s, comm_alg=comm_alg, env=env, source=source)


__all__ = ["HIERARCHY", "skipped", "require_v4", "group_tp", "is_hierarchy", "comm_algs", "check_world",
           "check_hierarchy_experts", "check_hierarchy_bans", "check_local_experts", "check_fullmesh_v2",
           "rows_factor", "check_perf_info", "window_source", "check_window"]
