"""Fuzzing the QUIC receive paths (RFC 9000 §12, §17): the rules every example checks.

The security rule under test: any datagram from the network produces progress
or a clean protocol error -- never an exception out of the sans-I/O API, a
hang, or unbounded memory.  The wire decoders are fuzzed on their own in
``tests/wire/test_fuzz_decoders.py``; here whole datagrams go through
``receive_datagram`` of

* a fresh :class:`ServerEndpoint` (random bytes, mutated real client
  datagrams, forged Initials whose ClientHello is mutated),
* a client right after ``connect()`` (random bytes, mutated server
  datagrams, forged server Initials),
* both ends of an established pair (garbage that must be dropped without
  harm, and *validly protected* packets carrying fuzzed frames, built with the
  sender's own keys so they reach the frame handlers),
* a pair whose TLS messages are mutated before encryption, so both TLS
  engines parse damaged handshake messages that arrive intact.

After every example: no exception escaped; every locally started close carries
a transport code (or CRYPTO_ERROR 0x100-0x1ff) and its CONNECTION_CLOSE reached
the peer; a connection that only saw dropped garbage still moves stream data.
Separate tests flood an established connection with state-growing frames and
check with ``tracemalloc`` that memory stays bounded.

The tests live in ``test_connection_fuzz_*.py``; their strategies and settings in
:mod:`tests.quic.fuzz_strategies`, their material in :mod:`tests.quic.fuzz_corpus`.
"""

from __future__ import annotations

import os

from mstls.codes import CRYPTO_ERROR_BASE, TransportErrorCode
from mstls.core.events import ConnectionTerminatedEvent, Event
from mstls.core.lifecycle import State
from mstls.exceptions import ProtocolError
from mstls.quic.connection import QuicConnection
from mstls.wire.buffer import Reader
from mstls.wire.frames import ApplicationCloseFrame, ConnectionCloseFrame, decode_frame

from .pair import CLIENT_ADDR, SERVER_ADDR, Pair

#: Codes a locally started transport close may carry (RFC 9000 §20.1, RFC 9001 §4.8).
VALID_CODES = frozenset(TransportErrorCode) | frozenset(range(CRYPTO_ERROR_BASE, 0x200))
#: Virtual seconds a pair may run after an injection before it must have settled.
SETTLE_TIME = 2.0
#: Consecutive wake-ups that may leave a deadline in the past (more: a driver would spin).
MAX_STALLS = 5
NOW = 1000.0


# -- checking a connection ----------------------------------------------------------------


def drain(conn: QuicConnection) -> list[Event]:
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def terminations(events: list[Event]) -> list[ConnectionTerminatedEvent]:
    return [e for e in events if isinstance(e, ConnectionTerminatedEvent)]


def check_termination(events: list[Event]) -> ConnectionTerminatedEvent | None:
    """At most one termination; a local transport close carries a valid code."""
    ends = terminations(events)
    assert len(ends) <= 1, ends
    if not ends:
        return None
    end = ends[0]
    assert end.kind in {"close", "idle_timeout", "handshake_timeout", "stateless_reset"}
    if end.kind == "close" and not end.by_peer and not end.is_application:
        assert end.error_code in VALID_CODES, end
    return end


def exercise(conn: QuicConnection, now: float, sent: list[bytes]) -> float:
    """Every output entry point after an input: datagrams, then timers for a while.

    Appends what the connection sends to ``sent``; returns the clock reached.
    A deadline that stays in the past after :meth:`handle_timer` and
    :meth:`datagrams_to_send` would make a driver spin: that fails.
    """
    sent += conn.datagrams_to_send(now)
    until = now + SETTLE_TIME
    stalls = 0
    while (timer := conn.get_timer()) is not None and timer <= until:
        stalls = stalls + 1 if timer <= now else 0
        assert stalls <= MAX_STALLS, f"the timer stays at {timer} <= now: a driver would spin"
        now = max(now, timer)
        conn.handle_timer(now)
        sent += conn.datagrams_to_send(now)
    return now


def check_lone_connection(conn: QuicConnection, datagrams: list[bytes], now: float) -> None:
    """A connection without a live peer: a local close must put a CONNECTION_CLOSE out."""
    was_closing = conn.state in (State.CLOSING, State.DRAINING, State.TERMINATED)
    sent: list[bytes] = []
    for data in datagrams:
        conn.receive_datagram(data, SERVER_ADDR, now)
        now = exercise(conn, now, sent) + 0.001  # the driver's clock never goes back
    end = check_termination(drain(conn))
    if end is not None and end.kind == "close" and not end.by_peer and not was_closing:
        assert sent, "closed without sending CONNECTION_CLOSE"


class Recorder:
    """A Pair tamper hook that keeps what each side sent, with the time."""

    def __init__(self) -> None:
        self.pair: Pair | None = None
        self.log: list[tuple[float, bool, bytes]] = []

    def __call__(self, data: bytes, to_server: bool) -> bytes:
        assert self.pair is not None
        self.log.append((self.pair.now, to_server, data))
        return data


def recorded_pair() -> tuple[Pair, Recorder]:
    recorder = Recorder()
    pair = Pair(tamper=recorder)
    recorder.pair = pair
    pair.handshake()
    pair.run_until(lambda: not pair.in_flight)
    return pair, recorder


def next_time(pair: Pair) -> float | None:
    """When the pair's next step happens: an arrival or a deadline."""
    times = [t for t in (pair.client.get_timer(), pair.endpoint.get_timer()) if t is not None]
    if pair.in_flight:
        times.append(pair.in_flight[0][0])
    return min(times, default=None)


def settle(pair: Pair) -> None:
    """Run the pair until nothing is in flight, then its timers for a while.

    Bounded: must not hang.  Steps that do not move the virtual clock mean a
    deadline that stays in the past, which would make a driver spin.
    """
    pair.run_until(lambda: not pair.in_flight, max_time=SETTLE_TIME * 10)
    end = pair.now + SETTLE_TIME
    stalls = 0
    while (upcoming := next_time(pair)) is not None and upcoming <= end:
        before = pair.now
        pair.step()
        stalls = stalls + 1 if pair.now == before else 0
        assert stalls <= MAX_STALLS, f"the pair's clock is stuck at {before}: a driver would spin"


def carries_close(payloads: list[bytes]) -> bool:
    """Whether a receiver meets a CONNECTION_CLOSE in these payloads before any error."""
    for payload in payloads:
        reader = Reader(payload)
        try:
            while not reader.eof():
                frame = decode_frame(reader)
                if isinstance(frame, ConnectionCloseFrame | ApplicationCloseFrame):
                    return True
        except ProtocolError:
            continue
    return False


def check_pair(pair: Pair, forged_close_to_server: bool | None = None) -> None:
    """Both ends' terminations are clean and a local close reached the peer.

    Exceptions: a forged NEW_CONNECTION_ID or RETIRE_CONNECTION_ID can make an
    end address its peer by an ID the peer does not route (it never issued it,
    or retired it); nothing sent there arrives, through no fault of the closer.
    And an end that got a forged CONNECTION_CLOSE (``forged_close_to_server``
    names it) may have drained on that one before the real close arrived.
    """
    server = pair._server  # pinned by the test as soon as the endpoint created it
    conns = {True: server, False: pair.client}
    ends = {
        True: check_termination(pair.server_events),
        False: check_termination(pair.client_events),
    }
    for at_server, end in ends.items():
        if end is None or end.kind != "close" or end.by_peer:
            continue
        closer, peer = conns[at_server], conns[not at_server]
        if closer is None or peer is None:
            continue  # the server never got as far as creating a connection
        if peer.local_cids.sequence_of(closer.peer_cids.current) is None:
            continue
        peer_end = ends[not at_server]
        assert peer_end is not None, f"{end} was not seen by the peer"
        peer_got_forged_close = forged_close_to_server == (not at_server)
        if peer_end.by_peer and not peer_got_forged_close:
            assert (peer_end.error_code, peer_end.is_application) == (
                end.error_code,
                end.is_application,
            )


def check_still_works(pair: Pair, size: int = 3000) -> None:
    """Neither end terminated and a stream still carries data both ways."""
    assert not terminations(pair.client_events), pair.client_events
    assert not terminations(pair.server_events), pair.server_events
    client = pair.client
    sid = client.streams.open_stream()
    payload = os.urandom(size)
    client.streams.write(sid, payload, fin=True)
    got = bytearray()
    server_sid: list[int] = []

    def done() -> bool:
        server = pair.server
        if not server_sid:
            server_sid.extend(s for s in server.streams.accept_pending() if s == sid)
        if server_sid:
            data, fin = server.streams.read(sid, 1 << 20)
            got.extend(data)
            return fin
        return False

    pair.run_until(done, max_time=10)
    assert bytes(got) == payload


def deliver(pair: Pair, data: bytes, to_server: bool) -> None:
    if to_server:
        pair.endpoint.receive_datagram(data, CLIENT_ADDR, pair.now)
    else:
        pair.client.receive_datagram(data, SERVER_ADDR, pair.now)
