"""Server CPU per handshake, in memory: mstls QUIC against qh3, and mstls QMux over TLS.

Run from the repository root: ``python -m bench.handshake_cpu`` (``--help``).

Theory of operation
-------------------
No sockets: each handshake joins a client and a server in the same process and
hands every datagram (or TCP byte string) from one to the other, on a virtual
clock, until neither has anything left to send.  Only the server's calls are
timed, with ``time.process_time`` (CPU of this process, so time spent waiting
for a core on a loaded machine is not counted): for QUIC that is every
datagram the server receives (connection creation included) and every
``datagrams_to_send``; for QMux every ``receive_data`` and ``data_to_send``.

Every server is driven by the *same* client, mstls' sans-I/O one, so each
server parses the same ClientHello and answers the same Finished: the figure
compares servers, not clients.  The client offers one group, which fixes the
key exchange the server performs (``X25519MLKEM768``: the server encapsulates
to the client's ML-KEM-768 key and does an X25519 exchange; ``x25519``: one
exchange).  Every server signs with the same ECDSA P-256 certificate, sends
no session tickets (qh3 sends none without a ticket handler; mstls has no
ticket keys here) and uses its default transport settings.

Stacks:

* ``mstls``: a :class:`~mstls.quic.endpoint.ServerEndpoint`, as the UDP
  drivers use it (routing, the Initial's authentication before state is
  created, connection creation);
* ``qh3``: ``qh3.quic.connection.QuicConnection`` created on the first
  Initial's header as qh3's own asyncio server does (``pull_quic_header``,
  then the connection; its TLS runs in Rust);
* ``mstls-qmux``: :class:`~mstls.qmux.connection.QMuxConnection` over TLS 1.3
  records (same TLS engine as ``mstls``, no QUIC packetization).

Each (stack, group) pair runs ``--warmup`` untimed handshakes, then
``--handshakes`` timed ones; the stacks alternate round by round (``--rounds``)
so that a change in machine load hits all of them.  The table gives the
median per handshake and the ratio to qh3 in the same run.  ``--profile
STACK`` runs cProfile around that stack's server calls only and prints the
top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mstls.devcerts import write_dev_pki
from mstls.qmux.config import QMuxConfig
from mstls.qmux.connection import QMuxConnection
from mstls.quic.config import QuicConfig
from mstls.quic.connection import QuicConnection
from mstls.quic.crypto import forget_initial_keys
from mstls.quic.endpoint import ServerEndpoint
from mstls.tls.cert_files import load_cert_chain, load_roots
from mstls.tls.config import TLSConfig
from mstls.tls.groups import NamedGroup

ALPN = "mstls-bench"
CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 4433)
#: Bound on exchange rounds per handshake, so a bug ends the run instead of hanging it.
MAX_ROUNDS = 50
#: Virtual time between a send and its delivery (seconds).
LATENCY = 0.001
STACKS = ("mstls", "qh3", "mstls-qmux")
GROUPS = ("X25519MLKEM768", "x25519")
#: Functions printed by ``--profile``.
PROFILE_LINES = 45


class BenchError(RuntimeError):
    """A handshake did not complete."""


class Timer:
    """Accumulates process CPU time of the server's calls; optionally profiles them."""

    def __init__(self, profiler: cProfile.Profile | None = None) -> None:
        self.spent = 0.0
        self.profiler = profiler

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        profiler = self.profiler
        if profiler is not None:
            profiler.enable()
        start = time.process_time()
        try:
            return function(*args)
        finally:
            self.spent += time.process_time() - start
            if profiler is not None:
                profiler.disable()


# -- configurations ----------------------------------------------------------------------


class Setup:
    """Certificates and the configurations every handshake of a run shares."""

    def __init__(self, pki: Path, group: str) -> None:
        self.pki = pki
        self.group = NamedGroup[group]
        chain, key = load_cert_chain(pki / "server.pem", pki / "server.key")
        roots = load_roots(pki / "ca.pem", use_system=False)
        self.client_tls = TLSConfig(
            alpn_protocols=[ALPN],
            server_name="localhost",
            trusted_roots=roots,
            groups=[self.group],
        )
        self.server_tls = TLSConfig(alpn_protocols=[ALPN], certificate_chain=chain, private_key=key)
        self.client_quic = QuicConfig(tls=self.client_tls)
        self.server_quic = QuicConfig(tls=self.server_tls)
        self.client_qmux = QMuxConfig(tls=self.client_tls)
        self.server_qmux = QMuxConfig(tls=self.server_tls)
        self._qh3: Any = None

    def qh3_server_config(self) -> Any:
        if self._qh3 is None:
            from qh3.quic.configuration import QuicConfiguration  # noqa: PLC0415 - optional peer

            config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
            config.load_cert_chain(str(self.pki / "server.pem"), str(self.pki / "server.key"))
            self._qh3 = config
        return self._qh3


# -- one handshake per stack -------------------------------------------------------------


def _mstls_client(setup: Setup, now: float) -> QuicConnection:
    client = QuicConnection(setup.client_quic, is_client=True, now=now, peer_address=SERVER_ADDR)
    client.connect(now)
    forget_initial_keys()  # the server must derive its Initial keys itself, as across hosts
    return client


def _check_group(client: QuicConnection | QMuxConnection, setup: Setup) -> None:
    group = client.tls.group  # type: ignore[union-attr]
    if group != setup.group:
        raise BenchError(f"negotiated {group!r}, expected {setup.group!r}")


def mstls_handshake(setup: Setup, timer: Timer) -> None:
    """One QUIC handshake against a fresh :class:`ServerEndpoint` (built untimed)."""
    now = 1000.0
    endpoint = ServerEndpoint(setup.server_quic)
    client = _mstls_client(setup, now)
    for _ in range(MAX_ROUNDS):
        to_server = client.datagrams_to_send(now)
        now += LATENCY
        for datagram in to_server:
            timer.call(endpoint.receive_datagram, datagram, CLIENT_ADDR, now)
        to_client = timer.call(endpoint.datagrams_to_send, now)
        now += LATENCY
        for datagram, _addr in to_client:
            client.receive_datagram(datagram, SERVER_ADDR, now)
        if not to_server and not to_client:
            break
    server = endpoint.connections[0] if endpoint.connections else None
    if server is None or not (client.handshake_complete and server.handshake_complete):
        raise BenchError("mstls QUIC handshake did not complete")
    _check_group(client, setup)


def _qh3_accept(setup: Setup, datagram: bytes) -> Any:
    """What qh3's asyncio server does with a first Initial: parse, then connect."""
    from qh3._hazmat import pull_quic_header  # noqa: PLC0415 - optional peer
    from qh3.quic.connection import QuicConnection as Qh3Connection  # noqa: PLC0415

    config = setup.qh3_server_config()
    destination_cid = pull_quic_header(datagram, 0, config.connection_id_length)[3]
    return Qh3Connection(configuration=config, original_destination_connection_id=destination_cid)


def qh3_handshake(setup: Setup, timer: Timer) -> None:
    """One QUIC handshake against a qh3 server connection created on the first datagram."""
    now = 1000.0
    client = _mstls_client(setup, now)
    server: Any = None
    for _ in range(MAX_ROUNDS):
        to_server = client.datagrams_to_send(now)
        now += LATENCY
        for datagram in to_server:
            if server is None:
                server = timer.call(_qh3_accept, setup, datagram)
            timer.call(server.receive_datagram, datagram, CLIENT_ADDR, now)
        to_client = timer.call(server.datagrams_to_send, now) if server is not None else []
        now += LATENCY
        for datagram, _addr in to_client:
            client.receive_datagram(datagram, SERVER_ADDR, now)
        if not to_server and not to_client:
            break
    if server is None or not (client.handshake_complete and server._handshake_complete):
        raise BenchError("qh3 handshake did not complete")
    _check_group(client, setup)


def qmux_handshake(setup: Setup, timer: Timer) -> None:
    """One QMux-over-TLS handshake; the server connection is built inside the timer."""
    now = 1000.0
    client = QMuxConnection(setup.client_qmux, is_client=True, now=now)
    client.connect(now)
    server: QMuxConnection = timer.call(
        lambda: QMuxConnection(setup.server_qmux, is_client=False, now=now)
    )
    for _ in range(MAX_ROUNDS):
        to_server = client.data_to_send(now)
        now += LATENCY
        if to_server:
            timer.call(server.receive_data, to_server, now)
        to_client = timer.call(server.data_to_send, now)
        now += LATENCY
        if to_client:
            client.receive_data(to_client, now)
        if not to_server and not to_client:
            break
    if not (client.handshake_complete and server.handshake_complete):
        raise BenchError("QMux handshake did not complete")
    _check_group(client, setup)


HANDSHAKES: dict[str, Callable[[Setup, Timer], None]] = {
    "mstls": mstls_handshake,
    "qh3": qh3_handshake,
    "mstls-qmux": qmux_handshake,
}


# -- the run -----------------------------------------------------------------------------


def measure(setup: Setup, stack: str, count: int, profiler: cProfile.Profile | None) -> list[float]:
    """Server CPU seconds of ``count`` handshakes of one stack."""
    handshake = HANDSHAKES[stack]
    samples = []
    for _ in range(count):
        timer = Timer(profiler)
        handshake(setup, timer)
        samples.append(timer.spent)
    return samples


def run(
    pki: Path,
    *,
    stacks: Sequence[str],
    groups: Sequence[str],
    handshakes: int,
    warmup: int,
    rounds: int,
    profile: str | None = None,
) -> dict[str, Any]:
    """Every (group, stack) pair, alternating by round; medians in seconds."""
    setups = {group: Setup(pki, group) for group in groups}
    samples: dict[tuple[str, str], list[float]] = {(g, s): [] for g in groups for s in stacks}
    profiler = cProfile.Profile() if profile else None
    for group in groups:
        for stack in stacks:
            measure(setups[group], stack, warmup, None)
    per_round = max(1, handshakes // rounds)
    for _ in range(rounds):
        for group in groups:
            for stack in stacks:
                use = profiler if stack == profile else None
                samples[group, stack] += measure(setups[group], stack, per_round, use)
    results: dict[str, Any] = {"handshakes": per_round * rounds, "groups": {}}
    for group in groups:
        row = {}
        for stack in stacks:
            values = samples[group, stack]
            row[stack] = {
                "median_ms": statistics.median(values) * 1e3,
                "mean_ms": statistics.fmean(values) * 1e3,
                "min_ms": min(values) * 1e3,
            }
        results["groups"][group] = row
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(PROFILE_LINES)
        stats.sort_stats("cumulative").print_stats(PROFILE_LINES)
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"server CPU per handshake (ms), median of {results['handshakes']}; ratio to qh3")
    print(f"{'group':16} {'stack':12} {'median':>8} {'mean':>8} {'min':>8} {'/qh3':>6}")
    for group, row in results["groups"].items():
        peer = row.get("qh3")
        for stack, numbers in row.items():
            ratio = f"{numbers['median_ms'] / peer['median_ms']:6.2f}" if peer else "     -"
            print(
                f"{group:16} {stack:12} {numbers['median_ms']:8.3f} {numbers['mean_ms']:8.3f}"
                f" {numbers['min_ms']:8.3f} {ratio}"
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=200, help="timed, per stack and group")
    parser.add_argument("--warmup", type=int, default=20, help="untimed, per stack and group")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of the stacks")
    parser.add_argument("--stacks", nargs="+", choices=STACKS, default=list(STACKS))
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS))
    parser.add_argument("--profile", choices=STACKS, help="cProfile this stack's server calls")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(write_dev_pki(Path(tmp)).directory)
        results = run(
            pki,
            stacks=args.stacks,
            groups=args.groups,
            handshakes=args.handshakes,
            warmup=args.warmup,
            rounds=args.rounds,
            profile=args.profile,
        )
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
