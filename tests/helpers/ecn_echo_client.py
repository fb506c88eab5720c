"""A sans-I/O client on its own loopback socket that records the ECN codepoint of
every datagram it receives (``IP_RECVTOS``), for tests of a listener's marking.

``honest=False`` makes it a client whose ECN counts are bogus: it feeds every
datagram to its connection as Not-ECT, so its ACKs never count the server's
ECT(0) packets and the server's validation of that path fails (RFC 9000
§13.4.2.1).  The loop is bounded by a deadline; nothing here sleeps unbounded.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Any

from mstls.core.ecn import ECT0
from mstls.io.udp import (
    detect_capabilities,
    enable_ecn,
    new_receive_buffer,
    open_udp_socket,
    receive_datagrams,
    send_datagrams,
)
from mstls.quic.connection import QuicConnection
from tests.quic.pair import client_config

#: A client's time to finish its echo.
TIMEOUT = 30.0
#: 1 MiB of echo: many datagrams (PMTU discovery grows them on loopback), far
#: past the 10 marked while testing (RFC 9000 §A.4).
PAYLOAD = bytes(range(256)) * 4096
#: The last datagrams of each connection, sent long after its validation ended.
TAIL = 20


def check_marking_per_connection(port: int) -> None:
    """Run an honest and a bogus-counting client at once; check what each received."""
    results: dict[bool, list[int]] = {}
    errors: list[BaseException] = []

    def client(honest: bool) -> None:
        try:
            results[honest] = echo_codepoints(
                ("127.0.0.1", port), PAYLOAD, honest=honest, timeout=TIMEOUT
            )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(h,), daemon=True) for h in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT + 5)
    assert not errors, errors
    honest, bogus = results[True], results[False]
    assert len(honest) > 2 * TAIL and len(bogus) > 2 * TAIL, (len(honest), len(bogus))
    assert ECT0 in bogus[:10], "the listener never marked (the test proves nothing)"
    assert bogus[-TAIL:] == [0] * TAIL, "a connection whose validation failed still marks"
    assert honest[-TAIL:] == [ECT0] * TAIL, "a validated connection stopped marking"


#: The longest wait for the socket in one turn (the loop re-checks its deadline).
MAX_WAIT = 0.05


def echo_codepoints(server: Any, payload: bytes, *, honest: bool, timeout: float) -> list[int]:
    """Send ``payload`` on one stream to an echo server at ``server``, read the
    echo to its end, close; return the codepoint of each datagram received, in
    order.  Raises TimeoutError if the echo is not complete within ``timeout``."""
    sock = open_udp_socket("127.0.0.1", 0)
    try:
        caps = detect_capabilities(sock)
        if not enable_ecn(sock, caps):
            raise OSError("this socket cannot report the TOS byte")
        return _Client(sock, caps, server, honest).run(payload, time.monotonic() + timeout)
    finally:
        sock.close()


class _Client:
    def __init__(self, sock: Any, caps: Any, server: Any, honest: bool) -> None:
        self.sock, self.caps, self.server, self.honest = sock, caps, server, honest
        self.conn = QuicConnection(
            client_config(), is_client=True, now=time.monotonic(), peer_address=server
        )
        self.codepoints: list[int] = []
        self.buffer = new_receive_buffer()

    def run(self, payload: bytes, deadline: float) -> list[int]:
        conn = self.conn
        conn.connect(time.monotonic())
        stream: int | None = None
        written = 0
        echo = bytearray()
        while time.monotonic() < deadline:
            now = time.monotonic()
            if stream is None and conn.is_established:
                stream = conn.streams.open_stream()
            if stream is not None:
                if written < len(payload):
                    written += conn.streams.write(stream, payload[written:])
                    if written == len(payload):
                        conn.streams.write(stream, b"", fin=True)
                data, fin = conn.streams.read(stream, 1 << 20)
                echo += data
                if fin:
                    if bytes(echo) != payload:
                        raise AssertionError("the echo differs from what was sent")
                    conn.close(0, now=now)
                    self._send(now)
                    return self.codepoints
            while conn.next_event() is not None:
                pass
            self._send(now)
            self._receive(now)
        raise TimeoutError(f"echo incomplete: {len(echo)} of {len(payload)} bytes")

    def _send(self, now: float) -> None:
        for datagram in self.conn.datagrams_to_send(now):
            send_datagrams(self.sock, [datagram], self.server, self.caps)

    def _receive(self, now: float) -> None:
        timer = self.conn.get_timer()
        wait = MAX_WAIT if timer is None else max(0.0, min(MAX_WAIT, timer - now))
        select.select([self.sock], [], [], wait)
        ecn: list[int] = []
        batch = receive_datagrams(self.sock, 256, self.caps, self.buffer, ecn)
        now = time.monotonic()
        for index, (data, addr) in enumerate(batch):
            self.codepoints.append(ecn[index])
            self.conn.receive_datagram(bytes(data), addr, now, ecn[index] if self.honest else 0)
        timer = self.conn.get_timer()
        if timer is not None and timer <= now:
            self.conn.handle_timer(now)
