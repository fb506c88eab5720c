"""The TLS 1.3 record layer for TCP (RFC 8446 §5), sans-I/O.

Theory of operation
-------------------
:class:`RecordLayer` turns TCP bytes into ``(content type, plaintext)`` records
and back.  It owns no socket and no handshake state; the caller (the TLS-over-TCP
connection) feeds bytes with :meth:`RecordLayer.receive_data`, pulls records
with :meth:`RecordLayer.next_record` until it returns ``None``, installs keys
with :meth:`RecordLayer.set_read_key` / :meth:`RecordLayer.set_write_key` at the
points the handshake dictates, and sends what :meth:`RecordLayer.encode` returns.

Invariants:

* One record is opened per :meth:`~RecordLayer.next_record` call, so the caller
  can change the read key (handshake → application, KeyUpdate) between two
  records that arrived in the same TCP segment.
* Each direction keeps one AEAD context per key, built once (§5.3 nonce =
  ``iv XOR seq``, the sequence number left-padded to the IV length); installing
  a key resets the sequence number to 0.  Sequence numbers never wrap.
* Before a read key is installed records are plaintext (handshake, alert,
  change_cipher_spec).  Afterwards every record is a TLSCiphertext (opaque type
  application_data); the real type is the last non-zero byte of the decrypted
  TLSInnerPlaintext (§5.4).  The only unprotected record tolerated then is the
  middlebox-compatibility ChangeCipherSpec (§5, Appendix D.4), and only while
  the caller has set :attr:`RecordLayer.allow_ccs` (the handshake window);
  in that window an unprotected alert is reported as
  :class:`~mstls.exceptions.PeerAlert` (a peer failing before it has keys can
  send nothing else), outside it as unexpected_message.
* Not thread-safe: the caller serialises access.
* Memory is bounded: a peer cannot make us wait for more than one maximal
  record (length fields are checked as soon as the 5-byte header is in), and a
  caller must drain :meth:`~RecordLayer.next_record` before feeding more than
  :data:`MAX_INPUT_BUFFER` bytes.  CPU is bounded: at most
  :data:`MAX_EMPTY_RECORDS` consecutive records that carry nothing.
* Every problem with received bytes raises :class:`~mstls.exceptions.TLSError`
  carrying the alert to send; the error is sticky (raised again on every later
  :meth:`~RecordLayer.next_record`).  Received bytes are untrusted input.

End of stream is the caller's business (RFC 8446 §6.1: a TCP FIN without
close_notify is a truncation); :meth:`RecordLayer.eof_state` tells it whether a
partial record was pending and how many application bytes arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag

from ..codes import AlertDescription
from ..exceptions import PeerAlert, TLSError, kept
from .cipher_suites import IV_LENGTH, TAG_LENGTH, CipherSuite, make_aead
from .key_schedule import next_traffic_secret, traffic_key_iv
from .record_batch import open_run, run_length

if TYPE_CHECKING:  # collections.abc.Buffer is Python 3.12+
    from typing_extensions import Buffer

__all__ = [
    "AEAD_RECORD_LIMIT",
    "KEY_UPDATE_MARGIN",
    "MAX_CIPHERTEXT",
    "MAX_EMPTY_RECORDS",
    "MAX_INNER_PLAINTEXT",
    "MAX_INPUT_BUFFER",
    "MAX_PLAINTEXT",
    "RECORD_HEADER",
    "SEQUENCE_LIMIT",
    "AlertLevel",
    "ContentType",
    "EofState",
    "PaddingPolicy",
    "RecordLayer",
    "decode_alert",
    "pad_to_multiple",
]

#: Largest TLSPlaintext.fragment (RFC 8446 §5.1).
MAX_PLAINTEXT = 2**14
#: Largest TLSInnerPlaintext: content plus its content-type byte (§5.4).
MAX_INNER_PLAINTEXT = MAX_PLAINTEXT + 1
#: Largest TLSCiphertext.encrypted_record (§5.2).
MAX_CIPHERTEXT = 2**14 + 256
#: type(1) + legacy_record_version(2) + length(2) (§5.1).
RECORD_HEADER = 5
#: Undecoded input the layer holds before the caller must drain records: one
#: maximal protected record with its header.
MAX_INPUT_BUFFER = RECORD_HEADER + MAX_CIPHERTEXT
#: Consecutive records carrying nothing (empty application data, dropped
#: ChangeCipherSpec) tolerated before we call it a denial of service.
MAX_EMPTY_RECORDS = 32
#: Sequence numbers are 64-bit and must not wrap (§5.3); we stop one short.
SEQUENCE_LIMIT = 2**64 - 1
#: Records one key may protect (§5.5): 2^24.5 full-size records for AES-GCM;
#: ChaCha20-Poly1305 is bounded only by the sequence number.  RFC 9001 §6.6
#: gives the same order of magnitude for QUIC.
AEAD_RECORD_LIMIT: dict[CipherSuite, int] = {
    CipherSuite.AES_128_GCM_SHA256: int(2**24.5),
    CipherSuite.AES_256_GCM_SHA384: int(2**24.5),
    CipherSuite.CHACHA20_POLY1305_SHA256: SEQUENCE_LIMIT,
}
#: :attr:`RecordLayer.needs_key_update` turns true this many records before the
#: limit, leaving room for the KeyUpdate itself and for data already queued.
KEY_UPDATE_MARGIN = 2**16

_TLS12 = b"\x03\x03"
#: opaque_type application_data + legacy_record_version 0x0303 (§5.2).
_PROTECTED_PREFIX = b"\x17\x03\x03"
#: Bytes a protected record adds to its content: header, inner type byte, tag.
_PROTECTED_OVERHEAD = RECORD_HEADER + 1 + TAG_LENGTH
#: Source of padding zeros (§5.4).
_ZEROS = bytes(MAX_PLAINTEXT)
_TLS10 = b"\x03\x01"
#: Handshake message type of ClientHello (§4), for the record version rule.
_CLIENT_HELLO = 1
#: The only valid ChangeCipherSpec body (§5, Appendix D.4).
_CCS_BODY = b"\x01"
#: An alert is exactly level(1) + description(1) (§6).
_ALERT_LENGTH = 2


class ContentType(IntEnum):
    """TLS record content types (RFC 8446 §5.1, B.1)."""

    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23


class AlertLevel(IntEnum):
    """Alert levels (RFC 8446 §6); TLS 1.3 ignores them on receipt."""

    warning = 1
    fatal = 2


#: Alerts sent at warning level: the closure alerts of §6.1; all others are fatal.
_WARNING_ALERTS = frozenset({AlertDescription.close_notify, AlertDescription.user_canceled})
_CONTENT_TYPES = frozenset(int(t) for t in ContentType)
#: Inner content types a protected record may carry (§5.2: never change_cipher_spec).
_PROTECTED_TYPES = frozenset(
    {ContentType.handshake, ContentType.alert, ContentType.application_data}
)

#: Given the content type and fragment length, how many zero bytes to append (§5.4).
PaddingPolicy = Callable[[ContentType, int], int]


def pad_to_multiple(block: int) -> PaddingPolicy:
    """A policy padding every protected fragment up to a multiple of ``block`` (§5.4)."""
    if block <= 0:
        raise ValueError("padding block must be positive")

    def policy(content_type: ContentType, length: int) -> int:
        return -length % block

    return policy


def decode_alert(fragment: bytes | bytearray) -> tuple[int, AlertDescription | int]:
    """Split an alert record into (level, description) (RFC 8446 §6).

    Handles untrusted input; unknown descriptions stay plain ints.
    """
    if len(fragment) != _ALERT_LENGTH:
        raise TLSError(AlertDescription.decode_error, "an alert must be exactly two bytes")
    level, description = fragment[0], fragment[1]
    try:
        return level, AlertDescription(description)
    except ValueError:
        return level, description


@dataclass(frozen=True, slots=True)
class EofState:
    """What the record layer held when the TCP stream ended (for PrematureClose)."""

    eof_received: bool
    pending_bytes: int
    bytes_received_plaintext: int

    @property
    def has_partial_record(self) -> bool:
        """True if the stream stopped in the middle of a record."""
        return self.pending_bytes > 0

    @property
    def message(self) -> str:
        """A precise description of the truncation, for the caller's error."""
        where = (
            f"in the middle of a record ({self.pending_bytes} bytes of it received)"
            if self.pending_bytes
            else "at a record boundary"
        )
        return (
            f"TCP stream ended without TLS close_notify, {where}, after "
            f"{self.bytes_received_plaintext} application bytes"
        )


#: ``AEAD.encrypt_into(nonce, data, associated_data, buf)`` (cryptography >= 47).
_EncryptInto = Callable[[bytes, "Buffer", "Buffer", "Buffer"], int]


class _Protection:
    """One direction's record protection: suite, secret, AEAD context, sequence."""

    __slots__ = (
        "aead",
        "decrypt_into",
        "encrypt_into",
        "iv",
        "limit",
        "secret",
        "seq",
        "suite",
        "update_at",
    )

    def __init__(self, suite: CipherSuite, secret: bytes, *, sending: bool) -> None:
        key, iv = traffic_key_iv(suite, secret)
        self.suite = suite
        self.secret = secret
        self.aead = make_aead(suite, key)
        # Sealing straight into the output buffer saves a copy per record.
        self.encrypt_into: _EncryptInto | None = getattr(self.aead, "encrypt_into", None)
        # Opening a run of records into one buffer (record_batch) needs decrypt_into.
        self.decrypt_into: _EncryptInto | None = getattr(self.aead, "decrypt_into", None)
        self.iv = int.from_bytes(iv, "big")
        self.seq = 0
        # The AEAD limit binds the sender (§5.5); a receiver only refuses to wrap.
        self.limit = min(AEAD_RECORD_LIMIT[suite], SEQUENCE_LIMIT) if sending else SEQUENCE_LIMIT
        self.update_at = max(self.limit - KEY_UPDATE_MARGIN, 0)

    def check_room(self, records: int) -> None:
        """Refuse to use sequence numbers past the limit (§5.3, §5.5)."""
        if self.seq + records > self.limit:
            raise TLSError(
                AlertDescription.internal_error,
                f"record sequence number limit reached ({self.seq} records under one key)",
            )

    def next_nonce(self) -> bytes:
        """The per-record nonce (§5.3): the IV XOR the left-padded sequence number."""
        seq = self.seq
        self.seq = seq + 1
        return (self.iv ^ seq).to_bytes(IV_LENGTH, "big")

    def seal_into(self, header: bytes, inner: memoryview, out: memoryview) -> None:
        """Encrypt ``inner`` with ``header`` as AAD into ``out`` (ciphertext || tag)."""
        nonce = self.next_nonce()
        if self.encrypt_into is not None:
            self.encrypt_into(nonce, inner, header, out)
        else:
            out[:] = self.aead.encrypt(nonce, inner, header)


def _unexpected(reason: str) -> TLSError:
    return TLSError(AlertDescription.unexpected_message, reason)


def _check_content(content_type: int, length: int) -> None:
    """Rules shared by plaintext and decrypted records (§5.1, §6)."""
    if length == 0 and content_type != ContentType.application_data:
        raise _unexpected(f"zero-length {ContentType(content_type).name} record")
    if content_type == ContentType.alert and length != _ALERT_LENGTH:
        raise TLSError(
            AlertDescription.decode_error, f"alert record of {length} bytes (must be exactly 2)"
        )


class RecordLayer:
    """TLS 1.3 record protection and framing over a byte stream (RFC 8446 §5).

    Receiving: :meth:`receive_data`, then :meth:`next_record` until ``None``;
    :meth:`receive_eof` when TCP ends.  Sending: :meth:`encode`,
    :meth:`encode_alert`.  Keys: :meth:`set_read_key`, :meth:`set_write_key`,
    :meth:`update_read_key`, :meth:`update_write_key`.
    """

    def __init__(self, *, padding: PaddingPolicy | None = None) -> None:
        #: Default padding policy for protected records (None: no padding).
        self.padding = padding
        #: Set by the caller while a plaintext ChangeCipherSpec is acceptable:
        #: after the first ClientHello, before the peer's Finished (§5).
        self.allow_ccs = False
        #: Application data bytes decrypted so far.
        self.bytes_received_plaintext = 0
        #: Received bytes: the caller's ``bytes`` while records are read from them
        #: in place, else a ``bytearray`` holding the unread tail.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        #: A handshake or alert record :meth:`next_batch` opened after a run of
        #: application data; returned by the next call.
        self._held: tuple[ContentType, bytes] | None = None
        self._read: _Protection | None = None
        self._write: _Protection | None = None
        self._first_write = True
        #: Where inner plaintexts are assembled; allocated by the first protected
        #: write, so a connection that fails before its keys costs no 16 KiB.
        self._scratch: bytearray | None = None
        self._empty_records = 0
        self._eof = False
        self._error: TLSError | None = None
        #: Bytes of records that fail authentication still skipped: 0-RTT data the
        #: server rejected (RFC 8446 §4.2.10); 0 once a record authenticates.
        self.skip_undecryptable = 0

    # -- keys -------------------------------------------------------------------
    def set_read_key(self, suite: CipherSuite, secret: bytes) -> None:
        """Protect received records with ``secret`` from now on (§7.3), seq = 0."""
        self._read = _Protection(suite, secret, sending=False)

    def set_write_key(self, suite: CipherSuite, secret: bytes) -> None:
        """Protect sent records with ``secret`` from now on (§7.3), seq = 0."""
        self._write = _Protection(suite, secret, sending=True)

    def drop_write_key(self) -> None:
        """Send plaintext records again: a client's second ClientHello after it
        started early data (RFC 8446 §4.1.2, §4.2.10)."""
        self._write = None

    def update_read_key(self) -> bytes:
        """Apply a received KeyUpdate (§4.6.3, §7.2); returns the new secret."""
        if self._read is None:
            raise TLSError(AlertDescription.internal_error, "KeyUpdate before a read key")
        secret = next_traffic_secret(self._read.suite, self._read.secret)
        self.set_read_key(self._read.suite, secret)
        return secret

    def update_write_key(self) -> bytes:
        """Switch to the next sending secret after sending KeyUpdate (§7.2); returns it."""
        if self._write is None:
            raise TLSError(AlertDescription.internal_error, "KeyUpdate before a write key")
        secret = next_traffic_secret(self._write.suite, self._write.secret)
        self.set_write_key(self._write.suite, secret)
        return secret

    @property
    def has_read_key(self) -> bool:
        """True once received records are protected."""
        return self._read is not None

    @property
    def has_write_key(self) -> bool:
        """True once sent records are protected."""
        return self._write is not None

    @property
    def read_sequence(self) -> int:
        """Sequence number of the next record to open under the current key."""
        return 0 if self._read is None else self._read.seq

    @property
    def write_sequence(self) -> int:
        """Sequence number of the next record to seal under the current key."""
        return 0 if self._write is None else self._write.seq

    @property
    def needs_key_update(self) -> bool:
        """True when the write key nears its AEAD limit (§5.5): send KeyUpdate now."""
        return self._write is not None and self._write.seq >= self._write.update_at

    # -- receiving ------------------------------------------------------------------
    def receive_data(self, data: Buffer) -> None:
        """Buffer bytes read from TCP.  Drain :meth:`next_record` before feeding more.

        Raises :class:`TLSError` (internal_error) if the caller keeps feeding
        while :data:`MAX_INPUT_BUFFER` undecoded bytes are already held.
        """
        if self._eof:
            raise TLSError(AlertDescription.internal_error, "data received after EOF")
        buf, pos = self._buf, self._pos
        if len(buf) - pos >= MAX_INPUT_BUFFER:
            raise TLSError(
                AlertDescription.internal_error,
                "record input buffer full: drain next_record() before receiving more",
            )
        self._pos = 0
        if pos == len(buf) and type(data) is bytes:
            self._buf = data  # immutable: records are read from it in place, no copy
            return
        if isinstance(buf, bytearray):
            del buf[:pos]
        else:
            buf = self._buf = bytearray(memoryview(buf)[pos:])  # only the unread tail
        buf += data

    def receive_eof(self) -> None:
        """The TCP peer closed its side; see :meth:`eof_state`."""
        self._eof = True

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not yet returned as (part of) a record."""
        return len(self._buf) - self._pos

    @property
    def has_partial_record(self) -> bool:
        """True if received bytes are waiting for the rest of their record."""
        return self.pending_bytes > 0

    @property
    def wants_data(self) -> bool:
        """False while the input buffer is full (the caller must drain records)."""
        return self.pending_bytes < MAX_INPUT_BUFFER and not self._eof

    @property
    def eof_received(self) -> bool:
        """True after :meth:`receive_eof`."""
        return self._eof

    def eof_state(self) -> EofState:
        """Snapshot for the caller's premature-close report (RFC 8446 §6.1)."""
        return EofState(self._eof, self.pending_bytes, self.bytes_received_plaintext)

    def next_record(self) -> tuple[ContentType, bytes] | None:
        """The next complete record's content type and plaintext, or ``None``.

        Handles untrusted input: raises only :class:`TLSError`, with the alert
        to send.  Empty application data and tolerated ChangeCipherSpec records
        are consumed silently and never returned.
        """
        if self._error is not None:
            raise kept(self._error)
        try:
            return self._next_record()
        except TLSError as exc:
            self._error = kept(exc)
            raise

    def next_batch(self) -> tuple[ContentType, bytes | bytearray] | None:
        """As :meth:`next_record`, but every complete protected application_data
        record now buffered comes back as one plaintext (:mod:`.record_batch`: one
        decryption into one buffer per run, no other copy).

        A run ends after the first record of another type; that record is
        returned by the next call, and nothing after it is opened before then,
        so a key change it causes applies from the following record (§5.1).
        Handles untrusted input: raises only :class:`TLSError` (sticky).
        """
        if self._error is not None:
            raise kept(self._error)
        try:
            return self._next_batch()
        except TLSError as exc:
            self._error = kept(exc)
            raise

    def _next_batch(self) -> tuple[ContentType, bytes | bytearray] | None:
        held = self._held
        if held is not None:
            self._held = None
            return held
        read = self._read
        decrypt_into = None if read is None else read.decrypt_into
        if self.skip_undecryptable:
            decrypt_into = None  # skipping rejected 0-RTT records: one at a time (§4.2.10)
        while decrypt_into is not None:
            assert read is not None
            count, total = run_length(self._buf, self._pos)
            if count < 2:
                break  # one record (or none, or a plaintext one): the general path
            data, self._pos, self._empty_records, other = open_run(
                self._buf,
                self._pos,
                count,
                total,
                read,
                decrypt_into,
                MAX_EMPTY_RECORDS,
                self._empty_records,
            )
            if other is not None:
                self._empty_records = 0
                record = (ContentType(other[0]), other[1])
                if not data:
                    return record
                self._held = record
            if data:
                self.bytes_received_plaintext += len(data)
                return ContentType.application_data, data
        return self._next_record()

    def _next_record(self) -> tuple[ContentType, bytes] | None:
        while True:
            buf, pos = self._buf, self._pos
            if pos and pos == len(buf):
                self._buf, self._pos = b"", 0  # drained: hold no memory while idle
                return None
            if len(buf) - pos < RECORD_HEADER:
                return None
            content_type = buf[pos]
            protected = self._read is not None and content_type == ContentType.application_data
            length = (buf[pos + 3] << 8) | buf[pos + 4]
            self._check_header(content_type, length, protected)
            start = pos + RECORD_HEADER
            end = start + length
            if len(buf) < end:
                return None
            if protected:
                record = self._open(bytes(buf[pos:start]), start, end)
            else:
                record = self._plaintext(content_type, start, end)
            self._pos = end
            if record is not None:
                self._empty_records = 0
                return record
            self._empty_records += 1
            if self._empty_records > MAX_EMPTY_RECORDS:
                raise _unexpected(f"more than {MAX_EMPTY_RECORDS} consecutive empty records")

    def _check_header(self, content_type: int, length: int, protected: bool) -> None:
        """Header checks, done before waiting for the body (§5.1, §5.2)."""
        if content_type not in _CONTENT_TYPES:
            raise _unexpected(f"unknown record content type {content_type}")
        if protected:
            if length > MAX_CIPHERTEXT:
                raise TLSError(
                    AlertDescription.record_overflow,
                    f"protected record of {length} bytes exceeds {MAX_CIPHERTEXT}",
                )
            return
        if length > MAX_PLAINTEXT:
            raise TLSError(
                AlertDescription.record_overflow,
                f"plaintext record of {length} bytes exceeds {MAX_PLAINTEXT}",
            )
        if content_type == ContentType.application_data:
            if self.skip_undecryptable >= length:
                return  # early data before our HelloRetryRequest: skipped (§4.2.10)
            raise _unexpected("application data received before keys were established")
        if self._read is None or content_type == ContentType.change_cipher_spec:
            return
        if content_type == ContentType.alert and self.allow_ccs:
            return  # reported as the peer's alert by _plaintext
        raise _unexpected(
            f"unprotected {ContentType(content_type).name} record after keys were established"
        )

    def _plaintext(
        self, content_type: int, start: int, end: int
    ) -> tuple[ContentType, bytes] | None:
        """A TLSPlaintext record (§5.1); ``None`` for a dropped ChangeCipherSpec."""
        if content_type == ContentType.application_data:  # rejected early data
            self.skip_undecryptable -= end - start
            self._empty_records -= 1
            return None
        body = bytes(self._buf[start:end])
        if content_type == ContentType.change_cipher_spec:
            if not self.allow_ccs:
                raise _unexpected("change_cipher_spec outside the handshake")
            if body != _CCS_BODY:
                raise _unexpected("change_cipher_spec with a body other than 0x01")
            return None
        _check_content(content_type, len(body))
        if self._read is not None:
            # A peer that failed before deriving its keys (e.g. rejecting our
            # ServerHello) can only send its alert in the clear.  It ends the
            # handshake either way; report the peer's reason, not ours.
            _, description = decode_alert(body)
            name = getattr(description, "name", str(description))
            raise PeerAlert(
                description, f"peer sent an unprotected {name} alert during the handshake"
            )
        return ContentType(content_type), body

    def _open(self, header: bytes, start: int, end: int) -> tuple[ContentType, bytes] | None:
        """Decrypt a TLSCiphertext (§5.2) and recover its inner type (§5.4)."""
        assert self._read is not None
        if header[1:3] != _TLS12:
            raise TLSError(
                AlertDescription.decode_error,
                f"protected record with legacy_record_version {header[1:3].hex()} (not 0303)",
            )
        self._read.check_room(1)
        nonce = self._read.next_nonce()
        with memoryview(self._buf)[start:end] as body:
            try:
                inner = self._read.aead.decrypt(nonce, body, header)
            except InvalidTag:
                if self.skip_undecryptable >= end - start:  # rejected early data
                    self.skip_undecryptable -= end - start
                    self._read.seq -= 1
                    self._empty_records -= 1  # a skipped record is not an empty one
                    return None
                raise TLSError(
                    AlertDescription.bad_record_mac, "record failed authentication"
                ) from None
        self.skip_undecryptable = 0
        if len(inner) > MAX_INNER_PLAINTEXT:
            raise TLSError(
                AlertDescription.record_overflow,
                f"inner plaintext of {len(inner)} bytes exceeds {MAX_INNER_PLAINTEXT}",
            )
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise _unexpected("protected record with no non-zero content type")
        content_type = stripped[-1]
        if content_type not in _PROTECTED_TYPES:
            raise _unexpected(f"protected record with inner content type {content_type}")
        content = stripped[:-1]
        _check_content(content_type, len(content))
        if content_type == ContentType.application_data:
            if not content:
                return None
            self.bytes_received_plaintext += len(content)
        return ContentType(content_type), content

    # -- sending --------------------------------------------------------------------
    def encode(
        self,
        content_type: ContentType,
        data: Buffer,
        *,
        padding: PaddingPolicy | None = None,
    ) -> bytes:
        """Frame (and protect, once a write key is set) ``data`` as records (§5).

        Fragments at :data:`MAX_PLAINTEXT`; alerts are one record of exactly two
        bytes; empty handshake data produces nothing; empty application data
        produces one empty (possibly padded) record.  ChangeCipherSpec is always
        sent in the clear.  ``padding`` overrides :attr:`padding` for this call.
        Local misuse raises :class:`TLSError` (internal_error).
        """
        out = bytearray()
        self.encode_into(out, content_type, data, padding=padding)
        return bytes(out)

    def encode_into(
        self,
        out: bytearray,
        content_type: ContentType,
        data: Buffer,
        *,
        padding: PaddingPolicy | None = None,
    ) -> None:
        """As :meth:`encode`, appending the records to ``out`` (sealed in place there:
        the hot path's only copies are the inner plaintext's and the encryption)."""
        if type(content_type) is not ContentType:
            content_type = ContentType(content_type)
        view = memoryview(data).cast("B")
        if content_type == ContentType.alert and len(view) != _ALERT_LENGTH:
            raise TLSError(AlertDescription.internal_error, "an alert is exactly two bytes")
        if content_type == ContentType.handshake and not view:
            return
        if content_type == ContentType.change_cipher_spec or self._write is None:
            out += self._encode_plaintext(content_type, view)
            return
        self._encode_protected(content_type, view, padding or self.padding, out)

    def encode_alert(
        self, description: AlertDescription | int, level: AlertLevel | int | None = None
    ) -> bytes:
        """One alert record (§6); closure alerts default to warning, others to fatal."""
        if level is None:
            level = AlertLevel.warning if description in _WARNING_ALERTS else AlertLevel.fatal
        return self.encode(ContentType.alert, bytes((int(level), int(description))))

    def _encode_plaintext(self, content_type: ContentType, view: memoryview) -> bytearray:
        """TLSPlaintext records (§5.1); only the initial ClientHello may say 0x0301."""
        if content_type == ContentType.application_data:
            raise TLSError(
                AlertDescription.internal_error, "refusing to send application data unprotected"
            )
        version = _TLS12
        if self._first_write and content_type == ContentType.handshake and view[0] == _CLIENT_HELLO:
            version = _TLS10
        self._first_write = False
        prefix = bytes((content_type,)) + version
        out = bytearray()
        for start in range(0, len(view), MAX_PLAINTEXT):
            fragment = view[start : start + MAX_PLAINTEXT]
            out += prefix
            out += len(fragment).to_bytes(2, "big")
            out += fragment
        return out

    def _encode_protected(
        self,
        content_type: ContentType,
        view: memoryview,
        padding: PaddingPolicy | None,
        out: bytearray,
    ) -> None:
        """TLSCiphertext records (§5.2) with optional zero padding (§5.4), appended to ``out``.

        Hot path: record sizes are decided first so ``out`` grows once; each
        inner plaintext is assembled in a reused scratch buffer and sealed
        straight into ``out``.
        """
        protection = self._write
        assert protection is not None
        total = len(view)
        lengths = [min(MAX_PLAINTEXT, total - s) for s in range(0, total, MAX_PLAINTEXT)] or [0]
        protection.check_room(len(lengths))
        self._first_write = False
        pads = [0] * len(lengths)
        if padding is not None:
            pads = [min(max(padding(content_type, n), 0), MAX_PLAINTEXT - n) for n in lengths]
        pos = len(out)
        grow = total + sum(pads) + len(lengths) * _PROTECTED_OVERHEAD
        out += bytes(grow)
        scratch = self._scratch
        if scratch is None:
            scratch = self._scratch = bytearray(MAX_INNER_PLAINTEXT)
        with memoryview(out) as out_view, memoryview(scratch) as inner_view:
            start = 0
            for length, pad in zip(lengths, pads, strict=True):
                inner_length = length + 1 + pad
                inner_view[:length] = view[start : start + length]
                scratch[length] = content_type
                inner_view[length + 1 : inner_length] = _ZEROS[:pad]
                end = pos + RECORD_HEADER + inner_length + TAG_LENGTH
                header = _PROTECTED_PREFIX + (inner_length + TAG_LENGTH).to_bytes(2, "big")
                out_view[pos : pos + RECORD_HEADER] = header
                protection.seal_into(
                    header, inner_view[:inner_length], out_view[pos + RECORD_HEADER : end]
                )
                pos = end
                start += length
