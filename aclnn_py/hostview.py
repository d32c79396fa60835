"""The host view of a tensor argument: one function every host-side reader uses.

A device tensor is downloaded (its format tag, if it carries one, is kept so the format rules still see
it); anything else -- a numpy array, ``None``, a Python scalar, a value validation will refuse -- is its
own view. The operator call takes the host view of each small control tensor it reads on the
host (the elastic table, the barrier's time-out) once, and hands that view to the validation, the
pre-check, the topology and the reference alike.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class HostCopy(np.ndarray):
    """The values of a device tensor on the host, with the tensor's ``acl_format`` tag."""

    acl_format: Any = None


def host_values(x: Any) -> Any:
    """The host view of ``x`` (see the module docstring)."""
    if x is None or isinstance(x, np.ndarray) or not (hasattr(x, "numpy") and hasattr(x, "handle")):
        return x
    copy = np.asarray(x.numpy()).view(HostCopy)
    copy.acl_format = getattr(x, "acl_format", None)
    return copy


__all__ = ["host_values", "HostCopy"]
