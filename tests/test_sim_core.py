"""C-level checks of the CANN simulator: runtime, aclnn meta API, HCCL, aclnnDistributeBarrierV2, tracking.

The C programs in tests/sim_c are compiled against build/cann-sim (include + lib64, rpath) and run one case
per process, so a crash or hang in one case cannot take the others down.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SIM_C = Path(__file__).resolve().parent / "sim_c"
LIBS = ["libop_common.so", "libascendcl.so", "libacl_rt.so", "libnnopbase.so", "libhccl.so", "libopapi.so"]
LINK = ["-lascendcl", "-lnnopbase", "-lopapi", "-lhccl", "-lop_common", "-pthread"]

RUNTIME_CASES = ["basics", "memory", "stream_order", "tensors", "last_call", "tracking", "threads"]
COLLECTIVE_CASES = [
    "barrier 2", "barrier 3", "barrier 8", "barrier 16", "v1", "elastic", "timeout", "timeout0", "hang",
    "sync_timeout", "validate", "launch", "repeatable", "rootinfo", "connect_timeout", "readers", "hccl_misc",
]

# Exported C API per library (what a ctypes binding or a CANN demo may look up).
EXPORTS = {
    "libascendcl.so": """aclInit aclFinalize aclrtGetVersion aclrtSetDevice aclrtResetDevice aclrtGetDevice
        aclrtGetDeviceCount aclrtCreateContext aclrtDestroyContext aclrtSetCurrentContext aclrtGetCurrentContext
        aclrtCreateStream aclrtCreateStreamWithConfig aclrtDestroyStream aclrtSynchronizeStream
        aclrtSynchronizeStreamWithTimeout aclrtSynchronizeDevice aclrtMalloc aclrtFree aclrtMallocHost
        aclrtFreeHost aclrtMemcpy aclrtMemcpyAsync aclrtMemset aclrtMemsetAsync aclrtGetMemInfo
        aclGetRecentErrMsg aclrtGetSocName aclrtCreateEvent aclrtRecordEvent aclrtSynchronizeEvent
        aclrtDestroyEvent aclrtStreamWaitEvent aclDataTypeSize""",
    "libnnopbase.so": """aclCreateTensor aclDestroyTensor aclCreateScalar aclDestroyScalar aclCreateIntArray
        aclDestroyIntArray aclCreateFloatArray aclDestroyFloatArray aclCreateBoolArray aclDestroyBoolArray
        aclCreateTensorList aclDestroyTensorList aclCreateScalarList aclDestroyScalarList aclInitTensor
        aclSetRawTensorAddr aclGetRawTensorAddr aclGetViewShape aclGetStorageShape aclGetViewStrides
        aclGetViewOffset aclGetFormat aclGetDataType aclSetAclOpExecutorRepeatable aclDestroyAclOpExecutor
        aclnnInit aclnnFinalize""",
    "libhccl.so": """HcclGetRootInfo HcclCommInitRootInfo HcclCommInitRootInfoConfig HcclCommInitAll
        HcclGetCommName HcclGetRankId HcclGetRankSize HcclBarrier HcclCommDestroy HcclGetErrorString
        HcclGetCommAsyncError""",
    "libopapi.so": """aclnnDistributeBarrierV2GetWorkspaceSize aclnnDistributeBarrierV2
        aclnnDistributeBarrierGetWorkspaceSize aclnnDistributeBarrier aclnnMoeDistributeDispatchV3GetWorkspaceSize
        aclnnMoeDistributeDispatchV3 aclnnMoeDistributeCombineV3GetWorkspaceSize aclnnMoeDistributeCombineV3
        aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize aclnnMoeDistributeCombineAddRmsNormV2""",
    "libop_common.so": "aclsimLiveObjects aclsimLastCall aclsimObjectKindName aclsimIsSimulator",
}

HEADERS = [
    "acl/acl.h", "acl/acl_base.h", "acl/acl_rt.h", "acl/error_codes/rt_error_codes.h", "aclnn/acl_meta.h",
    "aclnn/aclnn_base.h", "hccl/hccl.h", "hccl/hccl_types.h", "aclnnop/aclnn_distribute_barrier_v2.h",
    "aclnnop/aclnn_moe_distribute_dispatch_v3.h", "aclnnop/aclnn_moe_distribute_combine_v3.h",
    "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h", "aclsim.h",
]


def sim_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment bin/setenv.bash gives, minus simulator tuning variables the caller did not ask for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLNN_SIM_")}
    lib = str(home / "lib64")
    env.update(ASCEND_HOME_PATH=str(home), ASCEND_TOOLKIT_HOME=str(home), ACLNN_SIM="1",
               LD_LIBRARY_PATH=os.pathsep.join(p for p in (lib, os.environ.get("LD_LIBRARY_PATH")) if p),
               LIBRARY_PATH=os.pathsep.join(p for p in (lib, os.environ.get("LIBRARY_PATH")) if p))
    env.update(extra)
    return env


def compile_check(home: Path, name: str, out: Path) -> Path:
    """tests/sim_c/<name>.c built against the simulator tree `home` into out/<name>."""
    exe = out / name
    cmd = ["gcc", "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", f"-I{home / 'include'}",
           str(SIM_C / f"{name}.c"), "-o", str(exe), f"-L{home / 'lib64'}", f"-Wl,-rpath,{home / 'lib64'}", *LINK]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"compiling {name}.c failed:\n{res.stderr}"
    return exe


@pytest.fixture(scope="module")
def c_checks(cann_sim_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sim_c")
    return {name: compile_check(cann_sim_home, name, out) for name in ("runtime_check", "collective_check")}


def run_case(exe: Path, home: Path, args: list[str], timeout: float = 60, **env: str) -> None:
    res = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                         env=sim_env(home, **env))
    assert res.returncode == 0 and "PASS" in res.stdout, (
        f"{exe.name} {' '.join(args)} exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}")


@pytest.mark.parametrize("case", RUNTIME_CASES)
def test_runtime(c_checks: dict[str, Path], cann_sim_home: Path, case: str) -> None:
    run_case(c_checks["runtime_check"], cann_sim_home, [case])


def test_device_count_from_env(c_checks: dict[str, Path], cann_sim_home: Path) -> None:
    run_case(c_checks["runtime_check"], cann_sim_home, ["basics"], ACLNN_SIM_DEVICE_COUNT="24")


@pytest.mark.parametrize("case", COLLECTIVE_CASES)
def test_collective(c_checks: dict[str, Path], cann_sim_home: Path, case: str) -> None:
    run_case(c_checks["collective_check"], cann_sim_home, case.split())


def test_tree_layout(cann_sim_home: Path) -> None:
    home = cann_sim_home
    assert (home / "latest").is_symlink() and (home / "latest").resolve() == home.resolve()
    for h in HEADERS:
        assert (home / "latest" / "include" / h).is_file(), h
    for lib in LIBS:
        assert (home / "latest" / "lib64" / lib).is_file(), lib
    assert (home / "lib64" / "libacl_rt.so").resolve() == (home / "lib64" / "libascendcl.so").resolve()
    info = (home / "version.info").read_text() + (home / "ascend_toolkit_install.info").read_text()
    assert "aclnn_py" in info and "simulator" in info


def test_setenv_bash(cann_sim_home: Path) -> None:
    script = cann_sim_home / "latest" / "bin" / "setenv.bash"
    res = subprocess.run(["bash", "-c", f'source "{script}" && env'], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    env = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    home = str(cann_sim_home.resolve())
    assert env["ASCEND_HOME_PATH"] == home and env["ASCEND_TOOLKIT_HOME"] == home
    assert env["LD_LIBRARY_PATH"].split(":")[0] == f"{home}/lib64"
    assert env["LIBRARY_PATH"].split(":")[0] == f"{home}/lib64"
    assert env["ACLNN_SIM"] == "1"


@pytest.mark.parametrize("lib", LIBS)
def test_library_loads_alone(cann_sim_home: Path, lib: str) -> None:
    """Each library is dlopen-able by path with no LD_LIBRARY_PATH (DT_NEEDED + RPATH $ORIGIN)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LIBRARY_PATH")}
    code = "import ctypes, sys; ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_LOCAL)"
    res = subprocess.run([sys.executable, "-c", code, str(cann_sim_home / "lib64" / lib)], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 0, res.stderr


def test_exports(cann_sim_home: Path) -> None:
    for lib, names in EXPORTS.items():
        res = subprocess.run(["nm", "-D", "--defined-only", str(cann_sim_home / "lib64" / lib)],
                             capture_output=True, text=True, check=True)
        have = {line.split()[-1] for line in res.stdout.splitlines() if line.strip()}
        missing = sorted(set(names.split()) - have)
        assert not missing, f"{lib} lacks {missing}"


def test_headers_compile_as_c_and_cpp(cann_sim_home: Path, tmp_path: Path) -> None:
    src = "".join(f'#include "{h}"\n' for h in HEADERS)
    src += "int main(void) { HcclCommConfig c; HcclCommConfigInit(&c); return (int)(sizeof(c) != 312); }\n"
    inc = f"-I{cann_sim_home / 'include'}"
    for suffix, compiler, std in ((".c", "gcc", "-std=c99"), (".cpp", "g++", "-std=c++11")):
        f = tmp_path / f"all{suffix}"
        f.write_text(src)
        res = subprocess.run([compiler, std, "-Wall", "-Wextra", "-pedantic", "-Werror", inc, str(f), "-o",
                              str(tmp_path / f"all{suffix}.out")], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert subprocess.run([str(tmp_path / f"all{suffix}.out")]).returncode == 0
    # C++ code can qualify the enumerators, as the official demos do
    f = tmp_path / "qualified.cpp"
    f.write_text('#include "acl/acl.h"\n#include "aclnn/acl_meta.h"\n'
                 "static_assert(aclFormat::ACL_FORMAT_ND == 2 && aclDataType::ACL_BF16 == 27, \"enums\");\n"
                 "int main() { return 0; }\n")
    res = subprocess.run(["g++", "-std=c++11", "-c", inc, str(f), "-o", str(tmp_path / "q.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_ctypes_abi(cann_sim_home: Path) -> None:
    """Widths survive a ctypes call: an int64 above 2^32, a negative int32, a float with its bits."""
    code = r"""
import ctypes, sys
lib64 = sys.argv[1]
common = ctypes.CDLL(lib64 + "/libop_common.so")
nn = ctypes.CDLL(lib64 + "/libnnopbase.so")
rt = ctypes.CDLL(lib64 + "/libascendcl.so")
buf = ctypes.create_string_buffer(4096)
def last():
    n = common.aclsimLastCall(buf, ctypes.c_uint64(len(buf)))
    assert n == len(buf.value), (n, buf.value)
    return buf.value.decode()
dims = (ctypes.c_int64 * 2)(2, 3)
strides = (ctypes.c_int64 * 2)(3, 1)
nn.aclCreateTensor.restype = ctypes.c_void_p
nn.aclCreateTensor.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_uint64, ctypes.c_int,
    ctypes.POINTER(ctypes.c_int64), ctypes.c_int64, ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
    ctypes.c_uint64, ctypes.c_void_p]
t = nn.aclCreateTensor(dims, 2, 27, strides, 5000000000, 2, dims, 2, None)
assert t
assert last() == ("aclCreateTensor viewDims=[2,3] viewDimsNum=2 dataType=27 stride=[3,1] offset=5000000000 "
                  "format=2 storageDims=[2,3] storageDimsNum=2 tensorData=NULL"), last()
nn.aclDestroyTensor.argtypes = [ctypes.c_void_p]
assert nn.aclDestroyTensor(t) == 0
assert nn.aclDestroyTensor(t) == 161001
rt.aclGetRecentErrMsg.restype = ctypes.c_char_p
assert b"not a live aclTensor" in rt.aclGetRecentErrMsg()
assert rt.aclGetRecentErrMsg() is None
rt.aclrtSynchronizeStreamWithTimeout.argtypes = [ctypes.c_void_p, ctypes.c_int32]
assert rt.aclrtSynchronizeStreamWithTimeout(None, -7) == 107000
assert last() == "aclrtSynchronizeStreamWithTimeout stream=NULL timeout=-7", last()
common.sim_fmt_f32.restype = ctypes.c_char_p
common.sim_fmt_f32.argtypes = [ctypes.c_float]
assert common.sim_fmt_f32(1e-6) == b"1e-06/0x358637bd", common.sim_fmt_f32(1e-6)
assert common.sim_fmt_f32(0.1) == b"0.1/0x3dcccccd", common.sim_fmt_f32(0.1)
assert common.sim_fmt_f32(16777217.0) == b"16777216/0x4b800000", common.sim_fmt_f32(16777217.0)
assert common.sim_fmt_f32(3.4028234663852886e38) == b"3.4028235e+38/0x7f7fffff"
assert common.sim_fmt_f32(-0.0) == b"-0/0x80000000"
common.aclsimObjectKindName.restype = ctypes.c_char_p
counts = (ctypes.c_int64 * 16)()
n = common.aclsimLiveObjects(counts, 16)
assert n == 9 and common.aclsimObjectKindName(n - 1) == b"comm" and not any(counts[:n])
assert common.aclsimIsSimulator() == 1
rt.aclrtGetSocName.restype = ctypes.c_char_p
assert b"simulator" in rt.aclrtGetSocName()
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code, str(cann_sim_home / "lib64")], capture_output=True, text=True,
                         env=sim_env(cann_sim_home))
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr
