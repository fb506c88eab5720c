"""ECN against aioquic, which neither marks nor reports ECN counts (RFC 9000 §13.4.2).

Our public blocking client marks its first packets ECT(0); aioquic's ACK frames
carry no counts, so validation fails, marking stops, and the transfer is intact.
"""

from __future__ import annotations

import pytest

import mstls
from mstls.core.ecn import EcnState
from tests.certs import get_pki

from .aioquic_peer import AioquicServer
from .protocol import ALPN, Command, command_line, parse_digest_line, pattern, sha256_hex

pytestmark = pytest.mark.network

TIMEOUT = 30.0


def test_our_blocking_client_with_ecn_against_aioquic() -> None:
    files = get_pki().files("server")
    data = pattern(2 << 20)
    with AioquicServer(files.cert, files.key) as server:
        config = mstls.ClientConfig(
            alpn=ALPN, cafile=get_pki().files("ca").cert, server_name="localhost"
        )
        with mstls.connect("127.0.0.1", server.port, config, transport="udp") as conn:
            stream = conn.open_stream()
            stream.write(command_line(Command.SINK) + data, timeout=TIMEOUT)
            stream.conclude()
            reply = bytearray()
            while chunk := stream.read(65536, timeout=TIMEOUT):
                reply += chunk
            assert parse_digest_line(reply) == sha256_hex(data)
            quic = conn._core.conn
            with conn._core.handler.lock:
                assert quic.recovery.ecn.state is EcnState.FAILED
                assert quic.send_codepoint == 0
