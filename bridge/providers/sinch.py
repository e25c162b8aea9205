"""Sinch SMS REST API ("XMS", v1).

Facts and sources (see also shared providers.md §9):
- Send: ``POST https://{region}.sms.api.sinch.com/xms/v1/{service_plan_id}/batches`` (region
  us, eu, au, br or ca), ``Authorization: Bearer <API token>``, JSON ``{"from", "to": [...],
  "body", "type": "mt_text", "delivery_report", "callback_url", "client_reference"}``; MMS is
  ``"type": "mt_media"`` with ``"body": {"url", "message", "subject"}``, one media item per
  batch (so we send one batch per item, the text with the first). ``to`` is E.164; the API
  reference's examples carry the '+'. The answer is the batch, whose ``id`` delivery reports
  refer to as ``batch_id``; errors are ``{"code", "text"}``. [sdk] sinch-sdk-python
  sinch/domains/sms/models/v1/shared/text_request.py, media_body.py,
  core/clients/sinch_client_configuration.py; [doc] developers.sinch.com/docs/sms/
  api-reference/sms/batches (201 Created per the docs; not re-verified, we accept 200 too)
- Inbound: JSON ``{"type": "mo_text", "id", "from", "to", "body": "<text>", "received_at"}``
  or ``"type": "mo_media"`` with ``"body": {"subject", "message", "media": [{"url",
  "content_type", "status": "Uploaded" | "Failed", "code"}]}``; numbers are digits without
  '+'. Delivery reports: ``recipient_delivery_report_sms|mms`` ``{"batch_id", "recipient",
  "status", "code"}`` or ``delivery_report_sms|mms`` ``{"batch_id", "statuses": [{"code",
  "status", "count", "recipients"}]}``; status is one of Queued, Dispatched, Aborted,
  Cancelled, Failed, Delivered, Expired, Rejected, Deleted, Unknown (case varies).
  [sdk] sinch/domains/sms/sinch_events/v1/sms_sinch_event.py, models/v1/shared/
  mo_*_message.py, response/*_delivery_report.py, types/delivery_status_type.py
- Webhook auth, all optional and set up per service plan: HMAC (``x-sinch-webhook-signature``
  = base64(HMAC-SHA256(secret, raw body + "." + nonce + "." + timestamp)) with
  ``x-sinch-webhook-signature-nonce`` / ``-timestamp`` / ``-algorithm`` (HmacSHA256)); or HTTP
  Basic credentials that the account manager provisions on the callback URL. The timestamp is
  unix seconds in all the examples found; an ISO-8601 value is accepted too. Without either,
  a ``webhook_token`` is required (checked at config load). [sdk]
  sinch/domains/authentication/sinch_events/v1/authentication_validation.py
  (``validate_sinch_event_signature_with_nonce``); [doc] sms/api-reference/sms/tag/Webhooks
- Sinch retries 5xx and 429 callbacks with doubling back-off for about 23 hours, other 4xx
  not at all. [doc] same page
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from bridge.model import (
    DeliveryReport,
    InboundEvent,
    InboundMessage,
    MediaRef,
    OutboundSms,
    SendFailed,
    SendResult,
    Sent,
    State,
)
from bridge.providers.base import (
    Part,
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
    bearer_auth,
    carrier_failure,
    constant_time_equal,
    require,
    response_json,
)
from bridge.secrets import Secret, reveal


class SinchConfig(ProviderConfig):
    type: Literal["sinch"]
    service_plan_id: str = Field(pattern=r"^[A-Za-z0-9]{8,64}$")
    api_token: Secret
    region: Literal["us", "eu", "au", "br", "ca"] = "us"
    # HMAC secret of the service plan's callbacks, when signing is enabled.
    webhook_secret: Secret | None = None
    # Basic credentials provisioned on the callback URL by Sinch, if any.
    webhook_username: str | None = None
    webhook_password: Secret | None = None
    webhook_tolerance_seconds: int = Field(default=300, ge=30, le=86400)
    status_callback: bool = True  # ask for per-recipient delivery reports at our webhook

    @model_validator(mode="after")
    def _check_webhook_auth(self) -> SinchConfig:
        if (self.webhook_username is None) != (self.webhook_password is None):
            raise ValueError("webhook_username and webhook_password go together")
        if self.webhook_secret is None and self.webhook_password is None \
                and self.webhook_token is None:
            raise ValueError("Sinch callbacks are unauthenticated unless signed or given Basic "
                             "credentials: set webhook_secret, webhook_username + "
                             "webhook_password, or webhook_token")
        return self


STATUS_MAP: dict[str, State] = {
    "dispatched": State.SENT,
    "delivered": State.DELIVERED,
    "aborted": State.FAILED,
    "cancelled": State.FAILED,
    "failed": State.FAILED,
    "expired": State.FAILED,
    "rejected": State.FAILED,
    "deleted": State.FAILED,
}
REPORT_TYPES = frozenset({"delivery_report_sms", "delivery_report_mms"})
RECIPIENT_REPORT_TYPES = frozenset({"recipient_delivery_report_sms",
                                    "recipient_delivery_report_mms"})
MAX_MEDIA = 10


def sinch_signature(secret: str, body: bytes, nonce: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, body + "." + nonce + "." + timestamp))."""
    signed = body + b"." + nonce.encode("utf-8") + b"." + timestamp.encode("utf-8")
    return base64.b64encode(hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
                            ).decode()


def _timestamp_seconds(value: str) -> float:
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise WebhookUnauthorized("signature timestamp is not a time") from None
    return number / 1000 if number > 1e11 else number  # milliseconds, just in case


class SinchProvider(Provider):
    Config = SinchConfig
    default_api_base = "https://us.sms.api.sinch.com"
    webhook_auth = ("x-sinch-webhook-signature (HMAC-SHA256 with nonce and timestamp), or the "
                    "Basic credentials Sinch provisions, or a webhook_token in the URL path")
    webhook_content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    max_media_per_part = 1  # an mt_media batch carries one media item
    config: SinchConfig

    @property
    def api_base(self) -> str:
        if self.config.api_base is not None:
            return str(self.config.api_base).rstrip("/")
        return f"https://{self.config.region}.sms.api.sinch.com"

    # --- sending ----------------------------------------------------------------------------

    async def _send_part(self, msg: OutboundSms, part: Part, index: int,
                         total: int) -> SendResult:
        cfg = self.config
        body: dict[str, Any] = {"to": [msg.to_number], "client_reference": str(msg.message_id)}
        sender = msg.sender_id or msg.from_number
        if sender:
            body["from"] = sender
        if cfg.status_callback:
            body["delivery_report"] = "per_recipient"
            body["callback_url"] = self.webhook_url()
        if part.media:  # one media item per mt_media batch, the text as its message
            content: dict[str, str] = {"url": part.media[0].url}
            if part.text:
                content["message"] = part.text
            body.update(type="mt_media", body=content)
        else:
            body.update(type="mt_text", body=part.text)
        url = f"{self.api_base}/xms/v1/{cfg.service_plan_id}/batches"
        async with self.http.post(url, json=body,
                                  headers=bearer_auth(reveal(cfg.api_token))) as resp:
            payload = await response_json(resp)
            data = payload if isinstance(payload, dict) else {}
            if resp.status in (200, 201) and isinstance(data.get("id"), str) and data["id"]:
                return Sent(data["id"])
            return self._failure(resp.status, data, resp.headers)

    @staticmethod
    def _failure(status: int, data: dict[str, Any], headers) -> SendFailed:
        if 200 <= status < 300:
            return SendFailed("Sinch answered without a batch id", retryable=True)
        code, text = data.get("code"), str(data.get("text") or "no error message")
        return carrier_failure(status, headers, "Sinch", text,
                               code if isinstance(code, str) else None)

    # --- webhooks ---------------------------------------------------------------------------

    def verify(self, req: WebhookRequest) -> None:
        super().verify(req)
        cfg = self.config
        if cfg.webhook_password is not None:
            self._verify_basic(req)
        secret = reveal(cfg.webhook_secret)
        if not secret:
            return
        signature = req.headers.get("x-sinch-webhook-signature", "")
        nonce = req.headers.get("x-sinch-webhook-signature-nonce", "")
        stamp = req.headers.get("x-sinch-webhook-signature-timestamp", "")
        if not signature or not nonce or not stamp:
            raise WebhookUnauthorized("x-sinch-webhook-signature, its nonce or timestamp missing")
        algorithm = req.headers.get("x-sinch-webhook-signature-algorithm", "HmacSHA256")
        if algorithm.lower() != "hmacsha256":
            raise WebhookUnauthorized("unsupported x-sinch-webhook-signature-algorithm")
        if not constant_time_equal(sinch_signature(secret, req.body, nonce, stamp), signature):
            raise WebhookUnauthorized("x-sinch-webhook-signature does not match")
        if abs(req.received_at - _timestamp_seconds(stamp)) > cfg.webhook_tolerance_seconds:
            raise WebhookUnauthorized("signed callback is outside the timestamp window")

    def _verify_basic(self, req: WebhookRequest) -> None:
        scheme, _, encoded = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise WebhookUnauthorized("Basic credentials missing")
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise WebhookUnauthorized("Basic credentials are not base64") from None
        good_user = constant_time_equal(user, self.config.webhook_username or "")
        good_password = constant_time_equal(password, reveal(self.config.webhook_password))
        if not (sep and good_user and good_password):
            raise WebhookUnauthorized("Basic credentials do not match")

    @staticmethod
    def _string(value: Any, what: str) -> str:
        if not isinstance(value, str) or not value:
            raise WebhookMalformed(f"{what} is missing or not a string")
        return value

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        data = req.json()
        if not isinstance(data, dict):
            raise WebhookMalformed("expected a JSON object")
        kind = self._string(data.get("type"), "type")
        if kind in RECIPIENT_REPORT_TYPES:
            return self._recipient_report(data)
        if kind in REPORT_TYPES:
            return self._batch_report(data)
        if kind == "mo_text":
            body = data.get("body")
            if not isinstance(body, str):
                raise WebhookMalformed("mo_text body is not a string")
            return [self._inbound(data, body, ())]
        if kind == "mo_media":
            return [self._inbound_media(data)]
        return []  # mo_binary and future event types: nothing a phone user can read

    def _inbound(self, data: dict[str, Any], text: str,
                 media: tuple[MediaRef, ...]) -> InboundMessage:
        carrier_id = self._string(data.get("id"), "id")
        sender = self.inbound_number(require(data, "from"), "from")
        recipient = self.inbound_number(require(data, "to"), "to")
        return InboundMessage(carrier_id, sender, recipient, text, media)

    def _inbound_media(self, data: dict[str, Any]) -> InboundMessage:
        body = data.get("body")
        if not isinstance(body, dict):
            raise WebhookMalformed("mo_media body is not an object")
        parts = [body.get("subject"), body.get("message")]
        if not all(p is None or isinstance(p, str) for p in parts):
            raise WebhookMalformed("mo_media subject/message is not a string")
        text = "\n".join(p for p in parts if p)
        items = body.get("media") or []
        if not isinstance(items, list):
            raise WebhookMalformed("mo_media media is not a list")
        media: list[MediaRef] = []
        for item in items[:MAX_MEDIA]:
            if not isinstance(item, dict):
                raise WebhookMalformed("a media item is not an object")
            url, ctype = item.get("url"), item.get("content_type")
            failed = str(item.get("status", "")).lower() == "failed" or item.get("code") not in (
                0, None)
            if isinstance(url, str) and url and not failed:
                media.append(MediaRef(url, ctype if isinstance(ctype, str) else None))
        return self._inbound(data, text, tuple(media))

    def _recipient_report(self, data: dict[str, Any]) -> list[InboundEvent]:
        batch_id = self._string(data.get("batch_id"), "batch_id")
        status = self._string(data.get("status"), "status")
        state = STATUS_MAP.get(status.lower())
        if state is None:
            return []
        code = data.get("code")
        error = str(code) if state is State.FAILED and code is not None else None
        return [DeliveryReport(batch_id, state, carrier_status=status, error=error)]

    def _batch_report(self, data: dict[str, Any]) -> list[InboundEvent]:
        batch_id = self._string(data.get("batch_id"), "batch_id")
        statuses = data.get("statuses")
        if not isinstance(statuses, list) or not all(isinstance(s, dict) for s in statuses):
            raise WebhookMalformed("statuses is not a list of objects")
        # One recipient per batch here: the most telling status of its parts wins.
        found: dict[State, tuple[str, Any]] = {}
        for entry in statuses:
            status = self._string(entry.get("status"), "status")
            state = STATUS_MAP.get(status.lower())
            if state is not None:
                found.setdefault(state, (status, entry.get("code")))
        for state in (State.FAILED, State.DELIVERED, State.SENT):
            if state in found:
                status, code = found[state]
                error = str(code) if state is State.FAILED and code is not None else None
                return [DeliveryReport(batch_id, state, carrier_status=status, error=error)]
        return []
