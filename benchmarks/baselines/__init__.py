"""Baseline implementations the benchmarks compare crossbook against (same run, same input)."""
