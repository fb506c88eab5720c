"""The layer map is enforced: `lint-imports` passes, and fails on an upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def run_lint(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", str(where / "pyproject.toml")],
        cwd=where,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_layers_hold() -> None:
    result = run_lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "upward", "broken"),
    [
        ("mstls/wire/buffer.py", "import mstls.core.streams", "mstls layers"),
        ("mstls/core/streams.py", "import mstls.quic.connection", "mstls layers"),
        ("mstls/quic/connection.py", "import mstls.trio", "mstls layers"),
        ("mstls/core/streams.py", "import socket", "no socket or event loop"),
        (
            "mstls/config.py",
            "import mstlsd.server",
            "the library never imports the daemon or the CLI",
        ),
        ("mstlsd/server.py", "import mstls.core.streams", "use only the library's public modules"),
        ("mstls/session.py", "import asyncio", "only mstls.asyncio (and mstls.io) import asyncio"),
        ("mstls/asyncio/_stream.py", "import trio", "the asyncio API never imports trio"),
        ("mstls/asyncio/_driver.py", "import mstls._blocking", "mstls layers"),
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, module: str, upward: str, broken: str) -> None:
    ignore = shutil.ignore_patterns("*.pyc", "__pycache__")
    shutil.copytree(ROOT / "mstls", tmp_path / "mstls", ignore=ignore)
    shutil.copytree(ROOT / "daemon", tmp_path / "mstlsd", ignore=ignore)  # its install name
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{upward}  # an upward import\n")
    result = run_lint(tmp_path)
    assert result.returncode != 0
    assert f"{broken} BROKEN" in result.stdout, result.stdout
