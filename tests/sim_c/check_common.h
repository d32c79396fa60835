/*
 * Helpers of the simulator's C check programs (runtime_check.c, collective_check.c): a failed check
 * prints "FAIL <file>:<line>: <what>" and exits 1. Header-only (static functions).
 */
#ifndef SIM_CHECK_COMMON_H
#define SIM_CHECK_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/acl.h"
#include "aclsim.h"

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                  \
            exit(1);                                                                \
        }                                                                           \
    } while (0)
#define CHECK_EQ(a, b)                                                              \
    do {                                                                            \
        long long va_ = (long long)(a), vb_ = (long long)(b);                       \
        if (va_ != vb_) {                                                           \
            printf("FAIL %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, va_, #b, vb_); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

/* The message of the last failure (checked at file:line) must exist and mention `word`. */
static void check_msg(const char *word, const char *file, int line)
{
    const char *m = aclGetRecentErrMsg();
    if (!m || !strstr(m, word)) {
        printf("FAIL %s:%d: error message %s%s%s does not mention \"%s\"\n", file, line, m ? "\"" : "",
               m ? m : "NULL", m ? "\"" : "", word);
        exit(1);
    }
}

/* Every kind of simulator object has no live instance left. */
static void check_no_leaks(void)
{
    int64_t counts[ACLSIM_OBJ_KIND_COUNT];
    CHECK_EQ(aclsimLiveObjects(counts, ACLSIM_OBJ_KIND_COUNT), ACLSIM_OBJ_KIND_COUNT);
    for (int i = 0; i < ACLSIM_OBJ_KIND_COUNT; i++) {
        if (counts[i] != 0) {
            printf("FAIL %s:%d: %lld live object(s) of kind %s\n", __FILE__, __LINE__, (long long)counts[i],
                   aclsimObjectKindName(i));
            exit(1);
        }
    }
}

#endif
