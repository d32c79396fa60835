"""Python ports of the official operator demos (run them with ``python -m aclnn_py demo``)."""
