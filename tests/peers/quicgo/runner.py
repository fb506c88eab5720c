"""Build ``peer.go`` against Debian's quic-go 0.29 and run it as a server or a client.

The build needs ``go`` (Debian ``golang-go``) and the quic-go source tree
(``golang-github-lucas-clemente-quic-go-dev``, under :data:`DEBIAN_GOPATH`); it runs
offline in GOPATH mode (``GO111MODULE=off``).  :func:`build_peer` raises
:class:`PeerUnavailable` with the reason when either is missing or the build fails;
the test fixture turns that into a failure under ``CI=true`` and a skip elsewhere.

Every process is bounded: the server exits when its stdin closes (and is killed after
:data:`STOP_TIMEOUT` otherwise), the client runs under a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = [
    "DEBIAN_GOPATH",
    "PEER_SOURCE",
    "ClientRun",
    "PeerUnavailable",
    "QuicGoServer",
    "build_peer",
    "pattern",
    "run_client",
]

PEER_SOURCE = Path(__file__).with_name("peer.go")
DEBIAN_GOPATH = Path("/usr/share/gocode")
QUIC_GO_PACKAGE = "github.com/lucas-clemente/quic-go"
BUILD_TIMEOUT = 300.0  # seconds: a cold build of quic-go on a loaded 2-core machine
START_TIMEOUT = 10.0  # seconds for the server to print its address
STOP_TIMEOUT = 5.0  # seconds for the server to exit after its stdin closed
PATTERN_MODULUS = 251  # peer.go's patternModulus and patternStride
PATTERN_STRIDE = 13

Event = dict[str, Any]


class PeerUnavailable(Exception):
    """The quic-go peer cannot be built here (the message says why)."""


def pattern(seed: int, size: int) -> bytes:
    """peer.go's payload: byte ``i`` is ``(i + 13*seed) % 251``."""
    start = PATTERN_STRIDE * seed % PATTERN_MODULUS
    base = bytes(range(PATTERN_MODULUS))
    repeats = (start + size) // PATTERN_MODULUS + 1
    return (base * repeats)[start : start + size]


def _gopath() -> str:
    own = os.environ.get("GOPATH")
    return f"{own}{os.pathsep}{DEBIAN_GOPATH}" if own else str(DEBIAN_GOPATH)


def build_peer(directory: Path) -> Path:
    """Build the peer into ``directory`` and return the binary's path."""
    go = shutil.which("go")
    if go is None:
        raise PeerUnavailable("no `go` on PATH: install Debian's golang-go (see .ci/run)")
    source = DEBIAN_GOPATH / "src" / QUIC_GO_PACKAGE
    if not source.is_dir():
        raise PeerUnavailable(
            f"no quic-go source in {source}: install golang-github-lucas-clemente-quic-go-dev"
        )
    env = dict(os.environ, GO111MODULE="off", GOPATH=_gopath(), GOFLAGS="")
    if "GOCACHE" not in env and "HOME" not in env and "XDG_CACHE_HOME" not in env:
        env["GOCACHE"] = str(directory / "gocache")
    binary = directory / "quicgo-peer"
    try:
        done = subprocess.run(
            [go, "build", "-o", str(binary), str(PEER_SOURCE)],
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"go build took more than {BUILD_TIMEOUT} s") from None
    if done.returncode != 0:
        raise PeerUnavailable(f"go build failed ({done.returncode}):\n{done.stderr}")
    return binary


def _flags(**options: Any) -> list[str]:
    """``name=value`` as Go flags (``-name=value``; True: ``-name``; None/False: left out)."""
    out = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        out.append(f"-{name}" if value is True else f"-{name}={value}")
    return out


def _parse(line: str) -> Event:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return {"event": "unparsed", "line": line}
    return event if isinstance(event, dict) else {"event": "unparsed", "line": line}


class QuicGoServer:
    """``peer -mode server`` on 127.0.0.1: its events are collected by a reader thread."""

    def __init__(self, binary: Path, cert: Path, key: Path, **options: Any) -> None:
        args = [str(binary), "-mode=server", "-addr=127.0.0.1:0", f"-cert={cert}", f"-key={key}"]
        self._args = args + _flags(**options)
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self.events: list[Event] = []
        self.port = 0

    def __enter__(self) -> QuicGoServer:
        self._process = subprocess.Popen(
            self._args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stdout,), name="quicgo-server", daemon=True
        )
        self._reader.start()
        listening = self.wait_for(lambda e: e.get("event") in ("listening", "fatal"), START_TIMEOUT)
        if listening.get("event") != "listening":
            self.__exit__(None, None, None)
            raise RuntimeError(f"quic-go server did not start: {listening}")
        self.port = int(str(listening["addr"]).rsplit(":", 1)[1])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # peer.go exits at stdin's EOF
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            event = _parse(line.strip())
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """The first event that satisfies ``predicate`` (raises TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no such quic-go server event; got {self.events}")
                self._cond.wait(left)

    def streams(self, count: int, timeout: float) -> list[Event]:
        """Wait for ``count`` ``stream`` events and return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if e.get("event") == "stream"]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._cond.wait(left)


class ClientRun:
    """What one ``peer -mode client`` run printed: its results and anything else."""

    def __init__(self, returncode: int, events: list[Event]) -> None:
        self.returncode = returncode
        self.events = events
        self.results = [e for e in events if e.get("event") == "result"]

    def __repr__(self) -> str:
        return f"<ClientRun rc={self.returncode} events={self.events}>"

    def streams(self, index: int = 0) -> list[Event]:
        """The stream reports of the ``index``-th connection."""
        return list(self.results[index].get("streams", []))


def run_client(binary: Path, port: int, ca: Path, *, timeout: float, **options: Any) -> ClientRun:
    """Run ``peer -mode client`` against 127.0.0.1:``port``; the process gets ``timeout``
    seconds (its own connection deadline is set a little shorter)."""
    args = [
        str(binary),
        "-mode=client",
        f"-addr=127.0.0.1:{port}",
        f"-ca={ca}",
        f"-timeout={max(timeout - 2, 1):.0f}s",
        *_flags(**options),
    ]
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, stdin=None
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        events = [_parse(line) for line in output.splitlines() if line.strip()]
        return ClientRun(-1, [*events, {"event": "timeout", "after": timeout}])
    lines = (done.stdout + done.stderr).splitlines()
    return ClientRun(done.returncode, [_parse(line) for line in lines if line.strip()])
