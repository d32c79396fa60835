/*
 * End-to-end test of the simulated MoE operators through the public CANN API (build/cann-sim):
 * one thread per rank, communicators from HcclCommInitAll, dispatch -> (FFN on the host) -> combine /
 * AddRmsNorm, checked against the worked examples of ../shared/spec, plus validation status codes,
 * call records, error propagation and object accounting.
 * Build: gcc -std=gnu11 -O2 -I<sim>/include tests/sim_c/moe_e2e_test.c -L<sim>/lib64 -lopapi -lnnopbase
 *        -lascendcl -lhccl -lop_common -lpthread   (run with LD_LIBRARY_PATH=<sim>/lib64)
 */
#include "moe_e2e_common.h"
#include "moe_spec_examples.h"

#define H 1024
/* the label of token t of EP rank r in the scenarios that fill x with fill_label_rows(x, bs, H, 16r + 1) */
#define X_(r_, t_) (16.0f * (r_) + (t_) + 1)

static void fill_label_rows(uint16_t *x, int64_t bs, int64_t h, float base) {
    for (int64_t t = 0; t < bs; t++)
        for (int64_t i = 0; i < h; i++) x[t * h + i] = bf(base + (float)t);
}

/* the label of a row whose H elements are all equal, or -1e9 */
static float row_label(const uint16_t *r, int64_t h) {
    for (int64_t i = 1; i < h; i++)
        if (r[i] != r[0]) return -1e9f;
    return fb(r[0]);
}

static void dcall_base(DCall *d, const Group *g, int64_t ep, int64_t rank, int64_t M, int64_t bs, int64_t k,
                       const uint16_t *x, const int32_t *ids) {
    memset(d, 0, sizeof *d);
    d->bs = bs;
    d->h = H;
    d->k = k;
    d->xdt = ACL_BF16;
    d->x = x;
    d->ids = ids;
    d->group_ep = g->name;
    d->group_tp = "";
    d->ep = ep;
    d->rank = rank;
    d->M = M;
    d->tn_type = 1;
    d->dev = (int)rank;
}

/* output sizes: expandXOut rows and the lengths of assistInfoForCombineOut, expertTokenNumsOut, epRecvCountsOut */
static void dcall_out(DCall *d, int64_t ex_rows, int64_t assist_len, int64_t tn_len, int64_t er_len) {
    d->ex_rows = ex_rows;
    d->assist_len = assist_len;
    d->tn_len = tn_len;
    d->er_len = er_len;
}

/* tpSendCounts with tpWorldSize = 1 */
static const int32_t TP1_SEND[1] = {0};

/* fp32 sum of xv * w[j] over the k slots of a token, in slot order, skipping the slots its mask row m masks
 * (m == NULL: none): what combine gives for a constant row xv through the identity FFN */
static float weighted(float xv, const float *w, const uint8_t *m, int k) {
    float acc = 0.0f;
    for (int j = 0; j < k; j++)
        if (!m || m[j]) acc = acc + xv * w[j];
    return acc;
}

/* one check: xOut token t of combine c is a constant row of value want */
static void check_token(const char *what, const CCall *c, int64_t t, float want) {
    float got = row_label(c->x_out + t * c->h, c->h);
    CHECK(got == want, "%s r%lld t%lld: %g want %g", what, (long long)c->rank, (long long)t, got, want);
}

/* expected dispatch result: rows (labels), triples, epRecvCounts, tokenNums */
static void expect_rows(const char *what, const DCall *d, int n, const float *labels, const int *triples, int nb,
                        const int *er, int ntn, const long *tn) {
    if (!call_ok(what, d->rank, &d->st)) return;
    const uint16_t *ex = (const uint16_t *)d->expand_x;
    for (int i = 0; i < n; i++) {
        float l = row_label(ex + (int64_t)i * d->h, d->h);
        CHECK(l == labels[i], "%s rank %lld row %d: label %g want %g", what, (long long)d->rank, i, l, labels[i]);
        if (triples)
            CHECK(d->assist[3 * i] == triples[3 * i] && d->assist[3 * i + 1] == triples[3 * i + 1] &&
                      d->assist[3 * i + 2] == triples[3 * i + 2],
                  "%s rank %lld triple %d: (%d,%d,%d) want (%d,%d,%d)", what, (long long)d->rank, i, d->assist[3 * i],
                  d->assist[3 * i + 1], d->assist[3 * i + 2], triples[3 * i], triples[3 * i + 1], triples[3 * i + 2]);
    }
    CHECK(untouched(ex + (int64_t)n * d->h, (size_t)(d->ex_rows - n) * d->h * 2), "%s rank %lld: rows after %d written",
          what, (long long)d->rank, n);
    if (triples)
        CHECK(untouched(d->assist + 3 * n, (size_t)(d->assist_len - 3 * n) * 4), "%s rank %lld: assist tail written",
              what, (long long)d->rank);
    for (int b = 0; b < nb; b++)
        CHECK(d->er[b] == er[b], "%s rank %lld epRecvCounts[%d] = %d want %d", what, (long long)d->rank, b, d->er[b], er[b]);
    CHECK(untouched(d->er + nb, (size_t)(d->er_len - nb) * 4), "%s rank %lld: epRecvCounts tail written", what,
          (long long)d->rank);
    for (int j = 0; j < ntn; j++)
        CHECK(d->tn[j] == tn[j], "%s rank %lld expertTokenNums[%d] = %lld want %ld", what, (long long)d->rank, j,
              (long long)d->tn[j], tn[j]);
}

/* ---- worlds of one EP group ------------------------------------------------------------------------ */
typedef struct {
    Group g;
    int arn;              /* D: AddRmsNormV2 instead of CombineV3 */
    const uint8_t *mask1; /* A: rank 1's 1-D mask (CS §10.4) or NULL */
    int mode;             /* J: 0 rank 0 has an out-of-range id; 1 only rank 0 launches */
    DCall d[2];           /* J: the dispatch results */
} Sc;

static const int DEVS[MAXDEV] = {0, 1, 2, 3, 4, 5, 6, 7};

/* one EP group over devices 0..n-1; fn runs on the devices run[0..n_run), or on all n when run is NULL */
static void run_world(Sc *sc, int n, const int *run, int n_run, RankFn fn) {
    group_make(&sc->g, n, DEVS);
    run_ranks(run ? n_run : n, run ? run : DEVS, fn, sc);
    group_free(&sc->g);
}

/* ====================== A: CS §10 world (CombineV3 + AddRmsNormV2, H = 1024) ===================== */
static void sc_a_rank(int r, void *arg) {
    Sc *sc = (Sc *)arg;
    const int bs = 3, k = 2;
    uint16_t *x = malloc(sizeof(uint16_t) * bs * H), *res = malloc(sizeof(uint16_t) * bs * H), gam[H];
    for (int t = 0; t < bs; t++)
        for (int i = 0; i < H; i++) {
            x[t * H + i] = bf(X10[r][t][i % 4]);
            res[t * H + i] = bf(RES10[r][t][i % 4]);
        }
    for (int i = 0; i < H; i++) gam[i] = bf(GAMMA10[i % 4]);
    const uint8_t *mask = (r == 1 && sc->mask1) ? sc->mask1 : NULL;
    DCall d;
    dcall_base(&d, &sc->g, 4, r, 4, bs, k, x, IDS10[r]);
    d.mask = mask;
    d.mask_nd = 1;
    dcall_out(&d, 12, 12 * 128, 1, 4);
    do_dispatch(&d);
    call_ok("A dispatch", r, &d.st);
    int n = d.er[3];
    if (!sc->mask1) {
        for (int b = 0; b < 4; b++)
            CHECK(d.er[b] == CS10_COUNTS[r * 4 + b], "A epRecvCounts r%d[%d] = %d", r, b, d.er[b]);
        CHECK(d.tn[0] == n, "A tokenNums");
    }
    CHECK(untouched((uint16_t *)d.expand_x + (int64_t)n * H, (size_t)(12 - n) * H * 2), "A rows after N untouched");
    /* FFN: expert r multiplies by r + 1 */
    uint16_t *ffn = (uint16_t *)d.expand_x;
    for (int64_t i = 0; i < (int64_t)n * H; i++) ffn[i] = bf((float)(r + 1) * fb(ffn[i]));
    const int32_t zero_tp = 0;
    for (int arn = 0; arn < 2; arn++) {
        CCall c;
        ccall_from(&c, &d, W10[r], &zero_tp, 0);
        c.arn = arn;
        ccall_norm(&c, res, gam);
        if (combine_ok(&c, arn ? "A ARN" : "A CV3")) {
            for (int t = 0; t < bs; t++) {
                if (mask && t == 2) {
                    CHECK(untouched(c.x_out + t * H, H * 2), "A mask: r1 t2 xOut must stay unwritten");
                    if (arn)
                        CHECK(untouched(c.y_out + t * H, H * 2) && untouched(c.rstd + t, 4),
                              "A mask: r1 t2 yOut/rstd must stay unwritten");
                    continue;
                }
                int bad = 0;
                for (int i = 0; i < H; i++) {
                    if (!arn && c.x_out[t * H + i] != bf(CV3X10[r][t][i % 4])) bad++;
                    if (arn && c.x_out[t * H + i] != bf(ARNX10[r][t][i % 4])) bad++;
                    if (arn && c.y_out[t * H + i] != bf(Y10[r][t][i % 4])) bad++;
                }
                CHECK(bad == 0, "A %s r%d t%d: %d mismatching elements", arn ? "ARN" : "CV3", r, t, bad);
                if (arn)
                    CHECK(f2u(c.rstd[t]) == RSTD1024[r][t], "A rstd r%d t%d 0x%08x want 0x%08x", r, t, f2u(c.rstd[t]),
                          RSTD1024[r][t]);
            }
        }
        ccall_free(&c);
    }
    dcall_free(&d);
    free(x);
    free(res);
}

static void scenario_a(const uint8_t *mask1) {
    Sc sc = {.mask1 = mask1};
    run_world(&sc, 4, NULL, 0, sc_a_rank);
}

/* ====================== B: TP = 2 (DS §14.7) + combine with the TP reduce-scatter ================= */
typedef struct {
    Group ep[2], tp[2];
} ScB;

/* global rank g = 2e + t: EP rank e of slice t, TP rank t of TP group e, on device g */
static void sc_b_dispatch(DCall *d, ScB *sc, int g, const uint16_t *x, const int32_t *ids, int64_t quant) {
    const int e = g / 2, t = g % 2;
    dcall_base(d, &sc->ep[t], 2, e, 2, 2, 1, x, ids);
    d->dev = g;
    d->group_tp = sc->tp[e].name;
    d->tp = 2;
    d->tp_rank = t;
    d->quant = quant;
    dcall_out(d, 8, 4 * 128, 1, 4);
    d->tp_len = 2;
    do_dispatch(d);
}

static void sc_b_rank(int g, void *arg) {
    ScB *sc = (ScB *)arg;
    const int e = g / 2, t = g % 2;
    static const int32_t ids[2][2][2] = {{{0, 1}, {1, 0}}, {{1, 1}, {0, 1}}}; /* [slice][ep rank][token] */
    uint16_t x[2 * H];
    fill_label_rows(x, 2, H, (float)(t * 64 + e * 16 + 1)); /* A_e[t'] = 16e+t'+1, B_e[t'] = 64+16e+t'+1 */
    DCall d;
    sc_b_dispatch(&d, sc, g, x, ids[t][e], 0);
#define A_(e_, t_) (16.0f * (e_) + (t_) + 1)
#define B_(e_, t_) (64.0f + 16.0f * (e_) + (t_) + 1)
    const float l00[] = {A_(0, 0), A_(1, 1), B_(1, 0)}, l01[] = {B_(1, 0), A_(0, 0), A_(1, 1)};
    const float l10[] = {A_(0, 1), A_(1, 0), B_(0, 0), B_(0, 1), B_(1, 1)},
                l11[] = {B_(0, 0), B_(0, 1), B_(1, 1), A_(0, 1), A_(1, 0)};
    const int t00[] = {0, 0, 0, 1, 1, 0}, t01[] = {1, 0, 0}, t10[] = {0, 1, 0, 1, 0, 0}, t11[] = {0, 0, 0, 0, 1, 0, 1, 1, 0};
    const int e00[] = {1, 2, 0, 1}, e01[] = {0, 1, 1, 2}, e10[] = {1, 2, 2, 3}, e11[] = {2, 3, 1, 2};
    const float *L[4] = {l00, l01, l10, l11};
    const int *TR[4] = {t00, t01, t10, t11}, *ER[4] = {e00, e01, e10, e11};
    const int N[4] = {3, 3, 5, 5}, OWN[4] = {2, 1, 2, 3};
    const int TPW[4][2] = {{2, 1}, {2, 1}, {2, 3}, {2, 3}};
    expect_rows("B", &d, N[g], L[g], NULL, 4, ER[g], 1, (long[]){N[g]});
    for (int i = 0; i < OWN[g] && d.st.run == 0; i++)
        CHECK(d.assist[3 * i] == TR[g][3 * i] && d.assist[3 * i + 1] == TR[g][3 * i + 1] &&
                  d.assist[3 * i + 2] == TR[g][3 * i + 2], "B (%d,%d) triple %d", e, t, i);
    CHECK(untouched(d.assist + 3 * OWN[g], (size_t)(4 * 128 - 3 * OWN[g]) * 4), "B: no triples for the peer rows");
    CHECK(d.tr[0] == TPW[g][0] && d.tr[1] == TPW[g][1], "B (%d,%d) tpRecvCounts [%d,%d]", e, t, d.tr[0], d.tr[1]);
    /* identity FFN, w = 1: the TP add doubles every row, so xOut = 2 x */
    const float w[2] = {1.0f, 1.0f};
    CCall c;
    ccall_from(&c, &d, w, d.tr, 2);
    combine_ok(&c, "B combine");
    for (int tok = 0; tok < 2 && !c.st.run; tok++) check_token("B combine", &c, tok, 2.0f * fb(x[tok * H]));
    ccall_free(&c);
    dcall_free(&d);

    /* quant mode 2 with TP: int8 rows and dynamicScales follow the same self-then-peer layout */
    sc_b_dispatch(&d, sc, g, x, ids[t][e], 2);
    if (call_ok("B quant", g, &d.st)) {
        const int8_t *q = (const int8_t *)d.expand_x;
        int bad = 0;
        for (int i = 0; i < N[g] * H; i++) bad += q[i] != 127;
        CHECK(bad == 0, "B quant (%d,%d): constant rows quantise to 127", e, t);
        for (int i = 0; i < N[g]; i++) {
            float qs = 127.0f / L[g][i];
            CHECK(f2u(d.dyn[i]) == f2u(1.0f / qs), "B quant (%d,%d) dynamicScales[%d]", e, t, i);
        }
        CHECK(untouched(d.dyn + N[g], (size_t)(8 - N[g]) * 4), "B quant: dynamicScales tail untouched");
        CHECK(untouched(q + N[g] * H, (size_t)(8 - N[g]) * H), "B quant: expandX tail untouched");
    }
    dcall_free(&d);
}

static void scenario_b(void) {
    ScB sc;
    const int ep0[2] = {0, 2}, ep1[2] = {1, 3}, tp0[2] = {0, 1}, tp1[2] = {2, 3};
    group_make(&sc.ep[0], 2, ep0);
    group_make(&sc.ep[1], 2, ep1);
    group_make(&sc.tp[0], 2, tp0);
    group_make(&sc.tp[1], 2, tp1);
    run_ranks(4, DEVS, sc_b_rank, &sc);
    for (int i = 0; i < 2; i++) {
        group_free(&sc.ep[i]);
        group_free(&sc.tp[i]);
    }
}

/* ====================== C: shared expert + L = 2 (DS §14.4), quant mode 2, combine ================= */
/* rank 0 is the shared-expert rank (6 rows), ranks 1 and 2 hold two MoE experts each */
static void sc_c_dispatch(DCall *d, Sc *sc, int r, const uint16_t *x, const int32_t *ids) {
    dcall_base(d, &sc->g, 3, r, 4, 2, 2, x, ids);
    d->S = 1;
    d->R = 1;
    dcall_out(d, r == 0 ? 6 : 12, (r == 0 ? 6 : 12) * 128, r == 0 ? 1 : 2, r == 0 ? 3 : 6);
}

static void sc_c_rank(int r, void *arg) {
    Sc *sc = (Sc *)arg;
    static const int32_t ids[3][4] = {{0, 3, 2, 1}, {1, 0, 3, 2}, {0, 2, 1, 3}};
    uint16_t x[2 * H];
    fill_label_rows(x, 2, H, (float)(r * 16 + 1));
    DCall d;
    sc_c_dispatch(&d, sc, r, x, ids[r]);
    do_dispatch(&d);
    if (r == 0)
        expect_rows("C", &d, 6, (float[]){X_(0, 0), X_(0, 1), X_(1, 0), X_(1, 1), X_(2, 0), X_(2, 1)},
                    (int[]){0, 0, 2, 0, 1, 2, 1, 0, 2, 1, 1, 2, 2, 0, 2, 2, 1, 2}, 3, (int[]){2, 4, 6}, 1, (long[]){6});
    else if (r == 1)
        expect_rows("C", &d, 6, (float[]){X_(0, 0), X_(1, 0), X_(2, 0), X_(0, 1), X_(1, 0), X_(2, 1)},
                    (int[]){0, 0, 0, 1, 0, 1, 2, 0, 0, 0, 1, 1, 1, 0, 0, 2, 1, 0}, 6, (int[]){1, 2, 3, 4, 5, 6}, 2,
                    (long[]){3, 3});
    else
        expect_rows("C", &d, 6, (float[]){X_(0, 1), X_(1, 1), X_(2, 0), X_(0, 0), X_(1, 1), X_(2, 1)},
                    (int[]){0, 1, 0, 1, 1, 1, 2, 0, 1, 0, 0, 1, 1, 1, 0, 2, 1, 1}, 6, (int[]){1, 2, 3, 4, 5, 6}, 2,
                    (long[]){3, 3});
    /* combine, identity FFN: w0 x + w1 x + x (shared, unweighted) */
    const float w[4] = {0.25f, 0.5f, 0.25f, 0.5f};
    CCall c;
    ccall_from(&c, &d, w, TP1_SEND, 1);
    combine_ok(&c, "C combine");
    for (int t = 0; t < 2 && !c.st.run; t++)
        check_token("C combine", &c, t, fb(bf(weighted(X_(r, t), w + 2 * t, NULL, 2) + X_(r, t))));
    ccall_free(&c);
    dcall_free(&d);

    /* quant mode 2 with smooth scales 2^si: x row = [2,-1,0.5,0.375] tiled -> int8 [127,-64,32,24] */
    uint16_t xq[2 * H];
    const float pat[4] = {2.0f, -1.0f, 0.5f, 0.375f};
    for (int i = 0; i < 2 * H; i++) xq[i] = bf(pat[i % 4]);
    float *scales = malloc(sizeof(float) * 5 * H);
    for (int si = 0; si < 5; si++)
        for (int i = 0; i < H; i++) scales[si * H + i] = (float)(1 << si);
    sc_c_dispatch(&d, sc, r, xq, ids[r]);
    d.quant = 2;
    d.scales = scales;
    d.scales_rows = 5;
    do_dispatch(&d);
    if (call_ok("C quant", r, &d.st)) {
        const int8_t *q = (const int8_t *)d.expand_x;
        int bad = 0;
        for (int i = 0; i < 6 * H; i++) bad += q[i] != (int8_t[]){127, -64, 32, 24}[i % 4];
        CHECK(bad == 0, "C quant r%d: int8 rows", r);
        for (int i = 0; i < 6; i++) {
            /* smooth row: shared rows use s = 0, MoE expert e uses S + e */
            int kslot = d.assist[3 * i + 2];
            int e = r == 0 ? -1 : (r - 1) * 2 + (i < 3 ? 0 : 1);
            int si = kslot == 2 ? 0 : 1 + e;
            float amax = 2.0f * (float)(1 << si), qs = 127.0f / amax, want = 1.0f / qs;
            CHECK(f2u(d.dyn[i]) == f2u(want), "C quant r%d row %d: scale 0x%08x want 0x%08x (smooth row %d)", r, i,
                  f2u(d.dyn[i]), f2u(want), si);
        }
        CHECK(untouched(d.dyn + 6, (size_t)(d.ex_rows - 6) * 4), "C quant: dynamicScales tail untouched");
    }
    dcall_free(&d);
    free(scales);
}

static void scenario_c(void) {
    Sc sc = {0};
    run_world(&sc, 3, NULL, 0, sc_c_rank);
}

/* ====================== D: special experts (DS §14.5, CS §6) ====================================== */
static void sc_d_rank(int r, void *arg) {
    Sc *sc = (Sc *)arg;
    static const int32_t ids[4][4] = {{0, 4, 5, 6}, {6, 1, 2, 3}, {4, 5, 1, 2}, {3, 0, 6, 4}};
    uint16_t x[2 * H], a1[1] = {bf(2.0f)}, a2[1] = {bf(-1.0f)}, v[H], res[2 * H], gam[H];
    fill_label_rows(x, 2, H, (float)(r * 16 + 1));
    for (int i = 0; i < H; i++) {
        v[i] = bf(1.0f);
        gam[i] = bf(1.0f);
    }
    memset(res, 0, sizeof res);
    DCall d;
    dcall_base(&d, &sc->g, 4, r, 4, 2, 2, x, ids[r]);
    d.zero = d.copy = d.cnst = 1;
    dcall_out(&d, 8, 8 * 128, 1, 4);
    do_dispatch(&d);
    static const float L[4][2] = {{X_(0, 0), X_(3, 0)}, {X_(1, 0), X_(2, 1)}, {X_(1, 1), X_(2, 1)}, {X_(1, 1), X_(3, 0)}};
    static const int TR[4][6] = {{0, 0, 0, 3, 0, 1}, {1, 0, 1, 2, 1, 0}, {1, 1, 0, 2, 1, 1}, {1, 1, 1, 3, 0, 0}};
    static const int ER[4][4] = {{1, 1, 1, 2}, {0, 1, 2, 2}, {0, 1, 2, 2}, {0, 1, 1, 2}};
    if (!sc->arn) expect_rows("D", &d, 2, L[r], TR[r], 4, ER[r], 1, (long[]){2});
    const float w[4] = {0.5f, 0.25f, 0.5f, 0.25f};
    CCall c;
    ccall_from(&c, &d, w, TP1_SEND, 1);
    c.arn = sc->arn;
    ccall_special(&c, x, a1, a2, v);
    ccall_norm(&c, res, gam);
    combine_ok(&c, "D combine");
    for (int t = 0; t < 2 && !c.st.run; t++) {
        float xv = X_(r, t), acc = 0.0f;
        for (int k = 0; k < 2; k++) {
            int id = ids[r][t * 2 + k];
            float wk = w[t * 2 + k];
            if (id < 4 || id == 5) acc = acc + xv * wk;             /* MoE (identity FFN) or copy */
            else if (id == 6) acc = acc + ((xv * 2.0f) + (1.0f * -1.0f)) * wk; /* const */
        }
        check_token(sc->arn ? "D ARN xOut" : "D CV3", &c, t, sc->arn ? fb(bf(acc + 0.0f)) : fb(bf(acc)));
    }
    ccall_free(&c);
    dcall_free(&d);
}

static void scenario_d(int arn) {
    Sc sc = {.arn = arn};
    run_world(&sc, 4, NULL, 0, sc_d_rank);
}

/* ====================== E: elastic scale-down (DS §14.6) ========================================== */
static const int32_t ELASTIC_E[12] = {1, 3, 0, 3, 0, 1, -1, 2, 0, 1, 3, -1};

static void sc_e_rank(int i, void *arg) {
    Sc *sc = (Sc *)arg;
    static const int orig_of[3] = {0, 1, 3};
    static const int32_t ids[4][4] = {{0, 1, 2, 0}, {1, 2, 0, 1}, {0}, {2, 0, 1, 2}};
    const int r = orig_of[i];
    uint16_t x[2 * H];
    fill_label_rows(x, 2, H, (float)(r * 16 + 1));
    DCall d;
    dcall_base(&d, &sc->g, 4, r, 4, 2, 2, x, ids[r]);
    d.elastic = ELASTIC_E;
    d.elastic_len = 12;
    dcall_out(&d, 8, 8 * 128, 1, 4);
    do_dispatch(&d);
    static const float L[3][4] = {{X_(0, 0), X_(0, 1), X_(1, 1), X_(3, 0)},
                                  {X_(0, 0), X_(1, 0), X_(1, 1), X_(3, 1)},
                                  {X_(0, 1), X_(1, 0), X_(3, 0), X_(3, 1)}};
    static const int TR[3][12] = {{0, 0, 0, 0, 1, 1, 1, 1, 0, 2, 0, 1},
                                  {0, 0, 1, 1, 0, 0, 1, 1, 1, 2, 1, 0},
                                  {0, 1, 0, 1, 0, 1, 2, 0, 0, 2, 1, 1}};
    static const int ER[3][3] = {{2, 3, 4}, {1, 3, 4}, {1, 2, 4}};
    expect_rows("E", &d, 4, L[i], TR[i], 3, ER[i], 1, (long[]){4});
    const float w[4] = {0.25f, 0.5f, 0.25f, 0.5f};
    CCall c;
    ccall_from(&c, &d, w, TP1_SEND, 1);
    combine_ok(&c, "E combine");
    for (int t = 0; t < 2 && !c.st.run; t++)
        check_token("E combine", &c, t, fb(bf(weighted(X_(r, t), w + 2 * t, NULL, 2))));
    ccall_free(&c);
    dcall_free(&d);
}

static void scenario_e(void) {
    Sc sc = {0};
    const int alive[3] = {0, 1, 3};
    run_world(&sc, 4, alive, 3, sc_e_rank);
}

/* ====================== F: int8 communication quantisation (CS §7) ================================ */
static void sc_f_rank(int r, void *arg) {
    Sc *sc = (Sc *)arg;
    static const int32_t ids[2][2] = {{0, 1}, {1, 0}};
    static const float pat[8] = {1, -2, 0.5f, 100, 3, 0, -0.1015625f, 64};
    static const float deq[8] = {0.7890625f, -2.375f, 0.7890625f, 100, 3.15625f, 0, 0, 64};
    uint16_t x[2 * H];
    for (int i = 0; i < 2 * H; i++) x[i] = bf(pat[i % 8]);
    DCall d;
    dcall_base(&d, &sc->g, 2, r, 2, 2, 1, x, ids[r]);
    dcall_out(&d, 4, 4 * 128, 1, 2);
    do_dispatch(&d);
    call_ok("F dispatch", r, &d.st);
    const float w[2] = {1.0f, 1.0f};
    CCall c;
    ccall_from(&c, &d, w, TP1_SEND, 1);
    c.cqm = 2;
    combine_ok(&c, "F combine");
    int bad = 0;
    for (int i = 0; i < 2 * H && !c.st.run; i++) bad += c.x_out[i] != bf(deq[i % 8]);
    CHECK(bad == 0, "F int8 combine r%d: %d mismatches", r, bad);
    ccall_free(&c);
    dcall_free(&d);
}

static void scenario_f(void) {
    Sc sc = {0};
    run_world(&sc, 2, NULL, 0, sc_f_rank);
}

/* ====================== G: 2-D mask (DS §14.3) + combine ========================================== */
static const int32_t IDS141[4][6] = {{0, 1, 2, 3, 1, 2}, {3, 0, 0, 2, 1, 3}, {1, 0, 3, 1, 2, 0}, {2, 3, 0, 1, 3, 2}};

static void sc_g_rank(int r, void *arg) {
    Sc *sc = (Sc *)arg;
    static const uint8_t m2[4][6] = {{1, 0, 0, 0, 1, 1}, {1, 1, 0, 1, 1, 0}, {0, 0, 1, 1, 0, 1}, {1, 1, 1, 1, 1, 1}};
    uint16_t x[3 * H];
    fill_label_rows(x, 3, H, (float)(r * 16 + 1));
    DCall d;
    dcall_base(&d, &sc->g, 4, r, 4, 3, 2, x, IDS141[r]);
    d.mask = m2[r];
    d.mask_nd = 2;
    dcall_out(&d, 12, 12 * 128, 1, 4);
    do_dispatch(&d);
    static const float L[4][4] = {{X_(0, 0), X_(1, 0), X_(2, 2), X_(3, 1)},
                                  {X_(0, 2), X_(1, 2), X_(2, 1), X_(3, 1)},
                                  {X_(0, 2), X_(1, 1), X_(3, 0), X_(3, 2)},
                                  {X_(1, 0), X_(2, 1), X_(3, 0), X_(3, 2)}};
    static const int TR[4][12] = {{0, 0, 0, 1, 0, 1, 2, 2, 1, 3, 1, 0},
                                  {0, 2, 0, 1, 2, 0, 2, 1, 1, 3, 1, 1},
                                  {0, 2, 1, 1, 1, 1, 3, 0, 0, 3, 2, 1},
                                  {1, 0, 0, 2, 1, 0, 3, 0, 1, 3, 2, 0}};
    static const int ER[4][4] = {{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 2, 4}, {0, 1, 2, 4}};
    expect_rows("G", &d, 4, L[r], TR[r], 4, ER[r], 1, (long[]){4});
    const float w[6] = {0.25f, 0.5f, 0.25f, 0.5f, 0.25f, 0.5f};
    CCall c;
    ccall_from(&c, &d, w, TP1_SEND, 1);
    combine_ok(&c, "G combine");
    for (int t = 0; t < 3 && !c.st.run; t++) {
        if (!m2[r][2 * t] && !m2[r][2 * t + 1]) {
            CHECK(untouched(c.x_out + t * H, H * 2), "G r%d t%d: token with an all-false mask row is not written", r, t);
            continue;
        }
        check_token("G combine", &c, t, fb(bf(weighted(X_(r, t), w + 2 * t, m2[r] + 2 * t, 2))));
    }
    ccall_free(&c);
    dcall_free(&d);
}

static void scenario_g(void) {
    Sc sc = {0};
    run_world(&sc, 4, NULL, 0, sc_g_rank);
}

/* ====================== H: the seeds' configurations (8 ranks, H = 7168) ========================== */
#define SH 7168
typedef struct {
    Group ep, tp[8];
    int arn_seed;
} ScH;

static void sc_h_rank(int r, void *arg) {
    ScH *sc = (ScH *)arg;
    const int bs = 8, k = 3;
    uint16_t *x = malloc(sizeof(uint16_t) * bs * SH);
    int32_t ids[8 * 3];
    float w[8 * 3];
    for (int i = 0; i < bs * SH; i++) x[i] = bf(1.0f);
    for (int t = 0; t < bs; t++)
        for (int j = 0; j < k; j++) {
            ids[t * k + j] = j;
            w[t * k + j] = 0.1f;
        }
    const int64_t M = sc->arn_seed ? 8 : 7, R = sc->arn_seed ? 0 : 1, S = sc->arn_seed ? 0 : 1;
    const int shared_rank = !sc->arn_seed && r == 0;
    DCall d;
    dcall_base(&d, &sc->ep, 8, r, M, bs, k, x, ids);
    d.h = SH;
    d.expert_scales = w;
    d.group_tp = sc->tp[r].name;
    d.tp = 1;
    d.S = S;
    d.R = R;
    d.gbs = bs * 8;
    dcall_out(&d, 64, 64 * 128, 1, 8);
    d.tp_len = 1;
    d.comm_alg = NULL;
    if (sc->arn_seed) {
        d.zero = 7;
        d.copy = 8;
        d.cnst = 10;
        do_dispatch(&d); /* warm-up without elastic on all 8 ranks */
        call_ok("H ARN seed warm-up dispatch", r, &d.st);
        dcall_free(&d);
    }
    static const int32_t el[20] = {1, 4, 0, 4, 0, 1, -1, -1, -1, -1, 2, 3, 0, 1, 6, 7, -1, -1, -1, -1};
    if (sc->arn_seed && r >= 2 && r <= 5) {
        free(x);
        return; /* removed by the scale-down */
    }
    if (sc->arn_seed) {
        d.elastic = el;
        d.elastic_len = 20;
    }
    do_dispatch(&d);
    call_ok("H seed dispatch", r, &d.st);
    CHECK(untouched(d.tr, 4), "H seed: tpRecvCounts untouched with tpWorldSize = 1");
    if (shared_rank) CHECK(d.er[7] == 64 && d.tn[0] == 64, "H barrier seed: shared rank gets every token");
    CCall c;
    ccall_from(&c, &d, w, d.tr, 1);
    c.arn = sc->arn_seed;
    uint16_t *ones = malloc(sizeof(uint16_t) * bs * SH), *zeros = calloc((size_t)10 * SH, sizeof(uint16_t));
    for (int i = 0; i < bs * SH; i++) ones[i] = bf(1.0f);
    if (sc->arn_seed) {
        c.shared_x = ones;
        c.shared_x_3d = 1;
        ccall_special(&c, ones, zeros, zeros, zeros);
        ccall_norm(&c, ones, ones);
    }
    combine_ok(&c, "H seed combine");
    if (!c.st.run) {
        float acc = 0.0f;
        for (int j = 0; j < k; j++) acc = acc + 1.0f * 0.1f;
        acc = acc + 1.0f; /* shared expert row (barrier seed) or sharedExpertX (ARN seed) */
        if (sc->arn_seed) acc = acc + 1.0f; /* residual */
        check_token("H seed", &c, 0, fb(bf(acc)));
        if (sc->arn_seed) CHECK(row_label(c.y_out, SH) == 1.0f, "H ARN seed r%d: y %g", r, row_label(c.y_out, SH));
    }
    ccall_free(&c);
    dcall_free(&d);
    free(ones);
    free(zeros);
    free(x);
}

static void scenario_h(int arn_seed) {
    ScH sc = {.arn_seed = arn_seed};
    group_make(&sc.ep, 8, DEVS);
    for (int i = 0; i < 8; i++) group_make(&sc.tp[i], 1, &DEVS[i]);
    run_ranks(8, DEVS, sc_h_rank, &sc);
    group_free(&sc.ep);
    for (int i = 0; i < 8; i++) group_free(&sc.tp[i]);
}

/* ====================== K: different BS per rank (globalBs) ======================================= */
static void sc_k_rank(int r, void *arg) {
    Sc *sc = (Sc *)arg;
    static const int32_t ids[2][2] = {{1}, {0, 1}};
    const int bs = r == 0 ? 1 : 2;
    uint16_t x[2 * H];
    fill_label_rows(x, bs, H, (float)(r * 16 + 1));
    DCall d;
    dcall_base(&d, &sc->g, 2, r, 2, bs, 1, x, ids[r]);
    d.gbs = 4;
    dcall_out(&d, 4, 4 * 128, 1, 2);
    do_dispatch(&d);
    if (r == 0) expect_rows("K", &d, 1, (float[]){X_(1, 0)}, (int[]){1, 0, 0}, 2, (int[]){0, 1}, 1, (long[]){1});
    else expect_rows("K", &d, 2, (float[]){X_(0, 0), X_(1, 1)}, (int[]){0, 0, 0, 1, 1, 0}, 2, (int[]){1, 2}, 1, (long[]){2});
    const float w[2] = {0.5f, 0.5f};
    CCall c;
    ccall_from(&c, &d, w, TP1_SEND, 1);
    combine_ok(&c, "K combine");
    for (int t = 0; t < bs && !c.st.run; t++) check_token("K combine", &c, t, X_(r, t) * 0.5f);
    ccall_free(&c);
    dcall_free(&d);
}

static void scenario_k(void) {
    Sc sc = {0};
    run_world(&sc, 2, NULL, 0, sc_k_rank);
}

/* ====================== I: validation status codes and call records ============================== */
/* the tensors the combine validation cases choose from */
typedef struct {
    DT ex, ex16, ti, as, es, w, ts, el, xo, res, gam, yo, rs, xo3, yo16, xo316;
} CombineArgs;

/* CombineV3 GetWorkspaceSize on group "grp" (ep 2, rank 0, M 2, tp 1), optional tpSendCounts / elasticInfo */
static int cv3_gws(const CombineArgs *a, const aclTensor *ts, const aclTensor *el, uint64_t *ws, aclOpExecutor **exe) {
    return aclnnMoeDistributeCombineV3GetWorkspaceSize(a->ex.t, a->ti.t, a->as.t, a->es.t, a->w.t, ts, NULL, NULL, NULL,
                                                       NULL, NULL, NULL, el, NULL, NULL, NULL, NULL, "grp", 2, 0, 2, "",
                                                       1, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 0, 0, 0, a->xo.t, ws, exe);
}

/* CombineAddRmsNormV2 GetWorkspaceSize in the same world, with expandX ex, zeroExpertNum and outputs yOut, xOut */
static int arn_gws(const CombineArgs *a, const aclTensor *ex, int64_t zero, aclTensor *yo, aclTensor *xo,
                   uint64_t *ws, aclOpExecutor **exe) {
    return aclnnMoeDistributeCombineAddRmsNormV2GetWorkspaceSize(
        ex, a->ti.t, a->as.t, a->es.t, a->w.t, a->res.t, a->gam.t, a->ts.t, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, "grp", 2, 0, 2, "", 1, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 1e-6f, zero, 0, 0, yo, a->rs.t, xo, ws, exe);
}

static void validation(void) {
    CHECK(aclrtSetCurrentContext(g_ctx[0]) == 0, "ctx");
    int32_t ids[2] = {0, 1};
    uint16_t x[2 * H] = {0};
    struct {
        const char *what;
        int expect;
        const char *needle;
    } cases[] = {
        {"ok", 0, NULL},
        {"x NULL", 161001, "x is NULL"},
        {"groupTp NULL", 161001, "groupTp"},
        {"ep 1", 561002, "epWorldSize"},
        {"x fp32", 161002, "x has dtype"},
        {"H 512", 561002, "(H)"},
        {"buffsize", 561002, "HCCL_BUFFSIZE"},
        {"quant 1", 561002, "static"},
        {"tp0 small expandX", 561002, "expandXOut dim0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ws = 0;
        aclOpExecutor *exe = NULL;
        aclDataType xdt = ACL_BF16;
        const char *gtp = "";
        int64_t ep = 2, h = H, quant = 0, ex_rows = 2;
        if (!strcmp(cases[i].what, "groupTp NULL")) gtp = NULL;
        if (!strcmp(cases[i].what, "ep 1")) ep = 1;
        if (!strcmp(cases[i].what, "x fp32")) xdt = ACL_FLOAT;
        if (!strcmp(cases[i].what, "H 512")) h = 512;
        if (!strcmp(cases[i].what, "quant 1")) quant = 1;
        if (!strcmp(cases[i].what, "tp0 small expandX")) ex_rows = 1;
        if (!strcmp(cases[i].what, "buffsize")) setenv("HCCL_BUFFSIZE", "0", 1);
        DT tx = dt_2d(x, xdt, 1, h, 0), ti = dt_2d(ids, ACL_INT32, 1, 1, 0), te = dt_2d(NULL, ACL_BF16, ex_rows, h, 0),
           ta = dt_1d(NULL, ACL_INT32, 256, 0), tn = dt_1d(NULL, ACL_INT64, 1, 0), tr = dt_1d(NULL, ACL_INT32, 2, 0),
           tt = dt_1d(NULL, ACL_INT32, 0, 0), td = dt_1d(NULL, ACL_FLOAT, 2, 0);
        int rc = aclnnMoeDistributeDispatchV3GetWorkspaceSize(
            !strcmp(cases[i].what, "x NULL") ? NULL : tx.t, ti.t, NULL, NULL, NULL, NULL, "grp", ep, 0, 2, gtp, 0, 0, 0,
            1, 0, quant, 0, 1, NULL, 0, 0, 0, te.t, td.t, ta.t, tn.t, tr.t, tt.t, NULL, &ws, &exe);
        const char *m = aclGetRecentErrMsg();
        CHECK(rc == cases[i].expect, "validation '%s': status %d want %d (%s)", cases[i].what, rc, cases[i].expect,
              m ? m : "");
        if (cases[i].needle) CHECK(m && strstr(m, cases[i].needle), "validation '%s': message '%s' lacks '%s'",
                                   cases[i].what, m ? m : "(none)", cases[i].needle);
        if (!strcmp(cases[i].what, "buffsize")) {
            CHECK(m && strstr(m, "MB"), "buffsize message names MB");
            unsetenv("HCCL_BUFFSIZE");
        }
        if (rc == 0) {
            char rec[4096];
            aclsimLastCall(rec, sizeof rec);
            CHECK(strstr(rec, "aclnnMoeDistributeDispatchV3GetWorkspaceSize x=T(27,[1,1024]) expertIds=T(3,[1,1]) "
                              "scalesOptional=NULL") != NULL && strstr(rec, "groupEp=\"grp\" epWorldSize=2") &&
                      strstr(rec, "commAlg=NULL zeroExpertNum=0") && strstr(rec, "tpRecvCountsOut=T(3,[0])"),
                  "dispatch record: %s", rec);
            CHECK(ws == 16777216ull + 512ull * 48 * 48, "dispatch workspace %llu", (unsigned long long)ws);
            CHECK(aclDestroyAclOpExecutor(exe) == 0, "destroy unused executor");
        }
        DT *all[] = {&tx, &ti, &te, &ta, &tn, &tr, &tt, &td};
        for (size_t j = 0; j < 8; j++) dt_free(all[j]);
    }

    /* combine: tpSendCounts NULL, CV3 elastic length, ARN fp16, ARN record with normEps, negative special */
    {
        CombineArgs a = {
            .ex = dt_2d(NULL, ACL_BF16, 2, H, 0), .ex16 = dt_2d(NULL, ACL_FLOAT16, 2, H, 0),
            .ti = dt_2d(ids, ACL_INT32, 1, 1, 0), .as = dt_1d(NULL, ACL_INT32, 256, 0), .es = dt_1d(NULL, ACL_INT32, 2, 0),
            .w = dt_2d(NULL, ACL_FLOAT, 1, 1, 0), .ts = dt_1d(NULL, ACL_INT32, 1, 0), .el = dt_1d(NULL, ACL_INT32, 7, 0),
            .xo = dt_2d(NULL, ACL_BF16, 1, H, 0), .res = dt_3d(NULL, ACL_BF16, 1, 1, H, 0),
            .gam = dt_1d(NULL, ACL_BF16, H, 0), .yo = dt_3d(NULL, ACL_BF16, 1, 1, H, 0),
            .rs = dt_3d(NULL, ACL_FLOAT, 1, 1, 1, 0), .xo3 = dt_3d(NULL, ACL_BF16, 1, 1, H, 0),
            .yo16 = dt_3d(NULL, ACL_FLOAT16, 1, 1, H, 0), .xo316 = dt_3d(NULL, ACL_FLOAT16, 1, 1, H, 0)};
        uint64_t ws = 0;
        aclOpExecutor *exe = NULL;
        int rc = cv3_gws(&a, NULL, NULL, &ws, &exe);
        const char *m = aclGetRecentErrMsg();
        CHECK(rc == 561002 && m && strstr(m, "tpSendCounts"), "CV3 tpSendCounts NULL: %d %s", rc, m ? m : "");
        rc = cv3_gws(&a, a.ts.t, a.el.t, &ws, &exe);
        m = aclGetRecentErrMsg();
        CHECK(rc == 561002 && m && strstr(m, "elasticInfo") && strstr(m, "real CombineV3"), "CV3 elastic length: %d %s",
              rc, m ? m : "");
        rc = cv3_gws(&a, a.ts.t, NULL, &ws, &exe);
        CHECK(rc == 0, "CV3 ok: %d %s", rc, aclGetRecentErrMsg());
        if (rc == 0) {
            CHECK(ws == 16777216ull + 48ull * 10240, "combine workspace %llu", (unsigned long long)ws);
            CHECK(aclDestroyAclOpExecutor(exe) == 0, "destroy");
        }
        rc = arn_gws(&a, a.ex16.t, 0, a.yo16.t, a.xo316.t, &ws, &exe);
        CHECK(rc == 161002, "ARN fp16 expandX: %d", rc);
        rc = arn_gws(&a, a.ex.t, -3, a.yo.t, a.xo3.t, &ws, &exe);
        m = aclGetRecentErrMsg();
        CHECK(rc == 561002 && m && strstr(m, "zeroExpertNum"), "ARN negative zeroExpertNum: %d %s", rc, m ? m : "");
        rc = arn_gws(&a, a.ex.t, 0, a.yo.t, a.xo3.t, &ws, &exe);
        CHECK(rc == 0, "ARN ok: %d %s", rc, aclGetRecentErrMsg());
        char rec[8192];
        aclsimLastCall(rec, sizeof rec);
        CHECK(strstr(rec, "commAlg=NULL normEps=") != NULL && strstr(rec, "/0x358637bd zeroExpertNum=0") != NULL &&
                  strstr(rec, "yOut=T(27,[1,1,1024]) rstdOut=T(0,[1,1,1]) xOut=T(27,[1,1,1024])"),
              "ARN record: %s", rec);
        if (rc == 0) CHECK(aclDestroyAclOpExecutor(exe) == 0, "destroy");
        DT *all[] = {&a.ex, &a.ex16, &a.ti, &a.as, &a.es, &a.w, &a.ts, &a.el, &a.xo, &a.res, &a.gam, &a.yo, &a.rs,
                     &a.xo3, &a.yo16, &a.xo316};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) dt_free(all[j]);
    }
}

/* ====================== J: run-time errors: bad ids propagate, a missing rank times out ============ */
static void sc_j_rank(int r, void *arg) {
    Sc *sc = (Sc *)arg;
    if (sc->mode == 1 && r == 1) return;
    int32_t ids[2] = {r == 0 && sc->mode == 0 ? 5 : 0, 1};
    uint16_t x[2 * H];
    fill_label_rows(x, 2, H, 1.0f);
    DCall *d = &sc->d[r];
    dcall_base(d, &sc->g, 2, r, 2, 2, 1, x, ids);
    dcall_out(d, 4, 4 * 128, 1, 2);
    do_dispatch(d);
}

static void scenario_j(void) {
    for (int mode = 0; mode < 2; mode++) {
        Sc sc;
        memset(&sc, 0, sizeof sc);
        sc.mode = mode;
        if (mode == 1) setenv("ACLNN_SIM_HANG_TIMEOUT_MS", "300", 1);
        run_world(&sc, 2, NULL, 0, sc_j_rank);
        if (mode == 0) {
            CHECK(sc.d[0].st.gws == 0 && sc.d[0].st.run == 507015 && strstr(sc.d[0].st.msg, "expertIds[0][0] = 5"),
                  "J bad id: rank 0 %d %s", sc.d[0].st.run, sc.d[0].st.msg);
            CHECK(sc.d[1].st.run == 507015 && strstr(sc.d[1].st.msg, "EP rank 0 failed"), "J bad id: rank 1 %d %s",
                  sc.d[1].st.run, sc.d[1].st.msg);
            CHECK(untouched(sc.d[1].expand_x, 4 * H * 2), "J: failed dispatch writes nothing");
        } else {
            CHECK(sc.d[0].st.run == 507015 && strstr(sc.d[0].st.msg, "hang"), "J timeout: %d %s", sc.d[0].st.run,
                  sc.d[0].st.msg);
            unsetenv("ACLNN_SIM_HANG_TIMEOUT_MS");
        }
        dcall_free(&sc.d[0]);
        dcall_free(&sc.d[1]);
    }
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    world_open(8);
#define RUN(name, call)                                  \
    if (!only || strchr(only, name[0])) {                \
        printf("scenario %s\n", name);                   \
        fflush(stdout);                                  \
        call;                                            \
    }
    RUN("A  CS 10 combine/ARN (H=1024)", scenario_a(NULL));
    static const uint8_t mask1[3] = {1, 1, 0};
    RUN("A' CS 10.4 mask", scenario_a(mask1));
    RUN("B  TP=2 (DS 14.7)", scenario_b());
    RUN("C  shared experts + quant (DS 14.4, 6)", scenario_c());
    RUN("D  special experts CV3 (DS 14.5, CS 6)", scenario_d(0));
    RUN("D' special experts ARN", scenario_d(1));
    RUN("E  elastic (DS 14.6)", scenario_e());
    RUN("F  int8 comm quant (CS 7)", scenario_f());
    RUN("G  2-D mask (DS 14.3)", scenario_g());
    RUN("H  barrier seed config", scenario_h(0));
    RUN("H' AddRmsNorm seed config", scenario_h(1));
    RUN("K  different BS per rank (globalBs)", scenario_k());
    RUN("I  validation", validation());
    RUN("J  run-time errors", scenario_j());
    world_close(8);
    check_no_live_objects();
    printf("moe_e2e_test: %d checks, %d failures\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
