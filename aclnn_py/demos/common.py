"""Random inputs and bit-exact comparison shared by the demos, the smoke suite and the tests."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from ..dtypes import bfloat16


def random_bf16(rng: np.random.Generator, shape: Sequence[int], scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape, np.float32) * np.float32(scale)).astype(bfloat16)


def distinct_ids(rng: np.random.Generator, bs: int, k: int, candidates: np.ndarray) -> np.ndarray:
    """(bs, k) int32: for each token, k distinct ids drawn from ``candidates`` (vectorised)."""
    keys = rng.random((bs, len(candidates)))
    return candidates[np.argsort(keys, axis=1)[:, :k]].astype(np.int32)


def routing_weights(rng: np.random.Generator, bs: int, k: int) -> np.ndarray:
    """(bs, k) fp32 softmax weights, as a router would produce."""
    logits = rng.standard_normal((bs, k)).astype(np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def bits(a: np.ndarray) -> np.ndarray:
    """View a bf16/fp16/fp32 array as unsigned integers for bit-for-bit comparison."""
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def ordered(a: np.ndarray) -> np.ndarray:
    """Floats as integers whose difference counts ulps (sign-magnitude folded to two's complement)."""
    b = bits(a).astype(np.int64)
    top = 1 << (8 * a.dtype.itemsize - 1)
    return np.where(b >= top, top - b, b)


def compare(name: str, got: np.ndarray, want: np.ndarray) -> Dict[str, object]:
    """Element-for-element comparison: mismatching count, max abs difference and (floats) max ulps.

    Bits are compared over the whole arrays; the (costly) float differences are taken only over the
    elements that differ, so comparing production-size outputs stays cheap.
    """
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        return {"name": name, "ok": False, "why": f"{got.shape}/{got.dtype} vs {want.shape}/{want.dtype}"}
    differs = bits(got) != bits(want)
    mismatch = int(np.count_nonzero(differs))
    if mismatch == 0:
        return {"name": name, "ok": True, "mismatch": 0, "max_abs": 0.0, "max_ulp": 0}
    g, w = got[differs], want[differs]
    diff = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64))))
    is_float = got.dtype.kind == "f" or got.dtype == bfloat16
    ulps = int(np.max(np.abs(ordered(g) - ordered(w)))) if is_float else 0
    return {"name": name, "ok": False, "mismatch": mismatch, "max_abs": diff, "max_ulp": ulps}


def written_rows(rows: np.ndarray) -> int:
    """1 + the index of the last row of a 2-D array with a non-zero bit (0 for an all-zero array)."""
    a = np.asarray(rows)
    if a.size == 0:
        return 0
    nonzero = np.flatnonzero(bits(a).reshape(a.shape[0], -1).any(axis=1))
    return int(nonzero[-1]) + 1 if nonzero.size else 0
