"""The simulator's failure hooks (``aclsim.h``), bound only when the loaded CANN is the aclnn_py simulator.

A real CANN has no way to cancel a collective kernel that waits for a rank that will never launch;
the simulator exports ``aclsimAbortComm`` so :class:`aclnn_py.World` can end such waits at once
with a message naming the failed rank, and ``aclsimRecoverComm`` to make the group usable again
(across processes: once every live rank has recovered, so the abort stays visible until each has seen
it). Declared here in the style of :mod:`.abi` (prototype as the comment, exact widths); nothing is
checked automatically: the functions return plain codes.
"""
from __future__ import annotations

import threading
from ctypes import c_char_p, c_int32, c_int64
from typing import Optional

from . import abi

SIM_HOOKS = [
    # int32_t aclsimAbortComm(void *comm, const char *reason);
    abi.Function("aclsimAbortComm", c_int32, (abi.HcclComm, c_char_p), None),
    # int32_t aclsimRecoverComm(void *comm);
    abi.Function("aclsimRecoverComm", c_int32, (abi.HcclComm,), None),
    # int32_t aclsimCommInFlight(void *comm);
    abi.Function("aclsimCommInFlight", c_int32, (abi.HcclComm,), None),
    # int32_t aclsimCommState(void *comm);
    abi.Function("aclsimCommState", c_int32, (abi.HcclComm,), None),
    # int32_t aclsimCommExists(const char *name, int32_t device);
    abi.Function("aclsimCommExists", c_int32, (c_char_p, c_int32), None),
    # int64_t aclsimConnectTimeoutMs(void);
    abi.Function("aclsimConnectTimeoutMs", c_int64, (), None),
]

_lock = threading.Lock()
_bound: dict = {}


class SimHooks:
    """Bound hook functions (attributes named as in C)."""

    def __init__(self, fns: dict) -> None:
        self.__dict__.update(fns)

    def abort_comm(self, comm: int, reason: str) -> bool:
        return self.aclsimAbortComm(comm, reason.encode("utf-8", "replace")[:1000]) == 0

    def recover_comm(self, comm: int) -> int:
        return int(self.aclsimRecoverComm(comm))

    def in_flight(self, comm: int) -> int:
        return int(self.aclsimCommInFlight(comm))

    def comm_state(self, comm: int) -> int:
        """0 healthy, 1 aborted, -1 not a live comm."""
        return int(self.aclsimCommState(comm))

    def comm_exists(self, name: str, device: int) -> bool:
        return self.aclsimCommExists(name.encode("utf-8"), device) == 1

    def connect_timeout_ms(self) -> int:
        """The communicator set-up timeout the simulator would use now (ms); -1 if HCCL_CONNECT_TIMEOUT is invalid."""
        return int(self.aclsimConnectTimeoutMs())


def sim_hooks(lib) -> Optional[SimHooks]:
    """The hooks of ``lib`` (a :class:`~aclnn_py.runtime.library.CannLibrary`), or ``None`` on a real CANN
    (or a simulator build without them)."""
    if not getattr(lib, "is_simulator", False) or lib.install.op_common is None:
        return None
    key = id(lib)
    with _lock:
        if key not in _bound:
            dll = lib._dll(lib.install.op_common)
            fns = {}
            for fn in SIM_HOOKS:
                c = getattr(dll, fn.name, None)
                if c is None:
                    fns = None
                    break
                c.restype = fn.restype
                c.argtypes = list(fn.argtypes)
                fns[fn.name] = c
            _bound[key] = SimHooks(fns) if fns else None
        return _bound[key]
