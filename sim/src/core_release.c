/*
 * The CANN release the simulator emulates; see sim_release.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim_release.h"

/* digits at *p (at most 9) into *v; returns how many were read */
static int read_digits(const char **p, int64_t *v)
{
    int n = 0;
    *v = 0;
    while (isdigit((unsigned char)**p)) {
        if (n < 9) *v = *v * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    return n;
}

/* "alpha" / "beta" / "rc" at *p (any case): its weight (300 / 200 / 100), *p moved past it; else 0 */
static int read_pre(const char **p)
{
    static const struct { const char *word; int weight; } pre[] = {{"alpha", 300}, {"beta", 200}, {"rc", 100}};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        size_t n = strlen(pre[i].word);
        if (strncasecmp(*p, pre[i].word, n) == 0) {
            *p += n;
            return pre[i].weight;
        }
    }
    return 0;
}

/* the optional pre-release suffix "[.-_](alpha|beta|rc)[.][N]" at *p: adds -weight + N to *n; 0, or -1 if
 * something else follows */
static int read_suffix(const char **p, int64_t *n)
{
    const char *q = *p;
    if (*q == '.' || *q == '-' || *q == '_') q++;
    int weight = read_pre(&q);
    if (!weight) return -1;
    if (*q == '.') q++;
    int64_t pre_no = 0;
    read_digits(&q, &pre_no);
    *n += pre_no - weight;
    *p = q;
    return 0;
}

SIM_API int sim_release_parse(const char *text, int32_t *number, int *has_patch)
{
    if (!text) return -1;
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    int64_t major, minor, patch = 0;
    if (!read_digits(&p, &major) || *p++ != '.' || !read_digits(&p, &minor)) return -1;
    int patched = 0;
    if (*p == '.' && isdigit((unsigned char)p[1])) {
        p++;
        read_digits(&p, &patch);
        patched = 1;
    }
    int64_t n = major * 10000000 + minor * 100000 + patch * 1000;
    const char *rest = p;
    while (isspace((unsigned char)*rest)) rest++;
    if (*rest && read_suffix(&p, &n) != 0) return -1;
    while (isspace((unsigned char)*p)) p++;
    if (*p) return -1;
    if (number) *number = n > INT32_MAX ? INT32_MAX : (int32_t)n;
    if (has_patch) *has_patch = patched;
    return 0;
}

SIM_API int sim_release_current(const char *api, SimRelease *out)
{
    memset(out, 0, sizeof *out);
    const char *env = getenv(SIM_RELEASE_VARIABLE);
    const char *text = env && *env ? env : SIM_DEFAULT_RELEASE;
    out->from_env = env && *env;
    /* trimmed copy for messages and the version API */
    while (isspace((unsigned char)*text)) text++;
    snprintf(out->text, sizeof out->text, "%s", text);
    for (size_t n = strlen(out->text); n && isspace((unsigned char)out->text[n - 1]); n--) out->text[n - 1] = '\0';
    int32_t num = 0;
    if (sim_release_parse(text, &num, NULL) != 0 || num < SIM_KNOWN_MIN || num > SIM_KNOWN_MAX) {
        sim_set_error("%s: %s=\"%.60s\" is %s; the simulator emulates the releases from %s (%d) to the last 9.1 "
                      "release (%d) in CANN's version formats (e.g. 8.5.0.alpha001, 8.5.0-beta.1, 9.0.0, 9.1.0); "
                      "unset it for the default %s",
                      api ? api : "aclnn_py simulator", SIM_RELEASE_VARIABLE, env ? env : "",
                      sim_release_parse(text, &num, NULL) ? "not a CANN release" : "outside the known releases",
                      SIM_DEFAULT_RELEASE, SIM_KNOWN_MIN, SIM_KNOWN_MAX, SIM_DEFAULT_RELEASE);
        return -1;
    }
    out->number = num;
    for (int c = 0; c < SIM_CHANGE_COUNT; c++)
        if (num >= SIM_CHANGE_SINCE[c]) out->changes |= 1u << c;
    return 0;
}

SIM_API const char *sim_release_describe(const SimRelease *r)
{
    static __thread char buf[4][128];
    static __thread int next;
    char *b = buf[next++ & 3];
    snprintf(b, sizeof buf[0], "CANN %s (%s)", r->text, r->from_env ? SIM_RELEASE_VARIABLE : "the simulator's default");
    return b;
}
