"""The A3 tilings' ranges that several operators share (``dispatch-v3.md`` §13, ``combine-addrmsnorm-barrier.md``
§8): one place for each number."""

INT32_MAX = 2**31 - 1
EP_MIN, EP_MAX = 2, 768          # ep_world_size
BS_MAX = 512                     # tokens per rank
H_MIN, H_MAX = 1024, 8192        # hidden size
K_MAX = 16                       # top-k
M_MAX = 1024                     # moe_expert_num
SHARED_MAX = 4                   # shared_expert_num
NOT_ENFORCED = "documented rule, not enforced by the CANN kernel"
