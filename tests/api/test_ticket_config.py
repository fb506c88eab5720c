"""Session ticket settings of ClientConfig/ServerConfig are checked up front (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest

import mstls
from tests.api.helpers import client_config, server_config


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"session_ticket_keys": [b"short"]}, "each key must be 32 bytes"),
        ({"session_ticket_keys": bytes(32)}, "a list of 1-8 keys"),
        ({"session_ticket_keys": [bytes(32)] * 9}, "a list of 1-8 keys"),
        ({"session_tickets": -1}, "session_tickets: must be an integer 0-255"),
        ({"session_tickets": 256}, "session_tickets: must be an integer 0-255"),
        ({"ticket_lifetime": 0}, "ticket_lifetime: must be 1-604800 seconds"),
        ({"ticket_lifetime": 8 * 24 * 3600}, "ticket_lifetime: must be 1-604800 seconds"),
        ({"ticket_lifetime": 1.5}, "ticket_lifetime: must be whole seconds"),
    ],
)
def test_bad_server_ticket_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(mstls.ConfigurationError, match=message):
        server_config(**settings).tls_config()


def test_server_ticket_defaults() -> None:
    tls = server_config().tls_config()
    assert tls.ticket_keys is not None and tls.session_tickets == 2
    assert server_config(session_tickets=0).tls_config().ticket_keys is None
    assert server_config(session_ticket_keys=None).tls_config().ticket_keys is None
    config = server_config()
    assert "session_ticket_keys" not in repr(config)  # the key is a secret
    assert config.session_ticket_keys != server_config().session_ticket_keys


def test_client_ticket_store_must_be_a_store() -> None:
    with pytest.raises(mstls.ConfigurationError, match="ticket_store: expected an object"):
        client_config(ticket_store={}).tls_config("localhost")
    store = mstls.MemoryTicketStore()
    assert client_config(ticket_store=store).tls_config("localhost").ticket_store is store
