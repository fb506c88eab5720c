"""Helpers shared by the error-model tests (tests/errors/test_errors_*.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from mstls import errors
from mstls.errors import ErrorEntry, Lib, Reason

#: Threads started together by the isolation and replication tests.
THREADS = 16


def make_entry(text: str, reason: Reason = Reason.INTERNAL) -> ErrorEntry:
    """An API-library entry with ``text`` as its reason text."""
    return ErrorEntry(Lib.API, reason, text)


def queue_texts() -> list[str]:
    """The reason texts in the calling thread's (or task's) queue, oldest first."""
    return [entry.reason_text for entry in errors.errors()]


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads that start together; re-raise failures."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def main(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    if failures:
        raise failures[0]
    return results
