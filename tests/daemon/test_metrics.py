"""The daemon's registry carries the process, the interpreter and a build-info metric.

Issue 13: ``/metrics`` had none of ``process_*`` (the registry is the daemon's own, so
prometheus-client's default collectors were not in it) and no build information.
"""

from __future__ import annotations

import platform

from prometheus_client import generate_latest

import mstls
from mstlsd.metrics import Metrics, build_info
from tests.daemon.support import sample


def test_process_python_and_build_info_metrics() -> None:
    text = generate_latest(Metrics().registry).decode()
    assert sample(text, "process_cpu_seconds_total") >= 0
    assert sample(text, "process_resident_memory_bytes") > 0
    assert sample(text, "process_open_fds") > 0
    assert sample(text, "process_start_time_seconds") > 0
    python = platform.python_version_tuple()
    assert sample(
        text, "python_info", implementation=platform.python_implementation(),
        major=python[0], minor=python[1], patchlevel=python[2], version=platform.python_version(),
    ) == 1  # fmt: skip
    info = build_info()
    assert info["version"] == mstls.__version__ and info["python"] == platform.python_version()
    assert info["cryptography"] != "unknown" and info["trio"] != "unknown"
    assert sample(text, "mstlsd_build_info", **info) == 1


def test_two_daemons_in_one_process_each_have_the_collectors() -> None:
    """Own registries: no "Duplicated timeseries" from the process collector."""
    first, second = Metrics(), Metrics()
    for metrics in (first, second):
        text = generate_latest(metrics.registry).decode()
        assert sample(text, "process_open_fds") > 0
