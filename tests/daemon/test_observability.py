"""Observability: qlog traces per QUIC connection; handshake failures, RTT and losses in
the metrics."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import mstls
import mstls.trio
from mstls.codes import AlertDescription
from mstls.exceptions import CertificateError, DecodeError, HandshakeAlert, TLSError
from mstlsd import server as daemon_server
from mstlsd.handshakes import (
    POLL_INTERVAL,
    TrimAfterBursts,
    failure_reason,
    release_free_memory,
)
from mstlsd.server import Daemon
from mstlsd.state import dev_pki_paths
from tests.certs import TestPKI
from tests.daemon.support import (
    client_config,
    config_from,
    exchange,
    port_of,
    running_daemon,
    sample,
)
from tests.helpers.relay import FaultRelay, FaultSpec

pytestmark = pytest.mark.network

#: RFC 7464: every JSON text of a sequence starts with ASCII RS.
RS = b"\x1e"


def parse_json_seq(data: bytes) -> list[dict[str, Any]]:
    """The records of a JSON text sequence (RFC 7464 §2); fails on anything else."""
    assert data.startswith(RS), "a JSON-SEQ file starts with RS"
    records = []
    for text in data.split(RS)[1:]:
        assert text.endswith(b"\n"), "each JSON text ends with a newline"
        record = json.loads(text)
        assert isinstance(record, dict)
        records.append(record)
    return records


def check_qlog(records: list[dict[str, Any]], vantage: str) -> None:
    """The header and events as the qlog main schema (JSON-SEQ serialisation) expects."""
    header, *events = records
    assert header["qlog_format"] == "JSON-SEQ"
    assert isinstance(header["qlog_version"], str)
    assert header["trace"]["vantage_point"]["type"] == vantage
    assert events, "no events after the header"
    last = 0.0
    for item in events:
        assert set(item) >= {"time", "name", "data"}
        assert isinstance(item["time"], int | float) and item["time"] >= last
        last = item["time"]
        category, _, name = item["name"].partition(":")
        assert category and name
        assert isinstance(item["data"], dict)
    names = {item["name"] for item in events}
    assert {"transport:packet_received", "transport:packet_sent"} <= names


QLOG_CONFIG = """
[[listeners]]
transport = "udp"
port = 0

[services.echo]
type = "echo"

[observability]
qlog_dir = "qlog"
"""


async def test_qlog_trace_per_connection(tmp_path: Path) -> None:
    config = config_from(QLOG_CONFIG, tmp_path)
    qlog_dir = tmp_path / "qlog"
    assert config.observability.qlog_dir == qlog_dir
    async with running_daemon(config, tmp_path / "state") as daemon:
        assert qlog_dir.is_dir()  # made at start
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        conn = await mstls.trio.connect(
            "127.0.0.1", port_of(daemon, "udp"), client_config(ca), timeout=5
        )
        async with conn:
            assert await exchange(conn, "echo", b"traced") == b"traced"
        with trio.fail_after(10):
            while not (files := list(qlog_dir.glob("*_server.sqlog"))):
                await trio.sleep(0.05)
            # The trace is complete once the connection's close is written (after draining).
            while b"connection_closed" not in files[0].read_bytes():
                await trio.sleep(0.05)
    assert len(files) == 1
    odcid = files[0].name.removesuffix("_server.sqlog")
    records = parse_json_seq(files[0].read_bytes())
    check_qlog(records, "server")
    assert records[0]["trace"]["common_fields"]["ODCID"] == odcid


FAILURES_CONFIG = """
[[listeners]]
transport = "udp"
port = 0

[[listeners]]
transport = "tcp"
port = 0

[services.echo]
type = "echo"

[metrics]
address = "127.0.0.1:0"
"""


def scrape(address: tuple[str, int] | None) -> str:
    assert address is not None
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/metrics", timeout=5) as r:
        return str(r.read().decode())


def failures(text: str, transport: str) -> dict[str, float]:
    """``mstlsd_handshake_failures_total{transport=...}`` by reason."""
    found = {}
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if (
                item.name == "mstlsd_handshake_failures_total"
                and item.labels["transport"] == transport
            ):
                found[item.labels["reason"]] = item.value
    return found


async def failures_now(daemon: Daemon, transport: str) -> dict[str, float]:
    return failures(await trio.to_thread.run_sync(scrape, daemon.metrics_address), transport)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_failed_handshakes_counted_by_reason(
    tmp_path: Path, pki: TestPKI, transport: str
) -> None:
    config = config_from(FAILURES_CONFIG, tmp_path)
    async with running_daemon(config, tmp_path / "state") as daemon:
        port = port_of(daemon, transport)
        before = await trio.to_thread.run_sync(scrape, daemon.metrics_address)
        assert failures(before, transport) == {}
        # A client that trusts another CA rejects the daemon's certificate.
        wrong_ca = client_config(pki.files("other_ca").cert)
        for _ in range(2):
            with pytest.raises(mstls.Error):
                await mstls.trio.connect(
                    "127.0.0.1", port, wrong_ca, transport=transport, timeout=5
                )
        with trio.fail_after(10):
            while sum((counted := await failures_now(daemon, transport)).values()) < 2:
                await trio.sleep(0.1)
        # A good client still gets through and is not counted as a failure.
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        conn = await mstls.trio.connect(
            "127.0.0.1", port, client_config(ca), transport=transport, timeout=5
        )
        async with conn:
            assert await exchange(conn, "echo", b"ok") == b"ok"
        await trio.sleep(POLL_INTERVAL * 2)
        after = await failures_now(daemon, transport)
    assert counted == {"peer_alert_unknown_ca": 2}
    assert after == counted


@pytest.mark.parametrize(
    "transport",
    [
        "udp",
        "tcp",
    ],
)
async def test_a_failed_handshake_is_logged_with_the_peer_address(
    tmp_path: Path, pki: TestPKI, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: TCP handshake-failure lines said ``peer=None``."""
    caplog.set_level("INFO", logger="mstlsd")
    config = config_from(FAILURES_CONFIG, tmp_path)
    async with running_daemon(config, tmp_path / "state") as daemon:
        port = port_of(daemon, transport)
        wrong_ca = client_config(pki.files("other_ca").cert)
        with pytest.raises(mstls.Error):
            await mstls.trio.connect("127.0.0.1", port, wrong_ca, transport=transport, timeout=5)
        with trio.fail_after(10):
            while not (failed := _events(caplog, "handshake.failed")):
                await trio.sleep(0.1)
    (fields,) = failed
    host, _, client_port = str(fields["peer"]).rpartition(":")
    assert host == "127.0.0.1" and client_port.isdigit(), fields


async def test_a_tcp_connect_and_close_is_counted_as_no_data_and_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A load balancer's TCP health check (connect, then close without a byte) is
    ``no_data``, logged at debug level only: it is not a client that failed."""
    caplog.set_level("INFO", logger="mstlsd")
    config = config_from(FAILURES_CONFIG, tmp_path)
    async with running_daemon(config, tmp_path / "state") as daemon:
        port = port_of(daemon, "tcp")
        for _ in range(3):
            probe = await trio.open_tcp_stream("127.0.0.1", port)
            await probe.aclose()
        with trio.fail_after(10):
            while (counted := await failures_now(daemon, "tcp")).get("no_data", 0) < 3:
                await trio.sleep(0.1)
    assert counted == {"no_data": 3}
    assert not _events(caplog, "handshake.failed")


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [
        getattr(r, "mstlsd_fields", {})
        for r in caplog.records
        if getattr(r, "mstlsd_event", "") == name
    ]


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (None, "unknown"),
        (CertificateError(AlertDescription.bad_certificate, "x"), "certificate"),
        (HandshakeAlert(AlertDescription.unknown_ca, "x"), "peer_alert_unknown_ca"),
        (TLSError(AlertDescription.no_application_protocol, "x"), "tls_no_application_protocol"),
        (mstls.ConnectionTerminated(0x100 + 48, "x", by_peer=True), "peer_alert_unknown_ca"),
        (mstls.ConnectionTerminated(0x178, "x"), "tls_no_application_protocol"),
        (mstls.ConnectionTerminated(0, "bye", by_peer=True), "peer_closed"),
        (mstls.ConnectionTerminated(0, "handshake timeout"), "timeout"),
        (mstls.PrematureClose("fin"), "premature_close"),
        (mstls.PrematureClose("fin", wire_bytes_received=3), "premature_close"),
        (mstls.PrematureClose("fin", wire_bytes_received=0), "no_data"),  # a health check
        (mstls.Timeout("handshake"), "timeout"),
        (DecodeError("garbage"), "decode_error"),
        (mstls.ProtocolError("bad"), "protocol_error"),
        (ValueError("?"), "other"),
    ],
)
def test_failure_reasons(exc: BaseException | None, reason: str) -> None:
    assert failure_reason(exc) == reason


STATS_CONFIG = """
[[listeners]]
transport = "udp"
port = 0

[[listeners]]
transport = "tcp"
port = 0

[services.echo]
type = "echo"

[metrics]
address = "127.0.0.1:0"
"""
#: Sampling interval of open connections in these tests (the daemon's is 10 s).
FAST_STATS_INTERVAL = 0.05
#: A loopback round trip is far below this.
LOOPBACK_RTT_BOUND = 0.5


async def scrape_now(daemon: Daemon) -> str:
    return await trio.to_thread.run_sync(scrape, daemon.metrics_address)


def rtt_count(text: str, transport: str) -> float:
    return sample(text, "mstlsd_rtt_seconds_count", transport=transport)


def rtt_samples(text: str, transport: str) -> float:
    """Like :func:`rtt_count`, 0 while the series does not exist yet."""
    try:
        return rtt_count(text, transport)
    except KeyError:
        return 0.0


async def echo_and_close(daemon: Daemon, tmp_path: Path, transport: str) -> float | None:
    """One connection, one echo; returns the client's smoothed RTT once the daemon let go."""
    ca = dev_pki_paths(tmp_path / "state").ca_cert
    conn = await mstls.trio.connect(
        "127.0.0.1", port_of(daemon, transport), client_config(ca), transport=transport, timeout=5
    )
    async with conn:
        assert await exchange(conn, "echo", b"rtt" * 10_000) == b"rtt" * 10_000
        rtt = conn.stats().smoothed_rtt
    with trio.fail_after(10):
        while daemon.connections:
            await trio.sleep(0.01)
    return rtt


async def test_rtt_observed_when_a_connection_ends(tmp_path: Path) -> None:
    """The daemon's sampling interval (10 s) is far off: the one sample is the final one."""
    config = config_from(STATS_CONFIG, tmp_path)
    async with running_daemon(config, tmp_path / "state") as daemon:
        text = await scrape_now(daemon)
        for transport in ("udp", "tcp"):  # present, at 0, before any connection
            assert sample(text, "mstlsd_retransmissions_total", transport=transport) == 0
            assert sample(text, "mstlsd_packets_lost_total", transport=transport) == 0
        assert "mstlsd_rtt_seconds_count" not in text
        client_rtt = await echo_and_close(daemon, tmp_path, "udp")
        await echo_and_close(daemon, tmp_path, "tcp")
        text = await scrape_now(daemon)
    assert rtt_count(text, "udp") == 1
    assert 0 < sample(text, "mstlsd_rtt_seconds_sum", transport="udp") < LOOPBACK_RTT_BOUND
    assert sample(text, "mstlsd_rtt_seconds_bucket", transport="udp", le="+Inf") == 1
    assert client_rtt is not None and client_rtt < LOOPBACK_RTT_BOUND
    # TCP: the daemon's sampler sends a QX_PING as the connection starts (QMux §4.3).
    assert rtt_count(text, "tcp") == 1
    assert 0 < sample(text, "mstlsd_rtt_seconds_sum", transport="tcp") < LOOPBACK_RTT_BOUND
    assert sample(text, "mstlsd_retransmissions_total", transport="udp") == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_rtt_sampled_while_a_connection_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.setattr(daemon_server, "STATS_INTERVAL", FAST_STATS_INTERVAL)
    config = config_from(STATS_CONFIG, tmp_path)
    async with running_daemon(config, tmp_path / "state") as daemon:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        conn = await mstls.trio.connect(
            "127.0.0.1",
            port_of(daemon, transport),
            client_config(ca),
            transport=transport,
            timeout=5,
        )
        async with conn:
            assert await exchange(conn, "echo", b"rtt") == b"rtt"
            with trio.fail_after(10):
                while rtt_samples(await scrape_now(daemon), transport) < 3:
                    await trio.sleep(FAST_STATS_INTERVAL)
            assert daemon.connections  # all of them taken while the connection was open


async def test_losses_and_retransmissions_counted_through_a_lossy_relay(tmp_path: Path) -> None:
    """Datagrams from the daemon are dropped: the daemon detects the losses (RFC 9002 §6.1)
    and resends their frames; both counters grow on the UDP series only."""
    config = config_from(STATS_CONFIG, tmp_path)
    payload = bytes(range(256)) * 800
    async with running_daemon(config, tmp_path / "state") as daemon:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        lossy = FaultSpec(loss=0.1)
        with FaultRelay(
            ("127.0.0.1", port_of(daemon, "udp")), seed=5, server_to_client=lossy
        ) as relay:
            conn = await mstls.trio.connect(
                "127.0.0.1", relay.address[1], client_config(ca), timeout=10
            )
            async with conn:
                assert await exchange(conn, "echo", payload, limit=30) == payload
            with trio.fail_after(10):
                while daemon.connections:
                    await trio.sleep(0.01)
        text = await scrape_now(daemon)
    lost = sample(text, "mstlsd_packets_lost_total", transport="udp")
    resent = sample(text, "mstlsd_retransmissions_total", transport="udp")
    assert lost > 0 and 0 < resent <= lost
    assert sample(text, "mstlsd_retransmissions_total", transport="tcp") == 0


def test_memory_is_released_once_after_a_burst_of_failed_handshakes() -> None:
    """Issue 11: after a flood's handshakes fail, the freed heap goes back to the
    system once, at the first quiet poll; small bursts never trigger it."""
    trim = TrimAfterBursts(threshold=50)
    assert [trim.observe(n) for n in (30, 30, 0, 0)] == [False, False, True, False]
    assert [trim.observe(n) for n in (10, 0, 20, 0)] == [False, False, False, False]
    assert [trim.observe(n) for n in (50, 0)] == [False, True]
    assert isinstance(release_free_memory(), bool)  # never raises, glibc or not
