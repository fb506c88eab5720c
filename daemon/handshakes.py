"""Failed handshakes: a bounded label for the metrics and a log line per failure.

The library's trio :class:`~mstls.trio.Listener` counts handshakes that never
completed (``failed_handshakes``) and keeps the latest ones with their
exception (``pop_handshake_failures``).  The daemon polls every listener every
:data:`POLL_INTERVAL` seconds (:func:`watch_handshakes`), counts each failure in
``mstlsd_handshake_failures_total{transport,reason}`` and logs it.  A flood of
garbage must not become a flood of log lines: at most :data:`LOG_PER_POLL`
failures are logged one by one per poll, the rest as one summary line.
Failures the listener did not keep (more than its record holds between two
polls) are counted with reason ``unrecorded``.

After a burst of at least :data:`TRIM_AFTER_FAILURES` failed handshakes (a flood's
handshakes timing out), once a poll sees no new failure, the freed heap memory is
given back to the system (:func:`release_free_memory`, glibc's ``malloc_trim``).
The state of those handshakes is freed when they fail, but the allocator keeps the
pages (the heap is fragmented by longer-lived objects), so without it the daemon's
RSS stayed at the flood's high-water mark, about 4 MiB above its level for 100
timed-out QUIC handshakes and 15 MiB for 1,000 (issue 11: RSS back within 5 MiB
once a flood ends).  It runs at most once per burst, when the daemon is quiet.

Reasons (a small, fixed vocabulary, so the metric's cardinality stays bounded):

=======================  ===============================================================
``certificate``          we rejected the client's certificate (or it sent none)
``peer_alert_NAME``      the client aborted with TLS alert NAME (e.g. ``unknown_ca``:
                         it did not trust our certificate)
``tls_NAME``             we aborted with TLS alert NAME (no common ALPN, group...)
``timeout``              ``handshake_timeout`` passed
``premature_close``      TCP closed before the handshake finished
``no_data``              TCP closed before sending a single byte: a port probe or a load
                         balancer's TCP health check, not a client (logged at debug level)
``decode_error``         undecodable bytes (garbage on a TCP port)
``protocol_error``       another protocol violation
``peer_closed``          the client closed the connection during the handshake
``io_error``             a socket error
``rate_limited``         refused before any handshake work: the source address was over
                         ``limits.handshake_rate`` (TCP: the connection was reset; UDP: the
                         Initial dropped, so each Initial datagram of a client, its
                         retransmissions included, counts once)
``shed``                 UDP: a QUIC handshake still in progress dropped silently for a
                         newer one beyond ``limits.max_pending_handshakes``
``refused``              refused by admission control for another cause
``other``, ``unknown``   anything else / no exception recorded
=======================  ===============================================================
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import trio

import mstls
import mstls.trio
from mstls.codes import AlertDescription
from mstls.exceptions import DecodeError, HandshakeRefused, PeerAlert, TLSError

from .logs import event
from .metrics import Metrics

__all__ = [
    "LOG_PER_POLL",
    "POLL_INTERVAL",
    "TRIM_AFTER_FAILURES",
    "HandshakeWatch",
    "TrimAfterBursts",
    "failure_reason",
    "release_free_memory",
]

#: How often the listeners' failure records are read (seconds).
POLL_INTERVAL = 0.5
#: Failures logged one by one per poll; the rest are summarised in one line.
LOG_PER_POLL = 10
#: Failed handshakes in one burst after which freed memory is given back once it ends.
TRIM_AFTER_FAILURES = 50
#: Failure reasons logged below INFO: health checks and port probes come every few
#: seconds from load balancers and would drown the real failures.
QUIET_REASONS = {"no_data": logging.DEBUG}
#: Refusal causes reported as themselves (anything else is ``refused``).
REFUSAL_CAUSES = frozenset({"rate_limited", "shed"})
#: QUIC CRYPTO_ERROR codes are 0x100 + the TLS alert (RFC 9001 §4.8).
CRYPTO_ERROR_BASE = 0x100
CRYPTO_ERROR_LAST = 0x1FF


def _alert_name(alert: int) -> str:
    try:
        return AlertDescription(alert).name.lower()
    except ValueError:
        return str(int(alert))


def _terminated_reason(exc: mstls.ConnectionTerminated) -> str:
    if isinstance(exc, mstls.PrematureClose):
        return "no_data" if exc.wire_bytes_received == 0 else "premature_close"
    if isinstance(exc, mstls.ConnectionIOError):
        return "io_error"
    code = int(exc.code)
    if not exc.is_application and CRYPTO_ERROR_BASE <= code <= CRYPTO_ERROR_LAST:
        prefix = "peer_alert_" if exc.by_peer else "tls_"
        return prefix + _alert_name(code - CRYPTO_ERROR_BASE)
    if exc.by_peer:
        return "peer_closed"
    return "timeout" if "timeout" in exc.reason.lower() else "other"


def failure_reason(exc: BaseException | None) -> str:
    """The metric label for a failed handshake's exception (see the module table)."""
    if exc is None:
        return "unknown"
    if isinstance(exc, HandshakeRefused):
        return exc.cause if exc.cause in REFUSAL_CAUSES else "refused"
    if isinstance(exc, mstls.ConnectionTerminated):
        return _terminated_reason(exc)
    if isinstance(exc, mstls.CertificateError):
        return "certificate"
    if isinstance(exc, PeerAlert):
        return "peer_alert_" + _alert_name(exc.alert)
    if isinstance(exc, TLSError):
        return "tls_" + _alert_name(exc.alert)
    if isinstance(exc, mstls.Timeout):
        return "timeout"
    if isinstance(exc, DecodeError):
        return "decode_error"
    if isinstance(exc, mstls.ProtocolError):
        return "protocol_error"
    return "other"


def _peer(address: Any) -> str:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _libc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _libc_trim()


def release_free_memory() -> bool:
    """Give the allocator's free heap pages back to the system (glibc
    ``malloc_trim(0)``); False where there is no such call or nothing was released."""
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(0))


class TrimAfterBursts:
    """Decides when to call :func:`release_free_memory`: once after each burst of at
    least ``threshold`` failed handshakes, at the first poll that sees none."""

    __slots__ = ("burst", "threshold")

    def __init__(self, threshold: int = TRIM_AFTER_FAILURES) -> None:
        self.threshold = threshold
        self.burst = 0

    def observe(self, failed: int) -> bool:
        """``failed`` handshakes in the last poll; True: release memory now."""
        if failed > 0:
            self.burst += failed
            return False
        due, self.burst = self.burst >= self.threshold, 0
        return due


class HandshakeWatch:
    """Counts and logs the failed handshakes of a set of listeners."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._seen: dict[int, int] = {}
        self._dropped: dict[tuple[int, str], int] = {}

    def poll(self, transport: str, listener: mstls.trio.Listener) -> int:
        """Count and log what ``listener`` recorded since the last poll; how many failed."""
        total = listener.failed_handshakes
        failures = listener.pop_handshake_failures()
        new = total - self._seen.get(id(listener), 0)
        self._seen[id(listener)] = total
        reasons: Counter[str] = Counter()
        for index, (address, exc) in enumerate(failures):
            reason = failure_reason(exc)
            reasons[reason] += 1
            if index < LOG_PER_POLL:
                event(
                    QUIET_REASONS.get(reason, logging.INFO),
                    "handshake.failed",
                    f"handshake failed ({reason}): {exc}",
                    peer=_peer(address),
                    transport=transport,
                    reason=reason,
                )
        unrecorded = max(0, new - len(failures))
        if unrecorded:
            reasons["unrecorded"] += unrecorded
        dropped = getattr(listener, "dropped_initials", 0)
        key = (id(listener), "dropped")
        fresh = dropped - self._dropped.get(key, 0)
        self._dropped[key] = dropped
        if fresh > 0:  # Initials that authenticated nothing: forged, corrupted, scans
            reasons["unauthenticated"] += fresh
        for reason, count in reasons.items():
            self.metrics.handshake_failures.labels(transport, reason).inc(count)
        if new > LOG_PER_POLL:
            summary = ", ".join(f"{r}={n}" for r, n in reasons.most_common())
            event(
                logging.WARNING,
                "handshake.failures",
                f"{new} failed handshakes in the last {POLL_INTERVAL} s ({summary})",
                transport=transport,
            )
        return new

    async def run(self, listeners: Sequence[tuple[str, mstls.trio.Listener]]) -> None:
        """Poll every :data:`POLL_INTERVAL` seconds until cancelled."""
        trim = TrimAfterBursts()
        while True:
            await trio.sleep(POLL_INTERVAL)
            failed = sum(self.poll(transport, listener) for transport, listener in listeners)
            if trim.observe(failed):
                release_free_memory()
