"""The printed report of :mod:`bench.quic_bulk`: its tables and ratios, from the JSON
document :func:`bench.quic_bulk.run_bench` returns (split out so that the runner
holds only what runs and measures)."""

from __future__ import annotations

from typing import Any

from .quic_common import MIB

__all__ = ["format_report"]


def format_report(document: dict[str, Any]) -> str:
    """The tables and ratios, as printed."""
    settings = document["settings"]
    lines = [
        f"QUIC over 127.0.0.1, {document['environment']['cpus']} CPUs, "
        f"Python {document['environment']['python']}, "
        f"aioquic {document['environment']['aioquic']}, "
        f"qh3 {document['environment']['qh3'] or '-'}, "
        f"mstls {document['environment']['mstls_commit'] or '(not a git checkout)'}",
        f"flow control (both stacks): connection {settings['connection_window'] // MIB} MiB, "
        f"stream {settings['stream_window'] // MIB} MiB; median of {settings['runs']} run(s)",
    ]
    load = document["environment"]["load_average_before"]
    if load is not None:
        lines.append(
            f"load average before the run: {load[0]:.2f} (1 min); "
            "other busy processes take cores from the server or the client"
        )
    bulk = [r for r in document["results"] if r["kind"] == "bulk"]
    if bulk:
        lines += [
            "",
            f"Bulk upload: {settings['size'] / MIB:g} MiB on one stream, "
            f"datagrams {settings['datagram']} bytes unless PMTU probing",
            f"{'scenario':<30}{'MB/s':>8}{'best':>8}{'srv µs/dgram':>14}{'srv ms/MiB':>12}"
            f"{'dgram B':>9}{'srv CPU':>9}{'cli CPU':>9}{'acks/dgram':>12}{'lost':>7}",
        ]
        for result in bulk:
            s = result["summary"]
            lines.append(
                f"{result['label']:<30}{s['mb_per_s']:>8.1f}{s['best_mb_per_s']:>8.1f}"
                f"{s['server_us_per_datagram']:>14.1f}{s['server_ms_per_mib']:>12.2f}"
                f"{s['mean_datagram_bytes']:>9.0f}{s['server_busy']:>9.0%}"
                f"{s['client_busy']:>9.0%}"
                f"{s['client_datagrams_received'] / s['server_datagrams']:>12.3f}"
                f"{1 - s['server_datagrams'] / s['client_datagrams_sent']:>7.1%}"
            )
    handshakes = [r for r in document["results"] if r["kind"] == "handshake"]
    if handshakes:
        lines += [
            "",
            f"Handshakes: {settings['handshakes']} per run, ECDSA P-256 certificate",
            f"{'scenario':<34}{'group (server)':<18}{'srv CPU ms/hs':>14}{'client ms/hs':>14}",
        ]
        for result in handshakes:
            s = result["summary"]
            group = ",".join(s["groups"]) or result["group"]
            lines.append(
                f"{result['label']:<34}{group:<18}{s['server_ms_per_handshake']:>14.2f}"
                f"{s['client_ms_per_handshake']:>14.2f}"
            )
    if document["ratios"]:
        lines += ["", "Ratios mstls / aioquic, / qh3, compiled / pure:"]
        for ratio in document["ratios"]:
            good = ratio["value"] > 1 if ratio["better"] == "higher" else ratio["value"] < 1
            pair = f"{ratio['numerator']} / {ratio['denominator']}"
            lines.append(
                f"  {ratio['text']:<38}{pair:<32}{ratio['value']:>7.2f}x  "
                f"({ratio['better']} is better: "
                f"{ratio['numerator'] if good else ratio['denominator']} ahead)"
            )
    for name, reason in document.get("skipped", {}).items():
        lines.append(f"skipped {name}: {reason}")
    return "\n".join(lines)
