"""Reference CombineV3 / CombineAddRmsNormV2: spec worked examples bit for bit, and dispatch round trips.

Spec: ``../shared/spec/combine-addrmsnorm-barrier.md`` §3-§7 and §10.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from aclnn_py.errors import AclnnError, AclnnPyError, CollectiveError
from aclnn_py.reference import numerics as nm
from aclnn_py.reference import moe_distribute_combine_add_rms_norm_v2, moe_distribute_combine_v3
from aclnn_py.reference.combine import add_rms_norm_rows
from aclnn_py.reference import moe_distribute_dispatch_v3
from aclnn_py.results import CombineAddRmsNormOutputs

BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.float32

# ----------------------------------------------------------------------------------------------------
# §10 worked example: ep = 4, M = 4 (expert e on rank e), Bs = 3, K = 2, FFN of expert e: rne((e+1) * row)
# ----------------------------------------------------------------------------------------------------
X = {0: [[1, 2, 3, 4], [0.5, -1, 1.5, -2], [2, 0, -2, 1]], 1: [[-1, 1, -1, 1], [3, 1, 0.25, 0], [1, 1, 1, 1]],
     2: [[.5, .5, -.5, -.5], [2, 4, 6, 8], [-3, 0, 3, 1]], 3: [[1, -2, 4, -8], [.75, .75, .75, .75], [5, -1, 0, 2]]}
IDS = {0: [[0, 1], [2, 3], [1, 0]], 1: [[1, 2], [3, 0], [0, 1]], 2: [[2, 3], [0, 2], [3, 1]],
       3: [[3, 0], [1, 3], [2, 0]]}
SC = {0: [[0.6, 0.4], [0.75, 0.25], [0.3, 0.7]], 1: [[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]],
      2: [[0.35, 0.65], [1.0, 0.0], [0.45, 0.55]], 3: [[0.125, 0.875], [0.6, 0.4], [0.7, 0.3]]}
RES = {0: [[.5, .5, .5, .5], [1, 0, -1, 0], [0, 0, 0, 0]], 1: [[.25, -.25, .25, -.25], [-1, -1, -1, -1], [2, 0, 0, 0]],
       2: [[0, 1, 0, 1], [-4, -8, -12, -16], [.5, 0, -.5, 0]], 3: [[1, 1, 1, 1], [0, 0, 0, 0], [-5, 1, 0, -2]]}
GAMMA = [1, 0.5, 2, 1.5]
# §10.1 table (r, t): acc, CombineV3 xOut, ARN2 xOut, rstd bits (H=4), yOut
ACC = {(0, 0): [1.4000000953674316, 2.8000001907348633, 4.200000286102295, 5.600000381469727],
       (0, 1): [1.625, -3.25, 4.875, -6.5],
       (0, 2): [2.5999999046325684, 0.0, -2.5999999046325684, 1.2999999523162842],
       (1, 0): [-2.5, 2.5, -2.5, 2.5], (1, 1): [11.09999942779541, 3.6999998092651367, 0.9249999523162842, 0.0],
       (1, 2): [1.8000000715255737] * 4,
       (2, 0): [1.8249999284744263, 1.8249999284744263, -1.8249999284744263, -1.8249999284744263],
       (2, 1): [2.0, 4.0, 6.0, 8.0], (2, 2): [-8.699999809265137, 0.0, 8.699999809265137, 2.9000000953674316],
       (3, 0): [1.375, -2.75, 5.5, -11.0], (3, 1): [2.1000001430511475] * 4,
       (3, 2): [12.0, -2.3999998569488525, 0.0, 4.799999713897705]}
CXOUT = {(0, 0): [1.3984375, 2.796875, 4.1875, 5.59375], (0, 1): [1.625, -3.25, 4.875, -6.5],
         (0, 2): [2.59375, 0.0, -2.59375, 1.296875], (1, 0): [-2.5, 2.5, -2.5, 2.5],
         (1, 1): [11.125, 3.703125, 0.92578125, 0.0], (1, 2): [1.796875] * 4,
         (2, 0): [1.828125, 1.828125, -1.828125, -1.828125], (2, 1): [2.0, 4.0, 6.0, 8.0],
         (2, 2): [-8.6875, 0.0, 8.6875, 2.90625], (3, 0): [1.375, -2.75, 5.5, -11.0], (3, 1): [2.09375] * 4,
         (3, 2): [12.0, -2.40625, 0.0, 4.8125]}
AXOUT = {(0, 0): [1.8984375, 3.296875, 4.6875, 6.09375], (0, 1): [2.625, -3.25, 3.875, -6.5],
         (0, 2): [2.59375, 0.0, -2.59375, 1.296875], (1, 0): [-2.25, 2.25, -2.25, 2.25],
         (1, 1): [10.125, 2.703125, -0.0751953125, -1.0], (1, 2): [3.796875, 1.796875, 1.796875, 1.796875],
         (2, 0): [1.828125, 2.828125, -1.828125, -0.82421875], (2, 1): [-2.0, -4.0, -6.0, -8.0],
         (2, 2): [-8.1875, 0.0, 8.1875, 2.90625], (3, 0): [2.375, -1.75, 6.5, -10.0], (3, 1): [2.09375] * 4,
         (3, 2): [7.0, -1.3984375, 0.0, 2.796875]}
RSTD_H4 = {(0, 0): 0x3e6e65c4, (0, 1): 0x3e6ced65, (0, 2): 0x3f034834, (1, 0): 0x3ee38e37, (1, 1): 0x3e42ff99,
           (1, 2): 0x3ed0546e, (2, 0): 0x3f02cc99, (2, 1): 0x3e3af4ba, (2, 2): 0x3e2b5409, (3, 0): 0x3e26b094,
           (3, 1): 0x3ef3cf3a, (3, 2): 0x3e858a3c}
RSTD_H1024 = {(0, 0): 0x3e6e65c4, (0, 1): 0x3e6ced65, (0, 2): 0x3f034835, (1, 0): 0x3ee38e37, (1, 1): 0x3e42ff98,
              (1, 2): 0x3ed0546e, (2, 0): 0x3f02cc99, (2, 1): 0x3e3af4ba, (2, 2): 0x3e2b5409,
              (3, 0): 0x3e26b094, (3, 1): 0x3ef3cf3a, (3, 2): 0x3e858a3c}
YOUT = {(0, 0): [0.44140625, 0.384765625, 2.1875, 2.125], (0, 1): [0.60546875, -0.376953125, 1.796875, -2.265625],
        (0, 2): [1.3359375, 0.0, -2.671875, 1.0], (1, 0): [-1.0, 0.5, -2.0, 1.5],
        (1, 1): [1.921875, 0.2578125, -0.028564453125, -0.28515625],
        (1, 2): [1.546875, 0.365234375, 1.4609375, 1.09375],
        (2, 0): [0.93359375, 0.72265625, -1.8671875, -0.6328125],
        (2, 1): [-0.365234375, -0.365234375, -2.1875, -2.1875],
        (2, 2): [-1.375, 0.0, 2.75, 0.7265625], (3, 0): [0.38671875, -0.142578125, 2.109375, -2.4375],
        (3, 1): [1.0, 0.5, 2.0, 1.5], (3, 2): [1.828125, -0.1826171875, 0.0, 1.09375]}
H = 1024
REP = H // 4


def bf(a) -> np.ndarray:
    return np.asarray(a, F32).astype(BF16)


def tile(v, rep=REP) -> np.ndarray:
    return np.tile(np.asarray(v, F32), rep)


def example_world(mask=None, rep=REP):
    """Combine inputs of §10 built by hand exactly as the spec lists them (rows padded to A = 12)."""
    ex, tri, cnt = {r: [] for r in range(4)}, {r: [] for r in range(4)}, {r: [0] * 4 for r in range(4)}
    for s in range(4):
        n = 3 if mask is None or s not in mask else int(sum(mask[s]))
        for t in range(n):
            for k in range(2):
                e = IDS[s][t][k]
                ex[e].append(bf(np.asarray(X[s][t], F32) * (e + 1)))
                tri[e].append((s, t, k))
                cnt[e][s] += 1
    a, h = 12, 4 * rep
    w = dict(expand_x=[], expert_ids=[], assist_info_for_combine=[], ep_send_counts=[], expert_scales=[],
             tp_send_counts=[], x_active_mask=[])
    extra = dict(residual_x=[], gamma=[])
    for r in range(4):
        e = np.zeros((a, h), BF16)
        e[:len(ex[r])] = np.tile(np.stack(ex[r]), (1, rep))
        info = np.zeros(a * 128, np.int32)
        info[:3 * len(tri[r])] = np.asarray(tri[r]).reshape(-1)
        w["expand_x"].append(e)
        w["expert_ids"].append(np.asarray(IDS[r], np.int32))
        w["assist_info_for_combine"].append(info)
        w["ep_send_counts"].append(np.cumsum(cnt[r]).astype(np.int32))
        w["expert_scales"].append(np.asarray(SC[r], F32))
        w["tp_send_counts"].append(np.zeros(1, np.int32))
        w["x_active_mask"].append(None if mask is None or r not in mask else np.asarray(mask[r], bool))
        extra["residual_x"].append(bf(np.tile(np.asarray(RES[r], F32), (1, rep))).reshape(3, 1, h))
        extra["gamma"].append(bf(tile(GAMMA, rep)))
    if mask is None:
        w["x_active_mask"] = None
    return w, extra


ATTRS = dict(ep_world_size=4, moe_expert_num=4, tp_world_size=1)


def f32list(a) -> list:
    return np.asarray(a).astype(F32).tolist()


# ----------------------------------------------------------------------------------------------------
class TestSpecExample:
    def test_10_1_combine_xout(self):
        w, _ = example_world()
        out = moe_distribute_combine_v3(**w, **ATTRS)
        assert len(out) == 4
        for r in range(4):
            assert out[r].shape == (3, H) and out[r].dtype == BF16
            for t in range(3):
                assert f32list(out[r][t]) == tile(CXOUT[r, t]).tolist(), (r, t)
                # CombineV3 xOut is the single rounding of the fp32 sum
                assert f32list(out[r][t]) == f32list(bf(tile(ACC[r, t])))

    def test_10_1_and_10_3_add_rms_norm(self):
        w, extra = example_world()
        out = moe_distribute_combine_add_rms_norm_v2(**w, **extra, **ATTRS)
        for r in range(4):
            o = out[r]
            assert isinstance(o, CombineAddRmsNormOutputs)
            assert o.y.shape == (3, 1, H) and o.rstd.shape == (3, 1, 1) and o.x.shape == (3, 1, H)
            assert o.y.dtype == BF16 and o.rstd.dtype == F32 and o.x.dtype == BF16
            for t in range(3):
                assert f32list(o.x[t, 0]) == tile(AXOUT[r, t]).tolist(), (r, t)
                assert f32list(o.y[t, 0]) == tile(YOUT[r, t]).tolist(), (r, t)
                assert int(o.rstd[t, 0, 0].view(np.uint32)) == RSTD_H1024[r, t], (r, t)

    def test_10_1_rms_tail_at_h4(self):
        """The H = 4 table itself, through the AddRmsNorm tail (validation forbids H = 4 end to end)."""
        keys = sorted(ACC)
        acc = np.array([ACC[k] for k in keys], F32)
        res = bf([RES[r][t] for r, t in keys])
        y, rstd, x = add_rms_norm_rows(acc, res, bf(GAMMA), 1e-6)
        for i, key in enumerate(keys):
            assert f32list(x[i]) == AXOUT[key]
            assert f32list(y[i]) == YOUT[key]
            assert int(rstd[i].view(np.uint32)) == RSTD_H4[key], key

    def test_10_2_residual_added_to_unrounded_sum(self):
        w, extra = example_world()
        out = moe_distribute_combine_add_rms_norm_v2(**w, **extra, **ATTRS)
        assert float(out[1].x[1, 0, 2]) == -0.0751953125   # not -0.07421875 (rounding acc first)

    def test_10_3_tree_order_matters(self):
        """Plain sequential summation would give other rstd bits for 8 of the 12 tokens (§10.3)."""
        w, extra = example_world()
        out = moe_distribute_combine_add_rms_norm_v2(**w, **extra, **ATTRS)
        assert int(out[1].rstd[1, 0, 0].view(np.uint32)) != 0x3e42ffae
        assert int(out[0].rstd[2, 0, 0].view(np.uint32)) != 0x3f03483b

    def test_10_4_mask_variant(self):
        w, extra = example_world()
        base = moe_distribute_combine_add_rms_norm_v2(**w, **extra, **ATTRS)
        base_c = moe_distribute_combine_v3(**w, **ATTRS)
        wm, extra_m = example_world(mask={1: [True, True, False]})
        assert wm["ep_send_counts"][0].tolist() == [2, 3, 4, 6] and wm["ep_send_counts"][1].tolist() == [2, 3, 4, 5]
        out = moe_distribute_combine_add_rms_norm_v2(**wm, **extra_m, **ATTRS)
        out_c = moe_distribute_combine_v3(**wm, **ATTRS)
        for r in range(4):
            for t in range(3):
                if (r, t) == (1, 2):
                    assert not out[r].y[t].astype(F32).any() and not out[r].x[t].astype(F32).any()
                    assert out[r].rstd[t, 0, 0] == 0 and not out_c[r][t].astype(F32).any()
                else:
                    assert np.array_equal(out[r].y[t].view(np.uint16), base[r].y[t].view(np.uint16))
                    assert np.array_equal(out[r].x[t].view(np.uint16), base[r].x[t].view(np.uint16))
                    assert out[r].rstd[t, 0, 0].view(np.uint32) == base[r].rstd[t, 0, 0].view(np.uint32)
                    assert np.array_equal(out_c[r][t].view(np.uint16), base_c[r][t].view(np.uint16))

    def test_matches_reference_dispatch(self):
        """Hand-built inputs equal what the reference dispatch produces, and combine agrees on both."""
        w, _ = example_world()
        xs = [bf(np.tile(np.asarray(X[r], F32), (1, REP))) for r in range(4)]
        ids = [np.asarray(IDS[r], np.int32) for r in range(4)]
        d = moe_distribute_dispatch_v3(xs, ids, **ATTRS)
        for r in range(4):
            n = int(d[r].ep_recv_counts[-1])
            assert d[r].ep_recv_counts.tolist() == w["ep_send_counts"][r].tolist()
            assert d[r].assist_info_for_combine[:3 * n].tolist() == w["assist_info_for_combine"][r][:3 * n].tolist()
        ffn = []
        for r in range(4):
            e = d[r].expand_x.copy()
            e[:] = bf(e.astype(F32) * F32(r + 1))
            ffn.append(e)
        out = moe_distribute_combine_v3(ffn, ids, [o.assist_info_for_combine for o in d],
                                        [o.ep_recv_counts for o in d], w["expert_scales"],
                                        tp_send_counts=[o.tp_recv_counts for o in d], **ATTRS)
        for r in range(4):
            for t in range(3):
                assert f32list(out[r][t]) == tile(CXOUT[r, t]).tolist()

    def test_inputs_not_modified(self):
        w, extra = example_world()
        before = [a.copy() for a in w["expand_x"]]
        moe_distribute_combine_add_rms_norm_v2(**w, **extra, **ATTRS)
        assert all(np.array_equal(a.view(np.uint16), b.view(np.uint16)) for a, b in zip(before, w["expand_x"]))


# ----------------------------------------------------------------------------------------------------
class TestSpecialExperts:
    """§6 mini example: M = 4, Z = C = Q = 1 (zero id 4, copy id 5, const id 6), tiled to H = 1024."""

    @staticmethod
    def world(ids_row0, ids_row1):
        ep, bs, h = 2, 2, H
        ori = bf(np.tile(tile([1, 2, 3, 4]), (bs, 1)))
        base = dict(expand_x=[], expert_ids=[], assist_info_for_combine=[], ep_send_counts=[],
                    expert_scales=[], tp_send_counts=[], ori_x=[], const_expert_alpha_1=[],
                    const_expert_alpha_2=[], const_expert_v=[])
        for _ in range(ep):
            base["expand_x"].append(np.zeros((bs * ep * 2, h), BF16))
            base["expert_ids"].append(np.array([ids_row0, ids_row1], np.int32))
            base["assist_info_for_combine"].append(np.zeros(bs * ep * 2 * 128, np.int32))
            base["ep_send_counts"].append(np.zeros(ep * 2, np.int32))
            base["expert_scales"].append(np.array([[0.5, 0.25], [0.5, 0.25]], F32))
            base["tp_send_counts"].append(np.zeros(0, np.int32))
            base["ori_x"].append(ori)
            base["const_expert_alpha_1"].append(bf([2]))
            base["const_expert_alpha_2"].append(bf([-1]))
            base["const_expert_v"].append(bf(np.ones((1, h))))
        return base

    ATTRS = dict(ep_world_size=2, moe_expert_num=4, zero_expert_num=1, copy_expert_num=1, const_expert_num=1)

    def test_copy_and_const(self):
        out = moe_distribute_combine_v3(**self.world([5, 6], [4, 5]), **self.ATTRS)
        for r in range(2):
            assert f32list(out[r][0]) == tile([0.75, 1.75, 2.75, 3.75]).tolist()
            # ids [4, 5]: the zero expert adds nothing, the copy expert (k = 1, w = 0.25) its weighted oriX
            assert f32list(out[r][1]) == tile([0.25, 0.5, 0.75, 1]).tolist()

    def test_ids_beyond_special_range_ignored(self):
        w = self.world([5, 6], [4, 5])
        w["expert_ids"] = [np.array([[5, 6], [7, 5]], np.int32)] * 2
        # id 7 is outside [0, 7): documented as invalid, so validation refuses it ...
        with pytest.raises(AclnnError) as ei:
            moe_distribute_combine_v3(**w, **self.ATTRS)
        assert ei.value.status == 561002 and "expert_ids" in str(ei.value)

    def test_mixed_with_moe_through_dispatch(self):
        rng = np.random.default_rng(5)
        ep, bs, h, m = 2, 3, H, 4
        xs = [bf(rng.standard_normal((bs, h))) for _ in range(ep)]
        ids = [np.array([[0, 5], [6, 3], [4, 1]], np.int32), np.array([[2, 6], [5, 4], [1, 0]], np.int32)]
        sc = [rng.random((bs, 2), F32) for _ in range(ep)]
        a1, a2, v = bf([0.5]), bf([3.0]), bf(rng.standard_normal((1, h)))
        d = moe_distribute_dispatch_v3(xs, ids, ep_world_size=ep, moe_expert_num=m, zero_expert_num=1,
                                       copy_expert_num=1, const_expert_num=1)
        out = moe_distribute_combine_v3([o.expand_x for o in d], ids, [o.assist_info_for_combine for o in d],
                                        [o.ep_recv_counts for o in d], sc, tp_send_counts=[o.tp_recv_counts for o in d],
                                        ori_x=xs, const_expert_alpha_1=[a1] * ep, const_expert_alpha_2=[a2] * ep,
                                        const_expert_v=[v] * ep, ep_world_size=ep, moe_expert_num=m,
                                        zero_expert_num=1, copy_expert_num=1, const_expert_num=1)
        for g in range(ep):
            for t in range(bs):
                acc = np.zeros(h, F32)
                for k in range(2):
                    i, wgt, xr = ids[g][t, k], sc[g][t, k], xs[g][t].astype(F32)
                    if i < m:
                        term = xr * wgt
                    elif i == 4:
                        continue
                    elif i == 5:
                        term = xr * wgt
                    else:
                        term = ((xr * a1.astype(F32)[0]) + (v[0].astype(F32) * a2.astype(F32)[0])) * wgt
                    acc = acc + term
                assert np.array_equal(out[g][t].view(np.uint16), bf(acc).view(np.uint16))


# ----------------------------------------------------------------------------------------------------
class TestTensorParallel:
    def test_spec_3_2_rounding_before_ep(self):
        """ep = 2, tp = 2, M = 2, K = 2: own part 1.0 + peer part 2^-8 rounds (tie) to 1.0 before weighting."""
        ep, tp, bs, h = 2, 2, 1, H
        xs = [bf(np.ones((bs, h))) for _ in range(ep * tp)]
        ids = [np.array([[0, 1]], np.int32)] * 4
        d = moe_distribute_dispatch_v3(xs, ids, ep_world_size=ep, moe_expert_num=2, tp_world_size=tp,
                                       group_tp="tp")
        ffn = []
        for g in range(4):
            e, j = divmod(g, 2)
            own = int(d[g].tp_recv_counts[j])
            peer = int(d[g].tp_recv_counts[1 - j])
            x = np.zeros_like(d[g].expand_x)
            # expert 0 (rank 0): partials 1.0 (tp rank 0) + 2^-8 (tp rank 1); expert 1: 0 + 2^-8
            part = {(0, 0): 1.0, (0, 1): 2.0 ** -8, (1, 0): 0.0, (1, 1): 2.0 ** -8}[e, j]
            x[:own + peer] = bf(part)
            ffn.append(x)
        out = moe_distribute_combine_v3(ffn, ids, [o.assist_info_for_combine for o in d],
                                        [o.ep_recv_counts for o in d], [np.ones((bs, 2), F32)] * 4,
                                        tp_send_counts=[o.tp_recv_counts for o in d], ep_world_size=ep,
                                        moe_expert_num=2, tp_world_size=tp, group_tp="tp")
        for g in range(4):
            # rne(1 + 2^-8) = 1.0 (tie to even), then 1.0 + 2^-8 -> rne 1.0; without the TP rounding: 1.0078125
            assert f32list(out[g][0]) == [1.0] * h

    def test_spec_3_2_examples_numerics(self):
        assert f32list(nm.tp_add(bf([1.0, 1.0]), bf([0.00390625, 0.005859375]))) == [1.0, 1.0078125]


# ----------------------------------------------------------------------------------------------------
class TestInt8CommQuant:
    def test_rows_quantised_on_the_wire(self):
        w, _ = example_world()
        out = moe_distribute_combine_v3(**w, **ATTRS, comm_quant_mode=2)
        # independent expectation: each moved row goes through quant/dequant once, then §3.4
        recv = {}
        for r in range(4):
            n = int(w["ep_send_counts"][r][-1])
            tri = w["assist_info_for_combine"][r][:3 * n].reshape(n, 3)
            rows = nm.int8_comm_roundtrip(w["expand_x"][r][:n])
            for i, (s, t, k) in enumerate(tri.tolist()):
                recv[s, t, k] = rows[i].astype(F32)
        for s in range(4):
            for t in range(3):
                acc = np.zeros(H, F32)
                for k in range(2):
                    acc = acc + recv[s, t, k] * F32(SC[s][t][k])
                assert np.array_equal(out[s][t].view(np.uint16), bf(acc).view(np.uint16)), (s, t)

    def test_differs_from_unquantised(self):
        w, _ = example_world()
        w["expand_x"] = [bf(e.astype(F32) * F32(1.37)) for e in w["expand_x"]]
        a = moe_distribute_combine_v3(**w, **ATTRS, comm_quant_mode=2)
        b = moe_distribute_combine_v3(**w, **ATTRS)
        assert any(not np.array_equal(x.view(np.uint16), y.view(np.uint16)) for x, y in zip(a, b))


# ----------------------------------------------------------------------------------------------------
class TestConsistencyErrors:
    def expect(self, w, fragment, status=561002, **kw):
        with pytest.raises(AclnnPyError) as ei:
            moe_distribute_combine_v3(**w, **dict(ATTRS, **kw))
        assert ei.value.status == status
        assert fragment in str(ei.value)
        return ei.value

    # a slot that receives no row, or two, is the device's hang: 507015, as the simulator reports it
    def test_missing_row_would_hang(self):
        w, _ = example_world()
        w["ep_send_counts"][0] = np.array([2, 4, 5, 6], np.int32)      # rank 0 sends one row too few
        err = self.expect(w, "EP rank 3 (global rank 3) token 2 slot 1 receives no row", 507015)
        assert "wait forever" in str(err) and isinstance(err, CollectiveError)

    def test_duplicate_row(self):
        w, _ = example_world()
        info = w["assist_info_for_combine"][0].copy()
        info[3:6] = info[0:3]
        w["assist_info_for_combine"][0] = info
        self.expect(w, "receives more than one row", 507015)

    def test_source_rank_out_of_range(self):
        w, _ = example_world()
        info = w["assist_info_for_combine"][2].copy()
        info[0] = 9
        w["assist_info_for_combine"][2] = info
        self.expect(w, "rank 2 row 0")

    def test_token_out_of_range(self):
        w, _ = example_world()
        info = w["assist_info_for_combine"][2].copy()
        info[1] = 3
        w["assist_info_for_combine"][2] = info
        self.expect(w, "token in [0, 3)")

    def test_count_beyond_rows(self):
        w, _ = example_world()
        w["ep_send_counts"][1] = np.array([2, 4, 5, 13], np.int32)
        self.expect(w, "expand_x rows")

    def test_tp_send_counts_required(self):
        w, _ = example_world()
        w["tp_send_counts"] = None
        err = self.expect(w, "tp_send_counts")
        assert "rank 0" in str(err)

    def test_per_rank_validation_names_rank(self):
        w, _ = example_world()
        w["expert_scales"][2] = np.zeros((3, 3), F32)
        err = self.expect(w, "expert_scales")
        assert "rank 2 (ep_rank_id=2, tp_rank_id=0)" in str(err)

    def test_world_length(self):
        w, _ = example_world()
        w["expert_ids"] = w["expert_ids"][:3]
        self.expect(w, "one entry per global rank")

    def test_none_rank_without_elastic(self):
        w, _ = example_world()
        w["expand_x"][3] = None
        self.expect(w, "rank 3 present")

    def test_mismatched_h(self):
        w, _ = example_world()
        w["expand_x"][1] = np.zeros((12, 2048), BF16)
        self.expect(w, "same H and dtype")

    def test_tp_counts_must_match_peer(self):
        ep, tp, bs, h = 2, 2, 2, H
        rng = np.random.default_rng(0)
        xs = [bf(rng.standard_normal((bs, h))) for _ in range(4)]
        ids = [np.array([[0], [1]], np.int32)] * 4
        d = moe_distribute_dispatch_v3(xs, ids, ep_world_size=ep, moe_expert_num=2, tp_world_size=tp, group_tp="tp")
        tpc = [o.tp_recv_counts.copy() for o in d]
        tpc[0][1] += 1
        with pytest.raises(AclnnError) as ei:
            moe_distribute_combine_v3([o.expand_x for o in d], ids, [o.assist_info_for_combine for o in d],
                                      [o.ep_recv_counts for o in d], [np.ones((bs, 1), F32)] * 4,
                                      tp_send_counts=tpc, ep_world_size=ep, moe_expert_num=2, tp_world_size=tp,
                                      group_tp="tp")
        assert ei.value.status == 561002 and "TP peer" in str(ei.value)


# ----------------------------------------------------------------------------------------------------
# Round trips: reference dispatch -> per-expert FFN -> combine, against an independent per-token loop.
# ----------------------------------------------------------------------------------------------------
def moe_factor(e: int) -> F32:
    return F32(1 + (e % 7) / 8)


def shared_factor(j: int) -> F32:
    return F32(0.5 + j / 4)


def tp_part(j: int, tp: int) -> F32:
    return F32(1.0) if tp < 2 else F32([0.25, 0.75][j])


def random_config(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    tp = int(rng.choice([0, 1, 2]))
    ep = int(rng.integers(2, 6))
    elastic = tp < 2 and ep >= 3 and rng.random() < 0.3
    r = int(rng.integers(0, ep - 1)) if rng.random() < 0.4 else 0
    if elastic:
        r = min(r, ep - 3)
    s_attr = int(rng.choice([v for v in (1, 2, 3, 4) if r % v == 0])) if r else int(rng.choice([0, 1]))
    s = s_attr if r else 0
    lnum = 1 if tp == 2 else int(rng.integers(1, 4))
    m = lnum * (ep - r)
    special = tp < 2 and rng.random() < 0.35
    z, c, q = (int(v) for v in rng.integers(0, 3, 3)) if special else (0, 0, 0)
    k = int(rng.integers(1, min(4, m + z + c + q) + 1))
    mask_kind = rng.choice(["none", "1d", "2d"])
    vary_bs = mask_kind == "none" and rng.random() < 0.3
    quant = 2 if tp < 2 and rng.random() < 0.25 else 0
    return dict(seed=seed, tp=tp, ep=ep, r=r, s_attr=s_attr, s=s, lnum=lnum, m=m, z=z, c=c, q=q, k=k,
                mask=str(mask_kind), vary_bs=vary_bs, elastic=elastic, quant=quant,
                sx=(r == 0 and rng.random() < 0.3), fp16=(rng.random() < 0.2))


def build(cfg: dict, h: int = H) -> dict:
    rng = np.random.default_rng(cfg["seed"] + 1)
    ep, tp, k, m = cfg["ep"], cfg["tp"], cfg["k"], cfg["m"]
    tpf = max(tp, 1)
    world = ep * tpf
    xdt = np.dtype(np.float16) if cfg["fp16"] else BF16
    max_bs = int(rng.integers(1, 6))
    removed = None
    m_new = m
    info = None
    if cfg["elastic"]:
        removed = int(rng.integers(cfg["r"], ep))       # a MoE rank, so L' == L with R' == R
        keep = [e for e in range(ep) if e != removed]
        t1 = np.full(ep, -1, np.int64)
        t1[keep] = np.arange(ep - 1)
        t2 = np.full(ep, -1, np.int64)
        t2[:ep - 1] = keep
        m_new = cfg["lnum"] * (ep - 1 - cfg["r"])
        info = np.concatenate(([1, ep - 1, cfg["r"], m_new], t1, t2)).astype(np.int32)
    total = m + cfg["z"] + cfg["c"] + cfg["q"]
    pool = list(range(m_new)) + list(range(m, total))
    k = min(k, len(pool))
    xs, ids, sc, masks, sxs = [], [], [], [], []
    for g in range(world):
        if removed is not None and g // tpf == removed:
            xs.append(None), ids.append(None), sc.append(None), masks.append(None), sxs.append(None)
            continue
        bs = int(rng.integers(1, max_bs + 1)) if cfg["vary_bs"] else max_bs
        xs.append((rng.standard_normal((bs, h)) * 2).astype(F32).astype(xdt))
        ids.append(np.stack([rng.choice(pool, k, replace=False) for _ in range(bs)]).astype(np.int32))
        sc.append(rng.random((bs, k)).astype(F32))
        if cfg["mask"] == "1d":
            masks.append(np.arange(bs) < int(rng.integers(0, bs + 1)))
        elif cfg["mask"] == "2d":
            masks.append(rng.random((bs, k)) < 0.7)
        else:
            masks.append(None)
        sxs.append((rng.standard_normal((bs, h))).astype(F32).astype(xdt) if cfg["sx"] else None)
    nq = cfg["q"]
    consts = dict(const_expert_alpha_1=[None if x is None else (rng.standard_normal(nq)).astype(F32).astype(xdt)
                                        for x in xs],
                  const_expert_alpha_2=[None if x is None else (rng.standard_normal(nq)).astype(F32).astype(xdt)
                                        for x in xs],
                  const_expert_v=[None if x is None else (rng.standard_normal((nq, h))).astype(F32).astype(xdt)
                                  for x in xs]) if nq else {}
    attrs = dict(ep_world_size=ep, moe_expert_num=m, tp_world_size=tp, shared_expert_num=cfg["s_attr"],
                 shared_expert_rank_num=cfg["r"], zero_expert_num=cfg["z"], copy_expert_num=cfg["c"],
                 const_expert_num=cfg["q"], global_bs=max_bs * ep if cfg["vary_bs"] else 0,
                 group_tp="tp" if tp == 2 else "")
    return dict(xs=xs, ids=ids, sc=sc, masks=None if cfg["mask"] == "none" else masks, sxs=sxs if cfg["sx"] else None,
                consts=consts, attrs=attrs, info=info, m_new=m_new, xdt=xdt, removed=removed, k=k)


def apply_ffn(cfg: dict, b: dict, d: list) -> list:
    """Expert FFN on each rank's expand_x rows: rne(row * factor(expert) * tp_part(j))."""
    ep, tp = cfg["ep"], cfg["tp"]
    tpf = max(tp, 1)
    ep_n = ep - (1 if b["removed"] is not None else 0)
    r, lnum, s = cfg["r"], cfg["lnum"], cfg["s"]
    out = []
    for g, o in enumerate(d):
        if o is None:
            out.append(None)
            continue
        e, j = divmod(g, tpf)
        e_new = e if b["removed"] is None else (e if e < b["removed"] else e - 1)
        shared = e_new < r
        nb = ep_n if shared else ep_n * lnum
        cs = o.ep_recv_counts[:nb].astype(np.int64)
        n_own = int(cs[-1])
        n_peer = int(o.tp_recv_counts[1 - j]) if tp == 2 else 0
        rows = np.arange(n_own + n_peer)
        if shared:
            fac = np.full(rows.size, shared_factor(e_new // (r // s)), F32)
        else:
            local = np.minimum(np.searchsorted(cs, rows, side="right") // ep_n, lnum - 1)
            fac = np.array([moe_factor((e_new - r) * lnum + int(v)) for v in local], F32)
        fac = fac * tp_part(j, tp)
        x = np.zeros_like(o.expand_x)
        x[rows] = (o.expand_x[rows].astype(F32) * fac[:, None]).astype(b["xdt"])
        out.append(x)
    return out


def expected_sums(cfg: dict, b: dict) -> list:
    """Independent per-token loop of spec §3.4 (explicit fp32 ops, ascending k): per rank (acc, processed)."""
    tp, tpf, m = cfg["tp"], max(cfg["tp"], 1), cfg["m"]
    z, c, q, s, r = cfg["z"], cfg["c"], cfg["q"], cfg["s"], cfg["r"]
    xdt = b["xdt"]
    rpse = r // s if s else 1

    def ffn_value(xrow, fac):
        if tp < 2:
            v = (xrow.astype(F32) * (fac * F32(1))).astype(xdt)
        else:
            p0 = (xrow.astype(F32) * (fac * tp_part(0, 2))).astype(xdt)
            p1 = (xrow.astype(F32) * (fac * tp_part(1, 2))).astype(xdt)
            v = (p0.astype(F32) + p1.astype(F32)).astype(xdt)
        if cfg["quant"] == 2:
            v = nm.int8_comm_roundtrip(v[None])[0]
        return v.astype(F32)

    outs = []
    for g, x in enumerate(b["xs"]):
        if x is None:
            outs.append(None)
            continue
        e = g // tpf
        e_new = e if b["removed"] is None else (e if e < b["removed"] else e - 1)
        bs, h = x.shape
        ids, sc = b["ids"][g], b["sc"][g]
        mask = None if b["masks"] is None else b["masks"][g]
        sums = np.zeros((bs, h), F32)
        done = np.ones(bs, bool)
        for t in range(bs):
            if mask is not None and mask.ndim == 1 and t >= int(mask.sum()):
                done[t] = False
                continue
            if mask is not None and mask.ndim == 2 and not mask[t].any():
                done[t] = False
                continue
            acc = np.zeros(h, F32)
            for kk in range(ids.shape[1]):
                if mask is not None and mask.ndim == 2 and not mask[t, kk]:
                    continue
                i, wgt = int(ids[t, kk]), F32(sc[t, kk])
                if i < m:
                    term = ffn_value(x[t], moe_factor(i)) * wgt
                elif i < m + z:
                    continue
                elif i < m + z + c:
                    term = x[t].astype(F32) * wgt
                else:
                    ci = i - (m + z + c)
                    a1 = b["consts"]["const_expert_alpha_1"][g][ci].astype(F32)
                    a2 = b["consts"]["const_expert_alpha_2"][g][ci].astype(F32)
                    vv = b["consts"]["const_expert_v"][g][ci].astype(F32)
                    term = ((x[t].astype(F32) * a1) + (vv * a2)) * wgt
                acc = acc + term
            for j in range(s):
                acc = acc + ffn_value(x[t], shared_factor(j))
            if b["sxs"] is not None:
                acc = acc + b["sxs"][g][t].astype(F32)
            sums[t] = acc
        outs.append((sums, done))
    return outs


def expected(cfg: dict, b: dict) -> list:
    """CombineV3 expectation: one rounding of the fp32 sum; unprocessed tokens 0."""
    out = []
    for item in expected_sums(cfg, b):
        if item is None:
            out.append(None)
            continue
        acc, done = item
        o = np.zeros(acc.shape, b["xdt"])
        o[done] = acc[done].astype(b["xdt"])
        out.append(o)
    return out


def run_round_trip(cfg: dict, arn: bool = False):
    b = build(cfg)
    extra = dict(b["consts"])
    d = moe_distribute_dispatch_v3(b["xs"], b["ids"], x_active_mask=b["masks"], elastic_info=b["info"],
                                   **b["attrs"])
    ffn = apply_ffn(cfg, b, d)
    args = dict(expand_x=ffn, expert_ids=b["ids"],
                assist_info_for_combine=[None if o is None else o.assist_info_for_combine for o in d],
                ep_send_counts=[None if o is None else o.ep_recv_counts for o in d], expert_scales=b["sc"],
                tp_send_counts=[None if o is None else o.tp_recv_counts for o in d], x_active_mask=b["masks"],
                elastic_info=b["info"], shared_expert_x=b["sxs"],
                ori_x=b["xs"] if (cfg["c"] or cfg["q"]) else None, comm_quant_mode=cfg["quant"], **extra,
                **b["attrs"])
    return b, args


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1))
def test_round_trip_combine(seed):
    cfg = random_config(seed)
    b, args = run_round_trip(cfg)
    out = moe_distribute_combine_v3(**args)
    want = expected(cfg, b)
    for g, (o, w) in enumerate(zip(out, want)):
        if w is None:
            assert o is None
            continue
        assert o.shape == w.shape and o.dtype == w.dtype
        assert np.array_equal(o.view(np.uint16), w.view(np.uint16)), (cfg, g)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1))
def test_round_trip_add_rms_norm(seed):
    cfg = dict(random_config(seed), fp16=False)
    b, args = run_round_trip(cfg)
    rng = np.random.default_rng(seed)
    res = [None if x is None else bf(rng.standard_normal((x.shape[0], 1, x.shape[1]))) for x in b["xs"]]
    gam = [None if x is None else bf(rng.standard_normal(x.shape[1])) for x in b["xs"]]
    eps = 1e-5
    out = moe_distribute_combine_add_rms_norm_v2(residual_x=res, gamma=gam, norm_eps=eps, **args)
    for g, item in enumerate(expected_sums(cfg, b)):
        if item is None:
            assert out[g] is None
            continue
        acc, done = item
        o = out[g]
        bs, h = acc.shape
        assert o.y.shape == (bs, 1, h) and o.rstd.shape == (bs, 1, 1) and o.x.shape == (bs, 1, h)
        for t in range(bs):
            if not done[t]:
                assert not o.y[t].astype(F32).any() and o.rstd[t, 0, 0] == 0 and not o.x[t].astype(F32).any()
                continue
            xs = acc[t] + res[g][t, 0].astype(F32)                      # fp32, acc not rounded first
            sq = (xs * xs) * (F32(1) / F32(h))
            ms = nm.reduce_sum_a3(sq[None])[0]
            rstd = F32(1) / np.sqrt(ms + F32(eps))
            y = ((xs * rstd).astype(BF16).astype(F32) * gam[g].astype(F32)).astype(BF16)
            assert np.array_equal(o.x[t, 0].view(np.uint16), xs.astype(BF16).view(np.uint16)), (cfg, g, t)
            assert o.rstd[t, 0, 0].view(np.uint32) == F32(rstd).view(np.uint32), (cfg, g, t)
            assert np.array_equal(o.y[t, 0].view(np.uint16), y.view(np.uint16)), (cfg, g, t)


def test_round_trip_add_rms_norm_x_equals_combine_with_zero_residual():
    cfg = dict(random_config(11), fp16=False)
    b, args = run_round_trip(cfg)
    res = [None if x is None else np.zeros((x.shape[0], 1, x.shape[1]), BF16) for x in b["xs"]]
    gam = [None if x is None else bf(np.ones(x.shape[1])) for x in b["xs"]]
    out = moe_distribute_combine_add_rms_norm_v2(residual_x=res, gamma=gam, **args)
    comb = moe_distribute_combine_v3(**args)
    for g, o in enumerate(out):
        if o is not None:
            assert np.array_equal(o.x[:, 0].view(np.uint16), comb[g].view(np.uint16))


@pytest.mark.parametrize("seed", [3, 8, 21])
def test_round_trip_fixed_seeds(seed):
    cfg = random_config(seed)
    b, args = run_round_trip(cfg)
    out = moe_distribute_combine_v3(**args)
    for o, w in zip(out, expected(cfg, b)):
        assert (o is None and w is None) or np.array_equal(o.view(np.uint16), w.view(np.uint16))


def test_round_trip_covers_features():
    """The random configurations exercise every feature at least once."""
    cfgs = [random_config(s) for s in range(200)]
    for key in ("elastic", "vary_bs", "sx", "fp16"):
        assert any(c[key] for c in cfgs), key
    assert any(c["tp"] == 2 for c in cfgs) and any(c["s"] > 0 for c in cfgs) and any(c["quant"] for c in cfgs)
    assert {c["mask"] for c in cfgs} == {"none", "1d", "2d"}
    assert any(c["z"] + c["c"] + c["q"] > 0 for c in cfgs)


def _cfg(**kw) -> dict:
    base = dict(seed=100, tp=0, ep=4, r=0, s_attr=1, s=0, lnum=1, m=4, z=0, c=0, q=0, k=2, mask="none",
                vary_bs=False, elastic=False, quant=0, sx=False, fp16=False)
    base.update(kw)
    return base


FEATURES = {
    "plain": _cfg(),
    "fp16": _cfg(fp16=True),
    "shared-experts-L2": _cfg(ep=5, r=2, s_attr=2, s=2, lnum=2, m=6, k=3),
    "shared-expert-replicated": _cfg(ep=5, r=2, s_attr=1, s=1, lnum=1, m=3),
    "shared-expert-x": _cfg(sx=True),
    "mask-1d": _cfg(mask="1d", seed=7),
    "mask-2d-special": _cfg(mask="2d", z=1, c=1, q=2, k=3, seed=8),
    "special-only-ids": _cfg(z=2, c=1, q=1, k=4, m=2, ep=2, lnum=1),
    "tp2": _cfg(tp=2, ep=3, m=3),
    "tp2-shared": _cfg(tp=2, ep=4, r=1, s_attr=1, s=1, m=3),
    "tp2-mask-2d": _cfg(tp=2, ep=2, m=2, mask="2d", k=2),
    "elastic": _cfg(elastic=True, ep=5, lnum=2, m=10, k=3),
    "elastic-shared-special": _cfg(elastic=True, ep=5, r=1, s_attr=1, s=1, lnum=1, m=4, z=1, c=1, k=3),
    "global-bs-varying": _cfg(vary_bs=True, seed=3),
    "int8-comm": _cfg(quant=2, lnum=2, m=8, k=3),
    "int8-comm-shared": _cfg(quant=2, ep=4, r=2, s_attr=2, s=2, m=2, k=1),
}


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_round_trip_feature(name):
    cfg = FEATURES[name]
    b, args = run_round_trip(cfg)
    out = moe_distribute_combine_v3(**args)
    want = expected(cfg, b)
    written = 0
    for o, w in zip(out, want):
        assert (o is None) == (w is None)
        if w is not None:
            assert np.array_equal(o.view(np.uint16), w.view(np.uint16)), name
            written += int(w.astype(F32).any(axis=1).sum())
    assert written > 0
    if cfg["elastic"]:
        assert sum(o is None for o in out) == 1
