"""`mstls tunnel` keeps its connection alive and reconnects transparently (issue 13).

The daemon's idle timeout is :data:`IDLE` seconds here instead of 30, so "a request
after 40 s of silence" is a request after ``IDLE_FOR`` seconds: both are well past
the idle timeout.  A restart is SIGTERM (drain, CONNECTION_CLOSE 0x200) and a new
daemon on the same port and state directory.
"""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.support import ROOT, DaemonProcess, env_for, free_port

pytestmark = pytest.mark.network

#: The daemon's idle timeout in these tests (seconds).
IDLE = 1.0
#: The tunnel's keep-alive against it, as the default 10 s is against 30 s.
KEEPALIVE = IDLE / 3
#: How long the tunnel stays silent: 40 s against a 30 s idle timeout, scaled down.
IDLE_FOR = 4 * IDLE
WAIT = 20.0
CONFIG = f"""
[[listeners]]
transport = "udp"
port = 4433

[[listeners]]
transport = "tcp"
port = 4433

[limits]
idle_timeout = {IDLE}
drain_timeout = 1

[services.echo]
type = "echo"
"""


class TunnelProcess:
    """``mstls tunnel`` to the echo service; its stderr lines collected."""

    def __init__(self, port: int, transport: str, state_dir: Path, *options: str) -> None:
        self.local = free_port()
        args = ["--listen", f"127.0.0.1:{self.local}", "--to", f"127.0.0.1:{port}"]
        args += ["--service", "echo", "--transport", transport, *options]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mstlsd.cli", "tunnel", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(state_dir),
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.wait_for("tunnel listening"):
            raise AssertionError("the tunnel did not start:\n" + self.log())

    def wait_for(self, text: str) -> bool:
        """Wait (at most :data:`WAIT` s) for a new stderr line containing ``text``."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                if text in self._queue.get(timeout=0.1):
                    return True
            except queue.Empty:
                if self.proc.poll() is not None:
                    return False
        return False

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._queue.put(line)

    def log(self) -> str:
        return "".join(self.lines)

    def echo(self, data: bytes) -> bytes:
        """``data`` through the tunnel to echo and back (b"" if the tunnel reset us)."""
        with socket.create_connection(("127.0.0.1", self.local), timeout=WAIT) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                return b""
        return answer

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(WAIT)  # every line the tunnel wrote is in :meth:`log`


@pytest.fixture
def daemon_config(tmp_path: Path) -> tuple[Path, int]:
    config = tmp_path / "idle.toml"
    config.write_text(CONFIG)
    return config, free_port()


def _daemon(config: Path, port: int, state_dir: Path) -> DaemonProcess:
    return DaemonProcess(["--config", str(config), "--listen-port", str(port)], state_dir)


@pytest.fixture
def running(daemon_config: tuple[Path, int], tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    """The daemon (a list: a restart appends its successor); killed at the end."""
    config, port = daemon_config
    daemons = [_daemon(config, port, tmp_path).wait_ready()]
    try:
        yield daemons
    finally:
        for daemon in daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_request_after_a_long_silence_uses_the_same_connection(
    running: list[DaemonProcess], daemon_config: tuple[Path, int], tmp_path: Path, transport: str
) -> None:
    """The connection used to idle out: the next client's TCP connection was reset."""
    _, port = daemon_config
    tunnel = TunnelProcess(port, transport, tmp_path, "--keepalive", str(KEEPALIVE))
    try:
        assert tunnel.echo(b"before\n") == b"before\n", tunnel.log()
        time.sleep(IDLE_FOR)  # the silence itself is what is tested
        assert tunnel.echo(b"after\n") == b"after\n", tunnel.log()
    finally:
        tunnel.close()
    log = tunnel.log()
    assert log.count("tunnel connected") == 1 and "reconnected" not in log, log  # kept alive


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_an_idled_out_connection_is_replaced_transparently(
    running: list[DaemonProcess], daemon_config: tuple[Path, int], tmp_path: Path, transport: str
) -> None:
    """A keep-alive longer than the server's idle timeout: the next request reconnects."""
    _, port = daemon_config
    tunnel = TunnelProcess(port, transport, tmp_path, "--keepalive", str(IDLE_FOR * 10))
    try:
        assert tunnel.echo(b"before\n") == b"before\n", tunnel.log()
        # Not a fixed sleep: the request must come after the tunnel saw the idle-out
        # (on a loaded machine both ends' timers can fire seconds late, and a request
        # that beats them rides the old connection and never reconnects).
        assert tunnel.wait_for("idle timeout"), tunnel.log()
        assert tunnel.echo(b"after\n") == b"after\n", tunnel.log()
    finally:
        tunnel.close()
    assert "idle timeout" in tunnel.log() and "tunnel reconnected" in tunnel.log(), tunnel.log()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_request_after_a_daemon_restart_reconnects(
    running: list[DaemonProcess], daemon_config: tuple[Path, int], tmp_path: Path, transport: str
) -> None:
    config, port = daemon_config
    tunnel = TunnelProcess(port, transport, tmp_path)
    try:
        assert tunnel.echo(b"first run\n") == b"first run\n", tunnel.log()
        assert running[0].stop() == 0
        running.append(_daemon(config, port, tmp_path).wait_ready())
        assert tunnel.echo(b"second run\n") == b"second run\n", tunnel.log()
    finally:
        tunnel.close()
    assert "tunnel reconnected" in tunnel.log(), tunnel.log()
