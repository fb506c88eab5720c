"""Benchmarks that run mstls and a peer implementation in one invocation and print ratios.

``python -m bench.quic_bulk`` (see ``bench/README.md``).
"""
