"""Where an entry was recorded (``ErrorEntry.where``): the package's own files are
named relative to the package's parent (``mstls/errors.py``), any other file by its
base name, wherever the checkout lives, including in a folder named ``mstls``
(what ``git clone`` makes; issue 17 point 1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mstls
from mstls import _errors as errors

#: The repository this test runs from.
REPO = Path(__file__).resolve().parents[2]
#: Bound on the subprocess that runs tests/errors from a copy (it takes ~10 s).
COPY_RUN_TIMEOUT = 300.0
#: What the copy needs to run tests/errors (which import helpers from other test folders).
COPIED = ("mstls", "tests", "pyproject.toml")


def _compiled_at(filename: str) -> Callable[[], str]:
    """A function ``probe`` whose code claims to live in ``filename``."""
    namespace: dict[str, object] = {"caller_location": errors.caller_location}
    source = "\n\ndef probe():\n    return caller_location(0)\n"
    exec(compile(source, filename, "exec"), namespace)
    probe = namespace["probe"]
    assert callable(probe)
    return probe  # type: ignore[no-any-return]


def test_caller_location_outside_the_package_is_the_base_name() -> None:
    probe = _compiled_at("/home/user/src/mstls/tests/errors/test_fake.py")
    assert probe() == "test_fake.py:4 in probe"


def test_caller_location_inside_the_package_is_relative_to_its_parent() -> None:
    package = Path(mstls.__file__).resolve().parent
    probe = _compiled_at(str(package / "quic" / "fake.py"))
    assert probe() == f"{package.name}/quic/fake.py:4 in probe"


def test_caller_location_of_a_windows_path() -> None:
    probe = _compiled_at("C:\\Users\\me\\mstls\\tests\\test_fake.py")
    assert probe() == "test_fake.py:4 in probe"


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COPY_RUN_TIMEOUT,
    )


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {name for name in names if name in ("__pycache__", ".pytest_cache", ".hypothesis")}


def test_tests_errors_pass_from_a_checkout_named_mstls(tmp_path: Path) -> None:
    """Copy the package and tests/errors into ``<tmp>/mstls`` and run them there."""
    checkout = tmp_path / "mstls"
    for name in COPIED:
        source, target = REPO / name, checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=_ignore)
        else:
            shutil.copy2(source, target)
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "tests/errors",
        "-k",
        "not checkout_named_mstls",
        "-c",
        str(checkout / "pyproject.toml"),
    ]
    probe = [sys.executable, "-c", "import mstls; print(mstls.__file__)"]
    where = _run(probe, checkout, env)
    assert Path(where.stdout.strip()).resolve().is_relative_to(checkout.resolve())
    run = _run(command, checkout, env)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
