"""The build backend: setuptools', plus mypy when ``MSTLS_COMPILE=1`` (see ``setup.py``).

PEP 517 lets a backend add build requirements at build time
(``get_requires_for_build_wheel``): the pure build, the default, installs only
setuptools into its isolated build environment; the compiled build adds mypy,
whose mypyc compiles the hot modules.  Editable installs are always pure: an
extension module built in place would shadow the sources one edits.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (the PEP 517 hooks not redefined here)

#: The compiled build's requirement (mypyc is part of mypy).
MYPYC_REQUIREMENT = "mypy>=1.10"


def _compiled() -> bool:
    return os.environ.get("MSTLS_COMPILE", "").strip() == "1"


def _runtime_dependencies() -> list[str]:
    with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as file:
        dependencies: list[str] = tomllib.load(file)["project"]["dependencies"]
    return dependencies


def get_requires_for_build_wheel(config_settings: dict[str, object] | None = None) -> list[str]:
    """None for the pure build; mypy and the runtime dependencies for the compiled one.

    mypyc type-checks the whole package before compiling: without attrs, cryptography
    and trio in the build environment their types would be unknown and the build fails.
    (setuptools' own hook would run ``setup.py`` to look for ``setup_requires``, which
    this project does not use; setuptools itself is already there.)
    """
    return [MYPYC_REQUIREMENT, *_runtime_dependencies()] if _compiled() else []


def get_requires_for_build_editable(
    config_settings: dict[str, object] | None = None,
) -> list[str]:
    if _compiled():
        raise RuntimeError(
            "MSTLS_COMPILE=1 builds wheels only: an editable install stays pure Python "
            "(build the compiled wheel with `./dev compiled`)"
        )
    return _setuptools.get_requires_for_build_editable(config_settings)
