"""HTTP/1.1 requests written byte by byte, for what no HTTP client library will send:
header bytes that are not UTF-8, NULs, oversized request lines, bodies cut short."""

from __future__ import annotations

import socket
import struct
import time


def request_bytes(method: str, path: bytes | str, headers: list[tuple[bytes | str, bytes | str]],
                  body: bytes = b"", *, content_length: int | None = None) -> bytes:
    def b(value: bytes | str) -> bytes:
        return value if isinstance(value, bytes) else value.encode()

    lines = [f"{method} ".encode() + b(path) + b" HTTP/1.1", b"Host: 127.0.0.1",
             b"Connection: close"]
    lines += [b(k) + b": " + b(v) for k, v in headers]
    length = len(body) if content_length is None else content_length
    if body or content_length is not None:
        lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(port: int, data: bytes, *, timeout: float = 10.0,
             source: str = "127.0.0.1") -> tuple[int | None, bytes]:
    """Send ``data``, read the answer to the end: (status, body), status None if the server
    closed without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1."):
        return None, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def cut_short(port: int, data: bytes, keep: int, pause: float = 0.2) -> None:
    """Send the first ``keep`` bytes of a request, wait ``pause`` seconds (the server is
    reading the body by then), then go away (a reset, not a clean close)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(data[:keep])
        time.sleep(pause)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
