"""Connection IDs: those we issue and those the peer issued to us (RFC 9000 §5.1, §19.15, §19.16).

Theory of operation
-------------------
Each endpoint chooses the connection IDs its peer puts in the Destination
Connection ID of packets sent to it, so there are two independent sets:

* :class:`LocalConnectionIds` holds the IDs *we* issued.  Sequence 0 is the
  Source Connection ID of our handshake packets (the server sends its token in
  the stateless_reset_token transport parameter, §18.2); further IDs go out in
  NEW_CONNECTION_ID frames, as many as the peer's active_connection_id_limit
  allows (capped by :data:`MAX_ISSUED_CONNECTION_IDS`).  A lost frame is sent
  again, with the same sequence number (§13.3), until it is acknowledged or the
  peer retires the ID.  When the peer retires one (RETIRE_CONNECTION_ID,
  §19.16) we issue a replacement.  The endpoint learns which IDs now route to
  this connection from :meth:`LocalConnectionIds.pull_changes`.
* :class:`PeerConnectionIds` holds the IDs the *peer* issued; ``current`` is
  the one we send to.  NEW_CONNECTION_ID frames are checked (§19.15), Retire
  Prior To retires older IDs (queueing RETIRE_CONNECTION_ID frames, resent on
  loss) before the new one is counted against our active_connection_id_limit.
  The peer can make us owe it RETIRE frames; more than
  ``RETIREMENT_TRACKING_FACTOR x limit`` outstanding is a
  CONNECTION_ID_LIMIT_ERROR (§5.1.2), so a peer cannot grow that list without
  bound.  Sequence numbers we have retired are remembered as ranges so a
  retransmitted NEW_CONNECTION_ID never brings a retired ID back.

Invariants: an issued ID is routable until the peer retires it (§5.1.1); the
``current`` peer ID is always an active one; only tokens of peer IDs we have
used are candidates for stateless reset detection (§10.3.1).

Frames are written through a :class:`~mstls.core.sending.FrameSink` with a
:data:`~mstls.core.sending.SentRecord`, so loss recovery can report acks and
losses without knowing the frame types.  NEW_CONNECTION_ID and
RETIRE_CONNECTION_ID belong in 0-RTT/1-RTT packets only; the caller asks for
them when it builds such a packet.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

from ..codes import TransportErrorCode
from ..exceptions import DecodeError, ProtocolError, TransportParameterError
from ..wire.control_frames import (
    MAX_CONNECTION_ID_LENGTH,
    MIN_CONNECTION_ID_LENGTH,
    STATELESS_RESET_TOKEN_LENGTH,
    NewConnectionIdFrame,
    RetireConnectionIdFrame,
    encode_new_connection_id,
)
from ..wire.frame_types import FrameType
from ..wire.frames import encode_frame
from ..wire.transport_params import MIN_ACTIVE_CONNECTION_ID_LIMIT
from .rangeset import RangeSet
from .sending import FrameSink
from .stateless_reset import StatelessResetKey

__all__ = [
    "ACTIVE_CONNECTION_ID_LIMIT",
    "DEFAULT_CONNECTION_ID_LENGTH",
    "MAX_CID_GENERATION_ATTEMPTS",
    "MAX_ISSUED_CONNECTION_IDS",
    "MAX_RETIRED_RANGES",
    "RETIREMENT_TRACKING_FACTOR",
    "LocalConnectionIds",
    "PeerConnectionIds",
]

#: Length of the connection IDs we issue; one length for the whole endpoint, so
#: short headers can be demultiplexed and reset tokens recomputed (§5.1, §10.3.2).
DEFAULT_CONNECTION_ID_LENGTH = 8
#: At most this many of our IDs are active at the peer, whatever its limit.
MAX_ISSUED_CONNECTION_IDS = 8
#: The active_connection_id_limit we advertise: peer IDs we are willing to store.
ACTIVE_CONNECTION_ID_LIMIT = 8
#: Outstanding RETIRE_CONNECTION_ID frames tolerated, as a multiple of our limit (§5.1.2).
RETIREMENT_TRACKING_FACTOR = 2
#: Retries of the generator when it returns an ID this connection already uses.
MAX_CID_GENERATION_ATTEMPTS = 16
#: Ranges of retired peer sequence numbers remembered; beyond it the oldest gaps
#: are treated as retired.
MAX_RETIRED_RANGES = 16

_NEW_CID = FrameType.NEW_CONNECTION_ID
_RETIRE_CID = FrameType.RETIRE_CONNECTION_ID


class _IssuedCid:
    """One ID we issued: its frame is ``queued`` to send, or was ``acked``."""

    __slots__ = ("acked", "cid", "queued", "sequence", "token")

    def __init__(self, sequence: int, cid: bytes, token: bytes, *, acked: bool) -> None:
        self.sequence = sequence
        self.cid = cid
        self.token = token
        self.acked = acked
        self.queued = False


class LocalConnectionIds:
    """The connection IDs we issued; the peer sends to them (RFC 9000 §5.1.1).

    ``generator(length)`` makes new IDs (default ``os.urandom``); it must return
    exactly ``cid_length`` bytes (a QUIC-LB style encoder fits here).  A
    zero-length ``initial_cid`` means the peer sends no ID to us: nothing is
    issued and any RETIRE_CONNECTION_ID is a PROTOCOL_VIOLATION (§19.16).
    """

    def __init__(
        self,
        initial_cid: bytes,
        reset_key: StatelessResetKey,
        *,
        cid_length: int = DEFAULT_CONNECTION_ID_LENGTH,
        generator: Callable[[int], bytes] | None = None,
        max_issued: int = MAX_ISSUED_CONNECTION_IDS,
    ) -> None:
        if not MIN_CONNECTION_ID_LENGTH <= cid_length <= MAX_CONNECTION_ID_LENGTH:
            raise ValueError(f"connection ID length {cid_length} is outside 1..20")
        if initial_cid and len(initial_cid) != cid_length:
            raise ValueError(
                f"initial connection ID has {len(initial_cid)} bytes, expected {cid_length}"
            )
        self._key = reset_key
        self._cid_length = cid_length
        self._generate = generator or os.urandom
        self._max_issued = max_issued
        self._zero_length = not initial_cid
        self._issued: dict[int, _IssuedCid] = {}
        self._by_cid: dict[bytes, int] = {}
        self._queue: deque[int] = deque()
        self._next_sequence = 1
        self._retire_prior_to = 0
        self._peer_limit = 0
        self._added: list[bytes] = []
        self._removed: list[bytes] = []
        if initial_cid:
            cid = bytes(initial_cid)
            self._store(_IssuedCid(0, cid, reset_key.token_for(cid), acked=True))

    # -- getters ----------------------------------------------------------------------
    @property
    def cid_length(self) -> int:
        return self._cid_length

    @property
    def initial_reset_token(self) -> bytes | None:
        """Token of sequence 0, for the server's stateless_reset_token (§18.2)."""
        entry = self._issued.get(0)
        return entry.token if entry is not None else None

    @property
    def retire_prior_to(self) -> int:
        return self._retire_prior_to

    @property
    def has_pending_frames(self) -> bool:
        """Whether :meth:`write_frames` has a NEW_CONNECTION_ID to send."""
        return bool(self._queue)

    def active_cids(self) -> list[bytes]:
        """IDs that route to this connection: issued and not retired by the peer."""
        return [entry.cid for entry in self._issued.values()]

    def sequence_of(self, cid: bytes) -> int | None:
        """The sequence number of one of our active IDs, else None."""
        return self._by_cid.get(cid)

    def pull_changes(self) -> tuple[list[bytes], list[bytes]]:
        """``(added, removed)`` IDs since the last call, for the endpoint's routing table.

        The first call reports the initial ID too.
        """
        added, removed = self._added, self._removed
        self._added, self._removed = [], []
        return added, removed

    # -- mutators ---------------------------------------------------------------------
    def set_peer_limit(self, active_connection_id_limit: int) -> None:
        """Record the peer's active_connection_id_limit and issue IDs up to it (§5.1.1)."""
        if active_connection_id_limit < MIN_ACTIVE_CONNECTION_ID_LIMIT:
            raise TransportParameterError(
                f"active_connection_id_limit {active_connection_id_limit} is below 2"
            )
        self._peer_limit = active_connection_id_limit
        self._top_up()

    def issue_preferred_address_cid(self) -> tuple[bytes, bytes]:
        """Sequence 1, carried in the server's preferred_address transport parameter
        instead of a NEW_CONNECTION_ID frame (RFC 9000 §5.1.1); ``(cid, token)``."""
        if self._zero_length or self._next_sequence != 1:
            raise ValueError("the preferred_address connection ID must be sequence 1")
        cid = self._new_cid()
        entry = _IssuedCid(1, cid, self._key.token_for(cid), acked=True)
        self._next_sequence = 2
        self._store(entry)
        return entry.cid, entry.token

    def retire_all_before(self, sequence: int) -> bool:
        """Ask the peer to retire every ID below ``sequence`` (Retire Prior To, §5.1.2).

        Replacements are issued at once.  Returns False, doing nothing, when the
        peer's limit is not known yet, when ``sequence`` does not raise Retire
        Prior To, or while IDs from an earlier request are not all retired yet
        (§5.1.2: SHOULD NOT update Retire Prior To before that).
        """
        if sequence > self._next_sequence:
            raise ValueError(f"cannot retire up to {sequence}: only {self._next_sequence} issued")
        if self._zero_length or not self._peer_limit or sequence <= self._retire_prior_to:
            return False
        if any(seq < self._retire_prior_to for seq in self._issued):
            return False
        self._retire_prior_to = sequence
        if not self._top_up():
            # No new ID was needed: carry the new Retire Prior To in a resent frame.
            self._enqueue(self._issued[max(self._issued)])
        return True

    def on_retire_connection_id(
        self, frame: RetireConnectionIdFrame, packet_dcid: bytes | bytearray | memoryview
    ) -> None:
        """Handle RETIRE_CONNECTION_ID received in a packet sent to ``packet_dcid`` (§19.16).

        Raises ProtocolError (PROTOCOL_VIOLATION) for a sequence never issued,
        for the ID the packet itself was sent to, or when we use a zero-length ID.
        """
        sequence = frame.sequence_number
        if self._zero_length:
            raise ProtocolError(
                "RETIRE_CONNECTION_ID received while using a zero-length connection ID",
                frame_type=_RETIRE_CID,
            )
        if sequence >= self._next_sequence:
            raise ProtocolError(
                f"RETIRE_CONNECTION_ID for sequence {sequence}, never issued",
                frame_type=_RETIRE_CID,
            )
        if self._by_cid.get(bytes(packet_dcid)) == sequence:
            raise ProtocolError(
                f"RETIRE_CONNECTION_ID retires sequence {sequence}, the packet's own "
                "destination connection ID",
                frame_type=_RETIRE_CID,
            )
        entry = self._issued.pop(sequence, None)
        if entry is None:
            return  # already retired: a repeated frame
        del self._by_cid[entry.cid]
        self._removed.append(entry.cid)
        if entry.queued:
            self._queue.remove(sequence)
        self._top_up()

    def write_frames(self, sink: FrameSink) -> None:
        """Add the NEW_CONNECTION_ID frames that fit (RFC 9000 §19.15)."""
        queue = self._queue
        while queue:
            entry = self._issued[queue[0]]
            frame = encode_new_connection_id(
                entry.sequence, min(self._retire_prior_to, entry.sequence), entry.cid, entry.token
            )
            if len(frame) > sink.remaining:
                return
            sink.add(frame, (self._on_acked, self._on_lost, (entry.sequence,)))
            queue.popleft()
            entry.queued = False

    # -- internals --------------------------------------------------------------------
    def _store(self, entry: _IssuedCid) -> None:
        self._issued[entry.sequence] = entry
        self._by_cid[entry.cid] = entry.sequence
        self._added.append(entry.cid)

    def _enqueue(self, entry: _IssuedCid) -> None:
        entry.acked = False
        if not entry.queued:
            entry.queued = True
            self._queue.append(entry.sequence)

    def _top_up(self) -> int:
        """Issue IDs until the peer holds as many as allowed; returns how many."""
        if self._zero_length:
            return 0
        target = min(self._peer_limit, self._max_issued)
        active = sum(1 for seq in self._issued if seq >= self._retire_prior_to)
        issued = 0
        while active + issued < target:
            cid = self._new_cid()
            entry = _IssuedCid(self._next_sequence, cid, self._key.token_for(cid), acked=False)
            self._next_sequence += 1
            self._store(entry)
            self._enqueue(entry)
            issued += 1
        return issued

    def _new_cid(self) -> bytes:
        for _ in range(MAX_CID_GENERATION_ATTEMPTS):
            cid = bytes(self._generate(self._cid_length))
            if len(cid) != self._cid_length:
                raise ValueError(
                    f"connection ID generator returned {len(cid)} bytes, "
                    f"expected {self._cid_length}"
                )
            if cid not in self._by_cid:
                return cid
        raise ProtocolError(
            "connection ID generator keeps returning IDs already in use",
            error_code=TransportErrorCode.INTERNAL_ERROR,
        )

    def _on_acked(self, sequence: int) -> None:
        entry = self._issued.get(sequence)
        if entry is not None:
            entry.acked = True
            if entry.queued:
                entry.queued = False
                self._queue.remove(sequence)

    def _on_lost(self, sequence: int) -> None:
        entry = self._issued.get(sequence)
        if entry is not None and not entry.acked:
            self._enqueue(entry)


class _PeerCid:
    """One ID the peer issued; ``used`` once we have sent to it."""

    __slots__ = ("cid", "sequence", "token", "used")

    def __init__(self, sequence: int, cid: bytes, token: bytes | None, *, used: bool) -> None:
        self.sequence = sequence
        self.cid = cid
        self.token = token
        self.used = used


class PeerConnectionIds:
    """The connection IDs the peer issued; we send to :attr:`current` (RFC 9000 §5.1).

    Starts with the ID learned during the handshake (sequence 0) and, for a
    client, the server's stateless_reset_token.  ``active_connection_id_limit``
    is the value we advertised.
    """

    def __init__(
        self,
        initial_cid: bytes,
        reset_token: bytes | None = None,
        *,
        active_connection_id_limit: int = ACTIVE_CONNECTION_ID_LIMIT,
    ) -> None:
        if active_connection_id_limit < MIN_ACTIVE_CONNECTION_ID_LIMIT:
            raise ValueError("active_connection_id_limit must be at least 2")
        self._limit = active_connection_id_limit
        self._max_pending = RETIREMENT_TRACKING_FACTOR * active_connection_id_limit
        first = _PeerCid(0, bytes(initial_cid), None, used=True)
        self._active: dict[int, _PeerCid] = {0: first}
        self._by_cid: dict[bytes, int] = {first.cid: 0}
        self._current = first
        self._retire_prior_to = 0
        self._retired = RangeSet()
        self._retire_queue: deque[int] = deque()
        self._retire_in_flight: set[int] = set()
        if reset_token is not None:
            self.set_initial_reset_token(reset_token)

    # -- getters ----------------------------------------------------------------------
    @property
    def current(self) -> bytes:
        """The Destination Connection ID to put in the packets we send."""
        return self._current.cid

    @property
    def current_sequence(self) -> int:
        return self._current.sequence

    @property
    def retire_prior_to(self) -> int:
        return self._retire_prior_to

    @property
    def has_pending_frames(self) -> bool:
        """Whether :meth:`write_frames` has a RETIRE_CONNECTION_ID to send."""
        return bool(self._retire_queue)

    def active_cids(self) -> list[bytes]:
        """The peer's IDs we hold, in sequence order."""
        return [self._active[seq].cid for seq in sorted(self._active)]

    def reset_tokens(self) -> list[bytes]:
        """Tokens to detect a Stateless Reset with: active IDs we have used (§10.3.1)."""
        return [e.token for e in self._active.values() if e.used and e.token is not None]

    # -- handshake-time mutators ------------------------------------------------------
    def replace_initial(self, cid: bytes) -> None:
        """Change sequence 0, as a client does when the server's first Initial or a
        Retry arrives (RFC 9000 §7.2)."""
        if set(self._active) != {0} or self._retired:
            raise ValueError("sequence 0 can only change during the handshake")
        del self._by_cid[self._current.cid]
        self._current.cid = bytes(cid)
        self._by_cid[self._current.cid] = 0

    def set_initial_reset_token(self, token: bytes) -> None:
        """The server's stateless_reset_token transport parameter, for sequence 0 (§18.2)."""
        if len(token) != STATELESS_RESET_TOKEN_LENGTH:
            raise ValueError("stateless reset token must be 16 bytes")
        entry = self._active.get(0)
        if entry is not None:
            entry.token = bytes(token)

    def add_preferred_address(self, cid: bytes, token: bytes) -> None:
        """The preferred_address connection ID, sequence 1 (RFC 9000 §5.1.1, §18.2)."""
        if not self._current.cid:
            raise TransportParameterError(
                "preferred_address from a server using a zero-length connection ID"
            )
        if 1 in self._active or 1 in self._retired or cid in self._by_cid:
            raise TransportParameterError("preferred_address repeats a connection ID")
        self._add(_PeerCid(1, bytes(cid), bytes(token), used=False))

    # -- frames -------------------------------------------------------------------------
    def on_new_connection_id(self, frame: NewConnectionIdFrame) -> None:
        """Handle NEW_CONNECTION_ID (RFC 9000 §19.15).

        Raises ProtocolError: PROTOCOL_VIOLATION when we use a zero-length ID or
        a sequence number or ID is reused with different contents;
        CONNECTION_ID_LIMIT_ERROR when more IDs are active than we allow, or
        too many retirements are outstanding (§5.1.2).
        """
        sequence, retire_prior_to = frame.sequence_number, frame.retire_prior_to
        if not self._current.cid:
            raise ProtocolError(
                "NEW_CONNECTION_ID sent to an endpoint using a zero-length connection ID",
                frame_type=_NEW_CID,
            )
        if retire_prior_to > sequence:  # normally rejected by the codec
            raise DecodeError("Retire Prior To exceeds the sequence number", frame_type=_NEW_CID)
        self._check_repeat(frame)
        if retire_prior_to > self._retire_prior_to:
            self._retire_prior_to = retire_prior_to
            for seq in sorted(self._active):
                if seq < retire_prior_to:
                    self._retire(seq)
        if sequence not in self._active and sequence not in self._retired:
            if sequence < self._retire_prior_to:
                self._queue_retirement(sequence)  # late frame for an ID already retired
            else:
                token = frame.stateless_reset_token
                self._add(_PeerCid(sequence, bytes(frame.connection_id), token, used=False))
        if self._current.sequence not in self._active:
            self._use_lowest()
        if len(self._active) > self._limit:
            raise ProtocolError(
                f"{len(self._active)} active connection IDs exceed our limit of {self._limit}",
                error_code=TransportErrorCode.CONNECTION_ID_LIMIT_ERROR,
                frame_type=_NEW_CID,
            )

    def switch_to_next(self) -> bytes | None:
        """Move to an unused ID and retire the old one (§5.1.2, §9.5).

        None, changing nothing, when no unused ID is left or when too many
        retirements are still unacknowledged to retire one more.
        """
        unused = [seq for seq, e in self._active.items() if not e.used]
        if not unused or self._pending_retirements() >= self._max_pending:
            return None
        old = self._current.sequence
        self._current = self._active[min(unused)]
        self._current.used = True
        self._retire(old)
        return self._current.cid

    # -- paths (RFC 9000 §9.5) ---------------------------------------------------------
    def cid_of(self, sequence: int) -> bytes | None:
        """The active ID with ``sequence``, else None (retired meanwhile)."""
        entry = self._active.get(sequence)
        return entry.cid if entry is not None else None

    def reserve_unused(self) -> int | None:
        """Mark the lowest unused ID used, for a new path, and return its sequence;
        None when none is left or too many retirements are pending to change later."""
        unused = [seq for seq, e in self._active.items() if not e.used]
        if not unused or self._pending_retirements() >= self._max_pending:
            return None
        entry = self._active[min(unused)]
        entry.used = True
        return entry.sequence

    def switch_to(self, sequence: int) -> bool:
        """Send to the active ID ``sequence`` from now on and retire the previous one."""
        entry = self._active.get(sequence)
        if entry is None or entry is self._current:
            return False
        old = self._current.sequence
        self._current = entry
        entry.used = True
        self._retire(old)
        return True

    def retire_sequence(self, sequence: int) -> None:
        """Retire an ID reserved for a path that was given up (never the current one)."""
        if sequence in self._active and sequence != self._current.sequence:
            self._retire(sequence)

    def write_frames(self, sink: FrameSink) -> None:
        """Add the RETIRE_CONNECTION_ID frames that fit (RFC 9000 §19.16)."""
        queue = self._retire_queue
        while queue:
            sequence = queue[0]
            frame = encode_frame(RetireConnectionIdFrame(sequence))
            if len(frame) > sink.remaining:
                return
            sink.add(frame, (self._on_acked, self._on_lost, (sequence,)))
            queue.popleft()
            self._retire_in_flight.add(sequence)

    # -- internals --------------------------------------------------------------------
    def _check_repeat(self, frame: NewConnectionIdFrame) -> None:
        """A sequence number or ID reused with different contents (§19.15)."""
        known = self._active.get(frame.sequence_number)
        if known is not None:
            if known.cid != frame.connection_id or known.token != frame.stateless_reset_token:
                raise ProtocolError(
                    f"NEW_CONNECTION_ID repeats sequence {frame.sequence_number} "
                    "with a different connection ID or token",
                    frame_type=_NEW_CID,
                )
        elif frame.connection_id in self._by_cid:
            raise ProtocolError(
                "NEW_CONNECTION_ID repeats a connection ID under another sequence number",
                frame_type=_NEW_CID,
            )

    def _add(self, entry: _PeerCid) -> None:
        self._active[entry.sequence] = entry
        self._by_cid[entry.cid] = entry.sequence

    def _use_lowest(self) -> None:
        if not self._active:
            raise ProtocolError(
                "NEW_CONNECTION_ID left no usable connection ID", frame_type=_NEW_CID
            )
        self._current = self._active[min(self._active)]
        self._current.used = True

    def _retire(self, sequence: int) -> None:
        entry = self._active.pop(sequence)
        del self._by_cid[entry.cid]
        self._queue_retirement(sequence)

    def _queue_retirement(self, sequence: int) -> None:
        self._remember_retired(sequence)
        self._retire_queue.append(sequence)
        if self._pending_retirements() > self._max_pending:
            raise ProtocolError(
                f"more than {self._max_pending} connection IDs waiting to be retired",
                error_code=TransportErrorCode.CONNECTION_ID_LIMIT_ERROR,
                frame_type=_NEW_CID,
            )

    def _pending_retirements(self) -> int:
        return len(self._retire_queue) + len(self._retire_in_flight)

    def _remember_retired(self, sequence: int) -> None:
        retired = self._retired
        retired.add(sequence)
        while len(retired) > MAX_RETIRED_RANGES:
            ranges = iter(retired)
            first_start, _ = next(ranges)
            second_start, _ = next(ranges)
            retired.add(first_start, second_start)  # fill the oldest gap

    def _on_acked(self, sequence: int) -> None:
        self._retire_in_flight.discard(sequence)
        if sequence in self._retire_queue:
            self._retire_queue.remove(sequence)

    def _on_lost(self, sequence: int) -> None:
        if sequence in self._retire_in_flight:
            self._retire_in_flight.discard(sequence)
            self._retire_queue.append(sequence)
