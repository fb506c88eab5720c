"""NAT rebinding mid-transfer through a relay that drops what goes to the old mapping
(issue 10, RFC 9000 §9.3): our server follows aioquic's client and ours.

The relay (:meth:`~tests.helpers.relay.FaultRelay.rebind`) changes its upstream port,
or its address (127.0.0.1 -> 127.0.0.2), once a few hundred datagrams of a 10 MiB
echo went through; the data must come back intact (SHA-256).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from typing import Any

import pytest

from mstls.quic.endpoint import ServerEndpoint
from tests.certs import get_pki
from tests.helpers.quic_driver import LoopThread
from tests.helpers.relay import Direction, FaultRelay
from tests.quic.pair import client_config, server_config

from .aioquic_client import ClientHandle, run_aioquic_client
from .aioquic_peer import AioquicServer
from .mstls_client import MstlsClient
from .mstls_service import ServiceEndpoint
from .protocol import Command, command_line

pytestmark = pytest.mark.network

SIZE = 10 << 20
#: Client-to-server datagrams through the relay before it rebinds.
REBIND_AFTER = 400
TIMEOUT = 120.0
HOSTS = {"port": None, "addr": "127.0.0.2"}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rebind_when_busy(
    relay: FaultRelay, host: str | None, done: threading.Event, seen: list[Any]
) -> None:
    """Rebind mid-transfer; ``seen`` gets the server's connections (read after the end)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and not done.is_set():
        if relay.counters(Direction.CLIENT_TO_SERVER).forwarded >= REBIND_AFTER:
            seen.extend(seen.pop()())
            relay.rebind(host)
            return
        time.sleep(0.005)


def _connections(loop: LoopThread, service: ServiceEndpoint) -> Any:
    return lambda: loop.call(lambda: service.endpoint.connections)


def _server_paths(connections: list[Any]) -> list[tuple[Any, int]]:
    return [(c.peer_address[:2], c.migrations) for c in connections]


def _check_moved(relay: FaultRelay, paths: list[tuple[Any, int]], upstream: list[Any]) -> None:
    assert relay.rebinds == 1
    [(address, migrations)] = paths
    assert [tuple(address)] == [tuple(a) for a in upstream]
    assert migrations == 1


@pytest.mark.parametrize("kind", list(HOSTS))
def test_our_client_through_a_rebinding_nat(kind: str) -> None:
    payload = os.urandom(SIZE)
    service = ServiceEndpoint(ServerEndpoint(server_config()))
    done = threading.Event()
    with LoopThread(service) as loop, FaultRelay(loop.address[:2], seed=1) as relay:
        seen: list[Any] = [_connections(loop, service)]
        rebinder = threading.Thread(target=_rebind_when_busy, args=(relay, HOSTS[kind], done, seen))
        with MstlsClient(client_config(), relay.address) as client:
            rebinder.start()
            try:
                echoed = client.echo(payload, timeout=TIMEOUT)
            finally:
                done.set()
                rebinder.join(TIMEOUT)
            paths = _server_paths(seen)
            upstream = relay.upstream_addresses()
    assert digest(echoed) == digest(payload)
    _check_moved(relay, paths, upstream)


@pytest.mark.parametrize("kind", list(HOSTS))
def test_aioquic_client_through_a_rebinding_nat(kind: str) -> None:
    payload = os.urandom(SIZE)
    service = ServiceEndpoint(ServerEndpoint(server_config()))
    done = threading.Event()
    cafile = get_pki().files("ca").cert

    async def scenario(h: ClientHandle) -> bytes:
        return await h.echo(payload, timeout=TIMEOUT)

    with LoopThread(service) as loop, FaultRelay(loop.address[:2], seed=1) as relay:
        seen: list[Any] = [_connections(loop, service)]
        rebinder = threading.Thread(target=_rebind_when_busy, args=(relay, HOSTS[kind], done, seen))
        rebinder.start()
        try:
            host, port = relay.address
            echoed = run_aioquic_client(host, port, cafile, scenario, timeout=TIMEOUT + 10)
        finally:
            done.set()
            rebinder.join(TIMEOUT)
        paths = _server_paths(seen)
        upstream = relay.upstream_addresses()
    assert digest(echoed) == digest(payload)
    _check_moved(relay, paths, upstream)


_ = asyncio  # the scenario is a coroutine run by run_aioquic_client's own loop


# -- connectionmigration: our client calls migrate() against aioquic's server -----------------
@pytest.mark.parametrize("local", [None, "127.0.0.2"], ids=["port", "addr"])
def test_our_client_migrates_against_aioquic(local: str | None) -> None:
    import mstls  # noqa: PLC0415 - the public blocking API, only here
    from tests.api.helpers import client_config as api_client_config  # noqa: PLC0415
    from tests.api.test_migrate import DcidTap, echo_with_migration  # noqa: PLC0415

    payload = os.urandom(4 << 20)
    tap = DcidTap()
    files = get_pki().files("server")
    with (
        AioquicServer(files.cert, files.key) as server,
        FaultRelay(("127.0.0.1", server.port), seed=1, tap=tap) as relay,
    ):
        host, port = relay.address
        with mstls.connect(host, port, api_client_config(), timeout=TIMEOUT) as conn:
            echoed = echo_with_migration(conn, command_line(Command.ECHO) + payload, local)
            assert conn.sans_io.migrations == 1 and conn.sans_io.path.local is not None
    assert digest(echoed) == digest(payload)
    assert len(tap.by_address) == 2
    (_, first), (second_address, second) = list(tap.by_address.items())
    assert first.isdisjoint(second), "a connection ID was used on both paths (§9.5)"
    if local is not None:
        assert second_address[0] == local
