#!/usr/bin/env bash
# One entry point for humans and CI; each command does all the set-up it needs:
#   ./dev.sh sample [args]   run the main job (samples/moe_pipeline.py; barrier sample until the MoE ops land)
#   ./dev.sh test [pytest args]   run the test suite
#   ./dev.sh setup           venv + pip install -e .[test] + ./build.sh only
# Without a CANN environment (ASCEND_HOME_PATH / ACLNN_PY_CANN_HOME unset) the simulator built by
# build.sh is used; if it cannot be built, the numpy reference backend runs instead.
set -euo pipefail
cd "$(dirname "$0")"

setup() {
    [ -x .venv/bin/python ] || python3 -m venv .venv
    local stamp=.venv/.aclnn_py-installed
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
        touch "$stamp"
    fi
    if ./build.sh >/dev/null; then
        SIM_OK=1
    else
        echo "dev.sh: build.sh failed; continuing without the simulator" >&2
        SIM_OK=0
    fi
    if [ -z "${ACLNN_PY_CANN_HOME:-}${ASCEND_HOME_PATH:-}${ASCEND_TOOLKIT_HOME:-}" ] && [ "$SIM_OK" = 1 ]; then
        # shellcheck disable=SC1091
        source build/cann-sim/bin/setenv.bash
    fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    sample)
        setup
        if [ -f samples/moe_pipeline.py ]; then exec .venv/bin/python samples/moe_pipeline.py "$@"; fi
        exec .venv/bin/python samples/barrier.py "$@" ;;
    test)
        setup
        exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" ;;
    *) echo "usage: ./dev.sh {sample|test|setup} [args]" >&2; exit 2 ;;
esac
