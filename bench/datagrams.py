"""DATAGRAM frames (RFC 9221): CPU per datagram, mstls vs aioquic, sans-I/O, one process.

Both stacks run client and server in memory with a virtual clock (no sockets, no
loss), after a handshake that is not measured; the client sends ``--count``
datagrams of ``--payload`` bytes in batches and the server reads them.  Printed:
CPU microseconds per datagram (both ends together) for each stack, and the ratio.

    .venv/bin/python -m bench.datagrams                 # 20000 datagrams of 1000 bytes
    .venv/bin/python -m bench.datagrams --count 2000    # a quick check
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aioquic.quic import events as aioquic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection

from mstls.devcerts import make_ca, make_server_cert
from mstls.quic.config import QuicConfig
from mstls.quic.connection import QuicConnection
from mstls.quic.endpoint import ServerEndpoint
from mstls.tls.config import TLSConfig
from mstls.wire.packet import parse_header

ALPN = "bench-dgram"
CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 4433)
#: Datagrams queued per round (below mstls's default send queue of 128).
BATCH = 32
#: Virtual time per round, seconds.
STEP = 0.001
#: Rounds at most, so a stuck run ends.
MAX_ROUNDS = 1_000_000


class MstlsPair:
    """Our client against our server endpoint."""

    def __init__(self, ca: Any, server: Any) -> None:
        self.now = 1000.0
        settings = {"max_datagram_frame_size": 65535, "pmtu_discovery": False}
        client_tls = TLSConfig(
            alpn_protocols=[ALPN], server_name="localhost", trusted_roots=[ca.certificate]
        )
        server_tls = TLSConfig(
            alpn_protocols=[ALPN],
            certificate_chain=[server.certificate],
            private_key=server.private_key,
        )
        self.endpoint = ServerEndpoint(QuicConfig(tls=server_tls, **settings))  # type: ignore[arg-type]
        self.client = QuicConnection(
            QuicConfig(tls=client_tls, **settings),  # type: ignore[arg-type]
            is_client=True,
            now=self.now,
            peer_address=SERVER,
        )
        self.client.connect(self.now)
        self.received = 0

    def ready(self) -> bool:
        conns = self.endpoint.connections
        return self.client.handshake_confirmed and bool(conns) and conns[0].is_established

    def send(self, data: bytes) -> None:
        self.client.send_datagram_frame(data)

    def pump(self) -> None:
        for data in self.client.datagrams_to_send(self.now):
            self.endpoint.receive_datagram(data, CLIENT, self.now)
        for data, _ in self.endpoint.datagrams_to_send(self.now):
            self.client.receive_datagram(data, SERVER, self.now)
        for conn in self.endpoint.connections:
            while conn.receive_datagram_frame() is not None:
                self.received += 1
        self.now += STEP
        for side in (self.client, self.endpoint):
            timer = side.get_timer()
            if timer is not None and timer <= self.now:
                side.handle_timer(self.now)


class AioquicPair:
    """aioquic's client against aioquic's server."""

    def __init__(self, cafile: str, certfile: str, keyfile: str) -> None:
        self.now = 1000.0
        client = QuicConfiguration(
            is_client=True, alpn_protocols=[ALPN], max_datagram_frame_size=65535
        )
        client.server_name = "localhost"
        client.load_verify_locations(cafile=cafile)
        self.server_config = QuicConfiguration(
            is_client=False, alpn_protocols=[ALPN], max_datagram_frame_size=65535
        )
        self.server_config.load_cert_chain(certfile, keyfile)
        self.client = AioquicConnection(configuration=client)
        self.client.connect(SERVER, now=self.now)
        self.server: AioquicConnection | None = None
        self.received = 0

    def ready(self) -> bool:
        return bool(
            self.client._handshake_confirmed
            and self.server is not None
            and self.server._handshake_complete
        )

    def send(self, data: bytes) -> None:
        self.client.send_datagram_frame(data)

    def pump(self) -> None:
        for data, _ in self.client.datagrams_to_send(now=self.now):
            if self.server is None:
                self.server = AioquicConnection(
                    configuration=self.server_config,
                    original_destination_connection_id=bytes(parse_header(data, 0, 8).dcid),
                )
            self.server.receive_datagram(data, CLIENT, now=self.now)
        if self.server is not None:
            for data, _ in self.server.datagrams_to_send(now=self.now):
                self.client.receive_datagram(data, SERVER, now=self.now)
            while (event := self.server.next_event()) is not None:
                if isinstance(event, aioquic_events.DatagramFrameReceived):
                    self.received += 1
        while self.client.next_event() is not None:
            pass
        self.now += STEP
        for side in (self.client, self.server):
            if side is None:
                continue
            timer = side.get_timer()
            if timer is not None and timer <= self.now:
                side.handle_timer(now=self.now)


def measure(pair: Any, count: int, payload: int) -> float:
    """CPU microseconds per datagram delivered (handshake excluded)."""
    for _ in range(MAX_ROUNDS):
        if pair.ready():
            break
        pair.pump()
    data = bytes(payload)
    sent = 0
    start = time.process_time()
    for _ in range(MAX_ROUNDS):
        if pair.received >= count:
            break
        while sent < count and sent - pair.received < BATCH:
            pair.send(data)
            sent += 1
        pair.pump()
    elapsed = time.process_time() - start
    if pair.received < count:
        raise RuntimeError(f"only {pair.received} of {count} datagrams arrived")
    return elapsed / count * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--payload", type=int, default=1000)
    args = parser.parse_args(argv)
    ca = make_ca("bench CA")
    server = make_server_cert(ca)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / f"{name}.pem" for name in ("ca", "cert", "key")}
        paths["ca"].write_bytes(ca.cert_pem())
        paths["cert"].write_bytes(server.cert_pem())
        paths["key"].write_bytes(server.key_pem())
        factories: dict[str, Callable[[], Any]] = {
            "mstls": lambda: MstlsPair(ca, server),
            "aioquic": lambda: AioquicPair(*(str(paths[n]) for n in ("ca", "cert", "key"))),
        }
        results = {
            name: measure(make(), args.count, args.payload) for name, make in factories.items()
        }
    for name, us in results.items():
        print(f"{name:8} {us:8.1f} µs CPU per {args.payload}-byte datagram (both ends)")
    print(f"ratio mstls/aioquic: {results['mstls'] / results['aioquic']:.2f} (lower is better)")


if __name__ == "__main__":
    main()
