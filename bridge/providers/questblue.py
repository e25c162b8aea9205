"""QuestBlue SMS/MMS (API 2.3.2).

Facts and sources (see also shared providers.md §11):
- Send: ``POST https://api.questblue.com/smsv2`` (``api2.questblue.com`` is a single node, not
  recommended) with a **JSON body** ``{"did", "did_to", "msg", "file_url"}``, as the official
  PHP SDK sends it (``ApiRequestExecutor::request`` puts a POST's parameters in Guzzle's
  ``json`` option, with ``Content-Type: application/json``; ``Sms::sendMsg`` posts
  ``SendSmsRequest::toArray()`` to ``smsv2``) [sdk] QuestBlue/phpsdk src/ApiRequestExecutor.php,
  src/Api/Sms.php, src/Models/Requests/Sms/SendSmsRequest.php. The OpenAPI mirror puts the
  same names in the query string; we follow the carrier's own SDK. ``did`` is the sender,
  ``did_to`` the US recipient, ``file_url`` the media URLs (comma-joined as QuestBlue's
  array convention; any file makes it an MMS; the SDK sends one URL). Auth is HTTP Basic
  (login:password) **and** a ``Security-Key`` header, and the bridge's IP must be
  allow-listed in the portal. Success is
  200 ``{"data": [{"msg_id": "..."}]}``; an application-level error is **HTTP 206**
  ``{"error": "..."}``. [spec] QuestBlue OpenAPI 2.3.2 as mirrored in
  schapman1974/pyquestblue spec/questblue-openapi-2.3.2.json (``/smsv2`` post, security
  ``apiKeyAuth`` + ``basicAuth``); [sdk] pyquestblue 1.1.0 _client.py (206 handling, comma
  arrays); QuestBlue/phpsdk SendSmsRequest.php (``did``, ``did_to``, ``msg``, ``file_url``).
- Numbers: ``did``/``did_to`` are integers; the SDKs accept 10 or 11 digits. We send the
  10-digit national form (``number_format = "digits"`` sends 11). US numbers only.
- Inbound, per DID with ``sms_mode=url``: ``post2url`` receives ``from``, ``to`` and ``msg``
  as a form (the default) or JSON (``post2urlmethod``; XML is not supported here) [spec]
  ``/smsv2`` put. The 2.3.2 contract also publishes an ``inboundMessageCallback``: JSON
  ``{"from", "to": [numbers], "type": "SMS"|"MMS", "text", "media": [urls], "segments"}``
  [spec] webhooks. Both shapes are accepted. **Neither carries a message id**, so we make one
  from the body and the time of receipt: a repeated delivery of the same webhook cannot be
  recognised (better than dropping a second, identical text).
- Delivery status: the ``statusMessageCallback`` is JSON ``{"from", "to", "status",
  "reason", "segments"}``, again **without a message id**, so it cannot be matched to a sent
  message: we act on it only if it carries ``msg_id`` (or ``id``), and drop it otherwise.
  Status values seen in the SDK: sent, delivered, failed. [spec] webhooks; [sdk] sms.py
- No webhook authentication is documented: the webhook URL must carry a ``webhook_token``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

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
from bridge.numbers import InvalidNumber, digits, national_nanp
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    basic_auth,
    classify_http_failure,
    response_json,
)
from bridge.secrets import Secret, reveal

STATUS_MAP: dict[str, State] = {
    "sent": State.SENT,
    "delivered": State.DELIVERED,
    "failed": State.FAILED,
    "undelivered": State.FAILED,
    "rejected": State.FAILED,
}


class QuestBlueConfig(ProviderConfig):
    type: Literal["questblue"]
    login: str  # the account or API login used for HTTP Basic
    password: Secret
    security_key: Secret  # the private key sent as the Security-Key header
    number_format: Literal["national", "digits"] = "national"


class QuestBlueProvider(Provider):
    Config = QuestBlueConfig
    default_api_base = "https://api.questblue.com"
    webhook_auth = "a secret token in the webhook URL path (QuestBlue signs nothing)"
    requires_webhook_token = True
    numbers_may_be_integers = True
    supports_sender_id = False
    config: QuestBlueConfig

    async def _send(self, msg: OutboundSms) -> SendResult:
        cfg = self.config
        try:
            did, did_to = (self._number(msg.from_number), self._number(msg.to_number))
        except InvalidNumber:
            return SendFailed("QuestBlue sends between US (+1) numbers only",
                              retryable=False, code="invalid_number")
        body = {"did": did, "did_to": did_to, "msg": msg.text}
        if msg.media:
            body["file_url"] = ",".join(m.url for m in msg.media)
        headers = {**basic_auth(cfg.login, reveal(cfg.password)),
                   "Security-Key": reveal(cfg.security_key), "Accept": "application/json"}
        async with self.http.post(f"{self.api_base}/smsv2", json=body,
                                  headers=headers) as resp:
            payload = await response_json(resp)
            body = payload if isinstance(payload, dict) else {}
            if resp.status == 200 and not body.get("error"):
                data = body.get("data")
                first = data[0] if isinstance(data, list) and data else None
                if isinstance(first, dict) and first.get("msg_id"):
                    return Sent(str(first["msg_id"]))
                return SendFailed("QuestBlue answered without a msg_id", retryable=False)
            error = str(body.get("error") or body.get("message") or "")
            if resp.status in (200, 206):  # an application-level refusal
                return SendFailed(f"QuestBlue error: {error or 'unknown'}"[:500],
                                  retryable=False, code=str(resp.status))
            failure = classify_http_failure(resp.status, error or "no error message",
                                            resp.headers)
            return SendFailed(f"QuestBlue: {failure.reason}"[:500], failure.retryable,
                              failure.retry_after, failure.code)

    def _number(self, e164: str) -> str:
        national = national_nanp(e164)  # raises InvalidNumber for non-NANP numbers
        return national if self.config.number_format == "national" else digits(e164)

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        if req.content_type == "application/json":
            data = req.json()
            if not isinstance(data, dict):
                raise WebhookMalformed("expected a JSON object")
        else:
            data = req.form_dict()
        carrier_id = _first_str(data, "msg_id", "id", "message_id")
        if "status" in data and not ({"msg", "text"} & data.keys()):
            status = data["status"]
            if not isinstance(status, str):
                raise WebhookMalformed("'status' must be a string")
            state = STATUS_MAP.get(status.lower())
            if state is None or carrier_id is None:
                return []  # no news, or nothing to match it to (QuestBlue sends no id)
            reason = data.get("reason")
            return [DeliveryReport(carrier_id, state, carrier_status=status.lower(),
                                   error=str(reason) if reason else None)]
        sender = self.inbound_number(data.get("from"), "from")
        to = data.get("to")
        if isinstance(to, list):
            to = to[0] if to else None
        recipient = self.inbound_number(to, "to")
        text = data.get("text") if "text" in data else data.get("msg")
        text = text or ""
        if not isinstance(text, str):
            raise WebhookMalformed("the message text must be a string")
        media = data.get("media") or []
        if isinstance(media, str):
            media = [u for u in media.split(",") if u]
        if not isinstance(media, list) or not all(isinstance(u, str) for u in media):
            raise WebhookMalformed("'media' must be a list of URLs")
        if carrier_id is None:
            seed = req.body + repr(sorted(req.query)).encode() + repr(req.received_at).encode()
            carrier_id = "qb-" + hashlib.sha256(seed).hexdigest()[:32]
        return [InboundMessage(carrier_id, sender, recipient, text,
                               tuple(MediaRef(u.strip()) for u in media))]



def _first_str(data: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None
