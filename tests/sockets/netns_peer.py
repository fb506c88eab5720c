"""The two peers of tests/sockets/test_netns_path_mtu.py, run inside network namespaces.

The PEM files come from the environment (``MSTLS_NETNS_CA``, ``MSTLS_NETNS_CERT``,
``MSTLS_NETNS_KEY``), written once by the test so both peers share one CA.

``python -m tests.sockets.netns_peer server HOST`` prints ``PORT n`` once listening,
then for one connection and one stream reads to the end and answers the SHA-256
of what arrived.

``python -m tests.sockets.netns_peer client|trio-client|asyncio-client HOST PORT SIZE``
uploads SIZE bytes
(PMTU discovery up to 1500); once its path MTU is above 1280 and a quarter is
written it prints ``SHRINK`` (the test then lowers a link MTU), finishes, checks
the digest and prints ``DONE <path_mtu> <black holes> <packets lost>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys

import trio

import mstls
import mstls.asyncio
import mstls.trio

ALPN = "mstls-netns"
TIMEOUT = 30.0
CHUNK = 32 << 10
#: The largest datagram PMTU discovery tries: the links start at 1500.
PMTU_MAX = 1500
#: Short enough that a connection stuck in a black hole dies well inside the test's
#: time limit (it fails instead of hanging).
IDLE_TIMEOUT = 15.0


def _payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def serve(host: str) -> None:
    config = mstls.ServerConfig(
        certfile=os.environ["MSTLS_NETNS_CERT"],
        keyfile=os.environ["MSTLS_NETNS_KEY"],
        alpn=ALPN,
        idle_timeout=IDLE_TIMEOUT,
        extra={"pmtu_max": PMTU_MAX},
    )
    with mstls.listen(host, 0, config, transport="udp") as listener:
        print("PORT", listener.address[1], flush=True)
        conn = listener.accept(timeout=TIMEOUT)
        stream = conn.accept_stream(timeout=TIMEOUT)
        digest = hashlib.sha256()
        while data := stream.read(1 << 20, timeout=TIMEOUT):
            digest.update(data)
        stream.write(digest.hexdigest().encode(), timeout=TIMEOUT)
        stream.conclude()
        with contextlib.suppress(mstls.Error):  # until the client closes the connection
            conn.accept_stream(timeout=TIMEOUT)


def _client_config() -> mstls.ClientConfig:
    return mstls.ClientConfig(
        alpn=ALPN,
        cafile=os.environ["MSTLS_NETNS_CA"],
        server_name="localhost",
        idle_timeout=IDLE_TIMEOUT,
        extra={"pmtu_max": PMTU_MAX},
    )


def upload(host: str, port: int, size: int) -> None:
    payload = _payload(size)
    with mstls.connect(host, port, _client_config(), transport="udp") as conn:
        stream = conn.open_stream()
        offset = 0
        signalled = False
        while offset < size:
            stream.write(payload[offset : offset + CHUNK], timeout=TIMEOUT)
            offset += CHUNK
            mtu = conn.stats().path_mtu or 0
            if not signalled and offset >= size // 4 and mtu > 1280:
                print("SHRINK", mtu, flush=True)
                signalled = True
        stream.conclude()
        answer = stream.read_exactly(64, timeout=TIMEOUT).decode()
        if answer != hashlib.sha256(payload).hexdigest():
            raise SystemExit(f"digest mismatch: {answer}")
        if not signalled:
            raise SystemExit(f"the path MTU never rose above 1280 ({conn.stats().path_mtu})")
        stats = conn.stats()
        print("DONE", stats.path_mtu, stats.path_mtu_black_holes, stats.packets_lost, flush=True)


async def upload_trio(host: str, port: int, size: int) -> None:
    """:func:`upload` with the trio API (its UDP driver's EMSGSIZE path)."""
    payload = _payload(size)
    conn = await mstls.trio.connect(host, port, _client_config(), transport="udp")
    with trio.fail_after(4 * TIMEOUT):
        stream = await conn.open_stream()
        signalled = False
        for offset in range(0, size, CHUNK):
            await stream.send_all(payload[offset : offset + CHUNK])
            mtu = conn.stats().path_mtu or 0
            if not signalled and offset + CHUNK >= size // 4 and mtu > 1280:
                print("SHRINK", mtu, flush=True)
                signalled = True
        await stream.send_eof()
        answer = b""
        while chunk := await stream.receive_some():
            answer += chunk
        if answer.decode() != hashlib.sha256(payload).hexdigest():
            raise SystemExit(f"digest mismatch: {answer!r}")
        if not signalled:
            raise SystemExit(f"the path MTU never rose above 1280 ({conn.stats().path_mtu})")
        stats = conn.stats()
        print("DONE", stats.path_mtu, stats.path_mtu_black_holes, stats.packets_lost, flush=True)
        await conn.aclose()


async def upload_asyncio(host: str, port: int, size: int) -> None:
    """:func:`upload` with the asyncio API (its UDP driver's EMSGSIZE path)."""
    payload = _payload(size)
    async with asyncio.timeout(4 * TIMEOUT):
        conn = await mstls.asyncio.connect(host, port, _client_config(), transport="udp")
        stream = await conn.open_stream()
        signalled = False
        for offset in range(0, size, CHUNK):
            stream.write(payload[offset : offset + CHUNK])
            await stream.drain()
            mtu = conn.stats().path_mtu or 0
            if not signalled and offset + CHUNK >= size // 4 and mtu > 1280:
                print("SHRINK", mtu, flush=True)
                signalled = True
        stream.write_eof()
        answer = await stream.readexactly(64)
        if answer.decode() != hashlib.sha256(payload).hexdigest():
            raise SystemExit(f"digest mismatch: {answer!r}")
        if not signalled:
            raise SystemExit(f"the path MTU never rose above 1280 ({conn.stats().path_mtu})")
        stats = conn.stats()
        print("DONE", stats.path_mtu, stats.path_mtu_black_holes, stats.packets_lost, flush=True)
        await conn.aclose()


def main(argv: list[str]) -> None:
    if argv[0] == "server":
        serve(argv[1])
    elif argv[0] == "trio-client":
        trio.run(upload_trio, argv[1], int(argv[2]), int(argv[3]))
    elif argv[0] == "asyncio-client":
        asyncio.run(upload_asyncio(argv[1], int(argv[2]), int(argv[3])))
    else:
        upload(argv[1], int(argv[2]), int(argv[3]))


if __name__ == "__main__":
    main(sys.argv[1:])
