"""Commio (formerly thinQ) messaging.

Facts and sources (see also shared providers.md §14). Commio's own API docs were only partly
captured; the facts below agree across independent integrations:
- SMS: ``POST https://api.thinq.com/account/{account_id}/product/origination/sms/send``, HTTP
  Basic ``username:API token``, JSON ``{"from_did", "to_did", "message"}`` with **10-digit
  NANP numbers** (no ``1``, no ``+``). The answer carries ``guid``, the id delivery reports
  use. [3p] nyaruka/courier handlers/thinq/handler.go and testdata/outgoing.json (request,
  ``{"guid": "1002"}`` answer, 401/429/500 errors as ``{"error": ...}``);
  simontelephonics/smsconnector provider-Commio.php; [doc] apidocs.thinq.com (Basic auth)
- MMS: ``POST …/product/origination/mms/send`` as **multipart/form-data** with ``from_did``,
  ``to_did`` and one ``media_url``; it also answers ``guid``. Several media are several
  requests. courier sends the text separately as an SMS after the media (our default,
  ``mms_text = "separate_sms"``); smsconnector puts it in a ``message`` field of the MMS
  request (``mms_text = "message_field"``). [3p] same
- Text is split at ``max_text_chars`` (1600, as courier does) and sent as several SMS.
- Inbound: form POST (JSON if chosen in the portal) with ``from``, ``to`` (10 or 11 digits),
  ``type`` (``sms``|``mms``) and ``message``; for an MMS, ``message`` holds the media URL or
  the media itself in base64 (passed on as a ``data:`` URL). No id is documented (an ``id``
  is used if present); otherwise we make one from the body and the time of receipt.
  [3p] courier testdata/incoming.json, smsconnector
- Delivery reports: POST with ``guid``, ``account_id``, ``source_did``, ``destination_did``,
  ``timestamp``, ``send_status`` (``delivered``, …), ``status`` (SMPP style: DELIVRD,
  EXPIRED, DELETED, UNDELIV, UNKNOWN, REJECTD) and ``error`` (``000`` = none). UNKNOWN (and
  ACCEPTD/ENROUTE) carry no news. Their URL is set in the portal, not per message. [3p]
  courier
- No webhook authentication is documented: the webhook URL must carry a ``webhook_token``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Literal

import aiohttp
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
from bridge.numbers import InvalidNumber, national_nanp, split_text
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

SMPP_STATUS: dict[str, State] = {
    "DELIVRD": State.DELIVERED,
    "UNDELIV": State.FAILED,
    "REJECTD": State.FAILED,
    "EXPIRED": State.FAILED,
    "DELETED": State.FAILED,
}
SEND_STATUS: dict[str, State] = {
    "sent": State.SENT,
    "delivered": State.DELIVERED,
    "undelivered": State.FAILED,
    "failed": State.FAILED,
    "rejected": State.FAILED,
    "expired": State.FAILED,
}
NO_ERROR = frozenset({"", "0", "000"})
# Leading bytes of base64-encoded media, for the data: URL of a base64 inbound MMS.
BASE64_MAGIC = (("/9j/", "image/jpeg"), ("iVBORw0KGgo", "image/png"), ("R0lGOD", "image/gif"),
                ("UklGR", "image/webp"))


class CommioConfig(ProviderConfig):
    type: Literal["commio"]
    account_id: str = Field(pattern=r"^[0-9]{1,20}$")
    username: str = Field(min_length=1)
    api_token: Secret
    max_text_chars: int = Field(default=1600, ge=1, le=1600)
    mms_text: Literal["separate_sms", "message_field"] = "separate_sms"


class CommioProvider(Provider):
    Config = CommioConfig
    default_api_base = "https://api.thinq.com"
    webhook_auth = "a secret token in the webhook URL path (Commio signs nothing)"
    requires_webhook_token = True
    numbers_may_be_integers = True
    supports_sender_id = False
    config: CommioConfig

    # --- outbound ---------------------------------------------------------------------------

    async def _send(self, msg: OutboundSms) -> SendResult:
        cfg = self.config
        try:
            from_did, to_did = national_nanp(msg.from_number), national_nanp(msg.to_number)
        except InvalidNumber:
            return SendFailed("Commio sends between North American (+1) numbers only",
                              retryable=False, code="invalid_number")
        steps: list[tuple[str, list[tuple[str, str]]]] = []
        text_in_mms = cfg.mms_text == "message_field" and bool(msg.media)
        for index, media in enumerate(msg.media):
            fields = [("from_did", from_did), ("to_did", to_did), ("media_url", media.url)]
            if index == 0 and text_in_mms and msg.text:
                fields.append(("message", msg.text))
            steps.append(("mms", fields))
        if (msg.text and not text_in_mms) or not steps:
            steps.extend(("sms", [("from_did", from_did), ("to_did", to_did), ("message", part)])
                         for part in split_text(msg.text, cfg.max_text_chars))
        return await self.send_parts(msg, steps, lambda step, _i, _n: self._post(*step))

    async def _post(self, kind: str, fields: list[tuple[str, str]]) -> SendResult:
        cfg = self.config
        url = f"{self.api_base}/account/{cfg.account_id}/product/origination/{kind}/send"
        headers = {**basic_auth(cfg.username, reveal(cfg.api_token)), "Accept": "application/json"}
        if kind == "sms":
            request = self.http.post(url, json=dict(fields), headers=headers)
        else:
            form = aiohttp.FormData(fields, default_to_multipart=True)
            request = self.http.post(url, data=form, headers=headers)
        async with request as resp:
            payload = await response_json(resp)
            data = payload if isinstance(payload, dict) else {}
            if 200 <= resp.status < 300:
                guid = data.get("guid")
                if isinstance(guid, str | int) and not isinstance(guid, bool) and str(guid):
                    return Sent(str(guid))
                return SendFailed("Commio answered without a guid", retryable=False)
            message = str(data.get("error") or data.get("message") or "")
            failure = classify_http_failure(resp.status, message or "no error message",
                                            resp.headers)
            return SendFailed(f"Commio: {failure.reason}"[:500], failure.retryable,
                              failure.retry_after, failure.code)

    # --- inbound ----------------------------------------------------------------------------

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        if req.content_type == "application/json":
            data = req.json()
            if not isinstance(data, dict):
                raise WebhookMalformed("expected a JSON object")
        else:
            data = req.form_dict()
        if "guid" in data and ("status" in data or "send_status" in data):
            return self._report(data)
        sender = self.inbound_number(data.get("from"), "from")
        recipient = self.inbound_number(data.get("to"), "to")
        kind = data.get("type") or "sms"
        message = data.get("message") or ""
        if not isinstance(kind, str) or not isinstance(message, str):
            raise WebhookMalformed("'type' and 'message' must be strings")
        text, media = message, ()
        if kind.lower() == "mms":
            stripped = message.strip()
            if stripped.startswith(("https://", "http://")) and " " not in stripped:
                text, media = "", (MediaRef(stripped),)
            elif (ref := _base64_media(stripped)) is not None:
                text, media = "", (ref,)
        carrier_id = _first_str(data, "id", "message_id")
        if carrier_id is None:
            seed = req.body + repr(req.received_at).encode()
            carrier_id = "commio-" + hashlib.sha256(seed).hexdigest()[:32]
        return [InboundMessage(carrier_id, sender, recipient, text, media)]

    def _report(self, data: dict[str, Any]) -> list[InboundEvent]:
        guid = _first_str(data, "guid")
        if guid is None:
            raise WebhookMalformed("missing 'guid'")
        status = data.get("status") or ""
        send_status = data.get("send_status") or ""
        if not isinstance(status, str) or not isinstance(send_status, str):
            raise WebhookMalformed("'status' and 'send_status' must be strings")
        state = SMPP_STATUS.get(status.upper()) if status else None
        if state is None and not status:
            state = SEND_STATUS.get(send_status.lower())
        if state is None:
            return []
        error = data.get("error")
        error_text = str(error) if isinstance(error, str | int) else ""
        return [DeliveryReport(guid, state, carrier_status=status or send_status,
                               error=None if error_text in NO_ERROR else error_text)]



def _first_str(data: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _base64_media(value: str) -> MediaRef | None:
    """Media sent inline as base64 (recognised by its leading bytes) as a data: URL."""
    compact = "".join(value.split())
    ctype = next((t for prefix, t in BASE64_MAGIC if compact.startswith(prefix)), None)
    if ctype is None or len(compact) < 16:
        return None
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    return MediaRef(f"data:{ctype};base64,{compact}", ctype)
