"""The README's examples are runnable scripts; each runs here on both transports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.network

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("script", ["threads_echo.py", "trio_echo.py", "asyncio_echo.py"])
def test_example_runs(script: str, transport: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), transport],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"connected over {transport}" in result.stdout
    assert result.stdout.count("hello from") == 8


def test_readme_shows_the_examples() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    for script in ("examples/threads_echo.py", "examples/trio_echo.py", "examples/asyncio_echo.py"):
        assert script in readme
