"""0-RTT through the public APIs over TCP/QMux (and QUIC), blocking and trio (issue 12).

A first connection stores tickets that allow early data; the second, connected
lazily, opens a replay-safe stream (``open_stream(early=True)``) whose request
goes in the client's first flight.  A relay between client and server records
what the client sent, so the first flight can be replayed to the server on a
new TCP connection.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

import mstls
import mstls.trio
from mstls.core.events import StreamOpened
from mstls.qmux.connection import QMuxConnection
from tests.api.helpers import TIMEOUT, client_config, server, server_config

pytestmark = pytest.mark.network

REQUEST = b"GET /replay-safe"
MAX_EARLY = 4096
KEY = bytes(32)


class Relay:
    """A TCP relay on 127.0.0.1 that keeps, per connection, what the client sent
    before the relay passed it any byte of the server's: its first flight."""

    def __init__(self, target: tuple[str, int], *, hold: bool = False) -> None:
        self.target = target
        #: Set: the client's bytes after its first flight pass (``hold``: not before).
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.first_flights: list[bytearray] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=TIMEOUT)
            flight = bytearray()
            self.first_flights.append(flight)
            answered = threading.Event()
            threading.Thread(
                target=_pipe,
                args=(client, upstream, flight, answered, self.release),
                daemon=True,
            ).start()
            threading.Thread(
                target=_pipe, args=(upstream, client, None, answered, None), daemon=True
            ).start()

    def close(self) -> None:
        self.sock.close()


def _pipe(
    src: socket.socket,
    dst: socket.socket,
    keep: bytearray | None,
    answered: threading.Event,
    release: threading.Event | None,
) -> None:
    """Copy ``src`` to ``dst``; from the client, keep bytes until the server answered
    (set before the answer is passed on, so the client cannot have reacted to it)."""
    try:
        while data := src.recv(65536):
            if keep is None:
                answered.set()
            elif not answered.is_set():
                keep += data
            elif release is not None:
                release.wait(TIMEOUT)
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@contextmanager
def early_server(**kw: object) -> Iterator[tuple[mstls.Listener, list[mstls.Connection]]]:
    with server(
        transport="tcp", max_early_data=MAX_EARLY, session_ticket_keys=[KEY], **kw
    ) as running:
        yield running


def store_tickets(port: int, store: mstls.TicketStore) -> None:
    config = client_config(ticket_store=store, early_data=True)
    with mstls.connect("127.0.0.1", port, config, transport="tcp", timeout=TIMEOUT) as conn:
        stream = conn.open_stream(timeout=TIMEOUT)
        stream.write(b"x", timeout=TIMEOUT)
        stream.conclude()
        assert stream.read_exactly(1, timeout=TIMEOUT) == b"x"
        assert conn.early_data_accepted is False  # a full handshake: nothing was offered
    assert _wait(lambda: len(store) >= 1)  # type: ignore[arg-type]


def _wait(predicate: object, seconds: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def early_request(port: int, store: mstls.TicketStore) -> mstls.Connection:
    """A lazy resuming connection whose request went as 0-RTT data; echo read back."""
    config = client_config(ticket_store=store, early_data=True)
    conn = mstls.connect("127.0.0.1", port, config, transport="tcp", timeout=TIMEOUT, lazy=True)
    stream = conn.open_stream(early=True, timeout=TIMEOUT)
    stream.write(REQUEST, timeout=TIMEOUT)
    stream.conclude()
    assert stream.read_exactly(len(REQUEST), timeout=TIMEOUT) == REQUEST
    return conn


def test_blocking_early_data_accepted_and_echoed() -> None:
    store = mstls.MemoryTicketStore()
    with early_server() as (listener, connections):
        port = listener.address[1]
        store_tickets(port, store)
        relay = Relay(("127.0.0.1", port))
        try:
            with early_request(relay.address[1], store) as conn:
                assert conn.resumed and conn.early_data_accepted is True
            assert _wait(lambda: len(connections) == 2)
            assert connections[1].early_data_accepted is True
            captured = bytes(relay.first_flights[0])
        finally:
            relay.close()
        # The request itself was in the first flight, ahead of any server answer:
        # the first flight alone gives a server with the same keys the stream.
        fresh = QMuxConnection(
            server_config(max_early_data=MAX_EARLY, session_ticket_keys=[KEY]).qmux_config(),
            is_client=False,
            now=0.0,
        )
        fresh.receive_data(captured, 0.0)
        assert fresh.early_data_accepted is True
        data, _ = fresh.streams.read(0, 1 << 16)
        assert bytes(data) == REQUEST


def test_blocking_server_reads_early_data_before_the_handshake_ends() -> None:
    store = mstls.MemoryTicketStore()
    config = server_config(max_early_data=MAX_EARLY, session_ticket_keys=[KEY])
    listener = mstls.listen("127.0.0.1", 0, config, transport="tcp")
    try:
        store_tickets_and_serve_once(listener, store)
        relay = Relay(listener.address, hold=True)  # the client's Finished is held back
        client_config_ = client_config(ticket_store=store, early_data=True)
        client = mstls.connect(
            "127.0.0.1", relay.address[1], client_config_, transport="tcp", lazy=True
        )
        try:
            stream = client.open_stream(early=True, timeout=TIMEOUT)
            stream.write(REQUEST, timeout=TIMEOUT)
            stream.conclude()
            conn = listener.accept(timeout=TIMEOUT)
            assert conn.early_data_accepted is True
            served = conn.accept_stream(timeout=TIMEOUT)
            assert served.read_exactly(len(REQUEST), timeout=TIMEOUT) == REQUEST
            assert not conn.sans_io.handshake_complete  # the client's Finished is held
            served.write(b"0.5-RTT answer", timeout=TIMEOUT)
            served.conclude()
            relay.release.set()
            assert stream.read_exactly(14, timeout=TIMEOUT) == b"0.5-RTT answer"
            conn.wait_handshake(timeout=TIMEOUT)
            assert conn.resumed and client.early_data_accepted is True
        finally:
            client.close()
            relay.close()
    finally:
        listener.close()


def store_tickets_and_serve_once(listener: mstls.Listener, store: mstls.TicketStore) -> None:
    """:func:`store_tickets` against ``listener``, served by an echo thread."""

    def serve() -> None:
        with contextlib.suppress(mstls.Error):
            conn = listener.accept(timeout=TIMEOUT)
            stream = conn.accept_stream(timeout=TIMEOUT)
            stream.write(stream.read_exactly(1, timeout=TIMEOUT), timeout=TIMEOUT)
            stream.conclude()
            conn.wait_handshake(timeout=TIMEOUT)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    store_tickets(listener.address[1], store)
    thread.join(TIMEOUT)


@pytest.mark.parametrize("update", [False, True], ids=["same-config", "after-update-config"])
def test_blocking_replayed_first_flight_gets_no_early_data(update: bool) -> None:
    """A listener hands out a connection as soon as its early data is accepted, so a
    replay that got early data accepted would reach the application: none does, also
    after ``update_config`` with a new configuration object (the listener keeps its
    strike register)."""
    store = mstls.MemoryTicketStore()
    config = server_config(max_early_data=MAX_EARLY, session_ticket_keys=[KEY])
    listener = mstls.listen("127.0.0.1", 0, config, transport="tcp")
    accepted: list[mstls.Connection] = []

    def serve() -> None:
        while True:
            try:
                conn = listener.accept(timeout=TIMEOUT)
            except mstls.Error:
                return
            accepted.append(conn)
            try:
                stream = conn.accept_stream(timeout=TIMEOUT)
                while data := stream.read(timeout=TIMEOUT):
                    stream.write(data, timeout=TIMEOUT)
                stream.conclude()
            except mstls.Error:
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        port = listener.address[1]
        store_tickets(port, store)
        relay = Relay(("127.0.0.1", port))
        try:
            early_request(relay.address[1], store).close()
            captured = bytes(relay.first_flights[0])
        finally:
            relay.close()
        assert _wait(lambda: len(accepted) == 2)
        if update:
            listener.update_config(
                server_config(max_early_data=MAX_EARLY, session_ticket_keys=[KEY])
            )
        # The attacker replays the first flight on a new TCP connection.
        with socket.create_connection(listener.address, timeout=TIMEOUT) as attacker:
            attacker.sendall(captured)
            assert not _wait(lambda: len(accepted) > 2, seconds=1.0)
        # The server's strike register (owned by its configuration) refused it ...
        replay = QMuxConnection(config.qmux_config(), is_client=False, now=0.0)
        replay.receive_data(captured, 0.0)
        assert replay.early_data_accepted is False
        assert not any(isinstance(e, StreamOpened) for e in iter(replay.next_event, None))
        # ... and the application saw only the two genuine connections.
        assert len(accepted) == 2
    finally:
        listener.close()


def test_blocking_rejected_early_data_is_resent() -> None:
    store = mstls.MemoryTicketStore()
    with early_server() as (listener, _):
        store_tickets(listener.address[1], store)
    # Another server (other ticket keys) rejects the ticket and its early data.
    with (
        server(
            transport="tcp", max_early_data=MAX_EARLY, session_ticket_keys=[bytes(range(32))]
        ) as (other, _),
        early_request(other.address[1], store) as conn,
    ):
        assert conn.early_data_accepted is False and not conn.resumed


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_trio_early_data_accepted(transport: str) -> None:
    async def main() -> None:
        store = mstls.MemoryTicketStore()

        async def echo(conn: mstls.trio.Connection) -> None:
            stream = await conn.accept_stream()
            async with stream:
                while data := await stream.receive_some():
                    await stream.send_all(data)
                await stream.send_eof()

        config = server_config(max_early_data=MAX_EARLY)
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                functools.partial(
                    mstls.trio.serve, "127.0.0.1", 0, config, echo, transport=transport
                )
            )
            port = listener.address[1]
            accepted = []
            for lazy in (False, True):
                with trio.fail_after(TIMEOUT):
                    conn = await mstls.trio.connect(
                        "127.0.0.1",
                        port,
                        client_config(ticket_store=store, early_data=True),
                        transport=transport,
                        lazy=lazy,
                    )
                    async with conn:
                        stream = await conn.open_stream(early=True)
                        await stream.send_all(REQUEST)
                        await stream.send_eof()
                        got = b""
                        with trio.move_on_after(2):
                            while chunk := await stream.receive_some():
                                got += chunk
                        assert got == REQUEST
                        accepted.append(conn.early_data_accepted)
                    while len(store) == 0:
                        await trio.sleep(0.01)
            assert accepted == [False, True]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_trio_server_reads_early_data_before_the_handshake_ends() -> None:
    async def main() -> None:
        store = mstls.MemoryTicketStore()
        seen: list[tuple[bytes, bool, bool | None]] = []
        served = [trio.Event(), trio.Event()]

        async def handler(conn: mstls.trio.Connection) -> None:
            stream = await conn.accept_stream()
            async with stream:
                data = b""
                while len(data) < len(REQUEST) and (chunk := await stream.receive_some()):
                    data += chunk
                seen.append((data, conn.sans_io.handshake_complete, conn.early_data_accepted))
                served[len(seen) - 1].set()
                await stream.send_all(data)
                await stream.send_eof()
                await conn.wait_handshake()

        config = server_config(max_early_data=MAX_EARLY)
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                functools.partial(
                    mstls.trio.serve, "127.0.0.1", 0, config, handler, transport="tcp"
                )
            )
            relays = []
            for hold in (False, True):
                relay = Relay(listener.address, hold=hold)
                relays.append(relay)
                with trio.fail_after(TIMEOUT):
                    conn = await mstls.trio.connect(
                        "127.0.0.1",
                        relay.address[1],
                        client_config(ticket_store=store, early_data=True),
                        transport="tcp",
                        lazy=True,
                    )
                    async with conn:
                        stream = await conn.open_stream(early=True)
                        await stream.send_all(REQUEST)
                        await stream.send_eof()
                        if hold:
                            await served[1].wait()  # before the client's Finished passed
                            relay.release.set()
                        got = b""
                        while chunk := await stream.receive_some():
                            got += chunk
                        assert got == REQUEST
                    while len(store) == 0:
                        await trio.sleep(0.01)
            for relay in relays:
                relay.close()
            assert seen[1] == (REQUEST, False, True)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_blocking_udp_early_data_accepted_and_echoed() -> None:
    """QUIC 0-RTT (RFC 9001 §4.6) through the blocking API: the replay-safe
    stream's request goes in 0-RTT packets and the server accepts them."""
    store = mstls.MemoryTicketStore()
    with server(transport="udp", max_early_data=MAX_EARLY) as (listener, _):
        port = listener.address[1]
        config = client_config(ticket_store=store, early_data=True)
        accepted = []
        for _ in range(2):
            with mstls.connect(
                "127.0.0.1", port, config, transport="udp", timeout=TIMEOUT, lazy=True
            ) as conn:
                stream = conn.open_stream(early=True, timeout=TIMEOUT)
                stream.write(REQUEST, timeout=TIMEOUT)
                stream.conclude()
                assert stream.read_exactly(len(REQUEST), timeout=TIMEOUT) == REQUEST
                accepted.append(conn.early_data_accepted)
                sent_early = conn.sans_io.zero_rtt_sent
            assert _wait(lambda: len(store) > 0)
        assert conn.resumed
        assert accepted == [False, True] and sent_early
