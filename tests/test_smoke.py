"""The smoke suite: on real hardware (marked npu, skipped without one) and, CI-sized, on the simulator."""
from __future__ import annotations

import pytest

from aclnn_py.smoke import format_table, run_smoke, smoke_scenarios


@pytest.mark.npu
def test_smoke_on_hardware():
    rows = run_smoke("device", quick=False, print_table=True)
    assert rows and all(r.passed for r in rows), format_table(rows, "device", 0)


@pytest.mark.npu
@pytest.mark.parametrize("which", ["pipeline", "dispatch-barrier-combine", "barrier"])
def test_seed_demos_on_hardware(which):
    from aclnn_py.__main__ import main
    assert main(["demo", "--which", which, "--backend", "device"]) == 0


def test_smoke_quick_on_simulator(sim, capsys):
    rows = run_smoke("device", quick=True)
    out = capsys.readouterr().out
    assert "aclnn_py simulator (not hardware)" in out and "smoke: PASS" in out
    assert len(rows) == 2 * len(smoke_scenarios(16, quick=True))
    assert all(r.passed and r.mismatches == 0 and r.max_ulp == 0 for r in rows)


@pytest.mark.parametrize("n", [2, 3, 4, 8, 16])
def test_smoke_scenarios_are_valid_for_any_device_count(n):
    from aclnn_py import reference
    for sc in smoke_scenarios(n, quick=True):
        assert sc.world_size <= n
        inputs = sc.inputs()
        per = lambda k: [None if i is None else i[k] for i in inputs]  # noqa: E731
        reference.moe_distribute_dispatch_v3(per("x"), per("expert_ids"), elastic_info=sc.elastic_info(),
                                             group_tp="tp", **sc.attributes())


def test_smoke_scenarios_at_full_size():
    full = smoke_scenarios(16)
    assert max(s.bs for s in full) == 512 and all(s.h == 7168 for s in full)
    assert any(s.tp_world_size == 2 for s in full) and any(s.removed for s in full)
