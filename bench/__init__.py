"""Benchmark suite of OEM Gateway: ``python -m bench.run --help`` (see bench/README.md)."""
