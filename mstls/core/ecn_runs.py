"""The ECN codepoint of each datagram a listener sends, as runs (RFC 9000 §13.4.2.2).

Theory of operation
-------------------
One listening socket sends for every connection behind it, but each connection
decides its own codepoint: ECT(0) while its validation allows, Not-ECT once it
failed (§13.4.2.2).  :meth:`~mstls.quic.endpoint.ServerEndpoint.datagrams_to_send`
returns one list of ``(datagram, address)`` for all of them and, beside it,
*runs*: ``(end, codepoint)`` pairs in order, the datagrams from the previous
run's ``end`` up to (not including) this ``end`` going out with ``codepoint``.
A connection's datagrams of one call share one codepoint, so the runs cost one
entry per connection called, never per datagram, and neighbours with equal
codepoints share a run.

A driver walks the output with :func:`send_segments`: stretches of one address
and one codepoint, for one batched send each, setting the socket's codepoint
before a stretch only when it differs (``IP_TOS``/``IPV6_TCLASS``).  What the
socket refused keeps its codepoints through :func:`runs_from`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

__all__ = ["CodepointRuns", "add_run", "runs_from", "send_segments"]

#: ``(end, codepoint)`` pairs, ends increasing: see the module documentation.
CodepointRuns = list[tuple[int, int]]


def add_run(runs: CodepointRuns, end: int, codepoint: int) -> None:
    """The datagrams up to ``end`` (from the last run's end) go out with ``codepoint``."""
    if runs and runs[-1][1] == codepoint:
        runs[-1] = (end, codepoint)
    elif not runs or end > runs[-1][0]:
        runs.append((end, codepoint))


def runs_from(runs: CodepointRuns, start: int) -> CodepointRuns:
    """The runs of the datagrams from index ``start`` on, renumbered from 0."""
    return [(end - start, codepoint) for end, codepoint in runs if end > start]


def send_segments(
    out: Sequence[tuple[Any, Any]], runs: CodepointRuns | None
) -> Iterator[tuple[int, int, Any, int | None]]:
    """``(start, end, address, codepoint)`` of each stretch of ``out`` with one
    address and one codepoint, in order; codepoint ``None`` without ``runs`` (the
    socket's codepoint is left as it is).  Datagrams past the last run are Not-ECT."""
    count = len(out)
    index = 0
    if runs is None:  # ECN off: the address-only split, nothing more per datagram
        while index < count:
            addr = out[index][1]
            end = index + 1
            while end < count and out[end][1] == addr:
                end += 1
            yield index, end, addr, None
            index = end
        return
    for stop, codepoint in chain(runs, ((count, 0),)):
        stop = min(stop, count)
        while index < stop:
            addr = out[index][1]
            end = index + 1
            while end < stop and out[end][1] == addr:
                end += 1
            yield index, end, addr, codepoint
            index = end
