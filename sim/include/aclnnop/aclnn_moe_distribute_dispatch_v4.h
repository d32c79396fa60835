/*
 * aclnn_py CANN simulator: aclnnMoeDistributeDispatchV4 (CANN >= 8.5.0-beta.1), prototype as in ops-transformer
 * mc2/moe_distribute_dispatch_v2/op_api. DispatchV3's parameters plus performanceInfoOptional (after
 * elasticInfoOptional): an INT64 (epWorldSize,) tensor or NULL; from CANN 9.0.0 the A3 kernel max-merges the
 * microseconds this rank waited for each peer into its low 32-bit words (docs/decisions.md).
 */
#ifndef ACLNN_SIM_ACLNN_MOE_DISTRIBUTE_DISPATCH_V4_H_
#define ACLNN_SIM_ACLNN_MOE_DISTRIBUTE_DISPATCH_V4_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

ACLNN_API aclnnStatus aclnnMoeDistributeDispatchV4GetWorkspaceSize(
    const aclTensor *x, const aclTensor *expertIds, const aclTensor *scalesOptional,
    const aclTensor *xActiveMaskOptional, const aclTensor *expertScalesOptional, const aclTensor *elasticInfoOptional,
    const aclTensor *performanceInfoOptional, const char *groupEp, int64_t epWorldSize, int64_t epRankId,
    int64_t moeExpertNum, const char *groupTp, int64_t tpWorldSize, int64_t tpRankId, int64_t expertShardType,
    int64_t sharedExpertNum, int64_t sharedExpertRankNum, int64_t quantMode, int64_t globalBs,
    int64_t expertTokenNumsType, const char *commAlg, int64_t zeroExpertNum, int64_t copyExpertNum,
    int64_t constExpertNum, aclTensor *expandXOut, aclTensor *dynamicScalesOut, aclTensor *assistInfoForCombineOut,
    aclTensor *expertTokenNumsOut, aclTensor *epRecvCountsOut, aclTensor *tpRecvCountsOut, aclTensor *expandScalesOut,
    uint64_t *workspaceSize, aclOpExecutor **executor);

ACLNN_API aclnnStatus aclnnMoeDistributeDispatchV4(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                                                   aclrtStream stream);

#ifdef __cplusplus
}
#endif
#endif
