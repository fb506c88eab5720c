"""Floods of state-growing frames into an established connection: memory and
state stay bounded (checked with ``tracemalloc``).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mstls.core.lifecycle import State
from mstls.quic.config import MAX_CRYPTO_BUFFER
from mstls.wire.frames import (
    AckFrame,
    CryptoFrame,
    DataBlockedFrame,
    Frame,
    MaxDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    PathChallengeFrame,
    PingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    encode_frame,
    encode_frames,
)

from .fuzz_checks import check_termination, deliver, drain
from .fuzz_corpus import established_pair, protect_one_rtt
from .fuzz_strategies import frame_payloads, fuzz_settings

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
            if victim.state is not State.ESTABLISHED:
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
