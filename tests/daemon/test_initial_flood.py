"""A flood of valid QUIC Initials against a default-configured ``mstlsd`` (issue 11).

5,000 distinct, authentic client Initials (each a real ClientHello the daemon would
answer, from addresses that never continue) are sent while a normal client connects.
With the default ``retry = "under_load"`` only the first
:data:`~mstlsd.config.DEFAULT_RETRY_THRESHOLD` or so get connection state; the rest
get a stateless Retry.  Asserted (functional, not timed): the normal client completes
its handshake and an echo during the flood, the handshakes that got state stay
bounded (each one that times out is counted as a failed UDP handshake), and the
daemon's memory returns within 5 MiB of its pre-flood level once those time out.
The latency figure is printed; bench/ is where timing claims go.  127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest
import trio

import mstls
import mstls.trio
from mstls.quic.connection import QuicConnection
from mstlsd.config import DEFAULT_RETRY_THRESHOLD
from mstlsd.state import dev_pki_paths
from tests.daemon.support import DaemonProcess, client_config, exchange, free_port
from tests.daemon.test_robustness import RSS_SLACK, rss, scrape, total

pytestmark = pytest.mark.network

FLOOD = 5000
WARMUP = 300
BURST = 100
BURST_PAUSE = 0.005
#: The normal client's own budget (its handshake timeout is the library's 10 s).
CLIENT_BUDGET = 5.0
#: The daemon's handshake timeout (10 s) plus time for its timers and the allocator.
SETTLE_TIMEOUT = 25.0
#: Handshakes with state a flood may leave (the threshold, and those already past it
#: when the count was taken); without Retry under load every Initial would get state.
MAX_STATEFUL = 2 * DEFAULT_RETRY_THRESHOLD + WARMUP

#: The share of the expected handshake timeouts after which memory is read.
SETTLED_SHARE = 0.9

CONFIG = """
[[listeners]]
transport = "udp"
port = {port}

[services.echo]
type = "echo"

[metrics]
address = "127.0.0.1:{metrics}"
"""


def initials(ca: Path, count: int) -> list[bytes]:
    """``count`` authentic first datagrams of distinct client connections."""
    config = client_config(ca).quic_config("localhost")
    out = []
    for _ in range(count):
        conn = QuicConnection(config, is_client=True, now=0.0, peer_address=("127.0.0.1", 1))
        conn.connect(0.0)
        out.append(conn.datagrams_to_send(0.0)[0])
    return out


async def send_flood(port: int, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setblocking(False)
        for i, datagram in enumerate(datagrams):
            with contextlib.suppress(BlockingIOError):
                udp.sendto(datagram, ("127.0.0.1", port))
            if i % BURST == BURST - 1:
                await trio.sleep(BURST_PAUSE)


async def normal_client(port: int, ca: Path, took: list[float]) -> None:
    start = time.monotonic()
    with trio.fail_after(CLIENT_BUDGET):
        conn = await mstls.trio.connect("127.0.0.1", port, client_config(ca), timeout=CLIENT_BUDGET)
        took.append(time.monotonic() - start)
        async with conn:
            assert await exchange(conn, "echo", b"during the flood") == b"during the flood"


async def test_a_normal_client_gets_through_an_initial_flood(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    config = tmp_path / "mstlsd.toml"
    config.write_text(CONFIG.format(port=port, metrics=metrics))
    daemon = DaemonProcess(["--config", str(config)], tmp_path)
    try:
        daemon.wait_ready()
        pid = daemon.proc.pid
        ca = dev_pki_paths(tmp_path).ca_cert
        flood = await trio.to_thread.run_sync(initials, ca, FLOOD + WARMUP)
        # Warm-up: the code paths a flood touches exist; their state times out.
        await normal_client(port, ca, [])
        await send_flood(port, flood[:WARMUP])
        await trio.to_thread.run_sync(scrape, metrics)
        baseline = await settled_rss(pid, daemon_failures=(metrics, DEFAULT_RETRY_THRESHOLD))
        took: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_flood, port, flood[WARMUP:])
            await trio.sleep(0.3)  # the flood is under way
            nursery.start_soon(normal_client, port, ca, took)
        peak = rss(pid)
        # The flood's stateful handshakes time out (each a failure), then memory settles.
        await settled_rss(pid, daemon_failures=(metrics, 2 * DEFAULT_RETRY_THRESHOLD))
        after = await settled_rss(pid, limit=baseline + RSS_SLACK)
        text = await trio.to_thread.run_sync(scrape, metrics)
        failed = total(text, "mstlsd_handshake_failures_total", transport="udp")
        print(
            f"\nnormal handshake during the flood: {took[0] * 1000:.0f} ms; RSS MiB: "
            f"baseline {baseline / 2**20:.1f}, peak {peak / 2**20:.1f}, "
            f"after {after / 2**20:.1f}; failed UDP handshakes {failed:.0f}"
        )
        assert took, "the normal client did not connect"
        # Some Initials got state (and timed out), but not the flood's thousands.
        assert DEFAULT_RETRY_THRESHOLD <= failed <= MAX_STATEFUL, failed
        assert after <= baseline + RSS_SLACK
        assert await trio.to_thread.run_sync(daemon.stop) == 0
        assert "Traceback" not in daemon.log()
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


async def settled_rss(
    pid: int, *, limit: int | None = None, daemon_failures: tuple[int, int] | None = None
) -> int:
    """The daemon's RSS once it is under ``limit``, or once the warm-up's handshakes
    (``daemon_failures``: metrics port, count) have timed out; the last reading."""
    with trio.move_on_after(SETTLE_TIMEOUT):
        while True:
            if limit is not None and rss(pid) <= limit:
                break
            if daemon_failures is not None:
                port, count = daemon_failures
                text = await trio.to_thread.run_sync(scrape, port)
                failed = total(text, "mstlsd_handshake_failures_total", transport="udp")
                if failed >= count * SETTLED_SHARE:
                    await trio.sleep(1.0)
                    break
            await trio.sleep(0.5)
    return rss(pid)
