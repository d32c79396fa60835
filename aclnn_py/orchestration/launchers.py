"""Which launcher started this process, its rank, and the device that rank uses.

One table, :data:`LAUNCHERS`, says where each launcher puts a process's rank, the job size, the local rank
(the rank among the job's processes on this host) and the local size, and how the ranks meet (the
*channel*, see :mod:`aclnn_py.orchestration.stores`). :func:`detect` reads the environment against it, in
table order (a launcher started inside another one -- ``mpiexec`` or ``torchrun`` in a Slurm allocation --
sets its own variables next to the outer one's, so the innermost comes first):

=========== ============================= ========================= ======================================= =======
launcher    rank / size                   local rank / local size   job id                                  channel
=========== ============================= ========================= ======================================= =======
aclnn_py    ACLNN_PY_RANK / _WORLD_SIZE   ACLNN_PY_LOCAL_RANK / ... ACLNN_PY_JOB_ID                         file
torchrun    RANK / WORLD_SIZE             LOCAL_RANK / LOCAL_WORLD_ TORCHELASTIC_RUN_ID (+ restart count)   tcp
            (with MASTER_ADDR/_PORT)      SIZE
open-mpi    OMPI_COMM_WORLD_RANK / _SIZE  OMPI_COMM_WORLD_LOCAL_*   PMIX_NAMESPACE                          mpi
mpich       PMI_RANK / PMI_SIZE           MPI_LOCALRANKID, PALS_... PMI_JOBID, PALS_APID, PMIX_NAMESPACE    mpi
slurm       SLURM_PROCID /                SLURM_LOCALID / from      SLURM_JOB_ID . SLURM_STEP_ID            mpi
            SLURM_STEP_NUM_TASKS          SLURM_STEP_TASKS_PER_NODE
=========== ============================= ========================= ======================================= =======

A launcher that gives no local rank borrows one from another row whose rank variable holds the same rank
(MPICH started by ``srun --mpi=pmi2``: ``SLURM_LOCALID``). ``srun`` is recognised by ``SLURM_STEP_NUM_TASKS``,
which only a job step has: an ``sbatch`` script (one process) also carries ``SLURM_PROCID`` and
``SLURM_NTASKS``, and must not look like a job of ``SLURM_NTASKS`` ranks.

Devices (:func:`device_for`): a rank uses the device numbered by its local rank. CANN numbers the devices a
process sees ``0..n-1`` in the order ``ASCEND_RT_VISIBLE_DEVICES`` lists them (``=4,5,6,7``: device 0 is
NPU 4); so with that list, local rank ``i`` uses device ``i`` = NPU ``list[i]``, and a process that sees a
single device (the launcher gave each process its own list) uses device 0.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Tuple

LOCAL_RANK_ENV, LOCAL_SIZE_ENV, JOB_ID_ENV = "ACLNN_PY_LOCAL_RANK", "ACLNN_PY_LOCAL_WORLD_SIZE", "ACLNN_PY_JOB_ID"
VISIBLE_ENV = "ASCEND_RT_VISIBLE_DEVICES"
CHANNELS = ("file", "mpi", "tcp")


class LaunchError(RuntimeError):
    """A rank's process failed without an exception to hand back (it crashed or was killed); a rank function,
    argument or result cannot travel between processes; or the launcher's environment cannot be used."""


@dataclass(frozen=True)
class Launcher:
    """Where one launcher puts a process's coordinates (environment variable names)."""

    name: str
    rank: str
    size: str
    local_rank: Tuple[str, ...] = ()
    local_size: Tuple[str, ...] = ()
    job_id: Tuple[str, ...] = ()             # every one that is set, joined with '.'
    requires: Tuple[str, ...] = ()           # set too, or this is not the launcher
    channel: str = "mpi"
    local_size_from: Optional[Callable[[Mapping[str, str]], Optional[int]]] = None


def slurm_local_size(env: Mapping[str, str]) -> Optional[int]:
    """This node's task count from ``SLURM_STEP_TASKS_PER_NODE`` (``"2(x3),1"``: 2 tasks on each of nodes 0-2,
    1 on node 3) and ``SLURM_NODEID`` (the node's index in the step), or ``None``."""
    spec, node = env.get("SLURM_STEP_TASKS_PER_NODE", ""), env.get("SLURM_NODEID", "")
    if not node.isdigit():
        return None
    counts: List[int] = []
    for part in filter(None, spec.split(",")):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if m is None:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[int(node)] if int(node) < len(counts) else None


LAUNCHERS: Tuple[Launcher, ...] = (
    Launcher("aclnn_py", "ACLNN_PY_RANK", "ACLNN_PY_WORLD_SIZE", (LOCAL_RANK_ENV,), (LOCAL_SIZE_ENV,), (JOB_ID_ENV,),
             channel="file"),
    Launcher("torchrun", "RANK", "WORLD_SIZE", ("LOCAL_RANK",), ("LOCAL_WORLD_SIZE",),
             ("TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT"), ("MASTER_ADDR", "MASTER_PORT"), channel="tcp"),
    Launcher("open-mpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", ("OMPI_COMM_WORLD_LOCAL_RANK",),
             ("OMPI_COMM_WORLD_LOCAL_SIZE",), ("PMIX_NAMESPACE",)),
    Launcher("mpich", "PMI_RANK", "PMI_SIZE", ("MPI_LOCALRANKID", "PALS_LOCAL_RANKID"),
             ("MPI_LOCALNRANKS", "PALS_LOCAL_SIZE"), ("PMI_JOBID", "PALS_APID", "PMIX_NAMESPACE")),
    Launcher("slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", ("SLURM_LOCALID",), (), ("SLURM_JOB_ID", "SLURM_STEP_ID"),
             local_size_from=slurm_local_size),
)


@dataclass(frozen=True)
class LaunchInfo:
    """What :func:`detect` found: the launcher (a :data:`LAUNCHERS` name), this process's rank of ``size``, its
    ``local_rank`` of ``local_size`` on this host (``None`` where the launcher does not say), the job id
    (``""`` if none) and the channel the ranks meet through."""

    launcher: str
    rank: int
    size: int
    local_rank: Optional[int]
    local_size: Optional[int]
    job_id: str
    channel: str

    def describe(self) -> str:
        """``open-mpi: rank 3 of 4, local rank 3 of 4, job prterun-vm-7226@1, channel mpi``."""
        local = "local rank unknown" if self.local_rank is None else \
            f"local rank {self.local_rank}" + ("" if self.local_size is None else f" of {self.local_size}")
        job = f", job {self.job_id}" if self.job_id else ""
        return f"{self.launcher}: rank {self.rank} of {self.size}, {local}{job}, channel {self.channel}"


def _int(env: Mapping[str, str], name: str, launcher: str) -> int:
    raw = env[name]
    if not raw.strip().isdigit():
        raise LaunchError(f"{launcher} launcher: {name} must be a non-negative integer; got {raw!r}")
    return int(raw)


def _first_int(env: Mapping[str, str], names: Tuple[str, ...], launcher: str) -> Optional[int]:
    for name in names:
        if env.get(name, "") != "":
            return _int(env, name, launcher)
    return None


def _borrowed_local_rank(env: Mapping[str, str], rank: int) -> Optional[int]:
    """A local rank from another launcher's variables, when that launcher's rank variable holds ``rank`` too."""
    for other in LAUNCHERS:
        if env.get(other.rank, "").strip() == str(rank):
            found = next((env[n] for n in other.local_rank if env.get(n, "").strip().isdigit()), None)
            if found is not None:
                return int(found)
    return None


def detect(environ: Optional[Mapping[str, str]] = None) -> Optional[LaunchInfo]:
    """The launcher that started this process (the first :data:`LAUNCHERS` row whose rank, size and required
    variables are all set), or ``None``. ``ACLNN_PY_CHANNEL`` (``file``, ``mpi`` or ``tcp``) overrides the
    channel; ``ACLNN_PY_STORE`` (a directory every rank reaches) selects ``file``. Raises :class:`LaunchError`
    when the variables are set but unusable (not integers, rank outside ``[0, size)``)."""
    env = os.environ if environ is None else environ
    for row in LAUNCHERS:
        if not all(env.get(n, "") != "" for n in (row.rank, row.size) + row.requires):
            continue
        rank, size = _int(env, row.rank, row.name), _int(env, row.size, row.name)
        if not 0 <= rank < size:
            raise LaunchError(f"{row.name} launcher: {row.rank}={rank} must be in [0, {row.size}={size})")
        local_rank = _first_int(env, row.local_rank, row.name)
        if local_rank is None:
            local_rank = _borrowed_local_rank(env, rank)
        local_size = _first_int(env, row.local_size, row.name)
        if local_size is None and row.local_size_from is not None:
            local_size = row.local_size_from(env)
        if local_rank is not None and local_size is not None and not 0 <= local_rank < local_size:
            raise LaunchError(f"{row.name} launcher: local rank {local_rank} must be in [0, local size {local_size})")
        job_id = ".".join(env[n] for n in row.job_id if env.get(n, "") != "")
        return LaunchInfo(row.name, rank, size, local_rank, local_size, job_id, channel_for(row, env))
    return None


def channel_for(row: Launcher, env: Mapping[str, str]) -> str:
    """``ACLNN_PY_CHANNEL`` if set, else ``file`` when ``ACLNN_PY_STORE`` is set, else the launcher's own."""
    chosen = env.get("ACLNN_PY_CHANNEL", "").strip().lower()
    if chosen:
        if chosen not in CHANNELS:
            raise LaunchError(f"ACLNN_PY_CHANNEL must be one of {', '.join(CHANNELS)}; got {env['ACLNN_PY_CHANNEL']!r}")
        return chosen
    return "file" if env.get("ACLNN_PY_STORE", "") else row.channel


def visible_devices(environ: Optional[Mapping[str, str]] = None) -> Optional[List[int]]:
    """The NPUs ``ASCEND_RT_VISIBLE_DEVICES`` lists (process device ``i`` is NPU ``list[i]``), or ``None`` when
    it is unset or empty (every device, numbered as the driver does)."""
    env = os.environ if environ is None else environ
    raw = env.get(VISIBLE_ENV, "").strip()
    if not raw:
        return None
    parts = [p.strip() for p in raw.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise LaunchError(f"{VISIBLE_ENV} must be a comma-separated list of distinct device numbers; got {raw!r}")
    return [int(p) for p in parts]


def device_for(info: LaunchInfo, environ: Optional[Mapping[str, str]] = None) -> int:
    """The device (as this process numbers them, see the module doc) for ``info``'s rank.

    The local rank picks it; a process that sees exactly one device uses device 0. Without a local rank the
    job is taken to be on one host (device = rank), which only holds when rank < the visible devices.
    """
    visible = visible_devices(environ)
    if visible is not None and len(visible) == 1:
        return 0
    index = info.local_rank if info.local_rank is not None else info.rank
    if visible is not None and index >= len(visible):
        what = "local rank" if info.local_rank is not None else "rank (the launcher gives no local rank)"
        raise LaunchError(f"{info.launcher} launcher: {what} {index} has no device: {VISIBLE_ENV}="
                          f"{','.join(map(str, visible))} makes {len(visible)} devices visible; list one device per "
                          "local rank, or start fewer processes per host")
    return index


__all__ = ["LAUNCHERS", "Launcher", "LaunchInfo", "LaunchError", "detect", "device_for", "visible_devices",
           "channel_for", "slurm_local_size"]
