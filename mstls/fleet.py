"""What an operator running several servers shares between them (public API).

* :class:`StatelessResetKey` — the key stateless reset tokens derive from
  (RFC 9000 §10.3.2): every server of a fleet, and a restarted one, must hold the
  same key so that a peer of a lost connection is told at once.
* :class:`QuicLbConfig` — plaintext QUIC-LB server IDs in the connection IDs we
  issue (draft-ietf-quic-load-balancers), so a load balancer routes every packet
  of a connection to the server that holds it; ``MAX_CONFIG_ID``,
  ``MIN_NONCE_LENGTH`` and ``MAX_CID_LENGTH`` bound its settings.
* ``TICKET_KEY_LENGTH`` — the length of each of ``ServerConfig.session_ticket_keys``,
  the keys sealing session tickets, which every server of a fleet must share.

``mstlsd`` builds its fleet settings from these names only (see ``docs/fleet.md``).
"""

from __future__ import annotations

from .core.stateless_reset import STATELESS_RESET_KEY_LENGTH, StatelessResetKey
from .quic.quic_lb import MAX_CID_LENGTH, MAX_CONFIG_ID, MIN_NONCE_LENGTH, QuicLbConfig
from .tls.tickets import TICKET_KEY_LENGTH

__all__ = [
    "MAX_CID_LENGTH",
    "MAX_CONFIG_ID",
    "MIN_NONCE_LENGTH",
    "STATELESS_RESET_KEY_LENGTH",
    "TICKET_KEY_LENGTH",
    "QuicLbConfig",
    "StatelessResetKey",
]
