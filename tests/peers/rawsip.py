"""Raw SIP over UDP and TCP for hostile-input tests: a MESSAGE built from bytes (any header may
hold anything), sent with a plain socket, and its final answer read within a bounded wait.

Also the bridge's SQLite database, read directly (read-only) for oracles.
"""

from __future__ import annotations

import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class RawMessage:
    """One MESSAGE as bytes. ``None`` leaves a header out. ``length_delta`` makes
    Content-Length lie by that many bytes; ``content_length`` (raw bytes) replaces it."""

    from_header: bytes
    to_header: bytes
    call_id: bytes
    cseq: bytes = b"1 MESSAGE"
    content_type: bytes | None = b"text/plain;charset=UTF-8"
    body: bytes = b""
    length_delta: int = 0
    content_length: bytes | None = None

    def encode(self, transport: str, port: int, local_port: int) -> bytes:
        branch = "z9hG4bK" + uuid.uuid4().hex  # unique: each MESSAGE is its own transaction
        via = f"SIP/2.0/{transport.upper()} {HOST}:{local_port};branch={branch};rport"
        length = (self.content_length if self.content_length is not None
                  else str(max(0, len(self.body) + self.length_delta)).encode())
        headers = [
            f"MESSAGE sip:+15557654321@{HOST}:{port} SIP/2.0".encode(),
            f"Via: {via}".encode(),
            b"Max-Forwards: 70",
            b"From: " + self.from_header,
            b"To: " + self.to_header,
            b"Call-ID: " + self.call_id,
            b"CSeq: " + self.cseq,
        ]
        if self.content_type is not None:
            headers.append(b"Content-Type: " + self.content_type)
        headers.append(b"Content-Length: " + length)
        return b"\r\n".join(headers) + b"\r\n\r\n" + self.body


def _status(data: bytes) -> int | None:
    """The status code of the first final response in ``data``, if there is one."""
    for line in data.split(b"\r\n"):
        parts = line.split(b" ", 2)
        if len(parts) >= 2 and parts[0] == b"SIP/2.0" and parts[1].isdigit():
            code = int(parts[1])
            if code >= 200:
                return code
    return None


def send_udp(message: RawMessage, port: int, timeout: float = 1.0) -> int | None:
    """Send over UDP (no retransmission); the final status, or None if none came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.sendto(message.encode("udp", port, sock.getsockname()[1]), (HOST, port))
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                data, _ = sock.recvfrom(65535)
            except OSError:
                return None
            code = _status(data)
            if code is not None:
                return code
    return None


def send_tcp(message: RawMessage, port: int, timeout: float = 1.0) -> int | None:
    """Send over a new TCP connection; the final status, or None if none came."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(message.encode("tcp", port, sock.getsockname()[1]))
        deadline = time.monotonic() + timeout
        data = b""
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65535)
            except OSError:
                return None
            if not chunk:
                return _status(data)
            data += chunk
            code = _status(data)
            if code is not None:
                return code
    return None


def send_raw(transport: str, message: RawMessage, port: int, timeout: float = 1.0) -> int | None:
    return (send_udp if transport == "udp" else send_tcp)(message, port, timeout)


def stored_rows(state_dir: Path, direction: str | None = None) -> list[dict]:
    """The bridge's messages table (read-only, safe while it runs: SQLite WAL)."""
    path = state_dir / "bridge.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    db.row_factory = sqlite3.Row
    # the bridge may store what a hostile peer sent: read text as bytes, decode leniently
    db.text_factory = lambda raw: raw.decode("utf-8", errors="surrogateescape")
    try:
        sql = "SELECT * FROM messages"
        rows = (db.execute(sql + " WHERE direction = ?", (direction,)) if direction
                else db.execute(sql))
        return [dict(row) for row in rows]
    finally:
        db.close()


def settled_rows(state_dir: Path, direction: str | None, expected: int,
                 timeout: float = 10.0, quiet: float = 1.0) -> list[dict]:
    """The rows once they stop changing: at least ``expected`` of them and no change for
    ``quiet`` seconds, or whatever is there after ``timeout``."""
    deadline = time.monotonic() + timeout
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        rows = stored_rows(state_dir, direction)
        if len(rows) != count:
            count, since = len(rows), time.monotonic()
        elif count >= expected and time.monotonic() - since >= quiet:
            return rows
        time.sleep(0.2)
    return stored_rows(state_dir, direction)
