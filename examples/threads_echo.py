"""Many threads, many streams, one connection: the blocking API.

Run: python examples/threads_echo.py [udp|tcp]

A listener and a client in one process on 127.0.0.1, with development
certificates generated into a temporary directory.  Eight client threads each
open their own stream on the SAME connection and echo a message through it.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import mstls
from mstls.devcerts import write_dev_pki


def serve(listener: mstls.Listener) -> None:
    conn = listener.accept(timeout=10)
    while True:
        try:
            stream = conn.accept_stream(timeout=10)
        except mstls.Error:
            return  # the client closed the connection
        threading.Thread(target=echo, args=(stream,), daemon=True).start()


def echo(stream: mstls.Stream) -> None:
    while data := stream.read(timeout=10):  # b"" only at a clean end of stream
        if stream.at_end:  # the client's FIN came with this data: answer and FIN together
            stream.write(data, end=True)
            return
        stream.write(data)
    stream.conclude()


def main(transport: str = "udp") -> int:
    pki = write_dev_pki(Path(tempfile.mkdtemp(prefix="mstls-example-")))
    server_config = mstls.ServerConfig(pki.server_cert, pki.server_key, alpn="example")
    client_config = mstls.ClientConfig(alpn="example", cafile=pki.ca_cert, server_name="localhost")

    with mstls.listen("127.0.0.1", 0, server_config, transport=transport) as listener:
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
        port = listener.address[1]
        with mstls.connect("127.0.0.1", port, client_config, transport=transport) as conn:
            print(f"connected over {conn.transport}, ALPN {conn.alpn!r}")
            results: dict[int, bytes] = {}

            def worker(n: int) -> None:
                message = f"hello from thread {n}".encode()
                with conn.open_stream() as stream:
                    stream.write(message)
                    stream.conclude()
                    results[n] = stream.read_exactly(len(message), timeout=10)

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for n in sorted(results):
                print(results[n].decode())
            conn.close(0, "done")
    return 0 if len(results) == 8 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
