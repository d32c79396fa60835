/*
 * Thread-local state of the CANN simulator (recent error messages, last-call record, current device),
 * the formatting helpers for call records, dtype sizes and tensor helpers.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "simcore.h"
#include "aclsim.h"

/* ---- recent error messages: latest first, like aclGetRecentErrMsg documents -------------------- */
#define ERR_CAP 8192
static __thread char t_err[ERR_CAP];
static __thread size_t t_err_len;
static __thread char t_err_out[ERR_CAP];

static int log_enabled(void)
{
    const char *v = getenv("ACLNN_SIM_LOG");
    return v && *v && strcmp(v, "0") != 0;
}

SIM_API void sim_set_error(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t m = strlen(msg);
    if (log_enabled()) fprintf(stderr, "[aclnn_py simulator] %s\n", msg);
    /* prepend "msg\n" to what is there, dropping the oldest text if needed */
    size_t keep = t_err_len;
    size_t head = m + (keep ? 1 : 0);
    if (head >= ERR_CAP) {
        head = ERR_CAP - 1;
        keep = 0;
    } else if (head + keep >= ERR_CAP) {
        keep = ERR_CAP - 1 - head;
    }
    memmove(t_err + head, t_err, keep);
    memcpy(t_err, msg, head < m ? head : m);
    if (head > m) t_err[m] = '\n';
    t_err_len = head + keep;
    t_err[t_err_len] = '\0';
}

SIM_API const char *sim_take_error(void)
{
    if (t_err_len == 0) return NULL;
    memcpy(t_err_out, t_err, t_err_len + 1);
    t_err_len = 0;
    t_err[0] = '\0';
    return t_err_out;
}

/* ---- last-call record -------------------------------------------------------------------------- */
#define CALL_CAP 16384
static __thread char t_call[CALL_CAP];
static __thread size_t t_call_len;

SIM_API void sim_record_call(const char *fn, const char *fmt, ...)
{
    char *buf = t_call;
    int n = snprintf(buf, CALL_CAP, "%s", fn ? fn : "?");
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len >= CALL_CAP) len = CALL_CAP - 1;
    if (fmt && *fmt && len + 1 < CALL_CAP) {
        buf[len++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(buf + len, CALL_CAP - len, fmt, ap);
        va_end(ap);
        if (k > 0) len += (size_t)k;
        if (len >= CALL_CAP) len = CALL_CAP - 1;
    }
    buf[len] = '\0';
    /* glibc prints a NULL %p as "(nil)": the record format says NULL */
    char *r = buf, *w = buf;
    while (*r) {
        if (r[0] == '(' && strncmp(r, "(nil)", 5) == 0) {
            memcpy(w, "NULL", 4);
            w += 4;
            r += 5;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    t_call_len = (size_t)(w - buf);
}

ACLSIM_API int32_t aclsimLastCall(char *buf, uint64_t cap)
{
    if (buf && cap > 0) {
        size_t n = t_call_len < cap - 1 ? t_call_len : (size_t)(cap - 1);
        memcpy(buf, t_call, n);
        buf[n] = '\0';
    }
    return (int32_t)t_call_len;
}

/* ---- formatting helpers ------------------------------------------------------------------------ */
#define FMT_SLOTS 64
#define FMT_CAP 512
static __thread char t_fmt[FMT_SLOTS][FMT_CAP];
static __thread unsigned t_fmt_next;

static char *fmt_slot(void)
{
    char *s = t_fmt[t_fmt_next % FMT_SLOTS];
    t_fmt_next++;
    s[0] = '\0';
    return s;
}

static size_t append_i64s(char *s, size_t pos, const int64_t *v, uint64_t n)
{
    pos += (size_t)snprintf(s + pos, FMT_CAP - pos, "[");
    for (uint64_t i = 0; i < n && pos < FMT_CAP; i++) {
        if (i == 16) {
            pos += (size_t)snprintf(s + pos, FMT_CAP - pos, ",...(n=%llu)", (unsigned long long)n);
            break;
        }
        pos += (size_t)snprintf(s + pos, FMT_CAP - pos, "%s%lld", i ? "," : "", (long long)v[i]);
    }
    if (pos < FMT_CAP) pos += (size_t)snprintf(s + pos, FMT_CAP - pos, "]");
    return pos;
}

SIM_API const char *sim_fmt_i64s(const int64_t *v, uint64_t n)
{
    if (!v) return "NULL";
    char *s = fmt_slot();
    append_i64s(s, 0, v, n);
    return s;
}

SIM_API int sim_tensor_valid(const struct aclTensor *t)
{
    return t && sim_track_has(SIM_OBJ_TENSOR, t) && t->magic == SIM_TENSOR_MAGIC;
}

SIM_API const char *sim_fmt_tensor(const struct aclTensor *t)
{
    if (!t) return "NULL";
    char *s = fmt_slot();
    if (!sim_tensor_valid(t)) {
        snprintf(s, FMT_CAP, "T(invalid %p)", (const void *)t);
        return s;
    }
    size_t pos = (size_t)snprintf(s, FMT_CAP, "T(%d,", (int)t->dtype);
    pos = append_i64s(s, pos, t->dims, t->ndim);
    if (pos < FMT_CAP) snprintf(s + pos, FMT_CAP - pos, ")");
    return s;
}

SIM_API const char *sim_fmt_str(const char *str)
{
    if (!str) return "NULL";
    char *s = fmt_slot();
    size_t pos = 0;
    s[pos++] = '"';
    for (const unsigned char *p = (const unsigned char *)str; *p && pos + 8 < FMT_CAP; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            s[pos++] = '\\';
            s[pos++] = (char)c;
        } else if (c == '\n') {
            s[pos++] = '\\';
            s[pos++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            pos += (size_t)snprintf(s + pos, FMT_CAP - pos, "\\x%02x", c);
        } else {
            s[pos++] = (char)c;
        }
    }
    s[pos++] = '"';
    s[pos] = '\0';
    return s;
}

SIM_API const char *sim_fmt_f32(float v)
{
    char *s = fmt_slot();
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    /* shortest %g that reads back as the same float (%.9g always does), then the bits */
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(s, FMT_CAP, "%.*g", prec, (double)v);
        if (strtof(s, NULL) == v || v != v) break;
    }
    size_t n = strlen(s);
    snprintf(s + n, FMT_CAP - n, "/0x%08x", bits);
    return s;
}

/* ---- devices ----------------------------------------------------------------------------------- */
static __thread int t_device = -1;
static __thread int t_device_set;

SIM_API int sim_current_device(void)
{
    return t_device_set ? t_device : -1;
}

SIM_API void sim_set_current_device(int device)
{
    t_device = device;
    t_device_set = 1;
}

static pthread_once_t g_count_once = PTHREAD_ONCE_INIT;
static int g_device_count = 16;

static void read_device_count(void)
{
    const char *v = getenv("ACLNN_SIM_DEVICE_COUNT");
    if (v && *v) {
        char *end = NULL;
        long n = strtol(v, &end, 10);
        if (end && *end == '\0' && n >= 1 && n <= 1024) g_device_count = (int)n;
        else fprintf(stderr, "[aclnn_py simulator] ignoring ACLNN_SIM_DEVICE_COUNT=%s (want 1..1024)\n", v);
    }
}

SIM_API int sim_device_count(void)
{
    pthread_once(&g_count_once, read_device_count);
    return g_device_count;
}

/* Milliseconds >= 0 in `v` (all digits), or -1. */
static int64_t parse_ms(const char *v)
{
    if (!v || !*v) return -1;
    char *end = NULL;
    long long ms = strtoll(v, &end, 10);
    return end && *end == '\0' && ms >= 0 ? (int64_t)ms : -1;
}

SIM_API int64_t sim_hang_timeout_us(void)
{
    int64_t ms = parse_ms(getenv("ACLNN_SIM_HANG_TIMEOUT_MS"));
    return (ms >= 0 ? ms : 120000) * 1000;
}

SIM_API int64_t sim_connect_timeout_us(char *what, size_t cap)
{
    enum { MIN_S = 120, MAX_S = 7200, DEFAULT_S = 120, MAX_DIGITS = 10 }; /* hcomm externalinput.{h,cc} */
    int64_t ms = parse_ms(getenv("ACLNN_SIM_CONNECT_TIMEOUT_MS"));
    if (ms >= 0) {
        snprintf(what, cap, "%lld ms (ACLNN_SIM_CONNECT_TIMEOUT_MS)", (long long)ms);
        return ms * 1000;
    }
    const char *v = getenv("HCCL_CONNECT_TIMEOUT");
    if (!v || !*v) {
        snprintf(what, cap, "%d s (HCCL_CONNECT_TIMEOUT, default)", DEFAULT_S);
        return (int64_t)DEFAULT_S * 1000000;
    }
    size_t n = strlen(v);
    int digits = n <= MAX_DIGITS;
    for (size_t i = 0; i < n && digits; i++) digits = v[i] >= '0' && v[i] <= '9';
    long long s = digits ? strtoll(v, NULL, 10) : -1;
    if (s < MIN_S || s > MAX_S) {
        sim_set_error("HCCL_CONNECT_TIMEOUT=\"%.40s\" is invalid: HCCL takes an integer number of seconds in [%d, %d] "
                      "(default %d) and refuses to set up a communicator otherwise (EI0001)", v, MIN_S, MAX_S,
                      DEFAULT_S);
        return -1;
    }
    snprintf(what, cap, "%lld s (HCCL_CONNECT_TIMEOUT)", s);
    return (int64_t)s * 1000000;
}

ACLSIM_API int64_t aclsimConnectTimeoutMs(void)
{
    char what[96];
    int64_t us = sim_connect_timeout_us(what, sizeof what);
    return us < 0 ? -1 : us / 1000;
}

/* ---- dtypes and tensors ------------------------------------------------------------------------- */
SIM_API size_t sim_dtype_size(int32_t dtype)
{
    switch (dtype) {
    case 0: return 4;   /* FLOAT */
    case 1: return 2;   /* FLOAT16 */
    case 2: return 1;   /* INT8 */
    case 3: return 4;   /* INT32 */
    case 4: return 1;   /* UINT8 */
    case 6: return 2;   /* INT16 */
    case 7: return 2;   /* UINT16 */
    case 8: return 4;   /* UINT32 */
    case 9: return 8;   /* INT64 */
    case 10: return 8;  /* UINT64 */
    case 11: return 8;  /* DOUBLE */
    case 12: return 1;  /* BOOL */
    case 16: return 8;  /* COMPLEX64 */
    case 17: return 16; /* COMPLEX128 */
    case 27: return 2;  /* BF16 */
    case 29: return 1;  /* INT4 (packed; one byte per element here) */
    case 30: return 1;  /* UINT1 */
    case 33: return 4;  /* COMPLEX32 */
    case 34: case 35: case 36: case 37: return 1; /* HIFLOAT8, FLOAT8_* */
    case 38: case 39: case 40: case 41: return 1; /* FLOAT6_*, FLOAT4_* (packed) */
    default: return 0;  /* ACL_STRING, undefined */
    }
}

SIM_API int64_t sim_tensor_numel(const struct aclTensor *t)
{
    if (!t) return 0;
    int64_t n = 1;
    for (uint64_t i = 0; i < t->ndim && i < SIM_MAX_DIMS; i++) n *= t->dims[i];
    return n;
}

SIM_API void *sim_tensor_ptr(const struct aclTensor *t)
{
    if (!t || !t->data) return NULL;
    return (char *)t->data + t->offset * (int64_t)sim_dtype_size(t->dtype);
}

SIM_API int sim_tensor_is_contiguous(const struct aclTensor *t)
{
    if (!t) return 0;
    if (sim_tensor_numel(t) == 0) return 1;
    int64_t expect = 1;
    for (int i = (int)t->ndim - 1; i >= 0; i--) {
        if (t->dims[i] != 1 && t->strides[i] != expect) return 0;
        expect *= t->dims[i];
    }
    return 1;
}

SIM_API uint64_t sim_hccl_buffsize_env_mb(void)
{
    const char *e = getenv("HCCL_BUFFSIZE");
    uint16_t mb = 200;
    if (!e) return mb;
    /* std::stoi: skip blanks, optional sign, at least one digit, int range; else it throws and the tiling keeps
     * the default */
    char *end = NULL;
    errno = 0;
    long v = strtol(e, &end, 10);
    if (end == e || errno == ERANGE || v > INT_MAX || v < INT_MIN) return mb;
    mb = (uint16_t)(int)v;
    return mb;
}
