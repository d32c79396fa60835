/*
 * Pure compute of the simulated MoE operators; see op_moe_kernels.h.
 * Spec references: ../shared/spec/dispatch-v3.md (DS §n), combine-addrmsnorm-barrier.md (CS §n).
 */
#pragma GCC optimize("fp-contract=off")
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "op_moe_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__FAST_MATH__)
#error "op_moe_kernels.c must not be compiled with -ffast-math (bit-exact float32 arithmetic)"
#endif

/* ---- conversions ------------------------------------------------------------------------------ */
uint16_t moe_f32_to_bf16(float f) {
    uint32_t u = moe_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return MOE_BF16_NAN; /* NaN sign/payload: docs/decisions.md */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float moe_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1fu) return moe_bits_f32(sign | 0x7f800000u | (m << 13));
    if (e != 0) return moe_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return moe_bits_f32(sign);
    /* subnormal: m * 2^-24, exact in fp32 */
    int sh = 0;
    while (!(m & 0x400u)) { m <<= 1; sh++; }
    m &= 0x3ffu;
    return moe_bits_f32(sign | ((uint32_t)(113 - sh) << 23) | (m << 13));
}

uint16_t moe_f32_to_fp16(float f) {
    uint32_t u = moe_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return MOE_FP16_NAN;                /* NaN sign/payload: docs/decisions.md */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 (incl. inf) -> inf */
    if (a >= 0x38800000u) {                                  /* normal fp16 */
        uint32_t h = ((((a >> 23) - 112u) << 10) | ((a & 0x7fffffu) >> 13));
        uint32_t rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (a <= 0x33000000u) return sign; /* <= 2^-25: rounds to (signed) zero */
    {
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        int e = (int)(a >> 23) - 127;  /* -25 .. -15 */
        int shift = -(e + 1);          /* 24 .. 14 */
        uint32_t hm = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1u))) hm++;
        return (uint16_t)(sign | hm);
    }
}

int8_t moe_f32_to_int8_rne(float f) {
    if (f != f) return 0;
    float r = rintf(f); /* default rounding mode: to nearest, ties to even */
    if (r > 127.0f) return 127;
    if (r < -128.0f) return -128;
    return (int8_t)r;
}

/* ---- DispatchV3 quantisation (DS §6) ------------------------------------------------------------ */
void moe_quant_row(const uint16_t *x, int is_bf16, const float *smooth, int64_t h, int8_t *q,
                   float *scale) {
    /* xf is recomputed in the second pass (same operations, same bits) to avoid a buffer */
    float amax = 0.0f;
    for (int64_t i = 0; i < h; i++) {
        float v = moe_x_to_f32(x[i], is_bf16);
        if (smooth) v = v * smooth[i];
        amax = moe_max_nan(amax, fabsf(v));
    }
    float qs = 127.0f / amax;
    /* NaN policy (docs/decisions.md): the max propagates NaN, so a row holding one has q = NaN, int8 0 and a NaN
     * scale; a row whose q is not finite (NaN, amax 0 or 127/amax overflows) is int8 0, as in the reference */
    if (!isfinite(qs)) {
        memset(q, 0, (size_t)h);
        *scale = moe_canon_f32(1.0f / qs);
        return;
    }
    for (int64_t i = 0; i < h; i++) {
        float v = moe_x_to_f32(x[i], is_bf16);
        if (smooth) v = v * smooth[i];
        float y = v * qs;
        q[i] = moe_f32_to_int8_rne(y);
    }
    *scale = 1.0f / qs;
}

/* ---- DispatchV3 receiver side (DS §3) ------------------------------------------------------------ */
int moe_token_processed(const uint8_t *mask, int mask_ndim, int64_t k, int64_t t, int64_t n_prefix) {
    if (mask_ndim == 1) return t < n_prefix;
    if (mask_ndim == 2) {
        for (int64_t j = 0; j < k; j++)
            if (mask[t * k + j]) return 1;
        return 0;
    }
    return 1;
}

int64_t moe_mask_prefix(const uint8_t *mask, int mask_ndim, int64_t bs) {
    if (mask_ndim != 1) return bs;
    int64_t n = 0;
    for (int64_t t = 0; t < bs; t++) n += mask[t] ? 1 : 0;
    return n;
}

/* Is pair (t,k) sent to its MoE expert (DS §3.1 step 2)? */
static int src_pair_valid(const MoeDispatchSrc *s, const MoeDispatchCfg *c, int64_t t, int64_t k,
                          int64_t n_prefix) {
    if (s->mask_ndim == 1 && t >= n_prefix) return 0;
    if (s->mask_ndim == 2 && !s->mask[t * s->k + k]) return 0;
    if (c->z_total > 0 && (int64_t)s->expert_ids[t * s->k + k] >= c->M) return 0;
    return 1;
}

static void emit_row(const MoeDispatchCfg *c, const MoeDispatchSrc *s, int64_t src, int64_t t,
                     int64_t kslot, int64_t smooth_row, int64_t row, MoeDispatchOut *o) {
    const uint16_t *xr = s->x + t * c->h;
    if (c->quant_mode == 2) {
        int8_t *dst = (int8_t *)o->expand_x + row * c->h;
        const float *sm = s->scales ? s->scales + smooth_row * c->h : NULL;
        float sc = 0.0f;
        moe_quant_row(xr, s->x_is_bf16, sm, c->h, dst, &sc);
        if (o->dyn_scales) o->dyn_scales[row] = sc;
    } else {
        memcpy((uint16_t *)o->expand_x + row * c->h, xr, (size_t)c->h * sizeof(uint16_t));
    }
    o->assist[3 * row + 0] = (int32_t)src;
    o->assist[3 * row + 1] = (int32_t)t;
    o->assist[3 * row + 2] = (int32_t)kslot;
}

/* Walks the (src, t, k) pairs routed to the local experts base .. base+L-1 of a MoE rank, in source,
 * token, k order. Without fill: counts them per block b = (e - base) * ep + src into cnt. With fill:
 * emits each one as row fill[b]++. Returns the number of pairs. */
static int64_t local_pairs(const MoeDispatchCfg *c, const MoeDispatchSrc *const *srcs, int64_t base, int64_t *cnt,
                              int64_t *fill, MoeDispatchOut *o) {
    const int64_t ep = c->ep, L = c->L;
    int64_t total = 0;
    for (int64_t src = 0; src < ep; src++) {
        const MoeDispatchSrc *s = srcs[src];
        if (!s) continue;
        int64_t np = moe_mask_prefix(s->mask, s->mask_ndim, s->bs);
        for (int64_t t = 0; t < s->bs; t++)
            for (int64_t k = 0; k < s->k; k++) {
                int64_t e = s->expert_ids[t * s->k + k];
                if (e < base || e >= base + L || !src_pair_valid(s, c, t, k, np)) continue;
                int64_t b = (e - base) * ep + src;
                if (fill) emit_row(c, s, src, t, k, c->S + e, fill[b]++, o);
                else cnt[b]++;
                total++;
            }
    }
    return total;
}

int moe_dispatch_receive(const MoeDispatchCfg *c, const MoeDispatchSrc *const *srcs, int64_t me,
                         MoeDispatchOut *o) {
    const int64_t ep = c->ep;
    o->n_rows = o->n_ep_recv = o->n_token_nums = o->need_rows = 0;
    o->need_ep_recv = me < c->R ? ep : c->L * ep;
    o->need_token_nums = me < c->R ? 1 : c->L;

    if (me < c->R) {
        /* shared-expert rank (DS §5): blocks b = src, rows = every active token of matching srcs */
        int64_t s_idx = c->rpse > 0 ? me / c->rpse : 0;
        int64_t *cnt = (int64_t *)calloc((size_t)ep, sizeof(int64_t));
        int64_t total = 0;
        for (int64_t src = 0; src < ep; src++) {
            const MoeDispatchSrc *s = srcs[src];
            if (c->S <= 0 || c->rpse <= 0 || (src % c->rpse) != (me % c->rpse) || !s) continue;
            int64_t np = moe_mask_prefix(s->mask, s->mask_ndim, s->bs);
            for (int64_t t = 0; t < s->bs; t++) cnt[src] += moe_token_processed(s->mask, s->mask_ndim, s->k, t, np);
            total += cnt[src];
        }
        o->need_rows = total;
        if (total > o->cap_rows || ep > o->ep_recv_cap || o->token_nums_cap < 1) {
            free(cnt);
            return -1;
        }
        int64_t row = 0, cum = 0;
        for (int64_t src = 0; src < ep; src++) {
            cum += cnt[src];
            o->ep_recv[src] = (int32_t)cum;
            if (!cnt[src]) continue;
            const MoeDispatchSrc *s = srcs[src];
            int64_t np = moe_mask_prefix(s->mask, s->mask_ndim, s->bs);
            for (int64_t t = 0; t < s->bs; t++)
                if (moe_token_processed(s->mask, s->mask_ndim, s->k, t, np))
                    emit_row(c, s, src, t, c->k + s_idx, s_idx, row++, o);
        }
        o->token_nums[0] = total;
        o->n_rows = total;
        o->n_ep_recv = ep;
        o->n_token_nums = 1;
        free(cnt);
        return 0;
    }

    /* MoE rank: local experts e = base .. base+L-1, blocks b = j*ep + src */
    const int64_t L = c->L;
    const int64_t base = (me - c->R) * L;
    const int64_t nb = L * ep;
    int64_t *cnt = (int64_t *)calloc((size_t)nb, sizeof(int64_t));
    const int64_t total = local_pairs(c, srcs, base, cnt, NULL, o);
    o->need_rows = total;
    if (total > o->cap_rows || nb > o->ep_recv_cap || L > o->token_nums_cap) {
        free(cnt);
        return -1;
    }
    int64_t *fill = (int64_t *)malloc((size_t)nb * sizeof(int64_t));
    int64_t cum = 0;
    for (int64_t b = 0; b < nb; b++) {
        fill[b] = cum;
        cum += cnt[b];
        o->ep_recv[b] = (int32_t)cum;
    }
    local_pairs(c, srcs, base, cnt, fill, o);
    int64_t run = 0;
    for (int64_t j = 0; j < L; j++) {
        int64_t cj = 0;
        for (int64_t src = 0; src < ep; src++) cj += cnt[j * ep + src];
        run += cj;
        o->token_nums[j] = c->token_nums_type == 0 ? run : cj;
    }
    o->n_rows = total;
    o->n_ep_recv = nb;
    o->n_token_nums = L;
    free(cnt);
    free(fill);
    return 0;
}

/* ---- Combine (CS §3, §6, §7) ------------------------------------------------------------------- */
int64_t moe_combine_collect(const MoeCombineSrc *const *srcs, int64_t n_src, int64_t me, int64_t bs,
                            int64_t kslots, const uint16_t **slots, uint8_t *counts) {
    int64_t mapped = 0;
    for (int64_t i = 0; i < bs * kslots; i++) slots[i] = NULL;
    if (counts) memset(counts, 0, (size_t)(bs * kslots));
    for (int64_t p = 0; p < n_src; p++) {
        const MoeCombineSrc *s = srcs[p];
        if (!s) continue;
        for (int64_t r = 0; r < s->n_rows; r++) {
            const int32_t *tr = s->triples + 3 * r;
            if (tr[0] != me || tr[1] < 0 || tr[1] >= bs || tr[2] < 0 || tr[2] >= kslots) continue;
            const int64_t at = (int64_t)tr[1] * kslots + tr[2];
            slots[at] = s->rows + r * s->h;
            if (counts && counts[at] < 2) counts[at]++;
            mapped++;
        }
    }
    return mapped;
}

void moe_int8_roundtrip(const uint16_t *row, int64_t h, int is_bf16, uint16_t *out) {
    const float inv127 = 1.0f / 127.0f; /* fp32(1/127) = 0x3c010204 */
    for (int64_t g = 0; g < h; g += 8) {
        int64_t n = h - g < 8 ? h - g : 8;
        float v[8];
        float amax = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            v[i] = moe_x_to_f32(row[g + i], is_bf16);
            amax = moe_max_nan(amax, fabsf(v[i])); /* BlockReduceMax: a NaN in the group makes the group's max NaN */
        }
        float s = amax * inv127;
        uint16_t sx = moe_f32_to_x(s, is_bf16);
        float sxf = moe_x_to_f32(sx, is_bf16);
        for (int64_t i = 0; i < n; i++) {
            float d = v[i] / s;
            float d16 = moe_fp16_to_f32(moe_f32_to_fp16(d));
            int8_t q = moe_f32_to_int8_rne(d16);
            float deq = (float)q * sxf;
            out[g + i] = moe_f32_to_x(deq, is_bf16);
        }
    }
}

static void acc_add_row_weighted(float *acc, const uint16_t *row, int is_bf16, float w, int64_t h) {
    for (int64_t i = 0; i < h; i++) {
        float m = moe_x_to_f32(row[i], is_bf16) * w;
        acc[i] = acc[i] + m;
    }
}

static void acc_add_row(float *acc, const uint16_t *row, int is_bf16, int64_t h) {
    for (int64_t i = 0; i < h; i++) acc[i] = acc[i] + moe_x_to_f32(row[i], is_bf16);
}

/* acc += fp32(row * w), or acc += row when the combine has no expertScales */
static void acc_add_term(float *acc, const float *row, const MoeCombineCfg *c, float w) {
    for (int64_t i = 0; i < c->h; i++) {
        float m = c->unweighted ? row[i] : row[i] * w;
        acc[i] = acc[i] + m;
    }
}

static void acc_add_x_row(float *acc, const uint16_t *row, const MoeCombineCfg *c, float w) {
    if (c->unweighted) acc_add_row(acc, row, c->is_bf16, c->h);
    else acc_add_row_weighted(acc, row, c->is_bf16, w, c->h);
}

int moe_combine_token(const MoeCombineCfg *c, const MoeCombineToken *tk, float *acc, void *scratch) {
    const int64_t h = c->h;
    uint16_t *tmp = (uint16_t *)scratch;
    float *term = (float *)((char *)scratch + (((size_t)h * sizeof(uint16_t) + 63) & ~(size_t)63));
    for (int64_t i = 0; i < h; i++) acc[i] = 0.0f;
    const int64_t moe_end = c->moe_num;
    const int64_t zero_end = moe_end + c->zero_num;
    const int64_t copy_end = zero_end + c->copy_num;
    const int64_t const_end = copy_end + c->const_num;
    for (int64_t k = 0; k < c->k; k++) {
        if (tk->mask2d && !tk->mask2d[k]) continue;
        const float w = c->unweighted ? 1.0f : tk->w[k];
        const int64_t id = tk->ids[k];
        if (id < moe_end) {
            const uint16_t *row = tk->slots[k];
            if (!row) return (int)(1 + k);
            if (c->int8_comm) {
                moe_int8_roundtrip(row, h, c->is_bf16, tmp);
                row = tmp;
            }
            acc_add_x_row(acc, row, c, w);
        } else if (id < zero_end) {
            /* zero expert: contributes nothing */
        } else if (id < copy_end) {
            if (tk->ori_x) acc_add_x_row(acc, tk->ori_x, c, w);
        } else if (id < const_end) {
            if (!tk->ori_x || !tk->alpha1 || !tk->alpha2 || !tk->const_v) continue;
            const int64_t ci = id - copy_end;
            if (c->const_softmax) {
                moe_const_expert_term(tk->ori_x, tk->alpha1 + ci * h, tk->alpha2 + ci * h, tk->const_v + ci * h, h,
                                      c->is_bf16, term, term + h);
                acc_add_term(acc, term, c, w);
                continue;
            }
            const float a1 = moe_x_to_f32(tk->alpha1[ci], c->is_bf16);
            const float a2 = moe_x_to_f32(tk->alpha2[ci], c->is_bf16);
            const uint16_t *v = tk->const_v + ci * h;
            for (int64_t i = 0; i < h; i++) {
                float t1 = moe_x_to_f32(tk->ori_x[i], c->is_bf16) * a1;
                float t2 = moe_x_to_f32(v[i], c->is_bf16) * a2;
                float tt = t1 + t2;
                float m = tt * w;
                acc[i] = acc[i] + m;
            }
        } /* else: id beyond every range is ignored */
    }
    for (int64_t j = 0; j < c->s; j++) {
        const uint16_t *row = tk->slots[c->k + j];
        if (!row) return (int)(1 + c->k + j);
        if (c->int8_comm) {
            moe_int8_roundtrip(row, h, c->is_bf16, tmp);
            row = tmp;
        }
        acc_add_row(acc, row, c->is_bf16, h);
    }
    if (tk->shared_x) acc_add_row(acc, tk->shared_x, c->is_bf16, h);
    return 0;
}

/* one repeat of the A3 vector reduction: v[0..m) (m <= 64, zero-padded to 64) summed by a binary tree of
 * adjacent pairs */
static float tree64(const float *v, int64_t m) {
    float buf[64];
    for (int64_t i = 0; i < 64; i++) buf[i] = i < m ? v[i] : 0.0f;
    for (int w = 32; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) buf[i] = buf[2 * i] + buf[2 * i + 1];
    return buf[0];
}

float moe_reduce_sum_a3(const float *v, int64_t n) {
    float total = 0.0f;
    for (int64_t g = 0; g < n; g += 64) {
        const float s = tree64(v + g, n - g < 64 ? n - g : 64);
        total = g == 0 ? s : total + s;
    }
    return total;
}

/* one level of AscendC Sum: each group of 64 of v[0..n) summed by the tree into out */
static int64_t sum_level(const float *v, int64_t n, float *out) {
    int64_t groups = 0;
    for (int64_t g = 0; g < n; g += 64) out[groups++] = tree64(v + g, n - g < 64 ? n - g : 64);
    return groups;
}

float moe_sum_a3(const float *v, int64_t n, float *tmp) {
    int64_t m = sum_level(v, n, tmp);
    while (m > 1) m = sum_level(tmp, m, tmp); /* in place: group g is read before out[g] is written */
    return tmp[0];
}

/* 2^e as a float, e in [-126, 127] */
static float pow2f(int e) { return moe_bits_f32((uint32_t)(e + 127) << 23); }

float moe_exp_f32(float x) {
    static const uint32_t P[6] = {0x39506967u, 0x3ab743ceu, 0x3c088908u, 0x3d2aa9c1u, 0x3e2aaaaau, 0x3f000000u};
    if (x != x) return moe_bits_f32(MOE_F32_NAN_BITS);
    if (x > 100.0f) return moe_bits_f32(0x7f800000u);
    if (x < -110.0f) return 0.0f;
    const float log2e = moe_bits_f32(0x3fb8aa3bu), c1 = moe_bits_f32(0x3f318000u), c2 = moe_bits_f32(0xb95e8083u);
    const float kf = rintf(x * log2e);
    float r = x - kf * c1;
    r = r - kf * c2;
    const float z = r * r;
    float p = moe_bits_f32(P[0]);
    for (int i = 1; i < 6; i++) {
        float t = p * r;
        p = t + moe_bits_f32(P[i]);
    }
    p = p * z;
    p = p + r;
    p = p + 1.0f;
    const int k = (int)kf;
    const int k1 = k >= 0 ? k / 2 : -((1 - k) / 2); /* floor(k / 2) */
    const float y = p * pow2f(k1);
    return y * pow2f(k - k1);
}

void moe_const_expert_term(const uint16_t *x, const uint16_t *alpha1, const uint16_t *alpha2, const uint16_t *v,
                           int64_t h, int is_bf16, float *out, float *scratch) {
    float a[2];
    const uint16_t *alpha[2] = {alpha1, alpha2};
    for (int j = 0; j < 2; j++) {
        for (int64_t i = 0; i < h; i++) out[i] = moe_x_to_f32(alpha[j][i], is_bf16) * moe_x_to_f32(x[i], is_bf16);
        a[j] = moe_sum_a3(out, h, scratch);
    }
    const float m = a[0] > a[1] ? a[0] : a[1];
    const float e1 = moe_exp_f32(a[0] - m), e2 = moe_exp_f32(a[1] - m);
    const float s = e1 + e2;
    const float w1 = e1 / s, w2 = e2 / s;
    for (int64_t i = 0; i < h; i++) {
        float t1 = moe_x_to_f32(x[i], is_bf16) * w1;
        float t2 = moe_x_to_f32(v[i], is_bf16) * w2;
        out[i] = t1 + t2;
    }
}

void moe_add_rms_norm_token(const float *acc, const uint16_t *residual, const uint16_t *gamma,
                            int64_t h, float eps, float inv_h, uint16_t *x_out, uint16_t *y_out,
                            float *rstd_out, float *scratch) {
    float *xs = scratch;
    float *sq = scratch + h;
    for (int64_t i = 0; i < h; i++) {
        float x = acc[i] + moe_bf16_to_f32(residual[i]);
        xs[i] = x;
        x_out[i] = moe_f32_to_bf16(x);
        float p = x * x;
        sq[i] = p * inv_h;
    }
    float ms = moe_reduce_sum_a3(sq, h);
    float me = ms + eps;
    float rt = sqrtf(me);
    float rstd = 1.0f / rt;
    *rstd_out = moe_canon_f32(rstd);
    for (int64_t i = 0; i < h; i++) {
        float a = xs[i] * rstd;
        float ab = moe_bf16_to_f32(moe_f32_to_bf16(a));
        float y = ab * moe_bf16_to_f32(gamma[i]);
        y_out[i] = moe_f32_to_bf16(y);
    }
}

uint64_t moe_hccl_window_need(uint64_t max_bs, uint64_t h, uint64_t ep, uint64_t l, uint64_t k,
                              uint64_t s, int fullmesh_v2) {
    const uint64_t cmb_tok = (h * 2 + 511) / 512 * 512;
    const uint64_t dsp_actual = (h * 2 + 31) / 32 * 32 + 44;
    const uint64_t dsp_tok = fullmesh_v2 ? (dsp_actual + 479) / 480 * 512 : (dsp_actual + 511) / 512 * 512;
    return (max_bs * dsp_tok * ep * l + max_bs * cmb_tok * (k + s)) * 2;
}
