"""``ServerConfig.max_connections``: the QUIC endpoint's connection cap is a setting
(issue 11); Initials beyond it are dropped before any state is made.  127.0.0.1 only."""

from __future__ import annotations

import pytest

import mstls
import mstls.config
from mstls.exceptions import ConfigurationError

from .helpers import TIMEOUT, client_config, server, server_config

#: How long the client over the cap tries: its Initials are dropped, so it times out.
REFUSED_WAIT = 1.0


def test_max_connections_is_a_checked_setting() -> None:
    assert server_config().max_connections == mstls.config.DEFAULT_MAX_CONNECTIONS
    assert server_config(max_connections=7).server_endpoint().max_connections == 7
    for bad in (0, -1, True, 2.5, "many"):
        with pytest.raises(ConfigurationError, match="max_connections"):
            server_config(max_connections=bad).server_endpoint()


@pytest.mark.network
def test_initials_beyond_the_cap_are_dropped_and_update_config_raises_it() -> None:
    with server(max_connections=2) as (listener, _):
        port = listener.address[1]
        held = [mstls.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT) for _ in "ab"]
        with pytest.raises(mstls.Error):
            mstls.connect("127.0.0.1", port, client_config(), timeout=REFUSED_WAIT)
        mstls.errors.clear_error()
        assert listener._handler.endpoint.max_connections == 2
        listener.update_config(server_config(max_connections=3))
        assert listener._handler.endpoint.max_connections == 3
        third = mstls.connect("127.0.0.1", port, client_config(), timeout=TIMEOUT)
        for conn in (*held, third):
            conn.close()
