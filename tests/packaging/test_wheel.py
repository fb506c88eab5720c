"""The built wheel as a user gets it (issue 13 "Packaging").

One wheel is built (``pip wheel --no-deps``) from a clean copy of the working tree
and installed, with PyPI's ``python-daemon`` beside it (and ``check-wheel-contents``),
into one virtual environment per module; every test reads that environment.  Building and
installing needs PyPI (setuptools for the build, the runtime dependencies), so the
module is marked ``internet``: ``pytest -m "not internet"`` skips it offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

import mstls

pytestmark = pytest.mark.internet

ROOT = Path(__file__).resolve().parents[2]
#: Bounds for the slow steps (a wheel build, a pip install from PyPI, a mypy run).
BUILD_TIMEOUT = 300.0
RUN_TIMEOUT = 120.0
#: The source folder of each import package the wheel must contain, and nothing else.
PACKAGE_SOURCES = {"mstls": "mstls", "mstlsd": "daemon"}
_COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    bin: Path


def _run(argv: list[str | os.PathLike[str]], timeout: float, **kwargs: object) -> str:
    result = subprocess.run(  # type: ignore[call-overload]
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    output = f"{result.stdout}{result.stderr}"
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{output}"
    return str(result.stdout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, built once, and a venv holding it beside python-daemon."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE)  # no stale build/ leaks into the wheel
    dist = base / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source],
        BUILD_TIMEOUT,
    )
    (wheel,) = dist.glob("mstls-*.whl")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run(
        [python, "-m", "pip", "install", "-q", wheel, "python-daemon", "check-wheel-contents"],
        BUILD_TIMEOUT,
    )
    return Installed(wheel, python, env_dir / "bin")


def _wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_has_two_top_level_packages_and_their_markers(installed: Installed) -> None:
    names = _wheel_names(installed.wheel)
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"mstls", "mstlsd"}
    assert {"mstls/py.typed", "mstlsd/py.typed", "mstlsd/cli/__init__.py"} <= set(names)
    assert not any(name.startswith("mstls/cli") for name in names)  # the CLI left the library


def test_check_wheel_contents_is_clean(installed: Installed) -> None:
    """Duplicates, stray files, empty or missing packages (W001-W202); two top levels, named."""
    out = _run(
        [installed.bin / "check-wheel-contents", "--toplevel", "mstls,mstlsd", installed.wheel],
        RUN_TIMEOUT,
    )
    assert out.strip().endswith(": OK"), out


def test_every_package_folder_is_in_the_wheel(installed: Installed) -> None:
    """pyproject.toml lists the packages by hand (daemon/ is renamed): none may be missing."""
    names = set(_wheel_names(installed.wheel))
    for package, folder in PACKAGE_SOURCES.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.relative_to(ROOT / folder).as_posix()
            assert f"{package}/{relative}" in names, f"{folder}/{relative} is not packaged"
        for module in sorted((ROOT / folder).rglob("*.py")):
            relative = module.relative_to(ROOT / folder).as_posix()
            assert f"{package}/{relative}" in names, f"{folder}/{relative} is not packaged"


def test_the_metadata_has_an_spdx_license_and_classifiers(installed: Installed) -> None:
    names = _wheel_names(installed.wheel)
    (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    with zipfile.ZipFile(installed.wheel) as archive:
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        license_names = [n for n in archive.namelist() if n.endswith("licenses/LICENSE")]
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert license_names, "the LICENSE file is not in the wheel"
    assert metadata["Version"] == mstls.__version__
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression only


def test_python_daemon_installs_beside_it_without_sharing_a_file(installed: Installed) -> None:
    """pip uninstalls what a distribution's RECORD lists: the two must not overlap."""
    program = textwrap.dedent(
        """
        import json, importlib.metadata as md
        import daemon
        assert daemon.DaemonContext  # python-daemon's own package, intact
        import mstls, mstls.trio, mstlsd, mstlsd.cli, mstlsd.server
        def files(dist):
            return {str(f) for f in md.files(dist) or ()}
        def tops(dist):
            return sorted({f.split("/")[0] for f in files(dist)
                           if ".dist-info" not in f and not f.startswith("..")})
        print(json.dumps({
            "daemon": daemon.__file__, "mstlsd": mstlsd.__file__,
            "ours": tops("mstls"), "theirs": tops("python-daemon"),
            "shared": sorted(files("mstls") & files("python-daemon")),
        }))
        """
    )
    found = json.loads(_run([installed.python, "-c", program], RUN_TIMEOUT, cwd=installed.bin))
    assert found["ours"] == ["mstls", "mstlsd"]
    assert "daemon" in found["theirs"] and "mstls" not in found["theirs"]
    assert found["shared"] == []
    assert Path(found["daemon"]).parent.name == "daemon"
    assert Path(found["mstlsd"]).parent.name == "mstlsd"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["mstls", "--version"], "mstls"),
        (["mstlsd", "--version"], "mstlsd"),
        (["python", "-m", "mstls", "--version"], "mstls"),
        (["python", "-m", "mstlsd", "--version"], "mstlsd"),
    ],
)
def test_version(installed: Installed, command: list[str], expected: str) -> None:
    argv: list[str | os.PathLike[str]] = [installed.bin / command[0], *command[1:]]
    out = _run(argv, RUN_TIMEOUT, cwd=installed.bin)
    build = " (pure Python)" if expected == "mstls" else ""  # the default wheel: issue 15
    assert out == f"{expected} {mstls.__version__}{build}\n"


def test_the_default_wheel_is_pure_python(installed: Installed) -> None:
    """No ``MSTLS_COMPILE=1``, no extension module (setup.py): one wheel for every platform."""
    assert installed.wheel.name.endswith("-py3-none-any.whl"), installed.wheel.name
    assert not [name for name in _wheel_names(installed.wheel) if name.endswith(".so")]
    out = _run([installed.python, "-c", "import mstls; print(mstls.compiled)"], RUN_TIMEOUT)
    assert out == "False\n"


def test_python_m_mstls_runs_the_command_line(installed: Installed) -> None:
    out = _run([installed.python, "-m", "mstls", "--help"], RUN_TIMEOUT, cwd=installed.bin)
    assert "usage: mstls" in out and "connect" in out and "tunnel" in out


USER_PROGRAM = '''\
"""A user program: the blocking and the trio API, a daemon handler, typed strictly."""

import trio

import mstls
import mstls.trio
from mstlsd.identity import Peer


def fetch(host: str, port: int) -> bytes:
    config = mstls.ClientConfig(alpn="mstls", cafile=None, verify=True)
    with mstls.connect(host, port, config, transport="tcp") as conn:
        stream: mstls.Stream = conn.open_stream()
        stream.write(b"echo\\n")
        try:
            return stream.read()
        except mstls.Error:
            mstls.errors.print_errors()
            raise


async def afetch(host: str, port: int) -> bytes:
    conn = await mstls.trio.connect(host, port, mstls.ClientConfig(alpn="mstls"))
    async with conn:
        stream = await conn.open_stream()
        await stream.send_all(b"echo\\n")
        return await stream.receive_some()


async def handler(stream: trio.abc.HalfCloseableStream, peer: Peer) -> None:
    await stream.send_all(str(peer.address).encode())

'''


def test_a_user_program_type_checks_strictly_against_the_wheel(
    installed: Installed, tmp_path: Path
) -> None:
    """Without ``py.typed`` mypy reports ``import-untyped`` for every mstls import."""
    program = tmp_path / "user_program.py"
    program.write_text(USER_PROGRAM)
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict", "--no-incremental",
            "--python-executable", str(installed.python), str(program),
        ],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
