"""The simulator's installed headers agree with CANN's published headers.

The simulator emulates the CANN 8.5.0 line by default, so its headers must match the headers published
for that release. Every integer constant the installed acl/aclnn/hccl headers declare must appear in
PUBLISHED below with the published value, and the struct layouts must match (checked by compiling a small
C++ program against build/cann-sim/include). Each fact names its source:

- TA: torch-npu 2.9.0 wheel (the TorchNPU release paired with CANN 8.5.0; git 12d689a0, tag
  v7.3.0-pytorch2.9.0), torch_npu/include/third_party/acl/inc/acl/<file>:<line>.
- TH: same wheel, torch_npu/include/third_party/hccl/inc/hccl/hccl_types.h:<line>.
- RT: hicann/runtime d8beaaf09 (2025-12-25, CANN 8.5.0), include/external/acl/<file>:<line>; used for
  names the torch-npu copy lacks.
- OB: hicann/opbase 313b014 (2025-12-17), include/nnopbase/<file>:<line>.

Values that later releases changed are noted next to the fact (details in the issue-11 notes).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

HEADER_DIRS = ("acl", "aclnn", "hccl")


def _facts(source: str, **values: int) -> dict[str, tuple[int, str]]:
    return {name: (value, source) for name, value in values.items()}


PUBLISHED: dict[str, tuple[int, str]] = {
    **_facts("TA acl_base.h:65-139", ACL_ERROR_NONE=0, ACL_SUCCESS=0, ACL_ERROR_INVALID_PARAM=100000,
             ACL_ERROR_UNINITIALIZE=100001, ACL_ERROR_REPEAT_INITIALIZE=100002, ACL_ERROR_INVALID_FILE=100003,
             ACL_ERROR_OP_NOT_FOUND=100024, ACL_ERROR_UNSUPPORTED_DATA_TYPE=100026,
             ACL_ERROR_WAIT_CALLBACK_TIMEOUT=100036, ACL_ERROR_REPEAT_FINALIZE=100037,
             ACL_ERROR_INVALID_OPP_PATH=148049, ACL_ERROR_BAD_ALLOC=200000, ACL_ERROR_API_NOT_SUPPORT=200001,
             ACL_ERROR_INVALID_DEVICE=200002, ACL_ERROR_MEMORY_ADDRESS_UNALIGNED=200003,
             ACL_ERROR_RESOURCE_NOT_MATCH=200004, ACL_ERROR_INVALID_RESOURCE_HANDLE=200005,
             ACL_ERROR_FEATURE_UNSUPPORTED=200006, ACL_ERROR_STORAGE_OVER_LIMIT=300000,
             ACL_ERROR_INTERNAL_ERROR=500000, ACL_ERROR_FAILURE=500001, ACL_ERROR_GE_FAILURE=500002,
             ACL_ERROR_RT_FAILURE=500003, ACL_ERROR_DRV_FAILURE=500004, ACL_ERROR_PROFILING_FAILURE=500005),
    **_facts("TA acl_base.h:145-166", ACL_DT_UNDEFINED=-1, ACL_FLOAT=0, ACL_FLOAT16=1, ACL_INT8=2, ACL_INT32=3,
             ACL_UINT8=4, ACL_INT16=6, ACL_UINT16=7, ACL_UINT32=8, ACL_INT64=9, ACL_UINT64=10, ACL_DOUBLE=11,
             ACL_BOOL=12, ACL_STRING=13, ACL_COMPLEX64=16, ACL_COMPLEX128=17, ACL_BF16=27, ACL_INT4=29,
             ACL_UINT1=30, ACL_COMPLEX32=33),
    **_facts("RT acl_base_rt.h:157-164", ACL_HIFLOAT8=34, ACL_FLOAT8_E5M2=35, ACL_FLOAT8_E4M3FN=36,
             ACL_FLOAT8_E8M0=37, ACL_FLOAT6_E3M2=38, ACL_FLOAT6_E2M3=39, ACL_FLOAT4_E2M1=40, ACL_FLOAT4_E1M2=41),
    **_facts("TA acl_base.h:168-186", ACL_FORMAT_UNDEFINED=-1, ACL_FORMAT_NCHW=0, ACL_FORMAT_NHWC=1,
             ACL_FORMAT_ND=2, ACL_FORMAT_NC1HWC0=3, ACL_FORMAT_FRACTAL_Z=4, ACL_FORMAT_NC1HWC0_C04=12,
             ACL_FORMAT_HWCN=16, ACL_FORMAT_NDHWC=27, ACL_FORMAT_FRACTAL_NZ=29, ACL_FORMAT_NCDHW=30,
             ACL_FORMAT_NDC1HWC0=32, ACL_FRACTAL_Z_3D=33, ACL_FORMAT_NC=35, ACL_FORMAT_NCL=47,
             ACL_FORMAT_FRACTAL_NZ_C0_16=50, ACL_FORMAT_FRACTAL_NZ_C0_32=51),
    **_facts("RT acl_base_rt.h:185-187", ACL_FORMAT_FRACTAL_NZ_C0_2=52, ACL_FORMAT_FRACTAL_NZ_C0_4=53,
             ACL_FORMAT_FRACTAL_NZ_C0_8=54),
    # 1.15.0 in CANN 8.5.0; hicann/runtime 703dcfa77 (2026-01-15) made it 1.16, 0e6be9a9f (2026-03-28) 1.17.
    **_facts("TA acl_rt.h:23-25", ACL_MAJOR_VERSION=1, ACL_MINOR_VERSION=15, ACL_PATCH_VERSION=0),
    **_facts("TA acl_rt.h:107-116", ACL_MEMCPY_HOST_TO_HOST=0, ACL_MEMCPY_HOST_TO_DEVICE=1,
             ACL_MEMCPY_DEVICE_TO_HOST=2, ACL_MEMCPY_DEVICE_TO_DEVICE=3, ACL_MEMCPY_DEFAULT=4,
             ACL_MEMCPY_HOST_TO_BUF_TO_DEVICE=5, ACL_MEMCPY_INNER_DEVICE_TO_DEVICE=6,
             ACL_MEMCPY_INTER_DEVICE_TO_DEVICE=7),
    **_facts("TA acl_rt.h:118-130", ACL_MEM_MALLOC_HUGE_FIRST=0, ACL_MEM_MALLOC_HUGE_ONLY=1,
             ACL_MEM_MALLOC_NORMAL_ONLY=2, ACL_MEM_MALLOC_HUGE_FIRST_P2P=3, ACL_MEM_MALLOC_HUGE_ONLY_P2P=4,
             ACL_MEM_MALLOC_NORMAL_ONLY_P2P=5, ACL_MEM_MALLOC_HUGE1G_ONLY=6, ACL_MEM_MALLOC_HUGE1G_ONLY_P2P=7,
             ACL_MEM_TYPE_LOW_BAND_WIDTH=0x0100, ACL_MEM_TYPE_HIGH_BAND_WIDTH=0x1000,
             ACL_MEM_ACCESS_USER_SPACE_READONLY=0x100000),
    # ACL_MEM_NORMAL..ACL_MEM_P2P_HUGE1G (12-17) only exist from hicann/runtime 4e1d5e187 (2026-01-16).
    **_facts("TA acl_rt.h:160-173", ACL_DDR_MEM=0, ACL_HBM_MEM=1, ACL_DDR_MEM_HUGE=2, ACL_DDR_MEM_NORMAL=3,
             ACL_HBM_MEM_HUGE=4, ACL_HBM_MEM_NORMAL=5, ACL_DDR_MEM_P2P_HUGE=6, ACL_DDR_MEM_P2P_NORMAL=7,
             ACL_HBM_MEM_P2P_HUGE=8, ACL_HBM_MEM_P2P_NORMAL=9, ACL_HBM_MEM_HUGE1G=10, ACL_HBM_MEM_P2P_HUGE1G=11),
    **_facts("TA acl.h:22-23", ACL_PKG_VERSION_MAX_SIZE=128, ACL_PKG_VERSION_PARTS_MAX_SIZE=64),
    **_facts("TA acl.h:97-106", ACL_PKG_NAME_CANN=0, ACL_PKG_NAME_RUNTIME=1, ACL_PKG_NAME_COMPILER=2,
             ACL_PKG_NAME_HCCL=3, ACL_PKG_NAME_TOOLKIT=4, ACL_PKG_NAME_OPP=5, ACL_PKG_NAME_OPP_KERNEL=6,
             ACL_PKG_NAME_DRIVER=7),
    # ACL_ERROR_RT_TIMEOUT (207020) only exists from hicann/runtime 10bd3dd7a (2026-04-28).
    **_facts("TA error_codes/rt_error_codes.h:20-143", ACL_RT_SUCCESS=0, ACL_ERROR_RT_PARAM_INVALID=107000,
             ACL_ERROR_RT_INVALID_DEVICEID=107001, ACL_ERROR_RT_CONTEXT_NULL=107002,
             ACL_ERROR_RT_STREAM_CONTEXT=107003, ACL_ERROR_RT_INVALID_HANDLE=107017,
             ACL_ERROR_RT_WAIT_TIMEOUT=107019, ACL_ERROR_RT_TASK_TIMEOUT=107020,
             ACL_ERROR_RT_FEATURE_NOT_SUPPORT=207000, ACL_ERROR_RT_MEMORY_ALLOCATION=207001,
             ACL_ERROR_RT_NO_DEVICE=207004, ACL_ERROR_RT_DEVICE_OOM=207018, ACL_ERROR_RT_INTERNAL_ERROR=507000,
             ACL_ERROR_RT_MODEL_EXECUTE=507011, ACL_ERROR_RT_AICORE_TIMEOUT=507014,
             ACL_ERROR_RT_AICORE_EXCEPTION=507015, ACL_ERROR_RT_AICPU_EXCEPTION=507018,
             ACL_ERROR_RT_VECTOR_CORE_TIMEOUT=507034, ACL_ERROR_RT_VECTOR_CORE_EXCEPTION=507035,
             ACL_ERROR_RT_STREAM_SYNC_TIMEOUT=507046, ACL_ERROR_RT_EVENT_SYNC_TIMEOUT=507047,
             ACL_ERROR_RT_DEVICE_MEM_ERROR=507053, ACL_ERROR_RT_LINK_ERROR=507056,
             ACL_ERROR_RT_DRV_INTERNAL_ERROR=507899, ACL_ERROR_RT_COMM_OP_RETRY_FAIL=507904),
    **_facts("OB aclnn/acl_meta.h:59", OK=0),
    **_facts("OB opdev/op_errno.h:14-24", ACLNN_SUCCESS=0, ACLNN_ERR_PARAM_NULLPTR=161001,
             ACLNN_ERR_PARAM_INVALID=161002, ACLNN_ERR_RUNTIME_ERROR=361001, ACLNN_ERR_INNER=561000,
             ACLNN_ERR_INNER_INFERSHAPE_ERROR=561001, ACLNN_ERR_INNER_TILING_ERROR=561002,
             ACLNN_ERR_INNER_FIND_KERNEL_ERROR=561003, ACLNN_ERR_INNER_CREATE_EXECUTOR=561101,
             ACLNN_ERR_INNER_NOT_TRANS_EXECUTOR=561102, ACLNN_ERR_INNER_NULLPTR=561103),
    # HCCL_E_OOM = 24 appears in the torch-npu copy from 7.3.0.alpha002 (CANN 9.x), pushing HCCL_E_RESERVED to
    # 25; the hcomm sources also add HCCL_E_IN_STATUS = 1041, so their HCCL_E_RESERVED is 1042.
    **_facts("TH hccl_types.h:24-48", HCCL_SUCCESS=0, HCCL_E_PARA=1, HCCL_E_PTR=2, HCCL_E_MEMORY=3,
             HCCL_E_INTERNAL=4, HCCL_E_NOT_SUPPORT=5, HCCL_E_NOT_FOUND=6, HCCL_E_UNAVAIL=7, HCCL_E_SYSCALL=8,
             HCCL_E_TIMEOUT=9, HCCL_E_OPEN_FILE_FAILURE=10, HCCL_E_TCP_CONNECT=11, HCCL_E_ROCE_CONNECT=12,
             HCCL_E_TCP_TRANSFER=13, HCCL_E_ROCE_TRANSFER=14, HCCL_E_RUNTIME=15, HCCL_E_DRV=16,
             HCCL_E_PROFILING=17, HCCL_E_CCE=18, HCCL_E_NETWORK=19, HCCL_E_AGAIN=20, HCCL_E_REMOTE=21,
             HCCL_E_SUSPENDING=22, HCCL_E_OPRETRY_FAIL=23, HCCL_E_RESERVED=24),
    **_facts("TH hccl_types.h:60-64", HCCL_REDUCE_SUM=0, HCCL_REDUCE_PROD=1, HCCL_REDUCE_MAX=2, HCCL_REDUCE_MIN=3,
             HCCL_REDUCE_RESERVED=255),
    **_facts("TH hccl_types.h:71-88", HCCL_DATA_TYPE_INT8=0, HCCL_DATA_TYPE_INT16=1, HCCL_DATA_TYPE_INT32=2,
             HCCL_DATA_TYPE_FP16=3, HCCL_DATA_TYPE_FP32=4, HCCL_DATA_TYPE_INT64=5, HCCL_DATA_TYPE_UINT64=6,
             HCCL_DATA_TYPE_UINT8=7, HCCL_DATA_TYPE_UINT16=8, HCCL_DATA_TYPE_UINT32=9, HCCL_DATA_TYPE_FP64=10,
             HCCL_DATA_TYPE_BFP16=11, HCCL_DATA_TYPE_INT128=12, HCCL_DATA_TYPE_HIF8=14,
             HCCL_DATA_TYPE_FP8E4M3=15, HCCL_DATA_TYPE_FP8E5M2=16, HCCL_DATA_TYPE_FP8E8M0=17,
             HCCL_DATA_TYPE_RESERVED=255),
    **_facts("TH hccl_types.h:103-105", HCCL_ROOT_INFO_BYTES=4108, COMM_NAME_MAX_LENGTH=128, UDI_MAX_LENGTH=128),
    # Config version 6 in CANN 8.5.0; 10 in the CANN 9.x headers (hcclAlgo ... appended), 11 on 2026-08 hcomm.
    **_facts("TH hccl_types.h:113-123", HCCL_COMM_CONFIG_INFO_BYTES=24, HCCL_COMM_CONFIG_MAGIC_WORD=0xF0F0F0F0,
             HCCL_COMM_CONFIG_VERSION=6, HCCL_COMM_DEFAULT_BUFFSIZE=200,
             HCCL_COMM_BUFFSIZE_CONFIG_NOT_SET=0xFFFFFFFF, HCCL_COMM_DEFAULT_DETERMINISTIC=0,
             HCCL_COMM_DETERMINISTIC_CONFIG_NOT_SET=0xFFFFFFFF, HCCL_COMM_DEFAULT_OP_EXPANSION_MODE=0,
             HCCL_COMM_TRAFFIC_CLASS_CONFIG_NOT_SET=0xFFFFFFFF, HCCL_COMM_SERVICE_LEVEL_CONFIG_NOT_SET=0xFFFFFFFF),
}

# Struct layouts on LP64, computed from the published declarations (TH hccl_types.h:109-111 and 125-136,
# TA acl.h:112-119): expression -> expected value.
LAYOUT: dict[str, int] = {
    "sizeof(HcclRootInfo)": 4108,
    "sizeof(HcclCommConfig)": 312,
    "offsetof(HcclCommConfig, hcclBufferSize)": 24,
    "offsetof(HcclCommConfig, hcclDeterministic)": 28,
    "offsetof(HcclCommConfig, hcclCommName)": 32,
    "offsetof(HcclCommConfig, hcclUdi)": 160,
    "offsetof(HcclCommConfig, hcclOpExpansionMode)": 288,
    "offsetof(HcclCommConfig, hcclRdmaTrafficClass)": 292,
    "offsetof(HcclCommConfig, hcclRdmaServiceLevel)": 296,
    "offsetof(HcclCommConfig, hcclWorldRankID)": 300,
    "offsetof(HcclCommConfig, hcclJobID)": 304,
    "sizeof(aclCANNPackageVersion)": 512,
    "offsetof(aclCANNPackageVersion, patchVersion)": 320,
}

# What HcclCommConfigInit writes (TH hccl.h:414-443): the {size_t size, uint32 magic, uint32 version} header
# at the start of reserved[], then the "not set" defaults.
CONFIG_INIT: dict[str, int] = {
    "header_size": 312,
    "header_magic": 0xF0F0F0F0,
    "header_version": 6,
    "hcclBufferSize": 0xFFFFFFFF,
    "hcclDeterministic": 0xFFFFFFFF,
    "hcclCommName0": 0,
    "hcclUdi0": 0,
    "hcclOpExpansionMode": 0,
    "hcclRdmaTrafficClass": 0xFFFFFFFF,
    "hcclRdmaServiceLevel": 0xFFFFFFFF,
    "hcclWorldRankID": 0,
    "hcclJobID": 0,
}

PROBE_PRELUDE = """#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include "acl/acl.h"
#include "aclnn/aclnn_base.h"
#include "hccl/hccl.h"
static void put(const char *name, long long value) { std::printf("%s %lld\\n", name, value); }
"""

CONFIG_PROBE = """static void probe_config_init() {
    HcclCommConfig c;
    std::memset(&c, 0x5a, sizeof c);
    HcclCommConfigInit(&c);
    std::size_t size; std::uint32_t word[2];
    std::memcpy(&size, c.reserved, sizeof size);
    std::memcpy(word, c.reserved + sizeof size, sizeof word);
    put("header_size", (long long)size); put("header_magic", word[0]); put("header_version", word[1]);
    put("hcclBufferSize", c.hcclBufferSize); put("hcclDeterministic", c.hcclDeterministic);
    put("hcclCommName0", c.hcclCommName[0]); put("hcclUdi0", c.hcclUdi[0]);
    put("hcclOpExpansionMode", c.hcclOpExpansionMode); put("hcclRdmaTrafficClass", c.hcclRdmaTrafficClass);
    put("hcclRdmaServiceLevel", c.hcclRdmaServiceLevel); put("hcclWorldRankID", c.hcclWorldRankID);
    put("hcclJobID", (long long)c.hcclJobID);
}
"""


def _probe(cann_sim_home: Path, tmp_path: Path, expressions: list[str], with_config_init: bool = False) -> dict:
    """Compile and run a C++ program that prints each expression's value through the installed headers."""
    body = "".join(f'    put("{e}", (long long)({e}));\n' for e in expressions)
    extra = CONFIG_PROBE if with_config_init else ""
    call = "    probe_config_init();\n" if with_config_init else ""
    src = tmp_path / "probe.cpp"
    src.write_text(f"{PROBE_PRELUDE}{extra}int main() {{\n{body}{call}    return 0;\n}}\n")
    exe = tmp_path / "probe"
    build = subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", f"-I{cann_sim_home / 'include'}", str(src),
                            "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    values = {}
    for line in run.stdout.splitlines():
        name, value = line.rsplit(" ", 1)
        values[name] = int(value)
    return values


def _declared_constants(include_dir: Path) -> set[str]:
    """Names of the integer constants the installed acl/aclnn/hccl headers declare."""
    names: set[str] = set()
    for sub in HEADER_DIRS:
        for header in sorted((include_dir / sub).rglob("*.h")):
            text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
            names.update(re.findall(r"^#define\s+([A-Z_][A-Z0-9_]*)\s+\(?-?(?:0x)?[0-9a-fA-F]+[uUlL]*\)?\s*$",
                                    text, re.M))
            names.update(re.findall(r"\b(?:static const int|constexpr aclnnStatus)\s+(\w+)\s*=", text))
            for body in re.findall(r"typedef enum\s*\w*\s*\{(.*?)\}", text, re.S):
                names.update(re.match(r"\s*(\w+)", item).group(1) for item in body.split(",") if item.strip())
    return names


def test_every_declared_constant_has_a_published_value(cann_sim_home: Path) -> None:
    declared = _declared_constants(cann_sim_home / "include")
    unpublished = sorted(declared - PUBLISHED.keys())
    assert not unpublished, f"constants with no published CANN 8.5.0 value: {unpublished}"
    missing = sorted(PUBLISHED.keys() - declared)
    assert not missing, f"published constants the installed headers lack: {missing}"


def test_constants_match_published(cann_sim_home: Path, tmp_path: Path) -> None:
    got = _probe(cann_sim_home, tmp_path, sorted(PUBLISHED))
    wrong = {name: f"installed {got[name]}, published {value} ({source})"
             for name, (value, source) in PUBLISHED.items() if got[name] != value}
    assert not wrong, wrong


def test_struct_layouts_match_published(cann_sim_home: Path, tmp_path: Path) -> None:
    got = _probe(cann_sim_home, tmp_path, sorted(LAYOUT))
    wrong = {expr: f"installed {got[expr]}, published {value}" for expr, value in LAYOUT.items()
             if got[expr] != value}
    assert not wrong, wrong


def test_comm_config_init_writes_the_published_defaults(cann_sim_home: Path, tmp_path: Path) -> None:
    got = _probe(cann_sim_home, tmp_path, [], with_config_init=True)
    wrong = {field: f"installed {got[field]}, published {value}" for field, value in CONFIG_INIT.items()
             if got[field] != value}
    assert not wrong, wrong


@pytest.mark.parametrize("std", ["-std=c99", "-std=c11"])
def test_comm_config_size_check_compiles_in_c(cann_sim_home: Path, tmp_path: Path, std: str) -> None:
    """The size assertion in hccl_types.h works in C99 (array trick) and C11 (_Static_assert)."""
    src = tmp_path / "c.c"
    src.write_text('#include "hccl/hccl.h"\nint main(void) { HcclCommConfig c; HcclCommConfigInit(&c); '
                   "return (int)(sizeof c != 312); }\n")
    exe = tmp_path / "c"
    build = subprocess.run(["gcc", std, "-Wall", "-Wextra", "-pedantic", "-Werror",
                            f"-I{cann_sim_home / 'include'}", str(src), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert subprocess.run([str(exe)]).returncode == 0


def test_version_api_prototypes_match_published(cann_sim_home: Path, tmp_path: Path) -> None:
    """acl/acl_rt.h declares CANN 8.5.0's version API (RT acl_rt.h:810, 821, 832): the exact function types."""
    src = tmp_path / "proto.cpp"
    src.write_text('#include "acl/acl.h"\n'
                   "aclError (*get_cann)(aclCANNPackageName, aclCANNPackageVersion *) = aclsysGetCANNVersion;\n"
                   "aclError (*get_str)(char *, char *) = aclsysGetVersionStr;\n"
                   "aclError (*get_num)(char *, int32_t *) = aclsysGetVersionNum;\n"
                   "int main() { return get_cann && get_str && get_num ? 0 : 1; }\n")
    build = subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", "-c", f"-I{cann_sim_home / 'include'}", str(src),
                            "-o", str(tmp_path / "proto.o")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
