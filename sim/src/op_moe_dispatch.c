/*
 * Simulated aclnnMoeDistributeDispatchV3, and V4 (performanceInfoOptional) and V2 (no elastic / special experts),
 * the same operator (Atlas A3 semantics) with the rules and kernel of the emulated CANN release (sim_release.h).
 * Spec: ../shared/spec/dispatch-v3.md (DS §n). Validation follows DS §13: op_api rules -> 161001,
 * dtypes outside the op definition -> 161002, tiling rules in evaluation order -> 561002.
 * Execution: every EP rank's task publishes its inputs with sim_comm_exchange, computes the rows it
 * receives by reading its peers' inputs (op_moe_kernels.c), then (TP = 2) all-gathers with its TP
 * peer, and writes only the output elements the real kernel writes.
 */
#define _GNU_SOURCE
#pragma GCC optimize("fp-contract=off")
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "aclnnop/aclnn_moe_distribute_dispatch_v2.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "aclnnop/aclnn_moe_distribute_dispatch_v4.h"
#include "op_moe_common.h"

typedef struct {
    MoeTensor x, ids, scales, mask, expert_scales, elastic, perf;
    MoeTensor expand_x, dyn_scales, assist, token_nums, ep_recv, tp_recv, expand_scales;
    MoeAttrs a;
    int64_t quant, tn_type;
    int version;               /* 2, 3 or 4 */
    const char *gws, *run;     /* the API names of this version */
} DispatchState;

/* ================================ validation ================================================= */
#define FAIL(st, ...) return moe_fail(s->gws, st, __VA_ARGS__)
#define NULLPTR SIM_ACLNN_ERR_PARAM_NULLPTR
#define INVALID SIM_ACLNN_ERR_PARAM_INVALID
#define TILING SIM_ACLNN_ERR_INNER_TILING_ERROR

static int validate(const DispatchState *s, const char *groupEp, const char *groupTp, const void *const *raw,
                    const char *const *raw_names, int n_raw, const uint64_t *workspaceSize, const void *executor) {
    /* --- op_api layer (API3 CheckNotNull / CheckParams): 161001 --- */
    {
        const MoeTensor *req[] = {&s->x, &s->ids, &s->expand_x, &s->assist, &s->token_nums, &s->ep_recv, &s->tp_recv};
        const char *names[] = {"x", "expertIds", "expandXOut", "assistInfoForCombineOut", "expertTokenNumsOut",
                               "epRecvCountsOut", "tpRecvCountsOut"};
        /* CANN 9.1.0 (tp_removed): tpRecvCountsOut may be NULL */
        for (int i = 0; i < (moe_has(&s->a, SIM_CHANGE_TP_REMOVED) ? 6 : 7); i++)
            if (!req[i]->present) FAIL(NULLPTR, "%s is NULL (required tensor)", names[i]);
    }
    if (!groupEp || !groupEp[0]) FAIL(NULLPTR, "groupEp is %s; it must name the EP communicator", groupEp ? "\"\"" : "NULL");
    if (s->quant == 2 && !s->dyn_scales.present)
        FAIL(NULLPTR, "dynamicScalesOut is NULL but quantMode = 2 (dynamic quantisation) requires it");
    int rc = moe_check_api_args(s->gws, groupEp, groupTp, NULLPTR, workspaceSize, executor, raw, raw_names, n_raw);
    if (rc) return rc;

    /* --- generated layer: dtypes outside the op definition (DEF) -> 161002 --- */
    {
        static const int32_t X_DT[] = {ACL_BF16, ACL_FLOAT16, 35, 36, 34};
        static const int32_t SC_DT[] = {ACL_FLOAT, 37};
        static const int32_t EX_DT[] = {ACL_BF16, ACL_INT8, ACL_FLOAT16, 35, 36, 34};
        static const int32_t I32[] = {ACL_INT32}, I64[] = {ACL_INT64}, F32[] = {ACL_FLOAT}, BOOL_[] = {ACL_BOOL};
        static const int32_t ESC_DT[] = {ACL_FLOAT, ACL_INT32};
        /* the op definition lists FLOAT and INT32 for expandScales; FLOAT only from CANN 9.1.0 */
        const int esc_n = moe_has(&s->a, SIM_CHANGE_EXPERT_SCALES_OPTIONAL) ? 1 : 2;
        struct {
            const MoeTensor *t;
            const char *name;
            const int32_t *l;
            int n;
            const char *allowed;
        } tab[] = {
            {&s->x, "x", X_DT, 5, "BF16, FLOAT16, FLOAT8_E5M2, FLOAT8_E4M3FN, HIFLOAT8"},
            {&s->ids, "expertIds", I32, 1, "INT32"},
            {&s->scales, "scalesOptional", SC_DT, 2, "FLOAT, FLOAT8_E8M0"},
            {&s->mask, "xActiveMaskOptional", BOOL_, 1, "BOOL"},
            {&s->expert_scales, "expertScalesOptional", F32, 1, "FLOAT"},
            {&s->elastic, "elasticInfoOptional", I32, 1, "INT32"},
            {&s->expand_x, "expandXOut", EX_DT, 6, "BF16, INT8, FLOAT16, FLOAT8_E5M2, FLOAT8_E4M3FN, HIFLOAT8"},
            {&s->dyn_scales, "dynamicScalesOut", SC_DT, 2, "FLOAT, FLOAT8_E8M0"},
            {&s->assist, "assistInfoForCombineOut", I32, 1, "INT32"},
            {&s->token_nums, "expertTokenNumsOut", I64, 1, "INT64"},
            {&s->ep_recv, "epRecvCountsOut", I32, 1, "INT32"},
            {&s->tp_recv, "tpRecvCountsOut", I32, 1, "INT32"},
            {&s->expand_scales, "expandScalesOut", ESC_DT, esc_n, esc_n == 1 ? "FLOAT" : "FLOAT, INT32"},
            {&s->perf, "performanceInfoOptional", I64, 1, "INT64"},
        };
        for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
            if (tab[i].t->present && !moe_in_list(tab[i].t->d.dtype, tab[i].l, tab[i].n))
                FAIL(INVALID, "%s has dtype %s (%d); the operator supports %s", tab[i].name,
                     moe_dtype_name(tab[i].t->d.dtype), (int)tab[i].t->d.dtype, tab[i].allowed);
    }

    /* --- tiling (TIL, A3), in evaluation order: 561002 --- */
    if (strnlen(groupEp, MOE_GROUP_NAME_MAX) == 0 || strnlen(groupEp, MOE_GROUP_NAME_MAX) >= MOE_GROUP_NAME_MAX)
        FAIL(TILING, "groupEp length must be in [1, 127]");
    /* expertShardType is checked first in CheckAndSetExpertInfo */
    return moe_check_world(s->gws, &s->a, groupTp, 0);
}

/* CheckCommAlgAttrs: fullmesh_v2 (bans until CANN 9.0.0, then BS <= 256; K <= 12 from 8.5.0-beta.1) and
 * hierarchy (no elastic, special experts, 2-D mask or performanceInfo; expertScales required) */
static int check_comm_alg_attrs(const DispatchState *s, int fm2) {
    const int64_t k = moe_ndim(&s->ids) >= 2 ? moe_dim(&s->ids, 1) : 0;
    if (fm2 && !moe_has(&s->a, SIM_CHANGE_FULLMESH_V2_OPEN)) {
        if (s->elastic.present) FAIL(TILING, "commAlg = \"fullmesh_v2\" cannot be combined with elasticInfoOptional");
        if (s->a.zero + s->a.copy + s->a.cnst > 0)
            FAIL(TILING, "commAlg = \"fullmesh_v2\" cannot be combined with zero/copy/const experts");
        if (s->mask.present) FAIL(TILING, "commAlg = \"fullmesh_v2\" cannot be combined with xActiveMaskOptional");
        if (s->a.tp == 2) FAIL(TILING, "commAlg = \"fullmesh_v2\" cannot be combined with tpWorldSize = 2");
    }
    if (fm2 && moe_has(&s->a, SIM_CHANGE_FULLMESH_V2_OPEN) && (s->a.bs < 1 || s->a.bs > 256))
        FAIL(TILING, "x dim0 (BS) = %lld is outside [1, 256] with commAlg = \"fullmesh_v2\" (CANN %s)",
             (long long)s->a.bs, s->a.rel.text);
    if (fm2 && moe_has(&s->a, SIM_CHANGE_FULLMESH_V2_K12) && k > 12)
        FAIL(TILING, "expertIds dim1 (K) = %lld is outside [1, 12] with commAlg = \"fullmesh_v2\" (CANN %s)",
             (long long)k, s->a.rel.text);
    if (s->a.hier) {
        if (s->elastic.present) FAIL(TILING, "commAlg = \"hierarchy\" cannot be combined with elasticInfoOptional");
        if (s->a.zero + s->a.copy + s->a.cnst > 0)
            FAIL(TILING, "commAlg = \"hierarchy\" cannot be combined with zero/copy/const experts");
        if (s->mask.present && moe_ndim(&s->mask) == 2)
            FAIL(TILING, "commAlg = \"hierarchy\" cannot be combined with a 2-D xActiveMaskOptional");
        if (s->perf.present) FAIL(TILING, "commAlg = \"hierarchy\" cannot be combined with performanceInfoOptional");
        if (!s->expert_scales.present) FAIL(TILING, "expertScalesOptional is required with commAlg = \"hierarchy\"");
    }
    return 0;
}

/* CANN 9.1.0 (expert_scales_optional), expertScalesOptional given: it is (BS, K) FLOAT, and expandScalesOut is a
 * 1-D FLOAT tensor of at least A entries (the kernel writes one per received row) */
static int check_expert_scales(const DispatchState *s) {
    const MoeTensor *es = &s->expert_scales, *xs = &s->expand_scales;
    if (!es->present || !moe_has(&s->a, SIM_CHANGE_EXPERT_SCALES_OPTIONAL)) return 0;
    char b1[96];
    if (moe_ndim(es) != 2) FAIL(TILING, "expertScalesOptional must be 2-D (BS, K), got %d-D", moe_ndim(es));
    if (es->d.dtype != ACL_FLOAT) FAIL(TILING, "expertScalesOptional dtype must be FLOAT, got %s", moe_dtype_name(es->d.dtype));
    if (moe_is_nz(es)) FAIL(TILING, "expertScalesOptional has format FRACTAL_NZ; only ND is supported");
    if (moe_dim(es, 0) != s->a.bs || moe_dim(es, 1) != s->a.k)
        FAIL(TILING, "expertScalesOptional shape %s must be (BS, K) = (%lld, %lld)", moe_shape_str(es, b1, sizeof b1),
             (long long)s->a.bs, (long long)s->a.k);
    if (!xs->present)
        FAIL(TILING, "expandScalesOut is NULL but expertScalesOptional is given: CANN %s writes one expert scale per "
                     "received row", s->a.rel.text);
    if (moe_ndim(xs) != 1) FAIL(TILING, "expandScalesOut must be 1-D, got %d-D", moe_ndim(xs));
    if (xs->d.dtype != ACL_FLOAT) FAIL(TILING, "expandScalesOut dtype must be FLOAT, got %s", moe_dtype_name(xs->d.dtype));
    if (moe_is_nz(xs)) FAIL(TILING, "expandScalesOut has format FRACTAL_NZ; only ND is supported");
    if (moe_dim(xs, 0) < s->a.sh.A)
        FAIL(TILING, "expandScalesOut dim0 = %lld must be >= A = %lld", (long long)moe_dim(xs, 0), (long long)s->a.sh.A);
    return 0;
}

static int validate_tiling(const DispatchState *s, int64_t shard, const char *commAlg) {
    char b1[96];
    const int64_t ep = s->a.ep, tp = s->a.tp, M = s->a.M;
    int rc = moe_check_experts(s->gws, &s->a, shard, "(0, 1024]");
    if (rc) return rc;
    if (s->quant < 0 || s->quant > 2) FAIL(TILING, "quantMode = %lld is outside [0, 2]", (long long)s->quant);
    if (s->tn_type != 0 && s->tn_type != 1)
        FAIL(TILING, "expertTokenNumsType = %lld; only 0 (cumulative) or 1 (counts) is supported", (long long)s->tn_type);
    if (s->a.zero < 0) FAIL(TILING, "zeroExpertNum = %lld is negative", (long long)s->a.zero);
    if (s->a.copy < 0) FAIL(TILING, "copyExpertNum = %lld is negative", (long long)s->a.copy);
    if (s->a.cnst < 0) FAIL(TILING, "constExpertNum = %lld is negative", (long long)s->a.cnst);
    if ((rc = moe_check_expert_sum(s->gws, &s->a))) return rc;
    const char *alg = commAlg ? commAlg : "";
    const int hier_ok = moe_has(&s->a, SIM_CHANGE_HIERARCHY);
    if (alg[0] && strcmp(alg, "fullmesh_v1") && strcmp(alg, "fullmesh_v2") && (!hier_ok || strcmp(alg, "hierarchy")))
        FAIL(TILING, "commAlg = \"%s\"; supported: NULL, \"\", \"fullmesh_v1\", \"fullmesh_v2\"%s", alg,
             hier_ok ? ", \"hierarchy\"" : "");
    const int fm2 = strcmp(alg, "fullmesh_v2") == 0;
    if (s->quant == 1) FAIL(TILING, "quantMode = 1 (static quantisation) is not supported");
    if (s->scales.present && s->quant == 0)
        FAIL(TILING, "scalesOptional is given but quantMode = 0; smooth scales need quantMode = 2");

    /* CheckTensorDim */
    if (moe_ndim(&s->x) != 2) FAIL(TILING, "x must be 2-D (BS, H), got %d-D", moe_ndim(&s->x));
    if (moe_ndim(&s->ids) != 2) FAIL(TILING, "expertIds must be 2-D (BS, K), got %d-D", moe_ndim(&s->ids));
    if (s->scales.present && moe_ndim(&s->scales) != 2)
        FAIL(TILING, "scalesOptional must be 2-D, got %d-D", moe_ndim(&s->scales));
    if (s->mask.present) {
        int nd = moe_ndim(&s->mask);
        if (nd != 1 && nd != 2) FAIL(TILING, "xActiveMaskOptional must be 1-D (BS,) or 2-D (BS, K), got %d-D", nd);
        if (moe_dim(&s->mask, 0) != moe_dim(&s->x, 0))
            FAIL(TILING, "xActiveMaskOptional dim0 = %lld differs from x dim0 (BS) = %lld",
                 (long long)moe_dim(&s->mask, 0), (long long)moe_dim(&s->x, 0));
        if (nd == 2 && moe_dim(&s->mask, 1) != moe_dim(&s->ids, 1))
            FAIL(TILING, "xActiveMaskOptional dim1 = %lld differs from expertIds dim1 (K) = %lld",
                 (long long)moe_dim(&s->mask, 1), (long long)moe_dim(&s->ids, 1));
    }
    if (s->elastic.present && moe_ndim(&s->elastic) != 1)
        FAIL(TILING, "elasticInfoOptional must be 1-D, got %d-D", moe_ndim(&s->elastic));
    if (moe_ndim(&s->expand_x) != 2) FAIL(TILING, "expandXOut must be 2-D, got %d-D", moe_ndim(&s->expand_x));
    if (s->quant == 2 && moe_ndim(&s->dyn_scales) != 1)
        FAIL(TILING, "dynamicScalesOut must be 1-D, got %d-D", moe_ndim(&s->dyn_scales));
    if (moe_ndim(&s->assist) != 1) FAIL(TILING, "assistInfoForCombineOut must be 1-D, got %d-D", moe_ndim(&s->assist));
    if (moe_ndim(&s->token_nums) != 1) FAIL(TILING, "expertTokenNumsOut must be 1-D, got %d-D", moe_ndim(&s->token_nums));
    if (moe_ndim(&s->ep_recv) != 1) FAIL(TILING, "epRecvCountsOut must be 1-D, got %d-D", moe_ndim(&s->ep_recv));
    if (s->tp_recv.present && moe_ndim(&s->tp_recv) != 1)
        FAIL(TILING, "tpRecvCountsOut must be 1-D, got %d-D", moe_ndim(&s->tp_recv));

    /* CheckTensorDataType */
    {
        int32_t xdt = s->x.d.dtype;
        if (xdt != ACL_BF16 && xdt != ACL_FLOAT16)
            FAIL(TILING, "x dtype %s is not supported on Atlas A3; use BF16 or FLOAT16", moe_dtype_name(xdt));
        if (s->ids.d.dtype != ACL_INT32) FAIL(TILING, "expertIds dtype must be INT32, got %s", moe_dtype_name(s->ids.d.dtype));
        if (s->scales.present && s->scales.d.dtype != ACL_FLOAT)
            FAIL(TILING, "scalesOptional dtype must be FLOAT, got %s", moe_dtype_name(s->scales.d.dtype));
        if (s->mask.present && s->mask.d.dtype != ACL_BOOL)
            FAIL(TILING, "xActiveMaskOptional dtype must be BOOL, got %s", moe_dtype_name(s->mask.d.dtype));
        if (s->elastic.present && s->elastic.d.dtype != ACL_INT32)
            FAIL(TILING, "elasticInfoOptional dtype must be INT32, got %s", moe_dtype_name(s->elastic.d.dtype));
        if (s->quant != 0 && s->expand_x.d.dtype != ACL_INT8)
            FAIL(TILING, "expandXOut dtype must be INT8 with quantMode = %lld, got %s", (long long)s->quant,
                 moe_dtype_name(s->expand_x.d.dtype));
        if (s->quant == 0 && s->expand_x.d.dtype != xdt)
            FAIL(TILING, "expandXOut dtype %s must equal x dtype %s with quantMode = 0",
                 moe_dtype_name(s->expand_x.d.dtype), moe_dtype_name(xdt));
        if (s->quant == 2 && s->dyn_scales.d.dtype != ACL_FLOAT)
            FAIL(TILING, "dynamicScalesOut dtype must be FLOAT, got %s", moe_dtype_name(s->dyn_scales.d.dtype));
        if (s->assist.d.dtype != ACL_INT32)
            FAIL(TILING, "assistInfoForCombineOut dtype must be INT32, got %s", moe_dtype_name(s->assist.d.dtype));
        if (s->token_nums.d.dtype != ACL_INT64)
            FAIL(TILING, "expertTokenNumsOut dtype must be INT64, got %s", moe_dtype_name(s->token_nums.d.dtype));
        if (s->ep_recv.d.dtype != ACL_INT32)
            FAIL(TILING, "epRecvCountsOut dtype must be INT32, got %s", moe_dtype_name(s->ep_recv.d.dtype));
        if (s->tp_recv.present && s->tp_recv.d.dtype != ACL_INT32)
            FAIL(TILING, "tpRecvCountsOut dtype must be INT32, got %s", moe_dtype_name(s->tp_recv.d.dtype));
    }
    /* CheckTensorFormat */
    {
        const MoeTensor *ts[] = {&s->x, &s->ids, &s->scales, &s->mask, &s->elastic, &s->expand_x,
                                 s->quant == 2 ? &s->dyn_scales : NULL, &s->assist, &s->token_nums, &s->ep_recv,
                                 &s->tp_recv};
        const char *nm[] = {"x", "expertIds", "scalesOptional", "xActiveMaskOptional", "elasticInfoOptional",
                            "expandXOut", "dynamicScalesOut", "assistInfoForCombineOut", "expertTokenNumsOut",
                            "epRecvCountsOut", "tpRecvCountsOut"};
        for (int i = 0; i < 11; i++)
            if (ts[i] && ts[i]->present && moe_is_nz(ts[i]))
                FAIL(TILING, "%s has format FRACTAL_NZ (%d); only ND is supported", nm[i], (int)ts[i]->d.format);
    }

    /* CheckAttrs */
    const MoeShape *sh = &s->a.sh;
    if ((rc = moe_check_shared(s->gws, &s->a)) || (rc = check_comm_alg_attrs(s, fm2))) return rc;
    if ((rc = moe_check_layout(s->gws, &s->a, s->elastic.present)) ||
        (rc = moe_check_bs(s->gws, &s->a, "x dim0 (BS)", "BS", s->mask.present)))
        return rc;
    const int64_t bs = s->a.bs, h = s->a.h;
    if (s->a.global_bs > bs * ep && fm2 && !moe_has(&s->a, SIM_CHANGE_FULLMESH_V2_OPEN))
        FAIL(TILING, "globalBs = %lld > BS * epWorldSize (different BS per rank) cannot be combined with "
                     "commAlg = \"fullmesh_v2\"", (long long)s->a.global_bs);

    /* CheckTensorShape */
    if (s->a.hier && (h < 1 || h > 7168 || h % 32 != 0))
        FAIL(TILING, "x dim1 (H) = %lld must be a multiple of 32 in [32, 7168] with commAlg = \"hierarchy\"",
             (long long)h);
    if (!s->a.hier && (h < 1024 || h > 8192)) FAIL(TILING, "x dim1 (H) = %lld is outside [1024, 8192]", (long long)h);
    const int64_t k = moe_dim(&s->ids, 1), mz = M + s->a.zero + s->a.copy + s->a.cnst;
    if (moe_dim(&s->ids, 0) != bs)
        FAIL(TILING, "expertIds dim0 = %lld differs from x dim0 (BS) = %lld", (long long)moe_dim(&s->ids, 0), (long long)bs);
    if (k <= 0 || k > 16 || k > mz)
        FAIL(TILING, "expertIds dim1 (K) = %lld is outside (0, min(16, moeExpertNum + zero + copy + const = %lld)]",
             (long long)k, (long long)mz);
    if (s->scales.present && (moe_dim(&s->scales, 0) != sh->S + M || moe_dim(&s->scales, 1) != h))
        FAIL(TILING, "scalesOptional shape %s must be (sharedExpertNum + moeExpertNum, H) = (%lld, %lld)",
             moe_shape_str(&s->scales, b1, sizeof b1), (long long)(sh->S + M), (long long)h);
    if (s->elastic.present && moe_dim(&s->elastic, 0) != 4 + 2 * ep)
        FAIL(TILING, "elasticInfoOptional dim0 = %lld must be 4 + 2 * epWorldSize = %lld",
             (long long)moe_dim(&s->elastic, 0), (long long)(4 + 2 * ep));
    const int64_t A = sh->A, tpm = tp > 1 ? tp : 1;
    /* CANN 9.1.0 compares the rows with A; older releases with tpWorldSize * A (0 without TP) */
    const int rows_a = moe_has(&s->a, SIM_CHANGE_TP_REMOVED);
    if (moe_dim(&s->expand_x, 0) < tpm * A)
        FAIL(TILING, "expandXOut dim0 = %lld must be >= %s = %lld (A = %lld)%s",
             (long long)moe_dim(&s->expand_x, 0), rows_a ? "A" : "max(tpWorldSize, 1) * A", (long long)(tpm * A),
             (long long)A,
             tp == 0 && !rows_a ? "; the real tiling compares with tpWorldSize * A = 0 here and would let the kernel "
                                  "write past the buffer, the simulator enforces the documented shape"
                                : "");
    if (moe_dim(&s->expand_x, 1) != h)
        FAIL(TILING, "expandXOut dim1 = %lld differs from x dim1 (H) = %lld", (long long)moe_dim(&s->expand_x, 1),
             (long long)h);
    if (s->quant != 0 && moe_dim(&s->dyn_scales, 0) < tpm * A)
        FAIL(TILING, "dynamicScalesOut dim0 = %lld must be >= %s = %lld%s", (long long)moe_dim(&s->dyn_scales, 0),
             rows_a ? "A" : "max(tpWorldSize, 1) * A", (long long)(tpm * A),
             tp == 0 && !rows_a ? " (documented shape; the real tiling compares with tpWorldSize * A = 0)" : "");
    if (moe_has(&s->a, SIM_CHANGE_ASSIST_128A) && moe_dim(&s->assist, 0) < 128 * A)
        FAIL(TILING, "assistInfoForCombineOut dim0 = %lld must be >= 128 * A = %lld (A = %lld)",
             (long long)moe_dim(&s->assist, 0), (long long)(128 * A), (long long)A);
    if (moe_dim(&s->assist, 0) < 3 * A)
        FAIL(TILING, "assistInfoForCombineOut dim0 = %lld must be >= 3 * A = %lld (documented shape: A * 128 = %lld)",
             (long long)moe_dim(&s->assist, 0), (long long)(3 * A), (long long)(128 * A));
    {
        int64_t want = s->elastic.present ? (sh->L > 1 ? sh->L : 1) : (sh->is_shared ? 1 : sh->L);
        if (moe_dim(&s->token_nums, 0) != want)
            FAIL(TILING, "expertTokenNumsOut dim0 = %lld must be exactly %lld (%s)", (long long)moe_dim(&s->token_nums, 0),
                 (long long)want,
                 s->elastic.present ? "max(localExpertNum, 1) with elasticInfo"
                                    : (sh->is_shared ? "1 on a shared-expert rank" : "localExpertNum on a MoE rank"));
        int64_t er = s->elastic.present ? (ep > ep * sh->L ? ep : ep * sh->L) : (sh->is_shared ? ep : ep * sh->L);
        if (tp == 2) er *= 2;
        if (s->a.hier) er = ep * sh->L + sh->global_bs * 2 * s->a.k * ep / 8;
        if (moe_dim(&s->ep_recv, 0) < er)
            FAIL(TILING, "epRecvCountsOut dim0 = %lld must be >= %lld (%s)", (long long)moe_dim(&s->ep_recv, 0),
                 (long long)er, s->a.hier ? "epWorldSize * localExpertNum + globalBs * 2 * K * epWorldSize / 8 with "
                                            "commAlg = \"hierarchy\""
                                          : "epWorldSize * localExpertNum * max(tpWorldSize, 1)");
        if (!moe_has(&s->a, SIM_CHANGE_TP_REMOVED) && moe_dim(&s->tp_recv, 0) != tp)
            FAIL(TILING, "tpRecvCountsOut dim0 = %lld must equal tpWorldSize = %lld", (long long)moe_dim(&s->tp_recv, 0),
                 (long long)tp);
    }
    if ((rc = moe_check_perf_info(s->gws, &s->a, &s->perf)) || (rc = check_expert_scales(s))) return rc;
    /* CheckWinSize */
    return moe_check_win_size(s->gws, &s->a, fm2);
}

/* ================================ execution ================================================== */
typedef struct {
    MoePubHead hd;                /* first: peers are compared through it */
    MoeDispatchSrc src;
    int64_t h, k, quant, global_bs, bs;
} DispatchPub;

typedef struct {
    char err[512];
    int64_t n_rows, row_bytes, n_ep_recv;
    const void *rows;
    const float *scales;
    const int32_t *ep_recv;
} DispatchTpPub;

#define RUN_ERR(...) snprintf(err, sizeof err, __VA_ARGS__)

static int check_consistency(const DispatchPub *me, const DispatchPub *p, char *err, size_t n) {
#define CMP(f, name) \
    if (moe_differs(&me->hd, &p->hd, name, me->f, p->f, err, n)) return -1
    CMP(h, "H (x dim1)");
    CMP(k, "K (expertIds dim1)");
    if (moe_differs_world(&me->hd, &p->hd, "x", err, n)) return -1;
    CMP(quant, "quantMode");
    CMP(global_bs, "globalBs");
    CMP(hd.tp, "tpWorldSize");
    if (moe_differs_elastic(&me->hd, &p->hd, err, n)) return -1;
    if (me->global_bs == 0) CMP(bs, "BS (x dim0) with globalBs = 0");
#undef CMP
    return 0;
}

static int dispatch_run(aclOpExecutor *ex, SimStream *strm, void *workspace) {
    (void)workspace;
    DispatchState *st = (DispatchState *)ex->state;
    char err[512] = "";
    int status = SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    SimComm *epc, *tpc;
    MoeElastic el;
    const int begin = moe_run_begin(st->run, &st->a, &st->elastic, strm, &epc, &tpc, &el, err, sizeof err);
    if (begin) return begin;

    /* ---- publish inputs ---- */
    DispatchPub pub;
    memset(&pub, 0, sizeof pub);
    const int64_t bs = st->a.bs, h = st->a.h, k = st->a.k;
    int own_x = 0, own_ids = 0, own_sc = 0, own_mask = 0, own_es = 0;
    void *x = NULL, *ids = NULL, *sc = NULL, *mask = NULL, *es = NULL;
    /* CANN 9.1.0 writes expandScales from the senders' expertScales */
    const int write_xs = st->expert_scales.present && moe_has(&st->a, SIM_CHANGE_EXPERT_SCALES_OPTIONAL);
    if (!err[0]) {
        x = moe_gather(&st->x, 0, bs * h, &own_x);
        ids = moe_gather(&st->ids, 0, bs * k, &own_ids);
        if (st->scales.present) sc = moe_gather(&st->scales, 0, moe_numel(&st->scales), &own_sc);
        if (st->mask.present) mask = moe_gather(&st->mask, 0, moe_numel(&st->mask), &own_mask);
        if (write_xs) es = moe_gather(&st->expert_scales, 0, bs * k, &own_es);
        if (!x || !ids || (st->scales.present && !sc) || (st->mask.present && !mask) || (write_xs && !es))
            RUN_ERR("out of host memory");
    }
    moe_pub_head(&pub.hd, &st->a, &el, st->x.d.dtype);
    pub.src = (MoeDispatchSrc){.bs = bs, .h = h, .k = k, .x_is_bf16 = st->x.d.dtype == ACL_BF16,
                               .x = (const uint16_t *)x, .expert_ids = (const int32_t *)ids,
                               .scales = (const float *)sc, .mask = (const uint8_t *)mask,
                               .mask_ndim = st->mask.present ? moe_ndim(&st->mask) : 0,
                               .expert_scales = (const float *)es};
    pub.h = h;
    pub.k = k;
    pub.bs = bs;
    pub.quant = st->quant;
    pub.global_bs = st->a.global_bs;
    /* expert ids of the pairs that will be routed must name a MoE expert of the (new) world */
    if (!err[0]) {
        const int32_t *id = (const int32_t *)ids;
        int64_t np = moe_mask_prefix(pub.src.mask, pub.src.mask_ndim, bs);
        for (int64_t t = 0; t < bs && !err[0]; t++)
            for (int64_t j = 0; j < k; j++) {
                if (pub.src.mask_ndim == 1 && t >= np) break;
                if (pub.src.mask_ndim == 2 && !pub.src.mask[t * k + j]) continue;
                int64_t e = id[t * k + j];
                /* valid: [0, M') or, with zero/copy/const experts, the special range [M_attr, M_attr+Z) (DS §9/§10);
                 * ids in [M', M_attr) or past the special range are invalid, not "dropped" */
                int ok = (e >= 0 && e < el.M) || (pub.hd.Z > 0 && e >= st->a.M && e < st->a.M + pub.hd.Z);
                if (!ok) {
                    if (pub.hd.Z > 0)
                        RUN_ERR("expertIds[%lld][%lld] = %lld on EP rank %lld is outside [0, %lld) and the special "
                                "experts [%lld, %lld)%s; the real kernel would send the token to a non-existent rank",
                                (long long)t, (long long)j, (long long)e, (long long)st->a.rank, (long long)el.M,
                                (long long)st->a.M, (long long)(st->a.M + pub.hd.Z),
                                el.active ? " (new expert ids after the elastic scale-down)" : "");
                    else
                        RUN_ERR("expertIds[%lld][%lld] = %lld on EP rank %lld is outside [0, %lld)%s; the real kernel "
                                "would send the token to a non-existent rank",
                                (long long)t, (long long)j, (long long)e, (long long)st->a.rank, (long long)el.M,
                                el.active ? " (new expert ids after the elastic scale-down)" : "");
                    break;
                }
            }
    }
    if (err[0]) snprintf(pub.hd.err, sizeof pub.hd.err, "%.500s", err);

    void **peers = (void **)calloc((size_t)st->a.ep, sizeof(void *));
    const int64_t t0 = moe_now_us();
    int xrc = moe_exchange(st->run, epc, el.part, el.n_part, &pub, peers, strm);
    const int64_t waited = moe_now_us() - t0;
    if (xrc) {
        status = xrc;
        goto out_noerr;
    }
    /* ---- gather sources by new rank, check peers ---- */
    const MoeDispatchSrc **srcs = (const MoeDispatchSrc **)calloc((size_t)el.ep, sizeof(void *));
    for (int i = 0; i < el.n_part && !err[0]; i++) {
        const DispatchPub *p = (const DispatchPub *)peers[el.part[i]];
        if (!p) continue;
        if (moe_peer_failed(&pub.hd, &p->hd, err, sizeof err) || check_consistency(&pub, p, err, sizeof err)) break;
        if (p->hd.new_rank >= 0 && p->hd.new_rank < el.ep) srcs[p->hd.new_rank] = &p->src;
    }
    /* ---- compute own rows ---- */
    MoeDispatchCfg cfg = {.ep = el.ep, .R = el.R, .S = st->a.sh.S, .M = el.M, .L = el.L, .rpse = el.rpse,
                          .z_total = pub.hd.Z, .k = k, .h = h, .quant_mode = (int)st->quant,
                          .token_nums_type = (int)st->tn_type};
    MoeDispatchOut o;
    memset(&o, 0, sizeof o);
    const int64_t row_bytes = h * (st->quant ? 1 : 2);
    if (!err[0]) {
        moe_dispatch_receive(&cfg, srcs, el.me, &o); /* sizing pass (zero capacities) */
        const int64_t cap = moe_dim(&st->expand_x, 0);
        if (o.need_rows > cap)
            RUN_ERR("EP rank %lld receives %lld rows but expandXOut has only %lld rows (duplicate expert ids in a "
                    "token?)", (long long)st->a.rank, (long long)o.need_rows, (long long)cap);
        else if (o.need_ep_recv > moe_dim(&st->ep_recv, 0) || o.need_token_nums > moe_dim(&st->token_nums, 0))
            RUN_ERR("the scale-down world needs %lld epRecvCounts and %lld expertTokenNums entries on rank %lld but "
                    "the tensors hold %lld and %lld (the docs require localExpertNum to stay unchanged)",
                    (long long)o.need_ep_recv, (long long)o.need_token_nums, (long long)st->a.rank,
                    (long long)moe_dim(&st->ep_recv, 0), (long long)moe_dim(&st->token_nums, 0));
    }
    if (!err[0]) {
        o.cap_rows = o.need_rows;
        o.expand_x = malloc((size_t)(o.need_rows * row_bytes + 1));
        o.dyn_scales = (float *)malloc(sizeof(float) * (size_t)(o.need_rows + 1));
        o.assist = (int32_t *)malloc(sizeof(int32_t) * (size_t)(3 * o.need_rows + 1));
        o.token_nums = (int64_t *)malloc(sizeof(int64_t) * (size_t)(o.need_token_nums + 1));
        o.token_nums_cap = o.need_token_nums;
        o.ep_recv = (int32_t *)malloc(sizeof(int32_t) * (size_t)(o.need_ep_recv + 1));
        o.ep_recv_cap = o.need_ep_recv;
        if (!o.expand_x || !o.dyn_scales || !o.assist || !o.token_nums || !o.ep_recv) RUN_ERR("out of host memory");
        else if (moe_dispatch_receive(&cfg, srcs, el.me, &o) != 0) RUN_ERR("internal error: dispatch sizing mismatch");
    }
    free(srcs);
    /* peers may stop reading our inputs after everyone computed */
    /* ---- expandScales (CANN 9.1.0): the sender's expertScales[token, k] of each row from a MoE expert ---- */
    float *xs_rows = NULL;
    if (!err[0] && write_xs) {
        xs_rows = (float *)malloc(sizeof(float) * (size_t)(o.n_rows + 1));
        for (int64_t r = 0; xs_rows && r < o.n_rows; r++) {
            const int32_t *tr = o.assist + 3 * r;
            const DispatchPub *p = NULL;
            for (int i = 0; i < el.n_part && !p; i++) {
                const DispatchPub *q = (const DispatchPub *)peers[el.part[i]];
                if (q && q->hd.new_rank == tr[0]) p = q;
            }
            xs_rows[r] = p && p->src.expert_scales && tr[2] < k ? p->src.expert_scales[tr[1] * k + tr[2]] : 0.0f;
        }
    }
    xrc = moe_exchange(st->run, epc, el.part, el.n_part, NULL, peers, strm);
    if (xrc) {
        status = xrc;
        free(xs_rows);
        goto out_free;
    }

    /* ---- TP all-gather (self first, then peer) ---- */
    int64_t n_peer = 0;
    DispatchTpPub tpub, *peer = NULL;
    void *tpeers[2] = {NULL, NULL};
    const int tpart[2] = {0, 1};
    if (tpc) {
        memset(&tpub, 0, sizeof tpub);
        snprintf(tpub.err, sizeof tpub.err, "%.500s", err);
        tpub.n_rows = o.n_rows;
        tpub.row_bytes = row_bytes;
        tpub.rows = o.expand_x;
        tpub.scales = o.dyn_scales;
        tpub.ep_recv = o.ep_recv;
        tpub.n_ep_recv = o.n_ep_recv;
        xrc = moe_exchange(st->run, tpc, tpart, 2, &tpub, tpeers, strm);
        if (xrc) {
            status = xrc;
            free(xs_rows);
            goto out_free;
        }
        peer = (DispatchTpPub *)tpeers[1 - sim_comm_rank(tpc)];
        if (!err[0] && peer && peer->err[0]) RUN_ERR("TP peer failed: %.440s", peer->err);
        if (!err[0] && peer) {
            n_peer = peer->n_rows;
            if (o.n_rows + n_peer > moe_dim(&st->expand_x, 0))
                RUN_ERR("own %lld + TP peer %lld rows exceed expandXOut dim0 = %lld", (long long)o.n_rows,
                        (long long)n_peer, (long long)moe_dim(&st->expand_x, 0));
        }
    }
    /* ---- write outputs (only what the kernel writes) ---- */
    if (!err[0]) {
        const int64_t el_per_row = h;
        moe_scatter(&st->expand_x, 0, o.n_rows * el_per_row, o.expand_x);
        if (st->quant == 2) moe_scatter(&st->dyn_scales, 0, o.n_rows, o.dyn_scales);
        moe_scatter(&st->assist, 0, 3 * o.n_rows, o.assist);
        moe_scatter(&st->ep_recv, 0, o.n_ep_recv, o.ep_recv);
        if (peer) {
            moe_scatter(&st->expand_x, o.n_rows * el_per_row, n_peer * el_per_row, peer->rows);
            if (st->quant == 2) moe_scatter(&st->dyn_scales, o.n_rows, n_peer, peer->scales);
            moe_scatter(&st->ep_recv, el.ep, peer->n_ep_recv, peer->ep_recv);
            int32_t tr[2];
            tr[st->a.tp_rank] = (int32_t)o.n_rows;
            tr[1 - st->a.tp_rank] = (int32_t)n_peer;
            moe_scatter(&st->tp_recv, 0, 2, tr);
            o.token_nums[0] = o.n_rows + n_peer; /* TP needs L == 1: one entry */
            moe_scatter(&st->token_nums, 0, 1, o.token_nums);
        } else {
            moe_scatter(&st->token_nums, 0, o.n_token_nums, o.token_nums);
        }
        if (xs_rows)
            for (int64_t r = 0; r < o.n_rows; r++)
                if (o.assist[3 * r + 2] < k) moe_scatter(&st->expand_scales, r, 1, &xs_rows[r]);
        /* performanceInfo (V4, CANN >= 9.0.0): this rank waited `waited` us for the status of every peer */
        if (st->perf.present && moe_has(&st->a, SIM_CHANGE_PERFORMANCE_INFO_A3)) {
            int64_t *wait = (int64_t *)calloc((size_t)st->a.ep, sizeof(int64_t));
            for (int i = 0; wait && i < el.n_part; i++) wait[el.part[i]] = waited;
            if (wait) moe_perf_merge(&st->perf, wait, st->a.ep);
            free(wait);
        }
    }
    free(xs_rows);
    if (tpc) {
        xrc = moe_exchange(st->run, tpc, tpart, 2, NULL, tpeers, strm);
        if (xrc) {
            status = xrc;
            goto out_free;
        }
    }
    status = 0;
out_free:
    free(o.expand_x);
    free(o.dyn_scales);
    free(o.assist);
    free(o.token_nums);
    free(o.ep_recv);
out_noerr:
    free(peers);
    if (own_x) free(x);
    if (own_ids) free(ids);
    if (own_sc) free(sc);
    if (own_mask) free(mask);
    if (own_es) free(es);
    moe_elastic_free(&el);
    if (status) return status;
    if (err[0]) {
        sim_set_error("%s: %s", st->run, err);
        return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    return 0;
}

/* ================================ public API ================================================= */
/* the tensor arguments of every version, by index (NULL where a version has none) */
enum { D_X, D_IDS, D_SCALES, D_MASK, D_ES, D_ELASTIC, D_PERF, D_EXPAND_X, D_DYN, D_ASSIST, D_TN, D_EP_RECV, D_TP_RECV,
       D_XS, D_COUNT };
static const char *const D_NAMES[D_COUNT] = {
    "x", "expertIds", "scalesOptional", "xActiveMaskOptional", "expertScalesOptional", "elasticInfoOptional",
    "performanceInfoOptional", "expandXOut", "dynamicScalesOut", "assistInfoForCombineOut", "expertTokenNumsOut",
    "epRecvCountsOut", "tpRecvCountsOut", "expandScalesOut"};

/* the integer attributes, in C order */
typedef struct {
    int64_t ep, rank, M, tp, tp_rank, shard, S, R, quant, gbs, tn_type, zero, copy, cnst;
} DispatchInts;

/* The call record of version v (its parameters in C order). */
static void record_call(int v, const char *gws, const aclTensor *const *tin, const DispatchInts *n,
                        const char *groupEp, const char *groupTp, const char *commAlg, const uint64_t *workspaceSize,
                        aclOpExecutor *const *executor) {
    MoeStr r = {0};
    for (int i = D_X; i <= D_PERF; i++)
        if ((i != D_ELASTIC || v >= 3) && (i != D_PERF || v >= 4)) moe_str_tensor(&r, D_NAMES[i], tin[i]);
    moe_str_world(&r, groupEp, n->ep, n->rank, n->M, groupTp, n->tp, n->tp_rank, n->shard, n->S, n->R);
    moe_str_int(&r, "quantMode", n->quant);
    moe_str_int(&r, "globalBs", n->gbs);
    moe_str_int(&r, "expertTokenNumsType", n->tn_type);
    moe_str_string(&r, "commAlg", commAlg);
    if (v >= 3) {
        moe_str_int(&r, "zeroExpertNum", n->zero);
        moe_str_int(&r, "copyExpertNum", n->copy);
        moe_str_int(&r, "constExpertNum", n->cnst);
    }
    for (int i = D_EXPAND_X; i < D_COUNT; i++) moe_str_tensor(&r, D_NAMES[i], tin[i]);
    moe_str_ptr(&r, "workspaceSize", workspaceSize);
    moe_str_ptr(&r, "executor", executor);
    moe_str_record(&r, gws);
}

/* The GetWorkspaceSize of every version: records the call, reads the release, checks the arguments with its
 * rules and creates the executor. */
static aclnnStatus dispatch_gws(int v, const aclTensor *const *tin, const DispatchInts *n, const char *groupEp,
                                const char *groupTp, const char *commAlg, uint64_t *workspaceSize,
                                aclOpExecutor **executor) {
    static const char *const GWS[] = {"", "", "aclnnMoeDistributeDispatchV2GetWorkspaceSize",
                                      "aclnnMoeDistributeDispatchV3GetWorkspaceSize",
                                      "aclnnMoeDistributeDispatchV4GetWorkspaceSize"};
    static const char *const RUN[] = {"", "", "aclnnMoeDistributeDispatchV2", "aclnnMoeDistributeDispatchV3",
                                      "aclnnMoeDistributeDispatchV4"};
    record_call(v, GWS[v], tin, n, groupEp, groupTp, commAlg, workspaceSize, executor);
    DispatchState *st = (DispatchState *)calloc(1, sizeof *st);
    if (!st) return moe_fail(GWS[v], ACLNN_ERR_INNER_CREATE_EXECUTOR, "out of host memory");
    st->version = v;
    st->gws = GWS[v];
    st->run = RUN[v];
    moe_attrs_init(&st->a, n->ep, n->rank, n->M, n->tp, n->tp_rank, n->S, n->R, n->gbs, n->zero, n->copy, n->cnst);
    int rc = moe_gws_release(st->gws, &st->a, commAlg, v, RUN[3], &groupTp);
    if (rc) {
        free(st);
        return rc;
    }
    MoeTensor *tdst[D_COUNT] = {&st->x, &st->ids, &st->scales, &st->mask, &st->expert_scales, &st->elastic,
                                &st->perf, &st->expand_x, &st->dyn_scales, &st->assist, &st->token_nums,
                                &st->ep_recv, &st->tp_recv, &st->expand_scales};
    for (int i = 0; i < D_COUNT; i++) moe_tensor_capture_arg(tdst[i], tin[i]);
    if (groupEp) snprintf(st->a.group_ep, sizeof st->a.group_ep, "%s", groupEp);
    st->quant = n->quant;
    st->tn_type = n->tn_type;

    rc = validate(st, groupEp, groupTp, (const void *const *)tin, D_NAMES, D_COUNT, workspaceSize, executor);
    if (!rc) {
        moe_attrs_shape(&st->a, moe_ndim(&st->x) >= 1 ? moe_dim(&st->x, 0) : 0,
                        moe_ndim(&st->x) >= 2 ? moe_dim(&st->x, 1) : 0,
                        moe_ndim(&st->ids) >= 2 ? moe_dim(&st->ids, 1) : 0, st->elastic.present);
        rc = validate_tiling(st, n->shard, commAlg);
    }
    if (!rc) rc = moe_check_comm_sizes(st->gws, &st->a, groupEp, groupTp);
    /* workspace of the A3 tiling: 16 MiB + 512 * aivNum^2 (TIL SetWorkSpace), unused by the simulator */
    const uint64_t ws = 16ull * 1024 * 1024 + 512ull * MOE_AIV_NUM * MOE_AIV_NUM;
    return moe_gws_finish(rc, st->gws, st->run, ws, &st->a, groupEp, groupTp, dispatch_run, st, workspaceSize,
                          executor);
}

/* V2, V3 and V4 in DispatchV4's parameter order (V3: no performanceInfo; V2: no elasticInfo, no special experts) */
static aclnnStatus dispatch_v(
    int v, const aclTensor *x, const aclTensor *expertIds, const aclTensor *scalesOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *expertScalesOptional, const aclTensor *elasticInfoOptional,
    const aclTensor *performanceInfoOptional, const char *groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t quantMode, int64_t globalBs,
    int64_t expertTokenNumsType, const char *commAlg, int64_t zeroExpertNum, int64_t copyExpertNum,
    int64_t constExpertNum, aclTensor *expandXOut, aclTensor *dynamicScalesOut, aclTensor *assistInfoForCombineOut,
    aclTensor *expertTokenNumsOut, aclTensor *epRecvCountsOut, aclTensor *tpRecvCountsOut, aclTensor *expandScalesOut,
    uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclTensor *tin[D_COUNT] = {x, expertIds, scalesOptional, xActiveMaskOptional, expertScalesOptional,
                                     elasticInfoOptional, performanceInfoOptional, expandXOut, dynamicScalesOut,
                                     assistInfoForCombineOut, expertTokenNumsOut, epRecvCountsOut, tpRecvCountsOut,
                                     expandScalesOut};
    const DispatchInts n = {epWorldSize, epRankId, moeExpertNum, tpWorldSize, tpRankId, expertShardType,
                            sharedExpertNum, sharedExpertRankNum, quantMode, globalBs, expertTokenNumsType,
                            zeroExpertNum, copyExpertNum, constExpertNum};
    return dispatch_gws(v, tin, &n, groupEp, groupTp, commAlg, workspaceSize, executor);
}

#ifndef SIM_V2_ONLY
SIM_API aclnnStatus aclnnMoeDistributeDispatchV3GetWorkspaceSize(
    const aclTensor *x, const aclTensor *expertIds, const aclTensor *scalesOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *expertScalesOptional,
    const aclTensor *elasticInfoOptional, const char *groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t quantMode, int64_t globalBs,
    int64_t expertTokenNumsType, const char *commAlg, int64_t zeroExpertNum, int64_t copyExpertNum,
    int64_t constExpertNum, aclTensor *expandXOut, aclTensor *dynamicScalesOut, aclTensor *assistInfoForCombineOut,
    aclTensor *expertTokenNumsOut, aclTensor *epRecvCountsOut, aclTensor *tpRecvCountsOut,
    aclTensor *expandScalesOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    return dispatch_v(3, x, expertIds, scalesOptional, xActiveMaskOptional, expertScalesOptional, elasticInfoOptional,
                      NULL, groupEp, epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId,
                      expertShardType, sharedExpertNum, sharedExpertRankNum, quantMode, globalBs, expertTokenNumsType,
                      commAlg, zeroExpertNum, copyExpertNum, constExpertNum, expandXOut, dynamicScalesOut,
                      assistInfoForCombineOut, expertTokenNumsOut, epRecvCountsOut, tpRecvCountsOut, expandScalesOut,
                      workspaceSize, executor);
}

SIM_API aclnnStatus aclnnMoeDistributeDispatchV3(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                 aclrtStream stream) {
    return sim_executor_launch("aclnnMoeDistributeDispatchV3", executor, workspace, workspaceSize, stream);
}

SIM_API aclnnStatus aclnnMoeDistributeDispatchV4GetWorkspaceSize(
    const aclTensor *x, const aclTensor *expertIds, const aclTensor *scalesOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *expertScalesOptional,
    const aclTensor *elasticInfoOptional, const aclTensor *performanceInfoOptional, const char *groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum,
    int64_t quantMode, int64_t globalBs, int64_t expertTokenNumsType, const char *commAlg, int64_t zeroExpertNum,
    int64_t copyExpertNum, int64_t constExpertNum, aclTensor *expandXOut, aclTensor *dynamicScalesOut,
    aclTensor *assistInfoForCombineOut, aclTensor *expertTokenNumsOut, aclTensor *epRecvCountsOut,
    aclTensor *tpRecvCountsOut, aclTensor *expandScalesOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    return dispatch_v(4, x, expertIds, scalesOptional, xActiveMaskOptional, expertScalesOptional, elasticInfoOptional,
                      performanceInfoOptional, groupEp, epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize,
                      tpRankId, expertShardType, sharedExpertNum, sharedExpertRankNum, quantMode, globalBs,
                      expertTokenNumsType, commAlg, zeroExpertNum, copyExpertNum, constExpertNum, expandXOut,
                      dynamicScalesOut, assistInfoForCombineOut, expertTokenNumsOut, epRecvCountsOut, tpRecvCountsOut,
                      expandScalesOut, workspaceSize, executor);
}

SIM_API aclnnStatus aclnnMoeDistributeDispatchV4(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                 aclrtStream stream) {
    return sim_executor_launch("aclnnMoeDistributeDispatchV4", executor, workspace, workspaceSize, stream);
}
#endif

SIM_API aclnnStatus aclnnMoeDistributeDispatchV2GetWorkspaceSize(
    const aclTensor *x, const aclTensor *expertIds, const aclTensor *scalesOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *expertScalesOptional, const char *groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum,
    int64_t quantMode, int64_t globalBs, int64_t expertTokenNumsType, const char *commAlg, aclTensor *expandXOut,
    aclTensor *dynamicScalesOut, aclTensor *assistInfoForCombineOut, aclTensor *expertTokenNumsOut,
    aclTensor *epRecvCountsOut, aclTensor *tpRecvCountsOut, aclTensor *expandScalesOut, uint64_t *workspaceSize,
    aclOpExecutor **executor) {
    return dispatch_v(2, x, expertIds, scalesOptional, xActiveMaskOptional, expertScalesOptional, NULL, NULL, groupEp,
                      epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId, expertShardType,
                      sharedExpertNum, sharedExpertRankNum, quantMode, globalBs, expertTokenNumsType, commAlg, 0, 0, 0,
                      expandXOut, dynamicScalesOut, assistInfoForCombineOut, expertTokenNumsOut, epRecvCountsOut,
                      tpRecvCountsOut, expandScalesOut, workspaceSize, executor);
}

SIM_API aclnnStatus aclnnMoeDistributeDispatchV2(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                 aclrtStream stream) {
    return sim_executor_launch("aclnnMoeDistributeDispatchV2", executor, workspace, workspaceSize, stream);
}
