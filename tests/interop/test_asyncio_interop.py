"""mstls.asyncio against other implementations (issue 14): our asyncio client against
aioquic's server and against mstlsd (both transports), aioquic's client against our
asyncio server."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

import mstls
import mstls.asyncio
from mstlsd.preamble import encode_preamble
from mstlsd.state import dev_pki_paths
from tests.api.helpers import client_config
from tests.asyncio_api.support import echo_server, run
from tests.certs import get_pki
from tests.daemon.support import client_config as daemon_client_config
from tests.daemon.support import daemon_process, free_port

from .aioquic_client import ClientHandle, run_aioquic_client
from .aioquic_peer import AioquicServer
from .protocol import Command, command_line, pattern

pytestmark = pytest.mark.network

BIG = 4 << 20
STREAMS = 4
TIMEOUT = 60.0


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def exchange(stream: mstls.asyncio.Stream, data: bytes) -> bytes:
    stream.write(data)
    stream.write_eof()
    await stream.drain()
    return await stream.read()


def test_our_asyncio_client_against_aioquics_server() -> None:
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key) as server:

        async def main() -> None:
            conn = await mstls.asyncio.connect(
                "127.0.0.1", server.port, client_config(), timeout=TIMEOUT
            )
            async with conn:
                payloads = [bytes((i,)) + pattern(BIG)[1:] for i in range(STREAMS)]

                async def echo(data: bytes) -> bytes:
                    stream = await conn.open_stream()
                    return await exchange(stream, command_line(Command.ECHO) + data)

                echoed = await asyncio.gather(*(echo(p) for p in payloads))
                assert [digest(e) for e in echoed] == [digest(p) for p in payloads]
                # The peer's reset: StreamReset with its code, never EOF.
                stream = await conn.open_stream()
                stream.write(command_line(Command.RESET, 42))
                await stream.drain()
                with pytest.raises(mstls.StreamReset) as reset:
                    await stream.read()
                assert reset.value.code == 42
                # The peer's CONNECTION_CLOSE wakes a waiting reader with it.
                waiting = await conn.open_stream()
                waiting.write(command_line(Command.SINK))
                await waiting.drain()
                reader = asyncio.ensure_future(waiting.read())
                closer = await conn.open_stream()
                closer.write(command_line(Command.CLOSE, 7, "bye"))
                await closer.drain()
                with pytest.raises(mstls.ConnectionTerminated) as info:
                    await reader
                assert info.value.code == 7 and info.value.by_peer
                mstls.errors.clear_error()

        run(main)
        server.stop()


def test_aioquics_client_against_our_asyncio_server() -> None:
    payloads = [bytes((i,)) + pattern(BIG)[1:] for i in range(STREAMS)]

    async def scenario(h: ClientHandle) -> list[bytes]:
        async def echo(data: bytes) -> bytes:
            sid = h.open_stream()
            h.send(sid, data, end=True)
            return await h.read_to_end(sid, timeout=TIMEOUT)

        return list(await asyncio.gather(*(echo(p) for p in payloads)))

    async def main() -> list[bytes]:
        async with echo_server("udp") as listener:
            cafile = get_pki().files("ca").cert
            return await asyncio.to_thread(
                run_aioquic_client,
                "127.0.0.1",
                listener.address[1],
                cafile,
                scenario,
                timeout=TIMEOUT * 2,
            )

    echoed = run(main)
    assert [digest(e) for e in echoed] == [digest(p) for p in payloads]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_our_asyncio_client_against_mstlsd(tmp_path: Path, transport: str) -> None:
    port = free_port()
    with daemon_process(["--listen-port", str(port)], tmp_path):
        config = daemon_client_config(dev_pki_paths(tmp_path).ca_cert)

        async def main() -> None:
            conn = await mstls.asyncio.connect(
                "127.0.0.1", port, config, transport=transport, timeout=TIMEOUT
            )
            async with conn:
                payload = pattern(1 << 20)
                stream = await conn.open_stream()
                got = await exchange(stream, encode_preamble("echo") + payload)
                assert got == payload

        run(main)
