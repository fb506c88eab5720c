"""Native trio streams over mstls: a trio server and client in one program.

Run: python examples/trio_echo.py [udp|tcp]

The streams are ``trio.abc.HalfCloseableStream``s, so anything written for trio
streams works on them; here eight tasks share one connection.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import trio

import mstls
import mstls.trio
from mstls.devcerts import write_dev_pki


async def echo(stream: mstls.trio.Stream) -> None:
    while data := await stream.receive_some():  # b"" only at a clean end of stream
        if stream.at_end:  # the client's FIN came with this data: answer and FIN together
            await stream.send_all(data, end=True)
            return
        await stream.send_all(data)
    await stream.send_eof()


async def handle(conn: mstls.trio.Connection) -> None:
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await conn.accept_stream()
            except mstls.Error:
                return  # the client closed the connection
            nursery.start_soon(echo, stream)


async def main(transport: str = "udp") -> int:
    pki = write_dev_pki(Path(tempfile.mkdtemp(prefix="mstls-example-")))
    server_config = mstls.ServerConfig(pki.server_cert, pki.server_key, alpn="example")
    client_config = mstls.ClientConfig(alpn="example", cafile=pki.ca_cert, server_name="localhost")
    replies: list[bytes] = []
    async with trio.open_nursery() as nursery:
        serve = functools.partial(mstls.trio.serve, transport=transport)
        listener = await nursery.start(serve, "127.0.0.1", 0, server_config, handle)
        port = listener.address[1]
        conn = await mstls.trio.connect("127.0.0.1", port, client_config, transport=transport)
        print(f"connected over {conn.transport}, ALPN {conn.alpn!r}")

        async def one(n: int) -> None:
            message = f"hello from task {n}".encode()
            stream = await conn.open_stream()
            await stream.send_all(message)
            await stream.send_eof()
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
            replies.append(data)

        async with trio.open_nursery() as clients:
            for n in range(8):
                clients.start_soon(one, n)
        for reply in sorted(replies):
            print(reply.decode())
        await conn.aclose()
        await listener.aclose()
        nursery.cancel_scope.cancel()
    return 0 if len(replies) == 8 else 1


if __name__ == "__main__":
    sys.exit(trio.run(main, *sys.argv[1:]))
