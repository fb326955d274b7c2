"""Benchmarks run once, as correctness tests, in ordinary test runs (--benchmark-disable, from
pyproject.toml), and for timing with --benchmark-enable:

    pytest benchmarks --benchmark-enable --benchmark-group-by=param:shape -m "slow or not slow"

Large shapes are marked slow; the default test run deselects them.
"""
