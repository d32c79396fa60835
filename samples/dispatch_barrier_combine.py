"""The DistributeBarrierV2 seed demo ported to Python: DispatchV3 -> BarrierV2 -> CombineV3 on
8 ranks with a shared-expert rank, checked bit for bit against the numpy reference.
Code: aclnn_py/demos/dispatch_barrier_combine.py.
"""
import argparse

from aclnn_py.demos import dispatch_barrier_combine

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--backend", choices=["auto", "device", "reference"])
a = p.parse_args()
raise SystemExit(0 if dispatch_barrier_combine.run_demo(a.backend) else 1)
