"""Each datagram's ECN codepoint out of a ServerEndpoint (RFC 9000 §13.4.2.2):
the runs of :mod:`mstls.core.ecn_runs` and what the endpoint reports in them."""

from __future__ import annotations

from mstls.core.ecn import ECT0, EcnState
from mstls.core.ecn_runs import CodepointRuns, add_run, runs_from, send_segments
from tests.quic.many import Many

A, B = ("127.0.0.1", 1), ("127.0.0.1", 2)


def test_add_run_merges_equal_neighbours_and_skips_empty_ones() -> None:
    runs: CodepointRuns = []
    add_run(runs, 2, ECT0)
    add_run(runs, 5, ECT0)
    add_run(runs, 5, 0)  # no datagram: no run
    add_run(runs, 7, 0)
    assert runs == [(5, ECT0), (7, 0)]


def test_runs_from_renumbers_what_is_left() -> None:
    runs = [(2, 0), (5, ECT0), (7, 0)]
    assert runs_from(runs, 3) == [(2, ECT0), (4, 0)]
    assert runs_from(runs, 5) == [(2, 0)]
    assert runs_from(runs, 7) == []


def test_segments_split_on_address_and_codepoint() -> None:
    out = [(b"1", A), (b"2", A), (b"3", A), (b"4", B), (b"5", B), (b"6", A)]
    runs = [(1, 0), (4, ECT0)]  # the last two: past the runs, Not-ECT
    assert list(send_segments(out, runs)) == [
        (0, 1, A, 0),
        (1, 3, A, ECT0),
        (3, 4, B, ECT0),
        (4, 5, B, 0),
        (5, 6, A, 0),
    ]
    assert list(send_segments(out, None)) == [(0, 3, A, None), (3, 5, B, None), (5, 6, A, None)]


def _codepoints(out: list[tuple[bytes, object]], runs: CodepointRuns) -> list[int]:
    per_datagram: list[int] = []
    for start, end, _, codepoint in send_segments(out, runs):
        per_datagram += [codepoint or 0] * (end - start)
    return per_datagram


def _queue_data(many: Many) -> None:
    for conn in many.endpoint.connections:
        stream = conn.streams.open_stream()
        conn.streams.write(stream, b"x" * 3000, fin=True)
        many.endpoint.touch(conn)


def test_endpoint_names_each_connections_codepoint() -> None:
    many = Many()
    many.endpoint.ecn_marking = True
    many.connect(3)
    endpoint = many.endpoint
    failed, capable, testing = endpoint.connections
    failed.recovery.ecn.state = EcnState.FAILED
    capable.recovery.ecn.state = EcnState.CAPABLE
    testing.recovery.ecn = type(testing.recovery.ecn)()  # a fresh path: testing again
    _queue_data(many)
    # An unknown version: a Version Negotiation packet, a stateless answer (§6.1).
    unknown = bytes([0xC0]) + b"\x1a\x2a\x3a\x4a" + b"\x08" + b"d" * 8 + b"\x08" + b"s" * 8
    endpoint.receive_datagram(unknown.ljust(1200, b"\0"), ("127.0.0.3", 9), many.now)
    out = endpoint.datagrams_to_send(many.now)
    expected = {failed.peer_address: 0, capable.peer_address: ECT0, testing.peer_address: ECT0}
    assert out[0][1] == ("127.0.0.3", 9)
    assert _codepoints(out, endpoint.send_codepoints) == [
        0,
        *(expected[addr] for _, addr in out[1:]),
    ]
    assert set(expected) <= {addr for _, addr in out}


def test_endpoint_without_marking_reports_no_runs() -> None:
    many = Many()
    many.connect(2)
    _queue_data(many)
    assert many.endpoint.datagrams_to_send(many.now)
    assert many.endpoint.send_codepoints == []
