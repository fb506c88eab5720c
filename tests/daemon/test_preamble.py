"""The stream preamble: encoding, parsing of untrusted bytes, reading from a stream, codes."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from mstlsd.preamble import (
    MAX_PREAMBLE,
    ConnectionCode,
    PreambleError,
    PrefixedStream,
    StreamCode,
    describe_code,
    encode_preamble,
    parse_preamble,
    read_preamble,
)

NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
    min_size=1,
    max_size=MAX_PREAMBLE - 1,
)


@given(NAMES, st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_round_trip(name: str, rest: bytes) -> None:
    assert parse_preamble(encode_preamble(name) + rest) == (name, rest)


@given(st.binary(max_size=600))
@settings(max_examples=500, deadline=None)
def test_untrusted_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    try:
        result = parse_preamble(data)
    except PreambleError as exc:
        assert exc.code is StreamCode.BAD_PREAMBLE
        return
    if result is None:  # needs more bytes: only while shorter than the limit
        assert b"\n" not in data[:MAX_PREAMBLE] and len(data) < MAX_PREAMBLE
    else:
        assert data.startswith(result[0].encode() + b"\n")


def test_limits() -> None:
    longest = "a" * (MAX_PREAMBLE - 1)
    assert parse_preamble(encode_preamble(longest)) == (longest, b"")
    with pytest.raises(ValueError):
        encode_preamble(longest + "a")
    with pytest.raises(PreambleError, match="no newline"):
        parse_preamble(b"a" * MAX_PREAMBLE)
    assert parse_preamble(b"a" * (MAX_PREAMBLE - 1)) is None
    for bad in (b"\n", b"a b\n", b"caf\xc3\xa9\n", b"x/y\n"):
        with pytest.raises(PreambleError, match="malformed"):
            parse_preamble(bad)


def test_codes_are_stable() -> None:
    # Documented in the README: changing a value breaks deployed clients.
    assert {c.name: c.value for c in StreamCode} == {
        "NO_ERROR": 0x0,
        "UNKNOWN_SERVICE": 0x100,
        "NOT_AUTHORISED": 0x101,
        "BACKEND_REFUSED": 0x102,
        "BAD_PREAMBLE": 0x103,
        "BACKEND_FAILED": 0x104,
        "TOO_MANY_STREAMS": 0x105,
        "HANDLER_FAILED": 0x106,
        "SHUTTING_DOWN": 0x107,
        "UNSUPPORTED_STREAM": 0x108,
    }
    assert ConnectionCode.SERVER_SHUTDOWN == 0x200
    assert ConnectionCode.TOO_MANY_CONNECTIONS == 0x201
    assert describe_code(0x102) == "0x102 BACKEND_REFUSED"
    assert describe_code(0x201) == "0x201 TOO_MANY_CONNECTIONS"
    assert describe_code(0x999) == "0x999"


async def test_read_preamble_split_and_prefix() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def write() -> None:
            for piece in (b"ec", b"ho\nfirst ", b"second"):
                await client.send_all(piece)
                await trio.sleep(0.01)
            await client.send_eof()

        nursery.start_soon(write)
        name, rest = await read_preamble(server)
        assert name == "echo"
        wrapped = PrefixedStream(server, rest)
        data = b""
        while chunk := await wrapped.receive_some(4):
            assert len(chunk) <= 4
            data += chunk
    assert data == b"first second"


async def test_read_preamble_end_before_newline() -> None:
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(b"echo")
    await client.send_eof()
    with pytest.raises(PreambleError, match="ended"):
        await read_preamble(server)
