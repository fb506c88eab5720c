"""``mstls send FILE HOST:PORT`` and ``mstls recv``: one file over one stream, with a SHA-256.

The stream carries a header line, the file, and the sender's FIN::

    "MSTLS-FILE " SIZE " " NAME "\\n"   then SIZE bytes, then FIN

``NAME`` is the file's base name, percent-encoded.  The receiver answers with
``"OK " SHA256-HEX "\\n"`` (or ``"ERR " reason "\\n"``) and FIN, so the sender
prints a SHA-256 the receiver confirmed.  Both sides draw a progress bar
(tqdm) on standard error.  ``mstls recv`` listens (UDP and TCP by default),
receives one file and exits; without ``--cert`` it presents the development
certificate of the mstlsd state directory, which ``mstls send`` trusts for a
local receiver.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import urllib.parse
from pathlib import Path
from typing import BinaryIO, cast

import trio

from mstls import Error, ServerConfig
from mstls.trio import Connection, Listener, Stream, listen

from ..preamble import encode_preamble
from ..state import default_state_dir, ensure_dev_pki
from .common import (
    EXIT_CONNECTION,
    EXIT_USAGE,
    CliError,
    describe_failure,
    open_connection,
    report,
)
from .progress import progress_bar

__all__ = ["HEADER_MAGIC", "run_recv", "run_send"]

HEADER_MAGIC = b"MSTLS-FILE"
#: Longest header line accepted.
MAX_HEADER = 1024
#: Longest answer line accepted.
MAX_ANSWER = 256
CHUNK = 256 * 1024
#: After the answer line, how long the sender waits for the receiver's FIN.
ANSWER_END_TIMEOUT = 5.0


async def _read_line(stream: Stream, limit: int) -> tuple[bytes, bytes]:
    """A line (without newline) and what came after it; ValueError if too long or ended."""
    buffer = bytearray()
    while b"\n" not in buffer:
        if len(buffer) > limit:
            raise ValueError("line too long")
        data = await stream.receive_some()
        if not data:
            raise ValueError("the stream ended early")
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\n")
    return line, rest


# --- send ----------------------------------------------------------------------------------


async def _upload(stream: Stream, source: BinaryIO, size: int, quiet: bool) -> str:
    digest = hashlib.sha256()
    with progress_bar(size, "send", quiet) as bar:
        while chunk := await trio.to_thread.run_sync(source.read, CHUNK):
            digest.update(chunk)
            await stream.send_all(chunk)
            bar.update(len(chunk))
    await stream.send_eof()
    return digest.hexdigest()


async def run_send(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        source = path.open("rb")
        size = os.fstat(source.fileno()).st_size
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}", EXIT_USAGE) from None
    host, port = args.target
    with source:
        conn = await open_connection(args, host, port, quiet=args.quiet)
        async with conn:
            try:
                stream = await conn.open_stream()
                if args.service:
                    await stream.send_all(encode_preamble(args.service))
                name = urllib.parse.quote(path.name).encode()
                await stream.send_all(b"%s %d %s\n" % (HEADER_MAGIC, size, name))
                local = await _upload(stream, source, size, args.quiet)
                answer, _ = await _read_line(stream, MAX_ANSWER)
                with trio.move_on_after(ANSWER_END_TIMEOUT):
                    while await stream.receive_some():  # up to the receiver's FIN
                        pass
            except (Error, trio.BrokenResourceError) as exc:
                report(f"send failed: {describe_failure(exc)}")
                return EXIT_CONNECTION
            except ValueError:
                answer = b""
    print(f"{local}  {path}")
    if answer.startswith(b"OK ") and answer[3:].decode(errors="replace") == local:
        report(f"sent {size} bytes; the receiver confirms sha256 {local}")
        return 0
    if not answer:
        report(f"sent {size} bytes; the receiver did not confirm a sha256")
        return 0
    report(f"the receiver disagrees: {answer.decode(errors='replace')}")
    return EXIT_CONNECTION


# --- recv ----------------------------------------------------------------------------------


def _parse_header(line: bytes) -> tuple[int, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != HEADER_MAGIC or not parts[1].isdigit():
        raise ValueError(f"not an mstls send header: {line[:80]!r}")
    name = os.path.basename(urllib.parse.unquote(parts[2].decode(errors="replace")))
    if name in ("", ".", ".."):
        name = "received.bin"
    return int(parts[1]), name


def _open_output(
    args: argparse.Namespace, name: str
) -> tuple[contextlib.AbstractContextManager[BinaryIO], str]:
    """The sink (a context manager) and its label; ValueError if it cannot be opened."""
    target = args.output if args.output is not None else name
    if target == "-":
        return contextlib.nullcontext(sys.stdout.buffer), "<stdout>"
    mode = "wb" if args.force else "xb"
    try:
        return cast(BinaryIO, open(target, mode)), str(target)
    except FileExistsError:  # the sender's name (or a file made since the check at start)
        hint = "--force to overwrite it" if args.output else "--force, or -o to name another file"
        raise ValueError(f"{target} exists (use {hint})") from None
    except OSError as exc:
        raise ValueError(f"{target}: {exc.strerror}") from None


async def _download(stream: Stream, first: bytes, size: int, sink: BinaryIO, quiet: bool) -> str:
    digest = hashlib.sha256()
    received = 0
    with progress_bar(size, "recv", quiet) as bar:
        data = first
        while True:
            if data:
                received += len(data)
                if received > size:
                    raise ValueError(f"more than the announced {size} bytes")
                digest.update(data)
                sink.write(data)
                bar.update(len(data))
            data = await stream.receive_some(CHUNK)
            if not data:
                break
    if received != size:
        raise ValueError(f"received {received} of {size} bytes")
    return digest.hexdigest()


async def _receive_one(conn: Connection, args: argparse.Namespace) -> int:
    stream = await conn.accept_stream()
    try:
        line, rest = await _read_line(stream, MAX_HEADER)
        size, name = _parse_header(line)
        output, label = _open_output(args, name)
        with output as sink:
            digest = await _download(stream, rest, size, sink, args.quiet)
            sink.flush()
    except ValueError as exc:
        report(f"receive failed: {exc}")
        await stream.send_all(b"ERR %s\n" % str(exc).encode()[:200])
        await stream.send_eof()
        return EXIT_CONNECTION
    await stream.send_all(b"OK %s\n" % digest.encode())
    with contextlib.suppress(Error, trio.BrokenResourceError):
        # The file is safe; the sender may close as soon as it has the answer.
        await stream.send_eof()
        await stream.wait_acknowledged()
    print(f"{digest}  {label}", file=sys.stderr if label == "<stdout>" else sys.stdout)
    report(f"received {size} bytes from {conn.peer_address[0]}:{conn.peer_address[1]}")
    return 0


def _server_config(args: argparse.Namespace) -> ServerConfig:
    if args.cert is not None:
        return ServerConfig(certfile=args.cert, keyfile=args.key, alpn=args.alpn)
    paths, _ = ensure_dev_pki(args.state_dir or default_state_dir())
    return ServerConfig(certfile=paths.server_cert, keyfile=paths.server_key, alpn=args.alpn)


def check_output(args: argparse.Namespace) -> None:
    """Refuse an unusable ``-o FILE`` at once, before listening (not when a sender came)."""
    if args.output is None or args.output == "-":
        return
    path = Path(args.output)
    if path.is_dir():
        raise CliError(f"{path} is a directory: -o takes a file name", EXIT_USAGE)
    if path.exists() and not args.force:
        raise CliError(f"{path} exists: use --force to overwrite it", EXIT_USAGE)


async def run_recv(args: argparse.Namespace) -> int:
    check_output(args)
    host, port = args.listen
    config = _server_config(args)
    transports = ("udp", "tcp") if args.transport == "both" else (args.transport,)
    listeners: list[Listener] = []
    try:
        for transport in transports:
            listeners.append(await listen(host, port, config, transport=transport))
    except (OSError, Error) as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc}", EXIT_USAGE) from None
    for listener in listeners:
        report(f"receiving on {listener.transport} {listener.address[0]}:{listener.address[1]}")
    result: list[int] = []
    async with trio.open_nursery() as nursery:

        async def accept(listener: Listener) -> None:
            conn = await listener.accept()
            if result:
                await conn.aclose()
                return
            result.append(-1)
            async with conn:
                try:
                    result[0] = await _receive_one(conn, args)
                except (Error, trio.BrokenResourceError) as exc:
                    report(f"receive failed: {describe_failure(exc)}")
                    result[0] = EXIT_CONNECTION
            nursery.cancel_scope.cancel()

        for listener in listeners:
            nursery.start_soon(accept, listener)
    for listener in listeners:
        await listener.aclose()
    return result[0] if result else EXIT_CONNECTION
