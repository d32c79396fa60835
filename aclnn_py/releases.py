"""CANN releases, and what changed in the MoE distribute operators on Atlas A3 from one to the next.

The one table of those changes (:data:`CHANGES`), each with the first release that has it, read from the
dated master history of ops-transformer (``../shared/spec/cann-versions.md`` §9 and
``docs/decisions.md``). Everything version-dependent reads it: the rule profiles and the reference
(:mod:`aclnn_py.profiles`), and the simulator, whose C table is generated from this file by ``build.sh``
(``python3 releases.py --c-header``; this module imports nothing of the package for that reason).

Release numbers use CANN's own encoding (``aclsysGetVersionNum``): ``major*10**7 + minor*10**5 +
patch*10**3``, minus 300 / 200 / 100 for an alpha / beta / RC pre-release, plus the pre-release number:
``8.5.0.alpha001`` is 80499701, ``8.5.0-beta.1`` 80499801, ``9.0.0`` 90000000, ``9.1.0`` 90100000.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

_PRE = {"alpha": 300, "beta": 200, "rc": 100}
_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:[.\-_]?(alpha|beta|rc)\.?(\d+)?)?\s*$", re.I)


def version_number(text: str) -> Optional[int]:
    """CANN's number for a release string (``8.5.0.alpha001``, ``8.5.0-beta.1``, ``9.0.0``, ``8.3.RC1``),
    or ``None`` when it does not parse. A release without a patch number (``8.3.RC1``) has patch 0."""
    m = _VERSION.match(text or "")
    if not m:
        return None
    major, minor, patch, pre, pre_no = m.groups()
    n = int(major) * 10**7 + int(minor) * 10**5 + int(patch or 0) * 10**3
    if pre:
        n += -_PRE[pre.lower()] + int(pre_no or 0)
    return n


@dataclass(frozen=True)
class Change:
    """One change in the operators' rules or results: ``flag`` names it everywhere (Python and the
    simulator's C), ``since`` is the first release that has it, ``source`` the master commit and date."""

    flag: str
    since: str
    source: str
    what: str

    @property
    def since_number(self) -> int:
        n = version_number(self.since)
        assert n is not None, self.since
        return n


# The two source snapshots aclnn_py knows, and the releases they are.
OLD_SNAPSHOT = "8.5.0.alpha001"    # hicann/ops-transformer c29bc10 (2025-11-15), version.info
NEW_SNAPSHOT = "9.1.0"             # libochao-huawei/ops-transformer 5778144 (2026-08-21), version.cmake
# Releases between them follow the master history; changes dated between c29bc10 and the 8.5.0-beta.1
# version bump (2025-12-23) are placed in 8.5.0-beta.1, those up to the 9.1.0 bump (2026-05-26) in 9.0.0,
# later ones in 9.1.0. No release branch is public, so these boundaries are inferred (decisions.md).
CHANGES: Tuple[Change, ...] = (
    Change("v4", "8.5.0-beta.1", "e7b38127e 2025-11-21",
           "aclnnMoeDistributeDispatchV4 / CombineV4 (performanceInfoOptional) exported"),
    Change("const_alpha_2d", "8.5.0-beta.1", "dc931ecbe 2025-11-24",
           "const_expert_alpha_1/2 are (Q, H); a_i = sum_h alpha_i[c,h]*x[h], softmax over (a_1, a_2)"),
    Change("l_ep_max_2048", "8.5.0-beta.1", "dc931ecbe 2025-11-24", "L * ep_world_size <= 2048"),
    Change("combine_elastic_length", "8.5.0-beta.1", "dc931ecbe 2025-11-24",
           "CombineV3 enforces len(elastic_info) == 4 + 2*ep (was skipped by a bool-return bug)"),
    Change("window_from_comm", "8.5.0-beta.1", "7ea209591 2025-11-29",
           "the HCCL window is the communicator's buffer, not HCCL_BUFFSIZE read at call time"),
    Change("fullmesh_v2_k12", "8.5.0-beta.1", "8d92c5424 2025-12-20", "fullmesh_v2: K <= 12"),
    Change("fullmesh_v2_open", "9.0.0", "f11e4d6bf 2026-01-28",
           "fullmesh_v2 allows elastic, special experts, masks, varying BS and TP; BS <= 256"),
    Change("performance_info_a3", "9.0.0", "f11e4d6bf 2026-01-28",
           "the A3 kernels write performance_info (atomic max of per-peer waits, us)"),
    Change("assist_128a", "9.0.0", "9cc29aebe 2026-02-13",
           "dispatch: assist_info_for_combine >= 128*A (was 3*A)"),
    Change("hierarchy", "9.0.0", "9cc29aebe 2026-02-13", "comm_alg='hierarchy' accepted on A3"),
    Change("v5", "9.0.0", "8a88dd6ff 2026-03-05", "DispatchV5 / CombineV5 (MC2 context tensor, cclBufferSize)"),
    Change("combine_checks_skipped", "9.0.0", "916aa93c1 2026-03-12",
           "combine tiling skips its shape checks (a bool function returns GRAPH_FAILED); every negative "
           "special-expert count rejected"),
    Change("tp_removed", "9.1.0", "7feca19bc 2026-06-25",
           "tp_world_size >= 2 rejected; tp_recv_counts / tp_send_counts neither written nor checked; dispatch "
           "expand_x / dynamic_scales rows >= A (was tp*A); tpRankId unchecked by dispatch, 0 in combine; "
           "op_api: groupTp NULL reads as \"\" and tpRecvCountsOut may be NULL (346885589 2026-07-03)"),
    Change("expert_scales_optional", "9.1.0", "2a0d63313 2026-07-15",
           "combine expert_scales optional (empty: unweighted sum); dispatch writes expand_scales"),
)
CHANGE_FLAGS = tuple(c.flag for c in CHANGES)
KNOWN_RANGE = (version_number(OLD_SNAPSHOT), version_number("9.1.99"))   # releases whose rules are known


def flags_for(release: Optional[str]) -> Dict[str, Optional[bool]]:
    """Each change's state on ``release``: True (has it), False (has not), None (unknown release:
    the release does not parse, or lies outside the known range)."""
    n = version_number(release) if release else None
    known = n is not None and KNOWN_RANGE[0] <= n <= KNOWN_RANGE[1]
    return {c.flag: (n >= c.since_number) if known else None for c in CHANGES}


def c_header() -> str:
    """The simulator's table of changes (``sim_releases.h``), generated from :data:`CHANGES`."""
    lines = ["/* Generated from aclnn_py/releases.py by build.sh: do not edit. */",
             "#ifndef SIM_RELEASES_H", "#define SIM_RELEASES_H",
             f'#define SIM_DEFAULT_RELEASE "{OLD_SNAPSHOT}"',
             f"#define SIM_KNOWN_MIN {KNOWN_RANGE[0]}", f"#define SIM_KNOWN_MAX {KNOWN_RANGE[1]}", "enum {"]
    lines += [f"    SIM_CHANGE_{c.flag.upper()}," for c in CHANGES]
    lines += ["    SIM_CHANGE_COUNT", "};", "/* first release (CANN number) of each change, in enum order */",
              "static const int SIM_CHANGE_SINCE[SIM_CHANGE_COUNT] = {"]
    lines += [f"    {c.since_number},  /* {c.flag}: {c.since}, {c.source} */" for c in CHANGES]
    lines += ["};", "#endif"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--c-header"]:
        sys.stdout.write(c_header())
    else:
        sys.exit("usage: python3 releases.py --c-header")
