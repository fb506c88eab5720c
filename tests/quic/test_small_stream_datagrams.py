"""Small request/response streams cost one datagram each way (issue 11; RFC 9000
§13.2: ACKs ride on the next ack-eliciting packet; §19.8: data and FIN in one frame).

On the in-memory pair, counted: the client's request (data, FIN and the ACK of
the previous answer) leaves in one datagram, the server's answer in one.  Data
written and the end requested by a second call, before the output is pulled,
still make a single STREAM frame with the FIN bit.
"""

from __future__ import annotations

import pytest

from mstls.core.recovery import PacketNumberSpace
from mstls.core.send_stream import SendStream
from tests.quic.pair import Pair, client_config, server_config

STREAMS = 50
SIZE = 1024


def _pair(latency: float) -> Pair:
    pair = Pair(
        client=client_config(pmtu_discovery=False),
        server=server_config(pmtu_discovery=False),
        latency=latency,
    )
    pair.handshake()
    pair.run_until(lambda: not pair.in_flight)  # handshake leftovers delivered
    return pair


def _counting(pair: Pair) -> dict[bool, int]:
    counts = {True: 0, False: 0}
    send = pair._send

    def counted(data: bytes, to_server: bool, address: object = None) -> None:
        counts[to_server] += 1
        send(data, to_server, address)

    pair._send = counted  # type: ignore[method-assign]
    return counts


def _exchange(pair: Pair, request: bytes, answer: bytes, *, separate_fin: bool) -> None:
    client, server = pair.client, pair.server
    sid = client.streams.open_stream()
    if separate_fin:
        client.streams.write(sid, request)
        client.streams.write(sid, b"", fin=True)
    else:
        client.streams.write(sid, request, fin=True)
    got = bytearray()
    state = {"answered": False, "done": False}

    def done() -> bool:
        if not state["answered"] and server.streams.get_stream(sid) is not None:
            data, fin = server.streams.read(sid, 1 << 16)
            assert not data or bytes(data) == request
            if fin:
                server.streams.write(sid, answer, fin=True)
                pair.endpoint.touch(server)  # what the drivers do after an app call
                state["answered"] = True
        if state["answered"]:
            data, fin = client.streams.read(sid, 1 << 16)
            got.extend(data)
            state["done"] = fin
        return state["done"]

    pair.run_until(done, max_time=5)
    assert bytes(got) == answer


@pytest.mark.parametrize("latency", [0.0, 0.005])
@pytest.mark.parametrize("separate_fin", [False, True])
def test_one_datagram_each_way_per_stream(latency: float, separate_fin: bool) -> None:
    pair = _pair(latency)
    _exchange(pair, b"w" * SIZE, b"a" * SIZE, separate_fin=separate_fin)  # warm-up
    counts = _counting(pair)
    for index in range(STREAMS):
        _exchange(
            pair, bytes([index]) * SIZE, bytes([255 - index]) * SIZE, separate_fin=separate_fin
        )
    assert counts[True] == STREAMS, counts  # request data + FIN + ACK of the last answer
    assert counts[False] == STREAMS, counts  # answer data + FIN + ACK of the request


def test_data_then_fin_before_the_pull_is_one_stream_frame() -> None:
    pair = _pair(0.0)
    client = pair.client
    sid = client.streams.open_stream()
    client.streams.write(sid, b"q" * SIZE)
    client.streams.write(sid, b"", fin=True)
    datagrams = client.datagrams_to_send(pair.now)
    assert len(datagrams) == 1
    sent = client.recovery._spaces[PacketNumberSpace.APPLICATION].sent
    packet = sent[max(sent)]
    # The STREAM frames' records: (on_acked, on_lost, (offset, length, fin, listener)).
    stream_frames = [
        args[:3]
        for on_acked, _, args in packet.records
        if isinstance(getattr(on_acked, "__self__", None), SendStream)
    ]
    assert stream_frames == [(0, SIZE, True)]
