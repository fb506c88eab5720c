"""Fuzzing the QUIC receive paths: connection and server endpoint (RFC 9000 §12, §17).

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

Inputs are derandomized (fixed seeds).  ``MSTLS_FUZZ_EXAMPLES=N`` multiplies the
example counts for a longer run; ``MSTLS_FUZZ_EXPLORE=1`` uses fresh seeds.
"""

from __future__ import annotations

import os
import random
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mstls.codes import CRYPTO_ERROR_BASE, TransportErrorCode
from mstls.core.events import ConnectionTerminatedEvent, Event
from mstls.core.recovery import PacketNumberSpace
from mstls.exceptions import ProtocolError
from mstls.quic.config import MAX_CRYPTO_BUFFER
from mstls.quic.connection import QuicConnection
from mstls.quic.crypto import initial_protection
from mstls.quic.crypto_stream import MAX_CRYPTO_GAPS, CryptoReceiver, CryptoSender
from mstls.quic.endpoint import ServerEndpoint
from mstls.quic.receiving import MAX_PENDING_PATH_RESPONSES
from mstls.quic.retry import retry_integrity_tag
from mstls.wire.buffer import VARINT_MAX, Reader
from mstls.wire.frames import (
    MAX_STREAMS_LIMIT,
    AckFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    EcnCounts,
    Frame,
    HandshakeDoneFrame,
    ImmediateAckFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    decode_frame,
    encode_frame,
    encode_frames,
)
from mstls.wire.packet import PacketType, encode_long_header, encode_retry

from .fuzz_corpus import (
    AEAD_TAG,
    PN_LENGTH,
    captured_datagrams,
    established_pair,
    first_initial_cids,
    forged_initial,
    initial_crypto,
    mutate,
    protect_long,
    protect_one_rtt,
)
from .pair import CLIENT_ADDR, SERVER_ADDR, Pair, client_config, server_config

_SCALE = int(os.environ.get("MSTLS_FUZZ_EXAMPLES", "1"))
#: Set to explore with fresh seeds (``pytest --hypothesis-seed=N`` picks one).
_EXPLORE = bool(os.environ.get("MSTLS_FUZZ_EXPLORE"))


def fuzz_settings(examples: int) -> settings:
    """Deterministic settings: fixed seed, no example database, no deadline."""
    return settings(
        max_examples=examples * _SCALE,
        deadline=None,
        derandomize=not _EXPLORE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: Codes a locally started transport close may carry (RFC 9000 §20.1, RFC 9001 §4.8).
VALID_CODES = frozenset(TransportErrorCode) | frozenset(range(CRYPTO_ERROR_BASE, 0x200))
#: Virtual seconds a pair may run after an injection before it must have settled.
SETTLE_TIME = 2.0
#: Consecutive wake-ups that may leave a deadline in the past (more: a driver would spin).
MAX_STALLS = 5
NOW = 1000.0

# -- strategies -----------------------------------------------------------------------------

#: Values near the edges of every varint size and of our limits.
_LIMITS = (1 << 17, 1 << 20, (1 << 30) - 1, 1 << 30, 1 << 32, MAX_STREAMS_LIMIT, VARINT_MAX)
EDGES = (0, 1, 2, 3, 4, 7, 63, 64, 127, 128, 255, 256, 1200, 16383, 16384, *_LIMITS)
numbers = st.one_of(st.integers(0, 64), st.sampled_from(EDGES), st.integers(0, VARINT_MAX))
#: Stream IDs: the first few of each kind, the edges of the 128-stream limit, anything.
stream_ids = st.one_of(
    st.integers(0, 24),
    st.sampled_from([4 * index + kind for index in (127, 128) for kind in range(4)]),
    st.integers(0, VARINT_MAX),
)
offsets = st.one_of(
    st.integers(0, 4096), st.sampled_from(EDGES[:-1]), st.integers(0, VARINT_MAX - 256)
)
small_data = st.binary(max_size=200)
#: Packet numbers near those actually in use (a pair sends a few dozen).
packet_numbers = st.one_of(st.integers(0, 40), st.sampled_from(EDGES))
cids = st.binary(min_size=1, max_size=20)


@st.composite
def ack_frames(draw: st.DrawFn) -> AckFrame:
    largest = draw(packet_numbers)
    smallest = largest - draw(st.integers(0, min(largest, 50)))
    ranges = [(smallest, largest)]
    for _ in range(draw(st.integers(0, 6))):
        if smallest < 2:
            break
        high = smallest - 2 - draw(st.integers(0, min(smallest - 2, 10)))
        low = high - draw(st.integers(0, min(high, 10)))
        ranges.append((low, high))
        smallest = low
    ecn = draw(st.none() | st.builds(EcnCounts, numbers, numbers, numbers))
    return AckFrame(ranges, draw(numbers), ecn)


@st.composite
def new_connection_ids(draw: st.DrawFn) -> NewConnectionIdFrame:
    sequence = draw(st.one_of(st.integers(0, 20), numbers))
    retire = draw(st.integers(0, min(sequence, 20)) | st.just(sequence))
    return NewConnectionIdFrame(
        sequence, retire, draw(cids), draw(st.binary(min_size=16, max_size=16))
    )


frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(PaddingFrame, st.integers(1, 40)),
    st.just(PingFrame()),
    ack_frames(),
    st.builds(CryptoFrame, offsets, small_data),
    st.builds(StreamFrame, stream_ids, offsets, small_data, st.booleans(), st.booleans()),
    st.builds(ResetStreamFrame, stream_ids, numbers, offsets),
    st.builds(StopSendingFrame, stream_ids, numbers),
    st.builds(MaxDataFrame, numbers),
    st.builds(MaxStreamDataFrame, stream_ids, numbers),
    st.builds(MaxStreamsFrame, st.integers(0, MAX_STREAMS_LIMIT), st.booleans()),
    st.builds(DataBlockedFrame, numbers),
    st.builds(StreamDataBlockedFrame, stream_ids, numbers),
    st.builds(StreamsBlockedFrame, st.integers(0, MAX_STREAMS_LIMIT), st.booleans()),
    st.builds(NewTokenFrame, st.binary(min_size=1, max_size=64)),
    new_connection_ids(),
    st.builds(RetireConnectionIdFrame, st.one_of(st.integers(0, 20), numbers)),
    st.builds(PathChallengeFrame, st.binary(min_size=8, max_size=8)),
    st.builds(PathResponseFrame, st.binary(min_size=8, max_size=8)),
    st.just(HandshakeDoneFrame()),
    st.just(ImmediateAckFrame()),  # an extension frame we did not negotiate
)
#: Rare: a close ends the example early, which hides the frames after it.
closes = st.one_of(
    st.builds(ConnectionCloseFrame, numbers, numbers, small_data),
    st.builds(ApplicationCloseFrame, numbers, small_data),
)


def _stream_last(frame_list: list[Frame]) -> list[Frame]:
    """A STREAM frame without Length must be last; move such frames' LEN bit back on."""
    for frame in frame_list[:-1]:
        if isinstance(frame, StreamFrame):
            frame.has_length = True
    return frame_list


@st.composite
def frame_payloads(draw: st.DrawFn) -> bytes:
    """A packet payload: well-formed frames, raw bytes, or frames then damage."""
    kind = draw(st.sampled_from(("frames", "frames", "frames", "raw", "damaged", "close")))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    frame_list = _stream_last(draw(st.lists(frames, min_size=1, max_size=8)))
    if kind == "close":
        frame_list.append(draw(closes))
    payload = encode_frames(frame_list)
    if kind == "damaged" and payload:
        payload = mutate(payload, draw(st.integers(0, 1 << 32)))
    return payload


random_datagrams = st.one_of(
    st.binary(max_size=1500),
    st.binary(min_size=1200, max_size=1500),
    # A long header first byte, so the header parsers get further.
    st.tuples(st.integers(0x80, 0xFF), st.binary(min_size=0, max_size=1499)).map(
        lambda t: bytes((t[0],)) + t[1]
    ),
)


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
    was_closing = conn.state in ("closing", "draining", "terminated")
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


# -- 1. random datagrams ----------------------------------------------------------------------


@given(st.lists(random_datagrams, min_size=1, max_size=4), st.booleans())
@fuzz_settings(300)
def test_random_datagrams_to_a_fresh_endpoint(datagrams: list[bytes], retry: bool) -> None:
    endpoint = ServerEndpoint(server_config(), retry=retry)
    received = 0
    for data in datagrams:
        endpoint.receive_datagram(data, CLIENT_ADDR, NOW)
        received += len(data)
    sent = endpoint.datagrams_to_send(NOW)
    # Stateless answers never amplify beyond 3x (RFC 9000 §8, §10.3).
    assert sum(len(d) for d, _ in sent) <= 3 * received
    endpoint.handle_timer(NOW + 60)
    endpoint.datagrams_to_send(NOW + 60)
    for conn in [*endpoint.connections, *endpoint.terminated]:
        check_termination(drain(conn))


@given(st.lists(random_datagrams, min_size=1, max_size=4))
@fuzz_settings(300)
def test_random_datagrams_to_a_connecting_client(datagrams: list[bytes]) -> None:
    client = QuicConnection(client_config(), is_client=True, now=NOW, peer_address=SERVER_ADDR)
    client.connect(NOW)
    client.datagrams_to_send(NOW)
    check_lone_connection(client, datagrams, NOW)


@given(st.lists(random_datagrams, min_size=1, max_size=4), st.booleans())
@fuzz_settings(200)
def test_random_datagrams_to_an_established_pair(datagrams: list[bytes], to_server: bool) -> None:
    pair = established_pair()
    for data in datagrams:
        deliver(pair, data, to_server)
    settle(pair)
    check_still_works(pair)


# -- 2. mutations of real traffic --------------------------------------------------------------


def _corpus(to_server: bool, established: bool | None = None) -> list[bytes]:
    return [
        c.data
        for c in captured_datagrams()
        if c.to_server == to_server and (established is None or c.established == established)
    ]


@given(st.data(), st.lists(st.integers(0, 1 << 32), min_size=1, max_size=3), st.integers(1, 3))
@fuzz_settings(300)
def test_mutated_client_datagrams_to_a_fresh_endpoint(
    data: st.DataObject, seeds: list[int], rounds: int
) -> None:
    corpus = _corpus(to_server=True)
    endpoint = ServerEndpoint(server_config(), retry=data.draw(st.booleans()))
    for seed in seeds:
        original = data.draw(st.sampled_from(corpus))
        endpoint.receive_datagram(mutate(original, seed, rounds), CLIENT_ADDR, NOW)
    endpoint.datagrams_to_send(NOW)
    endpoint.handle_timer(NOW + 1)
    endpoint.datagrams_to_send(NOW + 1)
    for conn in [*endpoint.connections, *endpoint.terminated]:
        check_termination(drain(conn))


@given(st.data(), st.lists(st.integers(0, 1 << 32), min_size=1, max_size=3), st.integers(1, 3))
@fuzz_settings(300)
def test_mutated_server_datagrams_to_a_connecting_client(
    data: st.DataObject, seeds: list[int], rounds: int
) -> None:
    client = QuicConnection(client_config(), is_client=True, now=NOW, peer_address=SERVER_ADDR)
    client.connect(NOW)
    client.datagrams_to_send(NOW)
    corpus = _corpus(to_server=False)
    datagrams = [mutate(data.draw(st.sampled_from(corpus)), seed, rounds) for seed in seeds]
    check_lone_connection(client, datagrams, NOW)


@given(
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 1 << 32)), min_size=1, max_size=4),
    st.integers(1, 3),
)
@fuzz_settings(150)
def test_mutated_own_traffic_replayed_into_an_established_pair(
    picks: list[tuple[int, int]], rounds: int
) -> None:
    """This pair's own datagrams, mutated or replayed: dropped, and the pair goes on."""
    pair, recorder = recorded_pair()
    log = [(to_server, data) for _, to_server, data in recorder.log]
    for index, seed in picks:
        to_server, original = log[index % len(log)]
        deliver(pair, mutate(original, seed, rounds) if seed % 4 else original, to_server)
    settle(pair)
    check_still_works(pair)


@given(st.integers(0, 1 << 32), st.integers(1, 4), st.booleans())
@fuzz_settings(200)
def test_mutated_client_hello_in_a_forged_initial(seed: int, rounds: int, split: bool) -> None:
    """A damaged ClientHello in a valid Initial reaches the server's TLS engine."""
    hello, _ = initial_crypto()
    damaged = mutate(hello, seed, rounds)
    dcid, scid = first_initial_cids()
    endpoint = ServerEndpoint(server_config())
    if split and len(damaged) > 600:
        first = encode_frame(CryptoFrame(0, damaged[:600]))
        second = encode_frame(CryptoFrame(600, damaged[600:]))
        datagrams = [forged_initial(dcid, scid, second, pn=1), forged_initial(dcid, scid, first)]
    else:
        datagrams = [forged_initial(dcid, scid, encode_frame(CryptoFrame(0, damaged)))]
    for datagram in datagrams:
        endpoint.receive_datagram(datagram, CLIENT_ADDR, NOW)
    sent = endpoint.datagrams_to_send(NOW)
    for conn in endpoint.connections:
        end = check_termination(drain(conn))
        if end is not None and end.kind == "close" and not end.by_peer:
            assert sent, "closed without sending CONNECTION_CLOSE"


@given(frame_payloads(), st.integers(0, 3), st.booleans())
@fuzz_settings(250)
def test_forged_client_initial_frames_to_a_fresh_endpoint(
    payload: bytes, pn: int, with_hello: bool
) -> None:
    """Any frames in a valid client Initial, with or without the real ClientHello first."""
    hello, _ = initial_crypto()
    endpoint = ServerEndpoint(server_config())
    dcid, scid = first_initial_cids()
    sent = []
    if with_hello:
        hello_frame = encode_frame(CryptoFrame(0, hello))
        endpoint.receive_datagram(forged_initial(dcid, scid, hello_frame, pn=pn), CLIENT_ADDR, NOW)
        sent += endpoint.datagrams_to_send(NOW)
        pn += 1
    endpoint.receive_datagram(forged_initial(dcid, scid, payload, pn=pn), CLIENT_ADDR, NOW)
    sent += endpoint.datagrams_to_send(NOW)
    endpoint.handle_timer(NOW + 1)
    for conn in [*endpoint.connections, *endpoint.terminated]:
        end = check_termination(drain(conn))
        if end is not None and end.kind == "close" and not end.by_peer:
            assert sent, "closed without sending CONNECTION_CLOSE"


@given(
    frame_payloads(),
    st.integers(0, 1 << 32),
    st.booleans(),
    st.none() | st.tuples(st.binary(max_size=20), st.binary(max_size=300)),
)
@fuzz_settings(250)
def test_forged_server_initial_to_a_connecting_client(
    payload: bytes, seed: int, with_hello: bool, retry: tuple[bytes, bytes] | None
) -> None:
    """Frames, or a damaged ServerHello, in a valid server Initial (keys are public).

    ``retry``: first a valid Retry (RFC 9000 §17.2.5) with that SCID and token,
    which an off-path attacker cannot forge but an on-path one can.
    """
    client = QuicConnection(client_config(), is_client=True, now=NOW, peer_address=SERVER_ADDR)
    client.connect(NOW)
    client.datagrams_to_send(NOW)
    datagrams = []
    initial_dcid = client.original_dcid
    if retry is not None:
        retry_scid, token = retry
        packet = encode_retry(client.host_cid, retry_scid, token)
        datagrams.append(packet + retry_integrity_tag(client.original_dcid, packet))
        initial_dcid = retry_scid
    if with_hello:
        _, hello = initial_crypto()
        payload = encode_frame(CryptoFrame(0, mutate(hello, seed))) + payload
    keys, _ = initial_protection(initial_dcid, is_client=False)
    scid = random.Random(seed).randbytes(8)
    header = encode_long_header(
        PacketType.INITIAL,
        client.host_cid,
        scid,
        0,
        PN_LENGTH,
        length=PN_LENGTH + len(payload) + AEAD_TAG,
    )
    datagrams.append(bytes(keys.encrypt_packet(header, payload, 0)))
    check_lone_connection(client, datagrams, NOW)


# -- 3. valid packets with fuzzed frames ---------------------------------------------------------


def make_busy(pair: Pair) -> None:
    """Streams of both kinds open both ways, with data still in flight."""
    client, server = pair.client.streams, pair.server.streams
    for bidirectional in (True, True, False):
        client.write(client.open_stream(bidirectional), bytes(20000), fin=not bidirectional)
        server.write(server.open_stream(bidirectional), bytes(20000))
    for _ in range(6):
        pair.step()


@given(st.lists(frame_payloads(), min_size=1, max_size=3), st.booleans(), st.booleans())
@fuzz_settings(300)
def test_fuzzed_frames_in_one_rtt_packets(
    payloads: list[bytes], to_server: bool, busy: bool
) -> None:
    """Any frames in valid 1-RTT packets, to an idle pair or one with streams in flight."""
    pair = established_pair()
    if busy:
        make_busy(pair)
    sender = pair.client if to_server else pair.server
    for payload in payloads:
        deliver(pair, protect_one_rtt(sender, payload, pair.now), to_server)
        pair.step()  # a close goes out before the next packet can end the connection
    settle(pair)
    check_pair(pair, to_server if carries_close(payloads) else None)


@given(st.lists(frame_payloads(), min_size=1, max_size=3), st.booleans(), st.booleans())
@fuzz_settings(200)
def test_fuzzed_frames_in_handshake_packets(
    payloads: list[bytes], to_server: bool, initial: bool
) -> None:
    """Initial and Handshake packets with any frames, in the middle of a handshake."""
    pair = Pair()
    pair.start()
    pair.run_until(
        lambda: (
            bool(pair.endpoint.connections)
            and pair.client.spaces[PacketNumberSpace.HANDSHAKE].send_keys is not None
        )
    )
    sender = pair.client if to_server else pair.server  # (also pins pair.server)
    space = PacketNumberSpace.INITIAL if initial else PacketNumberSpace.HANDSHAKE
    if sender.spaces[space].send_keys is None:
        space = PacketNumberSpace.HANDSHAKE
    for payload in payloads:
        if sender.spaces[space].send_keys is None:
            break  # the handshake moved on and discarded the keys
        pad = 1200 if space == PacketNumberSpace.INITIAL else 0
        deliver(pair, protect_long(sender, space, payload, pair.now, pad_to=pad), to_server)
        pair.step()  # a close goes out before the next packet can end the connection
    settle(pair)
    check_pair(pair, to_server if carries_close(payloads) else None)


@contextmanager
def damaged_tls_output(target: int, seed: int, rounds: int) -> Iterator[None]:
    """Mutate the ``target``-th chunk of TLS handshake bytes any connection queues."""
    original = CryptoSender.write
    count = [0]

    def write(self: CryptoSender, data: bytes) -> None:
        if count[0] == target:
            data = mutate(data, seed, rounds)
        count[0] += 1
        original(self, data)

    with mock.patch.object(CryptoSender, "write", write):
        yield


@given(st.integers(0, 4), st.integers(0, 1 << 32), st.integers(1, 3))
@fuzz_settings(200)
def test_damaged_tls_messages_in_valid_packets(target: int, seed: int, rounds: int) -> None:
    """Each TLS flight mutated before protection: both TLS engines parse damage."""
    pair = Pair()
    with damaged_tls_output(target, seed, rounds):
        pair.start()

        def settled() -> bool:
            if pair.endpoint.connections:
                assert pair.server is not None  # pin it before the endpoint forgets it
            if pair.client.is_terminated and not pair.endpoint.connections:
                return True
            return (
                pair.client.is_established
                and bool(pair.endpoint.connections)
                and pair.server.is_established
                and not pair.in_flight
            )

        pair.run_until(settled, max_time=60)
    check_pair(pair)


# -- 4. memory and state stay bounded ------------------------------------------------------------

#: Bytes of Python heap one flood may leave behind on the victim.
MEMORY_BOUND = 512 << 10
#: Packets in a flood: enough that growth per packet would exceed the bound.
FLOOD_PACKETS = 600


def _flood_crypto_overlaps(i: int, victim_is_client: bool) -> bytes:
    """Out-of-order CRYPTO frames, each a byte lower than the last and 1100 long."""
    return encode_frame(CryptoFrame(MAX_CRYPTO_BUFFER - 2000 - i, bytes(1100)))


def _flood_crypto_gaps(i: int, victim_is_client: bool) -> bytes:
    """Out-of-order one-byte CRYPTO frames with gaps between them."""
    return encode_frames([CryptoFrame(1 + 2 * (64 * i + k), b"x") for k in range(64)])


def _flood_crypto_in_order(i: int, victim_is_client: bool) -> bytes:
    """In-order 1-RTT CRYPTO data of one huge NewSessionTicket (type 4)."""
    chunk = bytes(1100)
    if i == 0:
        chunk = b"\x04\x00\xff\xff" + chunk[4:]  # just under the 64 KiB limit
    return encode_frame(CryptoFrame(1100 * i, chunk))


def _flood_path_challenges(i: int, victim_is_client: bool) -> bytes:
    return encode_frames([PathChallengeFrame(i.to_bytes(8, "big"))] * 30)


def _flood_stream_gaps(i: int, victim_is_client: bool) -> bytes:
    """Data with a gap in front on every stream the victim lets its peer open."""
    stream = 4 * (i % 128) + (1 if victim_is_client else 0)
    return encode_frame(StreamFrame(stream, 1000 + 2 * i, bytes(1000)))


def _flood_connection_ids(i: int, victim_is_client: bool) -> bytes:
    """NEW_CONNECTION_ID frames retiring all earlier IDs (RFC 9000 §5.1.2)."""
    base = 1000 + 8 * i  # above the sequence numbers the peer really used
    frames_: list[Frame] = [
        NewConnectionIdFrame(base + k, base, (base + k).to_bytes(8, "big"), bytes(16))
        for k in range(8)
    ]
    return encode_frames(frames_)


def _flood_acks(i: int, victim_is_client: bool) -> bytes:
    """ACK-eliciting packets the victim must acknowledge (it cannot, nothing drains)."""
    return encode_frame(AckFrame([(0, 0)])) + encode_frame(PingFrame())


def _flood_blocked(i: int, victim_is_client: bool) -> bytes:
    """Blocked signals that ask for credit updates, on every stream the peer may open."""
    stream = 4 * (i % 128) + (1 if victim_is_client else 0)
    return encode_frames(
        [
            DataBlockedFrame(i),
            StreamDataBlockedFrame(stream, i),
            StreamsBlockedFrame(i % 128, bidi=True),
            MaxStreamsFrame(i, bidi=False),
            MaxDataFrame(i),
        ]
    )


FLOODS: dict[str, Callable[[int, bool], bytes]] = {
    "crypto overlaps": _flood_crypto_overlaps,
    "crypto gaps": _flood_crypto_gaps,
    "crypto in order": _flood_crypto_in_order,
    "path challenges": _flood_path_challenges,
    "stream gaps": _flood_stream_gaps,
    "blocked signals": _flood_blocked,
    "connection ids": _flood_connection_ids,
    "acks": _flood_acks,
}
#: Floods whose data is held within flow control: the bound adds the connection window.
FLOW_CONTROLLED_FLOODS = {"stream gaps"}


@pytest.mark.parametrize("to_server", [True, False], ids=["server", "client"])
@pytest.mark.parametrize("name", sorted(FLOODS))
def test_floods_of_state_growing_frames_stay_bounded(name: str, to_server: bool) -> None:
    """The victim does not send meanwhile (a congested or blackholed path): nothing drains."""
    pair = established_pair()
    sender = pair.client if to_server else pair.server
    victim = pair.server if to_server else pair.client
    make = FLOODS[name]
    bound = MEMORY_BOUND
    if name in FLOW_CONTROLLED_FLOODS:
        bound += victim.config.initial_max_data
    # Built first, so that the sender's own bookkeeping is not counted.
    packets = [
        protect_one_rtt(sender, make(i, not to_server), pair.now) for i in range(FLOOD_PACKETS)
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for packet in packets:
            deliver(pair, packet, to_server)
            if victim.state != "established":
                break  # a clean protocol error ends the flood: fine
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < bound, growth
    check_termination(drain(victim))


@given(st.lists(frame_payloads(), min_size=20, max_size=20))
@fuzz_settings(15)
def test_fuzzed_frame_batches_keep_memory_bounded(payloads: list[bytes]) -> None:
    """A hundred packets of fuzzed frames: the heap peak stays small."""
    pair = established_pair()
    packets = [protect_one_rtt(pair.client, p, pair.now) for p in payloads * 5]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for packet in packets:
            deliver(pair, packet, True)
            pair.endpoint.datagrams_to_send(pair.now)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before < 2 * MEMORY_BOUND + pair.server.config.initial_max_data
    check_termination(drain(pair.server))


# -- 5. regressions of what the fuzzing found ---------------------------------------------------


@st.composite
def crypto_deliveries(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A message and overlapping, duplicated, reordered pieces of it."""
    message = draw(st.binary(min_size=1, max_size=3000))
    pieces = []
    for _ in range(draw(st.integers(1, 40))):
        start = draw(st.integers(0, len(message) - 1))
        stop = draw(st.integers(start, min(len(message), start + 700)))
        pieces.append((start, message[start:stop]))
    pieces.append((0, message))  # so that everything arrives in the end
    return message, draw(st.permutations(pieces))


@given(crypto_deliveries())
@fuzz_settings(300)
def test_crypto_reassembly_of_overlapping_pieces(
    case: tuple[bytes, list[tuple[int, bytes]]],
) -> None:
    message, pieces = case
    receiver = CryptoReceiver(MAX_CRYPTO_BUFFER)
    out = bytearray()
    for offset, data in pieces:
        out += receiver.receive(offset, data)
        assert message.startswith(out)
    assert out == message


def test_crypto_receiver_limits_buffer_and_gaps() -> None:
    """Regression: overlapping CRYPTO frames were each stored whole (RFC 9000 §7.5)."""
    receiver = CryptoReceiver(4096)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):  # each a byte lower: 1 new byte, 1000 stored before the fix
            assert receiver.receive(3000 - i, bytes(1000)) == b""
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 2 * 4096
    assert len(receiver.receive(0, bytes(1001))) == 4000  # all of it, in one piece
    gaps = CryptoReceiver(4096)
    for i in range(MAX_CRYPTO_GAPS):
        gaps.receive(1 + 2 * i, b"x")
    try:
        gaps.receive(1 + 2 * MAX_CRYPTO_GAPS, b"x")
    except ProtocolError as exc:
        assert exc.error_code == TransportErrorCode.CRYPTO_BUFFER_EXCEEDED
    else:
        raise AssertionError("too many gaps were accepted")
    assert gaps.receive(5, b"") == b""  # an empty frame beyond the offset: nothing


def test_path_challenges_keep_only_the_newest_responses() -> None:
    """Regression: every PATH_CHALLENGE was queued while congestion held responses back."""
    pair = established_pair()
    challenges: list[Frame] = [PathChallengeFrame(i.to_bytes(8, "big")) for i in range(50)]
    deliver(pair, protect_one_rtt(pair.client, encode_frames(challenges), pair.now), True)
    pending = pair.server.pending_path_responses
    assert len(pending) == MAX_PENDING_PATH_RESPONSES
    assert pending == [i.to_bytes(8, "big") for i in range(50 - MAX_PENDING_PATH_RESPONSES, 50)]
    check_still_works(pair)


def test_server_discards_initial_packets_in_small_datagrams() -> None:
    """RFC 9000 §14.1: a server MUST discard an Initial in a datagram under 1200 bytes."""
    hello, _ = initial_crypto()
    dcid, scid = first_initial_cids()
    endpoint = ServerEndpoint(server_config())
    endpoint.receive_datagram(
        forged_initial(dcid, scid, encode_frame(CryptoFrame(0, hello))), CLIENT_ADDR, NOW
    )
    (conn,) = endpoint.connections
    close = encode_frame(ConnectionCloseFrame(TransportErrorCode.PROTOCOL_VIOLATION))
    small = forged_initial(dcid, scid, close, pn=1, pad_to=0)
    assert len(small) < 1200
    endpoint.receive_datagram(small, CLIENT_ADDR, NOW)
    assert conn.state == "handshake"
    endpoint.receive_datagram(forged_initial(dcid, scid, close, pn=2), CLIENT_ADDR, NOW)
    assert conn.state == "draining"  # the same close in a full-sized datagram is taken


def test_endpoint_answers_floods_of_strangers_within_bounds() -> None:
    """Unknown short headers, other versions, bad Initials: bounded stateless answers."""
    endpoint = ServerEndpoint(server_config())
    rng = random.Random(7)
    received = resets = 0
    for i in range(3000):
        kind = i % 3
        if kind == 0:  # short header, unknown DCID: a Stateless Reset, rate-limited
            data = bytes((0x40 | rng.randrange(64),)) + rng.randbytes(rng.randrange(20, 1400))
        elif kind == 1:  # another version, full-sized: Version Negotiation
            data = b"\xc0" + rng.randbytes(4) + b"\x08" + rng.randbytes(8) + b"\x00"
            data += bytes(1200 - len(data))
        else:  # an Initial whose DCID is too short to open a connection (RFC 9000 §7.2)
            data = forged_initial(rng.randbytes(4), rng.randbytes(8), encode_frame(PingFrame()))
        endpoint.receive_datagram(data, (f"10.0.{i % 250}.1", 1000 + i), NOW + i * 1e-4)
        received += len(data)
        for answer, _ in endpoint.datagrams_to_send(NOW + i * 1e-4):
            assert len(answer) < len(data)  # never larger than the trigger
            resets += answer[0] & 0x80 == 0
    assert not endpoint.connections
    # RFC 9000 §10.3.3: bounded by the limiter (burst 20, 100 per second over 0.3 s).
    assert resets <= 20 + 100 * 0.3 + 1


def retry_state(client: QuicConnection) -> tuple[bytes | None, bytes]:
    return client.retry_source_cid, client.retry_token


def test_client_discards_a_retry_without_token() -> None:
    """RFC 9000 §17.2.5.2: a client MUST discard a Retry with a zero-length token."""
    client = QuicConnection(client_config(), is_client=True, now=NOW, peer_address=SERVER_ADDR)
    client.connect(NOW)
    client.datagrams_to_send(NOW)
    empty = encode_retry(client.host_cid, bytes(8), b"")
    client.receive_datagram(
        empty + retry_integrity_tag(client.original_dcid, empty), SERVER_ADDR, NOW
    )
    assert retry_state(client) == (None, b"")
    valid = encode_retry(client.host_cid, bytes(8), b"token")
    client.receive_datagram(
        valid + retry_integrity_tag(client.original_dcid, valid), SERVER_ADDR, NOW
    )
    assert retry_state(client) == (bytes(8), b"token")
