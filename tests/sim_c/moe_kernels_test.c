/*
 * Standalone bit-exact checks of the simulator's MoE compute (sim/src/op_moe_kernels.c) against the
 * worked examples of ../shared/spec/dispatch-v3.md and combine-addrmsnorm-barrier.md.
 * Build: gcc -std=c11 -O2 -ffp-contract=off -Isim/src tests/sim_c/moe_kernels_test.c
 *        sim/src/op_moe_kernels.c -lm
 * Prints one line per failed check and "moe_kernels_test: N checks, M failures"; exit 1 on failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_moe_kernels.h"
#include "moe_spec_examples.h"

static int g_checks, g_fail;
#define CHECK(cond, ...)                                                 \
    do {                                                                 \
        g_checks++;                                                      \
        if (!(cond)) {                                                   \
            g_fail++;                                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                  \
            printf(__VA_ARGS__);                                         \
            printf("\n");                                                \
        }                                                                \
    } while (0)

static uint16_t bf(float f) { return moe_f32_to_bf16(f); }
static float fbits(uint32_t u) { return moe_bits_f32(u); }

/* ================================ conversions ================================================ */
static void test_conversions(void) {
    /* bf16 RNE */
    CHECK(bf(1.0f + 0.00390625f) == 0x3f80, "bf16 tie to even down");
    CHECK(bf(fbits(0x3f818000)) == 0x3f82, "bf16 tie to even up");
    CHECK(bf(fbits(0x3f808001)) == 0x3f81, "bf16 above half");
    CHECK((bf(fbits(0x7fc00001)) & 0x7fc0) == 0x7fc0, "bf16 NaN stays NaN");
    CHECK((bf(fbits(0x7f800001)) & 0x7f80) == 0x7f80 && (bf(fbits(0x7f800001)) & 0x7f), "bf16 sNaN stays NaN");
    CHECK(bf(fbits(0x7f7fffff)) == 0x7f80, "bf16 overflow to inf");
    /* NaN results are the canonical quiet NaN, whatever the sign and payload (docs/decisions.md) */
    CHECK(bf(fbits(0xffc00000)) == 0x7fc0 && bf(fbits(0x7f812345)) == 0x7fc0, "bf16 NaN canonical");
    CHECK(moe_f32_to_fp16(fbits(0xffc00000)) == 0x7e00 && moe_f32_to_fp16(fbits(0x7fa00001)) == 0x7e00,
          "fp16 NaN canonical");
    CHECK(moe_f32_bits(moe_canon_f32(fbits(0xffc00001))) == 0x7fc00000u && moe_canon_f32(2.0f) == 2.0f,
          "fp32 NaN canonical");
    CHECK(moe_tp_add(bf(1.0f), bf(0.00390625f), 1) == bf(1.0f), "TP add tie (CS 3.2)");
    CHECK(moe_tp_add(bf(1.0f), bf(0.005859375f), 1) == bf(1.0078125f), "TP add up (CS 3.2)");
#if defined(__FLT16_MAX__)
    /* fp16 RNE against the compiler's _Float16 conversion (IEEE RNE) on a sweep of fp32 patterns */
    {
        int bad = 0;
        for (uint64_t u = 0; u < 0x100000000ull && bad < 5; u += 4093) {
            float f = fbits((uint32_t)u);
            _Float16 hf = (_Float16)f;
            uint16_t ref;
            memcpy(&ref, &hf, 2);
            uint16_t got = moe_f32_to_fp16(f);
            if (f != f) {
                if ((got & 0x7c00) != 0x7c00 || !(got & 0x3ff)) bad++;
                continue;
            }
            if (got != ref) {
                printf("  fp16 mismatch for 0x%08x: got 0x%04x want 0x%04x\n", (unsigned)u, got, ref);
                bad++;
            }
        }
        /* boundaries */
        const uint32_t edge[] = {0x477fefff, 0x477ff000, 0x477ff001, 0x33000000, 0x33000001, 0x337fffff,
                                 0x33800000, 0x387fc000, 0x387fe000, 0x387ff000, 0x38800000, 0x38801000,
                                 0x38803000, 0x3f801000, 0x3f803000, 0x80000000, 0xb3000001};
        for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
            _Float16 hf = (_Float16)fbits(edge[i]);
            uint16_t ref;
            memcpy(&ref, &hf, 2);
            if (moe_f32_to_fp16(fbits(edge[i])) != ref) bad++;
        }
        for (uint32_t h = 0; h < 0x10000; h++) {
            _Float16 hf;
            uint16_t hh = (uint16_t)h;
            memcpy(&hf, &hh, 2);
            float ref = (float)hf;
            float got = moe_fp16_to_f32(hh);
            if (ref == ref && moe_f32_bits(ref) != moe_f32_bits(got)) bad++;
            if (ref != ref && got == got) bad++;
        }
        CHECK(bad == 0, "fp16 conversions vs _Float16 (%d mismatches)", bad);
    }
#endif
    CHECK(moe_f32_to_int8_rne(-63.5f) == -64 && moe_f32_to_int8_rne(62.5f) == 62, "int8 RNE");
}

/* ================================ dispatch worked examples =================================== */
#define MAXR 8
#define MAXT 8
static uint16_t g_x[MAXR][MAXT * 2];      /* H = 2: row (r,t) = [r*16+t+1, -(r*16+t+1)] */
static int32_t g_ids[MAXR][MAXT * 4];
static uint8_t g_mask[MAXR][MAXT * 4];
static MoeDispatchSrc g_src[MAXR];

static void make_src(int r, int bs, int k, const int32_t *ids, const uint8_t *mask, int mask_ndim) {
    for (int t = 0; t < bs; t++) {
        g_x[r][2 * t] = bf((float)(r * 16 + t + 1));
        g_x[r][2 * t + 1] = bf(-(float)(r * 16 + t + 1));
    }
    memcpy(g_ids[r], ids, sizeof(int32_t) * bs * k);
    if (mask) memcpy(g_mask[r], mask, (size_t)(mask_ndim == 2 ? bs * k : bs));
    g_src[r] = (MoeDispatchSrc){.bs = bs, .h = 2, .k = k, .x_is_bf16 = 1, .x = g_x[r],
                                .expert_ids = g_ids[r], .scales = NULL,
                                .mask = mask ? g_mask[r] : NULL, .mask_ndim = mask ? mask_ndim : 0};
}

/* expected rows as (origRank, t) pairs; triples flattened; ep_recv; token nums */
static void expect_dispatch(const char *name, const MoeDispatchCfg *c, const MoeDispatchSrc *const *srcs,
                            int me, int n, const int *rows_rt, const int *triples, int nb,
                            const int *ep_recv, int ntn, const long *tok) {
    uint16_t ex[64 * 2];
    int32_t assist[64 * 3];
    int64_t tn[16];
    int32_t er[64];
    MoeDispatchOut o = {.expand_x = ex, .cap_rows = 64, .dyn_scales = NULL, .assist = assist,
                        .token_nums = tn, .token_nums_cap = 16, .ep_recv = er, .ep_recv_cap = 64};
    int rc = moe_dispatch_receive(c, srcs, me, &o);
    CHECK(rc == 0, "%s rank %d: rc %d", name, me, rc);
    CHECK(o.n_rows == n, "%s rank %d: n_rows %ld want %d", name, me, (long)o.n_rows, n);
    if (o.n_rows != n) return;
    for (int i = 0; i < n; i++) {
        float v = moe_bf16_to_f32(ex[2 * i]);
        int want = rows_rt[2 * i] * 16 + rows_rt[2 * i + 1] + 1;
        CHECK(v == (float)want && moe_bf16_to_f32(ex[2 * i + 1]) == -(float)want,
              "%s rank %d row %d: got X value %g want X%d[%d]", name, me, i, v, rows_rt[2 * i], rows_rt[2 * i + 1]);
        CHECK(assist[3 * i] == triples[3 * i] && assist[3 * i + 1] == triples[3 * i + 1] &&
                  assist[3 * i + 2] == triples[3 * i + 2],
              "%s rank %d triple %d: (%d,%d,%d) want (%d,%d,%d)", name, me, i, assist[3 * i], assist[3 * i + 1],
              assist[3 * i + 2], triples[3 * i], triples[3 * i + 1], triples[3 * i + 2]);
    }
    CHECK(o.n_ep_recv == nb, "%s rank %d: %ld epRecvCounts written, want %d", name, me, (long)o.n_ep_recv, nb);
    for (int b = 0; b < nb; b++)
        CHECK(er[b] == ep_recv[b], "%s rank %d epRecvCounts[%d] = %d want %d", name, me, b, er[b], ep_recv[b]);
    CHECK(o.n_token_nums == ntn, "%s rank %d: token nums written %ld want %d", name, me, (long)o.n_token_nums, ntn);
    for (int j = 0; j < ntn; j++)
        CHECK(tn[j] == tok[j], "%s rank %d expertTokenNums[%d] = %ld want %ld", name, me, j, (long)tn[j], tok[j]);
}

static MoeDispatchCfg cfg_basic(int ep, int R, int S, int M, int k) {
    MoeDispatchCfg c = {.ep = ep, .R = R, .S = S, .M = M, .L = M / (ep - R), .rpse = S ? R / S : 0,
                        .z_total = 0, .k = k, .h = 2, .quant_mode = 0, .token_nums_type = 1};
    return c;
}

static const int32_t IDS141[4][6] = {{0, 1, 2, 3, 1, 2}, {3, 0, 0, 2, 1, 3}, {1, 0, 3, 1, 2, 0}, {2, 3, 0, 1, 3, 2}};

static void test_dispatch_141(void) {
    MoeDispatchCfg c = cfg_basic(4, 0, 0, 4, 2);
    const MoeDispatchSrc *s[4] = {&g_src[0], &g_src[1], &g_src[2], &g_src[3]};
    for (int r = 0; r < 4; r++) make_src(r, 3, 2, IDS141[r], NULL, 0);
    long six[] = {6};
    expect_dispatch("14.1", &c, s, 0, 6, (int[]){0, 0, 1, 0, 1, 1, 2, 0, 2, 2, 3, 1},
                    (int[]){0, 0, 0, 1, 0, 1, 1, 1, 0, 2, 0, 1, 2, 2, 1, 3, 1, 0}, 4, (int[]){1, 3, 5, 6}, 1, six);
    expect_dispatch("14.1", &c, s, 1, 6, (int[]){0, 0, 0, 2, 1, 2, 2, 0, 2, 1, 3, 1},
                    (int[]){0, 0, 1, 0, 2, 0, 1, 2, 0, 2, 0, 0, 2, 1, 1, 3, 1, 1}, 4, (int[]){2, 3, 5, 6}, 1, six);
    expect_dispatch("14.1", &c, s, 2, 6, (int[]){0, 1, 0, 2, 1, 1, 2, 2, 3, 0, 3, 2},
                    (int[]){0, 1, 0, 0, 2, 1, 1, 1, 1, 2, 2, 0, 3, 0, 0, 3, 2, 1}, 4, (int[]){2, 3, 4, 6}, 1, six);
    expect_dispatch("14.1", &c, s, 3, 6, (int[]){0, 1, 1, 0, 1, 2, 2, 1, 3, 0, 3, 2},
                    (int[]){0, 1, 1, 1, 0, 0, 1, 2, 1, 2, 1, 0, 3, 0, 1, 3, 2, 0}, 4, (int[]){1, 3, 4, 6}, 1, six);

    /* 14.2: 1-D masks */
    const uint8_t m1[4][3] = {{1, 1, 0}, {1, 0, 0}, {1, 1, 1}, {0, 0, 0}};
    for (int r = 0; r < 4; r++) make_src(r, 3, 2, IDS141[r], m1[r], 1);
    expect_dispatch("14.2", &c, s, 0, 4, (int[]){0, 0, 1, 0, 2, 0, 2, 2}, (int[]){0, 0, 0, 1, 0, 1, 2, 0, 1, 2, 2, 1},
                    4, (int[]){1, 2, 4, 4}, 1, (long[]){4});
    expect_dispatch("14.2", &c, s, 1, 3, (int[]){0, 0, 2, 0, 2, 1}, (int[]){0, 0, 1, 2, 0, 0, 2, 1, 1}, 4,
                    (int[]){1, 1, 3, 3}, 1, (long[]){3});
    expect_dispatch("14.2", &c, s, 2, 2, (int[]){0, 1, 2, 2}, (int[]){0, 1, 0, 2, 2, 0}, 4, (int[]){1, 1, 2, 2}, 1,
                    (long[]){2});
    expect_dispatch("14.2", &c, s, 3, 3, (int[]){0, 1, 1, 0, 2, 1}, (int[]){0, 1, 1, 1, 0, 0, 2, 1, 0}, 4,
                    (int[]){1, 2, 3, 3}, 1, (long[]){3});

    /* 14.3: 2-D masks */
    const uint8_t m2[4][6] = {{1, 0, 0, 0, 1, 1}, {1, 1, 0, 1, 1, 0}, {0, 0, 1, 1, 0, 1}, {1, 1, 1, 1, 1, 1}};
    for (int r = 0; r < 4; r++) make_src(r, 3, 2, IDS141[r], m2[r], 2);
    expect_dispatch("14.3", &c, s, 0, 4, (int[]){0, 0, 1, 0, 2, 2, 3, 1}, (int[]){0, 0, 0, 1, 0, 1, 2, 2, 1, 3, 1, 0},
                    4, (int[]){1, 2, 3, 4}, 1, (long[]){4});
    expect_dispatch("14.3", &c, s, 1, 4, (int[]){0, 2, 1, 2, 2, 1, 3, 1}, (int[]){0, 2, 0, 1, 2, 0, 2, 1, 1, 3, 1, 1},
                    4, (int[]){1, 2, 3, 4}, 1, (long[]){4});
    expect_dispatch("14.3", &c, s, 2, 4, (int[]){0, 2, 1, 1, 3, 0, 3, 2}, (int[]){0, 2, 1, 1, 1, 1, 3, 0, 0, 3, 2, 1},
                    4, (int[]){1, 2, 2, 4}, 1, (long[]){4});
    expect_dispatch("14.3", &c, s, 3, 4, (int[]){1, 0, 2, 1, 3, 0, 3, 2}, (int[]){1, 0, 0, 2, 1, 0, 3, 0, 1, 3, 2, 0},
                    4, (int[]){0, 1, 2, 4}, 1, (long[]){4});
}

static void test_dispatch_144(void) {
    const MoeDispatchSrc *s[4] = {&g_src[0], &g_src[1], &g_src[2], &g_src[3]};
    /* ep = 3, R = 1, S = 1, M = 4 (L = 2), K = 2, BS = 2 */
    const int32_t ids[3][4] = {{0, 3, 2, 1}, {1, 0, 3, 2}, {0, 2, 1, 3}};
    for (int r = 0; r < 3; r++) make_src(r, 2, 2, ids[r], NULL, 0);
    MoeDispatchCfg c = cfg_basic(3, 1, 1, 4, 2);
    expect_dispatch("14.4", &c, s, 0, 6, (int[]){0, 0, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1},
                    (int[]){0, 0, 2, 0, 1, 2, 1, 0, 2, 1, 1, 2, 2, 0, 2, 2, 1, 2}, 3, (int[]){2, 4, 6}, 1, (long[]){6});
    expect_dispatch("14.4", &c, s, 1, 6, (int[]){0, 0, 1, 0, 2, 0, 0, 1, 1, 0, 2, 1},
                    (int[]){0, 0, 0, 1, 0, 1, 2, 0, 0, 0, 1, 1, 1, 0, 0, 2, 1, 0}, 6, (int[]){1, 2, 3, 4, 5, 6}, 2,
                    (long[]){3, 3});
    expect_dispatch("14.4", &c, s, 2, 6, (int[]){0, 1, 1, 1, 2, 0, 0, 0, 1, 1, 2, 1},
                    (int[]){0, 1, 0, 1, 1, 1, 2, 0, 1, 0, 0, 1, 1, 1, 0, 2, 1, 1}, 6, (int[]){1, 2, 3, 4, 5, 6}, 2,
                    (long[]){3, 3});
    c.token_nums_type = 0;
    expect_dispatch("14.4 type0", &c, s, 1, 6, (int[]){0, 0, 1, 0, 2, 0, 0, 1, 1, 0, 2, 1},
                    (int[]){0, 0, 0, 1, 0, 1, 2, 0, 0, 0, 1, 1, 1, 0, 0, 2, 1, 0}, 6, (int[]){1, 2, 3, 4, 5, 6}, 2,
                    (long[]){3, 6});
    expect_dispatch("14.4 type0", &c, s, 0, 6, (int[]){0, 0, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1},
                    (int[]){0, 0, 2, 0, 1, 2, 1, 0, 2, 1, 1, 2, 2, 0, 2, 2, 1, 2}, 3, (int[]){2, 4, 6}, 1, (long[]){6});

    /* replicas: ep = 4, K = 1, BS = 2, M = 2 */
    const int32_t ids2[4][2] = {{0, 1}, {1, 1}, {0, 0}, {1, 0}};
    for (int r = 0; r < 4; r++) make_src(r, 2, 1, ids2[r], NULL, 0);
    c = cfg_basic(4, 2, 1, 2, 1); /* R = 2, S = 1, rpse = 2 */
    expect_dispatch("14.4 rpse2", &c, s, 0, 4, (int[]){0, 0, 0, 1, 2, 0, 2, 1},
                    (int[]){0, 0, 1, 0, 1, 1, 2, 0, 1, 2, 1, 1}, 4, (int[]){2, 2, 4, 4}, 1, (long[]){4});
    expect_dispatch("14.4 rpse2", &c, s, 1, 4, (int[]){1, 0, 1, 1, 3, 0, 3, 1},
                    (int[]){1, 0, 1, 1, 1, 1, 3, 0, 1, 3, 1, 1}, 4, (int[]){0, 2, 2, 4}, 1, (long[]){4});
    expect_dispatch("14.4 rpse2", &c, s, 2, 4, (int[]){0, 0, 2, 0, 2, 1, 3, 1},
                    (int[]){0, 0, 0, 2, 0, 0, 2, 1, 0, 3, 1, 0}, 4, (int[]){1, 1, 3, 4}, 1, (long[]){4});
    expect_dispatch("14.4 rpse2", &c, s, 3, 4, (int[]){0, 1, 1, 0, 1, 1, 3, 0},
                    (int[]){0, 1, 0, 1, 0, 0, 1, 1, 0, 3, 0, 0}, 4, (int[]){1, 3, 3, 4}, 1, (long[]){4});
    c = cfg_basic(4, 2, 2, 2, 1); /* R = 2, S = 2, rpse = 1 */
    expect_dispatch("14.4 S2", &c, s, 0, 8, (int[]){0, 0, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 3, 0, 3, 1},
                    (int[]){0, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 2, 0, 1, 2, 1, 1, 3, 0, 1, 3, 1, 1}, 4,
                    (int[]){2, 4, 6, 8}, 1, (long[]){8});
    expect_dispatch("14.4 S2", &c, s, 1, 8, (int[]){0, 0, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 3, 0, 3, 1},
                    (int[]){0, 0, 2, 0, 1, 2, 1, 0, 2, 1, 1, 2, 2, 0, 2, 2, 1, 2, 3, 0, 2, 3, 1, 2}, 4,
                    (int[]){2, 4, 6, 8}, 1, (long[]){8});
    expect_dispatch("14.4 S2", &c, s, 2, 4, (int[]){0, 0, 2, 0, 2, 1, 3, 1},
                    (int[]){0, 0, 0, 2, 0, 0, 2, 1, 0, 3, 1, 0}, 4, (int[]){1, 1, 3, 4}, 1, (long[]){4});
}

static void test_dispatch_145_146_147(void) {
    const MoeDispatchSrc *s[4] = {&g_src[0], &g_src[1], &g_src[2], &g_src[3]};
    /* 14.5 special experts */
    const int32_t ids[4][4] = {{0, 4, 5, 6}, {6, 1, 2, 3}, {4, 5, 1, 2}, {3, 0, 6, 4}};
    for (int r = 0; r < 4; r++) make_src(r, 2, 2, ids[r], NULL, 0);
    MoeDispatchCfg c = cfg_basic(4, 0, 0, 4, 2);
    c.z_total = 3;
    expect_dispatch("14.5", &c, s, 0, 2, (int[]){0, 0, 3, 0}, (int[]){0, 0, 0, 3, 0, 1}, 4, (int[]){1, 1, 1, 2}, 1,
                    (long[]){2});
    expect_dispatch("14.5", &c, s, 1, 2, (int[]){1, 0, 2, 1}, (int[]){1, 0, 1, 2, 1, 0}, 4, (int[]){0, 1, 2, 2}, 1,
                    (long[]){2});
    expect_dispatch("14.5", &c, s, 2, 2, (int[]){1, 1, 2, 1}, (int[]){1, 1, 0, 2, 1, 1}, 4, (int[]){0, 1, 2, 2}, 1,
                    (long[]){2});
    expect_dispatch("14.5", &c, s, 3, 2, (int[]){1, 1, 3, 0}, (int[]){1, 1, 1, 3, 0, 0}, 4, (int[]){0, 1, 1, 2}, 1,
                    (long[]){2});

    /* 14.6 elastic: orig 0,1,3 survive as new 0,1,2; ep' = 3, M' = 3 */
    const int32_t eids[4][4] = {{0, 1, 2, 0}, {1, 2, 0, 1}, {0}, {2, 0, 1, 2}};
    for (int r = 0; r < 4; r++) make_src(r, 2, 2, eids[r], NULL, 0);
    const MoeDispatchSrc *es[3] = {&g_src[0], &g_src[1], &g_src[3]};
    c = cfg_basic(3, 0, 0, 3, 2);
    expect_dispatch("14.6", &c, es, 0, 4, (int[]){0, 0, 0, 1, 1, 1, 3, 0},
                    (int[]){0, 0, 0, 0, 1, 1, 1, 1, 0, 2, 0, 1}, 3, (int[]){2, 3, 4}, 1, (long[]){4});
    expect_dispatch("14.6", &c, es, 1, 4, (int[]){0, 0, 1, 0, 1, 1, 3, 1},
                    (int[]){0, 0, 1, 1, 0, 0, 1, 1, 1, 2, 1, 0}, 3, (int[]){1, 3, 4}, 1, (long[]){4});
    expect_dispatch("14.6", &c, es, 2, 4, (int[]){0, 1, 1, 0, 3, 0, 3, 1},
                    (int[]){0, 1, 0, 1, 0, 1, 2, 0, 0, 2, 1, 1}, 3, (int[]){1, 2, 4}, 1, (long[]){4});

    /* 14.7 TP: the EP part of each slice (the TP append is tested end to end) */
    const int32_t a_ids[2][2] = {{0, 1}, {1, 0}};
    const int32_t b_ids[2][2] = {{1, 1}, {0, 1}};
    c = cfg_basic(2, 0, 0, 2, 1);
    for (int r = 0; r < 2; r++) make_src(r, 2, 1, a_ids[r], NULL, 0);
    expect_dispatch("14.7 slice0", &c, s, 0, 2, (int[]){0, 0, 1, 1}, (int[]){0, 0, 0, 1, 1, 0}, 2, (int[]){1, 2}, 1,
                    (long[]){2});
    expect_dispatch("14.7 slice0", &c, s, 1, 2, (int[]){0, 1, 1, 0}, (int[]){0, 1, 0, 1, 0, 0}, 2, (int[]){1, 2}, 1,
                    (long[]){2});
    for (int r = 0; r < 2; r++) make_src(r, 2, 1, b_ids[r], NULL, 0);
    expect_dispatch("14.7 slice1", &c, s, 0, 1, (int[]){1, 0}, (int[]){1, 0, 0}, 2, (int[]){0, 1}, 1, (long[]){1});
    expect_dispatch("14.7 slice1", &c, s, 1, 3, (int[]){0, 0, 0, 1, 1, 1}, (int[]){0, 0, 0, 0, 1, 0, 1, 1, 0}, 2,
                    (int[]){2, 3}, 1, (long[]){3});
}

static void test_quant(void) {
    uint16_t x[4] = {bf(2.0f), bf(-1.0f), bf(0.5f), bf(0.375f)};
    int8_t q[4];
    float sc;
    moe_quant_row(x, 1, NULL, 4, q, &sc);
    CHECK(q[0] == 127 && q[1] == -64 && q[2] == 32 && q[3] == 24, "DS 6 quant: %d %d %d %d", q[0], q[1], q[2], q[3]);
    CHECK(moe_f32_bits(sc) == 0x3C810204u, "DS 6 scale bits 0x%08x", moe_f32_bits(sc));
    const float sm[4] = {0.5f, 3.0f, 1.0f, 2.0f};
    moe_quant_row(x, 1, sm, 4, q, &sc);
    CHECK(q[0] == 42 && q[1] == -127 && q[2] == 21 && q[3] == 32, "DS 6 smooth quant: %d %d %d %d", q[0], q[1], q[2],
          q[3]);
    CHECK(moe_f32_bits(sc) == 0x3CC18306u, "DS 6 smooth scale bits 0x%08x", moe_f32_bits(sc));
    /* fp16 input, same numbers */
    uint16_t xh[4] = {moe_f32_to_fp16(2.0f), moe_f32_to_fp16(-1.0f), moe_f32_to_fp16(0.5f), moe_f32_to_fp16(0.375f)};
    moe_quant_row(xh, 0, NULL, 4, q, &sc);
    CHECK(q[1] == -64 && moe_f32_bits(sc) == 0x3C810204u, "DS 6 quant fp16");

    /* NaN policy (docs/decisions.md): the max propagates NaN -> q NaN, int8 0, scale canonical NaN; inf (no NaN)
     * -> amax inf, q 0, int8 0, scale inf; q = 127/amax not finite (amax 0 or overflow) -> int8 0, scale 0 */
    {
        const float nan = NAN, inf = INFINITY;
        const float rows[5][4] = {{1.0f, 2.0f, nan, -3.0f}, {nan, nan, nan, nan}, {1.0f, inf, 2.0f, nan},
                                  {1e-38f, 0.0f, 0.0f, -1e-38f}, {1.0f, -inf, 2.0f, 3.0f}};
        const int8_t want_q[5][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}};
        const uint32_t want_s[5] = {0x7FC00000u, 0x7FC00000u, 0x7FC00000u, 0u, 0x7F800000u};
        for (int r = 0; r < 5; r++) {
            uint16_t xr[4];
            for (int i = 0; i < 4; i++) xr[i] = bf(rows[r][i]);
            moe_quant_row(xr, 1, NULL, 4, q, &sc);
            CHECK(memcmp(q, want_q[r], 4) == 0 && moe_f32_bits(sc) == want_s[r],
                  "NaN/inf quant row %d: %d %d %d %d scale 0x%08x", r, q[0], q[1], q[2], q[3], moe_f32_bits(sc));
        }
    }

    /* dispatch with quant: the smooth row of a shared row is s, of a MoE row S+e (14.4 S2 config) */
    const int32_t ids2[4][2] = {{0, 1}, {1, 1}, {0, 0}, {1, 0}};
    for (int r = 0; r < 4; r++) make_src(r, 2, 1, ids2[r], NULL, 0);
    float scales[4][4 * 2];
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 8; i++) scales[r][i] = (float)(i + 1); /* row si = [2si+1, 2si+2] */
    for (int r = 0; r < 4; r++) g_src[r].scales = scales[r];
    const MoeDispatchSrc *s[4] = {&g_src[0], &g_src[1], &g_src[2], &g_src[3]};
    MoeDispatchCfg c = cfg_basic(4, 2, 2, 2, 1);
    c.quant_mode = 2;
    int8_t ex[16 * 2];
    float ds[16];
    int32_t as[48], er[8];
    int64_t tn[2];
    MoeDispatchOut o = {.expand_x = ex, .cap_rows = 16, .dyn_scales = ds, .assist = as, .token_nums = tn,
                        .token_nums_cap = 2, .ep_recv = er, .ep_recv_cap = 8};
    CHECK(moe_dispatch_receive(&c, s, 3, &o) == 0 && o.n_rows == 4, "quant dispatch rank 3");
    /* rank 3 = expert 1, smooth row 2+1 = 3 -> [7, 8]; row 0 = X0[1] = [2, -2] (bf16 of 2,-2) */
    {
        int8_t qq[2];
        float ss;
        const float sm3[2] = {7.0f, 8.0f};
        moe_quant_row(g_x[0] + 2, 1, sm3, 2, qq, &ss);
        CHECK(ex[0] == qq[0] && ex[1] == qq[1] && moe_f32_bits(ds[0]) == moe_f32_bits(ss) && ex[1] == -127,
              "quant dispatch smooth row S+e");
    }
    CHECK(moe_dispatch_receive(&c, s, 1, &o) == 0 && o.n_rows == 8, "quant dispatch shared rank 1");
    {
        int8_t qq[2];
        float ss;
        const float sm1[2] = {3.0f, 4.0f}; /* shared expert 1 -> smooth row 1 */
        moe_quant_row(g_x[0], 1, sm1, 2, qq, &ss);
        CHECK(ex[0] == qq[0] && ex[1] == qq[1] && moe_f32_bits(ds[0]) == moe_f32_bits(ss), "quant shared smooth row s");
    }
    for (int r = 0; r < 4; r++) g_src[r].scales = NULL;
}

/* ================================ combine / AddRmsNorm (CS §10) ============================== */
/* Run dispatch -> FFN (expert e: rne_bf16((e+1)*row)) -> combine (+ AddRmsNorm) for the CS §10
 * world with hidden size h (4, or 1024 = the 4-pattern tiled). mask1: rank 1's 1-D mask or NULL. */
static void run_cs10(int64_t h, const uint8_t *mask1, const int *want_counts_or_null) {
    const int ep = 4, bs = 3, k = 2;
    static uint16_t x[4][3 * 1024], ffn[4][12 * 1024], res[4][3 * 1024], gam[1024];
    static int32_t assist[4][12 * 3];
    int64_t nrows[4];
    MoeDispatchSrc src[4];
    uint8_t m1[3];
    for (int r = 0; r < ep; r++)
        for (int t = 0; t < bs; t++)
            for (int64_t i = 0; i < h; i++) {
                x[r][t * h + i] = bf(X10[r][t][i % 4]);
                res[r][t * h + i] = bf(RES10[r][t][i % 4]);
            }
    for (int64_t i = 0; i < h; i++) gam[i] = bf(GAMMA10[i % 4]);
    for (int r = 0; r < ep; r++)
        src[r] = (MoeDispatchSrc){.bs = bs, .h = h, .k = k, .x_is_bf16 = 1, .x = x[r], .expert_ids = IDS10[r]};
    if (mask1) {
        memcpy(m1, mask1, 3);
        src[1].mask = m1;
        src[1].mask_ndim = 1;
    }
    const MoeDispatchSrc *sp[4] = {&src[0], &src[1], &src[2], &src[3]};
    MoeDispatchCfg c = {.ep = 4, .R = 0, .S = 0, .M = 4, .L = 1, .rpse = 0, .z_total = 0, .k = k, .h = h,
                        .quant_mode = 0, .token_nums_type = 1};
    for (int r = 0; r < ep; r++) {
        int64_t tn[1];
        int32_t er[4];
        MoeDispatchOut o = {.expand_x = ffn[r], .cap_rows = 12, .assist = assist[r], .token_nums = tn,
                            .token_nums_cap = 1, .ep_recv = er, .ep_recv_cap = 4};
        CHECK(moe_dispatch_receive(&c, sp, r, &o) == 0, "CS10 dispatch rank %d", r);
        nrows[r] = o.n_rows;
        if (want_counts_or_null)
            for (int b = 0; b < 4; b++)
                CHECK(er[b] == want_counts_or_null[r * 4 + b], "CS10 epSendCounts r%d[%d] = %d want %d", r, b, er[b],
                      want_counts_or_null[r * 4 + b]);
        for (int64_t i = 0; i < o.n_rows * h; i++) ffn[r][i] = bf((float)(r + 1) * moe_bf16_to_f32(ffn[r][i]));
    }
    MoeCombineSrc cs[4];
    const MoeCombineSrc *csp[4];
    for (int r = 0; r < ep; r++) {
        cs[r] = (MoeCombineSrc){.rows = ffn[r], .triples = assist[r], .n_rows = nrows[r], .h = h};
        csp[r] = &cs[r];
    }
    MoeCombineCfg cc = {.k = k, .s = 0, .h = h, .moe_num = 4, .is_bf16 = 1};
    float *acc = malloc(sizeof(float) * h), *scr = malloc(MOE_COMBINE_SCRATCH_BYTES(h) + sizeof(float) * 2 * h);
    uint16_t *xo = malloc(2 * h), *yo = malloc(2 * h);
    const float inv_h = 1.0f / (float)h;
    for (int r = 0; r < ep; r++) {
        const uint16_t *slots[3 * 2];
        int64_t mapped = moe_combine_collect(csp, 4, r, bs, k, slots, NULL);
        CHECK(mapped == ((mask1 && r == 1) ? 4 : 6), "CS10 collect r%d mapped %ld", r, (long)mapped);
        const uint8_t *mk = (r == 1 && mask1) ? m1 : NULL;
        int64_t np = moe_mask_prefix(mk, mk ? 1 : 0, bs);
        for (int t = 0; t < bs; t++) {
            if (!moe_token_processed(mk, mk ? 1 : 0, k, t, np)) {
                CHECK(r == 1 && t == 2, "CS10.4 only r1 t2 is unprocessed (r%d t%d)", r, t);
                continue;
            }
            MoeCombineToken tk = {.ids = IDS10[r] + t * k, .w = W10[r] + t * k, .slots = slots + t * k};
            int rc = moe_combine_token(&cc, &tk, acc, scr);
            CHECK(rc == 0, "CS10 combine r%d t%d missing slot %d", r, t, rc - 1);
            for (int64_t i = 0; i < h; i++) {
                CHECK(moe_f32_bits(acc[i]) == moe_f32_bits((float)ACC10[r][t][i % 4]), "CS10 acc r%d t%d [%ld] %.9g",
                      r, t, (long)i, acc[i]);
                CHECK(bf(acc[i]) == bf(CV3X10[r][t][i % 4]), "CS10 CombineV3 xOut r%d t%d [%ld]", r, t, (long)i);
                if (i >= 8) break; /* the pattern repeats; spot-check the start of long rows */
            }
            float rstd;
            moe_add_rms_norm_token(acc, res[r] + t * h, gam, h, 1e-6f, inv_h, xo, yo, &rstd, scr);
            uint32_t want = h == 4 ? RSTD10[r][t] : RSTD1024[r][t];
            CHECK(moe_f32_bits(rstd) == want, "CS10 rstd r%d t%d H=%ld: 0x%08x want 0x%08x", r, t, (long)h,
                  moe_f32_bits(rstd), want);
            int bad = 0;
            for (int64_t i = 0; i < h; i++) {
                if (xo[i] != bf(ARNX10[r][t][i % 4])) bad++;
                if (yo[i] != bf(Y10[r][t][i % 4])) bad++;
            }
            CHECK(bad == 0, "CS10 ARN xOut/yOut r%d t%d H=%ld: %d mismatches", r, t, (long)h, bad);
        }
    }
    free(acc);
    free(scr);
    free(xo);
    free(yo);
}

static void test_combine(void) {
    run_cs10(4, NULL, CS10_COUNTS);
    run_cs10(1024, NULL, NULL);
    const uint8_t m[3] = {1, 1, 0};
    run_cs10(4, m, NULL);
    run_cs10(1024, m, NULL);

    /* CS §6 special experts mini example: M = 4, zero id 4, copy id 5, const id 6 */
    MoeCombineCfg cc = {.k = 2, .s = 0, .h = 4, .moe_num = 4, .zero_num = 1, .copy_num = 1, .const_num = 1,
                        .is_bf16 = 1};
    uint16_t ori[4] = {bf(1), bf(2), bf(3), bf(4)}, a1[1] = {bf(2)}, a2[1] = {bf(-1)},
             v[4] = {bf(1), bf(1), bf(1), bf(1)};
    const uint16_t *slots[2] = {NULL, NULL};
    int32_t ids[2] = {5, 6};
    float w[2] = {0.5f, 0.25f}, acc[4];
    char scr[256];
    MoeCombineToken tk = {.ids = ids, .w = w, .slots = slots, .ori_x = ori, .alpha1 = a1, .alpha2 = a2, .const_v = v};
    CHECK(moe_combine_token(&cc, &tk, acc, scr) == 0, "CS6 rc");
    CHECK(acc[0] == 0.75f && acc[1] == 1.75f && acc[2] == 2.75f && acc[3] == 3.75f, "CS6 copy+const: %g %g %g %g",
          acc[0], acc[1], acc[2], acc[3]);
    ids[0] = 4;
    ids[1] = 5;
    CHECK(moe_combine_token(&cc, &tk, acc, scr) == 0, "CS6 rc2");
    CHECK(acc[0] == 0.25f && acc[1] == 0.5f && acc[2] == 0.75f && acc[3] == 1.0f, "CS6 zero+copy (w=0.25 on copy)");
    ids[0] = 5;
    ids[1] = 4;
    CHECK(moe_combine_token(&cc, &tk, acc, scr) == 0 && acc[0] == 0.5f && acc[3] == 2.0f, "CS6 copy+zero");
    /* missing MoE row is reported */
    ids[0] = 1;
    CHECK(moe_combine_token(&cc, &tk, acc, scr) == 1, "missing slot 0 reported");

    /* shared slots unweighted, then sharedExpertX */
    MoeCombineCfg c2 = {.k = 1, .s = 1, .h = 4, .moe_num = 4, .is_bf16 = 1};
    uint16_t r0[4] = {bf(1), bf(1), bf(1), bf(1)}, r1[4] = {bf(2), bf(2), bf(2), bf(2)}, sx[4] = {bf(4), bf(4), bf(4), bf(4)};
    const uint16_t *sl2[2] = {r0, r1};
    int32_t id1[1] = {0};
    float w1[1] = {0.5f};
    MoeCombineToken t2 = {.ids = id1, .w = w1, .slots = sl2, .shared_x = sx};
    CHECK(moe_combine_token(&c2, &t2, acc, scr) == 0 && acc[0] == 6.5f, "shared + sharedExpertX unweighted: %g", acc[0]);

    /* CS §7 int8 micro example */
    const float row[8] = {1, -2, 0.5f, 100, 3, 0, -0.1015625f, 64};
    const float deq[8] = {0.7890625f, -2.375f, 0.7890625f, 100, 3.15625f, 0, 0, 64};
    uint16_t in[8], out[8];
    for (int i = 0; i < 8; i++) in[i] = bf(row[i]);
    moe_int8_roundtrip(in, 8, 1, out);
    int bad = 0;
    for (int i = 0; i < 8; i++) bad += out[i] != bf(deq[i]);
    CHECK(bad == 0, "CS7 int8 micro example");
    CHECK(moe_f32_bits(100.0f * (1.0f / 127.0f)) == 0x3f499326u, "CS7 s bits");
    /* all-zero group stays zero */
    uint16_t z[8] = {0}, zo[8];
    moe_int8_roundtrip(z, 8, 1, zo);
    CHECK(zo[0] == 0 && zo[7] == 0, "int8 zero group -> 0");
    /* a NaN or an inf in a group of 8 makes the group's max NaN / inf: the whole group arrives as NaN (the
     * receiver multiplies by a NaN or inf scale); the next group is untouched */
    {
        uint16_t gi[16], go[16];
        for (int i = 0; i < 16; i++) gi[i] = bf((float)(i + 1));
        uint16_t ref[16];
        moe_int8_roundtrip(gi, 16, 1, ref);
        for (int special = 0; special < 3; special++) {
            gi[3] = special == 0 ? bf(NAN) : special == 1 ? (uint16_t)0xffc0u : bf(INFINITY);
            moe_int8_roundtrip(gi, 16, 1, go);
            int ok = 1;
            for (int i = 0; i < 8; i++) ok &= go[i] == 0x7fc0;
            for (int i = 8; i < 16; i++) ok &= go[i] == ref[i];
            CHECK(ok, "int8 group with NaN/inf (%d) -> canonical NaN group", special);
        }
    }

    /* HCCL window example (DS §12): H 7168, maxBs 32, ep 16, L 16, K 8 -> 239 / 247 MB */
    uint64_t n1 = moe_hccl_window_need(32, 7168, 16, 16, 8, 0, 0), n2 = moe_hccl_window_need(32, 7168, 16, 16, 8, 0, 1);
    CHECK((n1 + (1 << 20) - 1) >> 20 == 239 && (n2 + (1 << 20) - 1) >> 20 == 247, "window need %llu %llu",
          (unsigned long long)n1, (unsigned long long)n2);
    /* reduce order: tree-in-64 differs from a sequential sum */
    float vals[3] = {1.0f, 1e-8f, 1e-8f};
    CHECK(moe_reduce_sum_a3(vals, 3) == 1.0f, "reduce");
}

int main(void) {
    test_conversions();
    test_dispatch_141();
    test_dispatch_144();
    test_dispatch_145_146_147();
    test_quant();
    test_combine();
    printf("moe_kernels_test: %d checks, %d failures\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
