"""aclnnDistributeBarrierV2 rules (spec combine-addrmsnorm-barrier.md §9), in CANN's order."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from ..catalog import OpDef
from ..dtypes import bfloat16
from ..elastic import parse_elastic_info
from . import rules as R
from .limits import INT32_MAX

OP = "aclnnDistributeBarrierV2"
X_REF_DTYPES = (bfloat16, np.float16, np.float32, np.bool_, np.int8, np.int16, np.int32, np.int64,
                np.uint8, np.uint16, np.uint32, np.uint64)
WORLD_SIZE_MIN, WORLD_SIZE_MAX = 2, 384


def elastic_table(op: str, info: Any, world_size: int, param: str = "elastic_info") -> None:
    """Internal consistency of an enabled elastic table (documented, not checked by CANN kernels)."""
    t = parse_elastic_info(info, world_size)
    if not t.enabled:
        return
    note = " (documented rule, not enforced by the CANN kernel)"
    n = t.ep_world_size
    R.require(1 <= n <= world_size, op, R.TILING, param, "1 <= elastic_info[1] (ranks after scale-down) <= "
              f"{world_size}{note}", n)
    live = t.to_orig[:n]
    if not (np.all((live >= 0) & (live < world_size)) and np.unique(live).size == n):
        R.fail(op, R.TILING, param, f"Table2[0:{n}] to hold {n} distinct original ranks in [0, {world_size}){note}",
               live.tolist())
    if not np.all(t.to_new[live] == np.arange(n)):
        R.fail(op, R.TILING, param, f"Table1[Table2[i]] == i for every surviving rank i{note}", t.to_new.tolist())
    removed = np.setdiff1d(np.arange(world_size), live)
    if not np.all(t.to_new[removed] == -1):
        R.fail(op, R.TILING, param, f"Table1 == -1 for every removed rank{note}", t.to_new.tolist())




def check(op_def: OpDef, args: Mapping[str, Any], outputs: Any = None, env: Any = None,
          cann_version: Any = None) -> None:
    """Validate one rank's DistributeBarrierV2 call (``args``: every parameter by keyword).

    ``time_out``: None, an int (microseconds) or an int32 tensor of shape (1,); ``elastic_info``: int32
    ``(4 + 2 * world_size,)``. Values are read from host numpy arrays only. The barrier has no outputs
    and reads no environment: ``outputs`` and ``env`` are ignored, and its rules are the same in every release
    aclnn_py knows, so ``cann_version`` is too.
    """
    a = R.typed_args(op_def, args)
    x_ref, group, world_size = a["x_ref"], a["group"], a["world_size"]
    time_out, elastic_info = a["time_out"], a["elastic_info"]
    R.not_none(OP, "x_ref", x_ref)
    R.require(group is not None, OP, R.NULLPTR, "group", "not None (required)", group)
    n = len(group.encode("utf-8"))
    R.require(1 <= n < R.GROUP_NAME_MAX, OP, R.INVALID, "group",
              "length in [1, 127] bytes (documented rule; the CANN op_api layer only logs it)", f"{n} bytes")
    R.dtype_in(OP, "x_ref", x_ref, X_REF_DTYPES, R.INVALID)
    R.require(len(x_ref.shape) <= 8, OP, R.INVALID, "x_ref", "0-8 dimensions", f"{len(x_ref.shape)}-D")
    if R.is_tensor(time_out):
        R.dtype_in(OP, "time_out", time_out, (np.int32,), R.INVALID)
    if elastic_info is not None:
        R.dtype_in(OP, "elastic_info", elastic_info, (np.int32,), R.INVALID)
    R.in_range(OP, "world_size", world_size, WORLD_SIZE_MIN, WORLD_SIZE_MAX)
    if R.is_tensor(time_out):
        R.not_nz(OP, "time_out", time_out)
        R.ndim(OP, "time_out", time_out, (1,))
        R.shape_eq(OP, "time_out", time_out, (1,))
    if elastic_info is not None:
        R.not_nz(OP, "elastic_info", elastic_info)
        R.ndim(OP, "elastic_info", elastic_info, (1,))
        R.shape_eq(OP, "elastic_info", elastic_info, (4 + 2 * world_size,))
        if isinstance(elastic_info, np.ndarray):
            elastic_table(OP, elastic_info, world_size)
    time_out_us(time_out)


def time_out_us(time_out: Any) -> Optional[int]:
    """The barrier time-out in microseconds (None: none given, or a device tensor whose value is unknown).

    Documented range (aclnnDistributeBarrierV2: "pass a timeOut > 0 in us, at most INT32_MAX"): 0..INT32_MAX;
    0 is accepted and fails at once, as the kernel's first poll does. A negative value is refused (561002):
    the kernel reads the int32 as uint32, so it would silently mean "wait about 71 minutes".
    """
    if isinstance(time_out, np.ndarray):
        value = int(time_out.reshape(-1)[0])
    elif time_out is None or R.is_tensor(time_out):
        return None
    else:
        value = int(time_out)
    R.in_range(OP, "time_out", value, 0, INT32_MAX)
    return value
