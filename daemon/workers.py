"""``workers = N``: the parent process that runs N worker processes on shared ports.

Theory of operation
-------------------
The parent checks the configuration, makes the state directory's keys and
development certificates (so the workers never race to create them), then
starts the workers one at a time: ``python -m mstlsd ARGS --worker I
--ready-fd FD``.  Worker ``I`` binds every listener with SO_REUSEPORT and
writes one line to the pipe ``FD`` once all of them are bound (it logs "worker I
bound"); only then does the next worker start, so the socket index of worker
``I`` in each reuseport group is ``I``.  That is what the steering program
(:mod:`mstlsd.steering`, attached to the UDP group by worker 0) relies on: it
returns the worker byte of the QUIC-LB connection ID's server ID (after the host
byte with ``[fleet]``), which worker ``I`` sets to ``I``.  The parent logs
"mstlsd ready" (and tells systemd READY=1) once the last worker is bound.

Each worker runs in its own process group, so a terminal's Ctrl-C reaches only
the parent, which forwards SIGTERM, SIGINT and SIGHUP to every live worker
(each worker then drains or reloads as a single daemon does).  A worker whose
parent vanishes (``kill -9``) notices within :data:`ORPHAN_CHECK_INTERVAL`
seconds and drains.

Exit status of the parent: 0 when every worker exited 0 after a shutdown
signal; 1 when a worker could not start, exited non-zero, or exited without
being asked to -- the parent then logs it and stops the others.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence

import trio

from .logs import event
from .notify import notify

__all__ = [
    "BIND_TIMEOUT",
    "ORPHAN_CHECK_INTERVAL",
    "WORKER_ENV",
    "supervise",
    "watch_parent",
]

#: Set in each worker's environment: its index (handlers may read it).
WORKER_ENV = "MSTLSD_WORKER"
#: How long one worker may take to bind its listeners.
BIND_TIMEOUT = 30.0
#: How often a worker checks that its parent is still there (seconds).
ORPHAN_CHECK_INTERVAL = 1.0
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_FAILURE = 1
_READ_SIZE = 64


class WorkerStartError(Exception):
    """A worker exited or timed out before binding its listeners."""


def worker_argv(argv: Sequence[str], index: int, ready_fd: int) -> list[str]:
    """The command line of worker ``index``: the parent's arguments plus the worker's."""
    return [
        sys.executable,
        "-m",
        "mstlsd",
        *argv,
        "--worker",
        str(index),
        "--ready-fd",
        str(ready_fd),
    ]


def _worker_env(index: int) -> dict[str, str]:
    env = dict(os.environ)
    env[WORKER_ENV] = str(index)
    env.pop("NOTIFY_SOCKET", None)  # systemd hears from the parent only
    return env


async def _start_worker(argv: Sequence[str], index: int) -> trio.Process:
    """Start worker ``index`` and wait until it has bound its listeners."""
    read_fd, write_fd = os.pipe()
    try:
        proc = await trio.lowlevel.open_process(
            worker_argv(argv, index, write_fd),
            pass_fds=(write_fd,),
            env=_worker_env(index),
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
    finally:
        os.close(write_fd)
    pipe = trio.lowlevel.FdStream(read_fd)
    try:
        with trio.move_on_after(BIND_TIMEOUT):
            if await pipe.receive_some(_READ_SIZE):
                return proc
            code = await proc.wait()  # the pipe closed: the worker is gone
            raise WorkerStartError(f"worker {index} exited with status {code} before binding")
        proc.kill()
        await proc.wait()
        raise WorkerStartError(f"worker {index} did not bind within {BIND_TIMEOUT:g} s")
    finally:
        await pipe.aclose()


class _Supervisor:
    def __init__(self, procs: list[trio.Process]) -> None:
        self.procs = procs
        self.stopping = False
        self.failed = False

    def send(self, signum: int) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signum)

    async def forward(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if signum in STOP_SIGNALS and not self.stopping:
                self.stopping = True
                notify("STOPPING=1")
            name = signal.Signals(signum).name
            event(logging.INFO, "workers.signal", f"forwarding {name} to the workers")
            self.send(signum)

    async def watch(self, index: int, proc: trio.Process) -> None:
        code = await proc.wait()
        if code == 0 and self.stopping:
            event(logging.INFO, "workers.exited", f"worker {index} exited", worker=index)
            return
        self.failed = True
        why = f"status {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        event(
            logging.ERROR,
            "workers.died",
            f"worker {index} (pid {proc.pid}) exited unexpectedly ({why}): stopping the others",
            worker=index,
        )
        if not self.stopping:
            self.stopping = True
            self.send(signal.SIGTERM)


async def _run(argv: Sequence[str], workers: int, ready: str) -> int:
    procs: list[trio.Process] = []
    with trio.open_signal_receiver(*FORWARDED_SIGNALS) as signals:
        try:
            for index in range(workers):
                procs.append(await _start_worker(argv, index))
        except (WorkerStartError, OSError) as exc:
            event(logging.ERROR, "workers.start_failed", f"cannot start the workers: {exc}")
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(BIND_TIMEOUT):
                for proc in procs:
                    await proc.wait()
            return EXIT_FAILURE
        pids = " ".join(str(proc.pid) for proc in procs)
        event(logging.INFO, "workers.ready", f"all {workers} workers bound (pids {pids})")
        event(logging.INFO, "daemon.ready", ready)
        notify("READY=1")
        supervisor = _Supervisor(procs)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervisor.forward, signals)
            async with trio.open_nursery() as watchers:
                for index, proc in enumerate(procs):
                    watchers.start_soon(supervisor.watch, index, proc)
            nursery.cancel_scope.cancel()
    return EXIT_FAILURE if supervisor.failed else 0


def supervise(argv: Sequence[str], workers: int, ready: str) -> int:
    """Run ``workers`` worker processes of ``mstlsd ARGV``; the parent's exit status.

    ``ready`` (the "mstlsd ready" line) is logged once all of them are bound, and
    only by this process: a worker logs "worker I bound".
    """
    return trio.run(_run, argv, workers, ready)


async def watch_parent(on_orphaned: Callable[[], object]) -> None:
    """Call ``on_orphaned()`` once the parent process is gone (then return)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await trio.sleep(ORPHAN_CHECK_INTERVAL)
    event(logging.WARNING, "workers.orphaned", "the mstlsd parent is gone: shutting down")
    on_orphaned()
