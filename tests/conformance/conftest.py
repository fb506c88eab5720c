"""Fixtures of the conformance suite: the API under test and a client factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from mstls import errors

from .adapters import APIS, Client, make_client

MakeClient = Callable[[str], Client]


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> str:
    """``blocking`` or ``trio``: every conformance test runs with both APIs."""
    return str(request.param)


@pytest.fixture
def make(api: str) -> Iterator[MakeClient]:
    """``make(transport)``: a client of the API under test, shut down after the test."""
    clients: list[Client] = []

    def factory(transport: str) -> Client:
        client = make_client(api, transport)
        clients.append(client)
        return client

    errors.clear_error()
    yield factory
    for client in clients:
        client.shutdown()
