"""Exceptions carrying CANN status codes.

Every failure aclnn_py reports is one of these, with the numeric status CANN would return
(``.status``), the call or operator that failed (``.call``) and a message. They pickle, so a
rank running in another process can hand them back to its launcher.
"""
from __future__ import annotations

# aclnnStatus values (nnopbase op_errno.h; "aclnn返回码").
ACLNN_SUCCESS = 0
ACLNN_ERR_PARAM_NULLPTR = 161001
ACLNN_ERR_PARAM_INVALID = 161002
ACLNN_ERR_RUNTIME_ERROR = 361001
ACLNN_ERR_INNER = 561000
ACLNN_ERR_INNER_TILING_ERROR = 561002
ACLNN_ERR_INNER_FIND_KERNEL_ERROR = 561003
ACLNN_ERR_INNER_NULLPTR = 561103

# aclError values used by the runtime (acl_base_rt.h, rt_error_codes.h).
ACL_SUCCESS = 0
ACL_ERROR_INVALID_PARAM = 100000
ACL_ERROR_UNINITIALIZE = 100001
ACL_ERROR_REPEAT_INITIALIZE = 100002
ACL_ERROR_RT_PARAM_INVALID = 107000
ACL_ERROR_RT_INVALID_DEVICEID = 107001
ACL_ERROR_RT_CONTEXT_NULL = 107002
ACL_ERROR_RT_MEMORY_ALLOCATION = 207001
ACL_ERROR_RT_AICORE_EXCEPTION = 507015
ACL_ERROR_RT_STREAM_SYNC_TIMEOUT = 507046

# HcclResult values (hccl_types.h).
HCCL_SUCCESS = 0
HCCL_E_PARA = 1
HCCL_E_TIMEOUT = 9

_ACLNN_NAMES = {
    ACLNN_ERR_PARAM_NULLPTR: "ACLNN_ERR_PARAM_NULLPTR",
    ACLNN_ERR_PARAM_INVALID: "ACLNN_ERR_PARAM_INVALID",
    ACLNN_ERR_RUNTIME_ERROR: "ACLNN_ERR_RUNTIME_ERROR",
    ACLNN_ERR_INNER: "ACLNN_ERR_INNER",
    ACLNN_ERR_INNER_TILING_ERROR: "ACLNN_ERR_INNER_TILING_ERROR",
    ACLNN_ERR_INNER_FIND_KERNEL_ERROR: "ACLNN_ERR_INNER_FIND_KERNEL_ERROR",
    ACLNN_ERR_INNER_NULLPTR: "ACLNN_ERR_INNER_NULLPTR",
}


class AclnnPyError(RuntimeError):
    """Base class: a CANN status code, the call that produced it, and a message."""

    kind = "status"

    def __init__(self, status: int, call: str, message: str = "") -> None:
        self.status = int(status)
        self.call = call
        self.message = message
        super().__init__(self._text())

    def _text(self) -> str:
        name = self.status_name()
        head = f"{self.call} failed with {self.kind} {self.status}"
        if name:
            head += f" ({name})"
        return f"{head}: {self.message}" if self.message else head

    def status_name(self) -> str:
        return ""

    def __reduce__(self):
        return (type(self), (self.status, self.call, self.message))


class AclnnError(AclnnPyError):
    """An aclnn operator rejected its arguments or failed (aclnnStatus)."""

    kind = "aclnnStatus"

    def status_name(self) -> str:
        return _ACLNN_NAMES.get(self.status, "")


class AclError(AclnnPyError):
    """An ACL runtime call failed (aclError)."""

    kind = "aclError"


class HcclError(AclnnPyError):
    """An HCCL call failed (HcclResult)."""

    kind = "HcclResult"


class CollectiveError(AclnnPyError):
    """A collective could not complete: a rank never arrived, failed, or disagreed."""

    kind = "status"


def param_error(call: str, status: int, param: str, rule: str, value: object) -> AclnnError:
    """Build the validation error every backend raises: names the parameter, the rule and the value."""
    return AclnnError(status, call, f"parameter '{param}' must satisfy {rule}; got {value!r}")


# ---- backend choice ------------------------------------------------------------------------------------
class InvalidBackendError(ValueError):
    """A backend name (argument or ``ACLNN_PY_BACKEND``) that is not ``auto``, ``device`` or ``reference``."""


class BackendUnavailableError(RuntimeError):
    """The ``device`` backend was requested (or is needed) but cannot run; the message says why."""


class BackendFallbackWarning(UserWarning):
    """``auto`` chose the numpy reference backend because the device backend cannot run.

    Silence it by choosing explicitly (``ACLNN_PY_BACKEND=reference`` or ``backend="reference"``) or with
    ``warnings.filterwarnings("ignore", category=aclnn_py.BackendFallbackWarning)``.
    """
