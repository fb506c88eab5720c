"""The blocking, trio and asyncio APIs have the same names and options (issues 16, 14).

The first half compares the public surface of both by introspection, with an
explicit allow-list of the idiomatic differences; the second half checks the
behaviour of every member that one API lacked, on UDP (QUIC) and TCP (QMux).
"""

from __future__ import annotations

import inspect
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import mstls
import mstls.asyncio
import mstls.errors
import mstls.trio
from mstls.exceptions import HandshakeRefused
from tests.api.helpers import ALPN, TIMEOUT, client_config, server, server_config
from tests.certs import get_pki

ROOT = Path(__file__).resolve().parents[2]
TRANSPORTS = ["udp", "tcp"]

# -- the allow-list of idiomatic differences ---------------------------------------------------
#: Closing: blocking ``close()`` (and ``with``), trio ``aclose()`` (and ``async with``).
#: ``blocking``: the blocking API's non-blocking mode (WantRead/WantWrite); trio never blocks
#: a thread, so it has no such switch.
BLOCKING_ONLY = {
    "Connection": {"close", "blocking"},
    "Listener": {"close"},
    # The streams keep the idioms of their world (docs/api/index.rst has the table):
    # read/write/conclude (and read_exactly) versus trio's HalfCloseableStream.
    "Stream": {"read", "read_exactly", "write", "conclude", "close"},
}
TRIO_ONLY = {
    "Connection": {"aclose"},
    "Listener": {"aclose"},
    "Stream": {"aclose", "receive_some", "send_all", "send_eof", "wait_send_all_might_not_block"},
}
#: Members that wait: trio makes them coroutines, the blocking API gives them a ``timeout``
#: (trio replaces it by cancel scopes, so ``timeout`` is left out of the comparison).
WAITING = {
    "Connection": {
        "wait_handshake",
        "open_stream",
        "accept_stream",
        "send_datagram",  # waits for the handshake only, never for queue room
        "receive_datagram",
        "migrate",
    },
    "Listener": {"accept"},
    "Stream": {"wait_acknowledged"},
}
#: The stream correspondence documented in docs/api/index.rst.
STREAM_PAIRS = [
    ("read", "receive_some"),
    ("write", "send_all"),
    ("conclude", "send_eof"),
    ("close", "aclose"),
]
#: Same member under its idiomatic name in each API: the parameters must agree.
RENAMED = {"Connection": [("close", "aclose")], "Stream": STREAM_PAIRS}


def public_names(cls: type) -> set[str]:
    """Public members defined by the class or a base from mstls or trio.abc (not object)."""
    names = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        names |= {n for n in vars(klass) if not n.startswith("_")}
    return names


def parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of ``fn``'s parameters, without ``self`` and ``timeout``."""
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(fn).parameters.values()
        if p.name not in ("self", "timeout", "task_status")
    ]


@pytest.mark.parametrize("name", ["connect", "listen"])
def test_connect_and_listen_take_the_same_parameters(name: str) -> None:
    blocking = inspect.signature(getattr(mstls, name)).parameters
    trio_side = inspect.signature(getattr(mstls.trio, name)).parameters
    # Here even ``timeout`` is shared: trio's connect has one as a convenience.
    assert [(p.name, p.kind, p.default) for p in blocking.values()] == [
        (p.name, p.kind, p.default) for p in trio_side.values()
    ]


def test_serve_takes_the_options_of_listen() -> None:
    listen = parameters(mstls.trio.listen)
    serve = [p for p in parameters(mstls.trio.serve) if p[0] != "handler"]
    assert serve == listen


@pytest.mark.parametrize("name", ["Connection", "Listener", "Stream"])
def test_classes_have_the_same_public_names(name: str) -> None:
    blocking_cls, trio_cls = getattr(mstls, name), getattr(mstls.trio, name)
    blocking, trio_side = public_names(blocking_cls), public_names(trio_cls)
    assert blocking - trio_side == BLOCKING_ONLY[name]
    assert trio_side - blocking == TRIO_ONLY[name]


@pytest.mark.parametrize("name", ["Connection", "Listener", "Stream"])
def test_shared_members_take_the_same_parameters(name: str) -> None:
    blocking_cls, trio_cls = getattr(mstls, name), getattr(mstls.trio, name)
    shared = public_names(blocking_cls) & public_names(trio_cls)
    assert shared, name
    for member in sorted(shared):
        b, t = (
            inspect.getattr_static(blocking_cls, member),
            inspect.getattr_static(trio_cls, member),
        )
        assert isinstance(b, property) == isinstance(t, property), member
        if isinstance(b, property):
            continue
        assert parameters(b) == parameters(t), member
        assert inspect.iscoroutinefunction(t) == (member in WAITING[name]), member
        assert not inspect.iscoroutinefunction(b), member
        if member in WAITING[name]:
            assert "timeout" in inspect.signature(b).parameters, member


@pytest.mark.parametrize("name", ["Connection", "Stream"])
def test_renamed_members_take_the_same_parameters(name: str) -> None:
    blocking_cls, trio_cls = getattr(mstls, name), getattr(mstls.trio, name)
    for blocking, trio_name in RENAMED[name]:
        b, t = getattr(blocking_cls, blocking), getattr(trio_cls, trio_name)
        b_params = [p[0] for p in parameters(b)]
        t_params = [p[0] for p in parameters(t)]
        # read(max_bytes) / receive_some(max_bytes), write(data) / send_all(data)...
        assert b_params == t_params, (blocking, trio_name)


def test_the_docs_show_the_stream_correspondence() -> None:
    text = (ROOT / "docs" / "api" / "index.rst").read_text()
    rows = text.split("   * - ")[1:]  # the rows of the list-table
    for blocking, trio_name in STREAM_PAIRS:
        assert any(f".{blocking}(" in row and f".{trio_name}(" in row for row in rows), (
            blocking,
            trio_name,
        )


# -- the asyncio surface: the trio API's names, plus asyncio's idioms ---------------------------
#: What mstls.asyncio adds to the trio API's names (it has every trio name, same
#: parameters, same coroutine-ness):
#: - ``close()`` + ``await wait_closed()`` on connections and listeners, as asyncio's
#:   transports and ``asyncio.Server``; ``aclose`` stays for ``async with`` and trio parity.
#: - on streams, asyncio's StreamReader/StreamWriter methods: ``read(n=-1)`` (asyncio's
#:   parameter name and "-1: to the end", so not the blocking ``read(max_bytes)``),
#:   ``readexactly``, ``readline``, ``at_eof``, ``write`` (never waits) + ``drain``,
#:   ``write_eof``/``can_write_eof``, ``close``/``is_closing``/``wait_closed``.
ASYNCIO_EXTRA = {
    "Connection": {"close", "wait_closed"},
    "Listener": {"close", "wait_closed"},
    "Stream": {
        "read",
        "readexactly",
        "readline",
        "at_eof",
        "write",
        "drain",
        "write_eof",
        "can_write_eof",
        "close",
        "is_closing",
        "wait_closed",
    },
}
#: asyncio members that wait (coroutines) among ASYNCIO_EXTRA.
ASYNCIO_WAITING = {"wait_closed", "read", "readexactly", "readline", "drain"}


@pytest.mark.parametrize("name", ["connect", "listen", "serve"])
def test_asyncio_entry_points_take_the_trio_parameters(name: str) -> None:
    assert parameters(getattr(mstls.asyncio, name)) == parameters(getattr(mstls.trio, name))
    assert inspect.iscoroutinefunction(getattr(mstls.asyncio, name))


@pytest.mark.parametrize("name", ["Connection", "Listener", "Stream"])
def test_asyncio_classes_have_the_trio_names_plus_asyncio_idioms(name: str) -> None:
    trio_cls, asyncio_cls = getattr(mstls.trio, name), getattr(mstls.asyncio, name)
    trio_side, asyncio_side = public_names(trio_cls), public_names(asyncio_cls)
    assert trio_side - asyncio_side == set()
    assert asyncio_side - trio_side == ASYNCIO_EXTRA[name]
    for member in sorted(trio_side):
        t, a = inspect.getattr_static(trio_cls, member), inspect.getattr_static(asyncio_cls, member)
        assert isinstance(t, property) == isinstance(a, property), member
        if isinstance(t, property) or not callable(t):
            continue
        assert parameters(a) == parameters(t), member
        assert inspect.iscoroutinefunction(a) == inspect.iscoroutinefunction(t), member
    for member in ASYNCIO_EXTRA[name]:
        fn = getattr(asyncio_cls, member)
        assert inspect.iscoroutinefunction(fn) == (member in ASYNCIO_WAITING), member
        assert fn.__doc__, member


def test_asyncio_close_takes_the_blocking_parameters() -> None:
    assert parameters(mstls.asyncio.Connection.close) == parameters(mstls.Connection.close)
    assert parameters(mstls.asyncio.Listener.close) == parameters(mstls.Listener.close)


def mismatched_config(**kw: Any) -> mstls.ClientConfig:
    """A client whose ALPN the test server does not offer: its handshake fails."""
    cafile = get_pki().files("ca").cert
    return mstls.ClientConfig(alpn="other", cafile=cafile, server_name="localhost", **kw)


def forged_initial() -> bytes:
    """A QUIC v1 Initial (RFC 9000 §17.2.2) whose payload authenticates nothing."""
    dcid = os.urandom(8)
    body = os.urandom(1100)
    header = bytes([0xC3]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid + b"\x00" + b"\x00"
    length = len(body)
    return (header + struct.pack("!H", 0x4000 | length) + body).ljust(1200, b"\x00")


def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_peer_address_on_both_ends(transport: str) -> None:
    with server(transport=transport) as (listener, accepted):
        port = listener.address[1]
        conn = mstls.connect("127.0.0.1", port, client_config(), transport=transport)
        assert conn.peer_address[:2] == ("127.0.0.1", port)
        with conn.open_stream() as stream:
            stream.write(b"x")
        wait_until(lambda: bool(accepted))
        server_side = accepted[0].peer_address
        assert server_side[0] == "127.0.0.1" and server_side[1] != port
        conn.close()
        assert conn.peer_address[:2] == ("127.0.0.1", port)  # kept after the socket closed


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_wait_handshake_drives_a_lazy_handshake(transport: str) -> None:
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        conn = mstls.connect("127.0.0.1", port, client_config(), transport=transport, lazy=True)
        assert conn.alpn is None
        assert conn.stats().bytes_sent == 0  # nothing started yet
        conn.wait_handshake(timeout=TIMEOUT)
        assert conn.alpn == ALPN
        conn.wait_handshake(timeout=0)  # done: returns at once
        conn.close()


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_wait_handshake_raises_the_handshake_failure(transport: str) -> None:
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        config = mismatched_config()
        conn = mstls.connect("127.0.0.1", port, config, transport=transport, lazy=True)
        with pytest.raises(mstls.Error):
            conn.wait_handshake(timeout=TIMEOUT)
        with pytest.raises(mstls.Error):  # every later call sees the same failure (E3)
            conn.open_stream(timeout=TIMEOUT)


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_listen_reuse_port_and_socket_hook(transport: str) -> None:
    hooked: list[socket.socket] = []
    first = mstls.listen(
        "127.0.0.1",
        0,
        server_config(),
        transport=transport,
        reuse_port=True,
        socket_hook=hooked.append,
    )
    try:
        port = first.address[1]
        assert [s.getsockname() for s in hooked] == [first.address]
        second = mstls.listen(
            "127.0.0.1", port, server_config(), transport=transport, reuse_port=True
        )
        second.close()
    finally:
        first.close()


def _failed_client(transport: str, port: int) -> None:
    with pytest.raises(mstls.Error):
        mstls.connect("127.0.0.1", port, mismatched_config(), transport=transport, timeout=TIMEOUT)


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_listener_records_failed_handshakes(transport: str) -> None:
    with server(transport=transport) as (listener, _):
        _failed_client(transport, listener.address[1])
        wait_until(lambda: listener.failed_handshakes == 1)
        failures = listener.pop_handshake_failures()
        assert len(failures) == 1
        address, error = failures[0]
        assert address[0] == "127.0.0.1"
        assert isinstance(error, mstls.Error)
        assert listener.pop_handshake_failures() == []  # popped
        assert listener.failed_handshakes == 1  # the count stays
        assert listener.refused_handshakes == 0


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_listener_counts_refusals_as_failures(transport: str) -> None:
    options = {"handshake_rate_per_source": 0.001, "handshake_burst_per_source": 1}
    with server(transport=transport, **options) as (listener, _):
        port = listener.address[1]
        first = mstls.connect("127.0.0.1", port, client_config(), transport=transport)
        with pytest.raises(mstls.Error):
            mstls.connect("127.0.0.1", port, client_config(), transport=transport, timeout=1.0)
        wait_until(lambda: listener.refused_handshakes >= 1)  # UDP: each retransmitted Initial
        assert listener.failed_handshakes >= 1
        assert any(isinstance(e, HandshakeRefused) for _, e in listener.pop_handshake_failures())
        first.close()


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocking_listener_counts_dropped_initials(transport: str) -> None:
    with server(transport=transport) as (listener, _):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.sendto(forged_initial(), ("127.0.0.1", listener.address[1]))
        if transport == "udp":
            wait_until(lambda: listener.dropped_initials == 1)
        else:
            time.sleep(0.1)  # TCP has no Initials: a stray datagram reaches nothing
            assert listener.dropped_initials == 0
        assert listener.failed_handshakes == 0


@pytest.mark.network
def test_blocking_auto_reports_both_failures() -> None:
    """QUIC never answers, TCP fails its handshake: both land in the error queue."""
    with server(transport="tcp") as (listener, _):
        config = mismatched_config(fallback_delay=0.05, handshake_timeout=1.0)
        mstls.errors.clear_error()
        with pytest.raises(mstls.Error) as info:
            mstls.connect(
                "127.0.0.1", listener.address[1], config, transport="auto", timeout=TIMEOUT
            )
        assert isinstance(info.value.__cause__, mstls.Error)
        libs = {entry.lib.name for entry in mstls.errors.errors()}
        assert {"QUIC", "QMUX"} <= libs
        mstls.errors.clear_error()


# -- behaviour: the trio API -------------------------------------------------------------------
@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_trio_lazy_connect_returns_before_the_handshake(transport: str) -> None:
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        conn = await mstls.trio.connect(
            "127.0.0.1", port, client_config(), transport=transport, lazy=True
        )
        async with conn:
            assert conn.alpn is None
            assert conn.stats().bytes_sent == 0  # not a byte of the handshake yet
            stream = await conn.open_stream()  # the first stream operation drives it
            assert conn.alpn == ALPN
            await stream.send_all(b"lazy")
            await stream.send_eof()
            got = b""
            while data := await stream.receive_some():
                got += data
            assert got == b"lazy"


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_trio_lazy_wait_handshake_starts_it(transport: str) -> None:
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        conn = await mstls.trio.connect(
            "127.0.0.1", port, client_config(), transport=transport, lazy=True
        )
        async with conn:
            with trio.fail_after(TIMEOUT):
                await conn.wait_handshake()
            assert conn.alpn == ALPN


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_trio_lazy_handshake_failure_is_raised_by_the_first_use(transport: str) -> None:
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        config = mismatched_config()
        conn = await mstls.trio.connect("127.0.0.1", port, config, transport=transport, lazy=True)
        async with conn:
            with trio.fail_after(TIMEOUT), pytest.raises(mstls.Error):
                await conn.open_stream()
            with pytest.raises(mstls.Error):
                await conn.wait_handshake()


@pytest.mark.network
async def test_trio_auto_prefers_quic_when_it_answers() -> None:
    with server() as (listener, _):
        config = client_config()
        conn = await mstls.trio.connect(
            "127.0.0.1", listener.address[1], config, transport="auto", timeout=TIMEOUT
        )
        async with conn:
            assert conn.transport == "udp"
            assert conn.alpn == ALPN


@pytest.mark.network
async def test_trio_auto_falls_back_to_tcp_when_udp_is_silent() -> None:
    with server(transport="tcp") as (listener, _):
        config = client_config(fallback_delay=0.05)
        conn = await mstls.trio.connect(
            "127.0.0.1", listener.address[1], config, transport="auto", timeout=TIMEOUT
        )
        async with conn:
            assert conn.transport == "tcp"
            stream = await conn.open_stream()
            await stream.send_all(b"over tcp")
            await stream.send_eof()
            got = b""
            while data := await stream.receive_some():
                got += data
            assert got == b"over tcp"


@pytest.mark.network
async def test_trio_auto_reports_both_failures() -> None:
    with server(transport="tcp") as (listener, _):
        config = mismatched_config(fallback_delay=0.05, handshake_timeout=1.0)
        mstls.errors.clear_error()
        with pytest.raises(mstls.Error) as info:
            await mstls.trio.connect(
                "127.0.0.1", listener.address[1], config, transport="auto", timeout=TIMEOUT
            )
        assert isinstance(info.value.__cause__, mstls.Error)
        libs = {entry.lib.name for entry in mstls.errors.errors()}
        assert {"QUIC", "QMUX"} <= libs
        mstls.errors.clear_error()


@pytest.mark.network
async def test_trio_auto_times_out_while_quic_is_silent() -> None:
    with server(transport="tcp") as (listener, _):
        config = mismatched_config(fallback_delay=0.05)
        with pytest.raises(mstls.Timeout):
            # The TCP attempt fails at once; QUIC waits for an answer that never comes.
            await mstls.trio.connect(
                "127.0.0.1", listener.address[1], config, transport="auto", timeout=0.5
            )


async def _trio_server(transport: str, **options: Any) -> tuple[mstls.trio.Listener, int]:
    listener = await mstls.trio.listen(
        "127.0.0.1", 0, server_config(**options), transport=transport
    )
    return listener, listener.address[1]


async def _trio_wait(check: Callable[[], bool]) -> None:
    with trio.fail_after(TIMEOUT):
        while not check():
            await trio.sleep(0.01)


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_trio_listener_counts_refusals(transport: str) -> None:
    options = {"handshake_rate_per_source": 0.001, "handshake_burst_per_source": 1}
    listener, port = await _trio_server(transport, **options)
    async with listener, trio.open_nursery() as nursery:
        nursery.start_soon(_accept_forever, listener)
        first = await mstls.trio.connect("127.0.0.1", port, client_config(), transport=transport)
        with pytest.raises(mstls.Error):
            await mstls.trio.connect(
                "127.0.0.1", port, client_config(), transport=transport, timeout=1.0
            )
        await _trio_wait(lambda: listener.refused_handshakes >= 1)
        assert listener.failed_handshakes >= 1
        assert listener.dropped_initials == 0
        await first.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_trio_listener_records_failures_with_the_peer_address(transport: str) -> None:
    listener, port = await _trio_server(transport)
    async with listener:
        with pytest.raises(mstls.Error):
            await mstls.trio.connect(
                "127.0.0.1", port, mismatched_config(), transport=transport, timeout=TIMEOUT
            )
        await _trio_wait(lambda: listener.failed_handshakes == 1)
        failures = listener.pop_handshake_failures()
        assert len(failures) == 1
        assert failures[0][0][0] == "127.0.0.1"  # TCP included: the address is known
        assert listener.refused_handshakes == 0


async def _accept_forever(listener: mstls.trio.Listener) -> None:
    while True:
        await listener.accept()


def _blocking_udp_attempts(port: int) -> list[Any]:
    """The assist thread's live UDP client handlers towards ``port`` (white box)."""
    from mstls._blocking.assist import AssistThread  # noqa: PLC0415
    from mstls._blocking.handlers import UdpClientHandler  # noqa: PLC0415

    handlers = list(AssistThread.get()._handlers)
    return [
        h for h in handlers if isinstance(h, UdpClientHandler) and h.conn.peer_address[1] == port
    ]


@pytest.mark.network
def test_blocking_auto_closes_the_losing_quic_attempt() -> None:
    # handshake_timeout outlives the wait below: only the close can end the attempt.
    config = client_config(fallback_delay=0.05, handshake_timeout=60.0)
    with server(transport="tcp") as (listener, _):
        port = listener.address[1]
        conn = mstls.connect("127.0.0.1", port, config, transport="auto", timeout=TIMEOUT)
        assert conn.transport == "tcp"
        wait_until(lambda: not _blocking_udp_attempts(port))
        conn.close()


def _trio_tasks(prefix: str) -> list[trio.lowlevel.Task]:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    return [
        task
        for nursery in root.child_nurseries
        for task in nursery.child_tasks
        if task.name.startswith(prefix)
    ]


@pytest.mark.network
async def test_trio_auto_closes_the_losing_quic_attempt() -> None:
    config = client_config(fallback_delay=0.05, handshake_timeout=60.0)
    with server(transport="tcp") as (listener, _):
        port = listener.address[1]
        conn = await mstls.trio.connect(
            "127.0.0.1", port, config, transport="auto", timeout=TIMEOUT
        )
        async with conn:
            assert conn.transport == "tcp"
            # The QUIC attempt's I/O task ends once its CONNECTION_CLOSE went out and
            # its closing period passed (RFC 9000 §10.2).
            await _trio_wait(lambda: not _trio_tasks(f"mstls.trio udp client 127.0.0.1:{port}"))
