"""Paths on a virtual clock: NAT rebinding, validation, migration (RFC 9000 §8.2, §9)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mstls.core.events import ConnectionTerminatedEvent
from mstls.exceptions import MigrationRefused
from mstls.quic.paths import PATH_AMPLIFICATION_FACTOR, only_probing_frames
from mstls.wire.control_frames import PathChallengeFrame
from mstls.wire.frame_types import FrameType
from mstls.wire.frames import FRAME_DECODERS, PingFrame, encode_frame
from mstls.wire.packet import peek_destination_cid
from tests.quic.pair import CLIENT_ADDR, Pair, client_config, server_config

NEW_PORT = ("127.0.0.1", 40001)
NEW_HOST = ("127.0.0.2", 40000)
SIZE = 200_000


def transfer(pair: Pair, size: int = SIZE, *, upload: bool = False) -> bytes:
    """Send ``size`` random bytes on a new stream (server to client unless ``upload``)."""
    payload = os.urandom(size)
    sender = pair.client if upload else pair.server
    sid = sender.streams.open_stream()
    sender.streams.write(sid, payload, fin=True)
    pair.endpoint.touch(pair.server)
    receiver_is_client = not upload
    got = bytearray()
    accepted: list[int] = []

    def done() -> bool:
        receiver = pair.client if receiver_is_client else pair.server
        if not accepted:
            accepted.extend(s for s in receiver.streams.accept_pending() if s == sid)
        if not accepted:
            return False
        data, fin = receiver.streams.read(sid, 1 << 20)
        got.extend(data)
        return fin

    pair.run_until(done, max_time=30)
    return bytes(got) if bytes(got) == payload else b"corrupt"


def established(**server: Any) -> Pair:
    pair = Pair(server=server_config(**server) if server else None)
    pair.handshake()
    pair.nat = True
    return pair


def no_termination(pair: Pair) -> None:
    for event in (*pair.client_events, *pair.server_events):
        assert not isinstance(event, ConnectionTerminatedEvent), event


def test_probing_frames_are_recognised() -> None:
    challenge = encode_frame(PathChallengeFrame(b"12345678"))
    assert only_probing_frames(challenge + bytes(20), FRAME_DECODERS)
    assert not only_probing_frames(challenge + encode_frame(PingFrame()), FRAME_DECODERS)
    assert not only_probing_frames(bytes([FrameType.PATH_CHALLENGE]) + b"1", FRAME_DECODERS)


@pytest.mark.parametrize("new_address", [NEW_PORT, NEW_HOST], ids=["port", "address"])
def test_server_follows_a_nat_rebinding_mid_transfer(new_address: tuple[str, int]) -> None:
    pair = established()
    server = pair.server
    rtt_before = server.recovery.rtt
    first_cid = server.peer_cids.current
    moved: list[bool] = []
    original_step = pair.step

    def step() -> bool:
        if not moved and server.streams.has_data_to_send():
            pair.client_addr = new_address  # the NAT gives the client a new mapping
            moved.append(True)
        return original_step()

    pair.step = step  # type: ignore[method-assign]
    payload_ok = transfer(pair)
    assert payload_ok != b"corrupt"
    assert server.peer_address == new_address
    assert server.path.validated and server.migrations == 1
    assert server.fallback_path is None
    # RFC 9000 §9.5: a fresh connection ID on the new path (the client gave spares).
    assert server.peer_cids.current != first_cid
    # RFC 9000 §9.4: the RTT estimate restarts unless only the port changed.
    if new_address == NEW_PORT:
        assert server.recovery.rtt is rtt_before
    else:
        assert server.recovery.rtt is not rtt_before
    no_termination(pair)


def test_congestion_state_is_reset_on_a_new_address_only() -> None:
    pair = established()
    transfer(pair)
    server = pair.server
    grown = server.recovery.congestion.cwnd
    initial = type(server.recovery.congestion)(1200).cwnd
    assert grown > initial
    server._move_to(server._arrival(NEW_PORT, None), pair.now)
    assert server.recovery.congestion.cwnd == grown  # only the port changed (§9.4)
    server._move_to(server._arrival(NEW_HOST, None), pair.now)
    assert server.recovery.congestion.cwnd == initial
    assert not server.recovery.rtt.has_sample
    assert server.mtu.current == 1200  # the new path's PMTU is searched again (§14)


def test_anti_amplification_on_the_unvalidated_path() -> None:
    pair = established()
    server = pair.server
    pair.client_addr = NEW_HOST
    pair.latency = 0.05  # validation takes a while: the limit is what holds the server back
    sender_sid = server.streams.open_stream()
    server.streams.write(sender_sid, os.urandom(SIZE), fin=True)
    pair.endpoint.touch(server)
    checked = 0
    for _ in range(2000):
        path = server.path
        if path.address == NEW_HOST and not path.validated:
            assert path.bytes_sent <= PATH_AMPLIFICATION_FACTOR * path.bytes_received
            checked += 1
        if path.address == NEW_HOST and path.validated:
            break
        if not pair.step():
            break
    assert checked, "the server never was on the new path unvalidated"
    assert server.path.validated and server.peer_address == NEW_HOST


def test_failed_validation_returns_to_the_old_path() -> None:
    pair = established()
    pair.nat = False
    server = pair.server
    pair.client_addr = NEW_HOST
    sent_to: list[Any] = []
    moved: list[bool] = []
    original = pair._send

    def send(data: bytes, to_server: bool, address: Any = None) -> None:
        if to_server and moved:
            return  # the client falls silent after its move
        if not to_server:
            sent_to.append(address)
            if address == NEW_HOST:
                return  # the new path does not work towards the client
        original(data, to_server, address)

    pair._send = send  # type: ignore[method-assign]
    client = pair.client
    sid = client.streams.open_stream()
    client.streams.write(sid, b"x" * 100)
    pair.run_until(lambda: server.peer_address == NEW_HOST, max_time=5)
    moved.append(True)
    assert not server.path.validated and server.fallback_path is not None
    pair.run_until(lambda: server.failed_validations == 1, max_time=20)
    assert server.peer_address == CLIENT_ADDR and server.path.validated
    assert NEW_HOST in sent_to


def test_peer_returning_to_the_old_path_is_followed_back() -> None:
    pair = established()
    server = pair.server
    pair.client_addr = NEW_HOST
    transfer(pair, 20_000, upload=True)
    pair.client_addr = CLIENT_ADDR
    assert transfer(pair, 20_000) != b"corrupt"
    assert server.peer_address == CLIENT_ADDR and server.migrations == 2


def test_probing_packets_are_answered_without_moving() -> None:
    pair = established()
    server = pair.server
    pair.client_locals["probe"] = NEW_HOST
    pair.nat = False
    path = pair.client.probe_path("probe", pair.now)
    path.move_when_validated = False  # probe only
    pair.run_until(lambda: path.validated, max_time=5)
    assert server.peer_address == CLIENT_ADDR  # §9.3.1: a probe moves nothing
    assert server.migrations == 0
    assert pair.client.peer_address == pair.client.path.address
    assert pair.client.path.local is None


def test_client_migrates_with_a_new_connection_id() -> None:
    pair = established()
    client, server = pair.client, pair.server
    old_dcid = client.peer_cids.current
    pair.client_locals["second"] = NEW_HOST
    dcids_from_new: list[bytes] = []
    original = pair._send

    def send(data: bytes, to_server: bool, address: Any = None) -> None:
        if to_server and address == NEW_HOST:
            dcids_from_new.append(bytes(peek_destination_cid(data, 8)))
        original(data, to_server, address)

    pair._send = send  # type: ignore[method-assign]
    client.probe_path("second", pair.now)
    pair.run_until(lambda: client.path.local == "second", max_time=5)
    payload_ok = transfer(pair)
    assert payload_ok != b"corrupt"
    assert server.peer_address == NEW_HOST and server.path.validated
    assert dcids_from_new and old_dcid not in dcids_from_new
    assert client.peer_cids.current != old_dcid
    no_termination(pair)


def test_migration_refused_without_a_spare_connection_id() -> None:
    pair = Pair(client=client_config(active_connection_id_limit=2))
    pair.handshake()
    pair.run_until(lambda: not pair.client.peer_cids.has_pending_frames, max_time=1)
    for _ in range(200):  # let the NEW_CONNECTION_ID arrive
        pair.step()
    pair.client.probe_path("a", pair.now)
    with pytest.raises(MigrationRefused, match="spare connection ID"):
        pair.client.probe_path("b", pair.now)


def test_disable_active_migration() -> None:
    pair = established(disable_active_migration=True)
    assert pair.client.peer_params is not None
    assert pair.client.peer_params.disable_active_migration
    with pytest.raises(MigrationRefused, match="disable_active_migration"):
        pair.client.probe_path("second", pair.now)
    server = pair.server
    pair.client_addr = NEW_PORT
    pair.nat = False
    received = server.packets_received
    client = pair.client
    sid = client.streams.open_stream()
    client.streams.write(sid, b"x" * 100, fin=True)
    for _ in range(50):
        pair.step()
    assert server.peer_address == CLIENT_ADDR  # §9: dropped, not followed
    assert server.packets_received == received
    assert not server.streams.accept_pending()


def test_migration_refused_before_the_handshake() -> None:
    pair = Pair()
    pair.start()
    with pytest.raises(MigrationRefused, match="handshake"):
        pair.client.probe_path("x", pair.now)


PREFERRED = ("127.0.0.9", 4434)


def test_client_moves_to_the_preferred_address() -> None:
    pair = Pair(server=server_config(preferred_address=PREFERRED))
    pair.handshake()
    client, server = pair.client, pair.server
    assert client.peer_params is not None
    preferred = client.peer_params.preferred_address
    assert preferred is not None and preferred.ipv4_port == PREFERRED[1]
    # RFC 9000 §5.1.1: its connection ID is sequence 1 and routes to the connection.
    assert pair.endpoint.connection_for(bytes([0x40]) + preferred.connection_id) is server
    pair.run_until(lambda: client.path.address == PREFERRED, max_time=5)
    assert client.peer_address == PREFERRED and client.path.validated
    assert client.peer_cids.current == preferred.connection_id
    assert transfer(pair, 20_000) != b"corrupt"
    no_termination(pair)


def test_preferred_address_not_followed_when_disabled() -> None:
    pair = Pair(
        client=client_config(follow_preferred_address=False),
        server=server_config(preferred_address=PREFERRED),
    )
    pair.handshake()
    for _ in range(100):
        pair.step()
    assert pair.client.path.address != PREFERRED and not pair.client.candidate_paths


def test_path_response_on_the_current_path_is_padded() -> None:
    """RFC 9000 §8.2.2: a PATH_RESPONSE goes in a datagram of at least 1200 bytes."""
    pair = established()
    client = pair.client
    client.pending_path_responses.append(b"abcdefgh")
    [datagram] = client.datagrams_to_send(pair.now)
    assert len(datagram) >= 1200
