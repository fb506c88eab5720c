"""The blocking, thread-safe API over QUIC: the seeds' scenarios as tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

import mstls
from mstls import errors

from .helpers import TIMEOUT, client_config, server

pytestmark = pytest.mark.network

TRANSPORTS = ["udp"]


def connect(port: int, transport: str = "udp", **kw: Any) -> mstls.Connection:
    config = client_config(**kw.pop("config", {}))
    return mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT, **kw)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_echo_round_trip(transport: str) -> None:
    with server(transport=transport) as (listener, _), connect(listener.address[1]) as conn:
        assert conn.alpn == "mstls-test"
        assert conn.peer_certificate.common_name == "localhost"
        with conn.open_stream() as stream:
            stream.write(b"hello" * 10000)
            stream.conclude()
            assert stream.read_exactly(50000, timeout=TIMEOUT) == b"hello" * 10000
            assert stream.read(timeout=TIMEOUT) == b""
            assert stream.read(timeout=TIMEOUT) == b""  # FIN stays FIN


def run_threads(target: Any, count: int) -> list[Any]:
    results: list[Any] = [None] * count

    def wrapper(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=wrapper, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a thread is still blocked"
    return results


def blocked_readers(conn: mstls.Connection, count: int) -> tuple[list[Any], Any]:
    """``count`` threads each blocked reading its own stream; returns their outcomes later."""
    streams = []
    for _ in range(count):
        stream = conn.open_stream()
        stream.write(b"x")  # the server sees the stream (and does not answer)
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
            outcomes[i] = "returned"

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    ready.wait()
    time.sleep(0.2)  # everyone is blocked in read()

    def join() -> list[Any]:
        for thread in threads:
            thread.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads), "a reader was never woken"
        return outcomes

    return outcomes, join


def silent(stream: mstls.Stream) -> None:
    """A server stream handler that reads and never answers."""
    try:
        while stream.read(timeout=TIMEOUT * 3):
            pass
    except mstls.Error:
        pass


def test_replication_to_16_threads_on_peer_close() -> None:
    with server(silent) as (listener, server_conns), connect(listener.address[1]) as conn:
        _, join = blocked_readers(conn, 16)
        deadline = time.monotonic() + TIMEOUT
        while not server_conns:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server_conns[0].close(42, "maintenance")
        outcomes = join()
    first_exc, first_entries = outcomes[0]
    for exc, entries in outcomes:
        assert isinstance(exc, mstls.ConnectionTerminated)
        assert (exc.code, exc.reason, exc.by_peer, exc.is_application) == (
            42,
            "maintenance",
            True,
            True,
        )
        assert [e.reason for e in entries] == [e.reason for e in first_entries]
        assert entries[-1].reason is errors.Reason.CONNECTION_TERMINATED
    # A fresh thread later gets the same entries.
    [(late_exc, late_entries)] = run_threads(lambda i: _late_read(conn), 1)
    assert isinstance(late_exc, mstls.ConnectionTerminated)
    assert [e.reason for e in late_entries] == [e.reason for e in first_entries]


def _late_read(conn: mstls.Connection) -> tuple[Any, Any]:
    try:
        conn.open_stream()
    except mstls.Error as exc:
        return exc, errors.errors()
    return None, []


def test_replication_when_the_assist_thread_sees_an_idle_timeout() -> None:
    with server(silent) as (listener, _):
        conn = connect(listener.address[1], config={"idle_timeout": 1.0})
        _, join = blocked_readers(conn, 4)
        listener._handler.closed = True  # the server vanishes without a word
        outcomes = join()
    for exc, entries in outcomes:
        assert isinstance(exc, mstls.ConnectionTerminated)
        assert any(e.reason is errors.Reason.IDLE_TIMEOUT for e in entries)
        assert entries[-1].reason is errors.Reason.CONNECTION_TERMINATED


def test_split_directions_stop_sending_fails_writes_only() -> None:
    def stopper(stream: mstls.Stream) -> None:
        stream.write(b"data before stop")
        stream.conclude()
        stream.stop_sending(7)

    with server(stopper) as (listener, _), connect(listener.address[1]) as conn:
        stream = conn.open_stream()
        stream.write(b"hi")
        assert stream.read_exactly(16, timeout=TIMEOUT) == b"data before stop"
        with pytest.raises(mstls.StreamStopped) as info:
            for _ in range(1000):
                stream.write(b"more", timeout=TIMEOUT)
                time.sleep(0.01)
        assert info.value.code == 7
        assert stream.read(timeout=TIMEOUT) == b""  # reads still work


def test_split_directions_reset_fails_reads_only() -> None:
    got: list[bytes] = []

    def resetter(stream: mstls.Stream) -> None:
        stream.write(b"partial")
        time.sleep(0.2)
        stream.reset(9)
        got.append(stream.read_exactly(6, timeout=TIMEOUT))

    with server(resetter) as (listener, _), connect(listener.address[1]) as conn:
        stream = conn.open_stream()
        stream.write(b"x")
        assert stream.read_exactly(7, timeout=TIMEOUT) == b"partial"
        with pytest.raises(mstls.StreamReset) as info:
            stream.read(timeout=TIMEOUT)
        assert info.value.code == 9
        stream.write(b"still")  # writes still work after the peer's reset
        deadline = time.monotonic() + TIMEOUT
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [b"xstill"]


def test_handshake_race_reader_and_writer_1000_times() -> None:
    """The Go handshakeCond test: a lazy handshake raced by a reader and a writer."""
    with server() as (listener, _):
        port = listener.address[1]
        for i in range(1000 if not _slow() else 200):
            conn = connect(port, lazy=True)
            stream_box: list[mstls.Stream] = []
            opened = threading.Event()

            def reader(conn: mstls.Connection = conn) -> None:
                opened.wait(TIMEOUT)
                stream_box[0].read(timeout=TIMEOUT)

            def writer(conn: mstls.Connection = conn) -> None:
                stream_box.append(conn.open_stream())
                opened.set()
                stream_box[0].write(b"ping", timeout=TIMEOUT)

            order = [reader, writer] if i % 2 else [writer, reader]
            results = run_threads(lambda k: order[k](), 2)
            assert all(r is None for r in results), results
            conn.close()


def _slow() -> bool:
    return False


def test_lost_wakeup_two_readers_both_wake_promptly() -> None:
    """OpenSSL #24166: data for two blocked readers arrives; each wakes, neither times out."""
    release = threading.Event()

    def delayed_echo(stream: mstls.Stream) -> None:
        data = stream.read(timeout=TIMEOUT)
        release.wait(TIMEOUT)
        stream.write(data)

    with server(delayed_echo) as (listener, _), connect(listener.address[1]) as conn:
        streams = [conn.open_stream() for _ in range(2)]
        for i, stream in enumerate(streams):
            stream.write(bytes([i]))
        times: list[float] = [0.0, 0.0]

        def reader(i: int) -> bytes:
            data = streams[i].read(timeout=TIMEOUT)
            times[i] = time.monotonic()
            return data

        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        sent = time.monotonic()
        release.set()
        for thread in threads:
            thread.join(TIMEOUT)
        assert all(0 < t - sent < 2.0 for t in times), [t - sent for t in times]


def test_handshake_to_a_closed_port_is_one_timeout() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens: ICMP port unreachable answers every datagram
    errors.clear_error()
    with pytest.raises(mstls.ConnectionTerminated) as info:
        mstls.connect("127.0.0.1", port, client_config(handshake_timeout=1.0), timeout=TIMEOUT)
    entries = errors.errors()
    assert [e.reason for e in entries] == [
        errors.Reason.HANDSHAKE_TIMEOUT,
        errors.Reason.CONNECTION_TERMINATED,
    ]
    assert "ECONNREFUSED" not in " ".join(str(e.reason) for e in entries)
    assert info.value.code is not None


def test_nonblocking_mode_raises_want_read() -> None:
    with server(silent) as (listener, _), connect(listener.address[1]) as conn:
        stream = conn.open_stream()
        conn.blocking = False
        with pytest.raises(mstls.WantRead):
            stream.read()
        assert errors.classify(mstls.WantRead("x")) is mstls.ErrorKind.WANT_READ


def test_wait_acknowledged() -> None:
    with server(silent) as (listener, _), connect(listener.address[1]) as conn:
        stream = conn.open_stream()
        stream.write(b"z" * 200_000)
        stream.wait_acknowledged(timeout=TIMEOUT)
