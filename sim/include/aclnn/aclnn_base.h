/* aclnn_py CANN simulator: aclnn base API (mirrors CANN's aclnn/aclnn_base.h, libnnopbase.so). */
#ifndef ACLNN_SIM_ACLNN_BASE_H_
#define ACLNN_SIM_ACLNN_BASE_H_

#include "aclnn/acl_meta.h"

#ifdef __cplusplus
extern "C" {
#endif

/* configPath may be NULL. aclInit also initialises aclnn; calling both is fine. */
ACLNN_API aclnnStatus aclnnInit(const char *configPath);
ACLNN_API aclnnStatus aclnnFinalize(void);

#ifdef __cplusplus
}
#endif
#endif
