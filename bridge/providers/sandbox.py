"""The embedded sandbox carrier: lets the bridge run with no carrier account at all.

- Outbound: the text is logged and the message is marked ``sent`` with a local id.
- Inbound: POST to the sandbox webhook, JSON or form, ``{"from", "to", "text"}`` plus an
  optional ``"id"`` (a repeat of the same id is stored once, as with a real carrier), or a
  delivery report ``{"id", "status": "delivered" | "failed"}`` for a message it "sent".

It is authenticated by source address: only loopback may post to it, unless a
``webhook_token`` is configured, which is then required instead.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from typing import Literal

from bridge.model import (
    DeliveryReport,
    InboundEvent,
    InboundMessage,
    MediaRef,
    OutboundSms,
    SendResult,
    Sent,
    State,
)
from bridge.numbers import InvalidNumber, to_e164
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
)

log = logging.getLogger("bridge.providers.sandbox")

REPORT_STATES = {"sent": State.SENT, "delivered": State.DELIVERED, "failed": State.FAILED}


class SandboxConfig(ProviderConfig):
    type: Literal["sandbox"]


class SandboxProvider(Provider):
    Config = SandboxConfig
    webhook_auth = "loopback clients only (or a webhook_token in the URL path)"

    async def start(self) -> None:  # no HTTP client needed
        return None

    async def _send(self, msg: OutboundSms) -> SendResult:
        carrier_id = f"sandbox-{uuid.uuid4().hex}"
        log.info(
            "sandbox carrier accepted message %s from %s to %s (%d chars, %d media)",
            msg.message_id, msg.sender_id or msg.from_number, msg.to_number,
            len(msg.text), len(msg.media),
        )
        return Sent(carrier_id)

    def verify(self, req: WebhookRequest) -> None:
        if self.config.webhook_token is not None:
            super().verify(req)
            return
        try:
            loopback = ipaddress.ip_address(req.remote).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise WebhookUnauthorized("the sandbox accepts webhooks from loopback only")

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        data = req.json() if req.content_type == "application/json" else req.form_dict()
        if not isinstance(data, dict):
            raise WebhookMalformed("expected a JSON object")
        status = str(data.get("status") or "").lower()
        if status:
            if status not in REPORT_STATES or not data.get("id"):
                raise WebhookMalformed("a report needs an id and status sent|delivered|failed")
            return [DeliveryReport(str(data["id"]), REPORT_STATES[status], carrier_status=status)]
        try:
            sender = to_e164(str(data.get("from") or ""), self.config.default_region)
            recipient = to_e164(str(data.get("to") or ""), self.config.default_region)
        except InvalidNumber as exc:
            raise WebhookMalformed(str(exc)) from None
        text = data.get("text", "")
        if not isinstance(text, str):
            raise WebhookMalformed("text must be a string")
        media = data.get("media") or []
        if not isinstance(media, list) or not all(isinstance(u, str) for u in media):
            raise WebhookMalformed("media must be a list of URLs")
        carrier_id = str(data.get("id") or f"sandbox-in-{uuid.uuid4().hex}")
        return [InboundMessage(carrier_id, sender, recipient, text,
                               tuple(MediaRef(u) for u in media))]
