"""Loading the CANN libraries and binding the C-ABI table; the one status-checking helper.

Every foreign function is bound from :mod:`.abi` with its exact ``restype``/``argtypes`` and an
``errcheck`` that turns a failing status into :class:`AclError`, :class:`AclnnError` or
:class:`HcclError` carrying the code and ``aclGetRecentErrMsg()``. Libraries are never unloaded.
"""
from __future__ import annotations

import ctypes
import os
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import (ACLNN_ERR_INNER_FIND_KERNEL_ERROR, ACLNN_ERR_PARAM_INVALID, AclError,
                      AclnnError, HcclError)
from .. import catalog
from . import abi
from .discovery import CannInstall, describe_search, find_cann


class CannNotFound(RuntimeError):
    """No CANN install (and no simulator tree) was found."""


@dataclass
class BoundOp:
    """An operator's two foreign functions and the library they came from; ``held`` has the same two bound
    holding the GIL (``(get_workspace_size, execute)``), for calls that cannot wait on another rank."""

    spec: catalog.OpDef
    get_workspace_size: object
    execute: object
    library: Path
    held: tuple = ()


class CannLibrary:
    """The loaded CANN libraries with every function of the C-ABI table bound.

    Attribute access returns the bound C function (``lib.aclrtMalloc(...)``); failures raise.
    """

    def __init__(self, install: CannInstall) -> None:
        self.install = install
        self._dlls: Dict[Path, ctypes.CDLL] = {}
        self._pydlls: Dict[Path, ctypes.PyDLL] = {}
        self._fns: Dict[str, object] = {}
        self.held = types.SimpleNamespace()   # the ``quick`` functions of the table, bound holding the GIL
        self._ops: Dict[str, BoundOp] = {}
        mode = getattr(os, "RTLD_GLOBAL", 0)
        for path in filter(None, [install.op_common, install.runtime, install.nnopbase, install.hccl]):
            self._dlls[path] = ctypes.CDLL(str(path), mode=mode)
        self._bind(abi.ACL_RUNTIME, install.runtime)
        if install.nnopbase is not None:
            self._bind(abi.NNOPBASE, install.nnopbase)
        if install.hccl is not None:
            self._bind(abi.HCCL, install.hccl)
        if install.op_common is not None:
            self._bind(abi.SIMULATOR, install.op_common, optional=True)
        self.is_simulator = install.is_simulator or (
            "aclsimIsSimulator" in self._fns and self._fns["aclsimIsSimulator"]() == 1)

    # -- binding ----------------------------------------------------------------------------
    def _dll(self, path: Path) -> ctypes.CDLL:
        if path not in self._dlls:
            self._dlls[path] = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_GLOBAL", 0))
        return self._dlls[path]

    def _pydll(self, path: Path) -> ctypes.PyDLL:
        """``path`` loaded again as a PyDLL (the same library: its functions are called holding the GIL)."""
        if path not in self._pydlls:
            self._pydlls[path] = ctypes.PyDLL(str(path), mode=getattr(os, "RTLD_GLOBAL", 0))
        return self._pydlls[path]

    def _bind_one(self, fn: abi.Function, dll: ctypes.CDLL):
        c = getattr(dll, fn.name)
        c.restype = fn.restype
        c.argtypes = list(fn.argtypes)
        if fn.status is not None:
            c.errcheck = self._checker(fn.status)
        return c

    def _bind(self, table: List[abi.Function], path: Path, optional: bool = False) -> None:
        dll = self._dll(path)
        for fn in table:
            try:
                self._set(fn.name, self._bind_one(fn, dll))
                if fn.quick:
                    setattr(self.held, fn.name, self._bind_one(fn, self._pydll(path)))
            except AttributeError:
                if not optional and not self._try_any_library(fn):
                    self._set(fn.name, _missing(fn.name, path))

    def _set(self, name: str, fn) -> None:
        # instance attributes: the hot path finds bound functions without a __getattr__ call
        self._fns[name] = fn
        setattr(self, name, fn)

    def _try_any_library(self, fn: abi.Function) -> bool:
        for dll in self._dlls.values():
            if hasattr(dll, fn.name):
                self._set(fn.name, self._bind_one(fn, dll))
                if fn.quick:
                    setattr(self.held, fn.name, self._bind_one(fn, self._pydll(Path(dll._name))))
                return True
        return False

    def has(self, name: str) -> bool:
        return name in self._fns and not isinstance(self._fns[name], _Missing)

    # -- status checking: the one helper every foreign call goes through ---------------------
    def recent_error_message(self) -> str:
        fn = self._fns.get("aclGetRecentErrMsg")
        if fn is None or isinstance(fn, _Missing):
            return ""
        raw = fn()
        return raw.decode("utf-8", "replace").strip() if raw else ""

    def _checker(self, kind: str):
        def check(result, func, args):
            if kind == "pointer":
                if not result:
                    msg = self.recent_error_message() or "returned NULL"
                    raise AclnnError(ACLNN_ERR_PARAM_INVALID, func.__name__, msg)
                return result
            if result == 0:
                return result
            msg = self.recent_error_message()
            if kind == "acl":
                raise AclError(result, func.__name__, msg)
            if kind == "hccl":
                text = self.hccl_error_string(result)
                raise HcclError(result, func.__name__, "; ".join(filter(None, [text, msg])))
            raise AclnnError(result, func.__name__, msg)
        return check

    def hccl_error_string(self, code: int) -> str:
        fn = self._fns.get("HcclGetErrorString")
        if fn is None or isinstance(fn, _Missing):
            return ""
        raw = fn(code)
        return raw.decode("utf-8", "replace") if raw else ""

    # -- operators --------------------------------------------------------------------------
    def op(self, name: str) -> BoundOp:
        """The operator ``name`` (a catalog C name) from the first op library exporting both of its phases."""
        if name in self._ops:
            return self._ops[name]
        spec = catalog.OPS[name]
        p1, p2 = abi.phase1(spec), abi.phase2(spec)
        for path in self.install.op_libraries:
            dll = self._dll(path)
            if hasattr(dll, p1.name) and hasattr(dll, p2.name):
                held = self._pydll(path)
                bound = BoundOp(spec, self._bind_one(p1, dll), self._bind_one(p2, dll), path,
                                (self._bind_one(p1, held), self._bind_one(p2, held)))
                self._ops[name] = bound
                return bound
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, name,
                         f"no operator library under {self.install.home} exports {p1.name} and "
                         f"{p2.name} (searched: {', '.join(map(str, self.install.op_libraries)) or 'none'})")

    def exports(self, name: str) -> bool:
        """Whether some operator library exports both phases of catalog operator ``name``."""
        try:
            self.op(name)
            return True
        except AclnnError:
            return False

    def op_exports(self) -> Dict[Path, List[str]]:
        """For each op library, the catalog operators it exports (both phases)."""
        out: Dict[Path, List[str]] = {}
        for path in self.install.op_libraries:
            dll = self._dll(path)
            out[path] = [n for n in catalog.OPS
                         if hasattr(dll, n + "GetWorkspaceSize") and hasattr(dll, n)]
        return out


class _Missing:
    """Stands in for a function the loaded library does not export; calling it raises."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path

    def __call__(self, *args):
        raise AclnnError(ACLNN_ERR_INNER_FIND_KERNEL_ERROR, self.name, f"{self.path} does not export {self.name}")


def _missing(name: str, path: Path) -> _Missing:
    return _Missing(name, path)


_lock = threading.Lock()
_library: Optional[CannLibrary] = None


def get_library() -> CannLibrary:
    """The process-wide :class:`CannLibrary`, loaded on first use."""
    global _library
    with _lock:
        if _library is None:
            install = find_cann()
            if install is None:
                raise CannNotFound("no CANN install or aclnn_py simulator found; " + describe_search()
                                   + "\nset ACLNN_PY_CANN_HOME (e.g. to build/cann-sim after ./build.sh) "
                                   "or source the CANN set_env.sh")
            _library = CannLibrary(install)
        return _library


def loaded_library() -> Optional[CannLibrary]:
    """The process-wide library if it is loaded already, else ``None`` (never loads it)."""
    return _library
