"""Hypothesis strategies and settings for fuzzing the QUIC receive paths.

Frames are drawn with edge values (0, varint boundaries, stream and flow-control
limits) as often as arbitrary ones; :func:`frame_payloads` ends a payload with at
most one STREAM frame without a Length.  Inputs are derandomized (fixed seeds):
``MSTLS_FUZZ_EXAMPLES=N`` multiplies the example counts for a longer run;
``MSTLS_FUZZ_EXPLORE=1`` uses fresh seeds.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from mstls.wire.buffer import VARINT_MAX
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
    encode_frames,
)

from .fuzz_corpus import mutate

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
