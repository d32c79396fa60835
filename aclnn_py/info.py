"""``python -m aclnn_py info``: what discovery found, from where, and which op versions are exported."""
from __future__ import annotations

import os
from typing import List

from .runtime import abi
from .runtime.discovery import describe_search, find_cann


def info_lines() -> List[str]:
    """The report as lines (also used by tests)."""
    lines = []
    install = find_cann()
    if install is None:
        lines.append("CANN: not found; " + describe_search())
        lines.append("backend: reference (numpy) is what 'auto' selects")
        return lines
    is_sim = install.is_simulator
    try:
        from .runtime.library import get_library
        is_sim = get_library().is_simulator
    except Exception:  # reported below when loading fails
        pass
    kind = "aclnn_py CANN simulator (emulation on host memory, not hardware)" if is_sim else "CANN install"
    lines.append(f"CANN home: {install.home}  [{kind}; found via {install.source}]")
    for source, why in install.skipped:
        lines.append(f"  skipped {source}: {why}")
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
    for family, names in abi.OP_FAMILIES.items():
        have = [n.replace("aclnn", "") for n in names if any(n in ops for ops in exports.values())]
        lines.append(f"  {family:32s} {', '.join(have) if have else 'missing'}")
    lines.append(f"backend: {os.environ.get('ACLNN_PY_BACKEND', 'auto')} (ACLNN_PY_BACKEND)")
    return lines
