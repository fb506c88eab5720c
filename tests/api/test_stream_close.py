"""Issue 11 over the blocking API: :meth:`mstls.Stream.close` (and ``with stream``)
forgets the stream, so sequential streams leave no per-stream state behind even when
they end abnormally (the peer's reset, a response left unread), and the peer's stream
credit comes back (RFC 9000 §4.6).  127.0.0.1 only."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import mstls
from mstls.exceptions import StreamReset, StreamStateError, StreamStopped

from .helpers import TIMEOUT, client_config, server

TRANSPORTS = ["udp", "tcp"]
#: Sequential streams per connection, as in tests/quic/test_stream_scale.py.
CHURN = 10_000
#: Sequential streams of the abnormal variants: far above the server's default stream
#: limit (128), which leaked streams would exhaust.
VARIANT_STREAMS = 600
REQUEST = b"q" * 1024
RESPONSE = b"r" * 1024
RESET_CODE = 7


def _serve(how: str) -> Callable[[mstls.Connection], None]:
    """Serve streams one after another in one thread: read the request to its end,
    then answer (``end=True``), or reset the stream (``how == "reset"``)."""

    def run(conn: mstls.Connection) -> None:
        try:
            while True:
                with conn.accept_stream(timeout=TIMEOUT) as stream:
                    try:
                        while stream.read(timeout=TIMEOUT):
                            pass
                        if how == "reset":
                            stream.reset(RESET_CODE)
                        else:
                            stream.write(RESPONSE, timeout=TIMEOUT, end=True)
                    except (StreamStopped, StreamReset):
                        mstls.errors.clear_error()  # this stream only (E5): serve the next
        except mstls.Error:
            pass

    return run


@contextmanager
def _connected(transport: str, how: str) -> Iterator[tuple[mstls.Connection, list[Any]]]:
    with server(transport=transport, on_connection=_serve(how)) as (listener, server_conns):
        conn = mstls.connect(
            "127.0.0.1", listener.address[1], client_config(), transport=transport, timeout=TIMEOUT
        )
        with conn:
            yield conn, server_conns


def _one_stream(conn: mstls.Connection, how: str) -> None:
    with conn.open_stream(timeout=TIMEOUT) as stream:
        stream.write(REQUEST, timeout=TIMEOUT, end=True)
        if how == "read":
            assert stream.read_exactly(len(RESPONSE), timeout=TIMEOUT) == RESPONSE
            assert stream.read(timeout=TIMEOUT) == b""
        elif how == "reset":
            with pytest.raises(StreamReset):
                while stream.read(timeout=TIMEOUT):
                    pass
        # "unread": closed at once, the response left unread (STOP_SENDING)


def _state(conn: mstls.Connection) -> dict[str, int]:
    core = conn._core
    return {
        "session entries": core.session.tracked_streams,
        "streams": len(core.conn.streams._streams),
        "waiters": len(core.waiters._streams),
    }


def _settled(conns: list[mstls.Connection], bound: int) -> dict[str, int]:
    """Each side's per-stream state once it is at most ``bound`` (or the last seen)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        gc.collect()
        seen = {
            f"{side} {name}": n
            for side, c in zip(("client", "server"), conns, strict=True)
            for name, n in _state(c).items()
        }
        if max(seen.values()) <= bound or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_10k_sequential_streams_leave_no_state(transport: str) -> None:
    with _connected(transport, "read") as (conn, server_conns):
        for _ in range(CHURN):
            _one_stream(conn, "read")
        state = _settled([conn, server_conns[0]], 2)
        assert max(state.values()) <= 2, state


@pytest.mark.network
@pytest.mark.parametrize("how", ["reset", "unread"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_abnormal_ends_are_forgotten_on_close(transport: str, how: str) -> None:
    """Far more streams than the peer's limit: each closed stream gives its credit
    back, and nothing is kept for the resets or the unread responses."""
    with _connected(transport, how) as (conn, server_conns):
        for _ in range(VARIANT_STREAMS):
            _one_stream(conn, how)
        state = _settled([conn, server_conns[0]], 2)
        assert max(state.values()) <= 2, state


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_closed_stream_refuses_later_calls(transport: str) -> None:
    with _connected(transport, "read") as (conn, _):
        stream = conn.open_stream(timeout=TIMEOUT)
        stream.write(REQUEST, timeout=TIMEOUT, end=True)
        assert stream.read_exactly(len(RESPONSE), timeout=TIMEOUT) == RESPONSE
        stream.close()
        stream.close()  # a second close does nothing
        for call in (
            lambda: stream.read(timeout=TIMEOUT),
            lambda: stream.write(b"x", timeout=TIMEOUT),
            stream.conclude,
            lambda: stream.reset(1),
        ):
            with pytest.raises(StreamStateError):
                call()
        mstls.errors.clear_error()


@pytest.mark.network
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_wakes_a_thread_waiting_on_the_stream(transport: str) -> None:
    with _connected(transport, "read") as (conn, _):
        stream = conn.open_stream(timeout=TIMEOUT)
        stream.write(b"", timeout=TIMEOUT)  # nothing sent: the server waits for the end
        raised: list[BaseException] = []

        def reader() -> None:
            try:
                stream.read(timeout=TIMEOUT)
            except mstls.Error as exc:
                raised.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.1)
        stream.close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert raised and isinstance(raised[0], StreamStateError)
