"""The daemon's life: SIGTERM drain, SIGHUP reload, restart with stateless reset."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest
import trio

import mstls
import mstls.trio
from mstls.devcerts import make_server_cert
from mstlsd.preamble import ConnectionCode, StreamCode, encode_preamble
from mstlsd.state import dev_pki_paths
from tests.daemon.support import (
    DaemonProcess,
    client_config,
    daemon_process,
    exchange,
    free_port,
    refused_with,
)

pytestmark = pytest.mark.network

CONFIG = """
[[listeners]]
transport = "udp"
port = 4433
[[listeners]]
transport = "tcp"
port = 4433
[limits]
drain_timeout = {drain}
[services.echo]
type = "echo"
{more}
"""


def write_config(path: Path, drain: float = 3.0, more: str = "") -> Path:
    path.write_text(CONFIG.format(drain=drain, more=more))
    return path


async def wait_log(daemon: DaemonProcess, text: str) -> str:
    return await trio.to_thread.run_sync(daemon.wait_for, text, 10.0)


async def connect(port: int, state: Path, transport: str = "udp") -> mstls.trio.Connection:
    ca = dev_pki_paths(state).ca_cert
    return await mstls.trio.connect(
        "127.0.0.1", port, client_config(ca), transport=transport, timeout=5
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sigterm_drains_then_closes_with_0x200(tmp_path: Path, transport: str) -> None:
    port = free_port()
    config = write_config(tmp_path / "d.toml", drain=1.5)
    with daemon_process(["--config", str(config), "--listen-port", str(port)], tmp_path) as daemon:
        finisher = await connect(port, tmp_path, transport)
        straggler = await connect(port, tmp_path, transport)
        # One stream that will finish during the drain, one that never will.
        done = await finisher.open_stream()
        await done.send_all(encode_preamble("echo") + b"first half ")
        stuck = await straggler.open_stream()
        await stuck.send_all(encode_preamble("echo") + b"never ends")
        await trio.sleep(0.1)
        daemon.send(signal.SIGTERM)
        await wait_log(daemon, "draining: 2 streams")
        # New streams are refused while draining; new connections are closed.
        assert await refused_with(finisher, b"echo\nlate") == StreamCode.SHUTTING_DOWN
        with pytest.raises(mstls.ConnectionTerminated) as closed:
            late = await connect(port, tmp_path, transport)
            await exchange(late, "echo", b"x")
        assert closed.value.code == ConnectionCode.SERVER_SHUTDOWN
        # The finishing stream completes intact.
        await done.send_all(b"second half")
        await done.send_eof()
        reply = b""
        with trio.fail_after(5):
            while chunk := await done.receive_some():
                reply += chunk
        assert reply == b"first half second half"
        # The straggler is cut when the drain timeout passes, with the documented code.
        started = time.monotonic()
        with trio.fail_after(10), pytest.raises(mstls.ConnectionTerminated) as cut:
            while await stuck.receive_some():
                pass
        assert cut.value.code == ConnectionCode.SERVER_SHUTDOWN and cut.value.is_application
        assert time.monotonic() - started < 3.0
        status = await trio.to_thread.run_sync(daemon.stop)
        assert status == 0
        assert "drain ended with 1 streams still open" in daemon.log()


async def test_sighup_reloads_services_without_dropping_connections(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "d.toml")
    with daemon_process(["--config", str(config), "--listen-port", str(port)], tmp_path) as daemon:
        conn = await connect(port, tmp_path)
        stream = await conn.open_stream()
        await stream.send_all(encode_preamble("echo") + b"before ")
        assert await refused_with(conn, b"shout\nx") == StreamCode.UNKNOWN_SERVICE
        write_config(
            config,
            more='[services.shout]\ntype = "python"\nhandler = "mstlsd.examples:uppercase"\n',
        )
        daemon.send(signal.SIGHUP)
        await wait_log(daemon, "configuration reloaded")
        # The established connection and its open stream carry on; the new service exists.
        assert await exchange(conn, "shout", b"hi") == b"HI"
        await stream.send_all(b"after")
        await stream.send_eof()
        reply = b""
        while chunk := await stream.receive_some():
            reply += chunk
        assert reply == b"before after"
        # A bad configuration is refused and the running one stays.
        config.write_text("[[listeners]\n")
        daemon.send(signal.SIGHUP)
        line = await wait_log(daemon, "reload failed")
        assert str(config) in line and "not valid TOML" in line
        assert await exchange(conn, "shout", b"still") == b"STILL"
        await conn.aclose()
        assert await trio.to_thread.run_sync(daemon.stop) == 0


async def test_sighup_new_certificate_for_new_handshakes(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    first = make_server_cert(pki.ca, common_name="first.localhost")
    cert.write_bytes(first.cert_pem())
    key.write_bytes(first.key_pem())
    config = tmp_path / "d.toml"
    config.write_text(
        f'[[listeners]]\ntransport = "udp"\nport = {port}\n'
        f'[tls]\ncertfile = "{cert}"\nkeyfile = "{key}"\n[services.echo]\ntype = "echo"\n'
    )
    with daemon_process(["--config", str(config)], tmp_path) as daemon:
        ca = pki.files("ca").cert
        old = await mstls.trio.connect("127.0.0.1", port, client_config(ca), timeout=5)
        assert old.peer_certificate.common_name == "first.localhost"
        second = make_server_cert(pki.ca, common_name="second.localhost")
        cert.write_bytes(second.cert_pem())
        key.write_bytes(second.key_pem())
        daemon.send(signal.SIGHUP)
        await wait_log(daemon, "configuration reloaded")
        new = await mstls.trio.connect("127.0.0.1", port, client_config(ca), timeout=5)
        assert new.peer_certificate.common_name == "second.localhost"
        assert await exchange(old, "echo", b"old") == b"old"  # not dropped
        await old.aclose()
        await new.aclose()
        daemon.stop()


async def test_restart_sends_stateless_reset(tmp_path: Path) -> None:
    port = free_port()
    args = ["--listen-port", str(port)]
    first = DaemonProcess(args, tmp_path).wait_ready()
    try:
        conn = await connect(port, tmp_path)
        assert await exchange(conn, "echo", b"before") == b"before"
    finally:
        first.stop(signal.SIGKILL)  # a crash: no CONNECTION_CLOSE is ever sent
    with daemon_process(args, tmp_path):  # same state directory: same reset key
        started = time.monotonic()
        with trio.fail_after(5), pytest.raises(mstls.ConnectionTerminated) as info:
            await exchange(conn, "echo", b"after")
        elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"took {elapsed:.2f} s: an idle timeout, not a stateless reset"
    assert "reset" in str(info.value).lower()


async def test_json_logs_and_systemd_notifications(tmp_path: Path) -> None:
    notify = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await notify.bind(str(tmp_path / "notify"))
    port = free_port()
    daemon = DaemonProcess(
        ["--listen-port", str(port), "--log-format", "json"],
        tmp_path,
        env={"NOTIFY_SOCKET": str(tmp_path / "notify")},
    )
    try:
        with trio.fail_after(20):
            assert await notify.recv(100) == b"READY=1"
        conn = await connect(port, tmp_path)
        assert await refused_with(conn, b"nope\n") == StreamCode.UNKNOWN_SERVICE
        await conn.aclose()
        daemon.send(signal.SIGHUP)
        with trio.fail_after(10):
            assert await notify.recv(100) == b"RELOADING=1"
            assert await notify.recv(100) == b"READY=1"
        assert await trio.to_thread.run_sync(daemon.stop) == 0
        with trio.fail_after(5):
            assert await notify.recv(100) == b"STOPPING=1"
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        notify.close()
    records = [json.loads(line) for line in daemon.lines]  # every line is one JSON object
    events = {r["event"] for r in records}
    assert {"daemon.ready", "connection.accepted", "stream.refused", "daemon.stopped"} <= events
    refused = next(r for r in records if r["event"] == "stream.refused")
    assert refused["code"] == "0x100" and refused["stream"].startswith("c1/s")
    accepted = next(r for r in records if r["event"] == "connection.accepted")
    assert accepted["transport"] == "udp" and accepted["peer"].startswith("127.0.0.1:")
