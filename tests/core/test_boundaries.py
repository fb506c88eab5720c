"""Boundaries the other tests step over: each case sits exactly on a limit and one
step either side of it, so an off-by-one (``<`` for ``<=``, ``>`` for ``>=``,
oldest for newest) fails here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mstls import _errors as errors
from mstls._errors import Channel, ErrorEntry, Lib, Reason
from mstls.codes import TransportErrorCode
from mstls.core.congestion import NewReno
from mstls.core.flow_control import ReceiveWindow
from mstls.core.pacing import Pacer
from mstls.core.recovery import PacketNumberSpace, Recovery, SentPacket
from mstls.core.recv_stream import RecvStream
from mstls.exceptions import ConnectionTerminated, ProtocolError
from mstls.wire.frames import AckFrame

APP = PacketNumberSpace.APPLICATION


# -- RFC 9000 §4.5: a FIN below data already received ------------------------------------
def _stream_with(received: int) -> RecvStream:
    stream = RecvStream(4, ReceiveWindow(1 << 20, 1 << 20))
    stream.on_data(0, b"x" * received, False)
    return stream


def test_fin_one_byte_below_received_data_is_final_size_error() -> None:
    """§4.5: "a final size that is lower than the size of the data already
    received" is FINAL_SIZE_ERROR -- one byte lower is enough."""
    stream = _stream_with(6)
    with pytest.raises(ProtocolError) as info:
        stream.on_data(2, b"abc", True)  # final size 5 < 6
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR
    assert "final size 5 below data already received (6)" in info.value.reason


def test_fin_at_exactly_the_received_data_is_accepted() -> None:
    stream = _stream_with(6)
    stream.on_data(3, b"xxx", True)  # final size 6 == received
    assert stream.final_size == 6
    assert stream.read(100) == (b"x" * 6, True)


def test_fin_without_data_one_byte_below_received_is_final_size_error() -> None:
    """An empty STREAM frame with FIN at offset received - 1."""
    stream = _stream_with(6)
    with pytest.raises(ProtocolError) as info:
        stream.on_data(5, b"", True)
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR


def test_reset_one_byte_below_received_data_is_final_size_error() -> None:
    """§4.5 applies to RESET_STREAM's Final Size too."""
    stream = _stream_with(6)
    with pytest.raises(ProtocolError) as info:
        stream.on_reset(1, 5)
    assert info.value.error_code == TransportErrorCode.FINAL_SIZE_ERROR
    assert _stream_with(6).on_reset(1, 6)  # exactly what was received: accepted


# -- E1: the error queue keeps the newest QUEUE_LIMIT entries ------------------------------
@pytest.fixture
def _empty_queue() -> Iterator[None]:
    errors.clear_error()
    yield
    errors.clear_error()


def _entry(i: int) -> ErrorEntry:
    return ErrorEntry(Lib.API, Reason.INTERNAL, str(i))


def _texts() -> list[str]:
    return [entry.reason_text for entry in errors.errors()]


@pytest.mark.usefixtures("_empty_queue")
def test_queue_at_exactly_its_limit_keeps_everything() -> None:
    for i in range(errors.QUEUE_LIMIT):
        errors.put_error(_entry(i))
    assert _texts() == [str(i) for i in range(errors.QUEUE_LIMIT)]


@pytest.mark.usefixtures("_empty_queue")
def test_queue_one_over_its_limit_drops_only_the_oldest() -> None:
    for i in range(errors.QUEUE_LIMIT + 1):
        errors.put_error(_entry(i))
    assert _texts() == [str(i) for i in range(1, errors.QUEUE_LIMIT + 1)]
    assert errors.peek_last_error() == _entry(errors.QUEUE_LIMIT)


@pytest.mark.usefixtures("_empty_queue")
def test_channel_keeps_the_newest_entries_when_they_overflow() -> None:
    """E2: the entries moved onto a failing channel are bounded the same way, and
    the newest (the ones nearest the failure) are the ones kept."""
    channel = Channel()
    count = errors.QUEUE_LIMIT + 3
    for i in range(2):
        errors.put_error(_entry(i))  # older, unrelated entries stay the caller's own
    extra = [_entry(i) for i in range(2, count)]  # the failure's own entries
    assert channel.fail(extra, ConnectionTerminated(0, "gone"))
    kept = [entry.reason_text for entry in channel.entries]
    assert kept == [str(i) for i in range(3, count)]
    assert _texts() == ["0", "1"]


# -- RFC 9002 §7.6.2: persistent congestion needs a span that *exceeds* the duration -------
#: Binary fractions, so that every sum below is exact in floating point.
_RTT = 0.125
_MAX_ACK_DELAY = 0.125
#: (srtt + max(4 * rttvar, kGranularity) + max_ack_delay) * 3 with srtt = 1/8 and
#: rttvar = 1/16 after the first sample (§5.3): (0.125 + 0.25 + 0.125) * 3.
_DURATION = 1.5


def _recovery_after_one_sample() -> Recovery:
    r = Recovery(_MAX_ACK_DELAY, NewReno(1200), Pacer(1200), is_client=False)
    r.on_handshake_confirmed()
    r.on_packet_sent(SentPacket(0, APP, 1200, True, True, [], False, False), 0.0)
    r.on_ack_received(APP, AckFrame([(0, 0)], 0, None), 3, _RTT)
    assert r.persistent_congestion_duration() == _DURATION
    return r


def _two_losses_apart(span: float) -> bool:
    """Packets 1 and 2 (ack-eliciting, ``span`` apart) are declared lost by the
    packet threshold when 5 is acknowledged; 3-5 are not ack-eliciting, so the
    acknowledgement takes no RTT sample and the duration stays 1.5 s."""
    r = _recovery_after_one_sample()
    start = 0.5
    r.on_packet_sent(SentPacket(1, APP, 1200, True, True, [], False, False), start)
    r.on_packet_sent(SentPacket(2, APP, 1200, True, True, [], False, False), start + span)
    later = start + span + 0.0625
    for pn in (3, 4, 5):
        r.on_packet_sent(SentPacket(pn, APP, 1200, False, True, [], False, False), later)
    result = r.on_ack_received(APP, AckFrame([(5, 5)], 0, None), 3, later + 0.0625)
    assert [p.packet_number for p in result.lost] == [1, 2]
    assert r.persistent_congestion_duration() == _DURATION
    return result.persistent_congestion


def test_losses_exactly_the_persistent_congestion_duration_apart_do_not_establish_it() -> None:
    """§7.6.2: "the duration between the send times of these two packets *exceeds*
    the persistent congestion duration" -- equal is not enough."""
    assert not _two_losses_apart(_DURATION)


def test_losses_just_over_the_persistent_congestion_duration_apart_establish_it() -> None:
    assert _two_losses_apart(_DURATION + 2**-20)


def test_losses_just_under_the_persistent_congestion_duration_apart_do_not() -> None:
    assert not _two_losses_apart(_DURATION - 2**-20)
