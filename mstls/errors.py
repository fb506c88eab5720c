"""Error queues for users: OpenSSL's ERR API, one queue per thread and per task.

Every call that fails raises an exception rooted at :class:`mstls.Error`; its
``kind`` is the ``SSL_get_error``-style classification (:func:`classify`,
:func:`classify_read`), which never reads a queue (rule E7).  The queue of the
calling thread or task explains the failure step by step (rules E1-E3): when a
connection has failed, every later call on it copies the connection's entries into
the caller's queue, followed by a ``CONNECTION_TERMINATED`` entry.  The rules are
written in ``docs/error-model.md``.

>>> try:
...     stream.read(timeout=5)
... except mstls.ConnectionTerminated:
...     mstls.errors.print_errors()   # one line per entry, oldest first
"""

from __future__ import annotations

from ._error_queue import (
    QUEUE_LIMIT,
    ErrorEntry,
    Lib,
    Reason,
    clear_error,
    errors,
    get_error,
    peek_error,
    peek_last_error,
    print_errors,
    put_error,
    put_errors,
    record,
)
from ._errors import classify, classify_read
from .exceptions import ErrorKind

__all__ = [
    "QUEUE_LIMIT",
    "ErrorEntry",
    "ErrorKind",
    "Lib",
    "Reason",
    "classify",
    "classify_read",
    "clear_error",
    "errors",
    "get_error",
    "peek_error",
    "peek_last_error",
    "print_errors",
    "put_error",
    "put_errors",
    "record",
]
