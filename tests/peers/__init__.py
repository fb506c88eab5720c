"""Interop peers written for mstls's tests in other languages (built by the tests that use them)."""
