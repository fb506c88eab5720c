"""A listener marks per connection (RFC 9000 §13.4.2.2): on one blocking listener,
a connection whose ECN validation failed sends Not-ECT while a validated one
keeps ECT(0), as read from the TOS byte of what each client socket receives."""

from __future__ import annotations

import sys

import pytest

from tests.api.helpers import server
from tests.helpers.ecn_echo_client import check_marking_per_connection

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(sys.platform != "linux", reason="IP_RECVTOS is Linux's"),
]


def test_blocking_listener_marks_each_connection_as_its_validation_says() -> None:
    with server() as (listener, _):
        check_marking_per_connection(listener.address[1])
