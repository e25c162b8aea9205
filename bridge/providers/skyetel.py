"""Skyetel SMS/MMS.

Facts and sources (see also shared providers.md §13):
- Send: ``POST https://sms.skyetel.com/v1/out?from=<11-digit DID>``, HTTP Basic
  ``SID:Secret`` (created in the portal), ``Content-Type: application/json``, body
  ``{"to": "<11 digits>", "text": "<at most 1024 characters>", "media": [urls]}``; media is
  limited to 1.5 MB in total. [doc] support.skyetel.com/hc/en-us/articles/360056299914
  (SMS & MMS API); [3p] simontelephonics/smsconnector provider-Skyetel.php
- Longer text is split at ``max_text_chars`` (1024) and sent as several messages, the media
  with the first.
- The success body is **not documented** (integrations only check for a 2xx). We use an
  ``id``/``message_id``/``uuid`` field if one is there, else a local id: Skyetel sends no
  delivery reports, so nothing ever needs to match it.
- A third-party integration notes that exceeding the rate limit (about 1 message per second)
  answers **403** with a five-minute cooldown [3p]; 403 is therefore retryable here, after
  ``rate_limit_retry_seconds`` (``retry_403 = false`` makes it permanent). Other 4xx are
  permanent, 429/5xx retryable.
- Inbound: "Callback URL (POST or GET)": a JSON body shaped like the send body, with at
  least ``to``, ``from`` and ``text`` (``media`` for MMS). No id is documented: we use one
  if present, else make one from the body and the time of receipt. A GET callback is read
  from the query string. [doc] support.skyetel.com SMS-MMS-Overview
- No delivery reports, no webhook authentication: the webhook URL must carry a
  ``webhook_token``. Skyetel numbers are North American; toll-free numbers cannot text.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Literal

from pydantic import Field

from bridge.model import (
    InboundEvent,
    InboundMessage,
    MediaRef,
    OutboundSms,
    SendFailed,
    SendResult,
    Sent,
)
from bridge.numbers import digits
from bridge.providers.base import (
    Part,
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    basic_auth,
    classify_http_failure,
    text_field,
)
from bridge.secrets import Secret, reveal


class SkyetelConfig(ProviderConfig):
    type: Literal["skyetel"]
    sid: str = Field(min_length=1)
    secret: Secret
    max_text_chars: int = Field(default=1024, ge=1, le=1024)
    # Skyetel reportedly answers 403 when the rate limit is exceeded (five-minute cooldown).
    retry_403: bool = True
    rate_limit_retry_seconds: float = Field(default=300.0, ge=0)


class SkyetelProvider(Provider):
    Config = SkyetelConfig
    default_api_base = "https://sms.skyetel.com"
    webhook_auth = "a secret token in the webhook URL path (Skyetel signs nothing)"
    requires_webhook_token = True
    numbers_may_be_integers = True
    supports_sender_id = False
    config: SkyetelConfig

    def max_chars(self, text: str) -> int | None:
        return self.config.max_text_chars

    async def _send_part(self, msg: OutboundSms, part: Part, index: int,
                         total: int) -> SendResult:
        body: dict[str, Any] = {"to": digits(msg.to_number), "text": part.text}
        if part.media:
            body["media"] = [m.url for m in part.media]
        return await self._post(digits(msg.from_number), body)

    async def _post(self, sender: str, body: dict[str, Any]) -> SendResult:
        cfg = self.config
        async with self.http.post(f"{self.api_base}/v1/out", params={"from": sender},
                                  json=body,
                                  headers=basic_auth(cfg.sid, reveal(cfg.secret))) as resp:
            text = await resp.text(errors="replace")
            if 200 <= resp.status < 300:
                carrier_id = _id_in(text)
                return Sent(carrier_id or f"skyetel-{uuid.uuid4().hex}")
            failure = classify_http_failure(resp.status, text.strip()[:300] or resp.reason or "",
                                            resp.headers)
            if resp.status == 403 and cfg.retry_403:  # Skyetel's rate-limit answer
                return SendFailed(f"Skyetel (rate limited?): {failure.reason}"[:500],
                                  retryable=True,
                                  retry_after=failure.retry_after or cfg.rate_limit_retry_seconds,
                                  code="403")
            return SendFailed(f"Skyetel: {failure.reason}"[:500], failure.retryable,
                              failure.retry_after, failure.code)

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        if req.method == "GET":
            data: Any = dict(req.query)
        elif req.content_type == "application/json":
            data = req.json()
        else:
            data = req.form_dict()
        if not isinstance(data, dict):
            raise WebhookMalformed("expected a JSON object")
        sender = self.inbound_number(data.get("from"), "from")
        recipient = self.inbound_number(data.get("to"), "to")
        text = text_field(data, "text", "'text'")
        media = data.get("media") or []
        if isinstance(media, str):
            media = [media]
        if not isinstance(media, list) or not all(isinstance(u, str) for u in media):
            raise WebhookMalformed("'media' must be a list of URLs")
        carrier_id = next((str(data[k]) for k in ("id", "message_id", "uuid")
                           if isinstance(data.get(k), str | int) and str(data[k])), None)
        if carrier_id is None:
            seed = (req.body + repr(sorted(req.query)).encode()
                    + repr(req.received_at).encode())
            carrier_id = "skyetel-" + hashlib.sha256(seed).hexdigest()[:32]
        return [InboundMessage(carrier_id, sender, recipient, text,
                               tuple(MediaRef(u) for u in media))]



def _id_in(text: str) -> str | None:
    """An id from an (undocumented) JSON success body, if it has one."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return None
    for key in ("id", "message_id", "uuid", "sid"):
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None
