"""The public API is documented: every name users reach has a docstring, every config
field is described, and the Sphinx reference builds with warnings as errors."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import mstls
import mstls.asyncio
import mstls.errors
import mstls.trio

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = (mstls, mstls.trio, mstls.asyncio, mstls.errors)


def public_objects() -> Iterator[tuple[str, Any]]:
    """(qualified name, object) for every public function, class, method and property."""
    seen: set[int] = set()
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            if not (inspect.isclass(obj) or callable(obj)):
                continue  # constants are documented by a #: comment
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                yield from _members(f"{module.__name__}.{name}", obj)


def _members(prefix: str, cls: type) -> Iterator[tuple[str, Any]]:
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property | staticmethod | classmethod) or inspect.isfunction(member):
            yield f"{prefix}.{name}", member


@pytest.mark.parametrize(("name", "obj"), list(public_objects()), ids=str)
def test_public_name_has_a_docstring(name: str, obj: Any) -> None:
    doc = inspect.getdoc(obj.__func__ if isinstance(obj, staticmethod | classmethod) else obj)
    assert doc and doc.strip(), f"{name} has no docstring"


@pytest.mark.parametrize("cls", [mstls.ClientConfig, mstls.ServerConfig])
def test_every_config_field_is_described(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    missing = [f.name for f in attrs.fields(cls) if f"``{f.name}``" not in doc]
    assert not missing, f"{cls.__name__} docstring does not describe {missing}"


def test_sphinx_reference_builds_without_warnings(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-b",
            "html",
            "-q",
            "-W",
            "--keep-going",
            "-E",
            str(ROOT / "docs"),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
