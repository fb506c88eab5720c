"""qlog traces against the qlog QUIC event schema (issue 13).

A handshake, transfers with small flow-control windows, a stream reset, a
STOP_SENDING, a key update and a close run through the in-memory pair with
``qlog_dir`` set; both traces are parsed as JSON text sequences (RFC 7464) and
every record is validated against :mod:`tests.quic.qlog_schema`, written from
draft-ietf-quic-qlog-main-schema and draft-ietf-quic-qlog-quic-events.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mstls.core.events import ConnectionTerminatedEvent
from mstls.quic.qlog import FRAME_FORMATS, format_frames
from mstls.wire.frames import (
    AckFrame,
    AckFrequencyFrame,
    ApplicationCloseFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
    EcnCounts,
    Frame,
    HandshakeDoneFrame,
    ImmediateAckFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    NewConnectionIdFrame,
    NewTokenFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    RetireConnectionIdFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    StreamsBlockedFrame,
    encode_frames,
)
from tests.quic.pair import Pair, client_config, server_config
from tests.quic.qlog_schema import FRAME_SCHEMAS, HEADER_SCHEMA, event_schema, validate

RS = b"\x1e"
#: Small windows, so the server has MAX_DATA / MAX_STREAM_DATA to send.
WINDOW = 16 * 1024
TRANSFER = 100_000


def parse_json_seq(data: bytes) -> list[dict[str, Any]]:
    """RFC 7464 §2: every record is RS, one JSON text, LF; nothing else."""
    assert data.startswith(RS)
    records = []
    for text in data.split(RS)[1:]:
        assert text.endswith(b"\n")
        record = json.loads(text)
        assert isinstance(record, dict)
        records.append(record)
    return records


def terminated(events: list[Any]) -> bool:
    return any(isinstance(e, ConnectionTerminatedEvent) for e in events)


def transfer(pair: Pair, size: int) -> int:
    """Send ``size`` bytes on a new client stream until the server read them all."""
    client = pair.client
    sid = client.streams.open_stream()
    payload = bytes(i % 251 for i in range(size))
    state = {"offset": 0, "received": 0, "accepted": False}

    def progress() -> bool:
        offset = state["offset"]
        if offset < size:
            offset += client.streams.write(sid, payload[offset : offset + 65536])
            if offset == size:
                client.streams.write(sid, b"", fin=True)
            state["offset"] = offset
        server = pair.server
        # Stream IDs are the same at both ends; other streams are accepted and left.
        if not state["accepted"] and sid in server.streams.accept_pending():
            state["accepted"] = True
        if state["accepted"]:
            data, fin = server.streams.read(sid, 1 << 20)
            state["received"] += len(data)
            return fin
        return False

    pair.run_until(progress, max_time=60)
    assert state["received"] == size
    return sid


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run; the parsed client and server traces and what the test did."""
    directory = tmp_path_factory.mktemp("qlog")
    wall_before = time.time()
    pair = Pair(
        client=client_config(qlog_dir=str(directory)),
        server=server_config(
            qlog_dir=str(directory), initial_max_data=2 * WINDOW, initial_max_stream_data=WINDOW
        ),
    )
    created = pair.now
    pair.handshake()
    wall_after = time.time()  # the server's connection is made during the handshake
    sid = transfer(pair, TRANSFER)
    reset = pair.client.streams.open_stream()
    pair.client.streams.write(reset, b"to be reset")
    pair.client.streams.reset_stream(reset, 5)
    stopped = pair.client.streams.open_stream()
    pair.client.streams.write(stopped, b"then stopped")
    pair.client.streams.stop_sending(stopped, 6)
    pair.run_until(lambda: not pair.client.streams.has_data_to_send())
    pair.client.request_key_update()
    transfer(pair, TRANSFER // 4)
    pair.client.close(3, "bye", now=pair.now)
    pair.run_until(lambda: pair.client.is_terminated and pair.server.is_terminated)
    files = {path.name.rsplit("_", 1)[1]: path for path in directory.glob("*.sqlog")}
    assert sorted(files) == ["client.sqlog", "server.sqlog"]
    return {
        "client": parse_json_seq(files["client.sqlog"].read_bytes()),
        "server": parse_json_seq(files["server.sqlog"].read_bytes()),
        "wall": (wall_before, wall_after),
        "duration_ms": (pair.now - created) * 1000.0,
        "stream": sid,
        "reset": reset,
        "stopped": stopped,
        "odcid": pair.client.original_dcid.hex(),
        "client_cid": pair.client.host_cid.hex(),
        "server_cid": pair.server.host_cid.hex(),
    }


def events(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r["data"] for r in records[1:] if r["name"] == name]


def frames(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [f for data in events(records, name) for f in data["frames"]]


@pytest.mark.parametrize("side", ["client", "server"])
def test_every_record_validates(traces: dict[str, Any], side: str) -> None:
    header, *rest = traces[side]
    validate(header, HEADER_SCHEMA)
    assert header["trace"]["vantage_point"]["type"] == side
    assert header["trace"]["common_fields"]["group_id"] == traces["odcid"]
    for record in rest:
        validate(record, event_schema(record["name"]))


@pytest.mark.parametrize("side", ["client", "server"])
def test_times_are_relative_to_an_epoch_reference(traces: dict[str, Any], side: str) -> None:
    header, *rest = traces[side]
    reference = header["trace"]["common_fields"]["reference_time"]
    before, after = traces["wall"]
    assert before * 1000 - 1 <= reference <= after * 1000 + 1  # epoch milliseconds
    times = [r["time"] for r in rest]
    assert times == sorted(times) and times[0] == 0
    # Relative to the connection's start on its own (virtual) clock.
    assert 0 < times[-1] <= traces["duration_ms"] + 1e-6


def test_frames_of_every_kind_in_the_packets(traces: dict[str, Any]) -> None:
    client, server = traces["client"], traces["server"]
    client_sent = Counter(f["frame_type"] for f in frames(client, "transport:packet_sent"))
    server_sent = Counter(f["frame_type"] for f in frames(server, "transport:packet_sent"))
    assert {
        "crypto",
        "padding",
        "ack",
        "stream",
        "new_connection_id",
        "reset_stream",
        "stop_sending",
        "connection_close",
    } <= set(client_sent)
    assert {"crypto", "ack", "handshake_done", "max_stream_data", "max_data"} <= set(server_sent)
    assert "reset_stream" in server_sent  # the answer to STOP_SENDING (RFC 9000 §3.5)
    # What one side sent, the other received (no loss on this path).
    client_received = Counter(f["frame_type"] for f in frames(client, "transport:packet_received"))
    assert client_received == server_sent


def test_stream_frames_carry_offsets_lengths_and_fin(traces: dict[str, Any]) -> None:
    sent = [
        f
        for f in frames(traces["client"], "transport:packet_sent")
        if f["frame_type"] == "stream" and f["stream_id"] == traces["stream"]
    ]
    covered = sorted((f["offset"], f["offset"] + f["length"]) for f in sent)
    end = 0
    for start, stop in covered:
        assert start <= end  # no hole
        end = max(end, stop)
    assert end == TRANSFER
    assert any(f.get("fin") for f in sent)
    [reset] = [
        f
        for f in frames(traces["client"], "transport:packet_sent")
        if f["frame_type"] == "reset_stream"
    ]
    assert (reset["stream_id"], reset["error_code"]) == (traces["reset"], 5)
    [stop] = [
        f
        for f in frames(traces["client"], "transport:packet_sent")
        if f["frame_type"] == "stop_sending"
    ]
    assert (stop["stream_id"], stop["error_code"]) == (traces["stopped"], 6)


def test_acks_name_only_packets_that_were_sent(traces: dict[str, Any]) -> None:
    """Every 1-RTT packet number the server acknowledged was sent by the client."""
    sent = {
        d["header"]["packet_number"]
        for d in events(traces["client"], "transport:packet_sent")
        if d["header"]["packet_type"] == "1RTT"
    }
    acked: set[int] = set()
    for data in events(traces["client"], "transport:packet_received"):
        if data["header"]["packet_type"] != "1RTT":
            continue
        for frame in data["frames"]:
            if frame["frame_type"] == "ack":
                for pair in frame["acked_ranges"]:
                    acked.update(range(pair[0], pair[-1] + 1))
    assert acked and acked <= sent


def test_packet_headers_carry_connection_ids(traces: dict[str, Any]) -> None:
    client_sent = events(traces["client"], "transport:packet_sent")
    first = client_sent[0]["header"]
    assert first["packet_type"] == "initial" and first["packet_number"] == 0
    assert (first["dcid"], first["scid"]) == (traces["odcid"], traces["client_cid"])
    one_rtt = [d["header"] for d in client_sent if d["header"]["packet_type"] == "1RTT"]
    assert one_rtt and all("scid" not in h for h in one_rtt)
    server_received = events(traces["server"], "transport:packet_received")
    assert server_received[0]["header"]["dcid"] == traces["odcid"]
    server_sent = events(traces["server"], "transport:packet_sent")
    assert server_sent[0]["header"]["scid"] == traces["server_cid"]


def test_parameters_keys_and_states(traces: dict[str, Any]) -> None:
    client, server = traces["client"], traces["server"]
    for records in (client, server):
        owners = [d["owner"] for d in events(records, "transport:parameters_set")]
        assert sorted(owners) == ["local", "remote"]
    [client_local] = [
        d for d in events(client, "transport:parameters_set") if d["owner"] == "local"
    ]
    [server_remote] = [
        d for d in events(server, "transport:parameters_set") if d["owner"] == "remote"
    ]
    assert client_local == {**server_remote, "owner": "local"}
    assert client_local["initial_source_connection_id"] == traces["client_cid"]

    def keys(records: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
        return [
            (d["key_type"], d.get("generation"), d.get("trigger"))
            for d in events(records, "security:key_updated")
        ]

    assert ("client_1rtt_secret", 1, "local_update") in keys(client)
    assert ("server_1rtt_secret", 1, "local_update") in keys(client)
    assert ("client_1rtt_secret", 1, "remote_update") in keys(server)
    assert ("server_handshake_secret", None, "tls") in keys(server)
    discarded = {d["key_type"] for d in events(client, "security:key_discarded")}
    assert {"client_initial_secret", "server_handshake_secret"} <= discarded

    def states(records: list[dict[str, Any]]) -> list[str]:
        return [d["new"] for d in events(records, "connectivity:connection_state_updated")]

    assert states(client) == [
        "attempted",
        "handshake_complete",
        "handshake_confirmed",
        "closing",
        "closed",
    ]
    assert states(server) == [
        "handshake_started",
        "handshake_complete",
        "handshake_confirmed",
        "draining",
        "closed",
    ]
    [closed] = events(server, "connectivity:connection_closed")
    assert closed == {
        "owner": "remote",
        "application_code": 3,
        "reason": "bye",
        "trigger": "application",
    }
    assert events(client, "recovery:metrics_updated")


def test_losses_are_logged(tmp_path: Path) -> None:
    """On a lossy path every packet declared lost is a ``recovery:packet_lost``."""
    directory = str(tmp_path)
    pair = Pair(
        client=client_config(qlog_dir=directory),
        server=server_config(qlog_dir=directory),
        loss=0.1,
        seed=3,
    )
    pair.handshake()
    transfer(pair, TRANSFER)
    [path] = tmp_path.glob("*_client.sqlog")
    writer = pair.client.qlog
    assert writer is not None  # the connection is still open: flush what is buffered
    writer.flush()
    records = parse_json_seq(path.read_bytes())
    for record in records[1:]:
        validate(record, event_schema(record["name"]))
    lost = events(records, "recovery:packet_lost")
    # The statistics leave lost path-MTU probes out (RFC 8899: no congestion signal).
    assert len(lost) >= pair.client.recovery.packets_lost > 0
    sent = {
        (d["header"]["packet_type"], d["header"]["packet_number"])
        for d in events(records, "transport:packet_sent")
    }
    assert {(d["header"]["packet_type"], d["header"]["packet_number"]) for d in lost} <= sent


SAMPLE_FRAMES: list[Frame] = [
    PaddingFrame(3),
    PingFrame(),
    AckFrame([(9, 12), (5, 5), (0, 2)], ack_delay=100),
    AckFrame([(0, 0)], ack_delay=0, ecn=EcnCounts(1, 2, 3)),
    ResetStreamFrame(4, 7, 1000),
    StopSendingFrame(4, 7),
    CryptoFrame(100, b"hello"),
    NewTokenFrame(b"\x01\x02"),
    StreamFrame(8, 10, b"data", fin=True),
    MaxDataFrame(1 << 20),
    MaxStreamDataFrame(4, 1 << 16),
    MaxStreamsFrame(10, bidi=False),
    DataBlockedFrame(5),
    StreamDataBlockedFrame(4, 6),
    StreamsBlockedFrame(7, bidi=True),
    NewConnectionIdFrame(2, 1, b"\xaa" * 8, b"\xbb" * 16),
    RetireConnectionIdFrame(1),
    PathChallengeFrame(b"12345678"),
    PathResponseFrame(b"87654321"),
    ConnectionCloseFrame(0x0A, 0x08, b"bad"),
    ApplicationCloseFrame(0x100, b"app"),
    HandshakeDoneFrame(),
    AckFrequencyFrame(0, 9, 25_000, 1),
    ImmediateAckFrame(),
    DatagramFrame(b"dgram"),
]


def test_every_frame_class_is_formatted_to_the_schema() -> None:
    assert {type(f) for f in SAMPLE_FRAMES} == {AckFrame, *FRAME_FORMATS}
    logged = format_frames(encode_frames(SAMPLE_FRAMES), ack_delay_exponent=3)
    assert len(logged) == len(SAMPLE_FRAMES)
    for item in logged:
        validate(item, FRAME_SCHEMAS[item["frame_type"]])
    by_type = {item["frame_type"]: item for item in logged}
    ack = logged[2]
    # Ascending ranges, a single packet as [n]; 100 << 3 µs = 0.8 ms (RFC 9000 §19.3).
    assert ack["acked_ranges"] == [[0, 2], [5], [9, 12]] and ack["ack_delay"] == 0.8
    assert (logged[3]["ect0"], logged[3]["ect1"], logged[3]["ce"]) == (1, 2, 3)
    assert by_type["stream"] == {
        "frame_type": "stream",
        "stream_id": 8,
        "offset": 10,
        "length": 4,
        "fin": True,
    }
    assert logged[19]["error_code"] == "protocol_violation"
    assert logged[19]["trigger_frame_type"] == 0x08
    assert logged[20]["error_space"] == "application"
    assert by_type["datagram"] == {"frame_type": "datagram", "length": 5}


def test_undecodable_frame_is_logged_as_unknown() -> None:
    """A received payload is logged before it is processed: a bad frame ends the list."""
    logged = format_frames(encode_frames([PingFrame()]) + b"\x21\x00", ack_delay_exponent=3)
    assert logged == [{"frame_type": "ping"}, {"frame_type": "unknown", "raw_frame_type": 0x21}]
    for item in logged:
        validate(item, FRAME_SCHEMAS[item["frame_type"]])


def test_no_trace_without_qlog_dir(tmp_path: Path) -> None:
    pair = Pair()
    pair.handshake()
    assert pair.client.qlog is None and pair.server.qlog is None
    assert not list(tmp_path.iterdir())


def test_validator_rejects_what_the_schema_forbids() -> None:
    """The hand-written validator is not vacuous: each of these breaks one rule."""
    good = {"frame_type": "stream", "stream_id": 0, "offset": 0, "length": 1, "fin": False}
    validate(good, FRAME_SCHEMAS["stream"])
    broken: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "offset"},  # required
        {**good, "lenght": 1},  # closed object
        {**good, "stream_id": -1},  # minimum
        {**good, "fin": 1},  # type
        {**good, "frame_type": "crypto"},  # const
    ]
    for item in broken:
        with pytest.raises(AssertionError):
            validate(item, FRAME_SCHEMAS["stream"])
    event = {
        "time": 1.0,
        "name": "security:key_updated",
        "data": {"key_type": "client_2rtt_secret"},
    }
    with pytest.raises(AssertionError):
        validate(event, event_schema("security:key_updated"))  # enum


def test_schema_is_valid_json_schema(traces: dict[str, Any]) -> None:
    """Cross-check with the reference validator where it is installed (a sample: one
    packet event per distinct frame mix, every other event)."""
    jsonschema = pytest.importorskip("jsonschema")
    checker = jsonschema.Draft202012Validator
    checker.check_schema(HEADER_SCHEMA)
    validators: dict[str, Any] = {}
    for side in ("client", "server"):
        header, *rest = traces[side]
        checker(HEADER_SCHEMA).validate(header)
        seen: set[tuple[str, ...]] = set()
        for record in rest:
            mix = (
                record["name"],
                *sorted({f["frame_type"] for f in record["data"].get("frames", ())}),
            )
            if mix in seen and "frames" in record["data"]:
                continue
            seen.add(mix)
            name = record["name"]
            if name not in validators:
                checker.check_schema(event_schema(name))
                validators[name] = checker(event_schema(name))
            validators[name].validate(record)
