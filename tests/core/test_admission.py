"""Handshake admission (mstls.core.admission): token buckets, the bounded table, Retry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.core.admission import (
    DEFAULT_BURST,
    IPV6_PREFIX_BYTES,
    MAX_TRACKED_SOURCES,
    RATE_LIMITED,
    SourceRateLimiter,
    check_admission,
    needs_retry,
    reconfigured,
    refill,
    refusal,
    source_key,
    take,
)
from mstls.exceptions import ConfigurationError, ConnectionTerminated, HandshakeRefused

T0 = 1000.0


def test_burst_then_rate() -> None:
    limiter = SourceRateLimiter(2.0, 3)
    addr = ("192.0.2.1", 5000)
    assert [limiter.admit(addr, T0) for _ in range(4)] == [True, True, True, False]
    assert limiter.refused == 1
    assert not limiter.admit(addr, T0 + 0.49)  # 0.98 tokens: not yet
    assert limiter.admit(addr, T0 + 0.51)  # one token refilled at 2/s
    assert not limiter.admit(addr, T0 + 0.51)
    assert limiter.available(addr, T0 + 100) == 3.0  # capped at the burst


def test_refund_gives_the_token_back_up_to_the_burst() -> None:
    limiter = SourceRateLimiter(0.001, 2)
    addr = ("192.0.2.1", 1)
    assert limiter.admit(addr, T0) and limiter.admit(addr, T0)
    limiter.refund(addr)
    assert limiter.admit(addr, T0)
    assert not limiter.admit(addr, T0)
    for _ in range(5):
        limiter.refund(addr)
    assert limiter.available(addr, T0) == 2.0
    limiter.refund(("198.51.100.1", 1))  # unknown: nothing to give back, nothing made
    assert len(limiter) == 1


def test_sources_are_independent_and_ports_ignored() -> None:
    limiter = SourceRateLimiter(1.0, 1)
    assert limiter.admit(("192.0.2.1", 1), T0)
    assert not limiter.admit(("192.0.2.1", 2), T0)  # same host, another port
    assert limiter.admit(("192.0.2.2", 1), T0)  # another host


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert source_key(("2001:db8:1:2::1", 1, 0, 0)) == source_key(("2001:db8:1:2:ffff::9", 2))
    assert source_key(("2001:db8:1:2::1", 1)) != source_key(("2001:db8:1:3::1", 1))
    assert len(source_key(("2001:db8::1", 1))) == IPV6_PREFIX_BYTES
    assert source_key(("::ffff:192.0.2.7", 1)) == source_key(("192.0.2.7", 9))
    assert source_key(("fe80::1%eth0", 1)) == source_key(("fe80::2", 1))
    # Not an IP address: keyed by its text, never an exception.
    assert source_key(("not-an-ip", 1)) != source_key(("192.0.2.7", 1))
    assert source_key("/tmp/sock") == source_key(("/tmp/sock",))


def test_backwards_clock_adds_nothing() -> None:
    limiter = SourceRateLimiter(10.0, 1)
    addr = ("192.0.2.1", 1)
    assert limiter.admit(addr, T0)
    assert not limiter.admit(addr, T0 - 50)
    assert not limiter.admit(addr, T0)  # the stamp did not move backwards either
    assert limiter.admit(addr, T0 + 0.1)


def test_idle_buckets_are_swept() -> None:
    limiter = SourceRateLimiter(1.0, 2)
    for i in range(100):
        limiter.admit((f"10.0.{i // 256}.{i % 256}", 1), T0)
    assert len(limiter) == 100
    later = T0 + 10  # every bucket has refilled: each admission sweeps a few
    for i in range(40):
        limiter.admit((f"10.1.0.{i}", 1), later)
    assert len(limiter) < 100
    assert limiter.evicted == 0


def test_full_table_evicts_the_least_recently_used() -> None:
    limiter = SourceRateLimiter(0.001, 1, max_sources=3)
    a, b, c, d = ((f"192.0.2.{i}", 1) for i in range(1, 5))
    for addr in (a, b, c):
        assert limiter.admit(addr, T0)
    assert not limiter.admit(a, T0)  # a is now the most recently used
    assert limiter.admit(d, T0)  # evicts b, not yet refilled
    assert len(limiter) == 3 and limiter.evicted == 1
    assert not limiter.admit(a, T0)  # a's empty bucket was kept
    assert limiter.admit(b, T0)  # b starts again with a full burst


def test_flood_of_distinct_sources_stays_bounded() -> None:
    limiter = SourceRateLimiter(1.0, 1, max_sources=1000)
    for i in range(20_000):
        limiter.admit((f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1), T0 + i * 1e-6)
        assert len(limiter) <= 1000
    assert len(limiter) == 1000
    assert MAX_TRACKED_SOURCES >= 1000


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(0.01, 1000.0),
    burst=st.integers(1, 50),
    steps=st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(0, 7)), max_size=60),
)
def test_refill_arithmetic_matches_a_model(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    """Admissions in any window never exceed burst + rate * elapsed, and the
    limiter agrees with a direct model of one bucket."""
    limiter = SourceRateLimiter(rate, burst)
    addr = ("198.51.100.1", 1)
    now, tokens, stamp, admitted = T0, float(burst), T0, 0
    for gap, attempts in steps:
        now += gap
        for _ in range(attempts):
            expected, tokens = take(tokens, now - stamp, rate, burst)
            stamp = now
            assert limiter.admit(addr, now) is expected
            admitted += expected
            assert 0.0 <= tokens <= burst
    assert admitted <= burst + rate * (now - T0) + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    max_sources=st.integers(1, 40),
    hosts=st.lists(st.integers(0, 200), max_size=300),
    gaps=st.floats(0.0, 2.0),
)
def test_table_size_is_bounded(max_sources: int, hosts: list[int], gaps: float) -> None:
    limiter = SourceRateLimiter(5.0, 3, max_sources=max_sources)
    now = T0
    for host in hosts:
        now += gaps
        limiter.admit((f"203.0.113.{host}" if host < 256 else "::1", 1), now)
        assert len(limiter) <= max_sources


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.floats(0.0, 100.0),
    elapsed=st.floats(-10.0, 100.0),
    rate=st.floats(0.001, 1000.0),
    burst=st.integers(1, 100),
)
def test_refill_is_monotonic_and_capped(
    tokens: float, elapsed: float, rate: float, burst: int
) -> None:
    tokens = min(tokens, float(burst))
    after = refill(tokens, elapsed, rate, burst)
    assert tokens <= after <= burst
    assert after == min(float(burst), tokens + max(0.0, elapsed) * rate)


@pytest.mark.parametrize(
    ("validated", "retry", "handshakes", "threshold", "expected"),
    [
        (False, False, 5, None, False),
        (False, True, 0, None, True),
        (True, True, 99, 1, False),  # a valid token is never retried
        (False, False, 3, 4, False),
        (False, False, 4, 4, True),  # at the threshold
        (False, False, 0, 0, True),  # threshold 0: always
    ],
)
def test_needs_retry(
    validated: bool, retry: bool, handshakes: int, threshold: int | None, expected: bool
) -> None:
    assert (
        needs_retry(
            validated=validated, retry=retry, handshakes=handshakes, retry_threshold=threshold
        )
        is expected
    )


@pytest.mark.parametrize(
    ("rate", "burst", "threshold", "message"),
    [
        (0.0, 1, None, "handshake_rate_per_source: expected a positive number"),
        (-1, 1, None, "handshake_rate_per_source"),
        (float("inf"), 1, None, "handshake_rate_per_source"),
        (True, 1, None, "handshake_rate_per_source"),
        ("5", 1, None, "handshake_rate_per_source"),
        (1.0, 0, None, "handshake_burst_per_source: expected an integer of at least 1"),
        (1.0, 1.5, None, "handshake_burst_per_source"),
        (1.0, 1, -1, "retry_threshold: expected a number of handshakes"),
        (None, 1, 2.5, "retry_threshold"),
    ],
)
def test_bad_settings_name_the_option(
    rate: object, burst: object, threshold: object, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_admission(rate, burst, threshold)  # type: ignore[arg-type]


def test_reconfigured_keeps_the_table() -> None:
    limiter = SourceRateLimiter(1.0, 1)
    addr = ("192.0.2.1", 1)
    limiter.admit(addr, T0)
    same = reconfigured(limiter, 2.0, 4)
    assert same is limiter and limiter.rate == 2.0 and limiter.burst == 4
    assert limiter.available(addr, T0) == 0.0  # the empty bucket survived the reload
    assert reconfigured(limiter, None, 4) is None
    fresh = reconfigured(None, 3.0, DEFAULT_BURST)
    assert fresh is not None and fresh.burst == DEFAULT_BURST


def test_refusal_exception() -> None:
    exc = refusal(RATE_LIMITED)
    assert isinstance(exc, HandshakeRefused) and isinstance(exc, ConnectionTerminated)
    assert exc.cause == RATE_LIMITED
    assert exc.code == TransportErrorCode.CONNECTION_REFUSED and not exc.by_peer
    copy = exc.fresh()
    assert copy.cause == RATE_LIMITED and copy is not exc
