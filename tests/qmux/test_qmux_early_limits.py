"""A QMux server refuses 0-RTT whose remembered limits it lowered (RFC 9000 §7.4.1,
draft-ietf-quic-qmux "Using 0-RTT"; issue 12).

The ticket comes from a server with the default QMux parameters; the client then
resumes against a server configured otherwise.  Lower limits: 0-RTT rejected, PSK
resumed, the early bytes re-sent and read once; the same or higher: accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

from mstls.core.stream_limits import BIDI
from mstls.qmux.early import REMEMBERED_LIMITS, early_data_limits
from mstls.wire.transport_params import TransportParameterId, TransportParameters
from tests.qmux.test_qmux_early_data import REQUEST, Setup, early_pair, server_read

DEFAULTS = Setup().server().transport_parameters()


def _resume(**server: Any) -> tuple[Any, int, int]:
    setup = Setup()
    setup.first_connection()
    pair, early, late = early_pair(setup, **server)
    pair.handshake()
    pair.drain()
    assert not pair.client.is_terminated and not pair.server.is_terminated
    return pair, early, late


@pytest.mark.parametrize(
    "server",
    [
        {"initial_max_data": DEFAULTS.initial_max_data // 2},
        {"max_streams_bidi": 10},
        {"initial_max_stream_data": DEFAULTS.initial_max_stream_data_bidi_remote // 2},
        {"max_record_size": DEFAULTS.max_record_size // 2},
    ],
    ids=["initial_max_data", "initial_max_streams_bidi", "stream_data", "max_record_size"],
)
def test_lower_limits_reject_early_data_but_resume(server: dict[str, Any]) -> None:
    pair, early, late = _resume(**server)
    assert pair.client.tls.resumed and pair.server.tls.resumed
    assert pair.client.early_data_accepted is False and pair.server.early_data_accepted is False
    assert server_read(pair, early) == REQUEST  # re-sent by the TLS layer, read once
    assert server_read(pair, late) == b"not replay-safe"


def test_rejected_early_data_leaves_the_new_lower_limits_in_force() -> None:
    pair, _early, _late = _resume(initial_max_data=1 << 19, max_streams_bidi=10)
    streams = pair.client.streams
    assert streams.connection_credit.limit == 1 << 19
    assert streams.stream_counts.peer_max[BIDI] == 10


@pytest.mark.parametrize(
    "server",
    [{}, {"initial_max_data": DEFAULTS.initial_max_data * 2, "max_streams_bidi": 200}],
    ids=["same", "higher"],
)
def test_same_or_higher_limits_accept_early_data(server: dict[str, Any]) -> None:
    pair, early, _late = _resume(**server)
    assert pair.client.early_data_accepted is True and pair.server.early_data_accepted is True
    assert server_read(pair, early) == REQUEST


def test_changed_early_data_context_rejects() -> None:
    """TLSConfig.early_data_context: opaque application settings (RFC 9001 §4.6.2)."""
    pair, early, _late = _resume(tls={"early_data_context": b"other application settings"})
    assert pair.client.tls.resumed and pair.client.early_data_accepted is False
    assert server_read(pair, early) == REQUEST


def test_server_limits_cover_every_remembered_parameter() -> None:
    limits = early_data_limits(TransportParameters(max_record_size=5000))
    assert limits[TransportParameterId.MAX_RECORD_SIZE] == 5000
    assert len(limits) == len(REMEMBERED_LIMITS)
