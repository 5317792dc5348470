"""Benchmarks at scale (`./dev bench`): each hot path against a baseline measured in the same run.

Not part of `./dev test`: the modules are named `bench_*.py`, which pytest does not collect.
"""
