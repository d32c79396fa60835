"""aclnn_py benchmarks (issue 5): ``python -m benchmarks [--quick]``; figures recorded in BENCHMARKS.md.

Not part of the test suite. Each module is one figure with ``run(quick) -> dict`` and ``report(dict) -> str``.
"""
