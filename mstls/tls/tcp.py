"""TLS 1.3 over a byte stream (TCP), sans-I/O: the handshake engine plus the record layer.

Theory of operation
-------------------
:class:`TLSConnection` owns a :class:`~mstls.tls.client.ClientHandshake` or
:class:`~mstls.tls.server.ServerHandshake` and a
:class:`~mstls.tls.record.RecordLayer`.  The driver (a thread, a trio task, a
test) moves bytes: it calls :meth:`TLSConnection.receive_data` with what TCP
delivered, :meth:`TLSConnection.receive_eof` when TCP ended, sends what
:meth:`TLSConnection.data_to_send` returns, and pulls events with
:meth:`TLSConnection.next_event`.

Records are opened one at a time and the engine's output is applied in order,
so each key change (ServerHello → handshake keys, Finished → application keys,
KeyUpdate) takes effect exactly at the record boundary where RFC 8446 §5.1
puts it.

Ending (RFC 8446 §6.1): a received close_notify is a clean end
(:class:`CloseNotifyReceived`); :meth:`close` sends ours.  A TCP end without a
close_notify is a truncation and raises :class:`~mstls.exceptions.PrematureClose`
with the number of application bytes that did arrive — never an end of data.
A local failure queues the fatal alert to send, then raises
:class:`~mstls.exceptions.TLSError`; a fatal alert from the peer raises
:class:`~mstls.exceptions.PeerAlert`.  Both are sticky.
"""

from __future__ import annotations

import attrs

from ..codes import AlertDescription
from ..exceptions import Error, PeerAlert, PrematureClose, TLSError, kept
from .client import ClientHandshake
from .config import TLSConfig
from .early_data import MAX_SKIPPED_EARLY_DATA, EarlyData
from .engine import (
    Direction,
    Epoch,
    HandshakeCompleted,
    InstallKey,
    SendHandshake,
    SessionTicketReceived,
    TLSHandshake,
)
from .record import ContentType, RecordLayer, decode_alert
from .server import ServerHandshake
from .states import HandshakeState

__all__ = ["ApplicationData", "CloseNotifyReceived", "Event", "TLSConnection"]


@attrs.frozen
class ApplicationData:
    """Decrypted application bytes (one or more records' worth, in order);
    ``early``: 0-RTT data, before the handshake ended."""

    data: bytes | bytearray
    early: bool = False


@attrs.frozen
class CloseNotifyReceived:
    """The peer closed its sending side cleanly (RFC 8446 §6.1)."""


Event = HandshakeCompleted | ApplicationData | CloseNotifyReceived | SessionTicketReceived


class TLSConnection:
    """One TLS 1.3 connection over a reliable byte stream (RFC 8446)."""

    def __init__(self, config: TLSConfig, *, is_client: bool) -> None:
        self.is_client = is_client
        self.handshake: TLSHandshake = (
            ClientHandshake(config) if is_client else ServerHandshake(config)
        )
        self.records = RecordLayer()
        self._out = bytearray()
        self._events: list[Event] = []
        self._read_epoch = Epoch.INITIAL
        self._can_send_application = False
        self._pending_application = bytearray()
        self._close_notify_received = False
        self._close_notify_sent = False
        self._close_requested = False
        self._error: Error | None = None
        self._early = EarlyData()

    # -- state --------------------------------------------------------------------
    @property
    def handshake_complete(self) -> bool:
        return self.handshake.handshake_complete

    @property
    def alpn_protocol(self) -> str | None:
        return self.handshake.alpn_protocol

    @property
    def early_data_accepted(self) -> bool | None:
        """Whether the server took our 0-RTT data (None: not offered or not known yet);
        rejected early data is sent again after the handshake (:mod:`.early_data`)."""
        accepted = getattr(self.handshake, "early_data_accepted", None)
        return accepted if getattr(self.handshake, "early_data_offered", False) else None

    @property
    def early_room(self) -> int:
        """Client: bytes :meth:`send_early` may still send as 0-RTT data now."""
        return self._early.room(getattr(self.handshake, "max_early_data", 0))

    @property
    def close_notify_received(self) -> bool:
        return self._close_notify_received

    @property
    def bytes_received(self) -> int:
        """Application bytes decrypted so far."""
        return self.records.bytes_received_plaintext

    # -- driving ------------------------------------------------------------------
    def start(self) -> None:
        """Begin the handshake (the client queues its ClientHello)."""
        self.handshake.start()
        self._apply_handshake_output()
        # §5, D.4: a ChangeCipherSpec may arrive once the first ClientHello was sent.
        self.records.allow_ccs = self.is_client

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Process bytes received from TCP (untrusted input)."""
        self._check_usable()
        try:
            self.records.receive_data(data)
            while (record := self.records.next_batch()) is not None:
                if self._close_notify_received:
                    continue  # RFC 8446 §6.1: data after close_notify is ignored
                self._process_record(*record)
        except PeerAlert as exc:
            self._error = kept(exc)
            raise
        except TLSError as exc:
            self._fail(exc)
            raise

    def receive_eof(self) -> None:
        """TCP ended.  Clean only after close_notify; otherwise a truncation."""
        self.records.receive_eof()
        if self._close_notify_received or self._error is not None:
            if self._error is not None:
                raise kept(self._error)
            return
        state = self.records.eof_state()
        stage = "" if self.handshake_complete else " during the handshake"
        self._error = PrematureClose(
            f"TCP connection closed without TLS close_notify{stage}: {state.message}",
            bytes_received=self.bytes_received,
        )
        raise kept(self._error)  # the stored one never gains a traceback

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue application data; held back until the application keys exist."""
        self._check_usable()
        if self._close_notify_sent or self._close_requested:
            raise TLSError(AlertDescription.internal_error, "send after close_notify")
        if not self._can_send_application:
            self._pending_application += data
            return
        self.records.encode_into(self._out, ContentType.application_data, data)
        if self.records.needs_key_update:
            self.key_update(request_update=False)

    def send_early(self, data: bytes | bytearray | memoryview) -> int:
        """Client: send replay-safe ``data`` as 0-RTT data (RFC 8446 §2.3) if the early
        key is in use; returns how many bytes went early (the rest waits, as :meth:`send`)."""
        self._check_usable()
        room = self._early.room(getattr(self.handshake, "max_early_data", 0))
        early = bytes(data[:room])
        if early:
            self._early.sent += early
            self._out += self.records.encode(ContentType.application_data, early)
        if len(early) < len(data):
            self.send(data[len(early) :])
        return len(early)

    def close(self) -> None:
        """Send close_notify (RFC 8446 §6.1); the read side stays open."""
        if self._close_notify_sent or self._error is not None:
            return
        if not self._can_send_application:
            # Queued data (and the close) wait for the application keys: a
            # close_notify now would go out in front of the data, unprotected.
            self._close_requested = True
            return
        self._flush_pending_application()
        self._out += self.records.encode_alert(AlertDescription.close_notify)
        self._close_notify_sent = True

    def key_update(self, request_update: bool = True) -> None:
        """Send a KeyUpdate and switch our write key (RFC 8446 §4.6.3)."""
        self._check_usable()
        self.handshake.send_key_update(request_update)
        self._apply_handshake_output()

    def data_to_send(self) -> bytes | bytearray:
        """Bytes to write to TCP, in order (the output buffer itself, handed over:
        no copy; a new one collects what follows)."""
        out = self._out
        if not out:
            return b""
        self._out = bytearray()
        return out

    def next_event(self) -> Event | None:
        """The next event, or ``None``."""
        return self._events.pop(0) if self._events else None

    # -- internals ----------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._error is not None:
            raise kept(self._error)

    def _fail(self, exc: TLSError) -> None:
        """Queue the fatal alert for ``exc`` and make the connection unusable."""
        self._error = kept(exc)
        if not self._close_notify_sent:
            alert = exc.alert if isinstance(exc.alert, AlertDescription) else None
            self._out += self.records.encode_alert(alert or AlertDescription.internal_error)
            self._close_notify_sent = True

    def _process_record(self, content_type: ContentType, data: bytes | bytearray) -> None:
        if content_type == ContentType.handshake:
            self.handshake.receive(self._read_epoch, data)
            if not self.is_client and not self.handshake_complete:
                self.records.allow_ccs = True  # the first ClientHello was received
                self._skip_rejected_early_data()
            elif self._early.writable and self.handshake.state is HandshakeState.WAIT_SH2:
                self._early.writable = False  # our second ClientHello goes in plaintext
                self.records.drop_write_key()
            self._apply_handshake_output()
        elif content_type == ContentType.application_data:
            if self._read_epoch == Epoch.ZERO_RTT:
                self._early.count_received(len(data), self.handshake.config.max_early_data)
                self._events.append(ApplicationData(data, early=True))
                return
            if self._read_epoch != Epoch.ONE_RTT:
                raise TLSError(
                    AlertDescription.unexpected_message, "application data before the handshake"
                )
            self._events.append(ApplicationData(data))
        elif content_type == ContentType.alert:
            self._process_alert(data)

    def _process_alert(self, data: bytes | bytearray) -> None:
        """RFC 8446 §6: close_notify ends the peer's side; any other alert is fatal."""
        _level, description = decode_alert(data)
        if description == AlertDescription.close_notify:
            self._close_notify_received = True
            self._events.append(CloseNotifyReceived())
        elif description == AlertDescription.user_canceled:
            return  # followed by close_notify (§6.1)
        else:
            try:
                name = AlertDescription(description).name
            except ValueError:
                name = str(description)
            raise PeerAlert(description, f"peer sent fatal alert {name}")

    def _apply_handshake_output(self) -> None:
        for item in self.handshake.pull_output():
            if isinstance(item, SendHandshake):
                self._out += self.records.encode(ContentType.handshake, item.data)
            elif isinstance(item, InstallKey):
                self._install(item)
            else:
                if isinstance(item, HandshakeCompleted):
                    self.records.allow_ccs = False
                self._events.append(item)

    def _skip_rejected_early_data(self) -> None:
        """Server: early data offered but not accepted is skipped (RFC 8446 §4.2.10)."""
        handshake = self.handshake
        if self._early.decided or handshake.state is HandshakeState.START:
            return  # once, after the ClientHello answered by a ServerHello
        self._early.decided = handshake.state is not HandshakeState.WAIT_CH2
        if getattr(handshake, "early_data_offered", False) and not getattr(
            handshake, "early_data_accepted", False
        ):
            limit = max(MAX_SKIPPED_EARLY_DATA, handshake.config.max_early_data)
            self.records.skip_undecryptable = limit

    def _install(self, key: InstallKey) -> None:
        if key.direction is Direction.READ:
            self.records.set_read_key(key.cipher_suite, key.secret)
            self._read_epoch = key.epoch
        else:
            self.records.set_write_key(key.cipher_suite, key.secret)
            self._early.writable = key.epoch == Epoch.ZERO_RTT
            if key.epoch == Epoch.ONE_RTT and self._early.sent:
                if self.early_data_accepted is False:
                    # rejected 0-RTT data goes again, first, under the application keys
                    self._pending_application[:0] = self._early.sent
                self._early.sent.clear()
            if key.epoch == Epoch.ONE_RTT and not self._can_send_application:
                self._can_send_application = True
                self._flush_pending_application()
                if self._close_requested:
                    self.close()

    def _flush_pending_application(self) -> None:
        if self._pending_application and self._can_send_application:
            data = bytes(self._pending_application)
            self._pending_application.clear()
            self._out += self.records.encode(ContentType.application_data, data)
