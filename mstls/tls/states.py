"""The TLS 1.3 handshake state machine as data (RFC 8446 Appendix A).

Rule 1: every transition of the handshake lives in :data:`TRANSITIONS`; no
handler assigns a state.  Rule 2: the states are the RFC's, shared by both
roles; the table is keyed by :class:`Role` only where the roles differ.

``TRANSITIONS[role][(state, message type)]`` is a :class:`Transition`: the
epoch the message must arrive at and, for each :class:`Branch` its handler may
report, the next state.  The engine (:mod:`mstls.tls.engine`) looks the pair
up before it parses anything: a pair missing from the table, or a message at
the wrong epoch, is an ``unexpected_message`` alert (RFC 8446 §6.2) naming the
role, the state and the message.  A handler returns the branch it took; one
that is about to take a branch with side effects (sending a second
ClientHello) asks :meth:`Transition.allows` first.

Client (RFC 8446 A.1, with PSK resumption but without early data; after a HelloRetryRequest
WAIT_SH is ``wait_sh2``, where a second one is ``unexpected_message``, §4.1.4)::

                              START <----+
               Send ClientHello |        | Recv HelloRetryRequest
                                v        | (once: WAIT_SH -> WAIT_SH2)
                             WAIT_SH ----+
                                | Recv ServerHello
                                | K_recv = handshake
                                v
                             WAIT_EE
                                | Recv EncryptedExtensions
                                | (Using PSK: -> WAIT_FINISHED)
                                v
                           WAIT_CERT_CR
                       Recv |        | Recv CertificateRequest
                Certificate |        v
                            |     WAIT_CERT
                            |        | Recv Certificate
                            v        v
                             WAIT_CV
                                | Recv CertificateVerify
                                v
                          WAIT_FINISHED
                                | Recv Finished
                                | K_send = handshake
                                | [Send Certificate [+ CertificateVerify]]
                                | Send Finished
                                | K_send = K_recv = application
                                v
                            CONNECTED

Server (RFC 8446 A.2, with PSK resumption and, over TCP, early data: a ClientHello
whose 0-RTT data is accepted leads to WAIT_EOED, left on EndOfEarlyData).  RECVD_CH, NEGOTIATED and
WAIT_FLIGHT2 are passed through inside the ClientHello handler, which answers
with its whole flight, and without 0-RTT there is no WAIT_EOED; so none of
them is a state here.  After a HelloRetryRequest START is ``wait_ch2``::

                              START <-----+
               Recv ClientHello |         | Send HelloRetryRequest
                                |         | (once: START -> WAIT_CH2)
                                +---------+
                                | Send ServerHello
                                | K_send = handshake
                                | Send EncryptedExtensions
                                | [Send CertificateRequest]       (not when
                                | Send Certificate + CertificateVerify  resuming)
                                | Send Finished
                                | K_send = application, K_recv = handshake
                  No auth       |       Client auth
                 +--------------+--------------+
                 |                             v
                 |                         WAIT_CERT
                 |    Recv empty Certificate |  | Recv Certificate
                 |             +-------------+  v
                 |             |             WAIT_CV
                 |             |                | Recv CertificateVerify
                 +-------------+-> WAIT_FINISHED <+
                                       | Recv Finished
                                       | K_recv = application
                                       v
                                   CONNECTED

After the handshake (RFC 8446 §4.6) both roles accept KeyUpdate and stay
CONNECTED (QUIC refuses it in the handler, RFC 9001 §6); only the client
accepts NewSessionTicket.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, IntEnum

import attrs

from .extensions import HandshakeType

__all__ = [
    "STARTED",
    "TRANSITIONS",
    "Branch",
    "Epoch",
    "HandshakeState",
    "Role",
    "Transition",
]


class Epoch(IntEnum):
    """Encryption levels (RFC 9001 §4.1.4); TCP uses INITIAL for plaintext."""

    INITIAL = 0
    ZERO_RTT = 1
    HANDSHAKE = 2
    ONE_RTT = 3


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class HandshakeState(Enum):
    """RFC 8446 Appendix A states, one set for both roles."""

    START = "start"
    #: Server: a HelloRetryRequest was sent; the second ClientHello is due.
    WAIT_CH2 = "wait_ch2"
    WAIT_SH = "wait_sh"
    #: Client: WAIT_SH after a HelloRetryRequest (a second one is refused).
    WAIT_SH2 = "wait_sh2"
    WAIT_EE = "wait_ee"
    WAIT_CERT_CR = "wait_cert_cr"
    WAIT_CERT = "wait_cert"
    WAIT_CV = "wait_cv"
    WAIT_FINISHED = "wait_finished"
    #: Server: 0-RTT data accepted over TCP; EndOfEarlyData ends it (§4.5).
    WAIT_EOED = "wait_eoed"
    CONNECTED = "connected"


class Branch(Enum):
    """Which way a handler went, for messages with more than one outcome."""

    #: The usual outcome (the only one for most messages).
    NEXT = "next"
    #: Client: the ServerHello was a HelloRetryRequest.  Server: we sent one.
    HELLO_RETRY = "hello_retry"
    #: Server: our flight included a CertificateRequest (RFC 8446 §4.3.2).
    CERTIFICATE_REQUESTED = "certificate_requested"
    #: Server: the client answered the request with no certificate (§4.4.2.4).
    EMPTY_CERTIFICATE = "empty_certificate"
    #: A PSK (session ticket) was accepted: no certificate messages (§2.2).
    RESUMED = "resumed"
    #: Server: a PSK and its 0-RTT data were accepted; EndOfEarlyData is due (§4.5).
    EARLY_DATA = "early_data"


@attrs.frozen
class Transition:
    """Where a message must arrive and where each of its branches leads."""

    epoch: Epoch
    next: Mapping[Branch, HandshakeState]

    def allows(self, branch: Branch) -> bool:
        return branch in self.next


S = HandshakeState
T = HandshakeType


def _to(epoch: Epoch, state: HandshakeState, **branches: HandshakeState) -> Transition:
    """A transition to ``state`` on :attr:`Branch.NEXT`, plus named other branches."""
    table = {Branch.NEXT: state}
    table.update({Branch[name.upper()]: target for name, target in branches.items()})
    return Transition(epoch, table)


_INITIAL = Epoch.INITIAL
_HANDSHAKE = Epoch.HANDSHAKE
_ONE_RTT = Epoch.ONE_RTT

#: Authentication messages of the peer, the same for both roles (RFC 8446 §4.4).
_PEER_AUTHENTICATION: dict[tuple[HandshakeState, int], Transition] = {
    (S.WAIT_CV, T.certificate_verify): _to(_HANDSHAKE, S.WAIT_FINISHED),
    (S.WAIT_FINISHED, T.finished): _to(_HANDSHAKE, S.CONNECTED),
}
#: Post-handshake messages both roles accept (RFC 8446 §4.6.3).
_POST_HANDSHAKE: dict[tuple[HandshakeState, int], Transition] = {
    (S.CONNECTED, T.key_update): _to(_ONE_RTT, S.CONNECTED),
}

#: ``(state, message type) -> Transition`` for each role; anything else is
#: ``unexpected_message``.
TRANSITIONS: Mapping[Role, Mapping[tuple[HandshakeState, int], Transition]] = {
    Role.CLIENT: {
        (S.WAIT_SH, T.server_hello): _to(_INITIAL, S.WAIT_EE, hello_retry=S.WAIT_SH2),
        (S.WAIT_SH2, T.server_hello): _to(_INITIAL, S.WAIT_EE),
        (S.WAIT_EE, T.encrypted_extensions): _to(
            _HANDSHAKE, S.WAIT_CERT_CR, resumed=S.WAIT_FINISHED
        ),
        (S.WAIT_CERT_CR, T.certificate_request): _to(_HANDSHAKE, S.WAIT_CERT),
        (S.WAIT_CERT_CR, T.certificate): _to(_HANDSHAKE, S.WAIT_CV),
        (S.WAIT_CERT, T.certificate): _to(_HANDSHAKE, S.WAIT_CV),
        **_PEER_AUTHENTICATION,
        **_POST_HANDSHAKE,
        (S.CONNECTED, T.new_session_ticket): _to(_ONE_RTT, S.CONNECTED),
    },
    Role.SERVER: {
        (S.START, T.client_hello): _to(
            _INITIAL,
            S.WAIT_FINISHED,
            hello_retry=S.WAIT_CH2,
            certificate_requested=S.WAIT_CERT,
            resumed=S.WAIT_FINISHED,
            early_data=S.WAIT_EOED,
        ),
        (S.WAIT_EOED, T.end_of_early_data): _to(Epoch.ZERO_RTT, S.WAIT_FINISHED),
        (S.WAIT_CH2, T.client_hello): _to(
            _INITIAL, S.WAIT_FINISHED, certificate_requested=S.WAIT_CERT, resumed=S.WAIT_FINISHED
        ),
        (S.WAIT_CERT, T.certificate): _to(_HANDSHAKE, S.WAIT_CV, empty_certificate=S.WAIT_FINISHED),
        **_PEER_AUTHENTICATION,
        **_POST_HANDSHAKE,
    },
}

#: The state :meth:`TLSHandshake.start` leaves: the client has sent its
#: ClientHello and waits for the ServerHello; the server waits in START.
STARTED: Mapping[Role, HandshakeState] = {
    Role.CLIENT: S.WAIT_SH,
    Role.SERVER: S.START,
}
