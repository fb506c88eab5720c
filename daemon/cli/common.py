"""What the ``mstls`` subcommands share: client options, trust defaults, connecting, errors.

Trust default: without ``--cafile``, ``--pin`` or ``--insecure``, a connection to
this machine (127.0.0.0/8, ::1, ``localhost``) trusts the development CA of the
mstlsd state directory (``--state-dir``, else ``$MSTLSD_STATE_DIR``, else
``~/.local/state/mstlsd``) when it exists, so ``mstls connect 127.0.0.1:4433``
works against the embedded-default daemon with no flag.  Any other host is
verified against the system store.

``--transport auto`` is Happy Eyeballs for transports: QUIC first, and TCP
(QMux) as well if QUIC has not answered within :data:`AUTO_FALLBACK_DELAY`
seconds (at once if QUIC already failed); the first handshake to complete wins,
and when both fail the message names both failures.  A UDP port that answers
with ICMP port unreachable fails the QUIC attempt at once instead of after the
handshake timeout; one that stays silent (a black hole) gets
:data:`AUTO_QUIC_GRACE` seconds more once TCP has failed, so a refused TCP port
and a silent UDP port are reported together within two seconds.

Written on the public API only (:mod:`mstls`, :mod:`mstls.trio`) and the
daemon's stream preamble (:mod:`mstlsd.preamble`).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from mstls import (
    ClientConfig,
    ConfigurationError,
    ConnectionTerminated,
    Error,
    StreamReset,
    StreamStopped,
    Timeout,
    errors,
)
from mstls.trio import Connection, connect

from ..config import ALPN, parse_address
from ..preamble import describe_code
from ..state import default_state_dir, dev_pki_paths

__all__ = [
    "AUTO_FALLBACK_DELAY",
    "AUTO_QUIC_GRACE",
    "DEFAULT_TIMEOUT",
    "EXIT_BROKEN_PIPE",
    "EXIT_CONNECTION",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STREAM",
    "EXIT_USAGE",
    "CliError",
    "add_client_options",
    "client_config",
    "describe_failure",
    "open_connection",
    "peer_summary",
    "report",
    "run",
    "stdout_gone",
    "target",
]

EXIT_OK = 0
#: Could not connect, or the connection failed.
EXIT_CONNECTION = 1
#: Bad command line or configuration.
EXIT_USAGE = 2
#: The server reset or stopped the stream (refused service, backend down...).
EXIT_STREAM = 3
#: SIGINT (Ctrl-C): 128 + SIGINT, as a shell reports a process the signal ended.
EXIT_INTERRUPTED = 128 + signal.SIGINT
#: Standard output's reader went away (EPIPE): 128 + SIGPIPE, as for ``cat | head``.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
DEFAULT_TIMEOUT = 10.0
#: ``--transport auto``: how long QUIC gets before TCP starts too.
AUTO_FALLBACK_DELAY = 0.3
#: ``--transport auto``: how long QUIC may still take once the TCP attempt failed.
AUTO_QUIC_GRACE = 1.2
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


class CliError(Exception):
    """A failure to report in one line with an exit status."""

    def __init__(self, message: str, status: int = EXIT_CONNECTION) -> None:
        super().__init__(message)
        self.status = status


def report(message: str) -> None:
    print(f"mstls: {message}", file=sys.stderr, flush=True)


def target(text: str) -> tuple[str, int]:
    """An argparse type for ``HOST:PORT``."""
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """Options for commands that connect: transport, trust, identity, timeout."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--transport",
        choices=("udp", "tcp", "auto"),
        default="auto",
        help="udp: QUIC; tcp: QMux over TLS 1.3; auto: QUIC, TCP if QUIC is slow (default)",
    )
    group.add_argument("--cafile", type=Path, help="trust this CA (PEM) for the server")
    group.add_argument("--cert", type=Path, help="client certificate (PEM) for mutual TLS")
    group.add_argument("--key", type=Path, help="private key of --cert")
    group.add_argument(
        "--pin", action="append", metavar="SHA256", help="accept the server key with this hash"
    )
    group.add_argument(
        "--insecure", action="store_true", help="do not verify the server certificate"
    )
    group.add_argument("--server-name", help="name to verify (and send as SNI) instead of HOST")
    group.add_argument("--alpn", default=ALPN, help=f"application protocol (default {ALPN!r})")
    group.add_argument(
        "--state-dir",
        type=Path,
        help="mstlsd state directory whose CA is trusted for local servers",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"handshake timeout in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument("--keylog", type=Path, help="append TLS secrets here (for Wireshark)")


def is_local(host: str) -> bool:
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_cafile(host: str, state_dir: Path | None) -> Path | None:
    """The local daemon's development CA, for a local ``host`` (see the module docs)."""
    if not is_local(host):
        return None
    ca = dev_pki_paths(state_dir or default_state_dir()).ca_cert
    return ca if ca.is_file() else None


def client_config(args: argparse.Namespace, host: str) -> ClientConfig:
    """The :class:`ClientConfig` of the parsed client options."""
    if args.key is not None and args.cert is None:
        raise CliError("--key needs --cert", EXIT_USAGE)
    cafile = args.cafile
    if cafile is None and not args.insecure and not args.pin:
        cafile = default_cafile(host, args.state_dir)
    return ClientConfig(
        alpn=args.alpn,
        cafile=cafile,
        server_name=args.server_name,
        certfile=args.cert,
        keyfile=args.key,
        verify=not args.insecure,
        pinned_sha256=args.pin,
        handshake_timeout=args.timeout,
        keylog_file=args.keylog,
        keepalive=getattr(args, "keepalive", None),
    )


def describe_failure(exc: BaseException) -> str:
    """One line saying why, with the daemon's code names where they apply."""
    if isinstance(exc, StreamReset):
        return f"the server reset the stream: {describe_code(exc.code)}"
    if isinstance(exc, StreamStopped):
        return f"the server stopped reading the stream: {describe_code(exc.code)}"
    if isinstance(exc, ConnectionTerminated) and exc.is_application:
        who = "the peer" if exc.by_peer else "we"
        reason = f" ({exc.reason})" if exc.reason else ""
        return f"{who} closed the connection: {describe_code(exc.code)}{reason}"
    return str(exc) or type(exc).__name__


class PortUnreachable(OSError):
    """ICMP port unreachable answered our UDP probe: nothing listens on that UDP port."""


async def _udp_port_unreachable(host: str, port: int) -> PortUnreachable | None:
    """Send one empty datagram on a connected UDP socket; the ICMP error it draws, if any.

    The library's UDP client socket is not connected, so it never sees an ICMP
    port unreachable and waits for its handshake timeout (RFC 8085 §5.2 asks
    applications to heed these messages).  An empty datagram is no QUIC packet:
    a QUIC server discards it (RFC 9000 §12.2).  Returns None if the address does
    not resolve or the socket fails otherwise (the QUIC attempt reports that);
    waits until cancelled when no error comes.
    """
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
        family, kind, proto, _, address = infos[0]
        with trio.socket.socket(family, kind, proto) as probe:
            await probe.connect(address)
            await probe.send(b"")
            await probe.recv(1)
    except ConnectionRefusedError:
        return PortUnreachable(f"UDP port {port} unreachable (ICMP)")
    except OSError:
        return None
    return None


async def _connect_udp(host: str, port: int, config: ClientConfig, timeout: float) -> Connection:
    """QUIC, failing at once if ICMP says the UDP port is closed (see the probe).

    The handshake runs in the calling task, so its error queue entries stay there
    (rule E1: one queue per task) for :func:`mstls.errors.print_errors`.
    """
    refused: list[PortUnreachable] = []
    failure: BaseException | None = None
    conn: Connection | None = None
    async with trio.open_nursery() as nursery:
        attempt = trio.CancelScope()

        async def probe() -> None:
            unreachable = await _udp_port_unreachable(host, port)
            if unreachable is not None:
                refused.append(unreachable)
                attempt.cancel()

        nursery.start_soon(probe)
        with attempt:
            try:
                conn = await connect(host, port, config, transport="udp", timeout=timeout)
            except (Error, OSError) as exc:  # raised below, outside the nursery
                failure = exc
        nursery.cancel_scope.cancel()
    if conn is not None:
        return conn
    if failure is not None:
        raise failure
    if refused:
        raise refused[0]
    raise CliError("connect: cancelled")


class AutoFailed(Exception):
    """``--transport auto``: both attempts failed; :attr:`failures` by transport."""

    def __init__(self, failures: dict[str, BaseException]) -> None:
        super().__init__("; ".join(f"{t}: {describe_failure(e)}" for t, e in failures.items()))
        self.failures = failures


async def _connect_auto(host: str, port: int, config: ClientConfig, timeout: float) -> Connection:
    """QUIC first; TCP after :data:`AUTO_FALLBACK_DELAY`, or at once if QUIC failed sooner.

    The first handshake to complete wins (the other attempt is cancelled or closed);
    once both have failed, :class:`AutoFailed` names both failures.
    """
    winner: list[Connection] = []
    failures: dict[str, BaseException] = {}
    queued: dict[str, list[errors.ErrorEntry]] = {}  # each attempt's error queue (rule E1)
    udp_failed = trio.Event()
    udp_scope = trio.CancelScope()

    async def attempt(transport: str, cancel: trio.CancelScope) -> None:
        try:
            if transport == "udp":
                with udp_scope:
                    conn = await _connect_udp(host, port, config, timeout)
                if udp_scope.cancelled_caught:
                    raise Timeout(
                        f"no QUIC answer from {host}:{port} (UDP) {AUTO_QUIC_GRACE:g} s "
                        "after TCP failed"
                    )
            else:
                with trio.move_on_after(AUTO_FALLBACK_DELAY):
                    await udp_failed.wait()
                conn = await connect(host, port, config, transport="tcp", timeout=timeout)
        except (Error, OSError) as exc:
            failures[transport] = exc
            queued[transport] = errors.errors()
            if transport == "udp":
                udp_failed.set()
            else:
                udp_scope.deadline = min(udp_scope.deadline, trio.current_time() + AUTO_QUIC_GRACE)
            if len(failures) == 2:
                cancel.cancel()
            return
        if winner:
            await conn.aclose()
            return
        winner.append(conn)
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        scope = nursery.cancel_scope
        nursery.start_soon(attempt, "udp", scope)
        nursery.start_soon(attempt, "tcp", scope)
    if winner:
        return winner[0]
    if len(failures) == 2:
        for transport in ("udp", "tcp"):  # the attempts' queues, moved to this task
            errors.put_errors(queued.get(transport, ()))
        raise AutoFailed({t: failures[t] for t in ("udp", "tcp")})
    raise CliError("connect: no transport answered")


async def open_connection(
    args: argparse.Namespace, host: str, port: int, *, quiet: bool = False
) -> Connection:
    """Connect as the options say; on failure raise :class:`CliError` after printing why."""
    config = client_config(args, host)
    try:
        if args.transport == "auto":
            conn = await _connect_auto(host, port, config, args.timeout)
        elif args.transport == "udp":
            conn = await _connect_udp(host, port, config, args.timeout)
        else:
            conn = await connect(host, port, config, transport=args.transport, timeout=args.timeout)
    except ConfigurationError as exc:
        raise CliError(f"bad option: {exc}", EXIT_USAGE) from None
    except AutoFailed as exc:
        report(f"cannot connect to {host}:{port} over udp or tcp: {exc}")
        for failure in exc.failures.values():
            if isinstance(failure, ConfigurationError):
                raise CliError(f"bad option: {failure}", EXIT_USAGE) from None
        errors.print_errors()
        raise CliError("connection failed") from exc
    except Error as exc:
        report(f"cannot connect to {host}:{port} over {args.transport}: {describe_failure(exc)}")
        errors.print_errors()
        raise CliError("connection failed") from exc
    except OSError as exc:  # trio's TCP connect reports a refusal as a bare OSError
        report(f"cannot connect to {host}:{port} over {args.transport}: {exc}")
        raise CliError("connection failed") from exc
    if not quiet:
        report(f"connected to {host}:{port} over {conn.transport} ({_framing(conn)})")
        report(peer_summary(conn.peer_certificate, conn.alpn))
    return conn


def _framing(conn: Connection) -> str:
    return "QUIC v1" if conn.transport == "udp" else "QMux over TLS 1.3"


def peer_summary(peer: Any, alpn: str | None) -> str:
    """The server certificate in one line (subject, names, key hash, ALPN)."""
    if peer is None:
        return f"server certificate NOT verified (--insecure), ALPN {alpn}"
    names = [f"DNS:{n}" for n in peer.dns_names] + [f"IP:{a}" for a in peer.ip_addresses]
    issuer = peer.chain[-1].subject.rfc4514_string() if len(peer.chain) > 1 else "pinned key"
    return (
        f"server {peer.subject} [{', '.join(names) or 'no names'}] issued by {issuer}, "
        f"key sha256 {peer.spki_sha256[:16]}..., ALPN {alpn}"
    )


def run(main: Callable[[], Awaitable[Any]]) -> int:
    """Run an async command; map failures to exit statuses.

    SIGINT (Ctrl-C) cancels the command at its next checkpoint and exits
    :data:`EXIT_INTERRUPTED` with no traceback, like ncat: trio delivers it as a
    signal, never as a KeyboardInterrupt in the middle of the library's state
    changes.  A second SIGINT while the first one's cancellation is running exits
    at once.  Standard output closed by its reader (``mstls connect ... | head``)
    exits :data:`EXIT_BROKEN_PIPE` quietly, as a process killed by SIGPIPE would.
    """
    try:
        result = trio.run(_interruptible, main)
    except CliError as exc:
        if str(exc) != "connection failed":
            report(str(exc))
        return exc.status
    except BrokenPipeError:
        return stdout_gone()
    except KeyboardInterrupt:  # before the signal receiver was installed, or after
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        if _only(group, BrokenPipeError):
            return stdout_gone()
        if _only(group, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        if _only(group, _CONNECTION_FAILURES):  # from a command's inner nursery
            first = _leaves(group)[0]
            report(describe_failure(first))
            return EXIT_CONNECTION
        raise
    return int(result or 0)


async def _interruptible(main: Callable[[], Awaitable[Any]]) -> Any:
    """``await main()``, cancelled by SIGINT (then :data:`EXIT_INTERRUPTED`)."""
    interrupted = False
    failure: BaseException | None = None
    result: Any = None
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal interrupted
                async for _ in signals:
                    if interrupted:  # the second Ctrl-C: do not wait for the cleanup
                        os._exit(EXIT_INTERRUPTED)
                    interrupted = True
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            try:
                result = await main()
            except BaseException as exc:  # decided below, outside the nursery
                failure = exc
            nursery.cancel_scope.cancel()
    if interrupted:
        return EXIT_INTERRUPTED  # whatever the cancellation made main() raise
    if failure is not None:
        raise failure
    return result


#: What a broken connection or stream raises inside a command's tasks.
_CONNECTION_FAILURES = (Error, trio.BrokenResourceError, trio.ClosedResourceError)


def _only(
    group: BaseExceptionGroup[BaseException],
    kind: type[BaseException] | tuple[type[BaseException], ...],
) -> bool:
    """Whether every leaf of ``group`` is a ``kind``."""
    rest = group.split(kind)[1]
    return rest is None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def stdout_gone() -> int:
    """Standard output's reader left: point fd 1 at /dev/null so the exit flush is silent."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE
