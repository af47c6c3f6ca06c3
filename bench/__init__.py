"""Benchmarks: `python -m bench [--only NAME] [--quick]`. Never part of `make test`.

Each benchmark compares Portside with the peer tool side by side in one run, prints a table and
writes every measured number to `bench/results/<name>.json`. Every measured case runs in its own
subprocess, so its peak RSS is its own (see `bench.common.measure`).
"""
