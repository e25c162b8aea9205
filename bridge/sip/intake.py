"""Requests that reach the bridge's own SIP listeners (UDP, TCP, TLS), answered by us.

PJSIP answers an out-of-dialog MESSAGE before its callback runs and cannot take a message
larger than its 4,000-byte buffer. So the bridge listens on its SIP ports itself: each
MESSAGE goes through the one decoder (``wire.decode``) to the core, and is answered **after**
the core has stored it (or refused and explained it): a 200 means the text is on disk. A
text the store cannot take gets 503 with Retry-After (and a notice). OPTIONS is answered 200
(PBX keepalives); other requests 405. PJSIP, on free ports of its own, registers and sends.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from bridge.model import SipText
from bridge.sip import wire

log = logging.getLogger("bridge.sip")

ALLOW = "MESSAGE, OPTIONS"


class Intake:
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
        self._tag = secrets.token_hex(4)

    async def answer(self, message: wire.RawMessage, source: str,
                     transport: str) -> bytes | None:
        """The response to one request (None for a response or an ACK: nothing to say)."""
        if message.start_line.startswith("SIP/2.0 "):
            return None  # a response: nothing we send over these sockets expects one
        if not _is_request(message):
            log.debug("SIP/%s from %s: not a SIP request; ignored", transport, source)
            return None
        method = message.start_line.split(" ", 1)[0].upper()
        if method == "ACK":
            return None
        if method == "OPTIONS":
            return self.response(message, 200, "OK")
        if method != "MESSAGE":
            return self.response(message, 405, "Method Not Allowed")
        try:
            text = wire.decode(message, account=self.account_for(message), source=source,
                               max_body_bytes=self.max_body_bytes)
        except Exception:  # a defect must not cost the sender their text without a word
            log.exception("SIP/%s MESSAGE from %s could not be decoded", transport, source)
            return self.response(message, 500, "Server Internal Error")
        if text is None:  # a notification or typing indicator: nothing more to do
            return self.response(message, 200, "OK")
        if await self.on_text(text):
            return self.response(message, 200, "OK")
        return self.response(message, 503, "Service Unavailable", retry_after=60)

    def response(self, request: wire.RawMessage, code: int, reason: str, *,
                 retry_after: int | None = None, via: str | None = None) -> bytes:
        """A response to ``request`` (RFC 3261 §8.2.6): its Vias, From, Call-ID and CSeq,
        its To with our tag. ``via`` replaces the top Via (UDP adds received/rport)."""
        vias = list(request.all("via"))
        if via is not None and vias:
            vias[0] = via
        lines = [f"SIP/2.0 {code} {reason}", *(f"Via: {v}" for v in vias)]
        to = request.header("to")
        if to and ";tag=" not in to.lower():
            to += f";tag={self._tag}"
        for name, value in (("From", request.header("from")), ("To", to),
                            ("Call-ID", request.header("call-id")),
                            ("CSeq", request.header("cseq"))):
            lines.append(f"{name}: {value}")
        if code == 405:
            lines.append(f"Allow: {ALLOW}")
        if retry_after is not None:
            lines.append(f"Retry-After: {retry_after}")
        lines += [f"Server: {self.user_agent}", "Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode("utf-8", "surrogateescape")


REQUIRED = ("via", "from", "to", "call-id", "cseq")  # RFC 3261 §8.1.1: without them, no answer


def _is_request(message: wire.RawMessage) -> bool:
    parts = message.start_line.split(" ")
    return (len(parts) == 3 and parts[2] == "SIP/2.0" and parts[0].isascii()
            and parts[0].isalpha() and all(message.header(h) for h in REQUIRED))
