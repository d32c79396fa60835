"""Which CANN release is installed, read the way CANN records it.

In this order (the first that answers wins; ``docs/decisions.md`` has the formats and their sources):

1. ``aclsysGetVersionStr("ops_transformer")``, then ``("runtime")``: the release the loaded runtime reports
   (CANN >= 8.5; the simulator answers with the release it emulates, ``ACLNN_SIM_CANN_VERSION``). Used only
   when the library is loaded already, or when the caller asks to load it.
2. Files of the install: ``share/info/ops_transformer/version.info`` and ``share/info/runtime/version.info``
   (``Version=...``, CANN >= 8.5), ``<arch>-linux/ascend_toolkit_install.info`` and
   ``ascend_toolkit_install.info`` (``version=...``), ``version.cfg`` (``runtime_running_version=[x:REL]``,
   CANN <= 8.3), ``ops_transformer/version.info`` (the old layout).

``ACLNN_PY_CANN_VERSION`` overrides all of it (:mod:`aclnn_py.profiles`).
"""
from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import List, NamedTuple, Optional

from .discovery import find_cann
from .library import get_library, loaded_library

PACKAGES = ("ops_transformer", "runtime")
VERSION_BUFFER = 128            # ACL_PKG_VERSION_MAX_SIZE


class Detected(NamedTuple):
    """A release string and where it was read."""

    release: str
    source: str


def installed_release(load: bool = False) -> Optional[Detected]:
    """The installed release, or ``None`` when no install is found or none of the records answers.
    ``load``: load the CANN libraries to ask the runtime (otherwise only an already loaded one is asked)."""
    lib = loaded_library()
    if lib is None and load:
        try:
            lib = get_library()
        except Exception:      # no usable install: the files (if any) still say something
            lib = None
    if lib is not None:
        found = _ask_runtime(lib)
        if found is not None:
            return found
    install = find_cann()
    return _read_files(install.home) if install is not None else None


def _ask_runtime(lib) -> Optional[Detected]:
    if not lib.has("aclsysGetVersionStr"):
        return None
    for pkg in PACKAGES:
        buf = ctypes.create_string_buffer(VERSION_BUFFER)
        try:
            lib.aclsysGetVersionStr(pkg.encode(), buf)
        except Exception:       # no such package on this install: try the next record
            continue
        text = buf.value.decode("utf-8", "replace").strip()
        if text:
            return Detected(text, f'aclsysGetVersionStr("{pkg}")')
    return None


def _read_files(home: Path) -> Optional[Detected]:
    candidates: List[tuple] = [(home / "share" / "info" / pkg / "version.info", r"^\s*Version\s*=\s*(\S+)")
                               for pkg in PACKAGES]
    candidates += [(p, r"^\s*version\s*=\s*(\S+)") for p in sorted(home.glob("*-linux/ascend_toolkit_install.info"))]
    candidates += [(home / "ascend_toolkit_install.info", r"^\s*version\s*=\s*(\S+)"),
                   (home / "version.cfg", r"^\s*runtime_running_version\s*=\s*\[[^:\]]*:([^\]]+)\]"),
                   (home / "ops_transformer" / "version.info", r"^\s*Version\s*=\s*(\S+)")]
    for path, pattern in candidates:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        m = re.search(pattern, text, re.M | re.I)
        if m:
            return Detected(m.group(1).strip(), str(path))
    return None


__all__ = ["installed_release", "Detected"]
