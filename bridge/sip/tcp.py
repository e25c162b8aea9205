"""SIP over TCP and TLS: framing and connections for the bridge's own listener
(``intake.Intake`` answers each request).

Requests are framed by Content-Length (RFC 3261 §18.3). Texts up to ``sip.max_body_bytes``
are accepted; larger ones are refused with a notice (answered 200, like every refusal, so the
sender reads the reason); a body beyond ``HARD_BODY_LIMIT`` gets 413 and the connection is
closed. Requests on one connection are handled concurrently (responses carry their
transaction's Via, so they need not come back in order), up to ``IN_FLIGHT_PER_CONNECTION``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from bridge.sip import wire
from bridge.sip.intake import Intake

log = logging.getLogger("bridge.sip")

MAX_HEADER_BYTES = 16 * 1024
HARD_BODY_LIMIT = 1024 * 1024  # beyond this a body is not even read: 413, connection closed
IDLE_SECONDS = 600.0  # a connection with nothing to say for this long is closed
READ_SECONDS = 30.0  # a request must arrive whole within this once it has begun
IN_FLIGHT_PER_CONNECTION = 256
MAX_CONNECTIONS = 512


class _Malformed(Exception):
    pass


class SipTcpListener:
    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        server = await asyncio.start_server(self._serve, host, port, ssl=tls,
                                            limit=MAX_HEADER_BYTES, reuse_address=True)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername") or ("?", 0)
        source = f"{peer[0]}:{peer[1]}" if ":" not in str(peer[0]) else f"[{peer[0]}]:{peer[1]}"
        if len(self._connections) >= MAX_CONNECTIONS:
            log.warning("SIP/TCP connection from %s refused: %d connections open", source,
                        MAX_CONNECTIONS)
            writer.close()
            return
        self._connections.add(task)
        slots = asyncio.Semaphore(IN_FLIGHT_PER_CONNECTION)
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    raw = await self._read_request(reader, writer)
                except _Malformed as exc:
                    log.warning("SIP/TCP from %s: %s; connection closed", source, exc)
                    return
                if raw is None:
                    return
                await slots.acquire()
                job = asyncio.create_task(self._handle(raw, source, writer))
                pending.add(job)
                job.add_done_callback(pending.discard)
                job.add_done_callback(lambda _: slots.release())
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError):
            return
        finally:
            if pending:  # answers still being stored go out before the connection closes
                await asyncio.wait(pending, timeout=10)
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> bytes | None:
        """One request, or None when the peer closed. Keepalive CRLFs (RFC 5626 §3.5.1)
        are answered with a CRLF."""
        blank = 0
        while True:
            try:
                first = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_SECONDS)
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    raise _Malformed("connection closed inside a request") from None
                return None
            except asyncio.LimitOverrunError:
                raise _Malformed("a header line is too long") from None
            if first.strip():
                break
            blank += 1
            if blank % 2 == 0:
                writer.write(b"\r\n")  # a CRLFCRLF ping gets a CRLF pong
        try:
            rest = b"" if first.endswith(b"\r\n\r\n") else await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
        except asyncio.LimitOverrunError:
            raise _Malformed(f"headers larger than {MAX_HEADER_BYTES:,} bytes") from None
        head = first + rest
        message = wire.split_message(head)
        declared = message.header("content-length")
        if not declared:
            length = 0
        elif declared.isascii() and declared.isdigit():
            length = int(declared)
        else:
            raise _Malformed("a Content-Length that is not a number")
        if length > HARD_BODY_LIMIT:
            writer.write(self.intake.response(message, 413, "Request Entity Too Large"))
            raise _Malformed(f"a body of {length:,} bytes (at most {HARD_BODY_LIMIT:,})")
        body = await asyncio.wait_for(reader.readexactly(length), READ_SECONDS) if length \
            else b""
        return head + body

    async def _handle(self, raw: bytes, source: str, writer: asyncio.StreamWriter) -> None:
        transport = "TLS" if writer.get_extra_info("sslcontext") else "TCP"
        answer = await self.intake.answer(wire.split_message(raw), source, transport)
        if answer is not None and not writer.is_closing():
            writer.write(answer)
