"""Helpers shared by the QMux connection tests: a raw TLS peer, records and frames."""

from __future__ import annotations

from mstls.exceptions import ConnectionTerminated
from mstls.wire.frames import ConnectionCloseFrame, Frame, encode_frame
from mstls.wire.qmux import RecordReader, decode_record
from mstls.wire.transport_params import DEFAULT_MAX_RECORD_SIZE
from tests.qmux.pair import Pair, RawTLSPeer, client_config, server_tls

__all__ = [
    "MiB",
    "expect_close",
    "frames_of",
    "raw_server_pair",
    "records_of",
    "send_frames",
]

MiB = 1 << 20


def raw_server_pair(**client_kw: object) -> tuple[Pair, RawTLSPeer]:
    """Our client against a bare TLS server, handshake done, no QMux frame from the server."""
    raw = RawTLSPeer(server_tls(), is_client=False)
    pair = Pair(client=client_config(**client_kw), server_side=raw)
    pair.start()
    pair.run_until(lambda: raw.handshake_complete and pair.client.handshake_complete)
    return pair, raw


def records_of(data: bytes | bytearray, max_size: int = DEFAULT_MAX_RECORD_SIZE) -> list[bytes]:
    reader = RecordReader(max_size)
    records = [bytes(r) for r in reader.feed(bytes(data))]
    assert reader.buffered == 0
    return records


def frames_of(data: bytes | bytearray) -> list[Frame]:
    return [f for record in records_of(data) for f in decode_record(record)]


def send_frames(raw: RawTLSPeer, *frames: Frame) -> None:
    raw.send_record(b"".join(encode_frame(f) for f in frames))


def expect_close(pair: Pair, raw: RawTLSPeer, code: int, frame_type: int | None) -> None:
    """The client closed with ``code``: event, CONNECTION_CLOSE on the wire, close_notify."""
    pair.run()
    event = pair.terminated("client")
    assert (event.kind, event.error_code, event.by_peer) == ("close", code, False)
    assert event.frame_type == frame_type
    assert not event.is_application
    closes = [f for f in frames_of(raw.received) if isinstance(f, ConnectionCloseFrame)]
    assert len(closes) == 1
    assert closes[0].error_code == code
    assert closes[0].offending_frame_type == (frame_type or 0)
    assert raw.close_notify_received
    assert pair.client.should_shutdown_write
    error = pair.client.termination_error
    assert isinstance(error, ConnectionTerminated)
    assert error.code == code
