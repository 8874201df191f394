"""Benchmarks behind ``python -m asmlp bench …`` (results are recorded in BENCHMARKS.md, never asserted in tests)."""
