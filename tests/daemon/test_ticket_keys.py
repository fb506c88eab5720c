"""mstlsd's session ticket keys in the state directory: made once, shared, rotated (issue 12)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import mstls
from mstlsd.preamble import encode_preamble
from mstlsd.server import Daemon
from mstlsd.state import (
    TICKET_KEY_ROTATION,
    TICKET_KEYS_FILE,
    StateError,
    dev_pki_paths,
    load_ticket_keys,
    peek_ticket_keys,
)
from tests.daemon.support import config_from
from tests.daemon.test_workers import CONFIG, TIMEOUT, start


def test_keys_are_made_once_private_and_reused(tmp_path: Path) -> None:
    assert peek_ticket_keys(tmp_path) is None
    keys = load_ticket_keys(tmp_path)
    assert len(keys) == 1 and len(keys[0]) == 32
    assert (tmp_path / TICKET_KEYS_FILE).stat().st_mode & 0o777 == 0o600
    assert load_ticket_keys(tmp_path) == keys == peek_ticket_keys(tmp_path)


def test_an_old_current_key_is_rotated_and_the_previous_kept(tmp_path: Path) -> None:
    first = load_ticket_keys(tmp_path)
    later = time.time() + TICKET_KEY_ROTATION + 1
    second = load_ticket_keys(tmp_path, now=later)
    assert len(second) == 2 and second[1:] == first and second[0] != first[0]
    third = load_ticket_keys(tmp_path, now=later + TICKET_KEY_ROTATION + 1)
    assert third[1:] == second[:1]  # only the current and the previous key are kept


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / TICKET_KEYS_FILE).write_bytes(b"short")
    with pytest.raises(StateError, match="multiple of 32 bytes"):
        load_ticket_keys(tmp_path)


def test_workers_share_the_ticket_keys(tmp_path: Path) -> None:
    config = config_from(CONFIG.format(port=4433), tmp_path)
    daemons = [Daemon(config, state_dir=tmp_path / "state", worker=i) for i in range(2)]
    keys = [list(d.server_config.session_ticket_keys or []) for d in daemons]
    assert keys[0] == keys[1] == load_ticket_keys(tmp_path / "state")


def _whoami(conn: mstls.Connection) -> str:
    with conn.open_stream(timeout=TIMEOUT) as stream:
        stream.write(encode_preamble("whoami"), timeout=TIMEOUT)
        stream.conclude()
        reply = bytearray()
        while chunk := stream.read(timeout=TIMEOUT):
            reply += chunk
    return reply.decode().split()[0]


#: Connections tried until one resumes on the other worker than the ticket's issuer.
MAX_ATTEMPTS = 40


@pytest.mark.network
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reuseport steering")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_ticket_from_one_worker_resumes_on_the_other(tmp_path: Path, transport: str) -> None:
    proc, port = start(tmp_path)
    try:
        ca = dev_pki_paths(tmp_path / "state").ca_cert
        store = mstls.MemoryTicketStore()
        config = mstls.ClientConfig(alpn="mstls", cafile=ca, ticket_store=store)
        issuer = None
        crossed = False
        for _ in range(MAX_ATTEMPTS):
            # Each connection uses the newest ticket, which the previous connection got.
            conn = mstls.connect("127.0.0.1", port, config, transport=transport, timeout=TIMEOUT)
            with conn:
                worker = _whoami(conn)
                assert conn.resumed is (issuer is not None), (issuer, worker)
                if issuer is not None and worker != issuer:
                    crossed = True
                    break
                issuer = worker
        assert crossed, f"all {MAX_ATTEMPTS} connections went to worker {issuer}"
    finally:
        proc.stop()
        if proc.proc.poll() is None:
            proc.proc.kill()
    assert os.path.getsize(tmp_path / "state" / TICKET_KEYS_FILE) == 32
