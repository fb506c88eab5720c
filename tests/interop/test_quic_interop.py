"""QUIC v1 interop with aioquic over 127.0.0.1, both directions (the issue's acceptance list).

A: our client against aioquic's server.  B: aioquic's client against our server.
Both servers speak the ``mstls-test`` protocol (tests/interop/protocol.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mstls.quic.crypto import OneRttKeys
from mstls.quic.endpoint import ServerEndpoint
from mstls.tls.cipher_suites import CipherSuite
from mstls.wire.packet import QUIC_VERSION_1, QUIC_VERSION_2
from tests.certs import get_pki
from tests.helpers.quic_driver import LoopThread
from tests.quic.pair import client_config, server_config

from .aioquic_client import ClientHandle, run_aioquic_client
from .aioquic_peer import AioquicServer
from .mstls_client import MstlsClient
from .mstls_service import ServiceEndpoint
from .protocol import Command, command_line, pattern, sha256_hex

pytestmark = pytest.mark.network

BIG = 4 << 20
STREAMS = 8


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def payloads() -> list[bytes]:
    base = pattern(BIG)
    return [bytes((i,)) + base[1:] for i in range(STREAMS)]


# -- A: our client, aioquic server -----------------------------------------------------------
@contextmanager
def aioquic_server(**kw: Any) -> Iterator[AioquicServer]:
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key, **kw) as server:
        yield server


@contextmanager
def our_client(server: AioquicServer, **tls: Any) -> Iterator[MstlsClient]:
    config = client_config(tls=tls) if tls else client_config()
    with MstlsClient(config, ("127.0.0.1", server.port)) as client:
        yield client


def test_a_handshake_and_eight_streams_of_4mib() -> None:
    with aioquic_server() as server, our_client(server) as client:
        assert client.handshake.alpn_protocol == "mstls-test"
        sent = payloads()
        echoed = client.echo_many(sent, timeout=120)
        assert [digest(e) for e in echoed] == [digest(s) for s in sent]
    assert server.events[0][0] == "handshake"


def test_a_unidirectional_reset_stop() -> None:
    with aioquic_server() as server, our_client(server) as client:
        assert client.uni(b"one way") == sha256_hex(b"one way")
        assert client.sink(b"x" * 100_000) == sha256_hex(b"x" * 100_000)
        assert client.request_reset(42) == 42
        assert client.request_stop(77) == 77
        sid = client.reset_from_client(99)
        server.wait_for_event(lambda e: e[:2] == ("stream_reset", sid), timeout=10)
        assert ("stream_reset", sid, 99) in server.events


def test_a_key_update_both_ways() -> None:
    with aioquic_server() as server, our_client(server) as client:
        keys = client.conn.spaces[2].send_keys
        assert isinstance(keys, OneRttKeys)
        client.key_update()
        assert client.echo(b"after our update") == b"after our update"
        assert keys.send_generation == 1
        [reply] = client.read_to_end([client.open(command_line(Command.KEYUPDATE) + b"theirs")])
        assert reply == b"theirs"
        client.wait(lambda: keys.receive_generation >= 2)
    assert ("key_phase_change", 1) in server.events


def test_a_application_close_both_ways() -> None:
    with aioquic_server() as server, our_client(server) as client:
        event = client.request_close(7, "server says bye")
        assert (event.error_code, event.reason, event.by_peer, event.is_application) == (
            7,
            "server says bye",
            True,
            True,
        )
    with aioquic_server() as server, our_client(server) as client:
        client.call(lambda: client.conn.close(9, "client says bye", now=time.monotonic()))
        server.wait_for_event(lambda e: e[0] == "connection_closed", timeout=10)
    assert ("connection_closed", 9, "client says bye", True) in server.events


def test_a_retry() -> None:
    with aioquic_server(retry=True) as server, our_client(server) as client:
        assert client.conn.retry_source_cid is not None
        assert client.echo(b"validated") == b"validated"


def test_a_chacha20() -> None:
    suite = CipherSuite.CHACHA20_POLY1305_SHA256
    with aioquic_server() as server, our_client(server, cipher_suites=[suite]) as client:
        assert client.handshake.cipher_suite == suite
        assert client.echo(b"chacha") == b"chacha"
    assert server.events[0] == ("handshake", "mstls-test", "CHACHA20_POLY1305_SHA256")


# -- B: aioquic client, our server -------------------------------------------------------------
@contextmanager
def our_server(retry: bool = False, **config: Any) -> Iterator[tuple[ServiceEndpoint, int]]:
    service = ServiceEndpoint(ServerEndpoint(server_config(**config), retry=retry))
    with LoopThread(service) as loop:
        yield service, loop.address[1]


def run(port: int, scenario: Any, **kw: Any) -> Any:
    cafile = get_pki().files("ca").cert
    return run_aioquic_client("127.0.0.1", port, cafile, scenario, timeout=120, **kw)


def test_b_handshake_and_eight_streams_of_4mib() -> None:
    import asyncio  # noqa: PLC0415 - only the aioquic scenarios need it

    sent = payloads()

    async def scenario(h: ClientHandle) -> list[bytes]:
        return list(await asyncio.gather(*(h.echo(p, timeout=110) for p in sent)))

    with our_server() as (service, port):
        echoed = run(port, scenario)
    assert [digest(e) for e in echoed] == [digest(s) for s in sent]
    assert service.events[0] == ("handshake", "mstls-test", "AES_128_GCM_SHA256")


def test_b_unidirectional_reset_stop() -> None:
    async def scenario(h: ClientHandle) -> tuple[Any, ...]:
        uni = await h.uni(b"one way")
        reset = await h.request_reset(42)
        stop = await h.request_stop(77)
        sid = h.reset_stream_from_client(99)
        await h.echo(b"sync")  # the reset has been processed once this returns
        return uni, reset, stop, sid

    with our_server() as (service, port):
        uni, reset, stop, sid = run(port, scenario)
        time.sleep(0.1)
    assert uni == sha256_hex(b"one way")
    assert (reset, stop) == (42, 77)
    assert ("stream_reset", sid, 99) in service.events


def test_b_key_update_both_ways() -> None:
    async def scenario(h: ClientHandle) -> int:
        await h.key_update()
        assert await h.echo(b"after client update") == b"after client update"
        assert await h.echo_after_key_update(b"server update") == b"server update"
        return h.key_phase_changes

    with our_server() as (service, port):
        changes = run(port, scenario)
        # The client has closed by now: the endpoint may have forgotten the
        # connection, the service still holds it.
        [conn] = [s.conn for s in service._services.values()]
        keys = conn.spaces[2].send_keys
        assert isinstance(keys, OneRttKeys) and keys.send_generation >= 2
    assert changes >= 2


def test_b_application_close_both_ways() -> None:
    async def server_closes(h: ClientHandle) -> Any:
        return await h.request_close(7, "server says bye")

    async def client_closes(h: ClientHandle) -> Any:
        await h.echo(b"x")
        return await h.close(9, "client says bye")

    with our_server() as (service, port):
        assert run(port, server_closes) == (7, "server says bye")
        run(port, client_closes)
        deadline = time.monotonic() + 10
        while ("connection_closed", 9, "client says bye", True) not in service.events:
            assert time.monotonic() < deadline, service.events
            time.sleep(0.05)


def test_b_retry() -> None:
    async def scenario(h: ClientHandle) -> tuple[bool, bytes]:
        return h.retried, await h.echo(b"validated")

    with our_server(retry=True) as (_, port):
        assert run(port, scenario) == (True, b"validated")


def test_b_chacha20() -> None:
    async def scenario(h: ClientHandle) -> Any:
        return h.handshake_info.cipher_suite, await h.echo(b"chacha")

    suite = CipherSuite.CHACHA20_POLY1305_SHA256
    with our_server() as (_, port):
        assert run(port, scenario, cipher_suites=[suite]) == (
            "CHACHA20_POLY1305_SHA256",
            b"chacha",
        )


# -- QUIC v2 and compatible version negotiation (RFC 9368, RFC 9369) -------------------------
V1, V2 = QUIC_VERSION_1, QUIC_VERSION_2


def test_a_v2_by_compatible_negotiation() -> None:
    """Our client starts in v1 and prefers v2; aioquic (which follows the client's
    preference) moves it."""
    with aioquic_server(versions=[V1, V2]) as server:
        config = client_config(versions=(V2, V1), initial_version=V1)
        with MstlsClient(config, ("127.0.0.1", server.port)) as client:
            assert client.conn.version == V2
            assert client.conn.original_version == V1
            sent = [pattern(1 << 20)]
            assert [digest(e) for e in client.echo_many(sent, timeout=60)] == [digest(sent[0])]


def test_a_v2_from_the_start() -> None:
    config = client_config(versions=(V2,))
    with (
        aioquic_server(versions=[V2, V1]) as server,
        MstlsClient(config, ("127.0.0.1", server.port)) as client,
    ):
        assert client.conn.version == V2
        sent = [pattern(1 << 20)]
        assert [digest(e) for e in client.echo_many(sent, timeout=60)] == [digest(sent[0])]


@pytest.mark.parametrize("aioquic_versions", [[V1, V2], [V2, V1]])
def test_b_v2_by_compatible_negotiation(aioquic_versions: list[int]) -> None:
    """aioquic starts in its first version offering both; our server prefers v2."""
    sent = pattern(1 << 20)

    async def scenario(h: ClientHandle) -> tuple[int, bytes]:
        return h.version, await h.echo(sent, timeout=50)

    with our_server(versions=(V2, V1)) as (_service, port):
        version, echoed = run(port, scenario, versions=aioquic_versions)
    assert version == V2
    assert digest(echoed) == digest(sent)
