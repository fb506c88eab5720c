"""mstlsd configuration: the TOML file (read with :mod:`tomllib`) and the embedded default.

Theory of operation
-------------------
A configuration is checked completely before the daemon binds a socket: every
key is looked up in a table of known keys (an unknown key is an error, so a
typo never silently falls back to a default), every value is checked for its
type and range, files are opened, Python handlers are imported.  The first
problem raises :class:`ConfigError`, whose message names the file, the key and
the problem::

    /etc/mstlsd.toml: limits.max_connections: expected a positive integer, got -1

Relative paths in a file are relative to the file's directory.  Without a
``[tls]`` table the daemon uses development certificates it generates in the
state directory (see :mod:`mstlsd.state`): fine on a laptop, never in
production.  The embedded default (:func:`default_config`, used when no
``--config`` is given) is: UDP and TCP listeners on 127.0.0.1 port
:data:`DEFAULT_PORT`, development certificates, services ``echo`` and
``discard``, ALPN :data:`ALPN`.  ``configs/`` holds commented examples.
"""

from __future__ import annotations

import importlib
import inspect
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from mstls.config import (
    DEFAULT_CLIENT_HELLO_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PENDING_HANDSHAKES,
    DEFAULT_MAX_TCP_HANDSHAKES,
)
from mstls.fleet import MAX_CID_LENGTH, MAX_CONFIG_ID, MIN_NONCE_LENGTH

from .identity import AllowList, RuleError
from .preamble import MAX_SERVICE_NAME, encode_preamble

__all__ = [
    "ALPN",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EMBEDDED_SOURCE",
    "SERVICE_TYPES",
    "ConfigError",
    "DaemonConfig",
    "FleetSettings",
    "Limits",
    "ListenerSpec",
    "LoggingSettings",
    "ObservabilitySettings",
    "ServiceSpec",
    "TLSSettings",
    "default_config",
    "load_config",
    "parse_address",
]

#: The application protocol (ALPN) mstlsd speaks by default; clients must offer it.
ALPN = "mstls"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4433
#: What :attr:`DaemonConfig.source` says for the embedded default.
EMBEDDED_SOURCE = "<embedded default>"
TRANSPORTS = ("udp", "tcp")
SERVICE_TYPES = ("echo", "discard", "forward", "python")
LOG_FORMATS = ("human", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_PORT = 65535
#: ``workers``: one byte of the QUIC-LB server ID names the worker (daemon/steering.py).
MAX_WORKERS = 256
#: ``[fleet]``: the server ID is two bytes, the host byte then the worker byte.
FLEET_SERVER_ID_LENGTH = 2
MAX_HOST_ID = 255
#: The draft's nonce bounds for a two-byte server ID in a connection ID of at most 20 bytes.
MAX_FLEET_NONCE_LENGTH = MAX_CID_LENGTH - 1 - FLEET_SERVER_ID_LENGTH
#: ``limits.retry``: when QUIC clients are sent a Retry (RFC 9000 §8.1.2).
RETRY_MODES = ("always", "under_load", "never")
#: ``retry = "under_load"`` without ``retry_threshold``: handshakes in progress.
DEFAULT_RETRY_THRESHOLD = 100
#: ``limits.max_connections``: connections the daemon serves at once.
DEFAULT_ACCEPTED_CONNECTIONS = 1000
#: ``limits.retry`` when the file does not say (issue 11: a flood of Initials must not
#: lock real clients out, so addresses are validated once handshakes pile up).
DEFAULT_RETRY_MODE = "under_load"


class ConfigError(Exception):
    """A configuration problem: ``source: key: problem``."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


# --- the parsed configuration ---------------------------------------------------------------


@attrs.frozen
class ListenerSpec:
    """One listening socket: ``transport`` is "udp" (QUIC) or "tcp" (QMux)."""

    transport: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport} {host}:{self.port}"


@attrs.frozen
class TLSSettings:
    """Server certificate and client authentication; ``None`` files: development PKI."""

    certfile: Path | None = None
    keyfile: Path | None = None
    client_cafile: Path | None = None
    require_client_cert: bool = False
    pinned_client_sha256: tuple[str, ...] | None = None
    alpn: tuple[str, ...] = (ALPN,)
    keylog_file: Path | None = None

    @property
    def development(self) -> bool:
        return self.certfile is None


@attrs.frozen
class ServiceSpec:
    """One service: what a stream whose preamble names it is connected to."""

    name: str
    type: str
    allow: AllowList = attrs.field(factory=lambda: AllowList(None))
    target: tuple[str, int] | None = None
    handler_name: str | None = None
    handler: Callable[..., Any] | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Limits:
    """Resource limits and timers (seconds)."""

    max_connections: int = DEFAULT_ACCEPTED_CONNECTIONS
    max_streams_per_connection: int = 100
    handshake_timeout: float = 10.0
    idle_timeout: float = 30.0
    #: How long a new stream may take to send its preamble.
    preamble_timeout: float = 10.0
    #: On SIGTERM/SIGINT, how long open streams may take to finish.
    drain_timeout: float = 10.0
    #: How long ``forward`` waits for the backend's TCP connect.
    connect_timeout: float = 5.0
    #: Validate every client address with a QUIC Retry before any handshake work
    #: (``retry = "always"``, or ``true``).
    retry: bool = False
    #: ``retry = "under_load"`` (the default): a Retry once this many QUIC handshakes are
    #: in progress; None: never.
    retry_threshold: int | None = DEFAULT_RETRY_THRESHOLD
    #: Handshakes per second one source address may start (IPv6: per /64); None: no limit.
    handshake_rate: float | None = None
    #: Handshakes a source may start at once before the rate applies (None: library default).
    handshake_burst: int | None = None
    #: TLS handshakes a TCP listener runs at once; more wait in the kernel's accept queue.
    max_tcp_handshakes: int = DEFAULT_MAX_TCP_HANDSHAKES
    #: TCP: seconds a new connection may take to send its whole ClientHello.
    client_hello_timeout: float = DEFAULT_CLIENT_HELLO_TIMEOUT
    #: QUIC connections one UDP listener holds state for, handshakes and closing ones
    #: included; new Initials beyond it are dropped.  At least ``max_connections``.
    max_quic_connections: int = DEFAULT_MAX_CONNECTIONS
    #: QUIC handshakes one UDP listener keeps in progress; a new one beyond sheds the oldest.
    max_pending_handshakes: int = DEFAULT_MAX_PENDING_HANDSHAKES

    @property
    def retry_mode(self) -> str:
        """``"always"``, ``"under_load"`` or ``"never"``, as the file says it."""
        if self.retry:
            return "always"
        return "never" if self.retry_threshold is None else "under_load"


@attrs.frozen
class LoggingSettings:
    format: str = "human"
    level: str = "info"


@attrs.frozen
class ObservabilitySettings:
    """Optional traces: ``qlog_dir`` gets one qlog file per QUIC connection."""

    qlog_dir: Path | None = None


@attrs.frozen
class FleetSettings:
    """``[fleet]``: this host's place in a fleet behind a QUIC-LB balancer (docs/fleet.md).

    Worker ``I`` issues plaintext QUIC-LB connection IDs (draft-ietf-quic-load-balancers
    §5.2) whose two-byte server ID is ``(host_id, I)``; ``config_id`` (the config
    rotation codepoint) and ``nonce_length`` must match the balancer's configuration.
    """

    host_id: int
    config_id: int = 0
    nonce_length: int = 6

    @property
    def cid_length(self) -> int:
        return 1 + FLEET_SERVER_ID_LENGTH + self.nonce_length


@attrs.frozen
class DaemonConfig:
    """Everything the daemon runs with; ``source`` is the file name or the embedded default."""

    source: str
    listeners: tuple[ListenerSpec, ...]
    services: Mapping[str, ServiceSpec]
    tls: TLSSettings = TLSSettings()
    limits: Limits = Limits()
    logging: LoggingSettings = LoggingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    metrics_address: tuple[str, int] | None = None
    state_dir: Path | None = None
    #: Worker processes sharing the listeners with SO_REUSEPORT (docs/fleet.md).
    workers: int = 1
    #: ``[fleet]``: a host byte before the worker byte in the QUIC-LB server IDs.
    fleet: FleetSettings | None = None


# --- value checkers ----------------------------------------------------------------------------

Checker = Callable[[Any, "_Context", str], Any]


@attrs.frozen
class _Context:
    source: str
    base: Path

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)


def _positive_int(value: Any, ctx: _Context, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ctx.error(key, f"expected a positive integer, got {value!r}")
    return value


def _positive_float(value: Any, ctx: _Context, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ctx.error(key, f"expected a positive number of seconds, got {value!r}")
    return float(value)


def _rate(value: Any, ctx: _Context, key: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < float("inf")
    ):
        raise ctx.error(key, f"expected a positive number of handshakes per second, got {value!r}")
    return float(value)


def _retry_mode(value: Any, ctx: _Context, key: str) -> str:
    """``true``/``false`` (the old form) or one of :data:`RETRY_MODES`."""
    if isinstance(value, bool):
        return "always" if value else "never"
    if value not in RETRY_MODES:
        choices = ", ".join(f'"{mode}"' for mode in RETRY_MODES)
        raise ctx.error(key, f"expected {choices}, true or false, got {value!r}")
    return str(value)


def _bool(value: Any, ctx: _Context, key: str) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(key, f"expected true or false, got {value!r}")
    return value


def _string(value: Any, ctx: _Context, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.error(key, f"expected a non-empty string, got {value!r}")
    return value


def _choice(*choices: str) -> Checker:
    def check(value: Any, ctx: _Context, key: str) -> str:
        if value not in choices:
            raise ctx.error(key, f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return str(value)

    return check


def _workers(value: Any, ctx: _Context, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ctx.error(key, f"expected a number of processes 1-{MAX_WORKERS}, got {value!r}")
    return value


def _port(value: Any, ctx: _Context, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PORT:
        raise ctx.error(key, f"expected a port number 0-{MAX_PORT}, got {value!r}")
    return value


def _existing_file(value: Any, ctx: _Context, key: str) -> Path:
    path = ctx.base / _string(value, ctx, key)
    if not path.is_file():
        raise ctx.error(key, f"no such file: {path}")
    if not os.access(path, os.R_OK):
        raise ctx.error(key, f"cannot read {path} (permission denied)")
    return path


def _writable_path(value: Any, ctx: _Context, key: str) -> Path:
    return ctx.base / _string(value, ctx, key)


def _directory(value: Any, ctx: _Context, key: str) -> Path:
    """A directory that exists or can be made (made when the daemon starts)."""
    path = _writable_path(value, ctx, key)
    if path.exists() and not path.is_dir():
        raise ctx.error(key, f"not a directory: {path}")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise ctx.error(key, f"cannot write to {path} (permission denied)")
    return path


def _string_list(value: Any, ctx: _Context, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ctx.error(key, f"expected a list of strings, got {value!r}")
    return tuple(value)


def parse_address(
    text: str, default_host: str | None = None, *, allow_any_port: bool = False
) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"`` (or ``":port"`` with ``default_host``) as a pair.

    Port 0 ("any free port") only with ``allow_any_port``.  Raises ValueError
    naming the problem.
    """
    host, sep, port_text = text.rpartition(":")
    lowest = 0 if allow_any_port else 1
    if not sep or not port_text.isdigit() or not lowest <= int(port_text) <= MAX_PORT:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        if default_host is None:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        host = default_host
    return host, int(port_text)


def _address(value: Any, ctx: _Context, key: str) -> tuple[str, int]:
    try:
        return parse_address(_string(value, ctx, key))
    except ValueError as exc:
        raise ctx.error(key, str(exc)) from None


def _bind_address(value: Any, ctx: _Context, key: str) -> tuple[str, int]:
    try:
        return parse_address(_string(value, ctx, key), allow_any_port=True)
    except ValueError as exc:
        raise ctx.error(key, str(exc)) from None


def _handler(value: Any, ctx: _Context, key: str) -> Callable[..., Any]:
    text = _string(value, ctx, key)
    module_name, sep, attr = text.partition(":")
    if not sep or not module_name or not attr:
        raise ctx.error(key, f"expected 'module:function', got {text!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is a configuration problem
        raise ctx.error(key, f"cannot import {module_name!r}: {exc}") from None
    handler = getattr(module, attr, None)
    if handler is None:
        raise ctx.error(key, f"module {module_name!r} has no attribute {attr!r}")
    if not inspect.iscoroutinefunction(handler):
        raise ctx.error(key, f"{text} must be an async function (stream, peer)")
    return handler  # type: ignore[no-any-return]


# --- tables of keys ------------------------------------------------------------------------------

_TOP_KEYS = (
    "listeners",
    "tls",
    "services",
    "limits",
    "logging",
    "metrics",
    "observability",
    "state_dir",
    "workers",
    "fleet",
)

_LISTENER_KEYS: dict[str, Checker] = {
    "transport": _choice(*TRANSPORTS),
    "host": _string,
    "port": _port,
}
_TLS_KEYS: dict[str, Checker] = {
    "certfile": _existing_file,
    "keyfile": _existing_file,
    "client_cafile": _existing_file,
    "require_client_cert": _bool,
    "pinned_client_sha256": _string_list,
    "alpn": _string_list,
    "keylog_file": _writable_path,
}
_LIMIT_KEYS: dict[str, Checker] = {
    "max_connections": _positive_int,
    "max_streams_per_connection": _positive_int,
    "handshake_timeout": _positive_float,
    "idle_timeout": _positive_float,
    "preamble_timeout": _positive_float,
    "drain_timeout": _positive_float,
    "connect_timeout": _positive_float,
    "retry": _retry_mode,
    "retry_threshold": _positive_int,
    "handshake_rate": _rate,
    "handshake_burst": _positive_int,
    "max_tcp_handshakes": _positive_int,
    "max_quic_connections": _positive_int,
    "max_pending_handshakes": _positive_int,
    "client_hello_timeout": _positive_float,
}
_LOGGING_KEYS: dict[str, Checker] = {
    "format": _choice(*LOG_FORMATS),
    "level": _choice(*LOG_LEVELS),
}
_METRICS_KEYS: dict[str, Checker] = {"address": _bind_address}
_OBSERVABILITY_KEYS: dict[str, Checker] = {"qlog_dir": _directory}
_SERVICE_KEYS: dict[str, Checker] = {
    "type": _choice(*SERVICE_TYPES),
    "target": _address,
    "handler": _handler,
    "allow": _string_list,
}
#: Which keys each service type needs (beyond ``type``), and which it may not have.
_SERVICE_NEEDS: dict[str, tuple[str, ...]] = {
    "echo": (),
    "discard": (),
    "forward": ("target",),
    "python": ("handler",),
}
_SERVICE_FORBIDS: dict[str, tuple[str, ...]] = {
    "echo": ("target", "handler"),
    "discard": ("target", "handler"),
    "forward": ("handler",),
    "python": ("target",),
}


def _table(value: Any, ctx: _Context, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ctx.error(key, f"expected a table, got {value!r}")
    return value


def _section(
    table: Mapping[str, Any], keys: Mapping[str, Checker], ctx: _Context, prefix: str
) -> dict[str, Any]:
    """Check every key of ``table`` against ``keys``; the checked values by key."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        checker = keys.get(key)
        where = f"{prefix}.{key}" if prefix else key
        if checker is None:
            known = ", ".join(keys)
            raise ctx.error(where, f"unknown key (known keys: {known})")
        out[key] = checker(value, ctx, where)
    return out


# --- sections ---------------------------------------------------------------------------------


def _limits(value: Any, ctx: _Context) -> Limits:
    """``[limits]``: the keys, then the rules that tie keys together."""
    fields = _section(_table(value, ctx, "limits"), _LIMIT_KEYS, ctx, "limits")
    mode = fields.pop("retry", DEFAULT_RETRY_MODE)
    threshold = fields.pop("retry_threshold", None)
    if threshold is not None and mode != "under_load":
        raise ctx.error(
            "limits.retry_threshold", 'only used with retry = "under_load" (see limits.retry)'
        )
    if "handshake_burst" in fields and "handshake_rate" not in fields:
        raise ctx.error("limits.handshake_burst", "needs limits.handshake_rate")
    if mode == "under_load" and threshold is None:
        threshold = DEFAULT_RETRY_THRESHOLD
    accepted: int = fields.get("max_connections", DEFAULT_ACCEPTED_CONNECTIONS)
    quic = fields.get("max_quic_connections")
    if quic is None:
        fields["max_quic_connections"] = max(DEFAULT_MAX_CONNECTIONS, accepted)
    elif quic < accepted:
        raise ctx.error(
            "limits.max_quic_connections",
            f"must be at least limits.max_connections ({accepted}): the connections"
            " accepted need their QUIC state",
        )
    return Limits(**fields, retry=mode == "always", retry_threshold=threshold)


def _listeners(value: Any, ctx: _Context) -> tuple[ListenerSpec, ...]:
    if not isinstance(value, list) or not value:
        raise ctx.error("listeners", "expected at least one [[listeners]] table")
    specs: list[ListenerSpec] = []
    for index, item in enumerate(value):
        where = f"listeners[{index}]"
        fields = _section(_table(item, ctx, where), _LISTENER_KEYS, ctx, where)
        if "transport" not in fields:
            raise ctx.error(f"{where}.transport", 'missing ("udp" or "tcp")')
        spec = ListenerSpec(**fields)
        if spec in specs:
            raise ctx.error(where, f"duplicate listener {spec.label()}")
        specs.append(spec)
    return tuple(specs)


def _tls(value: Any, ctx: _Context) -> TLSSettings:
    fields = _section(_table(value, ctx, "tls"), _TLS_KEYS, ctx, "tls")
    for key in ("certfile", "keyfile"):
        if key not in fields:
            raise ctx.error(f"tls.{key}", "missing (a [tls] table needs certfile and keyfile)")
    if fields.get("require_client_cert") and not (
        fields.get("client_cafile") or fields.get("pinned_client_sha256")
    ):
        raise ctx.error(
            "tls.require_client_cert", "needs tls.client_cafile (or tls.pinned_client_sha256)"
        )
    return TLSSettings(**fields)


def _service(name: str, value: Any, ctx: _Context) -> ServiceSpec:
    where = f"services.{name}"
    try:
        encode_preamble(name)
    except ValueError:
        raise ctx.error(
            where,
            f"bad service name: use 1-{MAX_SERVICE_NAME} letters, digits, '.', '_', '-'",
        ) from None
    fields = _section(_table(value, ctx, where), _SERVICE_KEYS, ctx, where)
    kind = fields.get("type")
    if kind is None:
        raise ctx.error(f"{where}.type", f"missing (one of {', '.join(SERVICE_TYPES)})")
    for key in _SERVICE_NEEDS[kind]:
        if key not in fields:
            raise ctx.error(f"{where}.{key}", f"missing (a {kind!r} service needs it)")
    for key in _SERVICE_FORBIDS[kind]:
        if key in fields:
            raise ctx.error(f"{where}.{key}", f"not allowed for a {kind!r} service")
    try:
        allow = AllowList.from_config(fields.get("allow"))
    except RuleError as exc:
        raise ctx.error(f"{where}.allow", str(exc)) from None
    handler = fields.get("handler")
    handler_text = value.get("handler") if handler is not None else None
    return ServiceSpec(
        name=name,
        type=kind,
        allow=allow,
        target=fields.get("target"),
        handler_name=handler_text,
        handler=handler,
    )


def _services(value: Any, ctx: _Context) -> dict[str, ServiceSpec]:
    table = _table(value, ctx, "services")
    if not table:
        raise ctx.error("services", "expected at least one [services.NAME] table")
    return {name: _service(name, item, ctx) for name, item in table.items()}


# --- [fleet] ----------------------------------------------------------------------------------


def _int_range(low: int, high: int, what: str) -> Checker:
    """An integer in ``low..high``; ``what`` describes it, with ``{low}`` and ``{high}``."""

    def check(value: Any, ctx: _Context, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ctx.error(key, f"expected {what.format(low=low, high=high)}, got {value!r}")
        return value

    return check


_FLEET_KEYS: dict[str, Checker] = {
    "host_id": _int_range(0, MAX_HOST_ID, "a host byte {low}-{high}"),
    "config_id": _int_range(0, MAX_CONFIG_ID, "a QUIC-LB config rotation {low}-{high}"),
    "nonce_length": _int_range(
        MIN_NONCE_LENGTH,
        MAX_FLEET_NONCE_LENGTH,
        "a nonce of {low}-{high} bytes (a connection ID is 1 + "
        f"{FLEET_SERVER_ID_LENGTH} + nonce bytes, at most {MAX_CID_LENGTH})",
    ),
}


def _fleet(value: Any, ctx: _Context) -> FleetSettings:
    """``[fleet]``: host_id (required), config_id and nonce_length (QUIC-LB, plaintext)."""
    fields = _section(_table(value, ctx, "fleet"), _FLEET_KEYS, ctx, "fleet")
    if "host_id" not in fields:
        raise ctx.error("fleet.host_id", f"missing (this host's byte, 0-{MAX_HOST_ID})")
    return FleetSettings(**fields)


def parse_config(data: Mapping[str, Any], source: str, base: Path) -> DaemonConfig:
    """Check a parsed TOML document (see the module documentation)."""
    ctx = _Context(source, base)
    for key in data:
        if key not in _TOP_KEYS:
            raise ctx.error(key, f"unknown key (known keys: {', '.join(_TOP_KEYS)})")
    for key in ("listeners", "services"):
        if key not in data:
            raise ctx.error(key, "missing")
    limits = _limits(data.get("limits", {}), ctx)
    logging = _section(
        _table(data.get("logging", {}), ctx, "logging"), _LOGGING_KEYS, ctx, "logging"
    )
    metrics = _section(
        _table(data.get("metrics", {}), ctx, "metrics"), _METRICS_KEYS, ctx, "metrics"
    )
    observability = _section(
        _table(data.get("observability", {}), ctx, "observability"),
        _OBSERVABILITY_KEYS,
        ctx,
        "observability",
    )
    state_dir = data.get("state_dir")
    workers = _workers(data["workers"], ctx, "workers") if "workers" in data else 1
    return DaemonConfig(
        source=source,
        listeners=_listeners(data["listeners"], ctx),
        services=_services(data["services"], ctx),
        tls=_tls(data["tls"], ctx) if "tls" in data else TLSSettings(),
        limits=limits,
        logging=LoggingSettings(**logging),
        observability=ObservabilitySettings(**observability),
        metrics_address=metrics.get("address"),
        state_dir=_writable_path(state_dir, ctx, "state_dir") if state_dir is not None else None,
        workers=workers,
        fleet=_fleet(data["fleet"], ctx) if "fleet" in data else None,
    )


def load_config(path: str | os.PathLike[str]) -> DaemonConfig:
    """Read and check a TOML configuration file (raises :class:`ConfigError`)."""
    file = Path(path)
    source = str(file)
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "", "no such file") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    return parse_config(data, source, file.resolve().parent)


def default_config() -> DaemonConfig:
    """The embedded default: 127.0.0.1 UDP+TCP port 4433, dev certificates, echo and discard."""
    return DaemonConfig(
        source=EMBEDDED_SOURCE,
        listeners=(ListenerSpec("udp"), ListenerSpec("tcp")),
        services={
            "echo": ServiceSpec("echo", "echo"),
            "discard": ServiceSpec("discard", "discard"),
        },
    )
