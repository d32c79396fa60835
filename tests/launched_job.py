"""One rank of a job started by a real launcher (tests/test_launchers_*.py run it under mpiexec and torchrun):

    python tests/launched_job.py MODE OUT_DIR [FAIL_RANK]

MODE ``pipeline``: DispatchV3 -> CombineV3 (hardening_support.SMALL, 4 ranks) through ``ProcessWorld.from_env``,
every rank's outputs pickled to ``OUT_DIR/<rank>.pkl``. ``raise`` / ``exit`` / ``kill``: the same, but rank
FAIL_RANK raises, ends its process (``os._exit(3)``) or kills it (SIGKILL) before launching dispatch;
``leave``: rank FAIL_RANK's process ends normally without running.

Stamps in OUT_DIR/stamps (hardening_support.stamp): ``<rank>.up`` once every rank's World is set up (its text: what
the launcher detection found), ``<rank>.session`` (the simulator's shared-memory session), ``<rank>.dying`` just before a process ends itself, ``<rank>.end`` when the
rank is done (text: ``ok`` or the error). Exit status 0 when the rank succeeded, else 1.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hardening_support import SMALL, mp_pipeline, stamp  # noqa: E402

from aclnn_py import ProcessWorld  # noqa: E402
from aclnn_py.launch import ep_tp_groups  # noqa: E402


def fail_here(ctx, sc, inputs, mode: str, fail_rank: int, stamps: str):
    """mp_pipeline, with rank ``fail_rank`` failing as ``mode`` says first."""
    if ctx.rank == fail_rank and mode in ("exit", "kill"):
        stamp(stamps, f"{ctx.rank}.dying")
        if mode == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)
    return mp_pipeline(ctx, sc, inputs, fail="raise" if mode == "raise" else "", fail_rank=fail_rank)


def main(mode: str, out: str, fail_rank: int) -> int:
    stamps = os.path.join(out, "stamps")
    os.makedirs(stamps, exist_ok=True)
    with ProcessWorld.from_env(groups=ep_tp_groups(SMALL.ep_world_size), timeout_s=60) as world:
        world.allgather(None)                       # every rank is up: failure bounds start here
        stamp(stamps, f"{world.rank}.up", world.launch_info.describe())
        stamp(stamps, f"{world.rank}.session", os.environ.get("ACLNN_SIM_SHM_SESSION", ""))
        if mode == "leave" and world.rank == fail_rank:
            return 0
        try:
            got = world.run(fail_here, SMALL, SMALL.inputs(), mode, fail_rank, stamps)[world.rank]
        except Exception as e:  # noqa: BLE001 - the test reads it
            stamp(stamps, f"{world.rank}.end", f"{type(e).__name__}: {e}")
            return 1
        with open(os.path.join(out, f"{world.rank}.pkl"), "wb") as f:
            pickle.dump(got, f)
        stamp(stamps, f"{world.rank}.end", "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else -1))
