/*
 * Shared op-layer helpers of the simulated MoE operators (DispatchV3, CombineV3,
 * CombineAddRmsNormV2): captured tensor arguments, call records, validation failures, derived
 * shape quantities, elastic rank maps, tensor gather/scatter, and the rendezvous wrapper.
 * Compute lives in op_moe_kernels.{h,c}; the ops in op_moe_dispatch.c and op_moe_combine.c.
 */
#ifndef ACLNN_SIM_OP_MOE_COMMON_H
#define ACLNN_SIM_OP_MOE_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "acl/acl_base.h"
#include "simcore.h"
#include "op_moe_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_GROUP_NAME_MAX 128
#define MOE_AIV_NUM 48                 /* vector cores of an Atlas A3 die (Ascend910_93) */

/* ---- captured tensor arguments ---------------------------------------------------------------- */
typedef struct {
    int present;
    struct aclTensor d;                /* copy of the descriptor (data pointer = device memory) */
} MoeTensor;

void moe_tensor_capture(MoeTensor *dst, const struct aclTensor *t);
static inline int64_t moe_dim(const MoeTensor *t, int i) { return t->d.dims[i]; }
static inline int moe_ndim(const MoeTensor *t) { return (int)t->d.ndim; }
int64_t moe_numel(const MoeTensor *t);
int moe_is_nz(const MoeTensor *t);
/* "[d0,d1,...]" into buf */
const char *moe_shape_str(const MoeTensor *t, char *buf, size_t cap);
const char *moe_dtype_name(int32_t dtype);

/* Contiguous view of logical elements [start, start+count) of t: a pointer into device memory when
 * t is contiguous (*owned = 0), else a malloc'd copy (*owned = 1). NULL only if out of memory. */
void *moe_gather(const MoeTensor *t, int64_t start, int64_t count, int *owned);
/* Write logical elements [start, start+count) of t from contiguous src. */
void moe_scatter(const MoeTensor *t, int64_t start, int64_t count, const void *src);

/* ---- call records ----------------------------------------------------------------------------- */
typedef struct {
    char *buf;
    size_t len, cap;
} MoeStr;
void moe_str_add(MoeStr *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void moe_str_tensor(MoeStr *s, const char *name, const void *t);
void moe_str_int(MoeStr *s, const char *name, int64_t v);
void moe_str_string(MoeStr *s, const char *name, const char *v);
void moe_str_float(MoeStr *s, const char *name, float v);
void moe_str_ptr(MoeStr *s, const char *name, const void *p);
/* sim_record_call(fn, "%s", s) and free the buffer */
void moe_str_record(MoeStr *s, const char *fn);

/* ---- validation -------------------------------------------------------------------------------- */
/* sim_set_error("<api>: <message>") and return status. */
int moe_fail(const char *api, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int moe_tensor_live(const void *t);
/* HCCL_BUFFSIZE as the A3 tiling reads it (MB; default 200; std::stoi, then uint16). */
uint64_t moe_hccl_buffsize_mb(void);

/* Derived quantities shared by the three ops (dispatch-v3.md §2; combine §8.1 row 28). */
typedef struct {
    int64_t S;            /* sharedExpertNum after the (R == 0 && S == 1) -> 0 normalisation */
    int64_t L;            /* MoE experts per MoE rank = M / (ep - R) */
    int64_t rpse;         /* R / S, 0 when S == 0 */
    int64_t global_bs;    /* globalBs or BS*ep */
    int64_t max_bs;       /* global_bs / ep */
    int is_shared;        /* epRankId < R */
    int64_t A;            /* rows per TP slot */
} MoeShape;
void moe_shape_compute(MoeShape *sh, int64_t ep, int64_t rank, int64_t M, int64_t S_attr, int64_t R,
                       int64_t bs, int64_t k, int64_t global_bs, int has_elastic);

/* ---- elastic scale-down (dispatch-v3.md §10, combine §5) ----------------------------------------- */
typedef struct {
    int active;            /* elasticInfo given and [0] != 0 */
    int64_t ep, R, M, L;   /* effective values (= attributes when not active) */
    int64_t rpse;          /* R / S */
    int64_t me;            /* own new rank id */
    int n_part;            /* participating (original) EP ranks, ascending */
    int *part;             /* n_part entries */
    int32_t *table2;       /* new -> original, ep entries (identity when not active) */
} MoeElastic;
/* Reads elasticInfo from device memory (if present) and checks its tables. Returns 0, or -1 with
 * a message in err. */
int moe_elastic_load(MoeElastic *e, const MoeTensor *info, int64_t ep, int64_t rank, int64_t R, int64_t M,
                     int64_t S, char *err, size_t errlen);
void moe_elastic_free(MoeElastic *e);

/* ---- rendezvous -------------------------------------------------------------------------------- */
/* sim_comm_exchange with the hang timeout; on failure sets the error (naming the missing ranks)
 * and returns the aclError to return from the task (507015), else 0. */
int moe_exchange(const char *api, SimComm *c, const int *participants, int n, void *payload, void **peers,
                 SimStream *s);

#ifdef __cplusplus
}
#endif
#endif
