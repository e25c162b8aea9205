"""VoiceMeUp SMS/MMS (API v1.1, JSON flavour).

VoiceMeUp publishes no messaging documentation we could read; everything here comes from one
third-party integration and is marked uncertain (see also shared providers.md §15):
- Send: ``POST https://clients.voicemeup.com/api/v1.1/json/queue_sms`` (sandbox host
  ``dev-clients.voicemeup.com``), a form with ``username``, ``auth_token``,
  ``source_number`` and ``destination_number`` (digits with the country code, no ``+``),
  ``message``, and ``attachment`` (one media URL per request). The answer is JSON
  ``{"response_details": {"response_status": "success"|"error", "response_messages":
  {"message": [{"code", "_content"}, ...]}}}``; on success the entry with code
  ``queued_sms_hash`` holds the id, on error the first entry's ``code`` says why (e.g.
  ``permission_refused``, ``duplicate_entry``). No code is documented as transient, so
  errors are permanent unless listed in ``retryable_codes``. Text is split at 1000
  characters. [3p] roomkit-live/roomkit src/roomkit/providers/voicemeup/{config,sms}.py and
  its tests (which quote a real inbound payload)
- Inbound: a POST (JSON or form) with ``sms_hash`` (the id), ``direction``,
  ``source_number``, ``destination_number``, ``message``, ``datetime_transmission``, and
  ``attachment`` / ``attachment_mime_type`` (older: ``attachment_url`` /
  ``attachment_type``). [3p] same
- **Split MMS quirk:** an MMS arrives as two webhooks. The first carries the text plus a
  ``*.mms.html`` "wrapper" attachment that is not real media; the second (same source,
  destination and ``datetime_transmission``, its own ``sms_hash``) carries the real media.
  We do not hold state across webhooks: the wrapper is dropped and the two are delivered as
  **two separate messages** (the text, then the media), each with its own ``sms_hash``. A
  first part with no text at all yields nothing.
- No delivery reports and no webhook authentication: the webhook URL must carry a
  ``webhook_token``.
"""

from __future__ import annotations

import hashlib
import uuid
from itertools import zip_longest
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
from bridge.numbers import digits, split_text
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    classify_http_failure,
    form_body,
    response_json,
    text_field,
)
from bridge.secrets import Secret, reveal

QUEUE_SMS_PATH = "/api/v1.1/json/queue_sms"


class VoiceMeUpConfig(ProviderConfig):
    type: Literal["voicemeup"]
    username: str = Field(min_length=1)
    auth_token: Secret
    max_text_chars: int = Field(default=1000, ge=1, le=1000)
    retryable_codes: tuple[str, ...] = ()


class VoiceMeUpProvider(Provider):
    Config = VoiceMeUpConfig
    default_api_base = "https://clients.voicemeup.com"
    webhook_auth = "a secret token in the webhook URL path (VoiceMeUp signs nothing)"
    requires_webhook_token = True
    numbers_may_be_integers = True
    supports_sender_id = False
    config: VoiceMeUpConfig

    # --- outbound ---------------------------------------------------------------------------

    async def _send(self, msg: OutboundSms) -> SendResult:
        texts = split_text(msg.text, self.config.max_text_chars) if msg.text else []
        steps = list(zip_longest(texts, [m.url for m in msg.media], fillvalue=None))
        if not steps:
            steps = [("", None)]
        return await self.send_parts(msg, steps, lambda step, _i, _n: self._queue(
            self._fields(msg, *step)))

    @staticmethod
    def _fields(msg: OutboundSms, text: str | None,
                attachment: str | None) -> list[tuple[str, str]]:
        fields = [("source_number", digits(msg.from_number)),
                  ("destination_number", digits(msg.to_number))]
        if text:
            fields.append(("message", text))
        if attachment:
            fields.append(("attachment", attachment))
        return fields

    async def _queue(self, fields: list[tuple[str, str]]) -> SendResult:
        cfg = self.config
        form = [("username", cfg.username), ("auth_token", reveal(cfg.auth_token)), *fields]
        async with self.http.post(self.api_base + QUEUE_SMS_PATH, data=form_body(form),
                                  headers={"Accept": "application/json"}) as resp:
            payload = await response_json(resp)
            if not 200 <= resp.status < 300:
                return classify_http_failure(resp.status, resp.reason or "", resp.headers)
        details = payload.get("response_details") if isinstance(payload, dict) else None
        if not isinstance(details, dict):
            return SendFailed("VoiceMeUp answered without response_details", retryable=True)
        entries = _messages(details)
        if details.get("response_status") == "error":
            code = str(entries[0].get("code") or "unknown_error") if entries else "unknown_error"
            text = str(entries[0].get("_content") or "") if entries else ""
            reason = f"VoiceMeUp error {code}" + (f": {text}" if text and text != code else "")
            return SendFailed(reason[:500], retryable=code in cfg.retryable_codes, code=code)
        sms_hash = next((str(e["_content"]) for e in entries
                         if e.get("code") == "queued_sms_hash" and e.get("_content")), None)
        # Accepted even without a hash: VoiceMeUp sends no reports, so nothing must match it.
        return Sent(sms_hash or f"voicemeup-{uuid.uuid4().hex}")

    # --- inbound ----------------------------------------------------------------------------

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        if req.content_type == "application/json":
            data = req.json()
            if not isinstance(data, dict):
                raise WebhookMalformed("expected a JSON object")
        else:
            data = req.form_dict()
        direction = data.get("direction") or "inbound"
        if not isinstance(direction, str):
            raise WebhookMalformed("'direction' must be a string")
        if direction.lower() != "inbound":
            return []
        sender = self.inbound_number(data.get("source_number"), "source_number")
        recipient = self.inbound_number(data.get("destination_number"), "destination_number")
        text = text_field(data, "message", "'message'")
        url = data.get("attachment") or data.get("attachment_url") or ""
        mime = data.get("attachment_mime_type") or data.get("attachment_type") or None
        if not isinstance(url, str) or not isinstance(mime, str | None):
            raise WebhookMalformed("'attachment' and its type must be strings")
        media: tuple[MediaRef, ...] = ()
        if url and not _is_mms_wrapper(url, mime):
            media = (MediaRef(url, mime),)
        if not text and not media:
            return []  # e.g. the wrapper half of a split MMS with no text
        carrier_id = data.get("sms_hash")
        if not isinstance(carrier_id, str | int) or isinstance(carrier_id, bool) \
                or not str(carrier_id):
            seed = req.body + repr(req.received_at).encode()
            carrier_id = "voicemeup-" + hashlib.sha256(seed).hexdigest()[:32]
        return [InboundMessage(str(carrier_id), sender, recipient, text, media)]



def _messages(details: dict[str, Any]) -> list[dict[str, Any]]:
    container = details.get("response_messages")
    entries = container.get("message") if isinstance(container, dict) else None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict)]


def _is_mms_wrapper(url: str, mime: str | None) -> bool:
    """VoiceMeUp's ``*.mms.html`` metadata attachment of a split MMS (not real media)."""
    path = url.split("?", 1)[0].lower()
    return path.endswith(".mms.html") or (mime == "text/html" and ".mms." in path)
