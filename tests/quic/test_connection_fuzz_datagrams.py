"""Fuzzing whole datagrams into a fresh endpoint, a connecting client and an
established pair: random bytes, mutations of real traffic, forged Initials
(the rules checked are in :mod:`tests.quic.fuzz_checks`).
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from mstls.quic.connection import QuicConnection
from mstls.quic.crypto import initial_protection
from mstls.quic.endpoint import ServerEndpoint
from mstls.quic.retry import retry_integrity_tag
from mstls.wire.frames import CryptoFrame, encode_frame
from mstls.wire.packet import PacketType, encode_long_header, encode_retry

from .fuzz_checks import (
    NOW,
    check_lone_connection,
    check_still_works,
    check_termination,
    deliver,
    drain,
    recorded_pair,
    settle,
)
from .fuzz_corpus import (
    AEAD_TAG,
    PN_LENGTH,
    captured_datagrams,
    established_pair,
    first_initial_cids,
    forged_initial,
    initial_crypto,
    mutate,
)
from .fuzz_strategies import frame_payloads, fuzz_settings, random_datagrams
from .pair import CLIENT_ADDR, SERVER_ADDR, client_config, server_config

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
