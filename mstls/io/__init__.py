"""Socket code the drivers share, kept apart from the sans-I/O packages.

``mstls.wire``, ``mstls.tls``, ``mstls.core``, ``mstls.quic`` and ``mstls.qmux``
never touch a socket; what the blocking and trio drivers both need from the
operating system lives here: :mod:`.udp` (batched send and receive, GSO/GRO,
ICMP-latched errors) and :mod:`.tcp` (socket options, refusing a socket with a
reset).
"""
