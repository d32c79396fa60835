/*
 * The simulated MoE operators follow the CANN release they emulate (ACLNN_SIM_CANN_VERSION, set per run by
 * tests/test_sim_releases.py): every release-dependent rule and kernel of aclnn_py/releases.py, checked against the
 * release this process runs, so one scenario run under an old and a new release covers both sides of a change.
 * The release comes from the simulator's own aclsysGetVersionNum; which changes it has comes from sim_releases.h,
 * generated from releases.py by the test (the same table the simulator is built from).
 *   moe_release_test <scenario>...   scenarios: rules window const scales perf v2 hier env
 * Build: gcc -std=gnu11 -O2 -ffp-contract=off -I<sim>/include -I<dir of sim_releases.h> -Isim/src
 *        tests/sim_c/moe_release_test.c sim/src/op_moe_kernels.c -L<sim>/lib64 -lopapi -lnnopbase -lascendcl -lhccl
 *        -lop_common -lpthread -lm   (op_moe_kernels.c: the expected const-expert results)
 */
#include "moe_e2e_common.h"
#include "op_moe_kernels.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"
#include "sim_releases.h"
#pragma GCC diagnostic pop

#define H 1024
static int32_t g_release; /* the emulated release, CANN's number */
static char g_release_text[128];

/* the release this process emulates has change c */
static int has(int c) { return g_release >= SIM_CHANGE_SINCE[c]; }

static uint16_t g_x[512 * 8192], g_ori[512 * 8192], g_v[8192], g_res[512 * 8192], g_gamma[8192];
static uint16_t g_alpha[2][8192];
static int32_t g_ids[512 * 17];
static float g_w[512 * 17], g_es[512 * 17];
static const int32_t NO_TP[1] = {0};

static void fill_inputs(void) {
    for (int i = 0; i < 512 * 8192; i++) {
        g_x[i] = bf((float)((i * 7) % 13) * 0.25f - 1.5f);
        g_ori[i] = g_x[i];
        g_res[i] = bf(0.5f);
    }
    for (int i = 0; i < 8192; i++) {
        g_v[i] = bf((float)(i % 5) - 2.0f);
        g_gamma[i] = bf(1.0f);
        g_alpha[0][i] = bf((float)((i * 3) % 7) * 0.01f - 0.03f);
        g_alpha[1][i] = bf((float)((i * 5) % 11) * -0.01f + 0.05f);
    }
    for (int i = 0; i < 512 * 17; i++) {
        g_ids[i] = i % 2;
        g_w[i] = 0.5f;
        g_es[i] = 0.125f * (float)(i % 8 + 1);
    }
}

/* ---- one GetWorkspaceSize (the executor destroyed), on device 0, for the rule table ----------------------- */
/* a valid DispatchV3 call: EP 2, rank 0, 2 experts (L = 1), BS 4, K 1, H 1024 (A = 8) */
static void d_base(DCall *d) {
    memset(d, 0, sizeof *d);
    d->bs = 4;
    d->h = H;
    d->k = 1;
    d->xdt = ACL_BF16;
    d->x = g_x;
    d->ids = g_ids;
    d->group_ep = "no_such_group"; /* no communicator: the rules alone decide */
    d->group_tp = "";
    d->ep = 2;
    d->M = 2;
    d->tn_type = 1;
    d->ex_rows = 8;
    d->assist_len = 8 * 128;
    d->tn_len = 1;
    d->er_len = 2;
    d->st.gws_only = 1;
}

static CallStatus d_call(DCall *d) {
    do_dispatch(d);
    dcall_free(d);
    return d->st;
}

/* a valid CombineV3 call matching d_base */
static void c_base(CCall *c) {
    memset(c, 0, sizeof *c);
    c->xdt = ACL_BF16;
    c->bs = 4;
    c->h = H;
    c->k = 1;
    c->expand_x = g_x;
    c->ex_rows = 8;
    c->ids = g_ids;
    c->w = g_w;
    c->assist = (const int32_t *)g_ids; /* any 8 * 128 values: GetWorkspaceSize does not read them */
    c->assist_len = 8 * 128;
    c->ep_send = g_ids;
    c->es_len = 2;
    c->tp_send = NO_TP;
    c->ts_len = 0;
    c->group_ep = "no_such_group";
    c->group_tp = "";
    c->ep = 2;
    c->M = 2;
    c->st.gws_only = 1;
}

static CallStatus c_call(CCall *c) {
    do_combine(c);
    ccall_free(c);
    return c->st;
}

/* one check: the call returned `want` (0: passed), and a failure's message mentions `word` */
static void expect(const char *rule, CallStatus st, int want, const char *word) {
    CHECK(st.gws == want, "%s under %s: GetWorkspaceSize %d, want %d: %s", rule, g_release_text, st.gws, want, st.msg);
    if (want && word) CHECK(strstr(st.msg, word) != NULL, "%s: message without \"%s\": %s", rule, word, st.msg);
}

/* change c decides: releases without it give old_st, releases with it new_st */
static void expect_change(const char *rule, int c, CallStatus st, int old_st, int new_st, const char *word) {
    expect(rule, st, has(c) ? new_st : old_st, word);
}

/* ====================== rules: every release-dependent rule of the GetWorkspaceSize phase =================== */
static void rules_dispatch(void) {
    DCall d;
    d_base(&d);
    expect("dispatch base", d_call(&d), 0, NULL);

    d_base(&d); /* TP = 2 (tp_removed) */
    d.tp = 2;
    d.group_tp = "tp_group";
    d.tp_len = 2;
    d.er_len = 4;
    d.ex_rows = 16;
    expect_change("tpWorldSize 2", SIM_CHANGE_TP_REMOVED, d_call(&d), 0, 561002, "tpWorldSize");

    d_base(&d); /* the NEW demos' tpRecvCounts (1,) with tpWorldSize 0 */
    d.tp_len = 1;
    expect_change("tpRecvCounts (1,)", SIM_CHANGE_TP_REMOVED, d_call(&d), 561002, 0, "tpRecvCountsOut");
    d_base(&d);
    d.no_tp_recv = 1;
    expect_change("tpRecvCounts NULL", SIM_CHANGE_TP_REMOVED, d_call(&d), 161001, 0, "tpRecvCountsOut");
    d_base(&d);
    d.group_tp = NULL;
    expect_change("groupTp NULL", SIM_CHANGE_TP_REMOVED, d_call(&d), 161001, 0, "groupTp");

    d_base(&d); /* assistInfoForCombine 3 * A */
    d.assist_len = 3 * 8;
    expect_change("assist 3A", SIM_CHANGE_ASSIST_128A, d_call(&d), 0, 561002, "128 * A");

    d_base(&d); /* L * ep = 1024 * 4 (rank 3 of 4, 3 shared-expert ranks) */
    d.ep = 4;
    d.rank = 3;
    d.R = 3;
    d.S = 3;
    d.M = 1024;
    d.ex_rows = 16;
    d.assist_len = 16 * 128;
    d.tn_len = 1024;
    d.er_len = 4096;
    expect_change("L * ep 4096", SIM_CHANGE_L_EP_MAX_2048, d_call(&d), 0, 561002, "2048");

    d_base(&d); /* fullmesh_v2 with K = 13 (16 experts, L = 8, A = 64) */
    d.comm_alg = "fullmesh_v2";
    d.M = 16;
    d.k = 13;
    d.ex_rows = 64;
    d.assist_len = 64 * 128;
    d.tn_len = 8;
    d.er_len = 16;
    expect_change("fullmesh_v2 K 13", SIM_CHANGE_FULLMESH_V2_K12, d_call(&d), 0, 561002, "K");

    static uint8_t mask[300];
    memset(mask, 1, sizeof mask);
    d_base(&d); /* fullmesh_v2 with a mask */
    d.comm_alg = "fullmesh_v2";
    d.mask = mask;
    d.mask_nd = 1;
    expect_change("fullmesh_v2 + mask", SIM_CHANGE_FULLMESH_V2_OPEN, d_call(&d), 561002, 0, "fullmesh_v2");
    d_base(&d); /* fullmesh_v2 with BS 300 (A = 600) */
    d.comm_alg = "fullmesh_v2";
    d.bs = 300;
    d.ex_rows = 600;
    d.assist_len = 600 * 128;
    expect_change("fullmesh_v2 BS 300", SIM_CHANGE_FULLMESH_V2_OPEN, d_call(&d), 0, 561002, "256");

    d_base(&d); /* DispatchV4 */
    d.version = 4;
    expect_change("DispatchV4", SIM_CHANGE_V4, d_call(&d), 561003, 0, "not in");
    int64_t perf[2] = {0, 0};
    d_base(&d);
    d.version = 4;
    d.perf = perf;
    expect_change("DispatchV4 performanceInfo", SIM_CHANGE_V4, d_call(&d), 561003, 0, "not in");

    d_base(&d); /* expertScales given: CANN 9.1.0 checks it and expandScalesOut */
    d.expert_scales = g_es;
    expect("expertScales given", d_call(&d), 0, NULL);
}

static void rules_combine(void) {
    CCall c;
    c_base(&c);
    expect("combine base", c_call(&c), 0, NULL);

    for (int two_d = 0; two_d < 2; two_d++) { /* const_expert_alpha_1/2 (Q,) or (Q, H) */
        c_base(&c);
        c.cnst = 1;
        c.ori_x = g_ori;
        c.a1 = g_alpha[0];
        c.a2 = g_alpha[1];
        c.v = g_v;
        c.alpha_2d = two_d;
        expect_change(two_d ? "alpha (Q, H)" : "alpha (Q,)", SIM_CHANGE_CONST_ALPHA_2D, c_call(&c),
                      two_d ? 561002 : 0, two_d ? 0 : 561002, two_d ? "must be 1-D" : "must be 2-D");
    }

    c_base(&c); /* expertScales (BS, 0): no expert scales */
    c.no_scales = 1;
    expect_change("expertScales (BS, 0)", SIM_CHANGE_EXPERT_SCALES_OPTIONAL, c_call(&c), 561002, 0, "expertScales");

    c_base(&c); /* tpWorldSize 1 and tpRankId 1 */
    c.tp_rank = 1;
    c.ts_len = 1;
    c.tp = 1;
    expect("combine tpRankId 1", c_call(&c), 561002, "tpRankId");
    c_base(&c); /* no tpSendCounts */
    c.tp_send = NULL;
    expect_change("tpSendCounts NULL", SIM_CHANGE_TP_REMOVED, c_call(&c), 561002, 0, "tpSendCountsOptional");

    static const int32_t elastic[3] = {0, 0, 0};
    c_base(&c); /* a wrong elasticInfo length: enforced everywhere; the old CombineV3 tiling skipped it */
    c.elastic = elastic;
    c.elastic_len = 3;
    CallStatus st = c_call(&c);
    expect("elasticInfo length", st, 561002, "elasticInfo");
    CHECK((strstr(st.msg, "skips this rule") != NULL) == !has(SIM_CHANGE_COMBINE_ELASTIC_LENGTH),
          "elasticInfo length message under %s: %s", g_release_text, st.msg);

    c_base(&c); /* K = 17: enforced everywhere; CANN >= 9.0.0's combine tiling skips it */
    c.k = 17;
    st = c_call(&c);
    expect("combine K 17", st, 561002, "K");
    CHECK((strstr(st.msg, "does not enforce") != NULL) == has(SIM_CHANGE_COMBINE_CHECKS_SKIPPED),
          "K 17 message under %s: %s", g_release_text, st.msg);

    c_base(&c); /* AddRmsNormV2 zeroExpertNum -2: CANN >= 9.0.0 rejects every negative count */
    c.arn = 1;
    c.residual = g_res;
    c.gamma = g_gamma;
    c.eps = 1e-6f;
    c.zero = -2;
    st = c_call(&c);
    expect("AddRmsNorm zeroExpertNum -2", st, 561002, "zeroExpertNum");
    CHECK((strstr(st.msg, "only rejects -1") != NULL) == !has(SIM_CHANGE_COMBINE_CHECKS_SKIPPED),
          "zeroExpertNum -2 message under %s: %s", g_release_text, st.msg);

    c_base(&c);
    c.version = 4;
    expect_change("CombineV4", SIM_CHANGE_V4, c_call(&c), 561003, 0, "not in");
}

/* commAlg "hierarchy": the documented constraints, then no kernel (EP 16, 16 experts, BS 4: A = 64) */
static void rule_hierarchy(void) {
    DCall d;
    d_base(&d);
    d.comm_alg = "hierarchy";
    d.ep = 16;
    d.M = 16;
    d.expert_scales = g_es;
    d.ex_rows = 64;
    d.assist_len = 64 * 128;
    d.er_len = 16 + 64 * 2 * 1 * 16 / 8;
    d.st.gws_only = 0;
    setenv("HCCL_BUFFSIZE", "512", 1); /* the layered window: 404 MB + the data */
    do_dispatch(&d);
    unsetenv("HCCL_BUFFSIZE");
    dcall_free(&d);
    expect_change("hierarchy", SIM_CHANGE_HIERARCHY, d.st, 561002, 0, "commAlg");
    if (has(SIM_CHANGE_HIERARCHY))
        CHECK(d.st.run == 561003 && strstr(d.st.msg, "not emulated"), "hierarchy launch: %d %s", d.st.run, d.st.msg);
    d_base(&d); /* its constraints: EP a multiple of 16 */
    d.comm_alg = "hierarchy";
    d.expert_scales = g_es;
    expect_change("hierarchy EP 2", SIM_CHANGE_HIERARCHY, d_call(&d), 561002, 561002,
                  has(SIM_CHANGE_HIERARCHY) ? "multiple of 16" : "commAlg");
}

/* a bad ACLNN_SIM_CANN_VERSION set after aclInit fails the next GetWorkspaceSize */
static void rule_env(void) {
    DCall d;
    const char *was = getenv("ACLNN_SIM_CANN_VERSION");
    char keep[64];
    snprintf(keep, sizeof keep, "%s", was ? was : "");
    setenv("ACLNN_SIM_CANN_VERSION", "10.0.0", 1);
    d_base(&d);
    expect("ACLNN_SIM_CANN_VERSION 10.0.0", d_call(&d), 161002, "ACLNN_SIM_CANN_VERSION");
    if (was) setenv("ACLNN_SIM_CANN_VERSION", keep, 1);
    else unsetenv("ACLNN_SIM_CANN_VERSION");
}

static void scenario_rules(void) {
    CHECK(aclrtSetCurrentContext(g_ctx[0]) == 0, "context");
    rules_dispatch();
    rules_combine();
    rule_hierarchy();
    rule_env();
}

/* ====================== window: the HCCL window of CANN >= 8.5.0-beta.1 is the communicator's ================ */
/* H 8192, BS 64: the window needs about 7 MB, more than a 1 MB communicator buffer, less than HCCL_BUFFSIZE's 200 */
static void window_check(const char *what, const char *group) {
    DCall d;
    d_base(&d);
    d.group_ep = group;
    d.h = 8192;
    d.bs = 64;
    d.ex_rows = 128;
    d.assist_len = 128 * 128;
    expect_change(what, SIM_CHANGE_WINDOW_FROM_COMM, d_call(&d), 0, 561002, "communicator");
}

typedef struct {
    HcclRootInfo root;
    HcclComm comm[2];
} RootWorld;

static void root_rank(int r, void *arg) {
    RootWorld *w = (RootWorld *)arg;
    HcclCommConfig cfg;
    HcclCommConfigInit(&cfg);
    cfg.hcclBufferSize = 1; /* MB */
    CHECK(HcclCommInitRootInfoConfig(2, &w->root, (uint32_t)r, &cfg, &w->comm[r]) == 0, "InitRootInfoConfig %d", r);
}

static void scenario_window(void) {
    CHECK(aclrtSetCurrentContext(g_ctx[0]) == 0, "context");
    Group g;
    setenv("HCCL_BUFFSIZE", "1", 1); /* in force when the communicator is created */
    group_make(&g, 2, (const int[]){0, 1});
    unsetenv("HCCL_BUFFSIZE");      /* 200 MB when the operator runs */
    window_check("window: HCCL_BUFFSIZE 1 at HcclCommInitAll", g.name);
    group_free(&g);

    RootWorld w;
    CHECK(HcclGetRootInfo(&w.root) == 0, "HcclGetRootInfo");
    run_ranks(2, (const int[]){0, 1}, root_rank, &w);
    char name[128];
    CHECK(HcclGetCommName(w.comm[0], name) == 0, "HcclGetCommName");
    CHECK(aclrtSetCurrentContext(g_ctx[0]) == 0, "context");
    window_check("window: HcclCommConfig.hcclBufferSize 1", name);
    for (int i = 0; i < 2; i++) CHECK(HcclCommDestroy(w.comm[i]) == 0, "HcclCommDestroy");
}

/* ====================== e2e worlds: EP 2 on devices 0 and 1, dispatch -> identity FFN -> combine ============= */
typedef struct {
    Group g;
    int version;       /* the API version of both calls */
    int mode;          /* scenario-specific */
} World;

static void e2e_dispatch(DCall *d, World *w, int r, int64_t k, int64_t cnst) {
    memset(d, 0, sizeof *d);
    d->bs = 2;
    d->h = H;
    d->k = k;
    d->xdt = ACL_BF16;
    d->x = g_x + (int64_t)r * 2 * H;
    d->ids = g_ids + r * 2 * k;
    d->group_ep = w->g.name;
    d->group_tp = "";
    d->ep = 2;
    d->rank = r;
    d->M = 2;
    d->cnst = cnst;
    d->tn_type = 1;
    d->ex_rows = 8;
    d->assist_len = 8 * 128;
    d->tn_len = 1;
    d->er_len = 2;
    d->dev = r;
    d->version = w->version;
}

/* const experts: token t of rank r goes to MoE expert (t + r) % 2 (k = 0) and const expert 0 (id 2, k = 1) */
static void const_rank(int r, void *arg) {
    World *w = (World *)arg;
    int32_t *ids = g_ids + r * 4;
    for (int t = 0; t < 2; t++) {
        ids[2 * t] = (t + r) % 2;
        ids[2 * t + 1] = 2;
    }
    const float wts[4] = {0.75f, 0.5f, 0.25f, 1.5f};
    DCall d;
    e2e_dispatch(&d, w, r, 2, 1);
    do_dispatch(&d);
    if (call_ok("const dispatch", r, &d.st)) {
        const int two_d = has(SIM_CHANGE_CONST_ALPHA_2D);
        const uint16_t a1s[1] = {bf(0.5f)}, a2s[1] = {bf(-0.25f)};
        CCall c;
        ccall_from(&c, &d, wts, NO_TP, 0);
        c.version = w->version;
        c.alpha_2d = two_d;
        const uint16_t *ori = g_x + (int64_t)r * 2 * H;
        ccall_special(&c, ori, two_d ? g_alpha[0] : a1s, two_d ? g_alpha[1] : a2s, g_v);
        if (combine_ok(&c, "const combine")) {
            /* the expected token: the simulator's kernel on the same inputs (its const term is checked against
             * numpy by tests/test_sim_const_experts.py); this checks what the operator passes it */
            MoeCombineCfg cfg = {.k = 2, .s = 0, .h = H, .moe_num = 2, .const_num = 1, .is_bf16 = 1,
                                 .const_softmax = two_d};
            float acc[H];
            uint8_t scratch[MOE_COMBINE_SCRATCH_BYTES(H)];
            for (int t = 0; t < 2; t++) {
                const uint16_t *slots[2] = {ori + t * H, NULL};
                MoeCombineToken tk = {.ids = ids + 2 * t, .w = wts + 2 * t, .slots = slots, .ori_x = ori + t * H,
                                      .alpha1 = c.a1, .alpha2 = c.a2, .const_v = g_v};
                CHECK(moe_combine_token(&cfg, &tk, acc, scratch) == 0, "expected token");
                int bad = 0;
                for (int i = 0; i < H; i++) bad += c.x_out[t * H + i] != moe_f32_to_bf16(acc[i]);
                CHECK(bad == 0, "const r%d t%d under %s: %d elements differ", r, t, g_release_text, bad);
            }
        }
        ccall_free(&c);
    }
    dcall_free(&d);
}

/* expertScales: dispatch writes expandScales (CANN 9.1.0); combine without expert scales sums unweighted.
 * Token t of rank r goes to both experts (K = 2, k = 0: expert 0, k = 1: expert 1). */
static void scales_rank(int r, void *arg) {
    World *w = (World *)arg;
    int32_t *ids = g_ids + r * 4;
    float *es = g_es + r * 4;
    for (int t = 0; t < 2; t++) {
        ids[2 * t] = 0;
        ids[2 * t + 1] = 1;
        es[2 * t] = 0.25f * (float)(r * 4 + 2 * t + 1);
        es[2 * t + 1] = 0.25f * (float)(r * 4 + 2 * t + 2);
    }
    DCall d;
    e2e_dispatch(&d, w, r, 2, 0);
    d.expert_scales = es;
    do_dispatch(&d);
    if (call_ok("scales dispatch", r, &d.st)) {
        const int n = d.er[1]; /* rows this rank received: 2 tokens from each of 2 ranks */
        CHECK(n == 4, "scales r%d: %d rows", r, n);
        for (int i = 0; i < n; i++) {
            const int src = d.assist[3 * i], tok = d.assist[3 * i + 1], kk = d.assist[3 * i + 2];
            const float want = 0.25f * (float)(src * 4 + 2 * tok + kk + 1);
            if (has(SIM_CHANGE_EXPERT_SCALES_OPTIONAL))
                CHECK(f2u(d.xs[i]) == f2u(want), "expandScales r%d row %d: %g want %g", r, i, d.xs[i], want);
            else
                CHECK(untouched(&d.xs[i], 4), "expandScales r%d row %d written under %s", r, i, g_release_text);
        }
        CHECK(untouched(d.xs + n, (size_t)(d.ex_rows - n) * 4), "expandScales r%d: rows past %d written", r, n);
        CCall c;
        ccall_from(&c, &d, es, NO_TP, 0);
        c.no_scales = 1;
        do_combine(&c);
        if (has(SIM_CHANGE_EXPERT_SCALES_OPTIONAL) && call_ok("scales combine", r, &c.st)) {
            const uint16_t *x = g_x + (int64_t)r * 2 * H;
            int bad = 0;
            for (int i = 0; i < 2 * H; i++) bad += c.x_out[i] != bf(fb(x[i]) + fb(x[i]));
            CHECK(bad == 0, "unweighted combine r%d: %d elements differ", r, bad);
        } else if (!has(SIM_CHANGE_EXPERT_SCALES_OPTIONAL)) {
            CHECK(c.st.gws == 561002 && strstr(c.st.msg, "expertScales"), "no scales under %s: %d %s",
                  g_release_text, c.st.gws, c.st.msg);
        }
        ccall_free(&c);
    }
    dcall_free(&d);
}

/* performanceInfo (V4): entry 0 holds a large low word and high word 5; entry 1 low -5, high -1 */
#define PERF_BIG ((int64_t)5 << 32 | 0x7fffffff)
#define PERF_NEG ((int64_t)(((uint64_t)0xffffffffu << 32) | 0xfffffffbu))
static void perf_check(const char *what, int r, const int64_t *perf) {
    if (!has(SIM_CHANGE_PERFORMANCE_INFO_A3)) {
        CHECK(perf[0] == PERF_BIG && perf[1] == PERF_NEG, "%s r%d under %s: performanceInfo written", what, r,
              g_release_text);
        return;
    }
    int32_t w0[2], w1[2];
    memcpy(w0, &perf[0], 8);
    memcpy(w1, &perf[1], 8);
    CHECK(w0[0] == 0x7fffffff && w0[1] == 5, "%s r%d: entry 0 (%d, %d) must keep its larger words", what, r, w0[0],
          w0[1]);
    CHECK(w1[0] >= 0 && w1[1] == 0, "%s r%d: entry 1 (%d, %d) must be (max(-5, us), max(-1, 0))", what, r, w1[0],
          w1[1]);
}

static void perf_rank(int r, void *arg) {
    World *w = (World *)arg;
    int32_t *ids = g_ids + r * 2;
    ids[0] = 0;
    ids[1] = 1;
    int64_t perf[2] = {PERF_BIG, PERF_NEG};
    DCall d;
    e2e_dispatch(&d, w, r, 1, 0);
    d.version = 4;
    d.perf = perf;
    do_dispatch(&d);
    if (!has(SIM_CHANGE_V4)) {
        CHECK(d.st.gws == 561003, "DispatchV4 under %s: %d", g_release_text, d.st.gws);
        dcall_free(&d);
        return;
    }
    if (call_ok("perf dispatch", r, &d.st)) {
        perf_check("dispatch", r, perf);
        CCall c;
        ccall_from(&c, &d, g_w, NO_TP, 0);
        c.version = 4;
        perf[0] = PERF_BIG;
        perf[1] = PERF_NEG;
        c.perf = perf;
        if (combine_ok(&c, "perf combine")) perf_check("combine", r, perf);
        ccall_free(&c);
    }
    dcall_free(&d);
}

/* V2 / V1 entry points: the same results as V3 / AddRmsNormV2 */
static void v2_rank(int r, void *arg) {
    World *w = (World *)arg;
    int32_t *ids = g_ids + r * 2;
    ids[0] = r;
    ids[1] = 1 - r;
    uint16_t *out[2][2] = {{NULL, NULL}, {NULL, NULL}}; /* [version 2 or 3][combine, AddRmsNorm] */
    for (int v = 0; v < 2; v++) {
        DCall d;
        e2e_dispatch(&d, w, r, 1, 0);
        d.version = v ? 3 : 2;
        do_dispatch(&d);
        if (call_ok(v ? "V3 dispatch" : "V2 dispatch", r, &d.st)) {
            for (int arn = 0; arn < 2; arn++) {
                CCall c;
                ccall_from(&c, &d, g_w, NO_TP, 0);
                c.arn = arn;
                c.version = v ? 0 : 2;
                ccall_norm(&c, g_res, g_gamma);
                if (combine_ok(&c, v ? "V3 combine" : "V2 combine")) {
                    out[v][arn] = (uint16_t *)malloc(sizeof(uint16_t) * 2 * H);
                    memcpy(out[v][arn], arn ? c.y_out : c.x_out, sizeof(uint16_t) * 2 * H);
                }
                ccall_free(&c);
            }
        }
        dcall_free(&d);
    }
    for (int arn = 0; arn < 2; arn++) {
        CHECK(out[0][arn] && out[1][arn] && memcmp(out[0][arn], out[1][arn], sizeof(uint16_t) * 2 * H) == 0,
              "r%d: %s V2 and V3 results differ", r, arn ? "AddRmsNorm" : "Combine");
        free(out[0][arn]);
        free(out[1][arn]);
    }
}

static void world_run(RankFn fn, int version) {
    World w = {.version = version};
    group_make(&w.g, 2, (const int[]){0, 1});
    run_ranks(2, (const int[]){0, 1}, fn, &w);
    group_free(&w.g);
}

int main(int argc, char **argv) {
    world_open(2);
    CHECK(aclsysGetVersionStr("runtime", g_release_text) == 0, "aclsysGetVersionStr");
    CHECK(aclsysGetVersionNum("runtime", &g_release) == 0, "aclsysGetVersionNum");
    printf("emulating CANN %s (%d)\n", g_release_text, g_release);
    fill_inputs();
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        printf("scenario %s\n", s);
        fflush(stdout);
        if (!strcmp(s, "rules")) scenario_rules();
        else if (!strcmp(s, "window")) scenario_window();
        else if (!strcmp(s, "const")) world_run(const_rank, 0);
        else if (!strcmp(s, "const4") && has(SIM_CHANGE_V4)) world_run(const_rank, 4);
        else if (!strcmp(s, "scales")) world_run(scales_rank, 0);
        else if (!strcmp(s, "perf")) world_run(perf_rank, 4);
        else if (!strcmp(s, "v2")) world_run(v2_rank, 0);
        else if (strcmp(s, "const4")) CHECK(0, "unknown scenario %s", s);
    }
    world_close(2);
    check_no_live_objects();
    printf("moe_release_test: %d checks, %d failures\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
