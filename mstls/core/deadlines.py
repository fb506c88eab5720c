"""A deadline heap with lazy deletion: the next timer of many objects in O(log N).

Theory of operation
-------------------
A driver serving N connections (or the assist thread serving N sockets) needs
two things per event: the earliest deadline of all of them, and the ones whose
deadline has passed.  Asking each object (``get_timer``) is O(N) per event, so
1,000 idle connections cost a core (issue 11).  Instead each object's deadline
is recorded here whenever it may have changed (:meth:`DeadlineHeap.set`), and

* :meth:`DeadlineHeap.peek` is the earliest recorded deadline;
* :meth:`DeadlineHeap.pop_due` removes and returns the objects whose recorded
  deadline has passed, earliest first.

A change pushes a new ``(deadline, seq, item)`` entry and remembers ``seq`` as
the item's current one; older entries of the item stay in the heap and are
discarded when they reach the top (lazy deletion), so a change costs
O(log N) and never searches the heap.  When stale entries outnumber the live
ones (:data:`COMPACT_RATIO`) the heap is rebuilt from the live entries, so
memory stays O(N) however often deadlines move.

Items are keyed by identity (``id``), so they need not be hashable; the heap
holds a reference to every item it tracks until :meth:`DeadlineHeap.discard`.
Sans-I/O: no clock, the caller passes ``now``.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

__all__ = ["COMPACT_MIN", "COMPACT_RATIO", "DeadlineHeap"]

T = TypeVar("T")

#: Rebuild the heap once it holds this many times more entries than live items.
COMPACT_RATIO = 4
#: ... and at least this many entries (small heaps are not worth rebuilding).
COMPACT_MIN = 64


class DeadlineHeap(Generic[T]):
    """The recorded deadline of each item, earliest first (see the module documentation)."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        #: id(item) -> (deadline, seq) of its one valid entry.
        self._live: dict[int, tuple[float, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Items with a deadline."""
        return len(self._live)

    def __contains__(self, item: T) -> bool:
        return id(item) in self._live

    def deadline_of(self, item: T) -> float | None:
        """The deadline recorded for ``item``, if any."""
        entry = self._live.get(id(item))
        return None if entry is None else entry[0]

    def set(self, item: T, deadline: float | None) -> None:
        """Record ``item``'s deadline (None: it has none); O(log N), O(1) if unchanged."""
        key = id(item)
        entry = self._live.get(key)
        if deadline is None:
            if entry is not None:
                del self._live[key]
            return
        if entry is not None and entry[0] == deadline:
            return
        seq = next(self._seq)
        self._live[key] = (deadline, seq)
        heapq.heappush(self._heap, (deadline, seq, item))
        if len(self._heap) > COMPACT_MIN and len(self._heap) > COMPACT_RATIO * len(self._live):
            self._compact()

    def discard(self, item: T) -> None:
        """Forget ``item`` (its entries are dropped lazily)."""
        self._live.pop(id(item), None)
        if not self._live:
            self._heap.clear()

    def peek(self) -> float | None:
        """The earliest recorded deadline (amortized O(log N): stale tops are popped)."""
        heap = self._heap
        while heap:
            deadline, seq, item = heap[0]
            entry = self._live.get(id(item))
            if entry is not None and entry[1] == seq:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float, limit: int | None = None) -> list[T]:
        """Remove and return the items whose deadline is ``<= now``, earliest first,
        at most ``limit`` of them.  Each item comes out once; record it again with
        :meth:`set` once it has been served."""
        due: list[T] = []
        heap, live = self._heap, self._live
        while heap and (limit is None or len(due) < limit):
            deadline, seq, item = heap[0]
            entry = live.get(id(item))
            if entry is None or entry[1] != seq:
                heapq.heappop(heap)
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            del live[id(item)]
            due.append(item)
        return due

    def _compact(self) -> None:
        live = self._live
        self._heap = [e for e in self._heap if live.get(id(e[2]), (0.0, -1))[1] == e[1]]
        heapq.heapify(self._heap)
