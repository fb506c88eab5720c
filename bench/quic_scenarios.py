"""What :mod:`bench.quic_bulk` measures: its scenarios and the ratios it reports.

Each :class:`~bench.quic_common.Scenario` names a stack (``mstls``, ``mstls-api``,
``aioquic``, ``qh3``), a kind (bulk upload or handshakes) and, for mstls, the build;
each :class:`Ratio` divides one scenario's metric by another's from the same run
(bench/README.md, "Reading the ratios").
"""

from __future__ import annotations

from dataclasses import dataclass

from .quic_common import Scenario

__all__ = ["RATIOS", "SCENARIOS", "Ratio"]

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("aioquic", "aioquic", "bulk", "aioquic"),
    Scenario("mstls", "mstls", "bulk", "mstls"),
    Scenario("mstls-pmtu", "mstls", "bulk", "mstls, path-MTU probing on", pmtu=True),
    Scenario("qh3", "qh3", "bulk", "qh3"),
    Scenario("mstls-compiled", "mstls", "bulk", "mstls compiled (mypyc)", build="compiled"),
    Scenario(
        "mstls-compiled-pmtu",
        "mstls",
        "bulk",
        "mstls compiled, path-MTU on",
        pmtu=True,
        build="compiled",
    ),
    Scenario("mstls-api", "mstls-api", "bulk", "mstls blocking API (pure)"),
    Scenario(
        "mstls-api-compiled", "mstls-api", "bulk", "mstls blocking API, compiled", build="compiled"
    ),
    Scenario("aioquic-hs", "aioquic", "handshake", "aioquic default", group="secp256r1"),
    Scenario(
        "aioquic-hs-x25519",
        "aioquic",
        "handshake",
        "aioquic, client offers x25519",
        groups=("x25519",),
        group="x25519",
    ),
    Scenario("mstls-hs", "mstls", "handshake", "mstls default", group="X25519MLKEM768"),
    Scenario(
        "mstls-hs-x25519",
        "mstls",
        "handshake",
        "mstls, groups=[x25519]",
        groups=("x25519",),
        group="x25519",
    ),
    Scenario(
        "mstls-hs-p256",
        "mstls",
        "handshake",
        "mstls, groups=[secp256r1]",
        groups=("secp256r1",),
        group="secp256r1",
    ),
)


@dataclass(frozen=True)
class Ratio:
    """``metric`` of ``numerator`` divided by the same metric of ``denominator``."""

    key: str
    numerator: str
    denominator: str
    metric: str
    better: str  # "higher" or "lower": which side of 1 favours mstls
    text: str


RATIOS: tuple[Ratio, ...] = (
    Ratio("bulk_throughput", "mstls", "aioquic", "mb_per_s", "higher", "bulk MB/s"),
    Ratio("bulk_throughput_pmtu", "mstls-pmtu", "aioquic", "mb_per_s", "higher", "bulk MB/s, PMTU"),
    Ratio("bulk_throughput_qh3", "mstls", "qh3", "mb_per_s", "higher", "bulk MB/s"),
    Ratio(
        "bulk_throughput_compiled",
        "mstls-compiled",
        "aioquic",
        "mb_per_s",
        "higher",
        "bulk MB/s, compiled",
    ),
    Ratio(
        "bulk_throughput_compiled_qh3",
        "mstls-compiled",
        "qh3",
        "mb_per_s",
        "higher",
        "bulk MB/s, compiled",
    ),
    Ratio(
        "bulk_throughput_compiled_pure",
        "mstls-compiled",
        "mstls",
        "mb_per_s",
        "higher",
        "bulk MB/s, compiled / pure",
    ),
    Ratio(
        "bulk_throughput_compiled_pmtu",
        "mstls-compiled-pmtu",
        "aioquic",
        "mb_per_s",
        "higher",
        "bulk MB/s, PMTU, compiled",
    ),
    Ratio(
        "bulk_throughput_api_compiled",
        "mstls-api-compiled",
        "aioquic",
        "mb_per_s",
        "higher",
        "bulk MB/s, blocking API, compiled",
    ),
    Ratio(
        "bulk_throughput_api_compiled_qh3",
        "mstls-api-compiled",
        "qh3",
        "mb_per_s",
        "higher",
        "bulk MB/s, blocking API, compiled",
    ),
    Ratio(
        "bulk_throughput_api",
        "mstls-api",
        "aioquic",
        "mb_per_s",
        "higher",
        "bulk MB/s, blocking API, pure",
    ),
    Ratio(
        "server_cpu_per_datagram",
        "mstls",
        "aioquic",
        "server_us_per_datagram",
        "lower",
        "server CPU per datagram",
    ),
    Ratio(
        "server_cpu_per_datagram_qh3",
        "mstls",
        "qh3",
        "server_us_per_datagram",
        "lower",
        "server CPU per datagram",
    ),
    Ratio(
        "server_cpu_per_datagram_compiled",
        "mstls-compiled",
        "aioquic",
        "server_us_per_datagram",
        "lower",
        "server CPU per datagram, compiled",
    ),
    Ratio(
        "server_cpu_per_datagram_compiled_pure",
        "mstls-compiled",
        "mstls",
        "server_us_per_datagram",
        "lower",
        "server CPU/datagram, compiled / pure",
    ),
    Ratio(
        "server_cpu_per_byte_pmtu",
        "mstls-pmtu",
        "aioquic",
        "server_ms_per_mib",
        "lower",
        "server CPU per byte, PMTU",
    ),
    Ratio(
        "handshake_cpu_x25519",
        "mstls-hs-x25519",
        "aioquic-hs-x25519",
        "server_ms_per_handshake",
        "lower",
        "server CPU/handshake, x25519 both",
    ),
    Ratio(
        "handshake_cpu_p256",
        "mstls-hs-p256",
        "aioquic-hs",
        "server_ms_per_handshake",
        "lower",
        "server CPU/handshake, secp256r1 both",
    ),
    Ratio(
        "handshake_cpu_defaults",
        "mstls-hs",
        "aioquic-hs",
        "server_ms_per_handshake",
        "lower",
        "server CPU/handshake, defaults",
    ),
)
