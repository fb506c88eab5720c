"""An in-process daemon: routing, services, refusal codes, limits and metrics, over UDP and TCP."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
import trio

import mstls
import mstls.trio
from mstlsd.preamble import ConnectionCode, StreamCode, encode_preamble
from mstlsd.state import dev_pki_paths
from tests.daemon.support import (
    client_config,
    config_from,
    exchange,
    port_of,
    refused_with,
    running_daemon,
    sample,
)

pytestmark = pytest.mark.network

#: Bound on scrapes while waiting for the daemon's stream tasks to end.
METRIC_POLLS = 100

CONFIG = """
[[listeners]]
transport = "udp"
port = 0
[[listeners]]
transport = "tcp"
port = 0
[limits]
max_connections = 3
max_streams_per_connection = 4
preamble_timeout = 0.5
[metrics]
address = "127.0.0.1:0"
[services.echo]
type = "echo"
[services.discard]
type = "discard"
[services.hello]
type = "python"
handler = "tests.daemon.handlers:greet"
[services.boom]
type = "python"
handler = "tests.daemon.handlers:explode"
[services.linger]
type = "python"
handler = "tests.daemon.handlers:linger"
[services.closed]
type = "forward"
target = "127.0.0.1:{closed_port}"
[services.vip]
type = "echo"
allow = ["*"]
"""


def closed_port() -> int:
    """A TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return config_from(CONFIG.format(closed_port=closed_port()), tmp_path)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_services_and_refusals(tmp_path: Path, config, transport: str) -> None:  # type: ignore[no-untyped-def]
    async with running_daemon(config, tmp_path / "state") as daemon:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        port = port_of(daemon, transport)
        conn = await mstls.trio.connect(
            "127.0.0.1", port, client_config(ca), transport=transport, timeout=5
        )
        async with conn:
            big = bytes(range(256)) * 4096  # 1 MiB, more than one flow-control window
            assert await exchange(conn, "echo", big) == big
            assert await exchange(conn, "discard", big) == b""
            greeting = f"hello anonymous bob via {transport}".encode()
            assert await exchange(conn, "hello", b"bob") == greeting
            # The preamble may arrive in pieces and be followed by data in the same read.
            assert await exchange(conn, "echo", b"") == b""
            assert await refused_with(conn, b"nosuch\nx") == StreamCode.UNKNOWN_SERVICE
            assert await refused_with(conn, b"vip\nx") == StreamCode.NOT_AUTHORISED
            assert await refused_with(conn, b"closed\nx") == StreamCode.BACKEND_REFUSED
            assert await refused_with(conn, b"boom\nx") == StreamCode.HANDLER_FAILED
            assert await refused_with(conn, b"bad name\n") == StreamCode.BAD_PREAMBLE
            assert await refused_with(conn, b"x" * 300) == StreamCode.BAD_PREAMBLE
            # No preamble at all: reset once preamble_timeout (0.5 s) passed.
            stream = await conn.open_stream()
            await stream.send_all(b"ech")
            with trio.fail_after(5), pytest.raises(mstls.StreamReset) as info:
                await stream.receive_some()
            assert info.value.code == StreamCode.BAD_PREAMBLE
            # The connection survived every refusal.
            assert await exchange(conn, "echo", b"still here") == b"still here"
        # A stream's task ends once its FIN is acknowledged or the connection is gone,
        # which the daemon may learn just after our close returns.
        for _ in range(METRIC_POLLS):
            metrics = await trio.to_thread.run_sync(scrape, daemon.metrics_address)
            if sample(metrics, "mstlsd_streams_active") == 0:
                break
            await trio.sleep(0.05)
    assert sample(metrics, "mstlsd_connections_total", transport=transport) == 1
    assert sample(metrics, "mstlsd_streams_total", service="echo") == 3
    assert sample(metrics, "mstlsd_bytes_received_total", service="echo") == len(big) + 10
    assert sample(metrics, "mstlsd_bytes_sent_total", service="echo") == len(big) + 10
    assert sample(metrics, "mstlsd_stream_refusals_total", reason="unknown_service") == 1
    assert sample(metrics, "mstlsd_stream_refusals_total", reason="bad_preamble") == 3
    assert sample(metrics, "mstlsd_stream_refusals_total", reason="not_authorised") == 1
    assert sample(metrics, "mstlsd_streams_active") == 0


def scrape(address: tuple[str, int] | None) -> str:
    assert address is not None
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def test_limits(tmp_path: Path, config) -> None:  # type: ignore[no-untyped-def]
    async with running_daemon(config, tmp_path / "state") as daemon:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        port = port_of(daemon, "udp")
        conns = [
            await mstls.trio.connect("127.0.0.1", port, client_config(ca), timeout=5)
            for _ in range(3)
        ]
        # The fourth connection completes its handshake and is closed at once.
        extra = await mstls.trio.connect("127.0.0.1", port, client_config(ca), timeout=5)
        with trio.fail_after(5), pytest.raises(mstls.ConnectionTerminated) as info:
            await exchange(extra, "echo", b"x")
        assert info.value.code == ConnectionCode.TOO_MANY_CONNECTIONS and info.value.by_peer
        # Streams: QUIC advertises max_streams_per_connection (4), so a fifth open waits.
        conn = conns[0]
        streams = []
        for _ in range(4):
            stream = await conn.open_stream()
            await stream.send_all(encode_preamble("echo"))
            streams.append(stream)
        with trio.move_on_after(0.5) as waited:
            await conn.open_stream()
        assert waited.cancelled_caught
        for stream in streams:
            await stream.send_eof()
            while await stream.receive_some():
                pass
        assert await exchange(conn, "echo", b"after") == b"after"
        metrics = await trio.to_thread.run_sync(scrape, daemon.metrics_address)
        for c in conns:
            await c.aclose()
    assert sample(metrics, "mstlsd_connections_refused_total", reason="max_connections") == 1


async def test_tcp_stream_limit_is_advertised_as_over_udp(tmp_path: Path, config) -> None:  # type: ignore[no-untyped-def]
    """QMux advertises max_streams_per_connection (4) as QUIC does, so a fifth open waits
    for credit, and gets it when a stream ends (``ServerConfig.extra`` reaches QMux)."""
    async with running_daemon(config, tmp_path / "state") as daemon:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        port = port_of(daemon, "tcp")
        async with await mstls.trio.connect(
            "127.0.0.1", port, client_config(ca), transport="tcp", timeout=5
        ) as conn:
            streams = []
            for _ in range(4):
                stream = await conn.open_stream()
                await stream.send_all(encode_preamble("echo"))
                streams.append(stream)
            with trio.move_on_after(0.5) as waited:
                await conn.open_stream()
            assert waited.cancelled_caught
            first = streams.pop(0)
            await first.send_eof()
            while await first.receive_some():
                pass
            with trio.fail_after(5):
                assert await exchange(conn, "echo", b"after") == b"after"
            for stream in streams:
                await stream.send_eof()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_stream_opened_on_returned_credit_is_served(
    tmp_path: Path,
    config,
    transport: str,  # type: ignore[no-untyped-def]
) -> None:
    """The transport returns stream credit when a stream ends on the wire; its service
    task may still be finishing.  A stream opened on that credit waits for the task
    instead of being reset with TOO_MANY_STREAMS (the daemon's count lagged behind)."""
    async with running_daemon(config, tmp_path / "state") as daemon:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        port = port_of(daemon, transport)
        async with await mstls.trio.connect(
            "127.0.0.1", port, client_config(ca), transport=transport, timeout=5
        ) as conn:
            for _ in range(4):  # max_streams_per_connection: every task then lingers
                assert await exchange(conn, "linger", b"x") == b"done"
            with trio.fail_after(5):
                assert await exchange(conn, "echo", b"after") == b"after"


async def test_mutual_tls_identity_reaches_handlers(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    server, ca = pki.files("server"), pki.files("ca").cert
    config = config_from(
        f"""
[[listeners]]
transport = "udp"
port = 0
[tls]
certfile = "{server.cert}"
keyfile = "{server.key}"
client_cafile = "{ca}"
[services.hello]
type = "python"
handler = "tests.daemon.handlers:greet"
allow = ["dns:client.example"]
""",
        tmp_path,
    )
    async with running_daemon(config, tmp_path / "state") as daemon:
        port = port_of(daemon, "udp")
        client = pki.files("client")
        cfg = client_config(ca, certfile=client.cert, keyfile=client.key)
        async with await mstls.trio.connect("127.0.0.1", port, cfg, timeout=5) as conn:
            assert await exchange(conn, "hello", b"x") == b"hello client.example x via udp"
        # Client certificates are optional here: without one the allow-list refuses.
        async with await mstls.trio.connect("127.0.0.1", port, client_config(ca), timeout=5) as c:
            assert await refused_with(c, b"hello\n") == StreamCode.NOT_AUTHORISED


def can_bind(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(("host", "retry"), [("127.0.0.1", True), ("::1", False)])
async def test_retry_and_ipv6_listeners(tmp_path: Path, host: str, retry: bool) -> None:
    if not can_bind(host):
        pytest.skip(f"cannot bind {host} here")
    config = config_from(
        f"""
[[listeners]]
transport = "udp"
host = "{host}"
port = 0
[[listeners]]
transport = "tcp"
host = "{host}"
port = 0
[limits]
retry = {str(retry).lower()}
[services.echo]
type = "echo"
""",
        tmp_path,
    )
    message = b"via " + host.encode()
    async with running_daemon(config, tmp_path / "state") as daemon:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        for transport in ("udp", "tcp"):
            port = port_of(daemon, transport)
            cfg = client_config(ca)
            async with await mstls.trio.connect(
                host, port, cfg, transport=transport, timeout=5
            ) as conn:
                assert await exchange(conn, "echo", message) == message
