"""Telnyx Messaging API v2.

Facts and sources (see also shared providers.md §2):
- Send: ``POST https://api.telnyx.com/v2/messages``, ``Authorization: Bearer <API key>``, JSON
  ``{"from", "to", "text", "media_urls", "messaging_profile_id", "webhook_url"}``, numbers as
  ``+E.164``. Success is 200 ``{"data": {"id", "to": [{"status": "queued"}], ...}}``. Errors are
  ``{"errors": [{"code", "title", "detail", "source"}]}``. [sdk] telnyx-python 4.189.0
  ``resources/messages/messages.py``, ``types/message_send_params.py``,
  ``types/outbound_message_payload.py``, ``types/shared/messaging_error.py``
- ``Idempotency-Key``: the SDK sends none (``_base_client.py`` leaves ``_idempotency_header``
  at None and ``messages.send`` takes no key), so whether ``/v2/messages`` honours one cannot
  be settled from the SDK. We send one anyway, derived from the bridge message id, the part
  and a hash of the body (harmless if ignored); a retry after a timeout may therefore still
  send twice if Telnyx ignores it. [sdk] telnyx-python src/telnyx/_base_client.py,
  src/telnyx/resources/messages/messages.py
- An SMS over 10 segments (1,530 GSM-7 / 670 UCS-2 characters) is refused with ``40302``
  unless the messaging profile auto-chunks, so longer texts are split and sent as several
  messages. [doc] developers.telnyx.com/docs/messaging/messages/sms-chunking
- A recipient who texted STOP gives ``40300`` "Blocked due to STOP message" (HTTP 409).
  [doc] developers.telnyx.com/api/errors/40300, .../messages/advanced-opt-in-out
- Webhooks are JSON ``{"data": {"event_type", "id", "payload": {...}}, "meta": {...}}``:
  ``message.received`` (inbound; ``payload.from.phone_number``, ``payload.to[].phone_number``,
  ``payload.text``, ``payload.media[] {url, content_type, size}``), ``message.sent`` and
  ``message.finalized`` (delivery; status per recipient in ``payload.to[].status``, failure
  detail in ``payload.errors[]``). [sdk] ``types/messaging_inbound_message_payload.py``,
  ``types/outbound_message.py``; [doc] developers.telnyx.com/api-reference/callbacks/*
- Signatures: header ``telnyx-signature-ed25519`` = base64 Ed25519 signature over
  ``"{telnyx-timestamp}|{raw body}"``, verified with the account's public key (base64, 32
  bytes, from the portal); the SDK refuses timestamps more than 300 s off.
  [sdk] ``src/telnyx/lib/webhook_verification.py`` (verify_webhook_signature). We verify with
  ``cryptography`` (the SDK uses PyNaCl; both are plain RFC 8032 Ed25519).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, field_validator

from bridge.model import (
    DeliveryReport,
    InboundEvent,
    InboundMessage,
    OutboundSms,
    SendFailed,
    SendResult,
    Sent,
    State,
)
from bridge.numbers import segments, split_text
from bridge.providers.base import (
    Part,
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
    bearer_auth,
    carrier_failure,
    classify_http_failure,
    first_error,
    json_object,
    media_object,
    require,
    response_json,
    text_field,
)
from bridge.secrets import Secret, reveal

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
MAX_SEGMENTS = 10


class TelnyxConfig(ProviderConfig):
    type: Literal["telnyx"]
    api_key: Secret
    # The account's webhook signing public key (Portal > Keys & Credentials > Public Key),
    # base64 as shown there. Not a secret.
    public_key: str
    messaging_profile_id: str | None = None  # needed for alphanumeric senders
    delivery_reports: bool = True  # ask Telnyx to post delivery events to our webhook
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)

    @field_validator("public_key")
    @classmethod
    def _public_key_is_ed25519(cls, value: str) -> str:
        value = value.strip()
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("public_key must be the base64 key from the Telnyx portal") from None
        if len(raw) != 32:
            raise ValueError(f"public_key must decode to 32 bytes (Ed25519), not {len(raw)}")
        return value


# Telnyx per-recipient statuses mapped to ours; the rest ("queued", "sending") carry no news.
STATUS_MAP: dict[str, State] = {
    "sent": State.SENT,
    "delivery_unconfirmed": State.SENT,  # final, but the carrier never confirmed either way
    "delivered": State.DELIVERED,
    "read": State.DELIVERED,
    "sending_failed": State.FAILED,
    "delivery_failed": State.FAILED,
    "expired": State.FAILED,
}
DELIVERY_EVENTS = frozenset({"message.sent", "message.finalized", "message.read"})


def header(headers: Mapping[str, str], name: str) -> str:
    """A header by case-insensitive name (works for plain dicts as well as CIMultiDicts)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return (value or "").strip()


def signed_message(timestamp: str, body: bytes) -> bytes:
    """What Telnyx signs: ``"{timestamp}|{raw body}"``."""
    return timestamp.encode("ascii") + b"|" + body


def split_for_telnyx(text: str) -> list[str]:
    """Parts of at most ``MAX_SEGMENTS`` SMS segments each."""
    if segments(text).count <= MAX_SEGMENTS:
        return [text]
    limit = 1530 if segments(text).encoding == "GSM-7" else 670
    while True:
        parts = split_text(text, limit)
        if all(segments(p).count <= MAX_SEGMENTS for p in parts):
            return parts
        limit = max(1, limit * 9 // 10)




class TelnyxProvider(Provider):
    Config = TelnyxConfig
    default_api_base = "https://api.telnyx.com/v2"
    webhook_auth = "telnyx-signature-ed25519 (Ed25519 over timestamp|body, the account public key)"
    opt_out_codes = frozenset({"40300"})
    webhook_content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    config: TelnyxConfig

    def __init__(self, config: ProviderConfig, public_url: str = "http://127.0.0.1:8080") -> None:
        super().__init__(config, public_url)
        assert isinstance(config, TelnyxConfig)
        self._verify_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(config.public_key))

    # --- sending ----------------------------------------------------------------------------

    def split(self, msg: OutboundSms) -> list[Part]:
        if msg.media:
            return [Part(msg.text, msg.media)]
        return [Part(text) for text in split_for_telnyx(msg.text)]

    async def _send_part(self, msg: OutboundSms, part: Part, index: int,
                         total: int) -> SendResult:
        cfg = self.config
        text, media = part.text, part.media
        body: dict[str, Any] = {"from": msg.sender_id or msg.from_number, "to": msg.to_number}
        if text:
            body["text"] = text
        if media:
            body["media_urls"] = [m.url for m in media]
        if cfg.messaging_profile_id:
            body["messaging_profile_id"] = cfg.messaging_profile_id
        if cfg.delivery_reports:
            body["webhook_url"] = self.webhook_url()
        data = json.dumps(body, ensure_ascii=False).encode()
        digest = hashlib.sha256(data).hexdigest()[:32]
        headers = {
            **bearer_auth(reveal(cfg.api_key)),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": f"sip-sms-bridge-{msg.message_id}-{index}-{digest}",
        }
        async with self.http.post(f"{self.api_base}/messages", data=data,
                                  headers=headers) as resp:
            payload = await response_json(resp)
            record = payload.get("data") if isinstance(payload, dict) else None
            if resp.status in (200, 201, 202) and isinstance(record, dict) and record.get("id"):
                status = ""
                recipients = record.get("to")
                if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict):
                    status = str(recipients[0].get("status") or "")
                return Sent(str(record["id"]), detail=status or None)
            return self._failure(resp.status, payload, resp.headers)

    @staticmethod
    def _failure(status: int, payload: object, headers) -> SendFailed:
        first = first_error(payload)
        if first is None:
            return classify_http_failure(status, "no error detail", headers)
        text = ": ".join(str(first[k]) for k in ("title", "detail") if first.get(k))
        return carrier_failure(status, headers, "Telnyx", text or "no error detail",
                               first.get("code"))

    # --- webhooks ---------------------------------------------------------------------------

    def verify(self, req: WebhookRequest) -> None:
        super().verify(req)
        signature = header(req.headers, SIGNATURE_HEADER)
        timestamp = header(req.headers, TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise WebhookUnauthorized("telnyx-signature-ed25519 or telnyx-timestamp missing")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise WebhookUnauthorized("telnyx-timestamp is not a Unix time")
        skew = abs(req.received_at - int(timestamp))
        if skew > self.config.webhook_tolerance_seconds:
            raise WebhookUnauthorized(f"telnyx-timestamp is {skew:.0f} s away from now")
        try:
            raw_signature = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookUnauthorized("telnyx-signature-ed25519 is not base64") from None
        if len(raw_signature) != 64:
            raise WebhookUnauthorized("telnyx-signature-ed25519 is not an Ed25519 signature")
        try:
            self._verify_key.verify(raw_signature, signed_message(timestamp, req.body))
        except InvalidSignature:
            raise WebhookUnauthorized("telnyx-signature-ed25519 does not match") from None

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        envelope = json_object(req.json(), "the webhook body")
        data = json_object(require(envelope, "data"), "data")
        event_type = data.get("event_type")
        if not isinstance(event_type, str):
            raise WebhookMalformed("data.event_type is not a string")
        payload = json_object(require(data, "payload"), "data.payload")
        if event_type == "message.received":
            return [self._inbound(payload)]
        if event_type in DELIVERY_EVENTS:
            report = self._report(payload)
            return [report] if report is not None else []
        return []  # other events (number, profile, ...) carry nothing for us

    def _inbound(self, payload: Mapping[str, Any]) -> InboundMessage:
        carrier_id = require(payload, "id")
        if not isinstance(carrier_id, str):
            raise WebhookMalformed("payload.id is not a string")
        sender = json_object(require(payload, "from"), "payload.from")
        recipients = require(payload, "to")
        if isinstance(recipients, list) and recipients:
            recipient = json_object(recipients[0], "payload.to[0]").get("phone_number")
        elif isinstance(recipients, str):
            recipient = recipients
        else:
            raise WebhookMalformed("payload.to is neither a list of recipients nor a number")
        text = text_field(payload, "text", "payload.text")
        media_list = payload.get("media") or []
        if not isinstance(media_list, list):
            raise WebhookMalformed("payload.media is not a list")
        media = []
        for entry in media_list:
            media.append(media_object(json_object(entry, "payload.media[]"), "payload.media[]"))
        return InboundMessage(
            carrier_id,
            self.inbound_number(sender.get("phone_number"), "from"),
            self.inbound_number(recipient, "to"),
            text,
            tuple(media),
        )

    def _report(self, payload: Mapping[str, Any]) -> DeliveryReport | None:
        carrier_id = require(payload, "id")
        if not isinstance(carrier_id, str):
            raise WebhookMalformed("payload.id is not a string")
        recipients = payload.get("to")
        if not isinstance(recipients, list) or not recipients:
            raise WebhookMalformed("payload.to is not a list of recipients")
        status = json_object(recipients[0], "payload.to[0]").get("status")
        if not isinstance(status, str):
            raise WebhookMalformed("payload.to[0].status is not a string")
        state = STATUS_MAP.get(status.lower())
        if state is None:
            return None
        error = None
        errors = payload.get("errors")
        if state is State.FAILED and isinstance(errors, list) and errors:
            first = errors[0] if isinstance(errors[0], Mapping) else {}
            parts = [str(first[k]) for k in ("code", "title", "detail") if first.get(k)]
            error = ": ".join(parts)[:500] or None
        return DeliveryReport(carrier_id, state, carrier_status=status, error=error)
