"""Checks that objects are freed by reference counting, not by the cycle collector.

The cyclic collector runs rarely once a daemon's heap is large, so whatever sits in a
reference cycle keeps its memory long after it ended (issue 11, the soak's RSS
slope).  Compiled (mypyc) classes cannot be weakly referenced, so
:func:`cycle_garbage` asks the collector itself what it would free, and
:class:`Survivors` looks for objects among those the collector tracks.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    """Run the test with the cycle collector off (after one collection)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cycle_garbage(*types: type) -> list[object]:
    """Unreachable objects of ``types`` that only the cycle collector would free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [obj for obj in gc.garbage if isinstance(obj, types)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


class Survivors:
    """Which of some objects are still alive, without holding a reference to them.

    An object is looked for by identity and type among the objects the cycle
    collector tracks (every container, compiled classes included); with the
    collector off, one freed by reference counting is no longer there.
    """

    def __init__(self, *objects: object) -> None:
        self._keys = {(id(obj), type(obj)) for obj in objects}

    def alive(self) -> list[object]:
        return [obj for obj in gc.get_objects() if (id(obj), type(obj)) in self._keys]
