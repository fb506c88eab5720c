"""The mstls side of peer.go's stream protocol, on mstls's public blocking API.

:class:`MstlsStreamServer` is the server half (for a quic-go client): ``mstls.listen``,
one thread per connection and per stream, each stream answered as peer.go's server
answers it (``echo``, ``sha256``, ``send <n>``; see peer.go's header).
:func:`exchange` and :func:`exchange_many` are the client half (against a quic-go
server): each stream is written by its own thread while the caller reads, so an
echo never stalls on flow control.

Every wait is bounded: loops poll with :data:`POLL` second timeouts and a stop flag.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import mstls

from .runner import pattern

__all__ = ["MstlsStreamServer", "exchange", "exchange_many"]

POLL = 0.2  # seconds: accept loops look at the stop flag this often
JOIN_TIMEOUT = 5.0  # seconds per thread at shutdown
MAX_COMMAND_LINE = 64  # peer.go's maxCommandLine
MAX_SEND = 1 << 30  # peer.go's maxSendSize
CHUNK = 65536

Event = dict[str, Any]


class EventLog:
    """A list of event dicts that threads append to and tests wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[Event] = []

    def add(self, **event: Any) -> None:
        """Append one event."""
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_count(self, kind: str, count: int, timeout: float) -> list[Event]:
        """The events of ``kind`` once there are ``count`` of them (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if e.get("event") == kind]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._cond.wait(left)


def _read_command(stream: mstls.Stream, timeout: float) -> tuple[str, bytes]:
    """(command line, bytes read after it)."""
    buffered = b""
    while b"\n" not in buffered:
        if len(buffered) >= MAX_COMMAND_LINE:
            raise ValueError("command line too long")
        chunk = stream.read(MAX_COMMAND_LINE, timeout=timeout)
        if not chunk:
            raise ValueError("stream ended in its command line")
        buffered += chunk
    line, rest = buffered.split(b"\n", 1)
    return line.decode("ascii", "replace"), rest


class MstlsStreamServer:
    """An mstls QUIC server on 127.0.0.1 that answers peer.go's stream protocol."""

    def __init__(self, config: mstls.ServerConfig, *, stream_timeout: float = 60.0) -> None:
        self.config = config
        self.stream_timeout = stream_timeout
        self.log = EventLog()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: mstls.Listener | None = None
        self.port = 0

    def __enter__(self) -> MstlsStreamServer:
        self._listener = mstls.listen("127.0.0.1", 0, self.config)
        self.port = int(self._listener.address[1])
        self._spawn(self._accept_loop, self._listener)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        for thread in list(self._threads):
            thread.join(JOIN_TIMEOUT)

    @property
    def events(self) -> list[Event]:
        """Everything recorded so far: handshake, stream and closed events."""
        return self.log.events

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: mstls.Listener) -> None:
        while not self._stop.is_set():
            try:
                conn = listener.accept(timeout=POLL)
            except mstls.Timeout:
                continue
            except mstls.Error:
                return
            self.log.add(event="handshake", alpn=conn.alpn, peer=conn.peer_address)
            self._spawn(self._connection_loop, conn)

    def _connection_loop(self, conn: mstls.Connection) -> None:
        while not self._stop.is_set():
            try:
                stream = conn.accept_stream(timeout=POLL)
            except mstls.Timeout:
                continue
            except mstls.Error as exc:
                self.log.add(event="closed", error=repr(exc), peer=conn.peer_address)
                return
            self._spawn(self._serve_stream, conn, stream)

    def _serve_stream(self, conn: mstls.Connection, stream: mstls.Stream) -> None:
        digest = hashlib.sha256()
        received = 0
        command = ""
        error = None
        try:
            command, rest = _read_command(stream, self.stream_timeout)
            received = self._answer(command, rest, stream, digest)
            stream.conclude()
        except (mstls.Error, ValueError) as exc:
            error = repr(exc)
        self.log.add(
            event="stream",
            id=stream.stream_id,
            command=command,
            received_len=received,
            received_sha256=digest.hexdigest(),
            error=error,
            peer=conn.peer_address,
        )

    def _answer(self, command: str, rest: bytes, stream: mstls.Stream, digest: Any) -> int:
        """Run one command; returns how many payload bytes were read."""
        timeout = self.stream_timeout
        echo = command == "echo"
        if not (echo or command == "sha256" or command.startswith("send ")):
            raise ValueError(f"unknown command {command!r}")
        received = 0
        chunk = rest
        while True:
            if chunk:
                digest.update(chunk)
                received += len(chunk)
                if echo:
                    stream.write(chunk, timeout=timeout)
            chunk = stream.read(CHUNK, timeout=timeout)
            if not chunk:
                break
        if command == "sha256":
            stream.write(f"{digest.hexdigest()} {received}\n".encode(), timeout=timeout)
        elif command.startswith("send "):
            size = int(command[len("send ") :])
            if not 0 <= size <= MAX_SEND:
                raise ValueError(f"bad send size {size}")
            stream.write(pattern(0, size), timeout=timeout)
        return received


def exchange(conn: mstls.Connection, command: str, payload: bytes, timeout: float) -> bytes:
    """Open a stream, send ``command`` and ``payload`` (then FIN) from a writer thread,
    and return everything the server sent back until its FIN."""
    stream = conn.open_stream(timeout=timeout)
    failure: list[BaseException] = []

    def write() -> None:
        try:
            stream.write(command.encode() + b"\n", timeout=timeout)
            stream.write(payload, timeout=timeout)
            stream.conclude()
        except BaseException as exc:  # reported by the reading side below
            failure.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    received = bytearray()
    deadline = time.monotonic() + timeout
    while chunk := stream.read(CHUNK, timeout=max(deadline - time.monotonic(), 0.01)):
        received += chunk
    writer.join(max(deadline - time.monotonic(), 0.01))
    if failure:
        raise failure[0]
    return bytes(received)


def exchange_many(
    conn: mstls.Connection, jobs: Sequence[tuple[str, bytes]], timeout: float
) -> list[bytes]:
    """:func:`exchange` for every ``(command, payload)`` at once, one thread each."""
    results: list[bytes | BaseException | None] = [None] * len(jobs)

    def run(index: int, command: str, payload: bytes) -> None:
        try:
            results[index] = exchange(conn, command, payload, timeout)
        except BaseException as exc:
            results[index] = exc

    threads = [
        threading.Thread(target=run, args=(i, c, p), daemon=True) for i, (c, p) in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.01))
    out = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        if result is None:
            raise TimeoutError(f"a stream did not finish in {timeout} s")
        out.append(result)
    return out
