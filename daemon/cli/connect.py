"""``mstls connect HOST:PORT``: standard input to a stream, the stream to standard output.

Like ``ncat``: one connection, one bidirectional stream.  With ``--service S``
the stream starts with the mstlsd preamble ``S\\n``.  End of standard input
sends FIN; the command ends when the server ends the stream (its FIN), and
exits 0.  A stream the server resets (unknown service, not authorised, backend
refused...) exits 3 with the code's name; a connection failure exits 1 with
the reason and the error queue (:func:`mstls.errors.print_errors`).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Awaitable
from typing import BinaryIO

import trio

from mstls import ConnectionTerminated, Error, StreamReset, StreamStopped, errors
from mstls.trio import Stream

from ..preamble import encode_preamble
from .common import (
    EXIT_CONNECTION,
    EXIT_OK,
    EXIT_STREAM,
    CliError,
    describe_failure,
    open_connection,
    report,
)

__all__ = ["run_connect"]

#: Bytes read from standard input at a time.
STDIN_CHUNK = 64 * 1024


def _pollable(fd: int) -> bool:
    """Whether ``fd`` can wait in trio's epoll: a pipe, a socket or a terminal."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


async def _stdin_to_stream(source: BinaryIO, stream: Stream) -> None:
    """Copy ``source`` to ``stream``, then FIN.

    A pipe or a terminal is read without a thread (a trio ``FdStream`` on a
    duplicate of the descriptor), so Ctrl-C leaves no thread blocked in
    ``read()``: such a thread made the interpreter abort at exit ("could not
    acquire lock for <stdin> at interpreter shutdown", exit 134).  Files and
    other devices never block for long; they are read in a worker thread that
    is waited for.
    """
    if _pollable(source.fileno()):
        async with trio.lowlevel.FdStream(os.dup(source.fileno())) as pipe:
            while data := await pipe.receive_some(STDIN_CHUNK):
                await stream.send_all(data)
    else:
        read = getattr(source, "read1", source.read)
        while data := await trio.to_thread.run_sync(read, STDIN_CHUNK):
            await stream.send_all(data)
    await stream.send_eof()


async def _stream_to_stdout(stream: Stream, sink: BinaryIO) -> None:
    while data := await stream.receive_some():
        sink.write(data)
        sink.flush()


async def _exchange(stream: Stream, source: BinaryIO, sink: BinaryIO) -> BaseException | None:
    """Run both directions; the first failure (or None once the server's FIN arrived)."""
    failures: list[BaseException] = []

    async def guarded(work: Awaitable[None], cancel: trio.CancelScope, done: bool) -> None:
        try:
            await work
        except (Error, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            failures.append(exc)
            cancel.cancel()
            return
        if done:  # the server's FIN: nothing more will come, stop reading stdin
            cancel.cancel()

    async with trio.open_nursery() as nursery:
        scope = nursery.cancel_scope
        nursery.start_soon(guarded, _stdin_to_stream(source, stream), scope, False)
        nursery.start_soon(guarded, _stream_to_stdout(stream, sink), scope, True)
    return _most_telling(failures)


def _most_telling(failures: list[BaseException]) -> BaseException | None:
    """A reset explains more than the stop that comes with it; both more than the rest."""
    for kind in (StreamReset, StreamStopped, ConnectionTerminated):
        for exc in failures:
            if isinstance(exc, kind):
                return exc
    return failures[0] if failures else None


async def run_connect(args: argparse.Namespace) -> int:
    host, port = args.target
    preamble = b""
    if args.service:
        try:
            preamble = encode_preamble(args.service)
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
    conn = await open_connection(args, host, port, quiet=args.quiet)
    async with conn:
        try:
            stream = await conn.open_stream()
            if preamble:
                await stream.send_all(preamble)
        except Error as exc:
            report(describe_failure(exc))
            return EXIT_CONNECTION
        failure = await _exchange(stream, sys.stdin.buffer, sys.stdout.buffer)
    if failure is None:
        return EXIT_OK
    report(describe_failure(failure))
    if isinstance(failure, StreamReset | StreamStopped):
        return EXIT_STREAM
    errors.print_errors()
    return EXIT_CONNECTION
