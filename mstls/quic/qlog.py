"""qlog output: one JSON-SEQ trace per connection (draft-ietf-quic-qlog-main-schema,
draft-ietf-quic-qlog-quic-events; RFC 7464 JSON text sequences).

Theory of operation
-------------------
Each record is ``RS`` (0x1E) + one JSON object + ``\\n``.  The first record is the
header: ``qlog_version`` 0.3, ``qlog_format`` JSON-SEQ and one trace with its
vantage point and common fields (``group_id``: the original destination
connection ID, ``protocol_type``, ``time_format`` "relative" and the
``reference_time``: wall-clock epoch milliseconds when the trace began).  Every
later record is an event whose ``time`` is milliseconds since that reference,
measured on the connection's own clock (the driver's monotonic ``now``), whose
``name`` is ``category:event`` and whose ``data`` follows the QUIC event schema:

* ``transport:packet_sent`` / ``packet_received``: header (packet_type,
  packet_number, dcid, scid), raw lengths, and every frame of the payload
  (:data:`FRAME_FORMATS`, one formatter per frame class);
* ``transport:parameters_set`` for our and the peer's transport parameters;
* ``security:key_updated`` / ``key_discarded`` per key type and generation;
* ``connectivity:connection_state_updated`` and ``connection_closed``;
* ``recovery:metrics_updated`` with only the metrics that changed, and
  ``recovery:packet_lost`` for each packet declared lost.

Cost: writing is off unless the configuration names a directory, and every
call site tests ``if self.qlog is not None`` first, so a connection without
qlog pays that one test per packet.  With qlog on, frames are decoded again from
the plaintext payload here, after the packet was built or processed; the data
path itself never builds frame objects for qlog.  Events are buffered and written
:data:`FLUSH_EVERY` at a time, and at every state change.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from ..codes import TransportErrorCode
from ..exceptions import ProtocolError
from ..wire.buffer import Reader
from ..wire.frames import (
    ACK_FREQUENCY_FRAME_DECODERS,
    AckFrame,
    AckFrequencyFrame,
    ApplicationCloseFrame,
    Buffer,
    ConnectionCloseFrame,
    CryptoFrame,
    DataBlockedFrame,
    DatagramFrame,
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
    decode_frame,
)
from ..wire.packet import PacketType
from ..wire.transport_params import TransportParameters

__all__ = [
    "FRAME_FORMATS",
    "PACKET_TYPES",
    "QLOG_VERSION",
    "RECORD_SEPARATOR",
    "QlogWriter",
    "format_frames",
    "key_type",
    "open_qlog",
]

QLOG_VERSION = "0.3"
#: RFC 7464: each JSON text is preceded by ASCII RS.
RECORD_SEPARATOR = b"\x1e"
#: Events buffered before a write to the file.
FLUSH_EVERY = 64
#: RFC 9000 §19.3: ACK Delay is in units of 2**ack_delay_exponent microseconds.
MICROSECONDS_PER_MS = 1000.0

#: mstls packet types → qlog ``packet_type`` (quic-events PacketType).
PACKET_TYPES: Mapping[PacketType, str] = {
    PacketType.INITIAL: "initial",
    PacketType.HANDSHAKE: "handshake",
    PacketType.ZERO_RTT: "0RTT",
    PacketType.ONE_RTT: "1RTT",
    PacketType.RETRY: "retry",
    PacketType.VERSION_NEGOTIATION: "version_negotiation",
}


#: quic-events connection_closed triggers named like a :class:`TerminationKind`.
_CLOSE_TRIGGERS = frozenset({"idle_timeout", "handshake_timeout", "stateless_reset"})


def key_type(client: bool, level: str) -> str:
    """quic-events KeyType: ``client_initial_secret`` ... ``server_1rtt_secret``."""
    return f"{'client' if client else 'server'}_{level}_secret"


def _transport_error(code: int) -> str | int:
    """quic-events TransportError: the RFC 9000 §20.1 name in lower case, else the code."""
    try:
        return TransportErrorCode(code).name.lower()
    except ValueError:
        return code


def _text(data: bytes | bytearray | memoryview) -> str:
    return bytes(data).decode("utf-8", "replace")


# -- frames (quic-events QuicFrame) -------------------------------------------------------
def _ack(f: AckFrame, ack_delay_exponent: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "frame_type": "ack",
        "ack_delay": f.ack_delay * (1 << ack_delay_exponent) / MICROSECONDS_PER_MS,
        # qlog lists ranges ascending; ours are descending (smallest, largest) pairs.
        "acked_ranges": [[low, high] if low != high else [low] for low, high in reversed(f.ranges)],
    }
    if f.ecn is not None:
        out.update(ect0=f.ecn.ect0, ect1=f.ecn.ect1, ce=f.ecn.ce)
    return out


def _close(f: ConnectionCloseFrame) -> dict[str, Any]:
    return {
        "frame_type": "connection_close",
        "error_space": "transport",
        "error_code": _transport_error(f.error_code),
        "raw_error_code": f.error_code,
        "reason": _text(f.reason),
        "trigger_frame_type": f.offending_frame_type,
    }


def _application_close(f: ApplicationCloseFrame) -> dict[str, Any]:
    return {
        "frame_type": "connection_close",
        "error_space": "application",
        "error_code": f.error_code,
        "raw_error_code": f.error_code,
        "reason": _text(f.reason),
    }


def _stream_type(bidi: bool) -> str:
    return "bidirectional" if bidi else "unidirectional"


_Format = Callable[[Any], dict[str, Any]]

#: One formatter per frame class (the ACK frame needs the exponent: see format_frames).
FRAME_FORMATS: Mapping[type[Frame], _Format] = {
    PaddingFrame: lambda f: {
        "frame_type": "padding",
        "length": f.length,
        "payload_length": f.length,
    },
    PingFrame: lambda f: {"frame_type": "ping"},
    ResetStreamFrame: lambda f: {
        "frame_type": "reset_stream",
        "stream_id": f.stream_id,
        "error_code": f.error_code,
        "final_size": f.final_size,
    },
    StopSendingFrame: lambda f: {
        "frame_type": "stop_sending",
        "stream_id": f.stream_id,
        "error_code": f.error_code,
    },
    CryptoFrame: lambda f: {"frame_type": "crypto", "offset": f.offset, "length": len(f.data)},
    NewTokenFrame: lambda f: {
        "frame_type": "new_token",
        "token": {"raw": {"length": len(f.token), "data": bytes(f.token).hex()}},
    },
    StreamFrame: lambda f: {
        "frame_type": "stream",
        "stream_id": f.stream_id,
        "offset": f.offset,
        "length": len(f.data),
        "fin": f.fin,
    },
    MaxDataFrame: lambda f: {"frame_type": "max_data", "maximum": f.maximum},
    MaxStreamDataFrame: lambda f: {
        "frame_type": "max_stream_data",
        "stream_id": f.stream_id,
        "maximum": f.maximum,
    },
    MaxStreamsFrame: lambda f: {
        "frame_type": "max_streams",
        "stream_type": _stream_type(f.bidi),
        "maximum": f.maximum,
    },
    DataBlockedFrame: lambda f: {"frame_type": "data_blocked", "limit": f.limit},
    StreamDataBlockedFrame: lambda f: {
        "frame_type": "stream_data_blocked",
        "stream_id": f.stream_id,
        "limit": f.limit,
    },
    StreamsBlockedFrame: lambda f: {
        "frame_type": "streams_blocked",
        "stream_type": _stream_type(f.bidi),
        "limit": f.limit,
    },
    NewConnectionIdFrame: lambda f: {
        "frame_type": "new_connection_id",
        "sequence_number": f.sequence_number,
        "retire_prior_to": f.retire_prior_to,
        "connection_id_length": len(f.connection_id),
        "connection_id": bytes(f.connection_id).hex(),
        "stateless_reset_token": bytes(f.stateless_reset_token).hex(),
    },
    RetireConnectionIdFrame: lambda f: {
        "frame_type": "retire_connection_id",
        "sequence_number": f.sequence_number,
    },
    PathChallengeFrame: lambda f: {"frame_type": "path_challenge", "data": bytes(f.data).hex()},
    PathResponseFrame: lambda f: {"frame_type": "path_response", "data": bytes(f.data).hex()},
    ConnectionCloseFrame: _close,
    ApplicationCloseFrame: _application_close,
    HandshakeDoneFrame: lambda f: {"frame_type": "handshake_done"},
    # draft-ietf-quic-ack-frequency §10 (qlog): ack_frequency, immediate_ack.
    AckFrequencyFrame: lambda f: {
        "frame_type": "ack_frequency",
        "sequence_number": f.sequence_number,
        "ack_eliciting_threshold": f.ack_eliciting_threshold,
        "request_max_ack_delay": f.requested_max_ack_delay / MICROSECONDS_PER_MS,
        "reordering_threshold": f.reordering_threshold,
    },
    ImmediateAckFrame: lambda f: {"frame_type": "immediate_ack"},
    # RFC 9221 (qlog quic-events DatagramFrame).
    DatagramFrame: lambda f: {"frame_type": "datagram", "length": len(f.data)},
}


def format_frames(payload: Buffer, ack_delay_exponent: int) -> list[dict[str, Any]]:
    """Every frame of a plaintext packet payload as a qlog QuicFrame.

    The payload may be untrusted (a received packet, logged before it is
    processed): decoding stops at the first frame that cannot be decoded, which
    is logged as ``unknown`` with its ``raw_frame_type`` when it is known.
    """
    reader = Reader(payload)
    out: list[dict[str, Any]] = []
    while not reader.eof():
        try:
            frame = decode_frame(reader, ACK_FREQUENCY_FRAME_DECODERS)
        except ProtocolError as exc:
            unknown: dict[str, Any] = {"frame_type": "unknown"}
            if exc.frame_type is not None:
                unknown["raw_frame_type"] = exc.frame_type
            out.append(unknown)
            break
        kind = type(frame)
        if isinstance(frame, AckFrame):
            out.append(_ack(frame, ack_delay_exponent))
        elif kind in FRAME_FORMATS:
            out.append(FRAME_FORMATS[kind](frame))
        else:  # a frame class added to the decoders but not (yet) here
            out.append({"frame_type": "unknown", "raw_frame_type": frame.frame_type})
    return out


# -- transport parameters (quic-events parameters_set) -------------------------------------
def _hex(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def _parameters(params: TransportParameters) -> dict[str, Any]:
    out: dict[str, Any] = {
        "original_destination_connection_id": _hex(params.original_destination_connection_id),
        "initial_source_connection_id": _hex(params.initial_source_connection_id),
        "retry_source_connection_id": _hex(params.retry_source_connection_id),
        "stateless_reset_token": _hex(params.stateless_reset_token),
        "disable_active_migration": params.disable_active_migration,
        "max_idle_timeout": params.max_idle_timeout,
        "max_udp_payload_size": params.max_udp_payload_size,
        "ack_delay_exponent": params.ack_delay_exponent,
        "max_ack_delay": params.max_ack_delay,
        "active_connection_id_limit": params.active_connection_id_limit,
        "initial_max_data": params.initial_max_data,
        "initial_max_stream_data_bidi_local": params.initial_max_stream_data_bidi_local,
        "initial_max_stream_data_bidi_remote": params.initial_max_stream_data_bidi_remote,
        "initial_max_stream_data_uni": params.initial_max_stream_data_uni,
        "initial_max_streams_bidi": params.initial_max_streams_bidi,
        "initial_max_streams_uni": params.initial_max_streams_uni,
        # draft-ietf-quic-ack-frequency §3, in microseconds as on the wire.
        "min_ack_delay": params.min_ack_delay,
    }
    preferred = params.preferred_address
    if preferred is not None:
        out["preferred_address"] = {
            "ip_v4": str(preferred.ipv4_address),
            "port_v4": preferred.ipv4_port,
            "ip_v6": str(preferred.ipv6_address),
            "port_v6": preferred.ipv6_port,
            "connection_id": preferred.connection_id.hex(),
            "stateless_reset_token": preferred.stateless_reset_token.hex(),
        }
    return {key: value for key, value in out.items() if value is not None}


class QlogWriter:
    """Writes one connection's qlog trace; see the module documentation."""

    def __init__(
        self,
        stream: IO[bytes],
        *,
        vantage: str,
        odcid: bytes,
        reference_time: float,
        wall_time: float,
    ) -> None:
        """``reference_time`` is the connection's clock at the start of the trace,
        ``wall_time`` the wall clock (seconds since the epoch) at the same instant."""
        self._stream = stream
        self._reference = reference_time
        self._pending: list[bytes] = []
        self._last = 0.0
        self._state: str | None = None
        self._metrics: dict[str, float | int] = {}
        #: The 1-RTT key generations already logged: (ours, the peer's).
        self._generations = (0, 0)
        self.is_client = vantage == "client"
        self._write(
            {
                "qlog_version": QLOG_VERSION,
                "qlog_format": "JSON-SEQ",
                "title": "mstls",
                "trace": {
                    "vantage_point": {"type": vantage, "name": "mstls"},
                    "common_fields": {
                        "group_id": odcid.hex(),
                        "ODCID": odcid.hex(),
                        "protocol_type": ["QUIC"],
                        "time_format": "relative",
                        "reference_time": round(wall_time * 1000.0, 3),
                    },
                },
            }
        )
        self.flush()

    def _write(self, record: dict[str, Any]) -> None:
        self._pending.append(
            RECORD_SEPARATOR + json.dumps(record, separators=(",", ":")).encode() + b"\n"
        )

    def event(self, now: float | None, name: str, data: dict[str, Any]) -> None:
        """One event at ``now`` (the connection's clock); ``None``: where code that
        has no clock reading logs, at the time of the previous event."""
        # Events are written in the order they happen; a caller's clock reading
        # taken earlier (e.g. the last send time) never moves the trace backwards.
        elapsed = (
            self._last
            if now is None
            else max(self._last, round((now - self._reference) * 1000.0, 3))
        )
        self._last = elapsed
        self._write({"time": elapsed, "name": name, "data": data})
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    # -- transport -----------------------------------------------------------------------
    def packet(
        self,
        now: float,
        name: str,
        packet_type: PacketType,
        number: int,
        length: int,
        payload: Buffer,
        *,
        dcid: bytes | bytearray | memoryview,
        scid: bytes | bytearray | memoryview | None,
        ack_delay_exponent: int,
    ) -> None:
        """``transport:packet_sent`` or ``transport:packet_received`` with every frame
        of the plaintext ``payload``; ``scid`` is None for short headers."""
        header: dict[str, Any] = {
            "packet_type": PACKET_TYPES.get(packet_type, packet_type.name.lower()),
            "packet_number": number,
            "dcid": bytes(dcid).hex(),
        }
        if scid is not None:
            header["scid"] = bytes(scid).hex()
        self.event(
            now,
            name,
            {
                "header": header,
                "raw": {"length": length, "payload_length": len(payload)},
                "frames": format_frames(payload, ack_delay_exponent),
            },
        )

    def parameters_set(self, now: float, owner: str, params: TransportParameters) -> None:
        """``transport:parameters_set`` (``owner`` is "local" or "remote")."""
        self.event(now, "transport:parameters_set", {"owner": owner, **_parameters(params)})

    # -- security ------------------------------------------------------------------------
    def key_updated(
        self,
        now: float | None,
        key: str,
        *,
        trigger: str | None = None,
        generation: int | None = None,
    ) -> None:
        """``security:key_updated``; ``trigger`` is tls, remote_update or local_update."""
        data: dict[str, Any] = {"key_type": key}
        if generation is not None:
            data["generation"] = generation
        if trigger is not None:
            data["trigger"] = trigger
        self.event(now, "security:key_updated", data)

    def key_discarded(
        self,
        now: float | None,
        key: str,
        *,
        trigger: str | None = None,
        generation: int | None = None,
    ) -> None:
        """``security:key_discarded``."""
        data: dict[str, Any] = {"key_type": key}
        if trigger is not None:
            data["trigger"] = trigger
        if generation is not None:
            data["generation"] = generation
        self.event(now, "security:key_discarded", data)

    def keys_installed(
        self,
        now: float | None,
        level: str,
        *,
        ours: bool,
        peers: bool,
        trigger: str | None = "tls",
    ) -> None:
        """New keys of a level: from the TLS handshake (RFC 9001 §4.1.4), or for
        Initial packets derived from a connection ID (``trigger`` None, §5.2)."""
        if ours:
            self.key_updated(now, key_type(self.is_client, level), trigger=trigger)
        if peers:
            self.key_updated(now, key_type(not self.is_client, level), trigger=trigger)

    def keys_discarded(self, now: float | None, level: str) -> None:
        """A level's keys dropped (RFC 9001 §4.9)."""
        for client in (True, False):
            self.key_discarded(now, key_type(client, level), trigger="tls")

    def one_rtt_generations(self, now: float | None, send: int, receive: int, trigger: str) -> None:
        """Log 1-RTT key updates not logged yet (RFC 9001 §6): ``send`` and
        ``receive`` are the current generations of our and the peer's keys."""
        sent, received = self._generations
        if (send, receive) == (sent, received):
            return
        self._generations = (send, receive)
        if send != sent:
            self.key_updated(
                now, key_type(self.is_client, "1rtt"), trigger=trigger, generation=send
            )
        if receive != received:
            peer = key_type(not self.is_client, "1rtt")
            self.key_updated(now, peer, trigger=trigger, generation=receive)

    # -- connectivity and recovery -----------------------------------------------------------
    def state_updated(self, now: float | None, new: str) -> None:
        """``connectivity:connection_state_updated`` (quic-events ConnectionState); the
        trace is flushed, so a reader sees every state the connection went through."""
        if new == self._state:
            return
        data = {"new": new} if self._state is None else {"old": self._state, "new": new}
        self._state = new
        self.event(now, "connectivity:connection_state_updated", data)
        self.flush()

    def connection_closed(
        self,
        now: float | None,
        *,
        by_peer: bool,
        error_code: int,
        is_application: bool,
        reason: str,
        kind: str,
    ) -> None:
        """``connectivity:connection_closed`` when the connection ends (the moment its
        ``ConnectionTerminatedEvent`` is emitted); the trace is flushed."""
        if kind == "close":
            trigger = "application" if is_application else "clean" if not error_code else "error"
        else:
            trigger = kind if kind in _CLOSE_TRIGGERS else "error"
        data: dict[str, Any] = {"owner": "remote" if by_peer else "local"}
        if is_application:
            data["application_code"] = error_code
        else:
            data["connection_code"] = _transport_error(error_code)
        data.update(reason=reason, trigger=trigger)
        self.event(now, "connectivity:connection_closed", data)
        self.flush()

    def metrics_updated(self, now: float, metrics: dict[str, float | int]) -> None:
        """``recovery:metrics_updated`` with the metrics that changed since the last one."""
        changed = {k: v for k, v in metrics.items() if self._metrics.get(k) != v}
        if changed:
            self._metrics.update(changed)
            self.event(now, "recovery:metrics_updated", changed)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(b"".join(self._pending))
            self._pending.clear()
            self._stream.flush()

    def close(self) -> None:
        self.flush()
        self._stream.close()


def open_qlog(
    directory: str | os.PathLike[str],
    *,
    vantage: str,
    odcid: bytes,
    now: float,
    wall_clock: Callable[[], float] = time.time,
) -> QlogWriter:
    """A writer for ``<directory>/<odcid>_<vantage>.sqlog``; the trace's reference
    time is ``wall_clock()`` (epoch seconds) at the connection's ``now``."""
    path = Path(directory) / f"{odcid.hex()}_{vantage}.sqlog"
    path.parent.mkdir(parents=True, exist_ok=True)
    return QlogWriter(
        path.open("wb"), vantage=vantage, odcid=odcid, reference_time=now, wall_time=wall_clock()
    )
