"""The aclnn_py CANN simulator for every install: where its sources are, where it is built, and building it.

The simulator's C sources, headers and build script ship with the package (wheel and sdist: the data
package ``aclnn_py/_sim``, mapped from the checkout's ``sim/`` and ``build.sh``). ``python -m aclnn_py sim
build`` runs that one build script (gcc only) with the source and output directories of this install:

* from a checkout (an editable install): the checkout's ``sim/`` into its ``build/cann-sim`` -- exactly
  what ``./build.sh`` does;
* from an installed package: the shipped sources into a per-user cache,
  ``$XDG_CACHE_HOME/aclnn_py/cann-sim-<version>`` (default ``~/.cache/...``).

``ACLNN_PY_SIM_HOME`` overrides the tree (built there, and the only simulator tree discovery then
searches). Library discovery (:mod:`aclnn_py.runtime.discovery`) searches these trees after the
documented CANN roots.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

SIM_HOME_VARIABLE = "ACLNN_PY_SIM_HOME"
PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_SOURCES = PACKAGE_DIR / "_sim"        # the installed package's copy of sim/ (with build.sh)


def version() -> str:
    from .version import __version__
    return __version__


def checkout_root() -> Optional[Path]:
    """The source checkout aclnn_py is imported from (an editable install), else ``None``."""
    root = PACKAGE_DIR.parent
    return root if (root / "build.sh").is_file() and (root / "sim" / "src").is_dir() else None


def source_dir() -> Optional[Path]:
    """The directory holding the simulator's ``src/``, ``include/`` and ``tools/``: the checkout's ``sim/``
    or the installed package's ``_sim/``; ``None`` if this install has neither."""
    root = checkout_root()
    if root is not None:
        return root / "sim"
    return SHIPPED_SOURCES if (SHIPPED_SOURCES / "src").is_dir() else None


def build_script() -> Optional[Path]:
    """The build script: the checkout's ``build.sh`` or the copy shipped in ``_sim/``."""
    root = checkout_root()
    if root is not None:
        return root / "build.sh"
    script = SHIPPED_SOURCES / "build.sh"
    return script if script.is_file() else None


def cache_tree(env: Optional[Mapping[str, str]] = None) -> Path:
    """The per-user tree: ``$XDG_CACHE_HOME/aclnn_py/cann-sim-<version>`` (``~/.cache`` by default)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "aclnn_py" / f"cann-sim-{version()}"


def simulator_trees(env: Optional[Mapping[str, str]] = None) -> List[Tuple[str, Path]]:
    """(source, tree) pairs discovery searches after the documented CANN roots, in order."""
    env = os.environ if env is None else env
    if env.get(SIM_HOME_VARIABLE):
        return [(SIM_HOME_VARIABLE, Path(env[SIM_HOME_VARIABLE]))]
    trees = []
    root = checkout_root()
    if root is not None:
        trees.append(("aclnn_py simulator of the checkout", root / "build" / "cann-sim"))
    trees.append(("aclnn_py simulator in the user cache", cache_tree(env)))
    return trees


def default_tree(env: Optional[Mapping[str, str]] = None) -> Path:
    """Where ``sim build`` puts the simulator: the first of :func:`simulator_trees`."""
    return simulator_trees(env)[0][1]


class SimBuildError(RuntimeError):
    """The simulator cannot be built here (no sources, no bash/gcc, or the compilation failed)."""


def build(tree: Optional[Path] = None, *, quiet: bool = False) -> Path:
    """Compile the simulator into ``tree`` (default :func:`default_tree`) with the one build script; returns
    the tree. Objects go to ``<tree>/../obj-<tree name>`` so rebuilds only recompile what changed."""
    src, script = source_dir(), build_script()
    if src is None or script is None:
        raise SimBuildError(f"this install of aclnn_py ({PACKAGE_DIR}) carries no simulator sources; "
                            "reinstall it from the sdist or wheel, or use a checkout")
    tree = Path(tree) if tree is not None else default_tree()
    env = dict(os.environ)
    if not (checkout_root() is not None and tree == checkout_root() / "build" / "cann-sim"):
        env.update(SIM_SRC=str(src), SIM_OUT=str(tree), SIM_OBJ=str(tree.parent / f"obj-{tree.name}"),
                   SIM_SOURCE_ID=f"aclnn_py {version()}")
    try:
        r = subprocess.run(["bash", str(script)], env=env, capture_output=quiet, text=True)
    except FileNotFoundError:
        raise SimBuildError("building the simulator needs bash and gcc; install them (e.g. apt-get install "
                            "gcc) and retry") from None
    if r.returncode != 0:
        detail = (r.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise SimBuildError(f"the simulator build failed (exit {r.returncode}){': ' + detail[0] if detail else ''}; "
                            "it needs gcc, GNU binutils (nm) and bash -- see the compiler output above")
    return tree


def env_lines(tree: Path) -> List[str]:
    """``export NAME=value`` lines equivalent to sourcing ``<tree>/bin/setenv.bash`` in the current
    environment (the variable names are read from that script, the values from bash)."""
    setenv = tree / "bin" / "setenv.bash"
    names = [line.split("=", 1)[0].split()[-1] for line in setenv.read_text().splitlines()
             if line.startswith("export ")]
    script = 'source "$1" >/dev/null; shift; for v in "$@"; do printf "export %s=%q\\n" "$v" "${!v}"; done'
    out = subprocess.run(["bash", "-c", script, "bash", str(setenv), *names], capture_output=True, text=True,
                         check=True)
    return out.stdout.splitlines()
