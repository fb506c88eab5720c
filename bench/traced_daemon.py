"""Run ``mstlsd`` under tracemalloc; each SIGUSR1 writes a snapshot (a soak's diagnosis).

``python -m bench.traced_daemon SNAPSHOT_DIR [mstlsd arguments]``: the same daemon
as ``python -m mstlsd``, with :mod:`tracemalloc` on (``FRAMES`` frames per trace).
On each SIGUSR1 the current snapshot is written to ``SNAPSHOT_DIR/snap-<n>.pickle``,
``n`` counting from 0; :func:`growth` compares two of them.  Tracing costs CPU and
memory of its own, so a traced soak's RSS and CPU are not the untraced daemon's.
"""

from __future__ import annotations

import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

#: Stack depth recorded per allocation: enough to see which caller of a shared
#: helper (a dict, a deque) holds the memory.
FRAMES = 12


def growth(before: Path, after: Path, top: int = 25) -> list[str]:
    """The ``top`` call sites whose live memory grew most from ``before`` to ``after``."""
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = new.filter_traces(ignore).compare_to(old.filter_traces(ignore), "traceback")
    lines = []
    for stat in stats[:top]:
        lines.append(f"{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks")
        lines.extend(f"    {line}" for line in stat.traceback.format(limit=FRAMES))
    return lines


def main() -> None:
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    taken = 0

    def snapshot(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        tracemalloc.take_snapshot().dump(str(directory / f"snap-{taken}.pickle"))
        taken += 1

    signal.signal(signal.SIGUSR1, snapshot)
    tracemalloc.start(FRAMES)
    sys.argv = ["mstlsd", *sys.argv[2:]]
    # Imported once tracing is on, so that the daemon's own imports are traced too.
    from mstlsd.main import main as mstlsd_main  # noqa: PLC0415

    sys.exit(mstlsd_main())


if __name__ == "__main__":
    main()
