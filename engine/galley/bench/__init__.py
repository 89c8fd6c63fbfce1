"""Benchmarks that print JSON: python -m galley.bench.<name>."""
