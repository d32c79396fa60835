"""Bit-exact float helpers shared by the numpy reference (Atlas A3 vector-unit semantics).

Every function here performs IEEE binary32 arithmetic one operation at a time (numpy float32
ufuncs never fuse or promote), and rounds to bf16/fp16 with round-to-nearest-even, i.e. what the
AscendC ``Cast(..., CAST_RINT)`` / ``Muls`` / ``Add`` / ``Div`` / ``Sqrt`` instructions do under the
assumption that the vector unit is IEEE-correct with subnormals preserved
(``../shared/spec/combine-addrmsnorm-barrier.md`` §3, §4, §7, §11 items 1-2).

Conventions
-----------
* ``bf16`` arrays are ``ml_dtypes.bfloat16``; ``fp16`` arrays are ``numpy.float16``.
* "widen" (``f32(x)``) is exact; "rne_X" rounds a float32 array to X with ties-to-even.
* Nothing here allocates more than the size of its result plus one float32 temporary.
"""
from __future__ import annotations

from typing import Tuple

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)
FP16 = np.dtype(np.float16)
FP32 = np.dtype(np.float32)

#: fp32(1.0f / 127.0f) == 0x3c010204, slightly below 1/127 (the kernel's SCALE_PARAM reciprocal).
INV_127 = np.float32(1.0) / np.float32(127.0)
#: Lanes of one A3 vector repeat for fp32 (256 bytes / 4): the ReduceSum tree width.
REDUCE_GROUP = 64
#: Elements sharing one scale in the int8 communication packet (one 32-byte block of fp32).
QUANT_GROUP = 8


def is_half_type(dtype) -> bool:
    """True for the two 16-bit float types the MoE ops move (bf16, fp16)."""
    return np.dtype(dtype) in (BF16, FP16)


def widen(x) -> np.ndarray:
    """Exact conversion of a bf16/fp16/fp32 array to float32 (``f32(x)``)."""
    x = np.asarray(x)
    return x if x.dtype == FP32 else x.astype(FP32)


#: The canonical quiet NaN every NaN result is written as (positive, payload 0), per dtype: which NaN the A3
#: vector unit returns is not documented (docs/decisions.md), so both backends write this one.
CANONICAL_NAN_BITS = {BF16: 0x7FC0, FP16: 0x7E00, FP32: 0x7FC00000}
_INF_BITS = {BF16: 0x7F80, FP16: 0x7C00, FP32: 0x7F800000}     # a magnitude above this is a NaN
_UINT = {2: np.dtype(np.uint16), 4: np.dtype(np.uint32)}       # the raw-bits type of an item size


def canonical_nan(a: np.ndarray) -> np.ndarray:
    """``a`` (a fresh bf16 / fp16 / fp32 array) with every NaN replaced in place by :data:`CANONICAL_NAN_BITS`;
    returns ``a``."""
    dt = a.dtype
    bits = a.view(_UINT[dt.itemsize])
    sign = 1 << (8 * dt.itemsize - 1)
    np.copyto(bits, bits.dtype.type(CANONICAL_NAN_BITS[dt]), where=(bits & (sign - 1)) > _INF_BITS[dt])
    return a


def raw_bits(a: np.ndarray) -> np.ndarray:
    """``a`` viewed as unsigned integers of its item size when that is 2 bytes (bf16 / fp16), else ``a``: rows
    moved through this view are copied bit for bit, never converted."""
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a


def widen_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``f32(x)`` written into ``out`` (float32, x's shape) and returned: exact, like :func:`widen`. A bf16 is
    the upper half of the float32 of the same value, so bf16 goes by its bits (faster than the cast)."""
    if x.dtype == BF16:
        bits = out.view(np.uint32)
        np.copyto(bits, x.view(np.uint16))
        np.left_shift(bits, 16, out=bits)
    else:
        np.copyto(out, x, casting="unsafe")
    return out


_RNE_CHUNK = 1 << 16      # float32 elements per step of the bf16 rounding by bits (256 KiB: stays in L2)


def rne_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Float32 ``x`` rounded to ``out``'s dtype (bf16 / fp16 RNE, or float32 as is) in place into ``out`` (x's
    shape), NaNs made canonical; returns ``out``."""
    with np.errstate(invalid="ignore", over="ignore"):
        if out.dtype == BF16 and x.dtype == FP32 and x.flags.c_contiguous and out.flags.c_contiguous:
            _rne_bf16_by_bits(x.reshape(-1).view(np.uint32), out.reshape(-1).view(np.uint16))
        else:
            np.copyto(out, x, casting="unsafe")
        if x.size and np.isnan(np.minimum.reduce(x, axis=None)):   # the NaN scan only when there is one
            bits = out.view(_UINT[out.dtype.itemsize])
            np.copyto(bits, bits.dtype.type(CANONICAL_NAN_BITS[out.dtype]), where=np.isnan(x))
    return out


def _rne_bf16_by_bits(src: np.ndarray, dst: np.ndarray) -> None:
    """bf16 bits ``dst`` (uint16) of float32 bits ``src`` (uint32, same length), rounded to nearest even:
    ``(b + 0x7FFF + ((b >> 16) & 1)) >> 16``. Exact for every non-NaN input -- inf stays inf, overflow rounds
    to inf, subnormals round like normals (bf16 has float32's exponent range) -- and equal to the ml_dtypes
    cast there (checked for all 2**32 inputs once, and around every bf16 value by
    tests/test_reference_speed_paths.py); NaN inputs are the caller's. About twice as fast as the cast."""
    tmp = np.empty(min(src.size, _RNE_CHUNK), np.uint32)
    for a in range(0, src.size, _RNE_CHUNK):
        b = src[a:a + _RNE_CHUNK]
        t = tmp[:b.size]
        np.right_shift(b, np.uint32(16), out=t)
        np.bitwise_and(t, np.uint32(1), out=t)
        np.add(t, b, out=t)
        np.add(t, np.uint32(0x7FFF), out=t)
        np.right_shift(t, np.uint32(16), out=t)
        np.copyto(dst[a:a + _RNE_CHUNK], t, casting="unsafe")


def _round_to(x, dtype: np.dtype) -> np.ndarray:
    """``x`` as float32 rounded to ``dtype`` (RNE, :func:`rne_into`), NaNs made canonical."""
    f = np.asarray(x, dtype=FP32)
    return rne_into(f, np.empty(f.shape, dtype))


def rne_bf16(x) -> np.ndarray:
    """Round float32 to bfloat16, ties to even; overflow goes to inf, subnormals kept, NaN canonical."""
    return _round_to(x, BF16)


def rne_fp16(x) -> np.ndarray:
    """Round float32 to IEEE half, ties to even (numpy's conversion is correctly rounded); NaN canonical."""
    return _round_to(x, FP16)


def rne_to(x, dtype) -> np.ndarray:
    """``rne_X``: round a float32 array to ``dtype`` (bf16, fp16 or fp32 = no-op)."""
    dt = np.dtype(dtype)
    if dt == BF16:
        return rne_bf16(x)
    if dt == FP16:
        return rne_fp16(x)
    if dt == FP32:
        return np.asarray(x, dtype=FP32)
    raise TypeError(f"rne_to: unsupported target dtype {dt}")


def rne_int8(x) -> np.ndarray:
    """Round float (fp16/fp32) to int8, ties to even, saturating to [-128, 127]; NaN -> 0.

    NaN only arises from an all-zero quantisation group (0/0). The hardware result of an fp16
    NaN -> int8 Cast is undocumented; the choice does not matter for combine because the
    dequantised value of such a group is always ``q * rne_X(0) == 0`` (see :func:`int8_comm_dequant`).
    """
    f = np.asarray(x, dtype=FP32)
    with np.errstate(invalid="ignore"):
        r = np.rint(f)
        r = np.where(np.isnan(r), np.float32(0), r)
        return np.clip(r, -128, 127).astype(np.int8)


def tp_add(own, peer) -> np.ndarray:
    """TP reduce-scatter add of two XType rows: ``rne_X(f32(peer) + f32(own))`` (one fp32 add).

    For fp16 the kernel uses a native half add, which equals this because fp32 carries
    >= 2*11+2 bits, so the double rounding is innocuous (spec §3.2).
    """
    own = np.asarray(own)
    s = np.add(widen(peer), widen(own), dtype=FP32)
    return rne_to(s, own.dtype)


def reduce_sum_a3(x) -> np.ndarray:
    """AscendC ``ReduceSum`` on A2/A3 (count mode): sum the last axis of a float32 array.

    Order: the axis is split into groups of 64 lanes (the last one zero-padded); each group is summed
    by a binary tree of adjacent pairs ((v0+v1), (v2+v3), ... then pairs of those, 6 levels); the
    group sums are then added sequentially, ``((g0 + g1) + g2) + ...``. Every addition is one
    rounded fp32 add. Vectorised across the leading axes; the Python loop runs over groups only.
    """
    x = np.asarray(x, dtype=FP32)
    n = x.shape[-1]
    lead = x.shape[:-1]
    g = max(1, -(-n // REDUCE_GROUP))
    if n == g * REDUCE_GROUP:
        v = x.reshape(lead + (g, REDUCE_GROUP))
    else:
        v = np.zeros(lead + (g * REDUCE_GROUP,), FP32)
        v[..., :n] = x
        v = v.reshape(lead + (g, REDUCE_GROUP))
    while v.shape[-1] > 1:
        v = np.add(v[..., 0::2], v[..., 1::2], dtype=FP32)
    sums = v[..., 0]
    acc = sums[..., 0] + np.float32(0.0)     # 0 + g0, as the accumulate-mode vcadd starts from zero
    for i in range(1, g):
        acc = np.add(acc, sums[..., i], dtype=FP32)
    return np.asarray(acc, dtype=FP32)


def int8_comm_quant(rows) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sender side of ``commQuantMode = 2`` for XType rows of shape (n, H).

    Returns ``(q, scale_x, scale_f32)``: int8 values (n, H), the transmitted per-group scales
    rounded to XType (n, G) and the unrounded fp32 scales (n, G), with ``G = ceil(H / 8)``.
    Per group of 8 consecutive elements (the last group zero-padded):
    ``s = fp32(amax * fp32(1/127))``; ``q = rne_int8(rne_fp16(fp32(v / s)))`` (unrounded ``s``);
    the scale sent is ``rne_X(s)`` (spec §7, kernel ``Int8QuantProcess``). The group maximum propagates NaN
    (``BlockReduceMax``, docs/decisions.md): a group holding a NaN, or an inf (inf/inf and 0*inf), arrives as NaN.
    """
    rows = np.asarray(rows)
    xdt = rows.dtype
    n, h = rows.shape
    groups = -(-h // QUANT_GROUP)
    hp = groups * QUANT_GROUP
    v = np.zeros((n, hp), FP32)
    v[:, :h] = rows
    v3 = v.reshape(n, groups, QUANT_GROUP)
    amax = np.max(np.abs(v3), axis=2)
    s = np.multiply(amax, INV_127, dtype=FP32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = np.divide(v3, s[:, :, None], dtype=FP32)
        q = rne_int8(rne_fp16(ratio)).reshape(n, hp)[:, :h]
    return np.ascontiguousarray(q), rne_to(s, xdt), s


def int8_comm_dequant(q, scale_x, dtype) -> np.ndarray:
    """Receiver side: ``rne_X(fp32(f32(q) * f32(scale_x)))`` with each group's scale (spec §7)."""
    q = np.asarray(q)
    n, h = q.shape
    sc = widen(scale_x)
    per_elem = np.repeat(sc, QUANT_GROUP, axis=1)[:, :h]
    with np.errstate(invalid="ignore", over="ignore"):
        val = np.multiply(q.astype(FP32), per_elem, dtype=FP32)
    return rne_to(val, dtype)


def int8_comm_roundtrip(rows) -> np.ndarray:
    """What the receiving rank reads for XType ``rows`` sent with ``commQuantMode = 2``."""
    rows = np.asarray(rows)
    if rows.shape[0] == 0:
        return rows.copy()
    q, scale_x, _ = int8_comm_quant(rows)
    return int8_comm_dequant(q, scale_x, rows.dtype)


__all__ = [
    "BF16", "FP16", "FP32", "INV_127", "CANONICAL_NAN_BITS", "canonical_nan", "REDUCE_GROUP", "QUANT_GROUP", "is_half_type", "widen",
    "rne_bf16", "rne_fp16", "rne_to", "rne_into", "widen_into", "raw_bits", "rne_int8", "tp_add", "reduce_sum_a3",
    "int8_comm_quant", "int8_comm_dequant", "int8_comm_roundtrip",
]
