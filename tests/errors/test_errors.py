"""The error model (rules E1-E9): queues per thread and per trio task, the
connection's channel replicated to every caller, intermittent conditions that
leave nothing, stream errors that stay local, split directions, and a
classification that never reads a queue."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls import errors
from mstls.codes import AlertDescription, TransportErrorCode
from mstls.core.events import ConnectionTerminatedEvent
from mstls.errors import Channel, DirectionErrors, ErrorEntry, ErrorKind, Lib, Reason
from mstls.exceptions import (
    CertificateError,
    ConnectionIOError,
    ConnectionTerminated,
    Error,
    HandshakeAlert,
    HandshakeError,
    PeerAlert,
    PrematureClose,
    ProtocolError,
    StreamReset,
    StreamStopped,
    Timeout,
    WantRead,
    WantWrite,
)

THREADS = 16


@pytest.fixture(autouse=True)
def _clean_queue() -> None:
    errors.clear_error()


def _entry(text: str, reason: Reason = Reason.INTERNAL) -> ErrorEntry:
    return ErrorEntry(Lib.API, reason, text)


def _texts() -> list[str]:
    return [entry.reason_text for entry in errors.errors()]


def _run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads that start together; re-raise failures."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def main(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    if failures:
        raise failures[0]
    return results


# -- E1: the ERR-style queue -------------------------------------------------------------------
def test_queue_api_in_order() -> None:
    assert errors.get_error() is None and errors.peek_error() is None
    assert errors.peek_last_error() is None
    first = errors.record(Lib.QUIC, Reason.PROTOCOL_VIOLATION, "bad frame", code=0x0A)
    errors.put_error(_entry("second"))
    errors.put_errors([_entry("third"), _entry("fourth")])
    assert errors.peek_error() is first
    assert errors.peek_last_error() == _entry("fourth")
    assert _texts() == ["bad frame", "second", "third", "fourth"]
    assert errors.get_error() is first
    assert _texts() == ["second", "third", "fourth"]
    errors.clear_error()
    assert errors.errors() == [] and errors.get_error() is None


def test_record_fills_defaults_and_where() -> None:
    entry = errors.record(Lib.STREAM, Reason.STREAM_RESET, detail="stream 4", code=7)
    assert entry.reason_text == Reason.STREAM_RESET.value
    assert entry.where.startswith("test_errors.py:")
    assert entry.where.endswith("in test_record_fills_defaults_and_where")
    assert (entry.lib, entry.code, entry.detail) == (Lib.STREAM, 7, "stream 4")


def test_queue_is_bounded_oldest_dropped() -> None:
    for i in range(errors.QUEUE_LIMIT + 5):
        errors.put_error(_entry(str(i)))
    texts = _texts()
    assert len(texts) == errors.QUEUE_LIMIT
    assert texts[0] == "5" and texts[-1] == str(errors.QUEUE_LIMIT + 4)


def test_print_errors_format_and_clears() -> None:
    errors.put_error(
        ErrorEntry(Lib.QUIC, Reason.PEER_CLOSED, "closed by peer", "code=0x7", "x.py:1 in f", 7)
    )
    errors.put_error(ErrorEntry(Lib.TLS, Reason.TLS_ALERT, "alert", "", "y.py:2 in g"))
    out = io.StringIO()
    errors.print_errors(out)
    owner = f"{threading.get_ident():x}"
    assert out.getvalue().splitlines() == [
        f"{owner}:error:quic:PEER_CLOSED:x.py:1 in f:closed by peer: code=0x7",
        f"{owner}:error:tls:TLS_ALERT:y.py:2 in g:alert",
    ]
    assert errors.errors() == []


def test_print_errors_defaults_to_stderr_at_call_time(capsys: pytest.CaptureFixture[str]) -> None:
    errors.record(Lib.API, Reason.TIMEOUT)
    errors.print_errors()
    captured = capsys.readouterr()
    assert ":error:api:TIMEOUT:" in captured.err and captured.out == ""


# -- E1: isolation between threads and trio tasks ------------------------------------------------
def test_threads_never_see_each_others_entries() -> None:
    errors.put_error(_entry("main"))

    def work(i: int) -> list[str]:
        seen_at_start = _texts()
        for n in range(3):
            errors.put_error(_entry(f"t{i}-{n}"))
        return [*seen_at_start, "|", *_texts()]

    results = _run_threads(THREADS, work)
    for i, seen in enumerate(results):
        assert seen == ["|", f"t{i}-0", f"t{i}-1", f"t{i}-2"]
    assert _texts() == ["main"]


def test_thread_running_a_copied_context_gets_its_own_queue() -> None:
    """Executors and trio.to_thread copy the caller's context into a worker."""
    errors.put_error(_entry("caller"))
    ctx = contextvars.copy_context()

    def in_worker() -> list[str]:
        before = _texts()
        errors.put_error(_entry("worker"))
        return before + _texts()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(ctx.run, in_worker).result() == ["worker"]
    assert _texts() == ["caller"]


async def test_trio_tasks_never_see_each_others_entries() -> None:
    errors.put_error(_entry("parent"))
    seen: dict[str, list[str]] = {}
    both_recorded = trio.Event()
    count = 0

    async def child(name: str) -> None:
        nonlocal count
        seen[name + "-start"] = _texts()
        errors.put_error(_entry(name))
        count += 1
        if count == 2:
            both_recorded.set()
        await both_recorded.wait()  # both tasks hold entries at the same time
        seen[name] = _texts()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child, "a")
        nursery.start_soon(child, "b")
    assert seen == {"a-start": [], "b-start": [], "a": ["a"], "b": ["b"]}
    assert _texts() == ["parent"]


async def test_trio_to_thread_worker_has_its_own_queue() -> None:
    errors.put_error(_entry("task"))

    def in_thread() -> list[str]:
        before = _texts()
        errors.put_error(_entry("thread"))
        return before + _texts()

    assert await trio.to_thread.run_sync(in_thread) == ["thread"]
    assert _texts() == ["task"]


def test_asyncio_tasks_are_isolated_too() -> None:
    async def child(name: str) -> list[str]:
        before = _texts()
        errors.put_error(_entry(name))
        await asyncio.sleep(0)
        return before + _texts()

    async def main() -> list[list[str]]:
        errors.put_error(_entry("parent"))
        results = await asyncio.gather(child("a"), child("b"))
        return [*results, _texts()]

    assert asyncio.run(main()) == [["a"], ["b"], ["parent"]]


# -- E2/E3: the channel ------------------------------------------------------------------------
def _failed_channel() -> tuple[Channel, list[ErrorEntry]]:
    """A channel failed from another thread (the "assist" thread) with two entries."""
    channel = Channel()

    def assist() -> list[ErrorEntry]:
        errors.record(Lib.QUIC, Reason.PROTOCOL_VIOLATION, "bad ACK range", code=0x0A)
        errors.record(Lib.QUIC, Reason.LOCAL_CLOSED, "closing with PROTOCOL_VIOLATION")
        recorded = errors.errors()
        error = ConnectionTerminated(0x0A, "bad ACK range", by_peer=False)
        assert channel.fail(None, error)
        assert errors.errors() == []  # moved, not copied
        return recorded

    return channel, _run_threads(1, lambda _: assist())[0]


def test_channel_replicates_to_every_thread() -> None:
    channel, recorded = _failed_channel()
    assert channel.failed and list(channel.entries) == recorded

    def call(i: int) -> tuple[Error, list[ErrorEntry]]:
        with pytest.raises(ConnectionTerminated) as info:
            channel.raise_if_failed(f"read{i}")
        return info.value, errors.errors()

    results = _run_threads(THREADS, call)
    raised = [exc for exc, _ in results]
    assert len({id(exc) for exc in raised}) == THREADS  # a fresh instance per raise
    for i, (exc, entries) in enumerate(results):
        assert (exc.code, exc.reason, exc.by_peer) == (0x0A, "bad ACK range", False)
        assert entries[:-1] == recorded
        last = entries[-1]
        assert last.reason is Reason.CONNECTION_TERMINATED and last.code == 0x0A
        assert last.reason_text == f"read{i}: connection terminated"
        assert last.where.startswith("test_errors.py:") and last.where.endswith(" in call")
    assert list(channel.entries) == recorded  # still there for later calls

    # a thread that comes later sees the same
    later = _run_threads(1, call)[0][1]
    assert later[:-1] == recorded


def test_blocked_threads_all_wake_with_the_same_entries() -> None:
    channel = Channel()
    cond = threading.Condition()
    waiting = 0

    def blocked_reader(i: int) -> list[ErrorEntry]:
        nonlocal waiting
        with cond:
            waiting += 1
            cond.notify_all()
            cond.wait_for(lambda: channel.failed, timeout=10)
        with pytest.raises(ConnectionTerminated):
            channel.raise_if_failed(f"read stream {4 * i}")
        return errors.errors()[:-1]

    def timer_thread() -> None:
        with cond:
            cond.wait_for(lambda: waiting == THREADS, timeout=10)
            errors.record(Lib.QUIC, Reason.IDLE_TIMEOUT, "idle timeout after 30.0 s")
            channel.fail(None, ConnectionTerminated(0, "idle timeout after 30.0 s"))
            cond.notify_all()

    timer = threading.Thread(target=timer_thread)
    timer.start()
    results = _run_threads(THREADS, blocked_reader)
    timer.join(10)
    assert all(entries == list(channel.entries) for entries in results)
    assert [e.reason for e in channel.entries] == [Reason.IDLE_TIMEOUT]


async def test_channel_replicates_to_trio_tasks() -> None:
    channel, recorded = _failed_channel()
    got: list[list[ErrorEntry]] = []

    async def reader() -> None:
        with pytest.raises(ConnectionTerminated):
            channel.raise_if_failed("read")
        got.append(errors.errors())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(reader)
    assert len(got) == 3 and all(entries[:-1] == recorded for entries in got)
    assert errors.errors() == []  # the parent task called nothing


def test_first_failure_wins_and_later_entries_are_dropped() -> None:
    channel = Channel()
    errors.record(Lib.QUIC, Reason.PEER_CLOSED, "first")
    assert channel.fail(None, ConnectionTerminated(1, "first", by_peer=True))
    errors.record(Lib.SYS, Reason.SYSCALL, "second")
    assert not channel.fail([_entry("given")], ConnectionIOError("second"))
    assert errors.errors() == []
    assert [e.reason_text for e in channel.entries] == ["first"]
    with pytest.raises(ConnectionTerminated) as info:
        channel.raise_if_failed("write")
    assert type(info.value) is ConnectionTerminated and info.value.reason == "first"


def test_fail_moves_queue_then_given_entries_or_describes_the_error() -> None:
    channel = Channel()
    errors.put_error(_entry("from the queue"))
    channel.fail([_entry("given")], ConnectionTerminated(0, "x"))
    assert [e.reason_text for e in channel.entries] == ["from the queue", "given"]

    bare = Channel(Lib.QMUX)
    bare.fail(None, PrematureClose("TCP FIN", bytes_received=5))
    (entry,) = bare.entries
    assert entry.reason is Reason.PREMATURE_CLOSE and "TCP FIN" in entry.reason_text
    assert entry.where.endswith(
        " in test_fail_moves_queue_then_given_entries_or_describes_the_error"
    )


def test_channel_accepts_a_factory_and_never_raises_one_object_twice() -> None:
    channel = Channel()
    assert not channel.failed and channel.exception() is None
    channel.raise_if_failed("read")  # not failed: nothing happens
    assert errors.errors() == []
    made: list[Error] = []

    def factory() -> Error:
        made.append(ConnectionTerminated(7, "bye", by_peer=True, is_application=True))
        return made[-1]

    channel.fail([_entry("peer closed")], factory)
    raised = []
    for _ in range(2):
        with pytest.raises(ConnectionTerminated) as info:
            channel.raise_if_failed("read")
        raised.append(info.value)
    assert raised[0] is not raised[1] and all(e in made for e in raised)
    prototype = ConnectionTerminated(1, "x")
    other = Channel()
    other.fail(None, prototype)
    with pytest.raises(ConnectionTerminated) as info:
        other.raise_if_failed("read")
    assert info.value is not prototype and prototype.__traceback__ is None


# -- E4: intermittent conditions -----------------------------------------------------------------
def test_intermittent_leaves_nothing_on_success() -> None:
    errors.put_error(_entry("before"))
    with errors.intermittent():
        errors.record(Lib.SYS, Reason.WANT_WRITE, "sendmsg: EAGAIN", code=errno.EAGAIN)
        with errors.intermittent():
            errors.record(Lib.SYS, Reason.SYSCALL, "recvmsg: ECONNREFUSED (ICMP)")
        errors.record(Lib.TLS, Reason.INTERNAL, "X448 unavailable, trying X25519")
    assert _texts() == ["before"]


def test_intermittent_drops_entries_when_the_call_would_block() -> None:
    for retry in (WantRead("x"), WantWrite("x"), Timeout(), BlockingIOError(errno.EAGAIN, "")):
        with pytest.raises(type(retry)), errors.intermittent():
            errors.record(Lib.SYS, Reason.WANT_READ, "EAGAIN")
            raise retry
        assert errors.errors() == []


def test_intermittent_keeps_entries_that_explain_a_failure() -> None:
    with pytest.raises(ConnectionIOError), errors.intermittent():
        errors.record(Lib.SYS, Reason.SYSCALL, "EBADF")
        raise ConnectionIOError("socket closed", errno=errno.EBADF)
    assert _texts() == ["EBADF"]


def test_intermittent_when_the_queue_overflows() -> None:
    errors.put_error(_entry("before"))
    with errors.intermittent():
        for _ in range(errors.QUEUE_LIMIT * 2):
            errors.record(Lib.SYS, Reason.WANT_WRITE, "ENOBUFS")
    assert errors.errors() == []  # the oldest was pushed out; nothing new stays


@pytest.mark.parametrize(
    ("code", "datagram", "expected"),
    [
        (errno.EAGAIN, False, "intermittent"),
        (errno.EWOULDBLOCK, False, "intermittent"),
        (errno.EINTR, False, "intermittent"),
        (errno.ENOBUFS, False, "intermittent"),
        (errno.ECONNREFUSED, True, "intermittent"),
        (errno.ECONNRESET, True, "intermittent"),
        (errno.EHOSTUNREACH, True, "intermittent"),
        (errno.EMSGSIZE, True, "intermittent"),
        (errno.ECONNREFUSED, False, "fatal"),
        (errno.ECONNRESET, False, "fatal"),
        (errno.EPIPE, False, "fatal"),
        (errno.EBADF, True, "fatal"),
        (errno.EINVAL, True, "fatal"),
    ],
)
def test_classify_os_error(code: int, datagram: bool, expected: str) -> None:
    exc = OSError(code, "x")
    assert errors.classify_os_error(exc, datagram=datagram) == expected


def test_classify_os_error_without_errno() -> None:
    assert errors.classify_os_error(BlockingIOError()) == "intermittent"
    assert errors.classify_os_error(OSError("?")) == "fatal"


# -- E5: stream errors stay local ----------------------------------------------------------------
def test_stream_errors_land_only_in_the_callers_queue() -> None:
    channel = Channel()

    def reader(i: int) -> tuple[Error | None, list[ErrorEntry]]:
        if i == 0:
            exc: Error = errors.stream_error("reset", 7, 4)
            return exc, errors.errors()
        if i == 1:
            exc = errors.stream_error("stopped", 9, 8)
            return exc, errors.errors()
        channel.raise_if_failed("read")
        return None, errors.errors()

    (reset, reset_entries), (stop, stop_entries), *others = _run_threads(4, reader)
    assert isinstance(reset, StreamReset) and (reset.code, reset.stream_id) == (7, 4)
    assert isinstance(stop, StreamStopped) and (stop.code, stop.stream_id) == (9, 8)
    assert [(e.lib, e.reason, e.code) for e in reset_entries] == [
        (Lib.STREAM, Reason.STREAM_RESET, 7)
    ]
    assert reset_entries[0].where.startswith("test_errors.py:")
    assert reset_entries[0].where.endswith(" in reader")
    assert [e.reason for e in stop_entries] == [Reason.STREAM_STOPPED]
    assert others == [(None, []), (None, [])]
    assert not channel.failed and errors.errors() == []


# -- E6: read and write fail apart -------------------------------------------------------------
def test_reset_fails_reads_only_and_stop_fails_writes_only() -> None:
    reset_side = DirectionErrors()
    assert reset_side.fail_read(StreamReset(7, stream_id=4))
    reset_side.check_write()
    with pytest.raises(StreamReset):
        reset_side.check_read()

    stopped_side = DirectionErrors()
    assert stopped_side.fail_write(StreamStopped(9, stream_id=4))
    stopped_side.check_read()
    with pytest.raises(StreamStopped) as info:
        stopped_side.check_write("flush")
    assert info.value.code == 9
    assert [e.reason for e in errors.errors()] == [Reason.STREAM_RESET, Reason.STREAM_STOPPED]


def test_first_error_per_side_wins_and_every_raise_is_fresh_and_recorded() -> None:
    sides = DirectionErrors()
    first = StreamReset(1)
    assert sides.fail_read(first) and not sides.fail_read(StreamReset(2))
    raised = []
    for _ in range(3):
        with pytest.raises(StreamReset) as info:
            sides.check_read()
        raised.append(info.value)
    assert {e.code for e in raised} == {1} and len({id(e) for e in raised}) == 3
    assert first not in raised and sides.read_error is first
    entries = errors.errors()
    assert len(entries) == 3
    assert entries[0].where.endswith(
        " in test_first_error_per_side_wins_and_every_raise_is_fresh_and_recorded"
    )


def test_handshake_error_fails_both_directions() -> None:
    sides = DirectionErrors()
    error = CertificateError(AlertDescription.bad_certificate, "name mismatch")
    assert sides.fail_handshake(error)
    assert not sides.fail_handshake(HandshakeError(AlertDescription.internal_error, "x"))
    for check in (sides.check_read, sides.check_write):
        with pytest.raises(CertificateError):
            check()
    assert sides.read_error is None and sides.write_error is None
    assert sides.handshake_error is error


def test_connection_failure_comes_before_the_sides() -> None:
    channel = Channel()
    sides = DirectionErrors(channel)
    sides.fail_read(StreamReset(7))
    channel.fail([_entry("peer closed", Reason.PEER_CLOSED)], ConnectionTerminated(0, "bye"))
    for check in (sides.check_read, sides.check_write):
        with pytest.raises(ConnectionTerminated):
            check()
    assert [e.reason for e in errors.errors()] == [
        Reason.PEER_CLOSED,
        Reason.CONNECTION_TERMINATED,
    ] * 2


def test_buffered_data_is_returned_before_the_read_error() -> None:
    """The documented rule: the driver drains what was delivered, then checks."""
    buffered = bytearray(b"delivered before the reset")
    sides = DirectionErrors()
    sides.fail_read(StreamReset(7))
    sides.fail_write(StreamStopped(8))  # a write failure never touches received data

    def read(n: int) -> bytes:
        if buffered:
            chunk = bytes(buffered[:n])
            del buffered[:n]
            return chunk
        sides.check_read()
        raise AssertionError("unreachable")

    assert read(9) + read(100) == b"delivered before the reset"
    with pytest.raises(StreamReset):
        read(1)


# -- E7: classification ------------------------------------------------------------------------
CLASSIFIED: list[tuple[BaseException | None, ErrorKind]] = [
    (None, ErrorKind.NONE),
    (WantRead("x"), ErrorKind.WANT_READ),
    (WantWrite("x"), ErrorKind.WANT_WRITE),
    (Timeout(writing=True), ErrorKind.WANT_WRITE),
    (StreamReset(1), ErrorKind.STREAM_RESET),
    (ConnectionTerminated(0, "x"), ErrorKind.CONNECTION_CLOSED),
    (PrematureClose("x"), ErrorKind.SYSCALL),
    (HandshakeError(AlertDescription.handshake_failure, "x"), ErrorKind.SSL),
    (ProtocolError("x"), ErrorKind.SSL),
    (BlockingIOError(), ErrorKind.WANT_READ),
    (TimeoutError(), ErrorKind.WANT_READ),
    (ConnectionResetError(), ErrorKind.SYSCALL),
    (ValueError(), ErrorKind.SSL),
]


@pytest.mark.parametrize(("outcome", "kind"), CLASSIFIED)
def test_classify(outcome: BaseException | None, kind: ErrorKind) -> None:
    assert errors.classify(outcome) is kind


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        (b"", ErrorKind.ZERO_RETURN),
        (b"data", ErrorKind.NONE),
        (memoryview(b""), ErrorKind.ZERO_RETURN),
        (0, ErrorKind.ZERO_RETURN),
        (5, ErrorKind.NONE),
        (None, ErrorKind.WANT_READ),
        (StreamReset(3), ErrorKind.STREAM_RESET),
    ],
)
def test_classify_read(result: Any, kind: ErrorKind) -> None:
    assert errors.classify_read(result) is kind


junk_entries = st.lists(
    st.builds(
        ErrorEntry,
        st.sampled_from(Lib),
        st.sampled_from(Reason),
        st.text(max_size=20),
        st.text(max_size=20),
        st.text(max_size=10),
        st.none() | st.integers(0, 2**62 - 1),
    ),
    max_size=errors.QUEUE_LIMIT,
)


@settings(max_examples=200, deadline=None)
@given(junk=junk_entries, case=st.sampled_from(CLASSIFIED))
def test_classification_never_depends_on_queue_contents(
    junk: list[ErrorEntry], case: tuple[BaseException | None, ErrorKind]
) -> None:
    outcome, kind = case
    errors.clear_error()
    errors.put_errors(junk)
    assert errors.classify(outcome) is kind
    assert errors.classify_read(b"") is ErrorKind.ZERO_RETURN
    assert errors.errors() == junk  # and classification does not touch the queue


# -- entries for exceptions ------------------------------------------------------------------------
def test_recorded_and_timeout_error() -> None:
    exc = WantRead("read would block")
    assert errors.recorded(exc) is exc
    timeout = errors.timeout_error("accept", 2.5)
    assert isinstance(timeout, Timeout) and str(timeout) == "accept timed out after 2.5 s"
    assert all(e.where.endswith(" in test_recorded_and_timeout_error") for e in errors.errors())
    assert [(e.reason, e.reason_text) for e in errors.errors()] == [
        (Reason.WANT_READ, "read would block"),
        (Reason.TIMEOUT, "accept timed out after 2.5 s"),
    ]


@pytest.mark.parametrize(
    ("exc", "lib", "reason", "code"),
    [
        (StreamStopped(9), Lib.STREAM, Reason.STREAM_STOPPED, 9),
        (
            CertificateError(AlertDescription.unknown_ca, "x"),
            Lib.TLS,
            Reason.CERTIFICATE_VERIFY_FAILED,
            0x130,
        ),
        (PeerAlert(AlertDescription.decode_error, "x"), Lib.TLS, Reason.TLS_ALERT, 0x132),
        (ProtocolError("x", error_code=3), Lib.QUIC, Reason.PROTOCOL_VIOLATION, 3),
        (ConnectionTerminated(7, "x", by_peer=True), Lib.QUIC, Reason.PEER_CLOSED, 7),
        (ConnectionTerminated(0, "x"), Lib.QUIC, Reason.LOCAL_CLOSED, 0),
        (ConnectionIOError("x", errno=9), Lib.SYS, Reason.SYSCALL, 1),
        (OSError(errno.EBADF, "x"), Lib.SYS, Reason.SYSCALL, errno.EBADF),
        (KeyError("x"), Lib.API, Reason.INTERNAL, None),
    ],
)
def test_entry_for(exc: BaseException, lib: Lib, reason: Reason, code: int | None) -> None:
    entry = errors.entry_for(exc)
    assert (entry.lib, entry.reason, entry.code) == (lib, reason, code)
    assert entry.reason_text == str(exc) and entry.detail == type(exc).__name__


# -- terminated_from_event -------------------------------------------------------------------------
def _event(
    kind: str = "close",
    code: int = 0,
    reason: str = "",
    *,
    by_peer: bool = True,
    application: bool = False,
    frame_type: int | None = None,
) -> ConnectionTerminatedEvent:
    return ConnectionTerminatedEvent(code, frame_type, reason, by_peer, application, kind)


#: (event, keyword arguments, exception type, entry reason, entry text, library)
MAPPINGS: list[tuple[ConnectionTerminatedEvent, dict[str, Any], type[Error], Reason, str, Lib]] = [
    (
        _event(code=7, reason="bye", application=True),
        {},
        ConnectionTerminated,
        Reason.PEER_CLOSED,
        "connection closed by peer: application error 7: bye",
        Lib.QUIC,
    ),
    (
        _event(code=0, by_peer=False, application=True),
        {"transport": "tcp"},
        ConnectionTerminated,
        Reason.LOCAL_CLOSED,
        "connection closed locally: application error 0",
        Lib.QMUX,
    ),
    (
        _event(code=0x0A, reason="bad ACK", by_peer=False, frame_type=0x02),
        {},
        ConnectionTerminated,
        Reason.PROTOCOL_VIOLATION,
        "connection closed locally: transport error PROTOCOL_VIOLATION (0xa): bad ACK",
        Lib.QUIC,
    ),
    (
        _event(code=0x4242, reason="?"),
        {},
        ConnectionTerminated,
        Reason.PEER_CLOSED,
        "connection closed by peer: transport error 0x4242: ?",
        Lib.QUIC,
    ),
    (
        _event("idle_timeout", reason="idle timeout", by_peer=False),
        {"idle_timeout": 30.0},
        ConnectionTerminated,
        Reason.IDLE_TIMEOUT,
        "idle timeout after 30.0 s",
        Lib.QUIC,
    ),
    (
        _event("handshake_timeout", reason="handshake did not complete in time", by_peer=False),
        {"handshake_timeout": 10.0, "during_handshake": True},
        ConnectionTerminated,
        Reason.HANDSHAKE_TIMEOUT,
        "handshake did not complete within 10.0 s",
        Lib.QUIC,
    ),
    (
        _event("stateless_reset", reason="stateless reset received"),
        {},
        ConnectionTerminated,
        Reason.STATELESS_RESET,
        "stateless reset received",
        Lib.QUIC,
    ),
    (
        _event("premature_close", 1, "TCP FIN without CONNECTION_CLOSE"),
        {"transport": "tcp", "bytes_received": 1234},
        PrematureClose,
        Reason.PREMATURE_CLOSE,
        "premature close (1234 bytes received): TCP FIN without CONNECTION_CLOSE",
        Lib.QMUX,
    ),
    (
        _event("tcp_reset", 1),
        {"transport": "tcp", "bytes_received": 99},
        PrematureClose,
        Reason.PREMATURE_CLOSE,
        "TCP connection reset (99 bytes received)",
        Lib.SYS,
    ),
    (
        _event("close", 0x100 + 42, "bad certificate"),
        {"during_handshake": True},
        HandshakeAlert,
        Reason.TLS_ALERT,
        "handshake failed: peer sent TLS alert bad_certificate (42): bad certificate",
        Lib.TLS,
    ),
    (
        _event("close", 0x100 + 48, "unknown issuer", by_peer=False),
        {"during_handshake": True},
        CertificateError,
        Reason.CERTIFICATE_VERIFY_FAILED,
        "handshake failed: certificate verify failed, sent TLS alert unknown_ca (48): "
        "unknown issuer",
        Lib.TLS,
    ),
    (
        _event("tls_error", 0x100 + 40, "no shared group", by_peer=False),
        {"during_handshake": True, "transport": "tcp"},
        HandshakeError,
        Reason.TLS_ALERT,
        "handshake failed: TLS alert, sent TLS alert handshake_failure (40): no shared group",
        Lib.TLS,
    ),
    (
        _event("close", 0x100 + 10, "unexpected message"),
        {},
        ConnectionTerminated,
        Reason.TLS_ALERT,
        "connection closed by peer: TLS alert unexpected_message (10): unexpected message",
        Lib.TLS,
    ),
]


@pytest.mark.parametrize(
    ("event", "kwargs", "cls", "reason", "text", "lib"),
    MAPPINGS,
    ids=[f"{m[0].kind}-{m[2].__name__}" for m in MAPPINGS],
)
def test_terminated_from_event(
    event: ConnectionTerminatedEvent,
    kwargs: dict[str, Any],
    cls: type[Error],
    reason: Reason,
    text: str,
    lib: Lib,
) -> None:
    factory, entries = errors.terminated_from_event(event, **kwargs)
    first, second = factory(), factory()
    assert type(first) is cls and first is not second
    (entry,) = entries
    assert (entry.reason, entry.reason_text, entry.lib) == (reason, text, lib)
    assert entry.code == event.error_code
    assert f"kind={event.kind}" in entry.detail
    assert entry.where.startswith("test_errors.py:")
    assert entry.where.endswith(" in test_terminated_from_event")
    assert errors.errors() == []  # entries are returned, not recorded


def test_terminated_exception_fields() -> None:
    factory, _ = errors.terminated_from_event(_event(code=7, reason="bye", application=True))
    exc = factory()
    assert isinstance(exc, ConnectionTerminated)
    assert (exc.code, exc.reason, exc.by_peer, exc.is_application) == (7, "bye", True, True)
    factory, _ = errors.terminated_from_event(_event(code=0x4242))
    exc = factory()
    assert isinstance(exc, ConnectionTerminated) and type(exc.code) is int
    factory, _ = errors.terminated_from_event(_event(code=0x0A))
    exc = factory()
    assert isinstance(exc, ConnectionTerminated)
    assert exc.code is TransportErrorCode.PROTOCOL_VIOLATION
    factory, _ = errors.terminated_from_event(
        _event("premature_close", 1, "FIN"), bytes_received=1234
    )
    exc = factory()
    assert isinstance(exc, PrematureClose) and exc.bytes_received == 1234


def test_a_local_certificate_error_is_raised_itself() -> None:
    cause = CertificateError(AlertDescription.bad_certificate, "name mismatch")
    event = _event("close", cause.error_code, cause.reason, by_peer=False)
    factory, entries = errors.terminated_from_event(event, during_handshake=True, cause=cause)
    exc = factory()
    assert type(exc) is CertificateError and exc is not cause and exc.reason == "name mismatch"
    assert entries[0].reason is Reason.CERTIFICATE_VERIFY_FAILED


def test_a_peer_alert_during_the_handshake_becomes_a_handshake_error() -> None:
    cause = PeerAlert(AlertDescription.protocol_version, "no TLS 1.3")
    event = _event("tls_error", cause.error_code, cause.reason)
    factory, _ = errors.terminated_from_event(event, during_handshake=True, cause=cause)
    exc = factory()
    assert isinstance(exc, HandshakeAlert) and isinstance(exc, PeerAlert)
    assert exc.alert is AlertDescription.protocol_version
    # The cause is kept as a traceback-free copy (mstls.exceptions.kept).
    assert type(exc.__cause__) is PeerAlert and exc.__cause__.reason == cause.reason


def test_qmux_termination_error_is_kept_with_its_bytes() -> None:
    cause = PrematureClose("TCP socket error; 10 application bytes had arrived", bytes_received=10)
    event = _event("io_error", 1, cause.reason, by_peer=False)
    factory, entries = errors.terminated_from_event(event, transport="tcp", cause=cause)
    exc = factory()
    assert type(exc) is PrematureClose and exc.bytes_received == 10 and exc is not cause
    assert entries[0].reason is Reason.PREMATURE_CLOSE
    assert "bytes_received=10" in entries[0].detail


def test_socket_error_chains_the_os_error() -> None:
    cause = OSError(errno.EBADF, "Bad file descriptor")
    factory, entries = errors.terminated_from_event(
        _event("io_error", 1, "sendmsg failed", by_peer=False), cause=cause
    )
    exc = factory()
    assert isinstance(exc, ConnectionIOError) and exc.errno == errno.EBADF
    assert type(exc.__cause__) is OSError and exc.__cause__.errno == errno.EBADF
    assert entries[0].reason is Reason.SYSCALL and entries[0].code == errno.EBADF


def test_event_to_channel_to_every_thread() -> None:
    """The drivers' path: event → terminated_from_event → Channel.fail → raise."""
    channel = Channel()
    factory, entries = errors.terminated_from_event(_event(code=7, reason="bye", application=True))
    channel.fail(entries, factory)

    def call(_: int) -> list[Reason]:
        with pytest.raises(ConnectionTerminated) as info:
            channel.raise_if_failed("write")
        assert info.value.code == 7
        return [e.reason for e in errors.errors()]

    results = _run_threads(4, call)
    assert results == [[Reason.PEER_CLOSED, Reason.CONNECTION_TERMINATED]] * 4

