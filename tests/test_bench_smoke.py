"""Smoke test of ``python -m bench.quic_bulk``: tiny sizes, every scenario, every stack.

No timing is asserted: only that the run completes, measures every scenario
and produces positive numbers and ratios.  The whole run takes about 10 s on
the 2-core reference machine (ten server/client process pairs); the
subprocess is bounded by :data:`SMOKE_TIMEOUT`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import small_streams
from bench.quic_bulk import RATIOS, SCENARIOS, Scenario, compute_ratios, parse_size

ROOT = Path(__file__).resolve().parent.parent
#: Hard bound on the benchmark subprocess (it normally needs about 10 s).
SMOKE_TIMEOUT = 90
BULK_METRICS = (
    "mb_per_s",
    "seconds",
    "server_cpu_s",
    "server_datagrams",
    "server_us_per_datagram",
    "mean_datagram_bytes",
    "client_cpu_s",
)
HANDSHAKE_METRICS = ("server_cpu_s", "server_ms_per_handshake", "client_ms_per_handshake")


@pytest.mark.network
def test_bench_runs_every_scenario_and_reports_positive_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench.quic_bulk", "--size", "1MiB", "--handshakes", "5"]
    command += ["--runs", "1", "--json", str(out)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(out.read_text())
    results = {result["name"]: result for result in document["results"]}
    # qh3 and the compiled build (./dev compiled) are optional: skipped, with the reason
    skipped = document["skipped"]
    assert set(skipped) <= {s.name for s in SCENARIOS if s.stack == "qh3" or s.build != "pure"}
    assert set(results) | set(skipped) == {scenario.name for scenario in SCENARIOS}
    assert not set(results) & set(skipped)
    for result in results.values():
        assert len(result["runs"]) == 1
        summary = result["summary"]
        metrics = BULK_METRICS if result["kind"] == "bulk" else HANDSHAKE_METRICS
        for metric in metrics:
            assert summary[metric] > 0, (result["name"], metric)
        if result["kind"] == "handshake":
            assert summary["handshakes"] == 5
    # Every bulk run moved 1200-byte datagrams except the one with PMTU probing.
    assert results["mstls"]["summary"]["mean_datagram_bytes"] <= 1200
    assert results["aioquic"]["summary"]["mean_datagram_bytes"] <= 1200
    assert results["mstls-api"]["summary"]["mean_datagram_bytes"] <= 1200
    for name in ("qh3", "mstls-compiled", "mstls-api-compiled"):
        if name in results:
            assert results[name]["summary"]["mean_datagram_bytes"] <= 1200
    assert results["mstls-pmtu"]["summary"]["mean_datagram_bytes"] > 1200
    # The negotiated groups are the ones the labels claim.
    for result in results.values():
        if result["kind"] == "handshake":
            assert result["summary"]["groups"] == [result["group"]], result["name"]
    ran = {ratio.key for ratio in RATIOS if {ratio.numerator, ratio.denominator} <= set(results)}
    assert {ratio["key"] for ratio in document["ratios"]} == ran
    assert all(ratio["value"] > 0 for ratio in document["ratios"])
    assert "Ratios mstls / aioquic" in done.stdout
    for name in skipped:
        assert f"skipped {name}: " in done.stdout


def test_parse_size_units() -> None:
    assert parse_size("65536") == 65536
    assert parse_size("64KiB") == 64 * 1024
    assert parse_size("1M") == 1 << 20
    assert parse_size("64MiB") == 64 << 20
    assert parse_size("2g") == 2 << 30
    for bad in ("", "0", "1.5M", "MiB", "12 bytes", "-1"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_ratios_divide_mstls_by_aioquic_and_skip_missing() -> None:
    summaries = {
        "aioquic": {"mb_per_s": 10.0, "server_us_per_datagram": 80.0},
        "mstls": {"mb_per_s": 25.0, "server_us_per_datagram": 20.0},
    }
    ratios = {ratio["key"]: ratio for ratio in compute_ratios(summaries)}
    assert set(ratios) == {"bulk_throughput", "server_cpu_per_datagram"}
    assert ratios["bulk_throughput"]["value"] == pytest.approx(2.5)
    assert ratios["bulk_throughput"]["better"] == "higher"
    assert ratios["server_cpu_per_datagram"]["value"] == pytest.approx(0.25)
    assert ratios["server_cpu_per_datagram"]["better"] == "lower"


def test_every_ratio_names_known_scenarios() -> None:
    names = {scenario.name: scenario for scenario in SCENARIOS}
    for ratio in RATIOS:
        top, bottom = names[ratio.numerator], names[ratio.denominator]
        assert top.stack in {"mstls", "mstls-api"}, ratio.key
        assert bottom.stack in {"aioquic", "qh3", "mstls"}, ratio.key
        if bottom.stack == "mstls":  # compiled / pure
            assert (top.build, bottom.build) == ("compiled", "pure"), ratio.key
        assert top.kind == bottom.kind, ratio.key
        assert isinstance(top, Scenario)


@pytest.mark.network
def test_asyncio_bench_runs_both_stacks_and_reports_positive_numbers(tmp_path: Path) -> None:
    """``python -m bench.asyncio_bulk`` with tiny sizes: both stacks, both measurements,
    the slow-reader RSS variant, positive numbers and ratios (no timing asserted)."""
    out = tmp_path / "asyncio.json"
    command = [sys.executable, "-m", "bench.asyncio_bulk", "--size", "1MiB", "--streams", "50"]
    command += ["--slow-reader", "--offer", "64MiB", "--timeout", "60", "--json", str(out)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    document = json.loads(out.read_text())
    for stack in ("mstls", "aioquic"):
        for metric in ("bulk_mb_per_s", "bulk_seconds", "streams_per_s", "streams_seconds"):
            assert document["results"][stack][metric] > 0, (stack, metric)
    assert "slow_reader_rss_growth_bytes" in document["results"]["mstls"]
    assert document["ratios"]["bulk"] > 0 and document["ratios"]["streams"] > 0
    assert "mstls / aioquic" in done.stdout


@pytest.mark.network
def test_slowloris_bench_serves_every_normal_client(tmp_path: Path) -> None:
    """``python -m bench.slowloris`` with 20 slow senders for 3 s: every normal client
    gets its echo and the attackers did connect (functional only, no timing)."""
    out = tmp_path / "slowloris.json"
    command = [sys.executable, "-m", "bench.slowloris", "--connections", "20"]
    command += ["--duration", "3", "--ramp", "1", "--report-only", "--json", str(out)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["clients"] >= 3 and result["failures"] == 0, result
    assert result["attacker_connects"] >= 20
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert "normal TCP connect+echo" in done.stdout


def test_small_streams_bench_runs_both_stacks_one_datagram_each_way(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``bench.small_streams`` on 60 streams: both stacks complete every stream, each
    request and each answer in about one datagram (functional only, no timing)."""
    assert small_streams.main(["--streams", "60", "--warmup", "5", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "mstls / aioquic:" in out
    for line in out.splitlines():
        if "datagrams per stream" in line:
            up = float(line.split("datagrams per stream ")[1].split()[0])
            down = float(line.split(", ")[-1].split()[0])
            assert 0.9 <= up <= 1.2 and 0.9 <= down <= 1.2, line
