"""Cost of splitting a listener's output by address and ECN codepoint (RFC 9000 §13.4.2.2).

``python -m bench.ecn_runs [--connections N] [--datagrams K] [--rounds R]``

One flush's output of N connections with K datagrams each (every other
connection's validation failed, so the codepoint changes at every connection:
the worst case) is split into send stretches three ways, in the same run:

* ``inline``: the address-only loop the trio listener used before per-connection
  marking (the reference);
* ``no runs``: :func:`~mstls.core.ecn_runs.send_segments` without runs (ECN off);
* ``runs``: with the endpoint's runs (ECN on).

Printed as ratios to ``inline`` (best of R rounds each, interleaved).  The
sockets' work (one ``setsockopt`` per codepoint change, the sends) is not in it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from mstls.core.ecn import ECT0
from mstls.core.ecn_runs import CodepointRuns, add_run, send_segments


def _inline(out: list[tuple[bytes, Any]]) -> int:
    stretches = 0
    index, count = 0, len(out)
    while index < count:
        addr = out[index][1]
        end = index + 1
        while end < count and out[end][1] == addr:
            end += 1
        stretches += 1
        index = end
    return stretches


def _segments(out: list[tuple[bytes, Any]], runs: CodepointRuns | None) -> int:
    return sum(1 for _ in send_segments(out, runs))


def _output(connections: int, datagrams: int) -> tuple[list[tuple[bytes, Any]], CodepointRuns]:
    out: list[tuple[bytes, Any]] = []
    runs: CodepointRuns = []
    for conn in range(connections):
        address = ("127.0.0.1", 10000 + conn)
        out.extend((b"x" * 1200, address) for _ in range(datagrams))
        add_run(runs, len(out), ECT0 if conn % 2 else 0)
    return out, runs


def _best(fn: Callable[[], int], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--datagrams", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    out, runs = _output(args.connections, args.datagrams)
    cases: dict[str, Callable[[], int]] = {
        "inline": lambda: _inline(out),
        "no runs": lambda: _segments(out, None),
        "runs": lambda: _segments(out, runs),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for name, fn in cases.items():
            best[name] = min(best[name], _best(fn, args.repeat))
    per_flush = {name: value / args.repeat for name, value in best.items()}
    print(f"{args.connections} connections x {args.datagrams} datagrams per flush")
    for name, value in per_flush.items():
        ratio = value / per_flush["inline"]
        print(f"  {name:8s} {value * 1e6:8.1f} us/flush  {ratio:5.2f}x inline")


if __name__ == "__main__":
    main()
