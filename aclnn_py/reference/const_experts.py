"""The constant experts of CANN >= 8.5.0-beta.1 (releases.py ``const_alpha_2d``), bit for bit in numpy.

From that release on, ``const_expert_alpha_1`` / ``const_expert_alpha_2`` are (Q, H) projections: for a token
``x`` routed to const expert ``c`` the A3 kernel (ops-transformer 5778144
``mc2/moe_distribute_combine_v2/op_kernel/arch22/moe_distribute_combine_v2.h``:1004-1095, ``CalConstExpertAlpha``
and ``ProcessConstantExpert``) computes, every step one rounded float32 operation::

    xf   = f32(x)                                   # exact widening of the bf16/fp16 token
    a_i  = Sum(f32(alpha_i[c]) * xf)                # AscendC Sum (sum_a3 below), i = 1, 2
    m    = a_1 if a_1 > a_2 else a_2                # scalar compare: NaN picks a_2
    e_i  = Exp(a_i - m)                             # exp_f32 below (the simulator's Exp)
    s    = e_1 + e_2;  w_i = e_i / s                # scalar add and divisions
    term = xf * w_1 + f32(v[c]) * w_2               # Muls, Muls, Add

and adds ``term * expert_scales[t, k]`` (or ``term`` when the combine has no expert scales) to the token's
accumulator at slot k, like any expert row. Older releases use scalar alphas (``reference/combine.py``).

The NPU's vector ``Exp`` is not published bit for bit; :func:`exp_f32` is the one float32 algorithm the
simulator (``sim/src/op_moe_kernels.c`` ``moe_exp_f32``) and this module share, so both backends agree exactly;
hardware may differ from them in the last ulps of ``w_i`` (docs/decisions.md "Const experts").
"""
from __future__ import annotations

import numpy as np

from .numerics import FP32, widen

#: lanes of one A3 vector repeat for float32: the tree width of AscendC Sum
_LANES = 64


def _bits(u: int) -> np.float32:
    return np.array([u], np.uint32).view(FP32)[0]


# exp_f32 constants, by their float32 bits (the same bits as the simulator's C)
_LOG2E = _bits(0x3FB8AA3B)                 # log2(e)
_LN2_HI = _bits(0x3F318000)                # 0.693359375: k * _LN2_HI is exact for |k| < 2**15
_LN2_LO = _bits(0xB95E8083)                # ln(2) - _LN2_HI
_POLY = tuple(_bits(u) for u in (0x39506967, 0x3AB743CE, 0x3C088908, 0x3D2AA9C1, 0x3E2AAAAA, 0x3F000000))
_HUGE, _TINY = np.float32(100.0), np.float32(-110.0)   # above: +inf; below: +0


def _pow2(e: np.ndarray) -> np.ndarray:
    """2**e as float32 for integer e in [-126, 127] (built from its bits)."""
    return ((e.astype(np.int32) + 127) << 23).astype(np.uint32).view(FP32)


def exp_f32(x) -> np.ndarray:
    """The simulator's float32 exp, elementwise: NaN -> NaN, x > 100 -> +inf, x < -110 -> +0; otherwise
    ``k = rint(x * log2e)``, ``r = (x - k*C1) - k*C2``, ``p = (((((P0 r + P1) r + P2) r + P3) r + P4) r + P5) * r*r
    + r + 1`` and ``(p * 2**floor(k/2)) * 2**(k - floor(k/2))``; every step one correctly rounded float32
    operation, no fused multiply-add. Accurate to about 1 ulp; returns a float32 array of x's shape."""
    x = np.asarray(x, FP32)
    with np.errstate(all="ignore"):
        xc = np.clip(x, _TINY, _HUGE)
        k = np.rint(xc * _LOG2E)
        r = xc - k * _LN2_HI
        r = r - k * _LN2_LO
        p = np.full_like(r, _POLY[0])
        for c in _POLY[1:]:
            p = p * r + c
        p = (p * (r * r) + r) + np.float32(1.0)
        ki = np.nan_to_num(k).astype(np.int32)
        k1 = ki >> 1                               # floor(k / 2)
        y = (p * _pow2(k1)) * _pow2(ki - k1)
    y = np.where(x > _HUGE, np.float32(np.inf), np.where(x < _TINY, np.float32(0.0), y))
    return np.where(np.isnan(x), np.float32(np.nan), y).astype(FP32)


def sum_a3(v) -> np.ndarray:
    """AscendC ``Sum`` on A3 over the last axis of a float32 array: each group of 64 (the last one zero-padded) is
    summed by a binary tree of adjacent pairs; the group sums are summed the same way, level after level, until
    one value is left (unlike ``ReduceSum``, which adds the group sums in order, numerics.reduce_sum_a3)."""
    v = np.asarray(v, FP32)
    with np.errstate(all="ignore"):
        while True:
            n = v.shape[-1]
            groups = -(-n // _LANES)
            if n != groups * _LANES:
                pad = np.zeros(v.shape[:-1] + (groups * _LANES - n,), FP32)
                v = np.concatenate((v, pad), axis=-1)
            v = v.reshape(v.shape[:-1] + (groups, _LANES))
            while v.shape[-1] > 1:
                v = v[..., 0::2] + v[..., 1::2]
            v = v[..., 0]
            if groups == 1:
                return v[..., 0]


def const_expert_rows_softmax(x_rows, alpha_1, alpha_2, v, idx) -> np.ndarray:
    """The const-expert terms of CANN >= 8.5.0-beta.1 for ``n`` (token, const expert) pairs, before the expert
    scale: ``x_rows`` (n, H) the tokens (``ori_x`` rows; bf16, fp16 or float32), ``alpha_1``, ``alpha_2``, ``v``
    (Q, H) of the same dtype, ``idx`` (n,) the const expert index c in [0, Q) of each pair. Returns (n, H)
    float32: ``f32(x) * w_1 + f32(v[c]) * w_2`` with the softmax weights of the two projections (module doc)."""
    xf = widen(np.asarray(x_rows))
    idx = np.asarray(idx, np.int64)
    with np.errstate(all="ignore"):
        a1 = sum_a3(widen(np.asarray(alpha_1))[idx] * xf)
        a2 = sum_a3(widen(np.asarray(alpha_2))[idx] * xf)
        m = np.where(a1 > a2, a1, a2)
        e1, e2 = exp_f32(a1 - m), exp_f32(a2 - m)
        s = e1 + e2
        w1, w2 = (e1 / s)[:, None], (e2 / s)[:, None]
        return xf * w1 + widen(np.asarray(v))[idx] * w2
