"""The daemon's state directory: development certificates and the stateless-reset key.

Layout (created on first start, private to the user)::

    STATE_DIR/
        pki/ca.pem ca.key server.pem server.key client.pem client.key
        stateless_reset.key        32 random bytes, mode 0600
        retry_token.key            16 random bytes (AES-128), mode 0600
        session_tickets.keys       session ticket keys, 32 bytes each, current first, 0600

The state directory is, in order: ``--state-dir``, ``state_dir`` in the
configuration file, ``$MSTLSD_STATE_DIR``, ``$XDG_STATE_HOME/mstlsd``, and
``~/.local/state/mstlsd``.  The ``mstls`` command line looks in the same place
for the development CA when it talks to a daemon on this machine.

The stateless-reset key (RFC 9000 §10.3) survives restarts: a client whose
connection the previous run served sends a packet, the new run does not know
its connection ID, answers with a stateless reset computed from the same key,
and the client learns at once that its connection is gone.  The Retry token
key (RFC 9000 §8.1.2) is persisted the same way so that every worker process
(``workers = N``) accepts the tokens any of them issued.  Both files are made
by the first process that needs them (``O_EXCL``: concurrent starts agree); the
parent of a multi-worker daemon makes them before it starts any worker.

The session ticket keys (RFC 8446 §4.6.1, stateless tickets) are shared the same
way, so a ticket one worker issued resumes on any other.  They rotate: a start
that finds the current key older than :data:`TICKET_KEY_ROTATION` seconds puts a
new key in front and keeps the previous one (:data:`TICKET_KEYS_KEPT` in all),
whose tickets stay valid until they expire.  Rotation happens under an exclusive
``flock`` and replaces the file atomically, so concurrent starts agree.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from mstls.devcerts import DevPKIPaths, write_dev_pki
from mstls.exceptions import ConfigurationError
from mstls.fleet import STATELESS_RESET_KEY_LENGTH, TICKET_KEY_LENGTH, StatelessResetKey

__all__ = [
    "PKI_SUBDIR",
    "RESET_KEY_FILE",
    "STATE_DIR_ENV",
    "StateError",
    "default_state_dir",
    "dev_pki_paths",
    "ensure_dev_pki",
    "load_reset_key",
    "load_retry_token_key",
    "load_ticket_keys",
    "peek_reset_key",
    "peek_retry_token_key",
    "peek_ticket_keys",
]

STATE_DIR_ENV = "MSTLSD_STATE_DIR"
PKI_SUBDIR = "pki"
RESET_KEY_FILE = "stateless_reset.key"
RETRY_KEY_FILE = "retry_token.key"
TICKET_KEYS_FILE = "session_tickets.keys"
_TICKET_LOCK_FILE = ".session_tickets.lock"
#: Seconds after which a start makes a new current ticket key (the default ticket lifetime).
TICKET_KEY_ROTATION = 24 * 3600
#: Ticket keys kept: the current one and the previous one.
TICKET_KEYS_KEPT = 2
#: AES-128 (what ``mstls.ServerConfig.retry_token_key`` takes).
RETRY_KEY_LENGTH = 16
_PRIVATE_DIR_MODE = 0o700
_PRIVATE_FILE_MODE = 0o600


class StateError(Exception):
    """The state directory cannot be used (message names the path and the problem)."""


def default_state_dir() -> Path:
    """``$MSTLSD_STATE_DIR``, else ``$XDG_STATE_HOME/mstlsd``, else ``~/.local/state/mstlsd``."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "mstlsd"


def _private_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=_PRIVATE_DIR_MODE)
    except OSError as exc:
        raise StateError(f"{path}: cannot create the state directory: {exc.strerror}") from None


def dev_pki_paths(state_dir: Path) -> DevPKIPaths:
    """Where the development certificates of ``state_dir`` are (whether or not they exist)."""
    root = state_dir / PKI_SUBDIR
    return DevPKIPaths(
        directory=root,
        ca_cert=root / "ca.pem",
        ca_key=root / "ca.key",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        client_cert=root / "client.pem",
        client_key=root / "client.key",
    )


def ensure_dev_pki(state_dir: Path) -> tuple[DevPKIPaths, bool]:
    """The development PKI of ``state_dir``, generated if missing; True if just made."""
    paths = dev_pki_paths(state_dir)
    if paths.server_cert.is_file() and paths.server_key.is_file() and paths.ca_cert.is_file():
        return paths, False
    _private_dir(state_dir)
    try:
        return write_dev_pki(paths.directory, overwrite=True), True
    except ConfigurationError as exc:
        raise StateError(str(exc)) from None


def _check_length(path: Path, data: bytes, length: int) -> bytes:
    if len(data) != length:
        raise StateError(
            f"{path}: expected {length} bytes, found {len(data)} "
            "(delete the file to make a new key)"
        )
    return data


def _peek_key(state_dir: Path, name: str, length: int) -> bytes | None:
    """The key ``state_dir/name`` if it exists (checked), else None; never writes."""
    path = state_dir / name
    try:
        return _check_length(path, path.read_bytes(), length)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}") from None


def _load_key(state_dir: Path, name: str, length: int) -> bytes:
    """``length`` secret bytes persisted in ``state_dir/name``, created on first use."""
    _private_dir(state_dir)
    path = state_dir / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = os.urandom(length)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE_MODE)
        except FileExistsError:  # another process made it first: use theirs
            return _load_key(state_dir, name, length)
        except OSError as exc:
            raise StateError(f"{path}: cannot create: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return data
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}") from None
    return _check_length(path, data, length)


def load_reset_key(state_dir: Path) -> StatelessResetKey:
    """The persisted stateless-reset key of ``state_dir``, created on first use."""
    return StatelessResetKey.from_bytes(
        _load_key(state_dir, RESET_KEY_FILE, STATELESS_RESET_KEY_LENGTH)
    )


def load_retry_token_key(state_dir: Path) -> bytes:
    """The persisted Retry token key of ``state_dir`` (16 bytes), created on first use."""
    return _load_key(state_dir, RETRY_KEY_FILE, RETRY_KEY_LENGTH)


def peek_reset_key(state_dir: Path) -> StatelessResetKey | None:
    """The persisted stateless-reset key if it exists (checked), else None; never writes."""
    data = _peek_key(state_dir, RESET_KEY_FILE, STATELESS_RESET_KEY_LENGTH)
    return None if data is None else StatelessResetKey.from_bytes(data)


def peek_retry_token_key(state_dir: Path) -> bytes | None:
    """The persisted Retry token key if it exists (checked), else None; never writes."""
    return _peek_key(state_dir, RETRY_KEY_FILE, RETRY_KEY_LENGTH)


def _read_ticket_keys(path: Path) -> tuple[list[bytes], float] | None:
    """The keys in ``path`` and the file's mtime, or None if it does not exist."""
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}") from None
    if not data or len(data) % TICKET_KEY_LENGTH:
        raise StateError(
            f"{path}: expected a multiple of {TICKET_KEY_LENGTH} bytes, found {len(data)} "
            "(delete the file to make new keys)"
        )
    keys = [data[i : i + TICKET_KEY_LENGTH] for i in range(0, len(data), TICKET_KEY_LENGTH)]
    return keys, mtime


def load_ticket_keys(state_dir: Path, now: float | None = None) -> list[bytes]:
    """The session ticket keys of ``state_dir``, current first; made on first use and
    rotated when the current one is older than :data:`TICKET_KEY_ROTATION`."""
    _private_dir(state_dir)
    path = state_dir / TICKET_KEYS_FILE
    now = time.time() if now is None else now
    try:
        lock = os.open(state_dir / _TICKET_LOCK_FILE, os.O_RDWR | os.O_CREAT, _PRIVATE_FILE_MODE)
    except OSError as exc:
        raise StateError(f"{state_dir}: cannot create the ticket lock: {exc.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _read_ticket_keys(path)
        if found is not None and now - found[1] < TICKET_KEY_ROTATION:
            return found[0]
        previous = found[0] if found is not None else []
        keys = [os.urandom(TICKET_KEY_LENGTH), *previous][:TICKET_KEYS_KEPT]
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PRIVATE_FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"".join(keys))
            os.replace(tmp, path)
        except OSError as exc:
            raise StateError(f"{path}: cannot write: {exc.strerror}") from None
        return keys
    finally:
        os.close(lock)


def peek_ticket_keys(state_dir: Path) -> list[bytes] | None:
    """The persisted ticket keys if they exist (checked), else None; never writes."""
    found = _read_ticket_keys(state_dir / TICKET_KEYS_FILE)
    return None if found is None else found[0]
