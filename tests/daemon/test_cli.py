"""The other `mstls` subcommands: certs, send/recv (SHA-256 confirmed), bench."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.support import ROOT, cli, daemon_process, env_for, free_port

pytestmark = pytest.mark.network


def test_certs(tmp_path: Path) -> None:
    made = cli("certs", str(tmp_path / "pki"), "--client-name", "me.example", state_dir=tmp_path)
    assert made.returncode == 0, made.stderr
    names = sorted(p.name for p in (tmp_path / "pki").iterdir())
    assert names == ["ca.key", "ca.pem", "client.key", "client.pem", "server.key", "server.pem"]
    assert (tmp_path / "pki" / "server.key").stat().st_mode & 0o777 == 0o600
    again = cli("certs", str(tmp_path / "pki"), state_dir=tmp_path)
    assert again.returncode == 2 and b"refusing to overwrite" in again.stderr


def test_send_and_recv(tmp_path: Path) -> None:
    data = hashlib.sha256(b"x").digest() * 40000  # 1.25 MiB
    source = tmp_path / "payload.bin"
    source.write_bytes(data)
    port = free_port()
    out = tmp_path / "out"
    out.mkdir()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "mstlsd.cli", "recv", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(tmp_path),
        cwd=out,
    )
    try:
        assert receiver.stderr is not None
        for line in receiver.stderr:
            if b"receiving on tcp" in line:
                break
        sent = cli("send", str(source), f"127.0.0.1:{port}", state_dir=tmp_path)
        got_out, got_err = receiver.communicate(timeout=20)
    finally:
        receiver.kill()
    digest = hashlib.sha256(data).hexdigest()
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.decode().split() == [digest, str(source)]
    assert f"the receiver confirms sha256 {digest}".encode() in sent.stderr
    assert b"100%" in sent.stderr  # the progress bar was drawn
    assert b"1.22 MiB/1.22 MiB" in sent.stderr and b"MB" not in sent.stderr  # IEC units
    assert receiver.returncode == 0, got_err
    assert got_out.decode().split() == [digest, "payload.bin"]
    assert (out / "payload.bin").read_bytes() == data


def test_bench_against_the_daemon(tmp_path: Path) -> None:
    port = free_port()
    with daemon_process(["--listen-port", str(port)], tmp_path) as daemon:
        result = cli(
            "bench",
            f"127.0.0.1:{port}",
            "--size",
            "1",
            "--handshakes",
            "3",
            "--transport",
            "tcp",
            "--json",
            state_dir=tmp_path,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        numbers = json.loads(result.stdout)
        assert numbers["transport"] == "tcp" and numbers["handshakes"] == 3
        assert numbers["handshakes_per_second"] > 0 and numbers["discard_mb_per_s"] > 0
        assert numbers["echo_mb_per_s"] > 0
        assert numbers["handshake_mode"] == "sequential" and numbers["concurrency"] == 1
        assert 0 < numbers["handshake_median_ms"] <= numbers["handshake_p99_ms"]
        loaded = cli(
            "bench",
            f"127.0.0.1:{port}",
            "--size",
            "0.1",
            "--handshakes",
            "6",
            "--concurrency",
            "3",
            state_dir=tmp_path,
            timeout=60,
        )
        assert loaded.returncode == 0, loaded.stderr
        text = loaded.stdout.decode()
        assert "6 connections; 3 at once from one client process" in text, text
        refused = cli("bench", f"127.0.0.1:{port}", "--concurrency", "0", state_dir=tmp_path)
        assert refused.returncode == 2 and b"positive integer" in refused.stderr
        assert daemon.stop() == 0
    assert ROOT.is_dir()


def test_sequential_bench_says_what_it_measures(tmp_path: Path) -> None:
    port = free_port()
    with daemon_process(["--listen-port", str(port)], tmp_path) as daemon:
        result = cli(
            "bench",
            f"127.0.0.1:{port}",
            "--size",
            "0.1",
            "--handshakes",
            "2",
            state_dir=tmp_path,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert b"latency-bound, not the server's capacity" in result.stdout
        assert daemon.stop() == 0
