"""Command line: ``aclnn-py`` (or ``python -m aclnn_py``) ``{info,demo,smoke,bench,sim}`` [options].

info   which CANN install (or the simulator) was found, from where, the op versions it exports, and which
       backend 'auto' picks and why
demo   the seed demos ported to Python, checked against the numpy reference
smoke  every op at real sizes on every visible device, compared with the reference, as a table
bench  DispatchV3 (bf16, int8) and CombineV3 latency and bandwidth on every visible device, beside the A3 anchors
sim    build the aclnn_py CANN simulator (gcc only) and show where it is and how to use it from C/C++

Errors are one line with what to do about it. Exit status: 0 success, 1 failure, 2 usage error
(a bad option, or a bad ACLNN_PY_BACKEND), 130 interrupted.

demo, smoke and bench run under mpiexec / mpirun, srun and torchrun too: each process is one rank, rank 0 prints,
and every process exits with the same status.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Callable, Dict, List, Optional, Tuple, Type

DEMOS = ("pipeline", "dispatch-barrier-combine", "barrier")
BACKEND_HELP = ("auto (device when CANN or the simulator is found with enough devices, else the numpy "
                "reference, with a warning), device, or reference; default: $ACLNN_PY_BACKEND, else auto")


def prog_name() -> str:
    """``aclnn-py`` when run as the console script, else ``python -m aclnn_py``."""
    name = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "")
    return "python -m aclnn_py" if name in ("", "__main__.py", "-c", "-m") else name


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser (every option has help text; tests check that)."""
    parser = argparse.ArgumentParser(prog=prog or prog_name(), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{info,demo,smoke,bench,sim}")
    sub.add_parser("info", help="show the CANN install (or simulator) found, its op versions, and the backend 'auto' "
                                "picks and why", description="Report what library discovery found and which backend "
                                "'auto' picks; reports problems instead of failing on them.")
    demo = sub.add_parser("demo", help="run the seed demos (8 ranks) and check them against the reference",
                          description="Run the official seed demos ported to Python on 8 ranks and check every "
                                      "rank's outputs bit for bit against the numpy reference.")
    demo.add_argument("--backend", choices=["auto", "device", "reference"], default=None, help=BACKEND_HELP)
    demo.add_argument("--which", choices=DEMOS + ("all",), default="pipeline",
                      help="which demo to run (default: pipeline = DispatchV3 -> FFN -> CombineAddRmsNormV2, then "
                           "an elastic scale-down)")
    smoke = sub.add_parser("smoke", help="run each op at real sizes on every visible device, compare with the "
                                         "reference", description="Run every op at real sizes on every visible "
                                         "device and compare with the numpy reference, as a table.")
    smoke.add_argument("--quick", action="store_true", help="H 1024 and small batches (CI-sized)")
    smoke.add_argument("--backend", choices=["auto", "device", "reference"], default=None,
                       help="where to run the ops: auto (default: the device when CANN or the simulator is found, "
                            "else the reference, with a warning), device, or reference (checks the harness only)")
    smoke.add_argument("--ulp-tolerance", type=int, default=None, metavar="N",
                       help="allowed ulps on combine outputs (default: 0 on the simulator, 1 on hardware)")
    smoke.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON to FILE")
    add_bench_parser(sub)
    sim = sub.add_parser("sim", help="build the aclnn_py CANN simulator, or show where it is",
                         description="The aclnn_py CANN simulator: a CANN-shaped library tree that emulates devices "
                                     "on host memory (not hardware). aclnn_py finds it without any variable; "
                                     "C/C++ programs use 'sim env'. Its location: $ACLNN_PY_SIM_HOME, else the "
                                     "checkout's build/cann-sim (editable install), else "
                                     "$XDG_CACHE_HOME/aclnn_py/cann-sim-<version> (~/.cache by default).")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="{build,path,env}")
    build = sim_sub.add_parser("build", help="compile the simulator with gcc (incremental)",
                               description="Compile the simulator's C sources shipped with aclnn_py (gcc, bash and "
                                           "binutils needed).")
    build.add_argument("--quiet", action="store_true", help="print only the result, not each compiler step")
    sim_sub.add_parser("path", help="print the simulator's directory (exit 1 if it is not built yet)",
                       description="Print the directory 'sim build' writes and discovery searches.")
    sim_sub.add_parser("env", help="print the export lines that point CANN-style C/C++ builds at the simulator",
                       description="Print export lines (use: eval \"$(aclnn-py sim env)\") setting ASCEND_HOME_PATH, "
                                   "LD_LIBRARY_PATH and friends to the simulator, as its bin/setenv.bash does.")
    return parser


def add_bench_parser(sub) -> None:
    """``bench`` and its options (sizes default to the pod configuration, or --quick's)."""
    from .bench import FULL, QUICK, QUICK_EP
    bench = sub.add_parser("bench", help="DispatchV3 (bf16, int8) and CombineV3 latency and bandwidth on every "
                                         "visible device", description="Time DispatchV3 with bf16 and int8 tokens and "
                           "CombineV3 (median and p99 us, slowest rank per iteration) and their logical bandwidth "
                           "(GB/s per rank, counted as DeepEP counts), on the device (CANN, with the published A3 "
                           "anchors) or the simulator (labelled as such). See aclnn_py/bench.py for what is counted.")
    bench.add_argument("--quick", action="store_true",
                       help=f"CI-sized: EP {QUICK_EP} (under a launcher: its processes), BS {QUICK['bs']}, "
                            f"{QUICK['iters']} iterations after {QUICK['warmup']} warm-ups (options given still apply)")
    bench.add_argument("--ep", type=int, default=None, metavar="N",
                       help="EP ranks (default: every visible device; under a launcher, its processes)")
    for option, key, what in (("--bs", "bs", "tokens per rank"), ("--hidden", "h", "hidden size H"),
                              ("--topk", "k", "experts per token K"), ("--iters", "iters", "timed iterations"),
                              ("--warmup", "warmup", "untimed iterations first")):
        bench.add_argument(option, type=int, default=None, metavar="N",
                           help=f"{what} (default {FULL[key]}; --quick: {QUICK[key]})")
    bench.add_argument("--experts", type=int, default=None, metavar="N",
                       help="routed experts, a multiple of EP (default: DeepSeek's 256 when EP divides it, else the "
                            "next multiple of EP)")
    bench.add_argument("--out", action="store_true", help="time calls writing preallocated outputs (out=) instead "
                                                         "of the default call's fresh outputs")
    bench.add_argument("--backend", choices=["auto", "device", "reference"], default=None,
                       help="auto or device (default: $ACLNN_PY_BACKEND, else auto); reference is refused: it has "
                            "no device latency")
    bench.add_argument("--json", default=None, metavar="FILE", help="also write every measurement as JSON to FILE")
    bench.add_argument("--plot", default=None, metavar="FILE",
                       help="also draw a PNG chart to FILE (needs matplotlib: pip install 'aclnn_py[plot]')")


# ---- commands ----------------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from .info import info_lines
    print("\n".join(info_lines()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .orchestration.backend import requested_backend
    requested_backend(args.backend)            # a bad ACLNN_PY_BACKEND is a usage error, before any demo output
    from .demos import add_rms_norm, barrier, dispatch_barrier_combine
    runs = {"pipeline": add_rms_norm.run_demo, "dispatch-barrier-combine": dispatch_barrier_combine.run_demo,
            "barrier": barrier.run_demo}
    from .orchestration.launch import launched
    chosen = DEMOS if args.which == "all" else (args.which,)
    ok = all([runs[name](args.backend) for name in chosen])
    job = launched()
    if job is None or job.rank == 0:
        print("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1


def cmd_smoke(args: argparse.Namespace) -> int:
    from .smoke import run_smoke
    rows = run_smoke(args.backend, quick=args.quick, ulp_tolerance=args.ulp_tolerance, json_path=args.json)
    return 0 if all(r.passed for r in rows) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench
    run_bench(args.ep, args.quick, args.backend, args.json, args.plot, bs=args.bs, h=args.hidden, k=args.topk,
              experts=args.experts, iters=args.iters, warmup=args.warmup, out=args.out)
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from . import simbuild
    tree = simbuild.default_tree()
    if args.sim_command == "build":
        simbuild.build(tree, quiet=args.quiet)
        print(f"the aclnn_py CANN simulator is built in {tree}\n"
              f"aclnn_py finds it by itself ('{prog_name()} info' shows it); for C/C++ programs: "
              f"eval \"$({prog_name()} sim env)\"")
        return 0
    built = (tree / "lib64" / "libopapi.so").is_file()
    if args.sim_command == "path":
        print(tree)
        if not built:
            _say("error", f"the simulator is not built in {tree} yet -- run '{prog_name()} sim build'")
        return 0 if built else 1
    if not built:
        raise NotBuilt(f"the simulator is not built in {tree} yet -- run '{prog_name()} sim build' first")
    print("\n".join(simbuild.env_lines(tree)))
    return 0


COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {
    "info": cmd_info, "demo": cmd_demo, "smoke": cmd_smoke, "bench": cmd_bench, "sim": cmd_sim}


class NotBuilt(RuntimeError):
    """``sim env`` before ``sim build``."""


# ---- errors and warnings as one line each ------------------------------------------------------------------
def _say(kind: str, message: str) -> None:
    print(f"{prog_name()}: {kind}: {message}", file=sys.stderr)


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def user_errors() -> List[Tuple[Type[BaseException], int, str]]:
    """(exception type, exit status, remedy appended to the message) for the errors a user can cause."""
    from .errors import BackendUnavailableError, InvalidBackendError
    from .orchestration.backend import DEVICE_REMEDY
    from .errors import AclnnPyError
    from .orchestration.launchers import LaunchError
    from .runtime.library import CannNotFound
    from .simbuild import SimBuildError
    from .bench import BenchError, BenchOptionError
    return [
        (InvalidBackendError, 2, "set ACLNN_PY_BACKEND (or --backend) to auto, device or reference, or unset it"),
        (BackendUnavailableError, 1, ""),
        (CannNotFound, 1, DEVICE_REMEDY),
        (BenchOptionError, 2, ""),
        (BenchError, 1, ""),
        (SimBuildError, 1, ""),
        (NotBuilt, 1, ""),
        (LaunchError, 1, ""),
        (AclnnPyError, 1, "see the message; 'aclnn-py info' shows the install in use"),
        (OSError, 1, "check the path and permissions ('aclnn-py info' shows the install in use)"),
    ]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _say("warning", _first_line(message) if isinstance(message, BaseException) else str(message).splitlines()[0])


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status (argparse exits with 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return COMMANDS[args.command](args)
        except KeyboardInterrupt:
            _say("error", "interrupted")
            return 130
        except Exception as e:
            for kind, status, remedy in user_errors():
                if isinstance(e, kind):
                    message = _first_line(e)
                    _say("error", f"{message} -- {remedy}" if remedy and remedy not in message else message)
                    return status
            raise


if __name__ == "__main__":
    sys.exit(main())
