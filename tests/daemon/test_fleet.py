"""``[fleet]``: a host byte before the worker byte in the QUIC-LB server IDs (docs/fleet.md).

The configuration is checked key by key; every worker of a fleet host issues
plaintext QUIC-LB connection IDs ``first octet | host | worker | nonce``; the
steering program reads the worker byte after the host byte; and two hosts
behind a toy QUIC-LB balancer (routing each datagram by the host byte of its
destination connection ID) each keep their own connections.
"""

from __future__ import annotations

import collections
import contextlib
import re
import select
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import mstls
from mstls.quic.quic_lb import decode_server_id
from mstlsd.certs import steering_worker_byte
from mstlsd.config import ConfigError, FleetSettings, load_config
from mstlsd.preamble import encode_preamble
from mstlsd.server import Daemon
from mstlsd.state import RESET_KEY_FILE, RETRY_KEY_FILE, dev_pki_paths
from mstlsd.steering import attach_steering
from tests.certs import TestPKI
from tests.daemon.support import ROOT, DaemonProcess, config_from, free_port

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="SO_ATTACH_REUSEPORT_CBPF is Linux-only")

HOST_ID = 7
CONFIG_ID = 1
CONNECTIONS = 50
THREADS = 8
PAUSE = 0.05
TIMEOUT = 10.0
ALL_BOUND = "workers bound"
#: config rotation 1 in the top 3 bits, then the length minus one: 1 + 2 + 6 = 9 bytes.
FIRST_OCTET = (CONFIG_ID << 5) | (9 - 1)

BASE = """\
[[listeners]]
transport = "udp"
host = "127.0.0.1"
port = {port}

[limits]
retry = true
drain_timeout = 2

[services.whoami]
type = "python"
handler = "tests.daemon.handlers:whoami"
"""
FLEET = """\
workers = {workers}

[fleet]
host_id = {host}
config_id = 1
"""


def fleet_config(port: int, host: int = HOST_ID, workers: int = 2) -> str:
    return FLEET.format(workers=workers, host=host) + BASE.format(port=port)


# --- configuration -----------------------------------------------------------------------------


def test_fleet_table_parsed(tmp_path: Path) -> None:
    assert config_from(BASE.format(port=4433), tmp_path).fleet is None  # as before: no host byte
    config = config_from(fleet_config(4433), tmp_path)
    assert config.fleet == FleetSettings(host_id=HOST_ID, config_id=1, nonce_length=6)
    assert config.fleet.cid_length == 9
    text = "[fleet]\nhost_id = 0\nnonce_length = 17\n" + BASE.format(port=4433)
    assert config_from(text, tmp_path).fleet == FleetSettings(0, 0, 17)


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ("config_id = 2", "fleet.host_id", "missing"),
        ("host_id = 256", "fleet.host_id", "expected a host byte 0-255, got 256"),
        ("host_id = -1", "fleet.host_id", "expected a host byte 0-255"),
        ("host_id = true", "fleet.host_id", "expected a host byte"),
        ('host_id = "7"', "fleet.host_id", "expected a host byte"),
        ("host_id = 1\nconfig_id = 7", "fleet.config_id", "config rotation 0-6, got 7"),
        ("host_id = 1\nnonce_length = 3", "fleet.nonce_length", "nonce of 4-17 bytes"),
        ("host_id = 1\nnonce_length = 18", "fleet.nonce_length", "at most 20"),
        ("host_id = 1\nserver_id_length = 2", "fleet.server_id_length", "unknown key"),
    ],
)
def test_fleet_values_checked(tmp_path: Path, table: str, key: str, problem: str) -> None:
    text = f"[fleet]\n{table}\n" + BASE.format(port=4433)
    with pytest.raises(ConfigError) as info:
        config_from(text, tmp_path)
    assert str(info.value).startswith(f"test.toml: {key}: "), str(info.value)
    assert problem in info.value.problem


def test_fleet_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"test\.toml: fleet: expected a table"):
        config_from("fleet = 3\n" + BASE.format(port=4433), tmp_path)


def test_documented_fleet_configurations_load(tmp_path: Path, pki: TestPKI) -> None:
    """docs/fleet.md's three host files and configs/fleet.toml: valid, one host byte each."""
    docs = (ROOT / "docs" / "fleet.md").read_text()
    toml = re.findall(r"```toml\n(.*?)```", docs, re.S)
    blocks = [b for b in toml if "[fleet]" in b and "[[listeners]]" in b]  # whole host files
    blocks.append((ROOT / "configs" / "fleet.toml").read_text())
    fleets = []
    for index, text in enumerate(blocks):
        for name, path in (
            ("/etc/mstlsd/server.pem", pki.files("server").cert),
            ("/etc/mstlsd/server.key", pki.files("server").key),
        ):
            text = text.replace(name, str(path))
        file = tmp_path / f"host{index}.toml"
        file.write_text(text)
        fleet = load_config(file).fleet
        assert fleet is not None
        fleets.append(fleet)
    assert [fleet.host_id for fleet in fleets] == [1, 2, 3, 1]
    assert {(fleet.config_id, fleet.nonce_length) for fleet in fleets} == {(0, 6)}


# --- connection IDs and steering ---------------------------------------------------------------


def test_each_worker_issues_host_and_worker_ids(tmp_path: Path) -> None:
    config = config_from(fleet_config(4433, workers=3), tmp_path)
    state = tmp_path / "state"
    for worker, daemon in [(0, Daemon(config, state_dir=state))] + [
        (i, Daemon(config, state_dir=state, worker=i)) for i in range(3)
    ]:
        extra = daemon.server_config.extra
        for _ in range(20):
            cid = extra["cid_generator"]()
            assert len(cid) == extra["cid_length"] == 9
            assert cid[:3] == bytes((FIRST_OCTET, HOST_ID, worker)), cid.hex()
            assert decode_server_id(cid, 2) == bytes((HOST_ID, worker))
    assert steering_worker_byte(config) == 1
    assert steering_worker_byte(config_from(BASE.format(port=4433), tmp_path)) == 0


def short_header(server_id: bytes) -> bytes:
    return bytes((0x40, FIRST_OCTET)) + server_id + bytes(40)


def long_header(server_id: bytes) -> bytes:
    dcid = bytes((FIRST_OCTET,)) + server_id + bytes(6)
    return bytes((0xC0,)) + (1).to_bytes(4, "big") + bytes((len(dcid),)) + dcid + bytes(40)


@linux_only
@pytest.mark.network
def test_steering_reads_the_worker_byte_after_the_host_byte(tmp_path: Path) -> None:
    """Whatever the host byte, a datagram reaches the socket its worker byte names."""
    workers = 3
    config = config_from(fleet_config(4433, workers=workers), tmp_path)
    group: list[socket.socket] = []
    try:
        for _ in range(workers):  # bound in order: socket index == worker index
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", group[0].getsockname()[1] if group else 0))
            sock.settimeout(2)
            group.append(sock)
        attach_steering(group[0], workers, steering_worker_byte(config))
        address = group[0].getsockname()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for make in (long_header, short_header):
                for host in (0, 1, 2, 5, 255):  # host % workers differs from the worker
                    for worker in range(workers):
                        datagram = make(bytes((host, worker)))
                        client.sendto(datagram, address)
                        assert group[worker].recv(2048) == datagram, (make.__name__, host)
        for sock in group:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(2048)  # nothing went anywhere else
    finally:
        for sock in group:
            sock.close()


# --- a fleet host with two workers -------------------------------------------------------------


def ask(conn: mstls.Connection) -> str:
    with conn.open_stream(timeout=TIMEOUT) as stream:
        stream.write(encode_preamble("whoami"), timeout=TIMEOUT)
        stream.conclude()
        reply = bytearray()
        while chunk := stream.read(timeout=TIMEOUT):
            reply += chunk
    return reply.decode()


def session(ca: Path, port: int) -> tuple[str, str, list[bytes]]:
    """Ask ``whoami`` twice on one connection; also the connection IDs the server issued."""
    config = mstls.ClientConfig(alpn="mstls", cafile=ca)
    conn = mstls.connect("127.0.0.1", port, config, timeout=TIMEOUT)
    try:
        first = ask(conn)
        time.sleep(PAUSE)
        second = ask(conn)
        return first, second, list(conn.sans_io.peer_cids.active_cids())  # test-only peek
    finally:
        conn.close()


@linux_only
@pytest.mark.network
def test_fleet_host_ids_carry_host_and_worker(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "fleet.toml"
    config.write_text(fleet_config(port))
    proc = DaemonProcess(["--config", str(config)], tmp_path / "state")
    try:
        proc.wait_for(ALL_BOUND)
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda _: session(ca, port), range(CONNECTIONS)))
        served: collections.Counter[str] = collections.Counter()
        for first, second, cids in results:
            assert first == second  # the connection stayed on one worker
            assert re.fullmatch(r"[01] \d+", first), first
            worker = int(first.split()[0])
            served[first] += 1
            assert len(cids) >= 2  # the handshake's ID and NEW_CONNECTION_ID ones
            for cid in cids:
                assert cid[:3] == bytes((FIRST_OCTET, HOST_ID, worker)), cid.hex()
                assert len(cid) == 9
        assert len(served) == 2, served  # both workers (one pid each) served some
        assert "stateless reset" not in proc.log()
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()


# --- two hosts behind a QUIC-LB balancer -------------------------------------------------------

#: Connection IDs of the fleet: first octet, host, worker, nonce.
FLEET_CID_LENGTH = 9
SHORT_DCID = slice(1, 1 + FLEET_CID_LENGTH)
LONG_DCID_LENGTH_OFFSET = 5


class Balancer:
    """A toy QUIC-LB plaintext balancer on one front port (test only).

    Each datagram goes to the host its destination connection ID names (the
    host byte of the server ID); an ID of another configuration (a client's
    random first DCID) goes by a hash of the ID, the same for every Initial of
    one handshake.  Each client address gets its own upstream socket so the
    replies find their way back.
    """

    def __init__(self, hosts: dict[int, tuple[str, int]]) -> None:
        self.hosts = hosts
        self.order = sorted(hosts)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.address = self.front.getsockname()
        self.upstreams: dict[tuple[str, int], socket.socket] = {}
        self.clients: dict[socket.socket, tuple[str, int]] = {}
        self.routed: collections.Counter[str] = collections.Counter()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def route(self, datagram: bytes) -> tuple[str, int]:
        if datagram[0] & 0x80:
            length = datagram[LONG_DCID_LENGTH_OFFSET]
            dcid = datagram[LONG_DCID_LENGTH_OFFSET + 1 : LONG_DCID_LENGTH_OFFSET + 1 + length]
        else:
            dcid = datagram[SHORT_DCID]
        server_id = decode_server_id(dcid, 2)
        if dcid[:1] == bytes((FIRST_OCTET,)) and server_id and server_id[0] in self.hosts:
            self.routed["by host byte"] += 1
            return self.hosts[server_id[0]]
        self.routed["by hash"] += 1
        return self.hosts[self.order[sum(dcid) % len(self.order)]]

    def _run(self) -> None:
        while not self.stopping:
            ready, _, _ = select.select([self.front, *self.clients], [], [], 0.05)
            for sock in ready:
                data, source = sock.recvfrom(2048)
                if sock is self.front:
                    upstream = self.upstreams.get(source)
                    if upstream is None:
                        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        upstream.bind(("127.0.0.1", 0))
                        self.upstreams[source], self.clients[upstream] = upstream, source
                    upstream.sendto(data, self.route(data))
                else:
                    self.front.sendto(data, self.clients[sock])


@contextlib.contextmanager
def running_balancer(hosts: dict[int, tuple[str, int]]) -> Iterator[Balancer]:
    balancer = Balancer(hosts)
    balancer.thread.start()
    try:
        yield balancer
    finally:
        balancer.stopping = True
        balancer.thread.join(2.0)
        for sock in [balancer.front, *balancer.clients]:
            sock.close()


@pytest.mark.network
def test_two_hosts_behind_a_balancer(tmp_path: Path) -> None:
    """Hosts 1 and 2 (sharing the state directory's keys) each keep their own connections."""
    hosts: dict[int, tuple[str, int]] = {}
    procs: dict[int, DaemonProcess] = {}
    try:
        for host in (1, 2):
            port = free_port()
            state = tmp_path / f"state{host}"
            if host == 2:  # what a fleet shares: the keys (and, here, the development CA)
                shutil.copytree(tmp_path / "state1", state)
            config = tmp_path / f"host{host}.toml"
            config.write_text(fleet_config(port, host=host, workers=1))
            procs[host] = DaemonProcess(["--config", str(config)], state)
            procs[host].wait_ready()
            hosts[host] = ("127.0.0.1", port)
        for name in (RESET_KEY_FILE, RETRY_KEY_FILE):
            assert (tmp_path / "state1" / name).read_bytes() == (
                tmp_path / "state2" / name
            ).read_bytes()
        host_of_pid = {proc.proc.pid: host for host, proc in procs.items()}
        ca = dev_pki_paths(tmp_path / "state1").ca_cert
        with running_balancer(hosts) as balancer:
            port = balancer.address[1]
            with ThreadPoolExecutor(THREADS) as pool:
                results = list(pool.map(lambda _: session(ca, port), range(CONNECTIONS // 2)))
        served: collections.Counter[int] = collections.Counter()
        for first, second, cids in results:
            assert first == second
            worker, pid = first.split()
            assert worker == "-"  # a single-process host
            host = host_of_pid[int(pid)]
            served[host] += 1
            for cid in cids:  # what any QUIC-LB plaintext decoder reads
                assert cid[0] == FIRST_OCTET
                assert decode_server_id(cid, 2) == bytes((host, 0)), cid.hex()
        assert set(served) == {1, 2}, served
        assert balancer.routed["by host byte"] > balancer.routed["by hash"] > 0
        for proc in procs.values():
            assert "stateless reset" not in proc.log()
            assert proc.stop(signal.SIGTERM) == 0
    finally:
        for proc in procs.values():
            if proc.proc.poll() is None:
                proc.proc.kill()
