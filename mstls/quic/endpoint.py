"""A QUIC server endpoint, sans-I/O: many connections behind one UDP socket.

Theory of operation
-------------------
Datagrams are routed by Destination Connection ID (RFC 9000 §5.2): every ID a
connection issued (:meth:`LocalConnectionIds.pull_changes`) and, during the
handshake, the client's original DCID point at it.  A datagram for no known
connection is answered statelessly:

* a long header of another version with a datagram of at least 1200 bytes →
  Version Negotiation (§6.1);
* an Initial in a datagram of at least 1200 bytes (§14.1) → a new connection,
  or first a Retry when address validation is required (§8.1.2), through the
  admission steps below; the Retry token is sealed with AES-GCM under an
  endpoint key and carries the original DCID, the Retry's SCID, the client
  address and an expiry;
* a short header → a Stateless Reset (§10.3), rate-limited, always shorter
  than the datagram that triggered it;
* anything else is dropped.

Admission of a new Initial (:mod:`mstls.core.admission`) runs in this order:

1. beyond ``max_connections`` the Initial is dropped;
2. a token is opened: an invalid one drops the Initial (§8.1.3), a valid one
   proves the address;
3. without a valid token, a Retry is sent when ``retry`` is set, or when the
   handshakes in progress (:attr:`ServerEndpoint.handshakes_in_progress`)
   reach ``retry_threshold`` ("Retry under load"); no state is kept, and the
   Initial is not even authenticated: a Retry needs only the header's
   connection IDs and version, costs an AES-GCM seal and tag (cheaper than the
   Initial key derivation of the next step) and is smaller than the 1200-byte
   datagram that caused it, so garbage gets no amplification.  This keeps the
   listener fast during a flood (issue 11: a real client's Initial queued
   behind thousands of flood datagrams waits their processing time, and one
   dropped by a full socket costs it a PTO of about 1 s);
4. the first packet must authenticate under the Initial keys of its DCID
   (RFC 9001 §5.2); one that does not (random bytes, corruption) is dropped
   and counted in :attr:`ServerEndpoint.dropped_initials` before any rate
   charge or connection state: garbage costs one key derivation and one
   AEAD check, never a :class:`QuicConnection`.  Initial keys are public, so
   this filters noise, not a deliberate attacker: that is what Retry and the
   next step are for;
5. only now, right before state would be created, the source's handshake
   rate (``rate_limiter``) is charged; over the rate the Initial is dropped
   and counted in :attr:`ServerEndpoint.refused_initials` and
   :attr:`ServerEndpoint.refusals`.  An Initial that authenticates but closes
   at once (a client aborting its attempt sends a CONNECTION_CLOSE in an
   Initial) is refunded, so it does not use up the token of the client's next
   attempt;
6. a new handshake beyond ``max_pending_handshakes`` sheds the oldest one still
   in progress, silently (:mod:`.pending_handshakes`): it is counted in
   :attr:`ServerEndpoint.shed_handshakes` and
   :attr:`ServerEndpoint.refused_initials`, and its connection fails with a
   :class:`~mstls.exceptions.HandshakeRefused` (cause ``"shed"``), which the
   driver records as a failed handshake.

Charging last means a Retry never costs a source anything, and while Retry
is in effect only proven addresses are charged, so spoofed Initials cannot
empty a victim's bucket (§8.1, §21.1.1.1); without Retry, an attacker who can
build valid Initials with a victim's source address can.  A refused Initial
is dropped rather than answered with a stateless CONNECTION_CLOSE
(CONNECTION_REFUSED): the source is by definition sending too fast, an answer
would cost packet protection per refused datagram exactly when the endpoint
wants to be cheapest, and it would reflect traffic toward an address that may
be spoofed.  A genuine client retransmits its Initial with backoff (RFC 9002
§6.2) and gets in once its bucket has refilled.

The endpoint never sleeps and never touches a socket: the driver passes
datagrams in, sends what :meth:`ServerEndpoint.datagrams_to_send` returns, and
calls :meth:`ServerEndpoint.handle_timer` at :meth:`ServerEndpoint.get_timer`.

Work per event is independent of the number of connections (issue 11: 1,000
idle connections used to cost a core, because every event asked every
connection for its timer and its datagrams):

* each connection's deadline is kept in a :class:`~mstls.core.deadlines.DeadlineHeap`,
  so :meth:`ServerEndpoint.get_timer` is the heap's top and
  :meth:`ServerEndpoint.handle_timer` serves only the connections that are due,
  each once per call (brief T5);
* connections that may have something to send are *dirty*: input, a timer or
  :meth:`ServerEndpoint.touch` makes them so, and
  :meth:`ServerEndpoint.datagrams_to_send` asks only them.  A connection that
  returned fewer than its per-call bound
  (:data:`~mstls.quic.sending.MAX_DATAGRAMS_PER_CALL`) has nothing more to send
  until something happens to it again, so it is no longer dirty: one keep-alive
  PING costs one ``datagrams_to_send`` call;
* a dirty connection's deadline is recorded once, after its output was
  collected (sending changes it: an ACK sent, a packet in flight), not after
  each call into it; until then it is *stale*, and :meth:`ServerEndpoint.get_timer`
  or :meth:`ServerEndpoint.handle_timer` records the stale ones first.  A
  driver that collects output before it looks at the timer (the trio and
  blocking drivers do) thus asks each connection for its deadline once per
  turn, and a connection with an ACK due at once is never woken by a timer for
  it;
* the connections called since the driver last looked are handed to it by
  :meth:`ServerEndpoint.pop_changed`, so it pumps the events of those only;
* each connection's Connection IDs are remembered, so forgetting a terminated
  connection removes its routes without scanning the route tables.

The application must call :meth:`ServerEndpoint.touch` after it calls a
connection directly (a write, a close): that is what re-arms its timer and
collects its output.
"""

from __future__ import annotations

import os
import struct
from collections import deque

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..core.admission import (
    DEFAULT_BURST,
    RATE_LIMITED,
    SourceRateLimiter,
    check_admission,
    needs_retry,
    reconfigured,
)
from ..core.deadlines import DeadlineHeap
from ..core.ecn_runs import CodepointRuns, add_run
from ..core.lifecycle import State
from ..core.stateless_reset import StatelessResetKey, StatelessResetLimiter, build_stateless_reset
from ..exceptions import DecodeError, Error
from ..wire.packet import (
    PacketType,
    encode_retry,
    encode_version_negotiation,
    parse_header,
    peek_destination_cid,
)
from .config import QuicConfig
from .connection import QuicConnection
from .crypto import initial_receive_protection
from .pending_handshakes import (
    DEFAULT_MAX_PENDING_HANDSHAKES,
    PendingHandshakes,
    check_pending_limit,
    shed,
)
from .retry import retry_integrity_tag
from .sending import MAX_DATAGRAMS_PER_CALL
from .state import Address

__all__ = ["RETRY_TOKEN_LIFETIME", "RetryTokens", "ServerEndpoint"]

#: How long a Retry token is accepted (RFC 9000 §8.1.3: short-lived).
RETRY_TOKEN_LIFETIME = 10.0
#: Smallest datagram that may open a connection or get a VN (RFC 9000 §14.1).
MIN_INITIAL_DATAGRAM = 1200
#: Connections a single endpoint keeps at most (further Initials are dropped).
DEFAULT_MAX_CONNECTIONS = 10000
#: Refusals kept for the driver to read (the count in ``refused_initials`` is exact).
MAX_RECORDED_REFUSALS = 256
_TOKEN_NONCE = 12


class RetryTokens:
    """Seal and open Retry tokens (RFC 9000 §8.1.2); the key may be shared by workers."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key or AESGCM.generate_key(bit_length=128))

    def seal(self, odcid: bytes, retry_scid: bytes, address: Address, now: float) -> bytes:
        plain = (
            struct.pack("!dB", now + RETRY_TOKEN_LIFETIME, len(odcid))
            + odcid
            + bytes((len(retry_scid),))
            + retry_scid
        )
        nonce = os.urandom(_TOKEN_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, _address_bytes(address))

    def open(self, token: bytes, address: Address, now: float) -> tuple[bytes, bytes] | None:
        """``(odcid, retry_scid)`` for a valid, unexpired token from ``address``."""
        if len(token) < _TOKEN_NONCE + 16 + 10:
            return None
        try:
            plain = self._aead.decrypt(
                token[:_TOKEN_NONCE], token[_TOKEN_NONCE:], _address_bytes(address)
            )
            expiry, odcid_len = struct.unpack_from("!dB", plain)
            odcid = plain[9 : 9 + odcid_len]
            scid_len = plain[9 + odcid_len]
            scid = plain[10 + odcid_len : 10 + odcid_len + scid_len]
        except (InvalidTag, struct.error, IndexError):
            return None
        if expiry < now:
            return None
        return odcid, scid


def _address_bytes(address: Address) -> bytes:
    return repr(tuple(address[:2])).encode()


class ServerEndpoint:
    """Demultiplexes datagrams to server connections and answers the rest statelessly."""

    def __init__(
        self,
        config: QuicConfig,
        *,
        retry: bool = False,
        retry_tokens: RetryTokens | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry_threshold: int | None = None,
        rate_limiter: SourceRateLimiter | None = None,
        max_pending_handshakes: int = DEFAULT_MAX_PENDING_HANDSHAKES,
    ) -> None:
        if config.stateless_reset_key is None:
            config.stateless_reset_key = StatelessResetKey.generate()
        self.config = config
        #: Always answer a token-less Initial with a Retry (§8.1.2).
        self.retry = retry
        #: Handshakes in progress from which token-less Initials get a Retry.
        self.retry_threshold = retry_threshold
        #: The per-source handshake rate (None: unlimited).
        self.rate_limiter = rate_limiter
        self.retry_tokens = retry_tokens or RetryTokens()
        self.max_connections = max_connections
        self._routes: dict[bytes, QuicConnection] = {}
        self._initial_routes: dict[bytes, QuicConnection] = {}
        #: id(conn) -> conn, oldest first: every connection not yet forgotten.
        self._connections: dict[int, QuicConnection] = {}
        #: id(conn) -> the Connection IDs routed to it (both tables).
        self._cids: dict[int, set[bytes]] = {}
        #: The deadline of every connection (see the module documentation).
        self._timers: DeadlineHeap[QuicConnection] = DeadlineHeap()
        #: Connections that may have datagrams to send.
        self._dirty: dict[int, QuicConnection] = {}
        #: Dirty connections whose deadline in ``_timers`` is out of date.
        self._stale: dict[int, QuicConnection] = {}
        #: Connections called since the last :meth:`pop_changed`.
        self._changed: dict[int, QuicConnection] = {}
        #: The connection being called; still set if that call raised (for the driver
        #: to fail that connection alone, E2).
        self.current: QuicConnection | None = None
        #: The driver's socket marks the codepoint connections ask for (ECN, RFC 9000
        #: §13.4; :mod:`.ecn_marking`); the codepoint of the datagram being routed.
        self.ecn_marking = False
        self.receive_codepoint = 0
        #: With :attr:`ecn_marking`: the codepoint of each datagram the last
        #: :meth:`datagrams_to_send` returned, as runs (:mod:`mstls.core.ecn_runs`).
        self.send_codepoints: CodepointRuns = []
        self.accepted: deque[QuicConnection] = deque()
        #: Connections just forgotten; their last events (termination) are still
        #: to be read by whoever drains this.
        self.terminated: deque[QuicConnection] = deque()
        self._stateless: list[tuple[bytes, Address]] = []
        self._reset_limiter = StatelessResetLimiter()
        #: Initial datagrams that authenticated nothing and created no connection.
        self.dropped_initials = 0
        #: Initials refused by admission control (over the source's handshake rate).
        self.refused_initials = 0
        #: The latest refusals as (address, cause), for the driver to record.
        self.refusals: deque[tuple[Address, str]] = deque(maxlen=MAX_RECORDED_REFUSALS)
        #: Retry packets sent.
        self.retries_sent = 0
        #: Handshakes in progress, oldest first, under ``max_pending_handshakes``.
        self._handshaking = PendingHandshakes(max_pending_handshakes)
        #: Pending handshakes shed for newer ones (each also in ``refused_initials``).
        self.shed_handshakes = 0
        #: Initials still to be admitted under load before the set is pruned again.
        self._prune_credit = 0

    @property
    def max_pending_handshakes(self) -> int:
        """Handshakes kept in progress at most; a new one beyond sheds the oldest."""
        return self._handshaking.limit

    @max_pending_handshakes.setter
    def max_pending_handshakes(self, limit: int) -> None:
        check_pending_limit(limit)
        self._handshaking.limit = limit

    def configure_admission(
        self,
        *,
        retry: bool,
        retry_threshold: int | None = None,
        rate: float | None = None,
        burst: int = DEFAULT_BURST,
    ) -> None:
        """New admission settings (a reload); the per-source buckets are kept."""
        check_admission(rate, burst, retry_threshold)
        self.retry = retry
        self.retry_threshold = retry_threshold
        self.rate_limiter = reconfigured(self.rate_limiter, rate, burst)

    # -- input ---------------------------------------------------------------------------
    def connection_for(self, data: bytes) -> QuicConnection | None:
        """The connection a datagram is routed to by its Destination CID, if any."""
        try:
            dcid = bytes(peek_destination_cid(data, self.config.cid_length))
        except DecodeError:
            return None
        return self._routes.get(dcid) or self._initial_routes.get(dcid)

    def receive_datagram(self, data: bytes, addr: Address, now: float, ecn: int = 0) -> None:
        """Route one datagram (untrusted input) that arrived with ECN codepoint ``ecn``."""
        self.receive_codepoint = ecn
        try:
            dcid = bytes(peek_destination_cid(data, self.config.cid_length))
        except DecodeError:
            return
        conn = self._routes.get(dcid) or self._initial_routes.get(dcid)
        if conn is not None:
            self.current = conn
            try:
                conn.receive_datagram(data, addr, now, ecn)
            finally:
                self._update_routes(conn)
                self._after_call(conn)
            self.current = None
            return
        self._stateless_answer(data, dcid, addr, now)

    def _stateless_answer(self, data: bytes, dcid: bytes, addr: Address, now: float) -> None:
        try:
            header = parse_header(data, 0, self.config.cid_length)
        except DecodeError:
            return
        if not header.is_long:
            self._send_stateless_reset(dcid, len(data), addr, now)
            return
        if len(data) < MIN_INITIAL_DATAGRAM:
            return
        if header.packet_type is PacketType.VERSION_NEGOTIATION:
            return  # RFC 9368 §2.2: servers ignore Version Negotiation packets
        if (
            header.packet_type is PacketType.UNSUPPORTED_VERSION
            or header.version not in self.config.versions  # RFC 9000 §6.1
        ):
            self._stateless.append(
                (
                    encode_version_negotiation(bytes(header.scid), dcid, self.config.versions),
                    addr,
                )
            )
            return
        if (
            header.packet_type is PacketType.INITIAL
            and len(self._connections) < self.max_connections
        ):
            self._on_new_initial(data, header, addr, now)

    def _on_new_initial(self, data: bytes, header: object, addr: Address, now: float) -> None:
        dcid = bytes(header.dcid)  # type: ignore[attr-defined]
        scid = bytes(header.scid)  # type: ignore[attr-defined]
        token = bytes(header.token or b"")  # type: ignore[attr-defined]
        if len(dcid) < 8:
            return  # RFC 9000 §7.2: the client's first DCID has at least 8 bytes
        original, retry_scid, validated = dcid, None, False
        if token:
            opened = self.retry_tokens.open(token, addr, now)
            if opened is None or opened[1] != dcid:
                return  # §8.1.3: an invalid token (could answer INVALID_TOKEN); drop
            original, retry_scid = opened
            validated = True
        counted = not validated and not self.retry and self.retry_threshold is not None
        if needs_retry(
            validated=validated,
            retry=self.retry,
            handshakes=self._count_handshakes(full=False) if counted else 0,
            retry_threshold=self.retry_threshold,
        ):
            # Before authentication: a Retry needs only the header, and costs less
            # than deriving the Initial keys would (step 3 of the module docs).
            self._send_retry(dcid, scid, addr, now, header.version)  # type: ignore[attr-defined]
            return
        if not _authenticates(data, header):
            self.dropped_initials += 1  # forged or corrupted: no charge, no state
            return
        limiter = self.rate_limiter
        if limiter is not None and not limiter.admit(addr, now):
            self.refused_initials += 1
            self.refusals.append((addr, RATE_LIMITED))
            return
        conn = QuicConnection(
            self.config,
            is_client=False,
            now=now,
            peer_address=addr,
            initial_dcid=dcid,
            original_dcid=original,
            peer_cid=scid,
            retry_source_cid=retry_scid,
            address_validated=validated,
            version=header.version,  # type: ignore[attr-defined]
        )
        if self.ecn_marking:
            conn.enable_ecn_marking()
        conn.receive_datagram(data, addr, now, self.receive_codepoint)
        if conn.spaces[0].acks.largest_received < 0:
            # Not one packet authenticated: forged or corrupted.  Keeping state for
            # it would let garbage fill memory until handshake timeouts (brief:
            # security rules), so the datagram is simply dropped.
            self.dropped_initials += 1
            return
        if conn.state is State.HANDSHAKE:
            self._shed_oldest(now)
            self._handshaking.add(conn)
        elif limiter is not None:
            # It authenticated but started no handshake (an aborting client's
            # CONNECTION_CLOSE): no handshake work to charge the source for.
            limiter.refund(addr)
        self._connections[id(conn)] = conn
        self._cids[id(conn)] = {dcid}
        self.accepted.append(conn)
        self._initial_routes[dcid] = conn
        self._update_routes(conn)
        self._after_call(conn)

    def _shed_oldest(self, now: float) -> None:
        """Make room for one more pending handshake (step 6 of the module docs)."""
        for victim in self._handshaking.to_shed():
            shed(victim, now)
            self.shed_handshakes += 1
            self.refused_initials += 1
            self._after_call(victim)  # terminated: forgotten, its failure pumped

    @property
    def handshakes_in_progress(self) -> int:
        """Connections whose handshake has neither completed nor failed."""
        return self._count_handshakes(full=True)

    def _count_handshakes(self, *, full: bool) -> int:
        """Handshakes in progress.

        Connections leave the set as their datagrams or timers move them on;
        one closed by the application in between is pruned here, and (unless
        ``full``) only when the set is large enough to reach the threshold, so
        a new Initial costs O(1) while the endpoint is not under load.
        """
        handshaking = self._handshaking
        threshold = self.retry_threshold
        if full:
            handshaking.prune()
        elif threshold is not None and len(handshaking) >= threshold:
            # An O(N) prune only after as many Initials as the set had entries:
            # O(1) amortised per Initial during a flood (issue 11).
            if self._prune_credit <= 0:
                handshaking.prune()
                self._prune_credit = len(handshaking)
            else:
                self._prune_credit -= 1
        return len(handshaking)

    def _send_retry(
        self, dcid: bytes, scid: bytes, addr: Address, now: float, version: int
    ) -> None:
        """A Retry in the client's original version (RFC 9369 §4.1)."""
        self.retries_sent += 1
        retry_scid = self.config.new_cid()  # routable too: the client's next DCID
        token = self.retry_tokens.seal(dcid, retry_scid, addr, now)
        packet = encode_retry(scid, retry_scid, token, version=version)
        self._stateless.append((packet + retry_integrity_tag(dcid, packet, version), addr))

    def _send_stateless_reset(self, dcid: bytes, length: int, addr: Address, now: float) -> None:
        key = self.config.stateless_reset_key
        if key is None or len(dcid) != self.config.cid_length:
            return
        if not self._reset_limiter.allow(now):
            return
        reset = build_stateless_reset(key.token_for(dcid), length)
        if reset is not None:
            self._stateless.append((reset, addr))

    def _update_routes(self, conn: QuicConnection) -> None:
        added, removed = conn.local_cids.pull_changes()
        cids = self._cids.get(id(conn))
        if cids is None:
            return  # already forgotten
        for cid in added:
            self._routes[cid] = conn
            cids.add(cid)
        for cid in removed:
            if self._routes.get(cid) is conn:
                del self._routes[cid]
            if self._initial_routes.get(cid) is not conn:
                cids.discard(cid)

    # -- connections ---------------------------------------------------------------------
    @property
    def connections(self) -> list[QuicConnection]:
        """Every connection not yet forgotten, oldest first (a copy: O(N), for inspection)."""
        return list(self._connections.values())

    def touch(self, conn: QuicConnection) -> None:
        """The application called ``conn`` directly (a write, a close): re-arm its
        timer, collect its output at the next :meth:`datagrams_to_send`."""
        if id(conn) in self._connections:
            self._after_call(conn)

    def touch_all(self) -> None:
        """:meth:`touch` every connection (O(N): for a close of all of them)."""
        for conn in list(self._connections.values()):
            self._after_call(conn)

    def pop_changed(self) -> list[QuicConnection]:
        """The connections called since the last call (their events may be waiting),
        forgotten ones included; each once, in the order they were first called."""
        changed = list(self._changed.values())
        self._changed.clear()
        return changed

    def _after_call(self, conn: QuicConnection) -> None:
        """``conn`` was called: it may have output, events and a new deadline."""
        key = id(conn)
        self._changed[key] = conn
        if conn.state is not State.HANDSHAKE:
            self._handshaking.discard(conn)
        if conn.is_terminated:
            self._forget(conn)
            return
        self._dirty[key] = conn
        self._stale[key] = conn

    def _record_stale(self) -> None:
        """Record the deadline of the connections called since their output was
        last collected (O(those connections))."""
        stale = self._stale
        if stale:
            timers = self._timers
            for conn in stale.values():
                timers.set(conn, conn.get_timer())
            stale.clear()

    def _forget(self, conn: QuicConnection) -> None:
        """Drop a terminated connection: its routes, timer and output (O(its CIDs))."""
        key = id(conn)
        if self._connections.pop(key, None) is None:
            return
        for cid in self._cids.pop(key, ()):
            for table in (self._routes, self._initial_routes):
                if table.get(cid) is conn:
                    del table[cid]
        self._timers.discard(conn)
        self._dirty.pop(key, None)
        self._stale.pop(key, None)
        self._handshaking.discard(conn)
        self.terminated.append(conn)

    def datagram_too_big(self, data: bytes, addr: Address, now: float) -> None:
        """The socket refused ``data`` (sent to ``addr``) as too big (EMSGSIZE): tell
        the connection that sent it (RFC 8899 §4.6).  Found by address and the
        peer's connection ID at the start of ``data``; O(connections), but only on
        this rare event (a shrunk interface MTU, a probe above it)."""
        for conn in self._connections.values():
            dcid = conn.peer_cids.current
            if conn.peer_address == addr and _carries_dcid(data, dcid):
                conn.on_datagram_too_big(len(data), now)
                self._after_call(conn)
                return

    # -- output and timers ---------------------------------------------------------------
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Stateless answers, then the output of the dirty connections only; a
        connection stays dirty only if it returned its per-call bound (it may have
        more), and its deadline is recorded now.

        With :attr:`ecn_marking`, :attr:`send_codepoints` then gives each datagram's
        codepoint: each connection's :attr:`~.ecn_marking.EcnMixin.send_codepoint`,
        Not-ECT for the stateless answers (RFC 9000 §13.4.2.2)."""
        out = self._stateless
        self._stateless = []
        runs: CodepointRuns | None = None
        if self.ecn_marking:
            runs = self.send_codepoints = [(len(out), 0)] if out else []
        dirty, stale, timers, changed = self._dirty, self._stale, self._timers, self._changed
        if not dirty:
            return out
        for key, conn in list(dirty.items()):
            self.current = conn
            datagrams = conn.datagrams_with_paths(now)
            if datagrams:
                # Each to its path: the peer may have moved (RFC 9000 §9, paths.py).
                out.extend((datagram, path.address) for datagram, path in datagrams)
                if runs is not None:
                    add_run(runs, len(out), conn.send_codepoint)
            if len(datagrams) < MAX_DATAGRAMS_PER_CALL:
                del dirty[key]  # it said all it had to say (sending.py's bound)
            changed[key] = conn
            if conn.is_terminated:
                self._forget(conn)
            else:
                stale.pop(key, None)
                timers.set(conn, conn.get_timer())
        self.current = None
        return out

    def get_timer(self) -> float | None:
        """The earliest deadline of any connection (the heap's top, once the stale
        ones are recorded)."""
        self._record_stale()
        return self._timers.peek()

    def handle_timer(self, now: float) -> None:
        """Serve the connections whose deadline passed, each once (brief T5).

        If one raises, the connections not yet served stay due (they are served
        at the next call) and :attr:`current` names the one that raised."""
        self._record_stale()
        due = self._timers.pop_due(now)
        for index, conn in enumerate(due):
            self.current = conn
            try:
                conn.handle_timer(now)
            except BaseException:
                for rest in due[index + 1 :]:
                    self._timers.set(rest, now)
                raise
            finally:
                self._after_call(conn)
        self.current = None

    def due_connections(self, now: float) -> list[QuicConnection]:
        """Connections whose recorded deadline has passed (O(N): an error path)."""
        self._record_stale()
        deadline_of = self._timers.deadline_of
        return [
            c for c in self._connections.values() if (d := deadline_of(c)) is not None and d <= now
        ]


def _carries_dcid(data: bytes, dcid: bytes) -> bool:
    """Whether ``data`` (a datagram we built) starts with a packet to ``dcid``:
    RFC 9000 §17.2 long header (DCID after version and length byte) or §17.3 short."""
    if not data:
        return False
    if data[0] & 0x80:
        return data[5:6] == bytes((len(dcid),)) and data[6 : 6 + len(dcid)] == dcid
    return data[1 : 1 + len(dcid)] == dcid


def _authenticates(data: bytes, header: object) -> bool:
    """Whether the datagram's first packet opens under the Initial keys derived
    from its DCID (RFC 9001 §5.2).  Handles untrusted input; never raises."""
    dcid = bytes(header.dcid)  # type: ignore[attr-defined]
    version = header.version  # type: ignore[attr-defined]
    receive = initial_receive_protection(dcid, is_client=False, version=version)
    packet = memoryview(data)[: header.packet_end]  # type: ignore[attr-defined]
    try:
        receive.decrypt_packet(packet, header.pn_offset, -1)  # type: ignore[attr-defined]
    except Error:  # DecryptionFailed, or reserved bits set (a protocol error)
        return False
    return True
