"""The daemon's metrics carry the process and the build (issue 13): ``process_*`` from
prometheus-client's process collector (Linux) and ``mstlsd_build_info``."""

from __future__ import annotations

import platform
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import mstls
from daemon.metrics import Metrics

#: The process collector's series on Linux (prometheus-client's ProcessCollector).
PROCESS_SERIES = {
    "process_cpu_seconds_total",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
}


def scrape(metrics: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Serve ``/metrics`` on 127.0.0.1, fetch it once: sample name → (labels, value)."""
    host, port = metrics.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        metrics.close()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def test_build_info_names_version_and_python() -> None:
    found = scrape(Metrics())
    [(labels, value)] = found["mstlsd_build_info"]
    assert value == 1
    assert labels["version"] == mstls.__version__
    assert labels["python"] == platform.python_version()
    assert labels["implementation"] == platform.python_implementation()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process_* come from /proc")
def test_process_metrics_are_exported() -> None:
    found = scrape(Metrics())
    assert set(found) >= PROCESS_SERIES
    [(_, resident)] = found["process_resident_memory_bytes"]
    [(_, open_fds)] = found["process_open_fds"]
    assert resident > 0 and open_fds > 0
