"""The main job: the CombineAddRmsNormV2 seed demo ported to Python (DispatchV3 -> FFN ->
CombineAddRmsNormV2 on 8 ranks with special experts, then with an elastic scale-down 8 -> 4),
checked bit for bit against the numpy reference. Code: aclnn_py/demos/add_rms_norm.py.
"""
import argparse

from aclnn_py.demos import add_rms_norm

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--backend", choices=["auto", "device", "reference"])
a = p.parse_args()
raise SystemExit(0 if add_rms_norm.run_demo(a.backend) else 1)
