"""Network paths: NAT rebinding, path validation and migration (RFC 9000 §8.2, §9).

Theory of operation
-------------------
A *path* is a peer address plus the driver's tag for the local socket it used
(``local``: ``None`` is the connection's first socket).  :attr:`PathsMixin.path`
is the one everything is sent on; ``peer_address`` follows it.  Other paths are
*candidates*: one a probing packet arrived on (answered there, §9.3.1), one a
client probes before moving to it (:meth:`PathsMixin.probe_path`, §9.1), or
the old path kept as a fallback while a new one is validated (§9.3.2).

* A server that receives a non-probing 1-RTT packet with the largest packet
  number so far from another address moves to it at once (§9.3): it switches
  to a fresh peer connection ID where the peer gave one (§9.5), resets the
  congestion controller and RTT unless only the port changed (§9.4), and
  validates the new path with PATH_CHALLENGE; until a PATH_RESPONSE it sends at
  most three times what it received on that path (§8.1, §9.3).  When
  validation fails it goes back to the old path (§9.3.2).  With
  ``disable_active_migration`` sent (:attr:`QuicConfig.disable_active_migration`)
  such packets are dropped instead (§9, §18.2).
* A probing packet (only PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID and
  PADDING, §9.1) from another path moves nothing; a PATH_CHALLENGE is always
  answered on the path it arrived on (§8.2.2).
* A client's :meth:`PathsMixin.probe_path` takes an unused peer connection ID,
  sends PATH_CHALLENGE on the new path and moves there once the PATH_RESPONSE
  arrives; the server's preferred_address is followed the same way (§9.6).

Datagrams carrying PATH_CHALLENGE or PATH_RESPONSE are padded to 1200 bytes
where the amplification limit allows (§8.2.1, §8.2.2).  A challenge is sent
again after a PTO, doubling; validation fails after three times the larger of
the PTO and the initial PTO (§8.2.4).  The driver sends what
:meth:`PathsMixin.datagrams_with_paths` returns, each datagram to its path.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from typing import Any

from ..core.congestion import NewReno
from ..core.recovery import PacketNumberSpace
from ..core.rtt import K_INITIAL_RTT, RttEstimator
from ..exceptions import DecodeError, MigrationRefused
from ..wire.buffer import Reader
from ..wire.control_frames import PATH_DATA_LENGTH, PathChallengeFrame, PathResponseFrame
from ..wire.frame_types import FrameType
from ..wire.frames import decode_frame, encode_frame
from ..wire.packet import PacketType
from ..wire.transport_params import PreferredAddress, TransportParameters
from .builder import DatagramBuilder
from .config import INITIAL_MAX_DATAGRAM_SIZE
from .mtu import PathMtu
from .state import Address, ConnectionState

__all__ = [
    "MAX_CANDIDATE_PATHS",
    "MAX_CHALLENGES",
    "MAX_PATH_RESPONSES",
    "PROBING_FRAME_TYPES",
    "MigrationRefused",
    "Path",
    "PathsMixin",
    "only_probing_frames",
]

#: Frames that make a packet a probing packet (RFC 9000 §9.1).
PROBING_FRAME_TYPES = frozenset(
    {
        FrameType.PADDING,
        FrameType.PATH_CHALLENGE,
        FrameType.PATH_RESPONSE,
        FrameType.NEW_CONNECTION_ID,
    }
)
#: Paths other than the current one tracked at once; the oldest is forgotten.
MAX_CANDIDATE_PATHS = 4
#: PATH_CHALLENGE frames sent per validation (each after a doubled PTO).
MAX_CHALLENGES = 4
#: PATH_RESPONSE frames owed on a path other than the current one, newest kept.
MAX_PATH_RESPONSES = 4
#: Validation fails after this many times max(PTO, initial PTO) (RFC 9000 §8.2.4).
VALIDATION_TIMEOUT_PTOS = 3
#: RFC 9000 §8.1: at most three times the bytes received on an unvalidated path.
PATH_AMPLIFICATION_FACTOR = 3
#: The PTO of a path without RTT sample (RFC 9002 §6.2.1 with kInitialRtt).
INITIAL_PTO = 3 * K_INITIAL_RTT
#: PATH_CHALLENGE or PATH_RESPONSE frame size.
_PATH_FRAME_SIZE = 1 + PATH_DATA_LENGTH
#: Bytes of a 1-RTT packet around its payload: header, 8-byte DCID, packet number, tag.
_ONE_RTT_OVERHEAD = 1 + 8 + 4 + 16
#: Smallest datagram worth building on an amplification-limited path.
_MIN_PROBE_DATAGRAM = 64


class Path:
    """One network path as this endpoint sees it (RFC 9000 §9)."""

    __slots__ = (
        "address",
        "bytes_received",
        "bytes_sent",
        "challenge_due",
        "challenges",
        "cid_sequence",
        "deadline",
        "local",
        "move_when_validated",
        "next_challenge",
        "responses",
        "validated",
    )

    def __init__(self, address: Address, local: Any = None, *, validated: bool) -> None:
        self.address = address
        self.local = local
        self.validated = validated
        self.bytes_received = 0
        self.bytes_sent = 0
        #: PATH_CHALLENGE data sent and not answered (any of them validates).
        self.challenges: list[bytes] = []
        self.challenge_due = False
        #: When to send the next challenge, and when validation fails.
        self.next_challenge: float | None = None
        self.deadline: float | None = None
        #: PATH_RESPONSE data owed on this path (when it is not the current one).
        self.responses: list[bytes] = []
        #: The peer connection ID sequence reserved for this path (§9.5).
        self.cid_sequence: int | None = None
        #: A client's probed path: move to it when validated (§9.1, §9.6).
        self.move_when_validated = False

    def matches(self, address: Address, local: Any) -> bool:
        return local == self.local and _host_port(address) == _host_port(self.address)

    @property
    def validating(self) -> bool:
        return self.deadline is not None

    def allowance(self, *, limited: bool) -> int | None:
        """Bytes this endpoint may still send on the path (None: no limit, §8.1)."""
        if self.validated or not limited:
            return None
        return PATH_AMPLIFICATION_FACTOR * self.bytes_received - self.bytes_sent

    def __repr__(self) -> str:
        state = "validated" if self.validated else "unvalidated"
        return f"Path({self.address!r}, local={self.local!r}, {state})"


def _host_port(address: Address) -> tuple[Any, ...]:
    return tuple(address[:2]) if isinstance(address, tuple) else (address,)


def only_host_changed_port(old: Address, new: Address) -> bool:
    """Whether only the port differs (RFC 9000 §9.4: keep the congestion state)."""
    return _host_port(old)[:1] == _host_port(new)[:1]


def only_probing_frames(payload: bytes, decoders: Any) -> bool:
    """Whether a packet's frames are all probing frames (RFC 9000 §9.1); a payload
    that does not decode counts as non-probing (the frame loop rejects it)."""
    reader = Reader(payload)
    try:
        while not reader.eof():
            if decode_frame(reader, decoders).frame_type not in PROBING_FRAME_TYPES:
                return False
    except (DecodeError, ValueError):
        return False
    return True


class PathsMixin(ConnectionState):
    """Path state and migration of :class:`~mstls.quic.connection.QuicConnection`."""

    path: Path
    candidate_paths: list[Path]
    #: The path used before a move, while the new one is validated (§9.3.2).
    fallback_path: Path | None
    #: The path the datagram being processed arrived on, and whether the packet
    #: being processed may move the connection there.
    arrival_path: Path
    _arrival_moves: bool
    #: Paths moved to and validations that failed (statistics, tests).
    migrations: int
    failed_validations: int
    frame_decoders: Any
    pending_path_responses: list[bytes]

    def _on_datagram_sent(
        self, data: bytes, packets: list[Any], now: float, path: Any = None
    ) -> None:
        """Implemented by :class:`~mstls.quic.sending.SendingMixin`."""
        raise NotImplementedError

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Implemented by :class:`~mstls.quic.sending.SendingMixin`."""
        raise NotImplementedError

    def _init_paths(self, peer_address: Address) -> None:
        self.path = Path(peer_address, None, validated=True)
        self.arrival_path = self.path
        self._arrival_moves = False
        self.candidate_paths = []
        self.fallback_path = None
        self.migrations = 0
        self.failed_validations = 0

    # -- receiving hooks (mstls.quic.receiving) ----------------------------------------
    def _arrival(self, addr: Address, local: Any) -> Path:
        """The path a datagram from ``addr`` on ``local`` arrived on (maybe new)."""
        if addr is None or self.path.matches(addr, local):
            return self.path
        for path in self.candidate_paths:
            if path.matches(addr, local):
                return path
        if self.is_client and local == self.path.local:
            return self.path  # the server's address is not ours to follow (§9.6)
        fallback = self.fallback_path
        if fallback is not None and fallback.matches(addr, local):
            return fallback
        return Path(addr, local, validated=False)

    def _admit_on_path(self, header: Any, payload: bytes, pn: int, largest: int) -> bool:
        """Whether a decrypted packet on :attr:`arrival_path` is processed; notes if it
        moves the connection (RFC 9000 §9.3).  Only a server follows its peer."""
        self._arrival_moves = False
        arrival = self.arrival_path
        if arrival is self.path:
            return True
        if header.packet_type is not PacketType.ONE_RTT or not self.handshake_confirmed:
            return True  # no migration before the handshake is confirmed (§9)
        if only_probing_frames(payload, self.frame_decoders):
            self._remember(arrival)
            return True
        if self.is_client:
            return True  # a server does not move (§9.6 is the client's choice)
        if self.config.disable_active_migration:
            return False  # §9: dropped, without a Stateless Reset
        self._arrival_moves = pn > largest
        return True

    def _after_packet_on_path(self, now: float) -> None:
        """A non-probing packet with the largest packet number moves us (§9.3)."""
        if self._arrival_moves:
            self._arrival_moves = False
            self._move_to(self.arrival_path, now)

    def _after_datagram_on_path(self, size: int, authenticated: bool) -> None:
        if authenticated:
            self.arrival_path.bytes_received += size
        self.arrival_path = self.path

    def _on_path_challenge_frame(self, data: bytes) -> bool:
        """Owe a PATH_RESPONSE on the arrival path; True if that is the current path."""
        arrival = self.arrival_path
        if arrival is self.path:
            return True
        self._remember(arrival)
        arrival.responses.append(data)
        if len(arrival.responses) > MAX_PATH_RESPONSES:
            del arrival.responses[0]
        return False

    def _on_path_response(self, frame: PathResponseFrame, ctx: Any) -> None:
        """RFC 9000 §8.2.3: a response to any challenge we sent validates its path."""
        data = bytes(frame.data)
        for path in (self.path, *self.candidate_paths, self.fallback_path):
            if path is not None and data in path.challenges:
                self._validated(path, ctx.now)
                return

    # -- moving --------------------------------------------------------------------------
    def _remember(self, path: Path) -> None:
        if path is self.path or path is self.fallback_path or path in self.candidate_paths:
            return
        self.candidate_paths.append(path)
        if len(self.candidate_paths) > MAX_CANDIDATE_PATHS:
            self._forget_path(self.candidate_paths[0])

    def _forget_path(self, path: Path) -> None:
        if path in self.candidate_paths:
            self.candidate_paths.remove(path)
        if path.cid_sequence is not None and path.cid_sequence != self.peer_cids.current_sequence:
            self.peer_cids.retire_sequence(path.cid_sequence)
        path.cid_sequence = None

    def _move_to(self, path: Path, now: float) -> None:
        """Send everything on ``path`` from now on (§9.3, §9.4, §9.5)."""
        old = self.path
        if path is old:
            return
        if path in self.candidate_paths:
            self.candidate_paths.remove(path)
        if path is self.fallback_path:
            self.fallback_path = None
        if old.validated:
            self.fallback_path = old
        if path.cid_sequence is None:
            reserved = self.peer_cids.reserve_unused()
            path.cid_sequence = reserved
        if path.cid_sequence is not None:
            self.peer_cids.switch_to(path.cid_sequence)
        self.path = path
        self.peer_address = path.address
        self.migrations += 1
        if self.is_client or not only_host_changed_port(old.address, path.address):
            self._reset_path_state()
        if not path.validated and not path.validating:
            self._start_validation(path, now)

    def _reset_path_state(self) -> None:
        """RFC 9000 §9.4: initial congestion window and RTT on a new path, and its
        PMTU searched again from 1200 bytes (§14); bytes already in flight stay
        counted until acknowledged or lost."""
        recovery = self.recovery
        fresh = NewReno(INITIAL_MAX_DATAGRAM_SIZE)
        fresh.bytes_in_flight = recovery.congestion.bytes_in_flight
        recovery.congestion = fresh
        recovery.rtt = RttEstimator()
        config = self.config
        self.mtu = PathMtu(
            INITIAL_MAX_DATAGRAM_SIZE, config.pmtu_max, enabled=config.pmtu_discovery
        )
        if self.peer_params is not None:
            self.mtu.set_peer_limit(self.peer_params.max_udp_payload_size)

    def _start_validation(self, path: Path, now: float) -> None:
        path.challenges = []
        path.challenge_due = True
        path.next_challenge = now + self.pto_interval()
        path.deadline = now + VALIDATION_TIMEOUT_PTOS * max(self.pto_interval(), INITIAL_PTO)

    def _validated(self, path: Path, now: float) -> None:
        path.validated = True
        path.challenges = []
        path.challenge_due = False
        path.next_challenge = path.deadline = None
        if path is self.path:
            self.fallback_path = None
        elif path.move_when_validated:
            path.move_when_validated = False
            self._move_to(path, now)

    def _validation_failed(self, path: Path) -> None:
        self.failed_validations += 1
        path.challenges = []
        path.challenge_due = False
        path.next_challenge = path.deadline = None
        if path is self.path:
            fallback = self.fallback_path
            if fallback is None:
                return  # nowhere to go back to: the idle timeout decides
            self.fallback_path = None
            self.path = fallback
            self.peer_address = fallback.address
            self._reset_path_state()
        else:
            self._forget_path(path)

    # -- timers ----------------------------------------------------------------------------
    def path_deadline(self) -> float | None:
        """The next challenge to resend or validation to give up (§8.2.4)."""
        path = self.path
        if not self.candidate_paths and path.next_challenge is None and path.deadline is None:
            return None  # the common case, on every timer query
        deadlines = [
            d
            for p in (self.path, *self.candidate_paths)
            for d in (p.next_challenge, p.deadline)
            if d is not None
        ]
        return min(deadlines, default=None)

    def on_path_timer(self, now: float) -> None:
        for path in (self.path, *self.candidate_paths):
            if path.deadline is not None and path.deadline <= now:
                self._validation_failed(path)
            elif path.next_challenge is not None and path.next_challenge <= now:
                if len(path.challenges) >= MAX_CHALLENGES:
                    path.next_challenge = None
                else:
                    path.challenge_due = True
                    backoff = 2 ** len(path.challenges)
                    path.next_challenge = now + self.pto_interval() * backoff

    # -- sending ---------------------------------------------------------------------------
    @property
    def path_frames_due(self) -> bool:
        return self.path.challenge_due

    def _write_path_challenge(self, sink: Any) -> bool:
        """A PATH_CHALLENGE for the current path, if due; True when written."""
        path = self.path
        if not path.challenge_due or sink.remaining < _PATH_FRAME_SIZE:
            return False
        data = os.urandom(PATH_DATA_LENGTH)
        path.challenges.append(data)
        path.challenge_due = False
        sink.add(encode_frame(PathChallengeFrame(data)))
        return True

    def _pad_challenge(self, sink: Any) -> None:
        """Pad a packet with a PATH_CHALLENGE so its datagram reaches 1200 bytes (§8.2.1)."""
        sink.pad(
            min(sink.remaining, INITIAL_MAX_DATAGRAM_SIZE - _ONE_RTT_OVERHEAD - len(sink.payload))
        )

    def path_limit(self, size: int) -> int:
        """``size`` capped by the current path's amplification allowance (§8.1, §9.3)."""
        allowance = self.path.allowance(limited=not self.is_client)
        return size if allowance is None else min(size, allowance)

    def datagrams_with_paths(self, now: float) -> list[tuple[bytes, Path]]:
        """Every datagram to send now, each with its path (send to ``path.address``
        from the socket the driver tagged ``path.local``)."""
        out = self._off_path_datagrams(now)
        current = self.path
        out.extend((d, current) for d in self.datagrams_to_send(now))
        return out

    def _off_path_datagrams(self, now: float) -> list[tuple[bytes, Path]]:
        if not self.candidate_paths or not self.handshake_complete:
            return []
        space = self.spaces[PacketNumberSpace.APPLICATION]
        if space.send_keys is None or space.discarded:
            return []
        out: list[tuple[bytes, Path]] = []
        for path in list(self.candidate_paths):
            if path.responses or path.challenge_due:
                datagram = self._probe_datagram(path, space, now)
                if datagram:
                    out.append((datagram, path))
        return out

    def _probe_datagram(self, path: Path, space: Any, now: float) -> bytes:
        """PATH_RESPONSEs owed and a due PATH_CHALLENGE on ``path``, padded (§8.2)."""
        size = INITIAL_MAX_DATAGRAM_SIZE
        allowance = path.allowance(limited=not self.is_client)
        if allowance is not None:
            size = min(size, allowance)
        if size < _MIN_PROBE_DATAGRAM:
            return b""
        cid = self._path_cid(path)
        builder = DatagramBuilder(size)
        sink = builder.open_packet(
            space.space,
            PacketType.ONE_RTT,
            space.next_packet_number,
            space.send_keys.encrypt_packet,
            dcid=cid,
        )
        if sink is None:
            return b""
        while path.responses and sink.remaining >= _PATH_FRAME_SIZE:
            sink.add(encode_frame(PathResponseFrame(path.responses.pop(0))))
        if path.challenge_due and sink.remaining >= _PATH_FRAME_SIZE:
            data = os.urandom(PATH_DATA_LENGTH)
            path.challenges.append(data)
            path.challenge_due = False
            sink.add(encode_frame(PathChallengeFrame(data)))
        sink.pad(sink.remaining)
        if not builder.close_packet(sink):
            return b""
        space.next_packet_number += 1
        data, packets = builder.finish()
        self._on_datagram_sent(data, packets, now, path)
        return data

    def _path_cid(self, path: Path) -> bytes:
        """The peer connection ID for ``path``: its own where the peer gave spare ones
        (§9.5: never one ID on two paths), else the current one."""
        cids = self.peer_cids
        if path.cid_sequence is not None:
            cid = cids.cid_of(path.cid_sequence)
            if cid is not None:
                return cid
        path.cid_sequence = cids.reserve_unused()
        if path.cid_sequence is not None:
            cid = cids.cid_of(path.cid_sequence)
            if cid is not None:
                return cid
        return cids.current

    # -- preferred_address (RFC 9000 §9.6, §18.2) -----------------------------------------
    def _preferred_address_parameter(self) -> PreferredAddress | None:
        """Server: the preferred_address parameter, with connection ID sequence 1."""
        preferred = self.config.preferred_address
        if preferred is None or self.is_client:
            return None
        host, port = preferred
        cid, token = self.local_cids.issue_preferred_address_cid()
        address = ipaddress.ip_address(host)
        if isinstance(address, ipaddress.IPv6Address):
            return PreferredAddress(
                connection_id=cid, stateless_reset_token=token, ipv6_address=address, ipv6_port=port
            )
        return PreferredAddress(
            connection_id=cid, stateless_reset_token=token, ipv4_address=address, ipv4_port=port
        )

    def _learn_preferred_address(self, params: TransportParameters) -> None:
        """Client: the preferred address's connection ID is sequence 1 (§5.1.1)."""
        preferred = params.preferred_address
        if self.is_client and preferred is not None:
            self.peer_cids.add_preferred_address(
                bytes(preferred.connection_id), bytes(preferred.stateless_reset_token)
            )

    def preferred_address(self) -> Address | None:
        """The server's preferred address in the current path's family, if it sent one."""
        params = self.peer_params
        preferred = params.preferred_address if params is not None else None
        if preferred is None:
            return None
        if ":" in str(_host_port(self.path.address)[0]):
            if preferred.ipv6_port and not preferred.ipv6_address.is_unspecified:
                return (str(preferred.ipv6_address), preferred.ipv6_port)
            return None
        if preferred.ipv4_port and not preferred.ipv4_address.is_unspecified:
            return (str(preferred.ipv4_address), preferred.ipv4_port)
        return None

    def _follow_preferred_address(self, now: float) -> None:
        """Client, handshake confirmed: validate the preferred address and move (§9.6.1)."""
        if not self.is_client or not self.config.follow_preferred_address:
            return
        address = self.preferred_address()
        if address is None or self.path.matches(address, self.path.local):
            return
        with contextlib.suppress(MigrationRefused):  # no CID left: stay where we are
            self.probe_path(self.path.local, now, address)

    # -- client migration (RFC 9000 §9.1, §9.2, §9.6) ------------------------------------
    def probe_path(self, local: Any, now: float, address: Address | None = None) -> Path:
        """Probe a new path (the driver's socket ``local``, the peer at ``address`` or
        the current one) and move to it once validated.  Raises
        :class:`MigrationRefused` when the peer disabled active migration (unless
        ``address`` is its preferred_address), when it gave no spare connection
        ID, or before the handshake is confirmed (§9)."""
        if not self.is_client:
            raise MigrationRefused("only a client migrates (RFC 9000 §9)")
        if not self.handshake_confirmed or self.peer_params is None:
            raise MigrationRefused("the handshake is not confirmed yet (RFC 9000 §9)")
        preferred = self.peer_params.preferred_address
        if self.peer_params.disable_active_migration and (address is None or preferred is None):
            raise MigrationRefused("the peer sent disable_active_migration (RFC 9000 §18.2)")
        sequence = self.peer_cids.reserve_unused()
        if sequence is None:
            raise MigrationRefused(
                "the peer gave no spare connection ID to migrate with (RFC 9000 §9.5)"
            )
        path = Path(self.path.address if address is None else address, local, validated=False)
        path.cid_sequence = sequence
        path.move_when_validated = True
        self._remember(path)
        self._start_validation(path, now)
        return path
