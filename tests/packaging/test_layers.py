"""The library never imports the daemon or its command line (README "Layout", issue 16).

``mstls/__main__.py`` is the one exception: ``python -m mstls`` runs the command line
of :mod:`mstlsd.cli`, looked up by name when it runs, never on ``import mstls``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPPER_PACKAGES = ("mstlsd", "daemon")
ALLOWED = {"mstls/__main__.py"}


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_module_of_the_library_imports_the_daemon() -> None:
    upward = []
    for path in sorted((ROOT / "mstls").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in ALLOWED:
            continue
        upward += [
            f"{relative}: import {name}"
            for name in _imported_modules(path)
            if name.split(".")[0] in UPPER_PACKAGES
        ]
    assert upward == []


def test_importing_the_library_loads_no_daemon_module() -> None:
    program = (
        "import sys, mstls, mstls.trio, mstls.errors\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mstlsd', 'daemon')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.strip() == "[]"
