"""The connection lifecycle, shared by QUIC and QMux, as one table (RFC 9000 §10, QMux §7).

Theory of operation
-------------------
Rule 1: every change of a connection's lifecycle state goes through
:meth:`Lifecycle.apply`, and every transition is a row of a table in this file.
Rule 2: the table says *what* happens — the next state and whether this is the
moment the connection ended (so the one
:class:`~mstls.core.events.ConnectionTerminatedEvent` is emitted, with which
:class:`TerminationKind`).  *How* it happens (which frame is queued, which
timer is armed) stays with the connection that applied the event.

::

                 HANDSHAKE_DONE
    HANDSHAKE ------------------> ESTABLISHED
        |                              |
        |  LOCAL_CLOSE                 |  LOCAL_CLOSE (CONNECTION_CLOSE sent)
        +---------------+--------------+
        |               v              |
        |           CLOSING ---+       |  PEER_CLOSE (CONNECTION_CLOSE received)
        |               |      |       |
        |    PEER_CLOSE |      |       v
        |               +-> DRAINING <-+
        |                      |
        |      CLOSE_TIMER     |  CLOSE_TIMER (3 PTO, RFC 9000 §10.2;
        |    (from CLOSING) ---+---  QMux: the peer's close_notify/FIN or close_timeout)
        v                      v
    TERMINATED  <--- IDLE_TIMEOUT (QUIC), HANDSHAKE_TIMEOUT, STATELESS_RESET,
                     ABANDON, and on QMux CLOSE_NOTIFY, TCP_FIN, TCP_RESET,
                     IO_ERROR, TLS_ERROR

The two transports share the rows for local and peer close, the handshake, the
handshake timeout, the close timer and abandoning; each adds its own:

* QUIC (RFC 9000 §10.1, §10.3): an idle timeout discards the connection
  silently; a stateless reset ends it at once.
* QMux (draft-ietf-quic-qmux-02 §7.1, §7.2): an idle timeout sends
  close_notify and waits for the peer's (``CLOSING``); the peer's close_notify,
  a TCP FIN, a TCP reset, a socket error and a TLS alert end it at once.  A FIN
  or reset while live is a premature close (error-model rule E8).

A row whose ``terminates`` is set is the connection's end: it happens at most
once per connection, because every row that leaves the live states
(``HANDSHAKE``, ``ESTABLISHED``) sets it and no row returns to them.  A pair
missing from a table is a bug, not a protocol error: :meth:`Lifecycle.apply`
raises :class:`LifecycleError` naming the state and the event.  The tables are
total (every state and every event of the transport), which
``tests/core/test_lifecycle.py`` checks against an oracle written from the RFC
text.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, StrEnum
from types import MappingProxyType

import attrs

__all__ = [
    "LIVE_STATES",
    "QMUX_TRANSITIONS",
    "QUIC_TRANSITIONS",
    "CloseInfo",
    "Lifecycle",
    "LifecycleError",
    "LifecycleEvent",
    "State",
    "TerminationKind",
    "Transition",
]


class State(Enum):
    """Where a connection is in its life (RFC 9000 §10, QMux §7)."""

    #: Identity hash (members are singletons; Enum's own ``__hash__`` is a Python call,
    #: and these are dict and set keys on the per-packet paths).
    __hash__ = object.__hash__

    HANDSHAKE = "handshake"
    ESTABLISHED = "established"
    #: We sent CONNECTION_CLOSE (or QMux close_notify) and wait out the closing period.
    CLOSING = "closing"
    #: The peer closed; nothing more is sent (RFC 9000 §10.2.2).
    DRAINING = "draining"
    #: All state may be freed; no more input is processed.
    TERMINATED = "terminated"


#: States in which the connection sends and receives application data.
LIVE_STATES = frozenset({State.HANDSHAKE, State.ESTABLISHED})


class LifecycleEvent(Enum):
    """What can happen to a connection, whichever part of it noticed."""

    #: Identity hash (members are singletons; Enum's own ``__hash__`` is a Python call,
    #: and these are dict and set keys on the per-packet paths).
    __hash__ = object.__hash__

    #: The TLS handshake completed.
    HANDSHAKE_DONE = "handshake_done"
    #: :meth:`close` or a local protocol error: CONNECTION_CLOSE is queued.
    LOCAL_CLOSE = "local_close"
    #: A CONNECTION_CLOSE frame arrived.
    PEER_CLOSE = "peer_close"
    #: No packet/record in the negotiated idle timeout (RFC 9000 §10.1, QMux §7.1).
    IDLE_TIMEOUT = "idle_timeout"
    #: The handshake (QMux: and the peer's transport parameters) took too long.
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    #: The closing or draining period is over.
    CLOSE_TIMER = "close_timer"
    #: Discard at once, sending nothing more: a client's failed version
    #: negotiation (RFC 9000 §6.2), a QMux close before TLS started.
    ABANDON = "abandon"
    #: QUIC: a stateless reset arrived (RFC 9000 §10.3.1).
    STATELESS_RESET = "stateless_reset"
    #: QMux: the peer's TLS close_notify.
    CLOSE_NOTIFY = "close_notify"
    #: QMux: TCP delivered a FIN.
    TCP_FIN = "tcp_fin"
    #: QMux: the TCP connection was reset (ECONNRESET, EPIPE).
    TCP_RESET = "tcp_reset"
    #: QMux: another fatal socket error.
    IO_ERROR = "io_error"
    #: QMux: a TLS alert was sent or received.
    TLS_ERROR = "tls_error"


class TerminationKind(StrEnum):
    """Why a connection ended, as carried by ``ConnectionTerminatedEvent.kind``."""

    CLOSE = "close"
    IDLE_TIMEOUT = "idle_timeout"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    STATELESS_RESET = "stateless_reset"
    PREMATURE_CLOSE = "premature_close"
    TLS_ERROR = "tls_error"
    TCP_RESET = "tcp_reset"
    IO_ERROR = "io_error"


@attrs.frozen
class CloseInfo:
    """Why a connection ended (RFC 9000 §10, §19.19)."""

    error_code: int
    frame_type: int | None
    reason: str
    by_peer: bool
    is_application: bool


@attrs.frozen
class Transition:
    """One row: the next state, and the termination kind if the connection ends here."""

    next: State
    terminates: TerminationKind | None = None


class LifecycleError(RuntimeError):
    """A (state, event) pair that is not in the table: a bug in mstls."""


_H, _E, _C, _D, _T = (
    State.HANDSHAKE,
    State.ESTABLISHED,
    State.CLOSING,
    State.DRAINING,
    State.TERMINATED,
)
_Ev = LifecycleEvent
_K = TerminationKind
_Table = dict[tuple[State, LifecycleEvent], Transition]


def _stay(events: tuple[LifecycleEvent, ...], states: tuple[State, ...]) -> _Table:
    """Rows in which ``events`` change nothing."""
    return {(s, e): Transition(s) for s in states for e in events}


def _end(
    event: LifecycleEvent, live: TerminationKind, *, ignored_while_closing: bool = False
) -> _Table:
    """``event`` ends a live connection with ``live``.  In CLOSING and DRAINING it
    moves to TERMINATED without a second termination, or changes nothing when
    ``ignored_while_closing`` (a timer that is not armed there); TERMINATED
    ignores it."""
    rows: _Table = {
        (_H, event): Transition(_T, live),
        (_E, event): Transition(_T, live),
        (_T, event): Transition(_T),
    }
    for state in (_C, _D):
        rows[(state, event)] = Transition(state if ignored_while_closing else _T)
    return rows


_COMMON: _Table = {
    # RFC 9000 §4.1.2 / §17.2.2: the handshake completes once.
    (_H, _Ev.HANDSHAKE_DONE): Transition(_E),
    **_stay((_Ev.HANDSHAKE_DONE,), (_E, _C, _D, _T)),
    # RFC 9000 §10.2.1: CONNECTION_CLOSE sent, closing period.
    (_H, _Ev.LOCAL_CLOSE): Transition(_C, _K.CLOSE),
    (_E, _Ev.LOCAL_CLOSE): Transition(_C, _K.CLOSE),
    **_stay((_Ev.LOCAL_CLOSE,), (_C, _D, _T)),
    # RFC 9000 §10.2.2: the peer closed, draining (also from closing, §10.2.2 ¶4).
    (_H, _Ev.PEER_CLOSE): Transition(_D, _K.CLOSE),
    (_E, _Ev.PEER_CLOSE): Transition(_D, _K.CLOSE),
    (_C, _Ev.PEER_CLOSE): Transition(_D),
    **_stay((_Ev.PEER_CLOSE,), (_D, _T)),
    # The handshake deadline covers QMux's transport parameters, after TLS completes.
    **_end(_Ev.HANDSHAKE_TIMEOUT, _K.HANDSHAKE_TIMEOUT, ignored_while_closing=True),
    # RFC 9000 §10.2: state is kept for the closing/draining period, then freed.
    **_stay((_Ev.CLOSE_TIMER,), (_H, _E, _T)),
    (_C, _Ev.CLOSE_TIMER): Transition(_T),
    (_D, _Ev.CLOSE_TIMER): Transition(_T),
    **_end(_Ev.ABANDON, _K.CLOSE),
}

_QUIC: _Table = {
    **_COMMON,
    # RFC 9000 §10.1: the connection is silently closed and its state discarded
    # (in the closing/draining period only the close timer is armed).
    **_end(_Ev.IDLE_TIMEOUT, _K.IDLE_TIMEOUT, ignored_while_closing=True),
    # RFC 9000 §10.3.1: the endpoint enters draining; nothing more is sent.
    **_end(_Ev.STATELESS_RESET, _K.STATELESS_RESET),
}

_QMUX: _Table = {
    **_COMMON,
    # QMux §7.1/§7.2: an idle timeout sends close_notify and waits for the peer's.
    (_H, _Ev.IDLE_TIMEOUT): Transition(_C, _K.IDLE_TIMEOUT),
    (_E, _Ev.IDLE_TIMEOUT): Transition(_C, _K.IDLE_TIMEOUT),
    **_stay((_Ev.IDLE_TIMEOUT,), (_C, _D, _T)),
    # QMux §7.2: the peer's close_notify without CONNECTION_CLOSE is its idle timeout;
    # after CONNECTION_CLOSE it is the end of the closing/draining wait.
    **_end(_Ev.CLOSE_NOTIFY, _K.IDLE_TIMEOUT),
    # Error-model rule E8: a FIN or reset while live is a premature close.
    **_end(_Ev.TCP_FIN, _K.PREMATURE_CLOSE),
    **_end(_Ev.TCP_RESET, _K.TCP_RESET),
    **_end(_Ev.IO_ERROR, _K.IO_ERROR),
    # RFC 8446 §6.2: a fatal alert ends the TLS connection, sent or received.
    **_end(_Ev.TLS_ERROR, _K.TLS_ERROR),
}

#: QUIC v1 over UDP (RFC 9000 §10).
QUIC_TRANSITIONS: Mapping[tuple[State, LifecycleEvent], Transition] = MappingProxyType(_QUIC)
#: QMux over TLS over TCP (draft-ietf-quic-qmux-02 §7).
QMUX_TRANSITIONS: Mapping[tuple[State, LifecycleEvent], Transition] = MappingProxyType(_QMUX)


class Lifecycle:
    """The lifecycle state of one connection, moved only by :meth:`apply`."""

    __slots__ = ("_table", "state")

    def __init__(self, table: Mapping[tuple[State, LifecycleEvent], Transition]) -> None:
        self._table = table
        self.state = State.HANDSHAKE

    @property
    def live(self) -> bool:
        """Whether the connection is in ``HANDSHAKE`` or ``ESTABLISHED``."""
        return self.state in LIVE_STATES

    def apply(self, event: LifecycleEvent) -> TerminationKind | None:
        """Take ``event``; return the termination kind if the connection ends now."""
        try:
            row = self._table[(self.state, event)]
        except KeyError:
            raise LifecycleError(
                f"no lifecycle transition for {event.name} in state {self.state.name}"
            ) from None
        self.state = row.next
        return row.terminates
