"""One small client interface over both mstls APIs, so every conformance test runs 4 ways.

Theory of operation
-------------------
A test drives a :class:`Client` from the test's thread with plain synchronous
calls; the client performs each *operation* (:class:`Op`) with its API:

* :class:`BlockingClient`: the blocking API (``mstls.connect``), every operation
  in a **fresh thread**;
* :class:`TrioClient`: the trio API (``mstls.trio.connect``) in a trio loop that
  runs in a background thread; every operation is a **fresh trio task** (via
  ``trio.from_thread.run``, which starts a new system task each time);
* :class:`AsyncioClient`: the asyncio API (``mstls.asyncio.connect``) in an
  asyncio loop of a background thread; every operation is a **fresh asyncio
  task** (``asyncio.run_coroutine_threadsafe``).  asyncio has no
  ``wait_all_tasks_blocked``: :meth:`Client.start` settles as the blocking client does.

So "from another thread/task" is what every call means, and each call returns
an :class:`Outcome`: its value or exception *and a snapshot of the error queue
of the thread or task that made it*, taken right after (rule E1: no other
thread's or task's queue is ever seen).  :meth:`Client.start` runs N
operations at once (N threads, or N tasks) and returns once all of them are
blocked (trio: ``wait_all_tasks_blocked``; threads: a short settling sleep — a
late waiter only meets the failure on entry instead of in its wait, which the
error model says must look the same); :meth:`Waiters.join` collects them.

Every operation has a time limit (:data:`WAKE_TIMEOUT`; each step of the
:data:`LONG_OPS`): a waiter that is never woken fails with :class:`~mstls.Timeout`
(blocking) or :class:`trio.TooSlowError`, which no expectation of the suite
accepts.  ``Listener.accept`` alone waits without a limit of its own (see
:func:`_blocking_op`) and :meth:`Waiters.join`'s limit catches it.

What legitimately differs between the APIs, and the suite normalises:
the trio API raises the same mstls classes turned into subclasses of
:class:`trio.BrokenResourceError` (:func:`mstls_class` finds the mstls class).
Both have ``connect(..., lazy=True)``: the first operation starts the handshake.
"""

from __future__ import annotations

from .asyncio_client import AsyncioClient
from .blocking_client import BlockingClient
from .client_base import (
    APIS,
    WAKE_TIMEOUT,
    Call,
    Client,
    Op,
    Outcome,
    Waiters,
    mstls_class,
)
from .trio_client import TrioClient

__all__ = [
    "APIS",
    "WAKE_TIMEOUT",
    "AsyncioClient",
    "BlockingClient",
    "Call",
    "Client",
    "Op",
    "Outcome",
    "TrioClient",
    "Waiters",
    "make_client",
    "mstls_class",
]


def make_client(api: str, transport: str) -> Client:
    """A :class:`BlockingClient`, :class:`TrioClient` or :class:`AsyncioClient`
    (``"asyncio-uvloop"``: on a uvloop loop)."""
    if api == "blocking":
        return BlockingClient(transport)
    if api == "trio":
        return TrioClient(transport)
    return AsyncioClient(transport, uvloop=api == "asyncio-uvloop")
