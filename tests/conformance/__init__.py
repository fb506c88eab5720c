"""The error-model conformance suite (issue 17): rules E1-E9 and C1-C3 of
docs/error-model.md (as in the product brief), run 4 ways — {blocking, trio} x {udp, tcp}.

Like ``trio.testing.check_half_closeable_stream``, the tests are written once
against a small client interface (:mod:`.adapters`: connect, listen, open /
accept a stream, read, write, close, and N operations at once — threads for
the blocking API, tasks for trio) and a peer the tests control (:mod:`.peers`:
an mstls server behind a 127.0.0.1 relay that can vanish, reset, send a bare
FIN or hand the client to a restarted server).  :mod:`.checks` holds the one
assertion most tests make: every waiter saw the same failure.

* :mod:`.test_causes_of_death` — N = 1, 16, 128 waiters woken by every cause of
  death; the same class, code and queue entries everywhere; listener waiters.
* :mod:`.test_error_rules` — E4-E9 as cases of the same suite.
* :mod:`.test_concurrency` — C1 (lazy handshake raced by a reader and a writer)
  and OpenSSL #24166 (no lost wake-up beside bulk I/O, 3,000 rounds).

Known bugs are marked ``xfail(strict=True, reason=...)`` (none today);
remove the mark once the point is fixed.  Longer runs:
``MSTLS_RACE_ITERATIONS=3000`` (default 500 per API and transport) and
``MSTLS_WAKEUP_ROUNDS`` (default 3000).
"""
