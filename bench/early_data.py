"""Time to the first answer over TCP/QMux: resumed 1-RTT against 0-RTT, through the public API.

Run from the repository root: ``python -m bench.early_data`` (``--help``).

Theory of operation
-------------------
0-RTT (RFC 8446 §2.3) saves a resuming client one round trip before its first
request reaches the server.  A relay on 127.0.0.1 delays every chunk it passes
by ``--delay`` ms each way (a WAN in miniature; TCP's own connect is not
delayed), in front of an mstls echo listener with ``max_early_data``.  Each
round makes one resumed connection without early data and one with the
request on an ``open_stream(early=True)`` stream (both ``lazy=True``), and
times each from ``connect`` to the echoed request (``time.perf_counter``).
It prints the medians, the number of one-way delays each took, and the ratio
0-RTT / 1-RTT measured in the same run (about 2/4 = 0.5 expected: the request
rides with the ClientHello instead of after the server's flight).
"""

from __future__ import annotations

import argparse
import heapq
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import mstls
from mstls.devcerts import write_dev_pki

ALPN = "mstls-bench"
REQUEST = b"GET /replay-safe"
#: Seconds any single network step may take before the run fails.
STEP_TIMEOUT = 10.0


class DelayRelay:
    """A TCP relay that passes each chunk on ``delay`` seconds after it arrived."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=STEP_TIMEOUT)
            for sock in (client, upstream):  # no Nagle wait on top of the delay
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        due: list[tuple[float, int, bytes | None]] = []
        cond = threading.Condition()
        sender = threading.Thread(target=self._send, args=(dst, due, cond), daemon=True)
        sender.start()
        count = 0
        try:
            while data := src.recv(65536):
                with cond:
                    heapq.heappush(due, (time.monotonic() + self.delay, count, data))
                    cond.notify()
                count += 1
        except OSError:
            pass
        with cond:
            heapq.heappush(due, (time.monotonic() + self.delay, count, None))
            cond.notify()

    @staticmethod
    def _send(
        dst: socket.socket, due: list[tuple[float, int, bytes | None]], cond: threading.Condition
    ) -> None:
        while True:
            with cond:
                while not due or due[0][0] > time.monotonic():
                    cond.wait(None if not due else max(0.0, due[0][0] - time.monotonic()))
                _, _, data = heapq.heappop(due)
            try:
                if data is None:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def _serve(listener: mstls.Listener) -> None:
    def one(conn: mstls.Connection) -> None:
        try:
            stream = conn.accept_stream(timeout=STEP_TIMEOUT)
            stream.write(stream.read_exactly(len(REQUEST), timeout=STEP_TIMEOUT))
            stream.conclude()
            conn.wait_handshake(timeout=STEP_TIMEOUT)  # the tickets go after it
            time.sleep(0.05)
        except mstls.Error:
            pass

    while True:
        try:
            conn = listener.accept(timeout=None)
        except mstls.Error:
            return
        threading.Thread(target=one, args=(conn,), daemon=True).start()


def _request(port: int, config: mstls.ClientConfig, early: bool) -> tuple[float, bool | None]:
    """Seconds from connect to the echoed request; whether early data was accepted."""
    start = time.perf_counter()
    conn = mstls.connect("127.0.0.1", port, config, transport="tcp", lazy=True)
    try:
        stream = conn.open_stream(early=early, timeout=STEP_TIMEOUT)
        stream.write(REQUEST, timeout=STEP_TIMEOUT)
        stream.conclude()
        if stream.read_exactly(len(REQUEST), timeout=STEP_TIMEOUT) != REQUEST:
            raise RuntimeError("wrong echo")
        elapsed = time.perf_counter() - start
        conn.wait_handshake(timeout=STEP_TIMEOUT)
        accepted = conn.early_data_accepted
        deadline = time.monotonic() + STEP_TIMEOUT  # wait for the next tickets
        while len(config.ticket_store) == 0 and time.monotonic() < deadline:  # type: ignore[arg-type]
            time.sleep(0.005)
        return elapsed, accepted
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="connections of each kind")
    parser.add_argument("--delay", type=float, default=20.0, help="one-way delay in ms")
    args = parser.parse_args()
    delay = args.delay / 1000
    with tempfile.TemporaryDirectory() as tmp:
        pki = write_dev_pki(Path(tmp))
        server = mstls.ServerConfig(
            certfile=pki.server_cert, keyfile=pki.server_key, alpn=ALPN, max_early_data=4096
        )
        listener = mstls.listen("127.0.0.1", 0, server, transport="tcp")
        threading.Thread(target=_serve, args=(listener,), daemon=True).start()
        relay = DelayRelay(listener.address, delay)
        store = mstls.MemoryTicketStore()
        options = {"alpn": ALPN, "cafile": pki.ca_cert, "server_name": "localhost"}
        plain = mstls.ClientConfig(**options, ticket_store=store)
        early = mstls.ClientConfig(**options, ticket_store=store, early_data=True)
        port = relay.address[1]
        _request(port, plain, early=False)  # a full handshake stores the first tickets
        times: dict[str, list[float]] = {"1-RTT": [], "0-RTT": []}
        for _ in range(args.rounds):
            seconds, accepted = _request(port, plain, early=False)
            times["1-RTT"].append(seconds)
            seconds, accepted = _request(port, early, early=True)
            if accepted is not True:
                raise RuntimeError("the 0-RTT connection's early data was not accepted")
            times["0-RTT"].append(seconds)
        relay.close()
        listener.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"one-way delay {args.delay:g} ms, {args.rounds} resumed connections of each kind")
    for name, value in medians.items():
        delays = value / delay
        print(f"  {name}: {value * 1000:8.1f} ms to the echoed request ({delays:.1f} delays)")
    print(f"  ratio 0-RTT / 1-RTT: {medians['0-RTT'] / medians['1-RTT']:.2f}")


if __name__ == "__main__":
    main()
