"""The optional compiled build (issue 15): mypyc for the hot modules, pure Python otherwise.

``pip wheel .`` (and every editable install) builds the pure-Python package.  With
``MSTLS_COMPILE=1`` the modules listed in ``pyproject.toml`` under
``[tool.mstls.compiled] modules`` are compiled by mypyc into extension modules
placed beside their ``.py`` sources, which stay in the wheel: the import system
prefers an extension module to a source file of the same name, and
``mstls.compiled`` says which one a process got.

Why an opt-in variable rather than "compile whenever a C compiler is found": the
same ``pip install`` must not silently produce a different program (and take
minutes instead of seconds) depending on what the machine happens to have, and a
failed compilation with ``MSTLS_COMPILE=1`` is an error, never a quiet fallback.
``_build/backend.py`` adds mypy (mypyc ships with it) to the build requirements
only when the variable is set, so the pure build needs nothing beyond setuptools.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
#: The environment variable that asks for the compiled build.
COMPILE_VARIABLE = "MSTLS_COMPILE"
#: The shared library of the compiled modules: ``mstls__mypyc.<abi>.so``, a top-level
#: module beside the package (mypyc derives each module's ``__file__`` from a shared
#: library above the package tree; inside ``mstls/`` those paths would be wrong).
GROUP_NAME = "mstls"
#: The compiled build's own build folder: what it leaves in ``build/lib`` (extension
#: modules) must never end up in a later pure wheel built from the same tree.
COMPILED_BUILD_BASE = "build/mypyc"


def compile_requested() -> bool:
    """True when ``MSTLS_COMPILE`` is ``1`` (any other value, or none, is the pure build)."""
    value = os.environ.get(COMPILE_VARIABLE, "").strip()
    if value not in ("", "0", "1"):
        raise SystemExit(f"{COMPILE_VARIABLE}={value!r}: expected 1 (compiled) or 0 (pure)")
    return value == "1"


def compiled_sources() -> list[str]:
    """The module files of ``[tool.mstls.compiled] modules``, relative to this folder."""
    with open(ROOT / "pyproject.toml", "rb") as file:
        modules: list[str] = tomllib.load(file)["tool"]["mstls"]["compiled"]["modules"]
    sources = [str(Path(*module.split(".")).with_suffix(".py")) for module in modules]
    missing = [source for source in sources if not (ROOT / source).is_file()]
    if missing:
        raise SystemExit(f"[tool.mstls.compiled] lists modules with no source file: {missing}")
    return sources


#: The setup.py commands that build extension modules (setuptools' PEP 517 hooks run
#: ``dist_info``/``egg_info`` first, for the metadata: no compilation there).
BUILD_COMMANDS = frozenset({"bdist_wheel", "build", "build_ext", "install"})


def extensions() -> list[object]:
    if not compile_requested() or not BUILD_COMMANDS & set(sys.argv[1:]):
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (only the compiled build needs mypy)

    os.chdir(ROOT)  # mypyc takes the paths (and the mypy configuration) from here
    for stale in (ROOT / COMPILED_BUILD_BASE).glob("lib.*"):  # modules no longer listed
        shutil.rmtree(stale)
    print(f"mstls: compiling {len(compiled_sources())} modules with mypyc", file=sys.stderr)
    return list(
        mypycify(
            compiled_sources(),
            group_name=GROUP_NAME,
            opt_level="3",
            target_dir=f"{COMPILED_BUILD_BASE}/c",
        )
    )


_extensions = extensions()
setup(
    ext_modules=_extensions,
    options={"build": {"build_base": COMPILED_BUILD_BASE}} if _extensions else {},
)
