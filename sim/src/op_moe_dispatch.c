/*
 * Simulated aclnnMoeDistributeDispatchV3 (Atlas A3 semantics).
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

#include "aclnnop/aclnn_moe_distribute_dispatch_v3.h"
#include "op_moe_common.h"

#define GWS_API "aclnnMoeDistributeDispatchV3GetWorkspaceSize"
#define RUN_API "aclnnMoeDistributeDispatchV3"

typedef struct {
    MoeTensor x, ids, scales, mask, expert_scales, elastic;
    MoeTensor expand_x, dyn_scales, assist, token_nums, ep_recv, tp_recv, expand_scales;
    MoeAttrs a;
    int64_t quant, tn_type;
} DispatchState;

/* ================================ validation ================================================= */
#define FAIL(st, ...) return moe_fail(GWS_API, st, __VA_ARGS__)
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
        for (int i = 0; i < 7; i++)
            if (!req[i]->present) FAIL(NULLPTR, "%s is NULL (required tensor)", names[i]);
    }
    if (!groupEp || !groupEp[0]) FAIL(NULLPTR, "groupEp is %s; it must name the EP communicator", groupEp ? "\"\"" : "NULL");
    if (s->quant == 2 && !s->dyn_scales.present)
        FAIL(NULLPTR, "dynamicScalesOut is NULL but quantMode = 2 (dynamic quantisation) requires it");
    int rc = moe_check_api_args(GWS_API, groupEp, groupTp, NULLPTR, workspaceSize, executor, raw, raw_names, n_raw);
    if (rc) return rc;

    /* --- generated layer: dtypes outside the op definition (DEF) -> 161002 --- */
    {
        static const int32_t X_DT[] = {ACL_BF16, ACL_FLOAT16, 35, 36, 34};
        static const int32_t SC_DT[] = {ACL_FLOAT, 37};
        static const int32_t EX_DT[] = {ACL_BF16, ACL_INT8, ACL_FLOAT16, 35, 36, 34};
        static const int32_t I32[] = {ACL_INT32}, I64[] = {ACL_INT64}, F32[] = {ACL_FLOAT}, BOOL_[] = {ACL_BOOL};
        static const int32_t ESC_DT[] = {ACL_FLOAT, ACL_INT32};
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
            {&s->expand_scales, "expandScalesOut", ESC_DT, 2, "FLOAT, INT32"},
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
    return moe_check_world(GWS_API, &s->a, groupTp);
}

static int validate_tiling(const DispatchState *s, int64_t shard, const char *commAlg) {
    char b1[96];
    const int64_t ep = s->a.ep, tp = s->a.tp, M = s->a.M;
    int rc = moe_check_experts(GWS_API, &s->a, shard, "(0, 1024]");
    if (rc) return rc;
    if (s->quant < 0 || s->quant > 2) FAIL(TILING, "quantMode = %lld is outside [0, 2]", (long long)s->quant);
    if (s->tn_type != 0 && s->tn_type != 1)
        FAIL(TILING, "expertTokenNumsType = %lld; only 0 (cumulative) or 1 (counts) is supported", (long long)s->tn_type);
    if (s->a.zero < 0) FAIL(TILING, "zeroExpertNum = %lld is negative", (long long)s->a.zero);
    if (s->a.copy < 0) FAIL(TILING, "copyExpertNum = %lld is negative", (long long)s->a.copy);
    if (s->a.cnst < 0) FAIL(TILING, "constExpertNum = %lld is negative", (long long)s->a.cnst);
    if ((rc = moe_check_expert_sum(GWS_API, &s->a))) return rc;
    const char *alg = commAlg ? commAlg : "";
    if (alg[0] && strcmp(alg, "fullmesh_v1") && strcmp(alg, "fullmesh_v2"))
        FAIL(TILING, "commAlg = \"%s\"; supported: NULL, \"\", \"fullmesh_v1\", \"fullmesh_v2\"", alg);
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
    if (moe_ndim(&s->tp_recv) != 1) FAIL(TILING, "tpRecvCountsOut must be 1-D, got %d-D", moe_ndim(&s->tp_recv));

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
        if (s->tp_recv.d.dtype != ACL_INT32)
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
    if ((rc = moe_check_shared(GWS_API, &s->a))) return rc;
    if (fm2 && s->elastic.present) FAIL(TILING, "commAlg = \"fullmesh_v2\" cannot be combined with elasticInfoOptional");
    if (fm2 && s->a.zero + s->a.copy + s->a.cnst > 0)
        FAIL(TILING, "commAlg = \"fullmesh_v2\" cannot be combined with zero/copy/const experts");
    if (fm2 && s->mask.present) FAIL(TILING, "commAlg = \"fullmesh_v2\" cannot be combined with xActiveMaskOptional");
    if (fm2 && tp == 2) FAIL(TILING, "commAlg = \"fullmesh_v2\" cannot be combined with tpWorldSize = 2");
    if ((rc = moe_check_layout(GWS_API, &s->a, s->elastic.present)) ||
        (rc = moe_check_bs(GWS_API, &s->a, "x dim0 (BS)", "BS", s->mask.present)))
        return rc;
    const int64_t bs = s->a.bs, h = s->a.h;
    if (s->a.global_bs > bs * ep && fm2)
        FAIL(TILING, "globalBs = %lld > BS * epWorldSize (different BS per rank) cannot be combined with "
                     "commAlg = \"fullmesh_v2\"", (long long)s->a.global_bs);

    /* CheckTensorShape */
    if (h < 1024 || h > 8192) FAIL(TILING, "x dim1 (H) = %lld is outside [1024, 8192]", (long long)h);
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
    if (moe_dim(&s->expand_x, 0) < tpm * A)
        FAIL(TILING, "expandXOut dim0 = %lld must be >= max(tpWorldSize, 1) * A = %lld (A = %lld)%s",
             (long long)moe_dim(&s->expand_x, 0), (long long)(tpm * A), (long long)A,
             tp == 0 ? "; the real tiling compares with tpWorldSize * A = 0 here and would let the kernel write past "
                       "the buffer, the simulator enforces the documented shape"
                     : "");
    if (moe_dim(&s->expand_x, 1) != h)
        FAIL(TILING, "expandXOut dim1 = %lld differs from x dim1 (H) = %lld", (long long)moe_dim(&s->expand_x, 1),
             (long long)h);
    if (s->quant != 0 && moe_dim(&s->dyn_scales, 0) < tpm * A)
        FAIL(TILING, "dynamicScalesOut dim0 = %lld must be >= max(tpWorldSize, 1) * A = %lld%s",
             (long long)moe_dim(&s->dyn_scales, 0), (long long)(tpm * A),
             tp == 0 ? " (documented shape; the real tiling compares with tpWorldSize * A = 0)" : "");
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
        if (moe_dim(&s->ep_recv, 0) < er)
            FAIL(TILING, "epRecvCountsOut dim0 = %lld must be >= %lld (epWorldSize * localExpertNum * max(tpWorldSize, 1))",
                 (long long)moe_dim(&s->ep_recv, 0), (long long)er);
        if (moe_dim(&s->tp_recv, 0) != tp)
            FAIL(TILING, "tpRecvCountsOut dim0 = %lld must equal tpWorldSize = %lld", (long long)moe_dim(&s->tp_recv, 0),
                 (long long)tp);
    }
    /* CheckWinSize */
    return moe_check_win_size(GWS_API, &s->a, fm2);
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
    const int begin = moe_run_begin(RUN_API, &st->a, &st->elastic, strm, &epc, &tpc, &el, err, sizeof err);
    if (begin) return begin;

    /* ---- publish inputs ---- */
    DispatchPub pub;
    memset(&pub, 0, sizeof pub);
    const int64_t bs = st->a.bs, h = st->a.h, k = st->a.k;
    int own_x = 0, own_ids = 0, own_sc = 0, own_mask = 0;
    void *x = NULL, *ids = NULL, *sc = NULL, *mask = NULL;
    if (!err[0]) {
        x = moe_gather(&st->x, 0, bs * h, &own_x);
        ids = moe_gather(&st->ids, 0, bs * k, &own_ids);
        if (st->scales.present) sc = moe_gather(&st->scales, 0, moe_numel(&st->scales), &own_sc);
        if (st->mask.present) mask = moe_gather(&st->mask, 0, moe_numel(&st->mask), &own_mask);
        if (!x || !ids || (st->scales.present && !sc) || (st->mask.present && !mask)) RUN_ERR("out of host memory");
    }
    moe_pub_head(&pub.hd, &st->a, &el, st->x.d.dtype);
    pub.src = (MoeDispatchSrc){.bs = bs, .h = h, .k = k, .x_is_bf16 = st->x.d.dtype == ACL_BF16,
                               .x = (const uint16_t *)x, .expert_ids = (const int32_t *)ids,
                               .scales = (const float *)sc, .mask = (const uint8_t *)mask,
                               .mask_ndim = st->mask.present ? moe_ndim(&st->mask) : 0};
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
    int xrc = moe_exchange(RUN_API, epc, el.part, el.n_part, &pub, peers, strm);
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
    xrc = moe_exchange(RUN_API, epc, el.part, el.n_part, NULL, peers, strm);
    if (xrc) {
        status = xrc;
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
        xrc = moe_exchange(RUN_API, tpc, tpart, 2, &tpub, tpeers, strm);
        if (xrc) {
            status = xrc;
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
    }
    if (tpc) {
        xrc = moe_exchange(RUN_API, tpc, tpart, 2, NULL, tpeers, strm);
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
    moe_elastic_free(&el);
    if (status) return status;
    if (err[0]) {
        sim_set_error("%s: %s", RUN_API, err);
        return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    return 0;
}

/* ================================ public API ================================================= */
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
    MoeStr r = {0};
    moe_str_tensor(&r, "x", x);
    moe_str_tensor(&r, "expertIds", expertIds);
    moe_str_tensor(&r, "scalesOptional", scalesOptional);
    moe_str_tensor(&r, "xActiveMaskOptional", xActiveMaskOptional);
    moe_str_tensor(&r, "expertScalesOptional", expertScalesOptional);
    moe_str_tensor(&r, "elasticInfoOptional", elasticInfoOptional);
    moe_str_world(&r, groupEp, epWorldSize, epRankId, moeExpertNum, groupTp, tpWorldSize, tpRankId, expertShardType,
                  sharedExpertNum, sharedExpertRankNum);
    moe_str_int(&r, "quantMode", quantMode);
    moe_str_int(&r, "globalBs", globalBs);
    moe_str_int(&r, "expertTokenNumsType", expertTokenNumsType);
    moe_str_string(&r, "commAlg", commAlg);
    moe_str_int(&r, "zeroExpertNum", zeroExpertNum);
    moe_str_int(&r, "copyExpertNum", copyExpertNum);
    moe_str_int(&r, "constExpertNum", constExpertNum);
    moe_str_tensor(&r, "expandXOut", expandXOut);
    moe_str_tensor(&r, "dynamicScalesOut", dynamicScalesOut);
    moe_str_tensor(&r, "assistInfoForCombineOut", assistInfoForCombineOut);
    moe_str_tensor(&r, "expertTokenNumsOut", expertTokenNumsOut);
    moe_str_tensor(&r, "epRecvCountsOut", epRecvCountsOut);
    moe_str_tensor(&r, "tpRecvCountsOut", tpRecvCountsOut);
    moe_str_tensor(&r, "expandScalesOut", expandScalesOut);
    moe_str_ptr(&r, "workspaceSize", workspaceSize);
    moe_str_ptr(&r, "executor", executor);
    moe_str_record(&r, GWS_API);

    const void *raw[] = {x, expertIds, scalesOptional, xActiveMaskOptional, expertScalesOptional, elasticInfoOptional,
                         expandXOut, dynamicScalesOut, assistInfoForCombineOut, expertTokenNumsOut, epRecvCountsOut,
                         tpRecvCountsOut, expandScalesOut};
    const char *raw_names[] = {"x", "expertIds", "scalesOptional", "xActiveMaskOptional", "expertScalesOptional",
                               "elasticInfoOptional", "expandXOut", "dynamicScalesOut", "assistInfoForCombineOut",
                               "expertTokenNumsOut", "epRecvCountsOut", "tpRecvCountsOut", "expandScalesOut"};
    DispatchState *st = (DispatchState *)calloc(1, sizeof *st);
    if (!st) return moe_fail(GWS_API, ACLNN_ERR_INNER_CREATE_EXECUTOR, "out of host memory");
    MoeTensor *tdst[] = {&st->x, &st->ids, &st->scales, &st->mask, &st->expert_scales, &st->elastic,
                         &st->expand_x, &st->dyn_scales, &st->assist, &st->token_nums, &st->ep_recv, &st->tp_recv,
                         &st->expand_scales};
    for (int i = 0; i < 13; i++) moe_tensor_capture_arg(tdst[i], (const aclTensor *)raw[i]);
    moe_attrs_init(&st->a, epWorldSize, epRankId, moeExpertNum, tpWorldSize, tpRankId, sharedExpertNum,
                   sharedExpertRankNum, globalBs, zeroExpertNum, copyExpertNum, constExpertNum);
    st->quant = quantMode;
    st->tn_type = expertTokenNumsType;

    int rc = validate(st, groupEp, groupTp, raw, raw_names, 13, workspaceSize, executor);
    if (!rc) {
        moe_attrs_shape(&st->a, moe_ndim(&st->x) >= 1 ? moe_dim(&st->x, 0) : 0,
                        moe_ndim(&st->x) >= 2 ? moe_dim(&st->x, 1) : 0,
                        moe_ndim(&st->ids) >= 2 ? moe_dim(&st->ids, 1) : 0, st->elastic.present);
        rc = validate_tiling(st, expertShardType, commAlg);
    }
    if (!rc) rc = moe_check_comm_sizes(GWS_API, &st->a, groupEp, groupTp);
    /* workspace of the A3 tiling: 16 MiB + 512 * aivNum^2 (TIL SetWorkSpace), unused by the simulator */
    const uint64_t ws = 16ull * 1024 * 1024 + 512ull * MOE_AIV_NUM * MOE_AIV_NUM;
    return moe_gws_finish(rc, GWS_API, RUN_API, ws, &st->a, groupEp, groupTp, dispatch_run, st, workspaceSize,
                          executor);
}

SIM_API aclnnStatus aclnnMoeDistributeDispatchV3(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                 aclrtStream stream) {
    return sim_executor_launch(RUN_API, executor, workspace, workspaceSize, stream);
}
