"""Benchmarks: adwd against the bare stack it is built on, in the same run."""
