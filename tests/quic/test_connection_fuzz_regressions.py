"""Regression tests for what fuzzing the QUIC receive paths found: CRYPTO
reassembly and its limits, PATH_RESPONSE queueing, small Initial datagrams,
floods of strangers, Retry without a token.
"""

from __future__ import annotations

import random
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.core.lifecycle import State
from mstls.exceptions import ProtocolError
from mstls.quic import crypto_stream
from mstls.quic.config import MAX_CRYPTO_BUFFER
from mstls.quic.connection import QuicConnection
from mstls.quic.crypto_stream import MAX_CRYPTO_GAPS, CryptoReceiver
from mstls.quic.endpoint import ServerEndpoint
from mstls.quic.receiving import MAX_PENDING_PATH_RESPONSES
from mstls.quic.retry import retry_integrity_tag
from mstls.wire.frames import (
    ConnectionCloseFrame,
    CryptoFrame,
    Frame,
    PathChallengeFrame,
    PingFrame,
    encode_frame,
    encode_frames,
)
from mstls.wire.packet import encode_retry

from .fuzz_checks import NOW, check_still_works, deliver
from .fuzz_corpus import (
    established_pair,
    first_initial_cids,
    forged_initial,
    initial_crypto,
    protect_one_rtt,
)
from .fuzz_strategies import fuzz_settings
from .pair import CLIENT_ADDR, SERVER_ADDR, client_config, server_config

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
    # Only what this test and the receiver's module allocate (a frame's bytes kept as
    # given count too): threads earlier tests left running allocate meanwhile as well.
    own = [tracemalloc.Filter(True, crypto_stream.__file__), tracemalloc.Filter(True, __file__)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(own)
        for i in range(2000):  # each a byte lower: 1 new byte, 1000 stored before the fix
            assert receiver.receive(3000 - i, bytes(1000)) == b""
        after = tracemalloc.take_snapshot().filter_traces(own)
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
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
    assert conn.state is State.HANDSHAKE
    endpoint.receive_datagram(forged_initial(dcid, scid, close, pn=2), CLIENT_ADDR, NOW)
    assert conn.state is State.DRAINING  # the same close in a full-sized datagram is taken


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
