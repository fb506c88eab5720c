"""The blocking, thread-safe API on both transports: the seeds' scenarios as tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import mstls
from mstls import errors
from mstls.core.lifecycle import State
from mstls.core.stateless_reset import StatelessResetKey

from .helpers import TIMEOUT, client_config, server

pytestmark = pytest.mark.network

TRANSPORTS = ["udp", "tcp"]


def connect(port: int, transport: str = "udp", **kw: Any) -> mstls.Connection:
    config = client_config(**kw.pop("config", {}))
    return mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT, **kw)


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def silent(stream: mstls.Stream) -> None:
    """A server stream handler that reads and never answers."""
    try:
        while stream.read(timeout=TIMEOUT * 3):
            pass
    except mstls.Error:
        pass


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_echo_round_trip(transport: str) -> None:
    with (
        server(transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        assert conn.alpn == "mstls-test" and conn.transport == transport
        assert conn.peer_certificate.common_name == "localhost"
        with conn.open_stream() as stream:
            stream.write(b"hello" * 10000)
            stream.conclude()
            assert stream.read_exactly(50000, timeout=TIMEOUT) == b"hello" * 10000
            assert stream.read(timeout=TIMEOUT) == b""
            assert stream.read(timeout=TIMEOUT) == b""  # FIN stays FIN


# -- replication (E2, E3) -----------------------------------------------------------------
def blocked_readers(conn: mstls.Connection, count: int) -> Callable[[], list[Any]]:
    """``count`` threads each blocked reading its own stream; call the result to join them."""
    streams = []
    for _ in range(count):
        stream = conn.open_stream()
        stream.write(b"x")
        streams.append(stream)
    ready = threading.Barrier(count + 1)
    outcomes: list[Any] = [None] * count

    def reader(i: int) -> None:
        ready.wait()
        try:
            streams[i].read(timeout=TIMEOUT * 2)
        except mstls.Error as exc:
            outcomes[i] = (exc, errors.errors())
        else:
            outcomes[i] = ("returned", [])

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    ready.wait()
    time.sleep(0.2)  # everyone is blocked in read()

    def join() -> list[Any]:
        for thread in threads:
            thread.join(TIMEOUT * 3)
        assert not any(t.is_alive() for t in threads), "a reader was never woken"
        return outcomes

    return join


def in_fresh_thread(fn: Callable[[], Any]) -> tuple[Any, list[Any]]:
    box: list[Any] = []

    def run() -> None:
        try:
            fn()
        except mstls.Error as exc:
            box.append((exc, errors.errors()))
        else:
            box.append((None, []))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    return box[0]  # type: ignore[no-any-return]


def assert_replicated(outcomes: list[Any], exc_type: type, reason: errors.Reason) -> None:
    reference = [e.reason for e in outcomes[0][1]]
    assert reference[-1] is errors.Reason.CONNECTION_TERMINATED
    assert reason in reference
    for exc, entries in outcomes:
        assert isinstance(exc, exc_type), exc
        assert [e.reason for e in entries] == reference


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_replication_to_16_threads_on_peer_close(transport: str) -> None:
    with (
        server(silent, transport=transport) as (listener, server_conns),
        connect(listener.address[1], transport) as conn,
    ):
        join = blocked_readers(conn, 16)
        wait_for(lambda: bool(server_conns))
        server_conns[0].close(42, "maintenance")
        outcomes = join()
        assert_replicated(outcomes, mstls.ConnectionTerminated, errors.Reason.PEER_CLOSED)
        for exc, _ in outcomes:
            assert (exc.code, exc.reason, exc.by_peer, exc.is_application) == (
                42,
                "maintenance",
                True,
                True,
            )
        # A later call from a fresh thread gets the same entries.
        late = in_fresh_thread(conn.open_stream)
        assert_replicated([*outcomes, late], mstls.ConnectionTerminated, errors.Reason.PEER_CLOSED)


def vanish(listener: mstls.Listener, server_conns: list[mstls.Connection]) -> None:
    """The server stops answering without a word (its process froze or died)."""
    handlers = [listener._handler] if hasattr(listener, "_handler") else []
    handlers += [c._core.handler for c in server_conns]
    for handler in handlers:
        handler.closed = True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_replication_when_the_assist_thread_sees_an_idle_timeout(transport: str) -> None:
    with server(silent, transport=transport) as (listener, server_conns):
        conn = connect(listener.address[1], transport, config={"idle_timeout": 1.0})
        join = blocked_readers(conn, 4)
        vanish(listener, server_conns)
        outcomes = join()
    assert_replicated(outcomes, mstls.ConnectionTerminated, errors.Reason.IDLE_TIMEOUT)


def test_replication_of_a_stateless_reset_after_a_server_restart() -> None:
    key = StatelessResetKey.generate()
    extra = {"extra": {"stateless_reset_key": key}}
    with server(silent, **extra) as (listener, _):
        port = listener.address[1]
        conn = connect(port)
        join = blocked_readers(conn, 4)
        listener._handler.close_socket()  # the server process dies: no CONNECTION_CLOSE
    with server(silent, port=port, **extra):  # restarted with the same reset key
        with pytest.raises(mstls.ConnectionTerminated):
            for _ in range(100):
                conn.open_stream().write(b"anyone?")
                time.sleep(0.05)
        outcomes = join()
    assert_replicated(outcomes, mstls.ConnectionTerminated, errors.Reason.STATELESS_RESET)


# -- split directions (E5, E6) ------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_sending_fails_writes_only(transport: str) -> None:
    def stopper(stream: mstls.Stream) -> None:
        # The test's last stream may meet the client's close at any of these calls.
        with contextlib.suppress(mstls.ConnectionTerminated):
            stream.write(b"data before stop")
            stream.conclude()
            stream.stop_sending(7)

    with (
        server(stopper, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(b"hi")
        assert stream.read_exactly(16, timeout=TIMEOUT) == b"data before stop"
        errors.clear_error()
        with pytest.raises(mstls.StreamStopped) as info:
            for _ in range(1000):
                stream.write(b"more", timeout=TIMEOUT)
                time.sleep(0.01)
        assert info.value.code == 7
        assert [e.reason for e in errors.errors()] == [errors.Reason.STREAM_STOPPED]
        assert stream.read(timeout=TIMEOUT) == b""  # reads still work
        conn.open_stream().write(b"the connection is fine")  # E5: stream-only


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_fails_reads_only(transport: str) -> None:
    got: list[bytes] = []

    def resetter(stream: mstls.Stream) -> None:
        stream.write(b"partial")
        time.sleep(0.2)
        stream.reset(9)
        got.append(stream.read_exactly(6, timeout=TIMEOUT))

    with (
        server(resetter, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(b"x")
        assert stream.read_exactly(7, timeout=TIMEOUT) == b"partial"
        with pytest.raises(mstls.StreamReset) as info:
            stream.read(timeout=TIMEOUT)
        assert info.value.code == 9
        stream.write(b"still")  # writes still work after the peer's reset
        wait_for(lambda: bool(got))
        assert got == [b"xstill"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_received_data_is_read_before_a_failure(transport: str) -> None:
    """E6: data delivered before the connection failed is read first, then the error."""

    def send_then_close(conn: mstls.Connection) -> None:
        stream = conn.accept_stream(timeout=TIMEOUT)
        stream.write(b"last words")
        time.sleep(0.3)
        conn.close(5, "gone")

    with (
        server(on_connection=send_then_close, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(b"hi")
        wait_for(lambda: conn.sans_io.is_terminated or conn.sans_io.state is not State.ESTABLISHED)
        with pytest.raises(mstls.ConnectionTerminated):
            stream.write(b"x" * 100, timeout=TIMEOUT)  # the local write fails...
        assert stream.read(timeout=TIMEOUT) == b"last words"  # ...the data is still there
        with pytest.raises(mstls.ConnectionTerminated):
            stream.read(timeout=TIMEOUT)


# -- concurrency (C1) -----------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_handshake_race_reader_and_writer_1000_times(transport: str) -> None:
    """The Go handshakeCond test: a lazy handshake raced by a reader and a writer."""
    with server(transport=transport) as (listener, _):
        port = listener.address[1]
        for i in range(1000):
            conn = connect(port, transport, lazy=True)
            outcomes = race_once(conn, reader_first=bool(i % 2))
            assert outcomes == [None, None], outcomes
            conn.close()


def race_once(conn: mstls.Connection, *, reader_first: bool) -> list[Any]:
    box: list[mstls.Stream] = []
    opened = threading.Event()
    outcomes: list[Any] = [None, None]

    def reader() -> None:
        opened.wait(TIMEOUT)
        box[0].read(timeout=TIMEOUT)

    def writer() -> None:
        box.append(conn.open_stream(timeout=TIMEOUT))
        opened.set()
        box[0].write(b"ping", timeout=TIMEOUT)

    def run(i: int, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:
            outcomes[i] = exc

    order = [reader, writer] if reader_first else [writer, reader]
    threads = [threading.Thread(target=run, args=(i, f), daemon=True) for i, f in enumerate(order)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "deadlock"
    return outcomes


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_lost_wakeup_two_readers_both_wake_promptly(transport: str) -> None:
    """OpenSSL #24166: data for two blocked readers arrives; each wakes, neither times out."""
    release = threading.Event()

    def delayed_echo(stream: mstls.Stream) -> None:
        data = stream.read(timeout=TIMEOUT)
        release.wait(TIMEOUT)
        stream.write(data)

    with (
        server(delayed_echo, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        streams = [conn.open_stream() for _ in range(2)]
        for i, stream in enumerate(streams):
            stream.write(bytes([i]))
        times = [0.0, 0.0]

        def reader(i: int) -> None:
            streams[i].read(timeout=TIMEOUT)
            times[i] = time.monotonic()

        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        sent = time.monotonic()
        release.set()
        for thread in threads:
            thread.join(TIMEOUT)
        assert all(0 < t - sent < 2.0 for t in times), [t - sent for t in times]


# -- intermittent errors (E4) ------------------------------------------------------------------
def test_handshake_to_a_closed_port_is_one_timeout() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens: ICMP port unreachable answers every datagram
    errors.clear_error()
    with pytest.raises(mstls.ConnectionTerminated):
        mstls.connect("127.0.0.1", port, client_config(handshake_timeout=1.0), timeout=TIMEOUT)
    reasons = [e.reason for e in errors.errors()]
    assert reasons == [errors.Reason.HANDSHAKE_TIMEOUT, errors.Reason.CONNECTION_TERMINATED]


def test_icmp_unreachable_and_send_bursts_leave_no_entries() -> None:
    with server() as (listener, _), connect(listener.address[1]) as conn:
        errors.clear_error()
        handler = conn._core.handler
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
        closed.close()
        for _ in range(20):  # provoke ICMP port-unreachable on our socket
            handler.sock.sendto(b"\x40" + b"\0" * 40, ("127.0.0.1", dead_port))
        handler.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # force EAGAIN
        with conn.open_stream() as stream:
            payload = bytes(range(256)) * 8192  # 2 MiB in one burst
            stream.write(payload, timeout=TIMEOUT * 3)
            stream.conclude()
            assert stream.read_exactly(len(payload), timeout=TIMEOUT * 3) == payload
        assert errors.errors() == []


# -- modes and acknowledgements ----------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nonblocking_mode_raises_want_read(transport: str) -> None:
    with (
        server(silent, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        conn.blocking = False
        with pytest.raises(mstls.WantRead) as info:
            stream.read()
        assert errors.classify(info.value) is mstls.ErrorKind.WANT_READ


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wait_acknowledged(transport: str) -> None:
    with (
        server(silent, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(b"z" * 200_000)
        stream.wait_acknowledged(timeout=TIMEOUT)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_conclude_after_stop_sending_is_quiet(transport: str) -> None:
    """A server that answers and stops reading: the client's FIN is no error."""

    def answer_and_stop(stream: mstls.Stream) -> None:
        stream.read(timeout=TIMEOUT)
        stream.write(b"answer")
        stream.conclude()
        stream.stop_sending(0)

    with (
        server(answer_and_stop, transport=transport) as (listener, _),
        connect(listener.address[1], transport) as conn,
    ):
        stream = conn.open_stream()
        stream.write(b"question")
        assert stream.read_exactly(6, timeout=TIMEOUT) == b"answer"
        wait_for(lambda: stream.stream_id in conn._core.session._stopped)
        errors.clear_error()
        stream.conclude()  # the peer stopped reading: ending our side complies
        assert errors.errors() == []
        with pytest.raises(mstls.StreamStopped):
            stream.write(b"more")
