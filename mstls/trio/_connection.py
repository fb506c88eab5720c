"""Connection and Listener objects of the trio API.

A :class:`Connection` is a view on a driver :class:`~mstls.trio._driver.Core`:
operations try the session and park on the connection's lots (handshake,
accept, open) until the driver wakes them.  Connection failures raise the mstls
exceptions, also :class:`trio.BrokenResourceError` (see
:func:`~mstls.trio._stream.as_broken`); using a Connection or Listener after its
own ``aclose`` raises :class:`trio.ClosedResourceError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio

from .. import _errors as errors
from ..config import ServerConfig
from ..exceptions import DatagramError, Error
from ..qmux.early import keep_strike_register
from ..stats import ConnectionStats
from ._driver import Core, ListenerDriver
from ._paths import migrate as migrate_client
from ._stream import Stream, as_broken

__all__ = ["Connection", "Listener"]

T = TypeVar("T")


async def wait_for(
    lot: trio.lowlevel.ParkingLot,
    attempt: Callable[[], T | None],
    check: Callable[[], None],
    is_closed: Callable[[], bool],
) -> T:
    """Retry ``attempt`` until it gives a value, parking on ``lot`` in between.

    ``check`` raises the connection's failure; a checkpoint always happens.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    parked = False
    while True:
        if is_closed():
            raise trio.ClosedResourceError("closed")
        try:
            result = attempt()
            if result is None:
                check()
        except Error as exc:
            raise as_broken(exc) from None
        if result is not None:
            if not parked:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return result
        await lot.park()
        parked = True


class Connection(trio.abc.AsyncResource):
    """One secure multiplexed connection; ``async with`` closes it with code 0.

    Instances come from :func:`mstls.trio.connect` and :meth:`Listener.accept`.
    """

    def __init__(self, core: Core, transport: str, *, started: bool = True) -> None:
        self._core = core
        self.transport = transport
        self._closed = False
        #: Whether the client handshake was started (``connect(..., lazy=True)``: not yet).
        self._started = started

    def __repr__(self) -> str:
        return f"<mstls.trio.Connection {self.transport} {self.peer_address}>"

    @property
    def alpn(self) -> str | None:
        """The negotiated application protocol (ALPN)."""
        info = self._core.session.handshake_info
        return info.alpn_protocol if info else None

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed a session from a ticket (RFC 8446 §2.2):
        no certificates were exchanged; :attr:`peer_certificate` is the identity
        verified when the ticket was issued.  ``False`` before the handshake."""
        info = self._core.session.handshake_info
        return info.resumed if info else False

    @property
    def early_data_accepted(self) -> bool | None:
        """Whether the server accepted our 0-RTT data (server: whether we accepted the
        client's): ``None`` until known, ``False`` after a handshake without it.
        Rejected early data is sent again after the handshake, automatically, so the
        peer's application receives every byte once either way (RFC 8446 §4.2.10)."""
        return self._core.session.early_data_accepted

    @property
    def peer_certificate(self) -> Any:
        """The verified peer identity (chain, subject, names), or ``None``."""
        info = self._core.session.handshake_info
        return info.peer if info else None

    @property
    def peer_address(self) -> Any:
        """The peer's ``(host, port)``: UDP, the current path (it follows the peer's
        migration, RFC 9000 §9); TCP, the socket's peer."""
        address = getattr(self._core.conn, "peer_address", None)
        return address if address is not None else self._core.peer_address

    @property
    def sans_io(self) -> Any:
        """The underlying sans-I/O connection (for inspection only)."""
        return self._core.conn

    def stats(self) -> ConnectionStats:
        """A snapshot of RTT, loss, traffic and congestion counters (RFC 9002 §5-§7;
        see :mod:`mstls.stats`).  Never blocks; also works after the connection ended."""
        return self._core.session.stats(trio.current_time())

    def ping(self) -> None:
        """Ask for a fresh RTT sample (see :meth:`mstls.session.Session.ping`); the
        answer shows in :meth:`stats`.  Never blocks."""
        core = self._core
        core.session.ping()
        core.after_change()

    def _is_closed(self) -> bool:
        return self._closed

    def _start_handshake(self) -> None:
        """Start a lazy client handshake, once (trio runs one task at a time: no lock)."""
        if self._started:
            return
        self._started = True
        core = self._core
        if not core.conn.is_terminated and not core.driver.closed:
            core.conn.connect(trio.current_time())
            core.after_change()

    async def wait_handshake(self) -> None:
        """Return once the handshake completed; raise its failure.

        After ``connect(..., lazy=True)`` this starts the handshake, exactly as the
        first stream operation would; concurrent callers wait for the same one.
        """
        self._start_handshake()
        session = self._core.session

        def done() -> bool | None:
            return True if session.handshake_done else None

        await wait_for(
            self._core.waiters.connection, done, lambda: session.check("handshake"), self._is_closed
        )

    async def _handshake_settled(self) -> None:
        """Wait until the handshake completed or failed, raising nothing (``auto``)."""
        session = self._core.session

        def settled() -> bool | None:
            return True if session.handshake_done or session.failed else None

        await wait_for(self._core.waiters.connection, settled, lambda: None, self._is_closed)

    async def open_stream(self, bidirectional: bool = True, *, early: bool = False) -> Stream:
        """Open a stream; waits while the peer's stream limit is reached (RFC 9000 §4.6).

        ``early=True`` marks the stream replay-safe: after ``connect(..., lazy=True)``
        with :attr:`ClientConfig.early_data <mstls.ClientConfig>` and a ticket that
        allows it, this starts the handshake and returns without waiting for it, and
        the stream's first data goes as 0-RTT data (RFC 8446 §2.3; TCP/QMux).
        Without 0-RTT it is an ordinary stream (the call waits for the handshake).
        """
        core = self._core
        if early:
            self._start_handshake()
        early = early and core.session.early_data_possible
        if not core.session.handshake_done and not early:
            await self.wait_handshake()  # lazy: the first stream operation drives it
        stream_id = await wait_for(
            core.waiters.open,
            lambda: core.session.open_stream(bidirectional, early),
            lambda: core.session.check("open_stream"),
            self._is_closed,
        )
        return Stream(core, stream_id)

    async def accept_stream(self) -> Stream:
        """The next stream the peer opened (bidirectional or unidirectional)."""
        core = self._core
        if not core.session.ready:  # a server with accepted 0-RTT data need not wait
            await self.wait_handshake()
        stream_id = await wait_for(
            core.waiters.accept,
            core.session.accept,
            lambda: core.session.check("accept_stream"),
            self._is_closed,
        )
        return Stream(core, stream_id)

    # -- datagrams (RFC 9221; reliable over TCP, draft-ietf-quic-qmux §8.1) --------
    @property
    def max_datagram_size(self) -> int:
        """The largest payload :meth:`send_datagram` accepts now, from the peer's
        limit, the path MTU (UDP) or record size (TCP) and the framing; 0 before the
        handshake, when either side did not enable ``datagrams``, or once failed."""
        return self._core.session.max_datagram_size

    async def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Send one datagram: unreliable over UDP, delivered in order over TCP.

        Waits only for the handshake, never for room: a full send queue raises
        :class:`~mstls.exceptions.DatagramQueueFull`, a payload above
        :attr:`max_datagram_size` :class:`~mstls.exceptions.DatagramTooLarge` (a
        ``ValueError`` naming the maximum), a peer without datagram support
        :class:`~mstls.exceptions.DatagramsUnsupported`.
        """
        core = self._core
        if not core.session.handshake_done:
            await self.wait_handshake()
        if self._closed:
            raise trio.ClosedResourceError("closed")
        try:
            core.session.send_datagram(data)
        except DatagramError:
            raise
        except Error as exc:
            raise as_broken(exc) from None
        core.after_change()
        await trio.lowlevel.checkpoint()

    async def receive_datagram(self) -> bytes:
        """The next datagram received; raises the connection's failure once it ended
        and every earlier datagram was read."""
        core = self._core
        if not core.session.handshake_done:
            await self.wait_handshake()
        return await wait_for(
            core.waiters.datagram,
            core.session.receive_datagram,
            lambda: core.session.check("receive_datagram"),
            self._is_closed,
        )

    async def migrate(self, local_address: str | None = None) -> None:
        """Move this QUIC client connection to a new UDP socket (a new port, on
        ``local_address`` if given, e.g. ``"127.0.0.2"``) with a new connection ID,
        once PATH_CHALLENGE/PATH_RESPONSE validated the path (RFC 9000 §9.2).

        Raises :class:`~mstls.exceptions.MigrationRefused` on TCP, on a server
        connection, when the peer sent disable_active_migration or has no spare
        connection ID, and when validation fails."""
        await self.wait_handshake()
        await migrate_client(self._core, local_address)

    async def aclose(self, code: int = 0, reason: str = "") -> None:
        """Close with application ``code`` and ``reason`` (RFC 9000 §10.2); never waits.

        CONNECTION_CLOSE goes out at once; the closing period runs in the background.
        """
        if not self._closed:
            self._closed = True
            core = self._core
            if not core.conn.is_terminated and not core.driver.closed:
                core.conn.close(code, reason, now=trio.current_time())
                core.after_change()
            core.waiters.wake_all()
        await trio.lowlevel.checkpoint()


class Listener(trio.abc.Listener[Connection]):
    """Accepts connections on one socket; ``async with`` closes it and its connections.

    Instances come from :func:`mstls.trio.listen` (or :func:`mstls.trio.serve`,
    through ``nursery.start``).  The handshake counters mean the same as in
    :class:`mstls.Listener`, on both transports.
    """

    def __init__(self, driver: ListenerDriver, transport: str, address: Any) -> None:
        self._driver = driver
        self.transport = transport
        self.address = address
        self._closed = False

    def __repr__(self) -> str:
        return f"<mstls.trio.Listener {self.transport} {self.address}>"

    async def accept(self) -> Connection:
        """The next connection whose handshake completed."""
        driver = self._driver
        accepted = driver.accepted

        def attempt() -> Core | None:
            return accepted.popleft() if accepted else None

        def check() -> None:
            if driver.closed:
                raise errors.recorded(errors.ListenerClosed("listener closed"))

        core = await wait_for(
            driver.accept_lot,
            attempt,
            check,
            lambda: self._closed,
        )
        return Connection(core, self.transport)

    @property
    def failed_handshakes(self) -> int:
        """Every handshake that failed on this listener, refusals included (for metrics)."""
        return int(self._driver.failed_handshakes)

    @property
    def refused_handshakes(self) -> int:
        """Handshakes refused by admission control (over the per-source rate, or QUIC
        handshakes shed beyond ``max_pending_handshakes``); each is also one of
        :attr:`failed_handshakes`.  UDP counts every refused Initial, a
        client's retransmissions included; TCP, every connection reset before TLS."""
        endpoint = getattr(self._driver, "endpoint", None)
        if endpoint is not None:
            return int(endpoint.refused_initials)
        return int(getattr(self._driver, "refused_handshakes", 0))

    @property
    def dropped_initials(self) -> int:
        """QUIC Initial datagrams that authenticated nothing and were dropped before any
        state or Retry (RFC 9000 §14.1, §17.2.2); always 0 on TCP."""
        endpoint = getattr(self._driver, "endpoint", None)
        return int(endpoint.dropped_initials) if endpoint is not None else 0

    def pop_handshake_failures(self) -> list[tuple[Any, Error | None]]:
        """The failed handshakes recorded since the last call: (peer address, exception),
        oldest first; at most the latest :data:`~mstls.core.admission.MAX_RECORDED_FAILURES`."""
        failures = list(self._driver.handshake_failures)
        self._driver.handshake_failures.clear()
        return failures

    def update_config(self, config: ServerConfig) -> None:
        """Use ``config`` (certificate, ALPN, limits) for handshakes that start from now on.

        Established connections keep what they negotiated; the stateless reset key
        and connection ID generator stay, so routing and resets are unaffected.
        """
        driver: Any = self._driver
        if self.transport == "udp":
            old = driver.endpoint.config
            new = config.quic_config()
            if new.stateless_reset_key is None:
                new.stateless_reset_key = old.stateless_reset_key
            if new.cid_generator is None:
                new.cid_generator, new.cid_length = old.cid_generator, old.cid_length
            driver.endpoint.config = new
        else:
            driver.config = keep_strike_register(driver.config, config.qmux_config())
        driver.update_admission(config)  # Retry and per-source rate; the buckets are kept

    async def aclose(self) -> None:
        """Close every connection (code 0) and the socket; never waits."""
        if not self._closed:
            self._closed = True
            driver = self._driver
            if not driver.closed:
                driver.close_all("listener closed")
                driver.stop()
        await trio.lowlevel.checkpoint()
