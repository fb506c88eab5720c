"""The `mstls` command line at its edges (issue 13 "CLI and daemon"): Ctrl-C, `| head`, `-o`.

Each command runs as a user runs it: a subprocess whose standard input and output
are a pseudo-terminal (Ctrl-C is SIGINT sent once the command is waiting), against
one mstlsd started for the module.
"""

from __future__ import annotations

import io
import os
import pty
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import mstls
from mstlsd.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_CONNECTION,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    run,
)
from mstlsd.cli.progress import BAR_FORMAT, ProgressBar, iec_bytes
from tests.daemon.support import DaemonProcess, cli, daemon_process, env_for, free_port

pytestmark = pytest.mark.network

#: Bound for one command to get ready, and to exit after the signal.
WAIT = 20.0
#: What a quiet exit never prints.
NOISE = ("Traceback", "Fatal Python error", "KeyboardInterrupt", "Exception ignored")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, int]]:
    state = tmp_path_factory.mktemp("state")
    port = free_port()
    with daemon_process(["--listen-port", str(port)], state) as proc:
        yield proc, port


class Command:
    """``python -m mstlsd.cli ARGS`` on a pseudo-terminal; its stderr lines collected."""

    def __init__(self, args: list[str], state_dir: Path, cwd: Path) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mstlsd.cli", *args],
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=env_for(state_dir),
            cwd=cwd,
        )
        os.close(slave)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.put(raw.decode(errors="replace"))

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, "exited early:\n" + "".join(self.seen)
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} in:\n" + "".join(self.seen))

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: SIGINT; the exit status and all of standard error."""
        self.proc.send_signal(signal.SIGINT)
        try:
            status = self.proc.wait(WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self.master)
        self._reader.join(WAIT)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return status, "".join(self.seen)


def _args(command: str, port: int) -> tuple[list[str], str]:
    """The command line of ``command`` and what it prints once it is waiting."""
    target = f"127.0.0.1:{port}"
    if command == "connect":
        return ["connect", target, "--service", "echo"], "connected to"
    if command == "recv":
        return ["recv", "--listen", f"127.0.0.1:{free_port()}"], "receiving on tcp"
    if command == "tunnel":
        listen = f"127.0.0.1:{free_port()}"
        return ["tunnel", "--listen", listen, "--to", target, "--service", "echo"], "listening"
    # bench: 4 GiB takes long enough to be interrupted mid-transfer.
    return ["bench", target, "--handshakes", "1", "--size", "4096", "--transport", "tcp"], ""


@pytest.mark.parametrize("command", ["connect", "recv", "tunnel", "bench"])
def test_ctrl_c_exits_130_quietly(
    daemon: tuple[DaemonProcess, int], tmp_path: Path, command: str
) -> None:
    """connect aborted the interpreter (exit 134); recv, tunnel and bench printed tracebacks."""
    proc, port = daemon
    args, ready = _args(command, port)
    proc.skip_pending()
    running = Command(args, proc.state_dir, tmp_path)
    if ready:
        running.wait_for(ready)
    else:  # bench prints nothing until it ends: wait until its connection is in
        proc.wait_for("connection accepted")
        time.sleep(0.5)  # into the transfer (any moment would do: the outcome is the same)
    status, stderr = running.interrupt()
    assert status == EXIT_INTERRUPTED == 130, stderr
    assert not any(noise in stderr for noise in NOISE), stderr


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_closed_stdout_exits_quietly(
    daemon: tuple[DaemonProcess, int], tmp_path: Path, transport: str
) -> None:
    """``mstls connect ... | head -c 100``: EPIPE ends it like ``cat``, no BrokenPipeError."""
    proc, port = daemon
    source = tmp_path / "lines.txt"
    source.write_bytes((b"y" * 99 + b"\n") * 40_000)  # 4 MB: far more than a pipe holds
    read_end, write_end = os.pipe()
    args = ["connect", f"127.0.0.1:{port}", "-s", "echo", "-q", "--transport", transport]
    with source.open("rb") as stdin:
        running = subprocess.Popen(
            [sys.executable, "-m", "mstlsd.cli", *args],
            stdin=stdin,
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env_for(proc.state_dir),
        )
    os.close(write_end)
    try:
        assert os.read(read_end, 100)  # what `head -c 100` reads before it exits
    finally:
        os.close(read_end)
    try:
        _, stderr = running.communicate(timeout=WAIT)
    finally:
        running.kill()
    assert running.returncode == EXIT_BROKEN_PIPE == 141, stderr
    assert not any(noise.encode() in stderr for noise in NOISE), stderr


def test_recv_refuses_an_existing_output_at_once(tmp_path: Path) -> None:
    """It used to listen, and refuse only when a sender came, with the hint "use -o"."""
    existing = tmp_path / "copy.iso"
    existing.write_bytes(b"keep me")
    listen = f"127.0.0.1:{free_port()}"
    result = cli("recv", "--listen", listen, "-o", str(existing), state_dir=tmp_path, timeout=WAIT)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert result.stderr.decode() == f"mstls: {existing} exists: use --force to overwrite it\n"
    assert existing.read_bytes() == b"keep me"
    directory = cli("recv", "--listen", listen, "-o", str(tmp_path), state_dir=tmp_path)
    assert directory.returncode == EXIT_USAGE
    assert b"is a directory: -o takes a file name" in directory.stderr


def test_the_progress_bar_counts_in_mib() -> None:
    """It divided by 2^20 and said "MB" (tqdm's SI prefixes with ``unit_divisor=1024``)."""
    out = io.StringIO()
    bar = ProgressBar(total=3 << 20, unit="B", file=out, bar_format=BAR_FORMAT, mininterval=0)
    time.sleep(0.01)  # a rate needs some elapsed time
    bar.update(1 << 20)
    bar.close()
    last = out.getvalue().rstrip().split("\r")[-1]
    assert "1.00 MiB/3.00 MiB" in last and "MiB/s" in last, last
    assert "MB" not in out.getvalue()
    assert [iec_bytes(n) for n in (10, 1536, 5 << 30)] == ["10 B", "1.50 KiB", "5.00 GiB"]


def test_auto_fails_at_once_naming_both_transports(tmp_path: Path) -> None:
    """Nothing on the port: TCP is refused, UDP draws ICMP port unreachable.

    It used to wait for the QUIC handshake timeout and name only QUIC.  The bound
    here (``WAIT``, far below ``--timeout 60``) is what fails the old code.
    """
    port = free_port()
    target = f"127.0.0.1:{port}"
    options = ("--insecure", "--timeout", "60")
    result = cli("connect", target, *options, state_dir=tmp_path, timeout=WAIT)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    first = stderr.splitlines()[0]
    assert first.startswith(f"mstls: cannot connect to {target} over udp or tcp: "), stderr
    assert f"udp: UDP port {port} unreachable (ICMP); tcp: " in first, stderr
    assert f"TCP connect to {target} failed" in first, stderr
    assert ":error:" in stderr  # the attempts' error queues, printed by the command's task
    udp = cli("connect", target, *options, "--transport", "udp", state_dir=tmp_path, timeout=WAIT)
    assert udp.returncode == 1 and b"unreachable (ICMP)" in udp.stderr, udp.stderr


#: A bound for a connect that must fail on its own (refused TCP, silent UDP): far
#: below ``--timeout 60``, so waiting for QUIC's handshake timeout fails the test.
BLACKHOLE_WAIT = 8.0


def test_auto_with_a_refused_tcp_port_and_a_silent_udp_port_names_both(tmp_path: Path) -> None:
    """A UDP socket that reads and never answers (no ICMP either) and no TCP listener:
    once TCP is refused QUIC gets AUTO_QUIC_GRACE more, then both are reported."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    target = f"127.0.0.1:{port}"
    try:
        result = cli(
            "connect",
            target,
            "--insecure",
            "--timeout",
            "60",
            state_dir=tmp_path,
            timeout=BLACKHOLE_WAIT,
        )
    finally:
        silent.close()
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    first = stderr.splitlines()[0]
    assert first.startswith(f"mstls: cannot connect to {target} over udp or tcp: "), stderr
    assert "udp: " in first and "no QUIC answer" in first, stderr
    assert f"TCP connect to {target} failed" in first, stderr


def test_a_connection_failure_inside_a_command_task_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """e.g. bench's transfer nursery: an ExceptionGroup of mstls errors, not a traceback."""

    async def command() -> int:
        async def broken() -> None:
            raise mstls.ConnectionTerminated(0x200, "shutting down", by_peer=True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(broken)
        return 0

    assert run(command) == EXIT_CONNECTION
    err = capsys.readouterr().err
    assert err.startswith("mstls: ") and err.count("\n") == 1 and "shutting down" in err, err
