"""Tests of the native trio API (mstls.trio)."""
