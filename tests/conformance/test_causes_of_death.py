"""N = 1, 16, 128 waiters woken by every cause of death, on {blocking, trio} x {udp, tcp}.

Rules E2, E3, E8, E9, C2 (docs/error-model.md): when a connection fails for
good, every thread or task blocked on it wakes and raises the same exception
(same mstls class, same code and attributes) with the same queue entries: the
channel's entries followed by CONNECTION_TERMINATED; a later call from a new
thread or task sees them again, and they stay on the channel.

The waiters (:func:`waiter_calls`) are, for N > 1: readers each blocked on its
own stream, one writer blocked on flow control, one ``accept_stream`` and one
``open_stream`` blocked on the peer's stream limit (the other streams are
opened first to reach it).  Handshake failures use a lazy connection: every
waiter opens a stream (which drives, or waits for, the handshake) and reads
it, or waits in ``accept_stream``.

Causes (:data:`CAUSES`) and what must be equal everywhere (:data:`EXPECT`):
a table stated once, so both transports and both APIs are held to the same
class, code, ``by_peer`` and reason codes.  What legitimately differs, and is
not compared: the entries' library (``quic`` vs ``qmux``, ``sys`` for a socket
error), reason texts, and which causes exist — a stateless reset is QUIC's; a
TCP RST (its analogue on TCP) and a FIN without close_notify are TCP's; a
closed UDP port (ICMP unreachable) is intermittent (E4) and ends, like a peer
that vanishes, in the idle timeout.  A handshake nobody answers ends in the
handshake timeout on both transports.  After the program
closed a connection itself, the trio API answers later calls with trio's
``ClosedResourceError`` (the trio resource contract), not the replayed failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio

import mstls
from mstls import errors
from mstls.codes import CRYPTO_ERROR_BASE, AlertDescription, TransportErrorCode
from mstls.core.stateless_reset import StatelessResetKey
from mstls.errors import ErrorEntry, Lib, Reason
from tests.certs import get_pki

from .adapters import Call, Client, Op, Outcome, mstls_class
from .checks import Expect, assert_same_failure, state
from .conftest import MakeClient
from .peers import COMMAND_TIMEOUT, PeerServer, Relay, client_config, peer, server_config

pytestmark = pytest.mark.network

#: Client idle timeout of the idle-timeout cause (seconds; the peer's is longer).
IDLE_TIMEOUT = 0.5
#: Keep-alive of the stateless-reset cause: the client must send for the restarted
#: server to answer (RFC 9000 §10.3) even while every waiter only waits.
KEEPALIVE = 0.1
#: The peer's initial_max_streams_bidi (the configs' default): open_stream blocks beyond it.
STREAM_LIMIT = 128
WAITER_COUNTS = (1, 16, 128)
PEER_CODE, PEER_REASON = 42, "maintenance"
LOCAL_CODE, LOCAL_REASON = 7, "local close"
UNKNOWN_CA = CRYPTO_ERROR_BASE + AlertDescription.unknown_ca  # RFC 9001 §4.8
#: An entry the test thread holds while its waiters die.
OWN_ENTRY = ErrorEntry(Lib.API, Reason.INTERNAL, "the test thread's own entry")


@dataclass
class Scene:
    """What a cause of death works with: the client, the peer and its relay."""

    client: Client
    server: PeerServer
    relay: Relay
    extra_servers: list[PeerServer]


@dataclass(frozen=True)
class Cause:
    """A cause of death: which transports have it, the configs, how to kill."""

    transports: tuple[str, ...]
    kill: Callable[[Scene], None]
    client: dict[str, Any]
    server: dict[str, Any]
    server_cert: str = "server"
    lazy: bool = False  # the waiters are blocked in a lazily-started handshake
    prepare: Callable[[Relay], None] | None = None  # done to the relay before connecting


def _peer_close(scene: Scene) -> None:
    """The server closes, from a thread of its own: a thread that closes a
    connection must keep its own queue (issue 17 point 7, see test_error_rules)."""
    conn = scene.server.connection()
    closer = threading.Thread(target=conn.close, args=(PEER_CODE, PEER_REASON))
    closer.start()
    closer.join(COMMAND_TIMEOUT)


def _local_close(scene: Scene) -> None:
    scene.client.do(Op.CLOSE, arg=(LOCAL_CODE, LOCAL_REASON))  # from another thread or task


def _vanish(scene: Scene) -> None:
    scene.relay.blackhole()


RESET_KEY = StatelessResetKey.generate()
_RESET_SERVER: dict[str, Any] = {"extra": {"stateless_reset_key": RESET_KEY}}


def _stateless_reset(scene: Scene) -> None:
    """The server "restarts": a new one with the same reset key gets the datagrams."""
    restarted = PeerServer("udp", server_config(**_RESET_SERVER))
    scene.extra_servers.append(restarted)
    scene.relay.retarget(restarted.port)


def _close_port(scene: Scene) -> None:
    scene.relay.close_port()


def _tcp_rst(scene: Scene) -> None:
    scene.relay.rst()


def _tcp_fin(scene: Scene) -> None:
    scene.relay.fin()


def _nothing(scene: Scene) -> None:
    """The handshake itself fails once a waiter starts it."""


_PKI = get_pki()  # made once per session (tests/certs.py)
#: A server that wants a client certificate from the test CA ...
_REFUSING_SERVER = {"client_cafile": _PKI.files("ca").cert, "require_client_cert": True}
#: ... and a client whose certificate another CA issued.
_UNTRUSTED_CLIENT = {
    "certfile": _PKI.files("client_other_ca").cert,
    "keyfile": _PKI.files("client_other_ca").key,
}


BOTH = ("udp", "tcp")
ALIVE_UNTIL_VANISHED = {"idle_timeout": IDLE_TIMEOUT, "keepalive": IDLE_TIMEOUT / 4}
CAUSES: dict[str, Cause] = {
    "peer_close": Cause(BOTH, _peer_close, {}, {}),
    "local_close": Cause(BOTH, _local_close, {}, {}),
    # Keep-alives hold the connection up while the waiters are set up (a loaded machine
    # may take longer than the idle timeout); once the peer vanishes nothing answers.
    "idle_timeout": Cause(BOTH, _vanish, ALIVE_UNTIL_VANISHED, {}),
    # A vanished peer whose port answers ICMP unreachable: intermittent (E4), so
    # the idle timeout still ends the connection, with nothing else queued.
    "peer_port_closed": Cause(("udp",), _close_port, ALIVE_UNTIL_VANISHED, {}),
    # Nothing ever answers the (lazily started) handshake.
    "handshake_timeout": Cause(
        BOTH,
        _nothing,
        {"handshake_timeout": IDLE_TIMEOUT},
        {},
        lazy=True,
        prepare=Relay.blackhole,
    ),
    "stateless_reset": Cause(("udp",), _stateless_reset, {"keepalive": KEEPALIVE}, _RESET_SERVER),
    "tcp_rst": Cause(("tcp",), _tcp_rst, {}, {}),
    "tcp_fin": Cause(("tcp",), _tcp_fin, {}, {}),
    "server_certificate_rejected": Cause(
        BOTH, _nothing, {}, {}, server_cert="server_other_ca", lazy=True
    ),
    "client_certificate_rejected": Cause(
        BOTH, _nothing, _UNTRUSTED_CLIENT, _REFUSING_SERVER, lazy=True
    ),
}

_END = Reason.CONNECTION_TERMINATED
EXPECT: dict[str, Expect] = {
    "peer_close": Expect(
        (Reason.PEER_CLOSED, _END),
        mstls.ConnectionTerminated,
        attrs={"code": PEER_CODE, "reason": PEER_REASON, "by_peer": True, "is_application": True},
    ),
    "local_close": Expect(
        (Reason.LOCAL_CLOSED, _END),
        mstls.ConnectionTerminated,
        attrs={
            "code": LOCAL_CODE,
            "reason": LOCAL_REASON,
            "by_peer": False,
            "is_application": True,
        },
    ),
    "idle_timeout": Expect(
        (Reason.IDLE_TIMEOUT, _END),
        mstls.ConnectionTerminated,
        attrs={"code": TransportErrorCode.NO_ERROR, "by_peer": False, "is_application": False},
    ),
    "peer_port_closed": Expect(
        (Reason.IDLE_TIMEOUT, _END),
        mstls.ConnectionTerminated,
        attrs={"code": TransportErrorCode.NO_ERROR, "by_peer": False, "is_application": False},
    ),
    "handshake_timeout": Expect(
        (Reason.HANDSHAKE_TIMEOUT, _END),
        mstls.ConnectionTerminated,
        attrs={"by_peer": False, "is_application": False},
    ),
    "stateless_reset": Expect(
        (Reason.STATELESS_RESET, _END),
        mstls.ConnectionTerminated,
        attrs={"code": TransportErrorCode.NO_ERROR, "by_peer": True, "is_application": False},
    ),
    # E8: a TCP reset or FIN without CONNECTION_CLOSE / close_notify is a truncation.
    "tcp_rst": Expect(
        (Reason.PREMATURE_CLOSE, _END), mstls.PrematureClose, attrs={"by_peer": True}
    ),
    "tcp_fin": Expect(
        (Reason.PREMATURE_CLOSE, _END), mstls.PrematureClose, attrs={"by_peer": True}
    ),
    # We reject the server's certificate: the handshake fails here.
    "server_certificate_rejected": Expect(
        (Reason.CERTIFICATE_VERIFY_FAILED, _END),
        mstls.CertificateError,
        attrs={"error_code": UNKNOWN_CA},
    ),
    # The server rejects ours after our side of the TLS 1.3 handshake completed:
    # its alert (TCP) or CRYPTO_ERROR (QUIC) ends the connection, by the peer, with
    # the alert's code, as one class on both transports (issue 17 point 3).
    "client_certificate_rejected": Expect(
        (Reason.TLS_ALERT, _END),
        subclass_of=mstls.ConnectionTerminated,
        attrs={"code": UNKNOWN_CA, "by_peer": True, "is_application": False},
    ),
}

#: Known failures of today's code, on both APIs: (transport, cause) -> issue 17 point.
KNOWN: dict[tuple[str, str], str] = {}


def _marks(transport: str, cause: str) -> list[pytest.MarkDecorator]:
    reason = KNOWN.get((transport, cause))
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


def death_params() -> list[Any]:
    """(transport, cause) pairs: only the causes each transport has."""
    return [
        pytest.param(transport, name, marks=_marks(transport, name), id=f"{transport}-{name}")
        for name, cause in CAUSES.items()
        for transport in cause.transports
    ]


def waiter_calls(client: Client, count: int, *, lazy: bool) -> list[Call]:
    """``count`` operations that block until the connection dies (see the module doc)."""
    if lazy:
        accepts = count // 4
        return [Call(Op.OPEN_AND_READ)] * (count - accepts) + [Call(Op.ACCEPT)] * accepts
    if count == 1:
        return [Call(Op.READ_UNTIL_ERROR, client.do(Op.OPEN))]
    readers = [Call(Op.READ_UNTIL_ERROR, s) for s in client.open_streams(count - 3)]
    writer = Call(Op.WRITE_UNTIL_ERROR, client.do(Op.OPEN))
    client.open_streams(STREAM_LIMIT - (count - 2))  # open_stream must now wait
    return [*readers, writer, Call(Op.ACCEPT), Call(Op.OPEN)]


def client_and_server_configs(name: str) -> tuple[mstls.ClientConfig, mstls.ServerConfig]:
    cause = CAUSES[name]
    return client_config(**cause.client), server_config(cause.server_cert, **cause.server)


def die(make: MakeClient, transport: str, name: str, count: int) -> Outcome:
    """Run ``count`` waiters into death by ``name``, check they all saw the same,
    and return the first waiter's outcome."""
    cause = CAUSES[name]
    client_cfg, server_cfg = client_and_server_configs(name)
    # E1: the test thread's own entry must reach no waiter (trio copies this
    # thread's context into the tasks it starts for it), and nothing theirs ours.
    errors.clear_error()
    errors.put_error(OWN_ENTRY)
    with peer(transport, server_cfg) as (server, relay):
        client = make(transport)
        if cause.prepare is not None:
            cause.prepare(relay)
        client.connect(relay.port, client_cfg, lazy=cause.lazy)
        waiters = client.start(waiter_calls(client, count, lazy=cause.lazy))
        scene = Scene(client, server, relay, [])
        try:
            cause.kill(scene)
            outcomes = waiters.join()
            assert len(outcomes) == count
            assert_same_failure(client, outcomes, EXPECT[name], closed_here=name == "local_close")
            assert errors.errors() == [OWN_ENTRY]
            return outcomes[0]
        finally:
            for extra in scene.extra_servers:
                extra.close()


@pytest.mark.parametrize("count", WAITER_COUNTS)
@pytest.mark.parametrize(("transport", "cause"), death_params())
def test_every_waiter_sees_the_same_death(
    make: MakeClient, transport: str, cause: str, count: int
) -> None:
    die(make, transport, cause, count)


#: What must be equal on UDP and TCP (the rest, see the module doc, may differ).
ALIKE = ("code", "by_peer", "is_application")
SHARED = [name for name, cause in CAUSES.items() if cause.transports == BOTH]


@pytest.mark.parametrize(
    "cause",
    [pytest.param(name, marks=_marks("tcp", name), id=name) for name in SHARED],
)
def test_both_transports_fail_alike(make: MakeClient, cause: str) -> None:
    """The same cause gives the same class, code, by_peer and reason codes on UDP and TCP."""
    seen = {}
    for transport in BOTH:
        outcome = die(make, transport, cause, 1)
        assert outcome.exc is not None
        attrs = {k: v for k, v in state(outcome.exc).items() if k in ALIKE}
        reasons = [entry.reason for entry in outcome.entries]
        seen[transport] = (mstls_class(outcome.exc), attrs, reasons)
    assert seen["udp"] == seen["tcp"]


# -- a listener's waiters (C2) ---------------------------------------------------------------
def _listener_params() -> list[Any]:
    return [
        pytest.param(api, transport, id=f"{api}-{transport}")
        for api in ("blocking", "trio", "asyncio")
        for transport in BOTH
    ]


LISTENER_WAITERS = 16
#: How long the accept waiters have to wake (their accept has no time limit of its own).
LISTENER_WAKE = 5.0


@pytest.mark.parametrize(("api", "transport"), _listener_params())
def test_closing_a_listener_wakes_every_accept(make: MakeClient, transport: str) -> None:
    """C2: N callers blocked in ``Listener.accept`` wake when another thread (task)
    closes the listener.  Blocking: :class:`~mstls.ListenerClosed` (a later
    accept too), one LISTENER_CLOSED entry each.  trio: the resource contract's
    ``trio.ClosedResourceError`` for a listener closed by the program itself."""
    client = make(transport)
    listener = client.listen(server_config())
    waiters = client.start([Call(Op.LISTENER_ACCEPT, listener)] * LISTENER_WAITERS)
    client.do(Op.LISTENER_CLOSE, listener)
    outcomes = [*waiters.join(LISTENER_WAKE), client.call(Op.LISTENER_ACCEPT, listener)]
    for outcome in outcomes:
        if client.api == "trio":
            assert isinstance(outcome.exc, trio.ClosedResourceError), outcome
            assert outcome.entries == []
        else:
            assert isinstance(outcome.exc, mstls.ListenerClosed), outcome
            assert [e.reason for e in outcome.entries] == [Reason.LISTENER_CLOSED]
