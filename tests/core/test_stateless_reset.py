"""Stateless reset tokens, building, detection and rate limiting (RFC 9000 §10.3)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.core.stateless_reset import (
    MAX_STATELESS_RESET_LENGTH,
    MIN_STATELESS_RESET_LENGTH,
    MIN_TRIGGER_LENGTH,
    STATELESS_RESET_KEY_LENGTH,
    StatelessResetKey,
    StatelessResetLimiter,
    build_stateless_reset,
    is_stateless_reset,
    trailing_token,
)
from mstls.exceptions import ConfigurationError
from mstls.wire.packet import FIXED_BIT, HEADER_FORM_BIT

KEY = StatelessResetKey(bytes(range(32)))
TOKEN = bytes(range(100, 116))


def counting_rng(n: int) -> bytes:
    """Deterministic 'random' bytes with every bit set, to check masking."""
    return b"\xff" * n


# -- keys and tokens ----------------------------------------------------------------


def test_token_is_truncated_hmac_sha256_of_the_cid() -> None:
    cid = bytes.fromhex("0102030405060708")
    expected = hmac.new(bytes(range(32)), cid, hashlib.sha256).digest()[:16]
    assert KEY.token_for(cid) == expected
    assert len(expected) == 16


def test_token_is_stable_for_a_key_and_differs_between_cids_and_keys() -> None:
    cid = b"\xaa" * 8
    again = StatelessResetKey.from_bytes(bytes(KEY))
    assert again.token_for(cid) == KEY.token_for(cid)
    assert KEY.token_for(cid) != KEY.token_for(b"\xab" * 8)
    other = StatelessResetKey(bytes(32))
    assert other.token_for(cid) != KEY.token_for(cid)
    assert KEY.token_for(memoryview(cid)) == KEY.token_for(cid)


def test_generate_uses_the_rng_and_key_round_trips() -> None:
    seen: list[int] = []

    def rng(n: int) -> bytes:
        seen.append(n)
        return b"\x07" * n

    key = StatelessResetKey.generate(rng)
    assert seen == [STATELESS_RESET_KEY_LENGTH]
    assert bytes(key) == b"\x07" * 32
    assert StatelessResetKey.generate() is not None
    assert bytes(StatelessResetKey.generate()) != bytes(StatelessResetKey.generate())


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_key_of_wrong_length_is_a_configuration_error(length: int) -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        StatelessResetKey.from_bytes(b"k" * length)


def test_key_repr_hides_the_secret() -> None:
    assert bytes(range(32)).hex() not in repr(KEY)
    assert "secret" in repr(KEY)


# -- building -----------------------------------------------------------------------


@pytest.mark.parametrize("trigger", [0, 1, 20, 21])
def test_no_reset_for_triggers_too_short(trigger: int) -> None:
    assert trigger < MIN_TRIGGER_LENGTH
    assert build_stateless_reset(TOKEN, trigger) is None


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [(22, 21), (23, 22), (42, 41), (44, 43), (45, 43), (1200, 43), (65527, 43)],
)
def test_reset_length_rules(trigger: int, expected: int) -> None:
    reset = build_stateless_reset(TOKEN, trigger)
    assert reset is not None
    assert len(reset) == expected
    assert len(reset) < trigger
    assert MIN_STATELESS_RESET_LENGTH <= len(reset) <= MAX_STATELESS_RESET_LENGTH


def test_reset_looks_like_a_short_header_and_ends_in_the_token() -> None:
    reset = build_stateless_reset(TOKEN, 100, rng=counting_rng)
    assert reset is not None
    assert reset[0] & HEADER_FORM_BIT == 0
    assert reset[0] & FIXED_BIT
    assert reset[0] == 0x7F  # all other bits come from the rng
    assert reset[1:-16] == b"\xff" * (len(reset) - 17)
    assert reset[-16:] == TOKEN


def test_reset_first_byte_is_forced_even_with_zero_rng() -> None:
    reset = build_stateless_reset(TOKEN, 50, rng=bytes)
    assert reset is not None
    assert reset[0] == 0x40


def test_reset_bytes_are_unpredictable() -> None:
    first = build_stateless_reset(TOKEN, 100)
    second = build_stateless_reset(TOKEN, 100)
    assert first is not None and second is not None
    assert first[1:-16] != second[1:-16]


def test_build_rejects_a_bad_token() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        build_stateless_reset(b"short", 100)


def test_looping_resets_shrink_until_they_stop() -> None:
    """§10.3.3: two endpoints answering each other's resets must stop."""
    length = 1200
    rounds = 0
    while (reset := build_stateless_reset(TOKEN, length)) is not None:
        assert len(reset) < length
        length = len(reset)
        rounds += 1
    assert length == MIN_STATELESS_RESET_LENGTH
    assert rounds == MAX_STATELESS_RESET_LENGTH - MIN_STATELESS_RESET_LENGTH + 1


# -- detection ----------------------------------------------------------------------


def test_round_trip_detection() -> None:
    token = KEY.token_for(b"\x01" * 8)
    reset = build_stateless_reset(token, 1200)
    assert reset is not None
    assert is_stateless_reset(reset, [token])
    assert is_stateless_reset(memoryview(reset), {token, TOKEN})
    assert is_stateless_reset(bytearray(reset), (TOKEN, token))
    assert trailing_token(reset) == token


def test_detection_rejects_wrong_tokens_and_empty_sets() -> None:
    reset = build_stateless_reset(TOKEN, 1200)
    assert reset is not None
    assert not is_stateless_reset(reset, [])
    assert not is_stateless_reset(reset, [KEY.token_for(b"x")])
    flipped = reset[:-1] + bytes([reset[-1] ^ 1])
    assert not is_stateless_reset(flipped, [TOKEN])


@pytest.mark.parametrize("length", [0, 1, 16, 17, 20])
def test_detection_rejects_short_datagrams(length: int) -> None:
    datagram = (b"\x40" * 20 + TOKEN)[-length:] if length else b""
    assert len(datagram) == length
    assert not is_stateless_reset(datagram, [TOKEN, datagram[-16:]])
    assert trailing_token(datagram) is None


def test_detection_accepts_the_minimum_length() -> None:
    datagram = b"\x40" * 5 + TOKEN
    assert len(datagram) == MIN_STATELESS_RESET_LENGTH
    assert is_stateless_reset(datagram, [TOKEN])


def test_detection_ignores_the_first_byte() -> None:
    """§10.3.1 matches the trailing 16 bytes only."""
    assert is_stateless_reset(b"\xc3" + b"\x00" * 30 + TOKEN, [TOKEN])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_random_datagrams_are_never_resets_without_tokens(datagram: bytes) -> None:
    assert is_stateless_reset(datagram, []) is False
    assert is_stateless_reset(memoryview(datagram), set()) is False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.binary(min_size=16, max_size=16), max_size=4))
def test_detection_matches_the_trailing_bytes(datagram: bytes, tokens: list[bytes]) -> None:
    expected = len(datagram) >= MIN_STATELESS_RESET_LENGTH and datagram[-16:] in tokens
    assert is_stateless_reset(datagram, tokens) is expected


# -- rate limiting ------------------------------------------------------------------


def test_limiter_allows_a_burst_then_refills_at_the_rate() -> None:
    limiter = StatelessResetLimiter(rate_per_second=10, burst=3)
    assert [limiter.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not limiter.allow(0.05)  # half a credit
    assert limiter.allow(0.1)
    assert not limiter.allow(0.1)
    # A long pause refills only up to the burst.
    assert [limiter.allow(100.0) for _ in range(4)] == [True, True, True, False]


def test_limiter_ignores_a_clock_going_backwards() -> None:
    limiter = StatelessResetLimiter(rate_per_second=1, burst=1)
    assert limiter.allow(10.0)
    assert not limiter.allow(5.0)
    assert not limiter.allow(10.5)
    assert limiter.allow(11.0)


def test_limiter_with_zero_rate_allows_only_the_burst() -> None:
    limiter = StatelessResetLimiter(rate_per_second=0, burst=2)
    assert [limiter.allow(float(t)) for t in range(5)] == [True, True, False, False, False]


def test_limiter_defaults_and_validation() -> None:
    limiter = StatelessResetLimiter()
    assert limiter.allow(0.0)
    with pytest.raises(ValueError):
        StatelessResetLimiter(rate_per_second=-1)
    with pytest.raises(ValueError):
        StatelessResetLimiter(burst=0)
