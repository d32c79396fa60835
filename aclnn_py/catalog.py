"""The operator catalog: every operator version aclnn_py binds, declared once.

An :class:`OpDef` holds what the rest of the package needs to know about one aclnn operator version:
its C name and family, its parameters in C order (each with its role, Python keyword, default, notes
on dtype and shape, and how ranks must agree on it), its outputs, the header that declares it, and
what the Python call returns. From it come

* the C prototypes of both phases (:mod:`aclnn_py.runtime.abi`) and the ctypes argument builder;
* the per-rank wrappers' signatures and docstrings (:mod:`aclnn_py.ops`), the validators' and the
  world-level reference functions' signatures (:func:`signature_source`);
* the cross-rank pre-check (which values and extents must agree) and the reference backend's
  exchange (which tensors are per rank, which are shared);
* the ABI guard and ``python -m aclnn_py info`` (families, versions, headers).

Adding an operator version is an entry here plus its rules (:mod:`aclnn_py.validate`), its reference
(:mod:`aclnn_py.reference`) and its simulator kernel (``sim/src/op_*.c``); ``docs/architecture.md``
has the checklist. This module is data: of the package it imports only the result types and the output shapes (layout).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from . import layout
from .results import CombineAddRmsNormOutputs, CombineV4Outputs, DispatchOutputs, DispatchV4Outputs

# parameter kinds (C types) and roles
TENSOR, STR, I64, F32 = "tensor", "str", "int64", "float"
IN, OPT, ATTR, OUT = "in", "optional", "attr", "out"
REQUIRED = object()   # an attribute without a default: the caller must pass it


def snake(c_name: str, output: bool = False) -> str:
    """torch_npu's keyword for a C parameter: ``xActiveMaskOptional`` -> ``x_active_mask``,
    ``constExpertAlpha1Optional`` -> ``const_expert_alpha_1``, ``timeOut`` -> ``time_out``, and for an
    ``output``: ``expandXOut`` -> ``expand_x``."""
    base = re.sub(r"(Optional|Out)$" if output else r"Optional$", "", c_name)
    return re.sub(r"(?<=[a-z0-9])([A-Z])|(?<=[a-zA-Z])([0-9])", lambda m: "_" + m.group(0).lower(), base).lower()


@dataclass(frozen=True, eq=False)
class Param:
    """One parameter of an operator's ``GetWorkspaceSize`` phase, in C order.

    ``role``: ``in`` (required tensor), ``optional`` (tensor, ``None`` is NULL), ``attr`` (scalar or
    string), ``out`` (output tensor the wrapper allocates). ``default``: an attribute's operator default
    (:data:`REQUIRED` when it has none). ``doc``: dtype, shape and units. Cross-rank agreement (the
    pre-check): ``rank_local`` parameters identify the calling rank and are never compared; other
    attributes must be equal on every rank; ``compare_values`` tensors (the elastic table) must hold the
    same values everywhere; ``agree_dims`` lists the axes whose extent every rank must share (``None``:
    the whole shape), ``agree_dtype`` marks rows that travel between ranks, ``bs_axis`` the axis that is
    BS (equal on every rank when ``global_bs == 0``). ``shared``: the world-level reference takes one
    value for every rank instead of a per-rank list. ``host_values``: a small control tensor whose
    values the host reads (downloaded once when it lives on the device). ``nullable``: a string
    attribute that may be ``None`` (NULL). ``scalar_dtype``: a tensor that may also be given as a Python
    integer, passed as a ``(1,)`` tensor of that dtype. ``default_factory``: for an optional tensor,
    what to pass when the caller gives ``None``, computed from the call's other arguments.
    ``world_default``: a group name's default in the world-level reference (which has no communicators).
    ``in_place``: for an optional tensor the kernel writes, its shape and dtype (a function of the call's
    arguments): the call also returns it (a zeroed one when the caller gives none), under the same name.
    """

    c_name: str
    kind: str
    role: str
    default: Any = None
    doc: str = ""
    rank_local: bool = False
    shared: bool = False
    agree_dims: Tuple[Optional[int], ...] = ()
    agree_dtype: bool = False
    bs_axis: Optional[int] = None
    compare_values: bool = False
    host_values: bool = False
    nullable: bool = False
    scalar_dtype: Optional[str] = None
    default_factory: Optional[Callable[[Mapping[str, Any]], Any]] = None
    world_default: Any = None
    in_place: Optional[Callable[[Mapping[str, Any]], Any]] = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", snake(self.c_name, output=self.role == OUT))

    @property
    def is_tensor(self) -> bool:
        return self.kind == TENSOR

    @property
    def is_output(self) -> bool:
        return self.role == OUT

    @property
    def required(self) -> bool:
        return self.role == IN or self.default is REQUIRED


def tensor(c_name: str, doc: str, **kw: Any) -> Param:
    """A required input tensor."""
    return Param(c_name, TENSOR, IN, doc=doc, **kw)


def optional(c_name: str, doc: str, **kw: Any) -> Param:
    """An optional input tensor (``None`` passes NULL)."""
    return Param(c_name, TENSOR, OPT, doc=doc, **kw)


def attr(c_name: str, kind: str, default: Any, doc: str, **kw: Any) -> Param:
    """A scalar or string attribute with its operator default (:data:`REQUIRED` for none)."""
    return Param(c_name, kind, ATTR, default=default, doc=doc, **kw)


def output(c_name: str, doc: str) -> Param:
    """An output tensor (allocated by the wrapper, or the caller's with ``out=``)."""
    return Param(c_name, TENSOR, OUT, doc=doc)


@dataclass(frozen=True, eq=False)
class OpDef:
    """One operator version (compared and hashed by identity: each entry is made once):
    ``{c_name}GetWorkspaceSize(params..., uint64_t *ws, aclOpExecutor **ex)`` and
    ``{c_name}(void *workspace, uint64_t ws, aclOpExecutor *ex, aclrtStream stream)``.

    ``family``/``version``: the operator and its version number (newest first in :data:`FAMILIES`).
    ``header``: where CANN declares it, relative to ``$ASCEND_HOME_PATH/include``. ``positional``: how
    many leading parameters the Python functions take positionally. ``result``: the NamedTuple type of
    the outputs, or ``None`` when the call returns its one output (or, with no outputs, its first
    input). ``topology``: ``moe`` (EP x TP component named by ``group_ep``/``group_tp``) or ``group`` (every
    rank of ``group``). ``summary``/``returns``: the first line and the result of the docstrings.
    ``output_specs(layout, args)``: the outputs' shapes and dtypes for one call (:mod:`aclnn_py.layout`),
    from the validator's layout and the call's arguments.
    """

    c_name: str
    family: str
    version: int
    params: Tuple[Param, ...]
    header: str
    summary: str
    returns: str
    positional: int
    result: Optional[type] = None
    topology: str = "moe"
    output_specs: Optional[Callable[..., dict]] = None

    @property
    def py_name(self) -> str:
        """The Python name of the per-rank op, the validator and the world reference."""
        return snake(self.c_name[len("aclnn"):]).replace("_v_", "_v")

    @cached_property
    def inputs(self) -> Tuple[Param, ...]:
        """Every parameter but the outputs, in C order."""
        return tuple(p for p in self.params if not p.is_output)

    @cached_property
    def outputs(self) -> Tuple[Param, ...]:
        return tuple(p for p in self.params if p.is_output)

    @cached_property
    def tensors(self) -> Tuple[Param, ...]:
        """Input tensors (required and optional), in C order."""
        return tuple(p for p in self.inputs if p.is_tensor)

    @cached_property
    def by_name(self) -> Dict[str, Param]:
        """Every parameter by Python keyword."""
        return {p.name: p for p in self.params}

    def param(self, name: str) -> Param:
        """The parameter with Python keyword ``name`` (KeyError if none)."""
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"{self.c_name} has no parameter {name!r}") from None

    def has(self, name: str) -> bool:
        return name in self.by_name

    @property
    def arg_count(self) -> int:
        """Arguments of the GetWorkspaceSize phase (parameters + workspace size + executor)."""
        return len(self.params) + 2

    def derive(self, version: int, *, insert: Sequence[Tuple[str, Param]] = (), drop: Iterable[str] = (),
               **changes: Any) -> "OpDef":
        """Another version of this operator: parameters inserted after a C name and dropped by C name."""
        params = [p for p in self.params if p.c_name not in set(drop)]
        for after, new in insert:
            i = [p.c_name for p in params].index(after) + 1
            params.insert(i, new)
        c_name = re.sub(r"V\d+$", "", self.c_name) + (f"V{version}" if version > 1 else "")
        return replace(self, c_name=c_name, version=version, params=tuple(params), **changes)


# ---- the operators ---------------------------------------------------------------------------------------
_GROUP_EP = attr("groupEp", STR, REQUIRED, "EP communicator name (1..127 bytes): ctx.group('ep')", rank_local=True,
                 world_default="ep")
_GROUP_TP = attr("groupTp", STR, "", "TP communicator name; '' without TP", rank_local=True, world_default="")
_EP_RANK = attr("epRankId", I64, REQUIRED, "this rank's rank in group_ep", rank_local=True)
_TP_RANK = attr("tpRankId", I64, 0, "this rank's rank in group_tp (0 without TP)", rank_local=True)
_ELASTIC = optional("elasticInfoOptional", "int32 (4 + 2*ep,): the elastic scale-down table, the same on "
                    "every rank", shared=True, compare_values=True, host_values=True)
_SPECIAL_COUNTS = (
    attr("zeroExpertNum", I64, 0, "zero experts (ids M .. M+Z-1): contribute 0"),
    attr("copyExpertNum", I64, 0, "copy experts: contribute ori_x"),
    attr("constExpertNum", I64, 0, "constant experts: contribute alpha_1*ori_x + alpha_2*v"),
)
_MOE_ATTRS_HEAD = (
    _GROUP_EP,
    attr("epWorldSize", I64, REQUIRED, "ranks in group_ep (2..768)"),
    _EP_RANK,
    attr("moeExpertNum", I64, REQUIRED, "routed (MoE) experts M over the MoE ranks"),
    _GROUP_TP,
    attr("tpWorldSize", I64, 0, "TP ranks (0, 1 or 2)"),
    _TP_RANK,
    attr("expertShardType", I64, 0, "0: shared-expert ranks come first"),
    attr("sharedExpertNum", I64, 1, "shared experts S (1 with no shared ranks means none)"),
    attr("sharedExpertRankNum", I64, 0, "ranks that hold shared experts R"),
)

DISPATCH_V3 = OpDef(
    c_name="aclnnMoeDistributeDispatchV3", family="MoeDistributeDispatch", version=3,
    header="aclnnop/aclnn_moe_distribute_dispatch_v3.h", positional=2, result=DispatchOutputs,
    output_specs=layout.dispatch_outputs,
    summary="Send each token to its top-k experts' ranks (and the shared experts); one rank's call.",
    returns="DispatchOutputs: expand_x (max(tp,1)*A, H) x's dtype (int8 when quant_mode 2), dynamic_scales "
            "(max(tp,1)*A,) fp32, assist_info_for_combine (max(Bs*K, 128*A),) int32 triples, expert_token_nums "
            "(local experts,) int64, ep_recv_counts int32 inclusive sums, tp_recv_counts (tp,) int32, "
            "expand_scales (A,) fp32",
    params=(
        tensor("x", "(Bs, H) bf16/fp16 token activations", agree_dims=(1,), agree_dtype=True, bs_axis=0),
        tensor("expertIds", "(Bs, K) int32 top-k expert ids", agree_dims=(1,)),
        optional("scalesOptional", "(S+M, H) fp32 smooth scales (quant_mode 2)", agree_dims=(None,)),
        optional("xActiveMaskOptional", "(Bs,) bool (True first) or (Bs, K) bool: tokens / pairs taking part"),
        optional("expertScalesOptional", "(Bs, K) fp32 routing weights"),
        _ELASTIC,
        *_MOE_ATTRS_HEAD,
        attr("quantMode", I64, 0, "0: none, 2: per-token dynamic int8"),
        attr("globalBs", I64, 0, "max BS over ranks * ep (0: every rank has the same BS)"),
        attr("expertTokenNumsType", I64, 1, "0: cumulative counts, 1: counts per local expert"),
        attr("commAlg", STR, "", "'', 'fullmesh_v1' or 'fullmesh_v2'", nullable=True),
        *_SPECIAL_COUNTS,
        output("expandXOut", "(max(tp,1)*A, H) rows received, x's dtype or int8"),
        output("dynamicScalesOut", "(max(tp,1)*A,) fp32 dequantisation scales"),
        output("assistInfoForCombineOut", "(max(Bs*K, 128*A),) int32 (src rank, token, k) triples"),
        output("expertTokenNumsOut", "(local experts,) int64"),
        output("epRecvCountsOut", "int32 inclusive sums of rows per (expert, source rank)"),
        output("tpRecvCountsOut", "(tp,) int32 rows per TP rank"),
        output("expandScalesOut", "(A,) fp32"),
    ))

_COMBINE_HEAD = (
    tensor("expandX", "(max(tp,1)*A, H) bf16/fp16 expert outputs, dispatch's row order", agree_dims=(1,),
           agree_dtype=True),
    tensor("expertIds", "(Bs, K) int32, as given to dispatch", agree_dims=(1,), bs_axis=0),
    tensor("assistInfoForCombine", "dispatch's assist_info_for_combine (int32)"),
    tensor("epSendCounts", "dispatch's ep_recv_counts (int32)"),
    tensor("expertScales", "(Bs, K) fp32 routing weights"),
)
_COMBINE_OPTIONALS = (
    optional("tpSendCountsOptional", "(tp,) int32: dispatch's tp_recv_counts (zeros by default)",
             agree_dims=(None,), default_factory=layout.default_tp_send_counts),
    optional("xActiveMaskOptional", "(Bs,) or (Bs, K) bool: the mask given to dispatch"),
    optional("activationScaleOptional", "reserved: must be None"),
    optional("weightScaleOptional", "reserved: must be None"),
    optional("groupListOptional", "reserved: must be None"),
    optional("expandScalesOptional", "(A,) fp32"),
    optional("sharedExpertXOptional", "(Bs, H) or (Bs, 1, H): added unweighted", agree_dims=(-1,)),
    _ELASTIC,
    optional("oriXOptional", "(Bs, H): dispatch's x, for copy and constant experts"),
    optional("constExpertAlpha1Optional", "(Q,) constant-expert weights on ori_x", agree_dims=(None,)),
    optional("constExpertAlpha2Optional", "(Q,) constant-expert weights on v", agree_dims=(None,)),
    optional("constExpertVOptional", "(Q, H) constant-expert vectors", agree_dims=(None,)),
    *_MOE_ATTRS_HEAD,
    attr("globalBs", I64, 0, "as given to dispatch"),
    attr("outDtype", I64, 0, "reserved: 0"),
    attr("commQuantMode", I64, 0, "0: none, 2: int8 rows with per-group scales on the way back"),
    attr("groupListType", I64, 0, "reserved: 0"),
    attr("commAlg", STR, "", "as given to dispatch", nullable=True),
)

COMBINE_V3 = OpDef(
    c_name="aclnnMoeDistributeCombineV3", family="MoeDistributeCombine", version=3,
    header="aclnnop/aclnn_moe_distribute_combine_v3.h", positional=5, result=None,
    output_specs=layout.combine_outputs,
    summary="Return each expert row to its token's rank and sum it there (fp32, ascending k); one rank's call.",
    returns="x (Bs, H), expand_x's dtype; rows of tokens a mask excludes are 0",
    params=_COMBINE_HEAD + _COMBINE_OPTIONALS + _SPECIAL_COUNTS + (output("xOut", "(Bs, H) combined tokens"),))

ADD_RMS_NORM_V2 = OpDef(
    c_name="aclnnMoeDistributeCombineAddRmsNormV2", family="MoeDistributeCombineAddRmsNorm", version=2,
    header="aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h", positional=7,
    result=CombineAddRmsNormOutputs, output_specs=layout.add_rms_norm_outputs,
    summary="CombineV3, then x = combined + residual_x and y = RMSNorm(x) * gamma; one rank's call.",
    returns="CombineAddRmsNormOutputs: y (Bs,1,H) bf16, rstd (Bs,1,1) fp32, x (Bs,1,H) bf16",
    params=_COMBINE_HEAD + (
        tensor("residualX", "(Bs, 1, H) bf16", agree_dims=(-1,)),
        tensor("gamma", "(H,) bf16 RMSNorm weight", agree_dims=(None,)),
    ) + _COMBINE_OPTIONALS + (attr("normEps", F32, 1e-6, "RMSNorm epsilon (passed as float32)"),)
    + _SPECIAL_COUNTS + (output("yOut", "(Bs, 1, H) bf16"), output("rstdOut", "(Bs, 1, 1) fp32"),
                         output("xOut", "(Bs, 1, H) bf16")))

BARRIER_V2 = OpDef(
    c_name="aclnnDistributeBarrierV2", family="DistributeBarrier", version=2,
    header="aclnnop/aclnn_distribute_barrier_v2.h", positional=1, topology="group",
    summary="Block until every (surviving) rank of group has called; one rank's call.",
    returns="x_ref, unchanged",
    params=(
        tensor("xRef", "any tensor (0-8 D): only a dependency token"),
        optional("timeOut", "microseconds: an int, or an int32 tensor of shape (1,)", shared=True, host_values=True,
                 scalar_dtype="int32"),
        replace(_ELASTIC, c_name="elasticInfo", doc="int32 (4 + 2*world_size,): the elastic scale-down table"),
        attr("group", STR, REQUIRED, "communicator name (1..127 bytes)", rank_local=True, world_default="barrier"),
        attr("worldSize", I64, REQUIRED, "ranks in group (2..384)"),
    ))

_V3_ONLY = ("elasticInfoOptional", "oriXOptional", "constExpertAlpha1Optional", "constExpertAlpha2Optional",
            "constExpertVOptional", "zeroExpertNum", "copyExpertNum", "constExpertNum")
_PERFORMANCE_INFO = optional("performanceInfoOptional", "(ep,) int64: per peer, the longest wait in us "
                             "(the kernel takes the max with what the tensor holds; None: a zeroed one)",
                             in_place=layout.performance_info_spec)
_V4_RETURNS = ", then performance_info (ep,) int64: per EP peer, the longest wait in us"

DISPATCH_V4 = DISPATCH_V3.derive(4, insert=[("elasticInfoOptional", _PERFORMANCE_INFO)],
                                 header="aclnnop/aclnn_moe_distribute_dispatch_v4.h", result=DispatchV4Outputs,
                                 output_specs=layout.dispatch_v4_outputs,
                                 returns="DispatchV4Outputs: " + DISPATCH_V3.returns[len("DispatchOutputs: "):]
                                 + _V4_RETURNS)
DISPATCH_V2 = DISPATCH_V3.derive(2, drop=_V3_ONLY, header="aclnnop/aclnn_moe_distribute_dispatch_v2.h")
COMBINE_V4 = COMBINE_V3.derive(4, insert=[("constExpertVOptional", _PERFORMANCE_INFO)],
                               header="aclnnop/aclnn_moe_distribute_combine_v4.h", result=CombineV4Outputs,
                               output_specs=layout.combine_v4_outputs,
                               returns="CombineV4Outputs: x " + COMBINE_V3.returns[len("x "):] + _V4_RETURNS)
COMBINE_V2 = COMBINE_V3.derive(2, drop=_V3_ONLY, header="aclnnop/aclnn_moe_distribute_combine_v2.h")
ADD_RMS_NORM_V1 = ADD_RMS_NORM_V2.derive(1, drop=_V3_ONLY,
                                         header="aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h")
BARRIER_V1 = BARRIER_V2.derive(1, drop=("timeOut", "elasticInfo"), header="aclnnop/aclnn_distribute_barrier.h")

# every version of each family, newest first (the order torch_npu prefers)
FAMILIES: Dict[str, Tuple[OpDef, ...]] = {
    "MoeDistributeDispatch": (DISPATCH_V4, DISPATCH_V3, DISPATCH_V2),
    "MoeDistributeCombine": (COMBINE_V4, COMBINE_V3, COMBINE_V2),
    "MoeDistributeCombineAddRmsNorm": (ADD_RMS_NORM_V2, ADD_RMS_NORM_V1),
    "DistributeBarrier": (BARRIER_V2, BARRIER_V1),
}
OPS: Dict[str, OpDef] = {d.c_name: d for defs in FAMILIES.values() for d in defs}
# the versions aclnn_py exposes as Python functions
PUBLIC: Tuple[OpDef, ...] = (DISPATCH_V3, DISPATCH_V4, COMBINE_V3, COMBINE_V4, ADD_RMS_NORM_V2, BARRIER_V2)


def family_of(op: OpDef) -> Tuple[OpDef, ...]:
    return FAMILIES[op.family]


# ---- signatures made from the entries --------------------------------------------------------------------
def signature_source(op: OpDef, name: str, body: str, *, world: bool = False, extra: Sequence[str] = (),
                     returns: str = "Any") -> str:
    """Python source of ``def name(<the op's parameters>, <extra>): <body>``.

    The op's inputs in C order: the first ``op.positional`` positionally, the rest keyword-only, with the
    operator defaults. ``world=True`` gives the world-level reference form: tensors are per-rank
    sequences, the rank-local identity (``ep_rank_id``, ``tp_rank_id``) is dropped and group names are
    optional. ``extra``: further keyword-only parameters as source text (``"stream=None"``). ``body``
    sees every parameter by its name and ``_args``, a dict of them in C order.
    """
    head, tail = [], []
    names = []
    for i, p in enumerate(op.inputs):
        if world and p.rank_local and p.kind != STR:
            continue
        if p.role == OPT:
            text = f"{p.name}=None"
        elif world and p.rank_local:
            text = f"{p.name}={p.world_default!r}"
        elif p.role == IN or p.default is REQUIRED:
            text = p.name
        else:
            text = f"{p.name}={p.default!r}"
        (head if i < op.positional else tail).append(text)
        names.append(p.name)
    params = ", ".join(head + (["*"] + tail + list(extra) if tail or extra else []))
    args = ", ".join(f"{n!r}: {n}" for n in names)
    return f"def {name}({params}) -> {returns}:\n    _args = {{{args}}}\n    {body}\n"


def make_function(op: OpDef, name: str, impl: Any, doc: str, *, world: bool = False,
                  extra: Sequence[Tuple[str, Any]] = (), module: str = "aclnn_py") -> Any:
    """A function with the op's real signature that calls ``impl(op, _args, **extra)``.

    ``extra``: further keyword-only parameters ``(name, default)`` passed to ``impl`` by name.
    """
    extra_src = [f"{n}=_d_{n}" for n, _ in extra]
    call_extra = "".join(f", {n}={n}" for n, _ in extra)
    src = signature_source(op, name, f"return _impl(_op, _args{call_extra})", world=world, extra=extra_src)
    scope: Dict[str, Any] = {"_impl": impl, "_op": op, "Any": Any, "REQUIRED": REQUIRED}
    scope.update({f"_d_{n}": d for n, d in extra})
    exec(compile(src, f"<aclnn_py catalog: {name}>", "exec"), scope)
    fn = scope[name]
    fn.__doc__ = doc
    fn.__module__ = module
    fn.__qualname__ = name
    return fn


def parameter_doc(op: OpDef, *, world: bool = False) -> str:
    """The ``Parameters`` part of a docstring: one line per input, from the entries' notes."""
    lines = []
    for p in op.inputs:
        if world and p.rank_local and p.kind != STR:
            continue
        where = " (one entry per global rank)" if world and p.is_tensor and not p.shared else ""
        lines.append(f"    {p.name}: {p.doc}{where}")
    return "\n".join(lines)


__all__ = ["Param", "OpDef", "FAMILIES", "OPS", "PUBLIC", "TENSOR", "STR", "I64", "F32", "IN", "OPT", "ATTR", "OUT",
           "REQUIRED", "snake", "signature_source", "make_function", "parameter_doc", "family_of",
           "DISPATCH_V2", "DISPATCH_V3", "DISPATCH_V4", "COMBINE_V2", "COMBINE_V3", "COMBINE_V4",
           "ADD_RMS_NORM_V1", "ADD_RMS_NORM_V2", "BARRIER_V1", "BARRIER_V2"]
