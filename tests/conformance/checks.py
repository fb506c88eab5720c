"""Assertions shared by the conformance tests: "every waiter saw the same failure".

What is compared (rules E2, E3, E9 of docs/error-model.md, as in the brief):

* the **mstls class** of each exception (:func:`~.adapters.mstls_class`: the
  trio API's ``BrokenResourceError`` flavour removed);
* its **state**, :func:`state`: ``code``, ``reason``, ``by_peer``,
  ``is_application``, ``bytes_received``, ``error_code``, ``alert`` — whichever
  the class has;
* each queue's **signature**, :func:`signature`: ``(reason, code)`` per entry.
  The library of an entry (``quic``/``qmux``, ``tls``, ``sys``) names the layer
  that recorded it and legitimately differs between transports, as do the
  reason texts (they name the call, the transport, the socket error); the
  :class:`~mstls.errors.Reason` codes and their order may not.

The channel's entries are compared as objects: the waiters' queues must hold
*copies of the channel's entries* (the same frozen objects, E3), followed by
one ``CONNECTION_TERMINATED`` entry of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from mstls.errors import ErrorEntry, Reason

from .adapters import Client, Op, Outcome, mstls_class

__all__ = ["STATE_ATTRIBUTES", "Expect", "assert_same_failure", "signature", "state"]

#: The attributes :func:`state` reads, when the exception has them.
STATE_ATTRIBUTES = (
    "code",
    "reason",
    "by_peer",
    "is_application",
    "bytes_received",
    "error_code",
    "alert",
)


def state(exc: BaseException) -> dict[str, Any]:
    """The attributes of ``exc`` that every waiter must see alike."""
    return {name: getattr(exc, name) for name in STATE_ATTRIBUTES if hasattr(exc, name)}


def signature(entries: Sequence[ErrorEntry]) -> list[tuple[Reason, int | None]]:
    """``(reason, code)`` of each entry, oldest first."""
    return [(entry.reason, entry.code) for entry in entries]


@dataclass(frozen=True)
class Expect:
    """What a cause of death must raise, the same on both transports and both APIs.

    ``cls`` is the exact mstls class (``subclass_of`` is checked when ``cls`` is
    ``None``); ``attrs`` the attribute values; ``reasons`` the reason codes of
    every waiter's queue, oldest first (the last is always CONNECTION_TERMINATED).
    """

    reasons: tuple[Reason, ...]
    cls: type[BaseException] | None = None
    subclass_of: type[BaseException] = BaseException
    attrs: dict[str, Any] = field(default_factory=dict)


def _describe(outcome: Outcome) -> str:
    exc = outcome.exc
    return f"{outcome.call.op}: {type(exc).__name__}: {exc} {signature(outcome.entries)}"


def assert_failure(outcome: Outcome, expect: Expect, api: str) -> None:
    """One outcome meets ``expect``."""
    exc = outcome.exc
    assert exc is not None, f"{outcome.call.op} returned {outcome.value!r} instead of failing"
    cls = mstls_class(exc)
    if expect.cls is not None:
        assert cls is expect.cls, _describe(outcome)
    assert issubclass(cls, expect.subclass_of), _describe(outcome)
    if api == "trio":  # the trio API's failures are also trio's broken-resource errors
        assert isinstance(exc, trio.BrokenResourceError), _describe(outcome)
    got = state(exc)
    for name, value in expect.attrs.items():
        assert got.get(name) == value, f"{name}: {got.get(name)!r}; {_describe(outcome)}"
    reasons = tuple(entry.reason for entry in outcome.entries)
    assert reasons == expect.reasons, _describe(outcome)


#: Operations on the connection object itself (not on one of its streams).
CONNECTION_OPS = frozenset({Op.ACCEPT, Op.OPEN, Op.CLOSE})


def assert_same_failure(
    client: Client, outcomes: Sequence[Outcome], expect: Expect, *, closed_here: bool = False
) -> None:
    """Every waiter woke with the same failure, its queue held the channel's
    entries and a CONNECTION_TERMINATED; a later call from a fresh thread (task)
    sees them again (E3); the entries stay on the channel.

    ``closed_here``: the program closed the connection itself.  The trio API
    then follows trio's resource contract (``AsyncResource.aclose``) for the
    connection object: its blocked and later calls raise ``ClosedResourceError``
    with nothing in the queue; calls on its streams still see the failure.
    """
    assert outcomes, "no waiter"
    trio_closed = closed_here and client.api == "trio"
    if trio_closed:
        for outcome in outcomes:
            if outcome.call.op in CONNECTION_OPS:
                assert isinstance(outcome.exc, trio.ClosedResourceError), outcome
                assert outcome.entries == []
        outcomes = [o for o in outcomes if o.call.op not in CONNECTION_OPS]
    exceptions = [o.exc for o in outcomes]
    assert len({id(e) for e in exceptions}) == len(exceptions), "waiters share an exception"
    channel = client.channel_entries()
    assert channel, "the connection's channel holds no entries (E2)"
    first = outcomes[0]
    assert first.exc is not None, _describe(first)
    reference = (mstls_class(first.exc), state(first.exc), signature(first.entries))
    for outcome in outcomes:
        assert_failure(outcome, expect, client.api)
        assert outcome.exc is not None
        seen = (mstls_class(outcome.exc), state(outcome.exc), signature(outcome.entries))
        assert seen == reference, f"{_describe(outcome)} differs from {_describe(first)}"
        assert tuple(outcome.entries[:-1]) == channel, "the queue must copy the channel's entries"
        assert outcome.entries[-1].reason is Reason.CONNECTION_TERMINATED
    # E3: later calls, from new threads or tasks, on the connection and on a stream
    # (after the program's own close, the trio API replays on streams only).
    late = [] if trio_closed else [client.call(Op.ACCEPT), client.call(Op.OPEN)]
    if first.call.stream is not None:
        late += [
            client.call(Op.READ, first.call.stream),
            client.call(Op.WRITE, first.call.stream, b"x"),
        ]
    assert late, "no later call was made"
    for outcome in late:
        assert_failure(outcome, expect, client.api)
        assert outcome.exc is not None
        seen = (mstls_class(outcome.exc), state(outcome.exc), signature(outcome.entries))
        assert seen == reference, f"later {_describe(outcome)} differs from {_describe(first)}"
    assert client.channel_entries() == channel, "the entries must stay on the channel"
