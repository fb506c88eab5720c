"""DATAGRAM frames on a QUIC connection (RFC 9221): the API and the path's size limit.

:class:`DatagramMixin` gives :class:`~mstls.quic.connection.QuicConnection`
``send_datagram_frame``, ``receive_datagram_frame`` and ``max_datagram_size``; the queues
and the §3/§5 rules are :class:`~mstls.core.datagrams.DatagramQueues`.  The
largest payload is what fits one 1-RTT packet of the current datagram size
(1200 bytes until the handshake is confirmed, then the path MTU, RFC 9000 §14)
after the short header and AEAD tag, within the peer's max_datagram_frame_size,
minus the frame's type and Length bytes (§3: the limit covers the whole frame).
Datagrams travel only in 1-RTT packets here (no 0-RTT).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.datagrams import DATAGRAM_FRAME_TYPES, DatagramQueues
from ..wire.datagram_frames import DatagramFrame
from ..wire.packet import PacketType
from .builder import AEAD_TAG_LENGTH, DatagramBuilder
from .config import INITIAL_MAX_DATAGRAM_SIZE
from .paths import PathsMixin

__all__ = ["DATAGRAM_HANDLERS", "DatagramMixin"]


class DatagramMixin(PathsMixin):
    """The datagram part of :class:`~mstls.quic.connection.QuicConnection`."""

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
        """The largest payload :meth:`send_datagram_frame` accepts now (0: datagrams are
        off here or at the peer, or the peer's parameters have not arrived)."""
        size = self.mtu.current if self.handshake_confirmed else INITIAL_MAX_DATAGRAM_SIZE
        header = DatagramBuilder.header_size(PacketType.ONE_RTT, self.peer_cids.current, b"", b"")
        return self.datagrams.max_payload(size - header - AEAD_TAG_LENGTH)

    def send_datagram_frame(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one datagram for the next 1-RTT packet (RFC 9221 §5); raises
        :class:`~mstls.exceptions.DatagramTooLarge`,
        :class:`~mstls.exceptions.DatagramQueueFull` or
        :class:`~mstls.exceptions.DatagramsUnsupported` instead of dropping it."""
        self.datagrams.send(data, self.max_datagram_size)

    def receive_datagram_frame(self) -> bytes | None:
        """The oldest datagram received and not yet read, or ``None``."""
        return self.datagrams.receive()


def _on_datagram(conn: Any, frame: DatagramFrame, ctx: Any) -> None:
    conn.datagrams.on_frame(frame)


#: Entries for the receive path's frame handler table.
DATAGRAM_HANDLERS: dict[int, Callable[[Any, Any, Any], None]] = dict.fromkeys(
    DATAGRAM_FRAME_TYPES, _on_datagram
)
