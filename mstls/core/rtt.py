"""The RTT estimate of a path (RFC 9002 §5): latest, minimum and smoothed RTT and
its variation, and the PTO base and loss-time threshold derived from them (§6.1.2,
§6.2.1).  Used by loss recovery (:mod:`.recovery`), path validation and QMux's
PING-based RTT."""

from __future__ import annotations

__all__ = ["K_GRANULARITY", "K_INITIAL_RTT", "K_TIME_THRESHOLD", "RttEstimator"]

#: RFC 9002 §6.1.2 kTimeThreshold.
K_TIME_THRESHOLD = 9 / 8
#: RFC 9002 §6.1.2 kGranularity, seconds.
K_GRANULARITY = 0.001
#: RFC 9002 §6.2.2 kInitialRtt, seconds.
K_INITIAL_RTT = 0.333


class RttEstimator:
    """RFC 9002 §5: latest, minimum and smoothed RTT and its variation (seconds)."""

    __slots__ = ("first_sample_time", "latest_rtt", "min_rtt", "rttvar", "smoothed_rtt")

    def __init__(self, initial_rtt: float = K_INITIAL_RTT) -> None:
        self.latest_rtt = 0.0
        self.min_rtt = 0.0
        self.smoothed_rtt = initial_rtt
        self.rttvar = initial_rtt / 2
        #: ``now`` of the first sample, or ``None`` before it (§5.3, A.7).
        self.first_sample_time: float | None = None

    @property
    def has_sample(self) -> bool:
        return self.first_sample_time is not None

    def update(
        self, latest_rtt: float, ack_delay: float, now: float, *, max_ack_delay: float | None
    ) -> None:
        """Take one sample (§5.3, A.7 UpdateRtt).

        ``max_ack_delay`` is ``None`` before the handshake is confirmed (the peer's
        ack delay is then not capped); min_rtt never subtracts the ack delay.
        """
        self.latest_rtt = latest_rtt
        if self.first_sample_time is None:
            self.first_sample_time = now
            self.min_rtt = latest_rtt
            self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            return
        self.min_rtt = min(self.min_rtt, latest_rtt)
        if max_ack_delay is not None and ack_delay > max_ack_delay:
            ack_delay = max_ack_delay
        adjusted = latest_rtt
        if latest_rtt >= self.min_rtt + ack_delay:
            adjusted = latest_rtt - ack_delay
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed_rtt - adjusted)
        self.smoothed_rtt = 0.875 * self.smoothed_rtt + 0.125 * adjusted

    def pto_base(self) -> float:
        """``smoothed_rtt + max(4 * rttvar, kGranularity)`` (§6.2.1), without backoff."""
        return self.smoothed_rtt + max(4 * self.rttvar, K_GRANULARITY)

    def loss_delay(self) -> float:
        """§6.1.2 time threshold: ``max(kTimeThreshold * max(srtt, latest_rtt), kGranularity)``."""
        return max(K_TIME_THRESHOLD * max(self.latest_rtt, self.smoothed_rtt), K_GRANULARITY)

    def __repr__(self) -> str:
        return (
            f"RttEstimator(latest={self.latest_rtt:.6f}, min={self.min_rtt:.6f}, "
            f"smoothed={self.smoothed_rtt:.6f}, rttvar={self.rttvar:.6f})"
        )
