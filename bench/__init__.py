"""Benchmarks: scripts that print tables of numbers (see bench/README.md)."""
