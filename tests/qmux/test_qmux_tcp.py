"""QMux over a real 127.0.0.1 TCP connection: our client and server driven by a small
threaded socket loop.
"""

from __future__ import annotations

import hashlib
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable

from mstls.core.events import ConnectionTerminatedEvent
from mstls.qmux.connection import QMuxConnection
from tests.qmux.helpers import MiB
from tests.qmux.pair import client_config, server_config

# -- real TCP ----------------------------------------------------------------------------------
LOOP_TIMEOUT = 30.0
RECV_SIZE = 256 * 1024


def _write_out(sock: socket.socket, conn: QMuxConnection, out: bytearray, now: float) -> None:
    """Pull output from the core and write it until nothing is left or the socket is full."""
    while True:
        if not out:
            out += conn.data_to_send(now)
            if not out:
                return
        try:
            del out[: sock.send(out)]
        except BlockingIOError:
            return


def socket_loop(
    sock: socket.socket,
    conn: QMuxConnection,
    app: Callable[[QMuxConnection, float], bool],
    errors: list[BaseException],
) -> None:
    """A tiny driver: non-blocking socket, selector, the call order of the module docs.

    ``app`` runs the application and says whether it made progress (then the
    loop does not sleep).  Output is pulled until the core has nothing more or
    the socket is full.
    """
    try:
        sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ)
        out = bytearray()
        reading = True
        shut = False
        deadline = time.monotonic() + LOOP_TIMEOUT
        while time.monotonic() < deadline:
            now = time.monotonic()
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
            busy = app(conn, now)
            _write_out(sock, conn, out, now)
            if not out and conn.should_shutdown_write and not shut:
                sock.shutdown(socket.SHUT_WR)
                shut = True
            if conn.is_terminated and not out:
                return
            mask = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if out else 0)
            if mask:
                selector.modify(sock, mask)
            timer = conn.get_timer()
            wait = 0.05 if timer is None else max(0.0, min(0.05, timer - time.monotonic()))
            if busy:
                wait = 0.0
            if not mask:
                time.sleep(wait)
            for _key, events in selector.select(wait) if mask else []:
                if events & selectors.EVENT_READ:
                    data = sock.recv(RECV_SIZE)
                    if data:
                        conn.receive_data(data, time.monotonic())
                    else:
                        reading = False
                        conn.receive_eof(time.monotonic())
        raise AssertionError("socket loop timed out")
    except BaseException as exc:  # reported to the test thread
        errors.append(exc)
    finally:
        sock.close()


class EchoServerApp:
    """Echo every stream back, with its FIN."""

    def __init__(self) -> None:
        self.pending: dict[int, bytearray] = {}
        self.fin: set[int] = set()
        self.finished: set[int] = set()
        self.closed_by_peer: ConnectionTerminatedEvent | None = None

    def __call__(self, conn: QMuxConnection, now: float) -> bool:
        while (event := conn.next_event()) is not None:
            if isinstance(event, ConnectionTerminatedEvent):
                self.closed_by_peer = event
        if not conn.is_established:
            return False
        streams = conn.streams
        progress = False
        for sid in streams.accept_pending():
            self.pending[sid] = bytearray()
        for sid, buf in self.pending.items():
            if sid in self.finished:
                continue
            if sid not in self.fin:
                data, fin = streams.read(sid, RECV_SIZE)
                buf += data
                if fin:
                    self.fin.add(sid)
            if buf or sid in self.fin:
                taken = streams.write(sid, bytes(buf), fin=sid in self.fin)
                progress |= taken > 0
                del buf[:taken]
                if sid in self.fin and not buf:
                    self.finished.add(sid)
        return progress


class UploadClientApp:
    """Send payloads on several streams, hash the echo, close when all came back."""

    def __init__(self, sizes: list[int]) -> None:
        rng = random.Random(11)
        self.payloads = [rng.randbytes(n) for n in sizes]
        self.sids: list[int] = []
        self.sent: dict[int, int] = {}
        self.hashes: dict[int, hashlib._Hash] = {}
        self.done: set[int] = set()

    def __call__(self, conn: QMuxConnection, now: float) -> bool:
        while conn.next_event() is not None:
            pass
        if not conn.is_established or conn.peer_params is None:
            return False
        streams = conn.streams
        progress = False
        if not self.sids:
            for _ in self.payloads:
                sid = streams.open_stream()
                self.sids.append(sid)
                self.sent[sid] = 0
                self.hashes[sid] = hashlib.sha256()
        for sid, payload in zip(self.sids, self.payloads, strict=True):
            sent = self.sent[sid]
            if sent < len(payload):
                piece = payload[sent : sent + RECV_SIZE]
                taken = streams.write(sid, piece, fin=sent + len(piece) == len(payload))
                self.sent[sid] += taken
                progress |= taken > 0
            if sid not in self.done:
                data, fin = streams.read(sid, RECV_SIZE)
                self.hashes[sid].update(data)
                if fin:
                    self.done.add(sid)
        if len(self.done) == len(self.sids):
            conn.close(0x77, "all echoed", now=now)
        return progress


def test_real_tcp_echo_of_a_few_mib() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client_sock = socket.create_connection(listener.getsockname())
    server_sock, _ = listener.accept()
    listener.close()
    now = time.monotonic()
    client = QMuxConnection(client_config(), is_client=True, now=now)
    server = QMuxConnection(server_config(), is_client=False, now=now)
    client.connect(now)
    server_app = EchoServerApp()
    client_app = UploadClientApp([2 * MiB, MiB, MiB // 3])
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=socket_loop, args=(server_sock, server, server_app, errors)),
        threading.Thread(target=socket_loop, args=(client_sock, client, client_app, errors)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOOP_TIMEOUT + 5)
    assert not errors, errors
    for sid, payload in zip(client_app.sids, client_app.payloads, strict=True):
        assert client_app.hashes[sid].hexdigest() == hashlib.sha256(payload).hexdigest()
    event = server_app.closed_by_peer
    assert event is not None and (event.error_code, event.reason) == (0x77, "all echoed")
    assert client.is_terminated and server.is_terminated
