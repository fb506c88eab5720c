"""The native trio API (mstls.trio) over QUIC on loopback: streams, errors, cancellation."""

from __future__ import annotations

import functools
import hashlib
import pickle
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import mstls
import mstls.trio
from mstls import _errors as errors
from mstls.config import ClientConfig, ServerConfig
from mstls.exceptions import StreamStateError
from mstls.trio._stream import as_broken
from tests.certs import get_pki

pytestmark = pytest.mark.network

ALPN = "mstls-test"
TIMEOUT = 10.0
Handler = Callable[[mstls.trio.Connection], Awaitable[object]]


def client_config(**kw: Any) -> ClientConfig:
    return ClientConfig(alpn=ALPN, cafile=get_pki().files("ca").cert, server_name="localhost", **kw)


def server_config(**kw: Any) -> ServerConfig:
    files = get_pki().files("server")
    return ServerConfig(certfile=files.cert, keyfile=files.key, alpn=ALPN, **kw)


async def echo_stream(stream: mstls.trio.Stream) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)
        await stream.send_eof()


def per_stream(stream_handler: Callable[[mstls.trio.Stream], Awaitable[None]]) -> Handler:
    """A connection handler running ``stream_handler`` on every accepted stream."""

    async def handler(conn: mstls.trio.Connection) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                nursery.start_soon(stream_handler, await conn.accept_stream())

    return handler


TRANSPORTS = ["udp", "tcp"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def serving(handler: Handler, transport: str = "udp") -> AsyncIterator[mstls.trio.Listener]:
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(
                mstls.trio.serve,
                "127.0.0.1",
                0,
                server_config(),
                handler,
                transport=transport,
            )
        )
        yield listener
        await listener.aclose()  # closes the connections; handlers blocked elsewhere are
        nursery.cancel_scope.cancel()  # cancelled


async def connect(listener: mstls.trio.Listener, **kw: Any) -> mstls.trio.Connection:
    return await mstls.trio.connect(
        "127.0.0.1",
        listener.address[1],
        client_config(**kw),
        transport=listener.transport,
        timeout=TIMEOUT,
    )


async def receive_exactly(stream: mstls.trio.Stream, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = await stream.receive_some(size - len(out))
        assert chunk, f"stream ended after {len(out)} of {size} bytes"
        out += chunk
    return bytes(out)


async def receive_all(stream: mstls.trio.Stream) -> bytes:
    out = bytearray()
    while chunk := await stream.receive_some():
        out += chunk
    return bytes(out)


async def test_echo_round_trip(transport: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serving(per_stream(echo_stream), transport) as listener,
            await connect(listener) as conn,
        ):
            assert conn.alpn == ALPN
            assert conn.peer_certificate.common_name == "localhost"
            assert conn.transport == transport
            stream = await conn.open_stream()
            await stream.send_all(b"hello" * 10000)
            await stream.send_eof()
            assert await receive_all(stream) == b"hello" * 10000
            assert await stream.receive_some() == b""  # FIN stays FIN
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"after eof")


async def test_concurrent_streams_sha256(transport: str) -> None:
    count, size = 8, 300_000
    payloads = [
        bytes([i]) * 7 + hashlib.sha256(bytes([i])).digest() * (size // 32) for i in range(count)
    ]
    results: dict[int, str] = {}

    async def exchange(conn: mstls.trio.Connection, i: int) -> None:
        stream = await conn.open_stream()

        async def send() -> None:
            view = memoryview(payloads[i])
            for start in range(0, len(view), 10_000):
                await stream.send_all(view[start : start + 10_000])
            await stream.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            results[i] = hashlib.sha256(await receive_all(stream)).hexdigest()

    with trio.fail_after(TIMEOUT * 3):
        async with (
            serving(per_stream(echo_stream), transport) as listener,
            await connect(listener) as conn,
            trio.open_nursery() as nursery,
        ):
            for i in range(count):
                nursery.start_soon(exchange, conn, i)
    assert results == {i: hashlib.sha256(p).hexdigest() for i, p in enumerate(payloads)}


async def test_unidirectional_streams(transport: str) -> None:
    received: list[bytes] = []

    async def collect(stream: mstls.trio.Stream) -> None:
        received.append(await receive_all(stream))
        with pytest.raises(mstls.Error):  # a peer's unidirectional stream has no send side
            await stream.send_all(b"no")

    with trio.fail_after(TIMEOUT):
        async with (
            serving(per_stream(collect), transport) as listener,
            await connect(listener) as conn,
        ):
            stream = await conn.open_stream(bidirectional=False)
            await stream.send_all(b"one way")
            await stream.send_eof()
            await stream.wait_acknowledged()
            while not received:
                await trio.sleep(0.01)
    assert received == [b"one way"]


async def test_open_stream_waits_for_the_peers_stream_limit() -> None:
    files = get_pki().files("server")
    config = ServerConfig(
        certfile=files.cert, keyfile=files.key, alpn=ALPN, extra={"max_streams_bidi": 2}
    )
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(mstls.trio.serve, "127.0.0.1", 0, config, per_stream(echo_stream))
        )
        with trio.fail_after(TIMEOUT):
            async with await connect(listener) as conn:
                first, _second = await conn.open_stream(), await conn.open_stream()
                with trio.move_on_after(0.2) as scope:
                    await conn.open_stream()
                assert scope.cancelled_caught  # the limit holds
                await first.send_all(b"done")
                await first.send_eof()
                assert await receive_all(first) == b"done"
                third = await conn.open_stream()  # woken by MAX_STREAMS
                assert third.stream_id == 8
        nursery.cancel_scope.cancel()


# -- trio's stream conformance suite ---------------------------------------------------------
class StreamPairs:
    """Connected (client stream, server stream) pairs of fresh bidirectional streams."""

    def __init__(self, client: mstls.trio.Connection, server: mstls.trio.Connection) -> None:
        self.client, self.server = client, server

    async def make(self) -> tuple[mstls.trio.Stream, mstls.trio.Stream]:
        with trio.fail_after(TIMEOUT):
            ours = await self.client.open_stream()
            await ours.send_all(b"!")  # the peer learns of a stream from its first frame
            theirs = await self.server.accept_stream()
            assert await theirs.receive_some(1) == b"!"
        return ours, theirs

    async def make_clogged(self) -> tuple[mstls.trio.Stream, mstls.trio.Stream]:
        """A pair where neither side can send until the other reads (both directions,
        since trio's suite also runs with the pair flipped)."""
        pair = await self.make()
        chunk = b"c" * 65536
        while True:
            for stream in pair:
                while stream._write(chunk):  # fill the send buffer without waiting
                    pass
            await trio.sleep(0.05)  # let what flow control allowed be sent and acknowledged
            if not any(stream._write(chunk) for stream in pair):
                return pair


@asynccontextmanager
async def stream_pairs(transport: str) -> AsyncIterator[StreamPairs]:
    listener = await mstls.trio.listen("127.0.0.1", 0, server_config(), transport=transport)
    async with listener, await connect(listener) as client:
        with trio.fail_after(TIMEOUT):
            server = await listener.accept()
        yield StreamPairs(client, server)


async def test_check_half_closeable_stream(transport: str) -> None:
    async with stream_pairs(transport) as pairs:
        await trio.testing.check_half_closeable_stream(pairs.make, pairs.make_clogged)


async def test_concurrent_receive_is_busy(transport: str) -> None:
    async with stream_pairs(transport) as pairs:
        ours, _ = await pairs.make()
        with pytest.raises(ExceptionGroup) as info:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ours.receive_some)
                nursery.start_soon(ours.receive_some)
        assert info.group_contains(trio.BusyResourceError)


async def test_cancelled_receive_leaves_the_stream_usable(transport: str) -> None:
    async with stream_pairs(transport) as pairs:
        ours, theirs = await pairs.make()
        with trio.move_on_after(0.1) as scope:
            await ours.receive_some()
        assert scope.cancelled_caught
        await theirs.send_all(b"after the cancel")
        with trio.fail_after(TIMEOUT):
            assert await receive_exactly(ours, 16) == b"after the cancel"
            await ours.send_all(b"and back")
            assert await receive_exactly(theirs, 8) == b"and back"


async def test_wait_acknowledged(transport: str) -> None:
    async with stream_pairs(transport) as pairs:
        ours, _ = await pairs.make()
        await ours.send_all(b"z" * 200_000)
        with trio.fail_after(TIMEOUT):
            await ours.wait_acknowledged()
        assert pairs.client.sans_io.streams.get_stream(ours.stream_id).send.all_acknowledged


# -- the error model ---------------------------------------------------------------------------
async def test_replication_to_16_blocked_tasks(transport: str) -> None:
    count = 16
    server_side: list[mstls.trio.Connection] = []
    all_accepted = trio.Event()

    async def handler(conn: mstls.trio.Connection) -> None:
        server_side.append(conn)
        for _ in range(count):
            await conn.accept_stream()
        all_accepted.set()
        await trio.sleep_forever()

    outcomes: list[tuple[BaseException, list[errors.ErrorEntry]]] = []

    async def reader(stream: mstls.trio.Stream) -> None:
        try:
            await stream.receive_some()
        except mstls.Error as exc:
            outcomes.append((exc, errors.errors()))

    with trio.fail_after(TIMEOUT):
        async with serving(handler, transport) as listener, await connect(listener) as conn:
            streams = [await conn.open_stream() for _ in range(count)]
            for stream in streams:
                await stream.send_all(b"x")
            await all_accepted.wait()
            async with trio.open_nursery() as nursery:
                for stream in streams:
                    nursery.start_soon(reader, stream)
                await trio.testing.wait_all_tasks_blocked()
                await server_side[0].aclose(42, "maintenance")
            with pytest.raises(mstls.ConnectionTerminated):
                await conn.open_stream()
            late_entries = errors.errors()
    assert len(outcomes) == count
    first_entries = outcomes[0][1]
    for exc, entries in outcomes:
        assert isinstance(exc, mstls.ConnectionTerminated)
        assert isinstance(exc, trio.BrokenResourceError)
        assert (exc.code, exc.reason, exc.by_peer, exc.is_application) == (
            42,
            "maintenance",
            True,
            True,
        )
        assert entries == first_entries
        assert entries[-1].reason is errors.Reason.CONNECTION_TERMINATED
    assert len({id(exc) for exc, _ in outcomes}) == count  # fresh copies, no shared traceback
    assert [e.reason for e in late_entries] == [e.reason for e in first_entries]


async def test_stop_sending_fails_writes_only(transport: str) -> None:
    async def stopper(stream: mstls.trio.Stream) -> None:
        assert await receive_exactly(stream, 2) == b"hi"
        await stream.send_all(b"data before stop")
        await stream.send_eof()
        stream.stop_sending(7)

    with trio.fail_after(TIMEOUT):
        async with (
            serving(per_stream(stopper), transport) as listener,
            await connect(listener) as conn,
        ):
            stream = await conn.open_stream()
            await stream.send_all(b"hi")
            assert await receive_exactly(stream, 16) == b"data before stop"
            with pytest.raises(errors.StreamStopped) as info:
                for _ in range(1000):
                    await stream.send_all(b"more")
                    await trio.sleep(0.01)
            assert info.value.code == 7
            assert isinstance(info.value, trio.BrokenResourceError)
            last = errors.peek_last_error()
            assert last is not None
            assert last.reason is errors.Reason.STREAM_STOPPED
            assert await stream.receive_some() == b""  # reads still work


async def test_reset_fails_reads_only(transport: str) -> None:
    got: list[bytes] = []

    async def resetter(stream: mstls.trio.Stream) -> None:
        assert await stream.receive_some(1) == b"x"
        await stream.send_all(b"partial")
        await trio.sleep(0.2)
        stream.reset(9)
        got.append(await receive_exactly(stream, 5))

    with trio.fail_after(TIMEOUT):
        async with (
            serving(per_stream(resetter), transport) as listener,
            await connect(listener) as conn,
        ):
            stream = await conn.open_stream()
            await stream.send_all(b"x")
            assert await receive_exactly(stream, 7) == b"partial"
            with pytest.raises(errors.StreamReset) as info:
                await stream.receive_some()
            assert info.value.code == 9
            await stream.send_all(b"still")  # writes go on after the peer's reset
            while not got:
                await trio.sleep(0.01)
    assert got == [b"still"]


async def test_connect_timeout_against_a_silent_port() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        with trio.fail_after(TIMEOUT), pytest.raises(errors.Timeout):
            await mstls.trio.connect(
                "127.0.0.1", silent.getsockname()[1], client_config(), timeout=0.3
            )
    finally:
        silent.close()


async def test_closed_listener_and_connection_raise_closed_resource(transport: str) -> None:
    listener = await mstls.trio.listen("127.0.0.1", 0, server_config(), transport=transport)
    async with listener:
        conn = await connect(listener)
        server = await listener.accept()
        async with trio.open_nursery() as nursery:

            async def accept_expecting_closed() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await listener.accept()

            nursery.start_soon(accept_expecting_closed)
            await trio.testing.wait_all_tasks_blocked()
            await listener.aclose()
        await conn.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await conn.open_stream()
        with pytest.raises(mstls.ConnectionTerminated):  # the listener closed it
            await server.accept_stream()


# -- interop -------------------------------------------------------------------------------------
async def test_trio_client_with_aioquic_server() -> None:
    from tests.interop.aioquic_peer import AioquicServer  # noqa: PLC0415 - aioquic is optional

    files = get_pki().files("server")
    payload = bytes(range(256)) * 2000
    with AioquicServer(files.cert, files.key) as server:
        with trio.fail_after(TIMEOUT * 2):
            conn = await mstls.trio.connect(
                "127.0.0.1", server.port, client_config(), timeout=TIMEOUT
            )
            async with conn:
                assert conn.alpn == ALPN
                stream = await conn.open_stream()

                async def send() -> None:
                    await stream.send_all(b"echo\n")
                    await stream.send_all(payload)
                    await stream.send_eof()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send)
                    echoed = await receive_all(stream)
    assert echoed == payload


def test_broken_flavour_pickles_as_the_plain_class() -> None:
    exc = as_broken(errors.StreamReset(9, stream_id=4))
    assert isinstance(exc, errors.StreamReset)
    assert isinstance(exc, trio.BrokenResourceError)
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is errors.StreamReset
    assert (copy.code, copy.stream_id) == (9, 4)
    assert not isinstance(as_broken(StreamStateError("misuse")), trio.BrokenResourceError)


# -- TCP: premature close (E8) ---------------------------------------------------------------------
async def relay(
    front: trio.SocketListener, back_port: int, cut: trio.Event, task_status: Any
) -> None:
    """Forward one TCP connection to ``back_port`` until ``cut``, then FIN the client
    side without a TLS close_notify: a truncation."""
    task_status.started()
    client = await front.accept()
    server = await trio.open_tcp_stream("127.0.0.1", back_port)

    async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        while data := await source.receive_some():
            await sink.send_all(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, client, server)
        nursery.start_soon(pump, server, client)
        await cut.wait()
        nursery.cancel_scope.cancel()
    await client.send_eof()


async def premature_close_on_tcp() -> mstls.PrematureClose:
    """What receive_some raises when the TCP connection ends without close_notify."""
    cut = trio.Event()

    async def greeter(stream: mstls.trio.Stream) -> None:
        await stream.send_all(b"hello")
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with serving(per_stream(greeter), "tcp") as listener, trio.open_nursery() as nursery:
            [front] = await trio.open_tcp_listeners(0, host="127.0.0.1")
            await nursery.start(relay, front, listener.address[1], cut)
            conn = await mstls.trio.connect(
                "127.0.0.1",
                front.socket.getsockname()[1],
                client_config(),
                transport="tcp",
                timeout=TIMEOUT,
            )
            stream = await conn.open_stream()
            await stream.send_all(b"x")
            assert await receive_exactly(stream, 5) == b"hello"
            cut.set()
            with pytest.raises(mstls.PrematureClose) as info:
                await stream.receive_some()  # never b"": a truncation is not an end
            nursery.cancel_scope.cancel()
    return info.value


async def test_tcp_fin_without_close_is_a_premature_close() -> None:
    exc = await premature_close_on_tcp()
    assert isinstance(exc, trio.BrokenResourceError)
    assert exc.by_peer


async def test_premature_close_reports_the_bytes_received() -> None:
    exc = await premature_close_on_tcp()
    assert exc.bytes_received > 0


async def test_listener_counts_failed_handshakes() -> None:
    """A client that rejects the server's certificate shows up in the listener's record."""
    pki = get_pki()
    files = pki.files("server")
    server_config = mstls.ServerConfig(files.cert, files.key, alpn="mstls-test")
    listener = await mstls.trio.listen("127.0.0.1", 0, server_config)
    bad = mstls.ClientConfig(
        alpn="mstls-test", cafile=pki.files("other_ca").cert, server_name="localhost"
    )
    with pytest.raises(mstls.Error):
        await mstls.trio.connect("127.0.0.1", listener.address[1], bad, timeout=5)
    with trio.fail_after(5):
        while listener.failed_handshakes == 0:
            await trio.sleep(0.01)
    [(address, error)] = listener.pop_handshake_failures()
    assert address is not None and isinstance(error, mstls.Error)
    assert listener.pop_handshake_failures() == []
    await listener.aclose()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_reuse_port_lets_two_listeners_share_a_port(transport: str) -> None:
    """Worker processes share one port: SO_REUSEPORT, and a hook sees each socket."""
    pki = get_pki()
    files = pki.files("server")
    config = mstls.ServerConfig(
        files.cert, files.key, alpn="mstls-test", retry_token_key=bytes(range(16))
    )
    seen: list[Any] = []
    first = await mstls.trio.listen(
        "127.0.0.1", 0, config, transport=transport, reuse_port=True, socket_hook=seen.append
    )
    port = first.address[1]
    second = await mstls.trio.listen(
        "127.0.0.1", port, config, transport=transport, reuse_port=True, socket_hook=seen.append
    )
    assert second.address[1] == port and len(seen) == 2
    assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in seen)
    await first.aclose()
    await second.aclose()


def test_retry_token_key_is_checked() -> None:
    files = get_pki().files("server")
    bad = mstls.ServerConfig(files.cert, files.key, alpn="x", retry_token_key=b"short")
    with pytest.raises(mstls.ConfigurationError):
        bad.retry_tokens()
