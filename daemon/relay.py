"""Copy bytes both ways between two trio streams, propagating half-close.

Used by the daemon's ``forward`` service (mstls stream ⇄ backend TCP) and by
``mstls tunnel`` (local TCP ⇄ mstls stream).  Each direction copies until its
source ends cleanly, then ends its sink with ``send_eof`` (TCP shutdown(SHUT_WR)
or a stream FIN), so a request/response protocol that half-closes keeps
working across the relay.  If either direction fails (a reset, a broken
socket) the other is cancelled and :func:`relay` reports which *side* failed;
the caller decides how to abort (a stream reset with a code, a TCP close).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

import mstls

__all__ = ["CHUNK_SIZE", "RelayOutcome", "relay"]

#: Bytes asked for per read.
CHUNK_SIZE = 64 * 1024
#: What counts as "this side failed" (peer resets, broken sockets, closed streams).
FAILURES = (trio.BrokenResourceError, trio.ClosedResourceError, mstls.Error, OSError)


@attrs.define
class RelayOutcome:
    """How a relay ended: ``failed`` is None (both directions ended cleanly), "a" or "b"."""

    failed: str | None = None
    error: BaseException | None = None
    a_to_b: int = 0
    b_to_a: int = 0


async def _pump(
    source: trio.abc.ReceiveStream,
    sink: trio.abc.HalfCloseableStream,
    names: tuple[str, str],
    outcome: RelayOutcome,
    attr: str,
    count: Callable[[int], None] | None,
    cancel: trio.CancelScope,
) -> None:
    reading = True
    try:
        while True:
            reading = True
            data = await source.receive_some(CHUNK_SIZE)
            if not data:
                break
            reading = False
            await sink.send_all(data)
            setattr(outcome, attr, getattr(outcome, attr) + len(data))
            if count is not None:
                count(len(data))
        reading = False
        await sink.send_eof()
    except FAILURES as exc:
        if outcome.failed is None:
            outcome.failed = names[0] if reading else names[1]
            outcome.error = exc
        cancel.cancel()


async def relay(
    a: trio.abc.HalfCloseableStream,
    b: trio.abc.HalfCloseableStream,
    *,
    count_a_to_b: Callable[[int], None] | None = None,
    count_b_to_a: Callable[[int], None] | None = None,
) -> RelayOutcome:
    """Copy ``a``→``b`` and ``b``→``a`` until both ended; never closes either stream."""
    outcome = RelayOutcome()
    async with trio.open_nursery() as nursery:
        cancel = nursery.cancel_scope
        nursery.start_soon(_pump, a, b, ("a", "b"), outcome, "a_to_b", count_a_to_b, cancel)
        nursery.start_soon(_pump, b, a, ("b", "a"), outcome, "b_to_a", count_b_to_a, cancel)
    return outcome
