"""The timer tables: which timers run in which state, in which order (core/timers.py)."""

from __future__ import annotations

import pytest

from mstls.core.lifecycle import QUIC_TRANSITIONS, Lifecycle, LifecycleEvent, State
from mstls.core.timers import Timer, TimerRow, TimerTable
from mstls.qmux.connection import QMUX_TIMERS
from mstls.quic.connection import QUIC_TIMERS


class Fake:
    def __init__(self) -> None:
        self.lifecycle = Lifecycle(QUIC_TRANSITIONS)
        self.deadlines: dict[Timer, float | None] = {t: None for t in Timer}
        self.fired: list[Timer] = []


def _row(timer: Timer, *, closes: bool = False) -> TimerRow[Fake]:
    def fire(conn: Fake, now: float) -> None:
        conn.fired.append(timer)
        if closes:
            conn.lifecycle.apply(LifecycleEvent.IDLE_TIMEOUT)

    return TimerRow(timer, lambda c: c.deadlines[timer], fire)


def _table() -> TimerTable[Fake]:
    live = (_row(Timer.IDLE, closes=True), _row(Timer.KEY_DISCARD), _row(Timer.LOSS_DETECTION))
    return TimerTable(
        {
            State.HANDSHAKE: live,
            State.ESTABLISHED: live,
            State.CLOSING: (_row(Timer.CLOSE),),
            State.DRAINING: (_row(Timer.CLOSE),),
            State.TERMINATED: (),
        }
    )


def test_next_deadline_is_the_earliest_armed_in_the_state() -> None:
    conn, table = Fake(), _table()
    assert table.next_deadline(conn) is None
    conn.deadlines[Timer.LOSS_DETECTION] = 5.0
    conn.deadlines[Timer.KEY_DISCARD] = 3.0
    conn.deadlines[Timer.CLOSE] = 1.0  # not armed while live
    assert table.next_deadline(conn) == 3.0


def test_fire_runs_every_passed_timer_in_order() -> None:
    conn, table = Fake(), _table()
    conn.deadlines[Timer.KEY_DISCARD] = 1.0
    conn.deadlines[Timer.LOSS_DETECTION] = 1.0
    table.fire(conn, 0.5)
    assert conn.fired == []
    table.fire(conn, 1.0)  # the boundary counts as passed
    assert conn.fired == [Timer.KEY_DISCARD, Timer.LOSS_DETECTION]


def test_fire_stops_once_the_state_changed() -> None:
    conn, table = Fake(), _table()
    for timer in Timer:
        conn.deadlines[timer] = 1.0
    table.fire(conn, 2.0)
    assert conn.fired == [Timer.IDLE]  # the idle timeout ended it: nothing else ran
    assert conn.lifecycle.state is State.TERMINATED
    assert table.next_deadline(conn) is None


def test_a_table_must_cover_every_state() -> None:
    with pytest.raises(ValueError, match="TERMINATED"):
        TimerTable[Fake]({s: () for s in State if s is not State.TERMINATED})


@pytest.mark.parametrize(
    ("table", "live"),
    [
        (
            QUIC_TIMERS,
            (
                Timer.IDLE,
                Timer.HANDSHAKE,
                Timer.KEY_DISCARD,
                Timer.LOSS_DETECTION,
                Timer.PATH_VALIDATION,
                Timer.SEND,
            ),
        ),
        (QMUX_TIMERS, (Timer.HANDSHAKE, Timer.IDLE, Timer.KEEPALIVE)),
    ],
)
def test_connection_tables(table: TimerTable[object], live: tuple[Timer, ...]) -> None:  # type: ignore[type-var]
    """RFC 9000 §10.2: while closing or draining only the close timer runs."""
    assert table.timers(State.HANDSHAKE) == table.timers(State.ESTABLISHED) == live
    assert table.timers(State.CLOSING) == table.timers(State.DRAINING) == (Timer.CLOSE,)
    assert table.timers(State.TERMINATED) == ()
