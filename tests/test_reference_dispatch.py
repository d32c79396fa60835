"""The numpy reference of aclnnMoeDistributeDispatchV3 (aclnn_py.reference.moe_distribute_dispatch_v3).

Every worked example of ../shared/spec/dispatch-v3.md §14.1-14.7 bit for bit, the §6 quantisation
numbers, and property tests against a deliberately naive loop model of §3 over random worlds.
Rows carry recognisable constants: row t of global rank g is filled with ``g*16 + t + 1`` (H = 1024).
"""
from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aclnn_py.errors import AclnnError
from aclnn_py.layout import MoeLayout, dispatch_output_specs
from aclnn_py.reference import moe_distribute_dispatch_v3 as dispatch
from aclnn_py.reference.dispatch import dynamic_quant

BF16 = np.dtype(ml_dtypes.bfloat16)
H = 1024


@pytest.fixture(autouse=True)
def _default_hccl_buffsize(monkeypatch):
    monkeypatch.delenv("HCCL_BUFFSIZE", raising=False)


def label_x(g: int, bs: int, h: int = H, dtype=BF16) -> np.ndarray:
    """Row t of rank g = g*16 + t + 1 everywhere (exact in bf16/fp16 for the sizes used)."""
    return np.repeat((g * 16 + np.arange(bs, dtype=np.float32) + 1)[:, None], h, axis=1).astype(dtype)


def labels(out, n: int):
    """The row constants of expand_x[:n] as ints."""
    return [int(v) for v in out.expand_x[:n, 0].astype(np.float32)]


def X(g: int, t: int) -> int:
    return g * 16 + t + 1


def i32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int32)


def triples(out, n: int):
    return [tuple(r) for r in out.assist_info_for_combine[:3 * n].reshape(-1, 3).tolist()]


def check_rank(out, rows, trip, erc, etn, *, nb=None, n_rows=None):
    """One rank's written parts, and zeros everywhere else."""
    n_own = len(trip)
    n = len(rows) if n_rows is None else n_rows
    assert labels(out, n) == rows
    assert triples(out, n_own) == trip
    nb = len(erc) if nb is None else nb
    assert out.ep_recv_counts[:len(erc)].tolist() == erc
    assert out.expert_token_nums.tolist()[:len(etn)] == etn
    # untouched regions are zero
    assert not out.expand_x[n:].view(np.uint8).any()
    assert not out.assist_info_for_combine[3 * n_own:].any()
    assert not out.ep_recv_counts[nb:].any()
    assert not out.expert_token_nums[len(etn):].any()
    assert not out.expand_scales.any()
    assert not out.dynamic_scales.any()


# ----------------------------------------------------------------------------------------------
# §14.1-14.3: ep = 4, BS = 3, K = 2, M = 4
# ----------------------------------------------------------------------------------------------
IDS_14 = [[[0, 1], [2, 3], [1, 2]], [[3, 0], [0, 2], [1, 3]], [[1, 0], [3, 1], [2, 0]], [[2, 3], [0, 1], [3, 2]]]


def run_14(**kw):
    return dispatch([label_x(r, 3) for r in range(4)], [i32(i) for i in IDS_14], ep_world_size=4,
                    moe_expert_num=4, **kw)


def test_14_1_basic_shapes_and_rows():
    res = run_14()
    exp = {
        0: ([X(0, 0), X(1, 0), X(1, 1), X(2, 0), X(2, 2), X(3, 1)],
            [(0, 0, 0), (1, 0, 1), (1, 1, 0), (2, 0, 1), (2, 2, 1), (3, 1, 0)], [1, 3, 5, 6]),
        1: ([X(0, 0), X(0, 2), X(1, 2), X(2, 0), X(2, 1), X(3, 1)],
            [(0, 0, 1), (0, 2, 0), (1, 2, 0), (2, 0, 0), (2, 1, 1), (3, 1, 1)], [2, 3, 5, 6]),
        2: ([X(0, 1), X(0, 2), X(1, 1), X(2, 2), X(3, 0), X(3, 2)],
            [(0, 1, 0), (0, 2, 1), (1, 1, 1), (2, 2, 0), (3, 0, 0), (3, 2, 1)], [2, 3, 4, 6]),
        3: ([X(0, 1), X(1, 0), X(1, 2), X(2, 1), X(3, 0), X(3, 2)],
            [(0, 1, 1), (1, 0, 0), (1, 2, 1), (2, 1, 0), (3, 0, 1), (3, 2, 0)], [1, 3, 4, 6]),
    }
    for r, (rows, trip, erc) in exp.items():
        o = res[r]
        assert o.expand_x.shape == (12, H) and o.expand_x.dtype == BF16
        assert o.dynamic_scales.shape == (12,) and o.dynamic_scales.dtype == np.float32
        assert o.assist_info_for_combine.shape == (1536,) and o.assist_info_for_combine.dtype == np.int32
        assert o.expert_token_nums.shape == (1,) and o.expert_token_nums.dtype == np.int64
        assert o.ep_recv_counts.shape == (4,) and o.ep_recv_counts.dtype == np.int32
        assert o.tp_recv_counts.shape == (0,) and o.tp_recv_counts.dtype == np.int32
        assert o.expand_scales.shape == (12,) and o.expand_scales.dtype == np.float32
        check_rank(o, rows, trip, erc, [6])
    assert res[0].assist_info_for_combine[:18].tolist() == [0, 0, 0, 1, 0, 1, 1, 1, 0, 2, 0, 1, 2, 2, 1, 3, 1, 0]


def test_14_1_rows_are_bit_copies():
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((3, H)).astype(np.float16) for _ in range(4)]
    xs[0][0, :4] = [np.inf, -0.0, np.nan, 6.1e-5]   # any bit pattern is copied unchanged
    res = dispatch(xs, [i32(i) for i in IDS_14], ep_world_size=4, moe_expert_num=4)
    assert res[0].expand_x.dtype == np.float16
    for o in res:
        for i, (s, t, _) in enumerate(triples(o, 6)):
            assert o.expand_x[i].view(np.uint16).tobytes() == xs[s][t].view(np.uint16).tobytes()


def test_14_2_one_dim_mask():
    m = [[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]]
    res = run_14(x_active_mask=[np.array(v, bool) for v in m])
    check_rank(res[0], [X(0, 0), X(1, 0), X(2, 0), X(2, 2)], [(0, 0, 0), (1, 0, 1), (2, 0, 1), (2, 2, 1)],
               [1, 2, 4, 4], [4])
    check_rank(res[1], [X(0, 0), X(2, 0), X(2, 1)], [(0, 0, 1), (2, 0, 0), (2, 1, 1)], [1, 1, 3, 3], [3])
    check_rank(res[2], [X(0, 1), X(2, 2)], [(0, 1, 0), (2, 2, 0)], [1, 1, 2, 2], [2])
    check_rank(res[3], [X(0, 1), X(1, 0), X(2, 1)], [(0, 1, 1), (1, 0, 0), (2, 1, 0)], [1, 2, 3, 3], [3])


def test_14_3_two_dim_mask():
    T, F = True, False
    m = [[[T, F], [F, F], [T, T]], [[T, T], [F, T], [T, F]], [[F, F], [T, T], [F, T]], [[T, T]] * 3]
    res = run_14(x_active_mask=[np.array(v, bool) for v in m])
    check_rank(res[0], [X(0, 0), X(1, 0), X(2, 2), X(3, 1)], [(0, 0, 0), (1, 0, 1), (2, 2, 1), (3, 1, 0)],
               [1, 2, 3, 4], [4])
    check_rank(res[1], [X(0, 2), X(1, 2), X(2, 1), X(3, 1)], [(0, 2, 0), (1, 2, 0), (2, 1, 1), (3, 1, 1)],
               [1, 2, 3, 4], [4])
    check_rank(res[2], [X(0, 2), X(1, 1), X(3, 0), X(3, 2)], [(0, 2, 1), (1, 1, 1), (3, 0, 0), (3, 2, 1)],
               [1, 2, 2, 4], [4])
    check_rank(res[3], [X(1, 0), X(2, 1), X(3, 0), X(3, 2)], [(1, 0, 0), (2, 1, 0), (3, 0, 1), (3, 2, 0)],
               [0, 1, 2, 4], [4])


def test_all_tokens_masked_gives_zero_counts():
    res = run_14(x_active_mask=[np.zeros(3, bool)] * 4)
    for o in res:
        check_rank(o, [], [], [0, 0, 0, 0], [0])


# ----------------------------------------------------------------------------------------------
# §14.4 shared experts, L = 2, replicas
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("etn_type", [1, 0])
def test_14_4_shared_expert_and_two_local_experts(etn_type):
    ids = [[[0, 3], [2, 1]], [[1, 0], [3, 2]], [[0, 2], [1, 3]]]
    res = dispatch([label_x(r, 2) for r in range(3)], [i32(i) for i in ids], ep_world_size=3, moe_expert_num=4,
                   shared_expert_num=1, shared_expert_rank_num=1, expert_token_nums_type=etn_type)
    assert res[0].expand_x.shape == (6, H) and res[0].expert_token_nums.shape == (1,)
    assert res[0].ep_recv_counts.shape == (3,) and res[0].assist_info_for_combine.shape == (768,)
    assert res[1].expand_x.shape == (12, H) and res[1].expert_token_nums.shape == (2,)
    assert res[1].ep_recv_counts.shape == (6,)
    check_rank(res[0], [X(0, 0), X(0, 1), X(1, 0), X(1, 1), X(2, 0), X(2, 1)],
               [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2), (2, 0, 2), (2, 1, 2)], [2, 4, 6], [6])
    etn = [3, 3] if etn_type == 1 else [3, 6]
    check_rank(res[1], [X(0, 0), X(1, 0), X(2, 0), X(0, 1), X(1, 0), X(2, 1)],
               [(0, 0, 0), (1, 0, 1), (2, 0, 0), (0, 1, 1), (1, 0, 0), (2, 1, 0)], [1, 2, 3, 4, 5, 6], etn)
    check_rank(res[2], [X(0, 1), X(1, 1), X(2, 0), X(0, 0), X(1, 1), X(2, 1)],
               [(0, 1, 0), (1, 1, 1), (2, 0, 1), (0, 0, 1), (1, 1, 0), (2, 1, 1)], [1, 2, 3, 4, 5, 6], etn)


IDS_REPL = [[[0], [1]], [[1], [1]], [[0], [0]], [[1], [0]]]


def test_14_4_shared_replicas_rpse_2():
    res = dispatch([label_x(r, 2) for r in range(4)], [i32(i) for i in IDS_REPL], ep_world_size=4,
                   moe_expert_num=2, shared_expert_num=1, shared_expert_rank_num=2)
    assert res[0].expand_x.shape == (4, H)          # maxBs * ceil(ep / rpse) = 2 * 2
    check_rank(res[0], [X(0, 0), X(0, 1), X(2, 0), X(2, 1)], [(0, 0, 1), (0, 1, 1), (2, 0, 1), (2, 1, 1)],
               [2, 2, 4, 4], [4])
    check_rank(res[1], [X(1, 0), X(1, 1), X(3, 0), X(3, 1)], [(1, 0, 1), (1, 1, 1), (3, 0, 1), (3, 1, 1)],
               [0, 2, 2, 4], [4])
    check_rank(res[2], [X(0, 0), X(2, 0), X(2, 1), X(3, 1)], [(0, 0, 0), (2, 0, 0), (2, 1, 0), (3, 1, 0)],
               [1, 1, 3, 4], [4])
    check_rank(res[3], [X(0, 1), X(1, 0), X(1, 1), X(3, 0)], [(0, 1, 0), (1, 0, 0), (1, 1, 0), (3, 0, 0)],
               [1, 3, 3, 4], [4])


def test_14_4_two_shared_experts_rpse_1_with_smooth_rows():
    xs = [label_x(r, 2) for r in range(4)]
    res = dispatch(xs, [i32(i) for i in IDS_REPL], ep_world_size=4, moe_expert_num=2,
                   shared_expert_num=2, shared_expert_rank_num=2)
    all_rows = [X(s, t) for s in range(4) for t in range(2)]
    for r, kslot in ((0, 1), (1, 2)):
        assert res[r].expand_x.shape == (8, H)
        check_rank(res[r], all_rows, [(s, t, kslot) for s in range(4) for t in range(2)],
                   [2, 4, 6, 8], [8])
    check_rank(res[2], [X(0, 0), X(2, 0), X(2, 1), X(3, 1)], [(0, 0, 0), (2, 0, 0), (2, 1, 0), (3, 1, 0)],
               [1, 1, 3, 4], [4])
    # quant mode 2: shared expert s uses smooth row s, MoE expert e smooth row S + e = 2 + e
    sm = np.random.default_rng(2).uniform(0.5, 2.0, (4, H)).astype(np.float32)
    resq = dispatch(xs, [i32(i) for i in IDS_REPL], ep_world_size=4, moe_expert_num=2, shared_expert_num=2,
                    shared_expert_rank_num=2, quant_mode=2, scales=[sm] * 4)
    for r, si in ((0, 0), (1, 1), (2, 2), (3, 3)):
        n = int(resq[r].ep_recv_counts[3])
        assert n == (8 if r < 2 else 4)
        for i, (s, t, k) in enumerate(triples(resq[r], n)):
            q, sc = dynamic_quant(xs[s][t:t + 1], sm[si:si + 1])
            assert np.array_equal(resq[r].expand_x[i], q[0]) and resq[r].dynamic_scales[i] == sc[0]


# ----------------------------------------------------------------------------------------------
# §14.5 special experts, §14.6 elastic, §14.7 TP
# ----------------------------------------------------------------------------------------------
def test_14_5_special_experts_are_not_sent():
    ids = [[[0, 4], [5, 6]], [[6, 1], [2, 3]], [[4, 5], [1, 2]], [[3, 0], [6, 4]]]
    res = dispatch([label_x(r, 2) for r in range(4)], [i32(i) for i in ids], ep_world_size=4, moe_expert_num=4,
                   zero_expert_num=1, copy_expert_num=1, const_expert_num=1)
    check_rank(res[0], [X(0, 0), X(3, 0)], [(0, 0, 0), (3, 0, 1)], [1, 1, 1, 2], [2])
    check_rank(res[1], [X(1, 0), X(2, 1)], [(1, 0, 1), (2, 1, 0)], [0, 1, 2, 2], [2])
    check_rank(res[2], [X(1, 1), X(2, 1)], [(1, 1, 0), (2, 1, 1)], [0, 1, 2, 2], [2])
    check_rank(res[3], [X(1, 1), X(3, 0)], [(1, 1, 1), (3, 0, 0)], [0, 1, 1, 2], [2])


ELASTIC_14_6 = np.array([1, 3, 0, 3, 0, 1, -1, 2, 0, 1, 3, -1], np.int32)


def test_14_6_elastic_scale_down():
    ids = {0: [[0, 1], [2, 0]], 1: [[1, 2], [0, 1]], 3: [[2, 0], [1, 2]]}
    xs = [label_x(r, 2) if r != 2 else None for r in range(4)]
    res = dispatch(xs, [i32(ids[r]) if r in ids else None for r in range(4)], ep_world_size=4, moe_expert_num=4,
                   elastic_info=ELASTIC_14_6)
    assert res[2] is None
    for r in (0, 1, 3):
        assert res[r].expand_x.shape == (8, H) and res[r].ep_recv_counts.shape == (4,)
    check_rank(res[0], [X(0, 0), X(0, 1), X(1, 1), X(3, 0)], [(0, 0, 0), (0, 1, 1), (1, 1, 0), (2, 0, 1)],
               [2, 3, 4], [4])
    check_rank(res[1], [X(0, 0), X(1, 0), X(1, 1), X(3, 1)], [(0, 0, 1), (1, 0, 0), (1, 1, 1), (2, 1, 0)],
               [1, 3, 4], [4])
    check_rank(res[3], [X(0, 1), X(1, 0), X(3, 0), X(3, 1)], [(0, 1, 0), (1, 0, 1), (2, 0, 0), (2, 1, 1)],
               [1, 2, 4], [4])


def test_14_6_removed_rank_must_be_none_and_only_then():
    ids = {0: [[0, 1], [2, 0]], 1: [[1, 2], [0, 1]], 3: [[2, 0], [1, 2]]}
    xs = [label_x(r, 2) for r in range(4)]
    eid = [i32(ids.get(r, [[0, 1], [1, 2]])) for r in range(4)]
    with pytest.raises(AclnnError) as ei:       # the removed rank calls the op
        dispatch(xs, eid, ep_world_size=4, moe_expert_num=4, elastic_info=ELASTIC_14_6)
    assert ei.value.status == 561002 and "rank 2" in str(ei.value) and "ep_rank_id" in str(ei.value)
    xs[1] = None
    eid[1] = None
    eid[2] = xs[2] = None
    with pytest.raises(AclnnError) as ei:       # a kept rank is missing
        dispatch(xs, eid, ep_world_size=4, moe_expert_num=4, elastic_info=ELASTIC_14_6)
    assert ei.value.status == 161001 and "rank 1" in str(ei.value)


def test_14_7_tp2():
    # global rank g = ep*2 + tp: A0 = g0, B0 = g1, A1 = g2, B1 = g3
    ids = {0: [[0], [1]], 2: [[1], [0]], 1: [[1], [1]], 3: [[0], [1]]}
    res = dispatch([label_x(g, 2) for g in range(4)], [i32(ids[g]) for g in range(4)], ep_world_size=2,
                   moe_expert_num=2, tp_world_size=2, group_tp="tp")
    A0, B0, A1, B1 = (lambda t, g=g: X(g, t) for g in range(4))
    for o in res:
        assert o.expand_x.shape == (8, H) and o.ep_recv_counts.shape == (4,) and o.tp_recv_counts.shape == (2,)
        assert o.dynamic_scales.shape == (8,) and o.expand_scales.shape == (4,)
    check_rank(res[0], [A0(0), A1(1), B1(0)], [(0, 0, 0), (1, 1, 0)], [1, 2, 0, 1], [3])
    check_rank(res[1], [B1(0), A0(0), A1(1)], [(1, 0, 0)], [0, 1, 1, 2], [3])
    check_rank(res[2], [A0(1), A1(0), B0(0), B0(1), B1(1)], [(0, 1, 0), (1, 0, 0)], [1, 2, 2, 3], [5])
    check_rank(res[3], [B0(0), B0(1), B1(1), A0(1), A1(0)], [(0, 0, 0), (0, 1, 0), (1, 1, 0)], [2, 3, 1, 2], [5])
    assert [o.tp_recv_counts.tolist() for o in res] == [[2, 1], [2, 1], [2, 3], [2, 3]]


def test_tp1_leaves_tp_recv_counts_untouched():
    res = run_14(tp_world_size=1)
    assert all(o.tp_recv_counts.shape == (1,) and o.tp_recv_counts[0] == 0 for o in res)
    base = run_14()
    for a, b in zip(res, base):
        assert np.array_equal(a.expand_x.view(np.uint16), b.expand_x.view(np.uint16))
        assert np.array_equal(a.assist_info_for_combine, b.assist_info_for_combine)


# ----------------------------------------------------------------------------------------------
# §6 quantisation, worked numbers
# ----------------------------------------------------------------------------------------------
def f32_bits(v) -> int:
    return int(np.float32(v).view(np.uint32))


@pytest.mark.parametrize("dtype", [BF16, np.dtype(np.float16)])
def test_quant_worked_numbers(dtype):
    x = np.array([[2.0, -1.0, 0.5, 0.375]], np.float32).astype(dtype)
    q, s = dynamic_quant(x)
    assert q.tolist() == [[127, -64, 32, 24]] and f32_bits(s[0]) == 0x3C810204
    q, s = dynamic_quant(x, np.array([[0.5, 3.0, 1.0, 2.0]], np.float32))
    assert q.tolist() == [[42, -127, 21, 32]] and f32_bits(s[0]) == 0x3CC18306


def test_quant_scale_is_one_over_q_not_amax_over_127():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4000, 64)).astype(BF16)
    _, s = dynamic_quant(x)
    amax = np.abs(x.astype(np.float32)).max(axis=1)
    exact = np.float32(1) / (np.float32(127) / amax)
    assert np.array_equal(s.view(np.uint32), exact.view(np.uint32))
    assert (s != amax / np.float32(127)).any()          # the two formulas differ for some rows


def test_quant_worked_numbers_through_the_world():
    row = np.zeros((3, H), np.float32)
    row[:, :4] = [2.0, -1.0, 0.5, 0.375]
    xs = [row.astype(BF16) for _ in range(4)]
    res = dispatch(xs, [i32(i) for i in IDS_14], ep_world_size=4, moe_expert_num=4, quant_mode=2)
    o = res[0]
    assert o.expand_x.dtype == np.int8 and o.expand_x.shape == (12, H)
    assert o.expand_x[:6, :4].tolist() == [[127, -64, 32, 24]] * 6 and not o.expand_x[:6, 4:].any()
    assert [f32_bits(v) for v in o.dynamic_scales[:6]] == [0x3C810204] * 6
    assert not o.expand_x[6:].any() and not o.dynamic_scales[6:].any()
    smooth = np.ones((4, H), np.float32)
    smooth[2, :4] = [0.5, 3.0, 1.0, 2.0]            # expert 2's smooth row (S = 0: row e)
    res = dispatch(xs, [i32(i) for i in IDS_14], ep_world_size=4, moe_expert_num=4, quant_mode=2,
                   scales=[smooth] * 4)
    assert res[2].expand_x[:6, :4].tolist() == [[42, -127, 21, 32]] * 6
    assert [f32_bits(v) for v in res[2].dynamic_scales[:6]] == [0x3CC18306] * 6
    assert res[0].expand_x[:6, :4].tolist() == [[127, -64, 32, 24]] * 6


# ----------------------------------------------------------------------------------------------
# Property tests against a naive model of §3 (loops; small worlds only)
# ----------------------------------------------------------------------------------------------
def naive(xs, ids, *, ep, m, s_attr=1, r=0, masks=None, z=0, elastic=None, etn_type=1, quant_mode=0,
          scales=None):
    """Straight transcription of dispatch-v3.md §3 for tp <= 1: returns per original rank a dict
    (rows: list of x-row bytes or (int8, scale), triples, erc, etn) of the written parts."""
    s = 0 if (r == 0 and s_attr == 1) else s_attr
    if elastic is not None and elastic[0] != 0:
        ep2, r2, m2 = int(elastic[1]), int(elastic[2]), int(elastic[3])
        to_new = {o: int(elastic[4 + o]) for o in range(ep) if elastic[4 + o] != -1}
    else:
        ep2, r2, m2 = ep, r, m
        to_new = {o: o for o in range(ep)}
    to_orig = {v: k for k, v in to_new.items()}
    l2 = m2 // (ep2 - r2)
    rpse = r2 // s if s else 0
    # blocks[d][b] = list of payloads in slot order
    blocks = {d: {} for d in range(ep2)}
    for src in range(ep2):
        o = to_orig[src]
        bs, k = ids[o].shape
        mk = None if masks is None else masks[o]
        if mk is None:
            act, pairs = list(range(bs)), [(t, kk) for t in range(bs) for kk in range(k)]
        elif mk.ndim == 1:
            n = int(mk.sum())
            act, pairs = list(range(n)), [(t, kk) for t in range(n) for kk in range(k)]
        else:
            act = [t for t in range(bs) if mk[t].any()]
            pairs = [(t, kk) for t in range(bs) for kk in range(k) if mk[t, kk]]
        for t, kk in pairs:
            e = int(ids[o][t, kk])
            if z > 0 and e >= m2:
                continue
            d, j = e // l2 + r2, e % l2
            blocks[d].setdefault(j * ep2 + src, []).append((o, t, (src, t, kk), s + e))
        if r2 > 0:
            for t in act:
                for sh in range(s):
                    d = src % rpse + sh * rpse
                    blocks[d].setdefault(src, []).append((o, t, (src, t, k + sh), sh))
    res = {}
    for d in range(ep2):
        nb = ep2 if d < r2 else ep2 * l2
        rows, trip, erc, tot = [], [], [], 0
        per_j = []
        for b in range(nb):
            items = blocks[d].get(b, [])
            for o, t, tr, si in items:
                if quant_mode == 0:
                    rows.append(xs[o][t].view(np.uint8).tobytes())
                else:
                    sm = None if scales is None else scales[o][si:si + 1]
                    q, sc = dynamic_quant(xs[o][t:t + 1], sm)
                    rows.append((q.tobytes(), sc.tobytes()))
                trip.append(tr)
            tot += len(items)
            erc.append(tot)
        if d < r2 or l2 == 1:
            etn = [tot]
        else:
            cum = [erc[j * ep2 + ep2 - 1] for j in range(l2)]
            etn = cum if etn_type == 0 else [c - p for c, p in zip(cum, [0] + cum[:-1])]
        res[to_orig[d]] = dict(rows=rows, triples=trip, erc=erc, etn=etn)
    return res


def compare(res, exp, quant_mode=0):
    for o, e in exp.items():
        out = res[o]
        n = len(e["rows"])
        if quant_mode == 0:
            assert [out.expand_x[i].view(np.uint8).tobytes() for i in range(n)] == e["rows"]
        else:
            got = [(out.expand_x[i].tobytes(), out.dynamic_scales[i:i + 1].tobytes()) for i in range(n)]
            assert got == e["rows"]
            assert not out.dynamic_scales[n:].any()
        assert triples(out, n) == e["triples"]
        assert out.ep_recv_counts[:len(e["erc"])].tolist() == e["erc"]
        assert out.expert_token_nums[:len(e["etn"])].tolist() == e["etn"]
        assert not out.expand_x[n:].view(np.uint8).any()
        assert not out.assist_info_for_combine[3 * n:].any()
        assert not out.ep_recv_counts[len(e["erc"]):].any()
        assert not out.expert_token_nums[len(e["etn"]):].any()


def random_world(rng, *, ep, m, k, bs_list, h=H, dtype=BF16, z=0, mask_kind=None, ids_range=None):
    xs = [rng.standard_normal((bs, h)).astype(dtype) for bs in bs_list]
    hi = ids_range if ids_range is not None else m + z
    ids = [np.stack([rng.permutation(hi)[:k] for _ in range(bs)]).astype(np.int32).reshape(bs, k)
           for bs in bs_list]
    masks = None
    if mask_kind == 1:
        masks = [np.arange(bs) < rng.integers(0, bs + 1) for bs in bs_list]
    elif mask_kind == 2:
        masks = [rng.random((bs, k)) < 0.6 for bs in bs_list]
    return xs, ids, masks


def invariants(res, xs, ids, masks, *, ep, m, r, s, z):
    """Conservation and exactly-once delivery to the right rank, independent of the naive model."""
    lnum = m // (ep - r)
    rpse = r // s if s else 0
    delivered = {}
    total_rows = 0
    for o, out in enumerate(res):
        nb = ep if o < r else ep * lnum
        n = int(out.ep_recv_counts[nb - 1])
        total_rows += n
        assert out.expert_token_nums[0] == n or (o >= r and lnum > 1)
        for i, (src, t, kk) in enumerate(triples(out, n)):
            assert out.expand_x[i].view(np.uint8).tobytes() == xs[src][t].view(np.uint8).tobytes()
            assert (src, t, kk) not in delivered
            delivered[(src, t, kk)] = o
    expected = 0
    for src in range(ep):
        bs, k = ids[src].shape
        pv = np.ones((bs, k), bool) if masks is None else (
            np.broadcast_to((np.arange(bs) < masks[src].sum())[:, None], (bs, k)) if masks[src].ndim == 1
            else masks[src])
        for t, kk in itertools.product(range(bs), range(k)):
            e = int(ids[src][t, kk])
            if pv[t, kk] and e < m:
                assert delivered.pop((src, t, kk)) == e // lnum + r      # exactly once, on the owner
                expected += 1
        if r > 0:
            for t in np.flatnonzero(pv.any(axis=1)):
                for sh in range(s):
                    assert delivered.pop((src, int(t), k + sh)) == src % rpse + sh * rpse
                    expected += 1
    assert not delivered and total_rows == expected


CONFIGS = [  # ep, m, k, s_attr, r, bs, z, mask_kind, etn_type
    (2, 2, 1, 1, 0, 3, 0, None, 1),
    (4, 8, 3, 1, 0, 5, 0, 2, 0),
    (5, 12, 4, 1, 2, 4, 0, 1, 1),
    (6, 8, 2, 2, 4, 3, 2, None, 0),
    (3, 4, 2, 1, 1, 6, 3, 2, 1),
    (8, 6, 5, 3, 6, 2, 1, 1, 0),
    (4, 16, 6, 0, 0, 7, 0, None, 0),
]


@pytest.mark.parametrize("seed,cfg", list(enumerate(CONFIGS)))
def test_random_worlds_match_naive_model(seed, cfg):
    ep, m, k, s_attr, r, bs, z, mask_kind, etn_type = cfg
    rng = np.random.default_rng(seed)
    xs, ids, masks = random_world(rng, ep=ep, m=m, k=k, bs_list=[bs] * ep, z=z, mask_kind=mask_kind)
    kw = dict(ep_world_size=ep, moe_expert_num=m, shared_expert_num=s_attr, shared_expert_rank_num=r,
              zero_expert_num=z, expert_token_nums_type=etn_type)
    res = dispatch(xs, ids, x_active_mask=masks, **kw)
    compare(res, naive(xs, ids, ep=ep, m=m, s_attr=s_attr, r=r, masks=masks, z=z, etn_type=etn_type))
    s = 0 if (r == 0 and s_attr == 1) else s_attr
    invariants(res, xs, ids, masks, ep=ep, m=m, r=r, s=s, z=z)
    # shapes are the layout's
    for o, out in enumerate(res):
        lay = MoeLayout(ep, o, m, bs, k, 0, s_attr, r)
        specs = dispatch_output_specs(lay, H, BF16, 0)
        for name, spec in specs.items():
            arr = getattr(out, name)
            assert arr.shape == spec.shape and arr.dtype == spec.dtype, name


@pytest.mark.parametrize("with_scales", [False, True])
def test_random_quant_matches_naive_model(with_scales):
    rng = np.random.default_rng(11)
    ep, m, k, s_attr, r, bs = 4, 6, 3, 1, 1, 5
    xs, ids, masks = random_world(rng, ep=ep, m=m, k=k, bs_list=[bs] * ep, dtype=np.float16, mask_kind=2)
    scales = [rng.uniform(0.25, 4, (1 + m, H)).astype(np.float32) for _ in range(ep)] if with_scales else None
    res = dispatch(xs, ids, x_active_mask=masks, scales=scales, ep_world_size=ep, moe_expert_num=m,
                   shared_expert_num=s_attr, shared_expert_rank_num=r, quant_mode=2)
    compare(res, naive(xs, ids, ep=ep, m=m, s_attr=s_attr, r=r, masks=masks, quant_mode=2, scales=scales),
            quant_mode=2)
    # quantise then dequantise is close to x (times its smooth row)
    for out in res:
        n = int(out.ep_recv_counts[-1])
        for i, (src, t, kk) in enumerate(triples(out, n)):
            xf = xs[src][t].astype(np.float32)
            if scales is not None:
                e = int(ids[src][t, kk]) + 1 if kk < k else kk - k
                xf = xf * scales[src][e]
            err = np.abs(out.expand_x[i].astype(np.float32) * out.dynamic_scales[i] - xf)
            assert err.max() <= 0.5 * out.dynamic_scales[i] * (1 + 1e-5) + 1e-6 * np.abs(xf).max()


def test_varying_batch_size_with_global_bs():
    rng = np.random.default_rng(3)
    ep, m, k = 4, 8, 2
    bs_list = [1, 5, 3, 8]
    xs, ids, _ = random_world(rng, ep=ep, m=m, k=k, bs_list=bs_list)
    res = dispatch(xs, ids, ep_world_size=ep, moe_expert_num=m, global_bs=32)
    compare(res, naive(xs, ids, ep=ep, m=m))
    invariants(res, xs, ids, None, ep=ep, m=m, r=0, s=0, z=0)
    assert all(o.expand_x.shape == (32 * 2, H) for o in res)   # A = globalBs * min(L, K)
    with pytest.raises(AclnnError) as ei:       # different BS needs global_bs
        dispatch(xs, ids, ep_world_size=ep, moe_expert_num=m)
    assert ei.value.status == 561002 and "same BS" in str(ei.value) and "rank 1" in str(ei.value)
    with pytest.raises(AclnnError) as ei:       # global_bs below max BS * ep on rank 3
        dispatch(xs, ids, ep_world_size=ep, moe_expert_num=m, global_bs=28)
    assert ei.value.status == 561002 and "global_bs" in str(ei.value) and "rank 3" in str(ei.value)


def test_cross_rank_shape_rules():
    rng = np.random.default_rng(4)
    xs, ids, _ = random_world(rng, ep=2, m=2, k=1, bs_list=[2, 2])
    xs[1] = rng.standard_normal((2, 2048)).astype(BF16)
    with pytest.raises(AclnnError) as ei:
        dispatch(xs, ids, ep_world_size=2, moe_expert_num=2)
    assert ei.value.status == 561002 and "same H" in str(ei.value) and "rank 1" in str(ei.value)
    xs, ids, _ = random_world(rng, ep=2, m=2, k=1, bs_list=[2, 2])
    xs[1] = xs[1].astype(np.float16)
    with pytest.raises(AclnnError, match="same dtype"):
        dispatch(xs, ids, ep_world_size=2, moe_expert_num=2)
    xs, ids, _ = random_world(rng, ep=2, m=2, k=1, bs_list=[2, 2])
    ids[1] = np.array([[0, 1], [1, 0]], np.int32)
    with pytest.raises(AclnnError, match="same K"):
        dispatch(xs, ids, ep_world_size=2, moe_expert_num=2)
    xs[1] = None
    ids[1] = None
    with pytest.raises(AclnnError) as ei:   # None without elastic
        dispatch(xs, ids, ep_world_size=2, moe_expert_num=2)
    assert ei.value.status == 161001 and "rank 1" in str(ei.value)


def test_per_rank_validation_names_the_rank():
    rng = np.random.default_rng(5)
    xs, ids, _ = random_world(rng, ep=4, m=4, k=2, bs_list=[2] * 4)
    ids[3] = ids[3].astype(np.int64)
    with pytest.raises(AclnnError) as ei:
        dispatch(xs, ids, ep_world_size=4, moe_expert_num=4)
    assert ei.value.status == 161002 and "rank 3" in str(ei.value) and "expert_ids" in str(ei.value)
    ids[3] = ids[3].astype(np.int32)
    with pytest.raises(AclnnError) as ei:
        dispatch(xs, ids, ep_world_size=4, moe_expert_num=4, quant_mode=1)
    assert ei.value.status == 561002 and "rank 0" in str(ei.value) and "quant_mode" in str(ei.value)


def test_hccl_buffsize_applies_to_the_reference(monkeypatch):
    rng = np.random.default_rng(6)
    xs, ids, _ = random_world(rng, ep=2, m=2, k=1, bs_list=[2, 2])
    monkeypatch.setenv("HCCL_BUFFSIZE", "1")
    dispatch(xs, ids, ep_world_size=2, moe_expert_num=2)       # needs < 1 MB
    xs, ids, _ = random_world(rng, ep=2, m=2, k=1, bs_list=[512, 512], h=8192)
    with pytest.raises(AclnnError) as ei:
        dispatch(xs, ids, ep_world_size=2, moe_expert_num=2)
    assert ei.value.status == 561002 and "HCCL_BUFFSIZE=" in str(ei.value)


@pytest.mark.parametrize("seed", range(3))
def test_tp2_agrees_with_two_independent_ep_worlds(seed):
    rng = np.random.default_rng(100 + seed)
    ep, m, k, r, s_attr = 4, 3, 2, 1, 1
    xs, ids, masks = random_world(rng, ep=ep * 2, m=m, k=k, bs_list=[4] * (ep * 2), mask_kind=2)
    kw = dict(ep_world_size=ep, moe_expert_num=m, shared_expert_rank_num=r, shared_expert_num=s_attr)
    res = dispatch(xs, ids, x_active_mask=masks, tp_world_size=2, group_tp="tp", **kw)
    slices = [dispatch(xs[t::2], ids[t::2], x_active_mask=masks[t::2], **kw) for t in (0, 1)]
    for e in range(ep):
        for t in (0, 1):
            out, own, peer = res[e * 2 + t], slices[t][e], slices[1 - t][e]
            n_own, n_peer = int(own.ep_recv_counts[ep - 1]), int(peer.ep_recv_counts[ep - 1])
            assert np.array_equal(out.expand_x[:n_own].view(np.uint16), own.expand_x[:n_own].view(np.uint16))
            assert np.array_equal(out.expand_x[n_own:n_own + n_peer].view(np.uint16),
                                  peer.expand_x[:n_peer].view(np.uint16))
            assert not out.expand_x[n_own + n_peer:].view(np.uint16).any()
            assert np.array_equal(out.assist_info_for_combine, own.assist_info_for_combine)
            assert out.ep_recv_counts.tolist() == own.ep_recv_counts.tolist() + peer.ep_recv_counts.tolist()
            assert out.tp_recv_counts[t] == n_own and out.tp_recv_counts[1 - t] == n_peer
            assert out.expert_token_nums.tolist() == [n_own + n_peer]


def test_tp2_quant_peer_rows_carry_their_scales():
    rng = np.random.default_rng(9)
    xs, ids, _ = random_world(rng, ep=4, m=2, k=1, bs_list=[3] * 4)     # 4 ranks = ep 2 x tp 2
    kw = dict(ep_world_size=2, moe_expert_num=2, quant_mode=2)
    res = dispatch(xs, ids, tp_world_size=2, group_tp="tp", **kw)
    slices = [dispatch(xs[t::2], ids[t::2], **kw) for t in (0, 1)]
    for e in range(2):
        for t in (0, 1):
            out, own, peer = res[e * 2 + t], slices[t][e], slices[1 - t][e]
            n_own, n_peer = int(own.expert_token_nums[0]), int(peer.expert_token_nums[0])
            assert np.array_equal(out.dynamic_scales[:n_own + n_peer],
                                  np.concatenate([own.dynamic_scales[:n_own], peer.dynamic_scales[:n_peer]]))
            assert not out.dynamic_scales[n_own + n_peer:].any()
            assert np.array_equal(out.expand_x[:n_own], own.expand_x[:n_own])
            assert np.array_equal(out.expand_x[n_own:n_own + n_peer], peer.expand_x[:n_peer])


def test_elastic_identity_table_equals_no_elastic():
    rng = np.random.default_rng(12)
    ep, m, k = 4, 8, 3
    xs, ids, masks = random_world(rng, ep=ep, m=m, k=k, bs_list=[5] * ep, mask_kind=2)
    info = np.array([1, ep, 0, m] + list(range(ep)) * 2, np.int32)
    a = dispatch(xs, ids, x_active_mask=masks, ep_world_size=ep, moe_expert_num=m, elastic_info=info)
    b = dispatch(xs, ids, x_active_mask=masks, ep_world_size=ep, moe_expert_num=m)
    for oa, ob in zip(a, b):
        for name in oa._fields:
            x1, x2 = getattr(oa, name), getattr(ob, name)
            assert x1.shape == x2.shape and x1.dtype == x2.dtype
            assert np.array_equal(x1.view(np.uint8), x2.view(np.uint8)), name
    # flag 0: the table is ignored (routing as without elastic) but shapes use the elastic A
    info0 = np.array([0, 2, 0, 4] + [0, 1, -1, -1] + [0, 1, -1, -1], np.int32)
    c = dispatch(xs, ids, x_active_mask=masks, ep_world_size=ep, moe_expert_num=m, elastic_info=info0)
    compare(c, naive(xs, ids, ep=ep, m=m, masks=masks))


def test_elastic_with_shared_experts_and_specials_matches_naive_model():
    rng = np.random.default_rng(13)
    ep, m, k, s_attr, r, z = 6, 8, 3, 1, 2, 2      # L = 2
    # keep original ranks 0 (shared), 2, 3, 5 -> new ep 4, R' = 1, M' = 6 (L' = 2)
    t1 = [0, -1, 1, 2, -1, 3]
    t2 = [0, 2, 3, 5, -1, -1]
    info = np.array([1, 4, 1, 6] + t1 + t2, np.int32)
    xs, ids, masks = random_world(rng, ep=ep, m=m, k=k, bs_list=[4] * ep, mask_kind=1, ids_range=6)
    special = rng.random((ep, 4, k)) < 0.25                 # some ids become special experts [8, 10)
    for o in range(ep):
        ids[o] = np.where(special[o], m + np.arange(k) % z, ids[o]).astype(np.int32)
        for t in range(4):                                   # keep them distinct in the row
            u, c = np.unique(ids[o][t], return_counts=True)
            if (c > 1).any():
                ids[o][t] = rng.permutation(6)[:k]
    for o in (1, 4):
        xs[o] = ids[o] = masks[o] = None
    kw = dict(ep_world_size=ep, moe_expert_num=m, shared_expert_num=s_attr, shared_expert_rank_num=r,
              zero_expert_num=z, elastic_info=info, expert_token_nums_type=0)
    res = dispatch(xs, ids, x_active_mask=masks, **kw)
    assert res[1] is None and res[4] is None
    compare(res, naive(xs, ids, ep=ep, m=m, s_attr=s_attr, r=r, masks=masks, z=z, elastic=info, etn_type=0))
    for o in (0, 2, 3, 5):   # elastic shapes: A = max(shared A, MoE A), L entries everywhere
        assert res[o].expand_x.shape == (24 * 2, H) and res[o].expert_token_nums.shape == (2,)
        assert res[o].ep_recv_counts.shape == (12,)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_worlds_match_naive_model(data):
    ep = data.draw(st.integers(2, 6), label="ep")
    r = data.draw(st.integers(0, ep - 1), label="R")
    s_attr = 1 if r == 0 else data.draw(st.sampled_from([d for d in range(1, 5) if r % d == 0]), label="S")
    if r == 0:
        s_attr = data.draw(st.sampled_from([0, 1]), label="S0")
    l_ = data.draw(st.integers(1, 3), label="L")
    m = l_ * (ep - r)
    z = data.draw(st.integers(0, 2), label="Z")
    k = data.draw(st.integers(1, min(4, m + z)), label="K")
    bs = data.draw(st.integers(1, 5), label="BS")
    mask_kind = data.draw(st.sampled_from([None, 1, 2]), label="mask")
    etn_type = data.draw(st.sampled_from([0, 1]), label="etn_type")
    seed = data.draw(st.integers(0, 2 ** 16), label="seed")
    rng = np.random.default_rng(seed)
    xs, ids, masks = random_world(rng, ep=ep, m=m, k=k, bs_list=[bs] * ep, z=z, mask_kind=mask_kind)
    res = dispatch(xs, ids, x_active_mask=masks, ep_world_size=ep, moe_expert_num=m, shared_expert_num=s_attr,
                   shared_expert_rank_num=r, zero_expert_num=z, expert_token_nums_type=etn_type)
    compare(res, naive(xs, ids, ep=ep, m=m, s_attr=s_attr, r=r, masks=masks, z=z, etn_type=etn_type))
    s = 0 if (r == 0 and s_attr == 1) else s_attr
    invariants(res, xs, ids, masks, ep=ep, m=m, r=r, s=s, z=z)


def test_quant_zero_row_convention():
    # amax == 0 is undefined on hardware (127/0 = inf, 0*inf = NaN); the reference writes int8 0, scale +0
    q, s = dynamic_quant(np.array([[0.0, -0.0, 0.0], [1.0, -3.0, 2.0]], np.float32).astype(BF16))
    assert q[0].tolist() == [0, 0, 0] and s.view(np.uint32)[0] == 0
    assert q[1].tolist() == [42, -127, 85]


def test_expert_scales_are_ignored_on_a3():
    es = [np.full((3, 2), 0.5, np.float32)] * 4
    a, b = run_14(expert_scales=es), run_14()
    for oa, ob in zip(a, b):
        assert not oa.expand_scales.any()
        assert all(np.array_equal(getattr(oa, f).view(np.uint8), getattr(ob, f).view(np.uint8)) for f in oa._fields)


# ----------------------------------------------------------------------------------------------
# NaN / inf with quant_mode 2, and special-expert ids on the device: reference and simulator agree
# ----------------------------------------------------------------------------------------------
_NAN_ROWS = [  # (first four values of the row, the rest 0)
    [1.0, 2.0, np.nan, -3.0],          # the max propagates NaN: q NaN -> int8 0, scale canonical NaN
    [np.nan] * 4,                      # all NaN: the same
    [1.0, np.inf, 2.0, np.nan],        # inf and NaN: NaN wins
    [-np.inf, 1.0, 0.0, 0.0],          # inf: amax inf, q 0 -> int8 0, scale inf
    [1e-38, 0.0, 0.0, -1e-38],         # 127/amax overflows: int8 0, scale 0
    [2.0, -1.0, 0.5, 0.375],
]


def _run_world(backend, fn):
    import aclnn_py
    with aclnn_py.World.ep_tp(2, backend=backend, timeout_s=10) as w:
        return w.run(fn)


def _host(o):
    if hasattr(o, "numpy") and hasattr(o, "free"):
        a = o.numpy()
        o.free()
        return a
    return np.asarray(o)


def test_quant_nan_inf_rows_reference_matches_simulator(sim):
    import aclnn_py
    x = np.zeros((len(_NAN_ROWS), H), np.float32)
    x[:, :4] = _NAN_ROWS
    x[1, :] = np.nan
    x = x.astype(BF16)
    q, s = dynamic_quant(x)
    assert [f32_bits(v) for v in s[:5]] == [0x7FC00000, 0x7FC00000, 0x7FC00000, 0x7F800000, 0] and not q[:5].any()
    assert q[5, :4].tolist() == [127, -64, 32, 24] and f32_bits(s[5]) == 0x3C810204

    def fn(ctx):
        out = aclnn_py.moe_distribute_dispatch_v3(
            x, np.full((x.shape[0], 1), ctx.rank, np.int32), group_ep=ctx.group("ep"), ep_world_size=2,
            ep_rank_id=ctx.ep_rank, moe_expert_num=2, quant_mode=2)
        return tuple(_host(o) for o in out)

    ref, dev = _run_world("reference", fn), _run_world("device", fn)
    for g in range(2):
        for a, b in zip(ref[g], dev[g]):
            assert a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))
        n = x.shape[0]   # rank g's tokens go to its own expert g: the first n rows are x quantised
        assert np.array_equal(ref[g][0][:n], q) and np.array_equal(ref[g][1][:n].view(np.uint32), s.view(np.uint32))


@pytest.mark.parametrize("bad_id", [-1, 5, 6, 2**31 - 1])
def test_simulator_refuses_ids_outside_moe_and_special_range(sim, bad_id):
    # M = 2, zero + copy + const = 3: valid ids [0, 2) and [2, 5); anything else fails the run (507015)
    import aclnn_py
    from aclnn_py.runtime.tensor import DeviceTensor

    def fn(ctx):
        ids = DeviceTensor.from_numpy(np.array([[bad_id if ctx.rank == 0 else 4]], np.int32))
        try:
            out = aclnn_py.moe_distribute_dispatch_v3(
                np.ones((1, H), BF16), ids, group_ep=ctx.group("ep"), ep_world_size=2, ep_rank_id=ctx.ep_rank,
                moe_expert_num=2, zero_expert_num=1, copy_expert_num=1, const_expert_num=1)
            for o in out:
                o.free()
        finally:
            ids.free()

    with pytest.raises(aclnn_py.AclnnPyError) as e:
        _run_world("device", fn)
    text = str(e.value)
    assert "507015" in text or getattr(e.value, "status", None) == 507015, text
    assert "expertIds[0][0]" in text and str(bad_id) in text and "[2, 5)" in text, text


def test_simulator_accepts_every_special_id(sim):
    import aclnn_py
    from aclnn_py.runtime.tensor import DeviceTensor

    def fn(ctx):
        ids = DeviceTensor.from_numpy(np.array([[0, 2], [3, 1], [4, 1]], np.int32))
        try:
            out = aclnn_py.moe_distribute_dispatch_v3(
                np.ones((3, H), BF16), ids, group_ep=ctx.group("ep"), ep_world_size=2, ep_rank_id=ctx.ep_rank,
                moe_expert_num=2, zero_expert_num=1, copy_expert_num=1, const_expert_num=1)
            return tuple(_host(o) for o in out)
        finally:
            ids.free()

    _run_world("device", fn)
