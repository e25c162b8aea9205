"""Texts flowing both ways until told to stop, for the kill tests: a pjsua2 phone sending
MESSAGEs and signed Twilio webhooks arriving, with what was acknowledged recorded (a MESSAGE
answered 200, a webhook answered 200): exactly what must be delivered afterwards."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.carrier_server import CarrierServer
from tests.peers.harness import BridgeProcess, Phone, wait_until
from tests.peers.twilio import inbound_params, post_twilio_webhook


class Traffic:
    def __init__(self) -> None:
        self.acked_out: list[str] = []  # bodies of MESSAGEs answered 200
        self.acked_in: dict[str, str] = {}  # MessageSid -> body of webhooks answered 200
        self.sequence = 0

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    async def send_texts(self, phone: Phone, target: str, stop: asyncio.Event,
                         timeout: float = 2.0) -> None:
        while not stop.is_set():
            body = f"out-{self._next()}"
            # a MESSAGE caught by a kill gets no answer: not acknowledged
            code = await asyncio.to_thread(phone.send, target, body, timeout=timeout)
            if code == 200:
                self.acked_out.append(body)

    async def post_webhooks(self, bridge: BridgeProcess, stop: asyncio.Event,
                            pause: float = 0.0) -> None:
        while not stop.is_set():
            n = self._next()
            sid, body = f"SM{n:032d}", f"in-{n}"
            try:
                status = await post_twilio_webhook(bridge, inbound_params(sid, body))
            except aiohttp.ClientError:  # the bridge is down: not acknowledged
                await asyncio.sleep(0.05)
                continue
            if status == 200:
                self.acked_in[sid] = body
            await asyncio.sleep(pause)

    async def all_delivered(self, carrier: CarrierServer, phone: Phone,
                            timeout: float = 60) -> tuple[int, int]:
        """Wait until every acknowledged text arrived (outbound at the carrier, inbound at the
        phone); returns the repeats each saw (delivery is at least once)."""

        def carrier_bodies() -> set[str]:
            return {dict(r.form())["Body"] for r in carrier.requests}

        await asyncio.to_thread(wait_until, lambda: set(self.acked_out) <= carrier_bodies(),
                                timeout, what="every acknowledged outbound text at the carrier")
        await asyncio.to_thread(
            wait_until, lambda: set(self.acked_in.values()) <= {m["body"] for m in phone.messages},
            timeout, what="every acknowledged inbound text at the phone")
        delivered = [m["body"] for m in phone.messages]
        return len(carrier.requests) - len(carrier_bodies()), len(delivered) - len(set(delivered))
