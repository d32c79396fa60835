"""Environment variables read on every operator call, without the cost of ``os.environ.get``.

``os.environ.get`` of an unset name raises and catches a KeyError inside ``Mapping.get`` (about 1 us
here); a call reads half a dozen knobs, most of them unset. :func:`getenv` looks the encoded name up in
the mapping's own table, which ``os.environ`` keeps in step with every assignment and deletion made
through it (``monkeypatch.setenv`` included), and falls back to ``os.environ.get`` where that table is
not available.
"""
from __future__ import annotations

import os
from typing import Optional

_table = getattr(os.environ, "_data", None)
_encode = getattr(os.environ, "encodekey", None)
_decode = getattr(os.environ, "decodevalue", None)


def getenv(name: str, default: Optional[str] = None) -> Optional[str]:
    """``os.environ.get(name, default)``, fast for unset names."""
    if _table is None or _encode is None or _decode is None:
        return os.environ.get(name, default)
    value = _table.get(_encode(name))
    return default if value is None else _decode(value)


__all__ = ["getenv"]
