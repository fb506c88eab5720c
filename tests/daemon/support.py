"""Helpers for the daemon tests: free ports, a daemon subprocess, an in-process daemon, clients.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import mstls
import mstls.trio
from mstlsd.config import DaemonConfig, parse_config
from mstlsd.preamble import encode_preamble
from mstlsd.server import Daemon

ROOT = Path(__file__).resolve().parents[2]
READY_MARK = "mstlsd ready"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
CLIENT_TIMEOUT = 10.0


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (bound, then released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def env_for(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MSTLSD_STATE_DIR"] = str(state_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NOTIFY_SOCKET", None)
    return env


def cli(
    *args: str, state_dir: Path, input: bytes = b"", timeout: float = 30.0
) -> subprocess.CompletedProcess[bytes]:
    """Run ``mstls ARGS`` (as ``python -m mstlsd.cli``)."""
    return subprocess.run(
        [sys.executable, "-m", "mstlsd.cli", *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env_for(state_dir),
        cwd=ROOT,
        check=False,
    )


class DaemonProcess:
    """``mstlsd`` in a subprocess; its stderr lines are collected in :attr:`lines`."""

    def __init__(
        self, args: Sequence[str], state_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = [sys.executable, "-m", "mstlsd", *args]
        self.state_dir = state_dir
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            self.argv,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**env_for(state_dir), **(env or {})},
            cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)

    def wait_for(self, text: str, timeout: float = START_TIMEOUT) -> str:
        """The next log line containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"no log line with {text!r}; log:\n" + "\n".join(self.lines))

    def skip_pending(self) -> None:
        """Forget the lines :meth:`wait_for` has not read yet (they stay in :attr:`lines`)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()

    def wait_ready(self) -> DaemonProcess:
        self.wait_for(READY_MARK)
        return self

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("mstlsd did not exit; log:\n" + "\n".join(self.lines)) from None
        self._reader.join(2.0)
        return status

    def log(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def daemon_process(args: Sequence[str], state_dir: Path) -> Iterator[DaemonProcess]:
    """A running, ready daemon subprocess, killed at the end if still alive."""
    proc = DaemonProcess(args, state_dir)
    try:
        yield proc.wait_ready()
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


def config_from(text: str, base: Path, source: str = "test.toml") -> DaemonConfig:
    return parse_config(tomllib.loads(text), source, base)


@contextlib.asynccontextmanager
async def running_daemon(config: DaemonConfig, state_dir: Path) -> AsyncIterator[Daemon]:
    """An in-process daemon in a nursery of the test; drained at the end."""
    daemon = Daemon(config, state_dir=state_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        try:
            yield daemon
        finally:
            daemon.request_shutdown()
            daemon.request_shutdown()  # skip the drain wait


def port_of(daemon: Daemon, transport: str) -> int:
    for spec, listener in daemon.listeners:
        if spec.transport == transport:
            return int(listener.address[1])
    raise KeyError(transport)


def client_config(ca: Path, **kwargs: Any) -> mstls.ClientConfig:
    return mstls.ClientConfig(alpn="mstls", cafile=ca, **kwargs)


async def exchange(
    conn: mstls.trio.Connection, service: str, data: bytes, *, limit: float = CLIENT_TIMEOUT
) -> bytes:
    """Open a stream to ``service``, send ``data`` and FIN, return everything until FIN."""
    with trio.fail_after(limit):
        stream = await conn.open_stream()
        await stream.send_all(encode_preamble(service) + data)
        await stream.send_eof()
        reply = bytearray()
        while chunk := await stream.receive_some():
            reply += chunk
        return bytes(reply)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` in a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise KeyError(f"{name}{labels} not in metrics")


async def refused_with(conn: mstls.trio.Connection, payload: bytes) -> int:
    """Send ``payload`` on a new stream; the reset code the daemon answered with."""
    with trio.fail_after(5):
        stream = await conn.open_stream()
        try:
            await stream.send_all(payload)
            await stream.send_eof()
        except mstls.StreamStopped:
            pass
        with pytest.raises(mstls.StreamReset) as info:
            while await stream.receive_some():
                pass
    return info.value.code
