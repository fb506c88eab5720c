"""A QUIC server refuses 0-RTT whose remembered limits it lowered (RFC 9000 §7.4.1; issue 12).

The ticket comes from a server with the default limits; the client then resumes
against a server configured otherwise.  Lower limits: 0-RTT is rejected, the PSK
still resumed, and the replay-safe data arrives in 1-RTT; the same or higher
limits: accepted.  In memory with a virtual clock (:mod:`tests.quic.pair`).
"""

from __future__ import annotations

from typing import Any

import pytest

import mstls
from mstls.core.stream_limits import BIDI
from mstls.quic.early import REMEMBERED_LIMITS, early_data_limits
from mstls.tls.server import ServerHandshake
from mstls.wire.transport_params import TransportParameterId, TransportParameters
from tests.quic.test_quic_zero_rtt import REQUEST, Setup, early_pair, server_read

DEFAULTS = Setup().server().transport_parameters(b"x")


def _resume(quic: dict[str, Any]) -> tuple[Any, int]:
    setup = Setup()
    setup.first_connection()
    pair, early, _late, _sent = early_pair(setup, quic=quic)
    pair.run_until(lambda: pair.client.handshake_confirmed or pair.client.is_terminated)
    assert not pair.client.is_terminated
    return pair, early


@pytest.mark.parametrize(
    "quic",
    [
        {"initial_max_data": DEFAULTS.initial_max_data // 2},
        {"max_streams_bidi": 10},
        {"initial_max_stream_data": DEFAULTS.initial_max_stream_data_bidi_remote // 2},
        {"active_connection_id_limit": DEFAULTS.active_connection_id_limit - 1},
        {"disable_active_migration": True},
    ],
    ids=["initial_max_data", "initial_max_streams_bidi", "stream_data", "cid_limit", "migration"],
)
def test_lower_limits_reject_0rtt_but_resume(quic: dict[str, Any]) -> None:
    pair, early = _resume(quic)
    client = pair.client
    assert client.tls.resumed and pair.server.tls.resumed  # no certificate: the PSK
    assert client.early_data_accepted is False and pair.server.early_data_accepted is False
    pair.run_until(lambda: server_read(pair.server, early) == REQUEST)  # sent again
    assert not client.is_terminated and not pair.server.is_terminated


def test_rejected_0rtt_leaves_the_new_lower_limits_in_force() -> None:
    """RFC 9001 §4.6.2: after a rejection the client may not keep the remembered
    (higher) limits; opening beyond the new ones would be a peer's STREAM_LIMIT_ERROR."""
    pair, _early = _resume({"initial_max_data": 1 << 19, "max_streams_bidi": 10})
    streams = pair.client.streams
    assert streams.connection_credit.limit == 1 << 19
    assert streams.stream_counts.peer_max[BIDI] == 10


@pytest.mark.parametrize(
    "quic",
    [
        {},
        {"initial_max_data": DEFAULTS.initial_max_data * 2, "max_streams_bidi": 200},
        {"max_datagram_frame_size": 1200},  # datagrams newly allowed
    ],
    ids=["same", "higher", "datagrams_on"],
)
def test_same_or_higher_limits_accept_0rtt(quic: dict[str, Any]) -> None:
    pair, early = _resume(quic)
    assert pair.client.early_data_accepted is True and pair.server.early_data_accepted is True
    assert pair.client.tls.resumed
    pair.run_until(lambda: server_read(pair.server, early) == REQUEST)


def test_rejecting_server_below_the_streams_already_opened_fails() -> None:
    """Two streams were opened against the remembered limits; a rejecting server
    that allows one cannot take them again (a PROTOCOL_VIOLATION naming it)."""
    setup = Setup()
    setup.first_connection()
    pair, _early, _late, _sent = early_pair(setup, quic={"max_streams_bidi": 1})
    pair.run_until(lambda: pair.client.is_terminated or pair.client.state.name == "CLOSING")
    info = pair.client.close_info
    assert info is not None and info.error_code == 0x0A
    assert "initial_max_streams_bidi" in info.reason and "rejected 0-RTT" in info.reason


def test_server_limits_cover_every_remembered_parameter() -> None:
    limits = early_data_limits(TransportParameters(initial_max_data=7))
    assert limits[TransportParameterId.INITIAL_MAX_DATA] == 7
    assert len(limits) == len(REMEMBERED_LIMITS) + 1  # and "migration allowed"
    assert limits[TransportParameterId.DISABLE_ACTIVE_MIGRATION] == 1
    disabled = early_data_limits(TransportParameters(disable_active_migration=True))
    assert disabled[TransportParameterId.DISABLE_ACTIVE_MIGRATION] == 0


@pytest.mark.skipif(
    mstls.compiled,
    reason="replaces ServerHandshake.early_data_limits with a class property, which the "
    "compiled engine's own attribute bypasses; the pure build's run of this test checks it",
)
def test_client_refuses_a_server_that_accepts_0rtt_with_lower_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client's own check of §7.4.1, against a server that breaks it: one that
    seals and checks the ticket's limits while sending lower ones."""
    # The limits the server's TLS engine seals and checks, whatever the connection
    # sets (a class attribute: the connection may be compiled, its calls bound).
    sealed = early_data_limits(DEFAULTS)
    monkeypatch.setattr(
        ServerHandshake,
        "early_data_limits",
        property(lambda _self: sealed, lambda _self, _value: None),
        raising=False,
    )
    setup = Setup()
    setup.first_connection()
    pair, _early, _late, _sent = early_pair(setup, quic={"initial_max_data": 1 << 19})
    pair.run_until(lambda: pair.client.is_terminated or pair.client.state.name == "CLOSING")
    info = pair.client.close_info
    assert pair.client.early_data_accepted is True
    assert info is not None and info.error_code == 0x0A
    assert "accepted 0-RTT" in info.reason and "initial_max_data" in info.reason
