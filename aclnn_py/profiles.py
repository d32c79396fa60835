"""Rule profiles: the rules and reference semantics of one CANN release, from :mod:`aclnn_py.releases`.

A :class:`Profile` says, for every change in :data:`aclnn_py.releases.CHANGES`, whether the release has it
(``True``), has not (``False``), or is not known (``None``: the release lies outside the range whose sources
aclnn_py has read, or does not parse). The validators enforce, for an unknown release, only what every
known release rejects (the looser rule of each pair), leaving the rest to the installed kernels; the
reference refuses to compute where the known releases give different results, naming the choice.

The release in force (:func:`active_profile`): ``ACLNN_PY_CANN_VERSION`` when set, else the installed
release (:func:`aclnn_py.runtime.release.installed_release`), else :data:`DEFAULT_RELEASE` (the release the
seed documents describe, and the simulator's default).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Optional

from .errors import ACLNN_ERR_PARAM_INVALID, AclnnError
from .releases import CHANGE_FLAGS, KNOWN_RANGE, OLD_SNAPSHOT, flags_for, version_number
from .runtime.environ import getenv

ENV_NAME = "ACLNN_PY_CANN_VERSION"
SIM_ENV_NAME = "ACLNN_SIM_CANN_VERSION"     # what the simulator emulates (it answers the version API with it)
DEFAULT_RELEASE = OLD_SNAPSHOT


@dataclass(frozen=True)
class Profile:
    """The rules and semantics of one release. ``source``: where the release was read."""

    release: str
    source: str
    flags: Dict[str, Optional[bool]]

    @property
    def known(self) -> bool:
        """Whether aclnn_py has the sources of this release (its rules are exact, not the shared ones)."""
        return all(v is not None for v in self.flags.values())

    @property
    def number(self) -> Optional[int]:
        return version_number(self.release)

    def has(self, flag: str) -> Optional[bool]:
        """``True`` / ``False``: the release has / has not this change; ``None``: unknown release."""
        return self.flags[flag]

    def on(self, flag: str) -> bool:
        return self.flags[flag] is True

    def off(self, flag: str) -> bool:
        return self.flags[flag] is False

    @property
    def name(self) -> str:
        """How messages and ``info`` name it."""
        if self.known:
            return f"CANN {self.release}"
        return (f"CANN {self.release} (unknown to aclnn_py: only the rules every known release shares; "
                f"known: {_known_range()})")

    def __str__(self) -> str:
        return self.name


def _known_range() -> str:
    lo, hi = KNOWN_RANGE
    return f"{OLD_SNAPSHOT} .. {hi // 10**7}.{hi // 10**5 % 100}.x"


@lru_cache(maxsize=64)
def profile_for(release: str, source: str = "cann_version argument") -> Profile:
    """The profile of ``release`` (a CANN version string such as ``8.5.0.alpha001``, ``9.0.0``, ``9.1.0``)."""
    if not isinstance(release, str) or not release.strip():
        raise AclnnError(ACLNN_ERR_PARAM_INVALID, "aclnn_py.profiles",
                         f"parameter 'cann_version' must be a CANN release string such as '9.1.0'; got {release!r}")
    return Profile(release.strip(), source, flags_for(release.strip()))


def active_profile(load: bool = False) -> Profile:
    """The profile in force: ``ACLNN_PY_CANN_VERSION``, else the installed release, else the default.
    ``load``: load the CANN libraries to ask the runtime (the device backend does; the reference does not)."""
    override = getenv(ENV_NAME, "").strip()
    if override:
        return profile_for(override, ENV_NAME)
    return _installed(load, getenv(SIM_ENV_NAME, ""))


@lru_cache(maxsize=16)
def _installed(load: bool, sim_release: str) -> Profile:
    """The installed release's profile (cached; ``sim_release`` is part of the key because the simulator
    reports the release it is told to emulate)."""
    from .runtime.release import installed_release
    found = installed_release(load=load)
    if found is None:
        return profile_for(DEFAULT_RELEASE, "default (no CANN install found)")
    return profile_for(found.release, found.source)


def resolve(cann_version: Optional[str]) -> Profile:
    """``cann_version`` (a release string, or a :class:`Profile`), or the active profile when ``None``."""
    if isinstance(cann_version, Profile):
        return cann_version
    return active_profile() if cann_version is None else profile_for(cann_version)


__all__ = ["Profile", "profile_for", "active_profile", "resolve", "DEFAULT_RELEASE", "ENV_NAME", "CHANGE_FLAGS"]
