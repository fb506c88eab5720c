"""Stream churn: many request/response streams one after another on ONE connection.

Run from the repository root: ``python -m bench.stream_churn`` (``--help``).

Theory of operation
-------------------
Issue 11: a long-lived connection must not grow with the number of streams it has
carried.  This opens ``--streams`` bidirectional streams in sequence on one
connection of the in-memory pair the tests use (``tests/quic/pair.py`` for UDP,
``tests/qmux/pair.py`` for TCP; a virtual clock, no sockets), each with
``--size`` bytes and the FIN each way, both ends reading through a
:class:`~mstls.session.Session` as the drivers do.  It samples the process's
resident set size (``/proc/self/statm``) every ``--every`` streams and prints
the figures; the verdict compares every sample after ``--warmup`` streams with
the one taken at ``--warmup`` and fails (exit status 1) when the growth exceeds
``--budget`` MiB.  The default run (100,000 streams) takes a few minutes of one
core; ``--streams 1000000`` is the full issue-11 check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from mstls.session import Session
from tests.qmux import pair as qmux_pair
from tests.quic import pair as quic_pair

#: Page size for /proc/self/statm.
_PAGE = os.sysconf("SC_PAGE_SIZE")
#: Bound on pair steps per stream, so a bug ends the run instead of hanging it.
MAX_STEPS_PER_STREAM = 1000


def rss_bytes() -> int:
    """The resident set size of this process now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


class Churn:
    """One connection of an in-memory pair, both ends behind a Session."""

    def __init__(self, transport: str) -> None:
        self.pair: Any = quic_pair.Pair() if transport == "udp" else qmux_pair.Pair()
        self.pair.handshake()
        self.client = Session(self.pair.client, transport=transport)
        self.server = Session(self.pair.server, transport=transport)
        # The Sessions take the events, as drivers do.
        self.pair._collect = self._pump  # type: ignore[method-assign]
        self._pump()

    def _pump(self) -> None:
        self.client.pump_events()
        self.server.pump_events()

    @staticmethod
    def _drain(session: Session, stream_id: int) -> tuple[int, bool]:
        got = 0
        while (data := session.read(stream_id, 1 << 16)) is not None:
            if not data:
                return got, True
            got += len(data)
        return got, False

    def request(self, size: int) -> None:
        """One stream: ``size`` bytes and FIN from the client, the same back."""
        client, server = self.client, self.server
        sid = client.open_stream(True)
        if sid is None:
            raise RuntimeError("no stream credit: MAX_STREAMS did not come back")
        client.write(sid, b"q" * size, fin=True)
        served = answered = False
        for _ in range(MAX_STEPS_PER_STREAM):
            if not served and server.accept_queue:
                _, served = self._drain(server, server.accept_queue[0])
                accepted = server.accept() if served else None
                if accepted is not None:
                    server.write(accepted, b"r" * size, fin=True)
            if served:
                _, answered = self._drain(client, sid)
                if answered:
                    return
            if not self.pair.step():
                break
        raise RuntimeError(f"stream {sid} did not complete")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes each way (default 1 KiB)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=10_000, help="streams between samples")
    parser.add_argument("--budget", type=float, default=5.0, help="MiB of growth allowed")
    args = parser.parse_args(argv)
    churn = Churn(args.transport)
    start_rss = rss_bytes()
    base: int | None = None
    worst = 0
    cpu0 = time.process_time()
    print(f"{'streams':>10} {'RSS MiB':>9} {'since warm-up':>14} {'CPU us/stream':>14}")
    for done in range(1, args.streams + 1):
        churn.request(args.size)
        if done % args.every == 0 or done in (args.warmup, args.streams):
            rss = rss_bytes()
            if done == args.warmup:
                base = rss
            growth = 0 if base is None else rss - base
            worst = max(worst, growth)
            per_stream = (time.process_time() - cpu0) / done * 1e6
            shown = "-" if base is None else f"{growth / 2**20:+.2f}"
            print(f"{done:>10} {rss / 2**20:>9.1f} {shown:>14} {per_stream:>14.0f}", flush=True)
    print(
        f"start RSS {start_rss / 2**20:.1f} MiB; worst growth after {args.warmup} streams: "
        f"{worst / 2**20:.2f} MiB (budget {args.budget} MiB)"
    )
    if base is None:
        print("fewer streams than --warmup: no verdict")
        return 0
    ok = worst <= args.budget * 2**20
    print("flat" if ok else "GROWS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
