"""A JSON Schema for mstls's qlog traces, written from the qlog drafts (issue 13).

Sources: draft-ietf-quic-qlog-main-schema (qlog_version 0.3: the JSON-SEQ header,
``common_fields``, the event's ``time``/``name``/``data``) and
draft-ietf-quic-qlog-quic-events (the events' ``data`` and ``QuicFrame``), plus
the ack_frequency / immediate_ack frames of draft-ietf-quic-ack-frequency.
Objects whose fields the drafts list completely are closed
(``additionalProperties: false``) so a misspelt field fails.

:func:`validate` implements the subset of JSON Schema used here (``type``,
``const``, ``enum``, ``properties``, ``required``, ``additionalProperties``,
``items``, ``minItems``, ``maxItems``, ``minimum``, ``pattern``,
``minProperties``, ``oneOf``); with ``jsonschema`` installed the tests also
check the schema with it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["EVENT_SCHEMAS", "FRAME_SCHEMAS", "HEADER_SCHEMA", "event_schema", "validate"]

UINT = {"type": "integer", "minimum": 0}
HEX = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
NUMBER = {"type": "number"}
TEXT = {"type": "string"}
STREAM_TYPE = {"enum": ["unidirectional", "bidirectional"]}
TRANSPORT_ERROR = {
    "enum": [
        "no_error",
        "internal_error",
        "connection_refused",
        "flow_control_error",
        "stream_limit_error",
        "stream_state_error",
        "final_size_error",
        "frame_encoding_error",
        "transport_parameter_error",
        "connection_id_limit_error",
        "protocol_violation",
        "invalid_token",
        "application_error",
        "crypto_buffer_exceeded",
        "key_update_error",
        "aead_limit_reached",
        "no_viable_path",
    ]
}
ERROR_CODE = {"oneOf": [TRANSPORT_ERROR, UINT]}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A closed object with these required and optional properties."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


def _frame(name: str, required: dict[str, Any], optional: dict[str, Any] | None = None) -> Any:
    return _obj({"frame_type": {"const": name}, **required}, optional)


#: quic-events QuicFrame, one schema per frame_type.
FRAME_SCHEMAS: dict[str, dict[str, Any]] = {
    "padding": _frame("padding", {"payload_length": UINT}, {"length": UINT}),
    "ping": _frame("ping", {}),
    "ack": _frame(
        "ack",
        {
            "acked_ranges": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "array", "minItems": 1, "maxItems": 2, "items": UINT},
            }
        },
        {"ack_delay": NUMBER, "ect1": UINT, "ect0": UINT, "ce": UINT},
    ),
    "reset_stream": _frame(
        "reset_stream", {"stream_id": UINT, "error_code": UINT, "final_size": UINT}
    ),
    "stop_sending": _frame("stop_sending", {"stream_id": UINT, "error_code": UINT}),
    "crypto": _frame("crypto", {"offset": UINT, "length": UINT}),
    "new_token": _frame(
        "new_token",
        {"token": {"type": "object", "properties": {"raw": {"type": "object"}}}},
    ),
    "stream": _frame(
        "stream", {"stream_id": UINT, "offset": UINT, "length": UINT}, {"fin": {"type": "boolean"}}
    ),
    "max_data": _frame("max_data", {"maximum": UINT}),
    "max_stream_data": _frame("max_stream_data", {"stream_id": UINT, "maximum": UINT}),
    "max_streams": _frame("max_streams", {"stream_type": STREAM_TYPE, "maximum": UINT}),
    "data_blocked": _frame("data_blocked", {"limit": UINT}),
    "stream_data_blocked": _frame("stream_data_blocked", {"stream_id": UINT, "limit": UINT}),
    "streams_blocked": _frame("streams_blocked", {"stream_type": STREAM_TYPE, "limit": UINT}),
    "new_connection_id": _frame(
        "new_connection_id",
        {"sequence_number": UINT, "retire_prior_to": UINT, "connection_id": HEX},
        {"connection_id_length": UINT, "stateless_reset_token": HEX},
    ),
    "retire_connection_id": _frame("retire_connection_id", {"sequence_number": UINT}),
    "path_challenge": _frame("path_challenge", {}, {"data": HEX}),
    "path_response": _frame("path_response", {}, {"data": HEX}),
    "connection_close": _frame(
        "connection_close",
        {"error_space": {"enum": ["transport", "application"]}, "error_code": ERROR_CODE},
        {"raw_error_code": UINT, "reason": TEXT, "trigger_frame_type": UINT},
    ),
    "handshake_done": _frame("handshake_done", {}),
    "unknown": _frame("unknown", {}, {"raw_frame_type": UINT}),
    "ack_frequency": _frame(
        "ack_frequency",
        {
            "sequence_number": UINT,
            "ack_eliciting_threshold": UINT,
            "request_max_ack_delay": NUMBER,
            "reordering_threshold": UINT,
        },
    ),
    "immediate_ack": _frame("immediate_ack", {}),
    "datagram": _frame("datagram", {}, {"length": UINT, "raw": HEX}),
}

PACKET_TYPE = {
    "enum": [
        "initial",
        "handshake",
        "0RTT",
        "1RTT",
        "retry",
        "version_negotiation",
        "stateless_reset",
        "unknown",
    ]
}
PACKET_EVENT = _obj(
    {
        "header": _obj(
            {"packet_type": PACKET_TYPE, "packet_number": UINT},
            {"dcid": HEX, "scid": HEX, "dcil": UINT, "scil": UINT, "token": {"type": "object"}},
        ),
        "raw": _obj({"length": UINT}, {"payload_length": UINT}),
        "frames": {
            "type": "array",
            "minItems": 1,
            "items": {"oneOf": list(FRAME_SCHEMAS.values())},
        },
    }
)
KEY_TYPE = {
    "enum": [
        f"{role}_{level}_secret"
        for role in ("client", "server")
        for level in ("initial", "handshake", "0rtt", "1rtt")
    ]
}
KEY_TRIGGER = {"enum": ["tls", "remote_update", "local_update"]}
CONNECTION_STATE = {
    "enum": [
        "attempted",
        "peer_validated",
        "handshake_started",
        "early_write",
        "handshake_complete",
        "handshake_confirmed",
        "closing",
        "draining",
        "closed",
    ]
}
PREFERRED_ADDRESS = {"type": "object"}

#: quic-events ``data`` per event name.
EVENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "transport:packet_sent": PACKET_EVENT,
    "transport:packet_received": PACKET_EVENT,
    "transport:parameters_set": _obj(
        {"owner": {"enum": ["local", "remote"]}},
        {
            "resumption_allowed": {"type": "boolean"},
            "early_data_enabled": {"type": "boolean"},
            "tls_cipher": TEXT,
            "original_destination_connection_id": HEX,
            "initial_source_connection_id": HEX,
            "retry_source_connection_id": HEX,
            "stateless_reset_token": HEX,
            "disable_active_migration": {"type": "boolean"},
            "max_idle_timeout": UINT,
            "max_udp_payload_size": UINT,
            "ack_delay_exponent": UINT,
            "max_ack_delay": UINT,
            "active_connection_id_limit": UINT,
            "initial_max_data": UINT,
            "initial_max_stream_data_bidi_local": UINT,
            "initial_max_stream_data_bidi_remote": UINT,
            "initial_max_stream_data_uni": UINT,
            "initial_max_streams_bidi": UINT,
            "initial_max_streams_uni": UINT,
            "preferred_address": PREFERRED_ADDRESS,
            "min_ack_delay": UINT,  # draft-ietf-quic-ack-frequency
        },
    ),
    "security:key_updated": _obj(
        {"key_type": KEY_TYPE},
        {"old": HEX, "new": HEX, "generation": UINT, "trigger": KEY_TRIGGER},
    ),
    "security:key_discarded": _obj(
        {"key_type": KEY_TYPE}, {"key": HEX, "generation": UINT, "trigger": KEY_TRIGGER}
    ),
    "connectivity:connection_state_updated": _obj(
        {"new": CONNECTION_STATE}, {"old": CONNECTION_STATE}
    ),
    "connectivity:connection_closed": _obj(
        {},
        {
            "owner": {"enum": ["local", "remote"]},
            "connection_code": ERROR_CODE,
            "application_code": UINT,
            "internal_code": UINT,
            "reason": TEXT,
            "trigger": {
                "enum": [
                    "clean",
                    "handshake_timeout",
                    "idle_timeout",
                    "error",
                    "stateless_reset",
                    "version_mismatch",
                    "application",
                ]
            },
        },
    ),
    "recovery:packet_lost": _obj(
        {"header": _obj({"packet_type": PACKET_TYPE, "packet_number": UINT})},
        {
            "frames": {"type": "array", "items": {"oneOf": list(FRAME_SCHEMAS.values())}},
            "trigger": {"enum": ["reordering_threshold", "time_threshold", "pto_expired"]},
        },
    ),
    "recovery:metrics_updated": {
        **_obj(
            {},
            {
                "min_rtt": NUMBER,
                "smoothed_rtt": NUMBER,
                "latest_rtt": NUMBER,
                "rtt_variance": NUMBER,
                "pto_count": UINT,
                "congestion_window": UINT,
                "bytes_in_flight": UINT,
                "ssthresh": UINT,
                "packets_in_flight": UINT,
                "pacing_rate": UINT,
            },
        ),
        "minProperties": 1,
    },
}

#: main-schema: the first record of a JSON-SEQ file (qlog 0.3, one trace).
HEADER_SCHEMA = {
    "type": "object",
    "required": ["qlog_version", "qlog_format", "trace"],
    "properties": {
        "qlog_version": {"const": "0.3"},
        "qlog_format": {"const": "JSON-SEQ"},
        "title": TEXT,
        "description": TEXT,
        "trace": {
            "type": "object",
            "required": ["vantage_point", "common_fields"],
            "properties": {
                "vantage_point": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": ["client", "server", "network", "unknown"]},
                        "name": TEXT,
                    },
                },
                "common_fields": {
                    "type": "object",
                    "required": ["time_format", "reference_time"],
                    "properties": {
                        "time_format": {"enum": ["relative", "delta", "absolute"]},
                        "reference_time": NUMBER,
                        "group_id": TEXT,
                        "protocol_type": {"type": "array", "items": TEXT},
                    },
                },
            },
        },
    },
}


def event_schema(name: str) -> dict[str, Any]:
    """main-schema Event: ``time`` (relative ms), ``name``, and ``data`` for ``name``."""
    return _obj(
        {
            "time": {"type": "number", "minimum": 0},
            "name": {"const": name},
            "data": EVENT_SCHEMAS[name],
        }
    )


_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def _type_ok(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """What is wrong with ``value`` under ``schema`` (empty: valid)."""
    found: list[str] = []
    if "type" in schema and not _type_ok(value, schema["type"]):
        return [f"{path}: expected {schema['type']}, got {value!r}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{path}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and isinstance(value, int | float) and value < schema["minimum"]:
        found.append(f"{path}: {value} below {schema['minimum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        found.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        found += _object_errors(value, schema, path)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{path}: fewer than {schema['minItems']} items")
        if len(value) > schema.get("maxItems", len(value)):
            found.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for index, item in enumerate(value):
                found += errors(item, schema["items"], f"{path}[{index}]")
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not errors(value, s, path)]
        if len(matching) != 1:
            found.append(f"{path}: {value!r} matches {len(matching)} of the oneOf schemas")
    return found


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    found: list[str] = []
    properties = schema.get("properties", {})
    for key in schema.get("required", ()):
        if key not in value:
            found.append(f"{path}: missing {key!r}")
    if len(value) < schema.get("minProperties", 0):
        found.append(f"{path}: fewer than {schema['minProperties']} properties")
    for key, item in value.items():
        if key in properties:
            found += errors(item, properties[key], f"{path}.{key}")
        elif schema.get("additionalProperties", True) is False:
            found.append(f"{path}: unexpected property {key!r}")
    return found


def validate(value: Any, schema: dict[str, Any]) -> None:
    """Raise AssertionError listing every problem of ``value`` under ``schema``."""
    problems = errors(value, schema)
    assert not problems, "\n".join(problems[:20])
