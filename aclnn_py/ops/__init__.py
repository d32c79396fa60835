"""Per-rank operator wrappers (DESIGN §2.2)."""
from .barrier import distribute_barrier_v2

__all__ = ["distribute_barrier_v2"]
