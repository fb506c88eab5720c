"""Handshake admission in mstlsd: ``[limits]`` keys; a burst refused by rate on a live daemon."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import mstls
import mstls.config
import mstls.trio
from mstls.core.admission import RATE_LIMITED, SHED, refusal
from mstls.exceptions import HandshakeRefused
from mstlsd.config import DEFAULT_RETRY_THRESHOLD, ConfigError, Limits
from mstlsd.handshakes import POLL_INTERVAL, failure_reason
from mstlsd.server import Daemon
from mstlsd.state import dev_pki_paths
from tests.daemon.support import client_config, config_from, exchange, port_of, running_daemon

BASE = """
[[listeners]]
transport = "udp"
port = 0

[[listeners]]
transport = "tcp"
port = 0

[services.echo]
type = "echo"
"""


def limits_of(text: str, tmp_path: Path) -> Limits:
    return config_from(BASE + "[limits]\n" + text, tmp_path).limits


@pytest.mark.parametrize(
    ("text", "retry", "threshold", "mode"),
    [
        ("", False, DEFAULT_RETRY_THRESHOLD, "under_load"),  # on by default (issue 11)
        ("retry_threshold = 7", False, 7, "under_load"),
        ("retry = true", True, None, "always"),  # the old boolean form still works
        ("retry = false", False, None, "never"),
        ('retry = "always"', True, None, "always"),
        ('retry = "never"', False, None, "never"),
        ('retry = "under_load"', False, DEFAULT_RETRY_THRESHOLD, "under_load"),
        ('retry = "under_load"\nretry_threshold = 7', False, 7, "under_load"),
    ],
)
def test_retry_modes(
    tmp_path: Path, text: str, retry: bool, threshold: int | None, mode: str
) -> None:
    limits = limits_of(text, tmp_path)
    assert limits.retry is retry
    assert limits.retry_threshold == threshold
    assert limits.retry_mode == mode


def test_rate_keys(tmp_path: Path) -> None:
    limits = limits_of("handshake_rate = 20\nhandshake_burst = 5", tmp_path)
    assert limits.handshake_rate == 20.0 and limits.handshake_burst == 5
    assert limits_of("", tmp_path).handshake_rate is None


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('retry = "sometimes"', "limits.retry", '"always", "under_load", "never", true or false'),
        ("retry = 1", "limits.retry", "true or false"),
        ('retry = "never"\nretry_threshold = 5', "limits.retry_threshold", "only used with"),
        ("max_quic_connections = 0", "limits.max_quic_connections", "positive"),
        ("max_pending_handshakes = 0", "limits.max_pending_handshakes", "positive"),
        ("max_pending_handshakes = 1.5", "limits.max_pending_handshakes", "positive"),
        ("client_hello_timeout = 0", "limits.client_hello_timeout", "positive"),
        (
            "max_connections = 20\nmax_quic_connections = 19",
            "limits.max_quic_connections",
            "at least limits.max_connections (20)",
        ),
        ("retry = true\nretry_threshold = 5", "limits.retry_threshold", "only used with"),
        ('retry = "under_load"\nretry_threshold = 0', "limits.retry_threshold", "positive"),
        ("handshake_rate = 0", "limits.handshake_rate", "positive number of handshakes per second"),
        ('handshake_rate = "fast"', "limits.handshake_rate", "handshakes per second"),
        ("handshake_rate = inf", "limits.handshake_rate", "handshakes per second"),
        ("handshake_burst = 3", "limits.handshake_burst", "needs limits.handshake_rate"),
        ("handshake_rate = 1\nhandshake_burst = 0", "limits.handshake_burst", "positive"),
        ("handshake_rate = 1\nhandshake_burst = 1.5", "limits.handshake_burst", "positive"),
    ],
)
def test_config_errors_name_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        limits_of(text, tmp_path)
    message = str(info.value)
    assert f"test.toml: {key}: " in message
    assert problem in message


def test_server_config_carries_the_limits(tmp_path: Path) -> None:
    text = (
        'retry = "under_load"\nretry_threshold = 9\nhandshake_rate = 3.5\nhandshake_burst = 4\n'
        "max_tcp_handshakes = 7\nmax_quic_connections = 12345\nclient_hello_timeout = 1.5\n"
        "max_pending_handshakes = 321"
    )
    config = config_from(BASE + "[limits]\n" + text, tmp_path)
    server = Daemon(config, state_dir=tmp_path / "state").server_config
    assert server.retry is False and server.retry_threshold == 9
    assert server.handshake_rate_per_source == 3.5
    assert server.handshake_burst_per_source == 4
    assert server.max_tcp_handshakes == 7
    assert server.max_connections == 12345
    assert server.server_endpoint().max_connections == 12345
    assert server.server_endpoint().max_pending_handshakes == 321
    assert server.qmux_config().client_hello_timeout == 1.5
    plain = Daemon(config_from(BASE, tmp_path), state_dir=tmp_path / "state").server_config
    assert plain.handshake_rate_per_source is None
    assert plain.retry is False and plain.retry_threshold == DEFAULT_RETRY_THRESHOLD
    assert plain.max_tcp_handshakes == mstls.config.DEFAULT_MAX_TCP_HANDSHAKES
    assert plain.max_connections == mstls.config.DEFAULT_MAX_CONNECTIONS
    assert plain.max_pending_handshakes == mstls.config.DEFAULT_MAX_PENDING_HANDSHAKES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", mstls.config.DEFAULT_MAX_CONNECTIONS),
        ("max_connections = 50000", 50000),  # the accepted connections always fit
        ("max_quic_connections = 2000", 2000),
    ],
)
def test_max_quic_connections_default(tmp_path: Path, text: str, expected: int) -> None:
    assert limits_of(text, tmp_path).max_quic_connections == expected


def test_failure_reason_of_a_refusal() -> None:
    assert failure_reason(refusal(RATE_LIMITED)) == "rate_limited"
    assert failure_reason(refusal(SHED)) == "shed"
    assert failure_reason(HandshakeRefused("x", cause="something new")) == "refused"


# --- a live daemon ------------------------------------------------------------------------------

RATE = 2.0
BURST = 2
LIVE_CONFIG = (
    BASE
    + f"""
[limits]
handshake_rate = {RATE}
handshake_burst = {BURST}

[metrics]
address = "127.0.0.1:0"
"""
)
ATTEMPTS = 6


def scrape(address: tuple[str, int] | None) -> str:
    assert address is not None
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def failures_now(daemon: Daemon, transport: str) -> dict[str, float]:
    """``mstlsd_handshake_failures_total{transport=...}`` by reason."""
    text = await trio.to_thread.run_sync(scrape, daemon.metrics_address)
    found = {}
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if (
                item.name == "mstlsd_handshake_failures_total"
                and item.labels["transport"] == transport
            ):
                found[item.labels["reason"]] = item.value
    return found


async def attempt(port: int, config: mstls.ClientConfig, transport: str, timeout: float) -> bool:
    """One handshake and echo; False if the daemon refused it."""
    try:
        conn = await mstls.trio.connect(
            "127.0.0.1", port, config, transport=transport, timeout=timeout
        )
    except mstls.Error:  # TCP: reset (ConnectionIOError at connect); UDP: timeout
        return False
    async with conn:
        assert await exchange(conn, "echo", b"hi") == b"hi"
    return True


@pytest.mark.network
@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_a_burst_of_handshakes_is_refused_and_the_daemon_keeps_serving(
    tmp_path: Path, transport: str
) -> None:
    config = config_from(LIVE_CONFIG, tmp_path)
    async with running_daemon(config, tmp_path / "state") as daemon:
        port = port_of(daemon, transport)
        client = client_config(dev_pki_paths(tmp_path / "state").ca_cert)
        # UDP: a refused Initial is dropped; the client's retransmission comes
        # after its PTO, so a short timeout keeps the burst inside the bucket.
        timeout = 5.0 if transport == "tcp" else 0.3
        start = trio.current_time()
        results = [await attempt(port, client, transport, timeout) for _ in range(ATTEMPTS)]
        elapsed = trio.current_time() - start
        # The burst got in at once; later only what refilled meanwhile; the rest was refused.
        assert results[:BURST] == [True] * BURST
        assert sum(results) <= BURST + RATE * elapsed
        assert results[BURST] is False
        with trio.fail_after(10):
            while (await failures_now(daemon, transport)).get("rate_limited", 0) < 1:
                await trio.sleep(POLL_INTERVAL / 2)
        # The bucket refills: after 1/RATE s per token, new handshakes get in again.
        await trio.sleep(BURST / RATE + 0.1)
        assert await attempt(port, client, transport, 5.0)
        counted = await failures_now(daemon, transport)
    assert counted.get("rate_limited", 0) >= ATTEMPTS - sum(results)
    assert set(counted) <= {"rate_limited", "peer_closed", "premature_close", "unrecorded"}
