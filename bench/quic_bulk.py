"""QUIC bulk upload and handshake cost: mstls against aioquic and qh3, measured in one run.

Run from the repository root: ``python -m bench.quic_bulk`` (options: ``--help``;
``bench/README.md`` explains the numbers).

Theory of operation
-------------------
Every measurement starts a fresh *server process* and a fresh *client process*
(``multiprocessing`` with the spawn method), so each side has its own
interpreter and can have its own core; the parent only orchestrates them over
two pipes and sleeps while they work.  Messages are pickled tuples:

* server → parent: ``("ready", port)`` once listening on 127.0.0.1, then one
  ``("report", stats)`` per ``("report",)`` request; ``("stop",)`` ends it, as
  does the pipe closing (the parent died);
* parent → client: ``("go", port)``; client → parent: ``("result", stats)``;
* either child may send ``("error", traceback)`` instead.

*Bulk upload.*  After the handshake the client opens one bidirectional stream,
writes ``--size`` bytes and the FIN; the server reads and discards, and when it
sees the FIN answers ``b"ok"`` and the FIN.  The client's wall time runs from
its first write to the end of that answer.  The server's CPU time
(``time.process_time``) and its count of received datagrams run from the
completion of the handshake to the moment it read the FIN.

*Handshakes.*  The client performs ``--handshakes`` + 1 handshakes in
sequence, each from a new socket: it waits until its handshake is complete
(its Finished is sent in the same turn), then closes the connection without
waiting for the closing period.  The first handshake is a warm-up: the
server's CPU time runs from its completion to the completion of the last one,
so each measured handshake is a full cycle (the previous connection's close,
then parsing, key exchange, signing and the server's timers).  The parent asks
the server for its numbers until that span has ended.

*Fairness.*  Both stacks get the same certificate (ECDSA P-256 from
:func:`mstls.devcerts.write_dev_pki`), the same ALPN, 1200-byte datagrams
(aioquic ``max_datagram_size``; mstls with path-MTU probing off), the same
receive windows (:data:`CONNECTION_WINDOW`, :data:`STREAM_WINDOW`) and the
same socket buffer sizes (aioquic's are raised to what mstls asks for).  The key
exchange differs by default: an aioquic client sends secp256r1, secp384r1 and
x25519 shares and an aioquic server takes the first (secp256r1); mstls offers
X25519MLKEM768 first.  So handshakes are measured per group: each stack's
default, both with x25519 alone (aioquic has no setting for it; its client is
patched in the client process, see :mod:`bench.quic_aioquic`) and
mstls with secp256r1 (what aioquic picks by default).

The roles live in :mod:`bench.quic_mstls` (with the mstls driver loop, which
is part of what is measured), :mod:`bench.quic_api` (mstls through its public
blocking API) and :mod:`bench.quic_aioquic` (aioquic, and qh3, its fork with the
same API); what they share is in :mod:`bench.quic_common`, the scenarios and
ratios in :mod:`bench.quic_scenarios`.

*Builds* (issue 15).  The ``mstls-compiled*`` scenarios run both children on
the interpreter of the compiled build's venv (``./dev compiled`` makes
``.venv-compiled``; ``--compiled-python``), with that venv's site-packages
ahead of the source tree on their ``sys.path``, so the same bench code drives
the mypyc build; each child checks :data:`mstls.compiled` and fails if it got
the other build.  Scenarios whose stack or build is missing (no qh3, no
compiled venv) are skipped with a note unless named with ``--only``.

*Bounds.*  Every run has a deadline (:func:`default_timeout`, or
``--timeout``); the children check it in their loops and the parent kills both
processes when it passes, and always at the end of a run.  Only 127.0.0.1 is
used.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import importlib.util
import io
import json
import multiprocessing
import multiprocessing.spawn
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import aioquic

from mstls.devcerts import write_dev_pki

from . import quic_aioquic, quic_api, quic_mstls
from .quic_common import (
    CONNECTION_WINDOW,
    MIB,
    MIN_DATAGRAM,
    STREAM_WINDOW,
    BenchError,
    Job,
    Scenario,
)
from .quic_report import format_report
from .quic_scenarios import RATIOS, SCENARIOS

__all__ = [
    "RATIOS",
    "SCENARIOS",
    "BenchError",
    "Job",
    "Options",
    "Scenario",
    "compute_ratios",
    "default_compiled_python",
    "default_timeout",
    "format_report",
    "main",
    "parse_size",
    "run_bench",
    "run_job",
]

DEFAULT_SIZE = 64 * MIB
DEFAULT_DATAGRAM = MIN_DATAGRAM
#: Largest datagram the options accept (the largest UDP payload over IPv4).
MAX_DATAGRAM = 65527
DEFAULT_RUNS = 3
DEFAULT_HANDSHAKES = 50
#: Deadline of one run: this much for process start and handshakes, plus the size at MIN_RATE.
STARTUP_ALLOWANCE = 30.0
MIN_RATE = 1e6
#: Deadline of a handshake run: STARTUP_ALLOWANCE plus this much per handshake.
HANDSHAKE_ALLOWANCE = 0.5
#: How long stopped children get to exit before they are killed.
STOP_GRACE = 5.0
#: Pause between report requests while the server has not finished measuring.
REPORT_POLL = 0.01
#: Functions listed from each profile (``--profile``).
PROFILE_TOP = 15
MB = 1e6
ROOT = Path(__file__).resolve().parent.parent
#: The compiled build's interpreter unless ``--compiled-python`` (``./dev compiled`` makes it).
COMPILED_VENV_PYTHON = ROOT / ".venv-compiled" / "bin" / "python"


def default_timeout(scenario: Scenario, size: int, handshakes: int) -> float:
    """Seconds one run of ``scenario`` may take before it counts as hung."""
    if scenario.kind == "bulk":
        return STARTUP_ALLOWANCE + size / MIN_RATE
    return STARTUP_ALLOWANCE + handshakes * HANDSHAKE_ALLOWANCE


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``65536``, ``64k``, ``64KiB``, ``1M``, ``64MiB``, ``1GiB`` → bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*", text)
    if match is None or (match.group(3) and not match.group(2)):
        raise ValueError(f"not a size: {text!r} (examples: 65536, 64KiB, 1MiB)")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if size <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return size


# --- child processes ----------------------------------------------------------------------


def _client_role(job: Job, control: Connection) -> None:
    if not control.poll(job.timeout):
        raise BenchError("no port from the parent")
    message = control.recv()
    port = message[1]
    control.send(("result", _STACKS[job.scenario.stack][1](job, port)))


def _server_role(job: Job, control: Connection) -> None:
    _STACKS[job.scenario.stack][0](job, control)


#: Stack -> (server, client) of the child processes.
_STACKS: dict[str, tuple[Callable[[Job, Connection], None], Callable[[Job, int], Any]]] = {
    "mstls": (quic_mstls.server, quic_mstls.client),
    "mstls-api": (quic_api.server, quic_api.client),
    "aioquic": (quic_aioquic.server, quic_aioquic.client),
    "qh3": (quic_aioquic.server, quic_aioquic.client),
}


def _check_build(job: Job) -> None:
    """An mstls child runs the build its scenario names, or fails (no silent fallback)."""
    import mstls  # noqa: PLC0415 (the child's own mstls: compiled or not)

    if job.scenario.stack.startswith("mstls") and mstls.compiled != (
        job.scenario.build == "compiled"
    ):
        raise BenchError(
            f"{job.scenario.name} wants the {job.scenario.build} build of mstls; "
            f"{mstls.__file__} is {'compiled' if mstls.compiled else 'pure'}"
        )


_ROLES: dict[str, Callable[[Job, Connection], None]] = {
    "client": _client_role,
    "server": _server_role,
}


def _child(role: str, job: Job, control: Connection) -> None:
    """Entry point of a child process: play ``role`` in ``job``, report over ``control``."""
    try:
        _check_build(job)
        if job.nice:
            _renice(job.nice)
        if job.profile is None:
            _ROLES[role](job, control)
        else:
            _profiled(role, job, control)
    except BaseException:
        with contextlib.suppress(OSError):
            control.send(("error", f"{job.scenario.name} {role}: {traceback.format_exc()}"))
    finally:
        control.close()


def _renice(increment: int) -> None:
    """Change this process's priority by ``increment``, across sessions too.

    With Linux autogroup scheduling, niceness only ranks processes of one
    session; so the process first starts a session (a new autogroup) and sets
    that group's niceness as well (``/proc/self/autogroup``, root only).
    """
    with contextlib.suppress(OSError):
        os.setsid()
        Path("/proc/self/autogroup").write_text(f"{increment}\n")
    os.nice(increment)


def _profiled(role: str, job: Job, control: Connection) -> None:
    """Run ``role`` under cProfile; write ``<scenario>-<role>.prof`` and the top
    :data:`PROFILE_TOP` functions by own time (wall clock: run it on a quiet machine)."""
    assert job.profile is not None
    profile = cProfile.Profile()
    try:
        profile.runcall(_ROLES[role], job, control)
    finally:
        stem = Path(job.profile) / f"{job.scenario.name}-{role}"
        profile.dump_stats(f"{stem}.prof")
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(PROFILE_TOP)
        Path(f"{stem}.txt").write_text(text.getvalue())


# --- the parent ---------------------------------------------------------------------------


def _receive(
    want: Connection, kind: str, deadline: float, others: Sequence[Connection] = ()
) -> Any:
    """The next ``kind`` message from ``want``; a child error or a deadline raises."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"no {kind!r} message before the deadline")
        for ready in wait([want, *others], left):
            assert isinstance(ready, Connection)
            try:
                message = ready.recv()
            except EOFError:
                raise BenchError(f"a child exited while waiting for {kind!r}") from None
            if message[0] == "error":
                raise BenchError(message[1])
            if ready is want and message[0] == kind:
                return message[1]
            raise BenchError(f"unexpected message {message[0]!r} while waiting for {kind!r}")


def _server_report(server: Connection, job: Job, deadline: float) -> dict[str, Any]:
    """Ask until the server counted every handshake (bulk: its numbers froze at the FIN)."""
    while True:
        server.send(("report",))
        stats: dict[str, Any] = _receive(server, "report", deadline)
        if stats["final"]:
            return stats
        if time.monotonic() + REPORT_POLL > deadline:
            raise BenchError(f"the server counted {stats['handshakes']} handshakes: {stats}")
        time.sleep(REPORT_POLL)


def _site_packages(python: Path) -> str:
    """The ``purelib`` folder of the environment whose interpreter is ``python``."""
    program = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    done = subprocess.run(
        [str(python), "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"{python} does not run: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def _interpreter(python: Path | None) -> Iterator[None]:
    """Children started in this block run ``python`` with its site-packages first.

    A spawned child takes its ``sys.path`` from the parent at ``start()``: the other
    venv's site-packages go ahead of the source tree, so its ``mstls`` (the compiled
    one) is imported while :mod:`bench` still comes from the tree.
    """
    if python is None:
        yield
        return
    saved = list(sys.path)
    sys.path.insert(0, _site_packages(python))
    multiprocessing.spawn.set_executable(str(python))
    try:
        yield
    finally:
        sys.path[:] = saved
        multiprocessing.spawn.set_executable(sys.executable)


def run_job(job: Job, python: Path | None = None) -> dict[str, Any]:
    """One run: server and client processes (on ``python`` if given); both sides' numbers."""
    context = multiprocessing.get_context("spawn")
    ends = [context.Pipe() for _ in range(2)]
    processes = [
        context.Process(target=_child, args=(role, job, child), name=f"{job.scenario.name}-{role}")
        for role, (_, child) in zip(("server", "client"), ends, strict=True)
    ]
    server, client = ends[0][0], ends[1][0]
    deadline = time.monotonic() + job.timeout
    drops = _udp_receive_drops()
    try:
        with _interpreter(python):
            for process in processes:
                process.daemon = True
                process.start()
        for _, child in ends:
            child.close()
        port = _receive(server, "ready", deadline, [client])
        client.send(("go", port))
        client_stats = _receive(client, "result", deadline, [server])
        server_stats = _server_report(server, job, deadline)
        server.send(("stop",))
        for process in processes:
            process.join(STOP_GRACE)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(STOP_GRACE)
        for parent_end, _ in ends:
            parent_end.close()
    after = _udp_receive_drops()
    dropped = None if drops is None or after is None else after - drops
    return {"client": client_stats, "server": server_stats, "kernel_drops": dropped}


def _udp_receive_drops() -> int | None:
    """Datagrams the kernel dropped for full socket buffers so far (Linux, all sockets)."""
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return None
    rows = [line.split() for line in lines if line.startswith("Udp:")]
    if len(rows) != 2 or "RcvbufErrors" not in rows[0]:
        return None
    return int(rows[1][rows[0].index("RcvbufErrors")])


def _bulk_numbers(job: Job, raw: dict[str, Any]) -> dict[str, Any]:
    client, server = raw["client"], raw["server"]
    if server["stream_bytes"] != job.size:
        raise BenchError(f"server read {server['stream_bytes']} bytes of {job.size}")
    seconds, datagrams = client["seconds"], server["datagrams"]
    return {
        "mb_per_s": job.size / seconds / MB,
        "seconds": seconds,
        "server_cpu_s": server["cpu"],
        "server_datagrams": datagrams,
        "server_us_per_datagram": server["cpu"] / datagrams * 1e6,
        "server_ms_per_mib": server["cpu"] / (job.size / MIB) * 1e3,
        "server_busy": server["cpu"] / seconds,
        "mean_datagram_bytes": server["bytes"] / datagrams,
        "client_cpu_s": client["client_cpu"],
        "client_busy": client["client_cpu"] / seconds,
        "client_datagrams_received": client["client_datagrams_received"],
        "client_datagrams_sent": client["client_datagrams_sent"],
        "kernel_drops": raw["kernel_drops"],
        "groups": server["groups"],
    }


def _handshake_numbers(job: Job, raw: dict[str, Any]) -> dict[str, Any]:
    client, server = raw["client"], raw["server"]
    count = job.handshakes
    if server["handshakes"] != 1 + count:
        raise BenchError(f"the server counted {server['handshakes']} handshakes of {1 + count}")
    return {
        "handshakes": count,
        "server_cpu_s": server["cpu"],
        "server_ms_per_handshake": server["cpu"] / count * 1e3,
        "client_ms_per_handshake": statistics.mean(client["handshake_seconds"]) * 1e3,
        "groups": server["groups"],
    }


def _summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of every numeric field; for throughput also the best run."""
    summary: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float):
            summary[key] = statistics.median(run[key] for run in runs)
        else:
            summary[key] = value
    if "mb_per_s" in summary:
        summary["best_mb_per_s"] = max(run["mb_per_s"] for run in runs)
    return summary


def compute_ratios(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each :data:`RATIOS` entry whose two scenarios were run, with its value."""
    out = []
    for ratio in RATIOS:
        top, bottom = summaries.get(ratio.numerator), summaries.get(ratio.denominator)
        if top is None or bottom is None or not bottom.get(ratio.metric):
            continue
        out.append({**asdict(ratio), "value": top[ratio.metric] / bottom[ratio.metric]})
    return out


@dataclass(frozen=True)
class Options:
    """What to run (the command line)."""

    size: int = DEFAULT_SIZE
    datagram: int = DEFAULT_DATAGRAM
    runs: int = DEFAULT_RUNS
    handshakes: int = DEFAULT_HANDSHAKES
    only: tuple[str, ...] = ()
    timeout: float | None = None
    profile: str | None = None
    nice: int = 0
    #: The compiled build's interpreter (``mstls-compiled*``); None: the default one.
    compiled_python: str | None = None


def default_compiled_python() -> Path | None:
    """``.venv-compiled/bin/python`` if ``./dev compiled`` made it, else None."""
    return COMPILED_VENV_PYTHON if COMPILED_VENV_PYTHON.exists() else None


def _missing(scenario: Scenario, compiled_python: Path | None) -> str | None:
    """Why ``scenario`` cannot run here, or None."""
    if scenario.stack == "qh3" and importlib.util.find_spec("qh3") is None:
        return "qh3 is not installed (pip install 'qh3>=2.1')"
    if scenario.build == "compiled" and compiled_python is None:
        return "no compiled build (./dev compiled makes .venv-compiled, or --compiled-python)"
    return None


def run_bench(options: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every selected scenario ``options.runs`` times; returns the JSON document."""
    compiled_python = (
        Path(options.compiled_python) if options.compiled_python else default_compiled_python()
    )
    scenarios, skipped = [], {}
    for scenario in SCENARIOS:
        if options.only and scenario.name not in options.only:
            continue
        reason = _missing(scenario, compiled_python)
        if reason is None:
            scenarios.append(scenario)
        elif options.only:
            raise BenchError(f"{scenario.name}: {reason}")
        else:
            skipped[scenario.name] = reason
            log(f"  {scenario.name}: skipped, {reason}")
    load_before = _load_average()
    results = []
    with tempfile.TemporaryDirectory(prefix="mstls-bench-") as directory:
        pki = write_dev_pki(directory)
        for scenario in scenarios:
            timeout = options.timeout or default_timeout(scenario, options.size, options.handshakes)
            job = Job(
                scenario=scenario,
                size=options.size,
                datagram=options.datagram,
                handshakes=options.handshakes,
                ca=str(pki.ca_cert),
                cert=str(pki.server_cert),
                key=str(pki.server_key),
                timeout=timeout,
                profile=options.profile,
                nice=options.nice,
            )
            numbers = _bulk_numbers if scenario.kind == "bulk" else _handshake_numbers
            python = compiled_python if scenario.build == "compiled" else None
            runs = []
            for index in range(options.runs):
                log(f"  {scenario.name}: run {index + 1}/{options.runs} ...")
                runs.append(numbers(job, run_job(job, python)))
            results.append({**asdict(scenario), "runs": runs, "summary": _summarize(runs)})
    summaries = {result["name"]: result["summary"] for result in results}
    return {
        "settings": {
            **asdict(options),
            "connection_window": CONNECTION_WINDOW,
            "stream_window": STREAM_WINDOW,
        },
        "environment": {**_environment(), "load_average_before": load_before},
        "results": results,
        "skipped": skipped,
        "ratios": compute_ratios(summaries),
    }


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work competes for the cores)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _environment() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "aioquic": aioquic.__version__,
        "qh3": _version("qh3"),
        "mstls_commit": commit,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": _load_average(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _parse_args(argv: Sequence[str] | None) -> tuple[Options, str | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quic_bulk",
        description="QUIC bulk upload and handshake cost, mstls against aioquic and qh3.",
    )
    parser.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, help="bytes (64MiB)")
    parser.add_argument("--datagram", type=int, default=DEFAULT_DATAGRAM, help="bytes (1200)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per scenario (3)")
    parser.add_argument("--handshakes", type=int, default=DEFAULT_HANDSHAKES, help="per run (50)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    names = ", ".join(s.name for s in SCENARIOS)
    parser.add_argument("--only", default="", help=f"comma-separated scenarios of: {names}")
    parser.add_argument("--timeout", type=float, help="seconds per run (default: by size)")
    parser.add_argument("--profile", metavar="DIR", help="cProfile every child into DIR")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness increment of the children (negative: ahead of other load; needs root)",
    )
    parser.add_argument(
        "--compiled-python",
        metavar="PATH",
        help="interpreter of the compiled build (default: .venv-compiled/bin/python if present)",
    )
    args = parser.parse_args(argv)
    only = tuple(name for name in args.only.split(",") if name)
    unknown = set(only) - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}; known: {names}")
    if not MIN_DATAGRAM <= args.datagram <= MAX_DATAGRAM:
        parser.error(f"--datagram must be between {MIN_DATAGRAM} and {MAX_DATAGRAM}")
    if args.runs < 1 or args.handshakes < 1:
        parser.error("--runs and --handshakes must be at least 1")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    options = Options(
        size=args.size,
        datagram=args.datagram,
        runs=args.runs,
        handshakes=args.handshakes,
        only=only,
        timeout=args.timeout,
        profile=args.profile,
        nice=args.nice,
        compiled_python=args.compiled_python,
    )
    return options, args.json


def main(argv: Sequence[str] | None = None) -> int:
    options, json_path = _parse_args(argv)
    try:
        document = run_bench(options, log=lambda text: print(text, file=sys.stderr, flush=True))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(format_report(document))
    if json_path:
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n")
    if options.profile:
        print(f"\nprofiles (cProfile, top {PROFILE_TOP} by tottime) in {options.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
