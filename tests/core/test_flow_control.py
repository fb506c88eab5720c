"""Flow-control windows (RFC 9000 §4): credit, limits, updates and auto-tuning."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.codes import TransportErrorCode
from mstls.core.flow_control import ReceiveWindow, SendCredit
from mstls.exceptions import ProtocolError


def test_send_credit_ignores_smaller_limits() -> None:
    credit = SendCredit(100)
    assert credit.raise_limit(200)
    assert not credit.raise_limit(150)  # §4.1: MAX_DATA that does not increase is ignored
    assert not credit.raise_limit(200)
    assert credit.limit == 200
    credit.used = 50
    assert credit.available == 150


def test_send_credit_reports_blocked_once_per_limit() -> None:
    credit = SendCredit(10)
    assert not credit.note_blocked()  # credit left: not blocked
    credit.used = 10
    assert credit.blocked
    assert credit.note_blocked()
    assert not credit.note_blocked()  # same limit: once
    credit.raise_limit(20)
    credit.used = 20
    assert credit.note_blocked()  # a new limit: report again


def test_receive_window_rejects_data_beyond_limit() -> None:
    window = ReceiveWindow(1000, 4000)
    window.check(1000)
    with pytest.raises(ProtocolError) as info:
        window.check(1001, 0x08)
    assert info.value.error_code == TransportErrorCode.FLOW_CONTROL_ERROR
    assert info.value.frame_type == 0x08


def test_update_due_after_half_the_window() -> None:
    window = ReceiveWindow(1000, 1000)
    assert not window.consume(499)
    assert not window.wants_update
    assert window.consume(1)
    assert window.wants_update
    assert window.advance(0.0, 0.1) == 1500  # consumed + window
    assert not window.wants_update


def test_zero_window_never_asks_for_updates() -> None:
    window = ReceiveWindow(0, 1 << 20)
    assert not window.wants_update
    window.grow(1000)
    assert window.window == 1000  # can still be configured larger


def test_fast_reader_grows_window_up_to_maximum() -> None:
    window = ReceiveWindow(1000, 3000)
    rtt = 0.1
    now = 0.0
    window.consume(500)
    window.advance(now, rtt)  # first update starts the epoch
    assert window.window == 1000
    for _ in range(4):
        now += 0.01  # half a window per 10 ms: a window in far less than 2 RTT
        window.consume(window.limit - window.consumed)
        window.advance(now, rtt)
    assert window.window == 3000  # doubled, capped at the maximum
    assert window.limit == window.consumed + 3000


def test_slow_reader_keeps_its_window() -> None:
    window = ReceiveWindow(1000, 1 << 20)
    rtt = 0.1
    now = 0.0
    for _ in range(5):
        window.consume(600)
        window.advance(now, rtt)
        now += 10 * rtt  # far slower than a window per 2 RTT
    assert window.window == 1000


@settings(max_examples=300, deadline=None)
@given(
    initial=st.integers(1, 10_000),
    reads=st.lists(st.tuples(st.integers(0, 5000), st.floats(0, 1)), max_size=30),
)
def test_limit_never_shrinks_and_window_stays_bounded(
    initial: int, reads: list[tuple[int, float]]
) -> None:
    maximum = 4 * initial
    window = ReceiveWindow(initial, maximum)
    now = 0.0
    previous = window.limit
    for amount, elapsed in reads:
        amount = min(amount, window.limit - window.consumed)  # cannot read beyond the limit
        now += elapsed
        if window.consume(amount):
            window.advance(now, 0.05)
        assert window.limit >= previous
        assert initial <= window.window <= maximum
        assert window.limit - window.consumed <= window.window or window.limit == previous
        previous = window.limit
