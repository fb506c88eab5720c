"""Stream state machines as data (RFC 9000 §3.1, §3.2).

Theory of operation
-------------------
The sending and the receiving part of a stream each follow a state machine of
RFC 9000 §3.  Both are transcribed as *tables* ``{(state, event): new_state}``
beside the RFC's own diagrams, in the style of h11/h2: :func:`transition` is
the only way a part changes state, and a pair missing from its table is
refused.  An event caused by a peer's frame (:data:`PEER_EVENTS`) is then a
STREAM_STATE_ERROR :class:`~mstls.exceptions.ProtocolError` naming the frame
type; a local one (the application or our own sender) a
:class:`~mstls.exceptions.StreamStateError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from ..codes import TransportErrorCode
from ..exceptions import ProtocolError, StreamStateError
from ..wire.frame_types import FrameType

__all__ = [
    "PEER_EVENTS",
    "RECV_TERMINAL",
    "RECV_TRANSITIONS",
    "SEND_TERMINAL",
    "SEND_TRANSITIONS",
    "RecvEvent",
    "RecvState",
    "SendEvent",
    "SendState",
    "transition",
]


class SendState(Enum):
    """States of a sending part (RFC 9000 §3.1)."""

    #: Identity hash (members are singletons; Enum's own ``__hash__`` is a Python call,
    #: and these are dict and set keys on the per-packet paths).
    __hash__ = object.__hash__

    READY = "Ready"
    SEND = "Send"
    DATA_SENT = "Data Sent"
    DATA_RECVD = "Data Recvd"
    RESET_SENT = "Reset Sent"
    RESET_RECVD = "Reset Recvd"


class SendEvent(Enum):
    """What moves a sending part (RFC 9000 §3.1, Figure 2)."""

    #: Identity hash (members are singletons; Enum's own ``__hash__`` is a Python call,
    #: and these are dict and set keys on the per-packet paths).
    __hash__ = object.__hash__

    SEND_DATA = "Send STREAM / STREAM_DATA_BLOCKED"
    SEND_FIN = "Send STREAM + FIN"
    SEND_RESET = "Send RESET_STREAM"
    RECV_ALL_ACKS = "Recv All ACKs"
    RECV_RESET_ACK = "Recv ACK (of RESET_STREAM)"


#        o
#        | Create Stream (Sending)
#        | Peer Creates Bidirectional Stream
#        v
#    +-------+
#    | Ready | Send RESET_STREAM
#    |       |-----------------------.
#    +-------+                       |
#        |                           |
#        | Send STREAM /             |
#        |      STREAM_DATA_BLOCKED  |
#        v                           |
#    +-------+                       |
#    | Send  | Send RESET_STREAM     |
#    |       |---------------------->|
#    +-------+                       |
#        |                           |
#        | Send STREAM + FIN         |
#        v                           v
#    +-------+                   +-------+
#    | Data  | Send RESET_STREAM | Reset |
#    | Sent  |------------------>| Sent  |
#    +-------+                   +-------+
#        |                           |
#        | Recv All ACKs             | Recv ACK
#        v                           v
#    +-------+                   +-------+
#    | Data  |                   | Reset |
#    | Recvd |                   | Recvd |
#    +-------+                   +-------+
#
# Self-loops: retransmissions (of data, of the FIN, of RESET_STREAM) and a duplicate
# acknowledgement of RESET_STREAM.  The RESET_STREAM transition is taken when the
# reset is decided; the frame itself is queued and resent until acknowledged.
_S, _SE = SendState, SendEvent
SEND_TRANSITIONS: Mapping[tuple[SendState, SendEvent], SendState] = {
    (_S.READY, _SE.SEND_DATA): _S.SEND,
    (_S.READY, _SE.SEND_FIN): _S.DATA_SENT,
    (_S.READY, _SE.SEND_RESET): _S.RESET_SENT,
    (_S.SEND, _SE.SEND_DATA): _S.SEND,
    (_S.SEND, _SE.SEND_FIN): _S.DATA_SENT,
    (_S.SEND, _SE.SEND_RESET): _S.RESET_SENT,
    (_S.DATA_SENT, _SE.SEND_DATA): _S.DATA_SENT,
    (_S.DATA_SENT, _SE.SEND_FIN): _S.DATA_SENT,
    (_S.DATA_SENT, _SE.SEND_RESET): _S.RESET_SENT,
    (_S.DATA_SENT, _SE.RECV_ALL_ACKS): _S.DATA_RECVD,
    (_S.RESET_SENT, _SE.SEND_RESET): _S.RESET_SENT,
    (_S.RESET_SENT, _SE.RECV_RESET_ACK): _S.RESET_RECVD,
    (_S.RESET_RECVD, _SE.RECV_RESET_ACK): _S.RESET_RECVD,
}
SEND_TERMINAL = frozenset({_S.DATA_RECVD, _S.RESET_RECVD})


class RecvState(Enum):
    """States of a receiving part (RFC 9000 §3.2)."""

    #: Identity hash (members are singletons; Enum's own ``__hash__`` is a Python call,
    #: and these are dict and set keys on the per-packet paths).
    __hash__ = object.__hash__

    RECV = "Recv"
    SIZE_KNOWN = "Size Known"
    DATA_RECVD = "Data Recvd"
    DATA_READ = "Data Read"
    RESET_RECVD = "Reset Recvd"
    RESET_READ = "Reset Read"


class RecvEvent(Enum):
    """What moves a receiving part (RFC 9000 §3.2, Figure 3)."""

    #: Identity hash (members are singletons; Enum's own ``__hash__`` is a Python call,
    #: and these are dict and set keys on the per-packet paths).
    __hash__ = object.__hash__

    RECV_DATA = "Recv STREAM"
    RECV_FIN = "Recv STREAM + FIN"
    RECV_ALL_DATA = "Recv All Data"
    RECV_RESET = "Recv RESET_STREAM"
    APP_READ_ALL = "App Read All Data"
    APP_READ_RESET = "App Read Reset"


#        o
#        | Recv STREAM / STREAM_DATA_BLOCKED / RESET_STREAM
#        | Create Bidirectional Stream (Sending)
#        | Recv MAX_STREAM_DATA / STOP_SENDING (Bidirectional)
#        | Create Higher-Numbered Stream
#        v
#    +-------+
#    | Recv  | Recv RESET_STREAM
#    |       |-----------------------.
#    +-------+                       |
#        |                           |
#        | Recv STREAM + FIN         |
#        v                           |
#    +-------+                       |
#    | Size  | Recv RESET_STREAM     |
#    | Known |---------------------->|
#    +-------+                       |
#        |                           |
#        | Recv All Data             |
#        v                           v
#    +-------+ Recv RESET_STREAM +-------+
#    | Data  |--- (optional) --->| Reset |
#    | Recvd |  Recv All Data    | Recvd |
#    +-------+<-- (optional) ----+-------+
#        |                           |
#        | App Read All Data         | App Read Reset
#        v                           v
#    +-------+                   +-------+
#    | Data  |                   | Reset |
#    | Read  |                   | Read  |
#    +-------+                   +-------+
#
# "Recv STREAM" without FIN never changes the state, so the per-frame hot path does
# not look it up; the sweep in the tests checks that every state allows it.
# Peer frames after the size is known are duplicates or late retransmissions:
# self-loops (their final size is still checked, §4.5).  Of the two optional
# transitions we take neither: once all data is received it is delivered.
_R, _RE = RecvState, RecvEvent
RECV_TRANSITIONS: Mapping[tuple[RecvState, RecvEvent], RecvState] = {
    (_R.RECV, _RE.RECV_DATA): _R.RECV,
    (_R.RECV, _RE.RECV_FIN): _R.SIZE_KNOWN,
    (_R.RECV, _RE.RECV_RESET): _R.RESET_RECVD,
    (_R.SIZE_KNOWN, _RE.RECV_DATA): _R.SIZE_KNOWN,
    (_R.SIZE_KNOWN, _RE.RECV_FIN): _R.SIZE_KNOWN,
    (_R.SIZE_KNOWN, _RE.RECV_ALL_DATA): _R.DATA_RECVD,
    (_R.SIZE_KNOWN, _RE.RECV_RESET): _R.RESET_RECVD,
    (_R.DATA_RECVD, _RE.RECV_DATA): _R.DATA_RECVD,
    (_R.DATA_RECVD, _RE.RECV_FIN): _R.DATA_RECVD,
    (_R.DATA_RECVD, _RE.RECV_RESET): _R.DATA_RECVD,
    (_R.DATA_RECVD, _RE.APP_READ_ALL): _R.DATA_READ,
    (_R.RESET_RECVD, _RE.RECV_DATA): _R.RESET_RECVD,
    (_R.RESET_RECVD, _RE.RECV_FIN): _R.RESET_RECVD,
    (_R.RESET_RECVD, _RE.RECV_RESET): _R.RESET_RECVD,
    (_R.RESET_RECVD, _RE.APP_READ_RESET): _R.RESET_READ,
    (_R.DATA_READ, _RE.RECV_DATA): _R.DATA_READ,
    (_R.DATA_READ, _RE.RECV_FIN): _R.DATA_READ,
    (_R.DATA_READ, _RE.RECV_RESET): _R.DATA_READ,
    (_R.RESET_READ, _RE.RECV_DATA): _R.RESET_READ,
    (_R.RESET_READ, _RE.RECV_FIN): _R.RESET_READ,
    (_R.RESET_READ, _RE.RECV_RESET): _R.RESET_READ,
}
RECV_TERMINAL = frozenset({_R.DATA_READ, _R.RESET_READ})

#: Events caused by a peer's frame (a refusal is a connection error).
PEER_EVENTS: frozenset[Enum] = frozenset(
    {_RE.RECV_DATA, _RE.RECV_FIN, _RE.RECV_RESET, _SE.RECV_ALL_ACKS, _SE.RECV_RESET_ACK}
)
#: Frame type named in a refusal of a peer event.
_EVENT_FRAME_TYPES: Mapping[Enum, int] = {
    _RE.RECV_DATA: FrameType.STREAM,
    _RE.RECV_FIN: FrameType.STREAM | 1,
    _RE.RECV_RESET: FrameType.RESET_STREAM,
    _SE.RECV_ALL_ACKS: FrameType.ACK,
    _SE.RECV_RESET_ACK: FrameType.ACK,
}

StateT = TypeVar("StateT", SendState, RecvState)
EventT = TypeVar("EventT", SendEvent, RecvEvent)


def transition(
    table: Mapping[tuple[StateT, EventT], StateT],
    state: StateT,
    event: EventT,
    stream_id: int = -1,
    frame_type: int | None = None,
) -> StateT:
    """Look ``(state, event)`` up in ``table``; a missing pair is refused.

    A peer event is a STREAM_STATE_ERROR (RFC 9000 §3) naming ``frame_type``;
    a local one a :class:`StreamStateError`.
    """
    new_state = table.get((state, event))
    if new_state is not None:
        return new_state
    reason = f"stream {stream_id}: {event.value!r} not allowed in state {state.value!r}"
    if event in PEER_EVENTS:
        raise ProtocolError(
            reason,
            error_code=TransportErrorCode.STREAM_STATE_ERROR,
            frame_type=_EVENT_FRAME_TYPES[event] if frame_type is None else frame_type,
        )
    raise StreamStateError(reason, stream_id=stream_id)
