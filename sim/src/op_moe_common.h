/*
 * Shared op-layer helpers of the simulated MoE operators (DispatchV3, CombineV3,
 * CombineAddRmsNormV2): captured tensor arguments, call records, validation failures, the attributes
 * and derived shape quantities, the GetWorkspaceSize checks and tail the ops share, elastic rank maps,
 * tensor gather/scatter, the rendezvous wrapper, and the start of a run with the peer comparison.
 * Compute lives in op_moe_kernels.{h,c}; the ops in op_moe_dispatch.c and op_moe_combine.c.
 */
#ifndef ACLNN_SIM_OP_MOE_COMMON_H
#define ACLNN_SIM_OP_MOE_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "acl/acl_base.h"
#include "simcore.h"
#include "sim_release.h"
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
/* groupEp epWorldSize epRankId moeExpertNum groupTp tpWorldSize tpRankId expertShardType
 * sharedExpertNum sharedExpertRankNum, the attributes every MoE op records in this order */
void moe_str_world(MoeStr *s, const char *groupEp, int64_t ep, int64_t rank, int64_t M, const char *groupTp,
                   int64_t tp, int64_t tp_rank, int64_t shard, int64_t S, int64_t R);
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

/* The attributes every MoE op keeps in its state, with BS, H, K and the derived shape, and the CANN release
 * whose rules and kernels apply (read by GetWorkspaceSize, kept by the executor). */
typedef struct {
    char group_ep[MOE_GROUP_NAME_MAX], group_tp[MOE_GROUP_NAME_MAX];
    int64_t ep, rank, M, tp, tp_rank, S_attr, R, global_bs, zero, copy, cnst;
    int64_t bs, h, k;
    MoeShape sh;
    SimRelease rel;
    int hier;             /* commAlg "hierarchy" in a release that has it */
} MoeAttrs;
/* the release of the call has change c (SIM_CHANGE_x) */
static inline int moe_has(const MoeAttrs *a, int c) { return sim_release_has(&a->rel, c); }
/* Reads the release for a GetWorkspaceSize (161002 with the message set when ACLNN_SIM_CANN_VERSION is bad) and
 * notes commAlg "hierarchy" where the release accepts it. */
int moe_attrs_release(const char *api, MoeAttrs *a, const char *commAlg);
/* The start of every GetWorkspaceSize, after moe_attrs_init: moe_attrs_release; a V4 entry point (version 4) in a
 * release without V4 is 561003 (v3_api: what to call instead); from CANN 9.1.0 a NULL *groupTp reads as "".
 * 0, or the status with the message set. */
int moe_gws_release(const char *api, MoeAttrs *a, const char *commAlg, int version, const char *v3_api,
                    const char **groupTp);
/* A message suffix for a documented rule the emulated release's combine tiling does not enforce
 * (combine_checks_skipped), "" otherwise. */
const char *moe_skipped_note(const MoeAttrs *a);
void moe_attrs_init(MoeAttrs *a, int64_t ep, int64_t rank, int64_t M, int64_t tp, int64_t tp_rank, int64_t S_attr,
                    int64_t R, int64_t global_bs, int64_t zero, int64_t copy, int64_t cnst);
/* Sets BS, H, K and computes a->sh. */
void moe_attrs_shape(MoeAttrs *a, int64_t bs, int64_t h, int64_t k, int has_elastic);

/* ---- GetWorkspaceSize checks shared by the ops; each returns 0 or moe_fail(api, ...) ---------------- */
int moe_in_list(int32_t dt, const int32_t *l, int n);
/* op_api layer once groupEp is known non-empty: the group name lengths (len_status when too long),
 * workspaceSize and executor not NULL (161001), every given tensor raw[i] live (161002). */
int moe_check_api_args(const char *api, const char *groupEp, const char *groupTp, int len_status,
                       const void *workspaceSize, const void *executor, const void *const *raw,
                       const char *const *raw_names, int n_raw);
/* Documented rule the CANN tiling does not check (561002): when a communicator named `group` lives on the
 * calling thread's device, `param` (its value `want`) equals its rank count. No such communicator: unchecked
 * here (the run reports it). role: "EP", "TP", ... for the message. */
int moe_check_comm_size(const char *api, const char *group, const char *param, int64_t want, const char *role);
/* moe_check_comm_size for epWorldSize / groupEp and, with tpWorldSize = 2, for groupTp. */
int moe_check_comm_sizes(const char *api, const MoeAttrs *a, const char *groupEp, const char *groupTp);
/* Tiling: moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum fits INT32. */
int moe_check_expert_sum(const char *api, const MoeAttrs *a);
/* Tiling (561002): epWorldSize, tpWorldSize, epRankId, tpRankId and groupTp with TP = 2. Releases without TP
 * (tp_removed) reject tpWorldSize >= 2 and, in the combine ops (combine != 0), a tpRankId other than 0. */
int moe_check_world(const char *api, const MoeAttrs *a, const char *groupTp, int combine);
/* Tiling: expertShardType, sharedExpertNum, sharedExpertRankNum, moeExpertNum (m_range: the range
 * as the op's message writes it). */
int moe_check_experts(const char *api, const MoeAttrs *a, int64_t shard, const char *m_range);
/* CheckAttrs: shared experts (normalised S and R both 0 or both > 0, S divides R). */
int moe_check_shared(const char *api, const MoeAttrs *a);
/* CheckAttrs: M divisible by ep - R, L * ep <= 2048 (l_ep_max_2048); with TP = 2 one expert per MoE rank and no
 * elasticInfo. */
int moe_check_layout(const char *api, const MoeAttrs *a, int has_elastic);
/* CheckAttrs: BS in [1, 512] ([1, 256] with hierarchy) and globalBs (bs_name: where BS comes from, bs_sym: how
 * the op's messages write it). */
int moe_check_bs(const char *api, const MoeAttrs *a, const char *bs_name, const char *bs_sym, int has_mask);
/* CheckWinSize: the HCCL window holds this configuration. The window is HCCL_BUFFSIZE now, or (window_from_comm)
 * the buffer of groupEp's communicator on this device (HCCL_BUFFSIZE falls in when there is none); hierarchy
 * has its own formula, with HCCL_BUFFSIZE. */
int moe_check_win_size(const char *api, const MoeAttrs *a, int fm2);
/* performanceInfoOptional (V4): 1-D INT64, not FRACTAL_NZ, epWorldSize entries; 0 or moe_fail 561002. */
int moe_check_perf_info(const char *api, const MoeAttrs *a, const MoeTensor *perf);
/* Captures an argument tensor: a live one completely, a dead one only as "given" (present = 1), so
 * the NULL checks pass and the liveness check reports it. */
void moe_tensor_capture_arg(MoeTensor *dst, const struct aclTensor *t);
/* End of GetWorkspaceSize. rc != 0 (a check failed): frees st and returns rc. Else keeps the group
 * names in a, and creates the executor of `run` (ws bytes of workspace) that owns st from then on (a, part of st,
 * with it); with commAlg "hierarchy" its launches are refused (moe_refuse_hierarchy). */
int moe_gws_finish(int rc, const char *gws, const char *run, uint64_t ws, MoeAttrs *a, const char *groupEp,
                   const char *groupTp, int (*fn)(aclOpExecutor *, SimStream *, void *), void *st,
                   uint64_t *workspaceSize, aclOpExecutor **executor);

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

/* ---- CANN 9.x additions ------------------------------------------------------------------------- */
/* Monotonic host clock, microseconds. */
int64_t moe_now_us(void);
/* performanceInfo of the A3 kernels (CANN >= 9.0.0): every int64 entry r of the (ep,) tensor gets, with an int32
 * atomic max per word, its low word max(old, wait_us[r] clamped to INT32_MAX) and its high word max(old, 0)
 * (moe_distribute_base.h "only the low 32 bits"). wait_us is indexed by original EP rank. */
void moe_perf_merge(const MoeTensor *perf, const int64_t *wait_us, int64_t ep);
/* commAlg "hierarchy": the release accepts it, the simulator has no kernel for it; every launch of the executor
 * returns 561003 saying so. */
void moe_refuse_hierarchy(aclOpExecutor *ex, const char *release);

/* ---- rendezvous -------------------------------------------------------------------------------- */
/* sim_comm_exchange with the hang timeout; on failure sets the error (naming the missing ranks)
 * and returns the aclError to return from the task (507015), else 0. */
int moe_exchange(const char *api, SimComm *c, const int *participants, int n, void *payload, void **peers,
                 SimStream *s);

/* ---- the run on the stream ------------------------------------------------------------------ */
/* Start of an op's task: finds the EP communicator (and the TP one with tpWorldSize = 2), loads
 * elasticInfo and checks the rank ids. Returns 0 with *epc, *tpc and *el set (a wrong rank id only
 * leaves its message in err: the rank still meets its peers, so they fail too), or the status to
 * return with the error set and nothing to release. */
int moe_run_begin(const char *api, const MoeAttrs *a, const MoeTensor *elastic, SimStream *strm, SimComm **epc,
                  SimComm **tpc, MoeElastic *el, char *err, size_t errlen);

/* What every EP rank publishes about itself besides its data; peers compare it. */
typedef struct {
    char err[512];                /* non-empty: this rank failed; peers fail too */
    int32_t orig_rank, new_rank;
    int64_t M, ep, R, S, Z, tp;
    int32_t x_dtype;
    int elastic_active;
    int64_t ep_eff, R_eff, M_eff;
} MoePubHead;
/* Fills the head of this rank, with an empty err. */
void moe_pub_head(MoePubHead *h, const MoeAttrs *a, const MoeElastic *el, int32_t x_dtype);
/* mine != theirs: "<name> differs between EP ranks ..." into err, returns -1; else 0. */
int moe_differs(const MoePubHead *me, const MoePubHead *p, const char *name, int64_t mine, int64_t theirs,
                char *err, size_t n);
/* moe_differs over the dtype of the op's input x_name, moeExpertNum, epWorldSize,
 * sharedExpertRankNum, the normalised sharedExpertNum and the special expert total, in this order. */
int moe_differs_world(const MoePubHead *me, const MoePubHead *p, const char *x_name, char *err, size_t n);
/* moe_differs over the elasticInfo fields. */
int moe_differs_elastic(const MoePubHead *me, const MoePubHead *p, char *err, size_t n);
/* Peer p (not me) failed: "EP rank <r> failed: <its message>" into err, returns 1; else 0. */
int moe_peer_failed(const MoePubHead *me, const MoePubHead *p, char *err, size_t n);

#ifdef __cplusplus
}
#endif
#endif
