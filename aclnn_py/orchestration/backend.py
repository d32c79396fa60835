"""Backend selection: ``device`` (CANN or the simulator) or ``reference`` (numpy only).

``auto`` (the default) picks ``device`` when the CANN libraries (or the aclnn_py simulator) load and
report enough devices, else ``reference``. Falling back is never silent: it emits a
:class:`BackendFallbackWarning` (Python :mod:`warnings`) once per distinct reason, saying why and how
to change it. A requested ``device`` backend that cannot run raises :class:`BackendUnavailableError`.
"""
from __future__ import annotations

import os
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Optional, Set, Tuple

from ..errors import BackendFallbackWarning, BackendUnavailableError, InvalidBackendError

BACKENDS = ("auto", "device", "reference")
ENV_NAME = "ACLNN_PY_BACKEND"

# What to do when the device backend cannot run (used by errors, warnings, info and the CLI).
DEVICE_REMEDY = ("build the simulator with 'python -m aclnn_py sim build' (or ./build.sh in a checkout), "
                 "source CANN's set_env.sh, or set ACLNN_PY_CANN_HOME to an install")


def requested_backend(requested: Optional[str] = None) -> str:
    """The requested backend: the argument, else ``ACLNN_PY_BACKEND``, else ``auto``."""
    source = "backend argument" if requested else ENV_NAME
    raw = requested if requested else os.environ.get(ENV_NAME)
    if raw is not None and not isinstance(raw, str):
        raise InvalidBackendError(f"{source} must be one of {', '.join(BACKENDS)}; got {raw!r}")
    name = (raw or "auto").strip().lower()
    if name not in BACKENDS:
        raise InvalidBackendError(f"{source} must be one of {', '.join(BACKENDS)}; got {raw!r}")
    return name




def device_backend_problem(min_devices: int = 1) -> Optional[Tuple[str, str]]:
    """``(why, remedy)`` when the device backend cannot run ``min_devices`` ranks, else ``None``."""
    from ..runtime.device import device_count
    from ..runtime.library import CannNotFound, get_library
    try:
        install = get_library().install
    except CannNotFound:
        return "no CANN install or aclnn_py simulator was found" + _skipped_roots(), DEVICE_REMEDY
    except OSError as e:
        return f"the CANN libraries failed to load ({str(e).splitlines()[0]})", DEVICE_REMEDY
    _warn_ignored_variables(install)
    n = device_count()
    if n < min_devices:
        return (f"the runtime reports {n} device{'s' if n != 1 else ''}, {min_devices} needed",
                "run fewer ranks, make more devices visible (ASCEND_RT_VISIBLE_DEVICES; ACLNN_SIM_DEVICE_COUNT on "
                "the simulator) or use the reference backend")
    return None


def _warn_ignored_variables(install) -> None:
    """A variable naming a root that discovery rejected, while another root was used, is worth a word."""
    from ..runtime.discovery import named_rejections
    rejected = named_rejections(install.skipped)
    if rejected:
        warn_once("; ".join(f"{src}: {why}" for src, why in rejected)
                  + f" -- aclnn_py uses {install.home} (found via {install.source}) instead")


def _skipped_roots() -> str:
    """The roots discovery rejected (e.g. ``ACLNN_PY_CANN_HOME`` pointing nowhere), for a reason text."""
    from ..runtime.discovery import rejected_roots
    rejected = rejected_roots()
    return "" if not rejected else " (" + "; ".join(f"{src}: {why}" for src, why in rejected) + ")"


@dataclass(frozen=True)
class BackendChoice:
    """What a backend request resolves to: ``name`` (``device``/``reference``), the ``requested`` name, and
    ``why`` ``auto`` fell back with the ``remedy`` (both ``None`` when it did not)."""

    name: str
    requested: str
    why: Optional[str] = None
    remedy: Optional[str] = None


def choose_backend(requested: Optional[str] = None, min_devices: int = 1) -> BackendChoice:
    """Resolve a request without side effects (no warning); raises like :func:`resolve_backend`."""
    name = requested_backend(requested)
    if name == "reference":
        return BackendChoice("reference", name)
    problem = device_backend_problem(min_devices)
    if problem is None:
        return BackendChoice("device", name)
    if name == "device":
        raise BackendUnavailableError(f"device backend requested but unavailable: {problem[0]}; {problem[1]}")
    return BackendChoice("reference", name, *problem)


_warned: Set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str) -> None:
    """Emit ``message`` as a :class:`BackendFallbackWarning`, once per process, attributed to the first caller
    outside aclnn_py."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(BackendFallbackWarning(message), stacklevel=_user_stacklevel())


def warn_fallback(why: str, remedy: str = DEVICE_REMEDY) -> None:
    """Say that ``auto`` chose the reference because ``why`` (once per distinct reason), and ``remedy``."""
    warn_once(f"backend 'auto' chose the numpy reference backend because {why}. To use the device: {remedy}; "
              f"to choose the reference explicitly (and silence this): {ENV_NAME}=reference")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the innermost frame outside this package (as seen from ``warnings.warn``'s caller)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def resolve_backend(requested: Optional[str] = None, min_devices: int = 1) -> str:
    """``device`` or ``reference``; ``auto`` picks device when the libraries load with enough devices.

    Raises :class:`InvalidBackendError` for an unknown name and :class:`BackendUnavailableError` when
    ``device`` is requested but cannot run; warns (:class:`BackendFallbackWarning`) when ``auto`` falls back.
    """
    choice = choose_backend(requested, min_devices)
    if choice.why is not None:
        warn_fallback(choice.why, choice.remedy)
    return choice.name
