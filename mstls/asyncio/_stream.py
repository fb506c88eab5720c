"""An mstls stream for asyncio: StreamReader/StreamWriter methods, plus the trio API's names.

Theory of operation
-------------------
Every operation is a synchronous attempt on the :class:`~mstls.session.Session`
(which applies the error rules E3-E6 and records into the calling task's error
queue) and, if it cannot complete, a park on the stream's
:class:`~mstls.asyncio._driver.Lot`, which the driver wakes when an event names
the stream or the connection.  A connection's death therefore wakes every
reader and writer, and each raises the connection's exception, never EOF.

*Reading.*  Bytes taken from the session that a call could not return yet
(:meth:`Stream.readexactly` waiting for the rest, :meth:`Stream.readline`
waiting for the newline) stay in the stream's read buffer, so a cancellation
(``task.cancel()``, ``asyncio.timeout``) loses nothing: the next read returns
them.  The peer's reset raises :class:`~mstls.exceptions.StreamReset` with its
code after every byte delivered before it was returned (E6).

*Writing.*  :meth:`Stream.write` never waits: it hands the stream layer what
its send buffer takes and keeps the rest in the stream (copied when mutable).
That rest is pushed from a callback whenever the stream becomes writable, so a
``write`` is sent even if nobody awaits :meth:`Stream.drain`.  ``drain()``
waits while more than :data:`WRITE_HIGH_WATER` bytes are kept: those can only
leave once the stream layer's buffer (``send_buffer_size``) has room, which
needs the peer's flow-control credit (RFC 9000 §4.1).  A sender that alternates
``write`` and ``drain`` therefore holds at most ``send_buffer_size +
WRITE_HIGH_WATER`` plus one write, however long the peer stops reading.
:meth:`Stream.send_all` waits until every byte is in the stream layer; since
the stream owns the data it took, a cancelled ``send_all`` or ``drain`` loses
nothing and breaks nothing: the rest is still sent.

*Closing.*  :meth:`Stream.close` sends STOP_SENDING (code 0) if the peer's data
did not end, and FIN once the kept bytes have left; :meth:`Stream.wait_closed`
waits for that and raises the failure that kept them from leaving.
:meth:`Stream.write_eof` sends FIN after the kept bytes.  Use after ``close``
(or after ``write_eof``/``reset`` for writes, ``stop_sending`` for reads) raises
:class:`~mstls.exceptions.StreamStateError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
from collections import deque
from typing import Any

from .. import _errors as errors
from ..exceptions import Error, StreamStateError
from ._driver import Core

__all__ = ["DEFAULT_RECEIVE_SIZE", "READLINE_LIMIT", "WRITE_HIGH_WATER", "Stream"]

#: ``receive_some()`` without ``max_bytes`` (and each step of ``read(-1)``) takes at most this.
DEFAULT_RECEIVE_SIZE = 65536
#: ``drain()`` returns once at most this many written bytes wait outside the stream layer.
WRITE_HIGH_WATER = 65536
#: ``readline()`` gives up (ValueError, nothing lost) on a line longer than this.
READLINE_LIMIT = 65536
#: The application code sent with the STOP_SENDING of ``close``.
CLOSE_CODE = 0


class Stream:
    """One QUIC/QMux stream; see the module documentation for the rules.

    Instances come from :meth:`Connection.open_stream <mstls.asyncio.Connection.open_stream>`
    and :meth:`Connection.accept_stream <mstls.asyncio.Connection.accept_stream>`;
    ``async with`` closes the stream (:meth:`aclose`).
    """

    def __init__(self, core: Core, stream_id: int) -> None:
        self._core = core
        self.stream_id = stream_id
        self._lot = core.waiters.stream(stream_id)
        self._buffer = bytearray()  # taken from the session, not returned yet
        self._eof = False  # the peer's FIN was taken (the buffer holds the rest)
        self._at_end = False  # the data taken so far ends at the peer's FIN
        self._reading = False
        self._pending: deque[Any] = deque()  # written, not yet in the stream layer
        self._pending_bytes = 0
        self._fin_pending = False  # FIN once the pending bytes are in
        self._close_pending = False  # close once the pending bytes are in
        self._push_scheduled = False
        self._push_error: Error | None = None
        self._closed = False
        self._send_closed = False  # FIN or reset requested by us
        self._receive_closed = False  # STOP_SENDING sent by us

    def __repr__(self) -> str:
        return f"<mstls.asyncio.Stream {self.stream_id}>"

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- receiving --------------------------------------------------------------------------
    def _check_read(self) -> None:
        if self._closed or self._receive_closed:
            raise errors.recorded(
                StreamStateError(
                    f"stream {self.stream_id}: its receive side is closed",
                    stream_id=self.stream_id,
                )
            )
        if self._reading:
            raise RuntimeError("another task is already reading this stream")

    def _take(self, max_bytes: int) -> bytes | None:
        """Data from the session (b"" at FIN), or None if nothing is there yet."""
        session = self._core.session
        data = session.read(self.stream_id, max_bytes)
        if data is not None:
            if not data:
                self._eof = True
            self._at_end = session.read_reached_end
            self._core.after_change()  # a window update may be due
        return data

    def _fill(self, max_bytes: int) -> bool:
        """Move up to ``max_bytes`` into the read buffer; False: nothing came (wait)."""
        data = self._take(max_bytes)
        if data is None:
            return False
        self._buffer += data
        return True

    def _pop(self, size: int) -> bytes:
        buffer = self._buffer
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``n < 0``: everything until the peer's FIN); ``b""`` only
        at the clean end (FIN) or for ``n == 0``.  Raises the connection's failure, or
        :class:`~mstls.exceptions.StreamReset` after the delivered bytes."""
        n = operator.index(n)
        if n == 0:
            return b""
        self._check_read()
        if n < 0:
            return await self._read_to_end()
        if self._buffer:
            return self._pop(n)
        if self._eof:
            return b""
        self._reading = True
        try:
            while True:
                data = self._take(n)
                if data is not None:
                    return data
                await self._lot.park()
        finally:
            self._reading = False

    async def _read_to_end(self) -> bytes:
        self._reading = True
        try:
            while not self._eof:
                if not self._fill(DEFAULT_RECEIVE_SIZE):
                    await self._lot.park()
            return self._pop(len(self._buffer))
        finally:
            self._reading = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The trio API's name: up to ``max_bytes`` (default
        :data:`DEFAULT_RECEIVE_SIZE`) bytes; ``b""`` only at the peer's FIN."""
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        else:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        return await self.read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; :class:`asyncio.IncompleteReadError` (with the bytes
        that came) if the stream ends first.  Cancelled, the bytes stay readable."""
        n = operator.index(n)
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        self._check_read()
        buffer = self._buffer
        self._reading = True
        try:
            while len(buffer) < n and not self._eof:
                if not self._fill(n - len(buffer)):
                    await self._lot.park()
        finally:
            self._reading = False
        if len(buffer) < n:
            partial = self._pop(len(buffer))
            raise asyncio.IncompleteReadError(partial, n)
        return self._pop(n)

    async def readline(self) -> bytes:
        """Bytes up to and including ``b"\\n"`` (or what is left at the peer's FIN).

        A line longer than :data:`READLINE_LIMIT` raises :class:`ValueError` and
        stays readable.
        """
        self._check_read()
        buffer = self._buffer
        searched = 0
        self._reading = True
        try:
            while True:
                end = buffer.find(b"\n", searched)
                if end >= 0:
                    return self._pop(end + 1)
                if self._eof:
                    return self._pop(len(buffer))
                if len(buffer) > READLINE_LIMIT:
                    raise ValueError(f"line longer than {READLINE_LIMIT} bytes")
                searched = len(buffer)
                if not self._fill(READLINE_LIMIT + 1 - len(buffer)):
                    await self._lot.park()
        finally:
            self._reading = False

    def at_eof(self) -> bool:
        """Whether the peer's FIN was read and nothing is left to return."""
        return self._eof and not self._buffer

    @property
    def at_end(self) -> bool:
        """Whether the data returned so far ends at the peer's FIN (as in the trio
        API): an answer written now with ``write(data, end=True)`` and its FIN
        leave in one packet.  Unlike :meth:`at_eof`, no read of ``b""`` is needed."""
        return (self._eof or self._at_end) and not self._buffer

    # -- sending ----------------------------------------------------------------------------
    def _check_send(self) -> None:
        if self._closed or self._send_closed:
            raise errors.recorded(
                StreamStateError(
                    f"stream {self.stream_id}: its send side is closed", stream_id=self.stream_id
                )
            )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending; never waits (follow with ``await drain()``).

        Raises at once if the stream cannot be written (the peer's STOP_SENDING,
        the connection's failure).
        """
        self._write(data, False)

    def _write(self, data: bytes | bytearray | memoryview, end: bool) -> None:
        """:meth:`write`; ``end``: the FIN goes with the last byte (then the send side
        is closed, as after :meth:`write_eof`)."""
        self._check_send()
        if self._push_error is not None:
            self._raise_push_error()
        view = data if isinstance(data, bytes) else memoryview(data).cast("B")
        size = len(view)
        if not size:
            if end:
                self.write_eof()
            return
        if self._pending:
            self._core.session.check("write")  # a dead connection takes nothing more
            self._keep(view, 0)
        else:
            taken = self._core.session.write(self.stream_id, view, end)
            self._core.after_change()
            if taken < size:
                self._keep(view, taken)
            elif end:
                self._send_closed = True
                return
        if end:
            self._fin_pending = True  # sent after the kept bytes, as write_eof does
            self._send_closed = True

    def _keep(self, view: Any, offset: int) -> None:
        """Keep ``view[offset:]`` until the stream layer has room (a copy if mutable)."""
        if isinstance(view, bytes):  # immutable: kept as is (the stream layer keeps bytes uncopied)
            rest: Any = view if not offset else memoryview(view)[offset:]
        else:
            rest = bytes(view[offset:])
        self._pending.append(rest)
        self._pending_bytes += len(rest)
        self._lot.hook = self._on_wake

    def _on_wake(self) -> None:
        """The driver woke this stream (writable, or the connection changed): push soon."""
        if not self._push_scheduled:
            self._push_scheduled = True
            self._core.loop.call_soon(self._background_push)

    def _background_push(self) -> None:
        self._push_scheduled = False
        if not self._pending:
            return
        marker = errors.mark()
        try:
            self._push()
        except Error as exc:
            # Not this callback's failure: the next write, drain or wait_closed
            # raises it again from its own task, into that task's queue.
            errors.taken_since(marker)
            self._push_error = exc
            self._abandon_pending()
            self._lot.unpark_all()

    def _abandon_pending(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self._lot.hook = None
        if self._close_pending:
            self._close_pending = False
            self._finish_close()

    def _push(self) -> None:
        """Hand kept bytes to the stream layer while it takes them; then a kept FIN or close."""
        pending = self._pending
        if not pending:
            return
        session, stream_id = self._core.session, self.stream_id
        try:
            while pending:
                view = pending[0]
                taken = session.write(stream_id, view)
                self._pending_bytes -= taken
                if taken < len(view):
                    pending[0] = view[taken:]
                    break
                pending.popleft()
            if not pending:
                self._lot.hook = None
                if self._fin_pending:
                    self._fin_pending = False
                    session.conclude(stream_id)
                if self._close_pending:
                    self._close_pending = False
                    self._finish_close()
        finally:
            self._core.after_change()

    def _raise_push_error(self) -> None:
        """A background push failed: raise its failure anew from this task, so the
        entries land in this task's queue."""
        exc, self._push_error = self._push_error, None
        self._core.session.write(self.stream_id, b"")  # the connection's or stream's failure
        if exc is not None:
            raise errors.recorded(exc)

    async def drain(self) -> None:
        """Wait until at most :data:`WRITE_HIGH_WATER` written bytes are kept outside
        the stream layer (see the module documentation); raise what keeps them."""
        await self._drain(WRITE_HIGH_WATER)

    async def _drain(self, high_water: int) -> None:
        if self._push_error is not None:
            self._raise_push_error()
        while self._pending_bytes > high_water:
            self._push()  # raises the connection's or the stream's failure
            if self._pending_bytes <= high_water:
                return
            if self._buffer_full():
                await self._lot.park()
            else:
                await asyncio.sleep(0)  # room now: let other tasks run, then push

    def _buffer_full(self) -> bool:
        session = self._core.session
        if session.failed:
            return False
        stream = self._core.conn.streams.get_stream(self.stream_id)
        send = getattr(stream, "send", None)
        if send is None or send.stop_code is not None:
            return False
        return bool(send.free_space == 0)

    async def send_all(self, data: bytes | bytearray | memoryview, *, end: bool = False) -> None:
        """The trio API's name: :meth:`write` then wait until every byte is in the
        stream layer.  Cancelled, the rest is still sent (the stream owns it).
        ``end=True`` ends our sending as :meth:`write_eof` does, with the last of the
        data: a small message and its FIN leave in one packet (RFC 9000 §19.8)."""
        self._write(data, end)
        await self._drain(0)

    async def wait_send_all_might_not_block(self) -> None:
        """Return once nothing written waits and the stream layer's buffer has room."""
        await self._drain(0)
        while self._buffer_full():
            await self._lot.park()

    def write_eof(self) -> None:
        """End our sending with FIN (RFC 9000 §3.1) once the written bytes are in; a
        second call does nothing."""
        if self._closed:
            self._check_send()
        if self._send_closed:
            return
        if self._pending:
            self._fin_pending = True
        else:
            self._core.session.conclude(self.stream_id)
            self._core.after_change()
        self._send_closed = True

    def can_write_eof(self) -> bool:
        """Always True: every stream can end its sending with FIN."""
        return True

    async def send_eof(self) -> None:
        """The trio API's name for :meth:`write_eof`."""
        self.write_eof()
        await asyncio.sleep(0)

    # -- abrupt ends -------------------------------------------------------------------------
    def reset(self, code: int) -> None:
        """Abandon sending with RESET_STREAM ``code`` (RFC 9000 §19.4); kept bytes are dropped."""
        self._send_closed = True
        self._fin_pending = False
        self._pending.clear()
        self._pending_bytes = 0
        self._lot.hook = None
        self._call(self._core.session.reset, code)

    def stop_sending(self, code: int) -> None:
        """Ask the peer to stop sending with STOP_SENDING ``code`` (RFC 9000 §19.5)."""
        self._receive_closed = True
        self._call(self._core.session.stop_sending, code)

    def _call(self, method: Any, code: int) -> None:
        try:
            method(self.stream_id, code)
        finally:
            self._lot.unpark_all()
        self._core.after_change()

    async def wait_acknowledged(self) -> None:
        """Return once every byte written so far, and the FIN if sent, is acknowledged.

        UDP: the peer ACKed all of it (RFC 9000 §3.1 "Data Recvd").  TCP: all of
        it went into TLS records and the peer answered a QX_PING sent after them
        (see :mod:`mstls.session`).  Raises the stream stopped error after the
        peer's STOP_SENDING and :class:`~mstls.exceptions.StreamStateError` after
        our own reset.
        """
        await self._drain(0)
        core = self._core
        session = core.session
        while not session.all_acknowledged(self.stream_id):
            session.check("wait_acknowledged")
            core.after_change()  # sends the QX_PING the check may have queued
            await self._lot.park()

    # -- closing ---------------------------------------------------------------------------
    def is_closing(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close both sides, never waiting: STOP_SENDING (code 0) if the peer's data
        did not end; FIN once the written bytes have left (see :meth:`wait_closed`)."""
        if self._closed:
            return
        self._closed = True
        core = self._core
        session = core.session
        live = not session.failed and not core.driver.closed
        if live and not self._receive_closed and not self._eof:
            with contextlib.suppress(Error):
                session.stop_sending(self.stream_id, CLOSE_CODE)
        self._receive_closed = True
        if self._pending and not session.failed and not core.driver.closed:
            self._close_pending = True  # FIN and forget after the push
            core.after_change()
            return
        self._pending.clear()
        self._pending_bytes = 0
        self._finish_close()

    def _finish_close(self) -> None:
        core, stream_id = self._core, self.stream_id
        session = core.session
        live = not session.failed and not core.driver.closed
        if live and (not self._send_closed or self._fin_pending):
            # The stream layer directly: a stopped or finished send side is no
            # error here, and nothing may land in the caller's error queue.
            with contextlib.suppress(Error):
                core.conn.streams.write(stream_id, b"", fin=True)
        self._fin_pending = False
        core.after_change()
        self._send_closed = True
        self._lot.hook = None
        session.forget(stream_id)
        core.waiters.forget(stream_id)

    async def wait_closed(self) -> None:
        """Wait until the bytes written before :meth:`close` have left the stream;
        raise the failure that kept them from leaving."""
        if self._push_error is not None:
            self._raise_push_error()
        while self._close_pending:
            try:
                self._push()
            except Error:
                self._abandon_pending()  # the close completes; the data is lost
                raise
            if not self._close_pending:
                break
            if self._buffer_full():
                await self._lot.park()
            else:
                await asyncio.sleep(0)
        if self._push_error is not None:
            self._raise_push_error()

    async def aclose(self) -> None:
        """The trio API's name: :meth:`close`, then :meth:`wait_closed`."""
        self.close()
        await self.wait_closed()
