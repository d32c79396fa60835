"""Rank rendezvous for the reference backend: per-rank calls meet, one computes for all.

Each rank thread of a :class:`aclnn_py.World` calling a collective op arrives at a slot keyed by
(group, call index); the last participant computes the world-level reference once and every
participant takes its own result. Missing ranks, failed ranks and disagreeing parameters end
the wait with a :class:`CollectiveError` naming the ranks, on every participant.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .errors import ACL_ERROR_RT_AICORE_EXCEPTION, CollectiveError


class _Slot:
    def __init__(self, participants: Sequence[int]) -> None:
        self.participants = tuple(participants)
        self.payloads: Dict[int, Any] = {}
        self.results: Optional[Dict[int, Any]] = None
        self.error: Optional[BaseException] = None
        self.taken = 0


class Rendezvous:
    """Slots shared by the rank threads of one world."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._slots: Dict[tuple, _Slot] = {}
        self._calls: Dict[tuple, int] = {}
        self._abort: Optional[BaseException] = None

    def abort(self, error: BaseException) -> None:
        """Fail every current and future wait with ``error`` (a rank died)."""
        with self._cv:
            self._abort = error
            self._cv.notify_all()

    def collective(self, op: str, group: str, rank: int, participants: Sequence[int], payload: Any,
                   compute: Callable[[Dict[int, Any]], Dict[int, Any]], timeout_s: float,
                   what_if_missing: str = "") -> Any:
        """Arrive with ``payload``; return ``compute(payloads)[rank]`` once all ``participants`` arrived."""
        participants = tuple(sorted(participants))
        if rank not in participants:
            raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op,
                                  f"rank {rank} of group '{group}' is not a participant {list(participants)}")
        with self._cv:
            self._check_abort(op)
            index = self._calls.get((group, rank), 0)
            self._calls[(group, rank)] = index + 1
            key = (group, index)
            slot = self._slots.setdefault(key, _Slot(participants))
            if slot.participants != participants:
                err = CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op,
                                      f"ranks disagree on the participants of group '{group}' call {index}: "
                                      f"rank {rank} expects {list(participants)}, earlier ranks "
                                      f"{sorted(slot.payloads)} expect {list(slot.participants)}")
                slot.error = slot.error or err
                self._cv.notify_all()
                raise err
            slot.payloads[rank] = payload
            last = len(slot.payloads) == len(participants) and slot.error is None
        if last:
            try:
                results, error = compute(dict(slot.payloads)), None
            except BaseException as e:  # every participant must see the failure
                results, error = None, e
            with self._cv:
                slot.results, slot.error = results, slot.error or error
                self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while slot.results is None and slot.error is None:
                self._check_abort(op)
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [r for r in participants if r not in slot.payloads]
                    slot.error = CollectiveError(
                        ACL_ERROR_RT_AICORE_EXCEPTION, op,
                        f"ranks {missing} of group '{group}' never arrived within {timeout_s:g} s"
                        + (f" ({what_if_missing})" if what_if_missing else ""))
                    self._cv.notify_all()
                    break
                self._cv.wait(left)
            slot.taken += 1
            if slot.taken == len(participants) or slot.error is not None and slot.taken == len(slot.payloads):
                self._slots.pop(key, None)
            if slot.error is not None:
                raise slot.error
            return slot.results[rank]

    def _check_abort(self, op: str) -> None:
        if self._abort is not None:
            raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op,
                                  f"aborted because another rank failed: {self._abort}")


def participants_of(values: Sequence[Any]) -> List[int]:
    return [i for i, v in enumerate(values) if v is not None]
