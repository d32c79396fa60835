"""DistributeBarrierV2 on 8 ranks through aclnn_py.World, then again after an elastic scale-down.

Device backend (CANN or the aclnn_py simulator) when found, else the numpy reference;
``--backend`` or ACLNN_PY_BACKEND overrides. Code: aclnn_py/demos/barrier.py.
"""
import argparse

from aclnn_py.demos import barrier

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--backend", choices=["auto", "device", "reference"])
p.add_argument("--ranks", type=int, default=8)
a = p.parse_args()
raise SystemExit(0 if barrier.run_demo(a.backend, ranks=a.ranks) else 1)
