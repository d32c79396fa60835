/*
 * The CANN release the simulator emulates (docs/decisions.md "Simulator per release").
 *
 * The changes between releases, and the first release of each, come from aclnn_py/releases.py: build.sh
 * generates sim_releases.h from it (enum SIM_CHANGE_*, SIM_DEFAULT_RELEASE, SIM_KNOWN_MIN/MAX). A change is
 * in the emulated release iff the release's CANN number >= the change's first release (releases.flags_for).
 *
 * The release is ACLNN_SIM_CANN_VERSION when set and not empty, else SIM_DEFAULT_RELEASE. It is read at
 * aclInit (which refuses a bad value) and again by every GetWorkspaceSize (the executor keeps the release of
 * its GetWorkspaceSize), so a process may switch releases between operator calls.
 * Implemented in libop_common.so (core_release.c).
 */
#ifndef ACLNN_SIM_RELEASE_H
#define ACLNN_SIM_RELEASE_H

#include <stdint.h>

#include "simcore.h"

/* the generated table defines a static array only core_release.c reads */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wunused-const-variable"
#include "sim_releases.h"
#pragma GCC diagnostic pop

#ifdef __cplusplus
extern "C" {
#endif

#define SIM_RELEASE_VARIABLE "ACLNN_SIM_CANN_VERSION"

typedef struct {
    char text[64];        /* the release as written (trimmed) */
    int32_t number;       /* CANN's number (aclsysGetVersionNum's encoding) */
    uint32_t changes;     /* bit SIM_CHANGE_x set: the release has change x */
    int from_env;         /* 1: ACLNN_SIM_CANN_VERSION, 0: the default */
} SimRelease;

/* CANN's number of a release string, with the grammar of releases.version_number: "X.Y[.Z][sep](alpha|beta|rc)
 * [.]N" (sep one of . - _, case-insensitive, blanks around), e.g. 8.5.0.alpha001, 8.5.0-beta.1, 9.1.0, 8.3.RC1.
 * Returns 0 and sets *number (and *has_patch: Z was written), or -1 when the text does not parse. */
SIM_API int sim_release_parse(const char *text, int32_t *number, int *has_patch);
/* The emulated release now. 0, or -1 with the error message set (an unparsable value or one outside the known
 * range, naming the variable and the range); `api` prefixes the message. */
SIM_API int sim_release_current(const char *api, SimRelease *out);
static inline int sim_release_has(const SimRelease *r, int change) { return (int)((r->changes >> change) & 1u); }
/* "release 9.1.0 (ACLNN_SIM_CANN_VERSION)" / "release 8.5.0.alpha001 (the simulator's default)", for messages */
SIM_API const char *sim_release_describe(const SimRelease *r);

#ifdef __cplusplus
}
#endif
#endif
