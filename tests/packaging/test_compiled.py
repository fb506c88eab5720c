"""The optional compiled build (issue 15): which build runs, and how it is asked for.

``./dev compiled`` runs this module (with the tests of the compiled layers) against the
mypyc wheel with ``MSTLS_EXPECT_COMPILED=1``: there every module listed in
pyproject.toml ``[tool.mstls.compiled]`` must be an extension module, so a build
that silently fell back to pure Python fails.  Elsewhere (``./dev test``, the
editable install) the same checks hold for the pure build.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import mstls

ROOT = Path(__file__).resolve().parents[2]
EXPECT_COMPILED = os.environ.get("MSTLS_EXPECT_COMPILED") == "1"


def _listed_modules() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        modules: list[str] = tomllib.load(file)["tool"]["mstls"]["compiled"]["modules"]
    return modules


def _is_extension(module_name: str) -> bool:
    origin = importlib.import_module(module_name).__file__ or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_the_listed_modules_exist_and_are_hot_path_layers() -> None:
    modules = _listed_modules()
    assert len(modules) == len(set(modules))
    for name in modules:
        assert name.split(".")[1] in {"wire", "core", "quic", "qmux", "tls", "io"}, name
        importlib.import_module(name)


def test_the_flag_says_which_build_runs() -> None:
    """``mstls.compiled`` is True exactly when every listed module is compiled."""
    compiled = {name: _is_extension(name) for name in _listed_modules()}
    assert isinstance(mstls.compiled, bool)
    if EXPECT_COMPILED:
        assert mstls.compiled is True
        assert [name for name, yes in compiled.items() if not yes] == []
        # one shared library for all of them, beside the package (setup.py GROUP_NAME)
        assert importlib.util.find_spec("mstls__mypyc") is not None
    else:
        assert mstls.compiled is all(compiled.values())
        assert not any(compiled.values()) or all(compiled.values())  # all or none


def test_the_sources_stay_beside_the_extension_modules() -> None:
    """The ``.py`` files are in the wheel too (tracebacks, inspection, the pure fallback)."""
    for name in _listed_modules():
        origin = Path(importlib.import_module(name).__file__ or "")
        assert (origin.parent / f"{name.rsplit('.', 1)[1]}.py").is_file(), name


def test_mstls_version_names_the_build() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mstls", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    build = "compiled, mypyc" if mstls.compiled else "pure Python"
    assert out == f"mstls {mstls.__version__} ({build})\n"


def _backend(monkeypatch: pytest.MonkeyPatch, value: str | None) -> object:
    if value is None:
        monkeypatch.delenv("MSTLS_COMPILE", raising=False)
    else:
        monkeypatch.setenv("MSTLS_COMPILE", value)
    monkeypatch.syspath_prepend(str(ROOT / "_build"))
    pytest.importorskip("setuptools.build_meta")
    return importlib.import_module("mstls_backend")


@pytest.mark.skipif(not (ROOT / "_build").is_dir(), reason="run from a copy without _build/")
def test_only_mstls_compile_1_asks_for_mypy_and_never_for_an_editable_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = _backend(monkeypatch, None)
    assert backend.get_requires_for_build_wheel() == []  # type: ignore[attr-defined]
    monkeypatch.setenv("MSTLS_COMPILE", "0")
    assert backend.get_requires_for_build_wheel() == []  # type: ignore[attr-defined]
    monkeypatch.setenv("MSTLS_COMPILE", "1")
    requirements = backend.get_requires_for_build_wheel()  # type: ignore[attr-defined]
    assert requirements[0].startswith("mypy")
    assert "attrs>=23" in requirements  # mypyc type-checks against the runtime dependencies
    with pytest.raises(RuntimeError, match="editable"):
        backend.get_requires_for_build_editable()  # type: ignore[attr-defined]
