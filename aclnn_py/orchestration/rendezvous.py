"""Rank rendezvous for the reference backend (and the host-side checks of every backend).

Each rank thread of a :class:`aclnn_py.World` calling a collective arrives at a slot keyed by
(group, participant set, call index); the last participant computes the world-level result once and
every participant takes its own. The call index is counted per participant set, so an elastic call
on a subset of ranks never shifts the sequence of the full group (or of another subset).

A wait never outlives its cause. It ends with a :class:`CollectiveError` on every participant, naming
the ranks, as soon as

* a rank failed (:meth:`Rendezvous.abort`, called by ``World.run`` when a rank's function raised),
* a participant's function returned without joining, or is not running at all
  (:meth:`Rendezvous.depart`),
* two ranks each wait in a call with a different participant set that the other belongs to but has
  not joined (they disagree on ``elastic_info``), or
* the timeout expires (a participant is stuck elsewhere).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ACL_ERROR_RT_AICORE_EXCEPTION, CollectiveError


class _Slot:
    def __init__(self, key: tuple, participants: Tuple[int, ...], to_global: Sequence[int]) -> None:
        self.key = key
        self.participants = participants
        self.to_global = to_global
        self.payloads: Dict[int, Any] = {}
        self.results: Optional[Dict[int, Any]] = None
        self.error: Optional[BaseException] = None
        self.dead = False       # failed while a participant was missing: every taker withdraws its arrival
        self.taken = 0

    def fail(self, error: BaseException) -> None:
        if self.error is None and self.results is None:
            self.error = error
            self.dead = len(self.payloads) < len(self.participants)

    def missing(self) -> List[int]:
        return [r for r in self.participants if r not in self.payloads]


class Rendezvous:
    """Slots shared by the rank threads of one world.

    ``members_of(group)``: the global ranks of a group name's members in group-rank order, or
    ``None`` when ``group`` is not a group name (then the ranks callers pass are global ranks).
    """

    def __init__(self, members_of: Optional[Callable[[str], Optional[Sequence[int]]]] = None) -> None:
        self._cv = threading.Condition()
        self._slots: Dict[tuple, _Slot] = {}
        self._calls: Dict[tuple, int] = {}
        self._waiting: Dict[tuple, _Slot] = {}     # (group, rank) -> slot that rank is blocked in
        self._departed: Dict[int, str] = {}       # global rank -> why it will not arrive
        self._abort: Optional[BaseException] = None
        self._members_of = members_of

    # -- failure signals ------------------------------------------------------------------------
    def abort(self, error: BaseException) -> None:
        """Fail every current and future wait with ``error`` (a rank died); the first error is kept."""
        with self._cv:
            if self._abort is None:
                self._abort = error
            self._cv.notify_all()

    def depart(self, global_rank: int, why: str) -> None:
        """Global rank ``global_rank`` will call no more collectives: waits that need it fail at once."""
        with self._cv:
            self._departed[global_rank] = why
            self._cv.notify_all()

    def reset_departures(self, departed: Optional[Dict[int, str]] = None) -> None:
        with self._cv:
            self._departed = dict(departed or {})
            self._cv.notify_all()

    @property
    def aborted(self) -> Optional[BaseException]:
        return self._abort

    @property
    def needs_reset(self) -> bool:
        """True once aborted: the next World.run needs a fresh Rendezvous."""
        return self._abort is not None

    # -- the rendezvous -------------------------------------------------------------------------
    def collective(self, op: str, group: str, rank: int, participants: Sequence[int], payload: Any,
                   compute: Callable[[Dict[int, Any]], Dict[int, Any]], timeout_s: float,
                   what_if_missing: str = "", global_ranks: Optional[Sequence[int]] = None) -> Any:
        """Arrive with ``payload``; return ``compute(payloads)[rank]`` once all ``participants`` arrived.

        ``rank``/``participants`` are ranks of ``group`` (global ranks when ``group`` is not a group
        name); ``global_ranks[r]`` maps them to global ranks for messages (default: from the World).
        """
        participants = tuple(sorted(set(participants)))
        if rank not in participants:
            raise CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op,
                                  f"rank {rank} of group '{group}' is not a participant {list(participants)}")
        to_global = global_ranks if global_ranks is not None else self._globals(group)
        with self._cv:
            self._check_abort(op)
            ckey = (group, participants, rank)
            index = self._calls.get(ckey, 0)
            self._calls[ckey] = index + 1
            key = (group, participants, index)
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(key, participants, to_global)
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
            self._waiting[(group, rank)] = slot
            try:
                while slot.results is None and slot.error is None:
                    if self._abort is not None:
                        slot.fail(self._abort_error(op))
                        self._cv.notify_all()
                        break
                    why, other = self._blocked_for_good(group, rank, slot)
                    if why is not None:
                        slot.fail(CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op, why))
                        if other is not None:
                            other.fail(slot.error)
                        self._cv.notify_all()
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        slot.fail(CollectiveError(
                            ACL_ERROR_RT_AICORE_EXCEPTION, op,
                            f"{self._name_ranks(slot, slot.missing())} of group '{group}' never arrived within "
                            f"{timeout_s:g} s" + (f" ({what_if_missing})" if what_if_missing else "")))
                        self._cv.notify_all()
                        break
                    self._cv.wait(min(left, 1.0))
            finally:
                self._waiting.pop((group, rank), None)
            slot.taken += 1
            if slot.dead:
                # nobody completed this call: withdraw the arrival (every taker, late arrivals too), so the
                # ranks' call indices stay aligned and the next call of each rank pairs with the others'
                self._calls[ckey] = index
            if slot.taken == len(participants) or slot.error is not None and slot.taken == len(slot.payloads):
                self._slots.pop(slot.key, None)
            if slot.error is not None:
                raise slot.error
            return slot.results[rank]

    # -- diagnosis ------------------------------------------------------------------------------
    def _globals(self, group: str) -> Sequence[int]:
        members = self._members_of(group) if self._members_of is not None else None
        return members if members is not None else Identity()

    def _name_ranks(self, slot: _Slot, ranks: Sequence[int]) -> str:
        parts = []
        for r in ranks:
            g = slot.to_global[r]
            parts.append(str(r) if g == r else f"{r} (global rank {g})")
        return f"rank{'s' if len(parts) != 1 else ''} [{', '.join(parts)}]"

    def _blocked_for_good(self, group: str, rank: int, slot: _Slot) -> Tuple[Optional[str], Optional[_Slot]]:
        """Why ``slot`` can never complete (and the other slot of a deadlock), or ``(None, None)``."""
        for x in slot.missing():
            g = slot.to_global[x]
            if g in self._departed:
                return (f"{self._name_ranks(slot, [x])} of group '{group}' will never join this collective: "
                        f"{self._departed[g]}"), None
            other = self._waiting.get((group, x))
            if other is not None and other is not slot and rank in other.participants and rank not in other.payloads:
                return (f"ranks disagree on the participants of this collective on group '{group}': rank {rank} "
                        f"waits with participants {list(slot.participants)} for rank {x}, while rank {x} waits "
                        f"with participants {list(other.participants)} for rank {rank} (a real device would hang); "
                        "every rank must pass the same elastic_info / world_size"), other
        return None, None

    def _check_abort(self, op: str) -> None:
        if self._abort is not None:
            raise self._abort_error(op)

    def _abort_error(self, op: str) -> CollectiveError:
        return CollectiveError(ACL_ERROR_RT_AICORE_EXCEPTION, op, f"aborted because another rank failed: {self._abort}")


class Identity:
    """Global ranks of a group that is the whole world: ``Identity()[r] == r``."""

    def __getitem__(self, r: int) -> int:
        return r
