"""Shared pytest configuration.

The repository root is put on ``sys.path`` so test modules can import the shared helpers
as ``tests.certs`` both under ``python -m pytest`` (which adds the working directory)
and under a bare ``pytest`` (which does not).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.certs import TestPKI, get_pki  # noqa: E402
from tests.helpers.cycles import no_cycle_collector  # noqa: E402, F401 (a fixture)


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    """The shared test PKI (see ``tests/certs.py``)."""
    return get_pki()
