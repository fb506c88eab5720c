"""Objects the cyclic garbage collector tracks per idle QUIC connection (issue 11).

A full collection scans every tracked object: with 10,000 connections open each
object a connection keeps costs a pause on every full collection (about 30 ms at
513 objects per client/server pair, issue 11's echo p99).  Per-connection tables of
bound methods and closures made up a quarter of them; this bound catches their
return or any other per-connection growth.
"""

from __future__ import annotations

import gc

from tests.quic.many import Many

#: Tracked objects one idle client/server pair may add (387 measured; 513 before the
#: bound-method tables and record closures were removed).
MAX_TRACKED_PER_PAIR = 420
PAIRS = 50


def test_an_idle_connection_pair_adds_few_tracked_objects() -> None:
    many = Many()
    for _ in range(5):
        many.add_client()
    many.run_for(2.0)  # module caches, first tickets, the endpoint's tables warmed up
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(PAIRS):
        many.add_client()
    many.run_for(3.0)
    assert len(many.endpoint.connections) == 5 + PAIRS
    gc.collect()
    per_pair = (len(gc.get_objects()) - before) / PAIRS
    assert per_pair <= MAX_TRACKED_PER_PAIR, per_pair
