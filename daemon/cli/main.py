"""``mstls``: the command line client, tunnel, file transfer and benchmark.

Subcommands (``mstls COMMAND --help`` explains each):

* ``certs DIR``: a development CA, a server and a client certificate;
* ``connect HOST:PORT``: standard input/output over one stream (like ncat);
* ``tunnel --listen ADDR --to HOST:PORT --service S``: a local TCP port to a
  daemon service, one stream per TCP connection over one connection;
* ``send FILE HOST:PORT`` / ``recv``: a file with a progress bar and a SHA-256;
* ``bench HOST:PORT``: handshake rate (sequential, or ``--concurrency C``) and
  throughput against a daemon.

Exit status: 0 success, 1 connection failure, 2 usage or configuration error,
3 the server reset or stopped the stream (its code is printed by name), 130
interrupted (Ctrl-C), 141 standard output closed by its reader (EPIPE).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import mstls
from mstls import ConfigurationError
from mstls.devcerts import write_dev_pki

from ..config import ALPN, DEFAULT_PORT, parse_address
from ..state import default_state_dir
from .bench import run_bench
from .common import EXIT_USAGE, add_client_options, report, run, stdout_gone, target
from .connect import run_connect
from .transfer import run_recv, run_send
from .tunnel import DEFAULT_KEEPALIVE, run_tunnel

__all__ = ["build_parser", "main"]

DEFAULT_RECV_ADDRESS = "127.0.0.1:4434"

_DESCRIPTION = f"""\
mstls: secure multiplexed connections from the command line -- QUIC v1 over UDP
or QMux over TLS 1.3 over TCP -- to an mstlsd daemon or any mstls server.

    mstlsd &                                                  # the embedded default daemon
    echo hello | mstls connect 127.0.0.1:{DEFAULT_PORT} --service echo

Against a daemon on this machine the development CA of its state directory is
trusted without --cafile (see "mstls connect --help").
"""

_CONNECT_HELP = f"""\
Open one stream, send standard input on it and write what comes back to standard
output, like ncat.  With --service S the stream starts with the mstlsd preamble
"S\\n" that picks the daemon's service.  The server certificate summary and
any failure (with the reason and the error queue) go to standard error.

Trust: --cafile, --pin or --insecure; without them a local server (127.0.0.1,
::1, localhost) is checked against the mstlsd development CA in
--state-dir (default {default_state_dir()}), any other against the system store.

exit status: 0 the server ended the stream, 1 connection failure,
2 usage error, 3 the server reset/stopped the stream (e.g. 0x100
UNKNOWN_SERVICE, 0x101 NOT_AUTHORISED, 0x102 BACKEND_REFUSED), 130 Ctrl-C,
141 standard output closed (e.g. "| head")."""


def _address(default_host: str) -> Callable[[str], tuple[str, int]]:
    def parse(text: str) -> tuple[str, int]:
        try:
            return parse_address(text, default_host)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _add_connect(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "connect",
        help="standard input/output over one stream (like ncat)",
        description=_CONNECT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", type=target, metavar="HOST:PORT")
    p.add_argument("-s", "--service", help="mstlsd service to open (sends the preamble)")
    p.add_argument("-q", "--quiet", action="store_true", help="no connection summary")
    add_client_options(p)
    p.set_defaults(run=run_connect)


def _add_tunnel(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "tunnel",
        help="a local TCP port to a daemon service over one connection",
        description="Accept TCP connections on --listen; relay each over its own stream "
        "of ONE multiplexed connection to --to, opening --service.  Half-close is "
        "propagated both ways; a stream the daemon resets resets the TCP connection.  "
        "The connection is kept alive (--keepalive) and reopened when it ends "
        "(a daemon restart): the next TCP connection does not notice.",
    )
    p.add_argument("--listen", type=_address("127.0.0.1"), required=True, metavar="[HOST]:PORT")
    p.add_argument("--to", type=target, required=True, metavar="HOST:PORT")
    p.add_argument("-s", "--service", required=True, help="mstlsd service, e.g. a forward")
    p.add_argument(
        "--keepalive",
        type=float,
        default=DEFAULT_KEEPALIVE,
        metavar="SECONDS",
        help="send a PING after this long without traffic, below the server's idle timeout "
        f"(default {DEFAULT_KEEPALIVE:g})",
    )
    add_client_options(p)
    p.set_defaults(run=run_tunnel)


def _add_transfer(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "send",
        help="send a file to 'mstls recv' (progress bar, SHA-256)",
        description="Send FILE on one stream; print its SHA-256 and whether the receiver "
        "computed the same.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("target", type=target, metavar="HOST:PORT")
    p.add_argument("-s", "--service", help="mstlsd service to open first (preamble)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_client_options(p)
    p.set_defaults(run=run_send)

    r = commands.add_parser(
        "recv",
        help="receive one file from 'mstls send' (progress bar, SHA-256)",
        description="Listen, receive one file, print its SHA-256, exit.  Without --cert the "
        "development certificate of the mstlsd state directory is used.",
    )
    r.add_argument(
        "--listen",
        type=_address("127.0.0.1"),
        default=DEFAULT_RECV_ADDRESS,
        metavar="[HOST]:PORT",
        help=f"address to listen on (default {DEFAULT_RECV_ADDRESS})",
    )
    r.add_argument("-o", "--output", help="file to write ('-': standard output)")
    r.add_argument("--force", action="store_true", help="overwrite an existing file")
    r.add_argument("--transport", choices=("udp", "tcp", "both"), default="both")
    r.add_argument("--cert", type=Path, help="server certificate (PEM)")
    r.add_argument("--key", type=Path, help="private key of --cert")
    r.add_argument("--alpn", default=ALPN)
    r.add_argument("--state-dir", type=Path, help="mstlsd state directory (development PKI)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(run=run_recv)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "bench",
        help="handshake rate and throughput against a daemon",
        description="Measure handshakes (each with an echo round trip), upload throughput to "
        "'discard' and round-trip throughput through 'echo'.  By default the handshakes run "
        "one after the other: one client's latency-bound rate, not the server's capacity; "
        "--concurrency C keeps C in flight to load the server.",
    )
    p.add_argument("target", type=target, metavar="HOST:PORT")
    p.add_argument("--size", type=float, default=64.0, help="MiB per transfer (default 64)")
    p.add_argument("--handshakes", type=_positive, default=50, help="connections (default 50)")
    p.add_argument(
        "--concurrency",
        type=_positive,
        default=1,
        help="handshakes in flight at once (default 1: sequential)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_client_options(p)
    p.set_defaults(run=run_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mstls",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build = "compiled, mypyc" if mstls.compiled else "pure Python"  # issue 15
    parser.add_argument(
        "--version", action="version", version=f"mstls {mstls.__version__} ({build})"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    certs = commands.add_parser(
        "certs",
        help="write a development CA, server and client certificate",
        description="Write ca.pem/ca.key, server.pem/server.key (localhost, 127.0.0.1, ::1) "
        "and client.pem/client.key into DIR.  Development credentials only.",
    )
    certs.add_argument("directory", type=Path, metavar="DIR")
    certs.add_argument("--client-name", default="client.localhost", help="client DNS name")
    certs.add_argument(
        "--server-name", action="append", help="server DNS name (repeatable; default localhost)"
    )
    certs.add_argument("--force", action="store_true", help="overwrite existing files")
    certs.set_defaults(run=None)
    _add_connect(commands)
    _add_tunnel(commands)
    _add_transfer(commands)
    _add_bench(commands)
    return parser


def _certs(args: argparse.Namespace) -> int:
    try:
        paths = write_dev_pki(
            args.directory,
            server_dns_names=args.server_name or ("localhost",),
            client_name=args.client_name,
            overwrite=args.force,
        )
    except ConfigurationError as exc:
        report(str(exc))
        return EXIT_USAGE
    for path in (paths.ca_cert, paths.server_cert, paths.client_cert):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand; the exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.run is None:
            return _certs(args)
    except BrokenPipeError:  # `mstls --help | head -1`
        return stdout_gone()
    command: Callable[[argparse.Namespace], Awaitable[int]] = args.run
    return run(functools.partial(command, args))


if __name__ == "__main__":
    sys.exit(main())
