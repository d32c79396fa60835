"""Command line: ``python -m aclnn_py {info,demo,smoke} [options]``.

info   which CANN install (or the simulator) was found, from where, and which op versions it exports
demo   the seed demos ported to Python, checked against the numpy reference
smoke  every op at real sizes on every visible device, compared with the reference, as a table
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

DEMOS = ("pipeline", "dispatch-barrier-combine", "barrier")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aclnn_py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show the CANN install found and the op versions it exports")
    demo = sub.add_parser("demo", help="run the seed demos (8 ranks) and check them against the reference")
    demo.add_argument("--backend", choices=["auto", "device", "reference"], default=None)
    demo.add_argument("--which", choices=DEMOS + ("all",), default="pipeline")
    smoke = sub.add_parser("smoke", help="run each op at real sizes on every visible device, compare with the reference")
    smoke.add_argument("--quick", action="store_true", help="H 1024 and small batches (CI-sized)")
    smoke.add_argument("--backend", choices=["device", "reference"], default="device")
    smoke.add_argument("--ulp-tolerance", type=int, default=None,
                       help="allowed ulps on combine outputs (default: 0 on the simulator, 1 on hardware)")
    args = parser.parse_args(argv)
    if args.command == "smoke":
        from .smoke import run_smoke
        rows = run_smoke(args.backend, quick=args.quick, ulp_tolerance=args.ulp_tolerance)
        return 0 if all(r.passed for r in rows) else 1
    if args.command == "info":
        from .info import info_lines
        print("\n".join(info_lines()))
        return 0
    from .demos import add_rms_norm, barrier, dispatch_barrier_combine
    runs = {"pipeline": add_rms_norm.run_demo, "dispatch-barrier-combine": dispatch_barrier_combine.run_demo,
            "barrier": barrier.run_demo}
    chosen = DEMOS if args.which == "all" else (args.which,)
    ok = all([runs[name](args.backend) for name in chosen])
    print("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
