"""Wavix messaging (API v3).

Facts and sources (see also shared providers.md §10):
- Send: ``POST https://api.wavix.com/v3/messages`` with ``Authorization: Bearer <API key>``
  and a JSON body ``{"from", "to", "message_body": {"text", "media": [urls] | null},
  "callback_url", "validity", "tag"}``; a non-null ``media`` makes it an MMS (US only, from a
  10-digit or toll-free number). Success is 2xx with the message object; the id is
  ``message_id``, ``status`` starts as ``accepted``. Errors: 400/401/403/404/422/429 with
  ``{"success": false, "message": ...}`` (422 may carry ``{"error": ...}``).
  [sdk] wavix-python-sdk 1.1.1 sms_and_mms/messages/raw_client.py, types/message_body.py,
  types/*_error_response.py; [doc] docs.wavix.com/api-reference/sms-and-mms/send-message.
  Sending to an opted-out number fails, but no error code for it is documented.
- Numbers: the docs show the recipient both as ``447537151866`` and as ``+447537151866``; we
  send digits without ``+`` (the field example) unless ``number_format = "e164"``.
- Inbound: JSON POST to the DID's or the account's webhook: ``{"message_id", "message_type",
  "from", "to", "message_body": {"text", "media"}, "received_at"}``. [sdk]
  types/inbound_message.py; [doc] api-reference/sms-and-mms/inbound-message
- Delivery reports: JSON POST to ``callback_url`` (we send our webhook URL) or the account's
  DLR webhook: ``{"message_id", "message_type", "from", "to", "status", "segments_count",
  "sent", "delivered", "error", ...}`` with ``status`` in accepted, pending, sent, delivered,
  undelivered, expired, rejected, dlr_expired. One interim report, then a final one. [sdk]
  types/messages_delivery_report.py, types/message_delivery_status.py
- No webhook authentication is documented: the webhook URL must carry a ``webhook_token``.
  Answer 200.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

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
from bridge.numbers import digits
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    bearer_auth,
    classify_http_failure,
    response_json,
    text_field,
)
from bridge.secrets import Secret, reveal

STATUS_MAP: dict[str, State] = {
    "sent": State.SENT,
    "delivered": State.DELIVERED,
    "undelivered": State.FAILED,
    "expired": State.FAILED,
    "rejected": State.FAILED,
}
# accepted, pending: no news; dlr_expired: the carrier never said, so the outcome is unknown.


class WavixConfig(ProviderConfig):
    type: Literal["wavix"]
    api_key: Secret
    number_format: Literal["digits", "e164"] = "digits"
    status_callback: bool = True  # send our webhook URL as callback_url for delivery reports
    validity_seconds: int | None = Field(default=None, ge=1)


class WavixProvider(Provider):
    Config = WavixConfig
    default_api_base = "https://api.wavix.com"
    webhook_auth = "a secret token in the webhook URL path (Wavix signs nothing)"
    requires_webhook_token = True
    numbers_may_be_integers = True
    webhook_content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    config: WavixConfig

    def _number(self, e164: str) -> str:
        return e164 if self.config.number_format == "e164" else digits(e164)

    async def _send(self, msg: OutboundSms) -> SendResult:
        cfg = self.config
        body: dict[str, Any] = {
            "from": msg.sender_id or self._number(msg.from_number),
            "to": self._number(msg.to_number),
            "message_body": {"text": msg.text,
                             "media": [m.url for m in msg.media] if msg.media else None},
        }
        if cfg.status_callback:
            body["callback_url"] = self.webhook_url()
        if cfg.validity_seconds:
            body["validity"] = cfg.validity_seconds
        url = f"{self.api_base}/v3/messages"
        async with self.http.post(url, json=body, headers=bearer_auth(reveal(cfg.api_key))) as resp:
            payload = await response_json(resp)
            if 200 <= resp.status < 300:
                if isinstance(payload, dict) and payload.get("message_id"):
                    return Sent(str(payload["message_id"]), detail=str(payload.get("status", "")))
                return SendFailed("Wavix accepted the request but sent no message_id",
                                  retryable=False)
            return _failure(resp.status, payload, resp.headers)

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        data = req.json()
        if not isinstance(data, dict):
            raise WebhookMalformed("expected a JSON object")
        carrier_id = data.get("message_id")
        if not isinstance(carrier_id, str | int) or not str(carrier_id):
            raise WebhookMalformed("missing 'message_id'")
        carrier_id = str(carrier_id)
        if "status" in data:
            status = data["status"]
            if not isinstance(status, str):
                raise WebhookMalformed("'status' must be a string")
            state = STATUS_MAP.get(status.lower())
            if state is None:
                return []
            error = data.get("error")
            return [DeliveryReport(carrier_id, state, carrier_status=status.lower(),
                                   error=str(error) if error else None)]
        sender = self.inbound_number(data.get("from"), "from")
        recipient = self.inbound_number(data.get("to"), "to")
        body = data.get("message_body")
        if not isinstance(body, dict):
            raise WebhookMalformed("'message_body' must be an object")
        text = text_field(body, "text", "'message_body.text'")
        media = body.get("media") or []
        if not isinstance(media, list) or not all(isinstance(u, str) for u in media):
            raise WebhookMalformed("'message_body.media' must be a list of URLs")
        return [InboundMessage(carrier_id, sender, recipient, text,
                               tuple(MediaRef(u) for u in media))]



def _failure(status: int, payload: object, headers) -> SendFailed:
    body = payload if isinstance(payload, dict) else {}
    message = body.get("message") or body.get("error") or body.get("error_message") or ""
    failure = classify_http_failure(status, str(message) or "no error message", headers)
    return SendFailed(f"Wavix: {failure.reason}"[:500], failure.retryable,
                      failure.retry_after, failure.code)
