"""Incompatible version negotiation, client side (RFC 9000 §6.2, RFC 9368 §2.2, §4).

Theory of operation
-------------------
A server that cannot parse our first flight answers with a Version Negotiation
packet listing the versions it supports.  :func:`on_version_negotiation` applies
the rules, in order:

1. only a client that has processed no other packet from the server reacts (no
   server packet, no Retry, no earlier Version Negotiation: RFC 9000 §6.2,
   RFC 9368 §4 "ignore VN packets in response to that attempt");
2. the connection IDs must echo ours (RFC 8999 §6): DCID = our SCID, SCID = the
   DCID we sent;
3. a packet listing the version we attempted is ignored (RFC 9368 §4, downgrade
   protection);
4. the new version is the first of ours (``QuicConfig.versions``, in our order of
   preference) that the server lists; with none the attempt is abandoned with a
   clear error naming both lists.

The new attempt (:func:`restart_in_version`) is conceptually a new connection
(RFC 9368 §2.2) kept in the same object, so drivers and the endpoint's routing
(our SCID) see nothing change: a fresh Destination Connection ID, new Initial
keys, a new ClientHello whose version_information names the new version as
chosen, fresh loss recovery.  Streams and datagrams queued by the application
are kept.  The Initial packet numbers continue where they were.

After the handshake, :func:`check_reacted_server_information` validates the
server's authenticated version_information (RFC 9368 §4): it must be present,
and with the versions it lists plus the negotiated one we must have picked the
same version we attempted; anything else is a VERSION_NEGOTIATION_ERROR.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..codes import TransportErrorCode
from ..core.recovery import PacketNumberSpace
from ..exceptions import ProtocolError
from ..tls.client import ClientHandshake
from ..wire.packet import PacketHeader
from ..wire.transport_params import VersionInformation, encode_transport_parameters

if TYPE_CHECKING:
    from .connection import QuicConnection

__all__ = [
    "check_reacted_server_information",
    "on_version_negotiation",
    "pick_version",
    "restart_in_version",
]

#: Length of the fresh Destination Connection ID of the new attempt (RFC 9000 §7.2: >= 8).
RETRY_DCID_LENGTH = 8


def _format(versions: tuple[int, ...] | list[int]) -> str:
    return ", ".join(f"{v:#010x}" for v in versions) or "none"


def pick_version(ours: tuple[int, ...], offered: tuple[int, ...]) -> int | None:
    """The first of ``ours`` (our order of preference) that ``offered`` lists."""
    for version in ours:
        if version in offered:
            return version
    return None


def on_version_negotiation(conn: QuicConnection, header: PacketHeader, now: float) -> None:
    """A Version Negotiation packet reached the client (untrusted input)."""
    if not conn.is_client or conn.peer_cid_set or conn.retry_source_cid is not None:
        return
    if conn.reacted_to_version_negotiation is not None:
        return
    if bytes(header.dcid) != conn.host_cid or bytes(header.scid) != conn.peer_cids.current:
        return
    offered = tuple(header.supported_versions or ())
    if conn.original_version in offered:
        return  # RFC 9368 §4: never a downgrade from the version we attempted
    version = pick_version(conn.config.versions, offered)
    if version is None:
        conn.abandon(
            ProtocolError(
                f"no QUIC version in common: the server supports versions {_format(offered)}, "
                f"we offer versions {_format(conn.config.versions)} (RFC 9000 §6.2)",
                error_code=TransportErrorCode.VERSION_NEGOTIATION_ERROR,
            ),
            now,
        )
        return
    restart_in_version(conn, version, now)


def restart_in_version(conn: QuicConnection, version: int, now: float) -> None:
    """Start the new attempt in ``version`` (see the module documentation)."""
    conn.reacted_to_version_negotiation = conn.original_version
    conn.original_version = version
    conn.version = version
    next_initial_pn = conn.spaces[PacketNumberSpace.INITIAL].next_packet_number
    packets_sent = conn.packets_sent
    dcid = os.urandom(RETRY_DCID_LENGTH)
    conn.original_dcid = dcid
    conn.peer_cids.replace_initial(dcid)
    conn._init_spaces(dcid)
    conn.spaces[PacketNumberSpace.INITIAL].next_packet_number = next_initial_pn
    conn._init_sending()
    conn.packets_sent = packets_sent
    params = conn.local_params
    params.version_information = VersionInformation(version, conn.config.versions)
    conn.tls = ClientHandshake(
        conn.config.tls, transport_parameters=encode_transport_parameters(params)
    )
    conn.start_handshake(now)


def check_reacted_server_information(
    server: VersionInformation | None, ours: tuple[int, ...], attempted: int, negotiated: int
) -> None:
    """RFC 9368 §4 after reacting to Version Negotiation: the server's Available
    Versions plus the negotiated version must lead us to the version we attempted."""
    if server is None or not server.available_versions:
        raise ProtocolError(
            "server sent no version_information or no Available Versions after Version "
            "Negotiation (RFC 9368 §4)",
            error_code=TransportErrorCode.VERSION_NEGOTIATION_ERROR,
        )
    would_pick = pick_version(ours, (*server.available_versions, negotiated))
    if would_pick != attempted:
        raise ProtocolError(
            f"version downgrade: with the server's versions {_format(server.available_versions)} "
            f"we would have chosen {_format([would_pick] if would_pick else [])}, "
            f"not {attempted:#010x} (RFC 9368 §4)",
            error_code=TransportErrorCode.VERSION_NEGOTIATION_ERROR,
        )
