"""Benchmarks of libp2p-introspection: ``python -m bench`` (see bench/README.md)."""
