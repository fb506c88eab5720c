"""Registries of wire codes shared by every layer.

Each enumeration copies an IANA registry; unknown values read from the wire stay
plain ``int`` (RFC 9000 §20 allows any 62-bit value).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CRYPTO_ERROR_BASE", "AlertDescription", "TransportErrorCode"]

#: RFC 9001 §4.8: a TLS alert ``a`` is carried as transport error ``0x100 + a``.
CRYPTO_ERROR_BASE = 0x100


class TransportErrorCode(IntEnum):
    """QUIC transport error codes (RFC 9000 §20.1)."""

    NO_ERROR = 0x00
    INTERNAL_ERROR = 0x01
    CONNECTION_REFUSED = 0x02
    FLOW_CONTROL_ERROR = 0x03
    STREAM_LIMIT_ERROR = 0x04
    STREAM_STATE_ERROR = 0x05
    FINAL_SIZE_ERROR = 0x06
    FRAME_ENCODING_ERROR = 0x07
    TRANSPORT_PARAMETER_ERROR = 0x08
    CONNECTION_ID_LIMIT_ERROR = 0x09
    PROTOCOL_VIOLATION = 0x0A
    INVALID_TOKEN = 0x0B
    APPLICATION_ERROR = 0x0C
    CRYPTO_BUFFER_EXCEEDED = 0x0D
    KEY_UPDATE_ERROR = 0x0E
    AEAD_LIMIT_REACHED = 0x0F
    NO_VIABLE_PATH = 0x10
    #: RFC 9368 §10.2: the version information does not match what was negotiated.
    VERSION_NEGOTIATION_ERROR = 0x11


class AlertDescription(IntEnum):
    """TLS alert descriptions (RFC 8446 §6)."""

    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    inappropriate_fallback = 86
    user_canceled = 90
    missing_extension = 109
    unsupported_extension = 110
    unrecognized_name = 112
    bad_certificate_status_response = 113
    unknown_psk_identity = 115
    certificate_required = 116
    no_application_protocol = 120
