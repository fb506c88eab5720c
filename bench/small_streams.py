"""Small request/response streams: server CPU per stream, mstls against aioquic.

Run from the repository root: ``python -m bench.small_streams`` (``--help``).

Theory of operation
-------------------
Issue 11 measured 566 us of server CPU per 1 KiB request/response stream for
mstls against 208 us for aioquic.  This bench measures the protocol stacks alone,
in one process and the same run: each stack's client and server connection are
joined in memory (both libraries are sans-I/O; no sockets, no event loop), and
``--streams`` bidirectional streams run one after another on one connection:
the client writes ``--size`` bytes and the FIN, the server reads to the FIN and
answers the same, the client reads to the FIN.  The time spent in the server's calls
only (datagrams in, datagrams out, timers, the application's reads and writes) is
summed with ``time.perf_counter``; the first ``--warmup`` streams are not counted.
The process is single-threaded and never waits, so that is CPU time unless the
machine is busy (run it on a quiet one); ``time.process_time`` would be the direct
measure but costs microseconds per call on some kernels, more than what it times.
The path delivers every datagram at once (no loss, no delay): the clock only
moves when both sides are idle and a timer is due.

mstls runs through :class:`~mstls.session.Session` (what the blocking and trio
APIs call) on the tests' in-memory QUIC connection; aioquic through its
``QuicConnection``.  Both use 1200-byte datagrams (mstls with path-MTU probing
off), ECDSA P-256 certificates and their default congestion control and ACK
policy.  Socket and event-loop costs, which the issue's figures include, are
left out on both sides, so the figures are lower than the issue's; the ratio is
the point.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection
from aioquic.quic.events import StreamDataReceived

from mstls.devcerts import write_dev_pki
from mstls.session import Session
from tests.quic import pair as quic_pair

ALPN = "mstls-bench"
CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 4433)
#: Bound on loop turns per stream, so a bug ends the run instead of hanging it.
MAX_TURNS_PER_STREAM = 1000


class _Clock:
    """Server time, summed over the wrapped calls, and the datagrams each way."""

    def __init__(
        self, profiler: cProfile.Profile | None = None, now: Callable[[], float] = time.perf_counter
    ) -> None:
        self.cpu = 0.0
        self.counting = False
        self.profiler = profiler
        self.to_server = 0
        self.to_client = 0
        self.now = now
        #: What one reading of the clock pair costs, taken off every timed call.
        self.overhead = _clock_cost(now)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        now = self.now

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.counting:
                return fn(*args, **kwargs)
            profiler = self.profiler
            if profiler is not None:
                profiler.enable()
            start = now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu += now() - start - self.overhead
                if profiler is not None:
                    profiler.disable()

        return timed

    def start(self) -> None:
        self.cpu = 0.0
        self.to_server = self.to_client = 0
        self.counting = True


def _clock_cost(now: Callable[[], float], samples: int = 20_000) -> float:
    """The median time between two readings of ``now`` (its own cost)."""
    costs = []
    for _ in range(samples):
        start = now()
        costs.append(now() - start)
    costs.sort()
    return costs[len(costs) // 2]


#: The server-time clocks: wall time (exact on a quiet machine), or the thread's CPU
#: time (not inflated when other processes take the CPU; each reading costs more,
#: and that cost, measured at start, is subtracted).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}

#: Runs ``count`` more streams on a stack's connection; returns that round's server time.
Runner = Callable[[int], float]


def _touching(server: Session, pair: Any, clock: _Clock) -> tuple[Callable[..., Any], ...]:
    """The server's read, accept and write, each timed and followed by what the drivers
    do after an application call (mstls.trio._udp, the blocking handlers): tell the
    endpoint, so that what the call queued (the answer, a credit update) leaves at its
    next datagrams_to_send, not at the next timer."""
    endpoint, conn = pair.endpoint, pair.server

    def read(stream_id: int, size: int) -> bytes | None:
        data = server.read(stream_id, size)
        endpoint.touch(conn)
        return data

    def accept() -> int | None:
        stream_id = server.accept()
        endpoint.touch(conn)
        return stream_id

    def write(stream_id: int, data: bytes, fin: bool) -> None:
        server.write(stream_id, data, fin)
        endpoint.touch(conn)

    return clock.wrap(read), clock.wrap(accept), clock.wrap(write)


def _driver_flush(pair: Any) -> None:
    """The pair's flush without its touch of every server connection (there for tests
    that call connections without touching them): the calls above touch as the
    drivers do, so the endpoint asks only the connections called (its dirty set)."""
    for data, _path in pair.client.datagrams_with_paths(pair.now):
        pair._send(data, True, pair.client_addr)
    for data, addr in pair.endpoint.datagrams_to_send(pair.now):
        pair._send(data, False, addr)


def mstls_runner(size: int, clock: _Clock) -> Runner:
    """An mstls client and server joined in memory, ready for streams."""
    pair = quic_pair.Pair(
        client=quic_pair.client_config(pmtu_discovery=False),
        server=quic_pair.server_config(pmtu_discovery=False),
        latency=0.0,
    )
    pair.handshake()
    client = Session(pair.client, transport="udp")
    server = Session(pair.server, transport="udp")
    endpoint = pair.endpoint
    receive = clock.wrap(endpoint.receive_datagram)
    output = clock.wrap(endpoint.datagrams_to_send)

    def counted_receive(data: bytes, addr: Any, now: float, ecn: int = 0) -> None:
        clock.to_server += 1
        receive(data, addr, now, ecn)

    def counted_output(now: float) -> list[tuple[bytes, Any]]:
        out: list[tuple[bytes, Any]] = output(now)
        clock.to_client += len(out)
        return out

    endpoint.receive_datagram = counted_receive  # type: ignore[method-assign]
    endpoint.datagrams_to_send = counted_output  # type: ignore[method-assign]
    endpoint.handle_timer = clock.wrap(endpoint.handle_timer)  # type: ignore[method-assign]
    server_pump = clock.wrap(server.pump_events)

    server_read, server_accept, server_write = _touching(server, pair, clock)
    pair._flush = lambda: _driver_flush(pair)  # type: ignore[method-assign]

    def pump() -> None:
        client.pump_events()
        server_pump()

    pair._collect = pump  # type: ignore[method-assign]
    pump()
    request, answer = b"q" * size, b"r" * size

    def one_stream() -> None:
        sid = client.open_stream(True)
        if sid is None:
            raise RuntimeError("mstls: no stream credit")
        client.write(sid, request, fin=True)
        served = False
        for _ in range(MAX_TURNS_PER_STREAM):
            if not served and server.accept_queue:
                peer_sid = server.accept_queue[0]
                while (data := server_read(peer_sid, 1 << 16)) is not None:
                    # The request's end: read_reached_end as the streams' at_end (what
                    # aioquic's end_stream says), or the b"" of a FIN alone.
                    if not data or server.read_reached_end:
                        served = True
                        server_write(server_accept(), answer, fin=True)
                        break
            if served:
                while (data := client.read(sid, 1 << 16)) is not None and data:
                    pass
                if data == b"":
                    return
            if not pair.step():
                raise RuntimeError("mstls: nothing left to happen")
        raise RuntimeError(f"mstls: stream {sid} did not complete")

    return _rounds(clock, one_stream)


def _rounds(clock: _Clock, one_stream: Callable[[], None]) -> Runner:
    def run(count: int) -> float:
        clock.start()
        try:
            for _ in range(count):
                one_stream()
        finally:
            clock.counting = False
        return clock.cpu

    return run


def _aioquic_configs(directory: str) -> tuple[QuicConfiguration, QuicConfiguration]:
    pki = write_dev_pki(directory)
    common: dict[str, Any] = {"alpn_protocols": [ALPN], "max_datagram_size": 1200}
    client = QuicConfiguration(is_client=True, server_name="localhost", **common)
    client.load_verify_locations(cadata=pki.ca_cert.read_bytes())
    client.verify_mode = ssl.CERT_REQUIRED
    server = QuicConfiguration(is_client=False, **common)
    server.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    return client, server


def _fire_if_due(timer: float | None, now: float, handle: Callable[[float], Any]) -> None:
    if timer is not None and timer <= now:
        handle(now)


def aioquic_runner(size: int, clock: _Clock) -> Runner:
    """An aioquic client and server joined in memory, ready for streams."""
    with tempfile.TemporaryDirectory() as directory:
        client_config, server_config = _aioquic_configs(directory)
    now = 1000.0
    client = AioquicConnection(configuration=client_config)
    client.connect(SERVER_ADDR, now=now)
    server = AioquicConnection(
        configuration=server_config,
        original_destination_connection_id=client.original_destination_connection_id,
    )
    server_receive = clock.wrap(server.receive_datagram)
    server_out = clock.wrap(server.datagrams_to_send)
    server_timer = clock.wrap(server.handle_timer)
    server_event = clock.wrap(server.next_event)
    server_send = clock.wrap(server.send_stream_data)
    client_done: set[int] = set()
    answer = b"r" * size

    def turn() -> bool:
        """Deliver everything both ways; fire a due timer when idle.  False: nothing."""
        nonlocal now
        moved = False
        for data, _ in client.datagrams_to_send(now):
            clock.to_server += 1
            server_receive(data, CLIENT_ADDR, now)
            moved = True
        for data, _ in server_out(now):
            clock.to_client += 1
            client.receive_datagram(data, SERVER_ADDR, now)
            moved = True
        while (event := server_event()) is not None:
            if isinstance(event, StreamDataReceived) and event.end_stream:
                server_send(event.stream_id, answer, end_stream=True)
            moved = True
        while (event := client.next_event()) is not None:
            if isinstance(event, StreamDataReceived) and event.end_stream:
                client_done.add(event.stream_id)
            moved = True
        if moved:
            return True
        timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if not timers:
            return False
        now = max(now, min(timers))
        _fire_if_due(client.get_timer(), now, client.handle_timer)
        _fire_if_due(server.get_timer(), now, server_timer)
        return True

    for _ in range(MAX_TURNS_PER_STREAM):
        if client._handshake_complete and server._handshake_complete:
            break
        turn()
    return _rounds(clock, _aioquic_stream(client, turn, client_done, b"q" * size))


def _aioquic_stream(
    client: Any, turn: Callable[[], bool], done: set[int], request: bytes
) -> Callable[[], None]:
    """One request/response stream on aioquic, to completion."""

    def one_stream() -> None:
        sid = client.get_next_available_stream_id()
        client.send_stream_data(sid, request, end_stream=True)
        for _ in range(MAX_TURNS_PER_STREAM):
            if sid in done:
                done.discard(sid)
                return
            if not turn():
                raise RuntimeError("aioquic: nothing left to happen")
        raise RuntimeError(f"aioquic: stream {sid} did not complete")

    return one_stream


STACKS: dict[str, Callable[[int, _Clock], Runner]] = {
    "mstls": mstls_runner,
    "aioquic": aioquic_runner,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024, help="bytes each way (default 1 KiB)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=50,
        help="the streams are run in this many rounds, the stacks taking turns, "
        "so a change in the machine's load hits both (default 50)",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: the thread's CPU time (default; robust on a busy machine); "
        "wall: perf_counter (cheaper to read, exact only on a quiet machine)",
    )
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="cProfile the server's calls: PREFIX.mstls.prof and PREFIX.aioquic.prof "
        "(profiling inflates the times printed)",
    )
    args = parser.parse_args(argv)
    profilers = {name: cProfile.Profile() if args.profile else None for name in STACKS}
    clocks = {name: _Clock(profilers[name], CLOCKS[args.clock]) for name in STACKS}
    runners = {name: make(args.size, clocks[name]) for name, make in STACKS.items()}
    for run in runners.values():
        run(args.warmup)
    rounds = max(1, min(args.rounds, args.streams))
    per_round = [args.streams // rounds + (i < args.streams % rounds) for i in range(rounds)]
    cpu = dict.fromkeys(STACKS, 0.0)
    datagrams = {name: [0, 0] for name in STACKS}
    ratios = []
    for index, count in enumerate(per_round):
        order = list(STACKS) if index % 2 == 0 else list(reversed(STACKS))
        spent = {}
        for name in order:
            spent[name] = runners[name](count)
            cpu[name] += spent[name]
            datagrams[name][0] += clocks[name].to_server
            datagrams[name][1] += clocks[name].to_client
        ratios.append(spent["mstls"] / spent["aioquic"])
    for name in STACKS:
        up, down = (n / args.streams for n in datagrams[name])
        print(
            f"{name:>8}: server time {cpu[name] / args.streams * 1e6:7.1f} us per stream; "
            f"datagrams per stream {up:.2f} to the server, {down:.2f} back",
            flush=True,
        )
    ratios.sort()
    print(
        f"mstls / aioquic: {cpu['mstls'] / cpu['aioquic']:.2f} "
        f"(per round of {per_round[0]}: min {ratios[0]:.2f}, "
        f"median {ratios[len(ratios) // 2]:.2f}, max {ratios[-1]:.2f})"
    )
    for name, profiler in profilers.items():
        if profiler is not None:
            path = f"{args.profile}.{name}.prof"
            profiler.dump_stats(path)
            print(f"{name}: {path}")
            pstats.Stats(path).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
