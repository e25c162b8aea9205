"""Plivo Messaging (API v1).

Facts and sources (see also shared providers.md §7):
- Send: ``POST https://api.plivo.com/v1/Account/{auth_id}/Message/``, HTTP Basic
  auth_id:auth_token, JSON ``{"src", "dst", "text", "type": "sms" | "mms", "media_urls",
  "url", "method"}`` (``powerpack_uuid`` instead of ``src`` for number pools). Numbers are
  digits with the country code, no '+'. Success is 202 ``{"api_id", "message", "message_uuid":
  ["..."]}``; errors are ``{"api_id", "error"}``. [sdk] plivo-python plivo/rest/client.py,
  plivo/resources/messages.py, tests/resources/fixtures/messageSendResponse.json
- ``text`` is at most 1,600 GSM-7 or 737 UCS-2 characters per request (Plivo answers
  "text parameter length exceeds 737 unicode characters" beyond); longer texts go as several
  messages by the base's multi-part rule, with at most 10 ``media_urls`` per message.
  [doc] plivo.com/docs/faq/messaging/sms (limits); plivo-python issue #298 (the error text)
- Inbound: form POST (or GET) with ``MessageUUID``, ``From``, ``To``, ``Type`` (sms | mms),
  ``Text`` (SMS, already concatenated by Plivo) or ``Body`` (MMS), ``MediaCount`` and
  ``Media1``..``MediaN``. The docs say 1-based, an older support article says ``Media0``; we
  read both. [doc] plivo.com/docs/messaging/api/message/handling-incoming,
  support.plivo.com article 360041856452
- Status callbacks (to ``url``): ``MessageUUID``, ``ParentMessageUUID`` (the first part's id,
  which is the id the send returned), ``Status`` (queued, sent, failed, delivered,
  undelivered, rejected, read), ``ErrorCode``. Error 200 means the recipient replied STOP.
  [doc] message-status-callbacks, messaging/troubleshooting/error-codes, support article
  17000089602
- Webhook auth: ``X-Plivo-Signature-V2`` (signed with the account or sub-account token) or
  ``X-Plivo-Signature-Ma-V2`` (main account token), with ``X-Plivo-Signature-V2-Nonce``:
  base64(HMAC-SHA256(auth token, scheme://host/path + nonce)), query string excluded. This is
  what Plivo documents for messaging; it covers neither the body nor a timestamp, so a
  captured signature can be replayed with another body. ``signature_version = "v3"`` instead
  requires ``X-Plivo-Signature-V3`` (possibly several, comma-separated) +
  ``X-Plivo-Signature-V3-Nonce``, which also covers the parameters: base string = URL without
  query, ``?`` + sorted query ``k=v&...``, ``.`` between query and POST parameters, POST
  parameters sorted as ``kv`` pairs, then ``.`` + nonce. Plivo documents V3 for voice; whether
  it is sent on messaging webhooks is unverified. [doc] messaging/concepts/
  signature-validation; [sdk] plivo-python plivo/utils/__init__.py (``validate_signature``),
  plivo/utils/signature_v3.py; test vector (token ``my_auth_token``, URL
  ``https://answer.url``, nonce ``12345``) from tests/resources/test_signature.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

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
)
from bridge.secrets import Secret, reveal


class PlivoConfig(ProviderConfig):
    type: Literal["plivo"]
    auth_id: str = Field(pattern=r"^[MS]A[A-Za-z0-9]{18}$")
    auth_token: Secret  # the API password; also signs the webhooks
    powerpack_uuid: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{36}$")
    status_callback: bool = True  # ask Plivo to post delivery reports to our webhook
    signature_version: Literal["v2", "v3"] = "v2"


STATUS_MAP: dict[str, State] = {
    "sent": State.SENT,
    "delivered": State.DELIVERED,
    "read": State.DELIVERED,
    "failed": State.FAILED,
    "undelivered": State.FAILED,
    "rejected": State.FAILED,
}
OPT_OUT_CODE = "200"
MAX_MEDIA = 10


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def plivo_v2_signature(auth_token: str, url: str, nonce: str) -> str:
    """base64(HMAC-SHA256(token, URL without query + nonce))."""
    digest = hmac.new(auth_token.encode(), (_base_url(url) + nonce).encode("utf-8"),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def plivo_v3_signature(auth_token: str, method: str, url: str,
                       params: Sequence[tuple[str, str]], nonce: str) -> str:
    """The V3 signature as plivo-python's ``validate_v3_signature`` computes it."""
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    post: dict[str, list[str]] = {}
    if method == "GET":
        for key, value in params:
            query.setdefault(key, [])
            if value not in query[key]:
                query[key].append(value)
    else:
        for key, value in params:
            post.setdefault(key, []).append(value)
    query_string = "&".join(f"{k}={v}" for k in sorted(query) for v in sorted(query[k]))
    base = _base_url(url)
    if query_string or post:
        base += "?" + query_string
    if query_string and post:
        base += "."
    base += "".join(f"{k}{v}" for k in sorted(post) for v in sorted(post[k]))
    digest = hmac.new(auth_token.encode(), f"{base}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class PlivoProvider(Provider):
    Config = PlivoConfig
    default_api_base = "https://api.plivo.com"
    webhook_auth = ("X-Plivo-Signature-V2 (HMAC-SHA256 of URL + nonce with the auth token; "
                    "V3 over the parameters too when signature_version = \"v3\")")
    opt_out_codes = frozenset({OPT_OUT_CODE})
    webhook_content_types: ClassVar[frozenset[str]] = frozenset(
        {"application/x-www-form-urlencoded"}
    )
    # text: at most 1,600 GSM-7 or 737 UCS-2 characters per request; media_urls: at most 10.
    text_limit = TextLimit(1600, 737)
    max_media_per_part = MAX_MEDIA
    config: PlivoConfig

    async def _send_part(self, msg: OutboundSms, part: Part, index: int,
                         total: int) -> SendResult:
        cfg = self.config
        body: dict[str, Any] = {"dst": digits(msg.to_number), "text": part.text,
                                "type": "mms" if part.media else "sms"}
        if msg.sender_id:
            body["src"] = msg.sender_id
        elif cfg.powerpack_uuid and not msg.from_number:
            body["powerpack_uuid"] = cfg.powerpack_uuid
        else:
            body["src"] = digits(msg.from_number)
        if part.media:
            body["media_urls"] = [m.url for m in part.media]
        if cfg.status_callback:
            body["url"] = self.webhook_url()
            body["method"] = "POST"
        url = f"{self.api_base}/v1/Account/{cfg.auth_id}/Message/"
        headers = basic_auth(cfg.auth_id, reveal(cfg.auth_token))
        async with self.http.post(url, json=body, headers=headers) as resp:
            payload = await response_json(resp)
            data = payload if isinstance(payload, dict) else {}
            if resp.status in (200, 201, 202):
                uuids = data.get("message_uuid")
                if isinstance(uuids, list) and uuids and isinstance(uuids[0], str):
                    return Sent(uuids[0], detail=str(data.get("message") or "") or None)
                if data.get("invalid_number"):
                    return SendFailed("Plivo refused the destination number",
                                      retryable=False, code="invalid_number")
                # Never report an HTTP 2xx as the failure code: "200" is Plivo's STOP code.
                return SendFailed("Plivo answered without a message_uuid", retryable=True)
            error = data.get("error")
            if isinstance(error, dict):
                error = "; ".join(f"{k}: {v}" for k, v in error.items())
            return classify_http_failure(resp.status, str(error or "no error message"),
                                         resp.headers)

    def verify(self, req: WebhookRequest) -> None:
        super().verify(req)
        token = reveal(self.config.auth_token)
        if self.config.signature_version == "v3":
            nonce = req.headers.get("X-Plivo-Signature-V3-Nonce", "")
            header = req.headers.get("X-Plivo-Signature-V3", "")
            if not nonce or not header:
                raise WebhookUnauthorized("X-Plivo-Signature-V3 or its nonce missing")
            params = req.form() if req.method == "POST" else list(req.query)
            expected = plivo_v3_signature(token, req.method, req.url, params, nonce)
            if not any(constant_time_equal(expected, s.strip()) for s in header.split(",")):
                raise WebhookUnauthorized("X-Plivo-Signature-V3 does not match")
            return
        nonce = req.headers.get("X-Plivo-Signature-V2-Nonce", "")
        candidates = [s for s in (req.headers.get("X-Plivo-Signature-V2", ""),
                                  req.headers.get("X-Plivo-Signature-Ma-V2", "")) if s]
        if not nonce or not candidates:
            raise WebhookUnauthorized("X-Plivo-Signature-V2 or its nonce missing")
        expected = plivo_v2_signature(token, req.url, nonce)
        if not any(constant_time_equal(expected, s.strip()) for s in candidates):
            raise WebhookUnauthorized("X-Plivo-Signature-V2 does not match")

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        fields = req.form_dict()
        uuid = require(fields, "MessageUUID")
        if "Status" in fields:
            status = fields["Status"].lower()
            state = STATUS_MAP.get(status)
            if state is None:
                return []
            carrier_id = fields.get("ParentMessageUUID") or uuid
            error = fields.get("ErrorCode") or None
            if error == "000":
                error = None
            return [DeliveryReport(carrier_id, state, carrier_status=status, error=error)]
        sender = self.inbound_number(require(fields, "From"), "From")
        recipient = self.inbound_number(require(fields, "To"), "To")
        kind = (fields.get("Type") or "sms").lower()
        if kind not in ("sms", "mms"):
            return []  # WhatsApp and the like: not ours to bridge
        text = fields.get("Text") or fields.get("Body") or ""
        media: list[MediaRef] = []
        if kind == "mms":
            try:
                count = min(int(fields.get("MediaCount") or 0), MAX_MEDIA)
            except ValueError:
                raise WebhookMalformed("MediaCount is not a number") from None
            for index in range(count + 1):
                url = fields.get(f"Media{index}")
                if url and len(media) < count:
                    media.append(MediaRef(url))
        return [InboundMessage(uuid, sender, recipient, text, tuple(media))]
