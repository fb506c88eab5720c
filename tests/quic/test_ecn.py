"""ECN on an in-memory path (RFC 9000 §13.4, RFC 9002 §7.1): counts, validation, CE.

Datagrams carry their codepoint as an attribute of a ``bytes`` subclass; the path
may rewrite it (clear it, mark CE) like a router would.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from mstls.core.ecn import ECN_TESTING_PACKETS, ECT0, EcnState
from mstls.core.recovery import PacketNumberSpace

from .pair import Pair, client_config, server_config
from .test_connection_memory import transfer

APP = PacketNumberSpace.APPLICATION
ONE_WAY = 0.010
RTT = 2 * ONE_WAY
CE = 0b11


class Marked(bytes):
    ecn = 0


def _pair(rewrite: Callable[[int, bool, Pair], int] | None = None, **config: Any) -> Pair:
    """A pair whose sockets mark what the connections ask (:mod:`mstls.quic.ecn_marking`)."""
    holder: list[Pair] = []

    def tamper(data: bytes, to_server: bool) -> bytes:
        pair = holder[0]
        sender = pair.client if to_server else pair.server
        marked = Marked(data)
        marked.ecn = sender.send_codepoint
        if rewrite is not None:
            marked.ecn = rewrite(marked.ecn, to_server, pair)
        return marked

    pair = Pair(
        latency=ONE_WAY,
        client=client_config(pmtu_discovery=False, **config),
        server=server_config(pmtu_discovery=False, **config),
        tamper=tamper,
    )
    holder.append(pair)
    pair.client.enable_ecn_marking()
    pair.endpoint.ecn_marking = True
    pair.handshake()
    return pair


def _quiesce(pair: Pair) -> None:
    pair.run_until(
        lambda: (
            not pair.in_flight
            and not pair.client.recovery.bytes_in_flight
            and not pair.server.recovery.bytes_in_flight
        )
    )


def test_counts_reach_the_sender_and_validate_the_path() -> None:
    pair = _pair()
    transfer(pair, 300_000)
    _quiesce(pair)
    client, server = pair.client, pair.server
    assert client.recovery.ecn.state is EcnState.CAPABLE
    assert server.recovery.ecn.state is EcnState.CAPABLE
    counted = server.spaces[APP].acks.ecn_counts
    reported = client.recovery.ecn.peer_counts(APP)
    assert counted.ect0 > 300_000 // 1200
    assert counted.ect1 == counted.ce == reported.ect1 == reported.ce == 0
    # The server counts the client's last ACK-only packets, which it never acknowledges.
    assert 0 <= counted.ect0 - reported.ect0 <= 2
    assert client.send_codepoint == ECT0


def test_marking_pauses_after_the_testing_packets_until_validated() -> None:
    pair = _pair()
    validator = pair.client.recovery.ecn
    assert validator.state is EcnState.CAPABLE  # the handshake's ACKs validated it
    fresh = type(validator)()
    for _ in range(ECN_TESTING_PACKETS):
        assert fresh.marking
        fresh.on_packet_sent(True)
    assert fresh.state is EcnState.UNKNOWN and not fresh.marking
    fresh.on_marked_lost(ECN_TESTING_PACKETS)  # every marked packet lost
    assert fresh.state is EcnState.FAILED


def test_a_path_that_clears_the_codepoint_fails_validation() -> None:
    cleared = {"on": False}

    def rewrite(ecn: int, to_server: bool, pair: Pair) -> int:
        return 0 if cleared["on"] and to_server else ecn

    pair = _pair(rewrite)
    assert pair.client.recovery.ecn.state is EcnState.CAPABLE
    cleared["on"] = True
    transfer(pair, 100_000)
    assert pair.client.recovery.ecn.state is EcnState.FAILED
    assert pair.client.send_codepoint == 0  # marking stopped
    transfer(pair, 100_000)  # and the connection goes on


def test_undercounting_peer_fails_validation() -> None:
    """Counts that grow by less than the marked packets acknowledged (§13.4.2.1)."""
    seen = {"n": 0}

    def rewrite(ecn: int, to_server: bool, pair: Pair) -> int:
        if to_server and ecn:
            seen["n"] += 1
            if seen["n"] > 20 and seen["n"] % 2:
                return 0
        return ecn

    pair = _pair(rewrite)
    transfer(pair, 100_000)
    assert pair.client.recovery.ecn.state is EcnState.FAILED
    assert pair.client.send_codepoint == 0


def test_decreasing_counts_fail_validation() -> None:
    pair = _pair()
    transfer(pair, 50_000)
    assert pair.client.recovery.ecn.state is EcnState.CAPABLE
    pair.server.spaces[APP].acks._ecn[ECT0] = 1  # a peer reporting bogus counts
    transfer(pair, 50_000)
    assert pair.client.recovery.ecn.state is EcnState.FAILED
    assert pair.client.send_codepoint == 0


def test_ce_halves_the_window_once_per_round_trip() -> None:
    window = {"from": 0.0, "to": 0.0}

    def rewrite(ecn: int, to_server: bool, pair: Pair) -> int:
        if to_server and ecn and window["from"] <= pair.now < window["to"]:
            return CE
        return ecn

    pair = _pair(rewrite)
    cc = pair.client.recovery.congestion
    halvings: list[tuple[float, int, int]] = []
    original = pair.step
    last = {"ssthresh": cc.ssthresh, "cwnd": cc.cwnd}

    def step() -> bool:
        result = original()
        if cc.ssthresh != last["ssthresh"]:
            halvings.append((pair.now, int(last["cwnd"]), cc.cwnd))
        last["ssthresh"], last["cwnd"] = cc.ssthresh, cc.cwnd
        return result

    pair.step = step  # type: ignore[method-assign]
    window["from"], window["to"] = pair.now + 0.05, pair.now + 0.05 + 10 * RTT
    transfer(pair, 2 << 20)
    ce_events = pair.client.recovery.ecn.ce_events
    assert len(halvings) >= 3
    assert ce_events > len(halvings)  # many CE-reporting ACKs, fewer reductions
    for (t0, _, _), (t1, _, _) in itertools.pairwise(halvings):
        assert t1 - t0 >= RTT - 1e-9  # at most once per round trip (recovery period)
    for _, before, after in halvings:
        assert after <= max(before // 2, cc.minimum_window)
    assert len(halvings) <= 10 + 2
    assert pair.client.stats(pair.now).packets_lost == 0  # CE, not loss


def test_ecn_off_never_marks() -> None:
    pair = _pair(ecn=False)
    transfer(pair, 50_000)
    assert pair.client.send_codepoint == 0
    assert pair.client.recovery.ecn.state is EcnState.FAILED
    assert pair.server.spaces[APP].acks.ecn_counts.ect0 == 0
