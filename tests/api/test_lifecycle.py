"""Lifecycle of the blocking API: closing a listener under a waiter, a handler's
failure inside the assist thread, configurations checked before any socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import mstls

from .helpers import TIMEOUT, server_config

pytestmark = pytest.mark.network

TRANSPORTS = ["udp", "tcp"]
#: Threads blocked in Listener.accept() when the listener is closed.
ACCEPT_WAITERS = 4


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def accept_condition(listener: mstls.Listener) -> threading.Condition:
    handler = getattr(listener, "_tcp", None) or listener._handler
    cond = handler.accept_cond
    assert isinstance(cond, threading.Condition)
    return cond


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_close_from_another_thread_wakes_every_accept_waiter(transport: str) -> None:
    """Issue 17 point 4 (brief C2): each thread blocked in accept() wakes with
    ListenerClosed as soon as another thread closes the listener."""
    listener = mstls.listen("127.0.0.1", 0, server_config(), transport=transport)
    outcomes: list[BaseException | None] = []

    def waiter() -> None:
        try:
            listener.accept(timeout=TIMEOUT * 6)  # far longer than the joins below
        except BaseException as exc:  # recorded for the assertion
            outcomes.append(exc)
        else:
            outcomes.append(None)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(ACCEPT_WAITERS)]
    for thread in threads:
        thread.start()
    cond = accept_condition(listener)
    # Every waiter is inside Condition.wait (CPython keeps them in _waiters).
    wait_for(lambda: len(cond._waiters) == ACCEPT_WAITERS)  # type: ignore[attr-defined]
    listener.close()
    deadline = time.monotonic() + TIMEOUT  # one bound for all the joins together
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a waiter was not woken"
    assert len(outcomes) == ACCEPT_WAITERS
    assert all(isinstance(exc, mstls.ListenerClosed) for exc in outcomes), outcomes
