"""Steering QUIC datagrams to worker processes by connection ID (classic BPF, Linux).

Theory of operation
-------------------
With ``workers = N`` every worker binds its own UDP socket to the shared port
with ``SO_REUSEPORT``; the kernel then picks one socket of the group per
datagram.  By default it hashes the 4-tuple, which breaks QUIC as soon as a
client's address changes (NAT rebinding, migration).  Instead a classic BPF
program attached to the group with ``SO_ATTACH_REUSEPORT_CBPF`` returns the
index of the socket that must receive the datagram, read from the destination
connection ID in the QUIC-LB plaintext format (draft-ietf-quic-load-balancers
§5.2: first octet, then the server ID)::

    long header  (first byte & 0x80): flags(1) version(4) dcid_len(1) DCID...
                                      -> server ID from offset 7
    short header:                     flags(1) DCID...
                                      -> server ID from offset 2

    socket index = server_id[worker_byte] % N

``worker_byte`` is 0 for mstlsd's one-byte server ID (the worker index) and 1
for the two-byte ``(host, worker)`` server ID of ``[fleet]`` (offsets 8 and
3): the balancer routes by the host byte, this program by the worker byte.
The reuseport filter sees the UDP payload at offset 0.  A datagram too short
for the load ends the program with 0 (worker 0 drops it like any garbage).
Workers bind in order, so socket index == worker index == the worker byte
each worker puts in its connection IDs.  A client's first Initial carries a
random DCID: its byte at the worker offset still names one worker, every
retransmitted Initial carries the same DCID, so the handshake stays there;
afterwards the client uses the worker's own IDs, which carry its index.
"""

from __future__ import annotations

import ctypes
import socket
import struct

__all__ = ["SO_ATTACH_REUSEPORT_CBPF", "attach_steering", "steering_program"]

#: Linux <asm-generic/socket.h>.
SO_ATTACH_REUSEPORT_CBPF = 51
#: Offsets of the QUIC-LB server ID's first byte (see the module documentation).
LONG_HEADER_SERVER_ID = 7
SHORT_HEADER_SERVER_ID = 2
LONG_HEADER_BIT = 0x80
#: Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
BPF_LDB_ABS = 0x00 | 0x10 | 0x20  # BPF_LD | BPF_B | BPF_ABS
BPF_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
BPF_JA = 0x05 | 0x00  # BPF_JMP | BPF_JA
BPF_MOD_K = 0x04 | 0x90 | 0x00  # BPF_ALU | BPF_MOD | BPF_K
BPF_RET_A = 0x06 | 0x10  # BPF_RET | BPF_A
MAX_WORKERS = 256

Instruction = tuple[int, int, int, int]


def steering_program(workers: int, worker_byte: int = 0) -> list[Instruction]:
    """The classic BPF program: ``(code, jt, jf, k)`` per instruction.

    ``worker_byte``: which byte of the server ID names the worker (1 for a
    two-byte ``host, worker`` server ID behind a fleet balancer).
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers: 1..{MAX_WORKERS}, got {workers}")
    return [
        (BPF_LDB_ABS, 0, 0, 0),  # A = first byte
        (BPF_JSET_K, 0, 2, LONG_HEADER_BIT),  # long header? else skip 2
        (BPF_LDB_ABS, 0, 0, LONG_HEADER_SERVER_ID + worker_byte),
        (BPF_JA, 0, 0, 1),
        (BPF_LDB_ABS, 0, 0, SHORT_HEADER_SERVER_ID + worker_byte),
        (BPF_MOD_K, 0, 0, workers),
        (BPF_RET_A, 0, 0, 0),
    ]


def attach_steering(sock: socket.socket, workers: int, worker_byte: int = 0) -> None:
    """Attach :func:`steering_program` to the reuseport group of ``sock`` (Linux only)."""
    program = steering_program(workers, worker_byte)
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
