"""The error model, rules E2/E3, E5 and E6: the connection's channel, replicated to
every caller; stream errors that land only in the caller's queue; reads and
writes that fail apart."""

from __future__ import annotations

import threading

import pytest
import trio

from mstls import _errors as errors
from mstls._errors import Channel, ErrorEntry, Lib, Reason
from mstls.core.events import ConnectionTerminatedEvent
from mstls.exceptions import (
    ConnectionIOError,
    ConnectionTerminated,
    Error,
    PrematureClose,
    StreamReset,
    StreamStopped,
)
from mstls.session import Session

from .helpers import THREADS, make_entry, queue_texts, run_threads


# -- E2/E3: the channel ------------------------------------------------------------------------
def _failed_channel() -> tuple[Channel, list[ErrorEntry]]:
    """A channel failed from another thread (the "assist" thread) with two entries."""
    channel = Channel()

    def assist() -> list[ErrorEntry]:
        start = errors.mark()
        errors.record(Lib.QUIC, Reason.PROTOCOL_VIOLATION, "bad ACK range", code=0x0A)
        errors.record(Lib.QUIC, Reason.LOCAL_CLOSED, "closing with PROTOCOL_VIOLATION")
        recorded = errors.errors()
        error = ConnectionTerminated(0x0A, "bad ACK range", by_peer=False)
        assert channel.fail(None, error, since=start)
        assert errors.errors() == []  # moved, not copied
        return recorded

    return channel, run_threads(1, lambda _: assist())[0]


def test_channel_replicates_to_every_thread() -> None:
    channel, recorded = _failed_channel()
    assert channel.failed and list(channel.entries) == recorded

    def call(i: int) -> tuple[Error, list[ErrorEntry]]:
        with pytest.raises(ConnectionTerminated) as info:
            channel.raise_if_failed(f"read{i}")
        return info.value, errors.errors()

    results = run_threads(THREADS, call)
    raised = [exc for exc, _ in results]
    assert len({id(exc) for exc in raised}) == THREADS  # a fresh instance per raise
    for i, (exc, entries) in enumerate(results):
        assert (exc.code, exc.reason, exc.by_peer) == (0x0A, "bad ACK range", False)
        assert entries[:-1] == recorded
        last = entries[-1]
        assert last.reason is Reason.CONNECTION_TERMINATED and last.code == 0x0A
        assert last.reason_text == f"read{i}: connection terminated"
        assert last.where.startswith("test_errors_channel.py:") and last.where.endswith(" in call")
    assert list(channel.entries) == recorded  # still there for later calls

    # a thread that comes later sees the same
    later = run_threads(1, call)[0][1]
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
            entry = make_entry("idle timeout after 30.0 s", Reason.IDLE_TIMEOUT)
            channel.fail([entry], ConnectionTerminated(0, "idle timeout after 30.0 s"))
            cond.notify_all()

    timer = threading.Thread(target=timer_thread)
    timer.start()
    results = run_threads(THREADS, blocked_reader)
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
    start = errors.mark()
    errors.record(Lib.QUIC, Reason.PEER_CLOSED, "first")
    assert channel.fail(None, ConnectionTerminated(1, "first", by_peer=True), since=start)
    start = errors.mark()
    errors.record(Lib.SYS, Reason.SYSCALL, "second")
    assert not channel.fail([make_entry("given")], ConnectionIOError("second"), since=start)
    assert errors.errors() == []
    assert [e.reason_text for e in channel.entries] == ["first"]
    with pytest.raises(ConnectionTerminated) as info:
        channel.raise_if_failed("write")
    assert type(info.value) is ConnectionTerminated and info.value.reason == "first"


def test_fail_moves_own_then_given_entries_or_describes_the_error() -> None:
    channel = Channel()
    errors.put_error(make_entry("older, unrelated"))
    start = errors.mark()
    errors.put_error(make_entry("recorded by the failing call"))
    channel.fail([make_entry("given")], ConnectionTerminated(0, "x"), since=start)
    assert [e.reason_text for e in channel.entries] == ["recorded by the failing call", "given"]
    assert queue_texts() == ["older, unrelated"]

    bare = Channel(Lib.QMUX)
    bare.fail(None, PrematureClose("TCP FIN", bytes_received=5))
    (entry,) = bare.entries
    assert entry.reason is Reason.PREMATURE_CLOSE and "TCP FIN" in entry.reason_text
    assert entry.where.endswith(" in test_fail_moves_own_then_given_entries_or_describes_the_error")


def test_stale_entries_of_the_closing_thread_stay_in_its_queue_only() -> None:
    """Issue 17 point 7: the thread that notices the end may hold entries of its own
    (an earlier TIMEOUT, a task's STREAM_RESET); they are not the connection's cause,
    so neither the channel nor any other thread ever sees them."""
    channel = Channel()
    errors.put_error(make_entry("read timed out after 0.1 s", Reason.TIMEOUT))
    errors.stream_error("reset", 7, 4)
    stale = errors.errors()
    closed = make_entry("connection closed by peer", Reason.PEER_CLOSED)
    assert channel.fail([closed], ConnectionTerminated(0, "bye", by_peer=True))
    assert list(channel.entries) == [closed]
    assert errors.errors() == stale  # still the caller's, untouched

    def other(_: int) -> list[ErrorEntry]:
        with pytest.raises(ConnectionTerminated):
            channel.raise_if_failed("read")
        return errors.errors()

    (seen,) = run_threads(1, other)
    assert [e.reason for e in seen] == [Reason.PEER_CLOSED, Reason.CONNECTION_TERMINATED]
    with pytest.raises(ConnectionTerminated):
        channel.raise_if_failed("write")
    assert errors.errors()[: len(stale)] == stale
    assert [e.reason for e in errors.errors()[len(stale) :]] == [
        Reason.PEER_CLOSED,
        Reason.CONNECTION_TERMINATED,
    ]


class _EndedConnection:
    """A sans-I/O connection whose only event is its end (for :class:`Session`)."""

    def __init__(self, event: ConnectionTerminatedEvent) -> None:
        self.events = [event]

    def next_event(self) -> ConnectionTerminatedEvent | None:
        return self.events.pop(0) if self.events else None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_session_end_takes_none_of_the_pumping_threads_entries(transport: str) -> None:
    """The real call site: whichever thread pumps the termination event keeps its
    own earlier entries; the channel holds the termination's entry only."""
    event = ConnectionTerminatedEvent(7, None, "bye", by_peer=True, is_application=True)
    session = Session(_EndedConnection(event), transport=transport)
    errors.put_error(make_entry("write timed out after 0.1 s", Reason.TIMEOUT))
    errors.stream_error("reset", 3, 8)
    stale = errors.errors()
    session.pump_events()
    assert session.failed and errors.errors() == stale
    assert [e.reason for e in session.channel.entries] == [Reason.PEER_CLOSED]


def test_marker_takes_back_only_what_was_recorded_since() -> None:
    errors.put_error(make_entry("old"))
    outer = errors.mark()
    errors.put_error(make_entry("a"))
    inner = errors.mark()
    errors.put_error(make_entry("b"))
    assert [e.reason_text for e in errors.taken_since(inner)] == ["b"]
    errors.put_error(make_entry("c"))
    assert [e.reason_text for e in errors.taken_since(inner)] == ["c"]
    with errors.intermittent():
        errors.put_error(make_entry("dropped"))
    assert [e.reason_text for e in errors.taken_since(outer)] == ["a"]
    assert errors.taken_since(errors.mark()) == []
    assert queue_texts() == ["old"]


def test_channel_accepts_a_factory_and_never_raises_one_object_twice() -> None:
    channel = Channel()
    assert not channel.failed and channel.exception() is None
    channel.raise_if_failed("read")  # not failed: nothing happens
    assert errors.errors() == []
    made: list[Error] = []

    def factory() -> Error:
        made.append(ConnectionTerminated(7, "bye", by_peer=True, is_application=True))
        return made[-1]

    channel.fail([make_entry("peer closed")], factory)
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

    (reset, reset_entries), (stop, stop_entries), *others = run_threads(4, reader)
    assert isinstance(reset, StreamReset) and (reset.code, reset.stream_id) == (7, 4)
    assert isinstance(stop, StreamStopped) and (stop.code, stop.stream_id) == (9, 8)
    assert [(e.lib, e.reason, e.code) for e in reset_entries] == [
        (Lib.STREAM, Reason.STREAM_RESET, 7)
    ]
    assert reset_entries[0].where.startswith("test_errors_channel.py:")
    assert reset_entries[0].where.endswith(" in reader")
    assert [e.reason for e in stop_entries] == [Reason.STREAM_STOPPED]
    assert others == [(None, []), (None, [])]
    assert not channel.failed and errors.errors() == []
