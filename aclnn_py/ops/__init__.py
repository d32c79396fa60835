"""Per-rank operator wrappers (DESIGN §2.2)."""
from .barrier import distribute_barrier_v2
from .moe import moe_distribute_combine_add_rms_norm_v2, moe_distribute_combine_v3, moe_distribute_dispatch_v3

__all__ = ["distribute_barrier_v2", "moe_distribute_dispatch_v3", "moe_distribute_combine_v3",
           "moe_distribute_combine_add_rms_norm_v2"]
