"""The services a stream can be routed to: ``echo``, ``discard``, ``forward``, ``python``.

A service is an async function ``run(stream, context)``; ``stream`` is a
:class:`ServiceStream` (the client's mstls stream, with the bytes that came
after the preamble delivered first and every byte counted in the metrics).
A service returns normally once it is done with the stream; the caller then
closes the stream (FIN, if the service has not sent it).  To refuse or abort,
a service raises :class:`ServiceRefused` with the :class:`~mstlsd.preamble.StreamCode`
the stream is reset with.

* ``echo`` sends back every byte, then FIN after the client's FIN (with the last bytes
  when they came with the client's FIN: one packet, not two).
* ``discard`` reads until the client's FIN, then sends FIN (an empty answer).
* ``forward`` connects to ``target`` over TCP (``limits.connect_timeout``); a
  refusal resets the stream with ``BACKEND_REFUSED`` before anything is read.
  Then bytes flow both ways with half-close propagated (a client FIN is a TCP
  ``shutdown(SHUT_WR)`` towards the backend and the backend's FIN is a stream
  FIN); a backend reset resets the stream with ``BACKEND_FAILED``; a client
  reset closes the backend connection.
* ``python`` awaits ``handler(stream, peer)`` (``peer`` is a
  :class:`~mstlsd.identity.Peer`); an exception resets the stream with
  ``HANDLER_FAILED`` and is logged.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable

import attrs
import trio

from .config import Limits, ServiceSpec
from .identity import Peer
from .logs import event
from .metrics import Metrics
from .preamble import PrefixedStream, StreamCode
from .relay import relay

__all__ = ["SERVICES", "ServiceContext", "ServiceRefused", "ServiceStream", "run_service"]

#: Bytes asked for per read by echo and discard.
READ_SIZE = 64 * 1024


class ServiceRefused(Exception):
    """Reset the client's stream with ``code`` (the service could not or would not run)."""

    def __init__(self, code: StreamCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@attrs.define
class ServiceContext:
    """What a service gets besides its stream."""

    spec: ServiceSpec
    peer: Peer
    limits: Limits
    metrics: Metrics
    stream_label: str


class ServiceStream(PrefixedStream):
    """The client's stream as a service sees it: prefix first, bytes counted."""

    def __init__(
        self, stream: trio.abc.HalfCloseableStream, prefix: bytes, service: str, metrics: Metrics
    ) -> None:
        super().__init__(stream, prefix)
        self._received = metrics.bytes_received.labels(service)
        self._sent = metrics.bytes_sent.labels(service)
        self.sent_eof = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await super().receive_some(max_bytes)
        self._received.inc(len(data))
        return data

    async def send_all(self, data: bytes | bytearray | memoryview, *, end: bool = False) -> None:
        await super().send_all(data, end=end)
        self._sent.inc(len(data))
        if end:
            self.sent_eof = True

    async def send_eof(self) -> None:
        await super().send_eof()
        self.sent_eof = True


async def _echo(stream: ServiceStream, ctx: ServiceContext) -> None:
    while data := await stream.receive_some(READ_SIZE):
        if stream.at_end:  # the client's FIN came with these bytes: ours goes with them
            await stream.send_all(data, end=True)
            return
        await stream.send_all(data)
    await stream.send_eof()


async def _discard(stream: ServiceStream, ctx: ServiceContext) -> None:
    while await stream.receive_some(READ_SIZE):
        pass
    await stream.send_eof()


async def _open_backend(ctx: ServiceContext) -> trio.SocketStream:
    assert ctx.spec.target is not None
    host, port = ctx.spec.target
    try:
        with trio.fail_after(ctx.limits.connect_timeout):
            return await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        reason = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
        raise ServiceRefused(
            StreamCode.BACKEND_REFUSED, f"backend {host}:{port} refused: {reason}"
        ) from None


def _abort_tcp(sock: trio.SocketStream) -> None:
    """Close with a TCP reset (SO_LINGER 0), so the backend sees an abort, not a clean end."""
    with contextlib.suppress(OSError):
        sock.socket.setsockopt(
            trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0)
        )


async def _forward(stream: ServiceStream, ctx: ServiceContext) -> None:
    backend = await _open_backend(ctx)
    async with backend:
        try:
            outcome = await relay(stream, backend)
        except BaseException:  # cancelled (the connection ended, the daemon stopped)
            _abort_tcp(backend)  # a reset, so a cut request never looks complete
            raise
        if outcome.failed == "b":
            raise ServiceRefused(StreamCode.BACKEND_FAILED, f"backend failed: {outcome.error}")
        if outcome.failed == "a":
            _abort_tcp(backend)
            event(
                logging.INFO,
                "stream.client_abort",
                "client aborted a forwarded stream",
                stream=ctx.stream_label,
                error=outcome.error,
            )


async def _python(stream: ServiceStream, ctx: ServiceContext) -> None:
    handler = ctx.spec.handler
    assert handler is not None
    try:
        await handler(stream, ctx.peer)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise  # the client went away: not the handler's fault
    except Exception as exc:
        logging.getLogger("mstlsd").exception(
            "python handler %s failed on %s", ctx.spec.handler_name, ctx.stream_label
        )
        raise ServiceRefused(StreamCode.HANDLER_FAILED, f"handler raised {exc!r}") from exc


Service = Callable[[ServiceStream, ServiceContext], Awaitable[None]]

#: The implementation of each service type.
SERVICES: dict[str, Service] = {
    "echo": _echo,
    "discard": _discard,
    "forward": _forward,
    "python": _python,
}


async def run_service(stream: ServiceStream, ctx: ServiceContext) -> None:
    """Run the service of ``ctx.spec`` on ``stream`` (raises :class:`ServiceRefused`)."""
    await SERVICES[ctx.spec.type](stream, ctx)
