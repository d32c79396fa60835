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


def test_a_scenario_that_raises_is_a_fail_row_and_the_table_is_still_printed(sim, monkeypatch, capsys, tmp_path):
    from aclnn_py import smoke
    scenarios = smoke.smoke_scenarios(16, quick=True)[:3]
    boom = scenarios[1].name

    def run(sc, world):
        if sc.name == boom:
            raise IndexError("planted failure")
        return real_run(sc, world)

    real_run = smoke.run
    monkeypatch.setattr(smoke, "smoke_scenarios", lambda n, quick=False, prof=None: scenarios)
    monkeypatch.setattr(smoke, "run", run)
    rows = smoke.run_smoke("device", quick=True, json_path=str(tmp_path / "smoke.json"))
    out = capsys.readouterr().out
    assert [r.scenario for r in rows] == [s.name for s in scenarios for _ in range(2)]
    failed = [r for r in rows if not r.passed]
    assert [r.scenario for r in failed] == [boom, boom]
    assert all(r.error == "IndexError: planted failure" for r in failed)
    assert "smoke: FAIL (4/6 rows passed)" in out and out.count("error: IndexError: planted failure") == 1
    assert out.count("[1/3]") == 1 and out.count("[3/3]") == 1     # every scenario announced, the last one too
    import json
    doc = json.loads((tmp_path / "smoke.json").read_text())
    assert doc["passed"] is False and len(doc["rows"]) == 6 and doc["rows"][2]["error"] == failed[0].error


def test_rows_name_sizes_and_features():
    from aclnn_py.smoke import smoke_scenarios
    sc = next(s for s in smoke_scenarios(16) if s.comm_quant_mode)
    assert sc.shape_label() == "EP16 TP1 BS128 H7168 K8 M32"
    assert "comm_quant2" in sc.features() and "mask1d" in sc.features()


def test_smoke_cli_exits_non_zero_when_a_row_fails(sim, monkeypatch):
    from aclnn_py import smoke
    from aclnn_py.__main__ import main
    monkeypatch.setattr(smoke, "smoke_scenarios", lambda n, quick=False, prof=None: smoke_scenarios(n, quick)[:1])
    monkeypatch.setattr(smoke, "run", lambda sc, world: (_ for _ in ()).throw(RuntimeError("planted")))
    assert main(["smoke", "--quick"]) == 1


@pytest.mark.parametrize("release", ["8.5.0-beta.1", "9.1.0"])
def test_smoke_quick_on_the_simulator_of_a_newer_release(sim, monkeypatch, capsys, release):
    """The smoke set follows the release: no TP=2 where TP is gone, the 9.1.0 features where they exist."""
    monkeypatch.setenv("ACLNN_SIM_CANN_VERSION", release)
    monkeypatch.delenv("ACLNN_PY_CANN_VERSION", raising=False)
    rows = run_smoke("device", quick=True)
    names = {r.scenario for r in rows}
    assert ("TP=2" in names) == (release != "9.1.0")
    assert ("expand_scales, unweighted combine (9.1.0)" in names) == (release == "9.1.0")
    assert all(r.passed and r.mismatches == 0 for r in rows), format_table(rows, release, 16)
