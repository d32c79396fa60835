/*
 * aclnn_py CANN simulator: aclnnDistributeBarrier (V1), prototypes as in ops-transformer
 * mc2/distribute_barrier/op_api. xRef is non-const; the same behaviour as V2 with timeOut = elasticInfo = NULL.
 */
#ifndef ACLNN_SIM_ACLNN_DISTRIBUTE_BARRIER_H_
#define ACLNN_SIM_ACLNN_DISTRIBUTE_BARRIER_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

ACLNN_API aclnnStatus aclnnDistributeBarrierGetWorkspaceSize(aclTensor *xRef, const char *group, int64_t worldSize,
                                                             uint64_t *workspaceSize, aclOpExecutor **executor);
ACLNN_API aclnnStatus aclnnDistributeBarrier(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                             aclrtStream stream);

#ifdef __cplusplus
}
#endif
#endif
