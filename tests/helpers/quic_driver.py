"""A minimal threaded driver for sans-I/O QUIC objects, for network tests.

One thread per :class:`LoopThread` owns a UDP socket and an *endpoint-like*
object (``receive_datagram``, ``datagrams_to_send``, ``get_timer``,
``handle_timer``).  Tests touch the object only inside :meth:`LoopThread.call`
(which holds the lock and wakes the loop) and wait with
:meth:`LoopThread.wait_for`.  All loops are bounded by the ``stop`` flag and by
timeouts, and the socket is bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mstls.io.udp import (
    detect_capabilities,
    new_receive_buffer,
    open_udp_socket,
    receive_datagrams,
    send_datagrams,
)
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint

T = TypeVar("T")
MAX_WAIT = 0.05


class ClientAdapter:
    """Gives one client connection the endpoint interface."""

    def __init__(self, conn: QuicConnection) -> None:
        self.conn = conn

    def receive_datagram(self, data: Any, addr: Any, now: float) -> None:
        self.conn.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        return [(d, self.conn.peer_address) for d in self.conn.datagrams_to_send(now)]

    def get_timer(self) -> float | None:
        return self.conn.get_timer()

    def handle_timer(self, now: float) -> None:
        self.conn.handle_timer(now)


class LoopThread:
    """Runs the event loop of one socket + endpoint-like object in a thread."""

    def __init__(self, endpoint: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.endpoint = endpoint
        self.sock = open_udp_socket(host, port)
        self.address = self.sock.getsockname()
        self.caps = detect_capabilities(self.sock)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stop = False
        self._buffer = new_receive_buffer()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LoopThread:
        self._thread.start()
        return self

    def __enter__(self) -> LoopThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop = True
        self.wake()
        self._thread.join(5)
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the lock, then let the loop send what it produced."""
        with self.lock:
            result = fn()
        self.wake()
        return result

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("condition not reached")
                if self.error is not None:
                    raise AssertionError("driver thread failed") from self.error
                self.changed.wait(min(left, 0.1))

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stop:
                with self.lock:
                    timer = self.endpoint.get_timer()
                now = time.monotonic()
                timeout = MAX_WAIT if timer is None else max(0.0, min(MAX_WAIT, timer - now))
                for key, _ in selector.select(timeout):
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                self._service()
        except BaseException as exc:  # surfaced by wait_for
            self.error = exc
            with self.changed:
                self.changed.notify_all()
        finally:
            selector.close()

    def _service(self) -> None:
        with self.lock:
            now = time.monotonic()
            for data, addr in receive_datagrams(self.sock, 256, self.caps, self._buffer):
                self.endpoint.receive_datagram(bytes(data), addr, now)
            timer = self.endpoint.get_timer()
            if timer is not None and timer <= now:
                self.endpoint.handle_timer(now)
            self._flush(now)
            self.changed.notify_all()

    def _flush(self, now: float) -> None:
        for _ in range(64):
            out = self.endpoint.datagrams_to_send(now)
            if not out:
                return
            by_addr: dict[Any, list[bytes]] = {}
            for data, addr in out:
                by_addr.setdefault(addr, []).append(data)
            for addr, datagrams in by_addr.items():
                sent = 0
                for _ in range(100):
                    sent += send_datagrams(self.sock, datagrams[sent:], addr, self.caps)
                    if sent >= len(datagrams):
                        break
                    time.sleep(0.0005)


def client_loop(conn: QuicConnection) -> LoopThread:
    return LoopThread(ClientAdapter(conn))


def server_loop(endpoint: ServerEndpoint, port: int = 0) -> LoopThread:
    return LoopThread(endpoint, port=port)
