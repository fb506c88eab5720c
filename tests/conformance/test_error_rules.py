"""Rules E2, E4-E9 (docs/error-model.md) as cases of the suite, on {blocking, trio} x {udp, tcp}.

Every call below runs in a fresh thread or task (see :mod:`.adapters`) and is
judged by its own error queue, so "lands only in the calling thread's queue"
is what each check sees directly.  The peer is a :class:`.peers.CommandService`:
each stream starts with a command line (``hold``, ``echo``, ``send N``,
``stop CODE``, ``reset CODE``, ``close CODE``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import mstls
from mstls import errors
from mstls.codes import TransportErrorCode
from mstls.errors import QUEUE_LIMIT, ErrorKind, Reason

from .adapters import Call, Client, Op, Outcome, mstls_class
from .conftest import MakeClient
from .peers import COMMAND_TIMEOUT, CommandService, Relay, client_config, peer, server_config

pytestmark = pytest.mark.network

BOTH = ("udp", "tcp")
STOP_CODE, RESET_CODE, LOCAL_CODE = 7, 9, 3
#: Bytes of the bulk round trip of the E4 case (flow control and EAGAIN on the way).
BULK = 1 << 20
#: More than a stream's send buffer (QUIC: 4 MiB) and the peer's window: a write blocks.
OVERFLOW = 8 << 20
#: How long a test lets a RESET_STREAM reach the client before it reads (seconds).
ARRIVAL = 0.3


@contextmanager
def connected(
    make: MakeClient, transport: str, **client_kw: object
) -> Iterator[tuple[Client, CommandService, Relay]]:
    """A client connected (through the relay) to a :class:`CommandService` peer."""
    service = CommandService()
    with peer(transport, server_config(), service) as (_, relay):
        client = make(transport)
        client.connect(relay.port, client_config(**client_kw))
        yield client, service, relay


def command_stream(client: Client, line: str) -> object:
    """A new stream whose first bytes are the command ``line``."""
    stream = client.do(Op.OPEN)
    client.do(Op.WRITE, stream, f"{line}\n".encode())
    return stream


def reasons(outcome: Outcome) -> list[Reason]:
    return [entry.reason for entry in outcome.entries]


def kind(outcome: Outcome) -> ErrorKind:
    """The E7 classification of an outcome (never reads a queue)."""
    if outcome.exc is not None:
        return errors.classify(outcome.exc)
    return errors.classify_read(outcome.value)


# -- E4: intermittent conditions --------------------------------------------------------------
@pytest.mark.parametrize("transport", BOTH)
def test_intermittent_conditions_leave_no_entries(make: MakeClient, transport: str) -> None:
    """A bulk round trip waits on flow control and meets EAGAIN; nothing is left queued."""
    payload = bytes(range(256)) * (BULK // 256)
    with connected(make, transport) as (client, _, _):
        outcome = client.call(Op.OPEN_AND_EXCHANGE, arg=b"echo\n" + payload)
        assert outcome.unwrap() == payload
        assert outcome.entries == []


GAVE_UP = [
    pytest.param("blocking", id="blocking"),
    "trio",
    "asyncio",
]


@pytest.mark.parametrize("api", GAVE_UP)
@pytest.mark.parametrize("transport", BOTH)
@pytest.mark.parametrize("op", [Op.READ_BRIEFLY, Op.WRITE_BRIEFLY])
def test_a_call_that_gave_up_leaves_no_entries(make: MakeClient, transport: str, op: Op) -> None:
    """A read or write that gave up (blocking: its timeout; trio: cancelled) is
    retried later on an intact connection: like OpenSSL's want-read, no entry stays."""
    with connected(make, transport) as (client, _, _):
        stream = command_stream(client, "hold")  # no data comes, nothing is read
        outcome = client.call(op, stream, bytes(OVERFLOW))
        if client.api == "blocking":
            assert isinstance(outcome.exc, mstls.Timeout), outcome
            want = ErrorKind.WANT_READ if op is Op.READ_BRIEFLY else ErrorKind.WANT_WRITE
            assert errors.classify(outcome.exc) is want
        else:
            assert outcome.value == "cancelled", outcome
        assert outcome.entries == []


# -- E5, E6: stream-only failures, split directions ---------------------------------------------
@pytest.mark.parametrize("transport", BOTH)
def test_a_stream_reset_touches_one_stream_and_one_queue(make: MakeClient, transport: str) -> None:
    with connected(make, transport) as (client, service, _):
        quiet = command_stream(client, "hold")
        doomed = command_stream(client, f"reset {RESET_CODE}")
        (held,) = service.wait_held(1)
        waiters = client.start([Call(Op.READ_UNTIL_ERROR, doomed), Call(Op.READ, quiet)])
        held.write(b"x")  # only now may the quiet reader return
        reset, other = waiters.join()
        assert mstls_class(reset.exc) is mstls.StreamReset, reset  # type: ignore[arg-type]
        assert reset.exc.code == RESET_CODE  # type: ignore[union-attr]
        assert reasons(reset) == [Reason.STREAM_RESET]
        assert (other.unwrap(), other.entries) == (b"x", [])  # E5: not in another queue
        fresh = client.call(Op.OPEN_AND_EXCHANGE, arg=b"echo\nstill fine")
        assert (fresh.unwrap(), fresh.entries) == (b"still fine", [])
        assert client.channel_entries() == ()  # the connection never failed


@pytest.mark.parametrize("transport", BOTH)
def test_stop_sending_fails_writes_and_reads_go_on(make: MakeClient, transport: str) -> None:
    with connected(make, transport) as (client, _, _):
        stream = command_stream(client, f"stop {STOP_CODE}")
        write = client.call(Op.WRITE_UNTIL_ERROR, stream)
        assert mstls_class(write.exc) is mstls.StreamStopped, write  # type: ignore[arg-type]
        assert write.exc.code == STOP_CODE  # type: ignore[union-attr]
        assert reasons(write) == [Reason.STREAM_STOPPED]
        read = client.call(Op.READ_UNTIL_ERROR, stream)  # E6: what was delivered is read
        assert (read.unwrap(), read.entries) == (len(CommandService.BEFORE_STOP), [])
        again = client.call(Op.READ, stream)
        assert (again.unwrap(), kind(again)) == (b"", ErrorKind.ZERO_RETURN)  # FIN stays FIN


@pytest.mark.parametrize("transport", BOTH)
def test_reset_stream_fails_reads_and_writes_go_on(make: MakeClient, transport: str) -> None:
    line = f"reset {RESET_CODE}"
    with connected(make, transport) as (client, service, _):
        stream = command_stream(client, line)
        read = client.call(Op.READ_UNTIL_ERROR, stream)
        assert mstls_class(read.exc) is mstls.StreamReset, read  # type: ignore[arg-type]
        assert reasons(read) == [Reason.STREAM_RESET]
        client.do(Op.WRITE, stream, b"still")
        client.do(Op.CONCLUDE, stream)
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while line not in service.received:
            assert time.monotonic() < deadline, "the peer never got the writes after its reset"
            time.sleep(0.01)
        assert service.received[line] == b"still"


@pytest.mark.parametrize("transport", BOTH)
def test_data_delivered_before_a_reset_is_read_first(make: MakeClient, transport: str) -> None:
    """E6: data that arrived before RESET_STREAM is returned first, then the reset."""
    with connected(make, transport) as (client, _, _):
        stream = command_stream(client, f"reset {RESET_CODE}")
        time.sleep(ARRIVAL)  # the data and the reset have both arrived before we read
        read = client.call(Op.READ_UNTIL_ERROR, stream)
        assert mstls_class(read.exc) is mstls.StreamReset, read  # type: ignore[arg-type]
        assert read.received == len(CommandService.BEFORE_RESET)


@pytest.mark.parametrize("transport", BOTH)
def test_a_failed_write_leaves_delivered_data_readable(make: MakeClient, transport: str) -> None:
    """E6: after the peer closed the connection, our write fails, yet a read
    first returns what had been delivered, then the connection's failure."""
    with connected(make, transport) as (client, _, _):
        stream = client.do(Op.OPEN)
        watcher = client.start([Call(Op.ACCEPT)])  # learns when the connection is gone
        client.do(Op.WRITE, stream, f"close {LOCAL_CODE}\n".encode())
        (gone,) = watcher.join()
        assert isinstance(gone.exc, mstls.ConnectionTerminated), gone
        write = client.call(Op.WRITE, stream, b"too late")
        assert isinstance(write.exc, mstls.ConnectionTerminated), write
        read = client.call(Op.READ_UNTIL_ERROR, stream)
        assert isinstance(read.exc, mstls.ConnectionTerminated), read
        assert read.received == len(CommandService.LAST_WORDS)
        assert reasons(read) == [Reason.PEER_CLOSED, Reason.CONNECTION_TERMINATED]


# -- E7: classification never depends on the queue -----------------------------------------
def classify_sequence(client: Client, junk: int) -> list[tuple[ErrorKind, list[Reason]]]:
    """Data, FIN, a stream reset: their kinds, and the entries each call added."""
    data = command_stream(client, "send 5")
    reset = command_stream(client, f"reset {RESET_CODE}")
    seen = []
    for op, stream in ((Op.READ, data), (Op.READ_UNTIL_ERROR, data), (Op.READ, data)):
        outcome = client.run(Call(op, stream, junk=junk))
        value = b"" if op is Op.READ_UNTIL_ERROR and outcome.exc is None else outcome.value
        seen.append((kind(Outcome(outcome.call, value, outcome.exc)), reasons(outcome)[junk:]))
    outcome = client.run(Call(Op.READ_UNTIL_ERROR, reset, junk=junk))
    seen.append((kind(outcome), reasons(outcome)[junk:]))
    return seen


@pytest.mark.parametrize("transport", BOTH)
def test_classification_does_not_depend_on_the_queue(make: MakeClient, transport: str) -> None:
    full = QUEUE_LIMIT - 2  # room for what the call itself records
    with connected(make, transport) as (client, _, _):
        empty, junked = classify_sequence(client, 0), classify_sequence(client, full)
        assert empty == junked
        assert [k for k, _ in empty] == [
            ErrorKind.NONE,
            ErrorKind.ZERO_RETURN,
            ErrorKind.ZERO_RETURN,
            ErrorKind.STREAM_RESET,
        ]
        stream = client.do(Op.OPEN)
        client.do(Op.CLOSE, arg=(0, "done"))
        late = [client.run(Call(Op.READ, stream, junk=j)) for j in (0, full)]
        assert [kind(o) for o in late] == [ErrorKind.CONNECTION_CLOSED] * 2
        assert reasons(late[0]) == reasons(late[1])[full:]


@pytest.mark.parametrize("transport", BOTH)
def test_the_closing_callers_stale_entries_stay_its_own(make: MakeClient, transport: str) -> None:
    """E2: only the failure's own entries go onto the channel, not what the
    closing thread (task) had queued before; those stay in its own queue (E1)."""
    with connected(make, transport) as (client, _, _):
        stream = client.do(Op.OPEN)
        closer = client.run(Call(Op.CLOSE, arg=(LOCAL_CODE, "bye"), junk=3))
        assert closer.exc is None
        assert [e.reason for e in client.channel_entries()] == [Reason.LOCAL_CLOSED]
        assert reasons(closer) == [Reason.INTERNAL] * 3
        other = client.call(Op.READ, stream)
        assert reasons(other) == [Reason.LOCAL_CLOSED, Reason.CONNECTION_TERMINATED]


# -- E8: a clean end vs a truncation ---------------------------------------------------------
@pytest.mark.parametrize("transport", BOTH)
def test_fin_is_the_end_and_a_truncation_is_a_premature_close(
    make: MakeClient, transport: str
) -> None:
    """A stream's FIN is ``b""``; on TCP a FIN without close_notify is a
    :class:`~mstls.PrematureClose` with the byte count, never ``b""``; on UDP
    (no FIN exists) the peer's CONNECTION_CLOSE is a clean close."""
    size = 100_000
    with connected(make, transport) as (client, service, relay):
        ended = client.call(Op.READ_UNTIL_ERROR, command_stream(client, f"send {size}"))
        assert (ended.unwrap(), ended.entries) == (size, [])  # clean end of one stream
        waiting = command_stream(client, "hold")
        service.wait_held(1)
        reader = client.start([Call(Op.READ_UNTIL_ERROR, waiting)])
        if transport == "tcp":
            relay.fin()
        else:  # the peer closes the connection (CONNECTION_CLOSE) after a last stream
            command_stream(client, "close 0")
        (cut,) = reader.join()
        assert cut.exc is not None, f"a truncation read as a clean end: {cut.value!r}"
        if transport == "tcp":
            assert mstls_class(cut.exc) is mstls.PrematureClose
            assert cut.exc.bytes_received > size  # type: ignore[attr-defined]
            assert errors.classify(cut.exc) is ErrorKind.SYSCALL
            assert reasons(cut) == [Reason.PREMATURE_CLOSE, Reason.CONNECTION_TERMINATED]
        else:
            assert mstls_class(cut.exc) is mstls.ConnectionTerminated
            assert errors.classify(cut.exc) is ErrorKind.CONNECTION_CLOSED
            assert reasons(cut) == [Reason.PEER_CLOSED, Reason.CONNECTION_TERMINATED]


# -- E9: the exception classes ---------------------------------------------------------------
def test_exception_classes() -> None:
    """One root; the subclasses the brief names, with their attributes and kinds."""
    for name in mstls.__all__:
        value = getattr(mstls, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, mstls.Error), name
    assert issubclass(mstls.WantRead, mstls.Error) and issubclass(mstls.WantWrite, mstls.Error)
    assert issubclass(mstls.Timeout, TimeoutError)
    assert issubclass(mstls.PrematureClose, mstls.ConnectionTerminated)
    assert issubclass(mstls.ConnectionIOError, mstls.ConnectionTerminated)
    assert issubclass(mstls.CertificateError, mstls.HandshakeError)
    assert issubclass(mstls.HandshakeAlert, mstls.HandshakeError)
    assert mstls.StreamReset(5).code == 5 and mstls.StreamStopped(6).code == 6
    known = mstls.ConnectionTerminated(0x1, "x")
    unknown = mstls.ConnectionTerminated(0x4242, "x")
    assert known.code is TransportErrorCode.INTERNAL_ERROR
    assert type(unknown.code) is int  # unknown wire codes stay integers
    app = mstls.ConnectionTerminated(0x1, "x", is_application=True)
    assert type(app.code) is int  # application codes are the application's
    assert errors.classify(mstls.StreamReset(1)) is ErrorKind.STREAM_RESET
    assert errors.classify(mstls.PrematureClose("fin")) is ErrorKind.SYSCALL
    assert errors.classify(known) is ErrorKind.CONNECTION_CLOSED


def test_connection_io_error_is_an_os_error() -> None:
    """Users catch socket failures as OSError, with the errno."""
    exc = mstls.ConnectionIOError("connect failed", errno=111)
    assert isinstance(exc, OSError)
    assert exc.errno == 111
