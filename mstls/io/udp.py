"""UDP datagram I/O for QUIC, batched with Linux GSO and GRO (RFC 9000 §14).

Theory of operation
-------------------
QUIC's per-datagram cost in Python is dominated by system calls, so this module
moves datagrams in batches.  It holds no threads and no event loop: sockets are
non-blocking and the caller waits for readiness, then calls
:func:`send_datagrams` or :func:`receive_datagrams`.

*Sending.*  With UDP generic segmentation offload (``UDP_SEGMENT``, Linux 4.18)
one ``sendmsg`` carries many datagrams: the buffers are gathered (no join, no
copy) and a control message gives the segment size; the kernel cuts the payload
into datagrams of that size, the last one possibly shorter.  So consecutive
datagrams of equal size, plus at most one shorter one at the end, form a group
of at most :data:`UDP_MAX_SEGMENTS` datagrams and :attr:`UdpCapabilities.max_gso_bytes`
bytes.  Without GSO each datagram is one ``sendto``.

*Switching the offloads off.*  ``detect_capabilities(sock, offload=False)``, or
the environment variable ``MSTLS_NO_GSO=1`` (:data:`NO_GSO_ENV`), gives the plain
paths: one ``sendto`` per datagram and GRO switched off on the socket.  A packet
capture on ``lo`` then shows every QUIC datagram on its own (a GSO super-datagram
is captured before segmentation, and Wireshark fails to decrypt it).

*Receiving.*  With UDP generic receive offload (``UDP_GRO``, Linux 5.0) the
kernel may hand several datagrams of one flow over in one read, with a control
message giving the segment size; they are split back into datagrams as
``memoryview`` slices of the caller's receive buffer, without copying.

*Buffer rule.*  :func:`receive_datagrams` writes each read at a fresh offset of
the caller's buffer, so every view it returns stays valid until the *next* call
with the same buffer, which overwrites it.  Callers finish with a datagram
(decrypt it into a new buffer, or copy it) before receiving again.  A read needs
:data:`READ_ROOM` free bytes, so a call stops early when the buffer is nearly
full; the socket stays readable and the next call continues.

*Errors (brief rule E4).*  Intermittent conditions never escape:
EAGAIN/EWOULDBLOCK and ENOBUFS end a send batch ("would block"); errors latched
on the socket by an ICMP message (ECONNREFUSED for port unreachable, host or
network unreachable, ...) are counted and skipped; EINTR is retried (Python
already retries it, PEP 475).  A datagram larger than the path allows
(EMSGSIZE, e.g. a path-MTU probe, RFC 9000 §14.3) is dropped, counted and
handed back to the caller (``too_big``), whose connection then shrinks its
packets and resends (RFC 8899 §4.6, :mod:`mstls.quic.black_hole`).  If
a GSO send fails because the device cannot segment (EIO, e.g. no checksum
offload), GSO is switched off in the capabilities and the group goes out
plainly.  Any other :class:`OSError` (a closed socket, a bad address) is fatal
and propagates.

*ECN* (RFC 9000 §13.4).  :func:`set_ecn_codepoint` sets the ECN bits of the
TOS / traffic class byte of everything the socket sends (``IP_TOS``,
``IPV6_TCLASS``); :func:`enable_ecn` asks the kernel for each received
datagram's byte (``IP_RECVTOS``, ``IPV6_RECVTCLASS``), which
:func:`receive_datagrams` reads from the control messages, GRO batches included
(every segment of a batch carries the same byte).  Without GRO the receive path
then uses ``recvmsg_into`` instead of ``recvfrom_into``.

*Don't fragment.*  QUIC datagrams must not be fragmented by IP (RFC 9000 §14):
on Linux the socket uses ``IP_PMTUDISC_PROBE``, which sets DF and lets path-MTU
probes larger than the cached path MTU go out (the kernel still refuses sizes
above the interface MTU with EMSGSIZE).  Other platforms get the plain path and
the system's defaults.

Rates on the 2-core reference VM (CPython 3.11, loopback, 1200-byte
datagrams, sender and receiver alternating in one thread, so each figure pays
for both ends; ``python -m tests.quic.test_udp``): plain ``sendto`` and
``recvfrom_into`` 0.19 M datagrams/s (about 5 µs per datagram), GSO sending to
a non-GRO receiver 0.45 M/s, GSO and GRO 1.9 M/s (about 0.5 µs per datagram
for both ends together).  GRO only coalesces what was sent with GSO
on loopback (the loopback device does no GRO of its own).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "DEFAULT_SOCKET_BUFFER",
    "ECN_MASK",
    "MAX_UDP_PAYLOAD_IPV4",
    "MAX_UDP_PAYLOAD_IPV6",
    "NO_GSO_ENV",
    "READ_ROOM",
    "RECEIVE_BUFFER_SIZE",
    "UDP_GRO",
    "UDP_MAX_SEGMENTS",
    "UDP_SEGMENT",
    "Address",
    "DatagramCounters",
    "UdpCapabilities",
    "detect_capabilities",
    "enable_ecn",
    "new_receive_buffer",
    "offload_disabled_by_environment",
    "open_udp_socket",
    "receive_datagrams",
    "send_datagrams",
    "set_ecn_codepoint",
    "set_gro",
]

# Linux option numbers (include/uapi/linux/udp.h, in.h, in6.h, socket.h); the
# socket module lacks most of them.  Only used when sys.platform == "linux".
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3
IP_RECVERR = 11
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_PROBE = 3
IPV6_RECVERR = 25
IP_TOS = 1
IP_RECVTOS = 13
IPV6_RECVTCLASS = 66
IPV6_TCLASS = 67
MSG_ERRQUEUE = 0x2000
#: A plain int: ``flags & socket.MSG_TRUNC`` (an IntFlag) runs enum code per read.
MSG_TRUNC = int(getattr(socket, "MSG_TRUNC", 0x20))

#: Segments per GSO send: the kernel limit since 4.18 (raised to 128 in 6.x).
UDP_MAX_SEGMENTS = 64
#: Largest UDP payload: 65535 minus the 20-byte IPv4 and 8-byte UDP headers.
MAX_UDP_PAYLOAD_IPV4 = 65535 - 20 - 8
#: Largest UDP payload over IPv6 without jumbograms (the 40-byte header is not counted).
MAX_UDP_PAYLOAD_IPV6 = 65535 - 8
#: Requested SO_RCVBUF / SO_SNDBUF; the kernel caps it (net.core.rmem_max/wmem_max).
DEFAULT_SOCKET_BUFFER = 4 * 1024 * 1024
#: Free space needed for one read: more than any UDP payload or GRO batch.
READ_ROOM = 65536
#: Default receive buffer: about 800 datagrams of 1200 bytes per call.
RECEIVE_BUFFER_SIZE = 1024 * 1024
#: ICMP-caused errors skipped per receive call before giving up until the next one.
MAX_ERROR_SKIPS = 16
#: Tries per datagram (or GSO group) when the socket reports a latched ICMP error.
SEND_ATTEMPTS = 2
#: Error-queue entries drained per receive call (IP_RECVERR sockets).
MAX_ERRQUEUE_DRAIN = 64
#: Set to 1 to switch GSO and GRO off on every socket (debugging with a packet capture).
NO_GSO_ENV = "MSTLS_NO_GSO"

_GRO_CMSG_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
#: Room for the UDP_GRO and the TOS/TCLASS control messages together.
_ECN_CMSG_SPACE = 2 * _GRO_CMSG_SPACE
#: The ECN field: the two low bits of the TOS / traffic class byte (RFC 3168 §5).
ECN_MASK = 0b11
_ERRQUEUE_CMSG_SPACE = 512
_SEGMENT_SIZE = struct.Struct("=H")
_GRO_SIZE = struct.Struct("=i")
_IS_LINUX = sys.platform.startswith("linux")

#: A socket address as the socket module returns it: (host, port) or IPv6's 4-tuple.
Address = tuple[Any, ...]
Datagram = bytes | bytearray | memoryview


def _errnos(*names: str) -> frozenset[int]:
    """The errno values of ``names`` that exist on this platform (Windows has WSA* ones)."""
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))


#: Send "would block": the caller retries when the socket is writable (E4).
_WOULD_BLOCK = _errnos("EAGAIN", "EWOULDBLOCK", "ENOBUFS", "WSAEWOULDBLOCK")
#: Errors latched on the socket by ICMP messages (Linux icmp_err_convert).
_ICMP_LATCHED = _errnos(
    "ECONNREFUSED",
    "ECONNRESET",
    "EHOSTUNREACH",
    "ENETUNREACH",
    "EHOSTDOWN",
    "ENONET",
    "EPROTO",
    "WSAECONNRESET",
    "WSAENETRESET",
)
#: On receive, any ICMP-caused error, including "fragmentation needed".
_RECEIVE_SKIPPED = _ICMP_LATCHED | _errnos("EMSGSIZE", "ENOPROTOOPT", "EOPNOTSUPP", "WSAEMSGSIZE")
_TOO_BIG = _errnos("EMSGSIZE", "WSAEMSGSIZE")
#: A GSO send the device or kernel cannot do at all: switch GSO off.
_GSO_UNSUPPORTED = _errnos("EIO", "ENOPROTOOPT", "EOPNOTSUPP")
#: A GSO send this group cannot use (segment above the path MTU): send it plainly.
_GSO_REJECTED = _errnos("EINVAL", "EMSGSIZE")


@dataclass(slots=True)
class DatagramCounters:
    """What went through one socket, for observability (all monotonic)."""

    sent: int = 0
    received: int = 0
    gso_batches: int = 0
    gro_batches: int = 0
    dropped_too_big: int = 0
    dropped_unreachable: int = 0
    dropped_truncated: int = 0
    refused_ignored: int = 0
    send_would_block: int = 0
    gso_fallbacks: int = 0
    icmp_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class UdpCapabilities:
    """Per-socket batching state; mutable (GSO is switched off if the device refuses it).

    ``gro`` must describe the socket: it is read back by :func:`detect_capabilities`
    and changed only through :func:`set_gro`.  Setting ``gso = False`` forces the
    plain send path.
    """

    gso: bool = False
    gro: bool = False
    max_segments: int = UDP_MAX_SEGMENTS
    max_gso_bytes: int = MAX_UDP_PAYLOAD_IPV4
    recv_errors: bool = False
    #: The socket reports each datagram's TOS byte (:func:`enable_ecn`).
    ecn: bool = False
    #: The ECN codepoint the socket sends with (:func:`set_ecn_codepoint`).
    ecn_codepoint: int = 0
    recv_buffer: int = 0
    send_buffer: int = 0
    counters: DatagramCounters = field(default_factory=DatagramCounters)

    @classmethod
    def plain(cls) -> UdpCapabilities:
        """No offloads: one system call per datagram."""
        return cls()


def _try_setsockopt(sock: socket.socket, level: int, option: int, value: int) -> bool:
    """Set an option if this kernel knows it; report whether it took."""
    try:
        sock.setsockopt(level, option, value)
    except OSError:
        return False
    return True


def _getsockopt_int(sock: socket.socket, level: int, option: int) -> int | None:
    """An integer option, or ``None`` when this kernel does not know it."""
    try:
        return sock.getsockopt(level, option)
    except OSError:
        return None


#: Options set on Linux per address family: (level, option, value).  Failures are ignored.
_LINUX_OPTIONS: dict[int, tuple[tuple[int, int, int], ...]] = {
    socket.AF_INET: ((socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE),),
    socket.AF_INET6: (
        (socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE),
        # IPv4-mapped traffic on a dual-stack socket follows the IPv4 option.
        (socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE),
    ),
}
_RECVERR_OPTIONS: dict[int, tuple[tuple[int, int, int], ...]] = {
    socket.AF_INET: ((socket.IPPROTO_IP, IP_RECVERR, 1),),
    socket.AF_INET6: ((socket.IPPROTO_IPV6, IPV6_RECVERR, 1), (socket.IPPROTO_IP, IP_RECVERR, 1)),
}


def open_udp_socket(
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    recv_buffer: int = DEFAULT_SOCKET_BUFFER,
    send_buffer: int = DEFAULT_SOCKET_BUFFER,
    gro: bool = True,
    recv_errors: bool = False,
) -> socket.socket:
    """A bound, non-blocking UDP socket ready for QUIC (RFC 9000 §14).

    ``host`` may be an IPv4 or IPv6 address or a name; ``"::"`` gives a dual-stack
    socket.  Buffers are raised as far as the kernel allows (read the real sizes
    from :func:`detect_capabilities`).  On Linux: DF set through
    ``IP_PMTUDISC_PROBE``, GRO enabled when ``gro`` (and supported), and
    ``IP_RECVERR`` when ``recv_errors`` (ICMP errors are then drained and counted
    by :func:`receive_datagrams`).
    """
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host or None, port, 0, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6 and sockaddr[0] == "::":
            _try_setsockopt(sock, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _try_setsockopt(sock, socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        _try_setsockopt(sock, socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        if _IS_LINUX:
            for level, option, value in _LINUX_OPTIONS.get(family, ()):
                _try_setsockopt(sock, level, option, value)
            if gro:
                _try_setsockopt(sock, SOL_UDP, UDP_GRO, 1)
            if recv_errors:
                for level, option, value in _RECVERR_OPTIONS.get(family, ()):
                    _try_setsockopt(sock, level, option, value)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def offload_disabled_by_environment() -> bool:
    """True when ``$MSTLS_NO_GSO`` is set to anything but empty or ``0``."""
    return os.environ.get(NO_GSO_ENV, "").strip() not in ("", "0")


def detect_capabilities(sock: socket.socket, *, offload: bool = True) -> UdpCapabilities:
    """What batching ``sock`` supports, read back from the kernel.

    GSO: ``getsockopt(UDP_SEGMENT)`` succeeds (a kernel without it rejects the
    option; it must not be inferred from the control message, which old kernels
    silently ignore).  GRO: the socket's ``UDP_GRO`` option is on.  Non-Linux
    systems and non-UDP sockets get the plain path.  Without ``offload`` (or with
    ``$MSTLS_NO_GSO`` set) both are off and GRO is switched off on the socket.
    """
    caps = UdpCapabilities(
        recv_buffer=_getsockopt_int(sock, socket.SOL_SOCKET, socket.SO_RCVBUF) or 0,
        send_buffer=_getsockopt_int(sock, socket.SOL_SOCKET, socket.SO_SNDBUF) or 0,
    )
    if sock.family == socket.AF_INET6:
        caps.max_gso_bytes = MAX_UDP_PAYLOAD_IPV6
    usable = (
        _IS_LINUX
        and sock.type == socket.SOCK_DGRAM
        and sock.family in (socket.AF_INET, socket.AF_INET6)
        and hasattr(sock, "recvmsg_into")
    )
    if not usable:
        return caps
    if offload and not offload_disabled_by_environment():
        caps.gso = _getsockopt_int(sock, SOL_UDP, UDP_SEGMENT) is not None
        caps.gro = bool(_getsockopt_int(sock, SOL_UDP, UDP_GRO))
    else:
        set_gro(sock, caps, False)
    level, option = (
        (socket.IPPROTO_IPV6, IPV6_RECVERR)
        if sock.family == socket.AF_INET6
        else (socket.IPPROTO_IP, IP_RECVERR)
    )
    caps.recv_errors = bool(_getsockopt_int(sock, level, option))
    return caps


def set_gro(sock: socket.socket, caps: UdpCapabilities, enabled: bool) -> bool:
    """Switch GRO on ``sock`` and record the outcome in ``caps``; return the new state."""
    if _IS_LINUX and hasattr(sock, "recvmsg_into"):
        _try_setsockopt(sock, SOL_UDP, UDP_GRO, int(enabled))
        caps.gro = bool(_getsockopt_int(sock, SOL_UDP, UDP_GRO))
    else:
        caps.gro = False
    return caps.gro


_RECV_TOS_OPTIONS: dict[int, tuple[tuple[int, int], ...]] = {
    socket.AF_INET: ((socket.IPPROTO_IP, IP_RECVTOS),),
    socket.AF_INET6: ((socket.IPPROTO_IPV6, IPV6_RECVTCLASS), (socket.IPPROTO_IP, IP_RECVTOS)),
}
_SEND_TOS_OPTIONS: dict[int, tuple[tuple[int, int], ...]] = {
    socket.AF_INET: ((socket.IPPROTO_IP, IP_TOS),),
    # IPv4-mapped traffic on a dual-stack socket follows IP_TOS.
    socket.AF_INET6: ((socket.IPPROTO_IPV6, IPV6_TCLASS), (socket.IPPROTO_IP, IP_TOS)),
}


def enable_ecn(sock: socket.socket, caps: UdpCapabilities) -> bool:
    """Report the ECN codepoint of every received datagram (RFC 9000 §13.4.1):
    ``IP_RECVTOS`` / ``IPV6_RECVTCLASS`` (Linux).  Returns whether it took; then
    :func:`receive_datagrams` fills its ``ecn`` list."""
    caps.ecn = False
    if _IS_LINUX and hasattr(sock, "recvmsg_into"):
        options = _RECV_TOS_OPTIONS.get(sock.family, ())
        caps.ecn = bool(options) and _try_setsockopt(sock, *options[0], 1)
        for level, option in options[1:]:
            _try_setsockopt(sock, level, option, 1)
    return caps.ecn


def set_ecn_codepoint(sock: socket.socket, caps: UdpCapabilities, codepoint: int) -> bool:
    """Send every later datagram with ECN ``codepoint`` (0: Not-ECT, 2: ECT(0)) through
    ``IP_TOS`` / ``IPV6_TCLASS``; a no-op when already set.  Returns whether the
    socket sends it (RFC 9000 §13.4: mark only where the socket allows)."""
    if codepoint == caps.ecn_codepoint:
        return True
    options = _SEND_TOS_OPTIONS.get(sock.family, ())
    if not options or not _try_setsockopt(sock, *options[0], codepoint & ECN_MASK):
        return False
    for level, option in options[1:]:
        _try_setsockopt(sock, level, option, codepoint & ECN_MASK)
    caps.ecn_codepoint = codepoint & ECN_MASK
    return True


def new_receive_buffer(size: int = RECEIVE_BUFFER_SIZE) -> bytearray:
    """A receive buffer for :func:`receive_datagrams` (at least :data:`READ_ROOM` bytes)."""
    return bytearray(max(size, READ_ROOM))


# --- sending -------------------------------------------------------------------------


def send_datagrams(
    sock: socket.socket,
    datagrams: Sequence[Datagram],
    addr: Address | None,
    caps: UdpCapabilities,
    too_big: list[Datagram] | None = None,
) -> int:
    """Send ``datagrams`` to ``addr`` (``None``: the connected peer), batched with GSO.

    Returns how many datagrams were consumed from the front of the sequence:
    sent, or dropped as too big for the path (counted in ``dropped_too_big``) or
    unreachable.  Fewer than ``len(datagrams)`` means the socket would block; the
    caller keeps the rest for when it is writable again.  Datagrams are byte
    strings or 1-D byte views (their ``len`` is their size).  Datagrams refused as
    too big (EMSGSIZE) are also appended to ``too_big`` if given, so the caller can
    tell the connection its path MTU shrank (RFC 8899 §4.6) and resend smaller.
    """
    count = len(datagrams)
    if not caps.gso:
        return _send_plain(sock, datagrams, 0, count, addr, caps.counters, too_big)
    index = 0
    while index < count:
        if not caps.gso:  # switched off by a device that cannot segment
            return index + _send_plain(sock, datagrams, index, count, addr, caps.counters, too_big)
        end = _group_end(datagrams, index, count, caps)
        if end - index == 1:
            sent = _send_plain(sock, datagrams, index, end, addr, caps.counters, too_big)
        else:
            sent = _send_group(sock, datagrams, index, end, addr, caps, too_big)
        index += sent
        if index < end:
            break
    return index


def _group_end(datagrams: Sequence[Datagram], index: int, count: int, caps: UdpCapabilities) -> int:
    """End of the GSO group starting at ``index``: equal sizes, then one shorter at most."""
    size = len(datagrams[index])
    if size == 0 or size > caps.max_gso_bytes:
        return index + 1
    stop = min(count, index + min(caps.max_segments, caps.max_gso_bytes // size))
    end = index + 1
    while end < stop:
        length = len(datagrams[end])
        if length != size:
            if 0 < length < size:
                end += 1
            break
        end += 1
    return end


def _send_group(
    sock: socket.socket,
    datagrams: Sequence[Datagram],
    start: int,
    end: int,
    addr: Address | None,
    caps: UdpCapabilities,
    too_big: list[Datagram] | None,
) -> int:
    """One GSO ``sendmsg`` for ``datagrams[start:end]``; plain sends if GSO is refused."""
    counters = caps.counters
    ancillary = [(SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(len(datagrams[start])))]
    group = datagrams[start:end]
    for _ in range(SEND_ATTEMPTS):
        try:
            if addr is None:
                sock.sendmsg(group, ancillary)
            else:
                sock.sendmsg(group, ancillary, 0, addr)
        except OSError as exc:
            code = exc.errno
            if code in _WOULD_BLOCK:
                counters.send_would_block += 1
                return 0
            if code in _ICMP_LATCHED:
                counters.refused_ignored += 1
                continue
            if code in _GSO_UNSUPPORTED:
                caps.gso = False
            elif code not in _GSO_REJECTED:
                raise
            counters.gso_fallbacks += 1
            return _send_plain(sock, datagrams, start, end, addr, counters, too_big)
        counters.sent += end - start
        counters.gso_batches += 1
        return end - start
    return _send_plain(sock, datagrams, start, end, addr, counters, too_big)


def _send_plain(
    sock: socket.socket,
    datagrams: Sequence[Datagram],
    start: int,
    end: int,
    addr: Address | None,
    counters: DatagramCounters,
    too_big: list[Datagram] | None = None,
) -> int:
    """One ``sendto`` per datagram of ``datagrams[start:end]``; returns how many were consumed."""
    index = start
    attempts = 0
    sendto = sock.sendto
    while index < end:
        try:
            if addr is None:
                sock.send(datagrams[index])
            else:
                sendto(datagrams[index], addr)
        except OSError as exc:
            code = exc.errno
            if code in _WOULD_BLOCK:
                counters.send_would_block += 1
                break
            if code in _ICMP_LATCHED:
                # An error latched by an earlier ICMP message is reported once and
                # this datagram did not leave: try it again, then give it up.
                counters.refused_ignored += 1
                attempts += 1
                if attempts < SEND_ATTEMPTS:
                    continue
                counters.dropped_unreachable += 1
            elif code in _TOO_BIG:
                counters.dropped_too_big += 1
                if too_big is not None:
                    too_big.append(datagrams[index])
            else:
                raise
        else:
            counters.sent += 1
        attempts = 0
        index += 1
    return index - start


# --- receiving -----------------------------------------------------------------------


def receive_datagrams(
    sock: socket.socket,
    max_datagrams: int,
    caps: UdpCapabilities,
    buffer: bytearray | memoryview,
    ecn: list[int] | None = None,
) -> list[tuple[memoryview, Address]]:
    """Read datagrams until the socket is drained, ``max_datagrams`` or the buffer is full.

    Returns ``(datagram, source address)`` pairs; each datagram is a view into
    ``buffer``, valid until the next call with the same buffer (see the module
    doc).  With GRO, coalesced reads are split by the segment size the kernel
    reports; ``max_datagrams`` is checked before each read, so one coalesced read
    may take the total past it.  An empty list means nothing was ready.  With
    :attr:`UdpCapabilities.ecn`, ``ecn`` (if given) gets each datagram's ECN
    codepoint, index by index (0 where the kernel gave none).
    """
    view = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
    out: list[tuple[memoryview, Address]] = []
    if ecn is not None:
        ecn.clear()
    if caps.gro or (caps.ecn and ecn is not None):
        _receive_gro(sock, max_datagrams, caps.counters, view, out, ecn if caps.ecn else None)
    else:
        _receive_plain(sock, max_datagrams, caps.counters, view, out)
    if caps.recv_errors:
        _drain_error_queue(sock, caps.counters)
    return out


def _receive_plain(
    sock: socket.socket,
    max_datagrams: int,
    counters: DatagramCounters,
    view: memoryview,
    out: list[tuple[memoryview, Address]],
) -> None:
    """One ``recvfrom_into`` per datagram; skips ICMP-caused errors (E4)."""
    offset = 0
    last = len(view) - READ_ROOM
    skipped = 0
    recv = sock.recvfrom_into
    while len(out) < max_datagrams and offset <= last:
        try:
            nbytes, addr = recv(view[offset : offset + READ_ROOM])
        except (BlockingIOError, InterruptedError) as exc:
            if isinstance(exc, InterruptedError):
                continue
            break
        except OSError as exc:
            if exc.errno not in _RECEIVE_SKIPPED:
                raise
            counters.refused_ignored += 1
            skipped += 1
            if skipped >= MAX_ERROR_SKIPS:
                break
            continue
        out.append((view[offset : offset + nbytes], addr))
        offset += nbytes
    counters.received += len(out)


def _receive_gro(
    sock: socket.socket,
    max_datagrams: int,
    counters: DatagramCounters,
    view: memoryview,
    out: list[tuple[memoryview, Address]],
    ecn: list[int] | None = None,
) -> None:
    """``recvmsg_into`` with the UDP_GRO control message; splits coalesced reads (no
    copy).  With ``ecn``, also reads the TOS / traffic class control message."""
    offset = 0
    last = len(view) - READ_ROOM
    skipped = 0
    recv = sock.recvmsg_into
    space = _GRO_CMSG_SPACE if ecn is None else _ECN_CMSG_SPACE
    while len(out) < max_datagrams and offset <= last:
        try:
            nbytes, ancillary, flags, addr = recv([view[offset : offset + READ_ROOM]], space)
        except (BlockingIOError, InterruptedError) as exc:
            if isinstance(exc, InterruptedError):
                continue
            break
        except OSError as exc:
            if exc.errno not in _RECEIVE_SKIPPED:
                raise
            counters.refused_ignored += 1
            skipped += 1
            if skipped >= MAX_ERROR_SKIPS:
                break
            continue
        segment = nbytes
        tos = 0
        for level, kind, data in ancillary:
            if level == SOL_UDP and kind == UDP_GRO and len(data) >= _GRO_SIZE.size:
                segment = _GRO_SIZE.unpack_from(data)[0]
            elif (kind == IP_TOS and level == socket.IPPROTO_IP) or (
                kind == IPV6_TCLASS and level == socket.IPPROTO_IPV6
            ):
                tos = data[0] if len(data) == 1 else _GRO_SIZE.unpack_from(data)[0]
        if flags & MSG_TRUNC:
            # Cut short by the buffer (a GRO batch above READ_ROOM): keep whole segments.
            counters.dropped_truncated += 1
            if not 0 < segment < nbytes:
                continue
            nbytes -= nbytes % segment
        if 0 < segment < nbytes:
            counters.gro_batches += 1
            end = offset + nbytes
            batch = view[offset:end]
            out += [(batch[i : i + segment], addr) for i in range(0, nbytes, segment)]
        else:
            out.append((view[offset : offset + nbytes], addr))
        if ecn is not None:
            ecn += [tos & ECN_MASK] * (len(out) - len(ecn))
        offset += nbytes
    counters.received += len(out)


def _drain_error_queue(sock: socket.socket, counters: DatagramCounters) -> None:
    """Empty the IP_RECVERR error queue: it shares the receive buffer's memory (Linux ip(7))."""
    for _ in range(MAX_ERRQUEUE_DRAIN):
        try:
            sock.recvmsg(1, _ERRQUEUE_CMSG_SPACE, MSG_ERRQUEUE)
        except OSError:
            return
        counters.icmp_errors += 1
