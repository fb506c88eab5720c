"""The README's first command: mstlsd on the embedded default, `mstls connect` over UDP and TCP.

``./dev demo`` is ``pip install`` followed by ``python -m mstlsd.demo``; this runs the
latter on a free port with a fresh state directory (development certificates are
generated on first start, and `mstls connect` finds their CA by itself).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mstlsd.preamble import StreamCode
from tests.daemon.support import ROOT, cli, daemon_process, env_for, free_port

pytestmark = pytest.mark.network


def test_readme_first_command(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "mstlsd.demo", "--port", str(port), "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_for(tmp_path),
        cwd=ROOT,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"mstls connect 127.0.0.1:{port} --service echo --transport udp" in out
    assert "\nhello over QUIC\n" in out
    assert "\nhello over QMux/TCP\n" in out
    assert "connected to 127.0.0.1" in out and "issued by CN=mstls development CA" in out
    assert "generated development certificates" in out
    assert out.rstrip().endswith("demo OK: echoed over UDP (QUIC) and TCP (QMux)")


def test_connect_reports_refusals_and_failures(tmp_path: Path) -> None:
    port = free_port()
    with daemon_process(["--listen-port", str(port)], tmp_path) as daemon:
        target = f"127.0.0.1:{port}"
        for transport in ("udp", "tcp", "auto"):
            ok = cli(
                "connect",
                target,
                "-s",
                "echo",
                "--transport",
                transport,
                input=b"line one\nline two\n",
                state_dir=tmp_path,
            )
            assert ok.returncode == 0, ok.stderr
            assert ok.stdout == b"line one\nline two\n"
        unknown = cli("connect", target, "-s", "nope", input=b"x", state_dir=tmp_path)
        assert unknown.returncode == 3
        assert b"0x100 UNKNOWN_SERVICE" in unknown.stderr
        # Without the development CA the server certificate is not trusted: say why.
        other = tmp_path / "elsewhere"
        untrusted = cli(
            "connect", target, "-s", "echo", "--transport", "udp", input=b"x", state_dir=other
        )
        assert untrusted.returncode == 1
        assert b"not a trusted root" in untrusted.stderr or b"unknown CA" in untrusted.stderr
        assert b":error:" in untrusted.stderr  # the error queue was printed
        assert daemon.stop() == 0
    refused = cli(
        "connect", target, "-s", "echo", "--transport", "tcp", input=b"x", state_dir=tmp_path
    )
    assert refused.returncode == 1 and b"cannot connect" in refused.stderr
    assert StreamCode.UNKNOWN_SERVICE == 0x100
