"""SIP over TCP (and TLS) for MESSAGEs that phones and PBXs send to the bridge.

pjsip cannot take a SIP message larger than its 4,000-byte buffer (``PJSIP_MAX_PKT_LEN`` in
this wheel): over TCP it does not even answer. So the bridge's TCP listener is its own: it
frames requests by Content-Length (RFC 3261 §18.3), hands each MESSAGE through the same
decoder as the UDP path (``wire.decode``), and answers **after** the core has stored the text,
so a 200 over TCP always means the text is on disk (no crash window at all). Texts up to
``sip.max_body_bytes`` are accepted; larger ones are refused with a notice (answered 200,
like every refusal, so the sender reads the reason), and bodies beyond ``HARD_BODY_LIMIT``
get 413 and the connection is closed. OPTIONS is answered 200 (PBX keepalives); other
methods 405. pjsua keeps a TCP transport of its own on a free port for what the bridge sends.

Requests on one connection are handled concurrently (responses carry their transaction's
Via, so they need not come back in order), up to ``IN_FLIGHT_PER_CONNECTION``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable

from bridge.model import SipText
from bridge.sip import wire

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
    def __init__(
        self,
        on_text: Callable[[SipText], Awaitable[bool]],
        account_for: Callable[[wire.RawMessage], str],
        *,
        max_body_bytes: int,
        user_agent: str,
    ) -> None:
        self.on_text = on_text  # True once the text is stored (or refused and explained)
        self.account_for = account_for  # the SIP account a request reached
        self.max_body_bytes = max_body_bytes
        self.user_agent = user_agent
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._tag = secrets.token_hex(4)

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
            self._write(writer, wire.split_message(head), 413, "Request Entity Too Large")
            raise _Malformed(f"a body of {length:,} bytes (at most {HARD_BODY_LIMIT:,})")
        body = await asyncio.wait_for(reader.readexactly(length), READ_SECONDS) if length \
            else b""
        return head + body

    async def _handle(self, raw: bytes, source: str, writer: asyncio.StreamWriter) -> None:
        message = wire.split_message(raw)
        if message.start_line.startswith("SIP/2.0 "):
            return  # a response: we send nothing over these connections that expects one
        method = message.start_line.split(" ", 1)[0].upper()
        if method == "ACK":
            return
        if method == "OPTIONS":
            self._write(writer, message, 200, "OK")
            return
        if method != "MESSAGE":
            self._write(writer, message, 405, "Method Not Allowed")
            return
        try:
            text = wire.decode(raw, account=self.account_for(message), source=source,
                               max_body_bytes=self.max_body_bytes)
        except Exception:  # a defect must not cost the sender their text without a word
            log.exception("SIP/TCP MESSAGE from %s could not be decoded", source)
            self._write(writer, message, 500, "Server Internal Error")
            return
        if text is None:  # a notification or typing indicator: nothing more to do
            self._write(writer, message, 200, "OK")
            return
        stored = await self.on_text(text)
        if stored:
            self._write(writer, message, 200, "OK")
        else:
            self._write(writer, message, 503, "Service Unavailable", retry_after=60)

    def _write(self, writer: asyncio.StreamWriter, request: wire.RawMessage, code: int,
               reason: str, retry_after: int | None = None) -> None:
        if writer.is_closing():
            return
        lines = [f"SIP/2.0 {code} {reason}"]
        lines += [f"Via: {via}" for via in request.all("via")]
        to = request.header("to")
        if to and ";tag=" not in to.lower():
            to += f";tag={self._tag}"
        for name, value in (("From", request.header("from")), ("To", to),
                            ("Call-ID", request.header("call-id")),
                            ("CSeq", request.header("cseq"))):
            lines.append(f"{name}: {value}")
        if code == 405:
            lines.append("Allow: MESSAGE, OPTIONS")
        if retry_after is not None:
            lines.append(f"Retry-After: {retry_after}")
        lines += [f"Server: {self.user_agent}", "Content-Length: 0", "", ""]
        writer.write("\r\n".join(lines).encode("utf-8", "surrogateescape"))
