"""A connection's timers as one table: which run in which lifecycle state, in what order.

Theory of operation
-------------------
A sans-I/O connection has several deadlines (RFC 9000 §10.1 idle, §10.2 closing,
RFC 9002 §6.2 loss detection, RFC 9001 §4.9.2 key discard, QMux §7.1 keep-alive,
the handshake timeout of error-model rule T1).  Instead of two parallel
if-chains in ``get_timer`` and ``handle_timer``, a connection declares a
:class:`TimerTable`: for each lifecycle :class:`~mstls.core.lifecycle.State`, the
timers armed in it, in the order they are handled.  Each :class:`TimerRow` names
its :class:`Timer`, reads its deadline from the connection and says what to do
when it passes.

* :meth:`TimerTable.next_deadline` is the earliest deadline among the timers
  armed in the current state (``get_timer``).
* :meth:`TimerTable.fire` handles, in table order, every armed timer whose
  deadline has passed, and stops as soon as one of them changed the lifecycle
  state (the rest belong to a state the connection has left).

A row without ``fire`` only wakes the driver (pacing and delayed ACKs: the
driver asks for datagrams after every call anyway).  The deadlines stay where
they are computed (recovery, pacing): the table reads them, it does not copy
them, so nothing on the per-packet path changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Generic, Protocol, TypeVar

import attrs

from .lifecycle import Lifecycle, State

__all__ = ["Timer", "TimerRow", "TimerTable"]


class Timer(Enum):
    """Every timer of a QUIC or QMux connection (one line each)."""

    #: The closing or draining period is over (RFC 9000 §10.2; QMux close_timeout).
    CLOSE = "close"
    #: No packet or record within the idle timeout (RFC 9000 §10.1, QMux §7.1).
    IDLE = "idle"
    #: The handshake did not complete in time (brief T1; QMux: and the peer's parameters).
    HANDSHAKE = "handshake"
    #: Discard the previous 1-RTT read keys after a key update (RFC 9001 §6.5).
    KEY_DISCARD = "key_discard"
    #: Loss detection or probe timeout (RFC 9002 §6.1.2, §6.2).
    LOSS_DETECTION = "loss_detection"
    #: Pacing or a delayed ACK wants a datagram sent (RFC 9002 §7.7, RFC 9000 §13.2.1).
    SEND = "send"
    #: Resend a PATH_CHALLENGE or give up validating a path (RFC 9000 §8.2.4).
    PATH_VALIDATION = "path_validation"
    #: Send a keep-alive (QX_PING on QMux, §4.3).
    KEEPALIVE = "keepalive"


class _HasLifecycle(Protocol):
    lifecycle: Lifecycle


C = TypeVar("C", bound=_HasLifecycle)


@attrs.frozen
class TimerRow(Generic[C]):
    """One timer of a connection type: where its deadline is, and what firing does."""

    timer: Timer
    deadline: Callable[[C], float | None]
    fire: Callable[[C, float], None] | None = None


class TimerTable(Generic[C]):
    """The timers armed in each lifecycle state, in handling order."""

    __slots__ = ("_deadlines", "_rows")

    def __init__(self, rows: Mapping[State, tuple[TimerRow[C], ...]]) -> None:
        missing = set(State) - set(rows)
        if missing:
            raise ValueError(f"timer table without rows for {sorted(s.name for s in missing)}")
        self._rows = dict(rows)
        # The deadline readers alone, for next_deadline (asked after every call).
        self._deadlines = {state: tuple(row.deadline for row in r) for state, r in rows.items()}

    def timers(self, state: State) -> tuple[Timer, ...]:
        """The timers armed in ``state``, in handling order."""
        return tuple(row.timer for row in self._rows[state])

    def next_deadline(self, conn: C) -> float | None:
        """The earliest deadline of the timers armed in the connection's state."""
        best: float | None = None
        for deadline_of in self._deadlines[conn.lifecycle.state]:
            deadline = deadline_of(conn)
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    def fire(self, conn: C, now: float) -> None:
        """Handle every passed deadline, in order, until the state changes."""
        state = conn.lifecycle.state
        for row in self._rows[state]:
            if row.fire is None:
                continue
            deadline = row.deadline(conn)
            if deadline is None or now < deadline:
                continue
            row.fire(conn, now)
            if conn.lifecycle.state is not state:
                return
