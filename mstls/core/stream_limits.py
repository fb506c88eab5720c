"""Stream-count limits of one connection (RFC 9000 §4.6, §19.11, §19.14).

Theory of operation
-------------------
Streams of each kind (bidirectional, unidirectional) are opened in order of their
index (:func:`~mstls.core.streams.stream_index`), so a handful of counters per kind
say everything about stream-count credit; :class:`StreamCounts` keeps them and the
rules on them, and :class:`~mstls.core.stream_manager.StreamManager` acts on its
answers (queues the frames, raises the errors, creates the streams).

*Streams we open*: ``next_local`` is the index of our next stream and ``peer_max``
the peer's MAX_STREAMS, which only grows.  When we are out of credit we send
STREAMS_BLOCKED once per peer limit (``blocked_reported`` remembers which).

*Streams the peer opens*: ``concurrency`` is what we advertised as the initial
limit and stays the number of peer streams we allow at once.  ``remote_opened``
counts the streams the peer opened (a frame for stream *n* opens every lower one of
its kind, §3.2), ``remote_closed`` those we have forgotten.  Credit comes back as
streams are forgotten: the MAX_STREAMS we want to advertise is
``remote_closed + concurrency`` (capped at 2^60), sent once the peer has used half
of its credit (or when it says it is blocked), and resent if lost until an
acknowledgement shows the peer has ``max_remote``.
"""

from __future__ import annotations

from ..exceptions import ConfigurationError
from ..wire.frames import MAX_STREAMS_LIMIT
from .streams import is_bidirectional, stream_index

__all__ = [
    "BIDI",
    "DEFAULT_MAX_TRACKED_STREAMS",
    "MAX_TRACKED_STREAMS_LIMIT",
    "UNI",
    "StreamCounts",
    "check_tracked_streams",
    "stream_kind",
    "validate_tracked_streams",
]

#: Streams one connection tracks at once by default (the ``max_tracked_streams``
#: setting of :class:`~mstls.quic.config.QuicConfig` and
#: :class:`~mstls.qmux.config.QMuxConfig`): ours, since the peer's MAX_STREAMS may be
#: huge, and, as a configuration check, the peer's concurrency we advertise.
DEFAULT_MAX_TRACKED_STREAMS = 4096
#: The largest ``max_tracked_streams`` accepted (2^20).  A tracked idle stream
#: costs about 0.9 KiB (tracemalloc, a bidirectional stream with both parts), so
#: the maximum is about 1 GiB per connection.
MAX_TRACKED_STREAMS_LIMIT = 1 << 20

#: Index of the per-kind counters.
BIDI, UNI = 0, 1


def stream_kind(stream_id: int) -> int:
    """:data:`BIDI` or :data:`UNI` for ``stream_id`` (RFC 9000 §2.1)."""
    return BIDI if is_bidirectional(stream_id) else UNI


def check_tracked_streams(value: object) -> None:
    """Raise :class:`ConfigurationError` unless ``max_tracked_streams`` is an int in
    1..:data:`MAX_TRACKED_STREAMS_LIMIT`.  (``object``: a compiled ``int`` parameter
    would turn ``True`` into 1 before the check.)"""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(f"max_tracked_streams: expected an int, got {value!r}")
    if not 1 <= value <= MAX_TRACKED_STREAMS_LIMIT:
        raise ConfigurationError(
            f"max_tracked_streams ({value}) must be between 1 and {MAX_TRACKED_STREAMS_LIMIT}"
        )


def validate_tracked_streams(_config: object, _attribute: object, value: object) -> None:
    """An attrs validator for the ``max_tracked_streams`` settings."""
    check_tracked_streams(value)


class StreamCounts:
    """Stream-count credit in both directions, per kind (see the module doc)."""

    __slots__ = (
        "blocked_reported",
        "concurrency",
        "max_remote",
        "max_remote_acked",
        "next_local",
        "peer_max",
        "remote_closed",
        "remote_opened",
    )

    def __init__(self, max_bidi: int, max_uni: int) -> None:
        # Streams we open: next index per kind, and the peer's limit (MAX_STREAMS).
        self.next_local = [0, 0]
        self.peer_max = [0, 0]
        self.blocked_reported = [-1, -1]
        # Streams the peer opens: how many, how many forgotten, what we allow.
        self.concurrency = [max_bidi, max_uni]
        self.remote_opened = [0, 0]
        self.remote_closed = [0, 0]
        self.max_remote = list(self.concurrency)
        self.max_remote_acked = list(self.concurrency)

    # -- streams we open -------------------------------------------------------------------
    def opened(self) -> tuple[int, int]:
        """Streams opened so far, (by us, by the peer), both kinds together (§2.1)."""
        return sum(self.next_local), sum(self.remote_opened)

    def raise_peer_limit(self, kind: int, limit: int) -> bool:
        """Apply the peer's MAX_STREAMS (or initial limit); True if it grew (§4.6)."""
        if limit <= self.peer_max[kind]:
            return False
        self.peer_max[kind] = limit
        return True

    def local_exhausted(self, kind: int) -> bool:
        """Whether every stream the peer allows of this kind is opened."""
        return self.next_local[kind] >= self.peer_max[kind]

    def report_blocked(self, kind: int) -> bool:
        """Whether to queue STREAMS_BLOCKED now: once per peer limit (§4.6)."""
        limit = self.peer_max[kind]
        if self.blocked_reported[kind] == limit:
            return False
        self.blocked_reported[kind] = limit
        return True

    def take_local(self, kind: int) -> int:
        """The index of the stream we open now."""
        index = self.next_local[kind]
        self.next_local[kind] = index + 1
        return index

    def streams_blocked_limit(self, kind: int) -> int | None:
        """The limit for a STREAMS_BLOCKED frame, or None when no longer blocked."""
        limit = self.peer_max[kind]
        return None if self.next_local[kind] < limit else limit

    # -- streams either side opened --------------------------------------------------------
    def was_opened(self, stream_id: int, local: bool) -> bool:
        """Whether ``stream_id`` was opened already (by us when ``local``)."""
        kind = stream_kind(stream_id)
        opened = self.next_local[kind] if local else self.remote_opened[kind]
        return stream_index(stream_id) < opened

    # -- streams the peer opens ------------------------------------------------------------
    def remote_closed_one(self, kind: int) -> None:
        """One peer stream of ``kind`` was forgotten: its credit can come back."""
        self.remote_closed[kind] += 1

    def wants_max_streams(self, kind: int, force: bool = False) -> bool:
        """Whether to queue MAX_STREAMS: some credit came back and the peer used half its
        credit (or, with ``force``, said it is blocked)."""
        target = self.remote_closed[kind] + self.concurrency[kind]
        advertised = self.max_remote[kind]
        return target > advertised and (
            force or advertised - self.remote_opened[kind] <= self.concurrency[kind] // 2
        )

    def max_streams_to_send(self, kind: int) -> int | None:
        """The MAX_STREAMS value to send (recorded as advertised), or None if the peer
        acknowledged it already (§19.11)."""
        target = min(self.remote_closed[kind] + self.concurrency[kind], MAX_STREAMS_LIMIT)
        if target > self.max_remote[kind]:
            self.max_remote[kind] = target
        elif self.max_remote_acked[kind] >= self.max_remote[kind]:
            return None
        return self.max_remote[kind]

    def on_max_streams_acked(self, kind: int, value: int) -> None:
        """The peer received our MAX_STREAMS ``value``."""
        self.max_remote_acked[kind] = max(self.max_remote_acked[kind], value)
