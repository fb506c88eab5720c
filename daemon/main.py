"""``mstlsd``: the command line of the daemon.

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT and the drain), 2 for a
configuration problem (reported before anything is bound), 1 when a listener
cannot be bound or the daemon fails.  With ``workers = N`` (N > 1) this
process is the parent of N workers (:mod:`mstlsd.workers`) and its status is
0 only when every worker exited 0 after a shutdown signal.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

import mstls

from . import logs
from .config import ALPN, DEFAULT_PORT, ConfigError, DaemonConfig, default_config, load_config
from .server import BindError, Daemon, ready_message
from .state import STATE_DIR_ENV, StateError, default_state_dir
from .workers import supervise, watch_parent

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "build_parser", "main"]

EXIT_FAILURE = 1
EXIT_CONFIG = 2

_DESCRIPTION = f"""\
mstlsd terminates secure multiplexed connections -- QUIC v1 on UDP and QMux over
TLS 1.3 on TCP -- and routes every stream to a service named by the stream's
first line (the preamble "SERVICE-NAME\\n").

Without --config it runs the embedded default: UDP and TCP on 127.0.0.1 port
{DEFAULT_PORT}, development certificates generated on first start in the state
directory, services "echo" and "discard", ALPN "{ALPN}".  Try it with:

    echo hello | mstls connect 127.0.0.1:{DEFAULT_PORT} --service echo
"""

_EPILOG = f"""\
signals: SIGTERM/SIGINT drain (stop accepting, let streams finish, close with
0x200) and exit 0; a second one closes at once.  SIGHUP reloads the
configuration without dropping connections.

state directory: --state-dir, else state_dir in the config file, else
${STATE_DIR_ENV}, else $XDG_STATE_HOME/mstlsd or ~/.local/state/mstlsd.
Example configurations: configs/*.toml; see the README section "Running mstlsd".
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mstlsd",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mstlsd {mstls.__version__}")
    parser.add_argument("-c", "--config", type=Path, metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where development certificates and the stateless-reset key live",
    )
    parser.add_argument(
        "--listen-port",
        type=int,
        metavar="PORT",
        help="use PORT for every listener (overrides the configuration)",
    )
    parser.add_argument(
        "--log-format", choices=("human", "json"), help="log format (overrides the configuration)"
    )
    parser.add_argument(  # internal: set by the parent of a multi-worker daemon
        "--worker", type=int, metavar="I", help=argparse.SUPPRESS
    )
    parser.add_argument("--ready-fd", type=int, metavar="FD", help=argparse.SUPPRESS)
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the configuration and certificates, print a summary, exit; writes nothing",
    )
    return parser


def _load(args: argparse.Namespace) -> DaemonConfig:
    config = load_config(args.config) if args.config is not None else default_config()
    if args.listen_port is not None and not 0 <= args.listen_port <= 65535:
        raise ConfigError("--listen-port", "", f"not a port number: {args.listen_port}")
    return config


def _state_dir(args: argparse.Namespace, config: DaemonConfig) -> Path:
    if args.state_dir is not None:
        return Path(args.state_dir)
    return config.state_dir if config.state_dir is not None else default_state_dir()


async def _serve(daemon: Daemon, ready_fd: int | None = None) -> None:
    """Run ``daemon`` with its signals; a worker reports "bound" on ``ready_fd``."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def on_signals() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        daemon.reload()
                    else:
                        daemon.request_shutdown()

            async def run(task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
                await daemon.run(task_status=task_status)
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_signals)
            await nursery.start(run)
            if ready_fd is not None:
                os.write(ready_fd, b"bound\n")
                os.close(ready_fd)
                nursery.start_soon(watch_parent, daemon.request_shutdown)


def _summary(daemon: Daemon) -> str:
    config = daemon.config
    state = f"state directory: {daemon.state_dir}"
    if not daemon.state_dir.exists():
        state += " (absent: created on the first start)"
    lines = [f"configuration OK: {config.source}", state]
    lines += [f"listener: {spec.label()}" for spec in config.listeners]
    if config.workers > 1:
        lines.append(f"workers: {config.workers}")
    if config.fleet is not None:
        fleet = config.fleet
        lines.append(
            f"fleet: host {fleet.host_id}, QUIC-LB config {fleet.config_id}, "
            f"server ID (host, worker), {fleet.cid_length}-byte connection IDs"
        )
    lines += [f"service: {name} ({spec.type})" for name, spec in sorted(config.services.items())]
    return "\n".join(lines)


def _check_workers(args: argparse.Namespace, config: DaemonConfig) -> None:
    if args.worker is not None and not 0 <= args.worker < config.workers:
        raise ConfigError("--worker", "", f"expected 0-{config.workers - 1}, got {args.worker}")
    if config.workers > 1:
        for spec in config.listeners:
            port = spec.port if args.listen_port is None else args.listen_port
            if port == 0:
                raise ConfigError(
                    config.source, "workers", f"{spec.label()}: workers share a fixed port, not 0"
                )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the daemon; the exit status (see the module documentation)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        config = _load(args)
        _check_workers(args, config)
        log_format = args.log_format or config.logging.format
        logs.configure(log_format, config.logging.level)
        daemon = Daemon(
            config,
            state_dir=_state_dir(args, config),
            config_path=args.config,
            port_override=args.listen_port,
            log_format_override=args.log_format,
            worker=args.worker if config.workers > 1 else None,
            check_only=args.check,
        )
    except (ConfigError, StateError) as exc:
        print(f"mstlsd: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        print(_summary(daemon))
        return 0
    if config.workers > 1 and args.worker is None:
        # The keys and certificates exist by now.
        return supervise(argv, config.workers, ready_message(daemon.config))
    failures: list[BaseException] = []
    try:
        trio.run(_serve, daemon, args.ready_fd)
    except* BindError as group:  # raised inside the signal nursery, so inside a group
        failures.extend(group.exceptions)
    for failure in failures:
        print(f"mstlsd: {failure}", file=sys.stderr)
    return EXIT_FAILURE if failures else 0


if __name__ == "__main__":
    sys.exit(main())
