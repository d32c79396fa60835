/*
 * aclnn_py CANN simulator: HCCL API (mirrors CANN's hccl/hccl.h; prototypes from
 * ../shared/spec/abi.md §2.3). Communicators connect threads of this process only.
 */
#ifndef ACLNN_SIM_HCCL_H_
#define ACLNN_SIM_HCCL_H_

#include <string.h>
#include "hccl/hccl_types.h"
#include "acl/acl_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef HCCL_API
#define HCCL_API __attribute__((visibility("default")))
#endif

HCCL_API HcclResult HcclGetRootInfo(HcclRootInfo *rootInfo);
HCCL_API HcclResult HcclCommInitRootInfo(uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank,
                                         HcclComm *comm);
HCCL_API HcclResult HcclCommInitRootInfoConfig(uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank,
                                               const HcclCommConfig *config, HcclComm *comm);
HCCL_API HcclResult HcclCommInitAll(uint32_t ndev, int32_t *devices, HcclComm *comms);
HCCL_API HcclResult HcclGetCommName(HcclComm comm, char *commName);
HCCL_API HcclResult HcclGetRankId(HcclComm comm, uint32_t *rank);
HCCL_API HcclResult HcclGetRankSize(HcclComm comm, uint32_t *rankSize);
HCCL_API HcclResult HcclBarrier(HcclComm comm, aclrtStream stream);
HCCL_API HcclResult HcclCommDestroy(HcclComm comm);
HCCL_API const char *HcclGetErrorString(HcclResult code);
HCCL_API HcclResult HcclGetCommAsyncError(HcclComm comm, HcclResult *asyncError);

/* Header-only, as in CANN: writes the {size, magic word, version} header into reserved[] and the
 * "not set" defaults of the version-6 fields. */
static inline void HcclCommConfigInit(HcclCommConfig *config)
{
    typedef struct {
        size_t size;
        uint32_t magicWord;
        uint32_t version;
        uint64_t reserved;
    } HcclConfigInfoHeader;
    HcclConfigInfoHeader *info = (HcclConfigInfoHeader *)config;
    if (config == NULL) {
        return;
    }
    memset(config, 0, sizeof(*config));
    info->size = sizeof(HcclCommConfig);
    info->magicWord = HCCL_COMM_CONFIG_MAGIC_WORD;
    info->version = HCCL_COMM_CONFIG_VERSION;
    info->reserved = 0;
    config->hcclBufferSize = HCCL_COMM_BUFFSIZE_CONFIG_NOT_SET;
    config->hcclDeterministic = HCCL_COMM_DETERMINISTIC_CONFIG_NOT_SET;
    config->hcclOpExpansionMode = HCCL_COMM_DEFAULT_OP_EXPANSION_MODE;
    config->hcclRdmaTrafficClass = HCCL_COMM_TRAFFIC_CLASS_CONFIG_NOT_SET;
    config->hcclRdmaServiceLevel = HCCL_COMM_SERVICE_LEVEL_CONFIG_NOT_SET;
    config->hcclWorldRankID = 0;
    config->hcclJobID = 0;
}

#ifdef __cplusplus
}
#endif
#endif
