"""The two-phase aclnn call shared by every operator wrapper.

``{op}GetWorkspaceSize(params..., &ws, &executor)``, allocate the workspace, ``{op}(ws_ptr, ws,
executor, stream)``, then synchronize (or defer the workspace's release to the stream).
"""
from __future__ import annotations

import ctypes
from typing import Any, Mapping, Optional

from . import abi
from .device import Stream, acl_init
from .tensor import DeviceBuffer


def build_arguments(spec: abi.OpSpec, values: Mapping[str, Any]) -> list:
    """Positional C arguments of phase 1 from ``{C parameter name: value}``.

    Tensors are :class:`DeviceTensor` or ``None`` (NULL); strings are ``str`` or ``None``;
    int64/float parameters are Python numbers (absent ones are 0, as reserved parameters must be). Unknown names are an error (typo guard).
    """
    unknown = set(values) - {name for name, _ in spec.params}
    if unknown:
        raise TypeError(f"{spec.name}: unknown C parameters {sorted(unknown)}")
    args = []
    for name, kind in spec.params:
        v = values.get(name)
        if kind == abi.TENSOR:
            args.append(None if v is None else v.handle)
        elif kind == abi.STR:
            args.append(None if v is None else v.encode("utf-8"))
        elif kind == abi.F32:
            args.append(float(v or 0.0))
        else:
            args.append(int(v or 0))
    return args


def run_two_phase(op_name: str, values: Mapping[str, Any], stream: Optional[Stream], *, sync: bool = True) -> None:
    """Run one aclnn operator; raises the CANN status of the failing phase. Releases what it made."""
    lib = acl_init()
    op = lib.op(op_name)
    args = build_arguments(op.spec, values)
    ws = ctypes.c_uint64(0)
    executor = abi.aclOpExecutorPtr()
    op.get_workspace_size(*args, ctypes.byref(ws), ctypes.byref(executor))
    stream = stream if stream is not None else Stream.default()
    workspace: Optional[DeviceBuffer] = None
    launched = False
    try:
        if ws.value > 0:
            workspace = DeviceBuffer(ws.value)
        launched = True  # phase 2 takes ownership of the executor, even when it fails
        op.execute(workspace.ptr if workspace else None, ws.value, executor, stream.handle)
    except BaseException:
        if not launched:
            _discard_executor(lib, executor)
        if workspace is not None:
            stream.defer(workspace)
            workspace = None
        if not sync:
            raise
        try:
            stream.synchronize()
        except Exception:
            pass
        raise
    if workspace is not None:
        stream.defer(workspace)
    if sync:
        stream.synchronize()


def _discard_executor(lib, executor) -> None:
    try:
        lib.aclDestroyAclOpExecutor(executor)
    except Exception:
        pass
