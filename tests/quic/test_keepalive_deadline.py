"""A keep-alive is sent at the very deadline the connection reports (issue 11).

``send_deadline`` said ``last_sent + interval`` while sending checked
``now - last_sent >= interval``; for some ``last_sent`` the two disagree by one
rounding step, so at the deadline nothing was sent and the deadline stayed in
the past: a driver woke for it again and again (in the 1,000-idle-connections
measurement, and forever on a virtual clock).
"""

from __future__ import annotations

import math

from tests.quic.pair import Pair, client_config

INTERVAL = 5.0


def _rounding_trap(start: float) -> float:
    """A send time ``t`` >= start with ``(t + INTERVAL) - t < INTERVAL``: just below a
    power of two, so that ``t + INTERVAL`` loses ``t``'s last bit."""
    base = 2.0 ** math.ceil(math.log2(start + INTERVAL)) - INTERVAL / 2
    ulp = math.ulp(base)
    for k in range(1, 64):
        t = base + k * ulp
        if (t + INTERVAL) - t < INTERVAL:
            return t
    raise AssertionError("no rounding trap found")


def test_keepalive_is_sent_at_its_reported_deadline() -> None:
    pair = Pair(client=client_config(keepalive_interval=INTERVAL))
    pair.handshake()
    client = pair.client
    for _ in range(1000):  # until ACKs and handshake leftovers are gone
        if not pair.in_flight and client.get_timer() == client.last_sent + INTERVAL:
            break
        pair.step()
    assert client.get_timer() == client.last_sent + INTERVAL  # only the keep-alive is left
    client.last_sent = _rounding_trap(pair.now)
    deadline = client.get_timer()
    assert deadline is not None and deadline <= client.last_sent + INTERVAL
    now = client.last_sent + INTERVAL
    client.handle_timer(now)
    assert client.datagrams_to_send(now), "the keep-alive due at its deadline was not sent"
    later = client.get_timer()
    assert later is not None and later > now
