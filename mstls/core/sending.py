"""How frame producers hand frames to a packet (or QMux record) being built.

Theory of operation
-------------------
Every component that sends frames (streams, flow control, connection IDs, ACKs,
the handshake) writes them through a :class:`FrameSink`: it asks how many bytes
are left (:attr:`FrameSink.remaining`) and adds encoded frames.  With each frame
it may pass a :data:`SentRecord`, ``(on_acked, on_lost, args)``: the packet
keeps the records, and loss recovery later calls ``on_acked(*args)`` when the
packet is acknowledged or ``on_lost(*args)`` when it is declared lost, so the
producer can forget or resend exactly that piece.  This keeps recovery
ignorant of frame types (RFC 9002 §2: retransmission is of information, not
of packets).

QMux has no acknowledgements: its sink calls ``on_acked`` as soon as the frame
is handed to TLS (draft-ietf-quic-qmux-02 §4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["FrameSink", "ListSink", "SentRecord"]

#: ``(on_acked, on_lost, args)``: what to call when the frame's packet is
#: acknowledged or lost.
SentRecord = tuple[Callable[..., None], Callable[..., None], tuple[Any, ...]]


class FrameSink(Protocol):
    """A packet or record under construction."""

    @property
    def remaining(self) -> int:
        """Bytes that still fit."""
        ...

    def add(
        self,
        frame: bytes | bytearray | memoryview,
        record: SentRecord | None = None,
        *,
        ack_eliciting: bool = True,
    ) -> None:
        """Append one whole encoded frame (must fit in :attr:`remaining`)."""
        ...

    def add_parts(
        self,
        header: bytes,
        payload: bytes | bytearray | memoryview,
        record: SentRecord | None = None,
    ) -> None:
        """Append a frame given as header + payload, avoiding a concatenation."""
        ...


class ListSink:
    """A sink that collects frames in a list; for tests and for QMux records.

    ``acknowledge_immediately`` calls ``on_acked`` at once (QMux semantics).
    """

    def __init__(self, capacity: int, *, acknowledge_immediately: bool = False) -> None:
        self.capacity = capacity
        self.frames: list[bytes] = []
        self.records: list[SentRecord] = []
        self.ack_eliciting = False
        self._used = 0
        self._ack_now = acknowledge_immediately

    @property
    def remaining(self) -> int:
        return self.capacity - self._used

    def add(
        self,
        frame: bytes | bytearray | memoryview,
        record: SentRecord | None = None,
        *,
        ack_eliciting: bool = True,
    ) -> None:
        if len(frame) > self.remaining:
            raise ValueError(f"frame of {len(frame)} bytes does not fit in {self.remaining}")
        self.frames.append(bytes(frame))
        self._used += len(frame)
        self.ack_eliciting |= ack_eliciting
        if record is not None:
            if self._ack_now:
                record[0](*record[2])
            else:
                self.records.append(record)

    def add_parts(
        self,
        header: bytes,
        payload: bytes | bytearray | memoryview,
        record: SentRecord | None = None,
    ) -> None:
        self.add(header + bytes(payload), record)

    def data(self) -> bytes:
        return b"".join(self.frames)

    def acknowledge(self) -> None:
        """Acknowledge everything collected (test helper)."""
        records, self.records = self.records, []
        for on_acked, _, args in records:
            on_acked(*args)

    def lose(self) -> None:
        """Declare everything collected lost (test helper)."""
        records, self.records = self.records, []
        for _, on_lost, args in records:
            on_lost(*args)
