"""A client certificate the server refuses: one exception on both transports and
both APIs (issue 17 point 3).

TLS 1.3 completes the client's side of the handshake one flight before the server
has checked the client's certificate (RFC 8446 §4.4.4), so the refusal reaches a
client whose handshake is done: over QUIC as CONNECTION_CLOSE with CRYPTO_ERROR
``0x100 + alert`` (RFC 9001 §4.8), over TCP as a TLS alert record.  Both raise a
:class:`~mstls.exceptions.HandshakeAlert`, which is a ``HandshakeError`` and a
``ConnectionTerminated``, with the same ``code``, ``by_peer``, ``alert`` and queue
entries.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from mstls import errors
from mstls.codes import CRYPTO_ERROR_BASE, AlertDescription
from mstls.errors import Lib, Reason
from mstls.exceptions import HandshakeAlert
from tests.api.helpers import ALPN, TIMEOUT, client_config, server, server_config
from tests.certs import get_pki

pytestmark = pytest.mark.network

TRANSPORTS = ["udp", "tcp"]
#: (client identity, the alert the server answers with).
REFUSALS = [
    pytest.param({}, AlertDescription.certificate_required, id="no-certificate"),
    pytest.param("client_other_ca", AlertDescription.unknown_ca, id="untrusted-ca"),
]


def _identity(who: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(who, dict):
        return who
    files = get_pki().files(who)
    return {"certfile": files.cert, "keyfile": files.key}


def _mtls_server_config() -> dict[str, Any]:
    return {"client_cafile": get_pki().files("ca").cert, "require_client_cert": True}


def _check(exc: BaseException, alert: AlertDescription, transport: str) -> None:
    assert isinstance(exc, HandshakeAlert)  # trio's is also a BrokenResourceError
    assert isinstance(exc, mstls.HandshakeError) and isinstance(exc, mstls.ConnectionTerminated)
    assert exc.code == exc.error_code == CRYPTO_ERROR_BASE + alert
    assert type(exc.code) is int
    assert exc.alert is alert
    assert exc.by_peer and not exc.is_application
    entries = errors.errors()
    connection_lib = Lib.QMUX if transport == "tcp" else Lib.QUIC
    assert [(e.lib, e.reason) for e in entries] == [
        (Lib.TLS, Reason.TLS_ALERT),
        (connection_lib, Reason.CONNECTION_TERMINATED),
    ]
    assert entries[0].code == CRYPTO_ERROR_BASE + alert
    assert alert.name in entries[0].reason_text


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("who", "alert"), REFUSALS)
def test_blocking_refused_client_certificate(
    transport: str, who: dict[str, Any] | str, alert: AlertDescription
) -> None:
    with server(transport=transport, **_mtls_server_config()) as (listener, _):
        config = client_config(**_identity(who))
        errors.clear_error()
        with pytest.raises(mstls.Error) as info:
            conn = mstls.connect(
                "127.0.0.1", listener.address[1], config, transport=transport, timeout=TIMEOUT
            )
            with conn:
                conn.open_stream().read(timeout=TIMEOUT)  # read only: nothing to break a pipe
        _check(info.value, alert, transport)


async def _ignore_connection(conn: mstls.trio.Connection) -> None:
    await conn.accept_stream()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("who", "alert"), REFUSALS)
async def test_trio_refused_client_certificate(
    transport: str, who: dict[str, Any] | str, alert: AlertDescription
) -> None:
    serve = functools.partial(
        mstls.trio.serve,
        "127.0.0.1",
        0,
        server_config(**_mtls_server_config()),
        _ignore_connection,
        transport=transport,
    )
    config = mstls.ClientConfig(
        alpn=ALPN, cafile=get_pki().files("ca").cert, server_name="localhost", **_identity(who)
    )
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(serve)
        errors.clear_error()
        with trio.fail_after(TIMEOUT), pytest.raises(mstls.Error) as info:
            conn = await mstls.trio.connect(
                "127.0.0.1", listener.address[1], config, transport=transport, timeout=TIMEOUT
            )
            async with conn:
                stream = await conn.open_stream()
                await stream.receive_some()
        _check(info.value, alert, transport)
        await listener.aclose()
        nursery.cancel_scope.cancel()
