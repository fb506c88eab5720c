"""QMux over TLS 1.3 (draft-ietf-quic-qmux-02): handshake and transport parameters,
data transfer, closing and timeouts.

The tests run two endpoints in memory with a virtual clock (:mod:`tests.qmux.pair`).
"""

from __future__ import annotations

import pytest

from mstls.core.events import HandshakeCompletedEvent
from mstls.core.lifecycle import State
from mstls.exceptions import ConnectionTerminated, PrematureClose, StreamLimitReached
from mstls.qmux.config import DEFAULT_RECORD_SIZE
from mstls.wire.frames import ApplicationCloseFrame, ConnectionCloseFrame, StreamFrame
from mstls.wire.qmux import QxPingFrame, QxTransportParametersFrame
from mstls.wire.transport_params import (
    DEFAULT_MAX_RECORD_SIZE,
    QMUX_PERMITTED_PARAMETERS,
    TransportParameterId,
    decode_transport_parameters,
    encode_transport_parameters,
    validate_qmux_parameters,
)
from tests.qmux.helpers import MiB, frames_of, raw_server_pair, records_of, send_frames
from tests.qmux.pair import Pair, RawTLSPeer, Transfer, client_config, server_config, server_tls


# -- handshake and parameters ------------------------------------------------------------------
def test_handshake_in_memory() -> None:
    pair = Pair()
    pair.start()
    pair.run_until(lambda: pair.client.handshake_complete)
    # The server's QX_TRANSPORT_PARAMETERS came right after its Finished (0.5-RTT),
    # so the client has them before the server has even seen the client's Finished.
    assert pair.client.peer_params is not None
    assert not pair.server.handshake_complete
    pair.handshake()
    client, server = pair.client, pair.server
    assert client.state is server.state is State.ESTABLISHED
    assert client.tls.alpn_protocol == "mstls-test"
    assert client.tls.peer is not None and client.tls.peer.common_name == "localhost"
    completed = [e for e in pair.client_events if isinstance(e, HandshakeCompletedEvent)]
    assert len(completed) == 1 and completed[0].alpn_protocol == "mstls-test"
    assert client.peer_params == server.config.transport_parameters()
    assert client.handshake_deadline is None and server.handshake_deadline is None
    assert client.get_timer() == pytest.approx(pair.now + 30.0, abs=0.01)


def test_transport_parameters_are_qmux_only() -> None:
    config = client_config(idle_timeout=12.5, max_streams_bidi=7)
    params = config.transport_parameters()
    encoded = encode_transport_parameters(params)
    decoded = decode_transport_parameters(encoded)
    validate_qmux_parameters(decoded)
    # max_record_size is QMux's own (§5.2), sent because our default is above 16382
    permitted = QMUX_PERMITTED_PARAMETERS | {TransportParameterId.MAX_RECORD_SIZE}
    assert decoded.received_ids <= permitted
    assert decoded.max_idle_timeout == 12500 and decoded.initial_max_streams_bidi == 7
    big = client_config(max_record_size=65536).transport_parameters()
    ids = decode_transport_parameters(encode_transport_parameters(big)).received_ids
    assert TransportParameterId.MAX_RECORD_SIZE in ids


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_record_size", 1000), ("send_record_size", 100), ("handshake_timeout", 0)],
)
def test_bad_configuration_is_refused(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        client_config(**{field: value})


def test_client_sends_transport_parameters_first_and_waits_for_the_servers() -> None:
    pair, raw = raw_server_pair()
    client = pair.client
    frames = frames_of(raw.received)
    assert len(frames) == 1 and isinstance(frames[0], QxTransportParametersFrame)
    assert frames[0].parameters == client.local_params


def test_stream_data_waits_for_peer_transport_parameters() -> None:
    raw = RawTLSPeer(server_tls(), is_client=False)
    pair = Pair(server_side=raw)
    pair.start()
    pair.run_until(lambda: raw.handshake_complete)
    with pytest.raises(StreamLimitReached, match="allows 0"):
        pair.client.streams.open_stream()
    raw.send_transport_parameters()
    pair.run_until(lambda: pair.client.peer_params is not None)
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, b"hello", fin=True)
    pair.drain()
    stream = [f for f in frames_of(raw.received) if isinstance(f, StreamFrame)]
    assert [(f.stream_id, bytes(f.data), f.fin) for f in stream] == [(sid, b"hello", True)]


# -- data transfer -----------------------------------------------------------------------------
def test_several_streams_mib_both_ways() -> None:
    pair = Pair()
    pair.handshake()
    transfer = Transfer(pair, [2 * MiB, MiB, MiB // 2 + 17, 1, 0], echo=True)
    pair.run_until(lambda: transfer.complete, max_time=30)
    transfer.check()
    assert pair.client.state == pair.server.state is State.ESTABLISHED


def _tls_record_lengths(out: bytes) -> list[int]:
    """The length fields of the TLS records in ``out`` (5-byte headers)."""
    lengths = []
    pos = 0
    while pos < len(out):
        length = int.from_bytes(out[pos + 3 : pos + 5])
        assert length <= (1 << 14) + 1 + 16  # 16 KiB + type + tag at most
        lengths.append(length)
        pos += 5 + length
    return lengths


@pytest.mark.parametrize(
    ("peer_limit", "tls_per_qmux"),
    [(DEFAULT_MAX_RECORD_SIZE, 1), (DEFAULT_RECORD_SIZE, 4)],
)
def test_records_fill_whole_tls_records_within_the_peers_limit(
    peer_limit: int, tls_per_qmux: int
) -> None:
    """A peer keeping the §5.2 default gets one full TLS record per QMux record;
    one with our default four (the 4-byte Size makes the record exactly 64 KiB)."""
    pair, raw = raw_server_pair()
    raw.send_transport_parameters(server_config(max_record_size=peer_limit).transport_parameters())
    pair.run_until(lambda: pair.client.peer_params is not None)
    client = pair.client
    sid = client.streams.open_stream()
    client.streams.write(sid, bytes(600_000), fin=True)
    raw.received.clear()
    out = client.data_to_send(pair.now)
    lengths = _tls_record_lengths(out)
    pair.server.receive_data(out, pair.now)
    payloads = records_of(raw.received, peer_limit)
    assert max(len(p) for p in payloads) == peer_limit
    assert len(lengths) == tls_per_qmux * len(payloads)
    assert set(lengths) == {(1 << 14) + 1 + 16}  # every TLS record full


def test_larger_records_when_both_sides_allow_them() -> None:
    pair, raw = raw_server_pair(send_record_size=60_000)
    params = server_config(max_record_size=40_000).transport_parameters()
    raw.send_transport_parameters(params)
    pair.run_until(lambda: pair.client.peer_params is not None)
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, bytes(200_000), fin=True)
    raw.received.clear()
    pair.drain()
    assert max(len(p) for p in records_of(raw.received, 40_000)) == 40_000


def test_output_per_call_is_bounded() -> None:
    pair = Pair(
        client=client_config(max_send_per_call=64 * 1024),
        server=server_config(initial_max_data=8 * MiB, initial_max_stream_data=8 * MiB),
    )
    pair.handshake()
    sid = pair.client.streams.open_stream()
    pair.client.streams.write(sid, bytes(MiB))
    out = pair.client.data_to_send(pair.now)
    assert 64 * 1024 <= len(out) < 64 * 1024 + 2 * (16384 + 22)
    assert len(pair.client.data_to_send(pair.now)) > 0  # the rest on the next call


# -- closing -----------------------------------------------------------------------------------
def test_application_close_is_seen_by_the_peer() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.close(0x1234, "done for today", now=pair.now)
    assert pair.client.state is State.CLOSING
    pair.run()
    client, server = pair.terminated("client"), pair.terminated("server")
    assert (client.kind, client.by_peer, client.error_code) == ("close", False, 0x1234)
    assert (server.kind, server.by_peer, server.is_application) == ("close", True, True)
    assert (server.error_code, server.reason) == (0x1234, "done for today")
    assert pair.client.is_terminated and pair.server.is_terminated
    assert pair.shut == {"client": True, "server": True}
    error = pair.server.termination_error
    assert isinstance(error, ConnectionTerminated) and not isinstance(error, PrematureClose)
    assert (error.code, error.by_peer, error.is_application) == (0x1234, True, True)


def test_close_waits_for_the_peer_then_gives_up_after_close_timeout() -> None:
    pair, raw = raw_server_pair(close_timeout=2.0)
    pair.client.close(5, "bye", now=pair.now)
    start = pair.now
    pair.run()  # the raw server never answers
    assert pair.client.is_terminated
    assert pair.now - start == pytest.approx(2.0, abs=0.01)
    frames = frames_of(raw.received)
    assert isinstance(frames[-1], ApplicationCloseFrame) and frames[-1].reason == b"bye"


def test_data_after_connection_close_is_discarded() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    send_frames(raw, ApplicationCloseFrame(9, b"x"), StreamFrame(1, 0, b"late"))
    send_frames(raw, StreamFrame(5, 0, b"later"))
    pair.run()
    event = pair.terminated("client")
    assert (event.error_code, event.by_peer, event.reason) == (9, True, "x")
    assert pair.client.streams.get_stream(1) is None
    # draining: our reply is close_notify only, no frames (§7.3)
    assert not [f for f in frames_of(raw.received) if isinstance(f, ConnectionCloseFrame)]
    assert raw.close_notify_received


def test_close_notify_without_connection_close_ends_cleanly() -> None:
    pair, raw = raw_server_pair()
    raw.send_transport_parameters()
    pair.run_until(lambda: pair.client.peer_params is not None)
    raw.close()
    pair.run()
    event = pair.terminated("client")
    assert (event.kind, event.by_peer, event.error_code) == ("idle_timeout", True, 0)
    assert "close_notify" in event.reason
    assert raw.close_notify_received and pair.client.is_terminated
    assert not isinstance(pair.client.termination_error, PrematureClose)


def test_idle_timeout_is_the_smaller_of_both() -> None:
    pair = Pair(client=client_config(idle_timeout=30), server=server_config(idle_timeout=4))
    pair.handshake()
    start = pair.now
    assert pair.client.idle_timeout == pair.server.idle_timeout == 4
    pair.run()
    client, server = pair.terminated("client"), pair.terminated("server")
    assert pair.now - start == pytest.approx(4.0, abs=0.01)
    assert {client.kind, server.kind} == {"idle_timeout"}
    # One timed out and sent close_notify; it reaches the other after its own idle
    # deadline (they last heard each other within one latency), so that one timed out too
    # rather than being revived by late input (docs/error-model.md, T1-T5).
    assert not client.by_peer and not server.by_peer
    assert pair.client.is_terminated and pair.server.is_terminated


def test_keepalive_holds_an_idle_connection_open() -> None:
    pair = Pair(client=client_config(idle_timeout=5, keepalive_interval=1.0))
    pair.handshake()
    pair.run(max_time=30)
    assert pair.client.is_established and pair.server.is_established
    assert pair.client.ping_state.largest_acknowledged >= 25
    assert pair.client.latest_rtt == pytest.approx(2 * pair.latency, abs=1e-6)


def test_keepalive_does_not_hide_a_dead_peer() -> None:
    pair, raw = raw_server_pair(idle_timeout=5, keepalive_interval=1.0)
    raw.send_transport_parameters()
    pair.run_until(lambda: pair.client.peer_params is not None)
    start = pair.now
    pair.run(max_time=30)  # the raw server never answers QX_PING
    event = pair.terminated("client")
    assert event.kind == "idle_timeout" and not event.by_peer
    assert pair.now - start == pytest.approx(5.0 + pair.client.config.close_timeout, abs=0.05)
    pings = [f.sequence_number for f in frames_of(raw.received) if isinstance(f, QxPingFrame)]
    assert pings == list(range(len(pings))) and 4 <= len(pings) <= 5


def test_handshake_timeout() -> None:
    pair = Pair(client=client_config(handshake_timeout=3.0))
    pair.start()
    pair.client.data_to_send(pair.now)  # the ClientHello is lost: the server never hears
    start = pair.now
    pair.run_until(lambda: pair.client.is_terminated, max_time=10)
    event = pair.terminated("client")
    assert event.kind == "handshake_timeout"
    assert pair.now - start == pytest.approx(3.0)


def test_handshake_timeout_without_peer_transport_parameters() -> None:
    pair, _raw = raw_server_pair(handshake_timeout=3.0)
    assert pair.client.is_established
    pair.run(max_time=10)
    event = pair.terminated("client")
    assert event.kind == "handshake_timeout" and "transport parameters" in event.reason
