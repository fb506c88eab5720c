"""Native asyncio streams over mstls: an asyncio server and client in one program.

Run: python examples/asyncio_echo.py [udp|tcp]

The streams have asyncio's StreamReader/StreamWriter methods; ``drain()`` waits
for the peer's flow-control credit.  Here eight tasks share one connection.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import mstls
import mstls.asyncio
from mstls.devcerts import write_dev_pki


async def echo(stream: mstls.asyncio.Stream) -> None:
    while data := await stream.read(65536):  # b"" only at a clean end of stream
        stream.write(data)
        await stream.drain()
    stream.write_eof()


async def handle(conn: mstls.asyncio.Connection) -> None:
    tasks = set()
    while True:
        try:
            stream = await conn.accept_stream()
        except mstls.Error:
            return  # the client closed the connection
        task = asyncio.create_task(echo(stream))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def main(transport: str = "udp") -> int:
    pki = write_dev_pki(Path(tempfile.mkdtemp(prefix="mstls-example-")))
    server_config = mstls.ServerConfig(pki.server_cert, pki.server_key, alpn="example")
    client_config = mstls.ClientConfig(alpn="example", cafile=pki.ca_cert, server_name="localhost")
    listener = await mstls.asyncio.serve("127.0.0.1", 0, server_config, handle, transport=transport)
    async with listener:
        port = listener.address[1]
        conn = await mstls.asyncio.connect("127.0.0.1", port, client_config, transport=transport)
        async with conn:
            print(f"connected over {conn.transport}, ALPN {conn.alpn!r}")

            async def one(n: int) -> bytes:
                stream = await conn.open_stream()
                stream.write(f"hello from task {n}".encode())
                stream.write_eof()
                await stream.drain()
                return await stream.read()  # everything up to the server's FIN

            replies = await asyncio.gather(*(one(n) for n in range(8)))
            for reply in sorted(replies):
                print(reply.decode())
    return 0 if len(replies) == 8 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:])))
