/*
 * Pure compute of the simulated MoE operators (DispatchV3, CombineV3, CombineAddRmsNormV2).
 *
 * Nothing in here touches threads, streams, communicators or aclTensor descriptors: every function
 * takes plain contiguous arrays, so it can be unit-tested standalone (tests/sim_c/moe_kernels_test.c)
 * against the worked examples of ../shared/spec. The op layer (op_moe_dispatch.c, op_moe_combine.c)
 * gathers device tensors into these arrays and does the rendezvous between ranks.
 *
 * Float arithmetic: every fp32 operation is a separately rounded IEEE binary32 operation, in the
 * order the A3 kernels use (see the spec sections cited at each function). The .c file must be
 * compiled without -ffast-math and without FMA contraction (it also says so with a pragma).
 */
#ifndef ACLNN_SIM_OP_MOE_KERNELS_H
#define ACLNN_SIM_OP_MOE_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- scalar conversions (round to nearest, ties to even; NaN stays NaN) ---------------------- */
static inline uint32_t moe_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float moe_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float moe_bf16_to_f32(uint16_t h) { return moe_bits_f32((uint32_t)h << 16); }
/* A NaN result is written as the canonical quiet NaN of its type (positive, payload 0): which NaN the A3
 * vector unit returns is not documented, and the reference writes the same bits (docs/decisions.md). */
#define MOE_BF16_NAN ((uint16_t)0x7fc0u)
#define MOE_FP16_NAN ((uint16_t)0x7e00u)
#define MOE_F32_NAN_BITS 0x7fc00000u
static inline float moe_canon_f32(float f) { return f != f ? moe_bits_f32(MOE_F32_NAN_BITS) : f; }
/* max of an accumulated maximum and a new value that propagates NaN (the A3 BlockReduceMax / ReduceMax
 * semantics aclnn_py assumes, docs/decisions.md): once NaN, the maximum stays NaN */
static inline float moe_max_nan(float acc, float v) {
    if (acc != acc) return acc;
    return (v != v || v > acc) ? v : acc;
}
uint16_t moe_f32_to_bf16(float f);
float moe_fp16_to_f32(uint16_t h);
uint16_t moe_f32_to_fp16(float f);
/* XType helpers: is_bf16 != 0 selects bf16, else fp16. */
static inline float moe_x_to_f32(uint16_t v, int is_bf16) {
    return is_bf16 ? moe_bf16_to_f32(v) : moe_fp16_to_f32(v);
}
static inline uint16_t moe_f32_to_x(float f, int is_bf16) {
    return is_bf16 ? moe_f32_to_bf16(f) : moe_f32_to_fp16(f);
}
/* round-half-even to an integer, saturated to int8; NaN -> 0 */
int8_t moe_f32_to_int8_rne(float f);

/* ---- DispatchV3 quantMode 2 (dispatch-v3.md §6) ---------------------------------------------- */
/* One row: xf = f32(x) [* smooth], amax = max|xf|, q = 127/amax, y = xf*q, int8 = rint(y),
 * scale = 1/q. smooth may be NULL. NaN policy (docs/decisions.md): the max propagates NaN, so a row holding
 * a NaN has q NaN, int8 0 and scale NaN (canonical); an inf gives amax inf, q 0, int8 0, scale inf; a row
 * whose q is not finite (NaN, amax 0, or 127/amax overflows) is int8 0 (scale 1/q). */
void moe_quant_row(const uint16_t *x, int is_bf16, const float *smooth, int64_t h, int8_t *q,
                   float *scale);

/* ---- DispatchV3 receiver side (dispatch-v3.md §3) -------------------------------------------- */
typedef struct {
    int64_t bs, h, k;
    int x_is_bf16;
    const uint16_t *x;          /* bs*h, row-major */
    const int32_t *expert_ids;  /* bs*k */
    const float *scales;        /* (S+M)*h smooth scales, or NULL */
    const uint8_t *mask;        /* NULL, (bs,) or (bs,k) bools (non-zero = True) */
    int mask_ndim;              /* 0, 1 or 2 */
    const float *expert_scales; /* bs*k expertScales, or NULL (only read by the op layer for expandScales) */
} MoeDispatchSrc;

typedef struct {
    /* effective (elastic-primed) routing values */
    int64_t ep, R, S, M, L, rpse;   /* rpse = R/S (0 when S == 0) */
    int64_t z_total;                /* zero+copy+const; > 0 drops ids >= M */
    int64_t k, h;
    int quant_mode;                 /* 0 or 2 */
    int token_nums_type;            /* 0 cumsum, 1 counts */
} MoeDispatchCfg;

typedef struct {
    /* buffers (contiguous), capacities in elements/rows */
    void *expand_x;        int64_t cap_rows;  /* row = h elements of x dtype (quant 0) or int8 */
    float *dyn_scales;                        /* cap_rows (quant 2), else may be NULL */
    int32_t *assist;                          /* 3*cap_rows */
    int64_t *token_nums;   int64_t token_nums_cap;
    int32_t *ep_recv;      int64_t ep_recv_cap;
    /* results */
    int64_t n_rows;        /* rows written */
    int64_t n_ep_recv;     /* epRecvCounts entries written */
    int64_t n_token_nums;  /* expertTokenNums entries written */
    int64_t need_rows;     /* rows that would be produced (> cap_rows means overflow) */
    int64_t need_ep_recv;  /* epRecvCounts entries needed */
    int64_t need_token_nums;
} MoeDispatchOut;

/* Produce the rows rank `me` (new id) receives from srcs[0..ep-1] (indexed by new rank id).
 * Returns 0, or -1 when a capacity would be exceeded: then nothing is written and the need_*
 * fields tell the sizes needed (call with zero capacities to size the buffers). */
int moe_dispatch_receive(const MoeDispatchCfg *cfg, const MoeDispatchSrc *const *srcs, int64_t me,
                         MoeDispatchOut *out);

/* ---- Combine (combine-addrmsnorm-barrier.md §3, §6, §7) -------------------------------------- */
/* Token t of a rank is processed / active (no mask: all; 1-D: t < count(True); 2-D: any True
 * in its row). n_prefix comes from moe_mask_prefix. */
int64_t moe_mask_prefix(const uint8_t *mask, int mask_ndim, int64_t bs);
int moe_token_processed(const uint8_t *mask, int mask_ndim, int64_t k, int64_t t, int64_t n_prefix);

/* What one rank sends back over EP: its first n_rows expandX rows (after the TP add) and their
 * triples (srcRank', token, kSlot). */
typedef struct {
    const uint16_t *rows;     /* n_rows*h */
    const int32_t *triples;   /* 3*n_rows */
    int64_t n_rows, h;
} MoeCombineSrc;
/* Fill slots[t*kslots + kslot] with the row addressed to rank `me` (new id) by any source, NULL
 * where none. Rows with out-of-range token or slot are ignored. counts (optional, bs*kslots): rows per
 * slot, saturating at 2. Returns how many rows mapped. */
int64_t moe_combine_collect(const MoeCombineSrc *const *srcs, int64_t n_src, int64_t me, int64_t bs,
                            int64_t kslots, const uint16_t **slots, uint8_t *counts);

/* TP reduce-scatter add of one element: rne_X(f32(peer) + f32(own)). */
static inline uint16_t moe_tp_add(uint16_t own, uint16_t peer, int is_bf16) {
    float a = moe_x_to_f32(peer, is_bf16);
    float b = moe_x_to_f32(own, is_bf16);
    float s = a + b;
    return moe_f32_to_x(s, is_bf16);
}
/* commQuantMode 2: quantise a row at the sender and dequantise it at the receiver (§7). */
void moe_int8_roundtrip(const uint16_t *row, int64_t h, int is_bf16, uint16_t *out);

typedef struct {
    int64_t k, s, h;                  /* K, S (normalised), H */
    int64_t moe_num, zero_num, copy_num, const_num;  /* classification (attribute moeExpertNum) */
    int is_bf16;
    int int8_comm;                    /* commQuantMode == 2 */
    int const_softmax;                /* const experts: 0 scalar alphas (CANN <= 8.5.0 alpha), 1 the (Q, H)
                                       * projections + 2-way softmax (const_alpha_2d, moe_const_expert_term) */
    int unweighted;                   /* no expertScales (expert_scales_optional): rows are summed unweighted */
} MoeCombineCfg;

typedef struct {
    const int32_t *ids;           /* k */
    const float *w;               /* k */
    const uint8_t *mask2d;        /* k, or NULL */
    const uint16_t *const *slots; /* k+s row pointers (NULL where no row arrived) */
    const uint16_t *ori_x;        /* h or NULL */
    const uint16_t *alpha1;       /* const_num (scalar alphas) or const_num*h (const_softmax), or NULL */
    const uint16_t *alpha2;       /* same */
    const uint16_t *const_v;      /* const_num*h or NULL */
    const uint16_t *shared_x;     /* h or NULL */
} MoeCombineToken;

/* The fp32 accumulator of one token (§3.4), before the final rounding. scratch: see
 * MOE_COMBINE_SCRATCH_BYTES. Returns 0, or 1 + the first slot index whose row is
 * missing (the real kernel would wait for it forever). */
#define MOE_COMBINE_SCRATCH_BYTES(h) ((size_t)(h) * (4 * sizeof(float) + sizeof(uint16_t)) + 1024)
int moe_combine_token(const MoeCombineCfg *cfg, const MoeCombineToken *tok, float *acc,
                      void *scratch);

/* A3 ReduceSum order: binary tree of adjacent pairs inside each group of 64 (last group
 * zero-padded), group sums added sequentially. */
float moe_reduce_sum_a3(const float *v, int64_t n);

/* AscendC Sum on A3 (the high-level API; ReduceSum's tree inside each repeat, but the repeat sums are reduced
 * again by the same tree, level after level, instead of being accumulated in order): level 1 sums each group
 * of 64 by a binary tree of adjacent pairs (last group zero-padded), giving ceil(n/64) values; each next level
 * does the same to the previous level's values, until one is left. tmp: ceil(n/64) floats. */
float moe_sum_a3(const float *v, int64_t n, float *tmp);

/* The simulator's float32 exp (docs/decisions.md "Const experts"): NaN -> NaN, x > 100 -> +inf, x < -110 -> +0;
 * else k = rint(x * log2e), r = (x - k*C1) - k*C2 (Cody-Waite, C1 = 0.693359375), the degree-5 polynomial
 * p = (((((P0 r + P1) r + P2) r + P3) r + P4) r + P5) * r^2 + r + 1, and p * 2^floor(k/2) * 2^(k - floor(k/2)).
 * Every step one correctly rounded fp32 operation (no FMA); aclnn_py/reference/const_experts.py computes the
 * same bits with numpy. The NPU's vector Exp is not published bit for bit: hardware may differ in the last
 * ulps. */
float moe_exp_f32(float x);

/* One constant-expert term of CANN >= 8.5.0-beta.1 (const_alpha_2d; NEW moe_distribute_combine_v2.h:1004-1095,
 * per token and const expert c): xf = f32(x); a_i = Sum_A3(f32(alpha_i[c, :]) * xf) (moe_sum_a3);
 * m = a1 > a2 ? a1 : a2; e_i = exp(a_i - m) (moe_exp_f32); s = e1 + e2; w_i = e_i / s;
 * out = xf * w1 + f32(v[c, :]) * w2 (each a rounded fp32 op). x, alpha1, alpha2, v: h values of XType.
 * scratch: h + ceil(h/64) floats. The caller weights out by expertScales (if any) and accumulates. */
void moe_const_expert_term(const uint16_t *x, const uint16_t *alpha1, const uint16_t *alpha2, const uint16_t *v,
                           int64_t h, int is_bf16, float *out, float *scratch);

/* AddRmsNorm tail of one token (§4): xs = acc + residual; x_out = rne_bf16(xs);
 * sq = (xs*xs)*inv_h; ms = ReduceSumA3(sq); rstd = 1/sqrt(ms+eps);
 * y = rne_bf16(rne_bf16(xs*rstd) * gamma). scratch: 2*h floats. */
void moe_add_rms_norm_token(const float *acc, const uint16_t *residual, const uint16_t *gamma,
                            int64_t h, float eps, float inv_h, uint16_t *x_out, uint16_t *y_out,
                            float *rstd_out, float *scratch);

/* HCCL window need of the A3 tiling (dispatch-v3.md §12, combine §8.1 row 37), in bytes.
 * fullmesh_v2 selects the dispatch token size of that algorithm. */
uint64_t moe_hccl_window_need(uint64_t max_bs, uint64_t h, uint64_t ep, uint64_t l, uint64_t k,
                              uint64_t s, int fullmesh_v2);

#ifdef __cplusplus
}
#endif
#endif
