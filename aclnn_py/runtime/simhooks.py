"""The simulator's failure hooks (``aclsim.h``; declared in :data:`aclnn_py.runtime.abi.SIMULATOR`).

A real CANN has no way to cancel a collective kernel that waits for a rank that will never launch;
the simulator exports ``aclsimAbortComm`` so :class:`aclnn_py.World` can end such waits at once
with a message naming the failed rank, and ``aclsimRecoverComm`` to make the group usable again
(across processes: once every live rank has recovered, so the abort stays visible until each has seen
it). The functions return plain codes; nothing is checked automatically.
"""
from __future__ import annotations

from typing import Optional

HOOKS = ("aclsimAbortComm", "aclsimRecoverComm", "aclsimCommInFlight", "aclsimCommState", "aclsimCommExists",
         "aclsimConnectTimeoutMs")


class SimHooks:
    """Typed wrappers of the bound hook functions of one loaded simulator."""

    def __init__(self, lib) -> None:
        self._lib = lib

    def abort_comm(self, comm: int, reason: str) -> bool:
        return self._lib.aclsimAbortComm(comm, reason.encode("utf-8", "replace")[:1000]) == 0

    def recover_comm(self, comm: int) -> int:
        return int(self._lib.aclsimRecoverComm(comm))

    def in_flight(self, comm: int) -> int:
        return int(self._lib.aclsimCommInFlight(comm))

    def comm_state(self, comm: int) -> int:
        """0 healthy, 1 aborted, -1 not a live comm."""
        return int(self._lib.aclsimCommState(comm))

    def comm_exists(self, name: str, device: int) -> bool:
        return self._lib.aclsimCommExists(name.encode("utf-8"), device) == 1

    def connect_timeout_ms(self) -> int:
        """The communicator set-up timeout the simulator would use now (ms); -1 if HCCL_CONNECT_TIMEOUT is invalid."""
        return int(self._lib.aclsimConnectTimeoutMs())


def sim_hooks(lib) -> Optional[SimHooks]:
    """The hooks of ``lib`` (a :class:`~aclnn_py.runtime.library.CannLibrary`), or ``None`` on a real CANN
    (or a simulator build without them)."""
    if not getattr(lib, "is_simulator", False) or not all(lib.has(name) for name in HOOKS):
        return None
    return SimHooks(lib)
