/*
 * Shared op-layer helpers of the simulated MoE operators; see op_moe_common.h.
 */
#define _GNU_SOURCE
#include "op_moe_common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        memcpy((char *)sim_tensor_ptr(&t->d) + (size_t)start * isz, src, (size_t)count * isz);
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

uint64_t moe_hccl_buffsize_mb(void) {
    const char *e = getenv("HCCL_BUFFSIZE");
    uint16_t mb = 200;
    if (!e) return mb;
    /* std::stoi: skip blanks, optional sign, at least one digit, int range; else it throws and the
     * tiling keeps the default */
    char *end = NULL;
    errno = 0;
    long v = strtol(e, &end, 10);
    if (end == e || errno == ERANGE || v > INT_MAX || v < INT_MIN) return mb;
    mb = (uint16_t)(int)v;
    return mb;
}

void moe_shape_compute(MoeShape *sh, int64_t ep, int64_t rank, int64_t M, int64_t S_attr, int64_t R, int64_t bs,
                       int64_t k, int64_t global_bs, int has_elastic) {
    memset(sh, 0, sizeof *sh);
    sh->S = (R == 0 && S_attr == 1) ? 0 : S_attr;
    sh->L = (ep - R > 0) ? M / (ep - R) : 0;
    sh->rpse = (sh->S > 0 && R > 0) ? R / sh->S : 0;
    sh->global_bs = global_bs != 0 ? global_bs : bs * ep;
    sh->max_bs = ep > 0 ? sh->global_bs / ep : 0;
    sh->is_shared = rank < R;
    int64_t groups = sh->rpse > 0 ? (ep + sh->rpse - 1) / sh->rpse : 0;
    int64_t shared_a = sh->max_bs * groups;
    int64_t moe_a = sh->global_bs * (sh->L < k ? sh->L : k);
    if (has_elastic) sh->A = shared_a > moe_a ? shared_a : moe_a;
    else sh->A = sh->is_shared ? shared_a : moe_a;
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
