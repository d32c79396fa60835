/*
 * Shared op-layer helpers of the simulated MoE operators; see op_moe_common.h.
 */
#define _GNU_SOURCE
#include "op_moe_common.h"

#include "aclnn/acl_meta.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- tensors ----------------------------------------------------------------------------------- */
void moe_tensor_capture(MoeTensor *dst, const struct aclTensor *t) {
    memset(dst, 0, sizeof *dst);
    if (t) {
        dst->present = 1;
        dst->d = *t;
    }
}

int64_t moe_numel(const MoeTensor *t) {
    int64_t n = 1;
    for (uint64_t i = 0; i < t->d.ndim && i < SIM_MAX_DIMS; i++) n *= t->d.dims[i];
    return n;
}

int moe_is_nz(const MoeTensor *t) {
    int f = t->d.format;
    return f == ACL_FORMAT_FRACTAL_NZ || (f >= ACL_FORMAT_FRACTAL_NZ_C0_16 && f <= ACL_FORMAT_FRACTAL_NZ_C0_8);
}

const char *moe_shape_str(const MoeTensor *t, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (uint64_t i = 0; i < t->d.ndim && i < SIM_MAX_DIMS && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)t->d.dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

const char *moe_dtype_name(int32_t dtype) {
    switch (dtype) {
    case ACL_FLOAT: return "FLOAT";
    case ACL_FLOAT16: return "FLOAT16";
    case ACL_INT8: return "INT8";
    case ACL_INT32: return "INT32";
    case ACL_UINT8: return "UINT8";
    case ACL_INT16: return "INT16";
    case ACL_UINT16: return "UINT16";
    case ACL_UINT32: return "UINT32";
    case ACL_INT64: return "INT64";
    case ACL_UINT64: return "UINT64";
    case ACL_DOUBLE: return "DOUBLE";
    case ACL_BOOL: return "BOOL";
    case ACL_BF16: return "BF16";
    case 34: return "HIFLOAT8";
    case 35: return "FLOAT8_E5M2";
    case 36: return "FLOAT8_E4M3FN";
    case 37: return "FLOAT8_E8M0";
    default: return "unsupported dtype";
    }
}

/* element offset (in elements, from data) of logical flat index given as a multi-index */
static int64_t elem_offset(const struct aclTensor *t, const int64_t *idx) {
    int64_t off = t->offset;
    for (uint64_t d = 0; d < t->ndim; d++) off += idx[d] * t->strides[d];
    return off;
}

static void unravel(const struct aclTensor *t, int64_t flat, int64_t *idx) {
    for (int d = (int)t->ndim - 1; d >= 0; d--) {
        int64_t n = t->dims[d] > 0 ? t->dims[d] : 1;
        idx[d] = flat % n;
        flat /= n;
    }
}

static void advance(const struct aclTensor *t, int64_t *idx) {
    for (int d = (int)t->ndim - 1; d >= 0; d--) {
        if (++idx[d] < t->dims[d]) return;
        idx[d] = 0;
    }
}

void *moe_gather(const MoeTensor *t, int64_t start, int64_t count, int *owned) {
    size_t isz = sim_dtype_size(t->d.dtype);
    *owned = 0;
    if (sim_tensor_is_contiguous(&t->d)) return (char *)sim_tensor_ptr(&t->d) + (size_t)start * isz;
    char *out = (char *)malloc((size_t)(count > 0 ? count : 1) * isz);
    if (!out) return NULL;
    *owned = 1;
    int64_t idx[SIM_MAX_DIMS] = {0};
    unravel(&t->d, start, idx);
    const char *base = (const char *)t->d.data;
    for (int64_t i = 0; i < count; i++) {
        memcpy(out + (size_t)i * isz, base + (size_t)elem_offset(&t->d, idx) * isz, isz);
        advance(&t->d, idx);
    }
    return out;
}

void moe_scatter(const MoeTensor *t, int64_t start, int64_t count, const void *src) {
    size_t isz = sim_dtype_size(t->d.dtype);
    if (count <= 0) return;
    if (sim_tensor_is_contiguous(&t->d)) {
        char *dst = (char *)sim_tensor_ptr(&t->d) + (size_t)start * isz;
        sim_prefault(dst, (size_t)count * isz);
        memcpy(dst, src, (size_t)count * isz);
        return;
    }
    int64_t idx[SIM_MAX_DIMS] = {0};
    unravel(&t->d, start, idx);
    char *base = (char *)t->d.data;
    for (int64_t i = 0; i < count; i++) {
        memcpy(base + (size_t)elem_offset(&t->d, idx) * isz, (const char *)src + (size_t)i * isz, isz);
        advance(&t->d, idx);
    }
}

/* ---- call records ------------------------------------------------------------------------------ */
void moe_str_add(MoeStr *s, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = s->cap - s->len;
        va_start(ap, fmt);
        int n = s->buf ? vsnprintf(s->buf + s->len, room, fmt, ap) : -1;
        va_end(ap);
        if (s->buf && n >= 0 && (size_t)n < room) {
            s->len += (size_t)n;
            return;
        }
        size_t need = s->cap ? s->cap * 2 : 512;
        if (n >= 0 && s->len + (size_t)n + 1 > need) need = s->len + (size_t)n + 1;
        char *nb = (char *)realloc(s->buf, need);
        if (!nb) return;
        s->buf = nb;
        s->cap = need;
        if (s->len == 0) s->buf[0] = 0;
    }
}

static void sep(MoeStr *s) {
    if (s->len) moe_str_add(s, " ");
}

int moe_tensor_live(const void *t) { return t && sim_tensor_valid((const struct aclTensor *)t); }

/* the core's formatters keep every simulator record in one format (sim/include/aclsim.h) */
void moe_str_tensor(MoeStr *s, const char *name, const void *tp) {
    sep(s);
    moe_str_add(s, "%s=%s", name, sim_fmt_tensor((const struct aclTensor *)tp));
}

void moe_str_int(MoeStr *s, const char *name, int64_t v) {
    sep(s);
    moe_str_add(s, "%s=%lld", name, (long long)v);
}

void moe_str_string(MoeStr *s, const char *name, const char *v) {
    sep(s);
    moe_str_add(s, "%s=%s", name, sim_fmt_str(v));
}

void moe_str_float(MoeStr *s, const char *name, float v) {
    sep(s);
    moe_str_add(s, "%s=%s", name, sim_fmt_f32(v));
}

void moe_str_ptr(MoeStr *s, const char *name, const void *p) {
    sep(s);
    if (!p) moe_str_add(s, "%s=NULL", name);
    else moe_str_add(s, "%s=%p", name, p);
}

void moe_str_world(MoeStr *s, const char *groupEp, int64_t ep, int64_t rank, int64_t M, const char *groupTp,
                   int64_t tp, int64_t tp_rank, int64_t shard, int64_t S, int64_t R) {
    moe_str_string(s, "groupEp", groupEp);
    moe_str_int(s, "epWorldSize", ep);
    moe_str_int(s, "epRankId", rank);
    moe_str_int(s, "moeExpertNum", M);
    moe_str_string(s, "groupTp", groupTp);
    moe_str_int(s, "tpWorldSize", tp);
    moe_str_int(s, "tpRankId", tp_rank);
    moe_str_int(s, "expertShardType", shard);
    moe_str_int(s, "sharedExpertNum", S);
    moe_str_int(s, "sharedExpertRankNum", R);
}

void moe_str_record(MoeStr *s, const char *fn) {
    sim_record_call(fn, "%s", s->buf ? s->buf : "");
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

/* ---- validation -------------------------------------------------------------------------------- */
int moe_fail(const char *api, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sim_set_error("%s: %s", api, msg);
    return status;
}

uint64_t moe_hccl_buffsize_mb(void) { return sim_hccl_buffsize_env_mb(); }

/* ---- attributes ------------------------------------------------------------------------------- */
void moe_attrs_init(MoeAttrs *a, int64_t ep, int64_t rank, int64_t M, int64_t tp, int64_t tp_rank, int64_t S_attr,
                    int64_t R, int64_t global_bs, int64_t zero, int64_t copy, int64_t cnst) {
    *a = (MoeAttrs){.ep = ep, .rank = rank, .M = M, .tp = tp, .tp_rank = tp_rank, .S_attr = S_attr, .R = R,
                    .global_bs = global_bs, .zero = zero, .copy = copy, .cnst = cnst};
}

int moe_attrs_release(const char *api, MoeAttrs *a, const char *commAlg) {
    if (sim_release_current(api, &a->rel) != 0) return SIM_ACLNN_ERR_PARAM_INVALID;
    a->hier = moe_has(a, SIM_CHANGE_HIERARCHY) && commAlg && strcmp(commAlg, "hierarchy") == 0;
    return 0;
}

int moe_gws_release(const char *api, MoeAttrs *a, const char *commAlg, int version, const char *v3_api,
                    const char **groupTp) {
    int rc = moe_attrs_release(api, a, commAlg);
    if (rc) return rc;
    if (version == 4 && !moe_has(a, SIM_CHANGE_V4))
        return moe_fail(api, SIM_ACLNN_ERR_INNER_FIND_KERNEL_ERROR,
                        "not in %s: the V4 operators first shipped in CANN 8.5.0-beta.1; call %s, or emulate a later "
                        "release with %s", sim_release_describe(&a->rel), v3_api, SIM_RELEASE_VARIABLE);
    /* CANN 9.1.0's op_api reads a NULL groupTp as "" (TP is gone) */
    if (!*groupTp && moe_has(a, SIM_CHANGE_TP_REMOVED)) *groupTp = "";
    return 0;
}

const char *moe_skipped_note(const MoeAttrs *a) {
    static __thread char buf[256];
    if (!moe_has(a, SIM_CHANGE_COMBINE_CHECKS_SKIPPED)) return "";
    snprintf(buf, sizeof buf, " (documented rule; CANN %s does not enforce it: its combine tiling's shape check "
                              "returns GRAPH_FAILED from a bool function, which reads as success)", a->rel.text);
    return buf;
}

void moe_attrs_shape(MoeAttrs *a, int64_t bs, int64_t h, int64_t k, int has_elastic) {
    MoeShape *sh = &a->sh;
    const int64_t ep = a->ep, R = a->R;
    a->bs = bs;
    a->h = h;
    a->k = k;
    memset(sh, 0, sizeof *sh);
    sh->S = (R == 0 && a->S_attr == 1) ? 0 : a->S_attr;
    sh->L = (ep - R > 0) ? a->M / (ep - R) : 0;
    sh->rpse = (sh->S > 0 && R > 0) ? R / sh->S : 0;
    sh->global_bs = a->global_bs != 0 ? a->global_bs : bs * ep;
    sh->max_bs = ep > 0 ? sh->global_bs / ep : 0;
    sh->is_shared = a->rank < R;
    int64_t groups = sh->rpse > 0 ? (ep + sh->rpse - 1) / sh->rpse : 0;
    int64_t shared_a = sh->max_bs * groups;
    int64_t moe_a = sh->global_bs * (sh->L < k ? sh->L : k);
    if (has_elastic) sh->A = shared_a > moe_a ? shared_a : moe_a;
    else sh->A = sh->is_shared ? shared_a : moe_a;
}

/* ---- GetWorkspaceSize checks ----------------------------------------------------------------------- */
#define FAIL(st, ...) return moe_fail(api, st, __VA_ARGS__)
#define NULLPTR SIM_ACLNN_ERR_PARAM_NULLPTR
#define INVALID SIM_ACLNN_ERR_PARAM_INVALID
#define TILING SIM_ACLNN_ERR_INNER_TILING_ERROR

int moe_in_list(int32_t dt, const int32_t *l, int n) {
    for (int i = 0; i < n; i++)
        if (l[i] == dt) return 1;
    return 0;
}

int moe_check_api_args(const char *api, const char *groupEp, const char *groupTp, int len_status,
                       const void *workspaceSize, const void *executor, const void *const *raw,
                       const char *const *raw_names, int n_raw) {
    if (strnlen(groupEp, MOE_GROUP_NAME_MAX) >= MOE_GROUP_NAME_MAX)
        FAIL(len_status, "groupEp has %zu characters; the length must be in [1, 128)", strlen(groupEp));
    if (!groupTp)
        FAIL(NULLPTR, "groupTp is NULL; pass \"\" when there is no TP group (the real op_api calls strnlen on it "
                      "without a NULL check)");
    if (strnlen(groupTp, MOE_GROUP_NAME_MAX) >= MOE_GROUP_NAME_MAX)
        FAIL(len_status, "groupTp has %zu characters; the length must be < 128", strlen(groupTp));
    if (!workspaceSize) FAIL(NULLPTR, "workspaceSize is NULL");
    if (!executor) FAIL(NULLPTR, "executor is NULL");
    for (int i = 0; i < n_raw; i++)
        if (raw[i] && !moe_tensor_live(raw[i]))
            FAIL(INVALID, "%s (%p) is not a live aclTensor (destroyed or never created)", raw_names[i], raw[i]);
    return 0;
}

int moe_check_comm_size(const char *api, const char *group, const char *param, int64_t want, const char *role) {
    const int dev = sim_current_device();
    const SimComm *c = dev >= 0 && group ? sim_comm_lookup(group, dev) : NULL;
    if (c && sim_comm_size(c) != want)
        FAIL(TILING, "%s = %lld but the %s communicator \"%s\" has %d ranks (documented rule: %s equals the number "
                     "of ranks of its communicator; the CANN tiling does not compare them, the real device would hang "
                     "or fault)", param, (long long)want, role, group, sim_comm_size(c), param);
    return 0;
}

int moe_check_comm_sizes(const char *api, const MoeAttrs *a, const char *groupEp, const char *groupTp) {
    int rc = moe_check_comm_size(api, groupEp, "epWorldSize", a->ep, "EP");
    if (!rc && a->tp == 2) rc = moe_check_comm_size(api, groupTp, "tpWorldSize", a->tp, "TP");
    return rc;
}

int moe_check_expert_sum(const char *api, const MoeAttrs *a) {
    int64_t sum;
    if (__builtin_add_overflow(a->zero, a->copy, &sum) || __builtin_add_overflow(sum, a->cnst, &sum) ||
        __builtin_add_overflow(sum, a->M, &sum) || sum > INT32_MAX)
        FAIL(TILING, "moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum exceeds INT32_MAX (2147483647)");
    return 0;
}

int moe_check_world(const char *api, const MoeAttrs *a, const char *groupTp, int combine) {
    const int64_t ep = a->ep, tp = a->tp;
    if (ep < 2 || ep > (a->hier ? 256 : 768))
        FAIL(TILING, "epWorldSize = %lld is outside [2, %d]%s", (long long)ep, a->hier ? 256 : 768,
             a->hier ? " (commAlg = \"hierarchy\")" : "");
    if (a->hier && ep % 16 != 0)
        FAIL(TILING, "epWorldSize = %lld must be a multiple of 16 with commAlg = \"hierarchy\"", (long long)ep);
    if (a->rank < 0 || a->rank >= ep)
        FAIL(TILING, "epRankId = %lld is outside [0, epWorldSize = %lld)", (long long)a->rank, (long long)ep);
    if (moe_has(a, SIM_CHANGE_TP_REMOVED)) {
        if (tp >= 2 || (combine && tp < 0))
            FAIL(TILING, "tpWorldSize = %lld is not supported: CANN %s has no TP (tpWorldSize %s; TP = 2 was removed "
                         "in 9.1.0)", (long long)tp, a->rel.text, combine ? "in [0, 1]" : "< 2");
        if (combine && a->tp_rank != 0)
            FAIL(TILING, "tpRankId = %lld must be 0 (CANN %s has no TP)", (long long)a->tp_rank, a->rel.text);
        return 0;
    }
    if (tp < 0 || tp > 2) FAIL(TILING, "tpWorldSize = %lld is outside [0, 2]", (long long)tp);
    if (tp > 1) {
        if (a->tp_rank < 0 || a->tp_rank >= tp)
            FAIL(TILING, "tpRankId = %lld is outside [0, tpWorldSize = %lld)", (long long)a->tp_rank, (long long)tp);
        if (strnlen(groupTp, MOE_GROUP_NAME_MAX) == 0)
            FAIL(TILING, "groupTp is \"\" but tpWorldSize = 2 needs the TP group name (length in [1, 127])");
    } else if (a->tp_rank != 0) {
        FAIL(TILING, "tpRankId = %lld must be 0 when tpWorldSize = %lld (no TP)", (long long)a->tp_rank, (long long)tp);
    }
    return 0;
}

int moe_check_experts(const char *api, const MoeAttrs *a, int64_t shard, const char *m_range) {
    const int64_t ep = a->ep, M = a->M, R = a->R;
    if (shard != 0) FAIL(TILING, "expertShardType = %lld; only 0 (shared-expert ranks first) is supported", (long long)shard);
    if (a->S_attr < 0 || a->S_attr > 4) FAIL(TILING, "sharedExpertNum = %lld is outside [0, 4]", (long long)a->S_attr);
    if (R < 0 || R >= ep)
        FAIL(TILING, "sharedExpertRankNum = %lld is outside [0, epWorldSize = %lld)", (long long)R, (long long)ep);
    if (M <= 0 || M > 1024) FAIL(TILING, "moeExpertNum = %lld is outside %s", (long long)M, m_range);
    if (a->hier && M > 512)
        FAIL(TILING, "moeExpertNum = %lld is outside (0, 512] (commAlg = \"hierarchy\")", (long long)M);
    if (a->hier && R != 0)
        FAIL(TILING, "sharedExpertRankNum = %lld must be 0 with commAlg = \"hierarchy\"", (long long)R);
    return 0;
}

int moe_check_shared(const char *api, const MoeAttrs *a) {
    const MoeShape *sh = &a->sh;
    const int64_t R = a->R;
    if (sh->S == 0 && R > 0)
        FAIL(TILING, "sharedExpertRankNum = %lld but sharedExpertNum = %lld (0 after normalisation); both must be 0 or "
                     "both > 0", (long long)R, (long long)a->S_attr);
    if (sh->S > 0 && R == 0)
        FAIL(TILING, "sharedExpertNum = %lld needs sharedExpertRankNum > 0 (sharedExpertNum = 1 with "
                     "sharedExpertRankNum = 0 means no shared expert)", (long long)a->S_attr);
    if (sh->S > 0 && R % sh->S != 0)
        FAIL(TILING, "sharedExpertRankNum = %lld is not divisible by sharedExpertNum = %lld", (long long)R, (long long)sh->S);
    return 0;
}

int moe_check_layout(const char *api, const MoeAttrs *a, int has_elastic) {
    const int64_t ep = a->ep, M = a->M, R = a->R, tp = a->tp;
    if (M % (ep - R) != 0)
        FAIL(TILING, "moeExpertNum = %lld is not divisible by epWorldSize - sharedExpertRankNum = %lld", (long long)M,
             (long long)(ep - R));
    if (moe_has(a, SIM_CHANGE_L_EP_MAX_2048) && a->sh.L * ep > 2048)
        FAIL(TILING, "localMoeExpertNum * epWorldSize = %lld * %lld = %lld exceeds 2048 (CANN %s)", (long long)a->sh.L,
             (long long)ep, (long long)(a->sh.L * ep), a->rel.text);
    if (tp > 1 && a->sh.L > 1)
        FAIL(TILING, "tpWorldSize = 2 needs one MoE expert per rank, but moeExpertNum / (epWorldSize - "
                     "sharedExpertRankNum) = %lld", (long long)a->sh.L);
    if (tp > 1 && has_elastic) FAIL(TILING, "elasticInfoOptional is not supported with tpWorldSize = 2");
    return 0;
}

int moe_check_bs(const char *api, const MoeAttrs *a, const char *bs_name, const char *bs_sym, int has_mask) {
    const int64_t bs = a->bs, ep = a->ep, gbs = a->global_bs;
    const int64_t bs_max = a->hier ? 256 : 512;
    if (bs < 1 || bs > bs_max)
        FAIL(TILING, "%s = %lld is outside [1, %lld]%s", bs_name, (long long)bs, (long long)bs_max,
             a->hier ? " (commAlg = \"hierarchy\")" : "");
    if (gbs != 0 && (gbs < bs * ep || gbs % ep != 0))
        FAIL(TILING, "globalBs = %lld must be 0 or a multiple of epWorldSize = %lld that is >= %s * epWorldSize = %lld",
             (long long)gbs, (long long)ep, bs_sym, (long long)(bs * ep));
    if (gbs > bs * ep && has_mask)
        FAIL(TILING, "globalBs = %lld > %s * epWorldSize = %lld (different %s per rank) cannot be combined with "
                     "xActiveMaskOptional", (long long)gbs, bs_sym, (long long)(bs * ep), bs_sym);
    return 0;
}

/* The window size (MB) the tiling compares with, and where it comes from (for the message). */
static uint64_t window_mb(const MoeAttrs *a, char *what, size_t cap) {
    const int dev = sim_current_device();
    const SimComm *c = moe_has(a, SIM_CHANGE_WINDOW_FROM_COMM) && !a->hier && dev >= 0
                           ? sim_comm_lookup(a->group_ep, dev) : NULL;
    if (c && sim_comm_buffer_mb(c)) {
        snprintf(what, cap, "the HCCL buffer of communicator \"%s\" (HCCL_BUFFSIZE or HcclCommConfig.hcclBufferSize "
                            "when it was created; CANN %s reads the communicator's buffer)", a->group_ep, a->rel.text);
        return sim_comm_buffer_mb(c);
    }
    snprintf(what, cap, "HCCL_BUFFSIZE");
    return moe_hccl_buffsize_mb();
}

int moe_check_win_size(const char *api, const MoeAttrs *a, int fm2) {
    const MoeShape *sh = &a->sh;
    char what[512];
    const uint64_t mb = window_mb(a, what, sizeof what);
    if (a->hier) {
        /* moe_distribute_check_win_size.h (NEW 5778144) CheckActualWinSize, layered branch */
        if (a->bs != sh->max_bs)
            FAIL(TILING, "globalBs / epWorldSize = %lld differs from BS = %lld: commAlg = \"hierarchy\" needs the same "
                         "BS on every rank", (long long)sh->max_bs, (long long)a->bs);
        const uint64_t k = (uint64_t)a->k, h = (uint64_t)a->h;
        const uint64_t need = (uint64_t)a->M * (uint64_t)sh->max_bs * (h * 2 + (3 * (k + 7) / 8 * 8) * 4 + 64) +
                              404ull * 1024 * 1024;
        if (need > mb * 1024 * 1024)
            FAIL(TILING, "HCCL_BUFFSIZE = %llu MB is too small for commAlg = \"hierarchy\": it needs %llu MB "
                         "(moeExpertNum * maxBs * (2H + (3 * (K + 7) / 8 * 8) * 4 + 64) + 404 MB)",
                 (unsigned long long)mb, (unsigned long long)(need / (1024 * 1024) + 1));
        return 0;
    }
    uint64_t need = moe_hccl_window_need((uint64_t)sh->max_bs, (uint64_t)a->h, (uint64_t)a->ep, (uint64_t)sh->L,
                                         (uint64_t)a->k, (uint64_t)sh->S, fm2);
    if (need > mb * 1024 * 1024)
        FAIL(TILING, "%s = %llu MB is too small: this configuration needs %llu MB "
                     "(2 * (maxBs * dispatchTokenSize * epWorldSize * localExpertNum + maxBs * combineTokenSize * "
                     "(K + sharedExpertNum)) = %llu bytes); set HCCL_BUFFSIZE >= %llu",
             what, (unsigned long long)mb, (unsigned long long)(need / (1024 * 1024) + 1), (unsigned long long)need,
             (unsigned long long)(need / (1024 * 1024) + 1));
    return 0;
}

int moe_check_perf_info(const char *api, const MoeAttrs *a, const MoeTensor *perf) {
    if (!perf->present) return 0;
    if (a->hier) FAIL(TILING, "performanceInfoOptional must be NULL with commAlg = \"hierarchy\"");
    if (moe_ndim(perf) != 1) FAIL(TILING, "performanceInfoOptional must be 1-D, got %d-D", moe_ndim(perf));
    if (moe_is_nz(perf)) FAIL(TILING, "performanceInfoOptional has format FRACTAL_NZ; only ND is supported");
    if (moe_dim(perf, 0) != a->ep)
        FAIL(TILING, "performanceInfoOptional dim0 = %lld must equal epWorldSize = %lld", (long long)moe_dim(perf, 0),
             (long long)a->ep);
    return 0;
}

#undef FAIL
#undef NULLPTR
#undef INVALID
#undef TILING

void moe_tensor_capture_arg(MoeTensor *dst, const struct aclTensor *t) {
    moe_tensor_capture(dst, moe_tensor_live(t) ? t : NULL);
    if (t && !dst->present) dst->present = 1;
}

int moe_gws_finish(int rc, const char *gws, const char *run, uint64_t ws, MoeAttrs *a, const char *groupEp,
                   const char *groupTp, int (*fn)(aclOpExecutor *, SimStream *, void *), void *st,
                   uint64_t *workspaceSize, aclOpExecutor **executor) {
    if (rc) {
        free(st);
        return rc;
    }
    snprintf(a->group_ep, sizeof a->group_ep, "%s", groupEp);
    snprintf(a->group_tp, sizeof a->group_tp, "%s", groupTp);
    const int hier = a->hier;
    aclOpExecutor *ex = sim_executor_new(run, ws, fn, free, st);
    if (!ex) /* sim_executor_new released the state */
        return moe_fail(gws, ACLNN_ERR_INNER_CREATE_EXECUTOR, "could not create the executor");
    if (hier) moe_refuse_hierarchy(ex, a->rel.text); /* a lives on in st, which the executor owns */
    *workspaceSize = ws;
    *executor = ex;
    return 0;
}

/* ---- elastic ------------------------------------------------------------------------------------ */
void moe_elastic_free(MoeElastic *e) {
    free(e->part);
    free(e->table2);
    e->part = NULL;
    e->table2 = NULL;
}

int moe_elastic_load(MoeElastic *e, const MoeTensor *info, int64_t ep, int64_t rank, int64_t R, int64_t M,
                     int64_t S, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    e->ep = ep;
    e->R = R;
    e->M = M;
    e->me = rank;
    e->part = (int *)malloc(sizeof(int) * (size_t)ep);
    e->table2 = (int32_t *)malloc(sizeof(int32_t) * (size_t)ep);
    for (int64_t i = 0; i < ep; i++) {
        e->part[i] = (int)i;
        e->table2[i] = (int32_t)i;
    }
    e->n_part = (int)ep;
    int rc = 0;
    if (info && info->present) {
        int64_t n = moe_numel(info);
        int owned = 0;
        int32_t *v = NULL;
        if (n < 4 + 2 * ep) {
            snprintf(err, errlen, "elasticInfo has %lld elements, needs 4 + 2*epWorldSize = %lld", (long long)n,
                     (long long)(4 + 2 * ep));
            return -1;
        }
        v = (int32_t *)moe_gather(info, 0, 4 + 2 * ep, &owned);
        if (v[0] != 0) {
            const int32_t *t1 = v + 4, *t2 = v + 4 + ep;
            int64_t ep2 = v[1], r2 = v[2], m2 = v[3];
            e->active = 1;
            if (ep2 < 1 || ep2 > ep) {
                snprintf(err, errlen, "elasticInfo[1] (epWorldSize after scale-down) = %lld, must be in [1, %lld]",
                         (long long)ep2, (long long)ep);
                rc = -1;
            } else if (r2 < 0 || r2 >= ep2) {
                snprintf(err, errlen, "elasticInfo[2] (sharedExpertRankNum after scale-down) = %lld, must be in [0, %lld)",
                         (long long)r2, (long long)ep2);
                rc = -1;
            } else if (m2 <= 0 || m2 % (ep2 - r2) != 0) {
                snprintf(err, errlen,
                         "elasticInfo[3] (moeExpertNum after scale-down) = %lld must be > 0 and divisible by "
                         "elasticInfo[1] - elasticInfo[2] = %lld",
                         (long long)m2, (long long)(ep2 - r2));
                rc = -1;
            } else if (r2 > 0 && (S <= 0 || r2 % S != 0)) {
                snprintf(err, errlen,
                         "elasticInfo[2] (sharedExpertRankNum after scale-down) = %lld needs sharedExpertNum = %lld "
                         "> 0 dividing it",
                         (long long)r2, (long long)S);
                rc = -1;
            } else if (t1[rank] < 0) {
                snprintf(err, errlen,
                         "elasticInfo Table1[epRankId=%lld] = %d: this rank was removed by the scale-down and must "
                         "not call the operator",
                         (long long)rank, t1[rank]);
                rc = -1;
            }
            int n_alive = 0;
            for (int64_t o = 0; rc == 0 && o < ep; o++) {
                if (t1[o] == -1) continue;
                if (t1[o] < 0 || t1[o] >= ep2 || t2[t1[o]] != o) {
                    snprintf(err, errlen,
                             "elasticInfo tables disagree: Table1[%lld] = %d but Table2[%d] = %d (need Table2[Table1[r]] "
                             "== r, new ids in [0, %lld))",
                             (long long)o, t1[o], t1[o] >= 0 && t1[o] < ep ? t1[o] : -1,
                             t1[o] >= 0 && t1[o] < ep ? t2[t1[o]] : -1, (long long)ep2);
                    rc = -1;
                    break;
                }
                e->part[n_alive++] = (int)o;
            }
            if (rc == 0 && n_alive != ep2) {
                snprintf(err, errlen, "elasticInfo lists %d surviving ranks in Table1 but elasticInfo[1] = %lld", n_alive,
                         (long long)ep2);
                rc = -1;
            }
            if (rc == 0) {
                e->n_part = n_alive;
                e->ep = ep2;
                e->R = r2;
                e->M = m2;
                e->me = t1[rank];
                for (int64_t i = 0; i < ep2; i++) e->table2[i] = t2[i];
            }
        }
        if (owned) free(v);
    }
    e->L = (e->ep - e->R) > 0 ? e->M / (e->ep - e->R) : 0;
    e->rpse = (S > 0 && e->R > 0) ? e->R / S : 0;
    return rc;
}

/* ---- CANN 9.x additions --------------------------------------------------------------------------- */
int64_t moe_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void moe_perf_merge(const MoeTensor *perf, const int64_t *wait_us, int64_t ep) {
    int owned = 0;
    int64_t *v = (int64_t *)moe_gather(perf, 0, ep, &owned);
    if (!v) return;
    int64_t *out = owned ? v : (int64_t *)malloc(sizeof(int64_t) * (size_t)ep);
    if (!out) return;
    for (int64_t r = 0; r < ep; r++) {
        int32_t w[2]; /* little endian: w[0] the low word */
        memcpy(w, &v[r], sizeof w);
        const int64_t us = wait_us[r] > INT32_MAX ? INT32_MAX : wait_us[r] < 0 ? 0 : wait_us[r];
        if ((int32_t)us > w[0]) w[0] = (int32_t)us;
        if (w[1] < 0) w[1] = 0;
        memcpy(&out[r], w, sizeof w);
    }
    moe_scatter(perf, 0, ep, out);
    free(out);
}

void moe_refuse_hierarchy(aclOpExecutor *ex, const char *release) {
    sim_executor_refuse(ex, SIM_ACLNN_ERR_INNER_FIND_KERNEL_ERROR,
                        "commAlg = \"hierarchy\" is accepted by CANN %s (its documented rules were checked) but its "
                        "kernels (the layered A3 templates) are not emulated by the simulator; use \"\", "
                        "\"fullmesh_v1\" or \"fullmesh_v2\"", release);
}

/* ---- rendezvous ---------------------------------------------------------------------------------- */
int moe_exchange(const char *api, SimComm *c, const int *participants, int n, void *payload, void **peers,
                 SimStream *s) {
    int rc = sim_comm_exchange(c, participants, n, payload, peers, sim_hang_timeout_us(), s);
    if (rc == 0) return 0;
    char msg[1024];
    const char *m = sim_take_error();
    snprintf(msg, sizeof msg, "%s", m ? m : "collective failed");
    if (rc == SIM_ERR_TIMEOUT)
        sim_set_error("%s: %s (ACLNN_SIM_HANG_TIMEOUT_MS); the real kernel would hang: every participating rank "
                      "must launch the operator with matching arguments", api, msg);
    else
        sim_set_error("%s: %s", api, msg);
    return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
}

/* ---- the run on the stream ------------------------------------------------------------------------ */
int moe_run_begin(const char *api, const MoeAttrs *a, const MoeTensor *elastic, SimStream *strm, SimComm **epc,
                  SimComm **tpc, MoeElastic *el, char *err, size_t errlen) {
    const int dev = sim_stream_device(strm);
    *epc = sim_comm_lookup(a->group_ep, dev);
    *tpc = NULL;
    if (!*epc) {
        sim_set_error("%s: no HCCL communicator named \"%s\" has a member on device %d (groupEp)", api, a->group_ep,
                      dev);
        return SIM_ACL_ERROR_RT_PARAM_INVALID;
    }
    if (sim_comm_size(*epc) != a->ep) {
        sim_set_error("%s: communicator \"%s\" has %d ranks but epWorldSize = %lld", api, a->group_ep,
                      sim_comm_size(*epc), (long long)a->ep);
        return SIM_ACL_ERROR_RT_PARAM_INVALID;
    }
    if (a->tp == 2) {
        *tpc = sim_comm_lookup(a->group_tp, dev);
        if (!*tpc || sim_comm_size(*tpc) != 2) {
            sim_set_error("%s: %s \"%s\" on device %d (groupTp, tpWorldSize = 2)", api,
                          *tpc ? "the TP communicator must have 2 ranks:" : "no HCCL communicator named", a->group_tp,
                          dev);
            return SIM_ACL_ERROR_RT_PARAM_INVALID;
        }
    }
    if (moe_elastic_load(el, elastic, a->ep, a->rank, a->R, a->M, a->sh.S, err, errlen) != 0) {
        moe_elastic_free(el);
        sim_set_error("%s: %s", api, err);
        return SIM_ACL_ERROR_RT_AICORE_EXCEPTION;
    }
    if (sim_comm_rank(*epc) != a->rank)
        snprintf(err, errlen, "epRankId = %lld but this device is rank %d of communicator \"%s\"", (long long)a->rank,
                 sim_comm_rank(*epc), a->group_ep);
    if (!err[0] && *tpc && sim_comm_rank(*tpc) != a->tp_rank)
        snprintf(err, errlen, "tpRankId = %lld but this device is rank %d of TP communicator \"%s\"",
                 (long long)a->tp_rank, sim_comm_rank(*tpc), a->group_tp);
    return 0;
}

void moe_pub_head(MoePubHead *h, const MoeAttrs *a, const MoeElastic *el, int32_t x_dtype) {
    *h = (MoePubHead){.orig_rank = (int32_t)a->rank, .new_rank = (int32_t)el->me, .M = a->M, .ep = a->ep, .R = a->R,
                      .S = a->sh.S, .Z = a->zero + a->copy + a->cnst, .tp = a->tp, .x_dtype = x_dtype,
                      .elastic_active = el->active, .ep_eff = el->ep, .R_eff = el->R, .M_eff = el->M};
}

int moe_differs(const MoePubHead *me, const MoePubHead *p, const char *name, int64_t mine, int64_t theirs,
                char *err, size_t n) {
    if (mine == theirs) return 0;
    snprintf(err, n, "%s differs between EP ranks: %lld on rank %d, %lld on rank %d (all ranks must agree)", name,
             (long long)mine, me->orig_rank, (long long)theirs, p->orig_rank);
    return -1;
}

/* moe_differs over n fields in order: names[i] is mine[i] here and theirs[i] on p */
static int differs_in_order(const MoePubHead *me, const MoePubHead *p, int n, const char *const *names,
                            const int64_t *mine, const int64_t *theirs, char *err, size_t len) {
    for (int i = 0; i < n; i++)
        if (moe_differs(me, p, names[i], mine[i], theirs[i], err, len)) return -1;
    return 0;
}

int moe_differs_world(const MoePubHead *me, const MoePubHead *p, const char *x_name, char *err, size_t n) {
    char dt[64];
    snprintf(dt, sizeof dt, "%s dtype", x_name);
    const char *const names[] = {dt, "moeExpertNum", "epWorldSize", "sharedExpertRankNum", "sharedExpertNum (normalised)",
                                 "zeroExpertNum + copyExpertNum + constExpertNum"};
    const int64_t mine[] = {me->x_dtype, me->M, me->ep, me->R, me->S, me->Z};
    const int64_t theirs[] = {p->x_dtype, p->M, p->ep, p->R, p->S, p->Z};
    return differs_in_order(me, p, 6, names, mine, theirs, err, n);
}

int moe_differs_elastic(const MoePubHead *me, const MoePubHead *p, char *err, size_t n) {
    static const char *const names[] = {"elasticInfo[0] (scale-down flag)", "elasticInfo[1]", "elasticInfo[2]",
                                        "elasticInfo[3]"};
    const int64_t mine[] = {me->elastic_active, me->ep_eff, me->R_eff, me->M_eff};
    const int64_t theirs[] = {p->elastic_active, p->ep_eff, p->R_eff, p->M_eff};
    return differs_in_order(me, p, 4, names, mine, theirs, err, n);
}

int moe_peer_failed(const MoePubHead *me, const MoePubHead *p, char *err, size_t n) {
    if (!p->err[0] || p == me) return 0;
    snprintf(err, n, "EP rank %d failed: %.440s", p->orig_rank, p->err);
    return 1;
}
