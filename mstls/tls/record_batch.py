"""Opening a run of protected TLS 1.3 records into one buffer (RFC 8446 §5.2, §5.4).

Theory of operation
-------------------
Bulk transfer over TCP is a long run of full application_data records.  Opening
them one call at a time costs a dozen Python calls and two copies per 16 KiB
record; :func:`open_run` opens every *complete* protected record buffered at
``pos`` in one loop, decrypting each straight into one output ``bytearray`` at
the end of the content so far (``decrypt_into``).  Each record's
TLSInnerPlaintext ends with its content type byte (and optional zero padding,
§5.4); the next record is decrypted over that byte, so the output is exactly
the concatenated application data, with one copy: the decryption itself.

The run stops after the first record whose inner type is not application_data
(a handshake message such as KeyUpdate or NewSessionTicket, or an alert): it is
returned separately and nothing after it is opened, so a key change the caller
makes for it applies from the very next record (§5.1).  It also stops before
any record that is not a complete protected record (a plaintext record, or an
incomplete one); the single-record path handles those.

The checks are those of the single-record path
(:meth:`~mstls.tls.record.RecordLayer.next_record`): Handles untrusted input:
raises only :class:`~mstls.exceptions.TLSError` with the alert to send.  The
bytes of a record that fails authentication are never returned (the output
is dropped with the error, which the caller makes sticky).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag

from ..codes import AlertDescription
from ..exceptions import TLSError
from .cipher_suites import TAG_LENGTH

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["RunResult", "open_run", "run_length"]

_APPLICATION_DATA = 23
_HANDSHAKE = 22
_ALERT = 21
_HEADER = 5
_MAX_INNER_PLAINTEXT = 2**14 + 1
_MAX_CIPHERTEXT = 2**14 + 256
_ALERT_LENGTH = 2


class _Opener(Protocol):
    """The read direction's protection (``RecordLayer``'s ``_Protection``)."""

    seq: int

    def check_room(self, records: int) -> None: ...

    def next_nonce(self) -> bytes: ...


#: ``AEAD.decrypt_into(nonce, data, associated_data, buf)`` (cryptography >= 47).
_DecryptInto = Callable[[bytes, "Buffer", "Buffer", "Buffer"], int]
#: ``(application data, end position in the input, empty records seen at the end of
#: the run, the first non-application record or None)``.
RunResult = tuple[bytearray, int, int, "tuple[int, bytes] | None"]


def run_length(buf: bytes | bytearray, pos: int) -> tuple[int, int]:
    """How many complete protected records start at ``pos``, and their total
    ciphertext length (headers excluded).  Untrusted lengths above the §5.2
    limit end the run (the single-record path reports them)."""
    end = len(buf)
    count = total = 0
    while end - pos >= _HEADER and buf[pos] == _APPLICATION_DATA:
        length = (buf[pos + 3] << 8) | buf[pos + 4]
        if length > _MAX_CIPHERTEXT or length <= TAG_LENGTH or pos + _HEADER + length > end:
            break
        count += 1
        total += length - TAG_LENGTH
        pos += _HEADER + length
    return count, total


def _inner(out: bytearray, start: int, stop: int) -> tuple[int, int]:
    """Content end and inner content type of the TLSInnerPlaintext ``out[start:stop]``
    (§5.4: the last non-zero byte is the type; zeros after it are padding)."""
    last = stop - 1
    while last >= start and not out[last]:
        last -= 1
    if last < start:
        raise TLSError(
            AlertDescription.unexpected_message, "protected record with no non-zero content type"
        )
    return last, out[last]


def _other_record(content_type: int, content: bytes) -> tuple[int, bytes]:
    """A decrypted handshake or alert record; the same checks as one at a time (§5.1, §6)."""
    if content_type not in (_HANDSHAKE, _ALERT):
        raise TLSError(
            AlertDescription.unexpected_message,
            f"protected record with inner content type {content_type}",
        )
    if not content:
        name = "handshake" if content_type == _HANDSHAKE else "alert"
        raise TLSError(AlertDescription.unexpected_message, f"zero-length {name} record")
    if content_type == _ALERT and len(content) != _ALERT_LENGTH:
        raise TLSError(
            AlertDescription.decode_error,
            f"alert record of {len(content)} bytes (must be exactly 2)",
        )
    return content_type, content


def open_run(
    buf: bytes | bytearray,
    pos: int,
    count: int,
    total: int,
    protection: _Opener,
    decrypt_into: _DecryptInto,
    max_empty: int,
    empty: int,
) -> RunResult:
    """Open the ``count`` complete protected records at ``buf[pos:]`` (their
    plaintext is at most ``total`` bytes; see :func:`run_length`).

    ``empty`` is the count of consecutive records without content so far;
    more than ``max_empty`` is unexpected_message.  Handles untrusted input.
    """
    protection.check_room(count)
    out = bytearray(total)
    written = 0
    held: tuple[int, bytes] | None = None
    with memoryview(buf) as source, memoryview(out) as target:
        for _ in range(count):
            length = (buf[pos + 3] << 8) | buf[pos + 4]
            if buf[pos + 1] != 3 or buf[pos + 2] != 3:
                raise TLSError(
                    AlertDescription.decode_error,
                    f"protected record with legacy_record_version "
                    f"{bytes(buf[pos + 1 : pos + 3]).hex()} (not 0303)",
                )
            inner_length = length - TAG_LENGTH
            if inner_length > _MAX_INNER_PLAINTEXT:
                raise TLSError(
                    AlertDescription.record_overflow,
                    f"inner plaintext of {inner_length} bytes exceeds {_MAX_INNER_PLAINTEXT}",
                )
            body = pos + _HEADER
            stop = written + inner_length
            try:
                decrypt_into(
                    protection.next_nonce(),
                    source[body : body + length],
                    source[pos:body],
                    target[written:stop],
                )
            except InvalidTag:
                raise TLSError(
                    AlertDescription.bad_record_mac, "record failed authentication"
                ) from None
            pos = body + length
            if out[stop - 1] == _APPLICATION_DATA:
                last, content_type = stop - 1, _APPLICATION_DATA
            else:
                last, content_type = _inner(out, written, stop)
            if content_type != _APPLICATION_DATA:
                held = _other_record(content_type, bytes(target[written:last]))
                break
            if last == written:
                empty += 1
                if empty > max_empty:
                    raise TLSError(
                        AlertDescription.unexpected_message,
                        f"more than {max_empty} consecutive empty records",
                    )
            else:
                empty = 0
            written = last
    del out[written:]
    return out, pos, empty, held
