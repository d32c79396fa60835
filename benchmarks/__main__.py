"""``python -m benchmarks [--quick] [--only NAMES] [--json FILE]``: run the aclnn_py benchmarks (issue 5).

Figures (each prints ratios measured in the same run; not part of the test suite):

  reference        1. reference dispatch/combine vs the np.copyto floor of the moved rows; peak memory
  straightforward  2. reference vs a per-token-loop implementation at ep 8 (checked to agree bit for bit)
  binding          3. host time the Python binding adds per call over a C driver, on the simulator
  simulator        4. simulator dispatch + combine rows per second at ep 16

Figures 3 and 4 need the simulator (``./build.sh``; it also builds the C driver). ``--quick`` runs
smaller configurations and fewer repetitions (a smoke run; the committed figures use the defaults).
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import List, Optional

FIGURES = ("reference", "straightforward", "binding", "simulator")


def _module(name: str):
    if name == "reference":
        from . import reference_bw as m
    elif name == "straightforward":
        from . import straightforward as m
    elif name == "binding":
        from . import binding as m
    else:
        from . import simulator as m
    return m


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small configurations, few repetitions")
    parser.add_argument("--only", default=",".join(FIGURES),
                        help=f"comma-separated figures to run (default: all of {', '.join(FIGURES)})")
    parser.add_argument("--json", metavar="FILE", help="also write every measurement to FILE")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in FIGURES]
    if bad:
        parser.error(f"unknown figure(s) {bad}; choose from {FIGURES}")

    from .common import machine
    info = machine()
    print("aclnn_py benchmarks" + (" (--quick)" if args.quick else ""))
    for k, v in info.items():
        print(f"  {k}: {v}")
    print()
    results = {"machine": info, "quick": args.quick, "figures": {}}
    for name in names:
        m = _module(name)
        t0 = time.perf_counter()
        res = m.run(quick=args.quick)
        res["seconds"] = time.perf_counter() - t0
        results["figures"][name] = res
        print(m.report(res))
        print(f"({name}: {res['seconds']:.1f} s)\n", flush=True)
        gc.collect()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=lambda o: getattr(o, "__dict__", str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
