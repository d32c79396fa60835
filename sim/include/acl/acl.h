/* aclnn_py CANN simulator: umbrella ACL header (mirrors CANN's acl/acl.h).
 * As in the CANN 8.5.0 headers, the version macros and aclInit/aclFinalize/aclrtGetVersion live in
 * acl/acl_rt.h; this header only gathers the others. */
#ifndef ACLNN_SIM_ACL_H_
#define ACLNN_SIM_ACL_H_

#include "acl/acl_base.h"
#include "acl/acl_rt.h"

#endif
