"""``python -m aclnn_py`` with a planted failure, for tests under real launchers:

    python tests/failing_smoke.py RANK SCENARIO_PREFIX smoke --quick ...

Rank RANK raises ValueError("planted failure on rank RANK") at the start of its pipeline in the scenarios whose
name starts with SCENARIO_PREFIX; everything else is the CLI as users run it.
"""
from __future__ import annotations

import sys

from aclnn_py.__main__ import main
from aclnn_py.demos import scenario

FAIL_RANK, PREFIX = int(sys.argv[1]), sys.argv[2]
real_run_rank = scenario.run_rank


def run_rank(ctx, sc, *args, **kwargs):
    if ctx.rank == FAIL_RANK and sc.name.startswith(PREFIX):
        raise ValueError(f"planted failure on rank {ctx.rank}")
    return real_run_rank(ctx, sc, *args, **kwargs)


scenario.run_rank = run_rank

if __name__ == "__main__":
    sys.exit(main(sys.argv[3:]))
