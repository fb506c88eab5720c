"""Configuration: every problem names the file, the key and the problem, before binding."""

from __future__ import annotations

import datetime
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mstls.devcerts import make_server_cert
from mstlsd.certs import check_certificates
from mstlsd.config import ConfigError, default_config, load_config
from tests.certs import TestPKI
from tests.daemon.support import ROOT, env_for, free_port

MINIMAL = """
[[listeners]]
transport = "udp"
port = {port}

[services.echo]
type = "echo"
"""


def write(tmp_path: Path, text: str, name: str = "mstlsd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_embedded_default() -> None:
    config = default_config()
    assert [(s.transport, s.host, s.port) for s in config.listeners] == [
        ("udp", "127.0.0.1", 4433),
        ("tcp", "127.0.0.1", 4433),
    ]
    assert sorted(config.services) == ["discard", "echo"]
    assert config.tls.development and config.tls.alpn == ("mstls",)


def test_example_configs_load(tmp_path: Path, pki: TestPKI) -> None:
    # The shipped examples are valid apart from certificate paths.
    for example in sorted((ROOT / "configs").glob("*.toml")):
        text = example.read_text()
        for name, path in (
            ("/etc/mstlsd/server.pem", pki.files("server").cert),
            ("/etc/mstlsd/server.key", pki.files("server").key),
            ("/etc/mstlsd/clients-ca.pem", pki.files("ca").cert),
        ):
            text = text.replace(name, str(path))
        config = load_config(write(tmp_path, text, example.name))
        assert config.services, example


def test_full_config(tmp_path: Path, pki: TestPKI) -> None:
    server = pki.files("server")
    path = write(
        tmp_path,
        f"""
state_dir = "state"
[[listeners]]
transport = "udp"
host = "::1"
port = 5000
[[listeners]]
transport = "tcp"
port = 5000
[tls]
certfile = "{server.cert}"
keyfile = "{server.key}"
client_cafile = "{pki.files("ca").cert}"
require_client_cert = true
[limits]
max_connections = 10
idle_timeout = 5
retry = true
[logging]
format = "json"
[metrics]
address = "127.0.0.1:9100"
[services.web]
type = "forward"
target = "[::1]:8080"
allow = ["dns:client.example", "*"]
[services.hello]
type = "python"
handler = "tests.daemon.handlers:greet"
""",
    )
    config = load_config(path)
    assert config.state_dir == tmp_path / "state"
    assert config.listeners[0].host == "::1"
    assert config.tls.require_client_cert
    assert config.limits.max_connections == 10 and config.limits.idle_timeout == 5.0
    assert config.limits.retry
    assert config.metrics_address == ("127.0.0.1", 9100)
    assert config.services["web"].target == ("::1", 8080)
    assert config.services["hello"].handler is not None


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("listners = 1", "listners", "unknown key"),
        ("[limits]\nmax_connections = -1", "limits.max_connections", "positive integer"),
        ("[limits]\nmax_connections = true", "limits.max_connections", "positive integer"),
        ('[limits]\nidle_timeout = "30s"', "limits.idle_timeout", "positive number"),
        ("[limits]\nmax_conections = 3", "limits.max_conections", "unknown key"),
        ('[logging]\nformat = "xml"', "logging.format", "one of"),
        ('[tls]\ncertfile = "missing.pem"\nkeyfile = "k"', "tls.certfile", "no such file"),
        ('[metrics]\naddress = "nowhere"', "metrics.address", "HOST:PORT"),
        ("[observability]\nqlog_dir = 3", "observability.qlog_dir", "non-empty string"),
        ('[observability]\nqlog_dir = "mstlsd.toml"', "observability.qlog_dir", "not a directory"),
        ('[observability]\nqlogdir = "q"', "observability.qlogdir", "unknown key"),
        ('[services.x]\ntype = "teleport"', "services.x.type", "one of"),
        ('[services.x]\ntype = "forward"', "services.x.target", "missing"),
        ('[services.x]\ntype = "echo"\ntarget = "a:1"', "services.x.target", "not allowed"),
        ('[services.x]\ntype = "echo"\nallow = ["uri:x"]', "services.x.allow", "prefix"),
        (
            '[services.x]\ntype = "python"\nhandler = "nomodule_zz:f"',
            "services.x.handler",
            "cannot import",
        ),
        (
            '[services.x]\ntype = "python"\nhandler = "tests.daemon.handlers:nope"',
            "services.x.handler",
            "no attribute",
        ),
        (
            '[services.x]\ntype = "python"\nhandler = "tests.daemon.handlers:not_async"',
            "services.x.handler",
            "async function",
        ),
        ('[services."a b"]\ntype = "echo"', "services.a b", "bad service name"),
    ],
)
def test_errors_name_file_key_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    base = MINIMAL.format(port=4433)
    # Sections named in ``text`` replace the minimal ones so each case has one problem.
    if text.startswith("[services."):
        base = base.split("[services.echo]")[0]
    # A bare key must come before the tables, or TOML puts it inside the last one.
    document = text + "\n" + base if not text.startswith("[") else base + "\n" + text + "\n"
    path = write(tmp_path, document)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message


def test_missing_sections_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="listeners: missing"):
        load_config(write(tmp_path, "[services.echo]\ntype='echo'\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[[listeners]\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    dup = MINIMAL.format(port=1) + '[[listeners]]\ntransport = "udp"\nport = 1\n'
    with pytest.raises(ConfigError, match=r"listeners\[1\]: duplicate listener udp"):
        load_config(write(tmp_path, dup))


def _mstlsd(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mstlsd", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env_for(state_dir),
        cwd=ROOT,
        check=False,
    )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.network
@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[limits]\nmax_streams_per_connection = "many"', "limits.max_streams_per_connection"),
        ('[tls]\ncertfile = "nope.pem"\nkeyfile = "nope.key"', "tls.certfile"),
    ],
)
def test_mstlsd_exits_2_before_binding(tmp_path: Path, extra: str, key: str) -> None:
    port = free_port()
    path = write(tmp_path, MINIMAL.format(port=port) + "\n" + extra + "\n")
    result = _mstlsd("--config", str(path), state_dir=tmp_path / "state")
    assert result.returncode == 2, result.stderr
    assert f"{path}: {key}: " in result.stderr
    assert result.stderr.count("\n") == 1  # one clear line, no traceback
    assert "listening" not in result.stderr and _port_is_free(port)


@pytest.mark.network
def test_mstlsd_check_and_bad_key_file(tmp_path: Path, pki: TestPKI) -> None:
    state = tmp_path / "state"
    result = _mstlsd("--check", state_dir=state)
    assert result.returncode == 0, result.stderr
    assert "configuration OK: <embedded default>" in result.stdout
    assert f"state directory: {state} (absent: created on the first start)" in result.stdout
    assert not state.exists()  # --check writes nothing: no development PKI, no keys
    # A key that does not belong to the certificate: one message naming [tls].
    mismatched = MINIMAL.format(port=free_port()) + (
        f'[tls]\ncertfile = "{pki.files("server").cert}"\nkeyfile = "{pki.files("client").key}"\n'
    )
    result = _mstlsd("--config", str(write(tmp_path, mismatched)), state_dir=state)
    assert result.returncode == 2
    assert f"{tmp_path / 'mstlsd.toml'}: tls: " in result.stderr, result.stderr


def _tls_config(tmp_path: Path, pki: TestPKI, server: str, cafile: Path | None = None) -> Path:
    files = pki.files(server)
    tls = f'[tls]\ncertfile = "{files.cert}"\nkeyfile = "{files.key}"\n'
    if cafile is not None:
        tls += f'client_cafile = "{cafile}"\n'
    return write(tmp_path, MINIMAL.format(port=free_port()) + tls)


def _not_yet_valid(tmp_path: Path, pki: TestPKI) -> Path:
    """A server certificate valid from tomorrow (written beside the session PKI's files)."""
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    future = make_server_cert(pki.ca, not_before=start, not_after=start + datetime.timedelta(1))
    cert, key = tmp_path / "future.pem", tmp_path / "future.key"
    cert.write_bytes(future.cert_pem())
    key.write_bytes(future.key_pem())
    text = MINIMAL.format(port=free_port()) + f'[tls]\ncertfile = "{cert}"\nkeyfile = "{key}"\n'
    return write(tmp_path, text)


@pytest.mark.network
@pytest.mark.parametrize("case", ["expired", "not yet valid", "client_cafile not a CA"])
def test_mstlsd_check_rejects_unusable_certificates(
    tmp_path: Path, pki: TestPKI, case: str
) -> None:
    """Issue 13: each of these used to print "configuration OK" (and write the state)."""
    if case == "expired":
        path, key, problem = (
            _tls_config(tmp_path, pki, "server_expired"),
            "tls.certfile",
            ("expired on 2024-01-01 00:00:00 UTC"),
        )
    elif case == "not yet valid":
        path, key, problem = _not_yet_valid(tmp_path, pki), "tls.certfile", "is not valid before"
    else:
        client_cert = pki.files("client").cert
        path = _tls_config(tmp_path, pki, "server", cafile=client_cert)
        key, problem = "tls.client_cafile", "is not a CA certificate"
    state = tmp_path / "state"
    result = _mstlsd("--check", "--config", str(path), state_dir=state)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}: {key}: " in result.stderr and problem in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "configuration OK" not in result.stdout
    assert not state.exists()


def test_a_good_certificate_and_ca_pass_the_check(tmp_path: Path, pki: TestPKI) -> None:
    config = load_config(_tls_config(tmp_path, pki, "server", cafile=pki.files("ca").cert))
    check_certificates(config, pki.files("server").cert)
    expired_at = datetime.datetime(2300, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(ConfigError, match=r"tls\.certfile: .* expired on"):
        check_certificates(config, pki.files("server").cert, now=expired_at)
