"""RangeSet against a plain ``set`` model, under hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mstls.core.rangeset import RangeSet

ops = st.lists(st.tuples(st.booleans(), st.integers(0, 200), st.integers(0, 20)), max_size=60)


def check_invariants(r: RangeSet) -> set[int]:
    values: set[int] = set()
    previous_stop = -2
    for start, stop in r:
        assert start < stop, "empty range kept"
        assert start > previous_stop, "ranges overlap or touch"
        previous_stop = stop
        values |= set(range(start, stop))
    return values


@settings(max_examples=300, deadline=None)
@given(ops)
def test_matches_set_model(operations: list[tuple[bool, int, int]]) -> None:
    r = RangeSet()
    model: set[int] = set()
    for add, start, length in operations:
        if add:
            r.add(start, start + length)
            model |= set(range(start, start + length))
        else:
            r.subtract(start, start + length)
            model -= set(range(start, start + length))
        assert check_invariants(r) == model
        assert r.total() == len(model)
    for probe in range(0, 230):
        assert (probe in r) == (probe in model)
    if model:
        assert r.lowest == min(model) and r.highest == max(model)
        assert [a for a, _ in r.descending()] == sorted((a for a, _ in r), reverse=True)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(0, 220))
def test_drop_below_and_covers(operations: list[tuple[bool, int, int]], cut: int) -> None:
    r = RangeSet()
    model: set[int] = set()
    for _, start, length in operations:
        r.add(start, start + length)
        model |= set(range(start, start + length))
    r.drop_below(cut)
    model = {v for v in model if v >= cut}
    assert check_invariants(r) == model
    for start, stop in r:
        assert r.covers(start, stop)
        assert not r.covers(start, stop + 1)


def test_single_values_merge() -> None:
    r = RangeSet()
    for v in (5, 3, 4, 10, 11, 9):
        r.add(v)
    assert list(r) == [(3, 6), (9, 12)]
    assert r.shift() == (3, 6) and list(r) == [(9, 12)]
