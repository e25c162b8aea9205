"""Voxtelesys Messaging API (v1).

Facts and sources (see also shared providers.md §12). We follow the **v1** reference
(smsapi.voxtelesys.com, base ``https://smsapi.voxtelesys.net/api/v1``) whole; the carrier's n8n
node speaks a newer API (``+E.164``, ``status_callback``), which is not mixed in.
- Send: ``POST /sms`` (a "batch") with ``Authorization: Bearer <API key>`` and JSON
  ``{"from", "to": [numbers], "body", "media": [urls]}``. Numbers are "E.164 formatted
  [country code][subscriber number]", **without** '+' (``17019299797``), and a batch's ``to``
  is a list (the reference's batch listing: ``"from": "14024431550", "to": ["1402..."]``).
  [doc] smsapi.voxtelesys.com (Number Formatting, Batches). The body/media field names are
  not in the stored reference; they are those of two working integrations: [3p]
  simontelephonics/smsconnector provider-Voxtelesys.php (v1) and the carrier's own n8n node.
  The success body is a batch whose ``id`` we keep (``batch_id``/``message_id`` also
  accepted). Error bodies are not documented: the HTTP status decides.
- Delivery receipts are set up on the messaging application in the portal (v1 has no
  per-message callback field).
- Inbound (MO): JSON POST to the application's callback URL: ``{"type": "mo", "id", "to",
  "from", "body", "media": [...], "received_at"}``. ``id`` is not in the reference table but
  is read by smsconnector; when absent we make one from the body and the time of receipt.
  Media entries may be URLs or ``{"url": ...}`` objects. [doc]
  developer.voxtelesys.com/apis/message/webhooks/mo
- Delivery receipts (DLR): ``{"type": "per_recipient", "batch_id", "message_id", "tag",
  "to": [...], "status", "time", "error": {"code", "description"}}``. [doc]
  …/webhooks/dlr. Statuses: queued, delivering (no news), delivered, failed, expired, and
  unknown (final, but the outcome is not known, so no event). [sdk] n8n node statuses.ts.
  Since it is not documented whether the send answer's ``id`` is the batch or the message id,
  a receipt is reported under ``message_id`` and, when different, ``batch_id`` too; only the
  one we stored matches.
- Webhooks must be HTTPS with a public certificate; no signature is documented, so the
  webhook URL must carry a ``webhook_token``. Non-2xx answers are retried with backoff.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Literal

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
from bridge.numbers import digits
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    bearer_auth,
    classify_http_failure,
    media_list,
    response_json,
    text_field,
)
from bridge.secrets import Secret, reveal

STATUS_MAP: dict[str, State] = {
    "delivered": State.DELIVERED,
    "failed": State.FAILED,
    "expired": State.FAILED,
}
NO_ERROR_CODES = frozenset({"", "0"})


class VoxtelesysConfig(ProviderConfig):
    type: Literal["voxtelesys"]
    api_key: Secret


class VoxtelesysProvider(Provider):
    Config = VoxtelesysConfig
    default_api_base = "https://smsapi.voxtelesys.net/api/v1"
    webhook_auth = "a secret token in the webhook URL path (Voxtelesys signs nothing)"
    requires_webhook_token = True
    webhook_content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    numbers_may_be_integers = True
    config: VoxtelesysConfig

    async def _send(self, msg: OutboundSms) -> SendResult:
        cfg = self.config
        body: dict[str, Any] = {
            "from": msg.sender_id or digits(msg.from_number),
            "to": [digits(msg.to_number)],
        }
        if msg.text:
            body["body"] = msg.text
        if msg.media:
            body["media"] = [m.url for m in msg.media]
        async with self.http.post(f"{self.api_base}/sms", json=body,
                                  headers=bearer_auth(reveal(cfg.api_key))) as resp:
            payload = await response_json(resp)
            data = payload if isinstance(payload, dict) else {}
            if 200 <= resp.status < 300:
                carrier_id = _first_str(data, "id", "batch_id", "message_id")
                if carrier_id is None:
                    return SendFailed("Voxtelesys accepted the request but sent no id",
                                      retryable=False)
                return Sent(carrier_id, detail=_first_str(data, "status"))
            message = _error_text(data)
            failure = classify_http_failure(resp.status, message or "no error message",
                                            resp.headers)
            return SendFailed(f"Voxtelesys: {failure.reason}"[:500], failure.retryable,
                              failure.retry_after, failure.code)

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        data = req.json()
        if not isinstance(data, dict):
            raise WebhookMalformed("expected a JSON object")
        kind = data.get("type")
        if kind == "per_recipient":
            return self._receipt(data)
        if kind != "mo":
            if isinstance(kind, str):
                return []  # an event type the bridge does not act on
            raise WebhookMalformed("missing or invalid 'type'")
        sender = self.inbound_number(_first(data.get("from")), "from")
        recipient = self.inbound_number(_first(data.get("to")), "to")
        text = text_field(data, "body", "'body'")
        carrier_id = _first_str(data, "id", "message_id")
        if carrier_id is None:
            seed = req.body + repr(req.received_at).encode()
            carrier_id = "vts-" + hashlib.sha256(seed).hexdigest()[:32]
        media = media_list(data.get("media"), ("content_type", "type"))
        return [InboundMessage(carrier_id, sender, recipient, text, media)]

    def _receipt(self, data: dict[str, Any]) -> list[InboundEvent]:
        status = data.get("status")
        if not isinstance(status, str):
            raise WebhookMalformed("'status' must be a string")
        ids = [i for i in (_first_str(data, "message_id"), _first_str(data, "batch_id")) if i]
        if not ids:
            raise WebhookMalformed("a receipt needs 'message_id' or 'batch_id'")
        state = STATUS_MAP.get(status.lower())
        if state is None:
            return []
        error = None
        err = data.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or "")
            description = str(err.get("description") or "")
            if code not in NO_ERROR_CODES and description.lower() not in ("none", "no error"):
                error = f"{code}: {description}" if description else code
        elif isinstance(err, str | int) and str(err) not in NO_ERROR_CODES:
            error = str(err)
        return [DeliveryReport(i, state, carrier_status=status.lower(), error=error)
                for i in dict.fromkeys(ids)]



def _first(value: Any) -> Any:
    """A batch's ``to`` is a list: its first number."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _first_str(data: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _error_text(data: dict[str, Any]) -> str:
    for key in ("message", "error", "description", "detail"):
        value = data.get(key)
        if isinstance(value, dict):
            value = value.get("description") or value.get("message")
        if value:
            return str(value)
    return ""


