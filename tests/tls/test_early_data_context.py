"""The early-data context a ticket seals (RFC 9000 §7.4.1, RFC 8446 §4.2.10, RFC 9001 §4.6.2).

A server accepts 0-RTT under a ticket only if no limit the ticket remembered is
above the current one and the opaque settings are unchanged; otherwise it rejects
the early data and still resumes the PSK.
"""

from __future__ import annotations

import pytest

from mstls.exceptions import ConfigurationError
from mstls.tls.cipher_suites import CipherSuite
from mstls.tls.early_data import MAX_EARLY_LIMITS, EarlyDataContext
from mstls.tls.server import ServerHandshake
from mstls.tls.tcp import ApplicationData, TLSConnection
from mstls.tls.tickets import TICKET_VERSION, TicketContents, TicketKeyRing
from tests.tls.driver import drain, memory_pair, pump
from tests.tls.test_early_data import EARLY, Setup, start_early

LIMITS = {0x04: 1 << 20, 0x08: 100}


def test_same_or_higher_limits_admit() -> None:
    sealed = EarlyDataContext(LIMITS, b"app").seal()
    assert EarlyDataContext(LIMITS, b"app").admits(sealed)
    assert EarlyDataContext({0x04: 2 << 20, 0x08: 100}, b"app").admits(sealed)
    assert EarlyDataContext(LIMITS | {0x09: 3}, b"app").admits(sealed)  # a new limit


@pytest.mark.parametrize(
    "current",
    [
        {0x04: (1 << 20) - 1, 0x08: 100},  # initial_max_data lowered
        {0x04: 1 << 20, 0x08: 99},  # initial_max_streams_bidi lowered
        {0x04: 1 << 20},  # a remembered limit we no longer have counts as 0
    ],
)
def test_a_lower_limit_refuses(current: dict[int, int]) -> None:
    sealed = EarlyDataContext(LIMITS).seal()
    assert not EarlyDataContext(current).admits(sealed)


def test_other_settings_refuse() -> None:
    sealed = EarlyDataContext(LIMITS, b"app v1").seal()
    assert not EarlyDataContext(LIMITS, b"app v2").admits(sealed)
    assert b"app v1" not in sealed  # only a digest travels


@pytest.mark.parametrize(
    "sealed",
    [
        b"",  # a ticket without a context (allows no 0-RTT under a context)
        bytes(31),  # short digest
        EarlyDataContext(LIMITS).seal()[:-1],  # truncated varint pair
        EarlyDataContext({4: 1}).seal() + bytes([4, 1]),  # a limit twice
    ],
)
def test_malformed_sealed_context_refuses(sealed: bytes) -> None:
    assert not EarlyDataContext(LIMITS).admits(sealed)


def test_empty_context_admits_its_own_seal() -> None:
    assert EarlyDataContext().admits(EarlyDataContext().seal())


def test_too_many_limits_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        EarlyDataContext({n: 1 for n in range(MAX_EARLY_LIMITS + 1)})


def test_ticket_carries_the_context_and_old_versions_are_declined() -> None:
    ring = TicketKeyRing([bytes(32)])
    contents = TicketContents(
        CipherSuite.AES_128_GCM_SHA256,
        bytes(32),
        "h3",
        "example.com",
        1,
        2,
        3,
        4,
        True,
        early_context=EarlyDataContext(LIMITS).seal(),
    )
    ticket = ring.seal(contents)
    assert ring.open(ticket) == contents
    older = bytes((TICKET_VERSION - 1,)) + ticket[1:]
    assert ring.open(older) is None  # a full handshake, never an error


# -- through the TLS/TCP engine ---------------------------------------------------------------
def _issue_with(setup: Setup, limits: dict[int, int], settings: bytes = b"") -> None:
    client, server = memory_pair(setup.client(), setup.server(early_data_context=settings))
    assert isinstance(server.handshake, ServerHandshake)
    server.handshake.early_data_limits = dict(limits)
    pump(client, server)
    assert len(setup.store) == 2


def _resume_with(
    setup: Setup, limits: dict[int, int], settings: bytes = b""
) -> tuple[TLSConnection, TLSConnection]:
    client, flight = start_early(setup)
    server = TLSConnection(setup.server(early_data_context=settings), is_client=False)
    assert isinstance(server.handshake, ServerHandshake)
    server.handshake.early_data_limits = dict(limits)
    server.start()
    server.receive_data(flight)
    pump(client, server)
    assert client.handshake_complete and server.handshake_complete
    return client, server


def _received(server: TLSConnection) -> bytes:
    return b"".join(e.data for e in drain(server) if isinstance(e, ApplicationData))


@pytest.mark.parametrize(
    ("limits", "accepted"),
    [
        (LIMITS, True),
        ({0x04: 2 << 20, 0x08: 200}, True),
        ({0x04: 1 << 19, 0x08: 100}, False),
        ({0x04: 1 << 20, 0x08: 10}, False),
    ],
)
def test_server_rejects_early_data_when_a_limit_was_lowered(
    limits: dict[int, int], accepted: bool
) -> None:
    setup = Setup()
    _issue_with(setup, LIMITS)
    client, server = _resume_with(setup, limits)
    assert server.handshake.resumed and client.handshake.resumed  # the PSK either way
    assert server.early_data_accepted is accepted and client.early_data_accepted is accepted
    assert _received(server) == EARLY  # rejected: re-sent after the handshake


def test_server_rejects_early_data_when_its_settings_changed() -> None:
    setup = Setup()
    _issue_with(setup, LIMITS, b"settings 1")
    client, server = _resume_with(setup, LIMITS, b"settings 2")
    assert server.handshake.resumed and client.early_data_accepted is False
    assert _received(server) == EARLY
