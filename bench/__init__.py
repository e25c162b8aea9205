"""The benchmark: `make bench` (python -m bench.run); profiling: python -m bench.profile."""
