"""HCCL_BUFFSIZE end to end (issue 6): every MoE op checks the window against the documented formula before
the call, on both backends' per-rank ops, and the error says the value needed."""
from __future__ import annotations

import ctypes
import dataclasses

import numpy as np
import pytest

import aclnn_py
from aclnn_py.demos.scenario import Scenario, ffn_stand_in, run
from aclnn_py.validate import required_hccl_buffsize_mb

from hardening_support import HANG_MS, HANG_S, env, world

# H = 7168, maxBs = 16, ep = 4, L = 1, K = 3, S = 0: 2*(16*14848*4 + 16*14336*3) bytes = 3.125 MiB -> 4 MB
SC = Scenario(name="window", ep_world_size=4, bs=16, h=7168, k=3, moe_expert_num=4, combine="combine")
NEED_MB = required_hccl_buffsize_mb(h=7168, max_bs=16, ep_world_size=4, local_expert_num=1, k=3, shared_expert_num=0)


def test_formula_value():
    assert NEED_MB == 4


def _last_call(ctx) -> str:
    if ctx.backend != "device":
        return ""
    from aclnn_py.runtime.library import get_library
    buf = ctypes.create_string_buffer(4096)
    get_library().aclsimLastCall(buf, len(buf))
    return buf.value.decode()


def _dispatch(ctx, inputs, state):
    inp = inputs[ctx.rank]
    try:
        state[ctx.rank] = aclnn_py.moe_distribute_dispatch_v3(
            inp["x"], inp["expert_ids"], group_ep=ctx.group("ep"), ep_world_size=4, ep_rank_id=ctx.ep_rank,
            moe_expert_num=4)
    except aclnn_py.AclnnError as e:
        return e, _last_call(ctx)
    return None, _last_call(ctx)


def _combine(ctx, inputs, state, op):
    inp, d = inputs[ctx.rank], state[ctx.rank]
    expand = ffn_stand_in(d.expand_x.numpy(), d.dynamic_scales.numpy(), SC.dtype)
    args = (expand, inp["expert_ids"], d.assist_info_for_combine, d.ep_recv_counts, inp["expert_scales"])
    common = dict(group_ep=ctx.group("ep"), ep_world_size=4, ep_rank_id=ctx.ep_rank, moe_expert_num=4,
                  tp_send_counts=d.tp_recv_counts)
    try:
        if op == "combine":
            aclnn_py.moe_distribute_combine_v3(*args, **common).free()
        else:
            for t in aclnn_py.moe_distribute_combine_add_rms_norm_v2(*args, inp["residual_x"], inp["gamma"], **common):
                t.free()
    except aclnn_py.AclnnError as e:
        return e, _last_call(ctx)
    return None, _last_call(ctx)


def _free(ctx, state):
    for t in state.pop(ctx.rank, ()) or ():
        t.free()


@pytest.mark.parametrize("op", ["dispatch", "combine", "arn"])
def test_too_small_hccl_buffsize_is_refused_before_the_call(backend, op):
    """HCCL_BUFFSIZE one MB short: every rank raises 561002 saying `export HCCL_BUFFSIZE=4`, and on the device
    backend the operator is never called (the check is aclnn_py's, before GetWorkspaceSize)."""
    inputs, state = SC.inputs(), {}
    with env(ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS), world(backend, timeout_s=HANG_S) as w:
        try:
            with env(HCCL_BUFFSIZE=str(NEED_MB - 1 if op == "dispatch" else NEED_MB)):
                got = w.run(_dispatch, inputs, state)
            if op != "dispatch":
                assert all(err is None for err, _ in got), got
                with env(HCCL_BUFFSIZE=str(NEED_MB - 1)):
                    got = w.run(_combine, inputs, state, op)
        finally:
            w.run(_free, state)
    for r, (err, last) in enumerate(got):
        assert isinstance(err, aclnn_py.AclnnError), (r, err)
        assert err.status == 561002, err
        text = str(err)
        assert f"needs at least {NEED_MB} MB" in text and f"export HCCL_BUFFSIZE={NEED_MB}" in text, text
        assert f"HCCL_BUFFSIZE={NEED_MB - 1} MB" in text, text
        assert "aclnnMoeDistribute" not in last, f"rank {r}: the operator was called: {last}"


def test_exact_hccl_buffsize_runs_and_matches(backend):
    """At exactly the documented minimum the whole pipeline runs and equals the reference."""
    with env(HCCL_BUFFSIZE=str(NEED_MB), ACLNN_SIM_HANG_TIMEOUT_MS=HANG_MS), world(backend, timeout_s=HANG_S) as w:
        for combine in ("combine", "add_rms_norm"):
            out = run(dataclasses.replace(SC, combine=combine), w)
            assert out.ok, out.failures()[:5]


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-4", "3.5"])
def test_malformed_hccl_buffsize_is_refused(backend, value):
    """CANN would silently read these as 200 MB or wrap them: aclnn_py refuses, naming the variable and the
    value this call needs."""
    inputs = SC.inputs()

    def fn(ctx):
        inp = inputs[ctx.rank]
        with pytest.raises(aclnn_py.AclnnError) as e:
            aclnn_py.moe_distribute_dispatch_v3(inp["x"], inp["expert_ids"], group_ep=ctx.group("ep"), ep_world_size=4,
                                                ep_rank_id=ctx.ep_rank, moe_expert_num=4)
        return e.value

    with env(HCCL_BUFFSIZE=value), world(backend, timeout_s=HANG_S) as w:
        errs = w.run(fn)
    for e in errs:
        assert e.status == 561002 and f"HCCL_BUFFSIZE={value!r}" in str(e), str(e)
        assert f"export HCCL_BUFFSIZE={NEED_MB}" in str(e), str(e)


def test_default_200_mb_is_reported_as_the_default(backend):
    """Unset: the 200 MB default applies; a configuration needing more says so and names the default."""
    big = dict(h=7168, max_bs=512, ep_world_size=4, local_expert_num=8, k=8, shared_expert_num=0)
    need = required_hccl_buffsize_mb(**big)
    assert need > 200
    x = np.zeros((512, 7168), aclnn_py.dtypes.bfloat16)
    ids = np.tile(np.arange(8, dtype=np.int32), (512, 1))

    def fn(ctx):
        with pytest.raises(aclnn_py.AclnnError) as e:
            aclnn_py.moe_distribute_dispatch_v3(x, ids, group_ep=ctx.group("ep"), ep_world_size=4,
                                                ep_rank_id=ctx.ep_rank, moe_expert_num=32)
        return e.value

    with env(), world(backend, timeout_s=HANG_S) as w:
        import os
        saved = os.environ.pop("HCCL_BUFFSIZE", None)
        try:
            errs = w.run(fn)
        finally:
            if saved is not None:
                os.environ["HCCL_BUFFSIZE"] = saved
    for e in errs:
        assert e.status == 561002 and "HCCL_BUFFSIZE=200 MB (unset: the default)" in str(e), str(e)
        assert f"export HCCL_BUFFSIZE={need}" in str(e), str(e)
