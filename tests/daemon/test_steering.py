"""The reuseport steering program sends each datagram to the worker its DCID names."""

from __future__ import annotations

import socket
import sys

import pytest

from mstlsd.steering import attach_steering, steering_program

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(sys.platform != "linux", reason="SO_ATTACH_REUSEPORT_CBPF is Linux"),
]

WORKERS = 3


def long_header(server_id: int) -> bytes:
    dcid = bytes((0x0C, server_id)) + bytes(11)
    return bytes((0xC0,)) + (1).to_bytes(4, "big") + bytes((len(dcid),)) + dcid + bytes(40)


def short_header(server_id: int) -> bytes:
    return bytes((0x40, 0x0C, server_id)) + bytes(40)


def test_datagrams_reach_the_worker_their_dcid_names() -> None:
    group = []
    for _ in range(WORKERS):  # bound in order: socket index == worker index
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", group[0].getsockname()[1] if group else 0))
        sock.settimeout(2)
        group.append(sock)
    attach_steering(group[0], WORKERS)
    port = group[0].getsockname()[1]
    try:
        for make in (long_header, short_header):
            for sender_port in range(5):  # several source ports: the 4-tuple does not matter
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    for server_id in range(2 * WORKERS):
                        datagram = make(server_id)
                        client.sendto(datagram, ("127.0.0.1", port))
                        data = group[server_id % WORKERS].recv(2048)
                        assert data == datagram, (make.__name__, sender_port, server_id)
        for sock in group:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(2048)  # nothing went anywhere else
    finally:
        for sock in group:
            sock.close()


def test_program_bounds() -> None:
    assert steering_program(2)[-2] == (0x94, 0, 0, 2)
    assert [insn[3] for insn in steering_program(2, worker_byte=1)[2:5:2]] == [8, 3]
    with pytest.raises(ValueError):
        steering_program(0)
