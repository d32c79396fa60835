"""The differential matrix per CANN release: the simulator emulating each known release (ACLNN_SIM_CANN_VERSION)
against the reference of that release (cann_version=), element for element, over generated configurations that
are valid on the release -- TP only before 9.1.0, (Q, H) const-expert projections from 8.5.0-beta.1, unweighted
combines and written expand_scales from 9.1.0 -- with every feature of the release in play."""
from __future__ import annotations

import numpy as np
import pytest

from aclnn_py import profiles
from aclnn_py.demos.scenario import Scenario, run
from aclnn_py.dtypes import bfloat16

from conftest import assert_scenario_matches

RELEASES = ("8.5.0.alpha001", "8.5.0-beta.1", "9.0.0", "9.1.0")
PER_RELEASE = 24


def _scenario(release: str, i: int) -> Scenario:
    prof = profiles.profile_for(release)
    rng = np.random.default_rng(7000 + 31 * i + RELEASES.index(release))
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    tp = pick([0, 1]) if prof.on("tp_removed") else pick([0, 1, 1, 2])
    ep = pick([2, 3, 4, 8])
    s, r = pick([(1, 0), (0, 0), (1, 1), (1, 2)])
    if r >= ep:
        s, r = 1, 0
    L = 1 if tp == 2 else pick([1, 2, 3])
    zero, copy, const = (pick([0, 1, 2]), pick([0, 1, 2]), pick([1, 2])) if rng.random() < 0.5 else (0, 0, 0)
    removed = ()
    if tp <= 1 and ep - r >= 2 and rng.random() < 0.25:
        removed = tuple(sorted(rng.choice(np.arange(r, ep), size=int(rng.integers(1, ep - r)), replace=False).tolist()))
    moe_ids = L * (ep - len(removed) - r)
    k = int(rng.integers(1, min(8, moe_ids + zero + copy + const) + 1))
    vary = rng.random() < 0.2
    bs = int(rng.integers(1, 9))
    combine = pick(["combine", "add_rms_norm"])
    optional_scales = prof.on("expert_scales_optional")
    return Scenario(
        name=f"{release}-{i}", ep_world_size=ep, tp_world_size=tp, bs=bs, h=1024, k=k, moe_expert_num=L * (ep - r),
        shared_expert_num=s, shared_expert_rank_num=r, quant_mode=pick([0, 2]), smooth_scales=bool(rng.random() < 0.5),
        global_bs=ep * (bs + int(rng.integers(0, 3))) if vary else 0, vary_bs=vary,
        expert_token_nums_type=pick([0, 1]), zero_expert_num=zero, copy_expert_num=copy, const_expert_num=const,
        mask="none" if vary else pick(["none", "1d", "2d"]), removed=removed, combine=combine,
        comm_quant_mode=2 if tp <= 1 and rng.random() < 0.25 else 0,
        dtype=bfloat16 if combine == "add_rms_norm" or rng.random() < 0.6 else np.float16,
        dispatch_expert_scales=optional_scales and bool(rng.random() < 0.5),
        empty_expert_scales=optional_scales and bool(rng.random() < 0.4), cann_version=release, seed=i)


MATRIX = [_scenario(rel, i) for rel in RELEASES for i in range(PER_RELEASE)]


def test_matrix_covers_what_changed():
    seen = {
        "tp2 old": any(s.tp_world_size == 2 for s in MATRIX if s.cann_version == "8.5.0.alpha001"),
        "const 1-D": any(s.const_expert_num for s in MATRIX if s.cann_version == "8.5.0.alpha001"),
        "const 2-D": any(s.const_expert_num for s in MATRIX if s.cann_version != "8.5.0.alpha001"),
        "unweighted": any(s.empty_expert_scales for s in MATRIX),
        "expand_scales": any(s.dispatch_expert_scales for s in MATRIX),
        "elastic 9.1": any(s.removed for s in MATRIX if s.cann_version == "9.1.0"),
        "both combines 9.1": {s.combine for s in MATRIX if s.cann_version == "9.1.0"} == {"combine", "add_rms_norm"},
    }
    assert all(seen.values()), [k for k, v in seen.items() if not v]


@pytest.mark.parametrize("sc", MATRIX, ids=[s.name for s in MATRIX])
def test_simulator_matches_the_reference_of_its_release(sim_worlds, sim_library, monkeypatch, sc):
    monkeypatch.setenv("ACLNN_SIM_CANN_VERSION", sc.cann_version)
    monkeypatch.setenv("ACLNN_PY_CANN_VERSION", sc.cann_version)
    world = sim_worlds(sc.ep_world_size, sc.tp_world_size)
    assert_scenario_matches(run(sc, world), sim_library, world)
