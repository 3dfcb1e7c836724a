"""Benchmark suites for `python -m experiments.bench --suite=NAME`; one module per suite."""
