"""The lifecycle tables against an oracle written from RFC 9000 §10 and QMux §7.

The oracle below is written as prose-shaped conditions from the specifications,
not from the tables in ``mstls/core/lifecycle.py``; every (state, event) pair and
random event sequences must agree, and a connection ends (one termination
event) exactly once on any path that leaves the live states.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.core.lifecycle import (
    QMUX_TRANSITIONS,
    QUIC_TRANSITIONS,
    Lifecycle,
    LifecycleError,
    LifecycleEvent,
    State,
    TerminationKind,
)

Ev = LifecycleEvent
LIVE = (State.HANDSHAKE, State.ESTABLISHED)
CLOSING_OR_DRAINING = (State.CLOSING, State.DRAINING)
QUIC_ONLY = {Ev.STATELESS_RESET}
QMUX_ONLY = {Ev.CLOSE_NOTIFY, Ev.TCP_FIN, Ev.TCP_RESET, Ev.IO_ERROR, Ev.TLS_ERROR}
TABLES = {"quic": QUIC_TRANSITIONS, "qmux": QMUX_TRANSITIONS}


def events_of(transport: str) -> list[LifecycleEvent]:
    excluded = QMUX_ONLY if transport == "quic" else QUIC_ONLY
    return [e for e in LifecycleEvent if e not in excluded]


def oracle(transport: str, state: State, event: LifecycleEvent) -> tuple[State, str | None]:
    """(next state, termination kind or None), from the specifications' text."""
    live = state in LIVE
    if state is State.TERMINATED:
        return state, None  # §10: once terminated, nothing more happens
    if event is Ev.HANDSHAKE_DONE:
        return (State.ESTABLISHED if state is State.HANDSHAKE else state), None
    if event is Ev.LOCAL_CLOSE:
        # §10.2.1: an endpoint that sends CONNECTION_CLOSE enters the closing state;
        # one that is already closing or draining sends no new close.
        return (State.CLOSING, "close") if live else (state, None)
    if event is Ev.PEER_CLOSE:
        # §10.2.2: receiving CONNECTION_CLOSE enters draining, also from closing.
        if live:
            return State.DRAINING, "close"
        return State.DRAINING, None
    if event is Ev.CLOSE_TIMER:
        # §10.2: the closing/draining state lasts three PTOs, then state is discarded.
        return (State.TERMINATED if state in CLOSING_OR_DRAINING else state), None
    if event is Ev.HANDSHAKE_TIMEOUT:
        # Our own deadline (brief T1): ends a live connection; not armed while closing.
        return (State.TERMINATED, "handshake_timeout") if live else (state, None)
    if event is Ev.ABANDON:
        # §6.2: a client that fails version negotiation abandons the attempt.
        return State.TERMINATED, ("close" if live else None)
    if event is Ev.IDLE_TIMEOUT:
        if not live:
            return state, None  # only the close timer runs while closing/draining
        if transport == "quic":
            return State.TERMINATED, "idle_timeout"  # §10.1: silently closed
        return State.CLOSING, "idle_timeout"  # QMux §7.2: close_notify, wait for the peer's
    if event is Ev.STATELESS_RESET:
        # §10.3.1: the endpoint enters draining and sends nothing: state is gone.
        return State.TERMINATED, ("stateless_reset" if live else None)
    # QMux §7.2/§7.4 and error-model rule E8: the byte stream ended under us.
    kinds = {
        Ev.CLOSE_NOTIFY: "idle_timeout",
        Ev.TCP_FIN: "premature_close",
        Ev.TCP_RESET: "tcp_reset",
        Ev.IO_ERROR: "io_error",
        Ev.TLS_ERROR: "tls_error",
    }
    return State.TERMINATED, (kinds[event] if live else None)


@pytest.mark.parametrize("transport", ["quic", "qmux"])
def test_every_pair_matches_the_oracle(transport: str) -> None:
    table = TABLES[transport]
    pairs = {(s, e) for s in State for e in events_of(transport)}
    assert set(table) == pairs, "the table must be total, and hold no other transport's events"
    for state, event in sorted(pairs, key=lambda p: (p[0].value, p[1].value)):
        row = table[(state, event)]
        expected = oracle(transport, state, event)
        got = (row.next, None if row.terminates is None else str(row.terminates))
        assert got == expected, f"{transport}: {state.name} x {event.name}"


@pytest.mark.parametrize("transport", ["quic", "qmux"])
def test_an_event_of_the_other_transport_is_refused(transport: str) -> None:
    foreign = QMUX_ONLY if transport == "quic" else QUIC_ONLY
    lifecycle = Lifecycle(TABLES[transport])
    for event in foreign:
        with pytest.raises(LifecycleError, match=event.name):
            lifecycle.apply(event)


@settings(max_examples=300, deadline=None)
@given(
    transport=st.sampled_from(["quic", "qmux"]),
    data=st.data(),
)
def test_random_paths_end_exactly_once(transport: str, data: st.DataObject) -> None:
    events = data.draw(st.lists(st.sampled_from(events_of(transport)), max_size=12))
    lifecycle = Lifecycle(TABLES[transport])
    state = State.HANDSHAKE
    ends: list[TerminationKind] = []
    for event in events:
        expected_state, expected_kind = oracle(transport, state, event)
        kind = lifecycle.apply(event)
        assert lifecycle.state is expected_state
        assert (None if kind is None else str(kind)) == expected_kind
        if kind is not None:
            ends.append(kind)
        state = expected_state
        assert lifecycle.live is (state in LIVE)
    left_live = state not in LIVE
    assert len(ends) == (1 if left_live else 0), ends
