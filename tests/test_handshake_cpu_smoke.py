"""Smoke test of ``python -m bench.handshake_cpu``: a tiny run, every stack and group.

No timing is asserted: only that every (group, stack) pair completes its
handshakes (the bench raises otherwise) and reports positive numbers and a
ratio to qh3.  In-process, no sockets: about a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.handshake_cpu import GROUPS, STACKS

ROOT = Path(__file__).resolve().parent.parent
#: Hard bound on the benchmark subprocess (it normally needs about a second).
SMOKE_TIMEOUT = 120
HANDSHAKES = 4


def test_handshake_cpu_bench_reports_every_stack_and_group(tmp_path: Path) -> None:
    pytest.importorskip("qh3")
    out = tmp_path / "handshakes.json"
    command = [sys.executable, "-m", "bench.handshake_cpu", "--handshakes", str(HANDSHAKES)]
    command += ["--warmup", "1", "--rounds", "2", "--json", str(out)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["handshakes"] == HANDSHAKES
    assert set(results["groups"]) == set(GROUPS)
    for row in results["groups"].values():
        assert set(row) == set(STACKS)
        for numbers in row.values():
            assert numbers["median_ms"] > 0 and numbers["min_ms"] > 0
    assert "/qh3" in done.stdout


def test_handshake_cpu_profile_option_prints_a_profile() -> None:
    """``--profile`` profiles the named stack's server calls only."""
    command = [sys.executable, "-m", "bench.handshake_cpu", "--handshakes", "2", "--warmup", "0"]
    command += ["--rounds", "1", "--stacks", "mstls", "--groups", "x25519", "--profile", "mstls"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "receive_datagram" in done.stdout
    assert "function calls" in done.stdout
