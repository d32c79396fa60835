"""HCCL communicators: one typed Python function per HCCL call of the C-ABI table.

The functions hide ctypes (buffers, ``byref``, the 4108-byte root info) and raise
:class:`aclnn_py.HcclError` on failure, through the library's status check. Handles are plain ints.
"""
from __future__ import annotations

import ctypes
from typing import List, Sequence

from . import abi
from .device import acl_init


def init_all(devices: Sequence[int]) -> List[int]:
    """``HcclCommInitAll``: one communicator per device of ``devices``, in that order (the calling thread
    needs no device); returns the handles."""
    n = len(devices)
    devs = (ctypes.c_int32 * n)(*devices)
    comms = (abi.HcclComm * n)()
    acl_init().HcclCommInitAll(n, devs, comms)
    return [int(comms[i]) for i in range(n)]


def root_info() -> bytes:
    """``HcclGetRootInfo``: the 4108 bytes rank 0 of a group shares with the others."""
    root = abi.HcclRootInfo()
    acl_init().HcclGetRootInfo(ctypes.byref(root))
    return ctypes.string_at(ctypes.addressof(root), ctypes.sizeof(root))   # every byte, NULs included


def init_root_info(n_ranks: int, root: bytes, rank: int) -> int:
    """``HcclCommInitRootInfo``: this process's communicator, rank ``rank`` of ``n_ranks``, from ``root``
    (as returned by :func:`root_info` on the group's rank 0); waits for the peers (HCCL_CONNECT_TIMEOUT)."""
    info = abi.HcclRootInfo()
    ctypes.memmove(ctypes.byref(info), root, min(len(root), ctypes.sizeof(info)))
    comm = abi.HcclComm()
    acl_init().HcclCommInitRootInfo(n_ranks, ctypes.byref(info), rank, ctypes.byref(comm))
    return int(comm.value)


def comm_name(comm: int) -> str:
    """``HcclGetCommName``: the name ops take as ``group_ep`` / ``group``."""
    buf = ctypes.create_string_buffer(abi.COMM_NAME_MAX_LENGTH)
    acl_init().HcclGetCommName(comm, buf)
    return buf.value.decode()


def rank_size(comm: int) -> int:
    """``HcclGetRankSize``: ranks in the communicator."""
    n = ctypes.c_uint32()
    acl_init().HcclGetRankSize(comm, ctypes.byref(n))
    return int(n.value)


def rank_id(comm: int) -> int:
    """``HcclGetRankId``: this communicator's rank."""
    r = ctypes.c_uint32()
    acl_init().HcclGetRankId(comm, ctypes.byref(r))
    return int(r.value)


def destroy(comm: int) -> None:
    """``HcclCommDestroy``."""
    acl_init().HcclCommDestroy(comm)


__all__ = ["init_all", "root_info", "init_root_info", "comm_name", "rank_size", "rank_id", "destroy"]
