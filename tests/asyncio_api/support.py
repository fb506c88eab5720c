"""Shared pieces of the asyncio API tests: a loop runner (asyncio, uvloop) and an echo server.

pytest runs ``async def`` tests under trio here (``trio_mode``), so these tests are
plain functions that run their coroutine with :func:`run`.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

import mstls
import mstls.asyncio
from mstls import errors
from tests.api.helpers import client_config, server_config

T = TypeVar("T")
TIMEOUT = 10.0
TRANSPORTS = ["udp", "tcp"]

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
#: Event loops the smoke subset runs on: asyncio's own, and uvloop if installed.
LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed")
    ),
]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop  # noqa: PLC0415

        return uvloop.new_event_loop
    return None


def run(main: Callable[[], Coroutine[Any, Any, T]], loop: str = "asyncio") -> T:
    """Run ``main()`` in a fresh event loop of kind ``loop`` (with a time limit)."""

    async def limited() -> T:
        async with asyncio.timeout(60):
            return await main()

    errors.clear_error()
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        result = runner.run(limited())
    # The driver's callbacks run outside any task, as the loop thread: whatever they
    # met went onto a channel or into a task's queue, never into the thread's (E1).
    assert errors.errors() == [], errors.errors()
    return result


async def echo_handler(conn: mstls.asyncio.Connection) -> None:
    """Echo every stream until its FIN, then FIN."""

    async def echo(stream: mstls.asyncio.Stream) -> None:
        try:
            while data := await stream.read(65536):
                stream.write(data)
                await stream.drain()
            stream.write_eof()
            await stream.wait_closed()
        except mstls.Error:
            pass

    tasks = set()
    try:
        while True:
            stream = await conn.accept_stream()
            task = asyncio.ensure_future(echo(stream))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except mstls.Error:
        pass


@asynccontextmanager
async def echo_server(transport: str, **config: Any) -> AsyncIterator[mstls.asyncio.Listener]:
    listener = await mstls.asyncio.serve(
        "127.0.0.1", 0, server_config(**config), echo_handler, transport=transport
    )
    try:
        yield listener
    finally:
        await listener.aclose()


async def connect(port: int, transport: str, **config: Any) -> mstls.asyncio.Connection:
    return await mstls.asyncio.connect(
        "127.0.0.1", port, client_config(**config), transport=transport, timeout=TIMEOUT
    )
