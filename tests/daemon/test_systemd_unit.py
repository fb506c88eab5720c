"""The shipped systemd unit (configs/mstlsd.service) keeps its sandbox (issue 13).

The directives are read from the unit file as systemd parses it (``Key=value``
lines of the ``[Service]`` section; a key may repeat).  Where ``systemd-analyze``
is installed, its offline security review must also rate the unit OK.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "configs" / "mstlsd.service"
#: Highest acceptable overall exposure in ``systemd-analyze security`` (below 2.0: "OK").
MAX_EXPOSURE = 2.0


def service_section(text: str) -> dict[str, list[str]]:
    """The ``[Service]`` directives: key → every value given, in order."""
    section = ""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


REQUIRED = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "StateDirectory": "mstlsd",
}


def test_unit_has_the_sandboxing_directives() -> None:
    service = service_section(UNIT.read_text())
    for key, value in REQUIRED.items():
        assert service.get(key, [None])[-1] == value, key
    assert service["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in service["SystemCallFilter"]
    # No capabilities unless a port below 1024 is bound (then CAP_NET_BIND_SERVICE only).
    assert service["CapabilityBoundingSet"][-1] in ("", "CAP_NET_BIND_SERVICE")
    assert service["Environment"] == ["MSTLSD_STATE_DIR=/var/lib/mstlsd"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_exposure_is_ok() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) < MAX_EXPOSURE
