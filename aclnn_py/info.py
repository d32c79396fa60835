"""``python -m aclnn_py info``: what discovery found, from where, which op versions are exported, and which
backend ``auto`` picks and why. It reports problems (a broken install, an invalid ``ACLNN_PY_BACKEND``)
instead of failing on them."""
from __future__ import annotations

import os
from typing import List

from . import catalog
from .errors import InvalidBackendError
from .orchestration.backend import BACKENDS, ENV_NAME, device_backend_problem, requested_backend
from .runtime.discovery import search

SIMULATOR_KIND = "aclnn_py CANN simulator (emulation on host memory, not hardware)"


def info_lines() -> List[str]:
    """The report as lines (also used by tests)."""
    from .version import __version__
    lines = [f"aclnn_py {__version__}"]
    install, skipped = search()
    if install is None:
        lines.append("CANN: not found (neither an install nor the aclnn_py simulator); searched, in order:")
        lines += [f"  {source}: {why}" for source, why in skipped]
    else:
        lines += _install_lines(install)
    return lines + release_lines(install) + backend_lines()


def _install_lines(install) -> List[str]:
    is_sim = install.is_simulator
    try:
        from .runtime.library import get_library
        is_sim = get_library().is_simulator
    except Exception:  # reported below when loading fails
        pass
    kind = SIMULATOR_KIND if is_sim else "CANN install"
    lines = [f"CANN home: {install.home}  [{kind}; found via {install.source}]"]
    lines += [f"  skipped {source}: {why}" for source, why in install.skipped]
    for label, path in (("runtime", install.runtime), ("nnopbase", install.nnopbase), ("hccl", install.hccl),
                        ("op_common", install.op_common)):
        lines.append(f"  {label:10s} {path or 'not found'}")
    try:
        from .runtime.device import acl_init, device_count
        lib = acl_init()
        soc = lib.aclrtGetSocName()
        lines.append(f"  devices    {device_count()}  (soc: {soc.decode() if soc else 'unknown'})")
        exports = lib.op_exports()
    except Exception as e:  # report, don't crash: info is for diagnosing broken installs
        lines.append(f"  loading failed: {e}")
        return lines
    lines.append("operator libraries (search order) and the aclnn ops each exports:")
    for path, ops in exports.items():
        lines.append(f"  {path}: {', '.join(ops) if ops else '(none of ours)'}")
    lines.append("op versions available (first library that exports each wins):")
    for family, versions in catalog.FAMILIES.items():
        have = [v.c_name.replace("aclnn", "") for v in versions if any(v.c_name in ops for ops in exports.values())]
        lines.append(f"  {family:32s} {', '.join(have) if have else 'missing'}")
    return lines


def release_lines(install) -> List[str]:
    """The CANN release in force, where it was read, and the rules and reference semantics that follow."""
    from .profiles import DEFAULT_RELEASE, ENV_NAME as VERSION_ENV, SIM_ENV_NAME, active_profile
    from .releases import CHANGES
    prof = active_profile(load=install is not None)
    lines = [f"CANN release: {prof.release}  (read from {prof.source})"]
    if prof.known:
        on = [c.flag for c in CHANGES if prof.on(c.flag)]
        lines.append(f"  rules and reference: {prof.name}; changes in force since the Nov 2025 snapshot "
                     f"({DEFAULT_RELEASE}): {', '.join(on) if on else 'none'}")
    else:
        lines.append(f"  rules: {prof.name}; the reference refuses results that differ between releases")
    lines.append(f"  choose another: {VERSION_ENV}=<release> (rules and reference)"
                 + (f"; the simulator emulates {SIM_ENV_NAME}=<release>" if install is not None and
                    install.is_simulator else ""))
    if install is not None:
        from .runtime.library import loaded_library
        lib = loaded_library()
        if lib is not None and lib.exports("aclnnMoeDistributeDispatchV4") and prof.off("v4"):
            lines.append(f"  note: V4 is exported but {prof.name} predates it; the V3 functions use V3")
    return lines


def backend_lines() -> List[str]:
    """What ``ACLNN_PY_BACKEND`` requests and what ``auto`` picks, with the reason."""
    raw = os.environ.get(ENV_NAME)
    lines = [f"backend: {ENV_NAME}={raw!r}" if raw is not None else f"backend: {ENV_NAME} is unset (auto)"]
    problem = device_backend_problem(1)
    if problem is None:
        from .runtime.device import device_count
        from .runtime.library import get_library
        n = device_count()
        what = "the aclnn_py simulator" if get_library().is_simulator else "CANN"
        lines.append(f"  auto picks: device ({what}, {n} devices) for a World of up to {n} ranks; "
                     f"the numpy reference (with a warning) for larger ones")
    else:
        lines.append(f"  auto picks: reference (numpy), because {problem[0]}")
        lines.append(f"  to use a device: {problem[1]}")
    try:
        name = requested_backend()
    except InvalidBackendError:
        lines.append(f"  INVALID: {ENV_NAME} must be one of {', '.join(BACKENDS)} (or unset); every World and op "
                     f"call raises InvalidBackendError until it is fixed")
        return lines
    if name == "device" and problem is not None:
        lines.append("  PROBLEM: device is requested but unavailable; every World raises BackendUnavailableError")
    elif name != "auto":
        lines.append(f"  in use: {name} (requested)")
    return lines
