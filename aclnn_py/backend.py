"""Backend selection: ``device`` (CANN or the simulator) or ``reference`` (numpy only)."""
from __future__ import annotations

import os
from typing import Optional

BACKENDS = ("auto", "device", "reference")


def requested_backend(requested: Optional[str] = None) -> str:
    """The requested backend: the argument, else ``ACLNN_PY_BACKEND``, else ``auto``."""
    name = (requested or os.environ.get("ACLNN_PY_BACKEND") or "auto").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {name!r} "
                         "(from the argument or ACLNN_PY_BACKEND)")
    return name


def device_backend_reason(min_devices: int = 1) -> Optional[str]:
    """Why the device backend cannot run ``min_devices`` ranks, or ``None`` if it can."""
    from .runtime.device import device_count
    from .runtime.library import CannNotFound, get_library
    try:
        get_library()
    except (CannNotFound, OSError) as e:
        return str(e).splitlines()[0]
    n = device_count()
    if n < min_devices:
        return f"the runtime reports {n} devices, {min_devices} needed"
    return None


def resolve_backend(requested: Optional[str] = None, min_devices: int = 1) -> str:
    """``device`` or ``reference``; ``auto`` picks device when the libraries load with enough devices."""
    name = requested_backend(requested)
    if name == "auto":
        return "device" if device_backend_reason(min_devices) is None else "reference"
    if name == "device":
        why = device_backend_reason(min_devices)
        if why is not None:
            raise RuntimeError(f"device backend requested but unavailable: {why}")
    return name
