"""Compatible version negotiation between QUIC v1 and v2 (RFC 9368, RFC 9369 §4).

Theory of operation
-------------------
The client starts in the first version of its :attr:`QuicConfig.versions`
(the *original* version) and lists all of them in its version_information
transport parameter.  The server reads that parameter from the ClientHello
before it answers (the TLS server calls :func:`choose_version` through the
connection), picks the first of *its* versions that the client offers, and —
if that differs — switches at once: its Initial packets carrying CRYPTO, and
all its Handshake and 1-RTT packets, use the negotiated version (RFC 9369 §4.1);
it keeps the original version's Initial receive keys until a Handshake packet of
the negotiated version arrives.  The client learns the negotiated version from
the first long header whose version differs from the original one, and moves
its Initial keys there.

Both sides then check the peer's version_information, which the handshake
authenticates (RFC 9368 §4): the client's chosen version must be the original
version; the server's chosen version must be the negotiated one.  Any mismatch
is a VERSION_NEGOTIATION_ERROR.  v1 and v2 are compatible both ways
(RFC 9369 §4), and they are the only versions we speak.
"""

from __future__ import annotations

from ..codes import TransportErrorCode
from ..exceptions import ProtocolError
from ..wire.transport_params import VersionInformation

__all__ = ["check_client_information", "check_server_information", "choose_version"]


def _mismatch(reason: str) -> ProtocolError:
    return ProtocolError(reason, error_code=TransportErrorCode.VERSION_NEGOTIATION_ERROR)


def choose_version(ours: tuple[int, ...], original: int, client: VersionInformation | None) -> int:
    """The server's pick: the first of ``ours`` that the client offers, else the
    original version (RFC 9368 §2.3)."""
    if client is None:
        return original
    offered = set(client.available_versions) | {client.chosen_version}
    for version in ours:
        if version in offered:
            return version
    return original


def check_client_information(client: VersionInformation | None, original: int) -> None:
    """RFC 9368 §4: the client's chosen version is the one its first Initial used."""
    if client is not None and client.chosen_version != original:
        raise _mismatch(
            f"client chose version {client.chosen_version:#010x} in version_information "
            f"but sent its Initial in {original:#010x}"
        )


def check_server_information(
    server: VersionInformation | None, negotiated: int, original: int
) -> None:
    """RFC 9368 §4: the server's chosen version is the negotiated one; a server that
    moved us to another version must say so."""
    if server is None:
        if negotiated != original:
            raise _mismatch("server changed the version without version_information")
        return
    if server.chosen_version != negotiated:
        raise _mismatch(
            f"server chose version {server.chosen_version:#010x} in version_information "
            f"but the connection uses {negotiated:#010x}"
        )
