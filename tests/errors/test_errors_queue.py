"""The error model, rules E1 and E4: the ERR-style queue, kept apart per thread,
per trio task and per asyncio task, and intermittent conditions (would-block,
classified OS errors) that leave nothing behind on success."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import io
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
import trio

from mstls import _errors as errors
from mstls._errors import ErrorEntry, Lib, Reason
from mstls.exceptions import ConnectionIOError, Timeout, WantRead, WantWrite

from .helpers import THREADS, make_entry, queue_texts, run_threads


# -- E1: the ERR-style queue -------------------------------------------------------------------
def test_queue_api_in_order() -> None:
    assert errors.get_error() is None and errors.peek_error() is None
    assert errors.peek_last_error() is None
    first = errors.record(Lib.QUIC, Reason.PROTOCOL_VIOLATION, "bad frame", code=0x0A)
    errors.put_error(make_entry("second"))
    errors.put_errors([make_entry("third"), make_entry("fourth")])
    assert errors.peek_error() is first
    assert errors.peek_last_error() == make_entry("fourth")
    assert queue_texts() == ["bad frame", "second", "third", "fourth"]
    assert errors.get_error() is first
    assert queue_texts() == ["second", "third", "fourth"]
    errors.clear_error()
    assert errors.errors() == [] and errors.get_error() is None


def test_record_fills_defaults_and_where() -> None:
    entry = errors.record(Lib.STREAM, Reason.STREAM_RESET, detail="stream 4", code=7)
    assert entry.reason_text == Reason.STREAM_RESET.value
    assert entry.where.startswith("test_errors_queue.py:")
    assert entry.where.endswith("in test_record_fills_defaults_and_where")
    assert (entry.lib, entry.code, entry.detail) == (Lib.STREAM, 7, "stream 4")


def test_queue_is_bounded_oldest_dropped() -> None:
    for i in range(errors.QUEUE_LIMIT + 5):
        errors.put_error(make_entry(str(i)))
    texts = queue_texts()
    assert len(texts) == errors.QUEUE_LIMIT
    assert texts[0] == "5" and texts[-1] == str(errors.QUEUE_LIMIT + 4)


def test_print_errors_format_and_clears() -> None:
    errors.put_error(
        ErrorEntry(Lib.QUIC, Reason.PEER_CLOSED, "closed by peer", "code=0x7", "x.py:1 in f", 7)
    )
    errors.put_error(ErrorEntry(Lib.TLS, Reason.TLS_ALERT, "alert", "", "y.py:2 in g"))
    out = io.StringIO()
    errors.print_errors(out)
    owner = f"{threading.get_ident():x}"
    assert out.getvalue().splitlines() == [
        f"{owner}:error:quic:PEER_CLOSED:x.py:1 in f:closed by peer: code=0x7",
        f"{owner}:error:tls:TLS_ALERT:y.py:2 in g:alert",
    ]
    assert errors.errors() == []


def test_print_errors_defaults_to_stderr_at_call_time(capsys: pytest.CaptureFixture[str]) -> None:
    errors.record(Lib.API, Reason.TIMEOUT)
    errors.print_errors()
    captured = capsys.readouterr()
    assert ":error:api:TIMEOUT:" in captured.err and captured.out == ""


# -- E1: isolation between threads and trio tasks ------------------------------------------------
def test_threads_never_see_each_others_entries() -> None:
    errors.put_error(make_entry("main"))

    def work(i: int) -> list[str]:
        seen_at_start = queue_texts()
        for n in range(3):
            errors.put_error(make_entry(f"t{i}-{n}"))
        return [*seen_at_start, "|", *queue_texts()]

    results = run_threads(THREADS, work)
    for i, seen in enumerate(results):
        assert seen == ["|", f"t{i}-0", f"t{i}-1", f"t{i}-2"]
    assert queue_texts() == ["main"]


def test_thread_running_a_copied_context_gets_its_own_queue() -> None:
    """Executors and trio.to_thread copy the caller's context into a worker."""
    errors.put_error(make_entry("caller"))
    ctx = contextvars.copy_context()

    def in_worker() -> list[str]:
        before = queue_texts()
        errors.put_error(make_entry("worker"))
        return before + queue_texts()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(ctx.run, in_worker).result() == ["worker"]
    assert queue_texts() == ["caller"]


async def test_trio_tasks_never_see_each_others_entries() -> None:
    errors.put_error(make_entry("parent"))
    seen: dict[str, list[str]] = {}
    both_recorded = trio.Event()
    count = 0

    async def child(name: str) -> None:
        nonlocal count
        seen[name + "-start"] = queue_texts()
        errors.put_error(make_entry(name))
        count += 1
        if count == 2:
            both_recorded.set()
        await both_recorded.wait()  # both tasks hold entries at the same time
        seen[name] = queue_texts()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child, "a")
        nursery.start_soon(child, "b")
    assert seen == {"a-start": [], "b-start": [], "a": ["a"], "b": ["b"]}
    assert queue_texts() == ["parent"]


async def test_trio_to_thread_worker_has_its_own_queue() -> None:
    errors.put_error(make_entry("task"))

    def in_thread() -> list[str]:
        before = queue_texts()
        errors.put_error(make_entry("thread"))
        return before + queue_texts()

    assert await trio.to_thread.run_sync(in_thread) == ["thread"]
    assert queue_texts() == ["task"]


def test_asyncio_tasks_are_isolated_too() -> None:
    async def child(name: str) -> list[str]:
        before = queue_texts()
        errors.put_error(make_entry(name))
        await asyncio.sleep(0)
        return before + queue_texts()

    async def main() -> list[list[str]]:
        errors.put_error(make_entry("parent"))
        results = await asyncio.gather(child("a"), child("b"))
        return [*results, queue_texts()]

    assert asyncio.run(main()) == [["a"], ["b"], ["parent"]]


def _half_imported(name: str, **attributes: object) -> types.ModuleType:
    """What other threads see in ``sys.modules`` while one thread imports ``name``."""
    module = types.ModuleType(name)
    for attribute, value in attributes.items():
        setattr(module, attribute, value)
    return module


@pytest.mark.parametrize(
    "name",
    [
        "trio",  # no trio.lowlevel yet
        "trio.lowlevel",  # trio.lowlevel, without current_task yet
        "asyncio",  # no asyncio.current_task yet
    ],
)
def test_queue_works_while_another_thread_imports_trio_or_asyncio(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Issue 17 point 6: a partially initialised module in ``sys.modules`` (another
    thread is in the middle of ``import trio``) must not make every call raise
    AttributeError; no task of that library can run yet, so the thread owns the queue."""
    errors.put_error(make_entry("before"))
    with monkeypatch.context() as patch:
        if name == "trio.lowlevel":
            patch.setitem(
                sys.modules, "trio", _half_imported("trio", lowlevel=types.ModuleType(name))
            )
        else:
            patch.setitem(sys.modules, name, _half_imported(name))
        errors.put_error(make_entry("during"))
        assert queue_texts() == ["before", "during"]
        assert errors.get_error() == make_entry("before")
        in_thread = run_threads(1, lambda _: (errors.put_error(make_entry("t")), queue_texts())[1])
        assert in_thread == [["t"]]
    assert queue_texts() == ["during"]


def test_half_imported_module_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the import finishes, trio tasks get their own queues again."""
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "trio", _half_imported("trio"))
        errors.put_error(make_entry("thread"))

    async def in_task() -> list[str]:
        errors.put_error(make_entry("task"))
        return queue_texts()

    assert trio.run(in_task) == ["task"]
    assert queue_texts() == ["thread"]


# -- E4: intermittent conditions -----------------------------------------------------------------
def test_intermittent_leaves_nothing_on_success() -> None:
    errors.put_error(make_entry("before"))
    with errors.intermittent():
        errors.record(Lib.SYS, Reason.WANT_WRITE, "sendmsg: EAGAIN", code=errno.EAGAIN)
        with errors.intermittent():
            errors.record(Lib.SYS, Reason.SYSCALL, "recvmsg: ECONNREFUSED (ICMP)")
        errors.record(Lib.TLS, Reason.INTERNAL, "X448 unavailable, trying X25519")
    assert queue_texts() == ["before"]


def test_intermittent_drops_entries_when_the_call_would_block() -> None:
    for retry in (WantRead("x"), WantWrite("x"), Timeout(), BlockingIOError(errno.EAGAIN, "")):
        with pytest.raises(type(retry)), errors.intermittent():
            errors.record(Lib.SYS, Reason.WANT_READ, "EAGAIN")
            raise retry
        assert errors.errors() == []


def test_intermittent_keeps_entries_that_explain_a_failure() -> None:
    with pytest.raises(ConnectionIOError), errors.intermittent():
        errors.record(Lib.SYS, Reason.SYSCALL, "EBADF")
        raise ConnectionIOError("socket closed", errno=errno.EBADF)
    assert queue_texts() == ["EBADF"]


def test_intermittent_when_the_queue_overflows() -> None:
    errors.put_error(make_entry("before"))
    with errors.intermittent():
        for _ in range(errors.QUEUE_LIMIT * 2):
            errors.record(Lib.SYS, Reason.WANT_WRITE, "ENOBUFS")
    assert errors.errors() == []  # the oldest was pushed out; nothing new stays


@pytest.mark.parametrize(
    ("code", "datagram", "expected"),
    [
        (errno.EAGAIN, False, "intermittent"),
        (errno.EWOULDBLOCK, False, "intermittent"),
        (errno.EINTR, False, "intermittent"),
        (errno.ENOBUFS, False, "intermittent"),
        (errno.ECONNREFUSED, True, "intermittent"),
        (errno.ECONNRESET, True, "intermittent"),
        (errno.EHOSTUNREACH, True, "intermittent"),
        (errno.EMSGSIZE, True, "intermittent"),
        (errno.ECONNREFUSED, False, "fatal"),
        (errno.ECONNRESET, False, "fatal"),
        (errno.EPIPE, False, "fatal"),
        (errno.EBADF, True, "fatal"),
        (errno.EINVAL, True, "fatal"),
    ],
)
def test_classify_os_error(code: int, datagram: bool, expected: str) -> None:
    exc = OSError(code, "x")
    assert errors.classify_os_error(exc, datagram=datagram) == expected


def test_classify_os_error_without_errno() -> None:
    assert errors.classify_os_error(BlockingIOError()) == "intermittent"
    assert errors.classify_os_error(OSError("?")) == "fatal"
