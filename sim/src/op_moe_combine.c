/*
 * Simulated aclnnMoeDistributeCombineV3 and aclnnMoeDistributeCombineAddRmsNormV2 (Atlas A3), and the other
 * versions of the same operators: CombineV4 (performanceInfoOptional), CombineV2 and CombineAddRmsNorm (V1) (no
 * elastic / special experts), with the rules and kernel of the emulated CANN release (sim_release.h).
 * Spec: ../shared/spec/combine-addrmsnorm-barrier.md (CS §n). Both operators share the argument
 * capture, validation (CS §8.1, §1.6) and the TP reduce-scatter / EP return / per-token fp32
 * accumulation; AddRmsNorm adds the residual + RMSNorm tail (CS §4) instead of the final rounding.
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

#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm.h"
#include "aclnnop/aclnn_moe_distribute_combine_add_rms_norm_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v2.h"
#include "aclnnop/aclnn_moe_distribute_combine_v3.h"
#include "aclnnop/aclnn_moe_distribute_combine_v4.h"
#include "op_moe_common.h"

enum {
    T_EXPAND_X, T_IDS, T_ASSIST, T_EP_SEND, T_SCALES, T_RESIDUAL, T_GAMMA, T_TP_SEND, T_MASK, T_ACT_SCALE,
    T_W_SCALE, T_GROUP_LIST, T_EXPAND_SCALES, T_SHARED_X, T_ELASTIC, T_ORI_X, T_A1, T_A2, T_V, T_PERF, T_Y_OUT,
    T_RSTD_OUT, T_X_OUT, T_COUNT
};
static const char *const T_NAMES[T_COUNT] = {
    "expandX", "expertIds", "assistInfoForCombine", "epSendCounts", "expertScales", "residualX", "gamma",
    "tpSendCountsOptional", "xActiveMaskOptional", "activationScaleOptional", "weightScaleOptional",
    "groupListOptional", "expandScalesOptional", "sharedExpertXOptional", "elasticInfoOptional", "oriXOptional",
    "constExpertAlpha1Optional", "constExpertAlpha2Optional", "constExpertVOptional", "performanceInfoOptional",
    "yOut", "rstdOut", "xOut"};

typedef struct {
    int arn;                       /* 1: CombineAddRmsNorm (V2 or V1), 0: Combine (V2, V3 or V4) */
    int version;                   /* the API version */
    const char *gws, *run;
    MoeTensor t[T_COUNT];
    MoeAttrs a;
    int64_t shard, out_dtype, cqm, glt;
    float eps;
} CombineState;

#define NULLPTR SIM_ACLNN_ERR_PARAM_NULLPTR
#define INVALID SIM_ACLNN_ERR_PARAM_INVALID
#define TILING SIM_ACLNN_ERR_INNER_TILING_ERROR
#define FAIL(st, ...) return moe_fail(s->gws, st, __VA_ARGS__)
#define T(i) (&s->t[i])
#define P(i) (s->t[i].present)

/* ================================ validation ================================================= */
static int validate_api(const CombineState *s, const char *groupEp, const char *groupTp, const void *const *raw,
                        const uint64_t *workspaceSize, const void *executor) {
    /* op_api (CV3.cpp / ARN2.cpp CheckNotNull, CheckParams) */
    const int req[] = {T_EXPAND_X, T_IDS, T_ASSIST, T_EP_SEND, T_SCALES, T_X_OUT};
    for (int i = 0; i < 6; i++)
        if (!P(req[i])) FAIL(NULLPTR, "%s is NULL (required tensor)", T_NAMES[req[i]]);
    if (!groupEp || !groupEp[0]) FAIL(NULLPTR, "groupEp is %s; it must name the EP communicator", groupEp ? "\"\"" : "NULL");
    int rc = moe_check_api_args(s->gws, groupEp, groupTp, INVALID, workspaceSize, executor, raw, T_NAMES, T_COUNT);
    if (rc) return rc;
    /* generated inner layer: required tensors of the op definition, dtypes outside it */
    if (s->arn) {
        const int req2[] = {T_RESIDUAL, T_GAMMA, T_Y_OUT, T_RSTD_OUT};
        for (int i = 0; i < 4; i++)
            if (!P(req2[i])) FAIL(NULLPTR, "%s is NULL (required by the operator)", T_NAMES[req2[i]]);
    }
    {
        static const int32_t X3[] = {ACL_BF16, ACL_FLOAT16, ACL_INT32}, XO[] = {ACL_BF16, ACL_FLOAT16};
        static const int32_t BF[] = {ACL_BF16}, I32[] = {ACL_INT32}, F32[] = {ACL_FLOAT}, I64[] = {ACL_INT64},
                             BOOL_[] = {ACL_BOOL};
        struct {
            int i;
            const int32_t *l;
            int n;
            const char *allowed;
        } cv3[] = {{T_EXPAND_X, X3, 3, "BF16, FLOAT16, INT32"}, {T_IDS, I32, 1, "INT32"}, {T_ASSIST, I32, 1, "INT32"},
                   {T_EP_SEND, I32, 1, "INT32"}, {T_SCALES, F32, 1, "FLOAT"}, {T_TP_SEND, I32, 1, "INT32"},
                   {T_MASK, BOOL_, 1, "BOOL"}, {T_ACT_SCALE, F32, 1, "FLOAT"}, {T_W_SCALE, F32, 1, "FLOAT"},
                   {T_GROUP_LIST, I64, 1, "INT64"}, {T_EXPAND_SCALES, F32, 1, "FLOAT"},
                   {T_SHARED_X, X3, 3, "BF16, FLOAT16, INT32"}, {T_ELASTIC, I32, 1, "INT32"},
                   {T_ORI_X, X3, 3, "BF16, FLOAT16, INT32"}, {T_A1, X3, 3, "BF16, FLOAT16, INT32"},
                   {T_A2, X3, 3, "BF16, FLOAT16, INT32"}, {T_V, X3, 3, "BF16, FLOAT16, INT32"},
                   {T_PERF, I64, 1, "INT64"}, {T_X_OUT, XO, 2, "BF16, FLOAT16"}},
          arn[] = {{T_EXPAND_X, BF, 1, "BF16"}, {T_IDS, I32, 1, "INT32"}, {T_ASSIST, I32, 1, "INT32"},
                   {T_EP_SEND, I32, 1, "INT32"}, {T_SCALES, F32, 1, "FLOAT"}, {T_RESIDUAL, BF, 1, "BF16"},
                   {T_GAMMA, BF, 1, "BF16"}, {T_TP_SEND, I32, 1, "INT32"}, {T_MASK, BOOL_, 1, "BOOL"},
                   {T_ACT_SCALE, F32, 1, "FLOAT"}, {T_W_SCALE, F32, 1, "FLOAT"}, {T_GROUP_LIST, I64, 1, "INT64"},
                   {T_EXPAND_SCALES, F32, 1, "FLOAT"}, {T_SHARED_X, BF, 1, "BF16"}, {T_ELASTIC, I32, 1, "INT32"},
                   {T_ORI_X, BF, 1, "BF16"}, {T_A1, BF, 1, "BF16"}, {T_A2, BF, 1, "BF16"}, {T_V, BF, 1, "BF16"},
                   {T_Y_OUT, BF, 1, "BF16"}, {T_RSTD_OUT, F32, 1, "FLOAT"}, {T_X_OUT, BF, 1, "BF16"}};
        int n = s->arn ? (int)(sizeof arn / sizeof arn[0]) : (int)(sizeof cv3 / sizeof cv3[0]);
        for (int j = 0; j < n; j++) {
            int i = s->arn ? arn[j].i : cv3[j].i;
            const int32_t *l = s->arn ? arn[j].l : cv3[j].l;
            int ln = s->arn ? arn[j].n : cv3[j].n;
            if (P(i) && !moe_in_list(T(i)->d.dtype, l, ln))
                FAIL(INVALID, "%s has dtype %s (%d); the operator supports %s", T_NAMES[i],
                     moe_dtype_name(T(i)->d.dtype), (int)T(i)->d.dtype, s->arn ? arn[j].allowed : cv3[j].allowed);
        }
    }
    return 0;
}

static int check_special_counts(const CombineState *s) {
    const char *nm[3] = {"zeroExpertNum", "copyExpertNum", "constExpertNum"};
    int64_t v[3] = {s->a.zero, s->a.copy, s->a.cnst};
    for (int i = 0; i < 3; i++)
        if (v[i] < 0) {
            /* CANN >= 9.0.0 routes AddRmsNorm through the combine tiling, which rejects every negative count */
            if (s->arn && v[i] != -1 && !moe_has(&s->a, SIM_CHANGE_COMBINE_CHECKS_SKIPPED))
                FAIL(TILING, "%s = %lld is negative; the documented range is [0, 2147483647) (the real "
                             "AddRmsNormV2 tiling only rejects -1 and lets other negative values wrap around; the "
                             "simulator enforces the documented rule)", nm[i], (long long)v[i]);
            FAIL(TILING, "%s = %lld is negative; the range is [0, 2147483647)", nm[i], (long long)v[i]);
        }
    return 0;
}

/* CANN 9.1.0 (expert_scales_optional): an expertScales tensor with a dim 0 means "no expert scales" */
static int scales_absent(const CombineState *s) {
    if (!moe_has(&s->a, SIM_CHANGE_EXPERT_SCALES_OPTIONAL) || !P(T_SCALES)) return 0;
    for (int i = 0; i < moe_ndim(T(T_SCALES)); i++)
        if (moe_dim(T(T_SCALES), i) == 0) return 1;
    return 0;
}

/* the inputs whose format check CANN >= 9.0.0's combine tiling skips (CheckTensorFormat returns GRAPH_FAILED) */
static int format_skipped(int i) {
    return i == T_EXPAND_X || i == T_IDS || i == T_ASSIST || i == T_EP_SEND || i == T_SCALES || i == T_ORI_X ||
           i == T_A1 || i == T_A2 || i == T_V;
}

/* CheckCommAlgAttrs with commAlg "hierarchy": no elastic, special experts, 2-D mask or performanceInfo; and the
 * layered kernel needs expandScalesOptional (1-D) */
static int check_hierarchy(const CombineState *s) {
    if (!s->a.hier) return 0;
    if (P(T_ELASTIC)) FAIL(TILING, "commAlg = \"hierarchy\" cannot be combined with elasticInfoOptional");
    if (s->a.zero + s->a.copy + s->a.cnst > 0)
        FAIL(TILING, "commAlg = \"hierarchy\" cannot be combined with zero/copy/const experts");
    if (P(T_MASK) && moe_ndim(T(T_MASK)) == 2)
        FAIL(TILING, "commAlg = \"hierarchy\" cannot be combined with a 2-D xActiveMaskOptional");
    if (P(T_PERF)) FAIL(TILING, "commAlg = \"hierarchy\" cannot be combined with performanceInfoOptional");
    if (!P(T_EXPAND_SCALES) || moe_ndim(T(T_EXPAND_SCALES)) != 1)
        FAIL(TILING, "expandScalesOptional must be a 1-D tensor with commAlg = \"hierarchy\"");
    return 0;
}

static int validate_tiling(const CombineState *s, const char *groupEp, const char *groupTp) {
    char b1[96];
    int rc;
    const int64_t ep = s->a.ep, tp = s->a.tp, M = s->a.M, R = s->a.R;
    if (strnlen(groupEp, MOE_GROUP_NAME_MAX) == 0 || strnlen(groupEp, MOE_GROUP_NAME_MAX) >= MOE_GROUP_NAME_MAX)
        FAIL(TILING, "groupEp length must be in [1, 127]");
    if (s->arn) {
        if ((rc = check_special_counts(s)) || (rc = moe_check_expert_sum(s->gws, &s->a))) return rc;
    } else {
        if ((rc = moe_check_expert_sum(s->gws, &s->a)) || (rc = check_special_counts(s))) return rc;
    }
    if ((rc = moe_check_world(s->gws, &s->a, groupTp, 1))) return rc;
    /* the real tiling checks this right after groupTp in its TP = 2 branch */
    if (tp > 1 && s->cqm != 0)
        FAIL(TILING, "commQuantMode = %lld; only 0 is supported with tpWorldSize = 2", (long long)s->cqm);
    if ((rc = moe_check_experts(s->gws, &s->a, s->shard, "[1, 1024]"))) return rc;
    if (s->cqm != 0 && s->cqm != 2)
        FAIL(TILING, "commQuantMode = %lld; only 0 (none) or 2 (int8 communication) is supported", (long long)s->cqm);

    /* CheckTensorDim */
    const int want_nd[][2] = {{T_EXPAND_X, 2}, {T_IDS, 2}, {T_ASSIST, 1}, {T_EP_SEND, 1}, {T_SCALES, 2}};
    for (int i = 0; i < (scales_absent(s) ? 4 : 5); i++)
        if (moe_ndim(T(want_nd[i][0])) != want_nd[i][1])
            FAIL(TILING, "%s must be %d-D, got %d-D", T_NAMES[want_nd[i][0]], want_nd[i][1], moe_ndim(T(want_nd[i][0])));
    if (s->arn) {
        if (moe_ndim(T(T_RESIDUAL)) != 3) FAIL(TILING, "residualX must be 3-D (Bs, 1, H), got %d-D", moe_ndim(T(T_RESIDUAL)));
        if (moe_ndim(T(T_GAMMA)) != 1) FAIL(TILING, "gamma must be 1-D (H,), got %d-D", moe_ndim(T(T_GAMMA)));
    }
    /* const_expert_alpha_1/2: (Q,) scalars until CANN 8.5.0 alpha, (Q, H) projections from 8.5.0-beta.1 */
    const int alpha_nd = moe_has(&s->a, SIM_CHANGE_CONST_ALPHA_2D) ? 2 : 1;
    const int opt_nd[][2] = {{T_ORI_X, 2}, {T_A1, alpha_nd}, {T_A2, alpha_nd}, {T_V, 2}};
    for (int i = 0; i < 4; i++)
        if (P(opt_nd[i][0]) && moe_ndim(T(opt_nd[i][0])) != opt_nd[i][1])
            FAIL(TILING, "%s must be %d-D, got %d-D", T_NAMES[opt_nd[i][0]], opt_nd[i][1], moe_ndim(T(opt_nd[i][0])));
    const int tp_send_read = !moe_has(&s->a, SIM_CHANGE_TP_REMOVED); /* CANN 9.1.0 never reads it */
    if (tp_send_read && !P(T_TP_SEND))
        FAIL(TILING, "tpSendCountsOptional is NULL; the A3 tiling requires it (1-D, tpWorldSize entries; pass a (1,) "
                     "INT32 tensor with tpWorldSize = 1 when there is no TP)");
    if (tp_send_read && moe_ndim(T(T_TP_SEND)) != 1)
        FAIL(TILING, "tpSendCountsOptional must be 1-D, got %d-D", moe_ndim(T(T_TP_SEND)));
    if (P(T_MASK) && moe_ndim(T(T_MASK)) != 1 && moe_ndim(T(T_MASK)) != 2)
        FAIL(TILING, "xActiveMaskOptional must be 1-D (Bs,) or 2-D (Bs, K), got %d-D", moe_ndim(T(T_MASK)));
    if (P(T_ELASTIC) && moe_ndim(T(T_ELASTIC)) != 1)
        FAIL(TILING, "elasticInfoOptional must be 1-D, got %d-D", moe_ndim(T(T_ELASTIC)));
    if (P(T_ACT_SCALE)) FAIL(TILING, "activationScaleOptional must be NULL (reserved)");
    if (P(T_W_SCALE)) FAIL(TILING, "weightScaleOptional must be NULL (reserved)");
    if (P(T_GROUP_LIST)) FAIL(TILING, "groupListOptional must be NULL (reserved)");
    if (P(T_SHARED_X)) {
        if (R != 0)
            FAIL(TILING, "sharedExpertXOptional must be NULL when sharedExpertRankNum = %lld is non-zero", (long long)R);
        if (moe_ndim(T(T_SHARED_X)) != 2 && moe_ndim(T(T_SHARED_X)) != 3)
            FAIL(TILING, "sharedExpertXOptional must be 2-D or 3-D, got %d-D", moe_ndim(T(T_SHARED_X)));
    }
    if (s->arn) {
        const int o3[] = {T_Y_OUT, T_RSTD_OUT, T_X_OUT};
        for (int i = 0; i < 3; i++)
            if (moe_ndim(T(o3[i])) != 3) FAIL(TILING, "%s must be 3-D, got %d-D", T_NAMES[o3[i]], moe_ndim(T(o3[i])));
    } else if (moe_ndim(T(T_X_OUT)) != 2) {
        FAIL(TILING, "xOut must be 2-D (Bs, H), got %d-D", moe_ndim(T(T_X_OUT)));
    }

    /* CheckTensorDataType */
    const int32_t xdt = T(T_EXPAND_X)->d.dtype;
    if (s->arn ? xdt != ACL_BF16 : (xdt != ACL_BF16 && xdt != ACL_FLOAT16))
        FAIL(TILING, "expandX dtype %s is not supported; use %s", moe_dtype_name(xdt), s->arn ? "BF16" : "BF16 or FLOAT16");
    {
        const int same[] = {T_ORI_X, T_A1, T_A2, T_V};
        for (int i = 0; i < 4; i++)
            if (P(same[i]) && T(same[i])->d.dtype != xdt)
                FAIL(TILING, "%s dtype %s must equal expandX dtype %s", T_NAMES[same[i]],
                     moe_dtype_name(T(same[i])->d.dtype), moe_dtype_name(xdt));
        const int i32[] = {T_IDS, T_ASSIST, T_EP_SEND};
        for (int i = 0; i < 3; i++)
            if (T(i32[i])->d.dtype != ACL_INT32)
                FAIL(TILING, "%s dtype must be INT32, got %s", T_NAMES[i32[i]], moe_dtype_name(T(i32[i])->d.dtype));
        if (s->arn) {
            if (T(T_RESIDUAL)->d.dtype != ACL_BF16)
                FAIL(TILING, "residualX dtype must be BF16, got %s", moe_dtype_name(T(T_RESIDUAL)->d.dtype));
            if (T(T_GAMMA)->d.dtype != ACL_BF16)
                FAIL(TILING, "gamma dtype must be BF16, got %s", moe_dtype_name(T(T_GAMMA)->d.dtype));
        }
        if (tp_send_read && T(T_TP_SEND)->d.dtype != ACL_INT32)
            FAIL(TILING, "tpSendCountsOptional dtype must be INT32, got %s", moe_dtype_name(T(T_TP_SEND)->d.dtype));
        if (P(T_MASK) && T(T_MASK)->d.dtype != ACL_BOOL)
            FAIL(TILING, "xActiveMaskOptional dtype must be BOOL, got %s", moe_dtype_name(T(T_MASK)->d.dtype));
        if (P(T_ELASTIC) && T(T_ELASTIC)->d.dtype != ACL_INT32)
            FAIL(TILING, "elasticInfoOptional dtype must be INT32, got %s", moe_dtype_name(T(T_ELASTIC)->d.dtype));
        if (P(T_SHARED_X) && T(T_SHARED_X)->d.dtype != xdt)
            FAIL(TILING, "sharedExpertXOptional dtype %s must equal expandX dtype %s",
                 moe_dtype_name(T(T_SHARED_X)->d.dtype), moe_dtype_name(xdt));
        if (!scales_absent(s) && T(T_SCALES)->d.dtype != ACL_FLOAT)
            FAIL(TILING, "expertScales dtype must be FLOAT, got %s", moe_dtype_name(T(T_SCALES)->d.dtype));
        if (s->arn) {
            if (T(T_Y_OUT)->d.dtype != xdt) FAIL(TILING, "yOut dtype must equal expandX dtype (BF16)");
            if (T(T_RSTD_OUT)->d.dtype != ACL_FLOAT)
                FAIL(TILING, "rstdOut dtype must be FLOAT, got %s", moe_dtype_name(T(T_RSTD_OUT)->d.dtype));
        }
        if (T(T_X_OUT)->d.dtype != xdt)
            FAIL(TILING, "xOut dtype %s must equal expandX dtype %s", moe_dtype_name(T(T_X_OUT)->d.dtype),
                 moe_dtype_name(xdt));
    }
    /* CheckTensorFormat (CANN >= 9.0.0 skips it for the main and special-expert inputs) */
    for (int i = 0; i < T_COUNT; i++)
        if (P(i) && moe_is_nz(T(i)) && (tp_send_read || i != T_TP_SEND))
            FAIL(TILING, "%s has format FRACTAL_NZ (%d); only ND is supported%s", T_NAMES[i], (int)T(i)->d.format,
                 format_skipped(i) ? moe_skipped_note(&s->a) : "");

    /* CheckAttrs */
    const MoeShape *sh = &s->a.sh;
    if ((rc = moe_check_shared(s->gws, &s->a)) || (rc = check_hierarchy(s)) ||
        (rc = moe_check_layout(s->gws, &s->a, P(T_ELASTIC))) ||
        (rc = moe_check_bs(s->gws, &s->a, "expertIds dim0 (Bs)", "Bs", P(T_MASK))))
        return rc;
    const int64_t bs = s->a.bs, k = s->a.k;
    const char *skip = moe_skipped_note(&s->a); /* CANN >= 9.0.0: documented rules its combine tiling skips */
    if (s->a.copy > 0 && !P(T_ORI_X))
        FAIL(TILING, "oriXOptional is required when copyExpertNum = %lld > 0%s", (long long)s->a.copy, skip);
    if (s->a.cnst > 0 && (!P(T_ORI_X) || !P(T_A1) || !P(T_A2) || !P(T_V)))
        FAIL(TILING, "constExpertNum = %lld > 0 requires oriXOptional, constExpertAlpha1Optional, "
                     "constExpertAlpha2Optional and constExpertVOptional (missing: %s)%s", (long long)s->a.cnst,
             !P(T_ORI_X) ? "oriXOptional" : !P(T_A1) ? "constExpertAlpha1Optional"
                                         : !P(T_A2) ? "constExpertAlpha2Optional" : "constExpertVOptional", skip);

    /* CheckTensorShape */
    const int64_t mz = M + s->a.zero + s->a.copy + s->a.cnst;
    if (k <= 0 || k > 16 || k > mz)
        FAIL(TILING, "expertIds dim1 (K) = %lld is outside (0, min(16, moeExpertNum + zero + copy + const = %lld)]%s",
             (long long)k, (long long)mz, skip);
    if (P(T_ELASTIC) && moe_dim(T(T_ELASTIC), 0) != 4 + 2 * ep)
        FAIL(TILING, "elasticInfoOptional dim0 = %lld must be 4 + 2 * epWorldSize = %lld%s",
             (long long)moe_dim(T(T_ELASTIC), 0), (long long)(4 + 2 * ep),
             s->arn || moe_has(&s->a, SIM_CHANGE_COMBINE_ELASTIC_LENGTH)
                 ? ""
                 : " (the real CombineV3 tiling of this release skips this rule: its shape check returns GRAPH_FAILED "
                   "from a bool function, which reads as success and skips the remaining shape checks; the "
                   "simulator enforces the documented rule)");
    if ((rc = moe_check_perf_info(s->gws, &s->a, T(T_PERF)))) return rc;
    const int64_t A = sh->A, tpm = tp > 1 ? tp : 1;
    const int64_t h = moe_dim(T(T_EXPAND_X), 1);
    if (moe_dim(T(T_EXPAND_X), 0) < A * tpm)
        FAIL(TILING, "expandX dim0 = %lld must be >= max(tpWorldSize, 1) * A = %lld (A = %lld)%s%s",
             (long long)moe_dim(T(T_EXPAND_X), 0), (long long)(A * tpm), (long long)A,
             tp == 0 && !skip[0] ? " (documented shape; the real tiling compares with tpWorldSize * A = 0)" : "", skip);
    if (s->a.hier && (h < 1 || h > 7168 || h % 32 != 0))
        FAIL(TILING, "expandX dim1 (H) = %lld must be a multiple of 32 in [32, 7168] with commAlg = \"hierarchy\"%s",
             (long long)h, skip);
    if (!s->a.hier && (h < 1024 || h > 8192))
        FAIL(TILING, "expandX dim1 (H) = %lld is outside [1024, 8192]%s", (long long)h, skip);
    if (moe_dim(T(T_ASSIST), 0) < A * 128)
        FAIL(TILING, "assistInfoForCombine dim0 = %lld must be >= A * 128 = %lld%s", (long long)moe_dim(T(T_ASSIST), 0),
             (long long)(A * 128), skip);
    {
        int64_t n = P(T_ELASTIC) ? (ep > ep * sh->L ? ep : ep * sh->L) : (sh->is_shared ? ep : ep * sh->L);
        if (s->a.hier) n = ep * sh->L + sh->global_bs * 2 * k * ep / 8;
        if (moe_dim(T(T_EP_SEND), 0) < n * tpm)
            FAIL(TILING, "epSendCounts dim0 = %lld must be >= %lld (%s)%s%s", (long long)moe_dim(T(T_EP_SEND), 0),
                 (long long)(n * tpm),
                 s->a.hier ? "epWorldSize * localExpertNum + globalBs * 2 * K * epWorldSize / 8 with commAlg = "
                             "\"hierarchy\""
                           : "epWorldSize * localExpertNum * max(tpWorldSize, 1)",
                 tp == 0 && !skip[0] ? " (documented shape; the real tiling multiplies by tpWorldSize = 0)" : "", skip);
    }
    if (tp_send_read && moe_dim(T(T_TP_SEND), 0) != tp)
        FAIL(TILING, "tpSendCountsOptional dim0 = %lld must equal tpWorldSize = %lld%s",
             (long long)moe_dim(T(T_TP_SEND), 0), (long long)tp, skip);
    if (!scales_absent(s) && (moe_dim(T(T_SCALES), 0) != bs || moe_dim(T(T_SCALES), 1) != k))
        FAIL(TILING, "expertScales shape %s must equal expertIds shape (Bs, K) = (%lld, %lld)%s%s",
             moe_shape_str(T(T_SCALES), b1, sizeof b1), (long long)bs, (long long)k,
             moe_has(&s->a, SIM_CHANGE_EXPERT_SCALES_OPTIONAL) ? " or have a dim 0 (no expert scales)" : "", skip);
    if (P(T_MASK)) {
        if (moe_dim(T(T_MASK), 0) != bs)
            FAIL(TILING, "xActiveMaskOptional dim0 = %lld differs from expertIds dim0 (Bs) = %lld",
                 (long long)moe_dim(T(T_MASK), 0), (long long)bs);
        if (moe_ndim(T(T_MASK)) == 2 && moe_dim(T(T_MASK), 1) != k)
            FAIL(TILING, "xActiveMaskOptional dim1 = %lld differs from expertIds dim1 (K) = %lld",
                 (long long)moe_dim(T(T_MASK), 1), (long long)k);
    }
    if (s->arn) {
        const MoeTensor *r = T(T_RESIDUAL);
        if (moe_dim(r, 0) != bs || moe_dim(r, 1) != 1 || moe_dim(r, 2) != h)
            FAIL(TILING, "residualX shape %s must be (Bs, 1, H) = (%lld, 1, %lld)", moe_shape_str(r, b1, sizeof b1),
                 (long long)bs, (long long)h);
        if (moe_dim(T(T_GAMMA), 0) != h)
            FAIL(TILING, "gamma dim0 = %lld must equal H = %lld", (long long)moe_dim(T(T_GAMMA), 0), (long long)h);
    }
    if (P(T_SHARED_X)) {
        const MoeTensor *x = T(T_SHARED_X);
        int ok = moe_ndim(x) == 2 ? (moe_dim(x, 0) == bs && moe_dim(x, 1) == h)
                                  : (moe_dim(x, 0) * moe_dim(x, 1) == bs && moe_dim(x, 2) == h);
        if (!ok)
            FAIL(TILING, "sharedExpertXOptional shape %s must be (Bs, H) = (%lld, %lld) or 3-D with dim0*dim1 = Bs and "
                         "dim2 = H%s", moe_shape_str(x, b1, sizeof b1), (long long)bs, (long long)h, skip);
    }
    if (s->arn) {
        const int o3[] = {T_Y_OUT, T_RSTD_OUT, T_X_OUT};
        for (int i = 0; i < 3; i++) {
            const MoeTensor *o = T(o3[i]);
            int64_t last = o3[i] == T_RSTD_OUT ? 1 : h;
            if (moe_dim(o, 0) != bs || moe_dim(o, 1) != 1 || moe_dim(o, 2) != last)
                FAIL(TILING, "%s shape %s must be (Bs, 1, %s) = (%lld, 1, %lld)", T_NAMES[o3[i]],
                     moe_shape_str(o, b1, sizeof b1), o3[i] == T_RSTD_OUT ? "1" : "H", (long long)bs, (long long)last);
        }
    } else if (moe_dim(T(T_X_OUT), 0) != bs || moe_dim(T(T_X_OUT), 1) != h) {
        FAIL(TILING, "xOut shape %s must be (Bs, H) = (%lld, %lld)", moe_shape_str(T(T_X_OUT), b1, sizeof b1),
             (long long)bs, (long long)h);
    }
    if (P(T_ORI_X) && (moe_dim(T(T_ORI_X), 0) != bs || moe_dim(T(T_ORI_X), 1) != h))
        FAIL(TILING, "oriXOptional shape %s must be (Bs, H) = (%lld, %lld)%s",
             moe_shape_str(T(T_ORI_X), b1, sizeof b1), (long long)bs, (long long)h, skip);
    for (int i = T_A1; i <= T_A2; i++) {
        if (!P(i)) continue;
        if (alpha_nd == 1 && moe_dim(T(i), 0) != s->a.cnst)
            FAIL(TILING, "%s dim0 = %lld must equal constExpertNum = %lld%s", T_NAMES[i], (long long)moe_dim(T(i), 0),
                 (long long)s->a.cnst, skip);
        if (alpha_nd == 2 && (moe_dim(T(i), 0) != s->a.cnst || moe_dim(T(i), 1) != h))
            FAIL(TILING, "%s shape %s must be (constExpertNum, H) = (%lld, %lld)%s", T_NAMES[i],
                 moe_shape_str(T(i), b1, sizeof b1), (long long)s->a.cnst, (long long)h, skip);
    }
    if (P(T_V) && (moe_dim(T(T_V), 0) != s->a.cnst || moe_dim(T(T_V), 1) != h))
        FAIL(TILING, "constExpertVOptional shape %s must be (constExpertNum, H) = (%lld, %lld)%s",
             moe_shape_str(T(T_V), b1, sizeof b1), (long long)s->a.cnst, (long long)h, skip);
    /* window size */
    return moe_check_win_size(s->gws, &s->a, 0);
}

/* commAlg: the A3 tiling does not read it, but every rank passes DispatchV3's commAlg (documented rule), so it
 * must be one of the values DispatchV3 accepts; aclnn_py's validation applies the same rule. */
static int check_comm_alg(const char *gws, const MoeAttrs *a, const char *commAlg) {
    if (commAlg && commAlg[0] && strcmp(commAlg, "fullmesh_v1") && strcmp(commAlg, "fullmesh_v2") && !a->hier)
        return moe_fail(gws, TILING, "commAlg = \"%s\"; it must be DispatchV3's commAlg: NULL, \"\", \"fullmesh_v1\"%s or "
                                     "\"fullmesh_v2\" (documented rule, not enforced by the A3 combine tiling)", commAlg,
                        moe_has(a, SIM_CHANGE_HIERARCHY) ? ", \"hierarchy\"" : "");
    return 0;
}

/* ================================ execution ================================================== */
typedef struct {
    char err[512];
    int64_t self_cnt, peer_cnt, h;
    const uint16_t *rows;      /* (self_cnt + peer_cnt) rows */
} CombineTpPub;

typedef struct {
    MoePubHead hd;             /* first: peers are compared through it */
    MoeCombineSrc src;
    int64_t h, cqm;
} CombinePub;

static int check_consistency(const CombinePub *me, const CombinePub *p, char *err, size_t n) {
#define CMP(f, name) \
    if (moe_differs(&me->hd, &p->hd, name, me->f, p->f, err, n)) return -1
    CMP(h, "H (expandX dim1)");
    if (moe_differs_world(&me->hd, &p->hd, "expandX", err, n)) return -1;
    CMP(hd.tp, "tpWorldSize");
    CMP(cqm, "commQuantMode");
#undef CMP
    return moe_differs_elastic(&me->hd, &p->hd, err, n);
}

#define RUN_ERR(...) snprintf(err, sizeof err, __VA_ARGS__)

/* Slot kslot of token t waits for a row: t is processed and, for kslot < K, the pair is not masked out and goes
 * to a MoE expert (the kernel's uint32 id compare); shared-expert slots wait whenever t is processed. */
static int slot_expected(const CombineState *s, const int32_t *ids, const uint8_t *mask, int mask_nd, int64_t np,
                         int64_t t, int64_t kslot) {
    const int64_t k = s->a.k;
    if (!moe_token_processed(mask, mask_nd, k, t, np)) return 0;
    if (kslot >= k) return 1;
    if (mask_nd == 2 && !mask[t * k + kslot]) return 0;
    return (uint32_t)ids[t * k + kslot] < (uint64_t)s->a.M;
}

/* Rows that arrived where the kernel does not wait for one (CS §3.4 WaitDispatch counts flags per token: one row
 * too many is a count it never reaches, a hang): a slot with two rows, or a row for a slot no token waits for,
 * typically a (token, k) the combine x_active_mask excludes but DispatchV3's did not. Slot-major order, as the
 * reference reports them. The missing rows are found by moe_combine_token. */
static void check_slots(const CombineState *s, const uint8_t *counts, const int32_t *ids, const uint8_t *mask,
                        int mask_nd, int64_t np, char *err, size_t n) {
    const int64_t bs = s->a.bs, kslots = s->a.k + s->a.sh.S;
    for (int64_t j = 0; j < kslots && !err[0]; j++)
        for (int64_t t = 0; t < bs && !err[0]; t++)
            if (counts[t * kslots + j] > 1)
                snprintf(err, n, "assistInfoForCombine: EP rank %lld token %lld slot %lld receives more than one row",
                         (long long)s->a.rank, (long long)t, (long long)j);
    for (int64_t j = 0; j < kslots && !err[0]; j++)
        for (int64_t t = 0; t < bs && !err[0]; t++) {
            if (!counts[t * kslots + j] || slot_expected(s, ids, mask, mask_nd, np, t, j)) continue;
            if (mask_nd && slot_expected(s, ids, NULL, 0, bs, t, j))
                snprintf(err, n, "xActiveMaskOptional (x_active_mask): EP rank %lld token %lld slot %lld received a "
                                 "row that its x_active_mask excludes; pass combine the x_active_mask given to "
                                 "DispatchV3 (the real kernel would wait forever for a flag count it has passed)",
                         (long long)s->a.rank, (long long)t, (long long)j);
            else
                snprintf(err, n, "assistInfoForCombine: EP rank %lld token %lld slot %lld received a row it does not "
                                 "wait for (the real kernel would wait forever for a flag count it has passed)",
                         (long long)s->a.rank, (long long)t, (long long)j);
        }
}

/* read one int32 element of a 1-D tensor */
static int32_t read_i32(const MoeTensor *t, int64_t i) {
    int owned = 0;
    int32_t *p = (int32_t *)moe_gather(t, i, 1, &owned);
    int32_t v = p ? *p : 0;
    if (owned) free(p);
    return v;
}

typedef struct {
    void *p;
    int owned;
} Gathered;
static const void *gather_all(Gathered *g, const MoeTensor *t) {
    g->p = NULL;
    g->owned = 0;
    if (!t->present) return NULL;
    g->p = moe_gather(t, 0, moe_numel(t), &g->owned);
    return g->p;
}
static void gfree(Gathered *g) {
    if (g->owned) free(g->p);
    g->p = NULL;
    g->owned = 0;
}

static int combine_run(aclOpExecutor *ex, SimStream *strm, void *workspace) {
    (void)workspace;
    CombineState *s = (CombineState *)ex->state;
    char err[512] = "";
    int status = SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    const int64_t h = s->a.h, bs = s->a.bs, k = s->a.k;
    const int is_bf16 = T(T_EXPAND_X)->d.dtype == ACL_BF16;
    SimComm *epc, *tpc;
    MoeElastic el;
    const int begin = moe_run_begin(s->run, &s->a, T(T_ELASTIC), strm, &epc, &tpc, &el, err, sizeof err);
    if (begin) return begin;

    /* ---- Step A: row counts (CS §3.1) ---- */
    int64_t self_cnt = 0, peer_cnt = 0;
    const int shared_role = el.me < el.R;
    if (!err[0]) {
        int64_t idx = shared_role ? el.ep - 1 : el.ep * el.L - 1;
        if (idx < 0 || idx >= moe_numel(T(T_EP_SEND)))
            RUN_ERR("epSendCounts[%lld] (the last own cumulative count) is outside the tensor (%lld entries)",
                    (long long)idx, (long long)moe_numel(T(T_EP_SEND)));
        else self_cnt = read_i32(T(T_EP_SEND), idx);
        if (tpc) peer_cnt = read_i32(T(T_TP_SEND), 1 - s->a.tp_rank);
        if (!err[0] && (self_cnt < 0 || peer_cnt < 0 || self_cnt + peer_cnt > moe_dim(T(T_EXPAND_X), 0)))
            RUN_ERR("row counts out of range: epSendCounts gives %lld own rows%s%lld, expandX has %lld rows",
                    (long long)self_cnt, tpc ? " and tpSendCounts[peer] gives " : "", (long long)(tpc ? peer_cnt : 0),
                    (long long)moe_dim(T(T_EXPAND_X), 0));
        else if (!err[0] && 3 * self_cnt > moe_numel(T(T_ASSIST)))
            RUN_ERR("epSendCounts gives %lld rows but assistInfoForCombine holds %lld triples", (long long)self_cnt,
                    (long long)(moe_numel(T(T_ASSIST)) / 3));
    }
    int own_rows = 0, own_tr = 0;
    const uint16_t *rows = NULL;
    const int32_t *triples = NULL;
    if (!err[0]) {
        rows = (const uint16_t *)moe_gather(T(T_EXPAND_X), 0, (self_cnt + peer_cnt) * h, &own_rows);
        triples = (const int32_t *)moe_gather(T(T_ASSIST), 0, 3 * self_cnt, &own_tr);
    }

    /* ---- Step B: TP reduce-scatter (CS §3.2) ---- */
    uint16_t *summed = NULL;
    const uint16_t *send_rows = rows;
    const int tpart[2] = {0, 1};
    void *tpeers[2] = {NULL, NULL};
    void **peers = (void **)calloc((size_t)s->a.ep, sizeof(void *));
    int xrc;
    if (tpc) {
        CombineTpPub tpub;
        memset(&tpub, 0, sizeof tpub);
        snprintf(tpub.err, sizeof tpub.err, "%.500s", err);
        tpub.self_cnt = self_cnt;
        tpub.peer_cnt = peer_cnt;
        tpub.h = h;
        tpub.rows = rows;
        xrc = moe_exchange(s->run, tpc, tpart, 2, &tpub, tpeers, strm);
        if (xrc) {
            status = xrc;
            goto out;
        }
        const CombineTpPub *peer = (const CombineTpPub *)tpeers[1 - sim_comm_rank(tpc)];
        if (!err[0] && peer && peer->err[0]) RUN_ERR("TP peer failed: %.440s", peer->err);
        if (!err[0] && peer && peer->peer_cnt != self_cnt)
            RUN_ERR("the TP peer sends %lld rows for this rank (its tpSendCounts) but this rank's epSendCounts says it "
                    "has %lld own rows", (long long)peer->peer_cnt, (long long)self_cnt);
        if (!err[0] && peer) {
            summed = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)(self_cnt * h + 1));
            const uint16_t *pr = peer->rows + peer->self_cnt * h; /* peer rows [selfCnt_p, selfCnt_p + peerCnt_p) */
            for (int64_t i = 0; i < self_cnt * h; i++) summed[i] = moe_tp_add(rows[i], pr[i], is_bf16);
            send_rows = summed;
        }
        xrc = moe_exchange(s->run, tpc, tpart, 2, NULL, tpeers, strm);
        if (xrc) {
            status = xrc;
            goto out;
        }
    }

    /* ---- Step C: EP return (CS §3.3), pulled by the owners ---- */
    CombinePub pub;
    memset(&pub, 0, sizeof pub);
    moe_pub_head(&pub.hd, &s->a, &el, T(T_EXPAND_X)->d.dtype);
    snprintf(pub.hd.err, sizeof pub.hd.err, "%.500s", err);
    pub.src = (MoeCombineSrc){.rows = send_rows, .triples = triples, .n_rows = err[0] ? 0 : self_cnt, .h = h};
    pub.h = h;
    pub.cqm = s->cqm;
    const int64_t t0 = moe_now_us();
    xrc = moe_exchange(s->run, epc, el.part, el.n_part, &pub, peers, strm);
    const int64_t waited = moe_now_us() - t0;
    if (xrc) {
        status = xrc;
        goto out;
    }
    const MoeCombineSrc **srcs = (const MoeCombineSrc **)calloc((size_t)el.n_part, sizeof(void *));
    for (int i = 0; i < el.n_part && !err[0]; i++) {
        const CombinePub *p = (const CombinePub *)peers[el.part[i]];
        if (!p) continue;
        if (moe_peer_failed(&pub.hd, &p->hd, err, sizeof err) || check_consistency(&pub, p, err, sizeof err)) break;
        srcs[i] = &p->src;
    }

    /* ---- Step D: per-token combine (CS §3.4) [+ AddRmsNorm (CS §4)] ---- */
    const int64_t kslots = k + s->a.sh.S;
    const uint16_t **slots = NULL;
    uint8_t *counts = NULL;
    uint16_t *xout = NULL, *yout = NULL;
    float *rstd = NULL, *acc = NULL;
    uint8_t *done = NULL;
    void *scratch = NULL;
    Gathered g_ids = {0}, g_w = {0}, g_mask = {0}, g_ori = {0}, g_a1 = {0}, g_a2 = {0}, g_v = {0}, g_sx = {0},
             g_res = {0}, g_gam = {0};
    if (!err[0]) {
        slots = (const uint16_t **)malloc(sizeof(void *) * (size_t)(bs * kslots + 1));
        counts = (uint8_t *)malloc((size_t)(bs * kslots + 1));
        xout = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)(bs * h));
        yout = s->arn ? (uint16_t *)malloc(sizeof(uint16_t) * (size_t)(bs * h)) : NULL;
        rstd = (float *)malloc(sizeof(float) * (size_t)(bs + 1));
        acc = (float *)malloc(sizeof(float) * (size_t)h);
        done = (uint8_t *)calloc((size_t)bs, 1);
        scratch = malloc(MOE_COMBINE_SCRATCH_BYTES(h) + sizeof(float) * 2 * (size_t)h);
        if (!slots || !counts || !xout || (s->arn && !yout) || !rstd || !acc || !done || !scratch) RUN_ERR("out of host memory");
    }
    if (!err[0]) {
        moe_combine_collect(srcs, el.n_part, el.me, bs, kslots, slots, counts);
        const int32_t *ids = (const int32_t *)gather_all(&g_ids, T(T_IDS));
        const int unweighted = scales_absent(s);
        const float *w = unweighted ? NULL : (const float *)gather_all(&g_w, T(T_SCALES));
        const uint8_t *mask = (const uint8_t *)gather_all(&g_mask, T(T_MASK));
        const uint16_t *ori = (const uint16_t *)gather_all(&g_ori, T(T_ORI_X));
        const uint16_t *a1 = (const uint16_t *)gather_all(&g_a1, T(T_A1));
        const uint16_t *a2 = (const uint16_t *)gather_all(&g_a2, T(T_A2));
        const uint16_t *v = (const uint16_t *)gather_all(&g_v, T(T_V));
        const uint16_t *sx = (const uint16_t *)gather_all(&g_sx, T(T_SHARED_X));
        const uint16_t *res = (const uint16_t *)gather_all(&g_res, T(T_RESIDUAL));
        const uint16_t *gam = (const uint16_t *)gather_all(&g_gam, T(T_GAMMA));
        const int mask_nd = P(T_MASK) ? moe_ndim(T(T_MASK)) : 0;
        const int64_t np = moe_mask_prefix(mask, mask_nd, bs);
        check_slots(s, counts, ids, mask, mask_nd, np, err, sizeof err);
        MoeCombineCfg cc = {.k = k, .s = s->a.sh.S, .h = h, .moe_num = s->a.M, .zero_num = s->a.zero, .copy_num = s->a.copy,
                            .const_num = s->a.cnst, .is_bf16 = is_bf16, .int8_comm = s->cqm == 2,
                            .const_softmax = moe_has(&s->a, SIM_CHANGE_CONST_ALPHA_2D), .unweighted = unweighted};
        const float inv_h = 1.0f / (float)h;
        for (int64_t t = 0; t < bs && !err[0]; t++) {
            if (!moe_token_processed(mask, mask_nd, k, t, np)) continue;
            MoeCombineToken tk = {.ids = ids + t * k, .w = w ? w + t * k : NULL, .mask2d = mask_nd == 2 ? mask + t * k : NULL,
                                  .slots = slots + t * kslots, .ori_x = ori ? ori + t * h : NULL, .alpha1 = a1,
                                  .alpha2 = a2, .const_v = v, .shared_x = sx ? sx + t * h : NULL};
            int miss = moe_combine_token(&cc, &tk, acc, scratch);
            if (miss) {
                int64_t j = miss - 1;
                if (j < k)
                    RUN_ERR("EP rank %lld token %lld: no row came back for k = %lld (expert id %d); the real kernel "
                            "would wait for it forever (assistInfoForCombine, epSendCounts and xActiveMaskOptional must be "
                            "those of the matching DispatchV3)",
                            (long long)s->a.rank, (long long)t, (long long)j, ids[t * k + j]);
                else
                    RUN_ERR("EP rank %lld token %lld: no row came back from shared expert %lld; the real kernel would "
                            "wait for it forever%s", (long long)s->a.rank, (long long)t, (long long)(j - k),
                            el.active && el.R == 0 ? " (the scale-down removed every shared-expert rank)" : "");
                break;
            }
            if (s->arn) {
                moe_add_rms_norm_token(acc, res + t * h, gam, h, s->eps, inv_h, xout + t * h, yout + t * h, &rstd[t],
                                       (float *)scratch);
            } else {
                for (int64_t i = 0; i < h; i++) xout[t * h + i] = moe_f32_to_x(acc[i], is_bf16);
            }
            done[t] = 1;
        }
    }
    /* performanceInfo (V4, CANN >= 9.0.0): this rank waited `waited` us for the rows of every rank that sent some */
    int64_t *perf_wait = NULL;
    if (!err[0] && P(T_PERF) && moe_has(&s->a, SIM_CHANGE_PERFORMANCE_INFO_A3)) {
        perf_wait = (int64_t *)calloc((size_t)s->a.ep, sizeof(int64_t));
        for (int i = 0; perf_wait && i < el.n_part; i++)
            for (int64_t r = 0; srcs[i] && r < srcs[i]->n_rows; r++)
                if (srcs[i]->triples[3 * r] == el.me) {
                    perf_wait[el.part[i]] = waited;
                    break;
                }
    }
    free(srcs);
    /* peers may release their buffers once everyone has pulled its rows */
    xrc = moe_exchange(s->run, epc, el.part, el.n_part, NULL, peers, strm);
    if (xrc) {
        status = xrc;
    } else if (!err[0]) {
        /* ---- write the processed tokens only (CS §3.4: other rows are never written) ---- */
        for (int64_t t = 0; t < bs; t++) {
            if (!done[t]) continue;
            moe_scatter(T(T_X_OUT), t * h, h, xout + t * h);
            if (s->arn) {
                moe_scatter(T(T_Y_OUT), t * h, h, yout + t * h);
                moe_scatter(T(T_RSTD_OUT), t, 1, &rstd[t]);
            }
        }
        if (perf_wait) moe_perf_merge(T(T_PERF), perf_wait, s->a.ep);
        status = 0;
    }
    free(perf_wait);
    Gathered *gs[] = {&g_ids, &g_w, &g_mask, &g_ori, &g_a1, &g_a2, &g_v, &g_sx, &g_res, &g_gam};
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) gfree(gs[i]);
    free(slots);
    free(counts);
    free(xout);
    free(yout);
    free(rstd);
    free(acc);
    free(done);
    free(scratch);
out:
    free(summed);
    free(peers);
    if (own_rows) free((void *)rows);
    if (own_tr) free((void *)triples);
    moe_elastic_free(&el);
    if (status && status != SIM_ACL_ERROR_RT_AICORE_EXCEPTION) return status;
    if (err[0]) {
        sim_set_error("%s: %s", s->run, err);
        return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    return status;
}

/* ================================ shared GetWorkspaceSize ==================================== */
/* the tensors only CombineAddRmsNorm has */
static int arn_only(int i) { return i == T_RESIDUAL || i == T_GAMMA || i == T_Y_OUT || i == T_RSTD_OUT; }
/* the arguments of the elastic / special-expert versions (CombineV3+, CombineAddRmsNormV2) */
static int special_only(int i) { return i == T_ELASTIC || i == T_ORI_X || i == T_A1 || i == T_A2 || i == T_V; }

/* the scalar attributes, in C order */
typedef struct {
    int64_t ep, rank, M, tp, tp_rank, shard, S, R, gbs, out_dtype, cqm, glt;
    float eps;
    int64_t zero, copy, cnst;
} CombineInts;

/* which operator: CombineAddRmsNorm or Combine, its API version, and the names of both phases */
typedef struct {
    int arn, version;
    const char *gws, *run;
} CombineOp;

/* Does version op take tensor argument i? */
static int takes(const CombineOp *op, int i) {
    const int special = op->arn ? op->version >= 2 : op->version >= 3;
    return (op->arn || !arn_only(i)) && (special || !special_only(i)) && (i != T_PERF || op->version >= 4);
}

static void record_call(const CombineOp *op, const aclTensor *const *tin, const CombineInts *n, const char *groupEp,
                        const char *groupTp, const char *commAlg, const uint64_t *workspaceSize,
                        aclOpExecutor *const *executor) {
    MoeStr r = {0};
    for (int i = 0; i < T_Y_OUT; i++)
        if (takes(op, i)) moe_str_tensor(&r, T_NAMES[i], tin[i]);
    moe_str_world(&r, groupEp, n->ep, n->rank, n->M, groupTp, n->tp, n->tp_rank, n->shard, n->S, n->R);
    moe_str_int(&r, "globalBs", n->gbs);
    moe_str_int(&r, "outDtype", n->out_dtype);
    moe_str_int(&r, "commQuantMode", n->cqm);
    moe_str_int(&r, "groupListType", n->glt);
    moe_str_string(&r, "commAlg", commAlg);
    if (op->arn) moe_str_float(&r, "normEps", n->eps);
    if (takes(op, T_ELASTIC)) {
        moe_str_int(&r, "zeroExpertNum", n->zero);
        moe_str_int(&r, "copyExpertNum", n->copy);
        moe_str_int(&r, "constExpertNum", n->cnst);
    }
    for (int i = T_Y_OUT; i < T_COUNT; i++)
        if (takes(op, i)) moe_str_tensor(&r, T_NAMES[i], tin[i]);
    moe_str_ptr(&r, "workspaceSize", workspaceSize);
    moe_str_ptr(&r, "executor", executor);
    moe_str_record(&r, op->gws);
}

/* The GetWorkspaceSize of every version: records the call, reads the release, captures and checks the arguments
 * with its rules, and creates the executor. tin holds every tensor argument by T_ index (NULL where the version
 * has none); normEps is ignored by the Combine ops. */
static aclnnStatus combine_gws(const CombineOp *op, const aclTensor *const *tin, const CombineInts *n,
                               const char *groupEp, const char *groupTp, const char *commAlg,
                               uint64_t *workspaceSize, aclOpExecutor **executor) {
    record_call(op, tin, n, groupEp, groupTp, commAlg, workspaceSize, executor);
    CombineState *st = (CombineState *)calloc(1, sizeof *st);
    if (!st) return moe_fail(op->gws, ACLNN_ERR_INNER_CREATE_EXECUTOR, "out of host memory");
    st->arn = op->arn;
    st->version = op->version;
    st->gws = op->gws;
    st->run = op->run;
    moe_attrs_init(&st->a, n->ep, n->rank, n->M, n->tp, n->tp_rank, n->S, n->R, n->gbs, n->zero, n->copy, n->cnst);
    int rc = moe_gws_release(st->gws, &st->a, commAlg, op->version, "aclnnMoeDistributeCombineV3", &groupTp);
    if (rc) {
        free(st);
        return rc;
    }
    if (groupEp) snprintf(st->a.group_ep, sizeof st->a.group_ep, "%s", groupEp);
    st->shard = n->shard;
    st->out_dtype = n->out_dtype;
    st->cqm = n->cqm;
    st->glt = n->glt;
    st->eps = n->eps;
    const void *raw[T_COUNT];
    for (int i = 0; i < T_COUNT; i++) {
        moe_tensor_capture_arg(&st->t[i], tin[i]); /* a dead one is reported by validate_api */
        raw[i] = tin[i];
    }
    rc = validate_api(st, groupEp, groupTp, raw, workspaceSize, executor);
    if (!rc) {
        const MoeTensor *ids = &st->t[T_IDS], *ex = &st->t[T_EXPAND_X];
        moe_attrs_shape(&st->a, moe_ndim(ids) >= 1 ? moe_dim(ids, 0) : 0, moe_ndim(ex) >= 2 ? moe_dim(ex, 1) : 0,
                        moe_ndim(ids) >= 2 ? moe_dim(ids, 1) : 0, st->t[T_ELASTIC].present);
        rc = validate_tiling(st, groupEp, groupTp);
    }
    if (!rc) rc = check_comm_alg(st->gws, &st->a, commAlg);
    if (!rc) rc = moe_check_comm_sizes(st->gws, &st->a, groupEp, groupTp);
    /* workspace of the A3 tiling: 16 MiB + aivNum * 10 KiB (CT/AT SetWorkspace), unused by the simulator */
    const uint64_t ws = 16ull * 1024 * 1024 + (uint64_t)MOE_AIV_NUM * 10 * 1024;
    return moe_gws_finish(rc, st->gws, st->run, ws, &st->a, groupEp, groupTp, combine_run, st, workspaceSize,
                          executor);
}

/* ================================ public API ================================================= */
#define COMBINE_OP(arn_, v_, name_) static const CombineOp op = {arn_, v_, name_ "GetWorkspaceSize", name_}

/* CombineV2, V3 and V4 in CombineV4's parameter order (V3: no performanceInfo; V2: no elasticInfo and no
 * special experts) */
static aclnnStatus combine_v(
    const CombineOp *op, const aclTensor *expandX, const aclTensor *expertIds, const aclTensor *assistInfoForCombine,
    const aclTensor *epSendCounts, const aclTensor *expertScales, const aclTensor *tpSendCountsOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *activationScaleOptional,
    const aclTensor *weightScaleOptional, const aclTensor *groupListOptional, const aclTensor *expandScalesOptional,
    const aclTensor *sharedExpertXOptional, const aclTensor *elasticInfoOptional, const aclTensor *oriXOptional,
    const aclTensor *constExpertAlpha1Optional, const aclTensor *constExpertAlpha2Optional,
    const aclTensor *constExpertVOptional, const aclTensor *performanceInfoOptional, const char *groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char *commAlg, int64_t zeroExpertNum,
    int64_t copyExpertNum, int64_t constExpertNum, aclTensor *xOut, uint64_t *workspaceSize,
    aclOpExecutor **executor) {
    const aclTensor *tin[T_COUNT] = {
        [T_EXPAND_X] = expandX, [T_IDS] = expertIds, [T_ASSIST] = assistInfoForCombine, [T_EP_SEND] = epSendCounts,
        [T_SCALES] = expertScales, [T_TP_SEND] = tpSendCountsOptional, [T_MASK] = xActiveMaskOptional,
        [T_ACT_SCALE] = activationScaleOptional, [T_W_SCALE] = weightScaleOptional,
        [T_GROUP_LIST] = groupListOptional, [T_EXPAND_SCALES] = expandScalesOptional,
        [T_SHARED_X] = sharedExpertXOptional, [T_ELASTIC] = elasticInfoOptional, [T_ORI_X] = oriXOptional,
        [T_A1] = constExpertAlpha1Optional, [T_A2] = constExpertAlpha2Optional, [T_V] = constExpertVOptional,
        [T_PERF] = performanceInfoOptional, [T_X_OUT] = xOut};
    const CombineInts n = {epWorldSize, epRankId, moeExpertNum, tpWorldSize, tpRankId, expertShardType,
                           sharedExpertNum, sharedExpertRankNum, globalBs, outDtype, commQuantMode, groupListType,
                           0.0f, zeroExpertNum, copyExpertNum, constExpertNum};
    return combine_gws(op, tin, &n, groupEp, groupTp, commAlg, workspaceSize, executor);
}

/* CombineAddRmsNorm V1 and V2 in V2's parameter order (V1: no elasticInfo and no special experts) */
static aclnnStatus add_rms_norm_v(
    const CombineOp *op, const aclTensor *expandX, const aclTensor *expertIds, const aclTensor *assistInfoForCombine,
    const aclTensor *epSendCounts, const aclTensor *expertScales, const aclTensor *residualX, const aclTensor *gamma,
    const aclTensor *tpSendCountsOptional, const aclTensor *xActiveMaskOptional,
    const aclTensor *activationScaleOptional, const aclTensor *weightScaleOptional, const aclTensor *groupListOptional,
    const aclTensor *expandScalesOptional, const aclTensor *sharedExpertXOptional, const aclTensor *elasticInfoOptional,
    const aclTensor *oriXOptional, const aclTensor *constExpertAlpha1Optional,
    const aclTensor *constExpertAlpha2Optional, const aclTensor *constExpertVOptional, const char *groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char *commAlg, float normEps,
    int64_t zeroExpertNum, int64_t copyExpertNum, int64_t constExpertNum, aclTensor *yOut, aclTensor *rstdOut,
    aclTensor *xOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclTensor *tin[T_COUNT] = {
        [T_EXPAND_X] = expandX, [T_IDS] = expertIds, [T_ASSIST] = assistInfoForCombine, [T_EP_SEND] = epSendCounts,
        [T_SCALES] = expertScales, [T_RESIDUAL] = residualX, [T_GAMMA] = gamma, [T_TP_SEND] = tpSendCountsOptional,
        [T_MASK] = xActiveMaskOptional, [T_ACT_SCALE] = activationScaleOptional, [T_W_SCALE] = weightScaleOptional,
        [T_GROUP_LIST] = groupListOptional, [T_EXPAND_SCALES] = expandScalesOptional,
        [T_SHARED_X] = sharedExpertXOptional, [T_ELASTIC] = elasticInfoOptional, [T_ORI_X] = oriXOptional,
        [T_A1] = constExpertAlpha1Optional, [T_A2] = constExpertAlpha2Optional, [T_V] = constExpertVOptional,
        [T_Y_OUT] = yOut, [T_RSTD_OUT] = rstdOut, [T_X_OUT] = xOut};
    const CombineInts n = {epWorldSize, epRankId, moeExpertNum, tpWorldSize, tpRankId, expertShardType,
                           sharedExpertNum, sharedExpertRankNum, globalBs, outDtype, commQuantMode, groupListType,
                           normEps, zeroExpertNum, copyExpertNum, constExpertNum};
    return combine_gws(op, tin, &n, groupEp, groupTp, commAlg, workspaceSize, executor);
}

#ifndef SIM_V2_ONLY
SIM_API aclnnStatus aclnnMoeDistributeCombineV3GetWorkspaceSize(
    const aclTensor *expandX, const aclTensor *expertIds, const aclTensor *assistInfoForCombine,
    const aclTensor *epSendCounts, const aclTensor *expertScales, const aclTensor *tpSendCountsOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *activationScaleOptional,
    const aclTensor *weightScaleOptional, const aclTensor *groupListOptional,
    const aclTensor *expandScalesOptional, const aclTensor *sharedExpertXOptional,
    const aclTensor *elasticInfoOptional, const aclTensor *oriXOptional,
    const aclTensor *constExpertAlpha1Optional, const aclTensor *constExpertAlpha2Optional,
    const aclTensor *constExpertVOptional, const char *groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs, int64_t outDtype,
    int64_t commQuantMode, int64_t groupListType, const char *commAlg, int64_t zeroExpertNum,
    int64_t copyExpertNum, int64_t constExpertNum, aclTensor *xOut, uint64_t *workspaceSize,
    aclOpExecutor **executor) {
    COMBINE_OP(0, 3, "aclnnMoeDistributeCombineV3");
    return combine_v(&op, expandX, expertIds, assistInfoForCombine, epSendCounts, expertScales, tpSendCountsOptional,
                     xActiveMaskOptional, activationScaleOptional, weightScaleOptional, groupListOptional,
                     expandScalesOptional, sharedExpertXOptional, elasticInfoOptional, oriXOptional,
                     constExpertAlpha1Optional, constExpertAlpha2Optional, constExpertVOptional, NULL, groupEp,
                     epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId, expertShardType,
                     sharedExpertNum, sharedExpertRankNum, globalBs, outDtype, commQuantMode, groupListType, commAlg,
                     zeroExpertNum, copyExpertNum, constExpertNum, xOut, workspaceSize, executor);
}

SIM_API aclnnStatus aclnnMoeDistributeCombineV3(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                aclrtStream stream) {
    return sim_executor_launch("aclnnMoeDistributeCombineV3", executor, workspace, workspaceSize, stream);
}

SIM_API aclnnStatus aclnnMoeDistributeCombineV4GetWorkspaceSize(
    const aclTensor *expandX, const aclTensor *expertIds, const aclTensor *assistInfoForCombine,
    const aclTensor *epSendCounts, const aclTensor *expertScales, const aclTensor *tpSendCountsOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *activationScaleOptional,
    const aclTensor *weightScaleOptional, const aclTensor *groupListOptional, const aclTensor *expandScalesOptional,
    const aclTensor *sharedExpertXOptional, const aclTensor *elasticInfoOptional, const aclTensor *oriXOptional,
    const aclTensor *constExpertAlpha1Optional, const aclTensor *constExpertAlpha2Optional,
    const aclTensor *constExpertVOptional, const aclTensor *performanceInfoOptional, const char *groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char *commAlg, int64_t zeroExpertNum,
    int64_t copyExpertNum, int64_t constExpertNum, aclTensor *xOut, uint64_t *workspaceSize,
    aclOpExecutor **executor) {
    COMBINE_OP(0, 4, "aclnnMoeDistributeCombineV4");
    return combine_v(&op, expandX, expertIds, assistInfoForCombine, epSendCounts, expertScales, tpSendCountsOptional,
                     xActiveMaskOptional, activationScaleOptional, weightScaleOptional, groupListOptional,
                     expandScalesOptional, sharedExpertXOptional, elasticInfoOptional, oriXOptional,
                     constExpertAlpha1Optional, constExpertAlpha2Optional, constExpertVOptional,
                     performanceInfoOptional, groupEp, epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize,
                     tpRankId, expertShardType, sharedExpertNum, sharedExpertRankNum, globalBs, outDtype,
                     commQuantMode, groupListType, commAlg, zeroExpertNum, copyExpertNum, constExpertNum, xOut,
                     workspaceSize, executor);
}

SIM_API aclnnStatus aclnnMoeDistributeCombineV4(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                aclrtStream stream) {
    return sim_executor_launch("aclnnMoeDistributeCombineV4", executor, workspace, workspaceSize, stream);
}

SIM_API aclnnStatus aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
    const aclTensor *expandX, const aclTensor *expertIds, const aclTensor *assistInfoForCombine,
    const aclTensor *epSendCounts, const aclTensor *expertScales, const aclTensor *residualX,
    const aclTensor *gamma, const aclTensor *tpSendCountsOptional, const aclTensor *xActiveMaskOptional,
    const aclTensor *activationScaleOptional, const aclTensor *weightScaleOptional,
    const aclTensor *groupListOptional, const aclTensor *expandScalesOptional,
    const aclTensor *sharedExpertXOptional, const aclTensor *elasticInfoOptional, const aclTensor *oriXOptional,
    const aclTensor *constExpertAlpha1Optional, const aclTensor *constExpertAlpha2Optional,
    const aclTensor *constExpertVOptional, const char *groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs, int64_t outDtype,
    int64_t commQuantMode, int64_t groupListType, const char *commAlg, float normEps, int64_t zeroExpertNum,
    int64_t copyExpertNum, int64_t constExpertNum, aclTensor *yOut, aclTensor *rstdOut, aclTensor *xOut,
    uint64_t *workspaceSize, aclOpExecutor **executor) {
    COMBINE_OP(1, 2, "aclnnMoeDistributeCombineAddRmsNormV2");
    return add_rms_norm_v(&op, expandX, expertIds, assistInfoForCombine, epSendCounts, expertScales, residualX, gamma,
                          tpSendCountsOptional, xActiveMaskOptional, activationScaleOptional, weightScaleOptional,
                          groupListOptional, expandScalesOptional, sharedExpertXOptional, elasticInfoOptional,
                          oriXOptional, constExpertAlpha1Optional, constExpertAlpha2Optional, constExpertVOptional,
                          groupEp, epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId,
                          expertShardType, sharedExpertNum, sharedExpertRankNum, globalBs, outDtype, commQuantMode,
                          groupListType, commAlg, normEps, zeroExpertNum, copyExpertNum, constExpertNum, yOut, rstdOut,
                          xOut, workspaceSize, executor);
}

SIM_API aclnnStatus aclnnMoeDistributeCombineAddRmsNormV2(void *workspace, uint64_t workspaceSize,
                                                          aclOpExecutor *executor, aclrtStream stream) {
    return sim_executor_launch("aclnnMoeDistributeCombineAddRmsNormV2", executor, workspace, workspaceSize, stream);
}
#endif

SIM_API aclnnStatus aclnnMoeDistributeCombineV2GetWorkspaceSize(
    const aclTensor *expandX, const aclTensor *expertIds, const aclTensor *assistInfoForCombine,
    const aclTensor *epSendCounts, const aclTensor *expertScales, const aclTensor *tpSendCountsOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *activationScaleOptional,
    const aclTensor *weightScaleOptional, const aclTensor *groupListOptional, const aclTensor *expandScalesOptional,
    const aclTensor *sharedExpertXOptional, const char *groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs, int64_t outDtype, int64_t commQuantMode,
    int64_t groupListType, const char *commAlg, aclTensor *xOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    COMBINE_OP(0, 2, "aclnnMoeDistributeCombineV2");
    return combine_v(&op, expandX, expertIds, assistInfoForCombine, epSendCounts, expertScales, tpSendCountsOptional,
                     xActiveMaskOptional, activationScaleOptional, weightScaleOptional, groupListOptional,
                     expandScalesOptional, sharedExpertXOptional, NULL, NULL, NULL, NULL, NULL, NULL, groupEp,
                     epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId, expertShardType,
                     sharedExpertNum, sharedExpertRankNum, globalBs, outDtype, commQuantMode, groupListType, commAlg, 0,
                     0, 0, xOut, workspaceSize, executor);
}

SIM_API aclnnStatus aclnnMoeDistributeCombineV2(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                aclrtStream stream) {
    return sim_executor_launch("aclnnMoeDistributeCombineV2", executor, workspace, workspaceSize, stream);
}

SIM_API aclnnStatus aclnnMoeDistributeCombineAddRmsNormGetWorkspaceSize(
    const aclTensor *expandX, const aclTensor *expertIds, const aclTensor *assistInfoForCombine,
    const aclTensor *epSendCounts, const aclTensor *expertScales, const aclTensor *residualX, const aclTensor *gamma,
    const aclTensor *tpSendCountsOptional, const aclTensor *xActiveMaskOptional,
    const aclTensor *activationScaleOptional, const aclTensor *weightScaleOptional, const aclTensor *groupListOptional,
    const aclTensor *expandScalesOptional, const aclTensor *sharedExpertXOptional, const char *groupEp,
    int64_t epWorldSize, int64_t epRankId, int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize,
    int64_t tpRankId, int64_t expertShardType, int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t globalBs,
    int64_t outDtype, int64_t commQuantMode, int64_t groupListType, const char *commAlg, float normEps, aclTensor *yOut,
    aclTensor *rstdOut, aclTensor *xOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    COMBINE_OP(1, 1, "aclnnMoeDistributeCombineAddRmsNorm");
    return add_rms_norm_v(&op, expandX, expertIds, assistInfoForCombine, epSendCounts, expertScales, residualX, gamma,
                          tpSendCountsOptional, xActiveMaskOptional, activationScaleOptional, weightScaleOptional,
                          groupListOptional, expandScalesOptional, sharedExpertXOptional, NULL, NULL, NULL, NULL, NULL,
                          groupEp, epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId,
                          expertShardType, sharedExpertNum, sharedExpertRankNum, globalBs, outDtype, commQuantMode,
                          groupListType, commAlg, normEps, 0, 0, 0, yOut, rstdOut, xOut, workspaceSize, executor);
}

SIM_API aclnnStatus aclnnMoeDistributeCombineAddRmsNorm(void *workspace, uint64_t workspaceSize,
                                                        aclOpExecutor *executor, aclrtStream stream) {
    return sim_executor_launch("aclnnMoeDistributeCombineAddRmsNorm", executor, workspace, workspaceSize, stream);
}
