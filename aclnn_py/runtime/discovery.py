"""Where the CANN libraries are: install root, runtime/tensor/HCCL libraries, operator libraries.

Search order (DESIGN §1): ``ACLNN_PY_CANN_HOME``, ``ASCEND_HOME_PATH``, ``ASCEND_TOOLKIT_HOME``, the
default roots, then the aclnn_py simulator trees (:func:`aclnn_py.simbuild.simulator_trees`: the
checkout's ``build/cann-sim`` when aclnn_py is imported from a checkout, then the per-user cache that
``python -m aclnn_py sim build`` fills; or only ``ACLNN_PY_SIM_HOME`` when set). Operator symbols come from the first library that exports them: custom op
packages (``ASCEND_CUSTOM_OPP_PATH`` entries, then ``$ASCEND_OPP_PATH/vendors`` in ``config.ini``
priority), ``lib64/libopapi_*.so``, then ``lib64/libopapi.so`` (spec/abi.md §3.4).
This module only looks at files; :mod:`.library` loads them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

HOME_VARIABLES = ("ACLNN_PY_CANN_HOME", "ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME")
DEFAULT_ROOTS = ("/usr/local/Ascend/cann", "/usr/local/Ascend/latest", "/usr/local/Ascend/ascend-toolkit/latest")
RUNTIME_NAMES = ("libascendcl.so", "libacl_rt.so")
SIMULATOR_MARKER = "aclnn_py_simulator.info"


@dataclass
class CannInstall:
    """A CANN install (or the simulator's tree) and the libraries found in it."""

    home: Path
    source: str                      # the variable or default root that named it
    runtime: Path                    # libascendcl.so / libacl_rt.so
    nnopbase: Optional[Path]
    hccl: Optional[Path]
    op_common: Optional[Path]
    op_libraries: List[Path] = field(default_factory=list)   # search order for aclnn symbols
    is_simulator: bool = False
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (source, why) of rejected roots


def _lib_dirs(home: Path) -> List[Path]:
    dirs = [home / "lib64"]
    dirs += sorted(home.glob("*-linux/lib64"))
    return [d for d in dirs if d.is_dir()]


def _first(dirs: Sequence[Path], names: Sequence[str]) -> Optional[Path]:
    for d in dirs:
        for n in names:
            p = d / n
            if p.is_file():
                return p
    return None


def custom_op_libraries(env: Mapping[str, str]) -> List[Path]:
    """``libcust_opapi.so`` of custom op packages, in the priority order torch_npu uses."""
    found: List[Path] = []
    for entry in filter(None, env.get("ASCEND_CUSTOM_OPP_PATH", "").split(":")):
        found.append(Path(entry) / "op_api" / "lib" / "libcust_opapi.so")
    opp = env.get("ASCEND_OPP_PATH")
    if opp:
        config = Path(opp) / "vendors" / "config.ini"
        if config.is_file():
            for line in config.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "load_priority":
                    for vendor in filter(None, (v.strip() for v in value.split(","))):
                        found.append(Path(opp) / "vendors" / vendor / "op_api" / "lib" / "libcust_opapi.so")
    return [p for p in found if p.is_file()]


SimRoots = Optional[Sequence[Tuple[str, Path]]]


def candidate_roots(env: Mapping[str, str], roots: Sequence[str] = DEFAULT_ROOTS,
                    simulator_roots: SimRoots = None) -> List[Tuple[str, Path]]:
    """(source, path) pairs in search order; ``simulator_roots`` default: the simulator trees of ``env``."""
    out = [(var, Path(env[var])) for var in HOME_VARIABLES if env.get(var)]
    out += [(f"default root {r}", Path(r)) for r in roots]
    if simulator_roots is None:
        from ..simbuild import simulator_trees
        simulator_roots = simulator_trees(env)
    out += [(source, Path(p)) for source, p in simulator_roots]
    return out


def inspect_root(home: Path, source: str, env: Mapping[str, str]) -> Optional[CannInstall]:
    """The libraries of one candidate root, or ``None`` if it has no ACL runtime library."""
    dirs = _lib_dirs(home)
    runtime = _first(dirs, RUNTIME_NAMES)
    if runtime is None:
        return None
    ops = custom_op_libraries(env)
    for d in dirs:
        ops += sorted(p for p in d.glob("libopapi_*.so") if p.is_file())
    aggregate = _first(dirs, ("libopapi.so",))
    if aggregate is not None:
        ops.append(aggregate)
    return CannInstall(
        home=home, source=source, runtime=runtime,
        nnopbase=_first(dirs, ("libnnopbase.so",)), hccl=_first(dirs, ("libhccl.so",)),
        op_common=_first(dirs, ("libop_common.so",)), op_libraries=ops,
        is_simulator=(home / SIMULATOR_MARKER).is_file())


def search(env: Optional[Mapping[str, str]] = None, roots: Sequence[str] = DEFAULT_ROOTS,
           simulator_roots: SimRoots = None) -> Tuple[Optional[CannInstall], List[Tuple[str, str]]]:
    """The first usable install in search order (or ``None``) and the (source, why) of every root
    rejected before it."""
    env = os.environ if env is None else env
    skipped: List[Tuple[str, str]] = []
    for source, home in candidate_roots(env, roots, simulator_roots):
        if not home.is_dir():
            skipped.append((source, f"{home} does not exist"))
            continue
        found = inspect_root(home, source, env)
        if found is None:
            skipped.append((source, f"{home} has no lib64/{' or '.join(RUNTIME_NAMES)}"))
            continue
        found.skipped = skipped
        return found, skipped
    return None, skipped


def find_cann(env: Optional[Mapping[str, str]] = None, roots: Sequence[str] = DEFAULT_ROOTS,
              simulator_roots: SimRoots = None) -> Optional[CannInstall]:
    """The first usable install in search order, with the roots skipped before it; ``None`` if none."""
    return search(env, roots, simulator_roots)[0]


def rejected_roots(env: Optional[Mapping[str, str]] = None, roots: Sequence[str] = DEFAULT_ROOTS,
                   simulator_roots: SimRoots = None) -> List[Tuple[str, str]]:
    """The roots a variable named (``ACLNN_PY_CANN_HOME`` etc.) that discovery rejected, with why: a
    variable pointing nowhere is something to tell the user, a missing default root is not."""
    return named_rejections(search(env, roots, simulator_roots)[1])


def named_rejections(skipped: Sequence[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """The entries of ``skipped`` whose root a variable named (not a missing default root)."""
    from ..simbuild import SIM_HOME_VARIABLE
    named = set(HOME_VARIABLES) | {SIM_HOME_VARIABLE}
    return [(src, why) for src, why in skipped if src in named]


def describe_search(env: Optional[Mapping[str, str]] = None, roots: Sequence[str] = DEFAULT_ROOTS,
                    simulator_roots: SimRoots = None) -> str:
    """Human-readable account of where discovery looked (for error messages)."""
    env = os.environ if env is None else env
    lines = [f"  {source}: {home}" for source, home in candidate_roots(env, roots, simulator_roots)]
    return "searched, in order:\n" + "\n".join(lines)
