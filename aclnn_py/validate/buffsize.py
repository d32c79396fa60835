"""HCCL_BUFFSIZE: the window size the MoE distribute ops need, and the tiling check that enforces it.

The A3 tiling of DispatchV2/V3 and CombineV2/V3 (``CheckWinSize``; ``dispatch-v3.md`` §12,
``combine-addrmsnorm-barrier.md`` §8.1 row 37) rejects a call with 561002 when the HCCL window is
too small for the worst case of one dispatch plus one combine, double-buffered::

    window  = HCCL_BUFFSIZE (MB, default 200) * 2**20
    cmbTok  = Align512(2*H)
    dspTok  = Align512(Align32(2*H) + 44)                  # "" and "fullmesh_v1"
    dspTok  = ceil((Align32(2*H) + 44) / 480) * 512        # "fullmesh_v2"
    need    = 2 * (maxBs*dspTok*ep*L + maxBs*cmbTok*(K + S))
    error if need > window

``L`` is the MoE experts per MoE rank from the attributes (also on shared-expert ranks), ``S`` the
shared-expert count after the ``(1, 0) -> 0`` normalisation, 2 bytes per element whatever the dtype.
CANN reads the variable with ``std::stoi`` into a ``uint16_t`` (non-numbers silently mean 200 MB,
values >= 65536 wrap); this module refuses such values with a clear error instead.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from ..errors import ACLNN_ERR_INNER_TILING_ERROR, AclnnError
from ..layout import normalised_shared_expert_num
from .limits import BS_MAX, EP_MAX, EP_MIN, H_MAX, H_MIN, INT32_MAX, K_MAX, M_MAX, SHARED_MAX
from . import rules as R

ENV_NAME = "HCCL_BUFFSIZE"
DEFAULT_MB = 200
MAX_MB = 65535            # the tiling stores the value in a uint16_t
MB = 1024 * 1024

_WIN_ADDR_ALIGN = 512     # window token start alignment
_UB_ALIGN = 32
_SCALE_TRIPLE_BYTES = 44  # 32 B scale block + 3 * 4 B triple
_FULLMESH_V2_ALIGN = 480
_DTYPE_BYTES = 2          # MAX_OUT_DTYPE_SIZE: the formula always counts 2 bytes per element
_HIERARCHY_FIXED = 404 * 1024 * 1024    # comm_alg="hierarchy": 400 MiB cross-supernode window + 4 MiB RDMA state


def _align(v: int, a: int) -> int:
    return (v + a - 1) // a * a


HELPER = "aclnn_py.required_hccl_buffsize"
COMM_ALGS = ("", "fullmesh_v1", "fullmesh_v2")   # the A3 DispatchV3 tiling's commAlg values (None means "")
# what each argument of the public helpers may be (the ranges of the operators that use the window)
_ARG_RANGES = {"h": (H_MIN, H_MAX), "max_bs": (1, INT32_MAX), "ep_world_size": (EP_MIN, EP_MAX),
               "local_expert_num": (1, M_MAX), "k": (1, K_MAX), "shared_expert_num": (0, SHARED_MAX),
               "shared_expert_rank_num": (0, EP_MAX - 1), "moe_expert_num": (1, M_MAX), "bs": (1, BS_MAX),
               "global_bs": (0, INT32_MAX)}


def _arg(kwargs: Mapping[str, object], name: str) -> int:
    value = R.integer(HELPER, name, kwargs[name])
    R.in_range(HELPER, name, value, *_ARG_RANGES[name])
    return value


def _window_args(kw: Mapping[str, object]) -> dict:
    """The window formula's inputs from the helpers' arguments, as the operators derive them (AclnnError 161001 /
    161002 / 561002 naming the argument): ``max_bs`` given, else ``global_bs / ep`` (when non-zero), else ``bs``;
    ``local_expert_num`` given, else ``moe_expert_num / (ep - shared_expert_rank_num)``; ``shared_expert_num``
    normalised (1 with no shared-expert ranks means none)."""
    out = {name: _arg(kw, name) for name in ("h", "ep_world_size", "k")}
    ep = out["ep_world_size"]
    r = _arg(kw, "shared_expert_rank_num")
    if kw["max_bs"] is not None:
        out["max_bs"] = _arg(kw, "max_bs")
    elif kw["global_bs"]:
        gbs = _arg(kw, "global_bs")
        R.require(gbs >= ep, HELPER, R.TILING, "global_bs", f"0 or >= ep_world_size ({ep}): max BS * ep", gbs)
        out["max_bs"] = gbs // ep
    elif kw["bs"] is not None:
        out["max_bs"] = _arg(kw, "bs")
    else:
        R.fail(HELPER, R.NULLPTR, "max_bs", "given, or bs / global_bs as the operator takes them", None)
    if kw["local_expert_num"] is not None:
        out["local_expert_num"] = _arg(kw, "local_expert_num")
    elif kw["moe_expert_num"] is not None:
        R.require(r < ep, HELPER, R.TILING, "shared_expert_rank_num", f"< ep_world_size ({ep})", r)
        m = _arg(kw, "moe_expert_num")
        R.require(m >= ep - r, HELPER, R.TILING, "moe_expert_num",
                  f">= the MoE ranks (ep_world_size - shared_expert_rank_num = {ep - r})", m)
        out["local_expert_num"] = m // (ep - r)
    else:
        R.fail(HELPER, R.NULLPTR, "local_expert_num", "given, or moe_expert_num as the operator takes it", None)
    out["shared_expert_num"] = normalised_shared_expert_num(_arg(kw, "shared_expert_num"), r)
    alg = R.string(HELPER, "comm_alg", kw["comm_alg"], optional=True)
    R.one_of(HELPER, "comm_alg", alg, (None,) + COMM_ALGS)
    out["comm_alg"] = alg or ""
    return out


def required_hccl_buffsize_bytes(*, h: int, ep_world_size: int, k: int, max_bs: Optional[int] = None,
                                 bs: Optional[int] = None, global_bs: int = 0, local_expert_num: Optional[int] = None,
                                 moe_expert_num: Optional[int] = None, shared_expert_num: int = 1,
                                 shared_expert_rank_num: int = 0, comm_alg: Optional[str] = "") -> int:
    """Bytes of HCCL window the tiling requires (the ``need`` above); arguments as :func:`required_hccl_buffsize_mb`."""
    return _need_bytes(**_window_args(locals()))


def _need_bytes(*, h: int, max_bs: int, ep_world_size: int, local_expert_num: int, k: int,
                shared_expert_num: int, comm_alg: str) -> int:
    """The window formula for validated arguments."""
    ep, lnum, s = ep_world_size, local_expert_num, shared_expert_num
    tok_combine = _align(h * _DTYPE_BYTES, _WIN_ADDR_ALIGN)
    tok_actual = _align(h * _DTYPE_BYTES, _UB_ALIGN) + _SCALE_TRIPLE_BYTES
    if comm_alg == "fullmesh_v2":
        tok_dispatch = -(-tok_actual // _FULLMESH_V2_ALIGN) * _WIN_ADDR_ALIGN
    else:
        tok_dispatch = _align(tok_actual, _WIN_ADDR_ALIGN)
    return 2 * (max_bs * tok_dispatch * ep * lnum + max_bs * tok_combine * (k + s))


def required_hccl_buffsize_mb(*, h: int, ep_world_size: int, k: int, max_bs: Optional[int] = None,
                              bs: Optional[int] = None, global_bs: int = 0, local_expert_num: Optional[int] = None,
                              moe_expert_num: Optional[int] = None, shared_expert_num: int = 1,
                              shared_expert_rank_num: int = 0, comm_alg: Optional[str] = "") -> int:
    """Smallest whole ``HCCL_BUFFSIZE`` (MB) that passes the tiling check of DispatchV3 / CombineV3 calls.

    Takes the operators' own keywords and defaults: ``h`` (x's last dim), ``ep_world_size``, ``k`` (top-k),
    ``bs`` (tokens per rank) or ``global_bs`` (the attribute: max BS * ep), ``moe_expert_num``,
    ``shared_expert_num=1`` and ``shared_expert_rank_num=0`` (normalised as the operators do: 1 shared expert on
    no rank is none), ``comm_alg``. The derived quantities may be given instead: ``max_bs``
    (``globalBs_eff / ep``) and ``local_expert_num`` (``M / (ep - R)``). Example: H=7168, BS=32, ep=16, M=256,
    K=8 -> 239 MB (247 with ``"fullmesh_v2"``). :func:`required_hccl_buffsize_mb_for_call` takes a call's
    keyword arguments. Bad arguments raise :class:`aclnn_py.AclnnError` naming them.
    """
    return -(-required_hccl_buffsize_bytes(**locals()) // MB)


def required_hccl_buffsize_mb_for_call(**call: Any) -> int:
    """The ``HCCL_BUFFSIZE`` (MB) one DispatchV3 / CombineV3 / CombineAddRmsNormV2 call needs, from that call's own
    keyword arguments (``x`` or ``expand_x``, ``expert_ids``, the attributes; anything else is ignored)."""
    x = call.get("x", call.get("expand_x"))
    ids = call.get("expert_ids")
    for name, t in (("x", x), ("expert_ids", ids)):
        R.require(t is not None and R.is_tensor(t), HELPER, R.NULLPTR, name, "a tensor of the call", t)
    R.require(len(ids.shape) == 2 and len(x.shape) >= 2, HELPER, R.TILING, "expert_ids", "2-D, with x 2-D or more",
              tuple(ids.shape))
    keys = ("ep_world_size", "moe_expert_num", "global_bs", "shared_expert_num", "shared_expert_rank_num", "comm_alg")
    return required_hccl_buffsize_mb(h=int(x.shape[-1]), k=int(ids.shape[1]), bs=int(ids.shape[0]),
                                     **{key: call[key] for key in keys if key in call})


def hccl_buffsize_mb(op: str, env: Optional[Mapping[str, str]] = None, *, suggest_mb: int = 0) -> int:
    """The ``HCCL_BUFFSIZE`` in effect (MB): the environment value, or 200 when unset.

    Raises :class:`AclnnError` 561002 for a value that is not a whole number in [1, 65535].
    """
    env = os.environ if env is None else env
    raw = env.get(ENV_NAME)
    if raw is None:
        return DEFAULT_MB
    text = str(raw).strip()
    try:
        value = int(text, 10)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_MB:
        hint = f"; for this call e.g. `export {ENV_NAME}={suggest_mb}`" if suggest_mb else ""
        raise AclnnError(
            ACLNN_ERR_INNER_TILING_ERROR, op,
            f"environment variable {ENV_NAME}={raw!r} is not a valid size: it must be a whole number "
            f"of MB in [1, {MAX_MB}] (CANN parses it with std::stoi into a uint16_t, so other values "
            f"silently become {DEFAULT_MB} MB or wrap around){hint}")
    return value


def check_hccl_buffsize(op: str, *, h: int, max_bs: int, ep_world_size: int, local_expert_num: int,
                        k: int, shared_expert_num: int, comm_alg: str = "",
                        env: Optional[Mapping[str, str]] = None, source: str = ENV_NAME) -> int:
    """Rule "HCCL_BUFFSIZE large enough" (561002). Returns the window size in effect (MB).

    ``env`` defaults to ``os.environ``. ``source``: which window the release compares with (the message says
    it; :func:`aclnn_py.validate.versions.window_source`). The message states the size needed and how to set it.
    """
    need = _need_bytes(h=h, max_bs=max_bs, ep_world_size=ep_world_size, local_expert_num=local_expert_num, k=k,
                       shared_expert_num=shared_expert_num, comm_alg=comm_alg or "")
    what = (f"maxBs={max_bs}, H={h}, epWorldSize={ep_world_size}, localMoeExpertNum={local_expert_num}, "
            f"K={k}, sharedExpertNum={shared_expert_num}, commAlg={comm_alg or ''!r}")
    return _check_window(op, need, what, env, source)


def hierarchy_window_bytes(*, m: int, max_bs: int, h: int, k: int) -> int:
    """Bytes of window ``comm_alg="hierarchy"`` needs (CANN >= 9.0.0, NEW ``moe_distribute_check_win_size.h``
    CheckActualWinSize): ``M * maxBs * (2H + (3*(K+7)//8*8) * 4 + 64) + 404 MiB`` (400 MiB of cross-supernode
    window and a 4 MiB RDMA status area)."""
    return m * max_bs * (h * _DTYPE_BYTES + (3 * (k + 7) // 8 * 8) * 4 + 64) + _HIERARCHY_FIXED


def check_hierarchy_window(op: str, *, m: int, max_bs: int, h: int, k: int, env: Optional[Mapping[str, str]] = None,
                           source: str = ENV_NAME) -> int:
    """The window rule of ``comm_alg="hierarchy"`` (561002). Returns the window size in effect (MB)."""
    return _check_window(op, hierarchy_window_bytes(m=m, max_bs=max_bs, h=h, k=k),
                         f"moeExpertNum={m}, maxBs={max_bs}, H={h}, K={k}, commAlg='hierarchy'", env, source)


def _check_window(op: str, need: int, what: str, env: Optional[Mapping[str, str]], source: str) -> int:
    need_mb = -(-need // MB)
    have_mb = hccl_buffsize_mb(op, env, suggest_mb=need_mb)
    if need > have_mb * MB:
        env = os.environ if env is None else env
        where = "" if ENV_NAME in env else " (unset: the default)"
        raise AclnnError(
            ACLNN_ERR_INNER_TILING_ERROR, op,
            f"{ENV_NAME} is too small: this call needs at least {need_mb} MB of HCCL window ({what}) but "
            f"{ENV_NAME}={have_mb} MB{where}; the window is {source}; set the environment variable before the "
            f"HCCL communicators are created, e.g. `export {ENV_NAME}={need_mb}` (MB, same value on every rank)")
    return have_mb
