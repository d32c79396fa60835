"""DistributeBarrierV2 through World on both backends: 2..16 ranks, elastic, time-outs, validation."""
from __future__ import annotations

import time

import numpy as np
import pytest

import aclnn_py
from aclnn_py import validate
from aclnn_py.errors import AclnnError, AclnnPyError
from aclnn_py.reference.barrier import barrier_participants

from aclnn_py.layout import make_elastic_info as elastic_table


def run_barrier(backend, n, *, ranks=None, time_out=None, elastic_info=None, rounds=2):
    with aclnn_py.World(n, backend=backend, groups={"b": [list(range(n))]}) as world:
        def fn(ctx):
            x = np.full((2, 3), ctx.rank, np.float32)
            for _ in range(rounds):
                out = aclnn_py.distribute_barrier_v2(x, group=ctx.group("b"), world_size=n, time_out=time_out,
                                                     elastic_info=elastic_info)
            return out
        return world.run(fn, ranks=ranks)


@pytest.mark.parametrize("n", range(2, 17))
def test_barrier_all_ranks(backend, n):
    out = run_barrier(backend, n, time_out=20_000_000)
    assert [int(o[0, 0]) for o in out] == list(range(n))


@pytest.mark.parametrize("removed", [[3], [0, 5], [1, 2, 6, 7]])
def test_barrier_elastic_scale_down(backend, removed):
    info = elastic_table(8, removed)
    survivors = [r for r in range(8) if r not in removed]
    out = run_barrier(backend, 8, ranks=survivors, elastic_info=info, time_out=20_000_000)
    assert [o is not None for o in out] == [r not in removed for r in range(8)]


def test_barrier_elastic_flag_zero_means_everyone(backend):
    info = elastic_table(4, [1])
    info[0] = 0
    with pytest.raises(AclnnPyError) as e:
        run_barrier(backend, 4, ranks=[0, 2, 3], elastic_info=info, time_out=200_000, rounds=1)
    assert e.value.status == 507015 and "[1]" in str(e.value)


def test_barrier_timeout_when_a_rank_never_calls(backend):
    t0 = time.monotonic()
    with pytest.raises(AclnnPyError) as e:
        run_barrier(backend, 4, ranks=[0, 1, 2], time_out=300_000, rounds=1)
    assert time.monotonic() - t0 < 10
    assert e.value.status == 507015 and "3" in str(e.value)


def test_barrier_time_out_zero_fails_at_once(backend):
    with pytest.raises(AclnnPyError) as e:
        run_barrier(backend, 2, time_out=0, rounds=1)
    assert e.value.status == 507015


def test_participants():
    assert barrier_participants(4) == [0, 1, 2, 3]
    assert barrier_participants(4, elastic_table(4, [2])) == [0, 1, 3]


X = np.zeros((2, 3), np.float32)
I32 = np.int32


def _info(ws=4, removed=()):
    return elastic_table(ws, list(removed))


VALID = dict(x_ref=X, group="g", world_size=4)
CASES = [
    # (description, overrides, expected status or None for "passes")
    ("x_ref missing", dict(x_ref=None), 161001),
    ("group missing", dict(group=None), 161001),
    ("group empty", dict(group=""), 161002),
    ("group 127 bytes", dict(group="g" * 127), None),
    ("group 128 bytes", dict(group="g" * 128), 161002),
    ("x_ref complex", dict(x_ref=np.zeros(2, np.complex64)), 161002),
    ("x_ref float64", dict(x_ref=np.zeros(2, np.float64)), 161002),
    ("x_ref bool", dict(x_ref=np.zeros(2, np.bool_)), None),
    ("x_ref 0-D", dict(x_ref=np.zeros((), np.int8)), None),
    ("x_ref 8-D", dict(x_ref=np.zeros((1,) * 8, np.uint64)), None),
    ("x_ref 9-D", dict(x_ref=np.zeros((1,) * 9, np.uint64)), 161002),
    ("time_out int64", dict(time_out=np.zeros(1, np.int64)), 161002),
    ("elastic int64", dict(elastic_info=_info().astype(np.int64)), 161002),
    ("world_size 1", dict(world_size=1), 561002),
    ("world_size 2", dict(world_size=2, elastic_info=None), None),
    ("world_size 384", dict(world_size=384), None),
    ("world_size 385", dict(world_size=385), 561002),
    ("time_out 2-D", dict(time_out=np.zeros((1, 1), I32)), 561002),
    ("time_out (2,)", dict(time_out=np.zeros(2, I32)), 561002),
    ("time_out (1,)", dict(time_out=np.zeros(1, I32)), None),
    ("time_out int", dict(time_out=5), None),
    ("elastic 2-D", dict(elastic_info=_info().reshape(1, -1)), 561002),
    ("elastic short", dict(elastic_info=_info()[:-1]), 561002),
    ("elastic ok", dict(elastic_info=_info(4, [2])), None),
    ("elastic Table2 duplicate", dict(elastic_info=np.array([1, 2, 0, 0, 0, 1, -1, -1, 0, 0, -1, -1], I32)), 561002),
    ("elastic count too large", dict(elastic_info=np.array([1, 5, 0, 0, 0, 1, 2, 3, 0, 1, 2, 3], I32)), 561002),
    ("elastic removed rank not -1", dict(elastic_info=np.array([1, 3, 0, 0, 0, 1, 2, 2, 0, 1, 2, -1], I32)), 561002),
]


@pytest.mark.parametrize("desc,over,status", CASES, ids=[c[0] for c in CASES])
def test_barrier_validation(desc, over, status):
    args = {**VALID, **over}
    if status is None:
        validate.distribute_barrier_v2(**args)
        return
    with pytest.raises(AclnnError) as e:
        validate.distribute_barrier_v2(**args)
    assert e.value.status == status
    param = next(iter(over))
    assert f"'{param}'" in str(e.value)


def test_validation_happens_before_any_device_work(backend):
    with aclnn_py.World(2, backend=backend) as world:
        with pytest.raises(AclnnError) as e:
            world.run(lambda ctx: aclnn_py.distribute_barrier_v2(X, group=ctx.group("world"), world_size=1))
    assert e.value.status == 561002 and "world_size" in str(e.value)
