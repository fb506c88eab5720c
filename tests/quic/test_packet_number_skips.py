"""The sender skips 1-RTT packet numbers so optimistic ACKs are caught (RFC 9000 §21.4)."""

from __future__ import annotations

import itertools

import pytest

from mstls.codes import TransportErrorCode
from mstls.core.recovery import PacketNumberSpace
from mstls.exceptions import ProtocolError
from mstls.quic import sending
from mstls.wire.frames import AckFrame
from tests.quic.fuzz_checks import check_still_works
from tests.quic.pair import Pair

APP = PacketNumberSpace.APPLICATION


def transfer_packets(pair: Pair, packets: int) -> None:
    """Move data over fresh streams until ``packets`` 1-RTT packets were sent."""
    space = pair.client.spaces[APP]
    target = space.next_packet_number + packets
    for _ in range(100):
        if space.next_packet_number >= target:
            return
        check_still_works(pair, size=1 << 20)
    raise AssertionError("the transfer did not send enough packets")


def test_long_transfer_skips_packet_numbers_and_completes() -> None:
    pair = Pair()
    pair.handshake()
    transfer_packets(pair, 3 * sending.PN_SKIP_MAX_INTERVAL)
    skipped = pair.client.recovery._spaces[APP].skipped
    assert skipped, "no 1-RTT packet number was ever skipped"
    sent = pair.client.spaces[APP].next_packet_number
    assert all(0 < pn < sent for pn in skipped)
    assert len(skipped) >= 2
    gaps = sorted(skipped)
    assert all(b - a >= sending.PN_SKIP_MIN_INTERVAL for a, b in itertools.pairwise(gaps))


def test_an_ack_of_a_skipped_number_is_a_protocol_violation() -> None:
    pair = Pair()
    pair.handshake()
    transfer_packets(pair, sending.PN_SKIP_MAX_INTERVAL)
    client = pair.client
    pn = max(client.recovery._spaces[APP].skipped)
    forged = AckFrame(ranges=[(pn, pn)], ack_delay=0)
    with pytest.raises(ProtocolError) as info:
        client.recovery.on_ack_received(APP, forged, 3, pair.now)
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION
