"""The deadline heap (mstls.core.deadlines): lazy deletion, bounded memory."""

from __future__ import annotations

from mstls.core.deadlines import COMPACT_MIN, COMPACT_RATIO, DeadlineHeap


class Item:
    """Unhashable on purpose: the heap keys items by identity."""

    __hash__ = None  # type: ignore[assignment]


def test_earliest_deadline_and_due_items_in_order() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    a, b, c = Item(), Item(), Item()
    heap.set(a, 3.0)
    heap.set(b, 1.0)
    heap.set(c, 2.0)
    assert heap.peek() == 1.0 and len(heap) == 3
    heap.set(b, 5.0)  # moved later: its old entry is stale
    assert heap.peek() == 2.0
    assert heap.pop_due(3.0) == [c, a]
    assert heap.peek() == 5.0 and len(heap) == 1 and b in heap and a not in heap
    assert heap.pop_due(4.9) == []


def test_none_and_discard_forget_an_item() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    a, b = Item(), Item()
    heap.set(a, 1.0)
    heap.set(b, 2.0)
    heap.set(a, None)
    heap.discard(b)
    assert heap.peek() is None and heap.pop_due(10.0) == [] and len(heap) == 0


def test_limit_leaves_the_rest_due() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    items = [Item() for _ in range(5)]
    for i, item in enumerate(items):
        heap.set(item, float(i))
    assert heap.pop_due(10.0, limit=2) == items[:2]
    assert heap.pop_due(10.0) == items[2:]


def test_moving_deadlines_keeps_memory_bounded() -> None:
    """A deadline moved on every packet must not grow the heap without bound."""
    heap: DeadlineHeap[Item] = DeadlineHeap()
    items = [Item() for _ in range(10)]
    for step in range(10_000):
        heap.set(items[step % 10], 100.0 + step)
    assert len(heap) == 10
    assert len(heap._heap) <= max(COMPACT_MIN, COMPACT_RATIO * 10) + 1
    assert heap.peek() == 100.0 + 9990
