"""The simulator's C and aclnn_py.reference.const_experts compute the CANN >= 8.5.0-beta.1 const-expert terms
bit for bit: the float32 exp, and the whole term (two AscendC Sum projections, the 2-way softmax, the final
combination) on random tokens of every magnitude, with NaN and inf, H from 1024 to 8192, bf16 and fp16.

tests/sim_c/const_expert_check.c runs sim/src/op_moe_kernels.c's functions on the inputs this test writes.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from aclnn_py.reference.const_experts import const_expert_rows_softmax, exp_f32, sum_a3
from aclnn_py.reference.numerics import reduce_sum_a3

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "sim" / "src"
CDIR = ROOT / "tests" / "sim_c"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture(scope="module")
def check_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("const_experts") / "const_expert_check"
    cc = subprocess.run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", f"-I{SRC}",
                         str(CDIR / "const_expert_check.c"), str(SRC / "op_moe_kernels.c"), "-lm", "-o", str(exe)],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    return exe


def _run(exe: Path, mode: str, payload: bytes, tmp_path: Path) -> np.ndarray:
    src, dst = tmp_path / f"{mode}.in", tmp_path / f"{mode}.out"
    src.write_bytes(payload)
    res = subprocess.run([str(exe), mode, str(src), str(dst)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return np.frombuffer(dst.read_bytes(), np.float32)


def _assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    """Equal float32 bits, except that any NaN matches any NaN (the combine writes NaN canonically anyway)."""
    assert_array_equal(np.isnan(got), np.isnan(want))
    keep = ~np.isnan(want)
    assert_array_equal(got[keep].view(np.uint32), want[keep].view(np.uint32))


def _special_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Float32 values over the whole range: ordinary, huge, tiny, subnormal, signed zeros, inf and NaN."""
    parts = [rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n),
             rng.uniform(-120.0, 110.0, n),                       # past both ends of exp's range
             rng.uniform(-0.5, 0.5, n),
             np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.73, -87.3, -103.9, -104.0, 100.0, -110.0,
                       1e-30, -1e-30, 3.4e38, -3.4e38, 1e-45, 0.34657359])]
    return np.concatenate(parts).astype(np.float32)


def test_exp_matches_numpy_bit_for_bit(check_exe: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    x = _special_floats(rng, 20000)
    _assert_same_bits(_run(check_exe, "exp", x.tobytes(), tmp_path), exp_f32(x))


def test_exp_is_accurate() -> None:
    """Not a bit test: the algorithm is a faithful exp (within 2 ulp of the correctly rounded value), with the
    documented special values."""
    x = np.linspace(-87.0, 88.0, 200001, dtype=np.float32)
    got = exp_f32(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) < 2.0
    special = exp_f32(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 101.0, -111.0], np.float32))
    assert_array_equal(special[:4], np.array([1.0, 1.0, np.inf, 0.0], np.float32))
    assert np.isnan(special[4]) and special[5] == np.inf and special[6] == 0.0


def test_sum_a3_is_the_level_by_level_tree() -> None:
    """AscendC Sum reduces the 64-lane group sums with the same tree; ReduceSum adds them in order: the two differ
    when n > 64 and agree for n <= 64."""
    rng = np.random.default_rng(3)
    small = rng.standard_normal((50, 64)).astype(np.float32)
    assert_array_equal(sum_a3(small), reduce_sum_a3(small))
    v = np.float32([1e8] + [1.0] * 63 + [-1e8] + [1.0] * 63 + [3.0] * 64)
    # three groups: Sum adds them by the tree ((g0 + g1) + (g2 + 0)), ReduceSum in order ((0 + g0) + g1) + g2
    g = [sum_a3(v[i:i + 64]) for i in (0, 64, 128)]
    assert_array_equal(sum_a3(v), np.float32(np.float32(g[0] + g[1]) + np.float32(g[2] + np.float32(0))))
    big = rng.standard_normal((20, 4096)).astype(np.float32) * np.float32(1e4)
    assert (sum_a3(big) != reduce_sum_a3(big)).any()


def _term_payload(x: np.ndarray, a1: np.ndarray, a2: np.ndarray, v: np.ndarray, idx: np.ndarray) -> bytes:
    n, h = x.shape
    head = np.array([n, h, a1.shape[0], int(x.dtype == ml_dtypes.bfloat16)], np.int64)
    body = b"".join(np.ascontiguousarray(t).view(np.uint16).tobytes() for t in (x, a1, a2, v))
    return head.tobytes() + body + idx.astype(np.int32).tobytes()


def _random_case(rng: np.random.Generator, h: int, dtype, n: int = 64, q: int = 3) -> tuple:
    def scale(rows: int) -> np.ndarray:
        """One magnitude per row: half of them 1 (projections of order 1, where the softmax is most sensitive to
        the summation order), the others from 1e-4 to 1e2."""
        mag = 10.0 ** rng.integers(-4, 3, rows)
        return np.where(rng.random(rows) < 0.5, 1.0, mag)[:, None]

    x = (rng.standard_normal((n, h)) * scale(n)).astype(np.float32)
    a1 = (rng.standard_normal((q, h)) * scale(q) / np.sqrt(h)).astype(np.float32)
    a2 = (rng.standard_normal((q, h)) * scale(q) / np.sqrt(h)).astype(np.float32)
    v = (rng.standard_normal((q, h)) * scale(q)).astype(np.float32)
    x[0, 5] = np.nan                  # a NaN token: both weights NaN
    x[1, 7] = np.inf                  # an inf token
    a1[2 % q, 9] = -np.inf            # an inf projection
    a2[1 % q] *= np.float32(1e6)      # saturating softmax (weights 0 and 1)
    with np.errstate(over="ignore"):
        return (x.astype(dtype), a1.astype(dtype), a2.astype(dtype), v.astype(dtype),
                rng.integers(0, q, n).astype(np.int64))


@pytest.mark.parametrize("h", [1024, 1100, 4096, 7168, 8192])
@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16], ids=["bf16", "fp16"])
def test_const_expert_term_matches_numpy_bit_for_bit(check_exe: Path, tmp_path: Path, h: int, dtype) -> None:
    rng = np.random.default_rng(h + (0 if dtype == np.float16 else 1))
    case = _random_case(rng, h, dtype)
    got = _run(check_exe, "term", _term_payload(*case), tmp_path).reshape(len(case[4]), h)
    want = const_expert_rows_softmax(*case)
    assert want.dtype == np.float32 and want.shape == got.shape
    _assert_same_bits(got, want)
    assert np.isnan(want[0]).all() and np.isfinite(want[3:]).any()


def test_const_expert_term_is_a_softmax_mix() -> None:
    """alpha_1 = alpha_2 gives equal weights 1/2: the term is x/2 + v/2 exactly for representable halves."""
    h = 1024
    x = np.full((2, h), 2.0, ml_dtypes.bfloat16)
    a = np.full((1, h), 0.5, ml_dtypes.bfloat16)
    v = np.full((1, h), 6.0, ml_dtypes.bfloat16)
    got = const_expert_rows_softmax(x, a, a, v, np.array([0, 0]))
    assert_array_equal(got, np.full((2, h), 4.0, np.float32))
