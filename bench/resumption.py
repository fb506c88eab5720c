"""TLS 1.3 handshake cost, full against resumed: mstls against OpenSSL (Python's ``ssl``).

Run from the repository root: ``python -m bench.resumption`` (``--help``).

Theory of operation
-------------------
Resumption (RFC 8446 §2.2) saves the server its certificate signature and the
client its chain verification.  This bench measures how much, for each stack in
the same run: each stack's client and server are joined in memory (mstls'
sans-I/O :class:`~mstls.tls.tcp.TLSConnection`; ``ssl.SSLObject`` over
``MemoryBIO`` for OpenSSL), ``--handshakes`` full handshakes run one after
another, then as many resumed ones (each offering the ticket of the previous
handshake).  Only the server's calls are timed (``time.perf_counter``), so the
figure is server CPU per handshake on a quiet machine; for mstls the rest of
each handshake (the client's share, chain verification included) is printed too.
Both use ECDSA P-256 certificates and x25519 (OpenSSL 3.0 has no hybrid group; mstls is limited to
x25519 for a like comparison).
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mstls.devcerts import write_dev_pki
from mstls.tls.cert_files import load_cert_chain, load_roots
from mstls.tls.config import TLSConfig
from mstls.tls.groups import NamedGroup
from mstls.tls.tcp import TLSConnection
from mstls.tls.ticket_store import MemoryTicketStore
from mstls.tls.tickets import TicketKeyRing

ALPN = "mstls-bench"
#: Bound on pump rounds per handshake, so a bug ends the run instead of hanging it.
MAX_ROUNDS = 50


def _mstls_handshake(
    client_config: TLSConfig, server_config: TLSConfig
) -> tuple[float, float, bool]:
    """One handshake (and the tickets after it): server and client seconds, whether
    it resumed."""
    begin = time.perf_counter()
    client = TLSConnection(client_config, is_client=True)
    server = TLSConnection(server_config, is_client=False)
    client.start()
    spent = 0.0
    for _ in range(MAX_ROUNDS):
        to_server = client.data_to_send()
        start = time.perf_counter()
        if to_server:
            server.receive_data(to_server)
        to_client = server.data_to_send()
        spent += time.perf_counter() - start
        if not to_server and not to_client:
            break
        if to_client:
            client.receive_data(to_client)
    assert client.handshake_complete and server.handshake_complete
    return spent, time.perf_counter() - begin - spent, server.handshake.resumed


def _openssl_handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, session: ssl.SSLSession | None
) -> tuple[float, bool, ssl.SSLSession | None]:
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost", session=session)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    spent = 0.0
    for _ in range(MAX_ROUNDS):
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        data = c_out.read()
        start = time.perf_counter()
        if data:
            s_in.write(data)
        try:
            server.do_handshake()
            server.write(b"x")  # after the handshake: flushes the tickets too
        except ssl.SSLWantReadError:
            pass
        reply = s_out.read()
        spent += time.perf_counter() - start
        if reply:
            c_in.write(reply)
        if not data and not reply:
            break
    client.read(1)  # reads the tickets that came before the byte
    return spent, server.session_reused, client.session


def _mstls_run(pki: Path, handshakes: int) -> dict[str, float]:
    chain, key = load_cert_chain(pki / "server.pem", pki / "server.key")
    roots = load_roots(pki / "ca.pem", use_system=False)
    store = MemoryTicketStore()
    groups = [NamedGroup.x25519]
    client = TLSConfig(
        alpn_protocols=[ALPN], server_name="localhost", trusted_roots=roots, groups=groups
    )
    resuming = TLSConfig(
        alpn_protocols=[ALPN],
        server_name="localhost",
        trusted_roots=roots,
        groups=groups,
        ticket_store=store,
    )
    server = TLSConfig(
        alpn_protocols=[ALPN],
        certificate_chain=chain,
        private_key=key,
        groups=groups,
        ticket_keys=TicketKeyRing.generate(),
        session_tickets=1,
    )
    full = [_mstls_handshake(client, server) for _ in range(handshakes)]
    _mstls_handshake(resuming, server)  # the first ticket
    resumed = []
    for _ in range(handshakes):
        row = _mstls_handshake(resuming, server)
        assert row[2]
        resumed.append(row)
    return {
        "full": statistics.median(r[0] for r in full),
        "resumed": statistics.median(r[0] for r in resumed),
        "client_full": statistics.median(r[1] for r in full),
        "client_resumed": statistics.median(r[1] for r in resumed),
    }


def _openssl_run(pki: Path, handshakes: int) -> dict[str, float]:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    server_ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    server_ctx.set_alpn_protocols([ALPN])
    server_ctx.num_tickets = 1
    client_ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    client_ctx.set_alpn_protocols([ALPN])
    full = [_openssl_handshake(client_ctx, server_ctx, None)[0] for _ in range(handshakes)]
    session = _openssl_handshake(client_ctx, server_ctx, None)[2]
    resumed = []
    for _ in range(handshakes):
        spent, reused, session = _openssl_handshake(client_ctx, server_ctx, session)
        assert reused
        resumed.append(spent)
    return {"full": statistics.median(full), "resumed": statistics.median(resumed)}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=100, help="per kind (default 100)")
    args = parser.parse_args(argv)
    runs: dict[str, Callable[[Path, int], dict[str, float]]] = {
        "mstls": _mstls_run,
        "openssl": _openssl_run,
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_dev_pki(Path(tmp))
        pki = Path(paths.directory)
        for name, run in runs.items():
            results[name] = run(pki, args.handshakes)
    print(f"server CPU per handshake, median of {args.handshakes} (ms):")
    print(f"{'stack':10} {'full':>8} {'resumed':>8} {'full/resumed':>13}")
    for name, row in results.items():
        ratio = row["full"] / row["resumed"]
        print(f"{name:10} {row['full'] * 1e3:8.3f} {row['resumed'] * 1e3:8.3f} {ratio:13.2f}")
    mstls, openssl = results["mstls"], results["openssl"]
    print(f"mstls client (whole handshake minus server): full {mstls['client_full'] * 1e3:.3f} ms, "
          f"resumed {mstls['client_resumed'] * 1e3:.3f} ms, "
          f"ratio {mstls['client_full'] / mstls['client_resumed']:.2f}")  # fmt: skip
    print(f"mstls/openssl: full {mstls['full'] / openssl['full']:.2f}, "
          f"resumed {mstls['resumed'] / openssl['resumed']:.2f}")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
