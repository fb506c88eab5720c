"""DATAGRAM frames on a QMux connection (RFC 9221, draft-ietf-quic-qmux §8.1).

The encoding and the negotiation (max_datagram_frame_size in
QX_TRANSPORT_PARAMETERS) are QUIC's; what differs is delivery: a DATAGRAM frame
handed to TLS arrives, in order (TCP is reliable), so nothing is lost once sent.
The largest frame is bounded by the peer's max_datagram_frame_size *and* by the
record we build (``min(send_record_size, peer max_record_size)``, §8.1: the
record is QMux's container, as the packet is QUIC's).  The queues and the §3/§5
rules are :class:`~mstls.core.datagrams.DatagramQueues`; received datagrams the
application does not read in time are dropped oldest first, as §8.1 allows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.datagrams import DATAGRAM_FRAME_TYPES, DatagramQueues
from ..core.events import Event
from ..wire.datagram_frames import DatagramFrame, largest_datagram_payload
from ..wire.transport_params import TransportParameters
from .config import QMuxConfig

__all__ = ["DATAGRAM_HANDLERS", "DatagramMixin"]


class DatagramMixin:
    """The datagram part of :class:`~mstls.qmux.connection.QMuxConnection`."""

    config: QMuxConfig
    events: deque[Event]
    datagrams: DatagramQueues
    peer_params: TransportParameters | None
    handshake_complete: bool
    _send_capacity: int

    def _init_datagrams(self) -> None:
        config = self.config
        self.datagrams = DatagramQueues(
            self.events,
            max_frame_size=config.max_datagram_frame_size,
            send_limit=config.datagram_send_queue,
            receive_limit=config.datagram_receive_queue,
        )

    @property
    def max_datagram_size(self) -> int:
        """The largest payload :meth:`send_datagram_frame` accepts now (0: datagrams
        are off here or at the peer, or its parameters have not arrived)."""
        return self.datagrams.max_payload(self._send_capacity)

    def send_datagram_frame(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one datagram for the next record; raises
        :class:`~mstls.exceptions.DatagramTooLarge`,
        :class:`~mstls.exceptions.DatagramQueueFull` or
        :class:`~mstls.exceptions.DatagramsUnsupported` instead of dropping it.

        Between the TLS handshake and the peer's QX_TRANSPORT_PARAMETERS (§4.2) a
        datagram is queued against our own record size; one the peer's
        parameters then rule out is dropped and counted."""
        if self.peer_params is None and self.handshake_complete:
            room = largest_datagram_payload(self._send_capacity)
            self.datagrams.send(data, room, early=True)
            return
        self.datagrams.send(data, self.max_datagram_size)

    def receive_datagram_frame(self) -> bytes | None:
        """The oldest datagram received and not yet read, or ``None``."""
        return self.datagrams.receive()


def _on_datagram(conn: Any, frame: DatagramFrame, now: float) -> None:
    conn.datagrams.on_frame(frame)


#: Entries for the record receive path's frame handler table.
DATAGRAM_HANDLERS: dict[int, Callable[[Any, Any, float], None]] = dict.fromkeys(
    DATAGRAM_FRAME_TYPES, _on_datagram
)
