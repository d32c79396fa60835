"""Issue 13: launcher detection and the rank -> device mapping, from the environment alone (no launcher runs here;
tests/test_launchers_mpi.py and _torchrun.py run the real ones), and the stores' protocol in one process."""
from __future__ import annotations

import threading

import pytest

from aclnn_py.orchestration.launchers import (LAUNCHERS, LaunchError, LaunchInfo, detect, device_for, slurm_local_size,
                                              visible_devices)
from aclnn_py.orchestration.stores import FileStore, MemoryStore, PrefixStore

# What each launcher exports for the process of rank 5 in a job of 8, 2 hosts of 4 (rank 5 = local rank 1 of host 1).
OPEN_MPI = {"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "4", "PMIX_NAMESPACE": "prterun-host0-123@1", "PMIX_RANK": "5"}
MPICH = {"PMI_RANK": "5", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "4"}
CRAY_PALS = {"PMI_RANK": "5", "PMI_SIZE": "8", "PALS_LOCAL_RANKID": "1", "PALS_LOCAL_SIZE": "4", "PALS_APID": "a1b2"}
SLURM = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
         "SLURM_NODEID": "1", "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0"}
TORCHRUN = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1",
            "MASTER_ADDR": "host0", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "run7",
            "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_USE_AGENT_STORE": "True"}
BY_HAND = {"ACLNN_PY_RANK": "5", "ACLNN_PY_WORLD_SIZE": "8", "ACLNN_PY_LOCAL_RANK": "1",
           "ACLNN_PY_LOCAL_WORLD_SIZE": "4", "ACLNN_PY_STORE": "/shared/store"}


@pytest.mark.parametrize("env, want", [
    (OPEN_MPI, LaunchInfo("open-mpi", 5, 8, 1, 4, "prterun-host0-123@1", "mpi")),
    (MPICH, LaunchInfo("mpich", 5, 8, 1, 4, "", "mpi")),
    (CRAY_PALS, LaunchInfo("mpich", 5, 8, 1, 4, "a1b2", "mpi")),
    (SLURM, LaunchInfo("slurm", 5, 8, 1, 4, "4242.0", "mpi")),
    (TORCHRUN, LaunchInfo("torchrun", 5, 8, 1, 4, "run7.0", "tcp")),
    (BY_HAND, LaunchInfo("aclnn_py", 5, 8, 1, 4, "", "file")),
], ids=["open-mpi", "mpich", "cray-pals", "slurm", "torchrun", "by-hand"])
def test_each_launcher_is_recognised(env, want):
    got = detect(env)
    assert got == want
    assert device_for(got, env) == 1
    assert got.describe().startswith(f"{want.launcher}: rank 5 of 8, local rank 1 of 4")


def test_the_table_has_one_row_per_launcher():
    assert [row.name for row in LAUNCHERS] == ["aclnn_py", "torchrun", "open-mpi", "mpich", "slurm"]


@pytest.mark.parametrize("env", [{}, {"RANK": "1", "WORLD_SIZE": "2"},                 # torchrun needs MASTER_*
                                 {"SLURM_PROCID": "0", "SLURM_NTASKS": "64", "SLURM_JOB_ID": "9"},  # an sbatch script
                                 {"PMIX_RANK": "1"}])
def test_no_launcher(env):
    assert detect(env) is None


def test_the_inner_launcher_wins():
    """mpiexec or torchrun inside a Slurm allocation: their variables, not the allocation's."""
    assert detect({**SLURM, **OPEN_MPI, "OMPI_COMM_WORLD_RANK": "3"}).launcher == "open-mpi"
    assert detect({**SLURM, **TORCHRUN}).launcher == "torchrun"
    assert detect({**TORCHRUN, **BY_HAND}).launcher == "aclnn_py"


def test_a_local_rank_is_borrowed_only_from_the_same_rank():
    """MPICH started by srun --mpi=pmi2 exports no MPI_LOCALRANKID: SLURM_LOCALID serves when SLURM_PROCID is the
    same rank; mpiexec inside an sbatch script (SLURM_PROCID=0 of the batch step) must not borrow it."""
    bare = {"PMI_RANK": "5", "PMI_SIZE": "8"}
    assert detect({**bare, "SLURM_PROCID": "5", "SLURM_LOCALID": "1"}).local_rank == 1
    assert detect({**bare, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}).local_rank is None


@pytest.mark.parametrize("spec, node, want", [("4(x2)", "1", 4), ("2(x3),1", "3", 1), ("2(x3),1", "2", 2),
                                              ("3", "0", 3), ("2(x3)", "5", None), ("junk", "0", None), ("4", "", None)])
def test_slurm_local_size(spec, node, want):
    assert slurm_local_size({"SLURM_STEP_TASKS_PER_NODE": spec, "SLURM_NODEID": node}) == want


@pytest.mark.parametrize("env, words", [
    ({"OMPI_COMM_WORLD_RANK": "x", "OMPI_COMM_WORLD_SIZE": "4"}, "OMPI_COMM_WORLD_RANK must be a non-negative"),
    ({"PMI_RANK": "4", "PMI_SIZE": "4"}, "PMI_RANK=4 must be in [0, PMI_SIZE=4)"),
    ({**OPEN_MPI, "OMPI_COMM_WORLD_LOCAL_RANK": "4"}, "local rank 4 must be in [0, local size 4)"),
    ({**OPEN_MPI, "ACLNN_PY_CHANNEL": "udp"}, "ACLNN_PY_CHANNEL must be one of file, mpi, tcp"),
])
def test_unusable_variables_are_named(env, words):
    with pytest.raises(LaunchError, match=None) as e:
        detect(env)
    assert words in str(e.value)


def test_channel_choice():
    assert detect({**OPEN_MPI, "ACLNN_PY_STORE": "/shared/x"}).channel == "file"
    assert detect({**TORCHRUN, "ACLNN_PY_CHANNEL": "mpi"}).channel == "mpi"
    assert detect({**SLURM, "ACLNN_PY_CHANNEL": "tcp"}).channel == "tcp"


@pytest.mark.parametrize("visible, local_rank, want", [(None, 3, 3), ("4,5,6,7", 3, 3), ("6", 3, 0), ("6", 0, 0)])
def test_device_from_the_local_rank_and_the_visible_devices(visible, local_rank, want):
    """CANN renumbers the devices ASCEND_RT_VISIBLE_DEVICES lists as 0..n-1: local rank i uses device i (NPU
    list[i]); a process given a single device uses device 0."""
    env = {} if visible is None else {"ASCEND_RT_VISIBLE_DEVICES": visible}
    info = LaunchInfo("open-mpi", 11, 16, local_rank, 4, "", "mpi")
    assert device_for(info, env) == want
    if visible == "4,5,6,7":
        assert visible_devices(env)[want] == 7          # device 3 is NPU 7


def test_device_errors_name_the_variable():
    info = LaunchInfo("slurm", 5, 8, 5, 8, "", "mpi")
    with pytest.raises(LaunchError, match=r"local rank 5 has no device: ASCEND_RT_VISIBLE_DEVICES=0,1,2,3 makes 4"):
        device_for(info, {"ASCEND_RT_VISIBLE_DEVICES": "0,1,2,3"})
    with pytest.raises(LaunchError, match="comma-separated list of distinct device numbers"):
        device_for(info, {"ASCEND_RT_VISIBLE_DEVICES": "0,0"})
    no_local = LaunchInfo("mpich", 9, 16, None, None, "", "mpi")
    assert device_for(no_local, {}) == 9
    with pytest.raises(LaunchError, match="the launcher gives no local rank"):
        device_for(no_local, {"ASCEND_RT_VISIBLE_DEVICES": "0,1"})


# ---- the stores' protocol (the channels run for real in tests/test_launchers_*.py) ---------------------------------
@pytest.fixture(params=["file", "memory", "prefix"])
def store(request, tmp_path):
    if request.param == "file":
        return FileStore(str(tmp_path / "store"))
    return MemoryStore() if request.param == "memory" else PrefixStore(MemoryStore(), "w3/")


def test_store_protocol(store):
    store.set("a/b", b"1")
    assert store.get_many(["a/b", "nope"]) == {"a/b": b"1"} and store.exists("a/b") and not store.exists("nope")
    threading.Timer(0.05, store.set, ("late", b"2")).start()
    assert store.wait_many(["a/b", "late"], 10) == {"a/b": b"1", "late": b"2"}
    store.delete("a/b")
    assert store.try_get("a/b") is None
    with pytest.raises(TimeoutError, match="'never'"):
        store.wait("never", 0.05)
    seen = []

    def check(missing):
        seen.append(list(missing))
        return RuntimeError("give up")

    with pytest.raises(RuntimeError, match="give up"):
        store.wait_many(["late", "never"], 10, check)
    assert seen == [["never"]]


def test_a_value_posted_before_its_poster_vanished_is_still_taken(store):
    """The check says the poster is gone after the poll missed its value, but the poster had posted in between
    (it posts, then exits): the wait reads once more and takes the value (it used to fail intermittently under
    mpiexec when rank 0 finished and exited while a slow rank was still reading)."""
    def check(missing):
        store.set("x", b"posted just before exiting")
        return RuntimeError("rank 0's process has exited")

    assert store.wait_many(["x"], 10, check) == {"x": b"posted just before exiting"}


def test_the_readme_one_host_command_lines_are_the_tested_ones():
    """README's "Running on several hosts" shows the one-host command lines that tests/test_launchers_mpi.py and
    _torchrun.py run (multi-host lines differ only in host options; srun: its environment is tested above)."""
    import os
    from conftest import ROOT
    from launcher_support import mpiexec_command, torchrun_command
    readme = (ROOT / "README.md").read_text()
    for name, cmd in (("mpiexec", mpiexec_command(4, "python", "-m", "aclnn_py", "smoke", "--quick")),
                      ("torchrun", torchrun_command(4, "-m", "aclnn_py", "smoke", "--quick"))):
        line = " ".join([os.path.basename(cmd[0] or name), *cmd[1:]])
        assert f"\n{line} " in readme or f"\n{line}\n" in readme, line


def test_a_rank_that_raised_and_exited_is_named_by_its_exception():
    """Rank 1 raises (posting the run's abort) and its process exits right after. A waiter whose failure check
    read the abort key just before it appeared, then saw the exit, used to report only "rank 1's process has
    exited" (intermittent under mpiexec); it must name the exception."""
    from aclnn_py.errors import CollectiveError
    from aclnn_py.orchestration.job import Liveness
    from aclnn_py.orchestration.launch import StoreRendezvous

    class RaisesAsItIsRead(MemoryStore):
        """Rank 1 raises and exits just after the waiter's first read of the abort key."""
        raised = False

        def get_many(self, keys):
            got = super().get_many(keys)
            if "run0/abort" in keys and not self.raised:
                self.raised = True
                self.set("run0/abort", b"rank 1 raised ValueError: boom on rank 1")
                self.set("exited/1", b"rank 1's process has exited")
            return got

    store = RaisesAsItIsRead()
    rdv = StoreRendezvous(store, liveness=Liveness(store, None))
    with pytest.raises(CollectiveError) as e:
        rdv.collective("op", "g", 0, [0, 1], "payload", lambda p: {0: None, 1: None}, 30)
    assert "aborted because another rank failed: rank 1 raised ValueError: boom on rank 1" in str(e.value)
