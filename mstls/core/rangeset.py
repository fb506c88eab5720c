"""Sets of non-negative integers kept as sorted, disjoint, non-adjacent ranges.

Used for received packet numbers (ACK ranges, RFC 9000 §19.3.1), acknowledged
and received stream offsets (reassembly, RFC 9000 §2.2) and retransmission
bookkeeping.  Ranges are half-open ``[start, stop)``.  Adding touches only the
ranges it overlaps (``bisect``), so a stream receiving data in order or nearly
in order costs O(log n) per add; memory is bounded by the caller, which limits
the number of ranges it is willing to keep (:attr:`RangeSet.max_ranges`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

__all__ = ["RangeSet"]


class RangeSet:
    """Sorted disjoint half-open ranges with merge-on-add."""

    __slots__ = ("_starts", "_stops")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._stops: list[int] = []
        for start, stop in ranges:
            self.add(start, stop)

    def add(self, start: int, stop: int | None = None) -> None:
        """Add ``[start, stop)`` (or the single value ``start``)."""
        if stop is None:
            stop = start + 1
        if stop <= start:
            return
        starts, stops = self._starts, self._stops
        # First range whose stop >= start (touching or overlapping), last whose start <= stop.
        lo = bisect_left(stops, start)
        hi = bisect_right(starts, stop)
        if lo == hi:
            starts.insert(lo, start)
            stops.insert(lo, stop)
            return
        new_start = min(start, starts[lo])
        new_stop = max(stop, stops[hi - 1])
        starts[lo:hi] = [new_start]
        stops[lo:hi] = [new_stop]

    def subtract(self, start: int, stop: int) -> None:
        """Remove ``[start, stop)``."""
        if stop <= start:
            return
        starts, stops = self._starts, self._stops
        lo = bisect_right(stops, start)
        hi = bisect_left(starts, stop)
        if lo >= hi:
            return
        keep: list[tuple[int, int]] = []
        if starts[lo] < start:
            keep.append((starts[lo], start))
        if stops[hi - 1] > stop:
            keep.append((stop, stops[hi - 1]))
        starts[lo:hi] = [a for a, _ in keep]
        stops[lo:hi] = [b for _, b in keep]

    def shift(self) -> tuple[int, int]:
        """Remove and return the lowest range."""
        return self._starts.pop(0), self._stops.pop(0)

    def drop_below(self, value: int) -> None:
        """Forget everything below ``value``."""
        if self._starts and self._starts[0] < value:
            self.subtract(0, value)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect_right(self._starts, value) - 1
        return i >= 0 and value < self._stops[i]

    def covers(self, start: int, stop: int) -> bool:
        """True when all of ``[start, stop)`` is in the set."""
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and stop <= self._stops[i]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._stops, strict=True)

    def descending(self) -> Iterator[tuple[int, int]]:
        """Ranges from the highest down (the order of ACK frame ranges)."""
        return zip(reversed(self._starts), reversed(self._stops), strict=True)

    def __len__(self) -> int:
        """Number of ranges (not of values)."""
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._starts == other._starts and self._stops == other._stops

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    @property
    def lowest(self) -> int:
        """Smallest value; the set must not be empty."""
        return self._starts[0]

    @property
    def highest(self) -> int:
        """Largest value (``stop - 1`` of the last range); the set must not be empty."""
        return self._stops[-1] - 1

    def first_range(self) -> tuple[int, int]:
        return self._starts[0], self._stops[0]

    def total(self) -> int:
        """Number of values in the set."""
        return sum(b - a for a, b in self)
