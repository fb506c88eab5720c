"""The aioquic test peer against itself, so its helpers are proven before mstls uses them.

Each test runs :func:`run_aioquic_client` against an :class:`AioquicServer` on
127.0.0.1 and checks both what the client saw and what the server logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.certs import SERVER_NAME, get_pki
from tests.interop.aioquic_client import ClientHandle, run_aioquic_client
from tests.interop.aioquic_peer import AioquicServer, LogEvent, StreamResetByPeer
from tests.interop.protocol import (
    ALPN,
    BAD_COMMAND_ERROR,
    CIPHER_SUITE_NAMES,
    EVENT_CONNECTION_CLOSED,
    EVENT_HANDSHAKE,
    EVENT_KEY_PHASE_CHANGE,
    EVENT_STOP_SENDING,
    EVENT_STREAM_RESET,
    LINE_END,
    MAX_COMMAND_LINE,
    MAX_NUMBER,
    MAX_TRANSFER,
    OK_REPLY,
    Action,
    Close,
    Command,
    CommandError,
    KeyUpdate,
    Request,
    Reset,
    Send,
    SendUni,
    ServiceSession,
    Stop,
    command_line,
    digest_line,
    is_client_initiated,
    is_unidirectional,
    parse_command,
    parse_digest_line,
    pattern,
    pattern_chunks,
    sha256_hex,
)

T = TypeVar("T")
MIB = 1 << 20
CHACHA20 = 0x1303
AES_128 = 0x1301
AES_256 = 0x1302
BIG_STREAMS = 8
BIG_SIZE = 4 * MIB
#: About 12 s on an idle 2-core machine; generous for a loaded one.
BIG_TIMEOUT = 120


@pytest.fixture
def server() -> Iterator[AioquicServer]:
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key) as srv:
        yield srv


def run(
    srv: AioquicServer,
    scenario: Callable[[ClientHandle], Awaitable[T]],
    timeout: float = 30,
    **kwargs: object,
) -> T:
    cafile = get_pki().files("ca").cert
    return run_aioquic_client(
        "127.0.0.1", srv.port, cafile, scenario, server_name=SERVER_NAME, timeout=timeout,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def kind(name: str) -> Callable[[LogEvent], bool]:
    return lambda event: event[0] == name


@pytest.mark.network
def test_handshake_and_small_echo(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> tuple[object, bytes, bytes]:
        return client.handshake_info, await client.echo(b"hello"), await client.echo(b"")

    info, echoed, empty = run(server, scenario)
    assert info == (ALPN, CIPHER_SUITE_NAMES[AES_256])  # aioquic's first choice
    assert (echoed, empty) == (b"hello", b"")
    assert server.wait_for_event(kind(EVENT_HANDSHAKE), 5) == (EVENT_HANDSHAKE, *info)
    # the client closed with NO_ERROR when the scenario returned
    assert server.wait_for_event(kind(EVENT_CONNECTION_CLOSED), 5) == (
        EVENT_CONNECTION_CLOSED, 0, "", True,
    )  # fmt: skip


@pytest.mark.network
def test_concurrent_big_echo(server: AioquicServer) -> None:
    payloads = [os.urandom(BIG_SIZE) for _ in range(BIG_STREAMS)]

    async def scenario(client: ClientHandle) -> list[bytes]:
        return list(await asyncio.gather(*(client.echo(p, timeout=BIG_TIMEOUT) for p in payloads)))

    started = time.monotonic()
    echoed = run(server, scenario, timeout=BIG_TIMEOUT)
    elapsed = time.monotonic() - started
    print(f"{BIG_STREAMS} x {BIG_SIZE // MIB} MiB echo through aioquic: {elapsed:.1f} s")
    assert [hashlib.sha256(e).digest() for e in echoed] == [
        hashlib.sha256(p).digest() for p in payloads
    ]


@pytest.mark.network
def test_sink_source_and_uni(server: AioquicServer) -> None:
    data = os.urandom(300_000)

    async def scenario(client: ClientHandle) -> tuple[str, bytes, bytes, str, bytes]:
        return (
            await client.sink(data),
            await client.source(1_000_003),
            await client.source(0),
            await client.uni(data),
            await client.uni_source(70_000),
        )

    sunk, sourced, nothing, uni_digest, uni_sourced = run(server, scenario)
    digest = hashlib.sha256(data).hexdigest()
    assert sunk == digest
    assert uni_digest == digest
    assert sourced == bytes(i % 251 for i in range(1_000_003))
    assert nothing == b""
    assert uni_sourced == pattern(70_000)


@pytest.mark.network
def test_server_reset_and_stop(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> tuple[int, int, int, bytes]:
        reset = await client.request_reset(0x1234)
        stop = await client.request_stop(77)
        try:
            await client._command(b"bogus\n", b"", 5)
        except StreamResetByPeer as exc:
            bad = exc.code
        return reset, stop, bad, await client.echo(b"still fine")

    assert run(server, scenario) == (0x1234, 77, BAD_COMMAND_ERROR, b"still fine")


@pytest.mark.network
def test_client_reset_and_stop_are_logged(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> tuple[int, int]:
        reset_id = client.reset_stream_from_client(0x51)
        stop_id = client.stop_stream_from_client(0x52)
        await client.echo(b"sync")  # both frames went out before this exchange
        return reset_id, stop_id

    reset_id, stop_id = run(server, scenario)
    assert server.wait_for_event(kind(EVENT_STREAM_RESET), 5) == (
        EVENT_STREAM_RESET, reset_id, 0x51,
    )  # fmt: skip
    assert server.wait_for_event(kind(EVENT_STOP_SENDING), 5) == (
        EVENT_STOP_SENDING, stop_id, 0x52,
    )  # fmt: skip


@pytest.mark.network
def test_key_updates_both_ways(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> tuple[bytes, int, bytes, int]:
        first = await client.echo_after_key_update(b"after server update")
        changes_after_server = client.key_phase_changes
        await client.key_update()
        second = await client.echo(b"after client update")
        return first, changes_after_server, second, client.key_phase_changes

    first, after_server, second, after_client = run(server, scenario)
    assert (first, second) == (b"after server update", b"after client update")
    assert (after_server, after_client) == (1, 2)
    assert server.wait_for_event(lambda e: e == (EVENT_KEY_PHASE_CHANGE, 0), 5)
    assert [e for e in server.events if e[0] == EVENT_KEY_PHASE_CHANGE] == [
        (EVENT_KEY_PHASE_CHANGE, 1),
        (EVENT_KEY_PHASE_CHANGE, 0),
    ]


@pytest.mark.network
def test_server_close_seen_by_client(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> tuple[tuple[int, str], object]:
        seen = await client.request_close(0x99, "bye now, client")
        return seen, client.termination

    seen, termination = run(server, scenario)
    assert seen == (0x99, "bye now, client")
    assert termination == (0x99, None, "bye now, client", True)  # None: application close
    assert server.wait_for_event(kind(EVENT_CONNECTION_CLOSED), 5) == (
        EVENT_CONNECTION_CLOSED, 0x99, "bye now, client", False,
    )  # fmt: skip


@pytest.mark.network
def test_client_close_seen_by_server(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> object:
        return await client.close(0x42, "client done")

    assert run(server, scenario) == (0x42, None, "client done", False)
    assert server.wait_for_event(kind(EVENT_CONNECTION_CLOSED), 5) == (
        EVENT_CONNECTION_CLOSED, 0x42, "client done", True,
    )  # fmt: skip


@pytest.mark.network
def test_retry() -> None:
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key, retry=True) as srv:

        async def scenario(client: ClientHandle) -> tuple[bool, bytes]:
            return client.retried, await client.echo(b"validated")

        assert run(srv, scenario) == (True, b"validated")


@pytest.mark.network
def test_no_retry_by_default(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> bool:
        return client.retried

    assert run(server, scenario) is False


@pytest.mark.network
@pytest.mark.parametrize("suite", [CHACHA20, AES_128, AES_256])
def test_cipher_suite(server: AioquicServer, suite: int) -> None:
    async def scenario(client: ClientHandle) -> tuple[object, bytes]:
        return client.handshake_info, await client.echo(b"cipher")

    info, echoed = run(server, scenario, cipher_suites=[suite])
    assert info == (ALPN, CIPHER_SUITE_NAMES[suite])
    assert echoed == b"cipher"
    assert server.wait_for_event(kind(EVENT_HANDSHAKE), 5)[2] == CIPHER_SUITE_NAMES[suite]


@pytest.mark.network
def test_server_cipher_suite_restriction(tmp_path: Path) -> None:
    files = get_pki().files("server")
    with AioquicServer(files.cert, files.key, cipher_suites=[CHACHA20]) as srv:

        async def scenario(client: ClientHandle) -> object:
            return client.handshake_info.cipher_suite

        assert run(srv, scenario) == CIPHER_SUITE_NAMES[CHACHA20]


@pytest.mark.network
def test_alpn_mismatch_fails_handshake(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> None:
        return None

    with pytest.raises(ConnectionError):
        run(server, scenario, alpn=["not-mstls"])


@pytest.mark.network
def test_secrets_log_written(tmp_path: Path) -> None:
    files = get_pki().files("server")
    path = tmp_path / "keys.log"
    with AioquicServer(files.cert, files.key, secrets_log=path) as srv:

        async def scenario(client: ClientHandle) -> bytes:
            return await client.echo(b"x")

        assert run(srv, scenario) == b"x"
    with open(path, encoding="ascii") as log:
        labels = {line.split()[0] for line in log}
    assert {"SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"} <= labels


@pytest.mark.network
def test_scenario_timeout(server: AioquicServer) -> None:
    async def scenario(client: ClientHandle) -> None:
        await client.source(10, timeout=5)
        await asyncio.sleep(10)

    cafile = get_pki().files("ca").cert
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run_aioquic_client("127.0.0.1", server.port, cafile, scenario, timeout=1)
    assert time.monotonic() - started < 5


# --- the protocol module itself (no network) ----------------------------------------

CLIENT_BIDI = 0
CLIENT_UNI = 2
SERVER_UNI = 3


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (b"echo", Request(Command.ECHO)),
        (b"sink", Request(Command.SINK)),
        (b"keyupdate", Request(Command.KEYUPDATE)),
        (b"source 0", Request(Command.SOURCE, 0)),
        (b"uni 12", Request(Command.UNI, 12)),
        (b"reset 4660", Request(Command.RESET, 0x1234)),
        (b"stop 7", Request(Command.STOP, 7)),
        (b"close 5", Request(Command.CLOSE, 5)),
        (b"close 5 bye  for now", Request(Command.CLOSE, 5, "bye  for now")),
    ],
)
def test_parse_command(line: bytes, parsed: Request) -> None:
    assert parse_command(line) == parsed


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"bogus",
        b"ECHO",
        b"echo x",
        b"source",
        b"source -1",
        b"source 0x10",
        b"source 1 2",
        b"reset 1 x",
        b"source %d" % (MAX_TRANSFER + 1),
        b"reset %d" % (MAX_NUMBER + 1),
        b"close \xff",
        b"echo\r",
    ],
)
def test_parse_command_rejects(line: bytes) -> None:
    with pytest.raises(CommandError):
        parse_command(line)


@given(
    st.sampled_from(list(Command)),
    st.integers(0, MAX_TRANSFER),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_command_line_round_trip(command: Command, number: int, reason: str) -> None:
    takes_number = command not in {Command.ECHO, Command.SINK, Command.KEYUPDATE}
    reason = reason if command is Command.CLOSE and reason.strip(" ") == reason else ""
    line = command_line(command, number if takes_number else None, reason)
    assert line.endswith(LINE_END)
    assert parse_command(line[:-1]) == Request(command, number if takes_number else 0, reason)


@pytest.mark.parametrize("n", [0, 1, 250, 251, 252, 64_255, 64_256, 64_257, 200_001])
def test_pattern(n: int) -> None:
    expected = bytes(i % 251 for i in range(n))
    assert pattern(n) == expected
    assert b"".join(pattern_chunks(n)) == expected


def feed(session: ServiceSession, stream_id: int, chunks: list[bytes]) -> list[Action]:
    """Feed chunks, the last with FIN; all the actions."""
    actions: list[Action] = []
    for index, chunk in enumerate(chunks):
        actions += session.on_stream_data(stream_id, chunk, index == len(chunks) - 1)
    return actions


def test_session_echo_with_command_split_byte_by_byte() -> None:
    actions = feed(ServiceSession(), CLIENT_BIDI, [b"e", b"c", b"h", b"o", b"\nab", b"c", b""])
    assert actions == [Send(0, b"ab"), Send(0, b"c"), Send(0, b"", True)]


def test_session_sink_and_keyupdate() -> None:
    session = ServiceSession()
    assert feed(session, 4, [b"sink\nhello ", b"world"]) == [
        Send(4, digest_line(sha256_hex(b"hello world")), True)
    ]
    assert feed(session, 8, [b"keyupdate\nx"]) == [KeyUpdate(), Send(8, b"x", True)]


def test_session_commands_without_stream_data() -> None:
    session = ServiceSession()
    assert feed(session, 0, [b"source 3\nignored"]) == [Send(0, pattern(3), True)]
    assert feed(session, 4, [b"uni 2\n"]) == [SendUni(pattern(2)), Send(4, OK_REPLY, True)]
    assert feed(session, 8, [b"reset 9\n"]) == [Reset(8, 9)]
    assert feed(session, 12, [b"stop 10\n", b"more"]) == [Stop(12, 10)]
    assert feed(session, 16, [b"close 11 a reason\n"]) == [Close(11, "a reason")]


def test_session_client_uni_stream_digest() -> None:
    session = ServiceSession()
    assert feed(session, CLIENT_UNI, [b"abc", b"def"]) == [
        SendUni(digest_line(sha256_hex(b"abcdef")))
    ]
    assert session.on_stream_data(SERVER_UNI, b"not ours", True) == []


def test_session_bad_command_lines() -> None:
    session = ServiceSession()
    assert feed(session, 0, [b"echo"]) == [Reset(0, BAD_COMMAND_ERROR)]  # FIN before newline
    assert feed(session, 4, [b"nope\nxyz", b"more"]) == [Reset(4, BAD_COMMAND_ERROR)]
    long_line = b"x" * MAX_COMMAND_LINE
    assert session.on_stream_data(8, long_line, False) == [Reset(8, BAD_COMMAND_ERROR)]
    assert session.on_stream_data(8, b"\n", True) == []
    fits = b"close 1 " + b"r" * (MAX_COMMAND_LINE - 9) + b"\n"
    assert feed(session, 12, [fits[:500], fits[500:]]) == [Close(1, "r" * (MAX_COMMAND_LINE - 9))]


def test_session_stop_sending_and_reset_silence_a_stream() -> None:
    session = ServiceSession()
    assert session.on_stream_data(0, b"echo\nab", False) == [Send(0, b"ab")]
    session.on_stop_sending(0)
    assert session.on_stream_data(0, b"cd", True) == []
    assert session.on_stream_data(4, b"sink\nab", False) == []
    session.on_stop_sending(4)
    assert session.on_stream_data(4, b"cd", True) == []  # no digest reply


def test_digest_line_round_trip() -> None:
    digest = sha256_hex(b"x")
    assert parse_digest_line(digest_line(digest)) == digest
    for bad in (digest.encode(), digest_line(digest)[1:], b"\n"):
        with pytest.raises(CommandError):
            parse_digest_line(bad)


def test_stream_id_bits() -> None:
    assert [is_client_initiated(s) for s in range(4)] == [True, False, True, False]
    assert [is_unidirectional(s) for s in range(4)] == [False, False, True, True]
