#!/usr/bin/env bash
# Builds the aclnn_py CANN simulator into build/cann-sim/ (or $SIM_OUT), a tree laid out like a CANN toolkit:
#   include/            public headers (copy of sim/include)
#   lib64/              libop_common.so (core) + libascendcl.so (libacl_rt.so -> it), libnnopbase.so,
#                       libhccl.so, libopapi.so (every sim/src/op_*.c)
#   bin/setenv.bash     source it to point CANN-style builds and aclnn_py at the simulator
#   latest -> .         so "$cann_path/latest/include" works as in the official demos
# Objects are cached in build/obj and rebuilt when their source or any header changes.
# Env: CC (default gcc), SIM_CFLAGS (extra compile+link flags, e.g. -fsanitize=address), SIM_WERROR=1 (warnings are errors), JOBS (default 2).
# Directories (defaults: this checkout; `python -m aclnn_py sim build` sets them for an installed package):
#   SIM_SRC  the simulator sources (src/, include/, tools/)  default sim/ (or this script's directory when it has src/)
#   SIM_OUT  the install tree                                 default build/cann-sim
#   SIM_OBJ  the object cache                                 default build/obj
#   SIM_SOURCE_ID  recorded in version.info                   default the git revision
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$ROOT/$(basename "${BASH_SOURCE[0]}")"
if [[ -d "$ROOT/sim/src" ]]; then DEFAULT_SIM="$ROOT/sim"; else DEFAULT_SIM="$ROOT"; fi
SIM="$(cd "${SIM_SRC:-$DEFAULT_SIM}" && pwd)"
SRC="$SIM/src"
INC="$SIM/include"
OBJ="${SIM_OBJ:-$ROOT/build/obj}"
OUT="${SIM_OUT:-$ROOT/build/cann-sim}"
LIB="$OUT/lib64"
CC="${CC:-gcc}"
JOBS="${JOBS:-2}"

# -ffp-contract=off: the kernels must round every float op separately (no FMA), like the NPU vector units
CFLAGS=(-std=gnu11 -O2 -g -fPIC -pthread -Wall -Wextra -ffp-contract=off -I"$INC" -I"$SRC")
[[ "${SIM_WERROR:-0}" == "1" ]] && CFLAGS+=(-Werror)
# shellcheck disable=SC2206
[[ -n "${SIM_CFLAGS:-}" ]] && CFLAGS+=(${SIM_CFLAGS})
HIDDEN=(-fvisibility=hidden)   # every library exports only what is declared with default visibility
LDFLAGS=(-shared -pthread -Wl,--disable-new-dtags -Wl,--no-as-needed -Wl,-z,defs -Wl,-rpath,'$ORIGIN' -L"$LIB")

mkdir -p "$OBJ" "$LIB" "$OUT/bin"

# newest header: any change rebuilds every object
newest_header="$(find "$INC" "$SRC" -name '*.h' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)"

# compile <src> <obj> [extra flags...] (skipped when up to date); runs in the background, up to JOBS at once
pids=()
compile() {
    local src="$1" obj="$2"
    shift 2
    if [[ -f "$obj" && "$obj" -nt "$src" && "$obj" -nt "$newest_header" && "$obj" -nt "$SELF" ]]; then
        return 0
    fi
    mkdir -p "$(dirname "$obj")"
    while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || true; done
    echo "  CC    ${src#"$SIM"/}"
    "$CC" "${CFLAGS[@]}" "$@" -c "$src" -o "$obj" &
    pids+=($!)
}
wait_compiles() {
    local failed=0 pid
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    pids=()
    if (( failed )); then
        echo "build.sh: compilation FAILED (see the errors above)" >&2
        exit 1
    fi
}
link() { # link <lib name> <objects...> -- <libs...>
    local name="$1"
    shift
    local objs=() libs=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do objs+=("$1"); shift; done
    [[ $# -gt 0 ]] && shift
    libs=("$@")
    echo "  LD    lib64/$name"
    # shellcheck disable=SC2086
    "$CC" "${LDFLAGS[@]}" ${SIM_CFLAGS:-} -Wl,-soname,"$name" -o "$LIB/$name.tmp" "${objs[@]}" "${libs[@]}"
    mv -f "$LIB/$name.tmp" "$LIB/$name"
}

echo "Building the aclnn_py CANN simulator"

# ---- compile ---------------------------------------------------------------------------------------
core_objs=()
for f in "$SRC"/core_*.c; do
    o="$OBJ/core/$(basename "${f%.c}").o"
    core_objs+=("$o")
    compile "$f" "$o" "${HIDDEN[@]}"
done
compile "$SRC/acl_runtime.c" "$OBJ/ascendcl/acl_runtime.o" "${HIDDEN[@]}"
compile "$SRC/nnopbase.c" "$OBJ/nnopbase/nnopbase.o" "${HIDDEN[@]}"
compile "$SRC/hccl.c" "$OBJ/hccl/hccl.o" "${HIDDEN[@]}"
op_objs=()
for f in "$SRC"/op_*.c; do
    [[ -e "$f" ]] || continue
    o="$OBJ/opapi/$(basename "${f%.c}").o"
    op_objs+=("$o")
    compile "$f" "$o" "${HIDDEN[@]}"
done
wait_compiles
# objects of op sources that no longer exist must not be linked
for o in "$OBJ"/opapi/op_*.o; do
    [[ -e "$o" ]] || continue
    [[ -e "$SRC/$(basename "${o%.o}").c" ]] || rm -f "$o"
done

# ---- ops that no sim/src/op_*.c defines yet get a stub returning 561003 -------------------------------
required_ops=(
    aclnnDistributeBarrierV2GetWorkspaceSize aclnnDistributeBarrierV2
    aclnnDistributeBarrierGetWorkspaceSize aclnnDistributeBarrier
    aclnnMoeDistributeDispatchV3GetWorkspaceSize aclnnMoeDistributeDispatchV3
    aclnnMoeDistributeCombineV3GetWorkspaceSize aclnnMoeDistributeCombineV3
    aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize aclnnMoeDistributeCombineAddRmsNormV2
)
defined="$(nm -g --defined-only "${op_objs[@]}" 2>/dev/null | awk 'NF==3 && $2=="T" {print $3}' | sort -u)"
missing=()
for s in "${required_ops[@]}"; do
    grep -qx "$s" <<<"$defined" || missing+=("$s")
done
stub_c="$OBJ/opapi_stubs/opapi_missing_stubs.c"
rm -f "$OBJ/opapi_stubs/opapi_missing_stubs.o"
if (( ${#missing[@]} )); then
    mkdir -p "$(dirname "$stub_c")"
    {
        echo "/* Generated by build.sh: ops no sim/src/op_*.c defines yet. They take any arguments, record the"
        echo " * call and return ACLNN_ERR_INNER_FIND_KERNEL_ERROR (561003) with a 'not implemented' message. */"
        echo '#include "simcore.h"'
        for s in "${missing[@]}"; do
            echo "SIM_API int32_t $s(void);"
            echo "SIM_API int32_t $s(void)"
            echo "{"
            echo "    sim_record_call(\"$s\", \"(not implemented)\");"
            echo "    sim_set_error(\"$s is not implemented in this build of the aclnn_py simulator (no sim/src/op_*.c defines it)\");"
            echo "    return 561003;"
            echo "}"
        done
    } >"$stub_c"
    echo "  NOTE  not implemented yet (stubs return 561003): ${missing[*]}"
    compile "$stub_c" "$OBJ/opapi_stubs/opapi_missing_stubs.o" "${HIDDEN[@]}"
    wait_compiles
    op_objs+=("$OBJ/opapi_stubs/opapi_missing_stubs.o")
fi

# ---- link ------------------------------------------------------------------------------------------
link libop_common.so "${core_objs[@]}" -- -pthread -lrt
link libascendcl.so "$OBJ/ascendcl/acl_runtime.o" -- -lop_common
ln -sfn libascendcl.so "$LIB/libacl_rt.so"
link libnnopbase.so "$OBJ/nnopbase/nnopbase.o" -- -lop_common
link libhccl.so "$OBJ/hccl/hccl.o" -- -lop_common
# libopapi also needs the runtime, meta and HCCL libraries, so dlsym on its handle finds aclCreateTensor etc.
# --wrap: in multi-process mode the kernels' own allocations must be shared memory (sim/src/core_shm.c)
link libopapi.so "${op_objs[@]}" -- -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free \
    -lnnopbase -lascendcl -lhccl -lop_common -lm

# ---- install tree ------------------------------------------------------------------------------------
rm -rf "$OUT/include.tmp"
cp -r "$INC" "$OUT/include.tmp"
rm -rf "$OUT/include"
mv "$OUT/include.tmp" "$OUT/include"
ln -sfn . "$OUT/latest"

cat >"$OUT/bin/setenv.bash" <<'EOF'
# aclnn_py CANN simulator environment (generated by build.sh). Usage: source <tree>/bin/setenv.bash
# This tree is a software simulator for tests and laptops; it drives no NPU.
_aclnn_sim_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
export ASCEND_HOME_PATH="$_aclnn_sim_root"
export ASCEND_TOOLKIT_HOME="$_aclnn_sim_root"
export LD_LIBRARY_PATH="$_aclnn_sim_root/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LIBRARY_PATH="$_aclnn_sim_root/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
export ACLNN_SIM=1
unset _aclnn_sim_root
EOF

git_rev="${SIM_SOURCE_ID:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
cat >"$OUT/version.info" <<EOF
Version=8.5.0
version_dir=aclnn_py-simulator
product=aclnn_py CANN simulator (software emulation for tests; not a Huawei CANN release, drives no NPU)
source_commit=$git_rev
EOF
cat >"$OUT/ascend_toolkit_install.info" <<EOF
package_name=aclnn_py_cann_simulator
version=8.5.0
simulator=1
description=aclnn_py CANN simulator: a software emulation of the CANN toolkit ABI (acl runtime, aclnn meta API, HCCL, MC2 MoE ops) for tests and laptops; it drives no NPU
source_commit=$git_rev
EOF
# The marker aclnn_py's discovery looks for (aclnn_py/runtime/discovery.py SIMULATOR_MARKER).
echo "aclnn_py CANN simulator $git_rev" >"$OUT/aclnn_py_simulator.info"

# ---- export checks -----------------------------------------------------------------------------------
check_exports() { # check_exports <lib> <symbols...>
    local lib="$1"
    shift
    local have s bad=()
    have="$(nm -D --defined-only "$LIB/$lib" | awk '{print $3}')"
    for s in "$@"; do grep -qx "$s" <<<"$have" || bad+=("$s"); done
    if (( ${#bad[@]} )); then
        echo "build.sh: $lib does not export: ${bad[*]}" >&2
        exit 1
    fi
}
check_exports libop_common.so aclsimLiveObjects aclsimLastCall aclsimObjectKindName aclsimIsSimulator \
    sim_track_add sim_record_call sim_comm_exchange sim_executor_launch
check_exports libascendcl.so aclInit aclFinalize aclrtSetDevice aclrtMalloc aclrtMemcpy aclGetRecentErrMsg \
    aclrtSynchronizeStreamWithTimeout aclrtCreateContext aclDataTypeSize aclrtGetSocName
check_exports libnnopbase.so aclCreateTensor aclDestroyTensor aclCreateIntArray aclDestroyAclOpExecutor \
    aclSetAclOpExecutorRepeatable aclnnInit aclnnFinalize aclGetViewShape
check_exports libhccl.so HcclCommInitAll HcclGetRootInfo HcclCommInitRootInfo HcclGetCommName HcclCommDestroy \
    HcclBarrier HcclGetErrorString
check_exports libopapi.so "${required_ops[@]}"

echo "Installed the aclnn_py CANN simulator in $OUT"
echo "  use it with: source $OUT/bin/setenv.bash"

# ---- tools: sim/tools/*.c -> bin/<name> and bin/lib<name>.so, host programs linked against this tree -------
# (e.g. bin/bench_driver, the C baseline of benchmarks/binding.py). Rebuilt when the source or libopapi changes.
for tool in "$SIM"/tools/*.c; do
    [[ -e "$tool" ]] || continue
    name="$(basename "${tool%.c}")"
    for out in "$OUT/bin/$name" "$OUT/bin/lib$name.so"; do
        [[ -f "$out" && "$out" -nt "$tool" && "$out" -nt "$LIB/libopapi.so" ]] && continue
        echo "  CC    ${tool#"$SIM"/} -> bin/$(basename "$out")"
        tflags=(-std=gnu11 -O2 -g -pthread -Wall -Wextra)
        [[ "${SIM_WERROR:-0}" == "1" ]] && tflags+=(-Werror)
        [[ "$out" == *.so ]] && tflags+=(-shared -fPIC)
        # shellcheck disable=SC2086
        "$CC" "${tflags[@]}" ${SIM_CFLAGS:-} -I"$OUT/include" "$tool" \
            -o "$out.tmp" -L"$LIB" -Wl,--disable-new-dtags -Wl,-rpath,'$ORIGIN/../lib64' \
            -lascendcl -lnnopbase -lopapi -lhccl -lop_common
        mv -f "$out.tmp" "$out"
    done
done
