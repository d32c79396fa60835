"""Float helpers of the reference: RNE conversions, A3 ReduceSum order, int8 comm quant, TP add."""
from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from aclnn_py.reference import numerics as nm

BF16 = np.dtype(ml_dtypes.bfloat16)


def f32_bits(*bits: int) -> np.ndarray:
    return np.array(bits, np.uint32).view(np.float32)


def bf16_by_hand(x: np.ndarray) -> np.ndarray:
    """Spec §12 recipe: add 0x7FFF + lsb of the upper half, mask; NaN kept quiet with its sign."""
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    nan = np.isnan(x)
    r = np.where(nan, (u >> 16) | 0x0040, r)
    return r.astype(np.uint16)


def fp16_by_hand(v: float) -> float:
    """Exact round-to-nearest-even of a real number to IEEE half (via fractions)."""
    if v != v or v in (float("inf"), float("-inf")):
        return v
    x = Fraction(v)
    sign = math.copysign(1.0, v)
    x = abs(x)
    if x == 0:
        return 0.0 * sign
    e = max(x.numerator.bit_length() - x.denominator.bit_length(), -14)
    while Fraction(2) ** e > x:
        e -= 1
    while Fraction(2) ** (e + 1) <= x:
        e += 1
    e = max(e, -14)
    ulp = Fraction(2) ** (e - 10)
    q, r = divmod(x, ulp)
    if r > ulp / 2 or (r == ulp / 2 and q % 2 == 1):
        q += 1
    val = q * ulp
    if val >= 65520 - 8 and val > 65504:
        return sign * float("inf")
    return sign * float(val)


EDGE_F32 = f32_bits(
    0x3F808000,  # 1 + 2^-8: tie, lsb 0 -> down
    0x3F818000,  # tie, lsb 1 -> up
    0x3F808001,  # just above tie -> up
    0x3F807FFF,  # just below tie -> down
    0x7F7FFFFF,  # max finite -> inf
    0x7F7F7FFF,  # rounds down to max bf16
    0xFF7FFFFF,  # -> -inf
    0x7F800000, 0xFF800000,  # inf
    0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FBFFFFF,  # NaNs (quiet / signalling, low payload)
    0x00000000, 0x80000000,  # zeros
    0x00008000,  # subnormal tie, lsb 0 -> 0
    0x00018000,  # subnormal tie, lsb 1 -> up
    0x00000001, 0x807FFFFF, 0x007FFFFF, 0x00800000,  # subnormal extremes, min normal
    0x3DCCCCCD, 0x3F666666, 0xBD9999A0,  # 0.1f, 0.9f, §10.2 value
)


class TestRneBf16:
    def test_edge_cases_match_ml_dtypes_and_hand_rule(self):
        got = nm.rne_bf16(EDGE_F32).view(np.uint16)
        with np.errstate(invalid="ignore"):
            ref = EDGE_F32.astype(BF16).view(np.uint16)
        hand = bf16_by_hand(EDGE_F32)
        nan = np.isnan(EDGE_F32)
        assert np.array_equal(got[~nan], ref[~nan])
        assert np.array_equal(got[~nan], hand[~nan])
        # every NaN, whatever its sign and payload, is written as the canonical quiet NaN (docs/decisions.md)
        assert_array_equal(got[nan], np.full(int(nan.sum()), 0x7FC0, np.uint16))

    def test_specific_values(self):
        got = nm.rne_bf16(EDGE_F32[:6]).view(np.uint16).tolist()
        assert got == [0x3F80, 0x3F82, 0x3F81, 0x3F80, 0x7F80, 0x7F7F]
        assert nm.rne_bf16(f32_bits(0x00008000, 0x00018000)).view(np.uint16).tolist() == [0x0000, 0x0002]

    def test_random_bit_patterns(self):
        rng = np.random.default_rng(1)
        x = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
        x = x[~np.isnan(x)]
        assert np.array_equal(nm.rne_bf16(x).view(np.uint16), bf16_by_hand(x))


class TestRneFp16:
    CASES = [1.0, 1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-30, 65504.0, 65519.0, 65520.0, 70000.0,
             -65520.0, 2**-24, 2**-25, 3 * 2**-25, 2**-26, 2**-14, 2**-14 - 2**-25, 0.1, -0.0, 1e-10, 2.5e-8]

    @pytest.mark.parametrize("v", CASES)
    def test_against_exact_rounding(self, v):
        x = np.float32(v)
        got = float(nm.rne_fp16(np.array([x]))[0])
        ref = fp16_by_hand(float(x))
        assert got == ref and np.signbit(got) == np.signbit(ref)

    def test_nan_inf(self):
        out = nm.rne_fp16(np.array([np.nan, np.inf, -np.inf, -np.nan], np.float32))
        assert_array_equal(out.view(np.uint16), np.array([0x7E00, 0x7C00, 0xFC00, 0x7E00], np.uint16))


class TestRneInt8:
    def test_ties_saturation_nan(self):
        x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.4, 127.5, 200, -128.4, -128.6, -1e9,
                      np.nan, np.inf, -np.inf], np.float32)
        assert nm.rne_int8(x).tolist() == [0, 2, 2, 0, -2, -2, 126, 127, 127, 127, -128, -128, -128,
                                           0, 127, -128]

    def test_from_fp16(self):
        assert nm.rne_int8(np.array([2.5, 3.5], np.float16)).tolist() == [2, 4]


class TestReduceSumA3:
    @staticmethod
    def by_hand(v: np.ndarray) -> np.float32:
        """Scalar loop: 64-lane groups (zero padded), adjacent-pair tree, then groups in order."""
        v = [np.float32(a) for a in v]
        while len(v) % 64:
            v.append(np.float32(0))
        groups = []
        for i in range(0, len(v), 64):
            lvl = v[i:i + 64]
            while len(lvl) > 1:
                lvl = [np.float32(lvl[j] + lvl[j + 1]) for j in range(0, len(lvl), 2)]
            groups.append(lvl[0])
        acc = np.float32(0)
        for gsum in groups:
            acc = np.float32(acc + gsum)
        return acc

    @pytest.mark.parametrize("n", [1, 4, 63, 64, 65, 130, 1000, 1024, 7168])
    def test_matches_hand_loop(self, n):
        rng = np.random.default_rng(n)
        x = (rng.standard_normal((3, n)) * rng.choice([1e-3, 1, 1e4], (3, n))).astype(np.float32)
        got = nm.reduce_sum_a3(x)
        for i in range(3):
            assert got[i].view(np.uint32) == self.by_hand(x[i]).view(np.uint32)

    def test_order_differs_from_sequential(self):
        x = np.array([1.0, 2**-24, 2**-24, 2**-24] + [0.0] * 60, np.float32)
        # tree: (1 + 2^-24) + (2^-24 + 2^-24) = 1 + 2^-23 exactly; sequential would stay at 1.0
        assert nm.reduce_sum_a3(x[None])[0] == np.float32(1 + 2**-23)
        seq = np.float32(0)
        for a in x:
            seq = np.float32(seq + a)
        assert seq == np.float32(1.0)

    def test_leading_axes(self):
        x = np.arange(2 * 3 * 100, dtype=np.float32).reshape(2, 3, 100)
        assert nm.reduce_sum_a3(x).shape == (2, 3)


class TestInt8CommQuant:
    ROW = [1, -2, 0.5, 100, 3, 0, -0.1015625, 64]

    def test_spec_micro_example(self):
        row = np.array([self.ROW], np.float32).astype(BF16)
        q, scale_x, s = nm.int8_comm_quant(row)
        assert q.tolist() == [[1, -3, 1, 127, 4, 0, 0, 81]]
        assert s.view(np.uint32).tolist() == [[0x3F499326]]
        assert scale_x.astype(np.float32).tolist() == [[0.7890625]]
        deq = nm.int8_comm_dequant(q, scale_x, BF16)
        assert deq.dtype == BF16
        assert deq.astype(np.float32).tolist() == [[0.7890625, -2.375, 0.7890625, 100, 3.15625, 0, 0, 64]]
        assert np.array_equal(nm.int8_comm_roundtrip(row).view(np.uint16), deq.view(np.uint16))

    def test_inv_127_constant(self):
        assert nm.INV_127.view(np.uint32) == 0x3C010204

    def test_all_zero_group_and_partial_group(self):
        row = np.zeros((1, 10), np.float32)
        row[0, 8:] = [3.0, -1.5]
        rt = nm.int8_comm_roundtrip(row.astype(BF16)).astype(np.float32)
        assert rt[0, :8].tolist() == [0.0] * 8                  # 0/0 group: dequantised to +0
        assert not np.signbit(rt[0, :8]).any()
        s = np.float32(3.0) * nm.INV_127
        q = nm.rne_int8(nm.rne_fp16(np.array([3.0, -1.5], np.float32) / s))
        sx = nm.rne_bf16(np.array([s]))
        want = nm.rne_bf16(q.astype(np.float32) * sx.astype(np.float32))
        assert np.array_equal(rt[0, 8:], want.astype(np.float32))

    def test_fp16_rows_use_fp16_scale(self):
        row = np.array([self.ROW], np.float16)
        q, scale_x, s = nm.int8_comm_quant(row)
        assert scale_x.dtype == np.float16 and float(scale_x[0, 0]) == float(np.float16(s[0, 0]))
        deq = nm.int8_comm_dequant(q, scale_x, np.float16)
        want = (q.astype(np.float32) * np.float32(scale_x[0, 0])).astype(np.float16)
        assert np.array_equal(deq, want)

    def test_vectorised_matches_scalar_loop(self):
        rng = np.random.default_rng(7)
        rows = (rng.standard_normal((5, 37)) * 10).astype(np.float32).astype(BF16)
        q, sx, _ = nm.int8_comm_quant(rows)
        for r in range(5):
            for g0 in range(0, 37, 8):
                grp = rows[r, g0:g0 + 8].astype(np.float32)
                s = np.float32(np.max(np.abs(grp)) * nm.INV_127)
                assert sx[r, g0 // 8].view(np.uint16) == np.float32(s).astype(BF16).view(np.uint16)
                for i, v in enumerate(grp):
                    qq = np.float16(np.float32(v / s))
                    assert q[r, g0 + i] == int(np.clip(np.rint(np.float32(qq)), -128, 127))


class TestTpAdd:
    def test_bf16_spec_examples(self):
        one = np.array([1.0, 1.0], np.float32).astype(BF16)
        peer = np.array([0.00390625, 0.005859375], np.float32).astype(BF16)
        assert nm.tp_add(one, peer).astype(np.float32).tolist() == [1.0, 1.0078125]

    def test_fp16_equals_correct_rounding_of_exact_sum(self):
        rng = np.random.default_rng(3)
        a = (rng.standard_normal(20000) * 10.0 ** rng.integers(-6, 4, 20000)).astype(np.float16)
        b = (rng.standard_normal(20000) * 10.0 ** rng.integers(-6, 4, 20000)).astype(np.float16)
        exact = a.astype(np.float64) + b.astype(np.float64)     # exact: two halves fit in 53 bits
        assert np.array_equal(nm.tp_add(a, b), exact.astype(np.float16))

    def test_dtype_kept(self):
        assert nm.tp_add(np.ones(3, BF16), np.ones(3, BF16)).dtype == BF16
