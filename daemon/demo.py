"""The README's first command (``./dev demo``): mstlsd on the embedded default, two round trips.

What it runs, as a user would type it::

    mstlsd &                                   # 127.0.0.1 UDP+TCP 4433, dev certificates
    echo "hello over QUIC" | mstls connect 127.0.0.1:4433 --service echo --transport udp
    echo "hello over QMux/TCP" | mstls connect 127.0.0.1:4433 --service echo --transport tcp
    kill -TERM %1                              # drain and exit 0

The daemon's log is shown prefixed with ``mstlsd |``.  Exit status 0 only if
the daemon started, both lines came back unchanged and the daemon exited 0.
``--port`` and ``--state-dir`` exist for the tests.
"""

from __future__ import annotations

import argparse
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .config import DEFAULT_PORT
from .state import STATE_DIR_ENV

__all__ = ["main"]

#: Seconds to wait for the daemon to be ready, for a round trip, for the exit.
START_TIMEOUT = 30.0
STEP_TIMEOUT = 30.0
READY_MARK = "mstlsd ready"
MESSAGES = {"udp": "hello over QUIC", "tcp": "hello over QMux/TCP"}


def _command(name: str, module: str) -> list[str]:
    """The installed console script if it sits next to this Python, else ``python -m``."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def _show(argv: Sequence[str], stdin: str | None = None) -> None:
    shown = " ".join(shlex.quote(Path(a).name if i == 0 else a) for i, a in enumerate(argv))
    prefix = f"echo {shlex.quote(stdin)} | " if stdin is not None else ""
    print(f"$ {prefix}{shown}", flush=True)


def _pump(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        print(f"mstlsd | {line.rstrip()}", flush=True)  # shown before anyone acts on it
        lines.put(line.rstrip("\n"))


def _wait_ready(daemon: subprocess.Popen[str], lines: queue.Queue[str]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if READY_MARK in lines.get(timeout=0.2):
                return True
        except queue.Empty:
            if daemon.poll() is not None:
                return False
    return False


def _round_trip(port: int, transport: str, env: dict[str, str]) -> bool:
    message = MESSAGES[transport]
    argv = [
        *_command("mstls", "mstlsd.cli"),
        "connect",
        f"127.0.0.1:{port}",
        "--service",
        "echo",
        "--transport",
        transport,
    ]
    _show(argv, message)
    result = subprocess.run(
        argv,
        input=message + "\n",
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        env=env,
        check=False,
    )
    print(result.stderr + result.stdout, end="", flush=True)  # in the order they happened
    return result.returncode == 0 and result.stdout == message + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mstlsd.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--state-dir", type=Path)
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.state_dir is not None:
        env[STATE_DIR_ENV] = str(args.state_dir)
    command = _command("mstlsd", "mstlsd")
    if args.port != DEFAULT_PORT:
        command += ["--listen-port", str(args.port)]
    _show(command)
    daemon = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(daemon.stderr, lines), daemon=True)
    reader.start()
    ok = False
    try:
        if not _wait_ready(daemon, lines):
            print("demo FAILED: mstlsd did not start (see its log above)", flush=True)
            return 1
        ok = all(_round_trip(args.port, t, env) for t in ("udp", "tcp"))
    finally:
        if daemon.poll() is None:
            print("$ kill -TERM %1", flush=True)
            daemon.send_signal(signal.SIGTERM)
        try:
            status = daemon.wait(STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            daemon.kill()
            status = -1
        reader.join(STEP_TIMEOUT)
    ok = ok and status == 0
    print("demo OK: echoed over UDP (QUIC) and TCP (QMux)" if ok else "demo FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
