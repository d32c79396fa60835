"""One result type on both backends: DeviceTensor speaks numpy's protocols, reference results behave like
it, and one user program gives the same bytes on the simulator and on the reference backend."""
from __future__ import annotations

import numpy as np
import pytest

import aclnn_py
from aclnn_py.dtypes import bfloat16
from aclnn_py.results import HostTensor, as_host_tensor

EP, BS, H, K, EXPERTS = 4, 3, 1024, 2, 8


def _inputs(rank: int):
    rng = np.random.default_rng(100 + rank)
    x = rng.standard_normal((BS, H)).astype(bfloat16)
    ids = np.stack([rng.choice(EXPERTS, K, replace=False) for _ in range(BS)]).astype(np.int32)
    w = rng.random((BS, K), dtype=np.float32)
    return x, ids, w


def user_program(ctx):
    """Written once, against aclnn_py.Tensor only: dispatch -> arithmetic on the outputs -> combine."""
    x, ids, w = _inputs(ctx.rank)
    common = dict(group_ep=ctx.group("ep"), ep_world_size=EP, ep_rank_id=ctx.ep_rank, moe_expert_num=EXPERTS)
    d = aclnn_py.moe_distribute_dispatch_v3(x, ids, **common)
    counts = d.expert_token_nums
    n_rows = int(np.asarray(counts).sum())                       # np.asarray of a result
    first, rows = counts[0], len(d.expand_x)                     # indexing, len
    y = (d.expand_x * np.asarray(1.5, bfloat16)).astype(bfloat16)   # arithmetic, an ndarray method
    y[first:n_rows] = y[first:n_rows] * np.asarray(0.5, bfloat16)   # the second local expert differs
    out = aclnn_py.moe_distribute_combine_v3(y, ids, d.assist_info_for_combine, d.ep_recv_counts, w,
                                             tp_send_counts=d.tp_recv_counts, **common)
    seen = dict(out=out.numpy(), counts=counts.numpy(), n_rows=n_rows, rows=rows, first=int(first),
                dtype=str(out.dtype), shape=out.shape, ndim=out.ndim, size=out.size,
                is_tensor=all(isinstance(t, aclnn_py.Tensor) for t in (*d, out)),
                sum_type=type(d.expand_x + 0).__name__, slice_type=type(d.ep_recv_counts[:2]).__name__,
                ufunc=np.abs(d.expand_x).view(np.uint16), recv=np.array(d.ep_recv_counts, dtype=np.int64))
    for t in (*d, out):
        t.free()
    return seen


def _run(backend: str) -> list:
    with aclnn_py.World.ep_tp(EP, backend=backend) as world:
        return world.run(user_program)


def test_one_program_both_backends_bit_for_bit(sim):
    ref, dev = _run("reference"), _run("device")
    for r in range(EP):
        assert ref[r].keys() == dev[r].keys()
        for key, value in ref[r].items():
            if isinstance(value, np.ndarray):
                assert value.dtype == dev[r][key].dtype, key
                np.testing.assert_array_equal(value.view(np.uint8), dev[r][key].view(np.uint8), err_msg=key)
            else:
                assert value == dev[r][key], (key, value, dev[r][key])
        assert ref[r]["is_tensor"] and ref[r]["sum_type"] == ref[r]["slice_type"] == "ndarray"


# ---- DeviceTensor's numpy protocols ---------------------------------------------------------------------
@pytest.fixture
def device(sim):
    with aclnn_py.Device(0) as dev:
        yield dev


def test_asarray_is_the_data_not_an_object_array(device):
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    t = aclnn_py.DeviceTensor.from_numpy(a)
    got = np.asarray(t)
    assert got.dtype == np.int32 and got.shape == (3, 4)
    np.testing.assert_array_equal(got, a)
    np.testing.assert_array_equal(np.asarray(t, np.float32), a.astype(np.float32))
    np.testing.assert_array_equal(np.array(t, dtype=np.int64, copy=True), a)
    with pytest.raises(ValueError, match="always copy"):
        t.__array__(copy=False)


def test_arithmetic_ufuncs_indexing_methods(device):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = aclnn_py.DeviceTensor.from_numpy(a)
    for got, want in ((t * 2, a * 2), (2 - t, 2 - a), (t @ t.T, a @ a.T), (-t, -a), (t == 3, a == 3),
                      (np.exp(t), np.exp(a)), (t[1], a[1]), (t[:, 1:], a[:, 1:]), (t.sum(axis=0), a.sum(axis=0)),
                      (t.astype(np.int8), a.astype(np.int8)), (t.reshape(3, 2), a.reshape(3, 2)),
                      (np.concatenate([t, t]), np.concatenate([a, a])), (list(t)[1], a[1])):
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, want)
    assert (t.shape, t.dtype, t.ndim, t.size, t.nbytes, len(t), t.tolist()) == \
           (a.shape, a.dtype, a.ndim, a.size, a.nbytes, len(a), a.tolist())
    with pytest.raises(AttributeError):
        t.fill(0)                                   # mutating ndarray methods are not faked on a copy
    assert {t} == {t}                               # hashing stays by identity


def test_in_place_forms_write_back(device):
    a = np.arange(6, dtype=np.float32)
    t = aclnn_py.DeviceTensor.from_numpy(a)
    t *= 2
    np.add(t, 1, out=t)
    t[0] = -5
    np.negative.at(t, [1])
    np.testing.assert_array_equal(t.numpy(), np.float32([-5, -3, 5, 7, 9, 11]))


def test_len_of_a_scalar_and_a_freed_tensor(device):
    s = aclnn_py.DeviceTensor.from_numpy(np.float32(3))
    with pytest.raises(TypeError, match="unsized"):
        len(s)
    s.free()
    with pytest.raises(aclnn_py.AclnnError, match="freed") as e:
        np.asarray(s)
    assert e.value.status == 161001


# ---- the reference backend's results behave the same way ------------------------------------------------
def test_host_tensor_results_compute_plain_arrays():
    h = as_host_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert isinstance(h, aclnn_py.Tensor) and isinstance(h, HostTensor)
    for got in (h * 2, h[0], h[:, 1:], np.exp(h), h.astype(np.int8), h + h):
        assert type(got) is np.ndarray
    assert type(h.sum()) is np.float32
    with h as same:
        assert same is h
    c = h.numpy()
    assert type(c) is np.ndarray and not np.shares_memory(c, h)
    h.free()                                         # a no-op: still readable
    np.testing.assert_array_equal(np.asarray(h), c)
