/*
 * Runs the simulator's float32 exp and const-expert term (sim/src/op_moe_kernels.c, compiled in) on inputs from a
 * file and writes the float32 results to another, so tests/test_sim_const_experts.py can compare them bit for bit
 * with aclnn_py/reference/const_experts.py.
 *   const_expert_check exp  <in> <out>   in: n float32; out: n float32 (moe_exp_f32)
 *   const_expert_check term <in> <out>   in: int64 n, h, q, is_bf16, then x (n*h), alpha1 (q*h), alpha2 (q*h),
 *                                        v (q*h) as uint16 and idx (n) int32; out: n*h float32 (moe_const_expert_term)
 * Build: gcc -std=gnu11 -O2 -ffp-contract=off -Isim/src tests/sim_c/const_expert_check.c sim/src/op_moe_kernels.c -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_moe_kernels.h"

/* the whole file, or exit 2 */
static void *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) { perror(path); exit(2); }
    fclose(f);
}

static int run_exp(const char *in, const char *out) {
    size_t len;
    float *x = (float *)slurp(in, &len);
    size_t n = len / sizeof(float);
    for (size_t i = 0; i < n; i++) x[i] = moe_exp_f32(x[i]);
    spit(out, x, n * sizeof(float));
    free(x);
    return 0;
}

static int run_term(const char *in, const char *out) {
    size_t len;
    char *buf = (char *)slurp(in, &len);
    int64_t hdr[4];
    memcpy(hdr, buf, sizeof hdr);
    const int64_t n = hdr[0], h = hdr[1], q = hdr[2];
    const int is_bf16 = (int)hdr[3];
    const uint16_t *x = (const uint16_t *)(buf + sizeof hdr);
    const uint16_t *a1 = x + n * h, *a2 = a1 + q * h, *v = a2 + q * h;
    const int32_t *idx = (const int32_t *)(v + q * h);
    if ((size_t)((const char *)(idx + n) - buf) != len) {
        fprintf(stderr, "term: input has %zu bytes, the header says %lld\n", len,
                (long long)((const char *)(idx + n) - buf));
        return 2;
    }
    float *res = (float *)malloc(sizeof(float) * (size_t)(n * h + 1));
    float *scratch = (float *)malloc(sizeof(float) * (size_t)(h / 64 + 2));
    for (int64_t t = 0; t < n; t++)
        moe_const_expert_term(x + t * h, a1 + idx[t] * h, a2 + idx[t] * h, v + idx[t] * h, h, is_bf16, res + t * h,
                              scratch);
    spit(out, res, sizeof(float) * (size_t)(n * h));
    free(res);
    free(scratch);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "exp") == 0) return run_exp(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "term") == 0) return run_term(argv[2], argv[3]);
    fprintf(stderr, "usage: %s exp|term <in> <out>\n", argv[0]);
    return 2;
}
