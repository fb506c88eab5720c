"""Every test in this folder starts with an empty error queue."""

from __future__ import annotations

import pytest

from mstls import errors


@pytest.fixture(autouse=True)
def _clean_queue() -> None:
    errors.clear_error()
