"""Fuzzed frames in *validly protected* packets, built with the sender's own keys
so they reach the frame handlers, and damaged TLS messages carried intact
(the rules checked are in :mod:`tests.quic.fuzz_checks`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from mstls.core.recovery import PacketNumberSpace
from mstls.quic.crypto_stream import CryptoSender

from .fuzz_checks import carries_close, check_pair, deliver, settle
from .fuzz_corpus import (
    captured_datagrams,
    established_pair,
    mutate,
    protect_long,
    protect_one_rtt,
)
from .fuzz_strategies import frame_payloads, fuzz_settings
from .pair import Pair

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
    """Mutate the ``target``-th chunk of TLS handshake bytes any connection queues.

    :func:`mutate` may graft packets of the captured corpus, which is built (once
    per process) by running a handshake of its own.  It is built here, before the
    patch: built under it, its TLS writes would be mutated and call :func:`mutate`
    again, which builds the corpus again (RecursionError when this test ran
    first), and a damaged corpus would be cached for every later test.
    """
    captured_datagrams()
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
