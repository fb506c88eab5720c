"""Error queues: one per thread and one per trio task (rule E1), as OpenSSL's ERR.

Theory of operation
-------------------
An *entry* records one step of why a call failed: the library (:class:`Lib`), a
reason code (:class:`Reason`), a reason text, free detail and where it was
recorded.  Entries are frozen, so the same entry object may sit in many queues
(the channel's and every thread's that copied it, see :mod:`mstls.errors`).

Each *owner* has its own queue.  The owner is the running trio task (or asyncio
task), else the current thread.  The queue lives in a :class:`~contextvars.ContextVar`
so that it dies with its task or thread, but a context var alone is not enough:

* trio (and asyncio) give a child task a *copy* of its parent's context when it
  is spawned, and ``trio.to_thread`` / executors copy the caller's context into a
  worker thread.  The copy would still point at the parent's queue.
* So the context var holds ``(weak reference to the owner, queue)``.  A lookup
  whose owner is not the current one creates a fresh queue and stores it in the
  current context only; the parent's context is never touched.

A task that has never recorded anything therefore starts with an empty queue,
and two tasks or threads never see each other's entries.  Moving entries
between owners is explicit: :func:`errors` takes a snapshot, :func:`put_errors`
appends.  Queues hold at most :data:`QUEUE_LIMIT` entries; the oldest are
dropped first (OpenSSL keeps 16).

Intermittent conditions (rule E4) are recorded like any other, inside
:func:`intermittent`, which removes them again when the call goes on.
:func:`mark` and :func:`taken_since` let an operation take back what it
recorded itself (a failing connection moves it onto its channel) while older,
unrelated entries stay where they are.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum, StrEnum
from types import ModuleType
from typing import IO, Any

from .exceptions import ErrorKind

__all__ = [
    "QUEUE_LIMIT",
    "ErrorEntry",
    "Lib",
    "Reason",
    "caller_location",
    "clear_error",
    "errors",
    "get_error",
    "intermittent",
    "mark",
    "peek_error",
    "peek_last_error",
    "print_errors",
    "put_error",
    "put_errors",
    "record",
]

#: Entries kept per queue; the oldest are dropped first.
QUEUE_LIMIT = 32


class Lib(StrEnum):
    """The part of mstls (or the system) that recorded an entry."""

    QUIC = "quic"
    QMUX = "qmux"
    TLS = "tls"
    SYS = "sys"
    STREAM = "stream"
    API = "api"


class Reason(Enum):
    """Reason codes of queue entries; the value is the default reason text."""

    CONNECTION_TERMINATED = "connection terminated"
    PEER_CLOSED = "connection closed by peer"
    LOCAL_CLOSED = "connection closed locally"
    IDLE_TIMEOUT = "idle timeout"
    HANDSHAKE_TIMEOUT = "handshake timeout"
    STATELESS_RESET = "stateless reset received"
    PREMATURE_CLOSE = "premature close"
    TLS_ALERT = "TLS alert"
    PROTOCOL_VIOLATION = "protocol violation"
    CERTIFICATE_VERIFY_FAILED = "certificate verify failed"
    STREAM_RESET = "stream reset by peer"
    STREAM_STOPPED = "stream stopped by peer"
    STREAM_STATE = "stream not usable in this state"
    INCOMPLETE_READ = "stream ended early"
    LISTENER_CLOSED = "listener closed"
    BAD_CONFIGURATION = "bad configuration"
    TIMEOUT = "operation timed out"
    WANT_READ = "want read"
    WANT_WRITE = "want write"
    SYSCALL = "system call failed"
    INTERNAL = "internal error"


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One entry of an error queue.  Immutable, so queues may share it."""

    lib: Lib
    reason: Reason
    reason_text: str
    detail: str = ""
    where: str = ""
    code: int | None = None

    def format(self, owner: str = "") -> str:
        """One line in the style of ``ERR_print_errors``:
        ``owner:error:lib:REASON:where:reason text[: detail]``."""
        line = f"{owner}:error:{self.lib}:{self.reason.name}:{self.where}:{self.reason_text}"
        return f"{line}: {self.detail}" if self.detail else line


class _Queue:
    """The entries of one owner; only that owner touches it, so no lock."""

    __slots__ = ("entries", "recorded")

    def __init__(self) -> None:
        self.entries: deque[ErrorEntry] = deque(maxlen=QUEUE_LIMIT)
        self.recorded = 0  # entries ever appended, for intermittent()

    def append(self, entry: ErrorEntry) -> None:
        self.entries.append(entry)
        self.recorded += 1


_Slot = tuple["weakref.ref[Any]", _Queue]
_SLOT: ContextVar[_Slot | None] = ContextVar("mstls_error_queue", default=None)


#: Libraries whose tasks own queues, most specific first: (module, path to ``current_task``).
_TASK_LIBRARIES = (("trio", ("lowlevel", "current_task")), ("asyncio", ("current_task",)))
#: The ``current_task`` function found in each loaded event-loop module, with the
#: module object it came from (a module replaced in :data:`sys.modules` is looked
#: up again).
_CURRENT_TASK: dict[str, tuple[ModuleType, Callable[[], object]]] = {}


def _current_task_function(name: str, *path: str) -> Callable[[], object] | None:
    """``sys.modules[name].<path>`` if that module is loaded far enough, else ``None``.

    While one thread runs ``import trio``, other threads already see the partially
    initialised module in :data:`sys.modules`, without ``trio.lowlevel`` yet.  No
    task of that library can be running then, so a missing attribute means "no task".
    """
    module = sys.modules.get(name)
    if module is None:
        return None
    found = _CURRENT_TASK.get(name)
    if found is not None and found[0] is module:
        return found[1]
    target: object = module
    for attribute in path:
        target = getattr(target, attribute, None)
        if target is None:
            return None  # not imported yet, or only in part
    if not callable(target):
        return None
    _CURRENT_TASK[name] = (module, target)
    return target


def _owner() -> object:
    """The running trio or asyncio task, else the current thread.  Never raises.

    Neither library is imported here: if it is not loaded, no task of it runs.
    """
    for name, path in _TASK_LIBRARIES:
        current_task = _current_task_function(name, *path)
        if current_task is None:
            continue
        try:
            task = current_task()
        except (RuntimeError, AttributeError):  # no run or loop in this thread; half-imported
            task = None
        if task is not None:
            return task
    return threading.current_thread()


def _queue() -> _Queue:
    """The current owner's queue, created on first use in this owner."""
    owner = _owner()
    slot = _SLOT.get()
    if slot is not None and slot[0]() is owner:
        return slot[1]
    queue = _Queue()
    _SLOT.set((weakref.ref(owner), queue))
    return queue


def _slashed(path: str) -> str:
    return path.replace("\\", "/")


#: The package directory (``mstls.__file__``'s parent) and its parent, each with a
#: trailing slash.  A checkout folder may itself be named ``mstls`` (``git clone``
#: makes one), so a path is never searched for "/mstls/".
_PACKAGE_DIR = _slashed(os.path.dirname(os.path.abspath(__file__))) + "/"
_PACKAGE_PARENT = _PACKAGE_DIR[: _PACKAGE_DIR.rstrip("/").rfind("/") + 1]


def _short_path(path: str) -> str:
    """``mstls/...`` for a file of the package, else the file's base name."""
    path = _slashed(path)
    if path.startswith(_PACKAGE_DIR):
        return path[len(_PACKAGE_PARENT) :]
    return path.rsplit("/", 1)[-1]


def caller_location(stacklevel: int = 1) -> str:
    """``file:line in function`` of the caller ``stacklevel`` frames up; ``file``
    is relative to the package's parent directory (``mstls/errors.py``) for the
    package's own files, and the base name for any other."""
    frame = sys._getframe(stacklevel + 1)
    name = _short_path(frame.f_code.co_filename)
    return f"{name}:{frame.f_lineno} in {frame.f_code.co_name}"


# -- the ERR-style API ---------------------------------------------------------------------
def get_error() -> ErrorEntry | None:
    """Remove and return the oldest entry (``ERR_get_error``)."""
    entries = _queue().entries
    return entries.popleft() if entries else None


def peek_error() -> ErrorEntry | None:
    """The oldest entry, left in place (``ERR_peek_error``)."""
    entries = _queue().entries
    return entries[0] if entries else None


def peek_last_error() -> ErrorEntry | None:
    """The newest entry, left in place (``ERR_peek_last_error``)."""
    entries = _queue().entries
    return entries[-1] if entries else None


def clear_error() -> None:
    """Empty the current queue (``ERR_clear_error``)."""
    _queue().entries.clear()


def errors() -> list[ErrorEntry]:
    """A snapshot of the current queue, oldest first; the queue is unchanged."""
    return list(_queue().entries)


def print_errors(file: IO[str] | None = None) -> None:
    """Print one line per entry, oldest first, and clear the queue (``ERR_print_errors``).

    ``file`` defaults to :data:`sys.stderr` at call time.
    """
    out = sys.stderr if file is None else file
    queue = _queue()
    owner = f"{threading.get_ident():x}"
    while queue.entries:
        print(queue.entries.popleft().format(owner), file=out)


def put_error(entry: ErrorEntry) -> None:
    """Append ``entry`` to the current queue."""
    _queue().append(entry)


def put_errors(entries: Iterable[ErrorEntry]) -> None:
    """Append ``entries``, in order, to the current queue."""
    queue = _queue()
    for entry in entries:
        queue.append(entry)


def record(
    lib: Lib,
    reason: Reason,
    reason_text: str | None = None,
    *,
    detail: str = "",
    code: int | None = None,
    stacklevel: int = 1,
) -> ErrorEntry:
    """Record an entry in the current queue and return it.

    ``reason_text`` defaults to the reason's own text; ``where`` is the caller
    ``stacklevel`` frames up (1: whoever called :func:`record`).
    """
    entry = ErrorEntry(
        lib,
        reason,
        reason.value if reason_text is None else reason_text,
        detail,
        caller_location(stacklevel),
        code,
    )
    _queue().append(entry)
    return entry


def mark() -> int:
    """A marker of the current queue: what is recorded from now on is
    :func:`taken_since` it.  Take one at the start of an operation."""
    return _queue().recorded


def taken_since(marker: int) -> list[ErrorEntry]:
    """Remove and return, oldest first, the entries recorded since ``marker``
    (those still in the queue); older entries stay."""
    return _take_since(_queue(), marker)


def _is_retry(exc: BaseException) -> bool:
    """Whether an escaping exception is itself a "try again" (not a failure)."""
    kind = getattr(exc, "kind", None)
    if kind is ErrorKind.WANT_READ or kind is ErrorKind.WANT_WRITE:
        return True
    return isinstance(exc, BlockingIOError | InterruptedError)


@contextmanager
def intermittent() -> Iterator[None]:
    """Drop what the block records unless it fails (rule E4).

    Library code wraps operations that may meet EAGAIN, EINTR, ENOBUFS, an
    ICMP-latched error on UDP, or an algorithm that is unavailable while another
    can be tried.  When the block ends normally, or by a would-block exception
    (``WANT_READ``/``WANT_WRITE``), the entries it recorded are removed again;
    when a real failure escapes, they stay to explain it.  Entries recorded
    before the block are never touched.
    """
    queue = _queue()
    before = queue.recorded
    try:
        yield
    except BaseException as exc:
        if _is_retry(exc):
            _take_since(queue, before)
        raise
    _take_since(queue, before)


def _take_since(queue: _Queue, marker: int) -> list[ErrorEntry]:
    """Pop what was recorded since ``marker`` and wind the count back, so that
    markers taken before stay valid."""
    count = min(max(queue.recorded - marker, 0), len(queue.entries))
    taken = [queue.entries.pop() for _ in range(count)]
    taken.reverse()
    queue.recorded = min(queue.recorded, marker)
    return taken
