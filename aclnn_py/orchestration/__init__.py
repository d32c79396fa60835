"""Orchestration: ranks and how they meet.

``world`` (one thread per rank: :class:`World`), ``launch`` (one process per rank: :func:`launch`,
:class:`ProcessWorld`), ``launchers`` (which launcher started a process: mpiexec, srun, torchrun), ``stores``
(the channels the processes meet through: files, MPI, torch's TCPStore), ``job`` (a launched process's
heartbeat and simulator session), ``rendezvous`` (the host meeting point of the reference backend and the
pre-check), ``precheck`` (cross-rank agreement before a device call), ``topology`` (which ranks take
part in a call) and ``backend`` (device or reference).
"""
