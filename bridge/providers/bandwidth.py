"""Bandwidth Messaging API v2.

Facts and sources (see also shared providers.md §3):
- Send: ``POST https://messaging.bandwidth.com/api/v2/users/{accountId}/messages``, HTTP Basic
  (API username:password), JSON ``{"applicationId", "to": [+E.164], "from", "text", "media":
  [urls], "tag"}``. ``text`` is at most 2,048 characters, so longer texts are split and sent as
  several messages. Success is **202** with the message JSON; the id is ``id``. Errors are
  ``{"type", "description", "fieldErrors"?}``; 429 ``max-message-queue-size-exceeded`` when the
  account queue is full. [spec] Bandwidth/python-sdk bandwidth.yml (models MessageRequest,
  CreateMessageRequestError, MessagingRequestError in bandwidth-sdk 23.3.1);
  [doc] Bandwidth/api-docs site/docs/messaging/createMessage.mdx, errors.mdx
- There is no per-message callback URL: inbound and status callbacks go to the URLs set on the
  Messaging application. [doc] site/docs/account/applications.mdx
- Callbacks are JSON POSTs whose body is an **array** of events (we also accept a single
  object, as in the OpenAPI example). ``message-received`` carries ``to`` (our number),
  ``message.{id, from, text, media[]}``; status types are ``message-sending`` (no news),
  ``message-sent``, ``message-delivered``, ``message-failed`` (with integer ``errorCode``) and
  ``message-read``. [spec] InboundCallback, StatusCallback, StatusCallbackTypeEnum;
  [doc] site/docs/messaging/webhooks.mdx
- Error code 4775 is "Carrier Rejected due to user opt out" (reported in ``message-failed``).
  [doc] site/docs/messaging/errors.mdx
- Webhook authentication is HTTP Basic with the ``InboundCallbackCreds`` /
  ``OutboundCallbackCreds`` you set on the application; there is no signature.
  [doc] site/docs/account/applications.mdx
- Inbound media URLs point at Bandwidth's media API and need the API credentials to download.
  [doc] site/docs/messaging/webhooks.mdx
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

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
from bridge.providers.base import (
    Part,
    Provider,
    ProviderConfig,
    TextLimit,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
    basic_auth,
    classify_http_failure,
    constant_time_equal,
    require,
    response_json,
    text_field,
)
from bridge.secrets import Secret, reveal


class BandwidthConfig(ProviderConfig):
    type: Literal["bandwidth"]
    account_id: str = Field(pattern=r"^[0-9]{1,12}$")
    application_id: str = Field(min_length=1)  # the Messaging application of our numbers
    username: str = Field(min_length=1)  # API credentials
    password: Secret
    # The callback credentials set on the application (InboundCallbackCreds and
    # OutboundCallbackCreds): Bandwidth sends them with every callback.
    webhook_username: str = Field(min_length=1)
    webhook_password: Secret


STATUS_MAP: dict[str, State] = {
    "message-sent": State.SENT,
    "message-delivered": State.DELIVERED,
    "message-read": State.DELIVERED,
    "message-failed": State.FAILED,
}



def _string(mapping: Mapping[str, Any], key: str, what: str) -> str:
    value = require(mapping, key, what)
    if not isinstance(value, str):
        raise WebhookMalformed(f"{what} {key!r} is not a string")
    return value


class BandwidthProvider(Provider):
    Config = BandwidthConfig
    default_api_base = "https://messaging.bandwidth.com"
    webhook_auth = "HTTP Basic with the callback credentials set on the Bandwidth application"
    opt_out_codes = frozenset({"4775"})
    text_limit = TextLimit(2048)
    webhook_content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    config: BandwidthConfig

    # --- sending ----------------------------------------------------------------------------

    async def _send_part(self, msg: OutboundSms, part: Part, index: int,
                         total: int) -> SendResult:
        cfg = self.config
        text, media = part.text, part.media
        body: dict[str, Any] = {
            "applicationId": cfg.application_id,
            "to": [msg.to_number],
            "from": msg.sender_id or msg.from_number,
            "tag": f"sip-sms-bridge:{msg.message_id}",
        }
        if text:
            body["text"] = text
        if media:
            body["media"] = [m.url for m in media]
        url = f"{self.api_base}/api/v2/users/{cfg.account_id}/messages"
        headers = {
            **basic_auth(cfg.username, reveal(cfg.password)),
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
        }
        data = json.dumps(body, ensure_ascii=False).encode()
        async with self.http.post(url, data=data, headers=headers) as resp:
            payload = await response_json(resp)
            if resp.status in (200, 201, 202) and isinstance(payload, dict) and payload.get("id"):
                return Sent(str(payload["id"]))
            return self._failure(resp.status, payload, resp.headers)

    @staticmethod
    def _failure(status: int, payload: object, headers) -> SendFailed:
        body = payload if isinstance(payload, dict) else {}
        kind = str(body.get("type") or "")
        text = str(body.get("description") or body.get("message") or "")
        field_errors = body.get("fieldErrors")
        if isinstance(field_errors, list):
            details = [f"{e.get('fieldName')}: {e.get('description')}"
                       for e in field_errors if isinstance(e, dict)]
            if details:
                text = f"{text} ({'; '.join(details)})"
        failure = classify_http_failure(status, text or kind or "no error detail", headers)
        if not kind:
            return failure
        return SendFailed(
            reason=f"Bandwidth {kind}: {text}"[:500],
            retryable=failure.retryable,
            retry_after=failure.retry_after,
            code=failure.code,
        )

    async def fetch_media(self, url: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        """Inbound media lives on Bandwidth's media API and needs the API credentials; they go
        to Bandwidth's messaging host (or the configured api_base) only."""
        headers = {}
        parts = urlsplit(url)
        if (parts.hostname == "messaging.bandwidth.com"
                or parts.netloc == urlsplit(self.api_base).netloc):
            headers = basic_auth(self.config.username, reveal(self.config.password))
        return await self.download(url, headers=headers, max_bytes=max_bytes)

    # --- webhooks ---------------------------------------------------------------------------

    def verify(self, req: WebhookRequest) -> None:
        super().verify(req)
        auth = req.headers.get("Authorization") or next(
            (v for k, v in req.headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "basic" or not token:
            raise WebhookUnauthorized("Authorization: Basic header missing")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise WebhookUnauthorized("Authorization header is not valid Basic") from None
        user, sep, password = decoded.partition(":")
        expected_user = self.config.webhook_username
        expected_password = reveal(self.config.webhook_password)
        # Compare both halves every time, so timing does not tell which one was wrong.
        user_ok = constant_time_equal(user, expected_user)
        password_ok = constant_time_equal(password, expected_password)
        if not (sep and user_ok and password_ok):
            raise WebhookUnauthorized("Basic credentials do not match")

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        body = req.json()
        events = body if isinstance(body, list) else [body]
        parsed: list[InboundEvent] = []
        for event in events:
            if not isinstance(event, Mapping):
                raise WebhookMalformed("a callback event is not a JSON object")
            result = self._event(event)
            if result is not None:
                parsed.append(result)
        return parsed

    def _event(self, event: Mapping[str, Any]) -> InboundEvent | None:
        kind = _string(event, "type", "field")
        message = require(event, "message")
        if not isinstance(message, Mapping):
            raise WebhookMalformed("'message' is not a JSON object")
        carrier_id = _string(message, "id", "message field")
        if kind == "message-received":
            recipient = event.get("to") or message.get("owner")
            text = text_field(message, "text", "message.text")
            media = message.get("media") or []
            if not isinstance(media, list) or not all(isinstance(u, str) and u for u in media):
                raise WebhookMalformed("message.media is not a list of URLs")
            return InboundMessage(
                carrier_id,
                self.inbound_number(message.get("from"), "from"),
                self.inbound_number(recipient, "to"),
                text,
                tuple(MediaRef(u) for u in media),
            )
        state = STATUS_MAP.get(kind)
        if state is None:
            return None  # message-sending, RBM responses, ...: nothing for us
        error = None
        if state is State.FAILED:
            code = event.get("errorCode")
            description = event.get("description")
            parts = [str(p) for p in (code, description) if p not in (None, "")]
            error = ": ".join(parts)[:500] or None
        return DeliveryReport(carrier_id, state, carrier_status=kind, error=error)
