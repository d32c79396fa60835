"""The reference's fast paths (issue 14): bf16 widening and rounding by bits, the combine window and token
blocks, the recycled-memory pool. Each against a plain formulation kept here, bit for bit.
"""
from __future__ import annotations

import threading

import ml_dtypes
import numpy as np
import pytest

from aclnn_py.demos.common import distinct_ids, routing_weights
from aclnn_py.reference import moe_distribute_combine_v3, moe_distribute_dispatch_v3
from aclnn_py.reference import numerics as nm
from aclnn_py.reference import pool

BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.float32
needs_pool = pytest.mark.skipif(not pool._SUPPORTED, reason="the pool needs Linux mmap/madvise")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize])


def _old_round(x: np.ndarray, dtype) -> np.ndarray:
    """The cast the bit path replaces: numpy / ml_dtypes RNE, then canonical NaN."""
    with np.errstate(all="ignore"):
        return nm.canonical_nan(np.asarray(x, F32).astype(dtype))


# ---- numerics ---------------------------------------------------------------------------------------
def _every_bf16_neighbourhood() -> np.ndarray:
    """float32 bit patterns around every bf16 value: each upper half with the rounding-relevant lower halves
    (exact, just below / at / above the tie, largest), plus a ragged tail so the chunk loop has a partial step."""
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    bits = (hi[:, None] | lows[None, :]).reshape(-1)
    return np.concatenate([bits, bits[:12345]]).view(F32)


def test_rne_into_bf16_by_bits_equals_the_cast_for_every_bf16_neighbourhood():
    x = _every_bf16_neighbourhood()
    assert x.size % nm._RNE_CHUNK, "the sample must end in a partial chunk"
    got = nm.rne_into(x, np.empty(x.shape, BF16))
    np.testing.assert_array_equal(_bits(got), _bits(_old_round(x, BF16)))
    np.testing.assert_array_equal(_bits(nm.rne_bf16(x)), _bits(got))


@pytest.mark.parametrize("dtype", [BF16, np.dtype(np.float16), np.dtype(F32)])
def test_rne_into_strided_input_and_other_dtypes_equal_the_cast(dtype):
    x = _every_bf16_neighbourhood()[:200000].reshape(400, 500)[:, ::2]      # not contiguous: the cast path
    np.testing.assert_array_equal(_bits(nm.rne_into(x, np.empty(x.shape, dtype))), _bits(_old_round(x, dtype)))


def test_widen_into_equals_the_cast_for_every_bf16_and_fp16():
    for dt, uint in ((BF16, np.uint16), (np.dtype(np.float16), np.uint16)):
        x = np.arange(1 << 16, dtype=np.uint32).astype(uint).view(dt).reshape(256, 256)
        got = nm.widen_into(x, np.empty(x.shape, F32))
        want = x.astype(F32)
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan)
        np.testing.assert_array_equal(_bits(got)[~nan], _bits(want)[~nan])


# ---- combine: the window, token blocks and rounding against a per-token loop --------------------------
def _specials(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Random values with NaN, +-inf, +-0, subnormals and near-overflow values sprinkled in."""
    x = (rng.standard_normal(shape) * 4).astype(F32)
    big = np.finfo(dtype).max if dtype != BF16 else F32(3e38)
    tiny = np.finfo(dtype).smallest_subnormal if dtype != BF16 else F32(1e-40)
    picks = [np.nan, np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, big, -big]
    where = rng.random(shape) < 0.02
    x[where] = rng.choice(np.array(picks, F32), size=int(where.sum()))
    with np.errstate(all="ignore"):
        return x.astype(dtype)


def _loop_combine(expand_x, assist, recv_counts, weights):
    """CombineV3 x per rank the plain way: for each token, ``acc = fp32(acc + fp32(f32(row) * w))`` over
    ascending k from +0, then one rounding (the casts the fast path replaces)."""
    ep = len(expand_x)
    bs, k = weights[0].shape
    got = [dict() for _ in range(ep)]
    for r in range(ep):
        for i in range(int(recv_counts[r][-1])):
            src, t, kk = (int(v) for v in assist[r][3 * i:3 * i + 3])
            got[src][(t, kk)] = expand_x[r][i]
    outs = []
    with np.errstate(all="ignore"):
        for d in range(ep):
            acc = np.zeros((bs, expand_x[0].shape[1]), F32)
            for t in range(bs):
                for kk in range(k):
                    acc[t] = acc[t] + got[d][(t, kk)].astype(F32) * weights[d][t, kk]
            outs.append(_old_round(acc, expand_x[0].dtype))
    return outs


@pytest.mark.parametrize("dtype", [BF16, np.dtype(np.float16)])
@pytest.mark.parametrize("ep,bs,h", [(2, 37, 4096), (4, 5, 1032)])
def test_combine_equals_the_per_token_loop_with_special_values(dtype, ep, bs, h):
    """bs 37 is not a multiple of the 16-token block; 37 * 4096 floats end in a partial rounding chunk; at
    H 4096 a sender's ~150 rows to one rank cross the 128-row gather step of the window fill."""
    rng = np.random.default_rng(ep * 100 + bs)
    k, experts = 8, 16
    xs = [_specials(rng, (bs, h), dtype) for _ in range(ep)]
    ids = [distinct_ids(rng, bs, k, np.arange(experts)) for _ in range(ep)]
    w = [routing_weights(rng, bs, k) for _ in range(ep)]
    w[0][0, 0] = -0.5                      # a negative weight: -0 products
    d = moe_distribute_dispatch_v3(xs, ids, ep_world_size=ep, moe_expert_num=experts)
    args = ([o.expand_x for o in d], ids, [o.assist_info_for_combine for o in d], [o.ep_recv_counts for o in d], w)
    want = _loop_combine(args[0], args[2], args[3], w)
    for _ in range(2):                     # the second call runs on recycled window / output memory
        got = moe_distribute_combine_v3(*args, ep_world_size=ep, moe_expert_num=experts,
                                        tp_send_counts=[o.tp_recv_counts for o in d])
        for g in range(ep):
            np.testing.assert_array_equal(_bits(got[g]), _bits(want[g]), err_msg=f"rank {g}")


def test_combine_window_slots_that_receive_nothing_read_zero_not_the_previous_ranks_rows():
    """The window is shared by the ranks of a call (and recycled across calls): rank 1's zero-expert slots
    receive no row, and must not see rank 0's inf rows left there (inf * weight 0 would be NaN)."""
    rng = np.random.default_rng(5)
    ep, bs, h, k, experts = 2, 16, 1024, 8, 16
    xs = [np.full((bs, h), np.inf, BF16), np.ones((bs, h), BF16)]
    ids = [distinct_ids(rng, bs, k, np.arange(experts)) for _ in range(ep)]
    ids[1][:, 0] = experts                                   # the zero expert: slot 0 of rank 1 receives nothing
    ids[1][:, 1:] = distinct_ids(rng, bs, k - 1, np.arange(experts))
    w = [routing_weights(rng, bs, k) for _ in range(ep)]
    attrs = dict(ep_world_size=ep, moe_expert_num=experts, zero_expert_num=1)
    d = moe_distribute_dispatch_v3(xs, ids, **attrs)
    x = moe_distribute_combine_v3([o.expand_x for o in d], ids, [o.assist_info_for_combine for o in d],
                                  [o.ep_recv_counts for o in d], w, tp_send_counts=[o.tp_recv_counts for o in d],
                                  **attrs)
    want = _old_round(_loop_sum(w[1][:, 1:]), BF16)       # rows of ones: each term is the weight itself
    np.testing.assert_array_equal(_bits(x[1]), _bits(np.broadcast_to(want, (bs, h))))


def _loop_sum(w: np.ndarray) -> np.ndarray:
    """Per row, fp32 ``acc = acc + 1.0 * w`` over the columns in order, from +0: (rows, 1)."""
    acc = np.zeros(w.shape[0], F32)
    for j in range(w.shape[1]):
        acc = acc + w[:, j].astype(F32)
    return acc[:, None]


# ---- dispatch quant_mode 2 against a per-row quantisation ---------------------------------------------
def _quant_row(row: np.ndarray):
    """One row's dynamic int8 quantisation in float32, one operation at a time (dispatch-v3.md §6): a NaN
    anywhere, amax 0 or a scale that overflows gives int8 0; inf * 0 (amax inf) gives int8 0."""
    xf = row.astype(F32)
    with np.errstate(all="ignore"):
        amax = np.abs(np.max(np.abs(xf)))
        q = F32(127.0) / amax
        scale = nm.canonical_nan(np.array([F32(1.0) / q], F32))[0]
        if not np.isfinite(q):
            return np.zeros(row.shape, np.int8), scale
        v = np.rint(xf * q)
        v[np.isnan(v)] = 0
        return v.astype(np.int8), scale


def test_dispatch_quant_equals_the_per_row_formula_with_special_values():
    rng = np.random.default_rng(11)
    ep, bs, h, k, experts = 2, 40, 1024, 8, 16
    xs = [(rng.standard_normal((bs, h)) * 4).astype(BF16) for _ in range(ep)]
    xs[0][0, 7] = np.nan                                     # one NaN: the whole row is 0
    xs[0][1] = 0                                             # amax 0
    xs[0][2, :5] = [np.inf, -np.inf, 1, 2, 3]                # amax inf: q 0, inf * 0
    xs[0][3, ::3] = -0.0                                     # signed zeros among ordinary values
    xs[1][3] = F32(1e-40)                                    # 127 / subnormal amax overflows
    xs[1][4, :] = F32(3e38)                                  # near the top of the range
    xs[1][5, 1::2] = F32(1e-39)                              # subnormals beside normal values
    ids = [distinct_ids(rng, bs, k, np.arange(experts)) for _ in range(ep)]
    d = moe_distribute_dispatch_v3(xs, ids, quant_mode=2, ep_world_size=ep, moe_expert_num=experts)
    for o in d:
        for i in range(int(o.ep_recv_counts[-1])):
            src, tok, _ = (int(v) for v in o.assist_info_for_combine[3 * i:3 * i + 3])
            q, scale = _quant_row(xs[src][tok])
            np.testing.assert_array_equal(o.expand_x[i], q)
            np.testing.assert_array_equal(_bits(o.dynamic_scales[i:i + 1]), _bits(np.array([scale], F32)))


# ---- dispatch on recycled output memory ---------------------------------------------------------------
@needs_pool
def test_dispatch_on_recycled_memory_leaves_unwritten_capacity_zero():
    """A call that writes fewer rows than the previous user of the recycled memory: every row past what it
    writes reads 0 again (expand_x is capacity-sized, 8 MiB here: pooled)."""
    rng = np.random.default_rng(3)
    ep, bs, h, k, experts = 2, 64, 4096, 8, 16
    xs = [np.full((bs, h), 7, BF16) for _ in range(ep)]
    ids = [distinct_ids(rng, bs, k, np.arange(experts)) for _ in range(ep)]
    first = moe_distribute_dispatch_v3(xs, ids, ep_world_size=ep, moe_expert_num=experts)
    for o in first:
        o.expand_x[...] = 9                # the previous user scribbles over all of it
        o.assist_info_for_combine[...] = -1
    addresses = {o.expand_x.ctypes.data for o in first}
    del first
    masks = [np.arange(bs) < 3 for _ in range(ep)]
    second = moe_distribute_dispatch_v3(xs, ids, x_active_mask=masks, ep_world_size=ep, moe_expert_num=experts)
    assert addresses & {o.expand_x.ctypes.data for o in second}, "the pool did not recycle (test would be void)"
    for o in second:
        n = int(o.ep_recv_counts[-1])
        np.testing.assert_array_equal(o.expand_x[:n], np.full((n, h), 7, BF16))
        np.testing.assert_array_equal(_bits(o.expand_x[n:]), 0)
        np.testing.assert_array_equal(o.assist_info_for_combine[3 * n:], 0)


# ---- the pool ---------------------------------------------------------------------------------------
MB = 1 << 20


@needs_pool
def test_pool_recycles_dropped_memory_and_clears_past_what_the_caller_overwrites():
    p = pool.BufferPool()
    a = p.array((MB,), np.uint8, 0)
    a[...] = 0xFF
    addr = a.ctypes.data
    del a
    b = p.array((MB // 4, 2), np.uint16, 1000)        # same size class, another shape and dtype
    assert b.ctypes.data == addr
    np.testing.assert_array_equal(b.reshape(-1)[1000:], 0)
    assert b.flags.writeable and b.flags.c_contiguous and b.shape == (MB // 4, 2) and b.dtype == np.uint16


@needs_pool
def test_pool_never_hands_out_memory_a_live_array_or_view_uses():
    p = pool.BufferPool()
    a = p.array((2 * MB,), np.uint8, 0)
    b = p.array((2 * MB,), np.uint8, 0)
    assert not np.shares_memory(a, b)
    a[...] = 5
    view = a[10:20]
    del a                                              # only the view is left
    c = p.array((2 * MB,), np.uint8, 0)
    assert not np.shares_memory(c, view)
    c[...] = 6
    np.testing.assert_array_equal(view, 5)
    del view
    d = p.array((2 * MB,), np.uint8, 0)                # now that memory may come back, zeroed
    np.testing.assert_array_equal(d, 0)


@needs_pool
def test_pool_is_bounded_by_the_env_limit(monkeypatch):
    monkeypatch.setenv(pool.ENV, "3")
    p = pool.BufferPool()
    arrays = [p.array((MB + i * 4096,), np.uint8, MB + i * 4096) for i in range(6)]
    for a in arrays:
        a[...] = 1
    del arrays, a
    assert p.kept_bytes() <= 3 * MB
    assert 1 <= p.free_mappings() <= 3


@pytest.mark.parametrize("value", ["0", "off"])
def test_pool_off_gives_plain_zeros(monkeypatch, value):
    monkeypatch.setenv(pool.ENV, value)
    a = pool.BufferPool().array((2 * MB,), np.uint8, 100)
    assert a.flags.owndata
    np.testing.assert_array_equal(a, 0)


@needs_pool
def test_pool_threads_never_share_live_memory():
    """World threads allocate, fill and drop concurrently: a live array keeps its contents, and recycled memory
    reads 0 past what its new owner overwrites."""
    p = pool.BufferPool()
    errors = []

    def work(tid: int) -> None:
        rng = np.random.default_rng(tid)
        live = []
        try:
            for i in range(60):
                n = int(rng.choice([MB, MB + 8192, 2 * MB]))
                over = int(rng.integers(0, n))
                a = p.array((n,), np.uint8, over)
                if a[over:].any():
                    errors.append(f"thread {tid}: recycled memory not zero past {over}")
                a[...] = tid + 1
                live.append(a)
                if len(live) > 3:
                    old = live.pop(int(rng.integers(0, len(live))))
                    if not (old == tid + 1).all():
                        errors.append(f"thread {tid}: a live array was overwritten")
                    del old
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@needs_pool
def test_pool_falls_back_to_numpy_when_no_mapping_can_be_made(monkeypatch):
    def refuse(size):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(pool, "_Mapping", refuse)
    a = pool.BufferPool().array((2 * MB,), np.uint8, 10)
    assert a.flags.owndata
    np.testing.assert_array_equal(a, 0)
