"""Bound methods that do not keep their object alive.

A connection hands its own methods to the parts it owns (record callbacks kept in
its packets in flight, the TLS engine's hooks).  A plain bound method there makes a
reference cycle (connection -> part -> method -> connection), so a dropped
connection waits for the cyclic garbage collector, which runs rarely once the heap
is large: the daemon's memory grew with every connection served (issue 11, the
soak's RSS slope; an Initial flood's timed-out handshakes).  :func:`weak_method`
breaks the cycle; the part outlives its owner only as garbage, so what to do when
the owner is gone is the caller's choice (``dead``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def weak_method(method: Callable[P, R], dead: Callable[P, R]) -> Callable[P, R]:
    """``method`` (a bound method) without a strong reference to its object;
    ``dead`` runs instead once the object is gone."""
    ref = weakref.WeakMethod(method)

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = ref()
        if bound is None:
            return dead(*args, **kwargs)
        return bound(*args, **kwargs)

    return call
