"""The progress bar of ``mstls send`` and ``mstls recv``: sizes and rate in IEC binary units.

tqdm's own ``unit_scale`` writes SI prefixes (``M``) even with ``unit_divisor=1024``,
so a bar counting 2^20 bytes showed "MB" (issue 13).  Here every figure divides by
powers of 1024 and says so (KiB, MiB, GiB: IEC 80000-13).
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

__all__ = ["BAR_FORMAT", "ProgressBar", "iec_bytes", "progress_bar"]

#: IEC binary prefixes, one per power of 1024.
IEC_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
IEC_STEP = 1024
BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_iec}/{total_iec} [{elapsed}<{remaining}, {rate_iec}]"
)


def iec_bytes(count: float) -> str:
    """``count`` bytes with a binary prefix: ``1536`` -> ``1.50 KiB``."""
    value = float(count)
    for unit in IEC_UNITS[:-1]:
        if abs(value) < IEC_STEP:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= IEC_STEP
    return f"{value:.2f} {IEC_UNITS[-1]}"


class ProgressBar(tqdm):  # type: ignore[misc]
    """A tqdm bar whose sizes (``n_iec``, ``total_iec``) and rate (``rate_iec``) are IEC."""

    @property
    def format_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = super().format_dict
        n, total, elapsed = values["n"], values["total"], values["elapsed"]
        rate = values["rate"]
        if rate is None and elapsed:
            rate = (n - values.get("initial", 0)) / elapsed
        values["n_iec"] = iec_bytes(n)
        values["total_iec"] = "?" if total is None else iec_bytes(total)
        values["rate_iec"] = "?/s" if not rate else f"{iec_bytes(rate)}/s"
        return values


def progress_bar(total: int | None, label: str, quiet: bool) -> Any:
    """A bar on standard error for ``total`` bytes (disabled when ``quiet``)."""
    return ProgressBar(
        total=total,
        unit="B",
        desc=label,
        file=sys.stderr,
        disable=quiet,
        leave=True,
        bar_format=BAR_FORMAT,
    )
