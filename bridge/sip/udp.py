"""SIP over UDP for the bridge's own listener (``intake.Intake`` answers each request).

A datagram is a whole SIP message (RFC 3261 §18.3: bytes past Content-Length are dropped,
one shorter than it says is refused with a notice), read up to 64 KiB, so texts up to
``sip.max_body_bytes`` arrive whole where the network carries them. UDP senders retransmit
a request until it is answered (Timer E), so this listener keeps each MESSAGE's answer for
32 s (64 x T1, how long a sender may keep trying, Timer F) and repeats it for a
retransmission; one that arrives while its text is being stored is ignored (the answer
follows). That small cache is the only state kept per MESSAGE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from bridge.sip import wire
from bridge.sip.intake import Intake

log = logging.getLogger("bridge.sip")

ANSWER_KEPT_SECONDS = 32.0  # 64 x T1: a sender stops retransmitting by then (Timer F)
MAX_KEPT_ANSWERS = 200_000  # bounds the cache whatever the rate (about 60 MB at most)
MAX_IN_FLIGHT = 4096  # MESSAGEs being stored at once; more are dropped (the sender retries)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: SipUdpListener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not an asyncio.DatagramTransport subclass, but is one
        self.listener._transports.append(transport)  # type: ignore[arg-type]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.listener._received(data, addr, self)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        log.debug("SIP/UDP: %s", exc)


class SipUdpListener:
    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self._transports: list[asyncio.DatagramTransport] = []
        self._answers: OrderedDict[tuple[str, str, str], tuple[float, bytes]] = OrderedDict()
        self._in_flight: dict[tuple[str, str, str], asyncio.Task[None]] = {}

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(host, port))
        return int(transport.get_extra_info("sockname")[1])

    async def stop(self) -> None:
        for transport in self._transports:
            transport.close()
        if self._in_flight:  # texts being stored are finished (and answered if we still can)
            await asyncio.wait(list(self._in_flight.values()), timeout=10)
        self._transports.clear()

    def _received(self, data: bytes, addr: tuple[str, int], protocol: _Protocol) -> None:
        if not data.strip():
            return  # a keepalive
        message = wire.split_message(data)
        key = _transaction(message)
        now = time.monotonic()
        self._forget_old(now)
        kept = self._answers.get(key)
        if kept is not None:  # a retransmission of something answered: the same answer
            self._send(kept[1], message, addr)
            return
        if key in self._in_flight or len(self._in_flight) >= MAX_IN_FLIGHT:
            return  # being stored (the answer follows), or overloaded (the sender retries)
        self._in_flight[key] = asyncio.get_running_loop().create_task(
            self._handle(message, addr, key))

    async def _handle(self, message: wire.RawMessage, addr: tuple[str, int],
                      key: tuple[str, str, str]) -> None:
        try:
            source = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
            answer = await self.intake.answer(message, source, "UDP")
            if answer is None:
                return
            answer = _with_received(answer, message, addr)
            self._answers[key] = (time.monotonic(), answer)
            while len(self._answers) > MAX_KEPT_ANSWERS:
                self._answers.popitem(last=False)
            self._send(answer, message, addr)
        finally:
            self._in_flight.pop(key, None)

    def _forget_old(self, now: float) -> None:
        while self._answers:
            key, (at, _) = next(iter(self._answers.items()))
            if now - at < ANSWER_KEPT_SECONDS:
                return
            del self._answers[key]

    def _send(self, answer: bytes, request: wire.RawMessage, addr: tuple[str, int]) -> None:
        if not self._transports:
            return
        try:
            self._transports[0].sendto(answer, _reply_address(request, addr))
        except OSError as exc:
            log.debug("SIP/UDP answer to %s not sent: %s", addr, exc)


def _transaction(message: wire.RawMessage) -> tuple[str, str, str]:
    """What identifies a request's transaction (RFC 3261 §17.2.3): the top Via's branch,
    with Call-ID and CSeq for senders that predate the magic cookie."""
    via = message.all("via")[0] if message.all("via") else ""
    branch = next((p.split("=", 1)[1] for p in via.split(";")[1:]
                   if p.strip().lower().startswith("branch=")), "")
    return branch.strip(), message.header("call-id"), message.header("cseq")


def _via_params(via: str) -> tuple[str, int, dict[str, str | None]]:
    """The sent-by host and port and the parameters of a Via value."""
    head, *params = via.split(";")
    sent_by = head.split()[-1] if head.split() else ""
    host, _, port = sent_by.rpartition(":") if sent_by.count(":") == 1 else (sent_by, "", "")
    values: dict[str, str | None] = {}
    for param in params:
        name, eq, value = param.strip().partition("=")
        values[name.lower()] = value if eq else None
    return host or sent_by, int(port) if port.isdigit() else 5060, values


def _reply_address(request: wire.RawMessage, addr: tuple[str, int]) -> tuple[str, int]:
    """RFC 3261 §18.2.2 with RFC 3581: to the source address; to the Via's port unless the
    sender asked (rport) for the port it sent from."""
    vias = request.all("via")
    if not vias:
        return addr
    _, port, params = _via_params(vias[0])
    return (addr[0], addr[1] if "rport" in params else port)


def _with_received(answer: bytes, request: wire.RawMessage, addr: tuple[str, int]) -> bytes:
    """The top Via of the answer with received= and rport= filled in (RFC 3261 §18.2.1,
    RFC 3581), so the sender learns the address we saw."""
    vias = request.all("via")
    if not vias:
        return answer
    top = vias[0]
    host, _, params = _via_params(top)
    new = top
    if "rport" in params and params["rport"] is None:
        new = new.replace(";rport", f";rport={addr[1]}", 1)
    if host != addr[0] and "received" not in params:
        new += f";received={addr[0]}"
    if new == top:
        return answer
    return answer.replace(f"Via: {top}".encode("utf-8", "surrogateescape"),
                          f"Via: {new}".encode("utf-8", "surrogateescape"), 1)
