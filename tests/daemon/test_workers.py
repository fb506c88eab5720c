"""``workers = 2``: two processes share the ports; every connection stays on one worker.

Each client connection asks the ``whoami`` service (tests.daemon.handlers:whoami)
twice, the second time on a new stream opened a little later: the same worker
must answer both (a datagram steered to the other worker would meet an unknown
connection ID and draw a stateless reset).  Retry is on, so the Retry and
address-validation path (QUIC-LB Retry source IDs, the shared token key) is
exercised too.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import mstls
from mstls.quic.quic_lb import decode_server_id
from mstlsd.config import ConfigError
from mstlsd.preamble import encode_preamble
from mstlsd.server import Daemon
from mstlsd.state import RETRY_KEY_FILE, dev_pki_paths
from tests.daemon.support import DaemonProcess, config_from, free_port

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_ATTACH_REUSEPORT_CBPF is Linux-only"
)

CONNECTIONS = 200
THREADS = 8
#: Between the first and the second stream of a connection.
PAUSE = 0.05
TIMEOUT = 10.0
ALL_BOUND = "workers bound"

CONFIG = """\
workers = 2

[[listeners]]
transport = "udp"
host = "127.0.0.1"
port = {port}

[[listeners]]
transport = "tcp"
host = "127.0.0.1"
port = {port}

[limits]
retry = true
drain_timeout = 2

[services.whoami]
type = "python"
handler = "tests.daemon.handlers:whoami"
"""


def start(tmp_path: Path) -> tuple[DaemonProcess, int]:
    port = free_port()
    config = tmp_path / "workers.toml"
    config.write_text(CONFIG.format(port=port))
    proc = DaemonProcess(["--config", str(config)], tmp_path / "state")
    proc.wait_for(ALL_BOUND)
    return proc, port


def ask(conn: mstls.Connection) -> str:
    with conn.open_stream(timeout=TIMEOUT) as stream:
        stream.write(encode_preamble("whoami"), timeout=TIMEOUT)
        stream.conclude()
        reply = bytearray()
        while chunk := stream.read(timeout=TIMEOUT):
            reply += chunk
    return reply.decode()


def twice(ca: Path, port: int, transport: str) -> tuple[str, str]:
    config = mstls.ClientConfig(alpn="mstls", cafile=ca)
    conn = mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT)
    try:
        first = ask(conn)
        time.sleep(PAUSE)
        return first, ask(conn)
    finally:
        conn.close()


def test_two_workers_keep_each_connection(tmp_path: Path) -> None:
    proc, port = start(tmp_path)
    try:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        with ThreadPoolExecutor(THREADS) as pool:
            answers = list(pool.map(lambda _: twice(ca, port, "udp"), range(CONNECTIONS)))
            tcp = list(pool.map(lambda _: twice(ca, port, "tcp"), range(THREADS * 2)))
        for first, second in answers + tcp:
            assert first == second
            assert re.fullmatch(r"[01] \d+", first), first
        served = collections.Counter(first.split()[0] for first, _ in answers)
        assert set(served) == {"0", "1"}, served
        assert len({first for first, _ in answers}) == 2  # one pid per worker
        assert (tmp_path / "state" / RETRY_KEY_FILE).stat().st_size == 16
        assert "stateless reset" not in proc.log()
        proc.send(signal.SIGHUP)  # forwarded: both workers reload
        proc.wait_for("configuration reloaded")
        proc.wait_for("configuration reloaded")
        assert proc.stop(signal.SIGTERM) == 0
        assert proc.log().count("mstlsd stopped") == 2
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()


def test_worker_death_stops_the_rest(tmp_path: Path) -> None:
    proc, _ = start(tmp_path)
    try:
        line = next(line for line in proc.lines if ALL_BOUND in line)
        pids = [int(pid) for pid in re.findall(r"\d+", line.split("pids", 1)[1])]
        assert len(pids) == 2
        os.kill(pids[1], signal.SIGKILL)
        proc.wait_for("exited unexpectedly")
        assert proc.proc.wait(timeout=TIMEOUT) != 0
        assert "worker 1" in proc.log()
        assert proc.log().count("mstlsd stopped") == 1  # worker 0 drained and stopped
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()


def test_workers_need_a_fixed_port(tmp_path: Path) -> None:
    config = tmp_path / "zero.toml"
    config.write_text(CONFIG.format(port=0))
    proc = DaemonProcess(["--config", str(config)], tmp_path / "state")
    assert proc.proc.wait(timeout=TIMEOUT) == 2
    proc.stop()
    assert "workers share a fixed port" in proc.log()


@pytest.mark.parametrize("value", ["0", "257", "true", '"2"', "1.5"])
def test_workers_value_is_checked(tmp_path: Path, value: str) -> None:
    text = CONFIG.format(port=4433).replace("workers = 2", f"workers = {value}")
    with pytest.raises(ConfigError, match=r"test\.toml: workers: expected a number"):
        config_from(text, tmp_path)


def test_workers_default_and_value(tmp_path: Path) -> None:
    text = CONFIG.format(port=4433)
    assert config_from(text, tmp_path).workers == 2
    assert config_from(text.replace("workers = 2\n", ""), tmp_path).workers == 1


def test_worker_ids_and_shared_keys(tmp_path: Path) -> None:
    """Worker I's connection IDs carry server ID I; both workers share both keys."""
    config = config_from(CONFIG.format(port=4433), tmp_path)
    daemons = [Daemon(config, state_dir=tmp_path / "state", worker=i) for i in range(2)]
    for index, daemon in enumerate(daemons):
        extra = daemon.server_config.extra
        cid = extra["cid_generator"]()
        assert len(cid) == extra["cid_length"] == 8
        assert decode_server_id(cid, 1) == bytes((index,))
        assert daemon.server_config.retry_token_key == daemons[0].server_config.retry_token_key
        assert bytes(extra["stateless_reset_key"]) == bytes(daemons[0].reset_key)
    single = Daemon(config, state_dir=tmp_path / "state")
    assert "cid_generator" not in single.server_config.extra


@pytest.mark.network
def test_ready_is_logged_once_after_every_worker_is_bound(tmp_path: Path) -> None:
    """Issue 13: worker 0 used to log "mstlsd ready" before worker 1 was bound."""
    proc, _ = start(tmp_path)
    try:
        proc.wait_for("mstlsd ready")
        lines = list(proc.lines)
    finally:
        assert proc.stop() == 0
    ready = [i for i, line in enumerate(lines) if "mstlsd ready" in line]
    bound = [i for i, line in enumerate(lines) if re.search(r"worker \d bound", line)]
    assert len(ready) == 1 and len(bound) == 2, "\n".join(lines)
    assert ready[0] > max(bound), "\n".join(lines)
    assert "2 workers" in lines[ready[0]]


#: Connections that migrate in test_migrated_connections_stay_on_their_worker.
MIGRATIONS = 20


def migrated_twice(ca: Path, port: int) -> tuple[str, str, object, object]:
    """whoami, then ``migrate()`` to a new local port (a new 4-tuple, which the kernel's
    SO_REUSEPORT hash alone would send to either worker), then whoami again."""
    config = mstls.ClientConfig(alpn="mstls", cafile=ca)
    conn = mstls.connect("127.0.0.1", port, config, transport="udp", timeout=TIMEOUT)
    try:
        first = ask(conn)
        before = conn.sans_io.path.local
        conn.migrate(timeout=TIMEOUT)
        return first, ask(conn), before, conn.sans_io.path.local
    finally:
        conn.close()


def test_migrated_connections_stay_on_their_worker(tmp_path: Path) -> None:
    """RFC 9000 §9 with ``workers = 2``: the steering program reads the worker byte of
    the QUIC-LB connection ID, not the address, so a client that moved to a new port
    (with a new connection ID from the same worker) still reaches its worker."""
    proc, port = start(tmp_path)
    try:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: migrated_twice(ca, port), range(MIGRATIONS)))
        for first, second, before, after in answers:
            assert before is not after  # the path moved to the migrate() socket
            assert first == second
        served = collections.Counter(first.split()[0] for first, *_ in answers)
        assert set(served) == {"0", "1"}, served
        assert "stateless reset" not in proc.log()
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
