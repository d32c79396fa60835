"""The upstream tiling and op_api unit tests of both CANN source snapshots, run through aclnn_py.validate.

Every A3 case of ``tests/upstream_tiling/cases_<snapshot>.py`` runs under the rule profile of its snapshot's
release (``validate_case(case, profile)``: c29bc10 -> CANN 8.5.0.alpha001, 5778144 -> 9.1.0, ``cann_version=``)
and must reach the upstream outcome: a tiling test that expects success must pass our validation, one that
expects failure must raise :class:`AclnnError` (161001 / 161002 / 561002); an op_api test compares only the
statuses the op_api layer returns, because its harness runs neither the inner operator's checks nor the tiling.
Exceptions, each with the source line that decides it (``docs/upstream-tiling-tests.md``):

* ``PENDING_PROFILE``: cases whose snapshot's rule the release profile does not model yet (none left);
  ``xfail(strict=True)`` so that they fail loudly once it does and the entry must go;
* ``VALIDATOR_GAPS``: rules both snapshots enforce and aclnn_py does not yet; ``xfail(strict=True)``;
* ``DELIBERATE``: aclnn_py keeps a documented rule the snapshot's CANN code does not enforce, or the upstream
  test reaches the tiling by a path no aclnn call can take; asserted as the rejection we give.
"""
from __future__ import annotations

import collections
import functools
import inspect
import math
from types import SimpleNamespace
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import ml_dtypes
import numpy as np
import pytest

from aclnn_py import releases, validate
from aclnn_py.errors import (ACLNN_ERR_INNER_TILING_ERROR, ACLNN_ERR_PARAM_INVALID, ACLNN_ERR_PARAM_NULLPTR,
                             AclnnError)
from upstream_tiling import APIS, OPS, Case, MiB, Tensor, cases_5778144, cases_c29bc10

PROFILES = {"c29bc10": cases_c29bc10, "5778144": cases_5778144}
TILING_STATUSES = (ACLNN_ERR_PARAM_NULLPTR, ACLNN_ERR_PARAM_INVALID, ACLNN_ERR_INNER_TILING_ERROR)
OP_API_STATUSES = (ACLNN_ERR_PARAM_NULLPTR, ACLNN_ERR_PARAM_INVALID)

_DTYPES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "int8": np.int8,
           "int32": np.int32, "int64": np.int64, "bool": np.bool_, "float8_e5m2": ml_dtypes.float8_e5m2,
           "float8_e4m3fn": ml_dtypes.float8_e4m3fn}

# 5778144 cases whose outcome follows a rule 5778144 changed and the 9.1.0 profile does not model (none left:
# docs/upstream-tiling-tests.md, "5778144: results")
PENDING_PROFILE: Dict[Tuple[str, str], str] = {}
# rules both snapshots' tilings enforce that aclnn_py.validate does not check yet
VALIDATOR_GAPS: Dict[Tuple[str, str, str], str] = {}
_GROUP = ("the op_api layer logs a group name of length 0 or >= 128 but returns `false`, i.e. ACLNN_SUCCESS "
          "(oBA.cpp:37-43, nBB:68-72), and the tiling checks only for NULL; aclnn_py rejects it (documented rule)")
_ARN = ("the test runs the CombineV2 tiling with AddRmsNorm outputs and float16 expand_x; the only aclnn call "
        "that reaches that configuration, aclnnMoeDistributeCombineAddRmsNormV2, takes bfloat16 only (nAdef:23-27)")
# (status we give, parameter our message names, why)
DELIBERATE = {
    ("c29bc10", "barrier", "test_aclnn_distribute_barrier_v2_first_api_group_min"):
        (ACLNN_ERR_PARAM_INVALID, "group", _GROUP),
    ("5778144", "barrier", "TestAclnnDistributeBarrierV2FirstApiGroupMin"):
        (ACLNN_ERR_PARAM_INVALID, "group", _GROUP),
    ("5778144", "combine", "XActivateMask2dims"):
        (ACLNN_ERR_INNER_TILING_ERROR, "assist_info_for_combine",
         "5778144 fails assist_info_for_combine >= 128 * A (nCT:1235) but its caller returns ge::GRAPH_FAILED from "
         "a bool function (nCT:1377), read as success; issue 11 item 2: keep the documented rule and say that this "
         "release does not enforce it"),
    ("5778144", "add_rms_norm", "ARN_BasicSuccess"): (ACLNN_ERR_PARAM_INVALID, "expand_x", _ARN),
    ("5778144", "add_rms_norm", "ARN_Int8Quant"): (ACLNN_ERR_PARAM_INVALID, "expand_x", _ARN),
}

# A3 cases per snapshot, layer and operator (docs/upstream-tiling-tests.md, "Counts")
EXPECTED_COUNTS = {
    ("c29bc10", "tiling"): {"dispatch": 17, "combine": 14, "add_rms_norm": 1, "barrier": 6},
    ("c29bc10", "op_api"): {"barrier": 5},
    ("5778144", "tiling"): {"dispatch": 80, "combine": 27, "add_rms_norm": 3, "barrier": 14},
    ("5778144", "op_api"): {"add_rms_norm": 4, "barrier": 10},
}
# attribute names per operator, in op-definition order
_ATTR_ORDER = {
    "dispatch": ("group_ep", "ep_world_size", "ep_rank_id", "moe_expert_num", "group_tp", "tp_world_size",
                 "tp_rank_id", "expert_shard_type", "shared_expert_num", "shared_expert_rank_num", "quant_mode",
                 "global_bs", "expert_token_nums_type", "comm_alg", "zero_expert_num", "copy_expert_num",
                 "const_expert_num"),
    "combine": ("group_ep", "ep_world_size", "ep_rank_id", "moe_expert_num", "group_tp", "tp_world_size",
                "tp_rank_id", "expert_shard_type", "shared_expert_num", "shared_expert_rank_num", "global_bs",
                "out_dtype", "comm_quant_mode", "group_list_type", "comm_alg", "zero_expert_num",
                "copy_expert_num", "const_expert_num"),
    "barrier": ("group", "world_size"),
}
_ATTR_ORDER["add_rms_norm"] = _ATTR_ORDER["combine"][:15] + ("norm_eps",) + _ATTR_ORDER["combine"][15:]


class Spec(NamedTuple):
    """Shape-and-dtype stand-in (a device tensor): the validators' value rules skip it, as tiling does."""

    shape: Tuple[int, ...]
    dtype: Any
    format: str = "ND"


def stand_in(t: Tensor) -> Spec:
    return Spec(tuple(t.shape), np.dtype(_DTYPES[t.dtype]), t.format)


# the CANN release of each snapshot (aclnn_py.releases): its cases run under that release's rule profile
RELEASES = {"c29bc10": releases.OLD_SNAPSHOT, "5778144": releases.NEW_SNAPSHOT}
_PUBLIC = ("moe_distribute_dispatch_v3", "moe_distribute_dispatch_v4", "moe_distribute_combine_v3",
           "moe_distribute_combine_v4", "moe_distribute_combine_add_rms_norm_v2", "distribute_barrier_v2")


def validators(profile: str) -> SimpleNamespace:
    """The public validators (``aclnn_py.validate``) under the release of snapshot ``profile``
    (``cann_version=`` bound: c29bc10 -> 8.5.0.alpha001, 5778144 -> 9.1.0)."""
    release = RELEASES[profile]
    return SimpleNamespace(**{name: functools.partial(getattr(validate, name), cann_version=release)
                              for name in _PUBLIC})


def case_env(case: Case, profile: str) -> Dict[str, str]:
    """The environment the validators read for ``case``.

    5778144 dispatch / combine take the window from the communicator's buffer (nTU:227-269), which the test
    harness mocks; HCCL gives a communicator HCCL_BUFFSIZE when it honours the variable, so the mocked size is
    passed as HCCL_BUFFSIZE, rounded up to whole MB (what a World passes the validators: the value the
    communicator was created with). comm_alg="hierarchy" reads the environment variable (nTU:257-258).
    """
    hierarchy = case.attrs.get("comm_alg") == "hierarchy"       # reads HCCL_BUFFSIZE itself (nTU:257-258)
    if case.snapshot == "5778144" and case.layer == "tiling" and case.op != "barrier" and not hierarchy:
        size = case.env.ccl_buffer_bytes or cases_5778144.MOCK_DEFAULTS.ccl_buffer_bytes
        return {"HCCL_BUFFSIZE": str(math.ceil(size / MiB))}
    return {} if case.env.hccl_buffsize is None else {"HCCL_BUFFSIZE": case.env.hccl_buffsize}


def _call(fn: Callable, tensors: Dict[str, Spec], **kwargs: Any) -> None:
    """``fn`` with its tensor parameters from ``tensors`` (absent = None); tensors it does not take are left out."""
    params = inspect.signature(fn).parameters
    args = {name: tensors.get(name) for name, p in params.items()
            if name in tensors or (p.default is inspect.Parameter.empty and p.kind != p.KEYWORD_ONLY)}
    fn(**args, **kwargs)


def validate_case(case: Case, profile: str) -> Optional[AclnnError]:
    """Run ``case`` through the validators of ``profile``; the AclnnError raised, or None when they accept it."""
    v = validators(profile)
    inputs = {n: stand_in(t) for n, t in case.inputs.items()}
    outputs = {n: stand_in(t) for n, t in case.outputs.items()}
    attrs = dict(case.attrs)
    env = case_env(case, profile)
    v4 = "performance_info" in inputs          # an input of the V4 API only (cann-versions.md section 2)
    try:
        if case.op == "dispatch":
            _call(v.moe_distribute_dispatch_v4 if v4 else v.moe_distribute_dispatch_v3, inputs, outputs=outputs,
                  env=env, **attrs)
        elif case.op == "combine":
            _call(v.moe_distribute_combine_v4 if v4 else v.moe_distribute_combine_v3, inputs, outputs=outputs.get("x"),
                  env=env, **attrs)
        elif case.op == "add_rms_norm":
            outs = tuple(outputs.get(n) for n in ("y", "rstd", "x")) if outputs else None
            _call(v.moe_distribute_combine_add_rms_norm_v2, inputs, outputs=outs, env=env, **attrs)
        else:
            _call(v.distribute_barrier_v2, inputs, **attrs)
    except AclnnError as err:
        return err
    return None


def agrees(case: Case, err: Optional[AclnnError]) -> bool:
    """Whether our result ``err`` matches what the upstream test asserts."""
    expect = case.expect
    if case.layer == "tiling":
        return err is None if expect.success else (err is not None and err.status in TILING_STATUSES)
    got = err.status if err is not None and err.status in OP_API_STATUSES else 0
    return got == expect.status if expect.status is not None else got != expect.status_not


def describe(case: Case, err: Optional[AclnnError]) -> str:
    return f"{APIS[case.op]} {case.source}: upstream expects {case.expect}; aclnn_py gives {err or 'success'}"


def _key(case: Case) -> Tuple[str, str, str]:
    return case.snapshot, case.op, case.name


def _marks(case: Case) -> tuple:
    reason = VALIDATOR_GAPS.get(_key(case))
    if reason is None and case.snapshot == "5778144":
        reason = PENDING_PROFILE.get((case.op, case.name))
    return (pytest.mark.xfail(strict=True, reason=reason),) if reason else ()


def _params(deliberate: bool) -> list:
    return [pytest.param(profile, case, marks=_marks(case), id=f"{profile}-{case.op}-{case.layer}-{case.name}")
            for profile, module in PROFILES.items() for case in module.CASES
            if (_key(case) in DELIBERATE) == deliberate]


@pytest.mark.parametrize("profile,case", _params(deliberate=False))
def test_upstream_case(profile: str, case: Case) -> None:
    err = validate_case(case, profile)
    assert agrees(case, err), describe(case, err)


# what the message of a deliberate rejection must say besides the parameter
DELIBERATE_NOTES = {("5778144", "combine", "XActivateMask2dims"): "CANN 9.1.0 does not enforce it"}


@pytest.mark.parametrize("profile,case", _params(deliberate=True))
def test_deliberate_disagreement(profile: str, case: Case) -> None:
    status, param, _why = DELIBERATE[_key(case)]
    err = validate_case(case, profile)
    assert not agrees(case, err), describe(case, err)
    assert err is not None and err.status == status, describe(case, err)
    assert f"'{param}'" in str(err), str(err)
    assert DELIBERATE_NOTES.get(_key(case), "") in str(err), str(err)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_counts_per_snapshot(profile: str) -> None:
    counts = collections.defaultdict(collections.Counter)
    for case in PROFILES[profile].CASES:
        counts[(case.snapshot, case.layer)][case.op] += 1
    assert {k: dict(c) for k, c in counts.items()} == {k: c for k, c in EXPECTED_COUNTS.items() if k[0] == profile}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_records_are_complete(profile: str) -> None:
    """Every case names its snapshot, a known operator, every attribute in op-definition order, once."""
    seen = set()
    for case in PROFILES[profile].CASES:
        assert case.snapshot == profile and case.op in OPS and case.layer in ("tiling", "op_api"), case.name
        assert tuple(case.attrs) == _ATTR_ORDER[case.op], case.name
        assert all(t.dtype in _DTYPES and all(d >= 0 for d in t.shape)
                   for t in (*case.inputs.values(), *case.outputs.values())), case.name
        assert (case.expect.success is not None) or case.layer == "op_api", case.name
        assert _key(case) not in seen, case.name
        seen.add(_key(case))


def test_exception_tables_name_existing_cases() -> None:
    keys = {_key(case) for module in PROFILES.values() for case in module.CASES}
    pending = {("5778144",) + k for k in PENDING_PROFILE}
    for table in (pending, VALIDATOR_GAPS, DELIBERATE):
        assert set(table) <= keys, set(table) - keys
    assert not (pending & set(DELIBERATE)) and not (set(VALIDATOR_GAPS) & set(DELIBERATE))
