"""Observability: qlog traces per QUIC connection and handshake failures in the metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

import mstls
import mstls.trio
from daemon.state import dev_pki_paths
from tests.daemon.support import client_config, config_from, exchange, port_of, running_daemon

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
