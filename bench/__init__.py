"""Benchmark harness: the live server against the stack's floor (see docs/benchmarks.md)."""
