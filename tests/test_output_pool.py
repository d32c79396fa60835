"""Fresh outputs from the stream's pool (issue 14): one block per call, reused once the caller drops every
tensor of it. Reuse must never hand out memory a live result still uses, must zero-fill exactly as a fresh
allocation does, must follow stream order with ``sync=False``, and ``release_cached`` (or ``ACLNN_PY_POOL_MB=0``)
leaves no simulator object alive."""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import aclnn_py
from aclnn_py.demos.common import random_bf16
from aclnn_py.errors import AclnnPyError
from aclnn_py.runtime import pool as pool_mod
from aclnn_py.runtime.pool import ALIGN, BlockLayout, OutputPool
from aclnn_py.runtime.tensor import DeviceTensor

from conftest import live_objects

EP, BS, H, K, M = 2, 8, 1024, 2, 4
TRANSIENT = ("buffer", "tensor", "executor")


def _transient(lib) -> dict:
    return {k: v for k, v in live_objects(lib).items() if k in TRANSIENT}


def _routing(to_rank: int) -> np.ndarray:
    """Every token to both experts of rank ``to_rank`` (2 experts per rank)."""
    return np.tile(np.array([2 * to_rank, 2 * to_rank + 1], np.int32), (BS, 1))


def _dispatch(ctx, seed: int, to_rank: int, **kw):
    x = random_bf16(np.random.default_rng(seed + ctx.rank), (BS, H))
    return aclnn_py.moe_distribute_dispatch_v3(x, _routing(to_rank), group_ep=ctx.group("ep"), ep_world_size=EP,
                                               ep_rank_id=ctx.ep_rank, moe_expert_num=M, **kw)


def _host(result) -> list:
    return [np.asarray(t).view(np.uint8).copy() for t in result]


def _free(result) -> None:
    for t in result:
        t.free()


def _reuse_rank(ctx):
    """Rank 0 first receives every row, then none: a reused block must read as a fresh one."""
    first = _dispatch(ctx, 1, to_rank=0)
    first_ptrs, first_bytes = [t.ptr for t in first], _host(first)
    second = _dispatch(ctx, 2, to_rank=1)                 # ``first`` is alive: a new block
    overlap = set(first_ptrs) & {t.ptr for t in second}
    unchanged = all(np.array_equal(a, b) for a, b in zip(_host(first), first_bytes))
    _free(first)
    third = _dispatch(ctx, 2, to_rank=1)                  # ``first``'s block, taken again
    facts = {"overlap": overlap, "unchanged": unchanged, "reused": [t.ptr for t in third] == first_ptrs,
             "second": _host(second), "third": _host(third)}
    _free(second)
    _free(third)
    return facts


def test_reuse_never_aliases_a_live_result_and_zero_fills_like_a_fresh_output(sim):
    with aclnn_py.World.ep_tp(EP, backend="device") as w:
        got = w.run(_reuse_rank)
        w.release_cached()
        assert _transient(sim) == {}
    with aclnn_py.World.ep_tp(EP, backend="reference") as w:
        ref = w.run(lambda ctx: _host(_dispatch(ctx, 2, to_rank=1)))
    for rank, facts in enumerate(got):
        assert facts["overlap"] == set() and facts["unchanged"] and facts["reused"], rank
        for a, b, r in zip(facts["second"], facts["third"], ref[rank]):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(b, r)
    assert not got[0]["third"][0].any()                   # rank 0 received nothing: all of expand_x is zero


def _async_rank(ctx):
    """Results dropped while their operator may still be queued: the next call's zero-fill and operator
    come after it on the stream."""
    outs = []
    for i in range(6):
        r = _dispatch(ctx, 10 + i, to_rank=i % 2, sync=False)
        if i % 2:
            _free(r)            # dropped before anything waited for it
        else:
            outs.append(r)
    ctx.stream.synchronize()
    return [_host(r) for r in outs]


def _sync_rank(ctx):
    return [_host(_dispatch(ctx, 10 + i, to_rank=0)) for i in (0, 2, 4)]


def test_sync_false_drops_follow_stream_order(sim):
    with aclnn_py.World.ep_tp(EP, backend="device") as w:
        got = w.run(_async_rank)
        want = w.run(_sync_rank)
    for g, r in zip(got, want):
        for a, b in zip(g, r):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
    assert _transient(sim) == {}


def _count_rank(ctx):
    _free(_dispatch(ctx, 3, to_rank=0))
    return ctx.stream.pool is not None and ctx.stream.pool.idle_bytes


def test_pool_off_keeps_nothing(sim, monkeypatch):
    monkeypatch.setenv(pool_mod.POOL_ENV, "0")
    with aclnn_py.World.ep_tp(EP, backend="device") as w:
        assert w.run(_count_rank) == [0, 0]
        assert _transient(sim) == {}


def test_pool_keeps_dropped_blocks_until_release_cached(sim):
    with aclnn_py.World.ep_tp(EP, backend="device") as w:
        idle = w.run(_count_rank)
        assert all(n > 0 for n in idle)
        assert _transient(sim).get("buffer", 0) >= EP      # one block and one workspace per rank kept
        w.release_cached()
        assert _transient(sim) == {}
        assert w.run(_count_rank) == idle                     # and the next call works as before


def _results_out(ctx):
    return _dispatch(ctx, 4, to_rank=1)


def test_results_dropped_on_another_thread_go_back_to_their_pool(sim):
    with aclnn_py.World.ep_tp(EP, backend="device") as w:
        results = w.run(_results_out)
        dropped = threading.Thread(target=results.clear)
        dropped.start()
        dropped.join()
        gc.collect()
        assert w.run(lambda ctx: ctx.stream.pool.idle_bytes > 0) == [True, True]
        w.release_cached()
        assert _transient(sim) == {}


def test_results_outliving_their_world_are_released(sim):
    with aclnn_py.World.ep_tp(EP, backend="device") as w:
        results = w.run(_results_out)
    del results
    gc.collect()
    assert _transient(sim) == {}


def _failing_rank(ctx):
    ids = DeviceTensor.from_numpy(np.full((BS, K), 7, np.int32))     # out of range: the kernel refuses them
    try:
        aclnn_py.moe_distribute_dispatch_v3(random_bf16(np.random.default_rng(0), (BS, H)), ids,
                                            group_ep=ctx.group("ep"), ep_world_size=EP, ep_rank_id=ctx.ep_rank,
                                            moe_expert_num=M)
    finally:
        ids.free()


def test_a_failing_call_returns_its_block(sim):
    with aclnn_py.World.ep_tp(EP, backend="device") as w:
        with pytest.raises(AclnnPyError):
            w.run(_failing_rank)
        gc.collect()
        w.release_cached()
        assert _transient(sim) == {}


# ---- the pool alone --------------------------------------------------------------------------------------
def test_layout_aligns_every_output():
    layout = BlockLayout.of([((3, 5), np.float32, 0), ((0,), np.int32, 3), ((1,), np.int8, 2), ((700,), np.int8, 2)])
    offsets = [s.offset for s in layout.slots]
    assert offsets == [0, ALIGN, 2 * ALIGN, 3 * ALIGN] and all(o % ALIGN == 0 for o in offsets)
    assert [s.nbytes for s in layout.slots] == [60, 0, 1, 700] and layout.nbytes == 5 * ALIGN
    assert BlockLayout.of([]).nbytes == ALIGN and hash(layout) == hash(BlockLayout.of(
        [((3, 5), np.float32, 0), ((0,), np.int32, 3), ((1,), np.int8, 2), ((700,), np.int8, 2)]))


class _FakeBlock:
    def __init__(self, layout):
        self.layout, self.released = layout, 0

    def release(self):
        self.released += 1


def test_pool_is_bounded_per_layout_and_in_bytes(monkeypatch):
    small = BlockLayout.of([((16,), np.int8, 2)])
    big = BlockLayout.of([((3 << 20,), np.int8, 2)])
    p = OutputPool()
    p._limit = pool_mod.pool_limit_bytes()               # as a take() would have read it
    blocks = [_FakeBlock(small) for _ in range(pool_mod.SPARES_PER_LAYOUT + 1)]
    kept = [p.give_back(b) for b in blocks]
    assert kept == [True] * pool_mod.SPARES_PER_LAYOUT + [False]
    monkeypatch.setenv(pool_mod.POOL_ENV, "2")
    p.take(None, small)                                   # each take reads the limit
    p.give_back(blocks[1])
    assert not p.give_back(_FakeBlock(big))              # 3 MiB idle would exceed 2 MiB
    assert p.take(None, small) is blocks[1] and p.idle_bytes == small.nbytes
    assert p.release_idle() == 1 and blocks[0].released == 1 and p.idle_bytes == 0
    p.close()
    assert not p.give_back(blocks[1])                    # closed: the caller releases it


@pytest.mark.parametrize("raw, mb", [("", pool_mod.DEFAULT_POOL_MB), ("0", 0), ("-3", 0), ("12", 12), ("x", None)])
def test_pool_limit_env(monkeypatch, raw, mb):
    monkeypatch.setenv(pool_mod.POOL_ENV, raw)
    if mb is None:
        with pytest.raises(ValueError, match=pool_mod.POOL_ENV):
            pool_mod.pool_limit_bytes()
    else:
        assert pool_mod.pool_limit_bytes() == mb << 20


# ---- the GIL held across quick C calls -----------------------------------------------------------------
class _Counting:
    """Counts, per thread, the calls made through the GIL-holding bindings (every operator's two phases and
    ``aclrtMemsetAsync``)."""

    def __init__(self, lib) -> None:
        from aclnn_py import catalog
        self.lib, self.counts, self.lock = lib, {}, threading.Lock()
        self.ops = [lib.op(name) for name in catalog.OPS if lib.exports(name)]

    def _wrap(self, fn):
        def counted(*a):
            with self.lock:
                name = threading.current_thread().name
                self.counts[name] = self.counts.get(name, 0) + 1
            return fn(*a)
        return counted

    def count(self) -> int:
        return self.counts.get(threading.current_thread().name, 0)

    def __enter__(self) -> "_Counting":
        self.saved = ([b.held for b in self.ops], self.lib.held.aclrtMemsetAsync)
        for b in self.ops:
            b.held = tuple(self._wrap(f) for f in b.held)
        self.lib.held.aclrtMemsetAsync = self._wrap(self.saved[1])
        return self

    def __exit__(self, *exc) -> None:
        for b, held in zip(self.ops, self.saved[0]):
            b.held = held
        self.lib.held.aclrtMemsetAsync = self.saved[1]


def _held_calls(ctx, counting: _Counting):
    """Per call, how many C functions it ran holding the GIL: three synchronous calls, one with sync=False,
    one synchronous before and one after the stream is synchronised."""
    seen = []
    for i, sync in enumerate([True, True, True, False, True, None, True]):
        if sync is None:
            ctx.stream.synchronize()
            continue
        before = counting.count()
        _free(_dispatch(ctx, 5, to_rank=ctx.rank, sync=sync))
        seen.append(counting.count() - before)
    return seen


@pytest.mark.parametrize("hold_env, want", [(None, [0, 3, 3, 0, 0, 3]), ("0", [0] * 6)])
def test_quick_calls_hold_the_gil_once_a_signature_has_completed_on_the_stream(sim, monkeypatch, hold_env, want):
    """The first call of a signature releases the GIL at every C call (it may set up communicator resources
    with the peers); later synchronous ones queue the zero-fill and run both phases holding it (3 calls); a
    call with sync=False, and the calls after it until the stream is synchronised, release it again;
    ``ACLNN_PY_HOLD_GIL=0`` never holds it."""
    from aclnn_py.runtime.device import initialised_library
    if hold_env is not None:
        monkeypatch.setenv("ACLNN_PY_HOLD_GIL", hold_env)
    with aclnn_py.World.ep_tp(EP, backend="device") as w:
        with _Counting(initialised_library()) as counting:
            got = w.run(_held_calls, counting)
        w.release_cached()
        assert _transient(sim) == {}
    assert got == [want] * EP
