"""Benchmarks comparing pydistributed with its peers. Run ``python -m benchmarks --help``."""
