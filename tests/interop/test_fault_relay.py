"""QUIC through the fault-injecting relay: loss, reordering, duplication, corruption, blackholes.

Each case runs for three pairs: our client → aioquic server, aioquic client → our
server, and our client → our server.  The relay sits between client and server on
127.0.0.1 and draws its faults from a fixed seed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mstls.core.events import ConnectionTerminatedEvent
from mstls.quic.endpoint import ServerEndpoint
from tests.certs import get_pki
from tests.helpers.quic_driver import LoopThread
from tests.helpers.relay import FaultRelay
from tests.quic.pair import client_config, server_config

from .aioquic_client import ClientHandle, run_aioquic_client
from .aioquic_peer import AioquicServer
from .mstls_client import MstlsClient
from .mstls_service import ServiceEndpoint
from .protocol import pattern, sha256_hex

pytestmark = pytest.mark.network

SIZE = 16 << 20
PAIRS = ["mstls-aioquic", "aioquic-mstls", "mstls-mstls"]
LOSSY = {"loss": 0.10, "reorder": 0.05, "duplicate": 0.05}
CORRUPT = {"corrupt": 0.01}
IDLE = 1.0


@contextmanager
def server(kind: str, **kw: Any) -> Iterator[tuple[int, Any]]:
    """A server of ``kind`` ("mstls" or "aioquic"); yields its port and the object."""
    if kind == "aioquic":
        files = get_pki().files("server")
        with AioquicServer(files.cert, files.key, **kw) as peer:
            yield peer.port, peer
    else:
        service = ServiceEndpoint(ServerEndpoint(server_config(**kw)))
        with LoopThread(service) as loop:
            yield loop.address[1], service


def our_client(port: int, **kw: Any) -> MstlsClient:
    return MstlsClient(client_config(**kw), ("127.0.0.1", port))


def run_aioquic(port: int, scenario: Any, **kw: Any) -> Any:
    cafile = get_pki().files("ca").cert
    return run_aioquic_client("127.0.0.1", port, cafile, scenario, timeout=180, **kw)


def transfer(pair: str, faults: dict[str, float], seed: int) -> None:
    """Upload SIZE bytes through the relay and check the server's SHA-256."""
    data = pattern(SIZE)
    expected = sha256_hex(data)
    client_kind, server_kind = pair.split("-")
    with (
        server(server_kind) as (port, _),
        FaultRelay(("127.0.0.1", port), seed=seed, **faults) as relay,
    ):
        relay_port = relay.address[1]
        if client_kind == "aioquic":

            async def scenario(h: ClientHandle) -> str:
                return await h.sink(data, timeout=170)

            assert run_aioquic(relay_port, scenario) == expected
        else:
            with our_client(relay_port) as client:
                assert client.sink(data, timeout=170) == expected


@pytest.mark.parametrize("pair", PAIRS)
def test_16mib_through_loss_reordering_duplication(pair: str) -> None:
    transfer(pair, LOSSY, seed=10)


@pytest.mark.parametrize("pair", PAIRS)
def test_16mib_through_corruption(pair: str) -> None:
    transfer(pair, CORRUPT, seed=11)


@pytest.mark.parametrize("pair", PAIRS)
def test_handshake_at_30_percent_loss(pair: str) -> None:
    client_kind, server_kind = pair.split("-")
    # Exponential backoff through 30% loss can take long on a loaded machine: the
    # handshake deadlines are raised so the test measures recovery, not patience.
    patient = {"handshake_timeout": 60.0} if server_kind == "mstls" else {}
    with (
        server(server_kind, **patient) as (port, _),
        FaultRelay(("127.0.0.1", port), seed=12, loss=0.3) as relay,
    ):
        relay_port = relay.address[1]
        if client_kind == "aioquic":

            async def scenario(h: ClientHandle) -> bytes:
                return await h.echo(b"made it", timeout=60)

            assert run_aioquic(relay_port, scenario) == b"made it"
        else:
            with our_client(relay_port, handshake_timeout=60.0) as client:
                assert client.echo(b"made it", timeout=60) == b"made it"


def test_blackhole_idle_timeout_our_client() -> None:
    """Our client, cut off after the handshake, ends by idle timeout in bounded time."""
    for server_kind in ("aioquic", "mstls"):
        with (
            server(server_kind) as (port, _),
            FaultRelay(("127.0.0.1", port), seed=13) as relay,
            our_client(relay.address[1], idle_timeout=IDLE) as client,
        ):
            assert client.echo(b"before") == b"before"
            relay.set_blackhole(True)
            start = time.monotonic()
            client.wait(lambda: client.terminated is not None, timeout=IDLE * 10)
            elapsed = time.monotonic() - start
            event = client.terminated
        assert isinstance(event, ConnectionTerminatedEvent)
        assert event.kind == "idle_timeout"
        # RFC 9000 §10.1: at least the timeout, at most three PTOs more.
        assert IDLE * 0.9 <= elapsed <= IDLE * 6, elapsed


def test_blackhole_idle_timeout_our_server() -> None:
    """Our server ends a connection whose client went silent, by idle timeout."""
    with (
        server("mstls", idle_timeout=IDLE) as (port, service),
        FaultRelay(("127.0.0.1", port), seed=14) as relay,
        our_client(relay.address[1]) as client,
    ):
        assert client.echo(b"before") == b"before"
        relay.set_blackhole(True)
        start = time.monotonic()
        deadline = start + IDLE * 10
        while not any(e[0] == "connection_closed" for e in service.events):
            assert time.monotonic() < deadline, service.events
            time.sleep(0.02)
        elapsed = time.monotonic() - start
    closed = next(e for e in service.events if e[0] == "connection_closed")
    assert closed[3] is False  # by_peer: it was our own idle timeout
    assert IDLE * 0.9 <= elapsed <= IDLE * 6, elapsed
