/*
 * aclnn_py CANN simulator: aclnnDistributeBarrierV2 (V1 in aclnn_distribute_barrier.h, included), prototypes as in ops-transformer
 * mc2/distribute_barrier/op_host/op_api (see ../shared/spec/combine-addrmsnorm-barrier.md §1.5).
 */
#ifndef ACLNN_SIM_ACLNN_DISTRIBUTE_BARRIER_V2_H_
#define ACLNN_SIM_ACLNN_DISTRIBUTE_BARRIER_V2_H_

#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_distribute_barrier.h"

#ifdef __cplusplus
extern "C" {
#endif

ACLNN_API aclnnStatus aclnnDistributeBarrierV2GetWorkspaceSize(const aclTensor *xRef, const aclTensor *timeOut,
                                                               const aclTensor *elasticInfo, const char *group,
                                                               int64_t worldSize, uint64_t *workspaceSize,
                                                               aclOpExecutor **executor);
ACLNN_API aclnnStatus aclnnDistributeBarrierV2(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                               aclrtStream stream);

#ifdef __cplusplus
}
#endif
#endif
