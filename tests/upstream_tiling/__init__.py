"""The upstream tiling and op_api unit tests of hicann/ops-transformer, as plain records.

One data module per source snapshot (``cases_c29bc10``, ``cases_5778144``) holds a tuple ``CASES`` of
:class:`Case` records and a tuple ``OUT_OF_SCOPE`` of :class:`Skipped` entries (cases for other SoCs or
for API versions this package does not bind). The records hold facts read from the upstream test files
and their harness only; ``tests/test_upstream_tiling.py`` runs them through ``aclnn_py.validate`` and
``docs/upstream-tiling-tests.md`` explains the encoding and every disagreement.

Encoding (see the doc for the harness details each rule comes from):

* attributes are keyed by our snake_case parameter names in op-definition order; the upstream harness
  passes them positionally, so a test that spells a name differently still sets the same attribute;
* a tensor the test gives with an empty shape list is absent (the harness passes a null tensor), so it is
  left out of ``inputs`` / ``outputs``; a shape with a zero extent (``(0,)``) is a present tensor;
* ``format`` is ``"ND"`` unless the test sets another storage format;
* shapes are the storage shapes (every upstream test gives origin == storage).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

MiB = 1024 * 1024

OPS = ("dispatch", "combine", "add_rms_norm", "barrier")
APIS = {
    "dispatch": "aclnnMoeDistributeDispatchV3",
    "combine": "aclnnMoeDistributeCombineV3",
    "add_rms_norm": "aclnnMoeDistributeCombineAddRmsNormV2",
    "barrier": "aclnnDistributeBarrierV2",
}


class Tensor(NamedTuple):
    """One tensor descriptor: storage shape, dtype (numpy / ml_dtypes name) and storage format."""

    shape: Tuple[int, ...]
    dtype: str
    format: str = "ND"


class Env(NamedTuple):
    """What the test process sees besides the call itself.

    ``hccl_buffsize``: the ``HCCL_BUFFSIZE`` environment variable (MB as a string), ``None`` = unset.
    ``rank_num`` / ``ccl_buffer_bytes``: values the test gives the mocked HCCL communicator (5778144
    harness only), ``None`` = not set by the test (the mock's defaults apply, see ``MOCK_DEFAULTS`` in the
    5778144 module).
    """

    hccl_buffsize: Optional[str] = None
    rank_num: Optional[int] = None
    ccl_buffer_bytes: Optional[int] = None


class Expect(NamedTuple):
    """What the upstream test asserts.

    Tiling tests: ``success`` is the asserted tiling result; ``tiling_key`` / ``tiling_data`` /
    ``workspaces`` are set only when the test compares them (``tiling_data``: the words as written in the
    test, ``*`` = masked, each ``tiling_data_word_bits`` wide, read after ``tiling_data_offset``).
    op_api tests: ``status`` is the aclnnStatus asserted equal (0 = ACLNN_SUCCESS), or ``status_not`` the
    one asserted unequal (``success`` is then ``None``).
    """

    success: Optional[bool]
    tiling_key: Optional[int] = None
    tiling_data: Optional[str] = None
    tiling_data_word_bits: Optional[int] = None
    tiling_data_offset: Optional[str] = None
    workspaces: Optional[Tuple[int, ...]] = None
    status: Optional[int] = None
    status_not: Optional[int] = None


class Case(NamedTuple):
    """One upstream test case (or one call of a test that makes several)."""

    name: str                          # upstream test name (TEST_F / TEST_P parameter)
    source: str                        # repo-relative file:line of the test
    snapshot: str                      # "c29bc10" or "5778144"
    op: str                            # one of OPS
    layer: str                         # "tiling" (op tiling function) or "op_api" (aclnn...GetWorkspaceSize)
    soc: Optional[str]                 # SoC the test configures; None = not set (layer has no SoC checks)
    platform: Optional[Tuple[int, int]]  # (core_num, ub_size) given to the tiling platform, None for op_api
    attrs: Mapping[str, object]
    inputs: Mapping[str, Tensor]
    outputs: Mapping[str, Tensor]
    env: Env
    expect: Expect
    rejected_by: str = ""              # for failures we traced: the upstream check that decides (file:line)
    note: str = ""                     # harness facts that matter for reading the case


class Skipped(NamedTuple):
    """An upstream case outside this package's scope, with the reason."""

    name: str
    source: str
    soc: str
    reason: str


def case_factory(**common: Any) -> Callable[..., Case]:
    """A :class:`Case` constructor with the fields every case of one test file shares preset.

    ``make(name, source, op, **fields)``; keyword ``fields`` override ``common``.
    """
    def make(name: str, source: str, op: str, **fields: Any) -> Case:
        return Case(name=name, source=source, op=op, **{**common, **fields})
    return make


__all__ = ["APIS", "Case", "Env", "Expect", "MiB", "OPS", "Skipped", "Tensor", "case_factory"]
