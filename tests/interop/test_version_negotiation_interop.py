"""Incompatible version negotiation against aioquic over UDP, through the public API.

An aioquic server configured for QUIC v1 only answers a v2 Initial with a Version
Negotiation packet; a blocking mstls client preferring v2 must retry in v1
(RFC 9000 §6.2, RFC 9368 §4) and complete the handshake.
"""

from __future__ import annotations

import pytest

import mstls
from mstls.wire.packet import QUIC_VERSION_1, QUIC_VERSION_2
from tests.api.helpers import TIMEOUT, client_config
from tests.api.helpers import server_config as server_config_for
from tests.certs import get_pki
from tests.interop.aioquic_peer import AioquicServer

pytestmark = pytest.mark.network


def test_v2_first_client_retries_in_v1_against_a_v1_only_aioquic_server() -> None:
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key, versions=[QUIC_VERSION_1]) as server:
        config = client_config(extra={"versions": (QUIC_VERSION_2, QUIC_VERSION_1)})
        with mstls.connect("127.0.0.1", server.port, config, timeout=TIMEOUT) as conn:
            conn.wait_handshake(TIMEOUT)
            sans_io = conn.sans_io
            assert sans_io.reacted_to_version_negotiation == QUIC_VERSION_2
            assert sans_io.version == QUIC_VERSION_1


def test_no_common_version_is_a_clear_error() -> None:
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key, versions=[QUIC_VERSION_1]) as server:
        config = client_config(extra={"versions": (QUIC_VERSION_2,)})
        with pytest.raises(mstls.Error, match="no QUIC version in common"):
            mstls.connect("127.0.0.1", server.port, config, timeout=TIMEOUT).wait_handshake(TIMEOUT)


def test_mstls_client_retries_in_v1_against_a_v1_only_mstls_listener() -> None:
    """The same over the public API on both ends: our endpoint sends the VN."""
    server_config = server_config_for(extra={"versions": (QUIC_VERSION_1,)})
    with mstls.listen("127.0.0.1", 0, server_config) as listener:
        config = client_config(extra={"versions": (QUIC_VERSION_2, QUIC_VERSION_1)})
        with mstls.connect("127.0.0.1", listener.address[1], config, timeout=TIMEOUT) as conn:
            conn.wait_handshake(TIMEOUT)
            accepted = listener.accept(timeout=TIMEOUT)
            assert conn.sans_io.reacted_to_version_negotiation == QUIC_VERSION_2
            assert conn.sans_io.version == accepted.sans_io.version == QUIC_VERSION_1
            accepted.close()
