"""C1 and OpenSSL #24166 on {blocking, trio} x {udp, tcp}: no deadlock, no lost wake-up.

* C1 (the Go handshakeCond fix): a lazily-started client handshake raced by a
  reader (``accept_stream`` and read) and a writer (``open_stream`` and write),
  in two threads or tasks that start together; exactly one drives the handshake,
  the other waits, both finish.  ``MSTLS_RACE_ITERATIONS`` (default
  :data:`RACE_ITERATIONS`) sets the count per API and transport: the default run
  makes 4 x 500 = 2,000 races; ``MSTLS_RACE_ITERATIONS=3000`` is the long run.
* C3: one daemon assist thread serves every blocking-API connection of the process.
* OpenSSL #24166 (a reader's wake-up lost while another thread did I/O): K
  readers blocked on K streams while one thread (task) does bulk echo I/O on
  another stream, for :data:`WAKEUP_ROUNDS` rounds on one connection.  The peer
  drives the rounds in lock-step (one byte to every reader, then wait for each
  echo), so a lost wake-up cannot be covered by the next round's data: it turns
  into a failure naming the round after :data:`STALL_TIMEOUT`.
"""

from __future__ import annotations

import os
import threading

import pytest

import mstls

from .adapters import Call, Op
from .conftest import MakeClient
from .peers import CommandService, client_config, peer, server_config

pytestmark = pytest.mark.network

BOTH = ("udp", "tcp")
RACE_ITERATIONS = 500
WAKEUP_ROUNDS = 3000
#: Readers blocked beside the bulk stream (OpenSSL #24166 used two).
WAKEUP_READERS = 4
ASSIST_CONNECTIONS = 16
#: A reader whose byte is not echoed within this time stalled (seconds).
STALL_TIMEOUT = 10.0


def _count(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@pytest.mark.parametrize("transport", BOTH)
def test_lazy_handshake_raced_by_a_reader_and_a_writer(make: MakeClient, transport: str) -> None:
    service = CommandService(greet=True)
    with peer(transport, server_config(), service) as (server, _):
        client = make(transport)
        config = client_config()
        for i in range(_count("MSTLS_RACE_ITERATIONS", RACE_ITERATIONS)):
            client.connect(server.port, config, lazy=True)
            reader = Call(Op.ACCEPT_AND_READ_ALL)
            writer = Call(Op.OPEN_AND_EXCHANGE, arg=b"echo\nping")
            calls = [reader, writer] if i % 2 else [writer, reader]
            outcomes = {o.call.op: o for o in client.start(calls, settle=False).join()}
            got = {op: o.unwrap() for op, o in outcomes.items()}
            assert got == {reader.op: service.GREETING, writer.op: b"ping"}, f"iteration {i}"
            client.disconnect()


@pytest.mark.parametrize("transport", BOTH)
def test_no_lost_wakeup_while_another_stream_does_bulk_io(make: MakeClient, transport: str) -> None:
    rounds = _count("MSTLS_WAKEUP_ROUNDS", WAKEUP_ROUNDS)
    service = CommandService()
    with peer(transport, server_config(), service) as (server, _):
        client = make(transport)
        client.connect(server.port, client_config())
        readers = client.open_streams(WAKEUP_READERS)
        for stream in readers:
            client.do(Op.WRITE, stream, b"hold\n")
        bulk = client.do(Op.OPEN)
        client.do(Op.WRITE, bulk, b"echo\n")
        held = service.wait_held(WAKEUP_READERS)
        stop = threading.Event()
        calls = [Call(Op.ECHO_ROUNDS, s, rounds) for s in readers]
        waiters = client.start([*calls, Call(Op.BULK, bulk, stop)], settle=False)
        try:
            for r in range(rounds):
                for stream in held:
                    stream.write(b"r")
                for i, stream in enumerate(held):
                    try:
                        stream.read_exactly(1, timeout=STALL_TIMEOUT)
                    except mstls.Timeout:
                        pytest.fail(f"round {r}: reader {i} was not woken (lost wake-up)")
        finally:
            stop.set()
        outcomes = waiters.join()
        assert [o.unwrap() for o in outcomes[:WAKEUP_READERS]] == [rounds] * WAKEUP_READERS
        assert outcomes[-1].unwrap() > 0, "the bulk stream moved no data"


@pytest.mark.parametrize("transport", BOTH)
def test_one_assist_thread_serves_every_connection(transport: str) -> None:
    """C3: sixteen blocking connections (and their server) share one daemon assist thread."""
    with peer(transport, server_config(), CommandService()) as (server, _):
        config = client_config()
        connections = [
            mstls.connect("127.0.0.1", server.port, config, transport=transport, timeout=10)
            for _ in range(ASSIST_CONNECTIONS)
        ]
        try:
            assist = [t for t in threading.enumerate() if t.name == "mstls-assist"]
            assert len(assist) == 1 and assist[0].daemon
        finally:
            for conn in connections:
                conn.close()
