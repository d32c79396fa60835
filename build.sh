#!/usr/bin/env bash
# Builds the aclnn_py CANN simulator into build/cann-sim/ (or $SIM_OUT), a tree laid out like a CANN toolkit:
#   include/            public headers (copy of sim/include)
#   lib64/              libop_common.so (core) + libascendcl.so (libacl_rt.so -> it), libnnopbase.so,
#                       libhccl.so, libopapi.so (every sim/src/op_*.c); as a CANN >= 8.5 install splits them:
#                       libopapi_transformer.so (the same operators), libopapi_math.so and libhccl_fwk.so (empty)
#   bin/setenv.bash     source it to point CANN-style builds and aclnn_py at the simulator (set_env.sh: the same,
#                       where CANN >= 8.5 has it, at the root)
#   latest -> .         so "$cann_path/latest/include" works as in the official demos
#   share/info/<pkg>/version.info, <arch>-linux/ascend_toolkit_install.info: the release, as CANN records it
# The simulator emulates one CANN release per call (ACLNN_SIM_CANN_VERSION, default: the first release of
# aclnn_py/releases.py); build.sh generates its table of changes, sim_releases.h, from releases.py.
# A checkout also gets build/cann-sim-v2only/: the same simulator whose libopapi.so exports only the V2/V1
# operators and whose files say CANN 8.3.RC1 (an install older than the releases aclnn_py knows).
# Objects are cached in build/obj and rebuilt when their source or any header changes.
# Env: CC (default gcc), SIM_CFLAGS (extra compile+link flags, e.g. -fsanitize=address), SIM_WERROR=1 (warnings are errors), JOBS (default 2),
#      PYTHON (default python3, runs releases.py).
# Directories (defaults: this checkout; `python -m aclnn_py sim build` sets them for an installed package):
#   SIM_SRC  the simulator sources (src/, include/, tools/)  default sim/ (or this script's directory when it has src/)
#   SIM_OUT  the install tree                                 default build/cann-sim
#   SIM_OBJ  the object cache                                 default build/obj
#   SIM_SOURCE_ID  recorded in version.info                   default the git revision
#   SIM_RELEASES_PY  the release table                        default aclnn_py/releases.py next to SIM_SRC (a
#                                                             checkout's sim/, or the package's _sim/)
#   SIM_V2ONLY_OUT  the V2-only tree ("" skips it)            default build/cann-sim-v2only when SIM_OUT is unset
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$ROOT/$(basename "${BASH_SOURCE[0]}")"
if [[ -d "$ROOT/sim/src" ]]; then DEFAULT_SIM="$ROOT/sim"; else DEFAULT_SIM="$ROOT"; fi
SIM="$(cd "${SIM_SRC:-$DEFAULT_SIM}" && pwd)"
SRC="$SIM/src"
INC="$SIM/include"
OBJ="${SIM_OBJ:-$ROOT/build/obj}"
OUT="${SIM_OUT:-$ROOT/build/cann-sim}"
if [[ -n "${SIM_V2ONLY_OUT+set}" ]]; then V2OUT="$SIM_V2ONLY_OUT"
elif [[ -z "${SIM_OUT:-}" ]]; then V2OUT="$ROOT/build/cann-sim-v2only"
else V2OUT=""; fi
GEN="$OBJ/gen"
CC="${CC:-gcc}"
JOBS="${JOBS:-2}"
ARCH_DIR="$(uname -m)-linux"

# -ffp-contract=off: the kernels must round every float op separately (no FMA), like the NPU vector units
CFLAGS=(-std=gnu11 -O2 -g -fPIC -pthread -Wall -Wextra -ffp-contract=off -I"$INC" -I"$SRC" -I"$GEN")
[[ "${SIM_WERROR:-0}" == "1" ]] && CFLAGS+=(-Werror)
# shellcheck disable=SC2206
[[ -n "${SIM_CFLAGS:-}" ]] && CFLAGS+=(${SIM_CFLAGS})
HIDDEN=(-fvisibility=hidden)   # every library exports only what is declared with default visibility

mkdir -p "$OBJ" "$GEN"

# replace_if_changed <new file> <file>: keeps the old file (and its time stamp) when the content is the same
replace_if_changed() {
    if cmp -s "$1" "$2"; then rm -f "$1"; else mv -f "$1" "$2"; fi
}

# ---- the release table: sim_releases.h from aclnn_py/releases.py ----------------------------------------
releases_py=""
for c in "${SIM_RELEASES_PY:-}" "$SIM/../aclnn_py/releases.py" "$SIM/../releases.py"; do
    if [[ -n "$c" && -f "$c" ]]; then releases_py="$c"; break; fi
done
if [[ -z "$releases_py" ]]; then
    echo "build.sh: cannot find aclnn_py/releases.py (looked next to $SIM); set SIM_RELEASES_PY to it" >&2
    exit 1
fi
"${PYTHON:-python3}" "$releases_py" --c-header >"$GEN/sim_releases.h.tmp"
replace_if_changed "$GEN/sim_releases.h.tmp" "$GEN/sim_releases.h"
DEFAULT_RELEASE="$(sed -n 's/^#define SIM_DEFAULT_RELEASE "\(.*\)"$/\1/p' "$GEN/sim_releases.h")"
V2ONLY_RELEASE="8.3.RC1"
printf '/* a library CANN >= 8.5 installs that the simulator does not need: it exports nothing */\n' \
    >"$GEN/empty_library.c.tmp"
replace_if_changed "$GEN/empty_library.c.tmp" "$GEN/empty_library.c"

# newest header: any change rebuilds every object
newest_header="$(find "$INC" "$SRC" "$GEN" -name '*.h' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)"

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
    echo "  CC    ${src#"$SIM"/} -> ${obj#"$OBJ"/}"
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
link() { # link <lib dir> <lib name> <objects...> -- <libs...>
    local lib="$1" name="$2"
    shift 2
    local objs=() libs=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do objs+=("$1"); shift; done
    [[ $# -gt 0 ]] && shift
    libs=("$@")
    echo "  LD    $(basename "$(dirname "$lib")")/lib64/$name"
    # shellcheck disable=SC2086
    "$CC" -shared -pthread -Wl,--disable-new-dtags -Wl,--no-as-needed -Wl,-z,defs -Wl,-rpath,'$ORIGIN' -L"$lib" \
        ${SIM_CFLAGS:-} -Wl,-soname,"$name" -o "$lib/$name.tmp" "${objs[@]}" "${libs[@]}"
    mv -f "$lib/$name.tmp" "$lib/$name"
}
check_exports() { # check_exports <lib path> <symbols...>
    local lib="$1"
    shift
    local have s bad=()
    have="$(nm -D --defined-only "$lib" | awk '{print $3}')"
    for s in "$@"; do grep -qx "$s" <<<"$have" || bad+=("$s"); done
    if (( ${#bad[@]} )); then
        echo "build.sh: $lib does not export: ${bad[*]}" >&2
        exit 1
    fi
}
# remove_stale_objects <obj dir> <prefix>: objects of sources that no longer exist must not be linked
remove_stale_objects() {
    local o
    for o in "$1"/"$2"*.o; do
        [[ -e "$o" ]] || continue
        [[ -e "$SRC/$(basename "${o%.o}").c" ]] || rm -f "$o"
    done
}

echo "Building the aclnn_py CANN simulator"

# ---- compile: the objects every tree shares ------------------------------------------------------------
core_objs=()
for f in "$SRC"/core_*.c; do
    o="$OBJ/core/$(basename "${f%.c}").o"
    core_objs+=("$o")
    compile "$f" "$o" "${HIDDEN[@]}"
done
compile "$SRC/nnopbase.c" "$OBJ/nnopbase/nnopbase.o" "${HIDDEN[@]}"
compile "$SRC/hccl.c" "$OBJ/hccl/hccl.o" "${HIDDEN[@]}"
compile "$GEN/empty_library.c" "$OBJ/empty/empty_library.o"
wait_compiles
remove_stale_objects "$OBJ/core" core_

# ---- the operators each tree exports; those no sim/src/op_*.c defines get a stub returning 561003 ---------
ops_v2only=(
    aclnnDistributeBarrierGetWorkspaceSize aclnnDistributeBarrier
    aclnnMoeDistributeDispatchV2GetWorkspaceSize aclnnMoeDistributeDispatchV2
    aclnnMoeDistributeCombineV2GetWorkspaceSize aclnnMoeDistributeCombineV2
    aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize aclnnMoeDistributeCombineAddRmsNorm
)
ops_full=(
    "${ops_v2only[@]}"
    aclnnDistributeBarrierV2GetWorkspaceSize aclnnDistributeBarrierV2
    aclnnMoeDistributeDispatchV3GetWorkspaceSize aclnnMoeDistributeDispatchV3
    aclnnMoeDistributeCombineV3GetWorkspaceSize aclnnMoeDistributeCombineV3
    aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize aclnnMoeDistributeCombineAddRmsNormV2
    aclnnMoeDistributeDispatchV4GetWorkspaceSize aclnnMoeDistributeDispatchV4
    aclnnMoeDistributeCombineV4GetWorkspaceSize aclnnMoeDistributeCombineV4
)

# compile_ops <obj dir> <name of the array of required ops> [extra flags...]: sets op_objs (objects + stubs)
compile_ops() {
    local dir="$1"
    local -n req="$2"
    shift 2
    op_objs=()
    local f o s
    for f in "$SRC"/op_*.c; do
        [[ -e "$f" ]] || continue
        o="$dir/$(basename "${f%.c}").o"
        op_objs+=("$o")
        compile "$f" "$o" "${HIDDEN[@]}" "$@"
    done
    wait_compiles
    remove_stale_objects "$dir" op_
    local defined missing=()
    defined="$(nm -g --defined-only "${op_objs[@]}" 2>/dev/null | awk 'NF==3 && $2=="T" {print $3}' | sort -u)"
    for s in "${req[@]}"; do
        grep -qx "$s" <<<"$defined" || missing+=("$s")
    done
    local stub_c="$dir/stubs/opapi_missing_stubs.c"
    rm -f "$dir/stubs/opapi_missing_stubs.o"
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
        compile "$stub_c" "$dir/stubs/opapi_missing_stubs.o" "${HIDDEN[@]}"
        wait_compiles
        op_objs+=("$dir/stubs/opapi_missing_stubs.o")
    fi
}

# link_base <lib dir> <ascendcl object>: the runtime libraries of a tree
link_base() {
    local lib="$1" acl="$2"
    mkdir -p "$lib"
    link "$lib" libop_common.so "${core_objs[@]}" -- -pthread -lrt
    link "$lib" libascendcl.so "$acl" -- -lop_common
    ln -sfn libascendcl.so "$lib/libacl_rt.so"
    link "$lib" libnnopbase.so "$OBJ/nnopbase/nnopbase.o" -- -lop_common
    link "$lib" libhccl.so "$OBJ/hccl/hccl.o" -- -lop_common
    check_exports "$lib/libop_common.so" aclsimLiveObjects aclsimLastCall aclsimObjectKindName aclsimIsSimulator \
        sim_track_add sim_record_call sim_comm_exchange sim_executor_launch sim_release_current
    check_exports "$lib/libascendcl.so" aclInit aclFinalize aclrtSetDevice aclrtMalloc aclrtMemcpy aclGetRecentErrMsg \
        aclrtSynchronizeStreamWithTimeout aclrtCreateContext aclDataTypeSize aclrtGetSocName aclsysGetCANNVersion
    check_exports "$lib/libnnopbase.so" aclCreateTensor aclDestroyTensor aclCreateIntArray aclDestroyAclOpExecutor \
        aclSetAclOpExecutorRepeatable aclnnInit aclnnFinalize aclGetViewShape
    check_exports "$lib/libhccl.so" HcclCommInitAll HcclGetRootInfo HcclCommInitRootInfo HcclGetCommName \
        HcclCommDestroy HcclBarrier HcclGetErrorString
}

# link_opapi <lib dir> <lib name>: an operator library of op_objs
link_opapi() {
    # libopapi also needs the runtime, meta and HCCL libraries, so dlsym on its handle finds aclCreateTensor etc.
    # --wrap: in multi-process mode the kernels' own allocations must be shared memory (sim/src/core_shm.c)
    link "$1" "$2" "${op_objs[@]}" -- -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free \
        -lnnopbase -lascendcl -lhccl -lop_common -lm
}

git_rev="${SIM_SOURCE_ID:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"

# write_setenv <file> <the tree's root relative to the file's directory>
write_setenv() {
    cat >"$1" <<EOF
# aclnn_py CANN simulator environment (generated by build.sh). Usage: source $(basename "$1")
# This tree is a software simulator for tests and laptops; it drives no NPU. It emulates the CANN release
# named by ACLNN_SIM_CANN_VERSION (e.g. 9.1.0), by default $DEFAULT_RELEASE.
_aclnn_sim_root="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")/$2" && pwd -P)"
export ASCEND_HOME_PATH="\$_aclnn_sim_root"
export ASCEND_TOOLKIT_HOME="\$_aclnn_sim_root"
export LD_LIBRARY_PATH="\$_aclnn_sim_root/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LIBRARY_PATH="\$_aclnn_sim_root/lib64\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export ACLNN_SIM=1
unset _aclnn_sim_root
EOF
}

# install_tree <tree> <release> <1: CANN >= 8.5 layout (share/info), 0: older>: headers, environment scripts,
# version files
install_tree() {
    local out="$1" release="$2" share="$3" pkg
    rm -rf "$out/include.tmp"
    cp -r "$INC" "$out/include.tmp"
    rm -rf "$out/include"
    mv "$out/include.tmp" "$out/include"
    ln -sfn . "$out/latest"
    mkdir -p "$out/bin" "$out/$ARCH_DIR"
    write_setenv "$out/bin/setenv.bash" ..
    write_setenv "$out/set_env.sh" .
    cat >"$out/version.info" <<EOF
Version=$release
version_dir=aclnn_py-simulator
product=aclnn_py CANN simulator (software emulation for tests; not a Huawei CANN release, drives no NPU)
source_commit=$git_rev
EOF
    local info
    info="package_name=aclnn_py_cann_simulator
version=$release
simulator=1
description=aclnn_py CANN simulator: a software emulation of the CANN toolkit ABI (acl runtime, aclnn meta API, HCCL, MC2 MoE ops) for tests and laptops; it drives no NPU
arch=$(uname -m)
os=linux
path=$out
source_commit=$git_rev"
    printf '%s\n' "$info" >"$out/ascend_toolkit_install.info"
    printf '%s\n' "$info" >"$out/$ARCH_DIR/ascend_toolkit_install.info"
    rm -rf "$out/share/info"
    if (( share )); then
        # one version.info per sub-package, "Version=" first: what aclsysGetVersionStr reads on CANN >= 8.5
        for pkg in runtime opbase hccl ops_math ops_transformer; do
            mkdir -p "$out/share/info/$pkg"
            printf 'Version=%s\nversion_dir=cann\nproduct=aclnn_py CANN simulator\n' "$release" \
                >"$out/share/info/$pkg/version.info"
        done
    fi
    # The marker aclnn_py's discovery looks for (aclnn_py/runtime/discovery.py SIMULATOR_MARKER).
    echo "aclnn_py CANN simulator $git_rev" >"$out/aclnn_py_simulator.info"
}

# ---- the default tree --------------------------------------------------------------------------------------
compile "$SRC/acl_runtime.c" "$OBJ/ascendcl/acl_runtime.o" "${HIDDEN[@]}"
compile_ops "$OBJ/opapi" ops_full
LIB="$OUT/lib64"
link_base "$LIB" "$OBJ/ascendcl/acl_runtime.o"
check_exports "$LIB/libascendcl.so" aclsysGetVersionStr aclsysGetVersionNum
link_opapi "$LIB" libopapi.so
# CANN >= 8.5 ships the transformer operators in libopapi_transformer.so, and the official demos also link
# libopapi_math.so and libhccl_fwk.so by name: the same operators; the other two export nothing
link_opapi "$LIB" libopapi_transformer.so
link "$LIB" libopapi_math.so "$OBJ/empty/empty_library.o" --
link "$LIB" libhccl_fwk.so "$OBJ/empty/empty_library.o" --
check_exports "$LIB/libopapi.so" "${ops_full[@]}"
check_exports "$LIB/libopapi_transformer.so" "${ops_full[@]}"
install_tree "$OUT" "$DEFAULT_RELEASE" 1
echo "Installed the aclnn_py CANN simulator in $OUT"
echo "  use it with: source $OUT/bin/setenv.bash"

# ---- the V2-only tree: an install whose operators predate V3 (its files say CANN 8.3.RC1) ----------------
if [[ -n "$V2OUT" ]]; then
    V2FLAGS=(-DSIM_V2_ONLY "-DSIM_TREE_RELEASE=\"$V2ONLY_RELEASE\"")
    compile "$SRC/acl_runtime.c" "$OBJ/v2only/ascendcl/acl_runtime.o" "${HIDDEN[@]}" "${V2FLAGS[@]}"
    compile_ops "$OBJ/v2only/opapi" ops_v2only "${V2FLAGS[@]}"
    link_base "$V2OUT/lib64" "$OBJ/v2only/ascendcl/acl_runtime.o"
    link_opapi "$V2OUT/lib64" libopapi.so
    check_exports "$V2OUT/lib64/libopapi.so" "${ops_v2only[@]}"
    if nm -D --defined-only "$V2OUT/lib64/libopapi.so" | awk '{print $3}' |
        grep -qE '^aclnn(MoeDistribute(Dispatch|Combine)V[345]|MoeDistributeCombineAddRmsNormV2|DistributeBarrierV2)'; then
        echo "build.sh: the V2-only libopapi.so exports a V3+ operator" >&2
        exit 1
    fi
    install_tree "$V2OUT" "$V2ONLY_RELEASE" 0
    rm -f "$V2OUT"/include/aclnnop/aclnn_moe_distribute_*_v[345].h "$V2OUT"/include/aclnnop/aclnn_distribute_barrier_v2.h \
        "$V2OUT"/include/aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h
    echo "Installed the V2-only simulator tree in $V2OUT"
fi

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
