"""An mstls stream as a :class:`trio.abc.HalfCloseableStream`.

Theory of operation
-------------------
Every operation is a synchronous attempt on the :class:`~mstls.session.Session`
(which applies the error rules E3-E6 and records into the calling task's error
queue) and, if it cannot complete, a park on the stream's
:class:`trio.lowlevel.ParkingLot`, which the driver unparks when an event names
the stream or the connection.  The attempt itself never awaits, so data is never
lost to a cancellation: a cancelled :meth:`Stream.receive_some` has taken nothing.
A wait is decided from the state *after* the attempt's own change step, never
from the attempt's result alone: that step (the flush of a write) may already
have produced, and pumped to nobody, the event the task would wait for.

Checkpoints follow trio's rule for operations that may complete at once
(``checkpoint_if_cancelled`` before, ``cancel_shielded_checkpoint`` after), so
every call is a checkpoint whether or not it waits.

Concurrent misuse raises :class:`trio.BusyResourceError` (one task in
``receive_some``; one task in ``send_all`` / ``wait_send_all_might_not_block`` /
``send_eof``).  A stream closed with :meth:`Stream.aclose` (or a half closed with
:meth:`send_eof`, :meth:`reset`, :meth:`stop_sending`) raises
:class:`trio.ClosedResourceError`, as the trio stream contract requires.

Failures caused by the peer or the network raise the mstls exceptions
(:class:`~mstls.exceptions.ConnectionTerminated`, stream reset, stream stopped);
they are also :class:`trio.BrokenResourceError`, so generic trio code that
handles broken streams handles them too (see :func:`as_broken`).

Cancellation of :meth:`Stream.send_all`: trio leaves a stream in an undefined
state after a cancelled ``send_all``.  Here, if part of the data was taken, the
send side is marked broken: later sends raise :class:`trio.BrokenResourceError`
and :meth:`Stream.aclose` resets the stream (code 0) instead of sending FIN, so
the peer never mistakes a truncated message for a complete one.  A ``send_all``
cancelled before taking anything leaves the stream intact.

Closing (:meth:`Stream.aclose`): the send side ends gracefully with FIN, so data
already sent arrives followed by a clean end (``b""``) — unless the send side is
broken (above), where it is reset with code 0.  If the receive side has not seen
its end, STOP_SENDING with code 0 tells the peer we read no more.  Closing never
waits: the connection delivers the FIN in the background.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Any

import trio

from ..exceptions import Error, StreamStateError
from ._driver import Core

__all__ = ["DEFAULT_RECEIVE_SIZE", "ConflictDetector", "Stream", "as_broken"]

#: ``receive_some()`` without ``max_bytes`` returns at most this much.
DEFAULT_RECEIVE_SIZE = 65536
#: The application code sent with the RESET_STREAM / STOP_SENDING of ``aclose``.
CLOSE_CODE = 0

_BROKEN_CLASSES: dict[type[Error], type[Error]] = {}


def as_broken(exc: Error) -> Error:
    """``exc`` turned into an instance of a subclass of its class and trio.BrokenResourceError.

    The class is changed in place (attributes, traceback and error-queue entries
    are untouched), so ``except mstls.ConnectionTerminated`` and
    ``except trio.BrokenResourceError`` both catch it.  Local misuse
    (:class:`StreamStateError`) is left alone.
    """
    cls = type(exc)
    if isinstance(exc, trio.BrokenResourceError | StreamStateError):
        return exc
    dual = _BROKEN_CLASSES.get(cls)
    if dual is None:
        namespace = {"__module__": cls.__module__, "__reduce__": _reduce_to_base}
        dual = type(cls.__name__, (cls, trio.BrokenResourceError), namespace)
        dual.__qualname__ = cls.__qualname__
        _BROKEN_CLASSES[cls] = dual
    with contextlib.suppress(TypeError):  # an incompatible layout keeps the plain class
        exc.__class__ = dual
    return exc


def _reduce_to_base(self: Error) -> tuple[Any, ...]:
    """Pickle (and copy) as the plain mstls class: the dual class is made at run time
    and cannot be found by name in another process."""
    base = type(self).__mro__[1]
    fn, args, *rest = Error.__reduce__(self)
    fn = base if fn is type(self) else fn
    args = tuple(base if arg is type(self) else arg for arg in args)
    return (fn, args, *rest)


class ConflictDetector:
    """Raise :class:`trio.BusyResourceError` when two tasks use one resource at once."""

    __slots__ = ("_held", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(self, *exc: object) -> None:
        self._held = False


class Stream(trio.abc.HalfCloseableStream):
    """One QUIC/QMux stream; see the module documentation for the rules.

    Instances come from :meth:`Connection.open_stream <mstls.trio.Connection.open_stream>`
    and :meth:`Connection.accept_stream <mstls.trio.Connection.accept_stream>`;
    ``async with`` closes the stream (:meth:`aclose`).
    """

    def __init__(self, core: Core, stream_id: int) -> None:
        self._core = core
        self.stream_id = stream_id
        self._lot = core.waiters.stream(stream_id)
        self._send_guard = ConflictDetector("another task is sending on this stream")
        self._receive_guard = ConflictDetector("another task is receiving on this stream")
        self._closed = False
        self._send_closed = False  # FIN or reset sent by us
        self._receive_closed = False  # STOP_SENDING sent by us
        self._send_broken = False  # a send_all was interrupted after taking data
        self._sending = False  # a send_all is between its first write and its end
        self._eof = False
        self._at_end = False  # the data returned so far ends at the peer's FIN

    def __repr__(self) -> str:
        return f"<mstls.trio.Stream {self.stream_id}>"

    # -- receiving ------------------------------------------------------------------------
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` only at the peer's clean end (FIN).

        After the peer's RESET_STREAM, every byte that arrived in order before it
        is returned first (E6); then :class:`~mstls.exceptions.StreamReset` is
        raised with the peer's code, on this and every later call.
        """
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        else:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        with self._receive_guard:
            await trio.lowlevel.checkpoint_if_cancelled()
            parked = False
            while True:
                if self._closed or self._receive_closed:
                    raise trio.ClosedResourceError("the stream's receive side is closed")
                try:
                    data = self._core.session.read(self.stream_id, max_bytes)
                except StreamStateError:
                    raise
                except Error as exc:
                    raise as_broken(exc) from None
                if data is not None:
                    if not data:
                        self._eof = True
                    self._at_end = self._core.session.read_reached_end
                    self._core.after_change()  # a window update may be due
                    if not parked:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return data
                await self._lot.park()
                parked = True

    @property
    def at_end(self) -> bool:
        """Whether the data returned so far ends at the peer's FIN (RFC 9000 §3.2
        "Data Read" is next): the next :meth:`receive_some` returns ``b""`` at once.

        An echo or a request handler that sees it after reading its last data can
        answer with ``send_all(answer, end=True)``: answer and FIN in one packet,
        instead of one packet for the answer and one for a later :meth:`send_eof`.
        """
        return self._eof or self._at_end

    # -- sending ----------------------------------------------------------------------------
    def _check_send(self) -> None:
        if self._closed or self._send_closed:
            raise trio.ClosedResourceError("the stream's send side is closed")
        if self._send_broken:
            raise trio.BrokenResourceError("an earlier send_all was cancelled part-way")

    def _write(self, data: Any, fin: bool = False) -> int:
        try:
            taken = self._core.session.write(self.stream_id, data, fin)
        except StreamStateError:
            raise
        except Error as exc:
            raise as_broken(exc) from None
        self._core.after_change()
        return taken

    async def send_all(self, data: bytes | bytearray | memoryview, *, end: bool = False) -> None:
        """Send all of ``data``; waits while flow control or the send buffer is full.

        ``end=True`` then ends our sending as :meth:`send_eof` does, but with the
        last of the data: a small message and its FIN leave in one packet
        (RFC 9000 §19.8).  If cancelled after part of the data was taken, the
        send side is broken (see the module documentation).
        """
        with self._send_guard:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_send()
            view = data if isinstance(data, bytes) else memoryview(data).cast("B")
            size = len(view)
            if not size:
                if end:
                    self._write(b"", fin=True)
                    self._send_closed = True
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            total = self._write(view, end)
            if total >= size:
                self._send_closed = self._send_closed or end
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            self._sending = True
            try:
                while total < size:
                    await self._wait_for_room()
                    self._check_send()
                    total += self._write(memoryview(view)[total:], end)
                self._send_closed = self._send_closed or end
            except BaseException:
                if not self._send_closed:
                    self._send_broken = True
                raise
            finally:
                self._sending = False

    async def _wait_for_room(self) -> None:
        """After a partial write: park until the send buffer has room, or just yield.

        The flush made by that very write may already have freed the buffer (QMux
        takes stream data into TLS records at once, and a socket with room takes
        all of it), and the ``StreamWritable`` of that drain was pumped before this
        task could park: nobody would wake it (the lost wake-up of issue 17, point
        10).  So park only while the buffer is still full, when the next
        acknowledgement freeing half of it will fire ``StreamWritable``.
        """
        if self._buffer_full():
            await self._lot.park()
        else:
            await trio.lowlevel.checkpoint()  # room now: let other tasks run, then write

    async def wait_send_all_might_not_block(self) -> None:
        """Return once the send buffer has room (or the stream broke: send_all will say)."""
        with self._send_guard:
            await trio.lowlevel.checkpoint_if_cancelled()
            parked = False
            while True:
                self._check_send()
                if not self._buffer_full():
                    break
                await self._lot.park()
                parked = True
            if not parked:
                await trio.lowlevel.cancel_shielded_checkpoint()

    def _buffer_full(self) -> bool:
        session = self._core.session
        if session.failed:
            return False
        stream = self._core.conn.streams.get_stream(self.stream_id)
        send = getattr(stream, "send", None)
        if send is None or send.stop_code is not None:
            return False
        return bool(send.free_space == 0)

    async def send_eof(self) -> None:
        """End our sending with FIN (RFC 9000 §3.1); a second call does nothing."""
        with self._send_guard:
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._closed:
                raise trio.ClosedResourceError("the stream is closed")
            if not self._send_closed:
                if self._send_broken:
                    raise trio.BrokenResourceError("an earlier send_all was cancelled part-way")
                self._write(b"", fin=True)
                self._send_closed = True
            await trio.lowlevel.cancel_shielded_checkpoint()

    # -- abrupt ends -------------------------------------------------------------------------
    def reset(self, code: int) -> None:
        """Abandon sending with RESET_STREAM ``code`` (RFC 9000 §19.4)."""
        self._send_closed = True
        self._call(self._core.session.reset, code)

    def stop_sending(self, code: int) -> None:
        """Ask the peer to stop sending with STOP_SENDING ``code`` (RFC 9000 §19.5)."""
        self._receive_closed = True
        self._call(self._core.session.stop_sending, code)

    def _call(self, method: Any, code: int) -> None:
        try:
            method(self.stream_id, code)
        except StreamStateError:
            raise
        except Error as exc:
            raise as_broken(exc) from None
        finally:
            self._lot.unpark_all()
        self._core.after_change()

    async def wait_acknowledged(self) -> None:
        """Return once every byte written so far, and the FIN if sent, is acknowledged.

        UDP: the peer ACKed all of it (RFC 9000 §3.1 "Data Recvd").  TCP (QMux has
        no ACKs): all of it went into TLS records and the peer answered a QX_PING
        sent after them, so its stream layer holds every byte (see
        :mod:`mstls.session`).  Checked anew on every call.  Raises the stream
        stopped error after the peer's STOP_SENDING and
        :class:`~mstls.exceptions.StreamStateError` after our own reset.
        """
        core = self._core
        session = core.session
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while True:
            try:
                if session.all_acknowledged(self.stream_id):
                    break
                session.check("wait_acknowledged")
            except StreamStateError:
                raise
            except Error as exc:
                raise as_broken(exc) from None
            core.after_change()  # sends the QX_PING the check may have queued
            await self._lot.park()
            parked = True
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()

    # -- closing ---------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close both sides at once, never waiting (see the module documentation)."""
        if not self._closed:
            self._closed = True
            self._close_now()
        await trio.lowlevel.checkpoint()

    def _close_now(self) -> None:
        core, stream_id = self._core, self.stream_id
        session = core.session
        if not session.failed and not core.driver.closed:
            with contextlib.suppress(Error):
                if not self._receive_closed and not self._eof:
                    session.stop_sending(stream_id, CLOSE_CODE)
                if self._send_broken or self._sending:
                    session.reset(stream_id, CLOSE_CODE)
                elif not self._send_closed:
                    # The stream layer directly: a stopped or finished send side is no
                    # error here, and nothing may land in the caller's error queue.
                    core.conn.streams.write(stream_id, b"", fin=True)
            core.after_change()
        self._send_closed = self._receive_closed = True
        session.forget(stream_id)
        core.waiters.forget(stream_id)
