"""``World``: run one Python function per rank, concurrently, with devices, streams and groups set up.

The Python form of the official demos' ``HcclCommInitAll`` + one-thread-per-device pattern. On the
``device`` backend every rank gets a context on its device, a stream and one HCCL communicator per
group it belongs to; on the ``reference`` backend the same per-rank code runs and collective ops
meet in a :class:`~aclnn_py.collective.Rendezvous` that computes the numpy reference once.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .backend import resolve_backend
from .collective import Rendezvous

_current = threading.local()
_world_ids = itertools.count()


def current_rank() -> Optional["RankContext"]:
    """The :class:`RankContext` of the calling thread inside :meth:`World.run`, else ``None``."""
    return getattr(_current, "rank", None)


@dataclass
class GroupMembership:
    """One rank's view of one group: the name to pass as ``group_ep``/``group`` and its rank in it."""

    label: str
    name: str
    rank: int
    members: List[int]

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class RankContext:
    """What a rank function receives: its rank, device, stream and groups."""

    world: "World"
    rank: int
    device: Optional[int] = None
    stream: Any = None
    groups: Dict[str, GroupMembership] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.world.backend

    @property
    def world_size(self) -> int:
        return self.world.size

    @property
    def ep_rank(self) -> int:
        return self.rank // max(self.world.tp_world_size, 1)

    @property
    def tp_rank(self) -> int:
        return self.rank % max(self.world.tp_world_size, 1)

    def group(self, label: str) -> str:
        """The communicator name of group ``label`` for this rank (pass it as ``group_ep`` etc.)."""
        try:
            return self.groups[label].name
        except KeyError:
            raise KeyError(f"rank {self.rank} is in no group labelled {label!r}; "
                           f"its groups: {sorted(self.groups)}") from None


class World:
    """``size`` ranks (global rank ``g = ep_rank * max(tp, 1) + tp_rank``) and their groups.

    ``groups`` maps a label to a list of member lists (global ranks); default: one group
    ``"world"`` of all ranks. Use as a context manager; :meth:`close` releases every stream,
    context and communicator.
    """

    def __init__(self, size: int, *, backend: Optional[str] = None, devices: Optional[Sequence[int]] = None,
                 groups: Optional[Mapping[str, Sequence[Sequence[int]]]] = None, tp_world_size: int = 0,
                 timeout_s: Optional[float] = None) -> None:
        if size < 1:
            raise ValueError(f"World size must be >= 1; got {size}")
        self.size = size
        self.tp_world_size = tp_world_size
        self.timeout_s = float(timeout_s if timeout_s is not None else os.environ.get("ACLNN_PY_COLLECTIVE_TIMEOUT_S", 120))
        self.backend = resolve_backend(backend, min_devices=size)
        self.devices = list(devices) if devices is not None else list(range(size))
        self.group_spec = {k: [list(m) for m in v] for k, v in (groups or {"world": [list(range(size))]}).items()}
        self._check_groups()
        self.id = next(_world_ids)
        self.rendezvous = Rendezvous()
        self.ranks: List[RankContext] = [RankContext(self, r) for r in range(size)]
        self._by_name: Dict[str, GroupMembership] = {}
        self._contexts: list = []
        self._comms: list = []
        self._closed = False
        try:
            if self.backend == "device":
                self._setup_device()
            else:
                self._setup_reference()
        except BaseException:
            self.close()
            raise

    @classmethod
    def ep_tp(cls, ep_world_size: int, tp_world_size: int = 0, **kwargs) -> "World":
        """A world of ``ep * max(tp, 1)`` ranks with groups ``ep`` and ``ep_barrier`` (one per TP slice)
        and ``tp`` (one per EP rank), laid out as the official demos do."""
        tp = max(tp_world_size, 1)
        ep_groups = [[e * tp + t for e in range(ep_world_size)] for t in range(tp)]
        groups = {"ep": ep_groups, "ep_barrier": [list(g) for g in ep_groups],
                  "tp": [[e * tp + t for t in range(tp)] for e in range(ep_world_size)]}
        groups.update(kwargs.pop("groups", {}) or {})
        return cls(ep_world_size * tp, groups=groups, tp_world_size=tp_world_size, **kwargs)

    def _check_groups(self) -> None:
        for label, member_lists in self.group_spec.items():
            for members in member_lists:
                if not members or len(set(members)) != len(members) or not all(0 <= m < self.size for m in members):
                    raise ValueError(f"group {label!r}: members must be distinct ranks in [0, {self.size}); "
                                     f"got {members}")

    # -- setup --------------------------------------------------------------------------------
    def _register(self, label: str, index: int, members: List[int], names: Sequence[str]) -> None:
        for grank, (g, name) in enumerate(zip(members, names)):
            m = GroupMembership(label, name, grank, members)
            self.ranks[g].groups[label] = m
            self._by_name[f"{name}@{g}"] = m

    def _setup_reference(self) -> None:
        for label, member_lists in self.group_spec.items():
            for i, members in enumerate(member_lists):
                name = f"ref_w{self.id}_{label}_{i}"
                self._register(label, i, members, [name] * len(members))

    def _setup_device(self) -> None:
        from .runtime import abi
        from .runtime.device import Context, Stream, acl_init
        lib = acl_init()
        for r in range(self.size):
            ctx = Context(self.devices[r])
            self._contexts.append(ctx)
            self.ranks[r].device = self.devices[r]
            self.ranks[r].stream = Stream()
        for label, member_lists in self.group_spec.items():
            for i, members in enumerate(member_lists):
                devs = (ctypes.c_int32 * len(members))(*[self.devices[m] for m in members])
                comms = (abi.HcclComm * len(members))()
                lib.HcclCommInitAll(len(members), devs, comms)
                self._comms.extend(comms[j] for j in range(len(members)))
                names = []
                for j in range(len(members)):
                    buf = ctypes.create_string_buffer(abi.COMM_NAME_MAX_LENGTH)
                    lib.HcclGetCommName(comms[j], buf)
                    names.append(buf.value.decode())
                self._register(label, i, members, names)

    # -- lookup ---------------------------------------------------------------------------------
    def membership(self, name: str, rank: int) -> GroupMembership:
        """Rank ``rank``'s membership of the group called ``name``."""
        m = self._by_name.get(f"{name}@{rank}")
        if m is None:
            raise KeyError(f"rank {rank} is not a member of a group named {name!r}")
        return m

    # -- running --------------------------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any, ranks: Optional[Sequence[int]] = None, **kwargs: Any) -> list:
        """Call ``fn(rank_ctx, *args, **kwargs)`` on each rank in ``ranks`` (default all), one thread each.

        Returns the results indexed by global rank (``None`` for ranks that did not run). If any
        rank raises, pending collectives on the reference backend are aborted and the first
        error is raised after every thread has finished.
        """
        if self._closed:
            raise RuntimeError("World is closed")
        ranks = list(range(self.size)) if ranks is None else list(ranks)
        results: List[Any] = [None] * self.size
        errors: Dict[int, BaseException] = {}

        def body(r: int) -> None:
            ctx = self.ranks[r]
            _current.rank = ctx
            try:
                if self._contexts:
                    self._contexts[r].bind()
                results[r] = fn(ctx, *args, **kwargs)
            except BaseException as e:
                errors[r] = e
                self.rendezvous.abort(RuntimeError(f"rank {r} raised {type(e).__name__}: {e}"))
            finally:
                _current.rank = None

        threads = [threading.Thread(target=body, args=(r,), name=f"aclnn_py-rank{r}") for r in ranks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.rendezvous = Rendezvous()
            first = min(errors)
            raise errors[first]
        return results

    # -- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        """Destroy communicators, streams and contexts (idempotent). Not a collective: call after run()."""
        if self._closed:
            return
        self._closed = True
        failures = []
        if self._contexts:
            from .runtime.device import acl_init
            lib = acl_init()
            for comm in self._comms:
                try:
                    lib.HcclCommDestroy(comm)
                except Exception as e:
                    failures.append(e)
            for r, ctx in enumerate(self._contexts):
                try:
                    ctx.bind()
                    if self.ranks[r].stream is not None:
                        self.ranks[r].stream.destroy()
                except Exception as e:
                    failures.append(e)
            for ctx in self._contexts:
                try:
                    ctx.destroy()
                except Exception as e:
                    failures.append(e)
        self._comms, self._contexts = [], []
        if failures:
            raise failures[0]

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"World(size={self.size}, backend={self.backend!r}, groups={sorted(self.group_spec)})"
