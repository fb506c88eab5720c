"""A smoke subset of the conformance suite over mstls.asyncio on uvloop (issue 14):
16 waiters woken by a peer's close and by our own, on both transports."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from mstls import errors

from .adapters import Client, make_client
from .conftest import MakeClient
from .test_causes_of_death import BOTH, die

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop not installed"
)


@pytest.fixture
def make_uvloop() -> Iterator[MakeClient]:
    clients: list[Client] = []

    def factory(transport: str) -> Client:
        client = make_client("asyncio-uvloop", transport)
        clients.append(client)
        return client

    errors.clear_error()
    yield factory
    for client in clients:
        client.shutdown()


@pytest.mark.parametrize("transport", BOTH)
@pytest.mark.parametrize("cause", ["peer_close", "local_close"])
def test_uvloop_waiters_see_the_same_death(
    make_uvloop: MakeClient, transport: str, cause: str
) -> None:
    die(make_uvloop, transport, cause, 16)
